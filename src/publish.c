/*
 * publish.c
 *	  Publishing flags to memcached: after each committed change to the flag
 *	  tables, every environment's LaunchDarkly-format document
 *	  (flags_for_environment) is written to memcached under
 *	  opsflags:flags:<environment>, so application servers can read flags
 *	  without a database round trip.
 *
 * Publishing is a property of the database: it is on when the database's
 * configuration says so (config flags.publish_to_memcached = true, environment
 * 'all'), whichever session commits the change and whatever it has set.  The
 * older session setting opsflags.publish_to_memcached still switches it on
 * for the sessions (or the server) that set it.
 *
 * Row triggers on the flag tables (ENABLE ALWAYS, so changes applied by
 * logical replication count too) note that the transaction changed flags.
 * Just before commit the switch is read; once the transaction has committed,
 * a short-lived background worker, "opsflags publisher", is started in the
 * same database.  It builds the documents in a transaction of its own, so
 * they hold the latest committed state whatever the isolation level of the
 * transaction that made the change, and sends them.
 *
 * Publishers of one database take turns (a lock held from before their
 * snapshot until the documents are sent), so the last one to send read the
 * newest state: concurrent commits never leave an older document behind.
 * A second lock lets at most one publisher wait for its turn; a publisher
 * that finds another already waiting leaves, since that one's snapshot will
 * be taken after this publisher's change committed.
 *
 * A memcached outage never fails a transaction: the publisher logs it, and
 * the next change publishes everything again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_flags_changed);
PG_FUNCTION_INFO_V1(opsflags_published_flags);

PGDLLEXPORT void opsflags_publisher_main(Datum main_arg);

/* The configuration key of the database switch (environment 'all'). */
#define PUBLISH_CONFIG_KEY "flags.publish_to_memcached"

/* Advisory lock tag of the publishers' turns: field4 apart from SQL's 1 and 2. */
#define PUBLISH_LOCK_KEY	0x6f707366	/* "opsf" */
#define PUBLISH_LOCK_CLASS	3
#define PUBLISH_LOCK_TURN	1			/* held while building and sending */
#define PUBLISH_LOCK_QUEUE	2			/* held while waiting for the turn */

/*
 * With shared_preload_libraries, one publisher per database is enough for
 * any number of commits: a committer starts one only when none is pending
 * (started, not yet at its snapshot).  A pending mark older than this is
 * taken for a publisher that never came up.
 */
#define PUBLISH_MAX_DATABASES	64
#define PUBLISH_PENDING_STALE_MS 10000

typedef struct PublishSlot
{
	Oid			dbid;
	TimestampTz pending_since;	/* 0: no publisher pending */
} PublishSlot;

typedef struct PublishShared
{
	slock_t		mutex;
	PublishSlot slots[PUBLISH_MAX_DATABASES];
} PublishShared;

static PublishShared *publish_shared = NULL;

/* Without shared memory: the publisher this backend started last. */
static BackgroundWorkerHandle *last_started = NULL;

static bool opsflags_publish_to_memcached = false;

static bool flags_changed = false;	/* this transaction changed the flags */
static bool publish_at_commit = false;	/* ... and publishing is on */
static bool callback_registered = false;

/* ---------- the committing backend ---------- */

/* Is publishing switched on for this database (config, read at pre-commit)? */
static void
read_switch(void *arg)
{
	Jsonb	   *value = opsflags_config_value(PUBLISH_CONFIG_KEY, "all");
	bool	   *on = (bool *) arg;
	JsonbValue	v;

	*on = false;
	if (value != NULL && JsonContainerIsScalar(&value->root) &&
		JsonbExtractScalar(&value->root, &v) && v.type == jbvBool)
		*on = v.val.boolean;
}

static bool
publishing_on(void)
{
	bool		on = false;
	ErrorData  *edata;

	if (opsflags_publish_to_memcached)
		return true;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!opsflags_try(read_switch, &on, false, &edata))
	{
		ereport(WARNING,
				(errmsg("could not read configuration \"%s\"", PUBLISH_CONFIG_KEY),
				 errdetail_internal("%s", edata->message),
				 errhint("The flags changed by this transaction are not published to memcached.")));
		FreeErrorData(edata);
		on = false;
	}
	PopActiveSnapshot();
	return on;
}

static void
set_publish_locktag(LOCKTAG *tag, uint16 which)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, PUBLISH_LOCK_KEY, which, PUBLISH_LOCK_CLASS);
}

