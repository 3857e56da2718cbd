/*
 * rules_ops.c
 *	  The operators of targeting rules (docs/rules.md) at evaluation, and
 *	  what they read: a context's attributes (a member, else properties',
 *	  the key, a JSON pointer).  The values compared are read by
 *	  rules_values.c.  Semantics follow the Unleash SDKs where they define
 *	  them.  Evaluation allocates nothing here for short values (stack
 *	  buffers) and never raises.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "mb/pg_wchar.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "rules.h"

/* ---------- attributes ---------- */

/* Objects this small are scanned, larger ones searched by PostgreSQL. */
#define MEMBER_SCAN_MAX 32

/*
 * A member of a jsonb object (false: absent), as getKeyJsonValueFromContainer
 * finds it, without a call per key: a small object's keys are walked in
 * order (they are sorted by length, then bytes) and its value filled in as
 * jsonb_util.c's fillJsonbValue does, from the on-disk format.
 */
bool
opsflags_jsonb_member(JsonbContainer *obj, const char *name, uint32 len, JsonbValue *out)
{
	uint32		count = JsonContainerSize(obj);
	const JEntry *children = obj->children;
	char	   *base;
	uint32		off = 0;

	if (count > MEMBER_SCAN_MAX)
		return getKeyJsonValueFromContainer(obj, name, len, out) != NULL;
	base = (char *) (children + count * 2);
	for (uint32 i = 0; i < count; i++)
	{
		JEntry		je = children[i];
		uint32		end = JBE_HAS_OFF(je) ? JBE_OFFLENFLD(je) : off + JBE_OFFLENFLD(je);
		uint32		klen = end - off;
		JEntry		ve;
		uint32		voff;
		uint32		vlen;
		uint32		k = 0;

		if (klen > len)
			return false;
		if (klen == len)
		{
			/* keys are short: no call to compare them */
			while (k < len && base[off + k] == name[k])
				k++;
		}
		if (klen < len || k < len)
		{
			off = end;
			continue;
		}
		ve = children[i + count];
		voff = getJsonbOffset(obj, i + count);
		vlen = getJsonbLength(obj, i + count);
		if (JBE_ISNULL(ve))
			out->type = jbvNull;
		else if (JBE_ISSTRING(ve))
		{
			out->type = jbvString;
			out->val.string.val = base + voff;
			out->val.string.len = vlen;
		}
		else if (JBE_ISNUMERIC(ve))
		{
			out->type = jbvNumeric;
			out->val.numeric = (Numeric) (base + INTALIGN(voff));
		}
		else if (JBE_ISBOOL_TRUE(ve) || JBE_ISBOOL_FALSE(ve))
		{
			out->type = jbvBool;
			out->val.boolean = JBE_ISBOOL_TRUE(ve);
		}
		else
		{
			out->type = jbvBinary;
			out->val.binary.data = (JsonbContainer *) (base + INTALIGN(voff));
			out->val.binary.len = vlen - (INTALIGN(voff) - voff);
		}
		return true;
	}
	return false;
}

static bool
lookup(JsonbContainer *obj, const char *name, uint32 len, JsonbValue *out)
{
	if (obj == NULL || !JsonContainerIsObject(obj) ||
		!opsflags_jsonb_member(obj, name, len, out))
		return false;
	return out->type != jbvNull;
}

/*
 * The value of an attribute in the context; false when missing (absent or
 * null).  Objects and arrays come back as jbvBinary.
 */
