/*
 * http.c
 *	  The background worker "opsflags http": a small HTTP/1.1 server for load
 *	  balancers, Kubernetes probes, Prometheus and people.  GET and HEAD on
 *	  /livez, /readyz, /health (and /api/health), /metrics, /flags/<env>,
 *	  /api/status and the status page at /.
 *
 * Off by default (opsflags.http_port = 0); opsflags.http_listen and
 * opsflags.http_port change on reload.  One process, one event loop on
 * PostgreSQL's WaitEventSet: the listening sockets, the clients, the latch
 * and postmaster death.  Sockets are non-blocking; a request head is at
 * most HTTP_MAX_REQUEST bytes and must arrive within opsflags.http_timeout
 * of the connection's last response (or its accept), a response must be
 * taken within the same time (a client that has not taken it by then is
 * reset, so that the kernel does not go on holding it either), and there
 * are at most opsflags.http_max_connections clients, each also counted
 * against fd.c's budget of descriptors: a slow client costs a slot for
 * that long, never the loop.  A pipelining client gets at most
 * HTTP_REQUESTS_PER_TURN answers per turn of the loop, and nothing after a
 * response that closes its connection.  Out of descriptors, the loop stops
 * accepting until a connection closes.  Endpoints that need SQL run one
 * read-only transaction each, with search_path pinned to pg_catalog,
 * cancelled after opsflags.http_timeout; a database that cannot answer
 * gives 503 and the loop carries on.  The worker is the bootstrap superuser, but it calls
 * health_status() as pg_monitor, like any ordinary role, so that sensitive
 * values (app_version, commit_sha, the queue query's errors) stay hidden;
 * no other configuration value is read, so no secret can be served.
 *
 * Like the sampler, it connects to opsflags.database; while that database
 * does not exist it serves connected to none (SQL endpoints answer 503) and
 * restarts once it is there.
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif

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
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PGDLLEXPORT void opsflags_http_main(Datum arg);

#define HTTP_MAX_REQUEST		8192	/* request line and headers */
#define HTTP_MAX_LISTEN			4	/* addresses of one opsflags.http_listen */
#define HTTP_MAX_CONNECTIONS	1024
#define HTTP_RETRY_LISTEN_MS	10000
#define HTTP_CHECK_DATABASE_MS	5000
#define HTTP_ACCEPT_PAUSE_MS	1000	/* out of file descriptors: wait that long */
#define HTTP_REQUESTS_PER_TURN	8	/* pipelined requests of one client per wakeup */
#define HTTP_DRAIN_PER_TURN		65536	/* bytes a lingering client may make us read per wakeup */

char	   *opsflags_http_listen = NULL;
int			opsflags_http_port = 0;
int			opsflags_http_max_connections = 32;
int			opsflags_http_timeout_ms = 5000;

/* The status page (src/status_page.html, made a C string by the Makefile) */
static const char status_page[] =
#include "status_page.h"
			;

/* Shared: whether the next start may connect to opsflags.database */
typedef struct HttpShared
{
	slock_t		mutex;
	bool		database_ready;
} HttpShared;

static HttpShared *http_shared = NULL;

typedef struct HttpConn
{
	pgsocket	sock;
	MemoryContext context;		/* everything of this connection */
	TimestampTz deadline;		/* closed if the current step is not done */
	TimestampTz take_by;		/* the last response must be taken by then */
	char		in[HTTP_MAX_REQUEST];
	int			inlen;
	StringInfoData out;			/* response bytes not yet sent */
	int			outpos;
	bool		close_after;	/* close once out is sent */
	bool		lingering;		/* sent all, write side shut: reading to EOF */
	bool		more;			/* a request may be buffered whose turn is next */
} HttpConn;

static pgsocket listen_socks[HTTP_MAX_LISTEN];
static int	nlisten = 0;
static char *bound_listen = NULL;	/* what the sockets are bound to */
static int	bound_port = 0;
static TimestampTz retry_listen_at = 0;

static HttpConn *conns[HTTP_MAX_CONNECTIONS];
static int	nconns = 0;
static bool events_changed = true;	/* rebuild the WaitEventSet */
static TimestampTz accept_paused_until = 0; /* out of file descriptors */
static TimestampTz accept_failure_logged = 0;

static bool connected = false;	/* to opsflags.database */
static MemoryContext request_context = NULL;
static TimestampTz last_failure_logged = 0;

