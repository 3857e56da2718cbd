/*
 * http_sql.c
 *	  "opsflags http sql": the HTTP server's database worker.  The server's
 *	  event loop (http.c) never runs SQL itself, so that /livez and every
 *	  other client are answered while the database is slow or a lock is
 *	  held; it hands each request that needs SQL to this worker over a
 *	  shared memory queue and frames the answer it gets back.  This file owns
 *	  those endpoints: /health, /readyz, /metrics, /flags/<environment> and
 *	  /api/status, each a fixed query.
 *
 * The loop starts the worker when the first such request comes, with a
 * dynamic shared memory segment holding the two queues, and starts it again
 * if it exits.  The worker runs one request at a time, each in its own
 * read-only transaction with search_path pinned to pg_catalog, cancelled
 * after opsflags.http_timeout, and waiting at most a quarter of that for a
 * lock; a request that waited in the queue longer than opsflags.http_timeout
 * is answered 503 without running.  A failed query is a 503 (or 404) and
 * the worker carries on.  The worker is the bootstrap superuser, but it calls
 * health_status() as pg_monitor, like any ordinary role, so that sensitive
 * values (app_version, commit_sha, the queue query's errors) stay hidden;
 * no other configuration value is read, so no secret can be served.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "opsflags.h"
#include "http.h"

static TimestampTz last_failure_logged = 0;

/* ---------- SQL ---------- */

/* A query's rows as C strings (NULL for SQL NULL), in the request context */
typedef struct HttpResult
{
	int			nrows;
	int			ncols;
	char	  **values;			/* nrows * ncols */
	int			sqlerrcode;		/* when the query failed */
	char	   *error;
} HttpResult;

static inline const char *
result_value(HttpResult *r, int row, int col)
{
	return r->values[row * r->ncols + col];
}

/*
 * Run a query in its own read-only transaction, as as_role (InvalidOid: the
 * worker's own superuser), cancelled after opsflags.http_timeout and waiting
 * at most a quarter of that for any lock.  On failure, false, with the
 * error's code and message in *result: the endpoint answers 503 (or 404).
 */
static bool
http_sql(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, HttpResult *result)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile bool ok = true;
	char		lock_timeout[32];

	memset(result, 0, sizeof(*result));

	/* A lock held elsewhere answers 503 soon, not after the whole timeout. */
	snprintf(lock_timeout, sizeof(lock_timeout), "%d", Max(opsflags_http_timeout_ms / 4, 1));
	SetConfigOption("lock_timeout", lock_timeout, PGC_SUSET, PGC_S_OVERRIDE);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	XactReadOnly = true;
	PG_TRY();
	{
		OpsSpiState spi;
		int			nrows;
		int			i,
					j;

		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, query->sql);
		enable_timeout_after(STATEMENT_TIMEOUT, opsflags_http_timeout_ms);
		opsflags_spi_begin(&spi, as_role);
		nrows = opsflags_spi_run(query, args, nulls, InvalidSnapshot, 0);

		MemoryContextSwitchTo(oldcontext);
		result->nrows = nrows;
		result->ncols = SPI_tuptable->tupdesc->natts;
		result->values = palloc0(sizeof(char *) * Max(nrows * result->ncols, 1));
		for (i = 0; i < nrows; i++)
			for (j = 0; j < result->ncols; j++)
				result->values[i * result->ncols + j] =
					SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, j + 1);

		opsflags_spi_end(&spi);
		disable_timeout(STATEMENT_TIMEOUT, false);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		/* A shutdown request is not the database failing to answer. */
		CHECK_FOR_INTERRUPTS();

		result->sqlerrcode = edata->sqlerrcode;
		result->error = pstrdup(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(oldcontext);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* Say why requests fail, but at most once a minute. */
	if (!ok && TimestampDifferenceExceeds(last_failure_logged, GetCurrentTimestamp(), 60000))
	{
		last_failure_logged = GetCurrentTimestamp();
		ereport(WARNING,
				(errmsg("opsflags http could not answer from the database: %s", result->error),
				 errdetail("Requests that need SQL get status 503 until it answers; this is logged at most once a minute.")));
	}
	return ok;
}

/* An endpoint's answer */
typedef struct HttpAnswer
{
	int			code;
	HttpBodyKind kind;
	StringInfoData body;
} HttpAnswer;

