/*
 * rules_ld.c
 *	  LaunchDarkly's evaluation in the rule engine (docs/rules.md,
 *	  "LaunchDarkly's evaluation"): attribute references read from one kind
 *	  of context, clauses with LaunchDarkly's semantics (their values
 *	  compiled, then decided), its loose versions and timestamps, and its
 *	  sha1 buckets (sha1.c).  Evaluation allocates nothing here but for
 *	  attributes whose value is an array, and never raises.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

/* ---------- compiling ---------- */

/*
 * context_kind of a clause, split or gate: absent (kind->type is jbvNull),
 * or a kind as LaunchDarkly allows them (letters, digits, ".", "_", "-";
 * not "kind" nor "multi").
 */
bool
rules_context_kind(RuleCompile *c, JsonbContainer *obj, JsonbValue *kind)
{
	if (!rules_member(obj, "context_kind", kind))
	{
		kind->type = jbvNull;
		return true;
	}
	if (kind->type != jbvString || kind->val.string.len == 0 ||
		(kind->val.string.len == 4 && memcmp(kind->val.string.val, "kind", 4) == 0) ||
		(kind->val.string.len == 5 && memcmp(kind->val.string.val, "multi", 5) == 0))
		return rules_bad(c, "context_kind must be a context kind (a non-empty string of letters, digits, \".\", \"_\" and \"-\", not \"kind\" nor \"multi\")");
	for (int i = 0; i < kind->val.string.len; i++)
	{
		char		ch = kind->val.string.val[i];

		if (!(isalnum((unsigned char) ch) || ch == '.' || ch == '_' || ch == '-'))
			return rules_bad(c, "context_kind must be a context kind (a non-empty string of letters, digits, \".\", \"_\" and \"-\", not \"kind\" nor \"multi\")");
	}
	return true;
}

/*
 * An attribute read as LaunchDarkly reads it, from the context of kind
 * (jbvNull: "user").  With a kind given the attribute is a reference
 * ("/a/b", "~1" for "/", "~0" for "~"; else one name), without one a
 * literal name, as LaunchDarkly reads rules stored without a kind.
 */
bool
rules_compile_ld_attr(RuleCompile *c, JsonbValue *v, RuleAttr *a, const char *what, JsonbValue *kind)
{
	const char *s;
	int			len;

	memset(a, 0, sizeof(RuleAttr));
	if (v->type != jbvString || v->val.string.len == 0)
		return rules_bad(c, "%s must be a non-empty string", what);
	s = v->val.string.val;
	len = v->val.string.len;
	a->ld = true;
	a->kind = ATTR_POINTER;
	if (kind->type == jbvString)
	{
		a->ctx_kind = rules_copy_string(c, kind);
		a->ctx_kindlen = kind->val.string.len;
	}
	else
	{
		a->ctx_kind = "user";
		a->ctx_kindlen = 4;
	}
	if (kind->type != jbvString || s[0] != '/')
	{
		if (kind->type == jbvString && s[len - 1] == '~')
			return rules_bad(c, "%s \"%.*s\" is not a valid attribute reference", what, len, s);
		a->nparts = 1;
		a->parts = MemoryContextAlloc(c->cxt, sizeof(char *));
		a->partlens = MemoryContextAlloc(c->cxt, sizeof(uint32));
		a->parts[0] = rules_copy_string(c, v);
		a->partlens[0] = len;
	}
	else
	{
		int			n = 0;

		if (len == 1 || s[len - 1] == '~' || memmem(s, len, "//", 2) != NULL)
			return rules_bad(c, "%s \"%.*s\" is not a valid attribute reference", what, len, s);
		for (int i = 0; i < len; i++)
		{
			if (s[i] == '/')
				n++;
			else if (s[i] == '~' && s[i + 1] != '0' && s[i + 1] != '1')
				return rules_bad(c, "%s \"%.*s\" is not a valid attribute reference (\"~\" must be followed by 0 or 1)",
								 what, len, s);
		}
		a->parts = MemoryContextAlloc(c->cxt, sizeof(char *) * n);
		a->partlens = MemoryContextAlloc(c->cxt, sizeof(uint32) * n);
		for (int i = 1; i <= len; i++)
		{
			int			start = i;
			char	   *tok;
			int			k = 0;

			while (i < len && s[i] != '/')
				i++;
			tok = MemoryContextAlloc(c->cxt, i - start + 1);

			/*
			 * The SDK leaves a component that starts with "~" as it is (its
			 * unescape tests indexOf("~") for truth).
			 */
			for (int j = start; j < i; j++)
			{
				if (s[j] == '~' && s[start] != '~')
				{
					tok[k++] = s[j + 1] == '0' ? '~' : '/';
					j++;
				}
				else
					tok[k++] = s[j];
			}
			tok[k] = '\0';
			a->parts[a->nparts] = tok;
			a->partlens[a->nparts++] = k;
		}
	}
	if (a->partlens[0] == 5 && memcmp(a->parts[0], "_meta", 5) == 0)
		return rules_bad(c, "%s \"%.*s\" names \"_meta\", which is not an attribute", what, len, s);
	a->is_kind = a->nparts == 1 && a->partlens[0] == 4 && memcmp(a->parts[0], "kind", 4) == 0;
	a->is_anonymous = a->nparts == 1 && a->partlens[0] == 9 && memcmp(a->parts[0], "anonymous", 9) == 0;
	return true;
}