/* requests answered, by status code, for /metrics */
#define N_COUNTED_CODES 10
static const int counted_codes[N_COUNTED_CODES] = {200, 400, 404, 405, 408, 413, 414, 431, 503, 505};
static uint64 requests_by_code[N_COUNTED_CODES];

static void
count_response(int code)
{
	int			i;

	for (i = 0; i < N_COUNTED_CODES; i++)
		if (counted_codes[i] == code)
			requests_by_code[i]++;
}

/* ---------- shared state ---------- */

static void
http_shmem_attach(void)
{
	bool		found;

	http_shared = ShmemInitStruct("opsflags http", sizeof(HttpShared), &found);
	if (!found)
	{
		memset(http_shared, 0, sizeof(HttpShared));
		SpinLockInit(&http_shared->mutex);
	}
}

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
 * worker's own superuser), cancelled after opsflags.http_timeout.  On
 * failure, false, with the error's code and message in *result: the loop
 * answers 503 (or 404) and goes on.
 */
static bool
http_sql(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, HttpResult *result)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile bool ok = true;

	memset(result, 0, sizeof(*result));
	if (!connected)
	{
		result->sqlerrcode = ERRCODE_UNDEFINED_DATABASE;
		result->error = psprintf("database \"%s\" does not exist", opsflags_database);
		return false;
	}

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
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, j + 1);

				result->values[i * result->ncols + j] = v;
			}

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

/* ---------- responses ---------- */

static const char *
status_text(int code)
{
	switch (code)
	{
		case 200:
			return "OK";
		case 400:
			return "Bad Request";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 408:
			return "Request Timeout";
		case 413:
			return "Content Too Large";
		case 414:
			return "URI Too Long";
		case 431:
			return "Request Header Fields Too Large";
		case 503:
			return "Service Unavailable";
		case 505:
			return "HTTP Version Not Supported";
	}
	return "Error";
}

typedef struct HttpRequest
{
	bool		head;			/* HEAD: headers only */
	bool		keep_alive;
	char	   *path;			/* without the query string */
} HttpRequest;

/* Queue a whole response on the connection. */
static void
respond(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
		const char *body, size_t bodylen)
{
	MemoryContext old = MemoryContextSwitchTo(conn->context);

	if (req == NULL || !req->keep_alive)
		conn->close_after = true;

	appendStringInfo(&conn->out,
					 "HTTP/1.1 %d %s\r\n"
					 "Content-Type: %s\r\n"
					 "Content-Length: %zu\r\n"
					 "Cache-Control: no-store\r\n"
					 "X-Content-Type-Options: nosniff\r\n",
					 code, status_text(code), content_type, bodylen);
	if (strncmp(content_type, "text/html", 9) == 0)
		appendStringInfoString(&conn->out,
							   "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
							   "style-src 'unsafe-inline'; img-src data:; connect-src 'self'\r\n");
	if (code == 405)
		appendStringInfoString(&conn->out, "Allow: GET, HEAD\r\n");
	appendStringInfo(&conn->out, "Connection: %s\r\n\r\n",
					 conn->close_after ? "close" : "keep-alive");
	if (req == NULL || !req->head)
		appendBinaryStringInfo(&conn->out, body, bodylen);
	MemoryContextSwitchTo(old);

	count_response(code);
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
	conn->take_by = conn->deadline;
}

static void
respond_text(HttpConn *conn, HttpRequest *req, int code, const char *text)
{
	respond(conn, req, code, "text/plain; charset=utf-8", text, strlen(text));
}

static void
respond_json(HttpConn *conn, HttpRequest *req, int code, const char *json)
{
	respond(conn, req, code, "application/json", json, strlen(json));
}

/* {"status": "unhealthy", "error": "..."} for a database that did not answer */
static void
respond_sql_failure(HttpConn *conn, HttpRequest *req, HttpResult *r)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"status\": \"unhealthy\", \"error\": ");
	escape_json(&buf, r->error);
	appendStringInfoString(&buf, "}");
	respond_json(conn, req, 503, buf.data);
}

