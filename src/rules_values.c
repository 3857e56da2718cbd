/*
 * rules_values.c
 *	  Reading the typed values targeting rules compare (docs/rules.md), at
 *	  compile time and evaluation alike, without allocating for short
 *	  values: numbers as JavaScript's Number() reads them (and String()
 *	  writes them), jsonb numbers as doubles, lower-casing, RFC 3339 dates,
 *	  semantic versions and IP address ranges.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <wctype.h>

#include "mb/pg_wchar.h"
#include "utils/numeric.h"

#include "rules.h"

/* ---------- numbers ---------- */

/*
 * A jsonb number as a double, without allocating: its base-10000 digits
 * written out as a decimal literal for strtod (correctly rounded).  The
 * layout is numeric's on-disk format (numeric.c), stable across releases.
 */
#define NUM_SIGN_MASK		0xC000
#define NUM_NEG				0x4000
#define NUM_SHORT			0x8000
#define NUM_SPECIAL			0xC000
#define NUM_SHORT_SIGN		0x2000
#define NUM_SHORT_WSIGN		0x0040
#define NUM_SHORT_WMASK		0x003F
#define NUM_MAX_GROUPS		10	/* 40 significant digits are plenty */

bool
opsflags_numeric_double(Numeric num, double *out)
{
	const char *data = VARDATA_ANY(num);
	int			size = VARSIZE_ANY_EXHDR(num);
	uint16		header;
	bool		neg;
	int			weight;
	const int16 *digits;
	int			ndigits;
	char		buf[NUM_MAX_GROUPS * 4 + 24];
	char	   *p = buf;

	memcpy(&header, data, sizeof(uint16));
	if ((header & NUM_SIGN_MASK) == NUM_SPECIAL)
		return false;
	if (header & NUM_SHORT)
	{
		neg = (header & NUM_SHORT_SIGN) != 0;
		weight = (header & NUM_SHORT_WSIGN) ?
			(int) (int16) (0xFFC0 | (header & NUM_SHORT_WMASK)) :
			(int) (header & NUM_SHORT_WMASK);
		digits = (const int16 *) (data + sizeof(uint16));
		ndigits = (size - sizeof(uint16)) / sizeof(int16);
	}
	else
	{
		int16		w;

		neg = (header & NUM_SIGN_MASK) == NUM_NEG;
		memcpy(&w, data + sizeof(uint16), sizeof(int16));
		weight = w;
		digits = (const int16 *) (data + 2 * sizeof(uint16));
		ndigits = (size - 2 * sizeof(uint16)) / sizeof(int16);
	}
	if (ndigits == 0)
	{
		*out = 0;
		return true;
	}

	/*
	 * Up to 12 significant digits times a power of ten up to 22: both exact
	 * doubles, so one multiplication or division rounds correctly, as strtod
	 * would.
	 */
	if (ndigits <= 3)
	{
		static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
		1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
		int64		m = 0;
		int			e10 = (weight + 1 - ndigits) * 4;

		for (int i = 0; i < ndigits; i++)
			m = m * 10000 + digits[i];
		if (e10 >= 0 && e10 <= 22)
		{
			*out = (double) m * pow10[e10];
			if (neg)
				*out = -*out;
			return true;
		}
		if (e10 < 0 && e10 >= -22)
		{
			*out = (double) m / pow10[-e10];
			if (neg)
				*out = -*out;
			return true;
		}
	}
	if (ndigits > NUM_MAX_GROUPS)
		ndigits = NUM_MAX_GROUPS;
	if (neg)
		*p++ = '-';
	for (int i = 0; i < ndigits; i++)
	{
		int			d;

		d = digits[i];
		*p++ = '0' + d / 1000;
		*p++ = '0' + d / 100 % 10;
		*p++ = '0' + d / 10 % 10;
		*p++ = '0' + d % 10;
	}
	snprintf(p, buf + sizeof(buf) - p, "e%d", (weight + 1 - ndigits) * 4);
	*out = strtod(buf, NULL);
	return true;
}

static inline bool
js_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * A string as JavaScript's Number() reads it: surrounding white space
 * trimmed, "" is 0, 0x/0o/0b integers, [+-]Infinity, else a decimal
 * literal that must be the whole string.  False: NaN.
 */
