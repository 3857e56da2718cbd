/*
 * evaluation.c
 *	  Feature flag evaluation: feature_enabled(), feature_value(),
 *	  feature_explain() and the feature_guard() trigger, from the entries of
 *	  the flag cache (flags.c), in the evaluation order the README gives:
 *	  targeting rules (rules.c) read any attribute of the context.
 *
 * An evaluation queries nothing once its flags are cached.  The prerequisite
 * depth and memo of one evaluation travel in an EvalState on the stack, so
 * nothing about an evaluation in progress outlives it.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_feature_enabled);
PG_FUNCTION_INFO_V1(opsflags_feature_value);
PG_FUNCTION_INFO_V1(opsflags_feature_explain);
PG_FUNCTION_INFO_V1(opsflags_feature_enabled_context);
PG_FUNCTION_INFO_V1(opsflags_feature_value_context);
PG_FUNCTION_INFO_V1(opsflags_feature_explain_context);
PG_FUNCTION_INFO_V1(opsflags_feature_guard);

/* The names of FlagReason (flags.h), in its order: feature_explain's reason. */
static const char *const reason_names[] = {
	"UNKNOWN_ENVIRONMENT", "FLAG_NOT_FOUND", "ARCHIVED", "OFF", "SCHEDULE", "PREREQUISITE_FAILED",
	"TARGET_USER", "TARGET_ROLE", "SEGMENT_MATCH", "ROLLOUT_IN", "ROLLOUT_OUT",
	"FALLTHROUGH", "ERROR", "RULE_MATCH", "NO_MATCH"
};

/* Deepest prerequisite chain evaluated (the schema refuses deeper ones). */
#define MAX_PREREQUISITE_DEPTH 8

static uint64 evaluation_counter = 0;	/* numbers evaluations with prerequisites */

/*
 * One evaluation with prerequisites: how deep it is, whether a chain went
 * deeper than the schema allows, and its number (memo_evaluation).
 */
typedef struct EvalState
{
	uint64		number;
	int			depth;
	bool		too_deep;
} EvalState;

/*
 * What an evaluation found: why, whether the flag is on, what it serves
 * when on, which rule served, and the variation once picked.  A flag with
 * a boolean variation has it picked at once (its value decides whether the
 * flag is enabled); others only when asked for (value, explain, a
 * prerequisite's variation).
 */
typedef struct EvalResult
{
	FlagReason	reason;
	bool		enabled;
	const RuleServe *serve;
	int			rule;			/* -1: no rule */
	int			bucket;			/* the percentage rollout's, else 0 */
	int			variation;		/* VARIATION_UNPICKED, -1: none, or the index */
	bool		in_experiment;
} EvalResult;

#define VARIATION_UNPICKED (-2)

static FlagReason flag_evaluate_in(FlagEntry *e, EvalContext *ec, EvalResult *res,
								   EvalState *state);
static FlagReason flag_decide(FlagEntry *e, EvalContext *ec, EvalResult *res,
							  EvalState *state);
static int	flag_variation(const FlagEntry *e, EvalResult *res, EvalContext *ec,
						   bool *in_experiment);

/* The flag is switched on in the environment, and in its schedule. */
static inline bool
switched_on(FlagReason reason)
{
	return reason != REASON_UNKNOWN_ENVIRONMENT && reason != REASON_FLAG_NOT_FOUND &&
		reason != REASON_ARCHIVED && reason != REASON_OFF && reason != REASON_SCHEDULE &&
		reason != REASON_ERROR;
}

/*
 * Step 4: every prerequisite on (or off, when it must be off) for the same
 * context, or, when enabled is NULL, switched on in the environment
 * whatever it decides for the context (LaunchDarkly's prerequisite); and
 * serving the required variation or one of the named ones.
 * A prerequisite that cannot be loaded fails; a chain deeper than the
 * schema allows fails the whole evaluation.  Each flag is evaluated once
 * per evaluation however many paths lead to it, so the work is bounded by
 * the flags and edges reachable, and a cancel is honoured between
 * prerequisites.
 */
