/*
 * spi.c
 *	  The one helper through which opsflags' C code runs SQL: prepared,
 *	  schema-qualified queries kept for the life of the backend, run as a
 *	  given role (the owner of the extension's tables) with an explicit
 *	  snapshot.  Callers bracket use with opsflags_spi_begin/end and read
 *	  SPI_tuptable in between.  Also the one subtransaction guard, for the
 *	  callers that must not raise (flag evaluation, health probes).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/resowner.h"

#include "opsflags.h"

/*
 * Connect to SPI, acting as as_role (InvalidOid: the current user) with the
 * restrictions of a SECURITY DEFINER context, so that nothing the caller set
 * up can run with the role's rights.
 */
void
opsflags_spi_begin(OpsSpiState *state, Oid as_role)
{
	GetUserIdAndSecContext(&state->saved_userid, &state->saved_sec_context);
	if (OidIsValid(as_role))
		SetUserIdAndSecContext(as_role,
							   state->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Run a query, read-only unless query->writes, with the given snapshot
 * (InvalidSnapshot: the usual ones).  The plan is prepared on first use and
 * kept; the query text must not depend on search_path.  Returns
 * SPI_processed.
 */
int
opsflags_spi_run(OpsQuery *query, Datum *values, const char *nulls,
				 Snapshot snapshot, long limit)
{
	int			rc;

	if (query->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(query->sql, query->nargs, query->argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 query->sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		query->plan = plan;
	}

	rc = SPI_execute_snapshot(query->plan, values, nulls,
							  snapshot, InvalidSnapshot, !query->writes, true, limit);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed for \"%s\": %s",
			 query->sql, SPI_result_code_string(rc));
	return (int) SPI_processed;
}

void
opsflags_spi_end(OpsSpiState *state)
{
	SPI_finish();
	SetUserIdAndSecContext(state->saved_userid, state->saved_sec_context);
}

/*
 * Run fn(arg) in a subtransaction.  On success, true.  On an error other
 * than a cancel (which is re-thrown unless cancel_ok), the subtransaction is
 * rolled back and false returned with the error (in the caller's memory
 * context) in *error.  In parallel mode, where subtransactions are not
 * possible, fn runs unguarded.
 */
bool
opsflags_try(void (*fn) (void *), void *arg, bool cancel_ok, ErrorData **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	*error = NULL;
	if (IsInParallelMode())
	{
		fn(arg);
		return true;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !cancel_ok)
			ReThrowError(edata);
		*error = edata;
		ok = false;
	}
	PG_END_TRY();

	return ok;
}
