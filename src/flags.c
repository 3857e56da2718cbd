/*
 * flags.c
 *	  Feature flag evaluation: the per-backend flag cache and its
 *	  transactional invalidation, feature_enabled(), and the feature_guard()
 *	  trigger.
 *
 * The cache maps an environment and a flag key to what evaluation needs
 * there: the on/off state, schedule, targeted users and roles as hash sets,
 * and the rollout percentage.  Calls evaluate in the session's environment
 * (opsflags.environment); feature_guard in the guard's environment.  An
 * entry is loaded with one query the first time a key is evaluated and then
 * serves every later call without a query.
 *
 * Invalidation (see cache.c, opsflags_cache_check): triggers on the flag
 * tables queue relcache invalidations, our relcache callback marks the cache
 * stale, and the first lookup of the next statement, transaction or command
 * empties it, so that one statement keeps one answer per flag even when
 * another session's invalidation arrives in its middle.  Entries are loaded
 * with a fresh snapshot taken after the stale mark was cleared, so a load
 * never brings back data older than an invalidation already received.
 *
 * Nothing about an evaluation in progress outlives it: the prerequisite
 * depth and memo travel in an EvalState on the stack, and a load cut short
 * by an error or a cancel marks the cache stale (xact callbacks), so an
 * aborted statement never leaves the session serving old flags.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_feature_enabled);
PG_FUNCTION_INFO_V1(opsflags_feature_value);
PG_FUNCTION_INFO_V1(opsflags_feature_explain);
PG_FUNCTION_INFO_V1(opsflags_feature_guard);

/* A cache holding more keys than this (say, from random keys) is dropped. */
#define FLAG_CACHE_MAX_ENTRIES 65536

/*
 * A set of strings: open addressing over a power-of-two table, so lookups
 * cost the same with 10 members as with 100,000.  Probes touch only the
 * compact hash array (0 marks an empty slot); the strings are compared only
 * when a hash matches.
 */
#define STRSET_SCAN_MAX 4		/* sets this small are scanned, not hashed */

typedef struct StrSet
{
	uint32		count;
	uint32		mask;
	uint32	   *hashes;
	uint32	   *lens;
	const char **strs;
} StrSet;

/* Why a flag evaluates as it does (feature_explain's reason). */
typedef enum FlagReason
{
	REASON_UNKNOWN_ENVIRONMENT,
	REASON_FLAG_NOT_FOUND,
	REASON_ARCHIVED,
	REASON_OFF,
	REASON_SCHEDULE,
	REASON_PREREQUISITE_FAILED,
	REASON_TARGET_USER,
	REASON_TARGET_ROLE,
	REASON_SEGMENT_MATCH,
	REASON_ROLLOUT_IN,
	REASON_ROLLOUT_OUT,
	REASON_FALLTHROUGH,
	REASON_ERROR
} FlagReason;

static const char *const reason_names[] = {
	"UNKNOWN_ENVIRONMENT", "FLAG_NOT_FOUND", "ARCHIVED", "OFF", "SCHEDULE", "PREREQUISITE_FAILED",
	"TARGET_USER", "TARGET_ROLE", "SEGMENT_MATCH", "ROLLOUT_IN", "ROLLOUT_OUT",
	"FALLTHROUGH", "ERROR"
};

/* Deepest prerequisite chain evaluated (the schema refuses deeper ones). */
#define MAX_PREREQUISITE_DEPTH 8

/* Longest environment name (opsflags.environments.name). */
#define ENVIRONMENT_MAXLEN 63

/* A cache key: "<environment>/<flag key>" (neither can contain "/"). */
#define CACHE_KEY_MAXLEN (ENVIRONMENT_MAXLEN + 1 + OPSFLAGS_FLAG_KEY_MAXLEN)

/* Largest total of variation weights: the variant hash's range (int). */
#define MAX_TOTAL_WEIGHT PG_INT32_MAX

/* The variant hash's seed (Unleash), distinct from the rollout's (0). */
#define VARIANT_SEED 86028157