static bool
prerequisites_met(FlagEntry *e, EvalContext *ec, EvalState *state)
{
	int			i;
	bool		met = true;

	if (state->depth >= MAX_PREREQUISITE_DEPTH)
	{
		state->too_deep = true;
		return false;
	}
	state->depth++;
	for (i = 0; met && i < e->nprereqs; i++)
	{
		FlagEntry  *p = e->prereq_entries[i];

		CHECK_FOR_INTERRUPTS();
		/* A stale entry is loaded again in place (flags.c). */
		if (p == NULL || p->inval.stale)
		{
			p = opsflags_flag_lookup(e->key, e->envlen, e->prereq_keys[i],
									 strlen(e->prereq_keys[i]), true);
			e->prereq_entries[i] = p;
		}
		if (p->memo_evaluation != state->number)
		{
			EvalResult	res;

			p->memo_reason = flag_evaluate_in(p, ec, &res, state);
			p->memo_enabled = res.enabled;
			p->memo_variation = flag_variation(p, &res, ec, NULL);
			p->memo_evaluation = state->number;
		}
		/* on (or off, as required), and then serving what is asked */
		if (e->prereq_enabled[i] < 0)
			met = switched_on(p->memo_reason);
		else
			met = e->prereq_enabled[i] ? p->memo_enabled : !p->memo_enabled;
		if (met && e->prereq_variation[i] >= 0)
			met = p->memo_variation == e->prereq_variation[i];
		if (met && e->prereq_nvariants[i] >= 0)
		{
			met = false;
			for (int j = 0; j < e->prereq_nvariants[i] && !met; j++)
				met = e->prereq_variants[i][j] == p->memo_variation;
		}
	}
	state->depth--;
	return met;
}

/* res serves s (on unless s is {"off": true}) for a reason. */
static inline FlagReason
serving(EvalResult *res, FlagReason reason, const RuleServe *s)
{
	res->reason = reason;
	res->serve = s;
	res->enabled = s != NULL && s->kind != SERVE_OFF;
	return reason;
}

/*
 * An evaluation: the evaluation order decides, and then, for a flag with a
 * boolean variation, the variation served does: a flag serving true is
 * enabled and one serving false is not, whatever the reason (so that
 * feature_enabled and feature_value never disagree).
 */
static FlagReason
flag_evaluate_in(FlagEntry *e, EvalContext *ec, EvalResult *res, EvalState *state)
{
	FlagReason	reason = flag_decide(e, ec, res, state);

	if (e->evaluable && e->any_bool)
	{
		int			v = flag_variation(e, res, ec, NULL);

		if (v >= 0 && e->bool_values[v] >= 0)
			res->enabled = e->bool_values[v] == 1;
	}
	return reason;
}

/*
 * The evaluation order (README.md, docs/rules.md), first match wins: the
 * reason, what is served and the rollout bucket when one was computed.
 */
static FlagReason
flag_decide(FlagEntry *e, EvalContext *ec, EvalResult *res, EvalState *state)
{
	const char *user = ec->user;
	const char *role = ec->role;

	res->enabled = false;
	res->serve = NULL;
	res->rule = -1;
	res->bucket = 0;
	res->variation = VARIATION_UNPICKED;
	res->in_experiment = false;
	res->reason = REASON_OFF;
	if (!e->evaluable)
		return res->reason = e->absent;
	if (!e->is_enabled)
		return REASON_OFF;

	if (e->has_enable_at || e->has_disable_at)
	{
		TimestampTz now = GetCurrentStatementStartTimestamp();

		if ((e->has_enable_at && now < e->enable_at) ||
			(e->has_disable_at && now >= e->disable_at))
			return res->reason = REASON_SCHEDULE;
	}

	if (e->nprereqs > 0)
	{
		EvalState	top;

		if (state == NULL)
		{
			top.number = ++evaluation_counter;
			top.depth = 0;
			top.too_deep = false;
			state = &top;
		}
		if (!prerequisites_met(e, ec, state) || state->too_deep)
			return res->reason = REASON_PREREQUISITE_FAILED;
	}

	if (user != NULL && strset_contains(e->users, user, ec->userlen))
		return serving(res, REASON_TARGET_USER, e->serve);
	if (role != NULL && strset_contains(e->roles, role, ec->rolelen))
		return serving(res, REASON_TARGET_ROLE, e->serve);
	if ((user != NULL && strset_contains(e->segment_users, user, ec->userlen)) ||
		(role != NULL && strset_contains(e->segment_roles, role, ec->rolelen)))
		return serving(res, REASON_SEGMENT_MATCH, e->serve);
	for (int i = 0; i < e->nrule_segments; i++)
		if (opsflags_segment_contains(e->rule_segments[i], ec))
			return serving(res, REASON_SEGMENT_MATCH, e->serve);

	if (e->rules != NULL)
	{
		RuleMemo	memo;

		rule_memo_init(&memo, e->rules);
		for (int i = 0; i < e->rules->nrules; i++)
		{
			const Rule *r = &e->rules->rules[i];

			if (opsflags_rule_matches(r, ec, &memo))
			{
				res->rule = i;
				return serving(res, REASON_RULE_MATCH, r->serve ? r->serve : e->serve);
			}
		}
	}

	if (e->percentage > 0)
	{
		if (e->percentage >= 100)
			return serving(res, REASON_ROLLOUT_IN, e->serve);
		if (user == NULL)
			return res->reason = REASON_ROLLOUT_OUT;
		res->bucket = opsflags_bucket_finish(&e->bucket_prefix, user, ec->userlen, 100);
		if (res->bucket <= e->percentage)
			return serving(res, REASON_ROLLOUT_IN, e->serve);
		return res->reason = REASON_ROLLOUT_OUT;
	}
	if (e->fallthrough == NULL)
		return serving(res, REASON_FALLTHROUGH, e->serve);
	if (e->fallthrough->kind == SERVE_OFF)
		return serving(res, REASON_NO_MATCH, e->fallthrough);
	return serving(res, REASON_FALLTHROUGH, e->fallthrough);
}

