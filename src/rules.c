/*
 * rules.c
 *	  The targeting-rule compiler (docs/rules.md): turns the rule, serve and
 *	  fallthrough documents of a config (and the rules of a segment) into
 *	  the structures evaluation reads, in a given memory context.  Written
 *	  documents are checked by the same code (the validation triggers of
 *	  rules.sql call check_config_rules/check_segment_rules), which then
 *	  raises; the flag cache compiles leniently: a part that does not compile
 *	  never matches, with one WARNING per load.  Also what a compiled rule
 *	  or serve does at evaluation: match, gate, pick a variation.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_check_config_rules);
PG_FUNCTION_INFO_V1(opsflags_check_segment_rules);

/* Largest total of split weights: the variant hash's range (int). */
#define MAX_TOTAL_WEIGHT PG_INT32_MAX
#define VARIANT_SEED 86028157
#define RULE_ID_MAXLEN 100

/* Where in a document compilation is, for its messages. */
typedef struct Compile
{
	RuleTarget *t;
	MemoryContext cxt;
	const char *rule_id;		/* NULL: rule_no names it */
	int			rule_no;		/* from 1; 0: not in a rule */
	int			clause_no;		/* from 1; 0: not in a clause */
	const char *part;			/* "serve", "rollout", ...: not in a clause */
} Compile;

static const char *const op_names[] = {
	"in", "not_in", "starts_with", "ends_with", "contains", "matches",
	"eq", "lt", "lte", "gt", "gte", "before", "after",
	"semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte",
	"in_cidr", "segment_match", "unsupported"
};

/*
 * A part that does not compile: raise (strict), else warn once per load and
 * let the caller make the part one that never matches.  Returns false.
 */
static bool
bad(Compile *c, const char *fmt,...) pg_attribute_printf(2, 3);

static bool
bad(Compile *c, const char *fmt,...)
{
	char		detail[512];
	char		where[160];
	char		what[256];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(detail, sizeof(detail), fmt, args);
	va_end(args);

	if (c->clause_no > 0)
		snprintf(where, sizeof(where), "Clause %d: ", c->clause_no);
	else if (c->part != NULL && c->rule_no > 0)
		snprintf(where, sizeof(where), "Member \"%s\": ", c->part);
	else
	{
		where[0] = '\0';
		/* the detail is a sentence of its own */
		detail[0] = pg_toupper((unsigned char) detail[0]);
	}

	if (c->rule_no == 0)
		snprintf(what, sizeof(what), "%s", c->part ? c->part : "rules");
	else if (c->rule_id != NULL)
		snprintf(what, sizeof(what), "rule \"%s\"", c->rule_id);
	else
		snprintf(what, sizeof(what), "rule %d", c->rule_no);

	if (c->t->strict)
	{
		if (c->t->flag != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s of feature flag \"%s\" in environment \"%s\"",
							what, c->t->flag, c->t->environment),
					 errdetail("%s%s.", where, detail)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s of segment \"%s\"", what, c->t->segment),
					 errdetail("%s%s.", where, detail)));
	}
	if (!c->t->warned)
	{
		c->t->warned = true;
		if (c->t->flag != NULL)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s of feature flag \"%s\" in environment \"%s\" never matches",
							what, c->t->flag, c->t->environment),
					 errdetail("%s%s.", where, detail)));
		else
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s of segment \"%s\" never matches", what, c->t->segment),
					 errdetail("%s%s.", where, detail)));
	}
	return false;
}

/* ---------- jsonb helpers ---------- */

static bool
member(JsonbContainer *obj, const char *name, JsonbValue *v)
{
	return getKeyJsonValueFromContainer(obj, name, strlen(name), v) != NULL;
}

static inline bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static inline bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static const char *
type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return is_array(v) ? "an array" : "an object";
	}
}

static char *
copy_string(Compile *c, JsonbValue *v)
{
	char	   *s = MemoryContextAlloc(c->cxt, v->val.string.len + 1);

	memcpy(s, v->val.string.val, v->val.string.len);
	s[v->val.string.len] = '\0';
	return s;
}

/*
 * The values of in, not_in, the string operators and in_cidr are trimmed
 * of surrounding white space, and empty ones are left out (as Unleash's
 * SDKs clean them).
 */
static bool
trimmed(JsonbValue *v, const char **s, int *len)
{
	const char *p = v->val.string.val;
	const char *e = p + v->val.string.len;

	while (p < e && isspace((unsigned char) *p))
		p++;
	while (e > p && isspace((unsigned char) e[-1]))
		e--;
	*s = p;
	*len = e - p;
	return *len > 0;
}

/* A whole number of a jsonb value within [lo, hi]. */
static bool
whole_number(JsonbValue *v, int64 lo, int64 hi, int64 *out)
{
	double		d;

	if (v->type != jbvNumeric || !opsflags_numeric_double(v->val.numeric, &d) ||
		d != floor(d) || d < (double) lo || d > (double) hi)
		return false;
	*out = (int64) d;
	return true;
}

/* ---------- attributes ---------- */