bool
opsflags_attr_value(const RuleAttr *a, EvalContext *ec, JsonbValue *out)
{
	if (a->ld)
		return opsflags_ld_attr_value(a, ec, out);
	switch (a->kind)
	{
		case ATTR_KEY:
			if (ec->user == NULL)
				return false;
			out->type = jbvString;
			out->val.string.val = (char *) ec->user;
			out->val.string.len = ec->userlen;
			return true;
		case ATTR_RANDOM:
			return false;
		case ATTR_NAME:
			if (ec->ctx == NULL)
			{
				/* the (key, user, role) form: its context is {key, role} */
				if (ec->role != NULL && a->partlens[0] == 4 && memcmp(a->parts[0], "role", 4) == 0)
				{
					out->type = jbvString;
					out->val.string.val = (char *) ec->role;
					out->val.string.len = ec->rolelen;
					return true;
				}
				return false;
			}
			if (lookup(ec->ctx, a->parts[0], a->partlens[0], out))
				return true;
			{
				JsonbValue	props;

				if (!lookup(ec->ctx, "properties", 10, &props) || props.type != jbvBinary)
					return false;
				return lookup(props.val.binary.data, a->parts[0], a->partlens[0], out);
			}
		case ATTR_POINTER:
			{
				JsonbContainer *cur = ec->ctx;

				if (cur == NULL)
				{
					RuleAttr	name = *a;

					if (a->nparts != 1)
						return false;
					if (a->partlens[0] == 3 && memcmp(a->parts[0], "key", 3) == 0)
						name.kind = ATTR_KEY;
					else
						name.kind = ATTR_NAME;
					return opsflags_attr_value(&name, ec, out);
				}
				if (a->nparts == 0)
					return false;	/* "/" alone: the root, an object */
				for (int i = 0; i < a->nparts; i++)
				{
					if (cur == NULL)
						return false;
					if (JsonContainerIsObject(cur))
					{
						if (!lookup(cur, a->parts[i], a->partlens[i], out))
							return false;
					}
					else if (JsonContainerIsArray(cur))
					{
						uint32		idx = 0;
						JsonbValue *e;

						if (a->partlens[i] == 0 || a->partlens[i] > 9 ||
							(a->partlens[i] > 1 && a->parts[i][0] == '0'))
							return false;
						for (uint32 j = 0; j < a->partlens[i]; j++)
						{
							if (!isdigit((unsigned char) a->parts[i][j]))
								return false;
							idx = idx * 10 + (a->parts[i][j] - '0');
						}
						if ((e = getIthJsonbValueFromContainer(cur, idx)) == NULL ||
							e->type == jbvNull)
							return false;
						*out = *e;
					}
					else
						return false;
					cur = out->type == jbvBinary ? out->val.binary.data : NULL;
				}
				return true;
			}
	}
	return false;
}

/*
 * An attribute as text (bucketing, split overrides): a string as it is, a
 * number as JavaScript's String() writes it (into buf), a boolean as
 * "true"/"false".  False when missing or of another type.
 */
bool
opsflags_attr_text(const RuleAttr *a, EvalContext *ec, const char **s, uint32 *len,
				   char *buf, int buflen)
{
	JsonbValue	v;
	double		d;

	if (!opsflags_attr_value(a, ec, &v))
		return false;
	switch (v.type)
	{
		case jbvString:
			*s = v.val.string.val;
			*len = v.val.string.len;
			return true;
		case jbvNumeric:
			if (!opsflags_numeric_double(v.val.numeric, &d))
				return false;
			*len = opsflags_double_text(d, buf, buflen);
			*s = buf;
			return true;
		case jbvBool:
			*s = v.val.boolean ? "true" : "false";
			*len = strlen(*s);
			return true;
		default:
			return false;
	}
}

/* ---------- clauses ---------- */

/* A context value as a number for eq/lt/...: a number or a numeric string. */
static bool
value_number(JsonbValue *v, double *d)
{
	if (v->type == jbvNumeric)
		return opsflags_numeric_double(v->val.numeric, d);
	if (v->type == jbvString)
		return opsflags_parse_js_number(v->val.string.val, v->val.string.len, d) && !isnan(*d);
	return false;
}

/* A context value as ms since 1970: a number, or an RFC 3339 string. */
static bool
value_date(JsonbValue *v, double *d)
{
	if (v->type == jbvNumeric)
		return opsflags_numeric_double(v->val.numeric, d);
	if (v->type == jbvString)
		return opsflags_parse_date(v->val.string.val, v->val.string.len, d);
	return false;
}

