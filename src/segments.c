/*
 * segments.c
 *	  The per-backend segment cache: a segment's user ids and roles as hash
 *	  sets and its rules compiled (docs/rules.md), loaded on demand while a
 *	  flag that names the segment is loaded, shared by every flag, and
 *	  emptied with the flag cache (whose context holds it).  Also whether a
 *	  context is in a segment.
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
	"SELECT s.user_ids, s.roles, s.rules FROM opsflags.user_segments s "
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

	args[0] = PointerGetDatum(cstring_to_text_with_len(seg->key, keylen));
	if (opsflags_spi_run(&segment_query, args, NULL, opsflags_cache_snapshot(), 1) != 1)
		return;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	seg->exists = true;
	d = SPI_getbinval(tup, desc, 1, &isnull);
	seg->users = isnull ? NULL : strset_of(DatumGetJsonbP(d), SegmentCacheContext);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	seg->roles = isnull ? NULL : strset_of(DatumGetJsonbP(d), SegmentCacheContext);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	rules = isnull ? NULL : DatumGetJsonbPCopy(d);
	t.segment = seg->key;
	t.group = seg->key;
	seg->rules = opsflags_rules_compile(rules, &t, SegmentCacheContext);
}

/* The cached segment of a key, loaded on a miss. */
SegmentEntry *
opsflags_segment_lookup(const char *key, int keylen)
{
	char		k[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
	SegmentEntry *seg;
	bool		found;

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
	if (seg != NULL)
		return seg;

	/* Load before entering, so a failed load leaves no half entry. */
	{
		SegmentEntry loaded;

		memset(&loaded, 0, sizeof(loaded));
		memcpy(loaded.key, k, keylen + 1);
		segment_load(&loaded, keylen);
		seg = hash_search(SegmentCache, k, HASH_ENTER, &found);
		memcpy(seg, &loaded, sizeof(SegmentEntry));
	}
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
