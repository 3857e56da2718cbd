/*
 * http_status.c
 *	  The HTTP server's status page: the page itself at / (and /index.html),
 *	  src/status_page.html compiled in and answered by the loop, and the
 *	  data it shows, /api/status, answered from the database by the worker
 *	  "opsflags http sql".
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "opsflags.h"
#include "http.h"

/* ---------- the page ---------- */

/* src/status_page.html, made a C string by the Makefile */
static const char status_page[] =
#include "status_page.h"
			;

static void
status_page_handler(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond(conn, req, 200, "text/html; charset=utf-8", status_page, sizeof(status_page) - 1);
}

/* ---------- /api/status ---------- */

/*
 * /api/status: what the status page shows, for opsflags.environment:
 * health, 24 h of samples (each one while there are few, else at most 288
 * time buckets: health_samples()), flags with what a request without a user is
 * served and why (feature_explain()), the last 10 deployments and the open
 * alerts.  See src/status_page.html.
 */
/* SQL: to become opsflags.http_status(jsonb) */
static OpsQuery status_query = {
	.sql =
	"WITH env AS (SELECT opsflags.resolve_environment(NULL) AS name) "
	"SELECT jsonb_build_object("
	"  'generated_at', clock_timestamp(), "
	"  'environment', env.name, "
	"  'in_recovery', pg_is_in_recovery(), "
	"  'maintenance', opsflags.is_maintenance_mode(), "
	"  'health', $1, "
	"  'samples', opsflags.health_samples(interval '24 hours', 288), "
	"  'flags', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', f.flag_key, 'name', f.flag_name, "
	"                   'enabled', c.is_enabled, 'percentage', c.enabled_percentage, "
	"                   'value', e.x -> 'value', 'served', e.x -> 'enabled', 'reason', e.x -> 'reason', "
	"                   'enable_at', c.enable_at, 'disable_at', c.disable_at, "
	"                   'version', c.version, 'updated_at', c.updated_at) ORDER BY f.flag_key), '[]') "
	"              FROM opsflags.feature_flags f "
	"              JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env.name "
	"              CROSS JOIN LATERAL (SELECT opsflags.feature_explain(f.flag_key) AS x) e "
	"             WHERE NOT f.archived), "
	"  'deployments', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'version', d.version, "
	"                   'status', d.status, 'deployed_at', d.deployed_at, 'deployed_by', d.deployed_by, "
	"                   'commit_sha', d.commit_sha) ORDER BY d.deployed_at DESC), '[]') "
	"              FROM (SELECT * FROM opsflags.deployment_history d "
	"                     WHERE d.environment = env.name ORDER BY d.deployed_at DESC LIMIT 10) d), "
	"  'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'type', a.type, "
	"                   'severity', a.severity, 'title', a.title, 'message', a.message, "
	"                   'component', a.component, 'created_at', a.created_at) ORDER BY a.created_at DESC), '[]') "
	"              FROM opsflags.alerts a WHERE NOT a.resolved) "
	")::text FROM env",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

/*
 * A deployment's version and commit are the values of config app_version
 * and commit_sha: where those keys are sensitive they are left out (null),
 * as health_status() leaves them out for pg_monitor.
 */
/* SQL: to become opsflags.http_status(jsonb) (its last step) */
static OpsQuery status_redact_query = {
	.sql =
	"SELECT CASE WHEN NOT (s.version OR s.sha) THEN $1 "
	"  ELSE jsonb_set($1, '{deployments}', (SELECT coalesce(jsonb_agg(d.e "
	"         || CASE WHEN s.version THEN '{\"version\": null}' ELSE '{}' END::jsonb "
	"         || CASE WHEN s.sha THEN '{\"commit_sha\": null}' ELSE '{}' END::jsonb ORDER BY d.n), '[]') "
	"       FROM jsonb_array_elements($1 -> 'deployments') WITH ORDINALITY d(e, n))) END::text "
	"FROM (SELECT EXISTS (SELECT FROM opsflags.app_config c WHERE c.config_key = 'app_version' AND c.is_sensitive) AS version, "
	"             EXISTS (SELECT FROM opsflags.app_config c WHERE c.config_key = 'commit_sha' AND c.is_sensitive) AS sha) s",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

static void
answer_status(HttpAnswer *a, const char *arg)
{
	HttpResult	r;
	Datum		doc;

	if (!http_health_document(&r))
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(http_result_value(&r, 0, 0)));
	if (!http_sql(&status_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(http_result_value(&r, 0, 0)));
	if (!http_sql(&status_redact_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	a->code = 200;
	appendStringInfoString(&a->body, http_result_value(&r, 0, 0));
}

/* ---------- routes ---------- */

static const HttpRoute page_route = {
	.path = "/",
	.handler = status_page_handler,
};

static const HttpRoute index_route = {
	.path = "/index.html",
	.handler = status_page_handler,
};

static const HttpRoute api_status_route = {
	.path = "/api/status",
	.handler = http_ask_database,
	.answer = answer_status,
	.content_type = "application/json",
};

void
http_status_routes(void)
{
	http_route(&page_route);
	http_route(&index_route);
	http_route(&api_status_route);
}
