/*
 * health.c
 *	  Health checks: health_status() (database, cache, storage and queue
 *	  probes, aggregated), check_system_health() (a summary, recorded in
 *	  opsflags.system_health), health_aggregate() and the settings they use.
 *	  The queue probe and queue_depth() are in health_queue.c.
 *
 * health_status() never raises: each probe runs guarded (spi.c) and a
 * probe that fails is reported with its message, unhealthy for the
 * database and degraded for the others.  A probe slower than
 * opsflags.health_timeout is degraded; the queue query is cancelled at
 * that bound, memcached is bounded by it (memcached.c).
 */
#include "postgres.h"

#include <sys/statvfs.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "utils/varlena.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "health.h"

PG_FUNCTION_INFO_V1(opsflags_health_status);
PG_FUNCTION_INFO_V1(opsflags_health_aggregate);
PG_FUNCTION_INFO_V1(opsflags_check_system_health);

static int	health_timeout_setting = 5000;	/* opsflags.health_timeout */
static int	health_timeout_ms_former = -1;	/* opsflags.health_timeout_ms: -1 unset */

/*
 * The bound on each probe: opsflags.health_timeout, unless its former name
 * opsflags.health_timeout_ms is set, which code written for it expects to win.
 */
int
opsflags_health_timeout(void)
{
	return health_timeout_ms_former >= 0 ? health_timeout_ms_former : health_timeout_setting;
}
static char *opsflags_required_tables = NULL;
static char *opsflags_required_settings = NULL;

static const char *const state_names[] = {"healthy", "degraded", "unhealthy"};
static const char *const check_names[] = {"ok", "degraded", "down"};

static TimeoutId probe_timeout = MAX_TIMEOUTS;
static volatile sig_atomic_t probe_timed_out = false;

/* ---------- helpers ---------- */

/* A number from a jsonb object, else the default. */
static double
jsonb_number(Jsonb *jb, const char *key, double dflt)
{
	JsonbValue	k;
	JsonbValue *v;

	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return dflt;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvNumeric)
		return dflt;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* A string from a jsonb scalar string, else NULL. */
char *
health_jsonb_string(Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL || !JB_ROOT_IS_SCALAR(jb) || !JsonbExtractScalar(&jb->root, &v) ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

static void
default_thresholds(Thresholds *t)
{
	t->connections_pct = 90;
	t->xid_age = 1000000000;
	t->replication_lag_s = 300;
	t->storage_degraded_pct = 10;
	t->storage_unhealthy_pct = 2;
	t->queue_pending_max = 1000;
	t->queue_failed_max = 0;
	t->errors_per_hour_warning = 100;
}

/* Override the defaults from config health.thresholds ('all'). */
static void
load_thresholds(void *arg)
{
	Thresholds *t = (Thresholds *) arg;
	Jsonb	   *jb = opsflags_config_value("health.thresholds", "all");

	t->connections_pct = jsonb_number(jb, "connections_pct", t->connections_pct);
	t->xid_age = jsonb_number(jb, "xid_age", t->xid_age);
	t->replication_lag_s = jsonb_number(jb, "replication_lag_s", t->replication_lag_s);
	t->storage_degraded_pct = jsonb_number(jb, "storage_degraded_pct", t->storage_degraded_pct);
	t->storage_unhealthy_pct = jsonb_number(jb, "storage_unhealthy_pct", t->storage_unhealthy_pct);
	t->queue_pending_max = jsonb_number(jb, "queue_pending_max", t->queue_pending_max);
	t->queue_failed_max = jsonb_number(jb, "queue_failed_max", t->queue_failed_max);
	t->errors_per_hour_warning = jsonb_number(jb, "errors_per_hour_warning",
											  t->errors_per_hour_warning);
}

/* Thresholds in force; the defaults when the configuration cannot be read. */
void
health_get_thresholds(Thresholds *t)
{
	ErrorData  *edata;

	default_thresholds(t);
	if (!opsflags_try(load_thresholds, t, false, &edata))
	{
		default_thresholds(t);
		FreeErrorData(edata);
	}
}

static double
elapsed_ms(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

static void
probe_timeout_handler(void)
{
	probe_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * Run fn guarded, cancelled after opsflags.health_timeout.  On failure
 * the probe gets the error's message (or "timed out") and state on_error.
 */
void
health_run_probe(Probe *p, void (*fn) (void *), void *arg, HealthState on_error)
{
	ErrorData  *edata;
	instr_time	start;
	bool		ok;

	if (probe_timeout == MAX_TIMEOUTS)
		probe_timeout = RegisterTimeout(USER_TIMEOUT, probe_timeout_handler);

	INSTR_TIME_SET_CURRENT(start);
	probe_timed_out = false;
	enable_timeout_after(probe_timeout, opsflags_health_timeout());
	ok = opsflags_try(fn, arg, true, &edata);
	disable_timeout(probe_timeout, false);
	p->latency_ms = elapsed_ms(start);

	if (!ok)
	{
		/* A cancel that was not ours is the user's: honour it. */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !probe_timed_out)
			ReThrowError(edata);
		p->state = on_error;
		if (probe_timed_out)
			snprintf(p->message, sizeof(p->message), "timed out after %d ms",
					 opsflags_health_timeout());
		else
			snprintf(p->message, sizeof(p->message), "%s", edata->message);
		FreeErrorData(edata);
	}
	else if (p->latency_ms > opsflags_health_timeout() && p->state == HEALTHY)
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message), "slow: %.0f ms (timeout %d ms)",
				 p->latency_ms, opsflags_health_timeout());
	}
}

