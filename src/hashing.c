/*
 * hashing.c
 *	  Stable hashing for rollouts: MurmurHash3 (x86, 32-bit) and the Unleash
 *	  "normalized" bucket built on it, so a user lands in the same bucket here
 *	  as in Unleash SDKs; LaunchDarkly's bucket (on sha1.c) callable too.  The hash and its byte order are part of the
 *	  contract: changing them would re-bucket every user of every flag.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_rollout_bucket);
PG_FUNCTION_INFO_V1(opsflags_variant_bucket);
PG_FUNCTION_INFO_V1(opsflags_launchdarkly_bucket);

static inline uint32
rotl32(uint32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/*
 * MurmurHash3_x86_32, computed incrementally so that the constant prefix of
 * a bucket's input ("group:") is hashed once per flag, not once per call.
 * Blocks are read as little-endian 32-bit words whatever the host's byte
 * order, so the result is the same everywhere.
 */
#define MURMUR_C1 0xcc9e2d51
#define MURMUR_C2 0x1b873593

static inline uint32
murmur3_mix_block(uint32 h, uint32 k)
{
	k *= MURMUR_C1;
	k = rotl32(k, 15);
	k *= MURMUR_C2;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

void
opsflags_murmur3_init(OpsMurmur3 *state, uint32 seed)
{
	state->h = seed;
	state->tail = 0;
	state->ntail = 0;
	state->len = 0;
}

void
opsflags_murmur3_update(OpsMurmur3 *state, const unsigned char *data, size_t len)
{
	uint32		h = state->h;

	state->len += (uint32) len;

	/* Complete a block begun by an earlier update. */
	while (state->ntail > 0 && state->ntail < 4 && len > 0)
	{
		state->tail |= (uint32) *data++ << (8 * state->ntail++);
		len--;
	}
	if (state->ntail == 4)
	{
		h = murmur3_mix_block(h, state->tail);
		state->tail = 0;
		state->ntail = 0;
	}

	for (; len >= 4; data += 4, len -= 4)
		h = murmur3_mix_block(h, (uint32) data[0] | ((uint32) data[1] << 8) |
							  ((uint32) data[2] << 16) | ((uint32) data[3] << 24));

	while (len-- > 0)
		state->tail |= (uint32) *data++ << (8 * state->ntail++);

	state->h = h;
}

uint32
opsflags_murmur3_final(const OpsMurmur3 *state)
{
	uint32		h = state->h;

	if (state->ntail > 0)
	{
		uint32		k = state->tail;

		k *= MURMUR_C1;
		k = rotl32(k, 15);
		k *= MURMUR_C2;
		h ^= k;
	}
	h ^= state->len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/*
 * The state after hashing the bucket prefix "group:" with a seed; finish it
 * with opsflags_bucket_finish() for each stickiness value.
 */
void
opsflags_bucket_prefix(OpsMurmur3 *state, const char *group, size_t grouplen, uint32 seed)
{
	opsflags_murmur3_init(state, seed);
	opsflags_murmur3_update(state, (const unsigned char *) group, grouplen);
	opsflags_murmur3_update(state, (const unsigned char *) ":", 1);
}

/* Unleash's normalizedValue: hash % modulus + 1, i.e. 1..modulus. */
int
opsflags_bucket_finish(const OpsMurmur3 *prefix, const char *stickiness,
					   size_t stickinesslen, uint32 modulus)
{
	OpsMurmur3	state = *prefix;

	opsflags_murmur3_update(&state, (const unsigned char *) stickiness, stickinesslen);
	return (int) (opsflags_murmur3_final(&state) % modulus) + 1;
}

/*
 * rollout_bucket(group_id text, stickiness text) -> int, 1..100
 */
Datum
opsflags_rollout_bucket(PG_FUNCTION_ARGS)
{
	text	   *group = PG_GETARG_TEXT_PP(0);
	text	   *stickiness = PG_GETARG_TEXT_PP(1);

	OpsMurmur3	prefix;

	opsflags_bucket_prefix(&prefix, VARDATA_ANY(group), VARSIZE_ANY_EXHDR(group), 0);
	PG_RETURN_INT32(opsflags_bucket_finish(&prefix, VARDATA_ANY(stickiness),
										   VARSIZE_ANY_EXHDR(stickiness), 100));
}

/*
 * variant_bucket(group_id text, user_id text, total_weight int) -> int,
 * 1..total_weight: the Unleash variant hash (seed 86028157).
 */
Datum
opsflags_variant_bucket(PG_FUNCTION_ARGS)
{
	text	   *group = PG_GETARG_TEXT_PP(0);
	text	   *user = PG_GETARG_TEXT_PP(1);
	int32		total = PG_GETARG_INT32(2);
	OpsMurmur3	prefix;

	if (total <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("total weight must be positive")));
	opsflags_bucket_prefix(&prefix, VARDATA_ANY(group), VARSIZE_ANY_EXHDR(group), 86028157);
	PG_RETURN_INT32(opsflags_bucket_finish(&prefix, VARDATA_ANY(user), VARSIZE_ANY_EXHDR(user),
										   (uint32) total));
}

/*
 * launchdarkly_bucket(prefix text, value text) -> float8 in [0, 1):
 * LaunchDarkly's bucket of sha1(prefix || '.' || value); the prefix is
 * "flagKey.salt", or a split's seed.
 */
Datum
opsflags_launchdarkly_bucket(PG_FUNCTION_ARGS)
{
	text	   *prefix = PG_GETARG_TEXT_PP(0);
	text	   *value = PG_GETARG_TEXT_PP(1);
	OpsSha1		state;

	opsflags_sha1_init(&state);
	opsflags_sha1_update(&state, (const unsigned char *) VARDATA_ANY(prefix), VARSIZE_ANY_EXHDR(prefix));
	opsflags_sha1_update(&state, (const unsigned char *) ".", 1);
	PG_RETURN_FLOAT8(opsflags_ld_bucket(&state, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)));
}
