/*
 * hashing.c
 *	  Stable hashing for rollouts: MurmurHash3 (x86, 32-bit) and the Unleash
 *	  "normalized" bucket built on it, so a user lands in the same bucket here
 *	  as in Unleash SDKs.  The hash and its byte order are part of the
 *	  contract: changing them would re-bucket every user of every flag.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_rollout_bucket);

static inline uint32
rotl32(uint32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/*
 * MurmurHash3_x86_32.  Blocks are read as little-endian 32-bit words
 * whatever the host's byte order, so the result is the same everywhere.
 */
uint32
opsflags_murmur3_32(const unsigned char *data, size_t len, uint32 seed)
{
	const uint32 c1 = 0xcc9e2d51;
	const uint32 c2 = 0x1b873593;
	size_t		nblocks = len / 4;
	const unsigned char *tail = data + nblocks * 4;
	uint32		h = seed;
	uint32		k;
	size_t		i;

	for (i = 0; i < nblocks; i++)
	{
		const unsigned char *b = data + i * 4;

		k = (uint32) b[0] | ((uint32) b[1] << 8) |
			((uint32) b[2] << 16) | ((uint32) b[3] << 24);
		k *= c1;
		k = rotl32(k, 15);
		k *= c2;
		h ^= k;
		h = rotl32(h, 13);
		h = h * 5 + 0xe6546b64;
	}

	k = 0;
	switch (len & 3)
	{
		case 3:
			k ^= (uint32) tail[2] << 16;
			/* FALLTHROUGH */
		case 2:
			k ^= (uint32) tail[1] << 8;
			/* FALLTHROUGH */
		case 1:
			k ^= (uint32) tail[0];
			k *= c1;
			k = rotl32(k, 15);
			k *= c2;
			h ^= k;
	}

	h ^= (uint32) len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/*
 * Unleash's normalizedValue: murmur3(group || ':' || stickiness, seed)
 * % modulus + 1, i.e. 1..modulus.  Short inputs are hashed from a stack
 * buffer; only very long ones allocate.
 */
int
opsflags_bucket(const char *group, size_t grouplen,
				const char *stickiness, size_t stickinesslen,
				uint32 seed, uint32 modulus)
{
	char		stackbuf[256];
	char	   *buf = stackbuf;
	size_t		len = grouplen + 1 + stickinesslen;
	uint32		h;

	if (len > sizeof(stackbuf))
		buf = palloc(len);
	memcpy(buf, group, grouplen);
	buf[grouplen] = ':';
	memcpy(buf + grouplen + 1, stickiness, stickinesslen);

	h = opsflags_murmur3_32((const unsigned char *) buf, len, seed);

	if (buf != stackbuf)
		pfree(buf);
	return (int) (h % modulus) + 1;
}

/*
 * rollout_bucket(group_id text, stickiness text) -> int, 1..100
 */
Datum
opsflags_rollout_bucket(PG_FUNCTION_ARGS)
{
	text	   *group = PG_GETARG_TEXT_PP(0);
	text	   *stickiness = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT32(opsflags_bucket(VARDATA_ANY(group), VARSIZE_ANY_EXHDR(group),
									VARDATA_ANY(stickiness), VARSIZE_ANY_EXHDR(stickiness),
									0, 100));
}
