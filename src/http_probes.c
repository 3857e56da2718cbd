/*
 * http_probes.c
 *	  The HTTP server's probes, for load balancers and Kubernetes: /livez
 *	  (the loop answers, always), /readyz and /health (also /api/health),
 *	  answered from the database by the worker "opsflags http sql".  Also
 *	  the health_status() document as an ordinary role sees it, which
 *	  /metrics and /api/status start from.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "lib/stringinfo.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

/* ---------- /livez ---------- */

/* The process answers: nothing else is asked. */
static void
livez(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond_text(conn, req, 200, "ok\n");
}

/* ---------- /health ---------- */

static OpsQuery health_query = {
	.sql = "SELECT h::text, h ->> 'status' FROM opsflags.health_status() h",
};

/*
 * The health_status() document and its status, as an ordinary role sees
 * them: called as pg_monitor (not an opsflags admin), so sensitive values
 * (app_version, commit_sha, the queue query's errors) are left out as they
 * are for any role without the right to read them.
 */
bool
http_health_document(HttpResult *r)
{
	return http_sql(&health_query, NULL, NULL, ROLE_PG_MONITOR, r) && r->nrows == 1;
}

/* /health: the health_status() document; 503 when unhealthy */
static void
answer_health(HttpAnswer *a, const char *arg)
{
	HttpResult	r;
	const char *status;

	if (!http_health_document(&r))
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	status = http_result_value(&r, 0, 1);
	a->code = status && (strcmp(status, "healthy") == 0 || strcmp(status, "degraded") == 0) ? 200 : 503;
	appendStringInfoString(&a->body, http_result_value(&r, 0, 0));
}

/* ---------- /readyz ---------- */

/*
 * /readyz: the server takes queries, is not in maintenance mode, and a
 * standby's replay is within health.thresholds' replication_lag_s (300 s)
 * of what it has received.  The query says why not, or NULL.
 */
static OpsQuery ready_query = {
	.sql = "SELECT opsflags_internal.http_readiness()",
};

/* {"ready": false, "reason": ...}, 503 */
static void
not_ready(HttpAnswer *a, const char *reason)
{
	a->code = 503;
	appendStringInfoString(&a->body, "{\"ready\": false, \"reason\": ");
	escape_json(&a->body, reason);
	appendStringInfoString(&a->body, "}");
}

static void
answer_ready(HttpAnswer *a, const char *arg)
{
	HttpResult	r;
	const char *reason;

	if (!http_sql(&ready_query, NULL, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		not_ready(a, r.error ? r.error : "no answer");
		return;
	}
	reason = http_result_value(&r, 0, 0);
	if (reason != NULL)
	{
		not_ready(a, reason);
		return;
	}
	a->code = 200;
	appendStringInfoString(&a->body, "{\"ready\": true}");
}

/* ---------- routes ---------- */

static const HttpRoute livez_route = {
	.path = "/livez",
	.handler = livez,
};

static const HttpRoute ready_route = {
	.path = "/readyz",
	.handler = http_ask_database,
	.answer = answer_ready,
	.unavailable = not_ready,
	.content_type = "application/json",
};

static const HttpRoute health_route = {
	.path = "/health",
	.handler = http_ask_database,
	.answer = answer_health,
	.content_type = "application/json",
};

static const HttpRoute api_health_route = {
	.path = "/api/health",
	.handler = http_ask_database,
	.answer = answer_health,
	.content_type = "application/json",
};

void
http_probes_routes(void)
{
	http_route(&livez_route);
	http_route(&ready_route);
	http_route(&health_route);
	http_route(&api_health_route);
}
