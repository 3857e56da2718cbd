/*
 * http_ofrep.c
 *	  The HTTP server's OpenFeature Remote Evaluation Protocol (OFREP):
 *	  POST /ofrep/v1/evaluate/flags/{key} evaluates one flag and POST
 *	  /ofrep/v1/evaluate/flags every flag of the environment (with an ETag
 *	  and 304 on If-None-Match), for the body's {"context": {...}}.  The
 *	  database worker answers (ofrep_answer(), http_ofrep.sql), as the
 *	  OpenFeature providers expect: JSON on every answer, errors as
 *	  {errorCode, errorDetails}.
 *
 * The environment is the API key's (Authorization: Bearer or X-API-Key);
 * without one, where no key is required, the server's
 * opsflags.environment (http_auth.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

/*
 * A flag key from the path, percent-decoded in place (the server provider
 * sends "a/b" as it is, the web provider encodes it): false when it cannot
 * be a flag key.
 */
static bool
decode_key(char *key)
{
	char	   *in = key;
	char	   *out = key;

	while (*in != '\0')
	{
		if (in[0] == '%' && isxdigit((unsigned char) in[1]) && isxdigit((unsigned char) in[2]))
		{
			char		hex[3] = {in[1], in[2], '\0'};

			*out++ = (char) strtol(hex, NULL, 16);
			in += 3;
		}
		else
			*out++ = *in++;
	}
	*out = '\0';
	return out != key && out - key <= OPSFLAGS_FLAG_KEY_MAXLEN && strlen(key) == (size_t) (out - key);
}

static void
one_flag(HttpConn *conn, HttpRequest *req, const char *arg)
{
	char		key[3 * OPSFLAGS_FLAG_KEY_MAXLEN + 1];	/* every byte encoded */

	if (strlen(arg) >= sizeof(key) || (strlcpy(key, arg, sizeof(key)), !decode_key(key)))
	{
		http_respond_json_error(conn, req, 404, "FLAG_NOT_FOUND", "no flag has that key");
		return;
	}
	http_ask_database(conn, req, key);
}

static void
all_flags(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_ask_database(conn, req, NULL);
}

static OpsQuery ofrep_query = {
	.sql = "SELECT status, etag, document, key_id FROM opsflags_internal.ofrep_answer($1, $2, $3, $4)",
	.nargs = 4,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID},
};

/* In the worker: one flag (arg: its key) or every flag (arg: empty). */
static void
answer_ofrep(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	HttpResult	r;
	const char *parts[4] = {call->api_key, arg[0] ? arg : NULL, call->body, call->if_none_match};
	Datum		args[4];
	char		nulls[4];

	/* the key is a parameter: it is in no query text, log line or view */
	for (int i = 0; i < 4; i++)
	{
		args[i] = parts[i] ? CStringGetTextDatum(parts[i]) : (Datum) 0;
		nulls[i] = parts[i] ? ' ' : 'n';
	}
	if (!http_sql(&ofrep_query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		a->code = 500;
		appendStringInfoString(&a->body, "{\"errorDetails\": ");
		escape_json(&a->body, r.error ? r.error : "no answer");
		appendStringInfoString(&a->body, "}");
		return;
	}
	http_answer_document(a, &r);
}

/* The database did not answer: 503, in OFREP's words. */
static void
ofrep_unavailable(HttpAnswer *a, const char *error)
{
	a->code = 503;
	appendStringInfoString(&a->body, "{\"errorCode\": \"GENERAL\", \"errorDetails\": ");
	escape_json(&a->body, error);
	appendStringInfoString(&a->body, "}");
}

static const HttpRoute ofrep_all_route = {
	.path = "/ofrep/v1/evaluate/flags",
	.methods = HTTP_POST,
	.handler = all_flags,
	.answer = answer_ofrep,
	.unavailable = ofrep_unavailable,
	.content_type = "application/json",
};

static const HttpRoute ofrep_one_route = {
	.path = "/ofrep/v1/evaluate/flags/",
	.prefix = true,
	.methods = HTTP_POST,
	.handler = one_flag,
	.answer = answer_ofrep,
	.unavailable = ofrep_unavailable,
	.content_type = "application/json",
};

void
http_ofrep_routes(void)
{
	http_route(&ofrep_all_route);
	http_route(&ofrep_one_route);
}