/*
 * Should this commit start a publisher?  Not when one is pending in this
 * database: its snapshot, still to come, includes this commit.  Without
 * shared memory, pending means waiting for the turn (holding the queue
 * lock), or started by this backend and not forked yet; one starting up
 * for another backend is not seen, so a burst of commits from several
 * sessions can start a few more (they leave at once).
 */
static bool
claim_publisher(void)
{
	TimestampTz now;
	PublishSlot *mine = NULL;
	bool		start = true;
	int			i;

	if (publish_shared == NULL)
	{
		LOCKTAG		queue;
		int			waiting = 0;
		pid_t		pid;

		/* The last one this backend started has not even been forked yet. */
		if (last_started != NULL &&
			GetBackgroundWorkerPid(last_started, &pid) == BGWH_NOT_YET_STARTED)
			return false;
		set_publish_locktag(&queue, PUBLISH_LOCK_QUEUE);
		(void) GetLockConflicts(&queue, ExclusiveLock, &waiting);
		return waiting == 0;
	}
	now = GetCurrentTimestamp();
	SpinLockAcquire(&publish_shared->mutex);
	for (i = 0; i < PUBLISH_MAX_DATABASES; i++)
	{
		PublishSlot *slot = &publish_shared->slots[i];

		if (slot->dbid == MyDatabaseId)
		{
			mine = slot;
			break;
		}
		if (mine == NULL && slot->pending_since == 0)
			mine = slot;		/* a free one, unless ours turns up */
	}
	if (mine != NULL)
	{
		if (mine->dbid == MyDatabaseId && mine->pending_since != 0 &&
			!TimestampDifferenceExceeds(mine->pending_since, now, PUBLISH_PENDING_STALE_MS))
			start = false;
		else
		{
			mine->dbid = MyDatabaseId;
			mine->pending_since = now;
		}
	}
	SpinLockRelease(&publish_shared->mutex);
	return start;
}

/* No publisher is pending in this database (any more). */
static void
release_publisher(void)
{
	int			i;

	if (publish_shared == NULL)
		return;
	SpinLockAcquire(&publish_shared->mutex);
	for (i = 0; i < PUBLISH_MAX_DATABASES; i++)
	{
		if (publish_shared->slots[i].dbid == MyDatabaseId)
			publish_shared->slots[i].pending_since = 0;
	}
	SpinLockRelease(&publish_shared->mutex);
}

/* Start a publisher in this database unless one is pending; never raises. */
static void
start_publisher(void)
{
	BackgroundWorker worker;
	MemoryContext oldcontext;
	bool		started;

	if (!claim_publisher())
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "opsflags", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "opsflags_publisher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "opsflags publisher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "opsflags publisher", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;

	if (last_started != NULL)
	{
		pfree(last_started);
		last_started = NULL;
	}
	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, publish_shared == NULL ? &last_started : NULL);
	MemoryContextSwitchTo(oldcontext);
	if (!started)
	{
		last_started = NULL;
		release_publisher();
		ereport(WARNING,
				(errmsg("could not start a background worker to publish flags to memcached"),
				 errhint("Raise max_worker_processes; the next change to the flags publishes them again.")));
	}
}

static void
publish_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (flags_changed)
				publish_at_commit = opsflags_memcached_server_list() != NULL && publishing_on();
			flags_changed = false;
			break;

		case XACT_EVENT_COMMIT:
			/* Committed and visible: a publisher started now reads it. */
			if (publish_at_commit)
				start_publisher();
			publish_at_commit = false;
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			flags_changed = false;
			publish_at_commit = false;
			break;

		default:
			break;
	}
}

/* Trigger on the flag tables: flags changed in this transaction. */
Datum
opsflags_flags_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("flags_changed() must be called as a trigger")));

	if (!callback_registered)
	{
		RegisterXactCallback(publish_xact_callback, NULL);
		callback_registered = true;
	}
	flags_changed = true;
	return PointerGetDatum(NULL);
}

/* ---------- the publisher (a background worker) ---------- */

typedef struct FlagDocument
{
	char	   *key;
	char	   *document;
} FlagDocument;

static OpsQuery documents_query = {
	.sql =
	"SELECT 'opsflags:flags:' OPERATOR(pg_catalog.||) e.name, "
	"       opsflags.flags_for_environment(e.name)::pg_catalog.text "
	"FROM opsflags.environments e ORDER BY e.name",
	.nargs = 0,
	.writes = true,				/* flags_for_environment sets a GUC */
};

