/*
 * flags.c
 *	  The per-backend flag cache: its entries, looked up and loaded (by
 *	  flag_load.c: variations, serve, targeting rules compiled by rules.c,
 *	  segments and prerequisites) on a miss or when stale, and the cache's
 *	  transactional invalidation, which empties the segment cache
 *	  (segments.c) with it.  Evaluation (feature_enabled() and the others)
 *	  is in evaluation.c.
 *
 * The cache maps an environment and a flag key to what evaluation needs
 * there: the on/off state, schedule, targeted users and roles as hash sets,
 * and the rollout percentage.  Calls evaluate in the session's environment
 * (opsflags.environment); feature_guard in the guard's environment.  An
 * entry is loaded with one query the first time a key is evaluated and then
 * serves every later call without a query.
 *
 * Invalidation takes effect at the first lookup of a statement, transaction
 * or command (a boundary, cache.c), so that one statement keeps one answer
 * per flag even when another session's change arrives in its middle.
 *
 * With opsflags in shared_preload_libraries it is per flag (invalidation.c
 * says why no change is missed): at a boundary, if a commit was published
 * since the last look, or the transaction changed flags itself, the entries
 * whose slots moved are marked stale, and each is loaded again in place at
 * its next lookup (in place: other entries point at it as a prerequisite).
 * A stale entry is reached only through a lookup or a prerequisite pointer,
 * and both reload it first, so an evaluation never reads a stale entry;
 * marks are set only at boundaries, between evaluations, so no entry is
 * reloaded while an evaluation holds it, and a reload frees what the former
 * load allocated.  Segment entries (segments.c) are marked and reloaded in
 * place likewise, and so are the flags that read them.  A change to
 * environments and a TRUNCATE empty the whole cache.
 *
 * The row trigger (cache.c) announces row changes with a relcache
 * invalidation of the table's primary key, which also reaches standbys
 * (WAL) and servers without the shared memory: there, and after a PREPARE
 * TRANSACTION that changed flags, it marks the whole cache stale, as does
 * a relcache invalidation of a table itself.  With per-flag invalidation at
 * work, the latter empties the cache only if the tables' definitions
 * changed (DDL): VACUUM and ANALYZE send one too.  The next boundary
 * empties a stale cache.
 *
 * Entries are loaded with the latest snapshot, taken after the generation
 * they are stamped with was read, so a load never brings back data older
 * than an invalidation already received.  A load cut short by an error or a
 * cancel marks the cache stale (xact callbacks), so an aborted statement
 * never leaves the session serving old flags.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rules.h"

/* A cache holding more keys than this (say, from random keys) is dropped. */
#define FLAG_CACHE_MAX_ENTRIES 65536

static MemoryContext FlagCacheContext = NULL;
static HTAB *FlagCache = NULL;
static OpsCacheSync flag_cache_sync;	/* when to empty it (cache.c) */
static FlagEntry *last_entry = NULL;	/* most recent lookup: per-row calls repeat it */
static bool load_in_progress = false;	/* flag_load() has not returned yet */

static Oid	flag_tables_owner = InvalidOid;	/* they run as him */

/* Per-flag invalidation (invalidation.c) */
static uint64 seen_published = 0;	/* commits published at the last look */
static uint64 seen_reset_generation = 0;
static bool provisional_pending = false;	/* an entry is provisional */
static OpsFlagCacheStats stats;

/* ---------- invalidation ---------- */

/*
 * A load cut short by an error or a cancel (that a caller may catch) has
 * left part of an entry in the cache context: drop the cache at the next
 * statement, transaction or command.  A failure that flag_load_fail_closed()
 * handles passes here too.
 */
static void
flag_cache_abort(void)
{
	if (load_in_progress)
	{
		load_in_progress = false;
		flag_cache_sync.stale = true;
	}
}

static void
flag_cache_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		flag_cache_abort();
}

static void
flag_cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		flag_cache_abort();
}

