/*
 * maintenance.c
 *	  Maintenance mode: while configuration key system.maintenance_mode is
 *	  true, writes to tables outside schema opsflags fail with SQLSTATE 25006
 *	  for everyone but superusers and opsflags.maintenance_exempt_roles.
 *
 * The truth is the configuration row (so it survives restarts and is
 * audited); enforcement reads a per-database state word in shared memory,
 * so a statement costs an atomic read, not a query.  The word holds a state
 * (unknown, off, on) and a generation.  A transaction that changes the key
 * (seen by a trigger on app_config) bumps the generation and sets the state
 * to unknown when it commits; the next statement of any backend reloads
 * the state from the table with a fresh snapshot and stores it only if the
 * generation has not moved meanwhile.  Enforcement needs
 * shared_preload_libraries; without it the mode is recorded but not
 * enforced, and set_maintenance_mode() says so.
 *
 * Writes covered: INSERT, UPDATE, DELETE, MERGE (executor hook); TRUNCATE,
 * COPY FROM, REFRESH MATERIALIZED VIEW (utility hook); an ALTER TABLE that
 * rewrites the table's rows (event trigger on table_rewrite, which says
 * whether a rewrite happens).  Two-phase commit: PREPARE TRANSACTION and
 * COMMIT PREPARED are refused, so no transaction's writes become visible
 * while the mode is on; ROLLBACK PREPARED stays allowed, so whoever runs
 * the maintenance can end a prepared transaction that holds locks (or,
 * being exempt, commit it).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_maintenance_config_changed);
PG_FUNCTION_INFO_V1(opsflags_maintenance_enforced);
PG_FUNCTION_INFO_V1(opsflags_maintenance_table_rewrite);

#define MAINTENANCE_KEY "system.maintenance_mode"
#define MAINTENANCE_MAX_DATABASES 64

#define STATE_UNKNOWN 0
#define STATE_OFF 1
#define STATE_ON 2
#define STATE_OF(word) ((uint32) ((word) & 3))
#define GENERATION_OF(word) ((word) >> 2)
#define MAKE_WORD(gen, state) (((gen) << 2) | (state))

typedef struct MaintenanceSlot
{
	Oid			dbid;			/* InvalidOid: free */
	pg_atomic_uint64 word;
} MaintenanceSlot;

typedef struct MaintenanceShared
{
	slock_t		mutex;			/* protects slot allocation */
	MaintenanceSlot slots[MAINTENANCE_MAX_DATABASES];
} MaintenanceShared;

static MaintenanceShared *maint = NULL;
static MaintenanceSlot *my_slot = NULL;
static bool enforcement_loaded = false;
static bool maintenance_touched = false;
static bool loading = false;

static char *opsflags_maintenance_exempt_roles = NULL;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static OpsQuery state_query = {
	.sql =
	"SELECT c.config_value OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb "
	"FROM opsflags.app_config c "
	"WHERE c.config_key OPERATOR(pg_catalog.=) '" MAINTENANCE_KEY "' "
	"  AND c.environment OPERATOR(pg_catalog.=) 'all'",
	.nargs = 0,
};

/* ---------- shared memory ---------- */

static void
maintenance_shmem_attach(void)
{
	bool		found;

	maint = ShmemInitStruct("opsflags maintenance", sizeof(MaintenanceShared), &found);
	if (!found)
	{
		int			i;

		SpinLockInit(&maint->mutex);
		for (i = 0; i < MAINTENANCE_MAX_DATABASES; i++)
		{
			maint->slots[i].dbid = InvalidOid;
			pg_atomic_init_u64(&maint->slots[i].word, MAKE_WORD(0, STATE_UNKNOWN));
		}
	}
}

/* This database's slot, allocated on first use; NULL when all are taken. */
static MaintenanceSlot *
maintenance_slot(void)
{
	int			i;
	MaintenanceSlot *free_slot = NULL;

	if (my_slot != NULL || maint == NULL || !OidIsValid(MyDatabaseId))
		return my_slot;

	SpinLockAcquire(&maint->mutex);
	for (i = 0; i < MAINTENANCE_MAX_DATABASES; i++)
	{
		if (maint->slots[i].dbid == MyDatabaseId)
		{
			my_slot = &maint->slots[i];
			break;
		}
		if (free_slot == NULL && maint->slots[i].dbid == InvalidOid)
			free_slot = &maint->slots[i];
	}
	if (my_slot == NULL && free_slot != NULL)
	{
		free_slot->dbid = MyDatabaseId;
		my_slot = free_slot;
	}
	SpinLockRelease(&maint->mutex);

	if (my_slot == NULL)
		ereport(WARNING,
				(errmsg("opsflags maintenance mode cannot be enforced in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("Maintenance state is tracked for at most %d databases.",
						   MAINTENANCE_MAX_DATABASES)));
	return my_slot;
}

