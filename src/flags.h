/*
 * flags.h
 *	  What the flag cache (flags.c) and evaluation (evaluation.c) share: a
 *	  cached flag (FlagEntry), the string sets it targets with, the reasons
 *	  an evaluation gives, and the lookup that loads an entry on a miss.
 */
#ifndef OPSFLAGS_FLAGS_H
#define OPSFLAGS_FLAGS_H

#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "opsflags.h"

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

static inline uint32
strset_hash(const char *s, uint32 len)
{
	uint32		h = hash_bytes((const unsigned char *) s, (int) len);

	return h == 0 ? 1 : h;
}

static inline bool
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
	REASON_ERROR,
	REASON_RULE_MATCH,
	REASON_NO_MATCH
} FlagReason;

/* A cache key: "<environment>/<flag key>" (neither can contain "/"). */
#define CACHE_KEY_MAXLEN (OPSFLAGS_ENVIRONMENT_MAXLEN + 1 + OPSFLAGS_FLAG_KEY_MAXLEN)

typedef struct FlagEntry FlagEntry;
struct RuleServe;
struct RuleSet;
struct SegmentEntry;

/*
 * Invalidation slots (invalidation.c): a flag's and a segment's hash into
 * INVAL_SLOTS; one more slot for "a flag key may name a flag now", which
 * "no such flag" entries depend on.
 */
#define INVAL_SLOTS 16384
#define INVAL_NEW_KEY_SLOT INVAL_SLOTS
#define INVAL_SLOT_COUNT (INVAL_SLOTS + 1)

/* The slots an entry depends on: a few inline, more in the cache context. */
#define FLAG_INLINE_DEPS 4

/*
 * What invalidation (invalidation.c) keeps of a cached item, a flag entry or
 * a segment entry (segments.c): its load's stamp, and whether it must be
 * loaded again before it is read.
 */
typedef struct InvalItem
{
	bool		stale;			/* changed since loaded: reload at its next
								 * lookup */
	bool		provisional;	/* loaded with the statement's snapshot
								 * (parallel mode): reload at the next one */
	bool		segment;		/* a segment entry (flag_cache_stats counts
								 * flags) ... */
	uint32		segment_slot;	/* ... whose slot this is */
	uint32		load_serial;	/* numbers its loads */
	uint64		load_generation;	/* invalidation generation read before
									 * the load's snapshot */
	uint64		load_tag;		/* the transaction whose changes it may hold */
} InvalItem;

struct FlagEntry
{
	char		key[CACHE_KEY_MAXLEN + 1];	/* hash key: environment/flag key */
	int			keylen;
	int			envlen;			/* the environment is key[0 .. envlen - 1] */
	InvalItem	inval;
	Size		mem_bytes;		/* what the load allocated in the cache
								 * context ... */
	void	   *chunks;			/* ... in these chunks, freed on a reload */
	MemoryContext rules_cxt;	/* ... and its compiled rules and serves
								 * (NULL: none), deleted on a reload */
	FlagReason	absent;			/* UNKNOWN_ENVIRONMENT, FLAG_NOT_FOUND,
								 * ARCHIVED, OFF (no config) or ERROR (load
								 * failed) when !evaluable */
	bool		evaluable;		/* false: see absent */
	TimestampTz failed_at;		/* ERROR: statement whose load failed */
	bool		is_enabled;
	int32		version;		/* the config's version */
	int			nvariations;
	Jsonb	  **values;			/* the variations */
	int8	   *bool_values;	/* per variation: 1 true, 0 false, -1 other */
	bool		any_bool;		/* some variation is true or false */
	char	  **variant_names;	/* their names (NULL: unnamed) */
	int			off_variation;	/* -1: none (off serves no value) */
	struct RuleServe *serve;	/* when on: the config's serve, else the on
								 * variation or the split of its weights */
	struct RuleServe *fallthrough;	/* NULL: serve */
	struct RuleSet *rules;		/* NULL: none */
	StrSet	   *segment_users;	/* members of the targeted segments */
	StrSet	   *segment_roles;
	int			nrule_segments; /* targeted segments that have rules */
	struct SegmentEntry **rule_segments;
	int			nprereqs;
	char	  **prereq_keys;	/* flags that must be on (or off) ... */
	int8	   *prereq_enabled; /* ... for the context (1), off for it (0),
								 * or switched on in the environment (-1)
								 * ... */
	int		   *prereq_variation;	/* ... serving this variation (-1: any) ... */
	int		   *prereq_nvariants;	/* ... or a variation of these (-1: any) */
	int		  **prereq_variants;
	FlagEntry **prereq_entries; /* their entries, once looked up (entries
								 * are reloaded in place, the cache emptied
								 * only whole) */
	uint64		memo_evaluation;	/* the evaluation memo_reason belongs to */
	FlagReason	memo_reason;	/* this flag's reason, as a prerequisite */
	bool		memo_enabled;
	int			memo_variation; /* the variation it served (-1: none) */
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
	int			ndeps;			/* invalidation slots it depends on */
	int			maxdeps;
	uint32		dep_inline[FLAG_INLINE_DEPS];
	uint32	   *dep_more;		/* the slots past FLAG_INLINE_DEPS */
};