/* Whether the last probe run was cancelled by its timeout. */
bool
health_probe_timed_out(void)
{
	return probe_timed_out;
}

/* ---------- probes ---------- */

typedef struct DatabaseProbeArgs
{
	Probe	   *probe;
	Thresholds *t;
	char	   *version;		/* out: extension version */
} DatabaseProbeArgs;

static OpsQuery database_query = {
	.sql =
	"SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a "
	"         WHERE a.backend_type OPERATOR(pg_catalog.=) 'client backend')::pg_catalog.float8, "
	"       pg_catalog.current_setting('max_connections')::pg_catalog.float8, "
	"       (SELECT pg_catalog.max(pg_catalog.age(d.datfrozenxid)) FROM pg_catalog.pg_database d)::pg_catalog.float8, "
	"       pg_catalog.pg_is_in_recovery(), "
	"       pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) "
	"                            pg_catalog.pg_last_xact_replay_timestamp()), "
	"       (SELECT e.extversion FROM pg_catalog.pg_extension e "
	"         WHERE e.extname OPERATOR(pg_catalog.=) 'opsflags')",
	.nargs = 0,
};

static void
database_probe(void *arg)
{
	DatabaseProbeArgs *a = (DatabaseProbeArgs *) arg;
	Probe	   *p = a->probe;
	OpsSpiState spi;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	double		connections,
				max_connections,
				xid_age,
				lag = 0;
	bool		standby;
	char	   *version;

	opsflags_spi_begin(&spi, InvalidOid);
	if (opsflags_spi_run(&database_query, NULL, NULL, InvalidSnapshot, 1) != 1)
		elog(ERROR, "database probe returned no row");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	connections = DatumGetFloat8(SPI_getbinval(tup, desc, 1, &isnull));
	max_connections = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
	xid_age = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
	standby = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	{
		Datum		d = SPI_getbinval(tup, desc, 5, &isnull);

		if (!isnull)
			lag = DatumGetFloat8(d);
	}
	version = SPI_getvalue(tup, desc, 6);
	a->version = version ? MemoryContextStrdup(TopTransactionContext, version) : NULL;
	opsflags_spi_end(&spi);

	if (connections > max_connections * a->t->connections_pct / 100)
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message), "%.0f of %.0f connections in use",
				 connections, max_connections);
	}
	else if (xid_age > a->t->xid_age)
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message),
				 "oldest transaction id age %.0f exceeds %.0f: vacuum to avoid wraparound",
				 xid_age, a->t->xid_age);
	}
	else if (standby && lag > a->t->replication_lag_s)
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message), "standby replay lags %.0f s (threshold %.0f s)",
				 lag, a->t->replication_lag_s);
	}
	else
		snprintf(p->message, sizeof(p->message), "%s, %.0f of %.0f connections",
				 standby ? "standby" : "primary", connections, max_connections);
}