typedef struct FlagEntry FlagEntry;

struct FlagEntry
{
	char		key[CACHE_KEY_MAXLEN + 1];	/* hash key: environment/flag key */
	int			keylen;
	int			envlen;			/* the environment is key[0 .. envlen - 1] */
	FlagReason	absent;			/* UNKNOWN_ENVIRONMENT, FLAG_NOT_FOUND,
								 * ARCHIVED, OFF (no config) or ERROR (load
								 * failed) when !evaluable */
	bool		evaluable;		/* false: see absent */
	TimestampTz failed_at;		/* ERROR: statement whose load failed */
	bool		is_enabled;
	int32		version;		/* the config's version */
	Jsonb	   *on_value;		/* variations[on_variation] */
	Jsonb	   *off_value;		/* variations[off_variation] */
	int			nweights;		/* > 0: a weighted split of the variations */
	int64	   *cumulative;		/* running totals of the weights */
	Jsonb	  **split_values;	/* the variation of each weight */
	OpsMurmur3	variant_prefix; /* variant hash of "group:" */
	StrSet	   *segment_users;	/* members of the targeted segments */
	StrSet	   *segment_roles;
	int			nprereqs;
	char	  **prereq_keys;	/* flags that must be on for the user ... */
	Jsonb	  **prereq_values;	/* ... serving this value (NULL: any) */
	FlagEntry **prereq_entries; /* their entries, once looked up (the cache
								 * is only ever emptied whole) */
	uint64		memo_evaluation;	/* the evaluation memo_reason belongs to */
	FlagReason	memo_reason;	/* this flag's reason, as a prerequisite */
	bool		has_enable_at;
	bool		has_disable_at;
	TimestampTz enable_at;
	TimestampTz disable_at;
	int32		percentage;
	StrSet	   *users;			/* NULL when empty */
	StrSet	   *roles;
	OpsMurmur3	bucket_prefix;	/* rollout hash of "group:", group being
								 * rollout_group, else the key */
	OpsUsage   *usage;			/* this backend's counters for the flag */
};

static MemoryContext FlagCacheContext = NULL;
static HTAB *FlagCache = NULL;
static OpsCacheSync flag_cache_sync;	/* when to empty it (cache.c) */
static FlagEntry *last_entry = NULL;	/* most recent lookup: per-row calls repeat it */
static bool load_in_progress = false;	/* flag_load() has not returned yet */
static uint64 evaluation_counter = 0;	/* numbers evaluations with prerequisites */
static char warned_environment[ENVIRONMENT_MAXLEN + 1];	/* the unknown
														 * environment last
														 * warned about */

/*
 * One evaluation with prerequisites: how deep it is, whether a chain went
 * deeper than the schema allows, and its number (memo_evaluation).
 */
typedef struct EvalState
{
	uint64		number;
	int			depth;
	bool		too_deep;
} EvalState;

/* OIDs of the tables whose invalidation empties the cache. */
static Oid	flag_table_oids[5];
static Oid	flag_tables_owner = InvalidOid;

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