bool
opsflags_op_holds(const RuleClause *c, JsonbValue *v)
{
	char		stackbuf[256];
	const char *s;
	uint32		len;
	double		d;

	switch (c->op)
	{
		case OP_IN:
		case OP_NOT_IN:
			{
				bool		in = false;

				if (v->type == jbvString)
				{
					s = v->val.string.val;
					len = v->val.string.len;
					if (c->ci)
					{
						char	   *buf = len * 2 + 8 <= sizeof(stackbuf) ? stackbuf : palloc(len * 2 + 8);

						len = opsflags_lower(s, len, buf, len * 2 + 8);
						s = buf;
					}
					in = strset_contains(c->strings, s, len);
				}
				else if (v->type == jbvNumeric)
				{
					if (opsflags_numeric_double(v->val.numeric, &d))
					{
						if (d == 0)
							d = 0;
						in = strset_contains(c->numbers, (const char *) &d, sizeof(double));
					}
				}
				else if (v->type == jbvBool)
					in = v->val.boolean ? c->has_true : c->has_false;
				else
					return false;	/* an object or array: neither in nor not_in */
				return c->op == OP_IN ? in : !in;
			}
		case OP_STARTS_WITH:
		case OP_ENDS_WITH:
		case OP_CONTAINS:
			if (v->type != jbvString)
				return false;
			s = v->val.string.val;
			len = v->val.string.len;
			if (c->ci)
			{
				uint32		size = len * 2 + 8;
				char	   *buf;

				if (c->op == OP_STARTS_WITH)
				{
					/* the lower-cased prefix the longest value needs */
					uint32		want = 0;

					for (int i = 0; i < c->nstrs; i++)
						want = Max(want, c->lens[i]);
					size = Min(size, want + 16);
					buf = size <= sizeof(stackbuf) ? stackbuf : palloc(size);
					len = opsflags_lower_prefix(s, len, buf, size, want);
				}
				else
				{
					buf = size <= sizeof(stackbuf) ? stackbuf : palloc(size);
					len = opsflags_lower(s, len, buf, size);
				}
				s = buf;
			}
			for (int i = 0; i < c->nstrs; i++)
			{
				uint32		l = c->lens[i];

				if (l > len)
					continue;
				if (c->op == OP_STARTS_WITH ? memcmp(s, c->strs[i], l) == 0 :
					c->op == OP_ENDS_WITH ? memcmp(s + len - l, c->strs[i], l) == 0 :
					(l == 0 || memmem(s, len, c->strs[i], l) != NULL))
					return true;
			}
			return false;
		case OP_MATCHES:
			{
				pg_wchar	wstack[256];
				pg_wchar   *w;
				int			wlen;
				bool		found = false;

				if (v->type != jbvString)
					return false;
				s = v->val.string.val;
				len = v->val.string.len;
				w = NULL;
				wlen = 0;
				for (int i = 0; i < c->nvalues && !found; i++)
				{
					/* a value without the prefix every match starts with */
					if (c->prefixes[i] != NULL &&
						(c->prefixlens[i] > len || memcmp(s, c->prefixes[i], c->prefixlens[i]) != 0))
						continue;
					if (w == NULL)
					{
						w = len < lengthof(wstack) ? wstack : palloc((len + 1) * sizeof(pg_wchar));
						wlen = pg_mb2wchar_with_len(s, w, len);
					}
					found = pg_regexec((regex_t *) &c->regexes[i], w, wlen, 0, NULL, 0, NULL, 0) == REG_OKAY;
				}
				return found;
			}
		case OP_EQ:
		case OP_LT:
		case OP_LTE:
		case OP_GT:
		case OP_GTE:
		case OP_BEFORE:
		case OP_AFTER:
			if (c->op == OP_BEFORE || c->op == OP_AFTER ? !value_date(v, &d) : !value_number(v, &d))
				return false;
			for (int i = 0; i < c->nvalues; i++)
			{
				double		x = c->nums[i];

				if (c->op == OP_EQ ? d == x : c->op == OP_LT || c->op == OP_BEFORE ? d < x :
					c->op == OP_LTE ? d <= x : c->op == OP_GT || c->op == OP_AFTER ? d > x : d >= x)
					return true;
			}
			return false;
		case OP_SEMVER_EQ:
		case OP_SEMVER_LT:
		case OP_SEMVER_LTE:
		case OP_SEMVER_GT:
		case OP_SEMVER_GTE:
			{
				Semver		sv;

				if (v->type != jbvString ||
					!opsflags_parse_semver(v->val.string.val, v->val.string.len, &sv))
					return false;
				for (int i = 0; i < c->nvalues; i++)
				{
					int			r = opsflags_semver_cmp(&sv, &c->versions[i]);

					if (c->op == OP_SEMVER_EQ ? r == 0 : c->op == OP_SEMVER_LT ? r < 0 :
						c->op == OP_SEMVER_LTE ? r <= 0 : c->op == OP_SEMVER_GT ? r > 0 : r >= 0)
						return true;
				}
				return false;
			}
		case OP_IN_CIDR:
			{
				CidrRange	a;

				if (v->type != jbvString ||
					!opsflags_parse_cidr(v->val.string.val, v->val.string.len, &a))
					return false;
				for (int i = 0; i < c->nvalues; i++)
					if (opsflags_cidr_contains(&c->ranges[i], &a))
						return true;
				return false;
			}
		default:
			return false;
	}
}