/* ---------- endpoints ---------- */

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
serve_health(HttpConn *conn, HttpRequest *req)
{
	HttpResult	r;
	const char *status;

	if (!health_document(&r))
	{
		respond_sql_failure(conn, req, &r);
		return;
	}
	status = result_value(&r, 0, 1);
	respond_json(conn, req,
				 status && (strcmp(status, "healthy") == 0 || strcmp(status, "degraded") == 0) ? 200 : 503,
				 result_value(&r, 0, 0));
}

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
serve_ready(HttpConn *conn, HttpRequest *req)
{
	HttpResult	r;
	StringInfoData buf;
	const char *reason;

	if (!http_sql(&ready_query, NULL, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"ready\": false, \"reason\": ");
		escape_json(&buf, r.error ? r.error : "no answer");
		appendStringInfoString(&buf, "}");
		respond_json(conn, req, 503, buf.data);
		return;
	}
	reason = result_value(&r, 0, 0);
	initStringInfo(&buf);
	if (reason == NULL)
		appendStringInfoString(&buf, "{\"ready\": true}");
	else
	{
		appendStringInfoString(&buf, "{\"ready\": false, \"reason\": ");
		escape_json(&buf, reason);
		appendStringInfoString(&buf, "}");
	}
	respond_json(conn, req, reason == NULL ? 200 : 503, buf.data);
}

/*
 * /metrics: Prometheus text format.  The families, in order; the query
 * returns (family number, value, label, value, label, value) rows ordered
 * by family.  opsflags_up and opsflags_http_requests_total come from here.
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

static void
serve_metrics(HttpConn *conn, HttpRequest *req)
{
	HttpResult	r;
	StringInfoData buf;
	bool		up;
	int			family;
	int			row = 0;
	int			i;

	up = health_document(&r);
	if (up)
	{
		Datum		doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));

		up = http_sql(&metrics_query, &doc, NULL, InvalidOid, &r);
	}
	initStringInfo(&buf);
	append_family(&buf, 0);
	appendStringInfo(&buf, "opsflags_up %d\n", up ? 1 : 0);
	for (family = 1; family < (int) lengthof(metric_families) - 1; family++)
	{
		append_family(&buf, family);
		for (; up && row < r.nrows && atoi(result_value(&r, row, 0)) == family; row++)
		{
			const char *value = result_value(&r, row, 1);
			int			l;

			if (value == NULL)
				continue;
			appendStringInfoString(&buf, metric_families[family].name);
			for (l = 0; l < 2 && result_value(&r, row, 2 + 2 * l) != NULL; l++)
			{
				appendStringInfo(&buf, "%c%s=\"", l == 0 ? '{' : ',', result_value(&r, row, 2 + 2 * l));
				append_label_value(&buf, result_value(&r, row, 3 + 2 * l) ? result_value(&r, row, 3 + 2 * l) : "");
				appendStringInfoChar(&buf, '"');
			}
			if (l > 0)
				appendStringInfoChar(&buf, '}');
			appendStringInfo(&buf, " %s\n", prometheus_value(value));
		}
	}
	append_family(&buf, family);
	for (i = 0; i < N_COUNTED_CODES; i++)
		appendStringInfo(&buf, "%s{code=\"%d\"} " UINT64_FORMAT "\n",
						 metric_families[family].name, counted_codes[i], requests_by_code[i]);
	respond(conn, req, 200, "text/plain; version=0.0.4; charset=utf-8", buf.data, buf.len);
}

/* /flags/<environment>: flags_for_environment(), 404 for no such environment */
static OpsQuery flags_query = {
	.sql = "SELECT opsflags.flags_for_environment($1)::text",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

static void
serve_flags(HttpConn *conn, HttpRequest *req, const char *environment)
{
	HttpResult	r;
	Datum		arg = CStringGetTextDatum(environment);

	if (!http_sql(&flags_query, &arg, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		if (r.sqlerrcode == ERRCODE_UNDEFINED_OBJECT)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			appendStringInfoString(&buf, "{\"error\": ");
			escape_json(&buf, r.error);
			appendStringInfoString(&buf, "}");
			respond_json(conn, req, 404, buf.data);
		}
		else
			respond_sql_failure(conn, req, &r);
		return;
	}
	respond_json(conn, req, 200, result_value(&r, 0, 0));
}

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
serve_status(HttpConn *conn, HttpRequest *req)
{
	HttpResult	r;
	Datum		doc;

	if (!health_document(&r))
	{
		respond_sql_failure(conn, req, &r);
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));
	if (!http_sql(&status_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		respond_sql_failure(conn, req, &r);
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(result_value(&r, 0, 0)));
	if (!http_sql(&status_redact_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		respond_sql_failure(conn, req, &r);
		return;
	}
	respond_json(conn, req, 200, result_value(&r, 0, 0));
}

/* An environment name as opsflags.environments allows it */
static bool
valid_environment(const char *p)
{
	const char *s = p;

	if (*p == '\0' || strlen(p) > 63)
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  (p != s && (*p == '_' || *p == '-'))))
			return false;
	return true;
}

