/*
 * worker.c
 *	  The background worker "opsflags sampler": every opsflags.sample_interval
 *	  it calls opsflags.take_sample() (a system_health row, alerts) and
 *	  deletes samples older than opsflags.health_retention in small batches,
 *	  each step in its own transaction.  Also worker_status() and the
 *	  worker's settings.
 *
 * Behaviour an operator relies on: it sleeps on its latch (no busy loop);
 * SIGHUP reloads the settings and a new interval applies at once (0
 * pauses); SIGTERM ends it promptly; after a crash the postmaster starts
 * it again; on a standby it writes nothing and resumes after promotion; a
 * failing cycle is logged once and retried next time; no step waits long
 * for a lock or runs past its bound (begin_step).  It waits quietly for
 * its database (opsflags.database) and for the extension in it: while the
 * database does not exist it runs connected to no database and checks
 * pg_database, then exits to be started again, connected to it.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_worker_status);
PGDLLEXPORT void opsflags_sampler_main(Datum arg);

#define RETENTION_BATCH 1000
#define RETENTION_MAX_BATCHES 100	/* per cycle; the rest next time */

typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;
	bool		database_ready; /* next start: connect to the database */
	TimestampTz started_at;
	TimestampTz last_sample_at;
	TimestampTz last_error_at;
	int64		samples;
	char		state[64];
	char		last_error[256];
} WorkerShared;

static WorkerShared *worker_shared = NULL;

char	   *opsflags_database = NULL;
static int	opsflags_sample_interval_ms = 60000;
static int	opsflags_health_retention_s = 7 * 24 * 3600;

/* ---------- shared state ---------- */

static void
worker_shmem_attach(void)
{
	bool		found;

	worker_shared = ShmemInitStruct("opsflags sampler", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(worker_shared, 0, sizeof(WorkerShared));
		SpinLockInit(&worker_shared->mutex);
	}
}

static void
set_state(const char *state)
{
	SpinLockAcquire(&worker_shared->mutex);
	strlcpy(worker_shared->state, state, sizeof(worker_shared->state));
	SpinLockRelease(&worker_shared->mutex);
	pgstat_report_activity(STATE_IDLE, state);
}

/* ---------- one cycle ---------- */

/*
 * Each step of a cycle is cancelled after the sample interval (at least 1 s,
 * at most 60 s) and waits at most a quarter of that for a lock: a session
 * holding a lock on what a sample reads or writes costs a cycle, never the
 * sampler.
 */
static void
begin_step(const char *activity)
{
	int			bound = Max(1000, Min(opsflags_sample_interval_ms, 60000));
	char		lock_timeout[32];

	snprintf(lock_timeout, sizeof(lock_timeout), "%d", bound / 4);
	SetConfigOption("lock_timeout", lock_timeout, PGC_SUSET, PGC_S_OVERRIDE);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	enable_timeout_after(STATEMENT_TIMEOUT, bound);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
end_step(void)
{
	SPI_finish();
	disable_timeout(STATEMENT_TIMEOUT, false);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
run_in_transaction(const char *sql, const char *activity)
{
	begin_step(activity);
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "%s failed", activity);
	end_step();
}

/* Is the extension installed in our database? */
static bool
extension_present(void)
{
	bool		present;

	StartTransactionCommand();
	present = OidIsValid(get_namespace_oid("opsflags", true)) &&
		OidIsValid(opsflags_relid("system_health"));
	CommitTransactionCommand();
	return present;
}

/* Sample, then retention; an error is logged once and the cycle ends. */
static void
sampler_cycle(void)
{
	MemoryContext cycle_context = CurrentMemoryContext;

	PG_TRY();
	{
		char	   *sql;
		int			i;

		run_in_transaction("SELECT opsflags.take_sample('sampler')", "opsflags sampler: sampling");

		SpinLockAcquire(&worker_shared->mutex);
		worker_shared->last_sample_at = GetCurrentTimestamp();
		worker_shared->samples++;
		SpinLockRelease(&worker_shared->mutex);

		sql = psprintf("SELECT opsflags.apply_retention(interval '%d seconds', %d)",
					   opsflags_health_retention_s, RETENTION_BATCH);
		for (i = 0; i < RETENTION_MAX_BATCHES; i++)
		{
			uint64		deleted = 0;

			begin_step("opsflags sampler: retention");
			if (SPI_execute(sql, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

				deleted = isnull ? 0 : DatumGetInt64(d);
			}
			end_step();
			if (deleted < RETENTION_BATCH)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* Log it once, remember it, and carry on next cycle. */
		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cycle_context);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();

		SpinLockAcquire(&worker_shared->mutex);
		worker_shared->last_error_at = GetCurrentTimestamp();
		strlcpy(worker_shared->last_error, edata->message, sizeof(worker_shared->last_error));
		SpinLockRelease(&worker_shared->mutex);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	pgstat_report_stat(true);
}

/* ---------- main ---------- */

/* Sleep for ms (-1: until woken), answering SIGHUP and postmaster death. */
static void
sampler_sleep(long ms)
{
	int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;
	int			rc;

	if (ms >= 0)
		events |= WL_TIMEOUT;
	rc = WaitLatch(MyLatch, events, ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Does a database of that name exist?  A plain scan of pg_database (a shared
 * catalog), which works before connecting to any database, as the
 * autovacuum launcher does.  Also used by the HTTP worker.
 */
bool
opsflags_database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * Before the database exists: connected to none, check pg_database every
 * few seconds; once it is there, exit so that the postmaster starts us
 * again, connected to it.
 */
static void
wait_for_database(void)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	set_state("waiting for database");
	for (;;)
	{
		bool		exists;

		exists = opsflags_database_exists(opsflags_database);
		if (exists)
		{
			SpinLockAcquire(&worker_shared->mutex);
			worker_shared->database_ready = true;
			SpinLockRelease(&worker_shared->mutex);
			proc_exit(1);		/* restart, this time connected to it */
		}
		sampler_sleep(5000);
	}
}

void
opsflags_sampler_main(Datum arg)
{
	bool		ready;
	TimestampTz next_sample = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&worker_shared->mutex);
	worker_shared->pid = MyProcPid;
	worker_shared->started_at = GetCurrentTimestamp();
	ready = worker_shared->database_ready;
	/* If connecting fails now (database dropped), the next start waits. */
	worker_shared->database_ready = false;
	SpinLockRelease(&worker_shared->mutex);

	if (!ready)
		wait_for_database();

	BackgroundWorkerInitializeConnection(opsflags_database, NULL, 0);
	SpinLockAcquire(&worker_shared->mutex);
	worker_shared->database_ready = true;
	SpinLockRelease(&worker_shared->mutex);
	pgstat_report_appname("opsflags sampler");

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		wait_ms;

		if (opsflags_sample_interval_ms <= 0)
		{
			set_state("paused (opsflags.sample_interval = 0)");
			sampler_sleep(-1);
			next_sample = 0;
			continue;
		}

		if (now >= next_sample)
		{
			if (RecoveryInProgress())
				set_state("standby: not sampling");
			else if (!extension_present())
				set_state("waiting for the extension");
			else
			{
				sampler_cycle();
				set_state("idle");
			}
			next_sample = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  opsflags_sample_interval_ms);
		}

		/* A shorter interval set by reload takes effect at once. */
		next_sample = Min(next_sample,
						  TimestampTzPlusMilliseconds(now, opsflags_sample_interval_ms));
		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_sample);
		sampler_sleep(Max(wait_ms, 1));
	}
}