static void
answer_json(HttpAnswer *a, int code, const char *json)
{
	a->code = code;
	a->kind = HTTP_BODY_JSON;
	appendStringInfoString(&a->body, json);
}

static void
answer_failure(HttpAnswer *a, HttpSqlEndpoint endpoint, HttpResult *r)
{
	http_sql_unavailable(endpoint, r->error ? r->error : "no answer", &a->code, &a->kind, &a->body);
}

/* ---------- /health ---------- */

static OpsQuery health_query = {
	.sql = "SELECT h::text, h ->> 'status' FROM opsflags.health_status() h",
};

/*
 * The health_status() document and its status, as an ordinary role sees
 * them: called as pg_monitor (not an opsflags admin), so sensitive values
 * are left out as they are for any role without the right to read them.
 */
static bool
health_document(HttpResult *r)
{
	return http_sql(&health_query, NULL, NULL, ROLE_PG_MONITOR, r) && r->nrows == 1;
}

/* /health: the health_status() document; 503 when unhealthy */
static void
answer_health(HttpAnswer *a)
{
	HttpResult	r;
	const char *status;

	if (!health_document(&r))
	{
		answer_failure(a, HTTP_SQL_HEALTH, &r);
		return;
	}
	status = result_value(&r, 0, 1);
	answer_json(a, status && (strcmp(status, "healthy") == 0 || strcmp(status, "degraded") == 0) ? 200 : 503,
				result_value(&r, 0, 0));
}

/* ---------- /readyz ---------- */

/*
 * /readyz: the server takes queries, is not in maintenance mode, and a
 * standby's replay is within health.thresholds' replication_lag_s (300 s)
 * of what it has received.
 */
static OpsQuery ready_query = {
	.sql =
	"SELECT CASE WHEN m THEN 'maintenance mode is on' "
	"            WHEN lag > threshold THEN format('standby replay lags %s s (threshold %s s)', "
	"                                             round(lag::numeric, 1), threshold) END "
	"FROM (SELECT opsflags.is_maintenance_mode() AS m, "
	"             CASE WHEN NOT pg_is_in_recovery() THEN NULL "
	"                  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
	"                  ELSE date_part('epoch', now() - pg_last_xact_replay_timestamp()) END AS lag, "
	"             coalesce((opsflags.config_get('health.thresholds', 'all') ->> 'replication_lag_s')::float8, "
	"                      300) AS threshold) s",
};

