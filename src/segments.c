/*
 * segments.c
 *	  The per-backend segment cache: a segment's user ids and roles as hash
 *	  sets and its rules compiled (docs/rules.md), loaded on demand while a
 *	  flag that names the segment is loaded, shared by every flag, and
 *	  emptied with the flag cache (whose context holds it).  Also whether a
 *	  context is in a segment.
 *
 * Like a flag entry, a segment entry is marked stale when its segment
 * changes (invalidation.c: it depends on the segment's slot) and is loaded
 * again in place, into a memory context of its own, by the next flag load
 * that looks it up: the flags that point at it are marked stale at the same
 * boundary (opsflags_flag_uses_segment), so none reads it stale.
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
 * The cached segment of a key, loaded on a miss and loaded again, in place
 * (rules point at it), when stale.  The flag being loaded depends on it.
 */
SegmentEntry *
opsflags_segment_lookup(const char *key, int keylen)
{
	char		k[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
	SegmentEntry *seg;

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
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	seg = hash_search(SegmentCache, k, HASH_FIND, NULL);
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
		if (reloaded)
			MemoryContextDelete(seg->cxt);	/* runs the regexes' frees too */
		else
			seg = hash_search(SegmentCache, k, HASH_ENTER, NULL);
		memcpy(seg, &loaded, sizeof(SegmentEntry));
		opsflags_inval_track_segment(&seg->inval, opsflags_inval_segment_slot(k, keylen),
									 reloaded,
									 SegmentCacheContext);
	}
	opsflags_flag_uses_segment(k, keylen);
	return seg;
}

/* The context's key or role is listed, or one of the rules matches. */
bool
opsflags_segment_contains(SegmentEntry *seg, EvalContext *ec)
{
	if (!seg->exists)
		return false;
	if (ec->user != NULL && strset_contains(seg->users, ec->user, ec->userlen))
		return true;
	if (ec->role != NULL && strset_contains(seg->roles, ec->role, ec->rolelen))
		return true;
	if (seg->rules != NULL)
	{
		RuleMemo	memo;

		rule_memo_init(&memo, seg->rules);
		for (int i = 0; i < seg->rules->nrules; i++)
			if (opsflags_rule_matches(&seg->rules->rules[i], ec, &memo))
				return true;
	}
	return false;
}