/*
 * The clause's attribute, read once per evaluation of its rule set: where
 * its value is (in the memo, else in *local), NULL when missing.
 */
static inline JsonbValue *
attr_value_memo(const RuleClause *c, EvalContext *ec, RuleMemo *memo, JsonbValue *local)
{
	uint8		state;

	if (memo == NULL || c->slot < 0)
		return opsflags_attr_value(&c->attr, ec, local) ? local : NULL;
	state = memo->attr_state[c->slot];
	if (state == 0)
	{
		state = opsflags_attr_value(&c->attr, ec, &memo->attrs[c->slot]) ? 1 : 2;
		memo->attr_state[c->slot] = state;
	}
	return state == 1 ? &memo->attrs[c->slot] : NULL;
}

/*
 * A clause for a context: the operator on the attribute's value, negated.
 * Clauses written alike are decided once per evaluation of a rule set.
 */
bool
opsflags_clause_holds(const RuleClause *c, EvalContext *ec, RuleMemo *memo)
{
	JsonbValue	local;
	JsonbValue *v;
	bool		r;

	if (c->op == OP_UNSUPPORTED || c->op == OP_NEVER)
		return false;
	if (memo != NULL && c->id >= 0 && memo->clause_state[c->id] != 0)
		return memo->clause_state[c->id] == 1;

	switch (c->op)
	{
		case OP_SEGMENT_MATCH:
			r = false;
			for (int i = 0; i < c->nvalues && !r; i++)
				r = c->segments[i] != NULL && opsflags_segment_contains(c->segments[i], ec);
			break;
		default:
			if (c->ld)
			{
				/* LaunchDarkly's: a missing attribute never holds */
				if (c->attr.is_kind)
					r = opsflags_ld_kinds_hold(c, ec);
				else if ((v = attr_value_memo(c, ec, memo, &local)) != NULL)
					r = opsflags_ld_value_holds(c, v);
				else
				{
					if (memo != NULL && c->id >= 0)
						memo->clause_state[c->id] = 2;
					return false;
				}
			}
			else if ((v = attr_value_memo(c, ec, memo, &local)) != NULL)
				r = opsflags_op_holds(c, v);
			else if (c->attr.is_current_time && (c->op == OP_BEFORE || c->op == OP_AFTER))
			{
				/* no currentTime in the context: the statement's time */
				{
					double		now = (double) GetCurrentStatementStartTimestamp() / 1000.0 +
						(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * 86400000.0;
					bool		hit = false;

					for (int i = 0; i < c->nvalues && !hit; i++)
						hit = c->op == OP_BEFORE ? now < c->nums[i] : now > c->nums[i];
					r = hit;
				}
			}
			else
				r = c->op == OP_NOT_IN;
			break;
	}
	if (c->negate)
		r = !r;
	if (memo != NULL && c->id >= 0)
		memo->clause_state[c->id] = r ? 1 : 2;
	return r;
}
