/*
 * flags.c
 *	  The per-backend flag cache: loading a flag (its weights, segments and
 *	  prerequisites) and the cache's transactional invalidation.  Evaluation
 *	  (feature_enabled() and the others) is in evaluation.c.
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
 * load allocated.  A change to environments and a TRUNCATE empty the whole
 * cache.
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
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "flags.h"

/* A cache holding more keys than this (say, from random keys) is dropped. */
#define FLAG_CACHE_MAX_ENTRIES 65536

/* Largest total of variation weights: the variant hash's range (int). */
#define MAX_TOTAL_WEIGHT PG_INT32_MAX

/* The variant hash's seed (Unleash), distinct from the rollout's (0). */
#define VARIANT_SEED 86028157

static MemoryContext FlagCacheContext = NULL;
static HTAB *FlagCache = NULL;
static OpsCacheSync flag_cache_sync;	/* when to empty it (cache.c) */
static FlagEntry *last_entry = NULL;	/* most recent lookup: per-row calls repeat it */
static bool load_in_progress = false;	/* flag_load() has not returned yet */
static char warned_environment[OPSFLAGS_ENVIRONMENT_MAXLEN + 1];	/* the unknown
														 * environment last
														 * warned about */

static Oid	flag_tables_owner = InvalidOid;	/* they run as him */

/* Per-flag invalidation (invalidation.c) */
static uint64 seen_published = 0;	/* commits published at the last look */
static uint64 seen_reset_generation = 0;
static bool provisional_pending = false;	/* an entry is provisional */
static Size load_bytes = 0;		/* what the load in progress allocated ... */
static void *load_chunks = NULL;	/* ... in these chunks (EntryChunk) */
static OpsFlagCacheStats stats;

/* The union of the members of some segments. */
static OpsQuery segments_query = {
	.sql =
	"SELECT (SELECT pg_catalog.jsonb_agg(DISTINCT u.value) "
	"          FROM opsflags.user_segments s, pg_catalog.jsonb_array_elements(s.user_ids) u "
	"         WHERE s.segment_key OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1)))), "
	"       (SELECT pg_catalog.jsonb_agg(DISTINCT r.value) "
	"          FROM opsflags.user_segments s, pg_catalog.jsonb_array_elements(s.roles) r "
	"         WHERE s.segment_key OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1))))",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

/*
 * A flag's prerequisites: key and, if required, the value it must serve;
 * and their id, for invalidation.
 */
static OpsQuery prereqs_query = {
	.sql =
	"SELECT f.flag_key, f.variations OPERATOR(pg_catalog.->) p.variation, f.id "
	"FROM opsflags.flag_prerequisites p "
	"JOIN opsflags.feature_flags f ON f.id OPERATOR(pg_catalog.=) p.prerequisite_id "
	"WHERE p.flag_id OPERATOR(pg_catalog.=) $1 "
	"ORDER BY f.flag_key",
	.nargs = 1,
	.argtypes = {UUIDOID},
};

/*
 * One flag in one environment: always one row, whose first column says
 * whether the environment exists and the rest are NULL for an unknown flag
 * or a missing config.
 */
static OpsQuery load_query = {
	.sql =
	"SELECT e.known, f.archived, coalesce(f.rollout_group, f.flag_key), "
	"       c.is_enabled, c.enabled_for_users, c.enabled_for_roles, "
	"       c.enabled_percentage, c.enable_at, c.disable_at, c.version, "
	"       f.variations OPERATOR(pg_catalog.->) c.on_variation, "
	"       f.variations OPERATOR(pg_catalog.->) c.off_variation, "
	"       c.variation_weights, f.variations, f.id, c.segments "
	"FROM (SELECT EXISTS (SELECT FROM opsflags.environments v "
	"                     WHERE v.name OPERATOR(pg_catalog.=) $2) AS known) e "
	"LEFT JOIN opsflags.feature_flags f "
	"  ON f.flag_key OPERATOR(pg_catalog.=) $1 "
	"LEFT JOIN opsflags.feature_flag_configs c "
	"  ON c.flag_id OPERATOR(pg_catalog.=) f.id "
	" AND c.environment OPERATOR(pg_catalog.=) $2",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID},
};

/* ---------- memory of an entry ---------- */

/*
 * Everything a load allocates in the cache context is a chunk of a list
 * that the entry keeps, so that loading it again frees what the former load
 * held: nothing points into an entry's memory from outside but the
 * evaluation at hand, and no entry is reloaded while one reads it.
 */
typedef struct EntryChunk
{
	struct EntryChunk *next;
} EntryChunk;

#define ENTRY_CHUNK_HEADER MAXALIGN(sizeof(EntryChunk))