static void
answer_ready(HttpAnswer *a)
{
	HttpResult	r;
	const char *reason;

	if (!http_sql(&ready_query, NULL, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		answer_failure(a, HTTP_SQL_READY, &r);
		return;
	}
	reason = result_value(&r, 0, 0);
	a->kind = HTTP_BODY_JSON;
	a->code = reason == NULL ? 200 : 503;
	if (reason == NULL)
		appendStringInfoString(&a->body, "{\"ready\": true}");
	else
	{
		appendStringInfoString(&a->body, "{\"ready\": false, \"reason\": ");
		escape_json(&a->body, reason);
		appendStringInfoString(&a->body, "}");
	}
}

/* ---------- /metrics ---------- */

/*
 * /metrics: Prometheus text format.  The families, in order; the query
 * returns (family number, value, label, value, label, value) rows ordered
 * by family.  opsflags_up comes from here, opsflags_http_requests_total
 * (the last) from the loop.
 */
typedef struct MetricFamily
{
	const char *name;
	const char *type;
	const char *help;
} MetricFamily;

static const MetricFamily metric_families[] = {
	{"opsflags_up", "gauge", "1 if the database answered this scrape, else 0"},
	{"opsflags_health_status", "gauge", "Aggregate health_status(): 1 for the current status"},
	{"opsflags_component_status", "gauge", "Status of each health_status() component: 1 for the current status"},
	{"opsflags_component_latency_seconds", "gauge", "Time each health_status() probe took"},
	{"opsflags_connections", "gauge", "Client backends by state"},
	{"opsflags_max_connections", "gauge", "The server's max_connections"},
	{"opsflags_database_size_bytes", "gauge", "Size of the database opsflags.database"},
	{"opsflags_errors_last_hour", "gauge", "ERROR, FATAL and PANIC reports of the server in the last 60 minutes"},
	{"opsflags_sampler_running", "gauge", "1 while the opsflags sampler runs"},
	{"opsflags_sampler_last_sample_timestamp_seconds", "gauge", "When the sampler last took a sample (absent before the first)"},
	{"opsflags_flag_evaluations_total", "counter", "Flag evaluations since the server started, by result"},
	{"opsflags_alerts_open", "gauge", "Open alerts by severity"},
	{"opsflags_maintenance_mode", "gauge", "1 while maintenance mode is on"},
	{"opsflags_in_recovery", "gauge", "1 on a standby"},
	{"opsflags_replication_lag_seconds", "gauge", "On a standby: how far replay is behind what was received"},
	{"opsflags_http_requests_total", "counter", "Requests this HTTP server answered since it started, by status code"},
};

static OpsQuery metrics_query = {
	.sql =
	"WITH h AS (SELECT $1 AS doc), "
	"     st(s) AS (VALUES ('healthy'), ('degraded'), ('unhealthy')), "
	"     comp AS (SELECT c.key, c.value FROM h, jsonb_each(h.doc -> 'components') c), "
	"     w AS (SELECT opsflags.worker_status() AS doc) "
	"SELECT 1, (h.doc ->> 'status' = st.s)::int::text, 'status', st.s, NULL, NULL FROM h, st "
	"UNION ALL "
	"SELECT 2, (comp.value ->> 'status' = st.s)::int::text, 'component', comp.key, 'status', st.s FROM comp, st "
	"UNION ALL "
	"SELECT 3, ((comp.value ->> 'latencyMs')::float8 / 1000)::text, 'component', comp.key, NULL, NULL FROM comp "
	"UNION ALL "
	"SELECT 4, count(a.pid)::text, 'state', s.state, NULL, NULL "
	"  FROM (VALUES ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'), "
	"               ('fastpath function call')) s(state) "
	"  LEFT JOIN pg_stat_activity a ON a.state = s.state AND a.backend_type = 'client backend' "
	"  GROUP BY s.state "
	"UNION ALL "
	"SELECT 5, current_setting('max_connections'), NULL, NULL, NULL, NULL "
	"UNION ALL "
	"SELECT 6, pg_database_size(current_database())::text, 'database', current_database(), NULL, NULL "
	"UNION ALL "
	"SELECT 7, opsflags.errors_last_hour()::text, NULL, NULL, NULL, NULL "
	"UNION ALL "
	"SELECT 8, (w.doc ->> 'running')::boolean::int::text, NULL, NULL, NULL, NULL FROM w "
	"UNION ALL "
	"SELECT 9, date_part('epoch', (w.doc ->> 'last_sample_at')::timestamptz)::text, NULL, NULL, NULL, NULL "
	"  FROM w WHERE w.doc ->> 'last_sample_at' IS NOT NULL "
	"UNION ALL "
	"SELECT 10, r.n::text, 'flag', u.flag_key, 'result', r.result "
	"  FROM opsflags.flag_usage_counts() u, "
	"       LATERAL (VALUES ('true', u.true_count), ('false', u.false_count)) r(result, n) "
	"UNION ALL "
	"SELECT 11, count(a.id)::text, 'severity', s.severity, NULL, NULL "
	"  FROM (VALUES ('info'), ('warning'), ('critical')) s(severity) "
	"  LEFT JOIN opsflags.alerts a ON a.severity = s.severity AND NOT a.resolved "
	"  GROUP BY s.severity "
	"UNION ALL "
	"SELECT 12, opsflags.is_maintenance_mode()::int::text, NULL, NULL, NULL, NULL "
	"UNION ALL "
	"SELECT 13, pg_is_in_recovery()::int::text, NULL, NULL, NULL, NULL "
	"UNION ALL "
	"SELECT 14, CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
	"                ELSE date_part('epoch', now() - pg_last_xact_replay_timestamp()) END::text, "
	"       NULL, NULL, NULL, NULL WHERE pg_is_in_recovery() "
	"ORDER BY 1, 4, 6",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

/* A label value with \, " and newline escaped */
static void
append_label_value(StringInfo buf, const char *v)
{
	for (; *v; v++)
	{
		if (*v == '\\' || *v == '"')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, *v);
		}
		else if (*v == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *v);
	}
}

