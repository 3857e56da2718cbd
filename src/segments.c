/*
 * segments.c
 *	  The per-backend segment cache: a segment's user ids and roles as hash
 *	  sets and its rules compiled (docs/rules.md), loaded on demand while a
 *	  flag that names the segment is loaded, shared by every flag, and
 *	  emptied with the flag cache (whose context holds it).  Also whether a
 *	  context is in a segment: listed, else the first rule that holds
 *	  decides (in, or out when it excludes).
 *
 * Like a flag entry, a segment entry is marked stale when its segment
 * changes (invalidation.c: it depends on the segment's slot) and is loaded
 * again in place, into a memory context of its own, by the next flag load
 * that looks it up: the flags that point at it are marked stale at the same
 * boundary (opsflags_flag_uses_segment), so none reads it stale.  A
 * segment's rules may name segments (nested): loading it loads them, and
 * looking up a fresh one looks them up again (reloading the stale ones in
 * place), so the flag being loaded depends on every segment it can reach.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rules.h"

static HTAB *SegmentCache = NULL;
static MemoryContext SegmentCacheContext = NULL;
static int	nloading;

static OpsQuery segment_query = {
	.sql =
	"SELECT s.user_ids, s.roles, s.rules, "
	"       s.bucketing OPERATOR(pg_catalog.=) 'launchdarkly', s.salt "
	"FROM opsflags.user_segments s "
	"WHERE s.segment_key OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

/* Called when the flag cache is emptied: the segments go with it. */
void
opsflags_segment_cache_reset(MemoryContext cxt)
{
	SegmentCache = NULL;
	nloading = 0;
	SegmentCacheContext = cxt;
}

/* The cache, for invalidation (NULL: nothing loaded since the reset). */
HTAB *
opsflags_segment_cache(void)
{
	return SegmentCache;
}

static StrSet *
strset_of(Jsonb *jb, MemoryContext cxt)
{
	int			n;
	const char **strs;
	uint32	   *lens;
	int			k = 0;

	if (jb == NULL || !JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) || (n = JB_ROOT_COUNT(jb)) == 0)
		return NULL;
	strs = palloc(sizeof(char *) * n);
	lens = palloc(sizeof(uint32) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&jb->root, i);

		if (v->type != jbvString)
			continue;
		strs[k] = v->val.string.val;
		lens[k++] = v->val.string.len;
	}
	return opsflags_strset_build(strs, lens, k, cxt);
}

/*
 * Read a segment (the caller is connected to SPI as the tables' owner: a
 * flag load).  A segment that does not exist contains nobody.
 */
