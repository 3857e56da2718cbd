/*
 * flags.c
 *	  The per-backend flag cache: loading a flag (its variations, serve,
 *	  targeting rules compiled by rules.c, segments and prerequisites) and
 *	  the cache's transactional invalidation, which empties the segment
 *	  cache (segments.c) with it.  Evaluation
 *	  (feature_enabled() and the others) is in evaluation.c.
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
 * A load cut short by an error or a cancel marks the cache stale (xact
 * callbacks), so an aborted statement never leaves the session serving old
 * flags.
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
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "rules.h"

/* A cache holding more keys than this (say, from random keys) is dropped. */
#define FLAG_CACHE_MAX_ENTRIES 65536

static MemoryContext FlagCacheContext = NULL;
static HTAB *FlagCache = NULL;
static OpsCacheSync flag_cache_sync;	/* when to empty it (cache.c) */
static FlagEntry *last_entry = NULL;	/* most recent lookup: per-row calls repeat it */
static bool load_in_progress = false;	/* flag_load() has not returned yet */
static char warned_environment[OPSFLAGS_ENVIRONMENT_MAXLEN + 1];	/* the unknown
														 * environment last
														 * warned about */

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

/*
 * A flag's prerequisites: key, on or off, and, if required, the value it
 * must serve or the indexes of the variations named in variants.
 */
static OpsQuery prereqs_query = {
	.sql =
	"SELECT f.flag_key, f.variations OPERATOR(pg_catalog.->) p.variation, p.enabled, "
	"       CASE WHEN p.variants IS NOT NULL THEN COALESCE("
	"         (SELECT pg_catalog.jsonb_agg(n.o OPERATOR(pg_catalog.-) 1) "
	"            FROM pg_catalog.jsonb_array_elements(f.variation_names) WITH ORDINALITY n(v, o) "
	"           WHERE pg_catalog.jsonb_typeof(n.v) OPERATOR(pg_catalog.=) 'string' "
	"             AND p.variants OPERATOR(pg_catalog.@>) pg_catalog.jsonb_build_array(n.v)), "
	"         '[]'::pg_catalog.jsonb) END "
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
	"       c.variation_weights, f.variations, f.id, c.segments, "
	"       c.on_variation, c.off_variation, c.rules, c.serve, c.fallthrough, "
	"       f.variation_names "
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

/*
 * A set of n strings (duplicates are kept once), copied into cxt; NULL when
 * empty.  Also what the rule compiler builds its sets with.
 */
StrSet *
opsflags_strset_build(const char **strs, const uint32 *lens, int n, MemoryContext cxt)
{
	uint32		size = 8;
	StrSet	   *set;

	if (n == 0)
		return NULL;
	while (size < (uint32) n * 2)
		size <<= 1;
	set = MemoryContextAlloc(cxt, sizeof(StrSet));
	set->count = 0;
	set->mask = size - 1;
	set->hashes = MemoryContextAllocZero(cxt, size * sizeof(uint32));
	set->lens = MemoryContextAlloc(cxt, size * sizeof(uint32));
	set->strs = MemoryContextAlloc(cxt, size * sizeof(char *));
	for (int k = 0; k < n; k++)
	{
		uint32		len = lens[k];
		uint32		i;
		char	   *copy;

		if (strset_contains(set, strs[k], len))
			continue;
		set->count++;
		copy = MemoryContextAlloc(cxt, len + 1);
		memcpy(copy, strs[k], len);
		copy[len] = '\0';
		for (i = strset_hash(copy, len) & set->mask; set->hashes[i] != 0; i = (i + 1) & set->mask)
			;
		set->hashes[i] = strset_hash(copy, len);
		set->lens[i] = len;
		set->strs[i] = copy;
	}
	return set;
}

/*
 * Build a set from a jsonb array of strings (the table constraints guarantee
 * the shape; anything else is skipped).  Allocated in the cache context.
 */
static StrSet *
strset_from_jsonb(Jsonb *jb)
{
	int			n = JB_ROOT_COUNT(jb);
	const char **strs;
	uint32	   *lens;
	int			k = 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_ARRAY(jb) || n == 0)
		return NULL;
	strs = palloc(sizeof(char *) * n);
	lens = palloc(sizeof(uint32) * n);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM || v.type != jbvString || k >= n)
			continue;
		strs[k] = v.val.string.val;
		lens[k++] = (uint32) v.val.string.len;
	}
	return opsflags_strset_build(strs, lens, k, FlagCacheContext);
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
	opsflags_segment_cache_reset(FlagCacheContext);
	opsflags_flag_keys_reset();

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