/* A flag's prerequisites: key and, if required, the value it must serve. */
static OpsQuery prereqs_query = {
	.sql =
	"SELECT f.flag_key, f.variations OPERATOR(pg_catalog.->) p.variation "
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

/* ---------- string sets ---------- */

static inline uint32
strset_hash(const char *s, uint32 len)
{
	uint32		h = hash_bytes((const unsigned char *) s, (int) len);

	return h == 0 ? 1 : h;
}

static bool
strset_contains(const StrSet *set, const char *s, uint32 len)
{
	uint32		h;
	uint32		i;

	if (set == NULL)
		return false;
	if (set->count <= STRSET_SCAN_MAX)
	{
		for (i = 0; i <= set->mask; i++)
		{
			if (set->hashes[i] != 0 && set->lens[i] == len &&
				memcmp(set->strs[i], s, len) == 0)
				return true;
		}
		return false;
	}
	h = strset_hash(s, len);
	for (i = h & set->mask; set->hashes[i] != 0; i = (i + 1) & set->mask)
	{
		if (set->hashes[i] == h && set->lens[i] == len &&
			memcmp(set->strs[i], s, len) == 0)
			return true;
	}
	return false;
}

/*
 * Build a set from a jsonb array of strings (the table constraints guarantee
 * the shape; anything else is skipped).  Allocated in the cache context.
 */
static StrSet *
strset_from_jsonb(Jsonb *jb)
{
	int			n = JB_ROOT_COUNT(jb);
	uint32		size = 8;
	StrSet	   *set;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_ARRAY(jb) || n == 0)
		return NULL;
	while (size < (uint32) n * 2)
		size <<= 1;
	set = MemoryContextAlloc(FlagCacheContext, sizeof(StrSet));
	set->count = 0;
	set->mask = size - 1;
	set->hashes = MemoryContextAllocZero(FlagCacheContext, size * sizeof(uint32));
	set->lens = MemoryContextAlloc(FlagCacheContext, size * sizeof(uint32));
	set->strs = MemoryContextAlloc(FlagCacheContext, size * sizeof(char *));

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
		copy = MemoryContextAlloc(FlagCacheContext, len + 1);
		memcpy(copy, v.val.string.val, len);
		copy[len] = '\0';
		for (i = strset_hash(copy, len) & set->mask; set->hashes[i] != 0; i = (i + 1) & set->mask)
			;
		set->hashes[i] = strset_hash(copy, len);
		set->lens[i] = len;
		set->strs[i] = copy;
	}
	return set;
}

/* ---------- invalidation ---------- */