static void
route(HttpConn *conn, HttpRequest *req)
{
	const char *p = req->path;

	if (strcmp(p, "/") == 0 || strcmp(p, "/index.html") == 0)
		respond(conn, req, 200, "text/html; charset=utf-8", status_page, sizeof(status_page) - 1);
	else if (strcmp(p, "/livez") == 0)
		respond_text(conn, req, 200, "ok\n");
	else if (strcmp(p, "/readyz") == 0)
		serve_ready(conn, req);
	else if (strcmp(p, "/health") == 0 || strcmp(p, "/api/health") == 0)
		serve_health(conn, req);
	else if (strcmp(p, "/metrics") == 0)
		serve_metrics(conn, req);
	else if (strcmp(p, "/api/status") == 0)
		serve_status(conn, req);
	else if (strncmp(p, "/flags/", 7) == 0 && valid_environment(p + 7))
		serve_flags(conn, req, p + 7);
	else
		respond_text(conn, req, 404, "not found\n");
}

/* ---------- requests ---------- */

/* Does header line [line, end) have this name?  Returns its value or NULL. */
static char *
header_value(char *line, char *end, const char *name)
{
	size_t		n = strlen(name);

	if ((size_t) (end - line) <= n || pg_strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	while (line < end && (*line == ' ' || *line == '\t'))
		line++;
	return line;
}

/*
 * Answer the complete request head in conn->in[0, headlen).  A malformed
 * request gets a 4xx and the connection closes after it.
 */
static void
handle_request(HttpConn *conn, int headlen)
{
	HttpRequest req;
	char	   *head = conn->in;
	char	   *end = head + headlen;
	char	   *line_end;
	char	   *method,
			   *target,
			   *version,
			   *p;
	bool		http10;

	memset(&req, 0, sizeof(req));
	if (memchr(head, '\0', headlen) != NULL)
	{
		respond_text(conn, NULL, 400, "malformed request\n");
		return;
	}
	head[headlen - 1] = '\0';	/* the last '\n' of the blank line */

	/* request line: METHOD SP target SP HTTP/1.x */
	line_end = strstr(head, "\r\n");
	*line_end = '\0';			/* there is one: the head ends with two */
	method = head;
	target = strchr(method, ' ');
	version = target ? strchr(target + 1, ' ') : NULL;
	if (target == NULL || version == NULL || strchr(version + 1, ' ') != NULL)
	{
		respond_text(conn, NULL, 400, "malformed request line\n");
		return;
	}
	*target++ = '\0';
	*version++ = '\0';
	if (strcmp(version, "HTTP/1.1") == 0)
		http10 = false;
	else if (strcmp(version, "HTTP/1.0") == 0)
		http10 = true;
	else
	{
		respond_text(conn, NULL, strncmp(version, "HTTP/", 5) == 0 ? 505 : 400,
					 "only HTTP/1.0 and HTTP/1.1 are served\n");
		return;
	}
	if (target[0] != '/')
	{
		respond_text(conn, NULL, 400, "the request target must be a path\n");
		return;
	}
	req.keep_alive = !http10;

	/* headers: only Connection and a body matter */
	for (p = line_end + 2; p < end && *p != '\r'; p = line_end + 2)
	{
		char	   *v;

		line_end = strstr(p, "\r\n");
		if (line_end == NULL)
			break;
		if ((v = header_value(p, line_end, "Connection")) != NULL)
		{
			if (pg_strncasecmp(v, "close", 5) == 0)
				req.keep_alive = false;
			else if (pg_strncasecmp(v, "keep-alive", 10) == 0)
				req.keep_alive = true;
		}
		else if (header_value(p, line_end, "Transfer-Encoding") != NULL ||
				 ((v = header_value(p, line_end, "Content-Length")) != NULL && atol(v) != 0))
		{
			respond_text(conn, NULL, 413, "request bodies are not accepted\n");
			return;
		}
	}

	req.head = strcmp(method, "HEAD") == 0;
	if (!req.head && strcmp(method, "GET") != 0)
	{
		respond_text(conn, &req, 405, "only GET and HEAD are served\n");
		return;
	}
	req.path = target;
	if ((p = strchr(target, '?')) != NULL)
		*p = '\0';
	route(conn, &req);
}

/* ---------- connections ---------- */

/*
 * Bytes of responses the client has not taken: still queued here or, where
 * the kernel tells, in the socket's send queue.
 */
static int
untaken_bytes(HttpConn *conn)
{
	int			n = conn->out.len - conn->outpos;

#ifdef SIOCOUTQ
	{
		int			queued = 0;

		if (ioctl(conn->sock, SIOCOUTQ, &queued) == 0 && queued > 0)
			n += queued;
	}
#endif
	return n;
}

/*
 * Close connection i.  abort: reset it, discarding what the client has not
 * taken, rather than leave the kernel holding that for a client that does
 * not read.
 */
static void
close_conn(int i, bool abort)
{
	HttpConn   *conn = conns[i];

	if (abort)
	{
		struct linger lg;

		lg.l_onoff = 1;
		lg.l_linger = 0;
		(void) setsockopt(conn->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	closesocket(conn->sock);
	ReleaseExternalFD();
	MemoryContextDelete(conn->context);
	conns[i] = conns[--nconns];
	events_changed = true;
	/* a descriptor is free again */
	accept_paused_until = 0;
}

static bool read_conn(HttpConn *conn);

/*
 * At the limit: close the connections whose clients are gone but not yet
 * seen to be (a lingering one at its end, an idle one closed), so that a
 * newcomer gets their slot rather than a 503.
 */
static void
reap_gone_clients(void)
{
	int			i = 0;

	while (i < nconns)
	{
		HttpConn   *conn = conns[i];
		char		c;

		if (conn->out.len == 0 &&
			(conn->lingering ? !read_conn(conn) :
			 conn->inlen == 0 && recv(conn->sock, &c, 1, MSG_PEEK) == 0))
		{
			close_conn(i, false);
			continue;
		}
		i++;
	}
}

static void
accept_clients(pgsocket lsock)
{
	bool		reaped = false;

	for (;;)
	{
		pgsocket	sock = accept(lsock, NULL, NULL);
		HttpConn   *conn;
		MemoryContext cxt;
		int			on = 1;

		if (sock == PGINVALID_SOCKET)
		{
			int			save_errno = errno;
			bool		exhausted;

			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
				return;

			/*
			 * Out of descriptors or memory, the listening socket stays
			 * readable: stop waiting on it until a connection closes or a
			 * moment has passed.  Say so at most once a minute.
			 */
			exhausted = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
			if (exhausted)
			{
				accept_paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_ACCEPT_PAUSE_MS);
				events_changed = true;
			}
			if (TimestampDifferenceExceeds(accept_failure_logged, GetCurrentTimestamp(), 60000))
			{
				accept_failure_logged = GetCurrentTimestamp();
				errno = save_errno;
				ereport(WARNING,
						(errcode_for_socket_access(),
						 errmsg("opsflags http could not accept a connection: %m"),
						 exhausted ? errdetail("New clients wait until a connection closes.") : 0,
						 errhint("This is logged at most once a minute.")));
			}
			return;
		}

		/*
		 * A client holds a descriptor for up to opsflags.http_timeout: count
		 * it as PostgreSQL's fd.c asks, so that the server's own files are
		 * not starved of descriptors.
		 */
		if (nconns >= opsflags_http_max_connections && !reaped)
		{
			reap_gone_clients();
			reaped = true;
		}
		if (nconns >= opsflags_http_max_connections || !AcquireExternalFD())
		{
			static const char busy[] =
				"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
				"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

			/* Best effort: the client is told, the slot is not taken. */
			(void) pg_set_noblock(sock);
			(void) send(sock, busy, sizeof(busy) - 1, 0);
			closesocket(sock);
			count_response(503);
			continue;
		}
		if (!pg_set_noblock(sock))
		{
			closesocket(sock);
			ReleaseExternalFD();
			continue;
		}
		(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

		cxt = AllocSetContextCreate(TopMemoryContext, "opsflags http connection",
									ALLOCSET_SMALL_SIZES);
		conn = MemoryContextAllocZero(cxt, sizeof(HttpConn));
		conn->sock = sock;
		conn->context = cxt;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
		MemoryContextSwitchTo(cxt);
		initStringInfo(&conn->out);
		MemoryContextSwitchTo(request_context);
		conns[nconns++] = conn;
		events_changed = true;
	}
}

/* Send what is queued.  False when the connection is done with. */
static bool
flush_conn(HttpConn *conn)
{
	while (conn->outpos < conn->out.len)
	{
		ssize_t		n = send(conn->sock, conn->out.data + conn->outpos,
							 conn->out.len - conn->outpos, 0);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;	/* wait until writeable */
			return false;
		}
		conn->outpos += n;
	}
	resetStringInfo(&conn->out);
	conn->outpos = 0;
	if (conn->close_after)
	{
		/*
		 * Closing with unread input would reset the connection, and the
		 * client could lose the response: shut our side and read what it
		 * still sends until it closes (or a second passes).
		 */
		shutdown(conn->sock, SHUT_WR);
		conn->lingering = true;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 Min(opsflags_http_timeout_ms, 1000));
		events_changed = true;
		return true;
	}
	/* Now idle: the next request has the timeout from here. */
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
	return true;
}

/* Find the end of a request head; returns its length or 0. */
static int
head_length(HttpConn *conn)
{
	int			i;

	for (i = 3; i < conn->inlen; i++)
		if (conn->in[i] == '\n' && conn->in[i - 1] == '\r' &&
			conn->in[i - 2] == '\n' && conn->in[i - 3] == '\r')
			return i + 1;
	return 0;
}

/*
 * Read what the client sent and answer the complete requests in it, one at
 * a time (a pipelined one waits until the previous response is sent), at
 * most HTTP_REQUESTS_PER_TURN per call: conn->more says the rest wait for
 * the loop's next turn, so that one busy client cannot starve the others.
 * Nothing after a response that closes the connection is answered.  False
 * when the connection is done with.
 */
static bool
read_conn(HttpConn *conn)
{
	bool		was_writing = conn->out.len > 0;
	int			served = 0;

	conn->more = false;
	while (conn->out.len == 0 && !conn->lingering)
	{
		int			headlen = head_length(conn);

		if (headlen > 0)
		{
			if (served++ == HTTP_REQUESTS_PER_TURN)
			{
				conn->more = true;
				break;
			}
			handle_request(conn, headlen);
			MemoryContextReset(request_context);
			memmove(conn->in, conn->in + headlen, conn->inlen - headlen);
			conn->inlen -= headlen;
			if (!flush_conn(conn))
				return false;
			continue;
		}
		if (conn->inlen == HTTP_MAX_REQUEST)
		{
			respond_text(conn, NULL, 431, "request head too large\n");
			if (!flush_conn(conn))
				return false;
			continue;
		}
		else
		{
			ssize_t		n = recv(conn->sock, conn->in + conn->inlen,
								 HTTP_MAX_REQUEST - conn->inlen, 0);

			if (n == 0)
				return false;	/* the client closed */
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				return false;
			}
			conn->inlen += n;
		}
	}

	/*
	 * Lingering: discard what the client still sends until it closes, a
	 * bounded amount per turn (what is left keeps the socket readable).
	 */
	if (conn->lingering)
	{
		int			drained = 0;

		while (drained < HTTP_DRAIN_PER_TURN)
		{
			char		discard[4096];
			ssize_t		n = recv(conn->sock, discard, sizeof(discard), 0);

			if (n == 0)
				return false;
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				return errno == EAGAIN || errno == EWOULDBLOCK;
			}
			drained += n;
		}
	}
	if (was_writing != (conn->out.len > 0))
		events_changed = true;
	return true;
}

