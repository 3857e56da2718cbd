/*
 * evaluate_all.c
 *	  evaluate_all(context, environment): every flag of an environment
 *	  (archived ones aside) for one context, as {flag_key:
 *	  feature_explain(flag_key, context)}, built in one pass over a
 *	  per-backend list of the flag keys and the environments; each flag is
 *	  evaluated from the flag cache (evaluation.c) with the context read once.
 *	  Also the same for the HTTP server's client endpoints, written as text in
 *	  their formats: OFREP's bulk answer (ofrep_bulk), Unleash's frontend
 *	  API (unleash_toggles) and the flags of LaunchDarkly's client-side
 *	  stream (launchdarkly_lines).
 *
 * The list is loaded with one query and dropped whenever the flag cache is
 * emptied (opsflags_flag_keys_reset(), called by flags.c), so it follows the
 * flag cache's invalidation: a flag created, archived or deleted, or an
 * environment added or removed, is seen by the next statement.  It is only
 * marked stale there and freed by the next load, so a reset in the middle
 * of a call never pulls it from under the loop.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_evaluate_all);
PG_FUNCTION_INFO_V1(opsflags_ofrep_bulk);
PG_FUNCTION_INFO_V1(opsflags_ofrep_one);
PG_FUNCTION_INFO_V1(opsflags_unleash_toggles);
PG_FUNCTION_INFO_V1(opsflags_launchdarkly_lines);

typedef struct FlagKeys
{
	MemoryContext cxt;
	int			nkeys;
	char	  **keys;			/* the flag keys (archived ones aside) */
	int		   *keylens;
	int			nenvs;
	char	  **envs;			/* the environments */
} FlagKeys;

static FlagKeys flag_keys;
static bool flag_keys_valid = false;

static OpsQuery flag_keys_query = {
	.sql =
	"SELECT ARRAY(SELECT f.flag_key FROM opsflags.feature_flags f WHERE NOT f.archived "
	"             ORDER BY f.flag_key COLLATE \"C\"), "
	"       ARRAY(SELECT e.name FROM opsflags.environments e)",
	.nargs = 0,
};

/* The invalidation hook: the flag cache was emptied, or a key came or went. */
void
opsflags_flag_keys_reset(void)
{
	flag_keys_valid = false;
}

/* A text[] column of the query's row, copied into the list's context. */
static int
text_array(HeapTuple tup, TupleDesc desc, int col, char ***strs, int **lens)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			k = 0;

	if (isnull)
		return 0;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*strs = MemoryContextAlloc(flag_keys.cxt, sizeof(char *) * (n + 1));
	if (lens != NULL)
		*lens = MemoryContextAlloc(flag_keys.cxt, sizeof(int) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			continue;
		t = DatumGetTextPP(elems[i]);
		(*strs)[k] = MemoryContextStrdup(flag_keys.cxt, text_to_cstring(t));
		if (lens != NULL)
			(*lens)[k] = VARSIZE_ANY_EXHDR(t);
		k++;
	}
	return k;
}

/*
 * The list, loaded when stale: as the owner of the flag tables (flag_load's
 * way), with the snapshot cache loads read with.
 */
static FlagKeys *
flag_keys_get(void)
{
	Oid			owner;
	OpsSpiState spi;
	MemoryContext cxt;

	/* take in invalidations first: they may empty the flag cache */
	opsflags_flag_cache_refresh();
	if (flag_keys_valid)
		return &flag_keys;

	owner = opsflags_rel_owner(opsflags_relid("feature_flags"));
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags tables not found"),
				 errhint("Run CREATE EXTENSION opsflags in this database.")));

	cxt = AllocSetContextCreate(CacheMemoryContext, "opsflags flag keys",
								ALLOCSET_SMALL_SIZES);
	if (flag_keys.cxt != NULL)
		MemoryContextDelete(flag_keys.cxt);
	memset(&flag_keys, 0, sizeof(flag_keys));
	flag_keys.cxt = cxt;

	opsflags_spi_begin(&spi, owner);
	if (opsflags_spi_run(&flag_keys_query, NULL, NULL, opsflags_cache_snapshot(), 1) != 1)
		elog(ERROR, "flag key query returned no row");
	flag_keys.nkeys = text_array(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
								 &flag_keys.keys, &flag_keys.keylens);
	flag_keys.nenvs = text_array(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
								 &flag_keys.envs, NULL);
	opsflags_spi_end(&spi);
	flag_keys_valid = true;
	return &flag_keys;
}

/* The list, for an environment that must exist (as resolve_environment() says it). */
static FlagKeys *
flag_keys_for(const char *env)
{
	FlagKeys   *fk = flag_keys_get();
	bool		known = false;

	for (int i = 0; i < fk->nenvs && !known; i++)
		known = strcmp(fk->envs[i], env) == 0;
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("environment \"%s\" does not exist", env),
				 errhint("Environments are rows of opsflags.environments.")));
	return fk;
}

