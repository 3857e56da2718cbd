/*
 * rules.c
 *	  The targeting-rule compiler (docs/rules.md): turns the rule, serve and
 *	  fallthrough documents of a config (and the rules of a segment, which
 *	  may exclude and name other segments) into the structures evaluation
 *	  reads, in a given memory context.  Written
 *	  documents are checked by the same code (the validation triggers of
 *	  rules.sql call check_config_rules/check_segment_rules), which then
 *	  raises; the flag cache compiles leniently: a part that does not compile
 *	  never matches, with one WARNING per load.  Clauses are compiled in
 *	  rules_clauses.c, what a rule serves in rules_serve.c; the parts here
 *	  (messages, attributes, bucketing) are shared with them.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_check_config_rules);
PG_FUNCTION_INFO_V1(opsflags_check_segment_rules);

#define RULE_ID_MAXLEN 100

/*
 * A part that does not compile: raise (strict), else warn once per load and
 * let the caller make the part one that never matches.  Returns false.
 */
bool
rules_bad(RuleCompile *c, const char *fmt,...)
{
	char		detail[512];
	char		where[160];
	char		what[256];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(detail, sizeof(detail), fmt, args);
	va_end(args);
	/* never a character cut in half (the values quoted are the user's) */
	detail[pg_mbcliplen(detail, strlen(detail), strlen(detail))] = '\0';

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
		/* what the load makes of the part (flag_load.c) */
		const char *instead = "never matches";

		if (c->rule_no == 0 && c->part != NULL && strcmp(c->part, "serve") == 0)
			instead = "is ignored, as if there were none";
		else if (c->rule_no == 0 && c->part != NULL && strcmp(c->part, "fallthrough") == 0)
			instead = "is ignored, the flag serves its off variation";
		c->t->warned = true;
		if (c->t->flag != NULL)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s of feature flag \"%s\" in environment \"%s\" %s",
							what, c->t->flag, c->t->environment, instead),
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

bool
rules_member(JsonbContainer *obj, const char *name, JsonbValue *v)
{
	return getKeyJsonValueFromContainer(obj, name, strlen(name), v) != NULL;
}

bool
rules_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

bool
rules_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

const char *
rules_type_name(JsonbValue *v)
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
			return rules_is_array(v) ? "an array" : "an object";
	}
}

char *
rules_copy_string(RuleCompile *c, JsonbValue *v)
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
bool
rules_trimmed(JsonbValue *v, const char **s, int *len)
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
bool
rules_whole_number(JsonbValue *v, int64 lo, int64 hi, int64 *out)
{
	double		d;

	if (v->type != jbvNumeric || !opsflags_numeric_double(v->val.numeric, &d) ||
		d != floor(d) || d < (double) lo || d > (double) hi)
		return false;
	*out = (int64) d;
	return true;
}

/* ---------- attributes ---------- */

bool
rules_compile_attr(RuleCompile *c, JsonbValue *v, RuleAttr *a, const char *what)
{
	const char *s;
	int			len;

	memset(a, 0, sizeof(RuleAttr));
	if (v->type != jbvString || v->val.string.len == 0)
		return rules_bad(c, "%s must be a non-empty string", what);
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
		a->parts[0] = rules_copy_string(c, v);
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
				return rules_bad(c, "%s \"%.*s\" is not a valid JSON pointer (\"~\" must be followed by 0 or 1)",
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
bool
rules_compile_bucket_by(RuleCompile *c, JsonbContainer *obj, BucketBy *b)
{
	JsonbValue	v;

	if (!rules_member(obj, "bucket_by", &v))
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
		return rules_compile_attr(c, &v, &b->attrs[0], "bucket_by");
	}
	if (!rules_is_array(&v) || JsonContainerSize(v.val.binary.data) == 0)
		return rules_bad(c, "bucket_by must be an attribute or a non-empty array of attributes");
	b->nattrs = JsonContainerSize(v.val.binary.data);
	b->attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr) * b->nattrs);
	for (int i = 0; i < b->nattrs; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);

		if (!rules_compile_attr(c, e, &b->attrs[i], "bucket_by"))
			return false;
	}
	return true;
}

