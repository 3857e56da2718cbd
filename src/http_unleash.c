/*
 * http_unleash.c
 *	  The HTTP server's Unleash endpoints, as Unleash's SDKs call them with
 *	  their URL pointed at opsflags:
 *
 *	  GET and POST /api/frontend (and /api/frontend/features): the frontend
 *	  API of the browser and mobile SDKs (unleash-proxy-client and its
 *	  kin): the enabled toggles of the environment for the context of the
 *	  query parameters (GET) or of the body's {"context": {...}} (POST),
 *	  with an ETag and 304 on If-None-Match.
 *	  GET /api/client/features: the client API of the server SDKs
 *	  (unleash-client and its kin), which evaluate locally: the
 *	  unleash_features document, with an ETag and 304.
 *	  POST /api/client/metrics and the frontend SDKs'
 *	  /api/frontend/client/metrics: the yes and no counts the SDK reports
 *	  for each toggle added to the flag's usage (flag_usage; shared memory,
 *	  no write), 204.
 *	  POST /api/client/register, /api/frontend/client/register: 204,
 *	  dropped.
 *
 * The database worker answers (http_unleash.sql), with the context of a
 * GET's query parameters read here (unleash_query_context()).  The
 * environment is the
 * API key's (Authorization, Unleash's header, with or without "Bearer ";
 * or X-API-Key); without one, where no key is required, the server's
 * opsflags.environment (http_auth.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "opsflags.h"
#include "http.h"

PG_FUNCTION_INFO_V1(opsflags_unleash_query_context);

static OpsQuery frontend_query = {
	.sql = "SELECT status, etag, document, key_id FROM opsflags_internal.unleash_frontend_answer($1, $2, $3, $4, $5)",
	.nargs = 5,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
};

static OpsQuery client_query = {
	.sql = "SELECT status, etag, document, key_id FROM opsflags_internal.unleash_client_answer($1, $2)",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID},
};

/* Run one of the queries with these text arguments and answer its row */
static void
answer_query(HttpAnswer *a, OpsQuery *query, const char **parts)
{
	HttpResult	r;
	Datum		args[5];
	char		nulls[5];

	/* the key is a parameter: it is in no query text, log line or view */
	for (int i = 0; i < query->nargs; i++)
	{
		args[i] = parts[i] ? CStringGetTextDatum(parts[i]) : (Datum) 0;
		nulls[i] = parts[i] ? ' ' : 'n';
	}
	if (!http_sql(query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_message(a, 500, r.error ? r.error : "no answer");
		return;
	}
	http_answer_document(a, &r);
}

/* In the worker: the frontend API; a GET reads the query, a POST the body */
static void
answer_frontend(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	bool		post = call->method == HTTP_POST;
	const char *parts[5] = {call->api_key, post ? NULL : call->query,
							post ? (call->body ? call->body : "") : NULL, call->if_none_match,
							call->client_addr && call->client_addr[0] ? call->client_addr : NULL};

	answer_query(a, &frontend_query, parts);
}

/* In the worker: the client API's features */
static void
answer_client(HttpAnswer *a, const char *arg)
{
	const char *parts[2] = {a->call->api_key, a->call->if_none_match};

	answer_query(a, &client_query, parts);
}

static OpsQuery metrics_query = {
	.sql = "SELECT status, document, key_id FROM opsflags_internal.unleash_metrics_answer($1, $2::text[], $3)",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID},
};