void *
opsflags_flag_cache_alloc(Size size, bool zero)
{
	EntryChunk *c = MemoryContextAlloc(FlagCacheContext, ENTRY_CHUNK_HEADER + size);

	c->next = load_chunks;
	load_chunks = c;
	load_bytes += GetMemoryChunkSpace(c);
	if (zero)
		memset((char *) c + ENTRY_CHUNK_HEADER, 0, size);
	return (char *) c + ENTRY_CHUNK_HEADER;
}

static void
entry_free_chunks(FlagEntry *entry)
{
	EntryChunk *c = entry->chunks;

	while (c != NULL)
	{
		EntryChunk *next = c->next;

		pfree(c);
		c = next;
	}
	entry->chunks = NULL;
}

/* ---------- string sets ---------- */

/*
 * Build a set from a jsonb array of strings (the table constraints guarantee
 * the shape; anything else is skipped).  Allocated in the cache context; the
 * strings, terminated, in one block as long as the jsonb (each takes 4 bytes
 * more there).
 */
static StrSet *
strset_from_jsonb(Jsonb *jb)
{
	int			n = JB_ROOT_COUNT(jb);
	uint32		size = 8;
	StrSet	   *set;
	char	   *strings;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_ARRAY(jb) || n == 0)
		return NULL;
	while (size < (uint32) n * 2)
		size <<= 1;
	set = opsflags_flag_cache_alloc(sizeof(StrSet), false);
	set->count = 0;
	set->mask = size - 1;
	set->hashes = opsflags_flag_cache_alloc(size * sizeof(uint32), true);
	set->lens = opsflags_flag_cache_alloc(size * sizeof(uint32), false);
	set->strs = opsflags_flag_cache_alloc(size * sizeof(char *), false);
	strings = opsflags_flag_cache_alloc(VARSIZE(jb), false);

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		uint32		len;
		uint32		i;
		char	   *copy;

		if (tok != WJB_ELEM || v.type != jbvString)
			continue;
		len = (uint32) v.val.string.len;
		if (strset_contains(set, v.val.string.val, len))
			continue;
		set->count++;
		copy = strings;
		memcpy(copy, v.val.string.val, len);
		copy[len] = '\0';
		strings += len + 1;
		for (i = strset_hash(copy, len) & set->mask; set->hashes[i] != 0; i = (i + 1) & set->mask)
			;
		set->hashes[i] = strset_hash(copy, len);
		set->lens[i] = len;
		set->strs[i] = copy;
	}
	return set;
}

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
	stats.live_bytes = 0;
	provisional_pending = false;

	/* What is published from now on is news to the entries loaded after. */
	seen_published = opsflags_inval_published();
	seen_reset_generation = opsflags_inval_reset_generation();

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
			!opsflags_inval_refresh(FlagCache, &seen_published, seen_reset_generation,
									&provisional_pending, &stats.invalidated))
			flag_cache_reset();
	}
}

void
opsflags_flag_cache_stats_get(OpsFlagCacheStats *out)
{
	*out = stats;
	out->entries = FlagCache ? hash_get_num_entries(FlagCache) : 0;
}

/* ---------- loading ---------- */

/* A jsonb datum copied into the cache context; NULL for SQL NULL. */
static Jsonb *
cache_jsonb(Datum d, bool isnull)
{
	Jsonb	   *jb;
	Jsonb	   *copy;

	if (isnull)
		return NULL;
	jb = DatumGetJsonbP(d);
	copy = opsflags_flag_cache_alloc(VARSIZE(jb), false);
	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

/*
 * A weighted split: running totals of the weights and the variation each
 * stands for.  Whatever is stored, this never fails: weights that are not
 * whole numbers from 0 up, or whose total is 0 or beyond the variant hash's
 * range, leave the flag serving its on variation, with one WARNING per load.
 */
static void
load_weights(FlagEntry *entry, Jsonb *weights, Jsonb *variations)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = JB_ROOT_COUNT(weights);
	int			i = 0;
	int64		total = 0;
	bool		bad = false;

	if (!JB_ROOT_IS_ARRAY(weights) || JB_ROOT_IS_SCALAR(weights) || n == 0 ||
		n != (int) JB_ROOT_COUNT(variations))
		return;
	entry->cumulative = opsflags_flag_cache_alloc(sizeof(int64) * n, false);
	entry->split_values = opsflags_flag_cache_alloc(sizeof(Jsonb *) * n, false);
	it = JsonbIteratorInit(&weights->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *elem;
		bool		overflow = false;
		int32		w;

		if (tok != WJB_ELEM || i >= n)
			continue;
		if (v.type != jbvNumeric)
		{
			bad = true;
			break;
		}
		w = numeric_int4_opt_error(v.val.numeric, &overflow);
		/* A running total of weights that each fit an int4 fits an int8. */
		if (overflow || w < 0 || (total += w) > MAX_TOTAL_WEIGHT)
		{
			bad = true;
			break;
		}
		entry->cumulative[i] = total;
		elem = getIthJsonbValueFromContainer(&variations->root, i);
		entry->split_values[i] = elem ? cache_jsonb(PointerGetDatum(JsonbValueToJsonb(elem)), false) : NULL;
		i++;
	}
	if (!bad && total > 0 && i == n)
		entry->nweights = n;
	else
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("variation weights of feature flag \"%s\" in environment \"%.*s\" are not usable, serving its on variation",
						entry->key + entry->envlen + 1, entry->envlen, entry->key),
				 errdetail("Weights are whole numbers from 0 whose total is between 1 and %d.",
						   MAX_TOTAL_WEIGHT)));
}