/* A whole evaluation (not a prerequisite's). */
static inline FlagReason
flag_evaluate(FlagEntry *e, EvalContext *ec, EvalResult *res)
{
	return flag_evaluate_in(e, ec, res, NULL);
}

/*
 * The index of the variation served (-1: none): what res serves when on,
 * else the off variation.  Picked once per evaluation (a split may bucket
 * by a random value) and kept in res.
 */
static int
flag_variation(const FlagEntry *e, EvalResult *res, EvalContext *ec, bool *in_experiment)
{
	int			v;

	if (e == NULL || !e->evaluable)
		return -1;
	if (res->variation == VARIATION_UNPICKED)
	{
		if (res->serve == NULL || res->serve->kind == SERVE_OFF)
			v = e->off_variation;
		else
		{
			v = opsflags_serve_variation(res->serve, ec, &res->in_experiment);
			if (v < 0 || v >= e->nvariations)
				v = e->off_variation;
		}
		res->variation = v;
	}
	if (in_experiment != NULL)
		*in_experiment = res->in_experiment;
	return res->variation;
}

static inline Jsonb *
variation_value(const FlagEntry *e, int v)
{
	return (e == NULL || v < 0 || v >= e->nvariations) ? NULL : e->values[v];
}

/* The arguments of the evaluating functions, unpacked. */
typedef struct FlagCall
{
	const char *key;
	int			keylen;
	EvalContext ec;
} FlagCall;