/* In the worker: metrics, from a client of the key kinds given */
static void
answer_metrics(HttpAnswer *a, const char *kinds)
{
	const HttpCall *call = a->call;
	HttpResult	r;
	const char *parts[3] = {call->api_key, kinds, call->body ? call->body : ""};
	Datum		args[3];
	char		nulls[3];

	for (int i = 0; i < 3; i++)
	{
		args[i] = parts[i] ? CStringGetTextDatum(parts[i]) : (Datum) 0;
		nulls[i] = parts[i] ? ' ' : 'n';
	}
	if (!http_sql(&metrics_query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_message(a, 500, r.error ? r.error : "no answer");
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if (http_result_value(&r, 0, 2) != NULL && a->code == 204)
		http_key_used(atoll(http_result_value(&r, 0, 2)));
	appendStringInfoString(&a->body, http_result_value(&r, 0, 1));
}

static void
answer_client_metrics(HttpAnswer *a, const char *arg)
{
	answer_metrics(a, "{server}");
}

static void
answer_frontend_metrics(HttpAnswer *a, const char *arg)
{
	answer_metrics(a, "{client,server}");
}

static void
unleash_unavailable(HttpAnswer *a, const char *error)
{
	http_answer_message(a, 503, error);
}

/* Registrations are taken and dropped */
static void
dropped(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond(conn, req, 204, "text/plain", "", 0);
}

static const HttpRoute frontend_route = {
	.path = "/api/frontend",
	.methods = HTTP_GET | HTTP_POST,
	.handler = http_ask_database,
	.answer = answer_frontend,
	.unavailable = unleash_unavailable,
	.content_type = "application/json",
};

static const HttpRoute frontend_features_route = {
	.path = "/api/frontend/features",
	.methods = HTTP_GET | HTTP_POST,
	.handler = http_ask_database,
	.answer = answer_frontend,
	.unavailable = unleash_unavailable,
	.content_type = "application/json",
};

static const HttpRoute client_features_route = {
	.path = "/api/client/features",
	.methods = HTTP_GET,
	.handler = http_ask_database,
	.answer = answer_client,
	.unavailable = unleash_unavailable,
	.content_type = "application/json",
};

static const HttpRoute dropped_routes[] = {
	{.path = "/api/client/register", .methods = HTTP_POST, .handler = dropped},
	{.path = "/api/frontend/client/register", .methods = HTTP_POST, .handler = dropped},
};

static const HttpRoute client_metrics_route = {
	.path = "/api/client/metrics",
	.methods = HTTP_POST,
	.handler = http_ask_database,
	.answer = answer_client_metrics,
	.unavailable = unleash_unavailable,
	.content_type = "application/json",
};

static const HttpRoute frontend_metrics_route = {
	.path = "/api/frontend/client/metrics",
	.methods = HTTP_POST,
	.handler = http_ask_database,
	.answer = answer_frontend_metrics,
	.unavailable = unleash_unavailable,
	.content_type = "application/json",
};

void
http_unleash_routes(void)
{
	http_route(&frontend_route);
	http_route(&frontend_features_route);
	http_route(&client_features_route);
	http_route(&client_metrics_route);
	http_route(&frontend_metrics_route);
	for (size_t i = 0; i < lengthof(dropped_routes); i++)
		http_route(&dropped_routes[i]);
}

/* ---------- the context of a frontend API GET ---------- */

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A percent-encoded component of len bytes into out: '+' is a space, %XX a
 * byte, a '%' without two hex digits itself.  false when the bytes are not
 * UTF-8 (nor a NUL).
 */
static bool
url_decode(const char *s, int len, StringInfo out)
{
	int			start = out->len;

	for (int i = 0; i < len; i++)
	{
		int			hi,
					lo;

		if (s[i] == '+')
			appendStringInfoChar(out, ' ');
		else if (s[i] == '%' && i + 2 < len &&
				 (hi = hex_digit(s[i + 1])) >= 0 && (lo = hex_digit(s[i + 2])) >= 0)
		{
			appendStringInfoChar(out, (char) (hi * 16 + lo));
			i += 2;
		}
		else
			appendStringInfoChar(out, s[i]);
	}
	return pg_verify_mbstr(PG_UTF8, out->data + start, out->len - start, true);
}

/*
 * unleash_query_context(query text) -> jsonb: the Unleash context of the
 * query parameters (userId=u1&properties[plan]=pro), each name and value
 * decoded, the properties[...] ones as the object "properties" (later
 * parameters win); NULL when one does not decode.  As
 * unleash_query_context_reference() in SQL, which the tests compare.
 */
Datum
opsflags_unleash_query_context(PG_FUNCTION_ARGS)
{
	StringInfoData top;
	StringInfoData props;
	StringInfoData name;
	StringInfoData value;
	char	   *query;
	char	   *p;
	bool		any_top = false;

	if (PG_ARGISNULL(0))
		query = "";
	else
		query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	initStringInfo(&top);
	initStringInfo(&props);
	initStringInfo(&name);
	initStringInfo(&value);
	appendStringInfoChar(&top, '{');
	for (p = query; *p != '\0';)
	{
		char	   *amp = strchr(p, '&');
		int			len = amp ? amp - p : (int) strlen(p);
		char	   *eq = memchr(p, '=', len);
		int			nlen = eq ? eq - p : len;
		StringInfo	into;

		if (len > 0)
		{
			resetStringInfo(&name);
			resetStringInfo(&value);
			if (!url_decode(p, nlen, &name) ||
				!url_decode(eq ? eq + 1 : p + len, eq ? len - nlen - 1 : 0, &value))
				PG_RETURN_NULL();
			if (name.len >= 12 && strncmp(name.data, "properties[", 11) == 0 &&
				name.data[name.len - 1] == ']')
			{
				into = &props;
				appendStringInfoString(into, into->len > 0 ? ", " : "{");
				name.data[name.len - 1] = '\0';
				escape_json(into, name.data + 11);
			}
			else
			{
				into = &top;
				if (any_top)
					appendStringInfoString(into, ", ");
				any_top = true;
				escape_json(into, name.data);
			}
			appendStringInfoString(into, ": ");
			escape_json(into, value.data);
		}
		p += len;
		if (*p == '&')
			p++;
	}
	if (props.len > 0)
	{
		/* after the others: a plain "properties" parameter gives way */
		appendStringInfo(&top, "%s\"properties\": %s}", any_top ? ", " : "", props.data);
	}
	appendStringInfoChar(&top, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(top.data)));
}