static bool
compile_attr(Compile *c, JsonbValue *v, RuleAttr *a, const char *what)
{
	const char *s;
	int			len;

	memset(a, 0, sizeof(RuleAttr));
	if (v->type != jbvString || v->val.string.len == 0)
		return bad(c, "%s must be a non-empty string", what);
	s = v->val.string.val;
	len = v->val.string.len;
	if (len == 3 && memcmp(s, "key", 3) == 0)
	{
		a->kind = ATTR_KEY;
		return true;
	}
	if (len == 7 && memcmp(s, "$random", 7) == 0)
	{
		a->kind = ATTR_RANDOM;
		return true;
	}
	if (s[0] != '/')
	{
		a->kind = ATTR_NAME;
		a->nparts = 1;
		a->parts = MemoryContextAlloc(c->cxt, sizeof(char *));
		a->partlens = MemoryContextAlloc(c->cxt, sizeof(uint32));
		a->parts[0] = copy_string(c, v);
		a->partlens[0] = len;
		a->is_current_time = (len == 11 && memcmp(s, "currentTime", 11) == 0);
		return true;
	}

	/* A JSON pointer: "/a/b", "~1" is "/" and "~0" is "~". */
	{
		int			n = 0;
		int			i;
		char	   *tok = NULL;

		for (i = 0; i < len; i++)
			if (s[i] == '/')
				n++;
		a->kind = ATTR_POINTER;
		a->parts = MemoryContextAlloc(c->cxt, sizeof(char *) * n);
		a->partlens = MemoryContextAlloc(c->cxt, sizeof(uint32) * n);
		for (i = 0; i < len; i++)
		{
			if (s[i] == '/')
			{
				tok = MemoryContextAllocZero(c->cxt, len + 1);
				a->parts[a->nparts] = tok;
				a->partlens[a->nparts++] = 0;
				continue;
			}
			if (s[i] == '~')
			{
				if (i + 1 < len && (s[i + 1] == '0' || s[i + 1] == '1'))
				{
					tok[a->partlens[a->nparts - 1]++] = s[i + 1] == '0' ? '~' : '/';
					i++;
					continue;
				}
				return bad(c, "%s \"%.*s\" is not a valid JSON pointer (\"~\" must be followed by 0 or 1)",
						   what, len, s);
			}
			tok[a->partlens[a->nparts - 1]++] = s[i];
		}
		a->is_current_time = (a->nparts == 1 && a->partlens[0] == 11 &&
							  memcmp(a->parts[0], "currentTime", 11) == 0);
	}
	return true;
}

/* bucket_by: an attribute or a non-empty array of them; absent: ["key"]. */
static bool
compile_bucket_by(Compile *c, JsonbContainer *obj, BucketBy *b)
{
	JsonbValue	v;

	if (!member(obj, "bucket_by", &v))
	{
		b->nattrs = 1;
		b->attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr));
		b->attrs[0].kind = ATTR_KEY;
		return true;
	}
	if (v.type == jbvString)
	{
		b->nattrs = 1;
		b->attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr));
		return compile_attr(c, &v, &b->attrs[0], "bucket_by");
	}
	if (!is_array(&v) || JsonContainerSize(v.val.binary.data) == 0)
		return bad(c, "bucket_by must be an attribute or a non-empty array of attributes");
	b->nattrs = JsonContainerSize(v.val.binary.data);
	b->attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr) * b->nattrs);
	for (int i = 0; i < b->nattrs; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);

		if (!compile_attr(c, e, &b->attrs[i], "bucket_by"))
			return false;
	}
	return true;
}

/* group: a non-empty string, else the target's group; "group:" hashed. */
static bool
compile_group(Compile *c, JsonbContainer *obj, OpsMurmur3 *prefix, uint32 seed)
{
	JsonbValue	v;

	if (!member(obj, "group", &v))
	{
		opsflags_bucket_prefix(prefix, c->t->group, strlen(c->t->group), seed);
		return true;
	}
	if (v.type != jbvString || v.val.string.len == 0)
		return bad(c, "group must be a non-empty string");
	opsflags_bucket_prefix(prefix, v.val.string.val, v.val.string.len, seed);
	return true;
}

/* ---------- clauses ---------- */

static bool
compile_op(Compile *c, JsonbValue *v, RuleOp *op)
{
	if (v->type != jbvString)
		return bad(c, "op must be a string");
	for (int i = 0; i < (int) lengthof(op_names); i++)
	{
		if (strlen(op_names[i]) == (size_t) v->val.string.len &&
			memcmp(op_names[i], v->val.string.val, v->val.string.len) == 0)
		{
			*op = (RuleOp) i;
			return true;
		}
	}
	return bad(c, "unknown operator \"%.*s\"", v->val.string.len, v->val.string.val);
}

/* Free the regular expressions of a cache when it is emptied. */
typedef struct RegexFree
{
	MemoryContextCallback cb;
	regex_t    *regexes;
	int			n;
} RegexFree;

static void
regex_free_callback(void *arg)
{
	RegexFree  *f = (RegexFree *) arg;

	for (int i = 0; i < f->n; i++)
		pg_regfree(&f->regexes[i]);
}