/*
 * evaluate_all(context jsonb, environment text DEFAULT NULL) -> jsonb.  An
 * environment that does not exist is an error (as resolve_environment()
 * says it); NULL is the session's.
 */
Datum
opsflags_evaluate_all(PG_FUNCTION_ARGS)
{
	const char *env = !PG_ARGISNULL(1) ? text_to_cstring(PG_GETARG_TEXT_PP(1)) :
		opsflags_environment != NULL ? opsflags_environment : "production";
	FlagKeys   *fk = flag_keys_for(env);
	EvalContext ec;
	JsonbParseState *ps = NULL;
	JsonbValue *doc;

	opsflags_context_read(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &ec);
	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < fk->nkeys; i++)
	{
		JsonbValue	k;

		CHECK_FOR_INTERRUPTS();
		k.type = jbvString;
		k.val.string.val = fk->keys[i];
		k.val.string.len = fk->keylens[i];
		(void) pushJsonbValue(&ps, WJB_KEY, &k);
		/* each flag for a fresh draw of "$random", as separate calls had */
		ec.have_random = false;
		(void) opsflags_explain_push(&ps, env, fk->keys[i], fk->keylens[i], &ec);
	}
	doc = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(doc));
}

/* feature_explain's reason as an OpenFeature reason (as ofrep_reason() in SQL) */
static const char *
ofrep_reason(int reason)
{
	switch ((FlagReason) reason)
	{
		case REASON_OFF:
		case REASON_SCHEDULE:
		case REASON_PREREQUISITE_FAILED:
			return "DISABLED";
		case REASON_TARGET_USER:
		case REASON_TARGET_ROLE:
		case REASON_SEGMENT_MATCH:
		case REASON_RULE_MATCH:
			return "TARGETING_MATCH";
		case REASON_ROLLOUT_IN:
		case REASON_ROLLOUT_OUT:
			return "SPLIT";
		case REASON_FALLTHROUGH:
		case REASON_NO_MATCH:
			return "STATIC";
		default:
			return "UNKNOWN";
	}
}

/*
 * One flag's OFREP item, as ofrep_item() in SQL makes it (keyed: the
 * context has a targeting key); returns the HTTP status it stands for
 * alone: 200, 404 FLAG_NOT_FOUND, 400 TARGETING_KEY_MISSING or 500.
 */
static int
append_ofrep_item(StringInfo buf, const char *env, const char *key, int keylen, EvalContext *ec,
				  bool keyed)
{
	OpsEvalDetail d;

	(void) opsflags_evaluate_detail(env, key, keylen, ec, &d);
	appendStringInfoString(buf, "{\"key\": ");
	escape_json(buf, key);
	if (d.reason_code == REASON_FLAG_NOT_FOUND || d.reason_code == REASON_ARCHIVED ||
		d.reason_code == REASON_UNKNOWN_ENVIRONMENT)
	{
		appendStringInfoString(buf, ", \"errorCode\": \"FLAG_NOT_FOUND\", \"errorDetails\": \"flag was not found\"}");
		return 404;
	}
	if (d.reason_code == REASON_ERROR)
	{
		appendStringInfoString(buf, ", \"errorCode\": \"GENERAL\", \"errorDetails\": \"flag could not be evaluated\"}");
		return 500;
	}
	if (!keyed && d.reason_code == REASON_ROLLOUT_OUT && d.bucket == 0)
	{
		appendStringInfoString(buf, ", \"errorCode\": \"TARGETING_KEY_MISSING\", "
							   "\"errorDetails\": \"rolled out by percentage, which needs a targetingKey\"}");
		return 400;
	}
	appendStringInfo(buf, ", \"reason\": \"%s\"", ofrep_reason(d.reason_code));
	if (d.value != NULL)
	{
		appendStringInfoString(buf, ", \"value\": ");
		(void) JsonbToCString(buf, &d.value->root, VARSIZE(d.value));
		appendStringInfoString(buf, ", \"variant\": ");
		if (d.variant != NULL)
			escape_json(buf, d.variant);
		else
			appendStringInfo(buf, "\"%d\"", d.variation);
	}
	appendStringInfoString(buf, ", \"metadata\": {\"environment\": ");
	escape_json(buf, env);
	appendStringInfo(buf, ", \"flagVersion\": %d}}", d.version);
	return 200;
}

/*
 * ofrep_bulk(context jsonb, environment text, keyed boolean) -> text: every
 * flag of the environment for the context as OFREP's bulk answer,
 * {"flags": [...], "metadata": {...}}, each item as ofrep_item() in SQL
 * makes it (keyed: the context has a targeting key), in flag key order, so
 * that the same answer is the same text.
 */