/* ---------- loading rules (rules.c compiles them) ---------- */

/*
 * The variations, their names, the config's serve, fallthrough and rules,
 * compiled leniently into the cache context: a part that does not compile
 * never matches (one WARNING per load).  Reads the load query's columns
 * 11 on; the caller has read those of the nested queries' rows already.
 */
static void
load_rules(FlagEntry *entry, HeapTuple tup, TupleDesc desc, text *group)
{
	char		flag[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
	char		env[OPSFLAGS_ENVIRONMENT_MAXLEN + 1];
	RuleTarget	t = {0};
	bool		isnull;
	Datum		d;
	Jsonb	   *variations;
	Jsonb	   *names;
	Jsonb	   *weights;
	Jsonb	   *rules;
	Jsonb	   *serve;
	Jsonb	   *fallthrough;
	int			on_variation;

	d = SPI_getbinval(tup, desc, 14, &isnull);
	variations = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 13, &isnull);
	weights = isnull ? NULL : DatumGetJsonbPCopy(d);
	on_variation = DatumGetInt32(SPI_getbinval(tup, desc, 17, &isnull));
	entry->off_variation = DatumGetInt32(SPI_getbinval(tup, desc, 18, &isnull));
	d = SPI_getbinval(tup, desc, 19, &isnull);
	rules = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 20, &isnull);
	serve = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 21, &isnull);
	fallthrough = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 22, &isnull);
	names = isnull ? NULL : DatumGetJsonbPCopy(d);

	if (variations != NULL && JB_ROOT_IS_ARRAY(variations) && !JB_ROOT_IS_SCALAR(variations))
	{
		int			n = JB_ROOT_COUNT(variations);

		entry->nvariations = n;
		entry->values = MemoryContextAllocZero(FlagCacheContext, sizeof(Jsonb *) * (n + 1));
		entry->variant_names = MemoryContextAllocZero(FlagCacheContext, sizeof(char *) * (n + 1));
		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(&variations->root, i);

			entry->values[i] = cache_jsonb(PointerGetDatum(JsonbValueToJsonb(e)), false);
			if (names != NULL && JB_ROOT_IS_ARRAY(names) && i < (int) JB_ROOT_COUNT(names))
			{
				JsonbValue *nm = getIthJsonbValueFromContainer(&names->root, i);

				if (nm->type == jbvString)
					entry->variant_names[i] = MemoryContextStrdup(FlagCacheContext,
																  pnstrdup(nm->val.string.val, nm->val.string.len));
			}
		}
	}
	if (on_variation < 0 || on_variation >= entry->nvariations)
		on_variation = -1;
	if (entry->off_variation < 0 || entry->off_variation >= entry->nvariations)
		entry->off_variation = -1;

	snprintf(flag, sizeof(flag), "%s", entry->key + entry->envlen + 1);
	snprintf(env, sizeof(env), "%.*s", entry->envlen, entry->key);
	t.flag = flag;
	t.environment = env;
	t.nvariations = entry->nvariations;
	t.group = text_to_cstring(group);
	t.strict = false;
	entry->serve = opsflags_serve_compile(serve, "serve", &t, FlagCacheContext);
	if (entry->serve == NULL)
		entry->serve = opsflags_serve_default(on_variation, weights, &t, FlagCacheContext);
	entry->fallthrough = opsflags_serve_compile(fallthrough, "fallthrough", &t, FlagCacheContext);
	entry->rules = opsflags_rules_compile(rules, &t, FlagCacheContext);
}