static bool
compile_regex(Compile *c, RuleClause *cl, int i, JsonbValue *v)
{
	pg_wchar   *w = palloc((v->val.string.len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(v->val.string.val, w, v->val.string.len);
	int			rc;

	rc = pg_regcomp(&cl->regexes[i], w, wlen,
					REG_ADVANCED | (cl->ci ? REG_ICASE : 0), DEFAULT_COLLATION_OID);
	pfree(w);
	if (rc != REG_OKAY)
	{
		char		msg[100];

		pg_regerror(rc, &cl->regexes[i], msg, sizeof(msg));
		return bad(c, "invalid regular expression \"%.*s\": %s",
				   v->val.string.len, v->val.string.val, msg);
	}
	return true;
}

/* One member of a clause's values, for its operator. */
static bool
compile_value(Compile *c, RuleClause *cl, int i, JsonbValue *v,
			  const char **strs, uint32 *lens, int *nstrs, const char **nums, uint32 *numlens,
			  int *nnums)
{
	switch (cl->op)
	{
		case OP_IN:
		case OP_NOT_IN:
			if (v->type == jbvString)
			{
				const char *s;
				int			len;

				if (!trimmed(v, &s, &len))
					return true;
				if (cl->ci)
				{
					char	   *low = MemoryContextAlloc(c->cxt, len * 2 + 8);

					strs[*nstrs] = low;
					lens[(*nstrs)++] = opsflags_lower(s, len, low, len * 2 + 8);
				}
				else
				{
					strs[*nstrs] = s;
					lens[(*nstrs)++] = len;
				}
			}
			else if (v->type == jbvNumeric)
			{
				double	   *d = MemoryContextAlloc(c->cxt, sizeof(double));

				if (!opsflags_numeric_double(v->val.numeric, d))
					return bad(c, "value %d is not a usable number", i + 1);
				if (*d == 0)
					*d = 0;		/* -0 is 0 */
				nums[*nnums] = (const char *) d;
				numlens[(*nnums)++] = sizeof(double);
			}
			else if (v->type == jbvBool)
			{
				if (v->val.boolean)
					cl->has_true = true;
				else
					cl->has_false = true;
			}
			else
				return bad(c, "value %d is %s, expected a string, number or boolean", i + 1, type_name(v));
			return true;
		case OP_STARTS_WITH:
		case OP_ENDS_WITH:
		case OP_CONTAINS:
			if (v->type != jbvString)
				return bad(c, "value %d is %s, expected a string", i + 1, type_name(v));
			{
				const char *s;
				int			len;
				int			k = cl->nstrs;

				if (!trimmed(v, &s, &len))
					return true;
				if (cl->ci)
				{
					cl->strs[k] = MemoryContextAlloc(c->cxt, len * 2 + 8);
					cl->lens[k] = opsflags_lower(s, len, cl->strs[k], len * 2 + 8);
				}
				else
				{
					cl->strs[k] = MemoryContextAlloc(c->cxt, len + 1);
					memcpy(cl->strs[k], s, len);
					cl->strs[k][len] = '\0';
					cl->lens[k] = len;
				}
				cl->nstrs++;
			}
			return true;
		case OP_MATCHES:
			if (v->type != jbvString)
				return bad(c, "value %d is %s, expected a regular expression", i + 1, type_name(v));
			return compile_regex(c, cl, i, v);
		case OP_EQ:
		case OP_LT:
		case OP_LTE:
		case OP_GT:
		case OP_GTE:
			if (v->type == jbvNumeric && opsflags_numeric_double(v->val.numeric, &cl->nums[i]))
				return true;
			if (v->type == jbvString &&
				opsflags_parse_js_number(v->val.string.val, v->val.string.len, &cl->nums[i]) &&
				!isnan(cl->nums[i]))
				return true;
			return bad(c, "value %d is not a number", i + 1);
		case OP_BEFORE:
		case OP_AFTER:
			if (v->type == jbvNumeric && opsflags_numeric_double(v->val.numeric, &cl->nums[i]))
				return true;
			if (v->type == jbvString &&
				opsflags_parse_date(v->val.string.val, v->val.string.len, &cl->nums[i]))
				return true;
			return bad(c, "value %d is not an RFC 3339 timestamp or milliseconds since 1970", i + 1);
		case OP_SEMVER_EQ:
		case OP_SEMVER_LT:
		case OP_SEMVER_LTE:
		case OP_SEMVER_GT:
		case OP_SEMVER_GTE:
			if (v->type == jbvString)
			{
				char	   *s = copy_string(c, v);

				if (opsflags_parse_semver(s, v->val.string.len, &cl->versions[i]))
					return true;
				return bad(c, "value %d \"%s\" is not a semantic version", i + 1, s);
			}
			return bad(c, "value %d is %s, expected a semantic version string", i + 1, type_name(v));
		case OP_IN_CIDR:
			{
				const char *s;
				int			len;

				if (v->type == jbvString && trimmed(v, &s, &len) &&
					opsflags_parse_cidr(s, len, &cl->ranges[i]))
					return true;
			}
			if (v->type == jbvString)
				return bad(c, "value %d \"%.*s\" is not an IP address or CIDR range", i + 1,
						   v->val.string.len, v->val.string.val);
			return bad(c, "value %d is %s, expected an IP address or CIDR range", i + 1, type_name(v));
		case OP_SEGMENT_MATCH:
			if (v->type != jbvString || v->val.string.len == 0 ||
				v->val.string.len > OPSFLAGS_FLAG_KEY_MAXLEN)
				return bad(c, "value %d is not a segment key", i + 1);
			if (c->t->segment != NULL)
				return bad(c, "segment_match is not allowed in the rules of a segment");
			cl->segment_keys[i] = copy_string(c, v);
			if (!c->t->strict)
				cl->segments[i] = opsflags_segment_lookup(v->val.string.val, v->val.string.len);
			return true;
		default:
			return true;
	}
}

static bool
compile_clause(Compile *c, JsonbValue *cv, RuleClause *cl)
{
	JsonbContainer *obj;
	JsonbValue	v;
	JsonbValue	values;
	int			n;
	const char **strs;
	uint32	   *lens;
	const char **nums;
	uint32	   *numlens;
	int			nstrs = 0;
	int			nnums = 0;

	if (!is_object(cv))
		return bad(c, "a clause must be an object, not %s", type_name(cv));
	obj = cv->val.binary.data;
	if (!member(obj, "op", &v))
		return bad(c, "member \"op\" is missing");
	if (!compile_op(c, &v, &cl->op))
		return false;
	if (member(obj, "negate", &v))
	{
		if (v.type != jbvBool)
			return bad(c, "negate must be a boolean");
		cl->negate = v.val.boolean;
	}
	if (member(obj, "case_insensitive", &v))
	{
		if (v.type != jbvBool)
			return bad(c, "case_insensitive must be a boolean");
		cl->ci = v.val.boolean;
	}
	/* An operator an import did not know: kept as written, never holds. */
	if (cl->op == OP_UNSUPPORTED)
		return true;
	if (!member(obj, "attribute", &v))
	{
		if (cl->op != OP_SEGMENT_MATCH)
			return bad(c, "member \"attribute\" is missing");
	}
	else if (!compile_attr(c, &v, &cl->attr, "attribute"))
		return false;
	else if (cl->attr.kind == ATTR_RANDOM)
		return bad(c, "attribute \"$random\" is only for bucket_by");
	if (!member(obj, "values", &values))
		return bad(c, "member \"values\" is missing");
	if (!is_array(&values))
		return bad(c, "values must be an array");

	n = JsonContainerSize(values.val.binary.data);
	cl->nvalues = n;
	strs = palloc0(sizeof(char *) * (n + 1));
	lens = palloc0(sizeof(uint32) * (n + 1));
	nums = palloc0(sizeof(char *) * (n + 1));
	numlens = palloc0(sizeof(uint32) * (n + 1));
	cl->strs = MemoryContextAllocZero(c->cxt, sizeof(char *) * (n + 1));
	cl->lens = MemoryContextAllocZero(c->cxt, sizeof(uint32) * (n + 1));
	cl->nums = MemoryContextAllocZero(c->cxt, sizeof(double) * (n + 1));
	switch (cl->op)
	{
		case OP_MATCHES:
			{
				RegexFree  *f = MemoryContextAllocZero(c->cxt, sizeof(RegexFree));

				cl->regexes = MemoryContextAllocZero(c->cxt, sizeof(regex_t) * (n + 1));
				f->regexes = cl->regexes;
				f->cb.func = regex_free_callback;
				f->cb.arg = f;
				MemoryContextRegisterResetCallback(c->cxt, &f->cb);
				for (int i = 0; i < n; i++)
				{
					JsonbValue *e = getIthJsonbValueFromContainer(values.val.binary.data, i);

					if (!compile_value(c, cl, i, e, strs, lens, &nstrs, nums, numlens, &nnums))
						return false;
					f->n = i + 1;
				}
				return true;
			}
		case OP_SEMVER_EQ:
		case OP_SEMVER_LT:
		case OP_SEMVER_LTE:
		case OP_SEMVER_GT:
		case OP_SEMVER_GTE:
			cl->versions = MemoryContextAllocZero(c->cxt, sizeof(Semver) * (n + 1));
			break;
		case OP_IN_CIDR:
			cl->ranges = MemoryContextAllocZero(c->cxt, sizeof(CidrRange) * (n + 1));
			break;
		case OP_SEGMENT_MATCH:
			cl->segments = MemoryContextAllocZero(c->cxt, sizeof(SegmentEntry *) * (n + 1));
			cl->segment_keys = MemoryContextAllocZero(c->cxt, sizeof(char *) * (n + 1));
			break;
		default:
			break;
	}
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(values.val.binary.data, i);

		if (!compile_value(c, cl, i, e, strs, lens, &nstrs, nums, numlens, &nnums))
			return false;
	}
	if (cl->op == OP_IN || cl->op == OP_NOT_IN)
	{
		cl->strings = opsflags_strset_build(strs, lens, nstrs, c->cxt);
		cl->numbers = opsflags_strset_build(nums, numlens, nnums, c->cxt);
	}
	return true;
}

/* ---------- serve ---------- */

static bool
compile_variation(Compile *c, JsonbValue *v, int *out, const char *what)
{
	int64		i;

	if (!whole_number(v, 0, PG_INT32_MAX, &i))
		return bad(c, "%s must be a variation index (a whole number from 0)", what);
	if (i >= c->t->nvariations)
		return bad(c, "variation %d does not exist (the flag has %d variations, numbered from 0)",
				   (int) i, c->t->nvariations);
	*out = (int) i;
	return true;
}

/*
 * A flag that is on never serves false, so that feature_enabled and
 * feature_value agree (as check_variations says of on variations).
 */
static bool
not_false(Compile *c, int variation)
{
	JsonbValue *v;

	if (c->t->variations == NULL)
		return true;
	v = getIthJsonbValueFromContainer(&c->t->variations->root, variation);
	if (v != NULL && v->type == jbvBool && !v->val.boolean)
		return bad(c, "variation %d is false, which a flag that is on must not serve (serve {\"off\": true} instead)",
				   variation);
	return true;
}

static bool
compile_overrides(Compile *c, RuleServe *s, JsonbValue *ov)
{
	if (!is_array(ov))
		return bad(c, "overrides must be an array");
	s->noverrides = JsonContainerSize(ov->val.binary.data);
	s->overrides = MemoryContextAllocZero(c->cxt, sizeof(SplitOverride) * (s->noverrides + 1));
	for (int i = 0; i < s->noverrides; i++)
	{
		JsonbValue *o = getIthJsonbValueFromContainer(ov->val.binary.data, i);
		SplitOverride *so = &s->overrides[i];
		JsonbValue	v;
		int			n;
		const char **strs;
		uint32	   *lens;

		if (!is_object(o))
			return bad(c, "override %d must be an object", i + 1);
		if (!member(o->val.binary.data, "attribute", &v) ||
			!compile_attr(c, &v, &so->attr, "the attribute of an override"))
			return bad(c, "override %d needs an attribute", i + 1);
		if (!member(o->val.binary.data, "variation", &v))
			return bad(c, "override %d needs a variation", i + 1);
		if (!compile_variation(c, &v, &so->variation, "the variation of an override") ||
			!not_false(c, so->variation))
			return false;
		if (!member(o->val.binary.data, "values", &v) || !is_array(&v))
			return bad(c, "override %d needs an array of values", i + 1);
		n = JsonContainerSize(v.val.binary.data);
		strs = palloc0(sizeof(char *) * (n + 1));
		lens = palloc0(sizeof(uint32) * (n + 1));
		for (int j = 0; j < n; j++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, j);
			char		buf[64];

			if (e->type == jbvString)
			{
				strs[j] = copy_string(c, e);
				lens[j] = e->val.string.len;
			}
			else if (e->type == jbvNumeric)
			{
				double		d;

				if (!opsflags_numeric_double(e->val.numeric, &d))
					return bad(c, "override %d has a value that is not a usable number", i + 1);
				lens[j] = opsflags_double_text(d, buf, sizeof(buf));
				strs[j] = MemoryContextStrdup(c->cxt, buf);
			}
			else if (e->type == jbvBool)
			{
				strs[j] = e->val.boolean ? "true" : "false";
				lens[j] = strlen(strs[j]);
			}
			else
				return bad(c, "override %d has a value that is %s, expected a string, number or boolean",
						   i + 1, type_name(e));
		}
		so->values = opsflags_strset_build(strs, lens, n, c->cxt);
	}
	return true;
}