Datum
opsflags_ofrep_bulk(PG_FUNCTION_ARGS)
{
	const char *env;
	FlagKeys   *fk;
	EvalContext ec;
	StringInfoData buf;
	bool		keyed = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	env = text_to_cstring(PG_GETARG_TEXT_PP(1));
	fk = flag_keys_for(env);
	opsflags_context_read(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &ec);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"flags\": [");
	for (int i = 0; i < fk->nkeys; i++)
	{
		CHECK_FOR_INTERRUPTS();
		ec.have_random = false;
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		(void) append_ofrep_item(&buf, env, fk->keys[i], fk->keylens[i], &ec, keyed);
	}
	appendStringInfoString(&buf, "], \"metadata\": {\"environment\": ");
	escape_json(&buf, env);
	appendStringInfoString(&buf, "}}");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * ofrep_one(context jsonb, environment text, flag_key text, keyed boolean,
 * OUT status integer, OUT document text): one flag's OFREP answer and its
 * HTTP status.
 */
Datum
opsflags_ofrep_one(PG_FUNCTION_ARGS)
{
	const char *env;
	text	   *key;
	EvalContext ec;
	StringInfoData buf;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			status;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ofrep_one must return a record");
	env = text_to_cstring(PG_GETARG_TEXT_PP(1));
	(void) flag_keys_for(env);
	key = PG_GETARG_TEXT_PP(2);
	opsflags_context_read(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &ec);
	initStringInfo(&buf);
	status = append_ofrep_item(&buf, env, text_to_cstring(key), VARSIZE_ANY_EXHDR(key), &ec,
							   !PG_ARGISNULL(3) && PG_GETARG_BOOL(3));
	values[0] = Int32GetDatum(status);
	values[1] = PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* An Unleash payload's value: a string as it is, anything else as JSON text. */
static void
append_payload_value(StringInfo buf, Jsonb *value)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(value) && JsonbExtractScalar(&value->root, &v))
	{
		if (v.type == jbvString)
		{
			char	   *str = pnstrdup(v.val.string.val, v.val.string.len);

			escape_json(buf, str);
			return;
		}
		if (v.type == jbvNumeric)
		{
			escape_json(buf, DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric))));
			return;
		}
	}
	{
		StringInfoData t;

		initStringInfo(&t);
		(void) JsonbToCString(&t, &value->root, VARSIZE(value));
		escape_json(buf, t.data);
	}
}

/* The payload's type: a value already {"type": string, "value": string} is its own payload. */
static bool
is_payload(Jsonb *value)
{
	JsonbValue	t,
				v;

	return !JB_ROOT_IS_SCALAR(value) && JB_ROOT_IS_OBJECT(value) &&
		opsflags_jsonb_member(&value->root, "type", 4, &t) && t.type == jbvString &&
		opsflags_jsonb_member(&value->root, "value", 5, &v) && v.type == jbvString;
}

/*
 * unleash_toggles(context jsonb, environment text) -> text: Unleash's
 * frontend API answer, {"toggles": [...]}: every flag enabled for the
 * context, in flag key order, with its variant (the served variation's
 * name and its value as payload; "disabled" when the variation has no
 * name), as unleash_frontend_variant() in SQL makes it.
 */
Datum
opsflags_unleash_toggles(PG_FUNCTION_ARGS)
{
	const char *env;
	FlagKeys   *fk;
	EvalContext ec;
	StringInfoData buf;
	bool		first = true;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	env = text_to_cstring(PG_GETARG_TEXT_PP(1));
	fk = flag_keys_for(env);
	opsflags_context_read(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &ec);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"toggles\": [");
	for (int i = 0; i < fk->nkeys; i++)
	{
		OpsEvalDetail d;

		CHECK_FOR_INTERRUPTS();
		ec.have_random = false;
		if (!opsflags_evaluate_detail(env, fk->keys[i], fk->keylens[i], &ec, &d) || !d.enabled)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfoString(&buf, "{\"name\": ");
		escape_json(&buf, fk->keys[i]);
		appendStringInfoString(&buf, ", \"enabled\": true, \"impressionData\": false, \"variant\": ");
		if (d.variant == NULL)
		{
			appendStringInfoString(&buf, "{\"name\": \"disabled\", \"enabled\": false, \"feature_enabled\": true}}");
			continue;
		}
		appendStringInfoString(&buf, "{\"name\": ");
		escape_json(&buf, d.variant);
		appendStringInfoString(&buf, ", \"enabled\": true, \"feature_enabled\": true");
		if (d.value != NULL && is_payload(d.value))
		{
			appendStringInfoString(&buf, ", \"payload\": ");
			(void) JsonbToCString(&buf, &d.value->root, VARSIZE(d.value));
		}
		else if (d.value != NULL)
		{
			JsonbValue	v;
			const char *type = "json";

			if (JB_ROOT_IS_SCALAR(d.value) && JsonbExtractScalar(&d.value->root, &v))
				type = v.type == jbvString ? "string" : v.type == jbvNumeric ? "number" :
					v.type == jbvNull ? NULL : "json";
			if (type != NULL)
			{
				appendStringInfo(&buf, ", \"payload\": {\"type\": \"%s\", \"value\": ", type);
				append_payload_value(&buf, d.value);
				appendStringInfoString(&buf, "}");
			}
		}
		appendStringInfoString(&buf, "}}");
	}
	appendStringInfoString(&buf, "]}");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* feature_explain's reason as a LaunchDarkly reason (as launchdarkly_reason() in SQL) */