/*
 * Empty the cache and look up our tables again (the extension may have been
 * dropped and created since).
 */
static void
flag_cache_reset(void)
{
	HASHCTL		ctl;

	/* Should this fail half-way, the next lookup starts over. */
	flag_cache_sync.reset_now = true;
	if (FlagCacheContext == NULL)
		FlagCacheContext = AllocSetContextCreate(CacheMemoryContext,
												 "opsflags flag cache",
												 ALLOCSET_DEFAULT_SIZES);
	else
		stats.resets++;
	MemoryContextReset(FlagCacheContext);
	opsflags_inval_forget();
	last_entry = NULL;
	opsflags_segment_cache_reset(FlagCacheContext);
	stats.live_bytes = 0;
	provisional_pending = false;

	/* What is published from now on is news to the entries loaded after. */
	seen_published = opsflags_inval_published();
	seen_reset_generation = opsflags_inval_reset_generation();
	opsflags_flag_keys_reset();

	ctl.keysize = CACHE_KEY_MAXLEN + 1;
	ctl.entrysize = sizeof(FlagEntry);
	ctl.hcxt = FlagCacheContext;
	FlagCache = hash_create("opsflags flags", 256, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	opsflags_flag_tables_reset();
	flag_tables_owner = opsflags_rel_owner(opsflags_relid("feature_flags"));

	opsflags_cache_reset_done(&flag_cache_sync);
}

/*
 * Before a lookup that no evaluation in progress depends on: at a boundary,
 * take changes in (or empty the cache).
 */
static void
flag_cache_sync_point(void)
{
	bool		boundary = opsflags_cache_boundary(&flag_cache_sync);

	if (FlagCache == NULL || flag_cache_sync.reset_now)
		flag_cache_reset();
	else if (boundary)
	{
		if (flag_cache_sync.stale ||
			opsflags_flag_tables_changed() ||
			!opsflags_inval_refresh(FlagCache, opsflags_segment_cache(), &seen_published,
									seen_reset_generation, &provisional_pending,
									&stats.invalidated))
			flag_cache_reset();
	}
}

void
opsflags_flag_cache_stats_get(OpsFlagCacheStats *out)
{
	*out = stats;
	out->entries = FlagCache ? hash_get_num_entries(FlagCache) : 0;
}

static void
flag_load_guarded(void *arg)
{
	opsflags_flag_load((FlagEntry *) arg, FlagCacheContext, flag_tables_owner);
}

/*
 * Load a flag inside a subtransaction, so that a failure (other than a
 * cancel) leaves the caller's transaction intact: the flag then evaluates
 * as false (reason ERROR) for the rest of the statement, with one WARNING,
 * and the next statement loads it again.
 */
static void
flag_load_fail_closed(FlagEntry *entry)
{
	ErrorData  *edata;
	bool		ok;

	load_in_progress = true;
	ok = opsflags_try(flag_load_guarded, entry, false, &edata);
	load_in_progress = false;
	if (ok)
		return;

	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("could not load feature flag \"%s\", evaluating it as false",
					entry->key + entry->envlen + 1),
			 errdetail_internal("%s", edata->message)));
	FreeErrorData(edata);

	/*
	 * What the failed load left in the cache context goes at the next
	 * statement (the abort callback marked the cache stale).  Until then this
	 * entry answers, so the failure is reported once, not once per row: take
	 * our own subtransaction's rollback as already seen.
	 */
	(void) opsflags_cache_check(&flag_cache_sync);
	flag_cache_sync.stale = true;
	memset(((char *) entry) + offsetof(FlagEntry, absent), 0,
		   sizeof(FlagEntry) - offsetof(FlagEntry, absent));
	entry->absent = REASON_ERROR;
	entry->failed_at = GetCurrentStatementStartTimestamp();
}

/*
 * Take changes in now if this is a boundary, as the first lookup of a
 * statement would (evaluate_all does so before it reads its list of keys).
 */