static void
flag_cache_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		relid == flag_table_oids[0] ||
		relid == flag_table_oids[1] ||
		relid == flag_table_oids[2] ||
		relid == flag_table_oids[3] ||
		relid == flag_table_oids[4])
		flag_cache_sync.stale = true;
}

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

	if (FlagCacheContext == NULL)
		FlagCacheContext = AllocSetContextCreate(CacheMemoryContext,
												 "opsflags flag cache",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(FlagCacheContext);
	last_entry = NULL;

	ctl.keysize = CACHE_KEY_MAXLEN + 1;
	ctl.entrysize = sizeof(FlagEntry);
	ctl.hcxt = FlagCacheContext;
	FlagCache = hash_create("opsflags flags", 256, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	flag_table_oids[0] = opsflags_relid("feature_flags");
	flag_table_oids[1] = opsflags_relid("feature_flag_configs");
	flag_table_oids[2] = opsflags_relid("environments");
	flag_table_oids[3] = opsflags_relid("user_segments");
	flag_table_oids[4] = opsflags_relid("flag_prerequisites");
	flag_tables_owner = opsflags_rel_owner(flag_table_oids[0]);

	opsflags_cache_reset_done(&flag_cache_sync);
}

/* ---------- loading ---------- */

/* A jsonb datum copied into the cache context; NULL for SQL NULL. */
static Jsonb *
cache_jsonb(Datum d, bool isnull)
{
	MemoryContext old;
	Jsonb	   *copy;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(FlagCacheContext);
	copy = DatumGetJsonbPCopy(d);
	MemoryContextSwitchTo(old);
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
	entry->cumulative = MemoryContextAlloc(FlagCacheContext, sizeof(int64) * n);
	entry->split_values = MemoryContextAlloc(FlagCacheContext, sizeof(Jsonb *) * n);
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

/* Members of the segments a config targets (a jsonb array of keys). */
static void
load_segments(FlagEntry *entry, Datum segments)
{
	Datum		args[1] = {segments};
	bool		isnull;
	Datum		d;

	if (JB_ROOT_COUNT(DatumGetJsonbP(segments)) == 0)
		return;
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
	entry->prereq_keys = MemoryContextAlloc(FlagCacheContext, sizeof(char *) * n);
	entry->prereq_values = MemoryContextAlloc(FlagCacheContext, sizeof(Jsonb *) * n);
	entry->prereq_entries = MemoryContextAllocZero(FlagCacheContext, sizeof(FlagEntry *) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v;

		entry->prereq_keys[i] = MemoryContextStrdup(FlagCacheContext,
													SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		entry->prereq_values[i] = cache_jsonb(v, isnull);
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
		opsflags_spi_end(&spi);
		return;
	}
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
 * The cached entry for a flag key in an environment, loading it on a miss.
 * The key must be at most OPSFLAGS_FLAG_KEY_MAXLEN bytes and the environment
 * at most ENVIRONMENT_MAXLEN.  nested: inside an evaluation, whose entries
 * must stay valid, so the cache is emptied only between evaluations.
 */
static FlagEntry *
flag_lookup(const char *env, int envlen, const char *keydata, int keylen, bool nested)
{
	char		key[CACHE_KEY_MAXLEN + 1];
	int			len = envlen + 1 + keylen;
	FlagEntry  *entry;
	FlagEntry	loaded;
	bool		found;

	Assert(envlen <= ENVIRONMENT_MAXLEN && keylen <= OPSFLAGS_FLAG_KEY_MAXLEN);
	if (!nested &&
		(opsflags_cache_check(&flag_cache_sync) || FlagCache == NULL))
		flag_cache_reset();

	if (last_entry != NULL && last_entry->keylen == len && last_entry->envlen == envlen &&
		memcmp(last_entry->key + envlen + 1, keydata, keylen) == 0 &&
		memcmp(last_entry->key, env, envlen) == 0 &&
		(last_entry->absent != REASON_ERROR ||
		 last_entry->failed_at == GetCurrentStatementStartTimestamp()))
		return last_entry;

	memcpy(key, env, envlen);
	key[envlen] = '/';
	memcpy(key + envlen + 1, keydata, keylen);
	key[len] = '\0';

	entry = hash_search(FlagCache, key, HASH_FIND, NULL);
	/* A failed load is tried again by the next statement. */
	if (entry != NULL &&
		(entry->absent != REASON_ERROR || entry->failed_at == GetCurrentStatementStartTimestamp()))
		return last_entry = entry;

	/* A miss: make room, then load (before, so no invalidation is lost). */
	if (!nested && hash_get_num_entries(FlagCache) >= FLAG_CACHE_MAX_ENTRIES)
		flag_cache_reset();
	memset(&loaded, 0, sizeof(FlagEntry));
	memcpy(loaded.key, key, len + 1);
	loaded.keylen = len;
	loaded.envlen = envlen;
	flag_load_fail_closed(&loaded);

	/*
	 * An invalidation that arrived during the load reset nothing yet (the
	 * callback only marks the cache stale); keep the entry for the rest of
	 * this statement and let the next one start afresh.
	 */
	if (loaded.evaluable)
		loaded.usage = opsflags_usage_for(key + envlen + 1);
	entry = hash_search(FlagCache, key, HASH_ENTER, &found);
	memcpy(entry, &loaded, sizeof(FlagEntry));
	return last_entry = entry;
}

/* ---------- evaluation ---------- */

static inline bool
reason_enabled(FlagReason r)
{
	return r == REASON_TARGET_USER || r == REASON_TARGET_ROLE || r == REASON_SEGMENT_MATCH ||
		r == REASON_ROLLOUT_IN || r == REASON_FALLTHROUGH;
}

static FlagReason flag_evaluate_in(FlagEntry *e, const char *user, uint32 userlen,
								   const char *role, uint32 rolelen, int *bucket,
								   EvalState *state);
static Jsonb *flag_value(const FlagEntry *e, bool enabled, const char *user, uint32 userlen);

/*
 * Step 4: every prerequisite on for the same user and role (and serving
 * the required variation).  A prerequisite that cannot be loaded fails; a
 * chain deeper than the schema allows fails the whole evaluation.  Each
 * flag is evaluated once per evaluation however many paths lead to it, so
 * the work is bounded by the flags and edges reachable, and a cancel is
 * honoured between prerequisites.
 */
static bool
prerequisites_met(FlagEntry *e, const char *user, uint32 userlen,
				  const char *role, uint32 rolelen, EvalState *state)
{
	int			i;
	bool		met = true;

	if (state->depth >= MAX_PREREQUISITE_DEPTH)
	{
		state->too_deep = true;
		return false;
	}
	state->depth++;
	for (i = 0; met && i < e->nprereqs; i++)
	{
		FlagEntry  *p = e->prereq_entries[i];
		FlagReason	reason;
		int			bucket;
		bool		on;

		CHECK_FOR_INTERRUPTS();
		if (p == NULL)
		{
			p = flag_lookup(e->key, e->envlen, e->prereq_keys[i],
							strlen(e->prereq_keys[i]), true);
			e->prereq_entries[i] = p;
		}
		if (p->memo_evaluation == state->number)
			reason = p->memo_reason;
		else
		{
			reason = flag_evaluate_in(p, user, userlen, role, rolelen, &bucket, state);
			p->memo_evaluation = state->number;
			p->memo_reason = reason;
		}
		on = reason_enabled(reason);
		if (e->prereq_values[i] == NULL)
			met = on;
		else
		{
			Jsonb	   *served = flag_value(p, on, user, userlen);

			met = served != NULL &&
				compareJsonbContainers(&served->root, &e->prereq_values[i]->root) == 0;
		}
	}
	state->depth--;
	return met;
}

/*
 * The evaluation order (README.md), first match wins: the reason, and the rollout
 * bucket when one was computed (else 0).  user/role may be NULL.
 */
static FlagReason
flag_evaluate_in(FlagEntry *e, const char *user, uint32 userlen,
				 const char *role, uint32 rolelen, int *bucket, EvalState *state)
{
	*bucket = 0;
	if (!e->evaluable)
		return e->absent;
	if (!e->is_enabled)
		return REASON_OFF;

	if (e->has_enable_at || e->has_disable_at)
	{
		TimestampTz now = GetCurrentStatementStartTimestamp();

		if ((e->has_enable_at && now < e->enable_at) ||
			(e->has_disable_at && now >= e->disable_at))
			return REASON_SCHEDULE;
	}

	if (e->nprereqs > 0)
	{
		EvalState	top;

		if (state == NULL)
		{
			top.number = ++evaluation_counter;
			top.depth = 0;
			top.too_deep = false;
			state = &top;
		}
		if (!prerequisites_met(e, user, userlen, role, rolelen, state) || state->too_deep)
			return REASON_PREREQUISITE_FAILED;
	}

	if (user != NULL && strset_contains(e->users, user, userlen))
		return REASON_TARGET_USER;
	if (role != NULL && strset_contains(e->roles, role, rolelen))
		return REASON_TARGET_ROLE;
	if ((user != NULL && strset_contains(e->segment_users, user, userlen)) ||
		(role != NULL && strset_contains(e->segment_roles, role, rolelen)))
		return REASON_SEGMENT_MATCH;

	if (e->percentage > 0)
	{
		if (e->percentage >= 100)
			return REASON_ROLLOUT_IN;
		if (user == NULL)
			return REASON_ROLLOUT_OUT;
		*bucket = opsflags_bucket_finish(&e->bucket_prefix, user, userlen, 100);
		return *bucket <= e->percentage ? REASON_ROLLOUT_IN : REASON_ROLLOUT_OUT;
	}
	return REASON_FALLTHROUGH;
}

/* A whole evaluation (not a prerequisite's). */
static inline FlagReason
flag_evaluate(FlagEntry *e, const char *user, uint32 userlen,
			  const char *role, uint32 rolelen, int *bucket)
{
	return flag_evaluate_in(e, user, userlen, role, rolelen, bucket, NULL);
}

/* The variation served: on (or the weighted split's) when enabled, else off. */
static Jsonb *
flag_value(const FlagEntry *e, bool enabled, const char *user, uint32 userlen)
{
	if (e == NULL || !e->evaluable)
		return NULL;
	if (!enabled)
		return e->off_value;
	if (e->nweights > 0 && user != NULL)
	{
		int64		b = opsflags_bucket_finish(&e->variant_prefix, user, userlen,
											   (uint32) e->cumulative[e->nweights - 1]);
		int			i;

		for (i = 0; i < e->nweights; i++)
			if (b <= e->cumulative[i])
				return e->split_values[i];
	}
	return e->on_value;
}

/* The arguments of the evaluating functions, unpacked. */
typedef struct FlagCall
{
	const char *key;
	int			keylen;
	const char *user;
	uint32		userlen;
	const char *role;
	uint32		rolelen;
} FlagCall;

static bool
flag_call_args(FunctionCallInfo fcinfo, FlagCall *c)
{
	text	   *key;
	text	   *user = NULL;
	text	   *role = NULL;

	if (PG_ARGISNULL(0))
		return false;
	key = PG_GETARG_TEXT_PP(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		user = PG_GETARG_TEXT_PP(1);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		role = PG_GETARG_TEXT_PP(2);
	c->key = VARDATA_ANY(key);
	c->keylen = VARSIZE_ANY_EXHDR(key);
	c->user = user ? VARDATA_ANY(user) : NULL;
	c->userlen = user ? VARSIZE_ANY_EXHDR(user) : 0;
	c->role = role ? VARDATA_ANY(role) : NULL;
	c->rolelen = role ? VARSIZE_ANY_EXHDR(role) : 0;
	return true;
}

/*
 * The entry for a key in an environment; NULL when the key cannot name a
 * flag (or the environment is too long to exist).
 */
static FlagEntry *
flag_entry(const char *env, const char *key, int keylen)
{
	int			envlen = strlen(env);

	if (keylen <= 0 || keylen > OPSFLAGS_FLAG_KEY_MAXLEN ||
		envlen <= 0 || envlen > ENVIRONMENT_MAXLEN)
		return NULL;
	return flag_lookup(env, envlen, key, keylen, false);
}

/* Count an evaluation (in backend memory; shared at transaction end). */
static inline void
count_usage(const FlagEntry *e, bool on)
{
	OpsUsage   *u = e->usage;

	if (u == NULL || !opsflags_track_usage)
		return;
	if (on)
		u->n_true++;
	else
		u->n_false++;
	u->last_evaluated = GetCurrentStatementStartTimestamp();
	if (!u->dirty)
		opsflags_usage_mark_dirty(u);
}

/*
 * Evaluate by key in an environment: the reason (FLAG_NOT_FOUND for keys
 * that cannot name a flag).
 */
static FlagReason
flag_reason(const char *env, const char *key, int keylen, const char *user, uint32 userlen,
			const char *role, uint32 rolelen)
{
	FlagEntry  *e = flag_entry(env, key, keylen);
	FlagReason	reason;
	int			bucket;

	if (e == NULL)
		return REASON_FLAG_NOT_FOUND;
	reason = flag_evaluate(e, user, userlen, role, rolelen, &bucket);
	count_usage(e, reason_enabled(reason));
	return reason;
}

/*
 * feature_enabled(flag_key text, user_id text, user_role text) -> boolean
 */
Datum
opsflags_feature_enabled(PG_FUNCTION_ARGS)
{
	FlagCall	c;

	if (!flag_call_args(fcinfo, &c))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(reason_enabled(flag_reason(opsflags_environment, c.key, c.keylen,
											  c.user, c.userlen, c.role, c.rolelen)));
}

/*
 * feature_value(flag_key text, user_id text, user_role text) -> jsonb
 */
Datum
opsflags_feature_value(PG_FUNCTION_ARGS)
{
	FlagCall	c;
	FlagEntry  *e;
	int			bucket;
	bool		on;
	Jsonb	   *v;

	if (!flag_call_args(fcinfo, &c) ||
		(e = flag_entry(opsflags_environment, c.key, c.keylen)) == NULL)
		PG_RETURN_NULL();
	on = reason_enabled(flag_evaluate(e, c.user, c.userlen, c.role, c.rolelen, &bucket));
	count_usage(e, on);
	v = flag_value(e, on, c.user, c.userlen);
	if (v == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P((Jsonb *) datumCopy(PointerGetDatum(v), false, -1));
}

/*
 * feature_explain(flag_key text, user_id text, user_role text) -> jsonb:
 * enabled, value, reason, bucket, environment, flag_version; always the
 * same answer as feature_enabled and feature_value.
 */
Datum
opsflags_feature_explain(PG_FUNCTION_ARGS)
{
	FlagCall	c;
	FlagEntry  *e = NULL;
	FlagReason	reason = REASON_FLAG_NOT_FOUND;
	int			bucket = 0;
	bool		enabled = false;
	Jsonb	   *value = NULL;
	StringInfoData buf;

	if (flag_call_args(fcinfo, &c))
	{
		e = flag_entry(opsflags_environment, c.key, c.keylen);
		if (e != NULL)
		{
			reason = flag_evaluate(e, c.user, c.userlen, c.role, c.rolelen, &bucket);
			enabled = reason_enabled(reason);
			value = flag_value(e, enabled, c.user, c.userlen);
		}
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"enabled\": %s, \"value\": %s, \"reason\": \"%s\", \"bucket\": ",
					 enabled ? "true" : "false",
					 value ? JsonbToCString(NULL, &value->root, VARSIZE(value)) : "null",
					 reason_names[reason]);
	if (bucket > 0)
		appendStringInfo(&buf, "%d", bucket);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"environment\": ");
	escape_json(&buf, opsflags_environment);
	appendStringInfoString(&buf, ", \"flag_version\": ");
	if (e != NULL && e->evaluable)
		appendStringInfo(&buf, "%d", e->version);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * feature_guard('flag.key' [, 'environment']): trigger refusing writes to
 * the table while the flag is off for the writer (user = session_user, role
 * = current_user) in the guard's environment: the trigger's second argument,
 * else opsflags.guard_environment, which only a superuser sets, else
 * opsflags.environment as the server configuration sets it.  What a role,
 * database or session sets plays no part, so SET cannot bypass a guard.
 */
Datum
opsflags_feature_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	const char *key;
	const char *env;
	const char *user;
	const char *role;
	FlagReason	reason;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("feature_guard() must be called as a trigger")));

	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 1 && trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" must pass feature_guard() the flag key and, optionally, the environment",
						trigger->tgname, RelationGetRelationName(trigdata->tg_relation))));

	key = trigger->tgargs[0];
	env = trigger->tgnargs == 2 ? trigger->tgargs[1] : opsflags_guard_environment_name();
	if (!opsflags_valid_environment_name(env))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" passes feature_guard() an invalid environment name",
						trigger->tgname, RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("An environment name has 1 to 63 lower-case letters, digits, \"_\" and \"-\", and starts with a letter or digit.")));
	user = GetUserNameFromId(GetSessionUserId(), false);
	role = GetUserNameFromId(GetUserId(), false);

	reason = flag_reason(env, key, strlen(key), user, strlen(user), role, strlen(role));
	if (!reason_enabled(reason))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("feature flag \"%s\" is off: writes to table \"%s\" are disabled",
						key, RelationGetRelationName(trigdata->tg_relation)),
				 reason == REASON_UNKNOWN_ENVIRONMENT ?
				 errdetail("Environment \"%s\" of the guard does not exist.", env) :
				 errdetail("Flag evaluated in environment \"%s\" for user \"%s\" and role \"%s\".",
						   env, user, role)));

	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) && TRIGGER_FIRED_BEFORE(trigdata->tg_event))
	{
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			return PointerGetDatum(trigdata->tg_newtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	return PointerGetDatum(NULL);
}

void
opsflags_flags_init(void)
{
	CacheRegisterRelcacheCallback(flag_cache_relcache_callback, (Datum) 0);
	RegisterXactCallback(flag_cache_xact_callback, NULL);
	RegisterSubXactCallback(flag_cache_subxact_callback, NULL);
}