/* Close connections past their deadline; returns ms to the next one (-1: none). */
static long
expire_conns(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	int			i = 0;

	while (i < nconns)
	{
		HttpConn   *conn = conns[i];

		if (conn->deadline <= now)
		{
			int			untaken = untaken_bytes(conn);

			/*
			 * A client that is still taking its last response may do so
			 * until opsflags.http_timeout after it was queued, lingering or
			 * not.
			 */
			if (conn->lingering && untaken > 0 && conn->take_by > now)
				conn->deadline = conn->take_by;
			else
			{
				/*
				 * A request begun but not finished is told so; an idle one
				 * is just closed; one whose response was not taken in time
				 * is reset.
				 */
				if (untaken == 0 && conn->inlen > 0 && !conn->lingering)
				{
					respond_text(conn, NULL, 408, "request not received in time\n");
					(void) send(conn->sock, conn->out.data, conn->out.len, 0);
				}
				close_conn(i, untaken > 0);
				continue;
			}
		}
		if (next == 0 || conn->deadline < next)
			next = conn->deadline;
		i++;
	}
	if (next == 0)
		return -1;
	return TimestampDifferenceMilliseconds(now, next) + 1;
}

/* ---------- listening ---------- */

static void
close_listeners(void)
{
	int			i;

	for (i = 0; i < nlisten; i++)
	{
		closesocket(listen_socks[i]);
		ReleaseExternalFD();
	}
	nlisten = 0;
	bound_port = 0;
	if (bound_listen)
		pfree(bound_listen);
	bound_listen = NULL;
	events_changed = true;
}

