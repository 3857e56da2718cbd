/*
 * flags.h
 *	  What the flag cache (flags.c) and evaluation (evaluation.c) share: a
 *	  cached flag (FlagEntry), the string sets it targets with, the reasons
 *	  an evaluation gives, and the lookup that loads an entry on a miss.
 */
#ifndef OPSFLAGS_FLAGS_H
#define OPSFLAGS_FLAGS_H

#include "common/hashfn.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

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
	int			nvariations;
	Jsonb	  **values;			/* the variations */
	char	  **variant_names;	/* their names (NULL: unnamed) */
	int			off_variation;
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
	bool	   *prereq_enabled; /* ... on: true, off: false ... */
	Jsonb	  **prereq_values;	/* ... serving this value (NULL: any) ... */
	int		   *prereq_nvariants;	/* ... or a variation of these (-1: any) */
	int		  **prereq_variants;
	FlagEntry **prereq_entries; /* their entries, once looked up (the cache
								 * is only ever emptied whole) */
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
};

extern FlagEntry *opsflags_flag_lookup(const char *env, int envlen, const char *keydata,
										int keylen, bool nested);
extern void opsflags_flag_cache_refresh(void);

/* evaluate_all.c: its list of flag keys goes when the flag cache is emptied */
extern void opsflags_flag_keys_reset(void);

#endif							/* OPSFLAGS_FLAGS_H */