static void
cache_probe(Probe *p)
{
	const char *servers = opsflags_memcached_server_list();
	char		err[256];

	if (servers == NULL)
	{
		p->state = HEALTHY;
		p->latency_ms = 0;
		snprintf(p->message, sizeof(p->message),
				 "not configured (set opsflags.memcached_servers)");
		return;
	}
	if (opsflags_memcached_probe(servers, opsflags_health_timeout(), &p->latency_ms,
								 err, sizeof(err)))
	{
		if (p->latency_ms > opsflags_health_timeout())
		{
			p->state = DEGRADED;
			snprintf(p->message, sizeof(p->message), "slow: %.0f ms", p->latency_ms);
		}
		else
			snprintf(p->message, sizeof(p->message), "memcached %s: set/get ok", servers);
	}
	else
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message), "memcached %s: %s", servers, err);
	}
}

static void
storage_probe(Probe *p, Thresholds *t)
{
	struct statvfs fs;
	instr_time	start;
	double		free_pct;

	INSTR_TIME_SET_CURRENT(start);
	if (statvfs(DataDir, &fs) != 0 || fs.f_blocks == 0)
	{
		p->state = DEGRADED;
		snprintf(p->message, sizeof(p->message), "could not read free space of the data directory: %m");
		p->latency_ms = elapsed_ms(start);
		return;
	}
	free_pct = 100.0 * (double) fs.f_bavail / (double) fs.f_blocks;
	p->latency_ms = elapsed_ms(start);
	if (free_pct < t->storage_unhealthy_pct)
		p->state = UNHEALTHY;
	else if (free_pct < t->storage_degraded_pct)
		p->state = DEGRADED;
	snprintf(p->message, sizeof(p->message), "%.1f%% free (%.1f GB of %.1f GB)",
			 free_pct, (double) fs.f_bavail * fs.f_frsize / 1e9,
			 (double) fs.f_blocks * fs.f_frsize / 1e9);
}

/* ---------- health_status() ---------- */

static HealthState
aggregate(const HealthState *states, int n)
{
	HealthState worst = HEALTHY;
	int			i;

	for (i = 0; i < n; i++)
		if (states[i] > worst)
			worst = states[i];
	return worst;
}

static void
append_component(StringInfo buf, const char *name, Probe *p, bool comma)
{
	appendStringInfo(buf, "%s", comma ? ", " : "");
	escape_json(buf, name);
	/* latencyMs: the name load balancers' health checks read; latency_ms: ours */
	appendStringInfo(buf, ": {\"status\": \"%s\", \"latency_ms\": %.3f, \"latencyMs\": %.3f, \"message\": ",
					 state_names[p->state], p->latency_ms, p->latency_ms);
	escape_json(buf, p->message);
	appendStringInfoChar(buf, '}');
}

/*
 * health_status() -> jsonb
 */