/* Listen on opsflags.http_listen (one name: every address it has; "*": all). */
static void
open_listeners(void)
{
	struct addrinfo hints;
	struct addrinfo *addrs,
			   *ai;
	char		port[16];
	const char *node;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	node = strcmp(opsflags_http_listen, "*") == 0 || opsflags_http_listen[0] == '\0' ? NULL : opsflags_http_listen;
	snprintf(port, sizeof(port), "%d", opsflags_http_port);

	retry_listen_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_RETRY_LISTEN_MS);
	rc = getaddrinfo(node, port, &hints, &addrs);
	if (rc != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("opsflags http could not resolve \"%s\": %s", opsflags_http_listen, gai_strerror(rc)),
				 errhint("Set opsflags.http_listen to an address of this host, or \"*\".")));
		return;
	}
	for (ai = addrs; ai != NULL && nlisten < HTTP_MAX_LISTEN; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			on = 1;

		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
#endif
		if (bind(sock, ai->ai_addr, ai->ai_addrlen) < 0 || listen(sock, 128) < 0 ||
			!pg_set_noblock(sock))
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("opsflags http could not listen on \"%s\" port %d: %m",
							opsflags_http_listen, opsflags_http_port),
					 errhint("Another attempt is made every %d s and on reload.", HTTP_RETRY_LISTEN_MS / 1000)));
			closesocket(sock);
			continue;
		}
		ReserveExternalFD();
		listen_socks[nlisten++] = sock;
	}
	freeaddrinfo(addrs);

	if (nlisten > 0)
	{
		bound_listen = MemoryContextStrdup(TopMemoryContext, opsflags_http_listen);
		bound_port = opsflags_http_port;
		ereport(LOG,
				(errmsg("opsflags http listening on \"%s\" port %d", bound_listen, bound_port)));
	}
	events_changed = true;
}

