/*
 * sha1.c
 *	  SHA-1 (FIPS 180-4) for LaunchDarkly's bucketing (docs/rules.md), and
 *	  that bucket.  PostgreSQL's pg_cryptohash allocates a context per hash
 *	  (and may be OpenSSL's, which FIPS builds can refuse SHA-1 to); this one
 *	  works on the caller's state, so evaluation allocates nothing, and the
 *	  constant prefix of a bucket's input ("flagKey.salt.") is hashed once
 *	  per flag.
 */
#include "postgres.h"

#include "opsflags.h"

static inline uint32
rotl(uint32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static void
sha1_block(uint32 *h, const unsigned char *p)
{
	uint32		w[80];
	uint32		a = h[0],
				b = h[1],
				c = h[2],
				d = h[3],
				e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = ((uint32) p[4 * i] << 24) | ((uint32) p[4 * i + 1] << 16) |
			((uint32) p[4 * i + 2] << 8) | (uint32) p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++)
	{
		uint32		f,
					k,
					t;

		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		t = rotl(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rotl(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void
opsflags_sha1_init(OpsSha1 *s)
{
	s->h[0] = 0x67452301;
	s->h[1] = 0xefcdab89;
	s->h[2] = 0x98badcfe;
	s->h[3] = 0x10325476;
	s->h[4] = 0xc3d2e1f0;
	s->len = 0;
	s->nbuf = 0;
}

void
opsflags_sha1_update(OpsSha1 *s, const unsigned char *data, size_t len)
{
	s->len += len;
	while (len > 0)
	{
		size_t		n = Min(len, 64 - (size_t) s->nbuf);

		memcpy(s->buf + s->nbuf, data, n);
		s->nbuf += n;
		data += n;
		len -= n;
		if (s->nbuf == 64)
		{
			sha1_block(s->h, s->buf);
			s->nbuf = 0;
		}
	}
}

void
opsflags_sha1_final(OpsSha1 *s, unsigned char out[20])
{
	uint64		bits = s->len * 8;
	unsigned char pad[72];
	size_t		padlen = (s->nbuf < 56 ? 56 : 120) - s->nbuf;

	memset(pad, 0, sizeof(pad));
	pad[0] = 0x80;
	for (int i = 0; i < 8; i++)
		pad[padlen + i] = (unsigned char) (bits >> (56 - 8 * i));
	opsflags_sha1_update(s, pad, padlen + 8);
	for (int i = 0; i < 5; i++)
	{
		out[4 * i] = (unsigned char) (s->h[i] >> 24);
		out[4 * i + 1] = (unsigned char) (s->h[i] >> 16);
		out[4 * i + 2] = (unsigned char) (s->h[i] >> 8);
		out[4 * i + 3] = (unsigned char) s->h[i];
	}
}

/*
 * LaunchDarkly's bucket in [0, 1): the first 15 hex digits of the sha1 of
 * the prefix (hashed into *prefix) and value, read as an integer, divided
 * by 0xFFFFFFFFFFFFFFF.  The SDK reads them into a double and divides by
 * that constant as a double (2^60): the same roundings here.
 */
double
opsflags_ld_bucket(const OpsSha1 *prefix, const char *value, size_t len)
{
	OpsSha1		s = *prefix;
	unsigned char d[20];
	uint64		h = 0;

	opsflags_sha1_update(&s, (const unsigned char *) value, len);
	opsflags_sha1_final(&s, d);
	for (int i = 0; i < 8; i++)
		h = (h << 8) | d[i];
	return (double) (h >> 4) / (double) UINT64CONST(0xFFFFFFFFFFFFFFF);
}