bool
opsflags_parse_js_number(const char *s, int len, double *out)
{
	char		buf[128];
	const char *e = s + len;
	const char *p;
	bool		digits = false;
	bool		neg = false;
	int			n;

	while (s < e && js_space(*s))
		s++;
	while (e > s && js_space(e[-1]))
		e--;
	n = e - s;
	if (n == 0)
	{
		*out = 0;
		return true;
	}
	if (n > 2 && s[0] == '0' && strchr("xXoObB", s[1]) != NULL)
	{
		int			base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
		double		v = 0;

		for (p = s + 2; p < e; p++)
		{
			int			d = isdigit((unsigned char) *p) ? *p - '0' :
				isxdigit((unsigned char) *p) ? tolower((unsigned char) *p) - 'a' + 10 : 99;

			if (d >= base)
				return false;
			v = v * base + d;
		}
		*out = v;
		return true;
	}
	p = s;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (e - p == 8 && memcmp(p, "Infinity", 8) == 0)
	{
		*out = neg ? -INFINITY : INFINITY;
		return true;
	}
	while (p < e && isdigit((unsigned char) *p))
		p++, digits = true;
	if (p < e && *p == '.')
	{
		p++;
		while (p < e && isdigit((unsigned char) *p))
			p++, digits = true;
	}
	if (!digits)
		return false;
	if (p < e && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p == e || !isdigit((unsigned char) *p))
			return false;
		while (p < e && isdigit((unsigned char) *p))
			p++;
	}
	if (p != e)
		return false;
	if (n >= (int) sizeof(buf))
	{
		char	   *copy = pnstrdup(s, n);

		*out = strtod(copy, NULL);
		pfree(copy);
		return true;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	*out = strtod(buf, NULL);
	return true;
}

/*
 * A double as JavaScript's String() writes it, for the common cases:
 * integers below 1e21 in full, else the shortest decimal that reads back
 * the same, positional from 1e-6 up.  Returns the length.
 */
int
opsflags_double_text(double d, char *buf, int buflen)
{
	int			p;

	if (isnan(d))
		return snprintf(buf, buflen, "NaN");
	if (isinf(d))
		return snprintf(buf, buflen, d < 0 ? "-Infinity" : "Infinity");
	if (d == 0)
		return snprintf(buf, buflen, "0");
	if (d == floor(d) && fabs(d) < 1e21)
		return snprintf(buf, buflen, "%.0f", d);
	for (p = 1; p < 17; p++)
	{
		snprintf(buf, buflen, "%.*g", p, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	snprintf(buf, buflen, "%.*g", p, d);
	if (strchr(buf, 'e') != NULL && fabs(d) >= 1e-6 && fabs(d) < 1e21)
	{
		int			exp10 = (int) floor(log10(fabs(d)));
		int			decimals = p - 1 - exp10;

		snprintf(buf, buflen, "%.*f", decimals < 0 ? 0 : decimals, d);
	}
	else if (strchr(buf, 'e') != NULL)
	{
		/* "1e-07" -> "1e-7", "1e+21" stays */
		char	   *e = strchr(buf, 'e');

		if ((e[1] == '-' || e[1] == '+') && e[2] == '0' && e[3] != '\0')
			memmove(e + 2, e + 3, strlen(e + 3) + 1);
	}
	return strlen(buf);
}

/* ---------- lower-casing ---------- */

static locale_t utf8_locale = (locale_t) 0;
static bool utf8_locale_tried = false;

/*
 * s lower-cased into buf (at least 2 * len + 8 bytes): ASCII always, other
 * characters with a UTF-8 C library locale when the database is UTF-8.
 * Returns the length.
 */
int
opsflags_lower(const char *s, int len, char *buf, int buflen)
{
	return opsflags_lower_prefix(s, len, buf, buflen, buflen);
}

/*
 * The same, stopping once at least want bytes are written: each character
 * is lower-cased on its own, so they begin the whole lower-cased string.
 */
int
opsflags_lower_prefix(const char *s, int len, char *buf, int buflen, int want)
{
	int			o = 0;
	int			i = 0;

	if (GetDatabaseEncoding() == PG_UTF8 && !utf8_locale_tried)
	{
		utf8_locale_tried = true;
		utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
	}
	while (i < len && o < buflen - 4 && o < want)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x80)
		{
			buf[o++] = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
			i++;
		}
		else if (utf8_locale != (locale_t) 0 && GetDatabaseEncoding() == PG_UTF8)
		{
			int			l = pg_utf_mblen((const unsigned char *) s + i);
			pg_wchar	w;

			if (i + l > len || !pg_utf8_islegal((const unsigned char *) s + i, l))
			{
				buf[o++] = s[i++];
				continue;
			}
			w = utf8_to_unicode((const unsigned char *) s + i);
			w = (pg_wchar) towlower_l((wint_t) w, utf8_locale);
			unicode_to_utf8(w, (unsigned char *) buf + o);
			o += pg_utf_mblen((unsigned char *) buf + o);
			i += l;
		}
		else
			buf[o++] = s[i++];
	}
	return o;
}