/* Make the sockets match the settings (after start and reload). */
static void
apply_settings(void)
{
	bool		wanted = opsflags_http_port > 0;
	bool		same = nlisten > 0 && bound_port == opsflags_http_port &&
		strcmp(bound_listen, opsflags_http_listen) == 0;

	if (nlisten > 0 && !same)
	{
		int			i;

		ereport(LOG,
				(errmsg("opsflags http stops listening on \"%s\" port %d", bound_listen, bound_port)));
		close_listeners();
		for (i = nconns - 1; i >= 0; i--)
			close_conn(i, false);
	}
	if (wanted && nlisten == 0)
		open_listeners();

	if (nlisten > 0)
		pgstat_report_activity(STATE_IDLE, psprintf("listening on %s port %d", bound_listen, bound_port));
	else if (wanted)
		pgstat_report_activity(STATE_IDLE, psprintf("cannot listen on %s port %d", opsflags_http_listen,
													 opsflags_http_port));
	else
		pgstat_report_activity(STATE_IDLE, "off (opsflags.http_port = 0)");
}

/* ---------- main ---------- */

static WaitEventSet *
build_event_set(void)
{
	WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, 2 + nlisten + nconns);
	int			i;

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nlisten && accept_paused_until == 0; i++)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, listen_socks[i], NULL, NULL);
	for (i = 0; i < nconns; i++)
		AddWaitEventToSet(set, conns[i]->out.len > 0 ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE,
						  conns[i]->sock, NULL, conns[i]);
	events_changed = false;
	return set;
}