Datum
opsflags_health_status(PG_FUNCTION_ARGS)
{
	Probe		database = {0},
				cache = {0},
				storage = {0},
				queue = {0};
	Thresholds	t;
	DatabaseProbeArgs dba = {&database, &t, NULL};
	HealthState states[4];
	StringInfoData buf;
	char	   *version;
	char	   *commit_sha;
	int64		pending,
				failed;

	health_get_thresholds(&t);
	health_run_probe(&database, database_probe, &dba, UNHEALTHY);
	cache_probe(&cache);
	storage_probe(&storage, &t);
	health_queue_status(&queue, &t, &pending, &failed);

	states[0] = database.state;
	states[1] = cache.state;
	states[2] = storage.state;
	states[3] = queue.state;

	/* Handed to any role: a sensitive value only to admins. */
	version = health_jsonb_string(opsflags_config_value_readable("app_version", NULL));
	if (version == NULL)
		version = dba.version;
	commit_sha = health_jsonb_string(opsflags_config_value_readable("commit_sha", NULL));

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"status\": \"%s\", \"timestamp\": \"%s\", \"version\": ",
					 state_names[aggregate(states, 4)],
					 timestamptz_to_str(GetCurrentTimestamp()));
	if (version)
		escape_json(&buf, version);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"commit_sha\": ");
	if (commit_sha)
		escape_json(&buf, commit_sha);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"components\": {");
	append_component(&buf, "database", &database, false);
	append_component(&buf, "cache", &cache, true);
	append_component(&buf, "storage", &storage, true);
	append_component(&buf, "queue", &queue, true);
	appendStringInfo(&buf, "}, \"checks\": {\"database\": \"%s\", \"cache\": \"%s\", "
					 "\"storage\": \"%s\", \"queue\": \"%s\"}}",
					 check_names[database.state], check_names[cache.state],
					 check_names[storage.state], check_names[queue.state]);

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * health_aggregate(statuses text[]) -> text: any unhealthy -> unhealthy,
 * else any degraded -> degraded, else healthy (the rule health_status()
 * applies to its components).
 */
Datum
opsflags_health_aggregate(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	HealthState worst = HEALTHY;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *s;
		HealthState st;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("component status must not be null")));
		s = TextDatumGetCString(elems[i]);
		if (strcmp(s, "healthy") == 0)
			st = HEALTHY;
		else if (strcmp(s, "degraded") == 0)
			st = DEGRADED;
		else if (strcmp(s, "unhealthy") == 0)
			st = UNHEALTHY;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid component status \"%s\"", s),
					 errhint("A status is healthy, degraded or unhealthy.")));
		if (st > worst)
			worst = st;
	}
	PG_RETURN_TEXT_P(cstring_to_text(state_names[worst]));
}

/* ---------- check_system_health() ---------- */

static OpsQuery summary_query = {
	.sql =
	"SELECT pg_catalog.pg_database_size(pg_catalog.current_database()), "
	"       pg_catalog.count(*) FILTER (WHERE a.state OPERATOR(pg_catalog.=) 'active'), "
	"       pg_catalog.count(*) FILTER (WHERE a.state OPERATOR(pg_catalog.=) 'idle'), "
	"       pg_catalog.count(*), "
	"       pg_catalog.current_setting('max_connections')::pg_catalog.int8, "
	"       (SELECT e.extversion FROM pg_catalog.pg_extension e "
	"         WHERE e.extname OPERATOR(pg_catalog.=) 'opsflags') "
	"FROM pg_catalog.pg_stat_activity a "
	"WHERE a.backend_type OPERATOR(pg_catalog.=) 'client backend'",
	.nargs = 0,
};

static OpsQuery record_query = {
	.sql =
	"INSERT INTO opsflags.system_health (recorded_at, status, source, database_size_bytes, "
	"  active_connections, idle_connections, total_connections, errors_last_hour) "
	"VALUES ($1, $2, 'check_system_health', $3, $4, $5, $6, $7)",
	.nargs = 7,
	.argtypes = {TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID},
	.writes = true,
};

/*
 * check_system_health() -> jsonb: a summary (status healthy, warning or
 * degraded; database size and connections; errors in the last hour;
 * version; timestamp), also recorded as a row of opsflags.system_health.
 *
 * degraded: connections above health.thresholds connections_pct (90%) of
 * max_connections; warning: above 75% of that, or more errors in the last
 * hour than errors_per_hour_warning (100).
 */
