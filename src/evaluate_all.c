/*
 * evaluate_all.c
 *	  evaluate_all(context, environment): every flag of an environment
 *	  (archived ones aside) for one context, as {flag_key:
 *	  feature_explain(flag_key, context)}, built in one pass over a
 *	  per-backend list of the flag keys and the environments; each flag is
 *	  evaluated from the flag cache (evaluation.c) with the context read once.
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
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_evaluate_all);

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
	"SELECT ARRAY(SELECT f.flag_key FROM opsflags.feature_flags f WHERE NOT f.archived), "
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
	FlagKeys   *fk = flag_keys_get();
	EvalContext ec;
	JsonbParseState *ps = NULL;
	JsonbValue *doc;
	bool		known = false;

	for (int i = 0; i < fk->nenvs && !known; i++)
		known = strcmp(fk->envs[i], env) == 0;
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("environment \"%s\" does not exist", env),
				 errhint("Environments are rows of opsflags.environments.")));

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