static bool
compile_split(Compile *c, RuleServe *s, JsonbContainer *obj, JsonbValue *split)
{
	int64		total = 0;
	JsonbValue	v;

	if (!is_array(split) || JsonContainerSize(split->val.binary.data) == 0)
		return bad(c, "split must be a non-empty array of {\"variation\", \"weight\"}");
	s->kind = SERVE_SPLIT;
	s->nweights = JsonContainerSize(split->val.binary.data);
	s->cumulative = MemoryContextAlloc(c->cxt, sizeof(int64) * s->nweights);
	s->variations = MemoryContextAlloc(c->cxt, sizeof(int) * s->nweights);
	s->variation = -1;
	for (int i = 0; i < s->nweights; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(split->val.binary.data, i);
		int64		w;

		if (!is_object(e) || !member(e->val.binary.data, "variation", &v))
			return bad(c, "split entry %d must be an object with a variation and a weight", i + 1);
		if (!compile_variation(c, &v, &s->variations[i], "the variation of a split entry"))
			return false;
		if (!member(e->val.binary.data, "weight", &v) || !whole_number(&v, 0, MAX_TOTAL_WEIGHT, &w))
			return bad(c, "split entry %d needs a weight, a whole number from 0", i + 1);
		if (w > 0 && !not_false(c, s->variations[i]))
			return false;
		total += w;
		if (total > MAX_TOTAL_WEIGHT)
			return bad(c, "the weights of a split total more than %d", MAX_TOTAL_WEIGHT);
		s->cumulative[i] = total;
		if (w > 0 && s->variation < 0)
			s->variation = s->variations[i];
	}
	if (total == 0)
		return bad(c, "the weights of a split total 0");
	if (!compile_bucket_by(c, obj, &s->bucket_by) ||
		!compile_group(c, obj, &s->prefix, VARIANT_SEED))
		return false;
	if (member(obj, "overrides", &v) && !compile_overrides(c, s, &v))
		return false;
	return true;
}

