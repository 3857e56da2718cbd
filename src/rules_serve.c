/*
 * rules_serve.c
 *	  What targeting rules serve (docs/rules.md): compiling serve and
 *	  fallthrough documents (a variation, a weighted split with overrides,
 *	  off) and the config's default serve, and at evaluation whether a rule
 *	  matches and admits the context (its gate) and which variation a serve
 *	  picks, with the Unleash buckets of hashing.c.
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

/* ---------- serve ---------- */

static bool
compile_variation(RuleCompile *c, JsonbValue *v, int *out, const char *what)
{
	int64		i;

	if (!rules_whole_number(v, 0, PG_INT32_MAX, &i))
		return rules_bad(c, "%s must be a variation index (a whole number from 0)", what);
	if (i >= c->t->nvariations)
		return rules_bad(c, "variation %d does not exist (the flag has %d variations, numbered from 0)",
				   (int) i, c->t->nvariations);
	*out = (int) i;
	return true;
}

static bool
compile_overrides(RuleCompile *c, RuleServe *s, JsonbValue *ov)
{
	if (!rules_is_array(ov))
		return rules_bad(c, "overrides must be an array");
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

		if (!rules_is_object(o))
			return rules_bad(c, "override %d must be an object", i + 1);
		if (!rules_member(o->val.binary.data, "attribute", &v) ||
			!rules_compile_attr(c, &v, &so->attr, "the attribute of an override"))
			return rules_bad(c, "override %d needs an attribute", i + 1);
		if (!rules_member(o->val.binary.data, "variation", &v))
			return rules_bad(c, "override %d needs a variation", i + 1);
		if (!compile_variation(c, &v, &so->variation, "the variation of an override"))
			return false;
		if (!rules_member(o->val.binary.data, "values", &v) || !rules_is_array(&v))
			return rules_bad(c, "override %d needs an array of values", i + 1);
		n = JsonContainerSize(v.val.binary.data);
		strs = palloc0(sizeof(char *) * (n + 1));
		lens = palloc0(sizeof(uint32) * (n + 1));
		for (int j = 0; j < n; j++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, j);
			char		buf[64];

			if (e->type == jbvString)
			{
				strs[j] = rules_copy_string(c, e);
				lens[j] = e->val.string.len;
			}
			else if (e->type == jbvNumeric)
			{
				double		d;

				if (!opsflags_numeric_double(e->val.numeric, &d))
					return rules_bad(c, "override %d has a value that is not a usable number", i + 1);
				lens[j] = opsflags_double_text(d, buf, sizeof(buf));
				strs[j] = MemoryContextStrdup(c->cxt, buf);
			}
			else if (e->type == jbvBool)
			{
				strs[j] = e->val.boolean ? "true" : "false";
				lens[j] = strlen(strs[j]);
			}
			else
				return rules_bad(c, "override %d has a value that is %s, expected a string, number or boolean",
						   i + 1, rules_type_name(e));
		}
		so->values = opsflags_strset_build(strs, lens, n, c->cxt);
	}
	return true;
}

/*
 * A split with LaunchDarkly bucketing: weights out of 100000, the last
 * entry when they fall short; bucket_by, context_kind, seed, kind
 * ("rollout" or "experiment") and each entry's untracked.
 */