static bool
flag_call_args(FunctionCallInfo fcinfo, FlagCall *c)
{
	text	   *key;
	text	   *user = NULL;
	text	   *role = NULL;

	if (PG_ARGISNULL(0))
		return false;
	key = PG_GETARG_TEXT_PP(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		user = PG_GETARG_TEXT_PP(1);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		role = PG_GETARG_TEXT_PP(2);
	c->key = VARDATA_ANY(key);
	c->keylen = VARSIZE_ANY_EXHDR(key);
	c->ec.ctx = NULL;
	c->ec.root = NULL;
	c->ec.have_random = false;
	c->ec.segment_depth = 0;
	c->ec.user = user ? VARDATA_ANY(user) : NULL;
	c->ec.userlen = user ? VARSIZE_ANY_EXHDR(user) : 0;
	c->ec.role = role ? VARDATA_ANY(role) : NULL;
	c->ec.rolelen = role ? VARSIZE_ANY_EXHDR(role) : 0;
	return true;
}

/* A string member of a jsonb object, pointing into it (no copy), or NULL */
static const char *
context_string(JsonbContainer *obj, const char *name, uint32 *len)
{
	JsonbValue	v;

	if (!JsonContainerIsObject(obj) ||
		!opsflags_jsonb_member(obj, name, strlen(name), &v) ||
		v.type != jbvString)
		return NULL;
	*len = v.val.string.len;
	return v.val.string.val;
}

/*
 * A context read for evaluation (NULL: none): the user is the context's
 * "key", else "targetingKey" (OpenFeature), else "userId" (Unleash); the
 * role its "role".  A LaunchDarkly multi-kind context ({"kind": "multi",
 * "user": {...}, ...}) is read from its "user" context, rules' attributes
 * too.  Members that are not strings count as absent: a context never
 * makes evaluation fail.
 */
void
opsflags_context_read(Jsonb *context, EvalContext *ec)
{
	JsonbContainer *ctx;
	const char *kind;
	uint32		kindlen = 0;

	ec->ctx = NULL;
	ec->root = NULL;
	ec->have_random = false;
	ec->segment_depth = 0;
	ec->user = ec->role = NULL;
	ec->userlen = ec->rolelen = 0;
	if (context == NULL)
		return;
	ctx = &context->root;
	if (!JsonContainerIsObject(ctx))
		return;
	ec->root = ctx;

	kind = context_string(ctx, "kind", &kindlen);
	if (kind != NULL && kindlen == 5 && memcmp(kind, "multi", 5) == 0)
	{
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(ctx, "user", 4, &v) == NULL || v.type != jbvBinary ||
			!JsonContainerIsObject(v.val.binary.data))
			return;				/* no user in it: evaluated for no user */
		ctx = v.val.binary.data;
	}
	ec->ctx = ctx;
	if ((ec->user = context_string(ctx, "key", &ec->userlen)) == NULL &&
		(ec->user = context_string(ctx, "targetingKey", &ec->userlen)) == NULL)
		ec->user = context_string(ctx, "userId", &ec->userlen);
	ec->role = context_string(ctx, "role", &ec->rolelen);
}

static bool
flag_call_context(FunctionCallInfo fcinfo, FlagCall *c)
{
	text	   *key;

	if (PG_ARGISNULL(0))
		return false;
	key = PG_GETARG_TEXT_PP(0);
	c->key = VARDATA_ANY(key);
	c->keylen = VARSIZE_ANY_EXHDR(key);
	opsflags_context_read(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &c->ec);
	return true;
}

/*
 * The entry for a key in an environment; NULL when the key cannot name a
 * flag (or the environment is too long to exist).
 */
static FlagEntry *
flag_entry(const char *env, const char *key, int keylen)
{
	int			envlen = strlen(env);

	if (keylen <= 0 || keylen > OPSFLAGS_FLAG_KEY_MAXLEN ||
		envlen <= 0 || envlen > OPSFLAGS_ENVIRONMENT_MAXLEN)
		return NULL;
	return opsflags_flag_lookup(env, envlen, key, keylen, false);
}

/* Count an evaluation (in backend memory; shared at transaction end). */
static inline void
count_usage(const FlagEntry *e, bool on)
{
	OpsUsage   *u = e->usage;

	if (u == NULL || !opsflags_track_usage)
		return;
	if (on)
		u->n_true++;
	else
		u->n_false++;
	u->last_evaluated = GetCurrentStatementStartTimestamp();
	if (!u->dirty)
		opsflags_usage_mark_dirty(u);
}

/*
 * Evaluate by key in an environment: whether the flag is on (false for
 * keys that cannot name a flag).
 */
static bool
flag_on(const char *env, const char *key, int keylen, EvalContext *ec, FlagReason *reason)
{
	FlagEntry  *e = flag_entry(env, key, keylen);
	EvalResult	res;

	if (e == NULL)
	{
		*reason = REASON_FLAG_NOT_FOUND;
		return false;
	}
	*reason = flag_evaluate(e, ec, &res);
	count_usage(e, res.enabled);
	return res.enabled;
}

/* ---------- one call, whichever form it came in ---------- */

static bool
call_enabled(FlagCall *c)
{
	FlagReason	reason;

	return flag_on(opsflags_environment, c->key, c->keylen, &c->ec, &reason);
}

/* The variation served, copied out of the cache; NULL for an unknown flag */
static Jsonb *
call_value(FlagCall *c)
{
	FlagEntry  *e;
	EvalResult	res;
	Jsonb	   *v;

	if ((e = flag_entry(opsflags_environment, c->key, c->keylen)) == NULL)
		return NULL;
	(void) flag_evaluate(e, &c->ec, &res);
	count_usage(e, res.enabled);
	v = variation_value(e, flag_variation(e, &res, &c->ec, NULL));
	return v ? (Jsonb *) DatumGetPointer(datumCopy(PointerGetDatum(v), false, -1)) : NULL;
}

