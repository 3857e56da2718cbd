/*
 * evaluation.c
 *	  Feature flag evaluation: feature_enabled(), feature_value(),
 *	  feature_explain() and the feature_guard() trigger, from the entries of
 *	  the flag cache (flags.c), in the evaluation order the README gives.
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
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "flags.h"

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
	"FALLTHROUGH", "ERROR"
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

static inline bool
reason_enabled(FlagReason r)
{
	return r == REASON_TARGET_USER || r == REASON_TARGET_ROLE || r == REASON_SEGMENT_MATCH ||
		r == REASON_ROLLOUT_IN || r == REASON_FALLTHROUGH;
}

static FlagReason flag_evaluate_in(FlagEntry *e, const char *user, uint32 userlen,
								   const char *role, uint32 rolelen, int *bucket,
								   EvalState *state);
static Jsonb *flag_value(const FlagEntry *e, bool enabled, const char *user, uint32 userlen);

/*
 * Step 4: every prerequisite on for the same user and role (and serving
 * the required variation).  A prerequisite that cannot be loaded fails; a
 * chain deeper than the schema allows fails the whole evaluation.  Each
 * flag is evaluated once per evaluation however many paths lead to it, so
 * the work is bounded by the flags and edges reachable, and a cancel is
 * honoured between prerequisites.
 */
static bool
prerequisites_met(FlagEntry *e, const char *user, uint32 userlen,
				  const char *role, uint32 rolelen, EvalState *state)
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
		FlagReason	reason;
		int			bucket;
		bool		on;

		CHECK_FOR_INTERRUPTS();
		/* A stale entry is loaded again in place (flags.c). */
		if (p == NULL || p->stale)
		{
			p = opsflags_flag_lookup(e->key, e->envlen, e->prereq_keys[i],
									 strlen(e->prereq_keys[i]), true);
			e->prereq_entries[i] = p;
		}
		if (p->memo_evaluation == state->number)
			reason = p->memo_reason;
		else
		{
			reason = flag_evaluate_in(p, user, userlen, role, rolelen, &bucket, state);
			p->memo_evaluation = state->number;
			p->memo_reason = reason;
		}
		on = reason_enabled(reason);
		if (e->prereq_values[i] == NULL)
			met = on;
		else
		{
			Jsonb	   *served = flag_value(p, on, user, userlen);

			met = served != NULL &&
				compareJsonbContainers(&served->root, &e->prereq_values[i]->root) == 0;
		}
	}
	state->depth--;
	return met;
}

/*
 * The evaluation order (README.md), first match wins: the reason, and the rollout
 * bucket when one was computed (else 0).  user/role may be NULL.
 */
static FlagReason
flag_evaluate_in(FlagEntry *e, const char *user, uint32 userlen,
				 const char *role, uint32 rolelen, int *bucket, EvalState *state)
{
	*bucket = 0;
	if (!e->evaluable)
		return e->absent;
	if (!e->is_enabled)
		return REASON_OFF;

	if (e->has_enable_at || e->has_disable_at)
	{
		TimestampTz now = GetCurrentStatementStartTimestamp();

		if ((e->has_enable_at && now < e->enable_at) ||
			(e->has_disable_at && now >= e->disable_at))
			return REASON_SCHEDULE;
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
		if (!prerequisites_met(e, user, userlen, role, rolelen, state) || state->too_deep)
			return REASON_PREREQUISITE_FAILED;
	}

	if (user != NULL && strset_contains(e->users, user, userlen))
		return REASON_TARGET_USER;
	if (role != NULL && strset_contains(e->roles, role, rolelen))
		return REASON_TARGET_ROLE;
	if ((user != NULL && strset_contains(e->segment_users, user, userlen)) ||
		(role != NULL && strset_contains(e->segment_roles, role, rolelen)))
		return REASON_SEGMENT_MATCH;

	if (e->percentage > 0)
	{
		if (e->percentage >= 100)
			return REASON_ROLLOUT_IN;
		if (user == NULL)
			return REASON_ROLLOUT_OUT;
		*bucket = opsflags_bucket_finish(&e->bucket_prefix, user, userlen, 100);
		return *bucket <= e->percentage ? REASON_ROLLOUT_IN : REASON_ROLLOUT_OUT;
	}
	return REASON_FALLTHROUGH;
}

/* A whole evaluation (not a prerequisite's). */
static inline FlagReason
flag_evaluate(FlagEntry *e, const char *user, uint32 userlen,
			  const char *role, uint32 rolelen, int *bucket)
{
	return flag_evaluate_in(e, user, userlen, role, rolelen, bucket, NULL);
}

/* The variation served: on (or the weighted split's) when enabled, else off. */
static Jsonb *
flag_value(const FlagEntry *e, bool enabled, const char *user, uint32 userlen)
{
	if (e == NULL || !e->evaluable)
		return NULL;
	if (!enabled)
		return e->off_value;
	if (e->nweights > 0 && user != NULL)
	{
		int64		b = opsflags_bucket_finish(&e->variant_prefix, user, userlen,
											   (uint32) e->cumulative[e->nweights - 1]);
		int			i;

		for (i = 0; i < e->nweights; i++)
			if (b <= e->cumulative[i])
				return e->split_values[i];
	}
	return e->on_value;
}