/* The hashed prefix of LaunchDarkly buckets: "key.salt." or "seed.". */
void
rules_ld_prefix(RuleCompile *c, OpsSha1 *prefix, const char *seed)
{
	opsflags_sha1_init(prefix);
	if (seed != NULL)
		opsflags_sha1_update(prefix, (const unsigned char *) seed, strlen(seed));
	else
	{
		const char *salt = c->t->salt ? c->t->salt : "";

		opsflags_sha1_update(prefix, (const unsigned char *) c->t->bucket_key, strlen(c->t->bucket_key));
		opsflags_sha1_update(prefix, (const unsigned char *) ".", 1);
		opsflags_sha1_update(prefix, (const unsigned char *) salt, strlen(salt));
	}
	opsflags_sha1_update(prefix, (const unsigned char *) ".", 1);
}

/*
 * One member of a LaunchDarkly clause's values: used as written (not
 * trimmed); a value of a type the operator never holds for is refused (an
 * import leaves it out: LaunchDarkly would not match it).
 */
bool
rules_compile_ld_value(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v,
					   const char **strs, uint32 *lens, int *nstrs, const char **nums,
					   uint32 *numlens, int *nnums)
{
	switch (cl->op)
	{
		case OP_IN:
			if (v->type == jbvString)
			{
				strs[*nstrs] = v->val.string.val;
				lens[(*nstrs)++] = v->val.string.len;
			}
			else if (v->type == jbvNumeric || v->type == jbvBool)
				return rules_in_scalar(c, cl, i, v, nums, numlens, nnums);
			/* null, arrays and objects are never equal to a value */
			return true;
		case OP_STARTS_WITH:
		case OP_ENDS_WITH:
		case OP_CONTAINS:
			if (v->type != jbvString)
				return rules_bad(c, "value %d is %s, expected a string", i + 1, rules_type_name(v));
			cl->strs[cl->nstrs] = rules_copy_string(c, v);
			cl->lens[cl->nstrs++] = v->val.string.len;
			return true;
		case OP_LT:
		case OP_LTE:
		case OP_GT:
		case OP_GTE:
			if (v->type == jbvNumeric && opsflags_numeric_double(v->val.numeric, &cl->nums[i]))
				return true;
			return rules_bad(c, "value %d is %s, expected a number", i + 1, rules_type_name(v));
		case OP_BEFORE:
		case OP_AFTER:
			if (v->type == jbvNumeric && opsflags_numeric_double(v->val.numeric, &cl->nums[i]))
				return true;
			if (v->type == jbvString &&
				opsflags_parse_ld_date(v->val.string.val, v->val.string.len, &cl->nums[i]))
				return true;
			return rules_bad(c, "value %d is not a timestamp YYYY-MM-DDTHH:MM:SS with a zone or milliseconds since 1970",
							 i + 1);
		case OP_SEMVER_EQ:
		case OP_SEMVER_LT:
		case OP_SEMVER_LTE:
		case OP_SEMVER_GT:
		case OP_SEMVER_GTE:
			if (v->type == jbvString)
			{
				int			size = v->val.string.len + 8;
				char	   *buf = MemoryContextAlloc(c->cxt, size);

				if (opsflags_parse_ld_semver(v->val.string.val, v->val.string.len, &cl->versions[i],
											 buf, size))
				{
					/* the version points into its text: keep one */
					if (cl->versions[i].pre != NULL && cl->versions[i].pre >= v->val.string.val &&
						cl->versions[i].pre < v->val.string.val + v->val.string.len)
					{
						memcpy(buf, v->val.string.val, v->val.string.len);
						cl->versions[i].pre = buf + (cl->versions[i].pre - v->val.string.val);
					}
					return true;
				}
				return rules_bad(c, "value %d \"%.*s\" is not a version", i + 1,
								 v->val.string.len, v->val.string.val);
			}
			return rules_bad(c, "value %d is %s, expected a version string", i + 1, rules_type_name(v));
		default:
			return true;
	}
}