/* ---------- dates ---------- */

static int64
days_from_civil(int64 y, int m, int d)
{
	int64		era;
	int64		yoe;
	int64		doy;
	int64		doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool
digits_at(const char *s, const char *e, int n, int *out)
{
	int			v = 0;

	if (e - s < n)
		return false;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) s[i]))
			return false;
		v = v * 10 + s[i] - '0';
	}
	*out = v;
	return true;
}

/*
 * An RFC 3339 / ISO 8601 timestamp as milliseconds since 1970 UTC:
 * YYYY-MM-DD, optionally followed by T (or a space) HH:MM[:SS[.fff...]]
 * and Z or +HH:MM / -HH:MM (none: UTC).
 */
bool
opsflags_parse_date(const char *s, int len, double *ms)
{
	const char *e = s + len;
	int			y,
				mo,
				d,
				h = 0,
				mi = 0,
				sec = 0;
	double		frac = 0;
	int			off = 0;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	while (s < e && js_space(*s))
		s++;
	while (e > s && js_space(e[-1]))
		e--;
	if (!digits_at(s, e, 4, &y) || e - s < 10 || s[4] != '-' || !digits_at(s + 5, e, 2, &mo) ||
		s[7] != '-' || !digits_at(s + 8, e, 2, &d))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
		(mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
		return false;
	s += 10;
	if (s < e)
	{
		if (*s != 'T' && *s != 't' && *s != ' ')
			return false;
		s++;
		if (!digits_at(s, e, 2, &h) || e - s < 5 || s[2] != ':' || !digits_at(s + 3, e, 2, &mi))
			return false;
		s += 5;
		if (s < e && *s == ':')
		{
			if (!digits_at(s + 1, e, 2, &sec))
				return false;
			s += 3;
			if (s < e && (*s == '.' || *s == ','))
			{
				double		scale = 0.1;

				s++;
				if (s == e || !isdigit((unsigned char) *s))
					return false;
				while (s < e && isdigit((unsigned char) *s))
				{
					frac += (*s - '0') * scale;
					scale /= 10;
					s++;
				}
			}
		}
		if (h > 24 || mi > 59 || sec > 59 || (h == 24 && (mi > 0 || sec > 0 || frac > 0)))
			return false;
		if (s < e && (*s == 'Z' || *s == 'z'))
			s++;
		else if (s < e && (*s == '+' || *s == '-'))
		{
			int			oh,
						om;
			int			sign = *s == '-' ? -1 : 1;

			s++;
			if (!digits_at(s, e, 2, &oh))
				return false;
			s += 2;
			if (s < e && *s == ':')
				s++;
			if (!digits_at(s, e, 2, &om) || oh > 23 || om > 59)
				return false;
			s += 2;
			off = sign * (oh * 60 + om);
		}
	}
	if (s != e)
		return false;
	*ms = ((double) days_from_civil(y, mo, d) * 86400.0 + h * 3600 + mi * 60 + sec - off * 60) * 1000.0 +
		floor(frac * 1000.0 + 1e-9);
	return true;
}

/* ---------- semantic versions ---------- */

#define SEMVER_MAX_LENGTH 256
#define SEMVER_MAX_SAFE 9007199254740991.0

static bool
semver_number(const char **p, const char *e, uint64 *out)
{
	const char *s = *p;
	double		v = 0;

	if (s == e || !isdigit((unsigned char) *s))
		return false;
	if (*s == '0' && s + 1 < e && isdigit((unsigned char) s[1]))
		return false;
	while (s < e && isdigit((unsigned char) *s))
		v = v * 10 + (*s++ - '0');
	if (v > SEMVER_MAX_SAFE)
		return false;
	*out = (uint64) v;
	*p = s;
	return true;
}

/* dot-separated identifiers of [0-9A-Za-z-]; numeric: no leading zero */
static bool
semver_idents(const char *s, const char *e, bool numeric_rule)
{
	if (s == e)
		return false;
	for (;;)
	{
		bool		all_digits = true;
		const char *id = s;

		while (s < e && *s != '.')
		{
			if (!isalnum((unsigned char) *s) && *s != '-')
				return false;
			if (!isdigit((unsigned char) *s))
				all_digits = false;
			s++;
		}
		if (s == id)
			return false;
		if (numeric_rule && all_digits && s - id > 1 && *id == '0')
			return false;
		if (s == e)
			break;
		s++;
	}
	return true;
}

/*
 * Semantic Versioning 2.0.0, as node-semver's valid() (surrounding white
 * space ignored) without a leading "v" or "=".  The pre-release points into s.
 */
bool
opsflags_parse_semver(const char *s, int len, Semver *v)
{
	const char *e = s + len;
	const char *pre;
	const char *plus;

	while (s < e && js_space(*s))
		s++;
	while (e > s && js_space(e[-1]))
		e--;
	if (e - s > SEMVER_MAX_LENGTH)
		return false;
	if (!semver_number(&s, e, &v->major) || s == e || *s++ != '.' ||
		!semver_number(&s, e, &v->minor) || s == e || *s++ != '.' ||
		!semver_number(&s, e, &v->patch))
		return false;
	v->pre = NULL;
	v->prelen = 0;
	plus = memchr(s, '+', e - s);
	if (plus != NULL && !semver_idents(plus + 1, e, false))
		return false;
	if (plus == NULL)
		plus = e;
	if (s < plus)
	{
		if (*s != '-')
			return false;
		pre = s + 1;
		if (!semver_idents(pre, plus, true))
			return false;
		v->pre = pre;
		v->prelen = plus - pre;
	}
	return true;
}

/* Precedence of two pre-release identifier lists (both present). */
static int
prerelease_cmp(const char *a, int alen, const char *b, int blen)
{
	const char *ae = a + alen;
	const char *be = b + blen;

	for (;;)
	{
		const char *ai = a;
		const char *bi = b;
		bool		anum = true;
		bool		bnum = true;
		int			al,
					bl;
		int			r;

		if (a >= ae && b >= be)
			return 0;
		if (a >= ae)
			return -1;
		if (b >= be)
			return 1;
		while (a < ae && *a != '.')
			anum &= isdigit((unsigned char) *a++) != 0;
		while (b < be && *b != '.')
			bnum &= isdigit((unsigned char) *b++) != 0;
		al = a - ai;
		bl = b - bi;
		if (anum && bnum)
		{
			if (al != bl)
				return al < bl ? -1 : 1;
			r = memcmp(ai, bi, al);
		}
		else if (anum != bnum)
			return anum ? -1 : 1;
		else
		{
			r = memcmp(ai, bi, Min(al, bl));
			if (r == 0 && al != bl)
				r = al < bl ? -1 : 1;
		}
		if (r != 0)
			return r < 0 ? -1 : 1;
		/* both identifiers equal: past the dots ("a.b" vs "a" ends above) */
		if (a < ae)
			a++;
		else if (b < be)
			return -1;
		if (b < be)
			b++;
		else if (a <= ae && ai + al < ae)
			return 1;
	}
}

int
opsflags_semver_cmp(const Semver *a, const Semver *b)
{
	if (a->major != b->major)
		return a->major < b->major ? -1 : 1;
	if (a->minor != b->minor)
		return a->minor < b->minor ? -1 : 1;
	if (a->patch != b->patch)
		return a->patch < b->patch ? -1 : 1;
	if (a->pre == NULL || b->pre == NULL)
		return (a->pre == NULL) - (b->pre == NULL);
	return prerelease_cmp(a->pre, a->prelen, b->pre, b->prelen);
}

/* ---------- IP ranges ---------- */

/* "address" or "address/bits", IPv4 or IPv6. */
bool
opsflags_parse_cidr(const char *s, int len, CidrRange *r)
{
	char		buf[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(s, '/', len);
	int			alen = slash ? slash - s : len;
	int			bits = -1;

	if (alen <= 0 || alen >= (int) sizeof(buf))
		return false;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(r->addr, 0, sizeof(r->addr));
	if (inet_pton(AF_INET, buf, r->addr) == 1)
		r->family = 4;
	else if (inet_pton(AF_INET6, buf, r->addr) == 1)
		r->family = 6;
	else
		return false;
	if (slash != NULL)
	{
		const char *p = slash + 1;

		if (p == s + len || s + len - p > 3)
			return false;
		bits = 0;
		for (; p < s + len; p++)
		{
			if (!isdigit((unsigned char) *p))
				return false;
			bits = bits * 10 + (*p - '0');
		}
		if (bits > (r->family == 4 ? 32 : 128))
			return false;
	}
	r->bits = bits < 0 ? (r->family == 4 ? 32 : 128) : bits;
	return true;
}

/* The address equals the range's, or is inside it. */
bool
opsflags_cidr_contains(const CidrRange *range, const CidrRange *a)
{
	int			nbytes = range->family == 4 ? 4 : 16;
	int			full;
	int			rest;

	if (range->family != a->family)
		return false;
	if (memcmp(range->addr, a->addr, nbytes) == 0)
		return true;
	if (a->bits < range->bits)
		return false;
	full = range->bits / 8;
	rest = range->bits % 8;
	if (memcmp(range->addr, a->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((range->addr[full] ^ a->addr[full]) & (0xFF << (8 - rest))) == 0;
}

