/*
 * usage.c
 *	  Flag usage: how often each flag evaluated true and false, and when it
 *	  was last evaluated, per database, since the server started.
 *
 * Evaluation only bumps plain counters in backend-local memory (the flag
 * cache points at them); at the end of each transaction the counters that
 * moved are added to a shared hash table under a lock taken once per flag,
 * not per evaluation.  The shared table needs shared_preload_libraries;
 * without it nothing is shared and flag_usage shows no counts.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_flag_usage_counts);
PG_FUNCTION_INFO_V1(opsflags_usage_add);

#define USAGE_MAX_FLAGS 10000

typedef struct UsageKey
{
	Oid			dbid;
	char		flag_key[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
} UsageKey;

typedef struct SharedUsage
{
	UsageKey	key;
	pg_atomic_uint64 n_true;
	pg_atomic_uint64 n_false;
	pg_atomic_uint64 last_evaluated;	/* TimestampTz */
} SharedUsage;

typedef struct UsageState
{
	LWLock	   *lock;
} UsageState;

bool		opsflags_track_usage = true;

static UsageState *usage_state = NULL;
static HTAB *usage_shared = NULL;

/* Backend-local counters, by key; they outlive the flag cache's resets. */
static HTAB *usage_local = NULL;
static OpsUsage **usage_dirty = NULL;
static int	usage_ndirty = 0;
static int	usage_maxdirty = 0;
static bool usage_callback_registered = false;

static void
usage_shmem_attach(void)
{
	bool		found;
	HASHCTL		ctl;

	usage_state = ShmemInitStruct("opsflags usage", sizeof(UsageState), &found);
	if (!found)
		usage_state->lock = &(GetNamedLWLockTranche("opsflags usage"))->lock;
	ctl.keysize = sizeof(UsageKey);
	ctl.entrysize = sizeof(SharedUsage);
	usage_shared = ShmemInitHash("opsflags usage counts", USAGE_MAX_FLAGS, USAGE_MAX_FLAGS,
								 &ctl, HASH_ELEM | HASH_BLOBS);
}

/* Add what moved to the shared table, at the end of each transaction. */
static void
usage_flush(XactEvent event, void *arg)
{
	int			i;

	if (usage_ndirty == 0 ||
		(event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		 event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT))
		return;

	for (i = 0; i < usage_ndirty; i++)
	{
		OpsUsage   *u = usage_dirty[i];

		if (usage_shared != NULL)
		{
			UsageKey	key;
			SharedUsage *s;
			bool		found;

			memset(&key, 0, sizeof(key));
			key.dbid = MyDatabaseId;
			strlcpy(key.flag_key, u->flag_key, sizeof(key.flag_key));

			LWLockAcquire(usage_state->lock, LW_SHARED);
			s = hash_search(usage_shared, &key, HASH_FIND, NULL);
			if (s == NULL)
			{
				LWLockRelease(usage_state->lock);
				LWLockAcquire(usage_state->lock, LW_EXCLUSIVE);
				s = hash_search(usage_shared, &key, HASH_ENTER_NULL, &found);
				if (s != NULL && !found)
				{
					pg_atomic_init_u64(&s->n_true, 0);
					pg_atomic_init_u64(&s->n_false, 0);
					pg_atomic_init_u64(&s->last_evaluated, 0);
				}
			}
			if (s != NULL)
			{
				uint64		last = pg_atomic_read_u64(&s->last_evaluated);

				pg_atomic_fetch_add_u64(&s->n_true, u->n_true);
				pg_atomic_fetch_add_u64(&s->n_false, u->n_false);
				while ((uint64) u->last_evaluated > last &&
					   !pg_atomic_compare_exchange_u64(&s->last_evaluated, &last,
													   (uint64) u->last_evaluated))
					;
			}
			LWLockRelease(usage_state->lock);
		}
		u->n_true = 0;
		u->n_false = 0;
		u->dirty = false;
	}
	usage_ndirty = 0;
}

/* The backend's counters for a flag. */
OpsUsage *
opsflags_usage_for(const char *flag_key)
{
	OpsUsage   *u;
	bool		found;

	if (usage_local == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = OPSFLAGS_FLAG_KEY_MAXLEN + 1;
		ctl.entrysize = sizeof(OpsUsage);
		ctl.hcxt = TopMemoryContext;
		usage_local = hash_create("opsflags usage", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	if (!usage_callback_registered)
	{
		RegisterXactCallback(usage_flush, NULL);
		usage_callback_registered = true;
	}
	u = hash_search(usage_local, flag_key, HASH_ENTER, &found);
	if (!found)
	{
		u->n_true = 0;
		u->n_false = 0;
		u->last_evaluated = 0;
		u->dirty = false;
	}
	return u;
}

/* Note counters that moved, for the flush at transaction end. */
void
opsflags_usage_mark_dirty(OpsUsage *u)
{
	if (usage_ndirty == usage_maxdirty)
	{
		usage_maxdirty = usage_maxdirty == 0 ? 16 : usage_maxdirty * 2;
		usage_dirty = usage_dirty == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(OpsUsage *) * usage_maxdirty)
			: repalloc(usage_dirty, sizeof(OpsUsage *) * usage_maxdirty);
	}
	usage_dirty[usage_ndirty++] = u;
	u->dirty = true;
}

/*
 * usage_add(flag_key text, true_count bigint, false_count bigint): counts
 * a client SDK reports for a flag it evaluated itself, added like this
 * backend's own evaluations (now, shared at transaction end), whatever
 * opsflags.track_usage says: they are not this backend's.
 */
Datum
opsflags_usage_add(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	int64		n_true = PG_GETARG_INT64(1);
	int64		n_false = PG_GETARG_INT64(2);
	char	   *flag_key;
	OpsUsage   *u;

	if (VARSIZE_ANY_EXHDR(key) > OPSFLAGS_FLAG_KEY_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("flag key is too long")));
	if (n_true < 0 || n_false < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("usage counts must not be negative")));
	if (n_true == 0 && n_false == 0)
		PG_RETURN_VOID();
	flag_key = text_to_cstring(key);
	u = opsflags_usage_for(flag_key);
	pfree(flag_key);
	u->n_true += n_true;
	u->n_false += n_false;
	u->last_evaluated = GetCurrentTimestamp();
	if (!u->dirty)
		opsflags_usage_mark_dirty(u);
	PG_RETURN_VOID();
}

/*
 * flag_usage_counts() -> SETOF (flag_key, true_count, false_count,
 * last_evaluated): this database's counts since the server started.
 */
Datum
opsflags_flag_usage_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	SharedUsage *s;

	InitMaterializedSRF(fcinfo, 0);
	if (usage_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(usage_state->lock, LW_SHARED);
	hash_seq_init(&seq, usage_shared);
	while ((s = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		uint64		last;

		if (s->key.dbid != MyDatabaseId)
			continue;
		last = pg_atomic_read_u64(&s->last_evaluated);
		values[0] = CStringGetTextDatum(s->key.flag_key);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&s->n_true));
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&s->n_false));
		values[3] = TimestampTzGetDatum((TimestampTz) last);
		nulls[3] = (last == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(usage_state->lock);
	return (Datum) 0;
}

void
opsflags_usage_init(void)
{
	DefineCustomBoolVariable("opsflags.track_usage",
							 "Count flag evaluations for opsflags.flag_usage.",
							 NULL,
							 &opsflags_track_usage,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	opsflags_shmem_register(MAXALIGN(sizeof(UsageState)) +
							hash_estimate_size(USAGE_MAX_FLAGS, sizeof(SharedUsage)),
							"opsflags usage", usage_shmem_attach);
}