/* The targeted segments that have rules (their members are in the sets). */
static void
load_rule_segments(FlagEntry *entry, Jsonb *segments)
{
	int			n = JB_ROOT_COUNT(segments);

	entry->rule_segments = MemoryContextAllocZero(FlagCacheContext, sizeof(SegmentEntry *) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&segments->root, i);
		SegmentEntry *seg;

		if (e->type != jbvString)
			continue;
		seg = opsflags_segment_lookup(e->val.string.val, e->val.string.len);
		if (seg != NULL && seg->rules != NULL)
			entry->rule_segments[entry->nrule_segments++] = seg;
	}
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
	load_rule_segments(entry, DatumGetJsonbP(segments));
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
	entry->prereq_enabled = MemoryContextAlloc(FlagCacheContext, sizeof(bool) * n);
	entry->prereq_nvariants = MemoryContextAlloc(FlagCacheContext, sizeof(int) * n);
	entry->prereq_variants = MemoryContextAllocZero(FlagCacheContext, sizeof(int *) * n);
	entry->prereq_entries = MemoryContextAllocZero(FlagCacheContext, sizeof(FlagEntry *) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v;

		entry->prereq_keys[i] = MemoryContextStrdup(FlagCacheContext,
													SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		entry->prereq_values[i] = cache_jsonb(v, isnull);
		entry->prereq_enabled[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
		entry->prereq_nvariants[i] = -1;
		if (!isnull)
		{
			Jsonb	   *idx = DatumGetJsonbP(v);
			int			k = JB_ROOT_COUNT(idx);

			entry->prereq_nvariants[i] = k;
			entry->prereq_variants[i] = MemoryContextAlloc(FlagCacheContext, sizeof(int) * (k + 1));
			for (int j = 0; j < k; j++)
			{
				JsonbValue *e = getIthJsonbValueFromContainer(&idx->root, j);
				double		x = -1;

				if (e->type == jbvNumeric)
					(void) opsflags_numeric_double(e->val.numeric, &x);
				entry->prereq_variants[i][j] = (int) x;
			}
		}
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
	entry->version = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));

	/* The nested queries reuse SPI_tuptable: read everything first. */
	flag_id = SPI_getbinval(tup, desc, 15, &isnull);
	segments = PointerGetDatum(DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 16, &isnull)));
	load_rules(entry, tup, desc, group);
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
 * Empty the cache now if it is due, as the first lookup of a statement
 * would (evaluate_all takes in invalidations so before it reads its list).
 */
void
opsflags_flag_cache_refresh(void)
{
	if (opsflags_cache_check(&flag_cache_sync) || FlagCache == NULL)
		flag_cache_reset();
}

/*
 * The cached entry for a flag key in an environment, loading it on a miss.
 * The key must be at most OPSFLAGS_FLAG_KEY_MAXLEN bytes and the environment
 * at most OPSFLAGS_ENVIRONMENT_MAXLEN.  nested: inside an evaluation, whose
 * entries must stay valid, so the cache is emptied only between evaluations.
 */
FlagEntry *
opsflags_flag_lookup(const char *env, int envlen, const char *keydata, int keylen, bool nested)
{
	char		key[CACHE_KEY_MAXLEN + 1];
	int			len = envlen + 1 + keylen;
	FlagEntry  *entry;
	FlagEntry	loaded;
	bool		found;

	Assert(envlen <= OPSFLAGS_ENVIRONMENT_MAXLEN && keylen <= OPSFLAGS_FLAG_KEY_MAXLEN);
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

void
opsflags_flags_init(void)
{
	CacheRegisterRelcacheCallback(flag_cache_relcache_callback, (Datum) 0);
	RegisterXactCallback(flag_cache_xact_callback, NULL);
	RegisterSubXactCallback(flag_cache_subxact_callback, NULL);
}
