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
 * The database worker answers (http_unleash.sql).  The environment is the
 * API key's (Authorization, Unleash's header, with or without "Bearer ";
 * or X-API-Key); without one, where no key is required, the server's
 * opsflags.environment (http_auth.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

static OpsQuery frontend_query = {
	.sql = "SELECT status, etag, document, key_id FROM opsflags_internal.unleash_frontend_answer($1, $2, $3, $4)",
	.nargs = 4,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID},
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
	Datum		args[4];
	char		nulls[4];
	const char *etag;

	/* the key is a parameter: it is in no query text, log line or view */
	for (int i = 0; i < query->nargs; i++)
	{
		args[i] = parts[i] ? CStringGetTextDatum(parts[i]) : (Datum) 0;
		nulls[i] = parts[i] ? ' ' : 'n';
	}
	if (!http_sql(query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		a->code = 500;
		appendStringInfoString(&a->body, "{\"message\": ");
		escape_json(&a->body, r.error ? r.error : "no answer");
		appendStringInfoString(&a->body, "}");
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if (http_result_value(&r, 0, 3) != NULL && (a->code == 200 || a->code == 304))
		http_key_used(atoll(http_result_value(&r, 0, 3)));
	if ((etag = http_result_value(&r, 0, 1)) != NULL)
		appendStringInfo(&a->headers, "ETag: %s\r\n", etag);
	appendStringInfoString(&a->body, http_result_value(&r, 0, 2));
}

/* In the worker: the frontend API; a GET reads the query, a POST the body */
static void
answer_frontend(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	bool		post = call->method == HTTP_POST;
	const char *parts[4] = {call->api_key, post ? NULL : call->query,
							post ? (call->body ? call->body : "") : NULL, call->if_none_match};

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
		a->code = 500;
		appendStringInfoString(&a->body, "{\"message\": ");
		escape_json(&a->body, r.error ? r.error : "no answer");
		appendStringInfoString(&a->body, "}");
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
	a->code = 503;
	appendStringInfoString(&a->body, "{\"message\": ");
	escape_json(&a->body, error);
	appendStringInfoString(&a->body, "}");
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