void
opsflags_flag_cache_refresh(void)
{
	flag_cache_sync_point();
}

/*
 * The cached entry for a flag key in an environment, loading it on a miss
 * and loading it again, in place, when stale.  The key must be at most
 * OPSFLAGS_FLAG_KEY_MAXLEN bytes and the environment at most
 * OPSFLAGS_ENVIRONMENT_MAXLEN.  nested: inside an evaluation, whose entries
 * must stay valid, so the cache takes changes in only between evaluations.
 */
FlagEntry *
opsflags_flag_lookup(const char *env, int envlen, const char *keydata, int keylen, bool nested)
{
	char		key[CACHE_KEY_MAXLEN + 1];
	int			len = envlen + 1 + keylen;
	FlagEntry  *entry;
	FlagEntry	loaded;
	int			old_ndeps = -1;

	Assert(envlen <= OPSFLAGS_ENVIRONMENT_MAXLEN && keylen <= OPSFLAGS_FLAG_KEY_MAXLEN);
	if (!nested)
		flag_cache_sync_point();

	if (last_entry != NULL && last_entry->keylen == len && last_entry->envlen == envlen &&
		memcmp(last_entry->key + envlen + 1, keydata, keylen) == 0 &&
		memcmp(last_entry->key, env, envlen) == 0 && !last_entry->inval.stale &&
		(last_entry->absent != REASON_ERROR ||
		 last_entry->failed_at == GetCurrentStatementStartTimestamp()))
	{
		stats.hits++;
		return last_entry;
	}

	memcpy(key, env, envlen);
	key[envlen] = '/';
	memcpy(key + envlen + 1, keydata, keylen);
	key[len] = '\0';

	entry = hash_search(FlagCache, key, HASH_FIND, NULL);
	/* A failed load is tried again by the next statement. */
	if (entry != NULL && !entry->inval.stale &&
		(entry->absent != REASON_ERROR || entry->failed_at == GetCurrentStatementStartTimestamp()))
	{
		stats.hits++;
		return last_entry = entry;
	}

	/* A miss: make room, then load (before, so no invalidation is lost). */
	if (entry == NULL && !nested && hash_get_num_entries(FlagCache) >= FLAG_CACHE_MAX_ENTRIES)
		flag_cache_reset();
	memset(&loaded, 0, sizeof(FlagEntry));
	memcpy(loaded.key, key, len + 1);
	loaded.keylen = len;
	loaded.envlen = envlen;
	flag_load_fail_closed(&loaded);	/* a failed load's memory goes with the
									 * reset it asks for */
	if (loaded.inval.provisional)
		provisional_pending = true;

	/*
	 * A change that arrived during the load marked nothing yet (that waits
	 * for a boundary); keep the entry for the rest of this statement and let
	 * the next one look again.
	 */
	if (loaded.evaluable)
		loaded.usage = opsflags_usage_for(key + envlen + 1);
	if (entry != NULL)
	{
		/* In place: prerequisites elsewhere point at it. */
		stats.reloads++;
		stats.live_bytes -= entry->mem_bytes;
		opsflags_flag_entry_free(entry);
		old_ndeps = entry->ndeps;
	}
	else
	{
		stats.loads++;
		entry = hash_search(FlagCache, key, HASH_ENTER, NULL);
	}
	stats.live_bytes += loaded.mem_bytes;
	memcpy(entry, &loaded, sizeof(FlagEntry));
	/* Should tracking fail (out of memory), the entry must not outlive it. */
	load_in_progress = true;
	opsflags_inval_track(entry, old_ndeps >= 0, Max(old_ndeps, 0), FlagCacheContext);
	load_in_progress = false;
	return last_entry = entry;
}

void
opsflags_flags_init(void)
{
	RegisterXactCallback(flag_cache_xact_callback, NULL);
	RegisterSubXactCallback(flag_cache_subxact_callback, NULL);
}