/*
 * Members of the segments a config targets (a jsonb array of keys), on
 * which the entry then depends.
 */
static void
load_segments(FlagEntry *entry, Datum segments)
{
	Datum		args[1] = {segments};
	Jsonb	   *keys = DatumGetJsonbP(segments);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		isnull;
	Datum		d;

	if (JB_ROOT_COUNT(keys) == 0)
		return;
	it = JsonbIteratorInit(&keys->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM && v.type == jbvString)
			opsflags_flag_depend_on_segment(entry, v.val.string.val, v.val.string.len);

	if (opsflags_spi_run(&segments_query, args, NULL, opsflags_cache_snapshot(), 1) != 1)
		return;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		entry->segment_users = strset_from_jsonb(DatumGetJsonbP(d));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		entry->segment_roles = strset_from_jsonb(DatumGetJsonbP(d));
}

static void
load_prerequisites(FlagEntry *entry, Datum flag_id)
{
	Datum		args[1] = {flag_id};
	int			n = opsflags_spi_run(&prereqs_query, args, NULL, opsflags_cache_snapshot(), 0);
	int			i;

	if (n == 0)
		return;
	entry->nprereqs = n;
	entry->prereq_keys = opsflags_flag_cache_alloc(sizeof(char *) * n, false);
	entry->prereq_values = opsflags_flag_cache_alloc(sizeof(Jsonb *) * n, false);
	entry->prereq_entries = opsflags_flag_cache_alloc(sizeof(FlagEntry *) * n, true);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v;
		char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		entry->prereq_keys[i] = opsflags_flag_cache_alloc(strlen(key) + 1, false);
		strcpy(entry->prereq_keys[i], key);
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		entry->prereq_values[i] = cache_jsonb(v, isnull);
		/* The prerequisite's key and variations are read here too. */
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull);
		opsflags_flag_depend_on_definition(entry, DatumGetUUIDP(v));
	}
}

/*
 * An unknown environment evaluates every flag as false; say so once per
 * session and environment (setting it with SET already refuses it, but
 * postgresql.conf, ALTER ROLE/DATABASE, connection options and a deleted
 * environment cannot be checked then).
 */
static void
warn_unknown_environment(const char *env, int envlen)
{
	if ((int) strlen(warned_environment) == envlen &&
		memcmp(warned_environment, env, envlen) == 0)
		return;
	memcpy(warned_environment, env, envlen);
	warned_environment[envlen] = '\0';
	ereport(WARNING,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("environment \"%s\" does not exist, every feature flag evaluates as false in it",
					warned_environment),
			 errhint("Environments are rows of opsflags.environments.")));
}

/*
 * Read one flag's state in one environment into *entry (whose key is set),
 * running the query as the owner of the flag tables (evaluating a flag needs
 * no privilege on them) with the latest snapshot.
 */