/* ---------- state ---------- */

/* Read the state from app_config (STATE_OFF without the extension). */
static uint32
maintenance_load_state(void)
{
	Oid			relid = opsflags_relid("app_config");
	bool		on = false;
	OpsSpiState spi;

	if (!OidIsValid(relid))
		return STATE_OFF;

	opsflags_spi_begin(&spi, opsflags_rel_owner(relid));
	if (opsflags_spi_run(&state_query, NULL, NULL, opsflags_cache_snapshot(), 1) == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		on = !isnull && DatumGetBool(d);
	}
	opsflags_spi_end(&spi);
	return on ? STATE_ON : STATE_OFF;
}

/* Is maintenance mode on in this database?  Cheap unless it just changed. */
static bool
maintenance_is_on(void)
{
	MaintenanceSlot *slot;
	uint64		word;
	uint32		state;

	if (loading || !IsTransactionState())
		return false;
	slot = maintenance_slot();
	if (slot == NULL)
		return false;

	word = pg_atomic_read_u64(&slot->word);
	state = STATE_OF(word);
	if (state != STATE_UNKNOWN)
		return state == STATE_ON;

	/* The extension is not (or no longer) here: nothing to load. */
	if (!OidIsValid(get_namespace_oid("opsflags", true)))
		return false;

	loading = true;
	PG_TRY();
	{
		state = maintenance_load_state();
	}
	PG_FINALLY();
	{
		loading = false;
	}
	PG_END_TRY();

	/* Store it unless a commit has moved the generation meanwhile. */
	pg_atomic_compare_exchange_u64(&slot->word, &word,
								   MAKE_WORD(GENERATION_OF(word), state));
	return state == STATE_ON;
}

/* At commit of a transaction that changed the key: everyone reloads. */
static void
maintenance_xact_callback(XactEvent event, void *arg)
{
	MaintenanceSlot *slot;
	uint64		word;

	if (!maintenance_touched)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		maintenance_touched = false;
		return;
	}
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;

	maintenance_touched = false;
	slot = maintenance_slot();
	if (slot == NULL)
		return;
	word = pg_atomic_read_u64(&slot->word);
	while (!pg_atomic_compare_exchange_u64(&slot->word, &word,
										   MAKE_WORD(GENERATION_OF(word) + 1, STATE_UNKNOWN)))
		;
}

/* ---------- enforcement ---------- */

static bool
role_is_exempt(void)
{
	Oid			user = GetUserId();
	char	   *rawnames;
	List	   *names;
	ListCell   *lc;
	bool		exempt = false;

	if (superuser_arg(user))
		return true;
	if (opsflags_maintenance_exempt_roles == NULL || opsflags_maintenance_exempt_roles[0] == '\0')
		return false;

	rawnames = pstrdup(opsflags_maintenance_exempt_roles);
	if (!SplitIdentifierString(rawnames, ',', &names))
		return false;			/* rejected by the check hook already */
	foreach(lc, names)
	{
		Oid			role = get_role_oid((const char *) lfirst(lc), true);

		if (OidIsValid(role) && is_member_of_role(user, role))
		{
			exempt = true;
			break;
		}
	}
	list_free(names);
	pfree(rawnames);
	return exempt;
}

/* Would writing relid be refused now?  Raises if so. */
static void
maintenance_check_write(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *nspname;

	if (!OidIsValid(nsp) || isAnyTempNamespace(nsp))
		return;
	nspname = get_namespace_name(nsp);
	if (nspname != NULL && strcmp(nspname, "opsflags") == 0)
		return;
	if (role_is_exempt())
		return;

	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("maintenance mode is on: writes are refused"),
			 get_rel_relkind(relid) == RELKIND_MATVIEW ?
			 errdetail("Materialized view \"%s.%s\" cannot be refreshed while opsflags maintenance mode is on.",
					   nspname, get_rel_name(relid)) :
			 errdetail("Table \"%s.%s\" cannot be written while opsflags maintenance mode is on.",
					   nspname, get_rel_name(relid)),
			 errhint("An administrator ends it with SELECT opsflags.set_maintenance_mode(false).")));
}

static void
maintenance_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;

	if (stmt->resultRelations != NIL &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY) &&
		maintenance_is_on())
	{
		ListCell   *lc;

		foreach(lc, stmt->resultRelations)
		{
			RangeTblEntry *rte = rt_fetch(lfirst_int(lc), stmt->rtable);

			if (rte->rtekind == RTE_RELATION)
				maintenance_check_write(rte->relid);
		}
	}

	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