/* ---------- values as LaunchDarkly reads them ---------- */

/*
 * A version: semantic version 2.0, else with its missing minor and patch
 * numbers taken as 0 ("2" is "2.0.0", "2.1-beta" is "2.1.0-beta"); never
 * with a leading "v".  The pre-release may point into buf.
 */
bool
opsflags_parse_ld_semver(const char *s, int len, Semver *v, char *buf, int buflen)
{
	int			i = 0;
	int			groups = 0;
	int			n;

	if (len > 0 && s[0] == 'v')
		return false;
	if (opsflags_parse_semver(s, len, v))
		return true;
	/* ^\d+(\.\d+)?(\.\d+)? */
	while (i < len && isdigit((unsigned char) s[i]))
		i++;
	if (i == 0)
		return false;
	groups = 1;
	while (groups < 3 && i + 1 < len && s[i] == '.' && isdigit((unsigned char) s[i + 1]))
	{
		i++;
		while (i < len && isdigit((unsigned char) s[i]))
			i++;
		groups++;
	}
	if (groups == 3 || len + 4 > buflen)
		return false;
	memcpy(buf, s, i);
	n = i;
	for (; groups < 3; groups++)
	{
		memcpy(buf + n, ".0", 2);
		n += 2;
	}
	memcpy(buf + n, s + i, len - i);
	n += len - i;
	return opsflags_parse_semver(buf, n, v);
}

/*
 * A timestamp as the SDK takes one: it must start
 * YYYY-MM-DDTHH:MM:SS(.f+)?(Z|[-+]HH(:MM)?), and is then read whole.
 */
bool
opsflags_parse_ld_date(const char *s, int len, double *ms)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	int			i;

	if (len < 20)
		return false;
	for (i = 0; i < 19; i++)
		if (shape[i] == 'd' ? !isdigit((unsigned char) s[i]) : s[i] != shape[i])
			return false;
	if (s[i] == '.')
	{
		if (i + 1 >= len || !isdigit((unsigned char) s[i + 1]))
			return false;
		for (i++; i < len && isdigit((unsigned char) s[i]); i++)
			;
	}
	if (i >= len)
		return false;
	if (s[i] != 'Z')
	{
		if ((s[i] != '+' && s[i] != '-') || i + 2 >= len ||
			!isdigit((unsigned char) s[i + 1]) || !isdigit((unsigned char) s[i + 2]))
			return false;
	}
	return opsflags_parse_date(s, len, ms);
}

/* ---------- reading a context ---------- */

static bool
member(JsonbContainer *obj, const char *name, uint32 len, JsonbValue *out)
{
	if (obj == NULL || !JsonContainerIsObject(obj) ||
		!opsflags_jsonb_member(obj, name, len, out))
		return false;
	return out->type != jbvNull;
}

static inline bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * The context of a kind in the evaluation's context: *found false when it
 * has none.  *obj NULL with *found: the (key, user, role) form's user.
 */