/*
 * group: a string (empty too: Unleash buckets a rollout without a groupId in
 * group ""), else the target's group; "group:" hashed.
 */
bool
rules_compile_group(RuleCompile *c, JsonbContainer *obj, OpsMurmur3 *prefix, uint32 seed)
{
	JsonbValue	v;

	if (!rules_member(obj, "group", &v))
	{
		opsflags_bucket_prefix(prefix, c->t->group, strlen(c->t->group), seed);
		return true;
	}
	if (v.type != jbvString)
		return rules_bad(c, "group must be a string");
	opsflags_bucket_prefix(prefix, v.val.string.val, v.val.string.len, seed);
	return true;
}

/* ---------- memo slots ---------- */

static bool
same_attr(const RuleAttr *a, const RuleAttr *b)
{
	if (a->kind != b->kind || a->nparts != b->nparts || a->ld != b->ld)
		return false;
	if (a->ld && (a->ctx_kindlen != b->ctx_kindlen ||
				  memcmp(a->ctx_kind, b->ctx_kind, a->ctx_kindlen) != 0))
		return false;
	for (int i = 0; i < a->nparts; i++)
		if (a->partlens[i] != b->partlens[i] ||
			memcmp(a->parts[i], b->parts[i], a->partlens[i]) != 0)
			return false;
	return true;
}

/*
 * Give a compiled clause its memo slots: the attribute's (the same for
 * every clause naming it) and the clause's own (the same for clauses
 * written alike: their jsonb text is equal).  Past RULE_MEMO_SLOTS, none.
 */
static void
assign_memo_slots(RuleCompile *c, JsonbValue *cv, RuleClause *cl)
{
	char	   *text;
	int			i;

	if (cl->attr.kind == ATTR_NAME || cl->attr.kind == ATTR_POINTER)
	{
		for (i = 0; i < c->nslots; i++)
			if (same_attr(c->slot_attrs[i], &cl->attr))
				break;
		if (i == c->nslots && c->nslots < RULE_MEMO_SLOTS)
			c->slot_attrs[c->nslots++] = &cl->attr;
		if (i < c->nslots)
			cl->slot = i;
	}
	text = JsonbToCString(NULL, cv->val.binary.data, cv->val.binary.len);
	for (i = 0; i < c->nids; i++)
		if (strcmp(c->clause_texts[i], text) == 0)
			break;
	if (i == c->nids && c->nids < RULE_MEMO_SLOTS)
		c->clause_texts[c->nids++] = text;
	if (i < c->nids)
		cl->id = i;
}

/*
 * bucket_by of LaunchDarkly bucketing: one attribute (default "key") read
 * from the context of kind (jbvNull: "user").
 */
bool
rules_compile_ld_bucket_by(RuleCompile *c, JsonbContainer *obj, BucketBy *b, JsonbValue *kind)
{
	JsonbValue	v;

	b->nattrs = 1;
	b->attrs = MemoryContextAllocZero(c->cxt, sizeof(RuleAttr));
	if (!rules_member(obj, "bucket_by", &v))
	{
		v.type = jbvString;
		v.val.string.val = "key";
		v.val.string.len = 3;
	}
	else if (v.type != jbvString)
		return rules_bad(c, "bucket_by must be one attribute with LaunchDarkly bucketing");
	return rules_compile_ld_attr(c, &v, &b->attrs[0], "bucket_by", kind);
}