/* A float8's text as Prometheus writes it */
static const char *
prometheus_value(const char *v)
{
	if (strcmp(v, "Infinity") == 0)
		return "+Inf";
	if (strcmp(v, "-Infinity") == 0)
		return "-Inf";
	return v;
}

static void
append_family(StringInfo buf, int family)
{
	const MetricFamily *f = &metric_families[family];

	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

/*
 * The families from the database's answer (up: the rows of r), all but the
 * loop's own last one, which it appends.
 */
static void
metrics_body(StringInfo buf, bool up, HttpResult *r)
{
	int			family;
	int			row = 0;

	append_family(buf, 0);
	appendStringInfo(buf, "opsflags_up %d\n", up ? 1 : 0);
	for (family = 1; family < (int) lengthof(metric_families) - 1; family++)
	{
		append_family(buf, family);
		for (; up && row < r->nrows && atoi(result_value(r, row, 0)) == family; row++)
		{
			const char *value = result_value(r, row, 1);
			int			l;

			if (value == NULL)
				continue;
			appendStringInfoString(buf, metric_families[family].name);
			for (l = 0; l < 2 && result_value(r, row, 2 + 2 * l) != NULL; l++)
			{
				appendStringInfo(buf, "%c%s=\"", l == 0 ? '{' : ',', result_value(r, row, 2 + 2 * l));
				append_label_value(buf, result_value(r, row, 3 + 2 * l) ? result_value(r, row, 3 + 2 * l) : "");
				appendStringInfoChar(buf, '"');
			}
			if (l > 0)
				appendStringInfoChar(buf, '}');
			appendStringInfo(buf, " %s\n", prometheus_value(value));
		}
	}
}

void
http_metrics_requests_header(StringInfo buf)
{
	append_family(buf, lengthof(metric_families) - 1);
}

/* /metrics stays 200 when the database does not answer, with opsflags_up 0. */
static void
answer_metrics(HttpAnswer *a)
{
	HttpResult	r;
	bool		up;

	up = health_document(&r);
	if (up)
	{
		Datum		doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));

		up = http_sql(&metrics_query, &doc, NULL, InvalidOid, &r);
	}
	a->code = 200;
	a->kind = HTTP_BODY_METRICS;
	metrics_body(&a->body, up, &r);
}

/* ---------- /flags/<environment> ---------- */

/* /flags/<environment>: flags_for_environment(), 404 for no such environment */
static OpsQuery flags_query = {
	.sql = "SELECT opsflags.flags_for_environment($1)::text",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

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
			a->kind = HTTP_BODY_JSON;
			appendStringInfoString(&a->body, "{\"error\": ");
			escape_json(&a->body, r.error);
			appendStringInfoString(&a->body, "}");
		}
		else
			answer_failure(a, HTTP_SQL_FLAGS, &r);
		return;
	}
	answer_json(a, 200, result_value(&r, 0, 0));
}

/* ---------- /api/status ---------- */

/*
 * /api/status: what the status page shows, for opsflags.environment:
 * health, 24 h of samples (each one while there are few, else at most 288
 * time buckets: health_samples()), flags with what a request without a user is
 * served and why (feature_explain()), the last 10 deployments and the open
 * alerts.  See src/status_page.html.
 */
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
answer_status(HttpAnswer *a)
{
	HttpResult	r;
	Datum		doc;

	if (!health_document(&r))
	{
		answer_failure(a, HTTP_SQL_STATUS, &r);
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));
	if (!http_sql(&status_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		answer_failure(a, HTTP_SQL_STATUS, &r);
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));
	if (!http_sql(&status_redact_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		answer_failure(a, HTTP_SQL_STATUS, &r);
		return;
	}
	answer_json(a, 200, result_value(&r, 0, 0));
}

/* ---------- answers without the database ---------- */

/*
 * What an endpoint answers when the database did not: /metrics 200 with
 * opsflags_up 0, /readyz {"ready": false, "reason": ...}, the others
 * {"status": "unhealthy", "error": ...}; all but /metrics with 503.
 */