void
opsflags_http_main(Datum arg)
{
	WaitEventSet *set = NULL;
	WaitEvent	events[64];
	pgsocket	ready_listen[HTTP_MAX_LISTEN];
	int			nready;
	bool		ready;
	TimestampTz next_database_check = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&http_shared->mutex);
	ready = http_shared->database_ready;
	http_shared->database_ready = false;	/* if connecting fails, the next start waits */
	SpinLockRelease(&http_shared->mutex);

	BackgroundWorkerInitializeConnection(ready ? opsflags_database : NULL, NULL, 0);
	connected = ready;
	if (ready)
	{
		SpinLockAcquire(&http_shared->mutex);
		http_shared->database_ready = true;
		SpinLockRelease(&http_shared->mutex);
	}
	pgstat_report_appname("opsflags http");

	/* Fixed queries only, resolved in pg_catalog; evaluations are not usage. */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("opsflags.track_usage", "off", PGC_SUSET, PGC_S_OVERRIDE);

	request_context = AllocSetContextCreate(TopMemoryContext, "opsflags http request",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(request_context);
	apply_settings();

	for (;;)
	{
		long		timeout;
		int			nevents;
		int			i;

		/* Not connected: look for the database, restart connected once it is there. */
		if (!connected && GetCurrentTimestamp() >= next_database_check)
		{
			if (opsflags_database_exists(opsflags_database))
			{
				SpinLockAcquire(&http_shared->mutex);
				http_shared->database_ready = true;
				SpinLockRelease(&http_shared->mutex);
				proc_exit(1);
			}
			MemoryContextSwitchTo(request_context);
			next_database_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_CHECK_DATABASE_MS);
		}
		if (opsflags_http_port > 0 && nlisten == 0 && GetCurrentTimestamp() >= retry_listen_at)
			apply_settings();

		/* Clients with buffered requests whose turn has come (read_conn) */
		for (i = 0; i < nconns;)
		{
			HttpConn   *conn = conns[i];

			if (conn->more && conn->out.len == 0 && !read_conn(conn))
			{
				close_conn(i, false);
				continue;
			}
			i++;
		}
		MemoryContextReset(request_context);

		timeout = expire_conns();
		for (i = 0; i < nconns; i++)
			if (conns[i]->more && conns[i]->out.len == 0)
				timeout = 0;
		if (accept_paused_until != 0)
		{
			long		paused_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), accept_paused_until);

			if (paused_ms <= 0)
			{
				accept_paused_until = 0;
				events_changed = true;
			}
			else
				timeout = timeout < 0 ? paused_ms : Min(timeout, paused_ms);
		}
		if (!connected)
			timeout = timeout < 0 ? HTTP_CHECK_DATABASE_MS : Min(timeout, HTTP_CHECK_DATABASE_MS);
		if (opsflags_http_port > 0 && nlisten == 0)
			timeout = timeout < 0 ? HTTP_RETRY_LISTEN_MS : Min(timeout, HTTP_RETRY_LISTEN_MS);

		if (events_changed)
		{
			if (set)
				FreeWaitEventSet(set);
			set = build_event_set();
		}
		nevents = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);

		/*
		 * Clients first, then new connections: a slot that a client has just
		 * given up is free before a newcomer is counted against
		 * opsflags.http_max_connections.
		 */
		nready = 0;
		for (i = 0; i < nevents; i++)
		{
			WaitEvent  *ev = &events[i];
			HttpConn   *conn = (HttpConn *) ev->user_data;
			int			j;

			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
				if (ConfigReloadPending)
				{
					ConfigReloadPending = false;
					ProcessConfigFile(PGC_SIGHUP);
					apply_settings();
					nready = 0;
					break;		/* the sockets may have changed */
				}
				continue;
			}
			if (conn == NULL)
			{
				if (ev->events & WL_SOCKET_READABLE)
					ready_listen[nready++] = ev->fd;
				continue;
			}
			/* Still open?  An earlier event of this round may have closed it. */
			for (j = 0; j < nconns && conns[j] != conn; j++)
				;
			if (j == nconns)
				continue;
			if (!((ev->events & WL_SOCKET_WRITEABLE) ? flush_conn(conn) && read_conn(conn) : read_conn(conn)))
				close_conn(j, false);
			else if ((ev->events & WL_SOCKET_WRITEABLE) && conn->out.len == 0)
				events_changed = true;	/* back to reading */
		}
		for (i = 0; i < nready; i++)
			accept_clients(ready_listen[i]);
		MemoryContextReset(request_context);
	}
}

void
opsflags_http_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("opsflags.http_listen",
							   "Address the opsflags HTTP server listens on (\"*\": all).",
							   NULL,
							   &opsflags_http_listen,
							   "127.0.0.1",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_port",
							"TCP port of the opsflags HTTP server (0 turns it off).",
							NULL,
							&opsflags_http_port,
							0, 0, 65535,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_max_connections",
							"Clients the opsflags HTTP server serves at once; more are answered 503 and closed.",
							NULL,
							&opsflags_http_max_connections,
							32, 1, HTTP_MAX_CONNECTIONS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_timeout",
							"Time a client has to send a request and take a response, and a query to answer.",
							NULL,
							&opsflags_http_timeout_ms,
							5000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	opsflags_shmem_register(sizeof(HttpShared), NULL, http_shmem_attach);

	/* Also on a standby, where /readyz reports the replay lag. */
	opsflags_register_worker("opsflags http", "opsflags_http_main");
}