/*
 * worker_status() -> jsonb: whether the sampler runs, its pid, state, last
 * sample and last error.
 */
Datum
opsflags_worker_status(PG_FUNCTION_ARGS)
{
	WorkerShared copy;
	bool		running;
	StringInfoData buf;

	if (worker_shared == NULL)
	{
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"running\": false, \"message\": \"the sampler needs opsflags in shared_preload_libraries\"}");
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	}

	SpinLockAcquire(&worker_shared->mutex);
	memcpy(&copy, worker_shared, sizeof(copy));
	SpinLockRelease(&worker_shared->mutex);
	running = copy.pid != 0 && BackendPidGetProc(copy.pid) != NULL;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"running\": %s, \"pid\": ", running ? "true" : "false");
	if (running)
		appendStringInfo(&buf, "%d", (int) copy.pid);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"state\": ");
	escape_json(&buf, running ? copy.state : "not running");
	appendStringInfo(&buf, ", \"database\": ");
	escape_json(&buf, opsflags_database);
	appendStringInfo(&buf, ", \"interval_ms\": %d, \"samples\": " INT64_FORMAT ", \"last_sample_at\": ",
					 opsflags_sample_interval_ms, copy.samples);
	if (copy.last_sample_at != 0)
		appendStringInfo(&buf, "\"%s\"", timestamptz_to_str(copy.last_sample_at));
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"last_error\": ");
	if (copy.last_error_at != 0)
		escape_json(&buf, copy.last_error);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"last_error_at\": ");
	if (copy.last_error_at != 0)
		appendStringInfo(&buf, "\"%s\"", timestamptz_to_str(copy.last_error_at));
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Register one of opsflags' background workers (preload only): connected
 * to a database, started once the server is consistent (so on a standby
 * too), and restarted a second after it exits with an error or crashes.
 */
void
opsflags_register_worker(const char *name, const char *function)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "opsflags", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

void
opsflags_worker_init(void)
{

	DefineCustomIntVariable("opsflags.sample_interval",
							"Interval between two samples of the opsflags sampler (0 pauses it).",
							NULL,
							&opsflags_sample_interval_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.health_retention",
							"How long the sampler keeps system_health rows.",
							NULL,
							&opsflags_health_retention_s,
							7 * 24 * 3600, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/* The worker, and the one setting only it uses, need preloading. */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("opsflags.database",
							   "Database the opsflags sampler connects to.",
							   NULL,
							   &opsflags_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	opsflags_shmem_register(sizeof(WorkerShared), NULL, worker_shmem_attach);

	/* Also on a standby: it waits there, and samples after promotion. */
	opsflags_register_worker("opsflags sampler", "opsflags_sampler_main");
}