static RuleServe *
compile_serve(Compile *c, JsonbValue *sv)
{
	RuleServe  *s = MemoryContextAllocZero(c->cxt, sizeof(RuleServe));
	JsonbContainer *obj;
	JsonbValue	v;
	int			kinds = 0;

	if (!is_object(sv))
		return bad(c, "serve must be an object, not %s", type_name(sv)) ? NULL : NULL;
	obj = sv->val.binary.data;
	if (member(obj, "off", &v))
	{
		kinds++;
		if (v.type != jbvBool || !v.val.boolean)
			return bad(c, "off must be true") ? NULL : NULL;
		s->kind = SERVE_OFF;
	}
	if (member(obj, "variation", &v))
	{
		kinds++;
		s->kind = SERVE_VARIATION;
		if (!compile_variation(c, &v, &s->variation, "variation") || !not_false(c, s->variation))
			return NULL;
	}
	if (member(obj, "split", &v))
	{
		kinds++;
		if (!compile_split(c, s, obj, &v))
			return NULL;
	}
	if (kinds != 1)
		return bad(c, "serve must have exactly one of \"variation\", \"split\" and \"off\"") ? NULL : NULL;
	return s;
}

/*
 * A serve or fallthrough document (NULL: none).  what names it in messages.
 * A lenient compile of a bad one gives NULL too (the caller's default).
 */