static void
append_ld_reason(StringInfo buf, const OpsEvalDetail *d)
{
	FlagReason	r = (FlagReason) d->reason_code;

	if (r == REASON_OFF || r == REASON_SCHEDULE)
		appendStringInfoString(buf, "{\"kind\": \"OFF\"");
	else if (r == REASON_PREREQUISITE_FAILED)
		appendStringInfoString(buf, "{\"kind\": \"PREREQUISITE_FAILED\"");
	else if (r == REASON_TARGET_USER || r == REASON_TARGET_ROLE || r == REASON_SEGMENT_MATCH ||
			 (d->rule != NULL && strncmp(d->rule, "ld-target-", 10) == 0))
		appendStringInfoString(buf, "{\"kind\": \"TARGET_MATCH\"");
	else if (r == REASON_RULE_MATCH)
	{
		appendStringInfoString(buf, "{\"kind\": \"RULE_MATCH\", \"ruleId\": ");
		if (d->rule != NULL)
			escape_json(buf, d->rule);
		else
			appendStringInfoString(buf, "null");
		appendStringInfo(buf, ", \"ruleIndex\": %d", d->rule_index_ld);
	}
	else if (r == REASON_ROLLOUT_IN || r == REASON_ROLLOUT_OUT || r == REASON_FALLTHROUGH ||
			 r == REASON_NO_MATCH)
		appendStringInfoString(buf, "{\"kind\": \"FALLTHROUGH\"");
	else
		appendStringInfoString(buf, "{\"kind\": \"ERROR\", \"errorKind\": \"EXCEPTION\"");
	if (d->in_experiment && d->value != NULL)
		appendStringInfoString(buf, ", \"inExperiment\": true");
	appendStringInfoChar(buf, '}');
}

/*
 * launchdarkly_lines(context jsonb, environment text, with_reasons boolean)
 * -> text: every flag of the environment for the context as LaunchDarkly's
 * client-side stream tells it, a line "key TAB version TAB entry" each, in
 * flag key order; the entry is {"value", "variation", "version",
 * "flagVersion", "trackEvents", "reason"} as launchdarkly_flags() in SQL
 * makes it (the tests compare them).
 */
Datum
opsflags_launchdarkly_lines(PG_FUNCTION_ARGS)
{
	const char *env;
	FlagKeys   *fk;
	EvalContext ec;
	StringInfoData buf;
	bool		with_reasons = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	env = text_to_cstring(PG_GETARG_TEXT_PP(1));
	fk = flag_keys_for(env);
	opsflags_context_read(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &ec);
	initStringInfo(&buf);
	for (int i = 0; i < fk->nkeys; i++)
	{
		OpsEvalDetail d;

		CHECK_FOR_INTERRUPTS();
		ec.have_random = false;
		(void) opsflags_evaluate_detail(env, fk->keys[i], fk->keylens[i], &ec, &d);
		appendBinaryStringInfo(&buf, fk->keys[i], fk->keylens[i]);
		appendStringInfo(&buf, "\t%d\t{\"value\": ", d.evaluable ? d.version : 0);
		if (d.value != NULL)
			(void) JsonbToCString(&buf, &d.value->root, VARSIZE(d.value));
		else
			appendStringInfoString(&buf, "null");
		if (d.value != NULL)
			appendStringInfo(&buf, ", \"variation\": %d", d.variation);
		if (d.evaluable)
			appendStringInfo(&buf, ", \"version\": %d, \"flagVersion\": %d", d.version, d.version);
		else
			appendStringInfoString(&buf, ", \"version\": null, \"flagVersion\": null");
		appendStringInfoString(&buf, ", \"trackEvents\": false");
		if (with_reasons)
		{
			appendStringInfoString(&buf, ", \"reason\": ");
			append_ld_reason(&buf, &d);
		}
		appendStringInfoString(&buf, "}\n");
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