/* A key and its value, in the object being built. */
static void
push_member(JsonbParseState **ps, const char *key, JsonbValue *v)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(ps, WJB_KEY, &k);
	(void) pushJsonbValue(ps, WJB_VALUE, v);
}

static void
push_string(JsonbParseState **ps, const char *key, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	push_member(ps, key, &v);
}

/* A whole number, or null when absent. */
static void
push_int(JsonbParseState **ps, const char *key, bool present, int64 i)
{
	JsonbValue	v;

	if (!present)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(i);
	}
	push_member(ps, key, &v);
}

/*
 * One flag evaluated as feature_explain reports it, for the client
 * endpoints' formats (evaluate_all.c): false when the key cannot name a
 * flag (reason FLAG_NOT_FOUND).  The value points into the cache.
 */
bool
opsflags_evaluate_detail(const char *env, const char *key, int keylen, EvalContext *ec,
						 OpsEvalDetail *out)
{
	FlagEntry  *e = flag_entry(env, key, keylen);
	EvalResult	res = {REASON_FLAG_NOT_FOUND, false, NULL, -1, 0, VARIATION_UNPICKED, false};

	memset(out, 0, sizeof(*out));
	out->variation = -1;
	out->reason = reason_names[REASON_FLAG_NOT_FOUND];
	if (e == NULL)
		return false;
	(void) flag_evaluate(e, ec, &res);
	out->variation = flag_variation(e, &res, ec, &out->in_experiment);
	out->value = variation_value(e, out->variation);
	if (out->value == NULL)
		out->variation = -1;
	out->reason = reason_names[res.reason];
	out->reason_code = res.reason;
	out->enabled = res.enabled;
	out->bucket = res.bucket;
	out->variant = out->value != NULL ? e->variant_names[out->variation] : NULL;
	out->rule_index = res.rule;
	out->rule = res.rule >= 0 && e->rules != NULL ? e->rules->rules[res.rule].id : NULL;
	out->rule_index_ld = 0;
	for (int i = 0; out->rule != NULL && i < res.rule; i++)
	{
		const char *id = e->rules->rules[i].id;

		if (id == NULL || strncmp(id, "ld-target-", 10) != 0)
			out->rule_index_ld++;
	}
	out->evaluable = e->evaluable;
	out->version = e->evaluable ? e->version : 0;
	return true;
}

/*
 * feature_explain's document for a flag key (NULL: none) in env, pushed as
 * an object: the value of the member being built, or the whole document.
 */