/* A rollout gate with LaunchDarkly bucketing: {weight, bucket_by, context_kind}. */
static bool
compile_ld_gate(RuleCompile *c, JsonbContainer *obj, RuleGate *g)
{
	JsonbValue	v;
	JsonbValue	kind;
	int64		w;

	if (rules_member(obj, "percentage", &v) || rules_member(obj, "group", &v))
		return rules_bad(c, "percentage and group are for Unleash bucketing; LaunchDarkly's rollout has a weight");
	if (!rules_member(obj, "weight", &v) || !rules_whole_number(&v, 0, 100000, &w))
		return rules_bad(c, "weight must be a whole number from 0 to 100000");
	g->ld = true;
	g->ld_weight = (double) w / 1e5;
	if (!rules_context_kind(c, obj, &kind) ||
		!rules_compile_ld_bucket_by(c, obj, &g->bucket_by, &kind))
		return false;
	rules_ld_prefix(c, &g->ld_prefix, NULL);
	return true;
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
compile_rule(RuleCompile *c, JsonbValue *rv, Rule *r, char **ids, int nids)
{
	JsonbContainer *obj;
	JsonbValue	v;

	if (!rules_is_object(rv))
		return rules_bad(c, "a rule must be an object, not %s", rules_type_name(rv));
	obj = rv->val.binary.data;
	if (!rules_member(obj, "id", &v))
		return rules_bad(c, "member \"id\" is missing");
	if (v.type != jbvString || !valid_rule_id(v.val.string.val, v.val.string.len))
		return rules_bad(c, "id must be 1 to %d characters A-Z a-z 0-9 . _ : -", RULE_ID_MAXLEN);
	r->id = rules_copy_string(c, &v);
	c->rule_id = r->id;
	for (int i = 0; i < nids; i++)
		if (strcmp(ids[i], r->id) == 0)
			return rules_bad(c, "another rule has the same id");

	if (rules_member(obj, "clauses", &v))
	{
		if (!rules_is_array(&v))
			return rules_bad(c, "clauses must be an array");
		r->nclauses = JsonContainerSize(v.val.binary.data);
		r->clauses = MemoryContextAllocZero(c->cxt, sizeof(RuleClause) * (r->nclauses + 1));
		for (int i = 0; i < r->nclauses; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);
			bool		ok;

			c->clause_no = i + 1;
			r->clauses[i].slot = r->clauses[i].id = -1;
			ok = rules_compile_clause(c, e, &r->clauses[i]);
			c->clause_no = 0;
			if (!ok)
			{
				r->clauses[i].op = OP_NEVER;
				r->clauses[i].slot = r->clauses[i].id = -1;
				if (c->t->strict)
					return false;
			}
			else
				assign_memo_slots(c, e, &r->clauses[i]);
		}
	}
	if (rules_member(obj, "segments", &v))
	{
		c->part = "segments";
		if (!rules_is_array(&v))
			return rules_bad(c, "segments must be an array of segment keys");
		r->nsegments = JsonContainerSize(v.val.binary.data);
		r->segments = MemoryContextAllocZero(c->cxt, sizeof(SegmentEntry *) * (r->nsegments + 1));
		r->segment_keys = MemoryContextAllocZero(c->cxt, sizeof(char *) * (r->nsegments + 1));
		for (int i = 0; i < r->nsegments; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);

			if (e->type != jbvString || e->val.string.len == 0 ||
				e->val.string.len > OPSFLAGS_FLAG_KEY_MAXLEN)
				return rules_bad(c, "segments must be an array of segment keys");
			r->segment_keys[i] = rules_copy_string(c, e);
			if (!c->t->strict)
				r->segments[i] = opsflags_segment_lookup(e->val.string.val, e->val.string.len);
		}
		c->part = NULL;
	}
	if (rules_member(obj, "rollout", &v))
	{
		int64		p;
		JsonbValue	pv;

		c->part = "rollout";
		if (!rules_is_object(&v))
			return rules_bad(c, "rollout must be an object");
		r->gate = MemoryContextAllocZero(c->cxt, sizeof(RuleGate));
		if (c->t->ld_bucketing)
		{
			if (!compile_ld_gate(c, v.val.binary.data, r->gate))
				return false;
			c->part = NULL;
		}
		else if (!rules_member(v.val.binary.data, "percentage", &pv) || !rules_whole_number(&pv, 0, 100, &p))
			return rules_bad(c, "percentage must be a whole number from 0 to 100");
		else
		{
			r->gate->percentage = (int) p;
			if (rules_member(v.val.binary.data, "weight", &pv))
				return rules_bad(c, "weight is for LaunchDarkly bucketing (this bucketing is \"unleash\")");
			if (!rules_compile_bucket_by(c, v.val.binary.data, &r->gate->bucket_by) ||
				!rules_compile_group(c, v.val.binary.data, &r->gate->prefix, 0))
				return false;
			c->part = NULL;
		}
	}
	if (rules_member(obj, "exclude", &v))
	{
		c->part = "exclude";
		if (v.type != jbvBool)
			return rules_bad(c, "exclude must be a boolean");
		if (c->t->segment == NULL)
			return rules_bad(c, "only the rules of a segment exclude");
		r->exclude = v.val.boolean;
		c->part = NULL;
	}
	if (rules_member(obj, "serve", &v))
	{
		c->part = "serve";
		if (c->t->segment != NULL)
			return rules_bad(c, "the rules of a segment serve nothing");
		if ((r->serve = rules_compile_serve(c, &v)) == NULL)
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
	RuleCompile c = {.t = t, .cxt = cxt};
	RuleSet    *set;
	char	  **ids;

	if (rules == NULL || JB_ROOT_IS_SCALAR(rules) || !JB_ROOT_IS_ARRAY(rules))
	{
		if (rules != NULL)
			rules_bad(&c, "rules must be a JSON array");
		return NULL;
	}
	if (JB_ROOT_COUNT(rules) == 0)
		return NULL;
	set = MemoryContextAllocZero(cxt, sizeof(RuleSet));
	set->nrules = JB_ROOT_COUNT(rules);
	set->rules = MemoryContextAllocZero(cxt, sizeof(Rule) * set->nrules);
	ids = palloc0(sizeof(char *) * set->nrules);
	c.slot_attrs = palloc0(sizeof(RuleAttr *) * RULE_MEMO_SLOTS);
	c.clause_texts = palloc0(sizeof(char *) * RULE_MEMO_SLOTS);
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
			r->clauses[0].slot = r->clauses[0].id = -1;
			r->gate = NULL;
			r->serve = NULL;
			r->nsegments = 0;
			r->exclude = false;
		}
		ids[i] = r->id ? r->id : "";
	}
	set->nslots = c.nslots;
	set->nids = c.nids;
	return set;
}