static void
segment_load(SegmentEntry *seg, int keylen)
{
	Datum		args[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	Jsonb	   *rules;
	RuleTarget	t = {0};

	opsflags_inval_stamp(&seg->inval);
	seg->cxt = AllocSetContextCreate(SegmentCacheContext, "opsflags segment",
									 ALLOCSET_SMALL_SIZES);
	args[0] = PointerGetDatum(cstring_to_text_with_len(seg->key, keylen));
	if (opsflags_spi_run(&segment_query, args, NULL, opsflags_cache_snapshot(), 1) != 1)
		return;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	seg->exists = true;
	d = SPI_getbinval(tup, desc, 1, &isnull);
	seg->users = isnull ? NULL : strset_of(DatumGetJsonbP(d), seg->cxt);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	seg->roles = isnull ? NULL : strset_of(DatumGetJsonbP(d), seg->cxt);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	rules = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	t.ld_bucketing = !isnull && DatumGetBool(d);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	t.salt = isnull ? "" : TextDatumGetCString(d);
	t.segment = seg->key;
	t.group = seg->key;
	t.bucket_key = seg->key;
	seg->rules = opsflags_rules_compile(rules, &t, seg->cxt);
}

/*
 * The keys of the segments being loaded or refreshed, outermost first: a
 * segment whose rules name one of them (a cycle: writes refuse one, but
 * a restore or snapshots taken apart could still show one) is returned as
 * it is, not loaded again, and evaluation's depth bound ends the cycle.
 * Past SEGMENT_DEPTH_MAX, segments are neither loaded nor evaluated.
 */
static const char *loading[SEGMENT_DEPTH_MAX];

/* Each outermost lookup refreshes a segment once (nested ones can share). */
static uint64 lookup_generation = 0;

static SegmentEntry *segment_lookup(const char *k, int keylen);

/*
 * A fresh segment's named segments (its rules' segments and segment_match
 * values) are looked up again: a stale one is reloaded in place (the
 * pointers stay valid) and the flag being loaded depends on each.
 */
static void
segment_refresh_named(SegmentEntry *seg)
{
	if (seg->rules == NULL)
		return;
	for (int i = 0; i < seg->rules->nrules; i++)
	{
		Rule	   *r = &seg->rules->rules[i];

		for (int j = 0; j < r->nsegments; j++)
			if (r->segments[j] != NULL)
				(void) segment_lookup(r->segments[j]->key, strlen(r->segments[j]->key));
		for (int j = 0; j < r->nclauses; j++)
		{
			RuleClause *cl = &r->clauses[j];

			if (cl->op != OP_SEGMENT_MATCH)
				continue;
			for (int v = 0; v < cl->nvalues; v++)
				if (cl->segments[v] != NULL)
					(void) segment_lookup(cl->segments[v]->key, strlen(cl->segments[v]->key));
		}
	}
}

/* The lookup of a key (NUL-terminated, keylen bytes), within the guards. */
static SegmentEntry *
segment_lookup(const char *key, int keylen)
{
	char		k[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
	SegmentEntry *seg;

	memcpy(k, key, keylen);
	k[keylen] = '\0';
	seg = hash_search(SegmentCache, k, HASH_FIND, NULL);
	opsflags_flag_uses_segment(k, keylen);
	if (seg != NULL && !seg->inval.stale && seg->generation == lookup_generation)
		return seg;				/* looked up already by this outermost lookup */
	if (nloading >= SEGMENT_DEPTH_MAX)
		return seg;				/* too deep to be evaluated */
	for (int i = 0; i < nloading; i++)
		if (strcmp(loading[i], k) == 0)
			return seg;			/* a cycle */
	loading[nloading++] = k;
	if (seg == NULL || seg->inval.stale)
	{
		/*
		 * Load before entering or replacing, so a failed load leaves no half
		 * entry (its context goes with the cache, which a failed flag load
		 * empties).
		 */
		SegmentEntry loaded;
		bool		reloaded = seg != NULL;

		memset(&loaded, 0, sizeof(loaded));
		memcpy(loaded.key, k, keylen + 1);
		segment_load(&loaded, keylen);
		loaded.generation = lookup_generation;
		if (reloaded)
			MemoryContextDelete(seg->cxt);	/* runs the regexes' frees too */
		else
			seg = hash_search(SegmentCache, k, HASH_ENTER, NULL);
		memcpy(seg, &loaded, sizeof(SegmentEntry));
		opsflags_inval_track_segment(&seg->inval, opsflags_inval_segment_slot(k, keylen),
									 reloaded,
									 SegmentCacheContext);
	}
	else
	{
		seg->generation = lookup_generation;
		segment_refresh_named(seg);
	}
	nloading--;
	return seg;
}

/*
 * The cached segment of a key, loaded on a miss and loaded again, in place
 * (rules point at it), when stale, with the segments its rules name.  The
 * flag being loaded depends on all of them.
 */
SegmentEntry *
opsflags_segment_lookup(const char *key, int keylen)
{
	SegmentEntry *seg;
	int			outer = nloading;

	Assert(SegmentCacheContext != NULL);
	if (keylen > OPSFLAGS_FLAG_KEY_MAXLEN)
		return NULL;
	if (SegmentCache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = OPSFLAGS_FLAG_KEY_MAXLEN + 1;
		ctl.entrysize = sizeof(SegmentEntry);
		ctl.hcxt = SegmentCacheContext;
		SegmentCache = hash_create("opsflags segments", 64, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	if (outer == 0)
		lookup_generation++;
	PG_TRY();
	{
		seg = segment_lookup(key, keylen);
	}
	PG_FINALLY();
	{
		nloading = outer;
	}
	PG_END_TRY();
	return seg;
}

/*
 * The context's key or role is listed, else the first of the rules that
 * holds decides: in, or out when it excludes.  Past the depth bound (nested
 * segments), not in.
 */
bool
opsflags_segment_contains(SegmentEntry *seg, EvalContext *ec)
{
	bool		in = false;

	if (!seg->exists || ec->segment_depth >= SEGMENT_DEPTH_MAX)
		return false;
	if (ec->user != NULL && strset_contains(seg->users, ec->user, ec->userlen))
		return true;
	if (ec->role != NULL && strset_contains(seg->roles, ec->role, ec->rolelen))
		return true;
	if (seg->rules != NULL)
	{
		RuleMemo	memo;

		ec->segment_depth++;
		rule_memo_init(&memo, seg->rules);
		for (int i = 0; i < seg->rules->nrules; i++)
			if (opsflags_rule_matches(&seg->rules->rules[i], ec, &memo))
			{
				in = !seg->rules->rules[i].exclude;
				break;
			}
		ec->segment_depth--;
	}
	return in;
}