JsonbValue *
opsflags_explain_push(JsonbParseState **ps, const char *env, const char *key, int keylen,
					  EvalContext *ec)
{
	OpsEvalDetail d;
	JsonbValue	v;

	if (key == NULL || !opsflags_evaluate_detail(env, key, keylen, ec, &d))
	{
		memset(&d, 0, sizeof(d));
		d.variation = -1;
		d.reason = reason_names[REASON_FLAG_NOT_FOUND];
	}

	(void) pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	v.type = jbvBool;
	v.val.boolean = d.enabled;
	push_member(ps, "enabled", &v);
	if (d.value != NULL && JB_ROOT_IS_SCALAR(d.value))
		(void) JsonbExtractScalar(&d.value->root, &v);
	else if (d.value != NULL)
	{
		v.type = jbvBinary;
		v.val.binary.data = &d.value->root;
		v.val.binary.len = VARSIZE(d.value) - VARHDRSZ;
	}
	else
		v.type = jbvNull;
	push_member(ps, "value", &v);
	push_string(ps, "reason", d.reason);
	push_int(ps, "bucket", d.bucket > 0, d.bucket);
	push_int(ps, "variation", d.value != NULL, d.variation);
	push_string(ps, "variant", d.variant);
	push_string(ps, "rule", d.rule);
	if (d.in_experiment && d.value != NULL)
	{
		/* only when a LaunchDarkly experiment counts the context */
		v.type = jbvBool;
		v.val.boolean = true;
		push_member(ps, "in_experiment", &v);
	}
	push_string(ps, "environment", env);
	push_int(ps, "flag_version", d.evaluable, d.version);
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* feature_explain's document; call NULL: no flag key */
static Datum
call_explain(FlagCall *call)
{
	JsonbParseState *ps = NULL;
	JsonbValue *doc;

	doc = opsflags_explain_push(&ps, opsflags_environment, call ? call->key : NULL,
								call ? call->keylen : 0, call ? &call->ec : NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(doc));
}

/*
 * feature_enabled(flag_key text, user_id text, user_role text) -> boolean
 */
Datum
opsflags_feature_enabled(PG_FUNCTION_ARGS)
{
	FlagCall	c;

	PG_RETURN_BOOL(flag_call_args(fcinfo, &c) && call_enabled(&c));
}

/* feature_enabled(flag_key, context) */
Datum
opsflags_feature_enabled_context(PG_FUNCTION_ARGS)
{
	FlagCall	c;

	PG_RETURN_BOOL(flag_call_context(fcinfo, &c) && call_enabled(&c));
}

/*
 * feature_value(flag_key text, user_id text, user_role text) -> jsonb
 */
Datum
opsflags_feature_value(PG_FUNCTION_ARGS)
{
	FlagCall	c;
	Jsonb	   *v;

	if (!flag_call_args(fcinfo, &c) || (v = call_value(&c)) == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(v);
}

/* feature_value(flag_key, context) */
Datum
opsflags_feature_value_context(PG_FUNCTION_ARGS)
{
	FlagCall	c;
	Jsonb	   *v;

	if (!flag_call_context(fcinfo, &c) || (v = call_value(&c)) == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(v);
}

/*
 * feature_explain(flag_key text, user_id text, user_role text) -> jsonb:
 * enabled, value, reason, bucket, environment, flag_version; always the
 * same answer as feature_enabled and feature_value.
 */
Datum
opsflags_feature_explain(PG_FUNCTION_ARGS)
{
	FlagCall	c;

	PG_RETURN_DATUM(call_explain(flag_call_args(fcinfo, &c) ? &c : NULL));
}

/* feature_explain(flag_key, context) */
Datum
opsflags_feature_explain_context(PG_FUNCTION_ARGS)
{
	FlagCall	c;

	PG_RETURN_DATUM(call_explain(flag_call_context(fcinfo, &c) ? &c : NULL));
}

/*
 * feature_guard('flag.key' [, 'environment']): trigger refusing writes to
 * the table while the flag is off for the writer (user = session_user, role
 * = current_user) in the guard's environment: the trigger's second argument,
 * else opsflags.guard_environment, which only a superuser sets, else
 * opsflags.environment as the server configuration sets it.  What a role,
 * database or session sets plays no part, so SET cannot bypass a guard.
 */
Datum
opsflags_feature_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	const char *key;
	const char *env;
	const char *user;
	const char *role;
	FlagReason	reason;
	EvalContext ec;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("feature_guard() must be called as a trigger")));

	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 1 && trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" must pass feature_guard() the flag key and, optionally, the environment",
						trigger->tgname, RelationGetRelationName(trigdata->tg_relation))));

	key = trigger->tgargs[0];
	env = trigger->tgnargs == 2 ? trigger->tgargs[1] : opsflags_guard_environment_name();
	if (!opsflags_valid_environment_name(env))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" passes feature_guard() an invalid environment name",
						trigger->tgname, RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("An environment name has 1 to 63 lower-case letters, digits, \"_\" and \"-\", and starts with a letter or digit.")));
	user = GetUserNameFromId(GetSessionUserId(), false);
	role = GetUserNameFromId(GetUserId(), false);

	memset(&ec, 0, sizeof(ec));
	ec.user = user;
	ec.userlen = strlen(user);
	ec.role = role;
	ec.rolelen = strlen(role);
	if (!flag_on(env, key, strlen(key), &ec, &reason))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("feature flag \"%s\" is off: writes to table \"%s\" are disabled",
						key, RelationGetRelationName(trigdata->tg_relation)),
				 reason == REASON_UNKNOWN_ENVIRONMENT ?
				 errdetail("Environment \"%s\" of the guard does not exist.", env) :
				 errdetail("Flag evaluated in environment \"%s\" for user \"%s\" and role \"%s\".",
						   env, user, role)));

	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) && TRIGGER_FIRED_BEFORE(trigdata->tg_event))
	{
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			return PointerGetDatum(trigdata->tg_newtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	return PointerGetDatum(NULL);
}