RuleServe *
opsflags_serve_compile(Jsonb *serve, const char *what, RuleTarget *t, MemoryContext cxt)
{
	Compile		c = {t, cxt, NULL, 0, 0, what};
	JsonbValue	v;

	if (serve == NULL)
		return NULL;
	v.type = jbvBinary;
	v.val.binary.data = &serve->root;
	v.val.binary.len = VARSIZE(serve) - VARHDRSZ;
	if (JB_ROOT_IS_SCALAR(serve))
	{
		JsonbValue *s = getIthJsonbValueFromContainer(&serve->root, 0);

		return bad(&c, "must be an object, not %s", type_name(s)) ? NULL : NULL;
	}
	return compile_serve(&c, &v);
}

/*
 * The config's serve when it has none: the on variation, or the split of
 * variation_weights by key (as before rules).  Weights that are not usable
 * leave the on variation, with one WARNING per load.
 */
RuleServe *
opsflags_serve_default(int on_variation, Jsonb *weights, RuleTarget *t, MemoryContext cxt)
{
	RuleServe  *s = MemoryContextAllocZero(cxt, sizeof(RuleServe));
	int			n;
	int64		total = 0;
	bool		ok = true;

	s->kind = SERVE_VARIATION;
	s->variation = on_variation;
	if (weights == NULL || !JB_ROOT_IS_ARRAY(weights) || JB_ROOT_IS_SCALAR(weights) ||
		(n = JB_ROOT_COUNT(weights)) == 0 || n != t->nvariations)
		return s;
	s->cumulative = MemoryContextAlloc(cxt, sizeof(int64) * n);
	s->variations = MemoryContextAlloc(cxt, sizeof(int) * n);
	for (int i = 0; i < n && ok; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&weights->root, i);
		double		w;

		/* rounded, as numeric to int has always done here */
		ok = e->type == jbvNumeric && opsflags_numeric_double(e->val.numeric, &w) &&
			(w = round(w)) >= 0 && w <= MAX_TOTAL_WEIGHT &&
			(total += (int64) w) <= MAX_TOTAL_WEIGHT;
		s->cumulative[i] = total;
		s->variations[i] = i;
	}
	if (ok && total > 0)
	{
		s->kind = SERVE_SPLIT;
		s->nweights = n;
		s->bucket_by.nattrs = 1;
		s->bucket_by.attrs = MemoryContextAllocZero(cxt, sizeof(RuleAttr));
		s->bucket_by.attrs[0].kind = ATTR_KEY;
		opsflags_bucket_prefix(&s->prefix, t->group, strlen(t->group), VARIANT_SEED);
	}
	else
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("variation weights of feature flag \"%s\" in environment \"%s\" are not usable, serving its on variation",
						t->flag, t->environment),
				 errdetail("Weights are whole numbers from 0 whose total is between 1 and %d.",
						   MAX_TOTAL_WEIGHT)));
	return s;
}

/* ---------- rules ---------- */

static bool
valid_rule_id(const char *s, int len)
{
	if (len < 1 || len > RULE_ID_MAXLEN)
		return false;
	for (int i = 0; i < len; i++)
		if (!(isalnum((unsigned char) s[i]) || s[i] == '.' || s[i] == '_' ||
			  s[i] == ':' || s[i] == '-'))
			return false;
	return true;
}

