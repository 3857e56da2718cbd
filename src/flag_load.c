/*
 * flag_load.c
 *	  Loading one flag into its entry of the flag cache (flags.c): the
 *	  queries, its variations, serve and targeting rules (compiled by
 *	  rules.c), the segments it targets (segments.c) and its prerequisites,
 *	  and the memory a load allocates, which the entry keeps so that loading
 *	  it again frees it.  Also the string sets entries and rules are built
 *	  with.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rules.h"

static MemoryContext load_cxt = NULL;	/* the flag cache's */
static FlagEntry *loading_entry = NULL; /* the entry being loaded, if any */
static char warned_environment[OPSFLAGS_ENVIRONMENT_MAXLEN + 1];	/* the unknown
														 * environment last
														 * warned about */

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
 * A flag's prerequisites: key, on or off (NULL: switched on), and, if
 * required, the index of the variation it must serve or the indexes of the variations named in variants; and their
 * id, for invalidation.
 */
static OpsQuery prereqs_query = {
	.sql =
	"SELECT f.flag_key, p.variation, p.enabled, "
	"       CASE WHEN p.variants IS NOT NULL THEN COALESCE("
	"         (SELECT pg_catalog.jsonb_agg(n.o OPERATOR(pg_catalog.-) 1) "
	"            FROM pg_catalog.jsonb_array_elements(f.variation_names) WITH ORDINALITY n(v, o) "
	"           WHERE pg_catalog.jsonb_typeof(n.v) OPERATOR(pg_catalog.=) 'string' "
	"             AND p.variants OPERATOR(pg_catalog.@>) pg_catalog.jsonb_build_array(n.v)), "
	"         '[]'::pg_catalog.jsonb) END, f.id "
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
	"       f.variation_names, "
	"       f.bucketing OPERATOR(pg_catalog.=) 'launchdarkly', f.salt "
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
 * that the entry keeps, or (compiled rules) in a context of the entry's
 * own, so that loading it again frees what the former load held: nothing
 * points into an entry's memory from outside but the evaluation at hand,
 * and no entry is reloaded while one reads it.
 */
typedef struct EntryChunk
{
	struct EntryChunk *next;
} EntryChunk;

#define ENTRY_CHUNK_HEADER MAXALIGN(sizeof(EntryChunk))

/* Memory for the entry being loaded, freed when it is loaded again. */
static void *
entry_alloc(Size size, bool zero)
{
	EntryChunk *c = MemoryContextAlloc(load_cxt, ENTRY_CHUNK_HEADER + size);

	Assert(loading_entry != NULL);
	c->next = loading_entry->chunks;
	loading_entry->chunks = c;
	loading_entry->mem_bytes += GetMemoryChunkSpace(c);
	if (zero)
		memset((char *) c + ENTRY_CHUNK_HEADER, 0, size);
	return (char *) c + ENTRY_CHUNK_HEADER;
}

/* What an entry's load allocated, freed when it is loaded again. */
void
opsflags_flag_entry_free(FlagEntry *entry)
{
	EntryChunk *c = entry->chunks;

	if (entry->rules_cxt != NULL)
		MemoryContextDelete(entry->rules_cxt);
	entry->rules_cxt = NULL;

	while (c != NULL)
	{
		EntryChunk *next = c->next;

		pfree(c);
		c = next;
	}
	entry->chunks = NULL;
	entry->mem_bytes = 0;
}

/* ---------- string sets ---------- */

static void *
strset_alloc(MemoryContext cxt, Size size, bool zero)
{
	if (cxt == NULL)
		return entry_alloc(size, zero);
	return zero ? MemoryContextAllocZero(cxt, size) : MemoryContextAlloc(cxt, size);
}

/*
 * A set of n strings (duplicates are kept once), copied into cxt, or (NULL)
 * allocated for the entry being loaded, the strings terminated in one block;
 * NULL when empty.  Also what the rule compiler builds its sets with.
 */
StrSet *
opsflags_strset_build(const char **strs, const uint32 *lens, int n, MemoryContext cxt)
{
	uint32		size = 8;
	StrSet	   *set;
	char	   *strings;
	Size		total = 0;

	if (n == 0)
		return NULL;
	while (size < (uint32) n * 2)
		size <<= 1;
	for (int k = 0; k < n; k++)
		total += lens[k] + 1;
	set = strset_alloc(cxt, sizeof(StrSet), false);
	set->count = 0;
	set->mask = size - 1;
	set->hashes = strset_alloc(cxt, size * sizeof(uint32), true);
	set->lens = strset_alloc(cxt, size * sizeof(uint32), false);
	set->strs = strset_alloc(cxt, size * sizeof(char *), false);
	strings = strset_alloc(cxt, total, false);
	for (int k = 0; k < n; k++)
	{
		uint32		len = lens[k];
		uint32		i;
		char	   *copy;

		if (strset_contains(set, strs[k], len))
			continue;
		set->count++;
		copy = strings;
		memcpy(copy, strs[k], len);
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

/*
 * Build a set from a jsonb array of strings (the table constraints guarantee
 * the shape; anything else is skipped), for the entry being loaded.
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
	return opsflags_strset_build(strs, lens, k, NULL);
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
	copy = entry_alloc(VARSIZE(jb), false);
	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

/* ---------- dependencies (invalidation.c) ---------- */

/* An entry depends on a slot (no repeats). */
void
opsflags_flag_depend(FlagEntry *entry, uint32 slot)
{
	int			i;

	for (i = 0; i < entry->ndeps; i++)
		if (flag_dep(entry, i) == slot)
			return;
	if (entry->ndeps < FLAG_INLINE_DEPS)
	{
		entry->dep_inline[entry->ndeps++] = slot;
		return;
	}
	if (entry->ndeps - FLAG_INLINE_DEPS == entry->maxdeps)
	{
		int			n = Max(8, entry->maxdeps * 2);
		uint32	   *more = entry_alloc(n * sizeof(uint32), false);

		if (entry->maxdeps > 0)
			memcpy(more, entry->dep_more, entry->maxdeps * sizeof(uint32));
		entry->dep_more = more;
		entry->maxdeps = n;
	}
	entry->dep_more[entry->ndeps++ - FLAG_INLINE_DEPS] = slot;
}

void
opsflags_flag_depend_on_flag(FlagEntry *entry, const pg_uuid_t *flag_id)
{
	opsflags_flag_depend(entry, opsflags_inval_flag_slot(flag_id));
}

void
opsflags_flag_depend_on_definition(FlagEntry *entry, const pg_uuid_t *flag_id)
{
	opsflags_flag_depend(entry, opsflags_inval_definition_slot(flag_id));
}

void
opsflags_flag_depend_on_segment(FlagEntry *entry, const char *segment_key, int len)
{
	opsflags_flag_depend(entry, opsflags_inval_segment_slot(segment_key, len));
}

/* ---------- loading rules (rules.c compiles them) ---------- */

/*
 * The entry being loaded reads a segment of the segment cache (segments.c
 * looks it up for the config's segments and for the rules' segments and
 * segment_match clauses): it depends on the segment's slot, so it reloads
 * whenever the segment entry does (invalidation.c).
 */
void
opsflags_flag_uses_segment(const char *segment_key, int len)
{
	Assert(loading_entry != NULL);
	opsflags_flag_depend_on_segment(loading_entry, segment_key, len);
}

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
	if (isnull)
		entry->off_variation = -1;
	d = SPI_getbinval(tup, desc, 19, &isnull);
	rules = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 20, &isnull);
	serve = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 21, &isnull);
	fallthrough = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 22, &isnull);
	names = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 23, &isnull);
	t.ld_bucketing = !isnull && DatumGetBool(d);
	d = SPI_getbinval(tup, desc, 24, &isnull);
	t.salt = isnull ? "" : TextDatumGetCString(d);

	if (variations != NULL && JB_ROOT_IS_ARRAY(variations) && !JB_ROOT_IS_SCALAR(variations))
	{
		int			n = JB_ROOT_COUNT(variations);

		entry->nvariations = n;
		entry->values = entry_alloc(sizeof(Jsonb *) * (n + 1), true);
		entry->bool_values = entry_alloc(sizeof(int8) * (n + 1), false);
		entry->variant_names = entry_alloc(sizeof(char *) * (n + 1), true);
		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(&variations->root, i);

			entry->values[i] = cache_jsonb(PointerGetDatum(JsonbValueToJsonb(e)), false);
			entry->bool_values[i] = e->type == jbvBool ? (e->val.boolean ? 1 : 0) : -1;
			entry->any_bool |= e->type == jbvBool;
			if (names != NULL && JB_ROOT_IS_ARRAY(names) && i < (int) JB_ROOT_COUNT(names))
			{
				JsonbValue *nm = getIthJsonbValueFromContainer(&names->root, i);

				if (nm->type == jbvString)
				{
					char	   *name = entry_alloc(nm->val.string.len + 1, false);

					memcpy(name, nm->val.string.val, nm->val.string.len);
					name[nm->val.string.len] = '\0';
					entry->variant_names[i] = name;
				}
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
	t.bucket_key = flag;
	t.strict = false;

	/*
	 * Serving the on variation is all a config without rules, serve,
	 * fallthrough or weights needs; anything more is compiled into a
	 * context of the entry's own, which a reload deletes with the compiled
	 * regular expressions (freed by its reset callbacks).
	 */
	if (serve == NULL && fallthrough == NULL && weights == NULL &&
		(rules == NULL || (JB_ROOT_IS_ARRAY(rules) && !JB_ROOT_IS_SCALAR(rules) &&
						   JB_ROOT_COUNT(rules) == 0)))
	{
		entry->serve = entry_alloc(sizeof(RuleServe), true);
		entry->serve->kind = SERVE_VARIATION;
		entry->serve->variation = on_variation;
		return;
	}
	entry->rules_cxt = AllocSetContextCreate(load_cxt, "opsflags flag rules",
											 ALLOCSET_SMALL_SIZES);
	entry->serve = opsflags_serve_compile(serve, "serve", &t, entry->rules_cxt);
	if (entry->serve == NULL)
		entry->serve = opsflags_serve_default(on_variation, weights, &t, entry->rules_cxt);
	entry->fallthrough = opsflags_serve_compile(fallthrough, "fallthrough", &t, entry->rules_cxt);
	if (fallthrough != NULL && entry->fallthrough == NULL)
	{
		/* a stored fallthrough that does not compile fails closed: off */
		entry->fallthrough = MemoryContextAllocZero(entry->rules_cxt, sizeof(RuleServe));
		entry->fallthrough->kind = SERVE_OFF;
	}
	entry->rules = opsflags_rules_compile(rules, &t, entry->rules_cxt);
	entry->mem_bytes += MemoryContextMemAllocated(entry->rules_cxt, true);
}

/* The targeted segments that have rules (their members are in the sets). */
static void
load_rule_segments(FlagEntry *entry, Jsonb *segments)
{
	int			n = JB_ROOT_COUNT(segments);

	entry->rule_segments = entry_alloc(sizeof(SegmentEntry *) * (n + 1), true);
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
	entry->prereq_keys = entry_alloc(sizeof(char *) * n, false);
	entry->prereq_variation = entry_alloc(sizeof(int) * n, false);
	entry->prereq_enabled = entry_alloc(sizeof(int8) * n, false);
	entry->prereq_nvariants = entry_alloc(sizeof(int) * n, false);
	entry->prereq_variants = entry_alloc(sizeof(int *) * n, true);
	entry->prereq_entries = entry_alloc(sizeof(FlagEntry *) * n, true);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v;
		char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		entry->prereq_keys[i] = entry_alloc(strlen(key) + 1, false);
		strcpy(entry->prereq_keys[i], key);
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		entry->prereq_variation[i] = isnull ? -1 : DatumGetInt32(v);
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull);
		entry->prereq_enabled[i] = isnull ? -1 : DatumGetBool(v) ? 1 : 0;
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
		entry->prereq_nvariants[i] = -1;
		if (!isnull)
		{
			Jsonb	   *idx = DatumGetJsonbP(v);
			int			k = JB_ROOT_COUNT(idx);

			entry->prereq_nvariants[i] = k;
			entry->prereq_variants[i] = entry_alloc(sizeof(int) * (k + 1), false);
			for (int j = 0; j < k; j++)
			{
				JsonbValue *e = getIthJsonbValueFromContainer(&idx->root, j);
				double		x = -1;

				if (e->type == jbvNumeric)
					(void) opsflags_numeric_double(e->val.numeric, &x);
				entry->prereq_variants[i][j] = (int) x;
			}
		}
		/* The prerequisite's key and variations are read here too. */
		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull);
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
 * Read one flag's state in one environment into *entry, running the query
 * as owner, the owner of the flag tables (evaluating a flag needs no
 * privilege on them), with the latest snapshot.
 */
static void
flag_load(FlagEntry *entry, Oid owner)
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

	if (!OidIsValid(owner))
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
	opsflags_inval_stamp(&entry->inval);
	snapshot = opsflags_cache_snapshot();

	opsflags_spi_begin(&spi, owner);
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
	entry->version = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));

	/* The nested queries reuse SPI_tuptable: read everything first. */
	flag_id = SPI_getbinval(tup, desc, 15, &isnull);
	segments = PointerGetDatum(DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 16, &isnull)));
	load_rules(entry, tup, desc, group);
	load_segments(entry, segments);
	load_prerequisites(entry, flag_id);
	opsflags_spi_end(&spi);
}

/*
 * Load *entry (whose key is set, the rest zero), allocating in cxt (the
 * flag cache's).  What the load allocated is the entry's even if it fails.
 */
void
opsflags_flag_load(FlagEntry *entry, MemoryContext cxt, Oid owner)
{
	load_cxt = cxt;
	loading_entry = entry;
	flag_load(entry, owner);
	loading_entry = NULL;
}