void
http_sql_unavailable(HttpSqlEndpoint endpoint, const char *error,
					 int *code, HttpBodyKind *kind, StringInfo body)
{
	*kind = HTTP_BODY_JSON;
	*code = 503;
	switch (endpoint)
	{
		case HTTP_SQL_METRICS:
			*code = 200;
			*kind = HTTP_BODY_METRICS;
			metrics_body(body, false, NULL);
			break;
		case HTTP_SQL_READY:
			appendStringInfoString(body, "{\"ready\": false, \"reason\": ");
			escape_json(body, error);
			appendStringInfoString(body, "}");
			break;
		default:
			appendStringInfoString(body, "{\"status\": \"unhealthy\", \"error\": ");
			escape_json(body, error);
			appendStringInfoString(body, "}");
			break;
	}
}

/* ---------- the worker ---------- */

static void
answer(HttpSqlRequest *req, HttpAnswer *a)
{
	/* Waited too long already: the client has been kept long enough. */
	if (TimestampDifferenceExceeds(req->queued_at, GetCurrentTimestamp(), opsflags_http_timeout_ms))
	{
		http_sql_unavailable(req->endpoint, "the database did not answer in time",
							 &a->code, &a->kind, &a->body);
		return;
	}
	switch ((HttpSqlEndpoint) req->endpoint)
	{
		case HTTP_SQL_HEALTH:
			answer_health(a);
			break;
		case HTTP_SQL_READY:
			answer_ready(a);
			break;
		case HTTP_SQL_METRICS:
			answer_metrics(a);
			break;
		case HTTP_SQL_FLAGS:
			req->arg[sizeof(req->arg) - 1] = '\0';
			answer_flags(a, req->arg);
			break;
		case HTTP_SQL_STATUS:
			answer_status(a);
			break;
		default:
			elog(ERROR, "unknown opsflags http endpoint %d", req->endpoint);
	}
}

/*
 * Started by the loop with its segment's handle; exits when the loop
 * detaches (it stopped) or on SIGTERM.
 */
void
opsflags_http_sql_main(Datum arg)
{
	dsm_segment *seg;
	shm_mq	   *request_queue;
	shm_mq	   *answer_queue;
	shm_mq_handle *requests;
	shm_mq_handle *answers;
	MemoryContext request_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "opsflags http sql");
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("opsflags http sql could not map its queues")));
	/* The queues live as long as this process, across its transactions. */
	dsm_pin_mapping(seg);
	request_queue = (shm_mq *) dsm_segment_address(seg);
	answer_queue = (shm_mq *) ((char *) request_queue + HTTP_SQL_REQUEST_QUEUE);
	shm_mq_set_receiver(request_queue, MyProc);
	shm_mq_set_sender(answer_queue, MyProc);
	requests = shm_mq_attach(request_queue, seg, NULL);
	answers = shm_mq_attach(answer_queue, seg, NULL);

	BackgroundWorkerInitializeConnection(opsflags_database, NULL, 0);
	pgstat_report_appname("opsflags http sql");

	/* Fixed queries only, resolved in pg_catalog; evaluations are not usage. */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("opsflags.track_usage", "off", PGC_SUSET, PGC_S_OVERRIDE);

	request_context = AllocSetContextCreate(TopMemoryContext, "opsflags http sql request",
											ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		HttpSqlRequest req;
		HttpSqlAnswer head;
		HttpAnswer	a;

		MemoryContextSwitchTo(request_context);
		pgstat_report_activity(STATE_IDLE, NULL);
		if (shm_mq_receive(requests, &nbytes, &data, false) != SHM_MQ_SUCCESS)
			proc_exit(0);		/* the loop is gone */
		if (nbytes != sizeof(req))
			elog(ERROR, "opsflags http sql received a message of %zu bytes", nbytes);
		memcpy(&req, data, sizeof(req));

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		memset(&a, 0, sizeof(a));
		initStringInfo(&a.body);
		/* room for the header, filled in once the answer is known */
		memset(&head, 0, sizeof(head));
		appendBinaryStringInfo(&a.body, (char *) &head, sizeof(head));
		answer(&req, &a);
		head.id = req.id;
		head.code = a.code;
		head.kind = a.kind;
		memcpy(a.body.data, &head, sizeof(head));

		if (shm_mq_send(answers, a.body.len, a.body.data, false, true) != SHM_MQ_SUCCESS)
			proc_exit(0);
		MemoryContextReset(request_context);
	}
}