static bool
compile_rule(Compile *c, JsonbValue *rv, Rule *r, char **ids, int nids)
{
	JsonbContainer *obj;
	JsonbValue	v;

	if (!is_object(rv))
		return bad(c, "a rule must be an object, not %s", type_name(rv));
	obj = rv->val.binary.data;
	if (!member(obj, "id", &v))
		return bad(c, "member \"id\" is missing");
	if (v.type != jbvString || !valid_rule_id(v.val.string.val, v.val.string.len))
		return bad(c, "id must be 1 to %d characters A-Z a-z 0-9 . _ : -", RULE_ID_MAXLEN);
	r->id = copy_string(c, &v);
	c->rule_id = r->id;
	for (int i = 0; i < nids; i++)
		if (strcmp(ids[i], r->id) == 0)
			return bad(c, "another rule has the same id");

	if (member(obj, "clauses", &v))
	{
		if (!is_array(&v))
			return bad(c, "clauses must be an array");
		r->nclauses = JsonContainerSize(v.val.binary.data);
		r->clauses = MemoryContextAllocZero(c->cxt, sizeof(RuleClause) * (r->nclauses + 1));
		for (int i = 0; i < r->nclauses; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);
			bool		ok;

			c->clause_no = i + 1;
			ok = compile_clause(c, e, &r->clauses[i]);
			c->clause_no = 0;
			if (!ok)
			{
				r->clauses[i].op = OP_NEVER;
				if (c->t->strict)
					return false;
			}
		}
	}
	if (member(obj, "segments", &v))
	{
		c->part = "segments";
		if (!is_array(&v))
			return bad(c, "segments must be an array of segment keys");
		if (c->t->segment != NULL)
			return bad(c, "the rules of a segment cannot name segments");
		r->nsegments = JsonContainerSize(v.val.binary.data);
		r->segments = MemoryContextAllocZero(c->cxt, sizeof(SegmentEntry *) * (r->nsegments + 1));
		r->segment_keys = MemoryContextAllocZero(c->cxt, sizeof(char *) * (r->nsegments + 1));
		for (int i = 0; i < r->nsegments; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);

			if (e->type != jbvString || e->val.string.len == 0 ||
				e->val.string.len > OPSFLAGS_FLAG_KEY_MAXLEN)
				return bad(c, "segments must be an array of segment keys");
			r->segment_keys[i] = copy_string(c, e);
			if (!c->t->strict)
				r->segments[i] = opsflags_segment_lookup(e->val.string.val, e->val.string.len);
		}
		c->part = NULL;
	}
	if (member(obj, "rollout", &v))
	{
		int64		p;
		JsonbValue	pv;

		c->part = "rollout";
		if (!is_object(&v))
			return bad(c, "rollout must be an object");
		r->gate = MemoryContextAllocZero(c->cxt, sizeof(RuleGate));
		if (!member(v.val.binary.data, "percentage", &pv) || !whole_number(&pv, 0, 100, &p))
			return bad(c, "percentage must be a whole number from 0 to 100");
		r->gate->percentage = (int) p;
		if (!compile_bucket_by(c, v.val.binary.data, &r->gate->bucket_by) ||
			!compile_group(c, v.val.binary.data, &r->gate->prefix, 0))
			return false;
		c->part = NULL;
	}
	if (member(obj, "serve", &v))
	{
		c->part = "serve";
		if (c->t->segment != NULL)
			return bad(c, "the rules of a segment serve nothing");
		if ((r->serve = compile_serve(c, &v)) == NULL)
			return false;
		c->part = NULL;
	}
	return true;
}

/*
 * A rules document (a jsonb array) compiled in cxt.  Strict: raise on the
 * first error.  Lenient: a rule that does not compile never matches.
 */
RuleSet *
opsflags_rules_compile(Jsonb *rules, RuleTarget *t, MemoryContext cxt)
{
	Compile		c = {t, cxt, NULL, 0, 0, NULL};
	RuleSet    *set;
	char	  **ids;

	if (rules == NULL || JB_ROOT_IS_SCALAR(rules) || !JB_ROOT_IS_ARRAY(rules))
	{
		if (rules != NULL)
			bad(&c, "rules must be a JSON array");
		return NULL;
	}
	if (JB_ROOT_COUNT(rules) == 0)
		return NULL;
	set = MemoryContextAllocZero(cxt, sizeof(RuleSet));
	set->nrules = JB_ROOT_COUNT(rules);
	set->rules = MemoryContextAllocZero(cxt, sizeof(Rule) * set->nrules);
	ids = palloc0(sizeof(char *) * set->nrules);
	for (int i = 0; i < set->nrules; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&rules->root, i);
		Rule	   *r = &set->rules[i];

		c.rule_no = i + 1;
		c.rule_id = NULL;
		c.clause_no = 0;
		c.part = NULL;
		if (!compile_rule(&c, e, r, ids, i))
		{
			/* lenient: a rule that never matches */
			r->nclauses = 1;
			r->clauses = MemoryContextAllocZero(cxt, sizeof(RuleClause));
			r->clauses[0].op = OP_NEVER;
			r->gate = NULL;
			r->serve = NULL;
			r->nsegments = 0;
		}
		ids[i] = r->id ? r->id : "";
	}
	return set;
}