static void
kind_context(EvalContext *ec, const char *kind, uint32 kindlen, JsonbContainer **obj,
			 bool *legacy, bool *found)
{
	JsonbValue	k;
	bool		user = kindlen == 4 && memcmp(kind, "user", 4) == 0;

	*obj = NULL;
	*legacy = false;
	*found = false;
	if (ec->root == NULL)
	{
		/* (key, user, role): a user context {key, role}; none without key */
		*found = user && ec->ctx == NULL && ec->user != NULL;
		*legacy = true;
		return;
	}
	if (!member(ec->root, "kind", 4, &k))
	{
		*legacy = true;
		*found = user;
		*obj = ec->root;
		return;
	}
	if (k.type != jbvString)
		return;
	if (k.val.string.len == 5 && memcmp(k.val.string.val, "multi", 5) == 0)
	{
		JsonbValue	c;

		if (member(ec->root, kind, kindlen, &c) && is_object(&c))
		{
			*obj = c.val.binary.data;
			*found = true;
		}
		return;
	}
	if ((uint32) k.val.string.len == kindlen && memcmp(k.val.string.val, kind, kindlen) == 0)
	{
		*obj = ec->root;
		*found = true;
	}
}

/*
 * What a user context without kind shows at its top level (the SDK makes
 * it a context of these and of its custom attributes).
 */
static bool
legacy_builtin(const char *name, uint32 len)
{
	static const char *const names[] = {"key", "name", "ip", "firstName", "lastName",
	"email", "avatar", "country", "anonymous"};

	for (int i = 0; i < (int) lengthof(names); i++)
		if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
			return true;
	return false;
}

/* A member of a user context without kind: built-in, else custom. */
static bool
legacy_member(JsonbContainer *obj, const char *name, uint32 len, JsonbValue *out)
{
	JsonbValue	custom;

	if (legacy_builtin(name, len) && member(obj, name, len, out))
		return true;
	if (len == 3 && memcmp(name, "key", 3) == 0)
		return false;
	return member(obj, "custom", 6, &custom) && is_object(&custom) &&
		member(custom.val.binary.data, name, len, out);
}

/* The value of a LaunchDarkly attribute; false when missing. */
bool
opsflags_ld_attr_value(const RuleAttr *a, EvalContext *ec, JsonbValue *out)
{
	JsonbContainer *obj;
	bool		legacy;
	bool		found;

	if (a->is_kind)
		return false;			/* a list: see opsflags_ld_kinds_hold */
	kind_context(ec, a->ctx_kind, a->ctx_kindlen, &obj, &legacy, &found);
	if (!found)
		return false;
	if (a->is_anonymous)
	{
		JsonbValue	v;
		bool		b = false;

		if (obj != NULL && (legacy ? legacy_member(obj, "anonymous", 9, &v) :
							member(obj, "anonymous", 9, &v)))
		{
			double		d;

			b = v.type == jbvBool ? v.val.boolean :
				v.type == jbvString ? v.val.string.len > 0 :
				v.type == jbvNumeric ? (opsflags_numeric_double(v.val.numeric, &d) && d != 0 && !isnan(d)) :
				true;
		}
		out->type = jbvBool;
		out->val.boolean = b;
		return true;
	}
	if (obj == NULL)
	{
		/* the (key, user, role) form: {key, role}, of which role is custom */
		if (a->nparts != 1 || a->partlens[0] != 3 || memcmp(a->parts[0], "key", 3) != 0)
			return false;
		out->type = jbvString;
		out->val.string.val = (char *) ec->user;
		out->val.string.len = ec->userlen;
		return true;
	}
	if (legacy ? !legacy_member(obj, a->parts[0], a->partlens[0], out) :
		!member(obj, a->parts[0], a->partlens[0], out))
		return false;
	for (int i = 1; i < a->nparts; i++)
	{
		/* objects only: references do not index arrays */
		if (!is_object(out) ||
			!member(out->val.binary.data, a->parts[i], a->partlens[i], out))
			return false;
	}
	return true;
}