/* Every environment's document, in the caller's memory context. */
static List *
build_documents(Oid owner)
{
	MemoryContext outer = CurrentMemoryContext;
	OpsSpiState spi;
	List	   *docs = NIL;
	int			n;
	int			i;

	opsflags_spi_begin(&spi, owner);
	n = opsflags_spi_run(&documents_query, NULL, NULL, InvalidSnapshot, 0);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(outer);
		FlagDocument *p = palloc(sizeof(FlagDocument));

		p->key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		p->document = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		docs = lappend(docs, p);
		MemoryContextSwitchTo(old);
	}
	opsflags_spi_end(&spi);
	return docs;
}

/* Send the documents; at the first failure, log it and stop (the rest would wait as long). */
static void
send_documents(List *docs)
{
	const char *servers = opsflags_memcached_server_list();
	ListCell   *lc;
	char		err[256];

	if (servers == NULL)
		return;
	foreach(lc, docs)
	{
		FlagDocument *p = lfirst(lc);

		err[0] = '\0';
		if (!opsflags_memcached_set(servers, opsflags_health_timeout_ms, p->key,
									p->document, strlen(p->document), err, sizeof(err)))
		{
			ereport(WARNING,
					(errmsg("could not publish flags to memcached key \"%s\"", p->key),
					 errdetail_internal("%s", err),
					 errhint("The next change to the flags publishes them again.")));
			return;
		}
	}
}

void
opsflags_publisher_main(Datum main_arg)
{
	LOCKTAG		queue;
	LOCKTAG		turn;
	Oid			owner;
	List	   *docs;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);

	/*
	 * Each statement of flags_for_environment sees the latest commits; no
	 * server-wide timeout may end the wait for the turn (the change would
	 * stay unpublished).
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	set_publish_locktag(&queue, PUBLISH_LOCK_QUEUE);
	set_publish_locktag(&turn, PUBLISH_LOCK_TURN);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/* Another publisher waits for its turn: it will read this change too. */
	if (LockAcquire(&queue, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		CommitTransactionCommand();
		proc_exit(0);
	}
	LockAcquire(&turn, ExclusiveLock, false, false);
	LockRelease(&queue, ExclusiveLock, false);
	/* From here on, a commit needs a publisher after this one. */
	release_publisher();

	pgstat_report_activity(STATE_RUNNING, "publishing flags to memcached");
	/* The turn is ours: the time the documents are evaluated at is now. */
	SetCurrentStatementStartTimestamp();
	PushActiveSnapshot(GetTransactionSnapshot());
	owner = opsflags_rel_owner(opsflags_relid("feature_flags"));
	docs = OidIsValid(owner) ? build_documents(owner) : NIL;
	PopActiveSnapshot();

	/* Sent before the turn passes on (the lock goes at commit). */
	send_documents(docs);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}

/* ---------- reading back ---------- */

/*
 * published_flags(environment text) -> jsonb: the document published for
 * an environment, read back from memcached (NULL when there is none).
 */
Datum
opsflags_published_flags(PG_FUNCTION_ARGS)
{
	const char *servers = opsflags_memcached_server_list();
	char	   *key;
	char	   *doc;
	char		err[256];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (servers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no memcached servers configured"),
				 errhint("Set opsflags.memcached_servers.")));
	key = psprintf("opsflags:flags:%s", text_to_cstring(PG_GETARG_TEXT_PP(0)));
	err[0] = '\0';
	doc = opsflags_memcached_get(servers, opsflags_health_timeout_ms, key, err, sizeof(err));
	if (doc == NULL)
	{
		if (err[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read memcached key \"%s\"", key),
					 errdetail_internal("%s", err)));
		PG_RETURN_NULL();
	}
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(doc)));
}

static void
publish_shmem_attach(void)
{
	bool		found;
	PublishShared *p;

	p = ShmemInitStruct("opsflags publisher", sizeof(PublishShared), &found);
	if (!found)
	{
		memset(p, 0, sizeof(PublishShared));
		SpinLockInit(&p->mutex);
	}
	publish_shared = p;
}

void
opsflags_publish_init(void)
{
	DefineCustomBoolVariable("opsflags.publish_to_memcached",
							 "Deprecated: publish flags to memcached after changes committed where this is on.",
							 "Publishing for the whole database is configuration flags.publish_to_memcached = true.",
							 &opsflags_publish_to_memcached,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		opsflags_shmem_register(sizeof(PublishShared), NULL, publish_shmem_attach);
}