static bool
compile_ld_split(RuleCompile *c, RuleServe *s, JsonbContainer *obj, JsonbValue *split)
{
	JsonbValue	v;
	JsonbValue	kind;
	double		sum = 0;
	char		seedbuf[32];
	const char *seed = NULL;

	s->ld = true;
	s->ld_sums = MemoryContextAlloc(c->cxt, sizeof(double) * s->nweights);
	s->untracked = MemoryContextAllocZero(c->cxt, sizeof(bool) * s->nweights);
	if (rules_member(obj, "group", &v) || rules_member(obj, "overrides", &v))
		return rules_bad(c, "group and overrides are for Unleash bucketing");
	for (int i = 0; i < s->nweights; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(split->val.binary.data, i);
		int64		w;

		if (!rules_is_object(e) || !rules_member(e->val.binary.data, "variation", &v))
			return rules_bad(c, "split entry %d must be an object with a variation and a weight", i + 1);
		if (!compile_variation(c, &v, &s->variations[i], "the variation of a split entry"))
			return false;
		if (!rules_member(e->val.binary.data, "weight", &v) || !rules_whole_number(&v, 0, 100000, &w))
			return rules_bad(c, "split entry %d needs a weight, a whole number from 0 to 100000", i + 1);
		if (rules_member(e->val.binary.data, "untracked", &v))
		{
			if (v.type != jbvBool)
				return rules_bad(c, "untracked of split entry %d must be a boolean", i + 1);
			s->untracked[i] = v.val.boolean;
		}
		/* as the SDK adds them up */
		sum += (double) w / 1e5;
		s->ld_sums[i] = sum;
		s->cumulative[i] = w;
	}
	s->variation = s->variations[s->nweights - 1];
	if (rules_member(obj, "kind", &v))
	{
		if (v.type == jbvString && v.val.string.len == 10 &&
			memcmp(v.val.string.val, "experiment", 10) == 0)
			s->experiment = true;
		else if (!(v.type == jbvString && v.val.string.len == 7 &&
				   memcmp(v.val.string.val, "rollout", 7) == 0))
			return rules_bad(c, "kind must be \"rollout\" or \"experiment\"");
	}
	if (rules_member(obj, "seed", &v))
	{
		int64		n;

		if (!rules_whole_number(&v, -9007199254740992LL, 9007199254740992LL, &n))
			return rules_bad(c, "seed must be a whole number");
		if (n != 0)
		{
			snprintf(seedbuf, sizeof(seedbuf), INT64_FORMAT, n);
			seed = seedbuf;
		}
	}
	if (!rules_context_kind(c, obj, &kind))
		return false;
	if (s->experiment)
	{
		/* an experiment buckets by key */
		JsonbValue	key;

		key.type = jbvString;
		key.val.string.val = "key";
		key.val.string.len = 3;
		s->bucket_by.nattrs = 1;
		s->bucket_by.attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr));
		if (!rules_compile_ld_attr(c, &key, &s->bucket_by.attrs[0], "bucket_by", &kind))
			return false;
		if (rules_member(obj, "bucket_by", &v) && v.type != jbvString)
			return rules_bad(c, "bucket_by must be one attribute with LaunchDarkly bucketing");
	}
	else if (!rules_compile_ld_bucket_by(c, obj, &s->bucket_by, &kind))
		return false;
	rules_ld_prefix(c, &s->ld_prefix, seed);
	return true;
}

static bool
compile_split(RuleCompile *c, RuleServe *s, JsonbContainer *obj, JsonbValue *split)
{
	int64		total = 0;
	JsonbValue	v;

	if (!rules_is_array(split) || JsonContainerSize(split->val.binary.data) == 0)
		return rules_bad(c, "split must be a non-empty array of {\"variation\", \"weight\"}");
	s->kind = SERVE_SPLIT;
	s->nweights = JsonContainerSize(split->val.binary.data);
	s->cumulative = MemoryContextAlloc(c->cxt, sizeof(int64) * s->nweights);
	s->variations = MemoryContextAlloc(c->cxt, sizeof(int) * s->nweights);
	s->variation = -1;
	if (c->t->ld_bucketing)
		return compile_ld_split(c, s, obj, split);
	for (int i = 0; i < s->nweights; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(split->val.binary.data, i);
		int64		w;

		if (!rules_is_object(e) || !rules_member(e->val.binary.data, "variation", &v))
			return rules_bad(c, "split entry %d must be an object with a variation and a weight", i + 1);
		if (!compile_variation(c, &v, &s->variations[i], "the variation of a split entry"))
			return false;
		if (!rules_member(e->val.binary.data, "weight", &v) || !rules_whole_number(&v, 0, MAX_TOTAL_WEIGHT, &w))
			return rules_bad(c, "split entry %d needs a weight, a whole number from 0", i + 1);
		total += w;
		if (total > MAX_TOTAL_WEIGHT)
			return rules_bad(c, "the weights of a split total more than %d", MAX_TOTAL_WEIGHT);
		s->cumulative[i] = total;
		if (w > 0 && s->variation < 0)
			s->variation = s->variations[i];
	}
	if (total == 0)
		return rules_bad(c, "the weights of a split total 0");
	if (!rules_compile_bucket_by(c, obj, &s->bucket_by) ||
		!rules_compile_group(c, obj, &s->prefix, VARIANT_SEED))
		return false;
	if (rules_member(obj, "overrides", &v) && !compile_overrides(c, s, &v))
		return false;
	return true;
}

RuleServe *
rules_compile_serve(RuleCompile *c, JsonbValue *sv)
{
	RuleServe  *s = MemoryContextAllocZero(c->cxt, sizeof(RuleServe));
	JsonbContainer *obj;
	JsonbValue	v;
	int			kinds = 0;

	if (!rules_is_object(sv))
	{
		(void) rules_bad(c, "serve must be an object, not %s", rules_type_name(sv));
		return NULL;
	}
	obj = sv->val.binary.data;
	if (rules_member(obj, "off", &v))
	{
		kinds++;
		if (v.type != jbvBool || !v.val.boolean)
		{
			(void) rules_bad(c, "off must be true");
			return NULL;
		}
		s->kind = SERVE_OFF;
	}
	if (rules_member(obj, "variation", &v))
	{
		kinds++;
		s->kind = SERVE_VARIATION;
		if (!compile_variation(c, &v, &s->variation, "variation"))
			return NULL;
	}
	if (rules_member(obj, "split", &v))
	{
		kinds++;
		if (!compile_split(c, s, obj, &v))
			return NULL;
	}
	if (kinds != 1)
	{
		(void) rules_bad(c, "serve must have exactly one of \"variation\", \"split\" and \"off\"");
		return NULL;
	}
	return s;
}