/*
 * LaunchDarkly's bucket of the attribute: a string, or an integral number
 * as JavaScript's String() writes it; else 0.  *had_context: the context
 * has the attribute's kind.
 */
double
opsflags_ld_attr_bucket(const RuleAttr *a, const OpsSha1 *prefix, EvalContext *ec, bool *had_context)
{
	JsonbValue	v;
	double		d;
	char		buf[64];
	int			len;

	if (opsflags_ld_attr_value(a, ec, &v))
	{
		*had_context = true;
		if (v.type == jbvString)
			return opsflags_ld_bucket(prefix, v.val.string.val, v.val.string.len);
		if (v.type == jbvNumeric && opsflags_numeric_double(v.val.numeric, &d) &&
			isfinite(d) && d == floor(d))
		{
			len = opsflags_double_text(d, buf, sizeof(buf));
			return opsflags_ld_bucket(prefix, buf, len);
		}
		return 0;
	}
	{
		JsonbContainer *obj;
		bool		legacy;

		kind_context(ec, a->ctx_kind, a->ctx_kindlen, &obj, &legacy, had_context);
	}
	return 0;
}

/* ---------- clauses ---------- */

static bool
ld_op_holds(const RuleClause *c, JsonbValue *v)
{
	double		d;

	switch (c->op)
	{
		case OP_LT:
		case OP_LTE:
		case OP_GT:
		case OP_GTE:
		case OP_BEFORE:
		case OP_AFTER:
			if (v->type == jbvNumeric)
			{
				if (!opsflags_numeric_double(v->val.numeric, &d))
					return false;
			}
			else if ((c->op != OP_BEFORE && c->op != OP_AFTER) || v->type != jbvString ||
					 !opsflags_parse_ld_date(v->val.string.val, v->val.string.len, &d))
				return false;
			for (int i = 0; i < c->nvalues; i++)
			{
				double		x = c->nums[i];

				if (c->op == OP_LT || c->op == OP_BEFORE ? d < x : c->op == OP_LTE ? d <= x :
					c->op == OP_GT || c->op == OP_AFTER ? d > x : d >= x)
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
				char		buf[300];

				if (v->type != jbvString ||
					!opsflags_parse_ld_semver(v->val.string.val, v->val.string.len, &sv, buf, sizeof(buf)))
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
		default:
			/* in and the string operators: as Unleash's, without case folding */
			return opsflags_op_holds(c, v);
	}
}

/*
 * A LaunchDarkly clause on a present value (before negate): an array holds
 * when an element holds.
 */
bool
opsflags_ld_value_holds(const RuleClause *c, JsonbValue *v)
{
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		int			n = JsonContainerSize(v->val.binary.data);

		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);
			bool		r = e->type != jbvNull && ld_op_holds(c, e);

			pfree(e);
			if (r)
				return true;
		}
		return false;
	}
	return ld_op_holds(c, v);
}

/* The attribute "kind": the clause holds for any of the context's kinds. */
bool
opsflags_ld_kinds_hold(const RuleClause *c, EvalContext *ec)
{
	JsonbValue	v;
	JsonbValue	k;

	v.type = jbvString;
	if (ec->root == NULL || !member(ec->root, "kind", 4, &k))
	{
		if (ec->root == NULL && ec->user == NULL)
			return false;
		v.val.string.val = "user";
		v.val.string.len = 4;
		return ld_op_holds(c, &v);
	}
	if (k.type != jbvString)
		return false;
	if (k.val.string.len == 5 && memcmp(k.val.string.val, "multi", 5) == 0)
	{
		JsonbContainer *obj = ec->root;
		uint32		count = JsonContainerSize(obj);

		for (uint32 i = 0; i < count; i++)
		{
			v.val.string.val = (char *) (obj->children + count * 2) + getJsonbOffset(obj, i);
			v.val.string.len = getJsonbLength(obj, i);
			if (v.val.string.len == 4 && memcmp(v.val.string.val, "kind", 4) == 0)
				continue;
			if (ld_op_holds(c, &v))
				return true;
		}
		return false;
	}
	return ld_op_holds(c, &k);
}