/* The arguments of the evaluating functions, unpacked. */
typedef struct FlagCall
{
	const char *key;
	int			keylen;
	const char *user;
	uint32		userlen;
	const char *role;
	uint32		rolelen;
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
	c->user = user ? VARDATA_ANY(user) : NULL;
	c->userlen = user ? VARSIZE_ANY_EXHDR(user) : 0;
	c->role = role ? VARDATA_ANY(role) : NULL;
	c->rolelen = role ? VARSIZE_ANY_EXHDR(role) : 0;
	return true;
}

/* A string member of a jsonb object, pointing into it (no copy), or NULL */
static const char *
context_string(JsonbContainer *obj, const char *name, uint32 *len)
{
	JsonbValue	v;

	if (!JsonContainerIsObject(obj) ||
		getKeyJsonValueFromContainer(obj, name, strlen(name), &v) == NULL ||
		v.type != jbvString)
		return NULL;
	*len = v.val.string.len;
	return v.val.string.val;
}

/*
 * The arguments (flag_key text, context jsonb): the user is the context's
 * "key", else "targetingKey" (OpenFeature), else "userId" (Unleash); the
 * role its "role".  A LaunchDarkly multi-kind context ({"kind": "multi",
 * "user": {...}, ...}) is read from its "user" context.  Members that are
 * not strings count as absent: a context never makes evaluation fail.
 */
static bool
flag_call_context(FunctionCallInfo fcinfo, FlagCall *c)
{
	text	   *key;
	JsonbContainer *ctx;
	const char *kind;
	uint32		kindlen = 0;

	if (PG_ARGISNULL(0))
		return false;
	key = PG_GETARG_TEXT_PP(0);
	c->key = VARDATA_ANY(key);
	c->keylen = VARSIZE_ANY_EXHDR(key);
	c->user = c->role = NULL;
	c->userlen = c->rolelen = 0;
	if (PG_ARGISNULL(1))
		return true;
	ctx = &PG_GETARG_JSONB_P(1)->root;

	kind = context_string(ctx, "kind", &kindlen);
	if (kind != NULL && kindlen == 5 && memcmp(kind, "multi", 5) == 0)
	{
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(ctx, "user", 4, &v) == NULL || v.type != jbvBinary)
			return true;		/* no user in it: evaluated for no user */
		ctx = v.val.binary.data;
	}
	if ((c->user = context_string(ctx, "key", &c->userlen)) == NULL &&
		(c->user = context_string(ctx, "targetingKey", &c->userlen)) == NULL)
		c->user = context_string(ctx, "userId", &c->userlen);
	c->role = context_string(ctx, "role", &c->rolelen);
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
 * Evaluate by key in an environment: the reason (FLAG_NOT_FOUND for keys
 * that cannot name a flag).
 */
static FlagReason
flag_reason(const char *env, const char *key, int keylen, const char *user, uint32 userlen,
			const char *role, uint32 rolelen)
{
	FlagEntry  *e = flag_entry(env, key, keylen);
	FlagReason	reason;
	int			bucket;

	if (e == NULL)
		return REASON_FLAG_NOT_FOUND;
	reason = flag_evaluate(e, user, userlen, role, rolelen, &bucket);
	count_usage(e, reason_enabled(reason));
	return reason;
}

/* ---------- one call, whichever form it came in ---------- */

static bool
call_enabled(FlagCall *c)
{
	return reason_enabled(flag_reason(opsflags_environment, c->key, c->keylen,
									  c->user, c->userlen, c->role, c->rolelen));
}

/* The variation served, copied out of the cache; NULL for an unknown flag */
static Jsonb *
call_value(FlagCall *c)
{
	FlagEntry  *e;
	int			bucket;
	bool		on;
	Jsonb	   *v;

	if ((e = flag_entry(opsflags_environment, c->key, c->keylen)) == NULL)
		return NULL;
	on = reason_enabled(flag_evaluate(e, c->user, c->userlen, c->role, c->rolelen, &bucket));
	count_usage(e, on);
	v = flag_value(e, on, c->user, c->userlen);
	return v ? (Jsonb *) DatumGetPointer(datumCopy(PointerGetDatum(v), false, -1)) : NULL;
}

/* feature_explain's document; call NULL: no flag key */
static Datum
call_explain(FlagCall *call)
{
	FlagEntry  *e = NULL;
	FlagReason	reason = REASON_FLAG_NOT_FOUND;
	int			bucket = 0;
	bool		enabled = false;
	Jsonb	   *value = NULL;
	StringInfoData buf;

	if (call != NULL)
	{
		e = flag_entry(opsflags_environment, call->key, call->keylen);
		if (e != NULL)
		{
			reason = flag_evaluate(e, call->user, call->userlen, call->role, call->rolelen, &bucket);
			enabled = reason_enabled(reason);
			value = flag_value(e, enabled, call->user, call->userlen);
		}
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"enabled\": %s, \"value\": %s, \"reason\": \"%s\", \"bucket\": ",
					 enabled ? "true" : "false",
					 value ? JsonbToCString(NULL, &value->root, VARSIZE(value)) : "null",
					 reason_names[reason]);
	if (bucket > 0)
		appendStringInfo(&buf, "%d", bucket);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"environment\": ");
	escape_json(&buf, opsflags_environment);
	appendStringInfoString(&buf, ", \"flag_version\": ");
	if (e != NULL && e->evaluable)
		appendStringInfo(&buf, "%d", e->version);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
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

	reason = flag_reason(env, key, strlen(key), user, strlen(user), role, strlen(role));
	if (!reason_enabled(reason))
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
