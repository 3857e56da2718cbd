/*
 * rules_clauses.c
 *	  Compiling a rule's clauses (docs/rules.md): the operator, its options
 *	  and its values, checked for the operator and prepared so that
 *	  evaluation (rules_ops.c) compares without parsing or allocating: hash
 *	  sets, lower-cased strings, regular expressions compiled once, numbers,
 *	  dates, versions and address ranges parsed.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

static const char *const op_names[] = {
	"in", "not_in", "starts_with", "ends_with", "contains", "matches",
	"eq", "lt", "lte", "gt", "gte", "before", "after",
	"semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte",
	"in_cidr", "segment_match", "unsupported"
};

/* ---------- clauses ---------- */

static bool
compile_op(RuleCompile *c, JsonbValue *v, RuleOp *op)
{
	if (v->type != jbvString)
		return rules_bad(c, "op must be a string");
	for (int i = 0; i < (int) lengthof(op_names); i++)
	{
		if (strlen(op_names[i]) == (size_t) v->val.string.len &&
			memcmp(op_names[i], v->val.string.val, v->val.string.len) == 0)
		{
			*op = (RuleOp) i;
			return true;
		}
	}
	return rules_bad(c, "unknown operator \"%.*s\"", v->val.string.len, v->val.string.val);
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
compile_regex(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v)
{
	pg_wchar   *w = palloc((v->val.string.len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(v->val.string.val, w, v->val.string.len);
	int			rc;
	MemoryContext old;

	pg_wchar   *prefix;
	size_t		prefixlen;

	/*
	 * From PostgreSQL 16 on the regex library allocates in the current
	 * context: make that the compiled rules' own, not the loader's SPI
	 * context, which is gone when the load returns.
	 */
	old = MemoryContextSwitchTo(c->cxt);
	rc = pg_regcomp(&cl->regexes[i], w, wlen,
					REG_ADVANCED | (cl->ci ? REG_ICASE : 0), DEFAULT_COLLATION_OID);
	MemoryContextSwitchTo(old);
	pfree(w);
#ifdef REG_CANCEL				/* before PostgreSQL 16 */
	if (rc == REG_CANCEL)
		CHECK_FOR_INTERRUPTS();
#endif
	if (rc == REG_ESPACE)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory compiling a regular expression")));
	if (rc != REG_OKAY)
	{
		char		msg[100];

		pg_regerror(rc, &cl->regexes[i], msg, sizeof(msg));
		return rules_bad(c, "invalid regular expression \"%.*s\": %s",
				   v->val.string.len, v->val.string.val, msg);
	}

	/*
	 * The fixed prefix of an anchored expression (as the planner finds it
	 * for an index): a value without it is refused without running the
	 * expression.
	 */
	old = MemoryContextSwitchTo(c->cxt);
	rc = pg_regprefix(&cl->regexes[i], &prefix, &prefixlen);
	MemoryContextSwitchTo(old);
	if ((rc == REG_PREFIX || rc == REG_EXACT) && prefixlen > 0)
	{
		cl->prefixes[i] = MemoryContextAlloc(c->cxt, prefixlen * MAX_MULTIBYTE_CHAR_LEN + 1);
		cl->prefixlens[i] = pg_wchar2mb_with_len(prefix, cl->prefixes[i], prefixlen);
	}
	/* the regex library allocates with malloc before PostgreSQL 16 */
	if ((rc == REG_PREFIX || rc == REG_EXACT) && prefix != NULL)
#if PG_VERSION_NUM >= 160000
		pfree(prefix);
#else
		free(prefix);
#endif
	return true;
}

/*
 * A number or boolean member of an in / not_in list, into the clause's
 * number set or its flags (both clause semantics share them).
 */
bool
rules_in_scalar(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v,
				const char **nums, uint32 *numlens, int *nnums)
{
	if (v->type == jbvNumeric)
	{
		double	   *d = MemoryContextAlloc(c->cxt, sizeof(double));

		if (!opsflags_numeric_double(v->val.numeric, d))
			return rules_bad(c, "value %d is not a usable number", i + 1);
		if (*d == 0)
			*d = 0;				/* -0 is 0 */
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
	return true;
}

/* One member of a clause's values, for its operator. */
static bool
compile_value(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v,
			  const char **strs, uint32 *lens, int *nstrs, const char **nums, uint32 *numlens,
			  int *nnums)
{
	if (cl->ld && cl->op != OP_MATCHES && cl->op != OP_SEGMENT_MATCH)
		return rules_compile_ld_value(c, cl, i, v, strs, lens, nstrs, nums, numlens, nnums);
	switch (cl->op)
	{
		case OP_IN:
		case OP_NOT_IN:
			if (v->type == jbvString)
			{
				const char *s;
				int			len;

				if (!rules_trimmed(v, &s, &len))
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
			else if (v->type == jbvNumeric || v->type == jbvBool)
				return rules_in_scalar(c, cl, i, v, nums, numlens, nnums);
			else
				return rules_bad(c, "value %d is %s, expected a string, number or boolean", i + 1, rules_type_name(v));
			return true;
		case OP_STARTS_WITH:
		case OP_ENDS_WITH:
		case OP_CONTAINS:
			if (v->type != jbvString)
				return rules_bad(c, "value %d is %s, expected a string", i + 1, rules_type_name(v));
			{
				const char *s;
				int			len;
				int			k = cl->nstrs;

				if (!rules_trimmed(v, &s, &len))
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
				return rules_bad(c, "value %d is %s, expected a regular expression", i + 1, rules_type_name(v));
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
			return rules_bad(c, "value %d is not a number", i + 1);
		case OP_BEFORE:
		case OP_AFTER:
			if (v->type == jbvNumeric && opsflags_numeric_double(v->val.numeric, &cl->nums[i]))
				return true;
			if (v->type == jbvString &&
				opsflags_parse_date(v->val.string.val, v->val.string.len, &cl->nums[i]))
				return true;
			return rules_bad(c, "value %d is not an RFC 3339 timestamp or milliseconds since 1970", i + 1);
		case OP_SEMVER_EQ:
		case OP_SEMVER_LT:
		case OP_SEMVER_LTE:
		case OP_SEMVER_GT:
		case OP_SEMVER_GTE:
			if (v->type == jbvString)
			{
				char	   *s = rules_copy_string(c, v);

				if (opsflags_parse_semver(s, v->val.string.len, &cl->versions[i]))
					return true;
				return rules_bad(c, "value %d \"%s\" is not a semantic version", i + 1, s);
			}
			return rules_bad(c, "value %d is %s, expected a semantic version string", i + 1, rules_type_name(v));
		case OP_IN_CIDR:
			{
				const char *s;
				int			len;

				if (v->type == jbvString && !rules_trimmed(v, &s, &len))
					return true;	/* blank: left out (its zeroed range never
									 * matches) */
				if (v->type == jbvString && opsflags_parse_cidr(s, len, &cl->ranges[i]))
					return true;
			}
			if (v->type == jbvString)
				return rules_bad(c, "value %d \"%.*s\" is not an IP address or CIDR range", i + 1,
						   v->val.string.len, v->val.string.val);
			return rules_bad(c, "value %d is %s, expected an IP address or CIDR range", i + 1, rules_type_name(v));
		case OP_SEGMENT_MATCH:
			if (v->type != jbvString || v->val.string.len == 0 ||
				v->val.string.len > OPSFLAGS_FLAG_KEY_MAXLEN)
				return rules_bad(c, "value %d is not a segment key", i + 1);
			cl->segment_keys[i] = rules_copy_string(c, v);
			if (!c->t->strict)
				cl->segments[i] = opsflags_segment_lookup(v->val.string.val, v->val.string.len);
			return true;
		default:
			return true;
	}
}

bool
rules_compile_clause(RuleCompile *c, JsonbValue *cv, RuleClause *cl)
{
	JsonbContainer *obj;
	JsonbValue	v;
	JsonbValue	values;
	JsonbValue	kind;
	int			n;
	const char **strs;
	uint32	   *lens;
	const char **nums;
	uint32	   *numlens;
	int			nstrs = 0;
	int			nnums = 0;

	if (!rules_is_object(cv))
		return rules_bad(c, "a clause must be an object, not %s", rules_type_name(cv));
	obj = cv->val.binary.data;
	if (!rules_member(obj, "op", &v))
		return rules_bad(c, "member \"op\" is missing");
	if (!compile_op(c, &v, &cl->op))
		return false;
	if (rules_member(obj, "negate", &v))
	{
		if (v.type != jbvBool)
			return rules_bad(c, "negate must be a boolean");
		cl->negate = v.val.boolean;
	}
	if (rules_member(obj, "case_insensitive", &v))
	{
		if (v.type != jbvBool)
			return rules_bad(c, "case_insensitive must be a boolean");
		cl->ci = v.val.boolean;
	}
	if (rules_member(obj, "semantics", &v))
	{
		if (v.type == jbvString && v.val.string.len == 12 &&
			memcmp(v.val.string.val, "launchdarkly", 12) == 0)
			cl->ld = true;
		else if (!(v.type == jbvString && v.val.string.len == 7 &&
				   memcmp(v.val.string.val, "unleash", 7) == 0))
			return rules_bad(c, "semantics must be \"unleash\" or \"launchdarkly\"");
	}
	if (!rules_context_kind(c, obj, &kind))
		return false;
	if (cl->ld)
	{
		if (cl->ci)
			return rules_bad(c, "case_insensitive is not for clauses with LaunchDarkly's semantics");
		if (cl->op == OP_NOT_IN || cl->op == OP_EQ || cl->op == OP_IN_CIDR)
			return rules_bad(c, "operator \"%s\" is not for clauses with LaunchDarkly's semantics",
							 op_names[cl->op]);
	}
	else if (kind.type != jbvNull)
		return rules_bad(c, "context_kind is for clauses with LaunchDarkly's semantics");
	/* An operator an import did not know: kept as written, never holds. */
	if (cl->op == OP_UNSUPPORTED)
		return true;
	if (!rules_member(obj, "attribute", &v))
	{
		if (cl->op != OP_SEGMENT_MATCH)
			return rules_bad(c, "member \"attribute\" is missing");
	}
	else if (cl->ld ? !rules_compile_ld_attr(c, &v, &cl->attr, "attribute", &kind) :
			 !rules_compile_attr(c, &v, &cl->attr, "attribute"))
		return false;
	else if (cl->attr.kind == ATTR_RANDOM)
		return rules_bad(c, "attribute \"$random\" is only for bucket_by");
	if (!rules_member(obj, "values", &values))
		return rules_bad(c, "member \"values\" is missing");
	if (!rules_is_array(&values))
		return rules_bad(c, "values must be an array");

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
				cl->prefixes = MemoryContextAllocZero(c->cxt, sizeof(char *) * (n + 1));
				cl->prefixlens = MemoryContextAllocZero(c->cxt, sizeof(uint32) * (n + 1));
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

