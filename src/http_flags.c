/*
 * http_flags.c
 *	  The HTTP server's /flags/<environment>: the environment's flags in the
 *	  LaunchDarkly-format document of flags_for_environment(), answered from
 *	  the database by the worker "opsflags http sql"; 404 for a name that is
 *	  not an environment's; 401/403 where the environment requires an API
 *	  key and the request has none of it (api_keys.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

/* In the loop: a name that cannot be an environment's is 404 at once. */
static void
flags_handler(HttpConn *conn, HttpRequest *req, const char *environment)
{
	if (!opsflags_valid_environment_name(environment))
		http_respond_text(conn, req, 404, "not found\n");
	else
		http_ask_database(conn, req, environment);
}

/* The key's status first: a document only for 200 (http_auth.sql, api_keys.sql). */
static OpsQuery flags_query = {
	.sql = "SELECT a.status, CASE WHEN a.status = 200 THEN opsflags.flags_for_environment($1)::text END "
	"FROM opsflags_internal.api_key_authorize($2, $1, '{client,server}') a",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID},
};

/* flags_for_environment(); 404 with its error for no such environment */
static void
answer_flags(HttpAnswer *a, const char *environment)
{
	HttpResult	r;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	const char *key = a->call ? a->call->api_key : NULL;

	args[0] = CStringGetTextDatum(environment);
	args[1] = key ? CStringGetTextDatum(key) : (Datum) 0;
	nulls[1] = key ? ' ' : 'n';
	if (!http_sql(&flags_query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		if (r.sqlerrcode == ERRCODE_UNDEFINED_OBJECT)
		{
			a->code = 404;
			appendStringInfoString(&a->body, "{\"error\": ");
			escape_json(&a->body, r.error);
			appendStringInfoString(&a->body, "}");
		}
		else
			http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if (a->code != 200)
	{
		appendStringInfoString(&a->body, a->code == 401 ? "{\"error\": \"a valid API key of the environment is required\"}"
							   : "{\"error\": \"this API key may not read this environment\"}");
		return;
	}
	appendStringInfoString(&a->body, http_result_value(&r, 0, 1));
}

static const HttpRoute flags_route = {
	.path = "/flags/",
	.prefix = true,
	.handler = flags_handler,
	.answer = answer_flags,
	.content_type = "application/json",
};

void
http_flags_routes(void)
{
	http_route(&flags_route);
}