Datum
opsflags_check_system_health(PG_FUNCTION_ARGS)
{
	OpsSpiState spi;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		size,
				active,
				idle,
				total,
				max_connections;
	int64		errors = opsflags_errors_last_hour();
	Thresholds	t;
	const char *status = "healthy";
	TimestampTz now = GetCurrentTimestamp();
	char	   *version;
	char	   *extension_version;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	StringInfoData buf;
	Oid			owner = opsflags_rel_owner(opsflags_relid("system_health"));

	health_get_thresholds(&t);

	opsflags_spi_begin(&spi, owner);
	opsflags_spi_run(&summary_query, NULL, NULL, InvalidSnapshot, 1);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	size = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	active = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	idle = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	total = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	max_connections = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	extension_version = SPI_getvalue(tup, desc, 6);
	if (extension_version != NULL)
		extension_version = MemoryContextStrdup(TopTransactionContext, extension_version);

	if (total > max_connections * t.connections_pct / 100)
		status = "degraded";
	else if (total > max_connections * t.connections_pct / 100 * 0.75 ||
			 (errors >= 0 && errors > t.errors_per_hour_warning))
		status = "warning";

	values[0] = TimestampTzGetDatum(now);
	values[1] = CStringGetTextDatum(status);
	values[2] = Int64GetDatum(size);
	values[3] = Int64GetDatum(active);
	values[4] = Int64GetDatum(idle);
	values[5] = Int64GetDatum(total);
	values[6] = Int64GetDatum(errors);
	if (errors < 0)
		nulls[6] = 'n';
	opsflags_spi_run(&record_query, values, nulls, InvalidSnapshot, 0);
	opsflags_spi_end(&spi);

	version = health_jsonb_string(opsflags_config_value_readable("app_version", NULL));
	if (version == NULL)
		version = extension_version;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"status\": \"%s\", \"database\": {\"size_mb\": %.2f, "
					 "\"connections\": {\"active\": " INT64_FORMAT ", \"idle\": " INT64_FORMAT
					 ", \"total\": " INT64_FORMAT ", \"max\": " INT64_FORMAT "}}, "
					 "\"errors_last_hour\": ",
					 status, (double) size / (1024.0 * 1024.0), active, idle, total, max_connections);
	if (errors >= 0)
		appendStringInfo(&buf, INT64_FORMAT, errors);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"version\": ");
	if (version)
		escape_json(&buf, version);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"timestamp\": \"%s\"}", timestamptz_to_str(now));

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

static bool
check_name_list(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid: give names separated by commas.");
	list_free(names);
	pfree(raw);
	return ok;
}

void
opsflags_health_init(void)
{
	DefineCustomIntVariable("opsflags.health_timeout",
							"Bound on each health probe.",
							"A probe slower than this is degraded; the queue query is cancelled at it.",
							&health_timeout_setting,
							5000, 1, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.health_timeout_ms",
							"Former name of opsflags.health_timeout, in milliseconds (-1: not set).",
							"Where set, it overrides opsflags.health_timeout.",
							&health_timeout_ms_former,
							-1, -1, 600000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("opsflags.required_tables",
							   "Tables run_startup_checks() requires, besides opsflags' own.",
							   "A comma-separated list of (optionally schema-qualified) table names.",
							   &opsflags_required_tables,
							   "",
							   PGC_USERSET,
							   GUC_LIST_INPUT,
							   check_name_list, NULL, NULL);
	DefineCustomStringVariable("opsflags.required_settings",
							   "Settings run_startup_checks() requires to be non-empty.",
							   "A comma-separated list of configuration parameter names.",
							   &opsflags_required_settings,
							   "",
							   PGC_USERSET,
							   GUC_LIST_INPUT,
							   check_name_list, NULL, NULL);
}