/*
 * A serve or fallthrough document (NULL: none).  what names it in messages.
 * A lenient compile of a bad one gives NULL too (the caller's default).
 */
RuleServe *
opsflags_serve_compile(Jsonb *serve, const char *what, RuleTarget *t, MemoryContext cxt)
{
	RuleCompile c = {.t = t, .cxt = cxt, .part = what};
	JsonbValue	v;

	if (serve == NULL)
		return NULL;
	v.type = jbvBinary;
	v.val.binary.data = &serve->root;
	v.val.binary.len = VARSIZE(serve) - VARHDRSZ;
	if (JB_ROOT_IS_SCALAR(serve))
	{
		JsonbValue *s = getIthJsonbValueFromContainer(&serve->root, 0);

		(void) rules_bad(&c, "must be an object, not %s", rules_type_name(s));
		return NULL;
	}
	return rules_compile_serve(&c, &v);
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

/* ---------- evaluation ---------- */

/* The text bucketed: the first bucket_by attribute present. */
static bool
rules_bucket_value(const BucketBy *b, EvalContext *ec, const char **s, uint32 *len, char *buf, int buflen)
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
opsflags_rule_matches(const Rule *r, EvalContext *ec, RuleMemo *memo)
{
	for (int i = 0; i < r->nclauses; i++)
	{
		const RuleClause *c = &r->clauses[i];

		/* decided already in this evaluation: no call */
		if (memo != NULL && c->id >= 0 && memo->clause_state[c->id] != 0)
		{
			if (memo->clause_state[c->id] != 1)
				return false;
			continue;
		}
		if (!opsflags_clause_holds(c, ec, memo))
			return false;
	}
	for (int i = 0; i < r->nsegments; i++)
		if (r->segments[i] == NULL || !opsflags_segment_contains(r->segments[i], ec))
			return false;
	if (r->gate != NULL)
	{
		const char *s;
		uint32		len;
		char		buf[64];

		if (r->gate->ld)
		{
			bool		had;

			return opsflags_ld_attr_bucket(&r->gate->bucket_by.attrs[0], &r->gate->ld_prefix,
										   ec, &had) < r->gate->ld_weight;
		}
		if (r->gate->percentage <= 0 ||
			!rules_bucket_value(&r->gate->bucket_by, ec, &s, &len, buf, sizeof(buf)))
			return false;
		return opsflags_bucket_finish(&r->gate->prefix, s, len, 100) <= r->gate->percentage;
	}
	return true;
}

/*
 * The variation a serve picks for the context (-1: the off variation);
 * *in_experiment (when not NULL): a LaunchDarkly experiment counts it.
 */
int
opsflags_serve_variation(const RuleServe *s, EvalContext *ec, bool *in_experiment)
{
	const char *v;
	uint32		len;
	char		buf[64];
	int64		b;

	if (s->kind == SERVE_OFF)
		return -1;
	if (s->kind == SERVE_VARIATION)
		return s->variation;
	if (s->ld)
	{
		bool		had;
		double		lb = opsflags_ld_attr_bucket(&s->bucket_by.attrs[0], &s->ld_prefix, ec, &had);

		for (int i = 0; i < s->nweights; i++)
		{
			if (lb < s->ld_sums[i])
			{
				if (in_experiment != NULL)
					*in_experiment = s->experiment && had && !s->untracked[i];
				return s->variations[i];
			}
		}
		if (in_experiment != NULL)
			*in_experiment = s->experiment && !s->untracked[s->nweights - 1];
		return s->variations[s->nweights - 1];
	}
	for (int i = 0; i < s->noverrides; i++)
	{
		const SplitOverride *o = &s->overrides[i];

		if (opsflags_attr_text(&o->attr, ec, &v, &len, buf, sizeof(buf)) &&
			strset_contains(o->values, v, len))
			return o->variation;
	}
	if (!rules_bucket_value(&s->bucket_by, ec, &v, &len, buf, sizeof(buf)))
		return s->variation;
	b = opsflags_bucket_finish(&s->prefix, v, len, (uint32) s->cumulative[s->nweights - 1]);
	for (int i = 0; i < s->nweights; i++)
		if (b <= s->cumulative[i])
			return s->variations[i];
	return s->variation;
}