maintenance_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						   bool readOnlyTree, ProcessUtilityContext context,
						   ParamListInfo params, QueryEnvironment *queryEnv,
						   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, TransactionStmt))
	{
		TransactionStmt *ts = (TransactionStmt *) parsetree;

		if ((ts->kind == TRANS_STMT_PREPARE || ts->kind == TRANS_STMT_COMMIT_PREPARED) &&
			maintenance_is_on() && !role_is_exempt())
		{
			if (ts->kind == TRANS_STMT_PREPARE)
				ereport(ERROR,
						(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						 errmsg("maintenance mode is on: PREPARE TRANSACTION is refused"),
						 errdetail("A transaction prepared now could make its writes visible while opsflags maintenance mode is on."),
						 errhint("Roll the transaction back; an administrator ends maintenance mode with SELECT opsflags.set_maintenance_mode(false).")));
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("maintenance mode is on: COMMIT PREPARED is refused"),
					 errdetail("Prepared transaction \"%s\" cannot be committed while opsflags maintenance mode is on.",
							   ts->gid),
					 errhint("ROLLBACK PREPARED is allowed; a superuser or a member of opsflags.maintenance_exempt_roles may commit it.")));
		}
	}
	else if (IsA(parsetree, RefreshMatViewStmt) && maintenance_is_on())
	{
		Oid			relid = RangeVarGetRelid(((RefreshMatViewStmt *) parsetree)->relation,
											 NoLock, true);

		if (OidIsValid(relid))
			maintenance_check_write(relid);
	}
	else if ((IsA(parsetree, TruncateStmt) ||
		 (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->is_from &&
		  ((CopyStmt *) parsetree)->relation != NULL)) &&
		maintenance_is_on())
	{
		List	   *relations;
		ListCell   *lc;

		if (IsA(parsetree, TruncateStmt))
			relations = ((TruncateStmt *) parsetree)->relations;
		else
			relations = list_make1(((CopyStmt *) parsetree)->relation);
		foreach(lc, relations)
		{
			Oid			relid = RangeVarGetRelid((RangeVar *) lfirst(lc), NoLock, true);

			if (OidIsValid(relid))
				maintenance_check_write(relid);
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* ---------- SQL-callable ---------- */

/*
 * Trigger on app_config (row-level, and TRUNCATE): note that this
 * transaction changed the maintenance key.
 */
Datum
opsflags_maintenance_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("maintenance_config_changed() must be called as a trigger")));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		maintenance_touched = true;
	else
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		HeapTuple	tuples[2] = {td->tg_trigtuple, td->tg_newtuple};
		int			i;

		for (i = 0; i < 2; i++)
		{
			char	   *key;

			if (tuples[i] == NULL)
				continue;
			key = SPI_getvalue(tuples[i], desc, SPI_fnumber(desc, "config_key"));
			if (key != NULL && strcmp(key, MAINTENANCE_KEY) == 0)
				maintenance_touched = true;
		}
	}
	return PointerGetDatum(NULL);
}

/*
 * Event trigger on table_rewrite: an ALTER TABLE (a column type change, a
 * volatile default, ...) is about to rewrite every row of a table; refused
 * like any other write.
 */
Datum
opsflags_maintenance_table_rewrite(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("maintenance_table_rewrite() must be called as an event trigger")));

	if (strcmp(((EventTriggerData *) fcinfo->context)->event, "table_rewrite") == 0 &&
		maintenance_is_on())
		maintenance_check_write(DatumGetObjectId(OidFunctionCall0(F_PG_EVENT_TRIGGER_TABLE_REWRITE_OID)));
	PG_RETURN_NULL();
}

/* maintenance_enforced() -> boolean: is opsflags preloaded here? */
Datum
opsflags_maintenance_enforced(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(enforcement_loaded && maint != NULL);
}

static bool
check_exempt_roles(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid: give role names separated by commas.");
	list_free(names);
	pfree(raw);
	return ok;
}

void
opsflags_maintenance_init(void)
{
	DefineCustomStringVariable("opsflags.maintenance_exempt_roles",
							   "Roles that may write while maintenance mode is on (superusers always may).",
							   "A comma-separated list of role names; members of these roles are exempt too.",
							   &opsflags_maintenance_exempt_roles,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_exempt_roles,
							   NULL,
							   NULL);

	RegisterXactCallback(maintenance_xact_callback, NULL);

	/* Enforcement needs shared memory, hence shared_preload_libraries. */
	if (!process_shared_preload_libraries_in_progress)
		return;
	enforcement_loaded = true;

	opsflags_shmem_register(sizeof(MaintenanceShared), NULL, maintenance_shmem_attach);
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = maintenance_ExecutorStart;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = maintenance_ProcessUtility;
}