static void
flag_load(FlagEntry *entry)
{
	Datum		values[2];
	Snapshot	snapshot;
	OpsSpiState spi;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	text	   *group;
	Datum		flag_id;
	Datum		segments;

	if (!OidIsValid(flag_tables_owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags tables not found"),
				 errhint("Run CREATE EXTENSION opsflags in this database.")));

	values[0] = PointerGetDatum(cstring_to_text(entry->key + entry->envlen + 1));
	values[1] = PointerGetDatum(cstring_to_text_with_len(entry->key, entry->envlen));

	/*
	 * The generation before the snapshot (invalidation.c).  A parallel
	 * leader reads with the statement's older snapshot: the entry is good
	 * for this statement only.
	 */
	entry->load_generation = opsflags_inval_generation();
	entry->load_tag = opsflags_inval_load_tag();
	if (IsInParallelMode())
		entry->provisional = provisional_pending = true;
	snapshot = opsflags_cache_snapshot();

	opsflags_spi_begin(&spi, flag_tables_owner);
	if (opsflags_spi_run(&load_query, values, NULL, snapshot, 1) != 1)
		elog(ERROR, "feature flag query returned no row");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	if (!DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull)))
	{
		entry->absent = REASON_UNKNOWN_ENVIRONMENT;
		warn_unknown_environment(entry->key, entry->envlen);
		opsflags_spi_end(&spi);
		return;
	}
	/* Created since the warning: warn again should it go away. */
	if ((int) strlen(warned_environment) == entry->envlen &&
		memcmp(warned_environment, entry->key, entry->envlen) == 0)
		warned_environment[0] = '\0';
	d = SPI_getbinval(tup, desc, 2, &isnull);
	if (isnull)
	{
		entry->absent = REASON_FLAG_NOT_FOUND;
		opsflags_flag_depend(entry, INVAL_NEW_KEY_SLOT);
		opsflags_spi_end(&spi);
		return;
	}
	opsflags_flag_depend_on_flag(entry, DatumGetUUIDP(SPI_getbinval(tup, desc, 15, &isnull)));
	/* A NULL is_enabled: no config row in this environment */
	entry->absent = DatumGetBool(d) ? REASON_ARCHIVED : REASON_OFF;
	d = SPI_getbinval(tup, desc, 4, &isnull);
	if (entry->absent == REASON_ARCHIVED || isnull)
	{
		opsflags_spi_end(&spi);
		return;
	}

	entry->evaluable = true;
	entry->is_enabled = DatumGetBool(d);
	group = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));
	entry->users = strset_from_jsonb(DatumGetJsonbP(SPI_getbinval(tup, desc, 5, &isnull)));
	entry->roles = strset_from_jsonb(DatumGetJsonbP(SPI_getbinval(tup, desc, 6, &isnull)));
	entry->percentage = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	d = SPI_getbinval(tup, desc, 8, &isnull);
	entry->has_enable_at = !isnull;
	entry->enable_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	entry->has_disable_at = !isnull;
	entry->disable_at = isnull ? 0 : DatumGetTimestampTz(d);
	opsflags_bucket_prefix(&entry->bucket_prefix, VARDATA_ANY(group),
						   VARSIZE_ANY_EXHDR(group), 0);
	opsflags_bucket_prefix(&entry->variant_prefix, VARDATA_ANY(group),
						   VARSIZE_ANY_EXHDR(group), VARIANT_SEED);
	entry->version = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));
	entry->on_value = cache_jsonb(SPI_getbinval(tup, desc, 11, &isnull), isnull);
	entry->off_value = cache_jsonb(SPI_getbinval(tup, desc, 12, &isnull), isnull);
	d = SPI_getbinval(tup, desc, 13, &isnull);
	if (!isnull)
	{
		bool		vnull;
		Datum		variations = SPI_getbinval(tup, desc, 14, &vnull);

		if (!vnull)
			load_weights(entry, DatumGetJsonbP(d), DatumGetJsonbP(variations));
	}
	/* The nested queries reuse SPI_tuptable: read everything first. */
	flag_id = SPI_getbinval(tup, desc, 15, &isnull);
	segments = SPI_getbinval(tup, desc, 16, &isnull);
	load_segments(entry, segments);
	load_prerequisites(entry, flag_id);
	opsflags_spi_end(&spi);
}

static void
flag_load_guarded(void *arg)
{
	flag_load((FlagEntry *) arg);
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
		memcmp(last_entry->key, env, envlen) == 0 && !last_entry->stale &&
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
	if (entry != NULL && !entry->stale &&
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
	load_bytes = 0;
	load_chunks = NULL;
	flag_load_fail_closed(&loaded);
	loaded.mem_bytes = load_bytes;
	loaded.chunks = load_chunks;	/* a failed load's go with the reset it asks for */
	load_chunks = NULL;

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
		entry_free_chunks(entry);
		old_ndeps = entry->ndeps;
	}
	else
	{
		stats.loads++;
		entry = hash_search(FlagCache, key, HASH_ENTER, NULL);
	}
	stats.live_bytes += loaded.mem_bytes;
	memcpy(entry, &loaded, sizeof(FlagEntry));
	opsflags_inval_track(entry, old_ndeps >= 0, Max(old_ndeps, 0), FlagCacheContext);
	return last_entry = entry;
}

void
opsflags_flags_init(void)
{
	RegisterXactCallback(flag_cache_xact_callback, NULL);
	RegisterSubXactCallback(flag_cache_subxact_callback, NULL);
}