/* ---------- validation (the triggers of rules.sql) ---------- */

static Jsonb *
arg_jsonb(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : PG_GETARG_JSONB_P(i);
}

/* The bucketing argument of the checks: "unleash" (or NULL) or "launchdarkly". */
static bool
arg_ld_bucketing(FunctionCallInfo fcinfo, int i)
{
	char	   *b;

	if (PG_ARGISNULL(i))
		return false;
	b = text_to_cstring(PG_GETARG_TEXT_PP(i));
	if (strcmp(b, "launchdarkly") == 0)
		return true;
	if (strcmp(b, "unleash") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("invalid bucketing \"%s\"", b),
				 errdetail("Bucketing is \"unleash\" or \"launchdarkly\".")));
	return false;
}

/*
 * check_config_rules(flag_key, environment, nvariations, rules, serve,
 * fallthrough, rollout_group, bucketing): raises 22023 naming what is
 * invalid.
 */
Datum
opsflags_check_config_rules(PG_FUNCTION_ARGS)
{
	RuleTarget	t = {0};
	MemoryContext cxt;
	MemoryContext old;
	Jsonb	   *variations;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_VOID();
	t.flag = text_to_cstring(PG_GETARG_TEXT_PP(0));
	t.environment = text_to_cstring(PG_GETARG_TEXT_PP(1));
	variations = PG_GETARG_JSONB_P(2);
	t.nvariations = JB_ROOT_IS_ARRAY(variations) && !JB_ROOT_IS_SCALAR(variations) ?
		JB_ROOT_COUNT(variations) : 0;
	t.group = PG_ARGISNULL(6) ? t.flag : text_to_cstring(PG_GETARG_TEXT_PP(6));
	t.ld_bucketing = arg_ld_bucketing(fcinfo, 7);
	t.bucket_key = t.flag;
	t.salt = "";
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

/* check_segment_rules(segment_key, rules, bucketing) */
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
	t.ld_bucketing = arg_ld_bucketing(fcinfo, 2);
	t.bucket_key = t.segment;
	t.salt = "";
	t.strict = true;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "opsflags rule check",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	(void) opsflags_rules_compile(arg_jsonb(fcinfo, 1), &t, cxt);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}
