/*
 * bgworker.c
 *	  What opsflags' background workers share: the setting opsflags.database,
 *	  registering a worker, connecting to that database (or waiting for it
 *	  to exist), and running one bounded step in a transaction of its own.
 *
 * A worker registered at start-up (the sampler, the HTTP server) connects
 * to opsflags.database.  While that database does not exist it runs
 * connected to none, checks pg_database every OPSFLAGS_CHECK_DATABASE_MS and,
 * once the database is there, exits to be started again connected to it
 * (a background worker cannot change its database).  Whether the next start
 * may connect is kept in the worker's shared memory (OpsWorkerStart), so
 * that a database dropped between two starts sends it back to waiting
 * rather than into a loop of failed connections.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "opsflags.h"

char	   *opsflags_database = NULL;

/* ---------- registering ---------- */

/*
 * A worker of the opsflags library, connected to a database, started once
 * the server is consistent (so on a standby too) and restarted a second
 * after it exits with an error or crashes; callers change what differs.
 */
void
opsflags_worker_prepare(BackgroundWorker *worker, const char *name, const char *function)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_ConsistentState;
	worker->bgw_restart_time = 1;
	strlcpy(worker->bgw_library_name, "opsflags", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker->bgw_name, name, BGW_MAXLEN);
	strlcpy(worker->bgw_type, name, BGW_MAXLEN);
}

/* Register one of opsflags' workers started with the server (preload only). */
void
opsflags_register_worker(const char *name, const char *function)
{
	BackgroundWorker worker;

	opsflags_worker_prepare(&worker, name, function);
	RegisterBackgroundWorker(&worker);
}

/* ---------- the database ---------- */

/*
 * Does a database of that name exist?  A plain scan of pg_database (a shared
 * catalog), which works before connecting to any database, as the
 * autovacuum launcher does.
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

/* In the worker's shared memory attach function, when first created. */
void
opsflags_worker_start_init(OpsWorkerStart *start)
{
	SpinLockInit(&start->mutex);
	start->database_ready = false;
}

static void
set_database_ready(OpsWorkerStart *start, bool ready)
{
	SpinLockAcquire(&start->mutex);
	start->database_ready = ready;
	SpinLockRelease(&start->mutex);
}

/*
 * Connect to opsflags.database if the last start found it, else to no
 * database; returns whether connected.  If connecting fails (the database
 * was dropped), the next start waits for it again.
 */
bool
opsflags_worker_connect(OpsWorkerStart *start)
{
	bool		ready;

	SpinLockAcquire(&start->mutex);
	ready = start->database_ready;
	start->database_ready = false;
	SpinLockRelease(&start->mutex);

	BackgroundWorkerInitializeConnection(ready ? opsflags_database : NULL, NULL, 0);
	if (ready)
		set_database_ready(start, true);
	return ready;
}

/*
 * Not connected: if opsflags.database exists now, exit so that the
 * postmaster starts the worker again, connected to it.  Call every
 * OPSFLAGS_CHECK_DATABASE_MS.
 */
void
opsflags_worker_restart_if_database(OpsWorkerStart *start)
{
	MemoryContext context = CurrentMemoryContext;

	if (opsflags_database_exists(opsflags_database))
	{
		set_database_ready(start, true);
		proc_exit(1);			/* restart, this time connected to it */
	}
	MemoryContextSwitchTo(context);
}

/* ---------- steps ---------- */

/*
 * Begin a step: a transaction of its own with a snapshot, cancelled after
 * timeout_ms and waiting at most a quarter of that for any lock, so that a
 * session holding a lock costs the step, never the worker.  activity is
 * what pg_stat_activity shows meanwhile.  End it with opsflags_step_end(),
 * or, in PG_CATCH, opsflags_step_failed().
 */
void
opsflags_step_begin(const char *activity, int timeout_ms, bool read_only)
{
	char		lock_timeout[32];

	snprintf(lock_timeout, sizeof(lock_timeout), "%d", Max(timeout_ms / 4, 1));
	SetConfigOption("lock_timeout", lock_timeout, PGC_SUSET, PGC_S_OVERRIDE);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (read_only)
		XactReadOnly = true;
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
}

/* Commit the step. */
void
opsflags_step_end(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * The step failed (in PG_CATCH): the error, copied into context (and
 * written to the log if report), and the transaction rolled back.
 */
ErrorData *
opsflags_step_failed(MemoryContext context, bool report)
{
	ErrorData  *edata;

	disable_timeout(STATEMENT_TIMEOUT, false);
	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	if (report)
		EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(context);
	return edata;
}

/* ---------- settings ---------- */

void
opsflags_bgworker_init(void)
{
	/* The workers, and so this setting, need preloading. */
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
}
