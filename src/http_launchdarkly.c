/*
 * http_launchdarkly.c
 *	  The HTTP server's LaunchDarkly client-side endpoints, as LaunchDarkly's
 *	  client-side SDKs (JavaScript, Node client) call them with baseUrl and
 *	  eventsUrl pointed at opsflags:
 *
 *	  GET /sdk/evalx/{id}/contexts/{base64url context}, REPORT
 *	  /sdk/evalx/{id}/context (the context as the body), and the user forms
 *	  of older SDKs (/users/{base64url user}, REPORT /user): every flag of
 *	  the environment evaluated for the context, with reasons when the query
 *	  has withReasons=true, an ETag and 304 on If-None-Match.  The database
 *	  worker answers (launchdarkly_answer(), http_launchdarkly.sql).
 *	  GET /sdk/goals/{id}: no goals, [].
 *	  POST /events/bulk/{id}, /events/diagnostic/{id}: 204, dropped.
 *
 * {id}, the SDK's client-side ID, is an API key of kind client or server
 * (its environment), or, where the environment requires no key, the
 * environment's name (http_auth.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

/* The longest client-side ID taken (keys are 70 characters, names 63) */
#define LD_MAX_ID	128

/*
 * In the loop: split "{id}/contexts/{data}" (or "{id}/context" with the
 * body) and hand the ID to the worker as "b{id}" (the context, base64url,
 * passed as the body) or "j{id}" (the body is the JSON context).
 */
static void
evalx(HttpConn *conn, HttpRequest *req, const char *arg)
{
	const char *slash = strchr(arg, '/');
	const char *form;
	char		id[LD_MAX_ID + 2];
	bool		report = req->method == HTTP_REPORT;
	size_t		idlen;

	if (slash == NULL || slash == arg || (idlen = slash - arg) > LD_MAX_ID)
	{
		http_respond_text(conn, req, 404, "not found");
		return;
	}
	form = slash + 1;
	if (report)
	{
		if (strcmp(form, "context") != 0 && strcmp(form, "user") != 0)
		{
			http_respond_text(conn, req, 404, "not found");
			return;
		}
		id[0] = 'j';
	}
	else
	{
		const char *data;

		if (strncmp(form, "contexts/", 9) == 0)
			data = form + 9;
		else if (strncmp(form, "users/", 6) == 0)
			data = form + 6;
		else
			data = NULL;
		if (data == NULL || data[0] == '\0' || strchr(data, '/') != NULL)
		{
			http_respond_text(conn, req, 404, "not found");
			return;
		}
		/* the encoded context travels to the worker as the body */
		req->body = data;
		req->bodylen = strlen(data);
		id[0] = 'b';
	}
	memcpy(id + 1, arg, idlen);
	id[idlen + 1] = '\0';
	http_ask_database(conn, req, id);
}

static OpsQuery evalx_query = {
	.sql = "SELECT status, etag, document, key_id FROM opsflags_internal.launchdarkly_answer($1, $2, $3, $4, $5)",
	.nargs = 5,
	.argtypes = {TEXTOID, TEXTOID, BOOLOID, BOOLOID, TEXTOID},
};

/* In the worker: arg is "b{id}" or "j{id}" (see evalx) */
static void
answer_evalx(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	HttpResult	r;
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	/* the ID may be a key: it is a parameter, in no query text */
	args[0] = CStringGetTextDatum(arg + 1);
	if (call->body != NULL)
		args[1] = CStringGetTextDatum(call->body);
	else
		nulls[1] = 'n';
	args[2] = BoolGetDatum(arg[0] == 'b');
	args[3] = BoolGetDatum(http_query_flag(call->query, "withReasons"));
	if (call->if_none_match != NULL)
		args[4] = CStringGetTextDatum(call->if_none_match);
	else
		nulls[4] = 'n';
	if (!http_sql(&evalx_query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_message(a, 500, r.error ? r.error : "no answer");
		return;
	}
	http_answer_document(a, &r);
}

static void
evalx_unavailable(HttpAnswer *a, const char *error)
{
	http_answer_message(a, 503, error);
}

/* No goals (click and page-view experiments of the browser SDK) */
static void
goals(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond(conn, req, 200, "application/json", "[]", 2);
}

/* Analytics and diagnostic events are taken and dropped */
static void
events(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond(conn, req, 204, "text/plain", "", 0);
}

static const HttpRoute evalx_route = {
	.path = "/sdk/evalx/",
	.prefix = true,
	.methods = HTTP_GET | HTTP_REPORT,
	.handler = evalx,
	.answer = answer_evalx,
	.unavailable = evalx_unavailable,
	.content_type = "application/json",
};

static const HttpRoute goals_route = {
	.path = "/sdk/goals/",
	.prefix = true,
	.methods = HTTP_GET,
	.handler = goals,
};

static const HttpRoute events_bulk_route = {
	.path = "/events/bulk/",
	.prefix = true,
	.methods = HTTP_POST,
	.handler = events,
};

static const HttpRoute events_diagnostic_route = {
	.path = "/events/diagnostic/",
	.prefix = true,
	.methods = HTTP_POST,
	.handler = events,
};

void
http_launchdarkly_routes(void)
{
	http_route(&evalx_route);
	http_route(&goals_route);
	http_route(&events_bulk_route);
	http_route(&events_diagnostic_route);
}