/* ---------- evaluation ---------- */

/* The text bucketed: the first bucket_by attribute present. */
static bool
bucket_value(const BucketBy *b, EvalContext *ec, const char **s, uint32 *len, char *buf, int buflen)
{
	for (int i = 0; i < b->nattrs; i++)
	{
		JsonbValue	v;

		if (b->attrs[i].kind == ATTR_RANDOM)
		{
			if (!ec->have_random)
			{
				snprintf(ec->random, sizeof(ec->random), UINT64_FORMAT,
						 pg_prng_uint64(&pg_global_prng_state));
				ec->have_random = true;
			}
			*s = ec->random;
			*len = strlen(ec->random);
			return true;
		}
		/* a non-empty string, or a number as text */
		if (!opsflags_attr_value(&b->attrs[i], ec, &v) ||
			(v.type != jbvString && v.type != jbvNumeric))
			continue;
		if (opsflags_attr_text(&b->attrs[i], ec, s, len, buf, buflen) && *len > 0)
			return true;
	}
	return false;
}

/* Clauses all hold, segments all contain the context, the gate admits. */
bool
opsflags_rule_matches(const Rule *r, EvalContext *ec)
{
	for (int i = 0; i < r->nclauses; i++)
		if (!opsflags_clause_holds(&r->clauses[i], ec))
			return false;
	for (int i = 0; i < r->nsegments; i++)
		if (r->segments[i] == NULL || !opsflags_segment_contains(r->segments[i], ec))
			return false;
	if (r->gate != NULL)
	{
		const char *s;
		uint32		len;
		char		buf[64];

		if (r->gate->percentage <= 0 ||
			!bucket_value(&r->gate->bucket_by, ec, &s, &len, buf, sizeof(buf)))
			return false;
		return opsflags_bucket_finish(&r->gate->prefix, s, len, 100) <= r->gate->percentage;
	}
	return true;
}

/*
 * The variation a serve picks for the context (-1: the off variation);
 * *bucket is the split's bucket when one was computed.
 */
int
opsflags_serve_variation(const RuleServe *s, EvalContext *ec, int *bucket)
{
	const char *v;
	uint32		len;
	char		buf[64];
	int64		b;

	if (s->kind == SERVE_OFF)
		return -1;
	if (s->kind == SERVE_VARIATION)
		return s->variation;
	for (int i = 0; i < s->noverrides; i++)
	{
		const SplitOverride *o = &s->overrides[i];

		if (opsflags_attr_text(&o->attr, ec, &v, &len, buf, sizeof(buf)) &&
			strset_contains(o->values, v, len))
			return o->variation;
	}
	if (!bucket_value(&s->bucket_by, ec, &v, &len, buf, sizeof(buf)))
		return s->variation;
	b = opsflags_bucket_finish(&s->prefix, v, len, (uint32) s->cumulative[s->nweights - 1]);
	(void) bucket;
	for (int i = 0; i < s->nweights; i++)
		if (b <= s->cumulative[i])
			return s->variations[i];
	return s->variation;
}

/* ---------- validation (the triggers of rules.sql) ---------- */

static Jsonb *
arg_jsonb(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : PG_GETARG_JSONB_P(i);
}

/*
 * check_config_rules(flag_key, environment, nvariations, rules, serve,
 * fallthrough, rollout_group): raises 22023 naming what is invalid.
 */
Datum
opsflags_check_config_rules(PG_FUNCTION_ARGS)
{
	RuleTarget	t = {0};
	MemoryContext cxt;
	MemoryContext old;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_VOID();
	t.flag = text_to_cstring(PG_GETARG_TEXT_PP(0));
	t.environment = text_to_cstring(PG_GETARG_TEXT_PP(1));
	t.variations = PG_GETARG_JSONB_P(2);
	t.nvariations = JB_ROOT_IS_ARRAY(t.variations) && !JB_ROOT_IS_SCALAR(t.variations) ?
		JB_ROOT_COUNT(t.variations) : 0;
	t.group = PG_ARGISNULL(6) ? t.flag : text_to_cstring(PG_GETARG_TEXT_PP(6));
	t.strict = true;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "opsflags rule check",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	(void) opsflags_rules_compile(arg_jsonb(fcinfo, 3), &t, cxt);
	(void) opsflags_serve_compile(arg_jsonb(fcinfo, 4), "serve", &t, cxt);
	(void) opsflags_serve_compile(arg_jsonb(fcinfo, 5), "fallthrough", &t, cxt);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}

/* check_segment_rules(segment_key, rules) */
Datum
opsflags_check_segment_rules(PG_FUNCTION_ARGS)
{
	RuleTarget	t = {0};
	MemoryContext cxt;
	MemoryContext old;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	t.segment = text_to_cstring(PG_GETARG_TEXT_PP(0));
	t.group = t.segment;
	t.strict = true;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "opsflags rule check",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	(void) opsflags_rules_compile(arg_jsonb(fcinfo, 1), &t, cxt);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}