extern FlagEntry *opsflags_flag_lookup(const char *env, int envlen, const char *keydata,
										int keylen, bool nested);
extern void opsflags_flag_cache_refresh(void);

/* evaluate_all.c: its list of flag keys goes when the flag cache is emptied */
extern void opsflags_flag_keys_reset(void);

/* flag_load.c: loading an entry (flags.c) */
extern void opsflags_flag_load(FlagEntry *entry, MemoryContext cxt, Oid owner);
extern void opsflags_flag_entry_free(FlagEntry *entry);

/*
 * What a loader calls for each row its entry is read from beyond the flag's
 * own (another flag, its feature_flags row only, a segment), so that a
 * change to it reloads the entry.
 */
extern void opsflags_flag_depend_on_flag(FlagEntry *entry, const pg_uuid_t *flag_id);
extern void opsflags_flag_depend_on_definition(FlagEntry *entry, const pg_uuid_t *flag_id);
extern void opsflags_flag_depend_on_segment(FlagEntry *entry, const char *segment_key, int len);
extern void opsflags_flag_uses_segment(const char *segment_key, int len);

/* flag_cache_stats(): this backend's flag cache */
typedef struct OpsFlagCacheStats
{
	int64		entries;
	uint64		hits;			/* lookups served from the cache */
	uint64		loads;			/* entries loaded on a miss */
	uint64		reloads;		/* entries loaded again in place (stale, failed) */
	uint64		invalidated;	/* entries marked stale */
	uint64		resets;			/* times the whole cache was emptied */
	int64		live_bytes;		/* what the entries' loads allocated */
} OpsFlagCacheStats;

extern void opsflags_flag_cache_stats_get(OpsFlagCacheStats *stats);

/* The i-th invalidation slot an entry depends on. */
static inline uint32
flag_dep(const FlagEntry *e, int i)
{
	return i < FLAG_INLINE_DEPS ? e->dep_inline[i] : e->dep_more[i - FLAG_INLINE_DEPS];
}

/* invalidation.c: the reader's side (flags.c) */
extern uint32 opsflags_inval_flag_slot(const pg_uuid_t *id);
extern uint32 opsflags_inval_definition_slot(const pg_uuid_t *id);
extern uint32 opsflags_inval_segment_slot(const char *key, int len);
extern uint64 opsflags_inval_generation(void);
extern uint64 opsflags_inval_load_tag(void);
extern uint64 opsflags_inval_published(void);
extern uint64 opsflags_inval_reset_generation(void);
extern bool opsflags_inval_refresh(HTAB *cache, HTAB *segments, uint64 *seen_published,
								   uint64 seen_reset_generation, bool *provisional,
								   uint64 *invalidated);
extern void opsflags_flag_depend(FlagEntry *entry, uint32 slot);
extern void opsflags_inval_track(FlagEntry *entry, bool reloaded, int old_ndeps,
								 MemoryContext cxt);
extern void opsflags_inval_track_segment(InvalItem *item, uint32 slot, bool reloaded,
										 MemoryContext cxt);
extern void opsflags_inval_stamp(InvalItem *item);
extern void opsflags_inval_forget(void);

/* ... and the HTTP server's (http_stream.c): this database's flags changed */
extern uint64 opsflags_inval_database_changes(void);
extern void opsflags_inval_watch(bool watch);

#endif							/* OPSFLAGS_FLAGS_H */
