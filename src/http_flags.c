/*
 * http_flags.c
 *	  The HTTP server's /flags/<environment>: the environment's flags in the
 *	  LaunchDarkly-format document of flags_for_environment(), answered from
 *	  the database by the worker "opsflags http sql"; 404 for a name that is
 *	  not an environment's.
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

static OpsQuery flags_query = {
	.sql = "SELECT opsflags.flags_for_environment($1)::text",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

/* flags_for_environment(); 404 with its error for no such environment */
static void
answer_flags(HttpAnswer *a, const char *environment)
{
	HttpResult	r;
	Datum		arg = CStringGetTextDatum(environment);

	if (!http_sql(&flags_query, &arg, NULL, InvalidOid, &r) || r.nrows != 1)
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
	a->code = 200;
	appendStringInfoString(&a->body, http_result_value(&r, 0, 0));
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
