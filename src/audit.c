/*
 * audit.c
 *	  The audit trail: audit_trigger(), the one trigger that records a row
 *	  change (old and new images, actor, role, client, transaction) in
 *	  opsflags.audit_log for the extension's tables and any application
 *	  table given to audit_table(); the guard that keeps audit_log
 *	  append-only; purge_audit_log(), the one way rows leave it; and the
 *	  two functions audit_log's row security policy asks who reads what.
 *
 * Rows are not inserted one by one: the row trigger appends the change to a
 * per-transaction buffer, and the same function fired FOR EACH STATEMENT
 * (after the statement's row triggers) writes the buffer, straight into the
 * table and its indexes.
 * So a statement's audit rows are in audit_log when the statement ends.
 * A buffer that grows past AUDIT_FLUSH_ROWS is written early (when that is
 * safe, see audit_flush); rows of an aborted subtransaction are dropped;
 * anything left (say, a statement trigger was dropped) is written before
 * commit.
 *
 * An UPDATE that leaves the row's image as it was (UPDATE t SET x = x) is
 * not recorded: it changes nothing an auditor could see, and a job that
 * rewrites unchanged rows would otherwise grow the log by a row each time.
 * The triggers are ENABLE ALWAYS, so writes under session_replication_role
 * = replica are recorded too; changes applied by a logical replication
 * worker are not (they were recorded where they were made).
 *
 * audit_table_rewrite(), an event trigger on table_rewrite, records an ALTER
 * TABLE that rewrites an audited table (a column type change, with or
 * without USING, a volatile default, ...) as one REWRITE row: the rows'
 * values change without row triggers firing, so the log at least says who
 * rewrote which table, when, why, and the column types after it.
 *
 * audit_trigger(resource_type [, id_column [, redact_column, when_column
 *				  [, tenant_column]]])
 *	  resource_type  what the row is ('feature_flag', 'config', a table name)
 *	  id_column      column naming the resource; '' or absent: the primary key
 *	  redact_column  column replaced by "[REDACTED]" in both images ...
 *	  when_column    ... when this boolean column is true in either image
 *					 ('' or absent, both: nothing redacted)
 *	  tenant_column  column holding the row's tenant, recorded as text in
 *					 audit_log.tenant; '' or absent: no tenant
 *
 * An UPDATE that moves a row to another tenant is recorded twice, once with
 * the old tenant and once with the new one, so that the admins of both
 * tenants see it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "replication/logicalworker.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_audit_trigger);
PG_FUNCTION_INFO_V1(opsflags_audit_log_guard);
PG_FUNCTION_INFO_V1(opsflags_purge_audit_log);
PG_FUNCTION_INFO_V1(opsflags_audit_table_rewrite);
PG_FUNCTION_INFO_V1(opsflags_audit_links_tables);
PG_FUNCTION_INFO_V1(opsflags_audit_reads_all);
PG_FUNCTION_INFO_V1(opsflags_audit_reader_tenants);

/* Set only while purge_audit_log() deletes: the guard lets those through. */
static bool purge_in_progress = false;

/* One buffered change. */
typedef struct AuditRow
{
	SubTransactionId subid;		/* subtransaction that made the change */
	TimestampTz occurred_at;
	char	   *role;
	const char *action;
	char	   *resource_type;
	char	   *resource_id;
	char	   *table_name;
	char	   *tenant;
	Jsonb	   *old_values;		/* row images */
	Jsonb	   *new_values;
} AuditRow;

#define AUDIT_FLUSH_ROWS 10000

static MemoryContext AuditBufferContext = NULL;
static AuditRow *audit_rows = NULL;
static int	audit_nrows = 0;
static int	audit_maxrows = 0;
static int	audit_flush_at = AUDIT_FLUSH_ROWS;	/* buffer size that triggers a write */
static bool audit_callbacks_registered = false;
static Oid	audit_last_userid = InvalidOid;	/* role of the last buffered row */

/* What every row of one flush shares. */
static OpsQuery session_query = {
	.sql =
	"SELECT pg_catalog.inet_client_addr(), pg_catalog.current_setting('application_name'), "
	"       pg_catalog.txid_current()",
	.nargs = 0,
};

/* audit_log's columns, in the order audit_flush fills them. */
static const char *const audit_columns[] = {
	"id", "occurred_at", "actor", "role", "action", "resource_type", "resource_id",
	"table_name", "old_values", "new_values", "client_addr", "application_name", "txid"
};
#define AUDIT_NCOLUMNS lengthof(audit_columns)

/*
 * The tenants whose audit rows the current role reads: those of
 * tenant_admins rows naming a role it is a member of.
 */
static OpsQuery reader_tenants_query = {
	.sql =
	"SELECT COALESCE(pg_catalog.array_agg(DISTINCT t.tenant ORDER BY t.tenant), '{}'::pg_catalog.text[]) "
	"FROM opsflags.tenant_admins t "
	"WHERE pg_catalog.pg_has_role($1, t.role::pg_catalog.oid, 'MEMBER')",
	.nargs = 1,
	.argtypes = {OIDOID},
};

static OpsQuery purge_query = {
	.sql = "DELETE FROM opsflags.audit_log WHERE occurred_at OPERATOR(pg_catalog.<) $1",
	.nargs = 1,
	.argtypes = {TIMESTAMPTZOID},
	.writes = true,
};

/*
 * Row image as jsonb: to_jsonb(record), which reads the row type from its
 * call expression, so it is called through an FmgrInfo that carries one.
 * The FmgrInfo and its expression live in a context of their own, emptied
 * whenever the row type changes (a session auditing several tables changes
 * it all the time), so that nothing of the previous one is left behind.
 */
static Jsonb *
row_image(HeapTuple tuple, TupleDesc desc)
{
	static FmgrInfo flinfo;
	static Oid	flinfo_type = InvalidOid;
	static int32 flinfo_typmod = -1;
	static MemoryContext flinfo_cxt = NULL;

	if (flinfo_type != desc->tdtypeid || flinfo_typmod != desc->tdtypmod)
	{
		MemoryContext old;

		if (flinfo_cxt == NULL)
			flinfo_cxt = AllocSetContextCreate(CacheMemoryContext,
											   "opsflags audit row image",
											   ALLOCSET_SMALL_SIZES);
		flinfo_type = InvalidOid;	/* until rebuilt, should this fail */
		MemoryContextReset(flinfo_cxt);
		old = MemoryContextSwitchTo(flinfo_cxt);
		fmgr_info_cxt(F_TO_JSONB, &flinfo, flinfo_cxt);
		fmgr_info_set_expr((Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
												 list_make1(makeNullConst(desc->tdtypeid,
																		  desc->tdtypmod,
																		  InvalidOid)),
												 InvalidOid, InvalidOid,
												 COERCE_EXPLICIT_CALL),
						   &flinfo);
		flinfo_type = desc->tdtypeid;
		flinfo_typmod = desc->tdtypmod;
		MemoryContextSwitchTo(old);
	}
	return DatumGetJsonbP(FunctionCall1(&flinfo, heap_copy_tuple_as_datum(tuple, desc)));
}

/* Text of column colname, or NULL (absent column or SQL NULL). */
static char *
column_text(Relation rel, HeapTuple tuple, const char *colname)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), colname);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						colname, RelationGetRelationName(rel))));
	return SPI_getvalue(tuple, RelationGetDescr(rel), attnum);
}

/* The primary key's values, comma-separated; NULL without a primary key. */
static char *
primary_key_text(Relation rel, HeapTuple tuple)
{
#if PG_VERSION_NUM >= 180000
	/* false: not a deferrable one, which had no rd_pkindex before 18 */
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel, false);
#else
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
#endif
	Relation	idx;
	StringInfoData buf;
	int			i;

	if (!OidIsValid(pkoid))
		return NULL;
	idx = RelationIdGetRelation(pkoid);
	initStringInfo(&buf);
	for (i = 0; i < idx->rd_index->indnkeyatts; i++)
	{
		char	   *v = SPI_getvalue(tuple, RelationGetDescr(rel), idx->rd_index->indkey.values[i]);

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, v ? v : "");
	}
	RelationClose(idx);
	return buf.data;
}

static bool
column_true(Relation rel, HeapTuple tuple, const char *colname)
{
	char	   *v;

	if (tuple == NULL)
		return false;
	v = column_text(rel, tuple, colname);
	return v != NULL && strcmp(v, "t") == 0;
}

/*
 * Where a trigger finds its tenant column: looked up on the statement's
 * first row and kept in the trigger function's fn_extra, which lives as long
 * as the statement (the table cannot be altered meanwhile).
 */
typedef struct TenantColumn
{
	Oid			tgoid;			/* the trigger ... */
	Oid			relid;			/* ... on this table */
	AttrNumber	attnum;
	FmgrInfo	output;			/* the column type's output function */
} TenantColumn;

/*
 * Text of the tenant column colname of the row, or NULL.  The column is
 * found by name in the relation's own catalog entry (a syscache lookup, no
 * query): children and partitions have it at their own position, and a
 * renamed or dropped column is an error rather than a row without tenant.
 */
static char *
tenant_text(FunctionCallInfo fcinfo, Relation rel, Trigger *tg, HeapTuple tuple,
			const char *colname)
{
	TenantColumn *tc = (TenantColumn *) fcinfo->flinfo->fn_extra;
	Datum		value;
	bool		isnull;

	if (tc == NULL || tc->tgoid != tg->tgoid || tc->relid != RelationGetRelid(rel))
	{
		AttrNumber	attnum = get_attnum(RelationGetRelid(rel), colname);
		Oid			typoutput;
		bool		typisvarlena;

		if (attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("tenant column \"%s\" of relation \"%s\" does not exist",
							colname, RelationGetRelationName(rel)),
					 errhint("Call opsflags.audit_table() again with the tenant column's new name.")));
		if (tc == NULL)
			tc = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TenantColumn));
		tc->tgoid = InvalidOid;	/* until filled, should this fail */
		getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid,
						  &typoutput, &typisvarlena);
		fmgr_info_cxt(typoutput, &tc->output, fcinfo->flinfo->fn_mcxt);
		tc->attnum = attnum;
		tc->relid = RelationGetRelid(rel);
		tc->tgoid = tg->tgoid;
		fcinfo->flinfo->fn_extra = tc;
	}
	value = heap_getattr(tuple, tc->attnum, RelationGetDescr(rel), &isnull);
	return isnull ? NULL : OutputFunctionCall(&tc->output, value);
}

/*
 * Write the buffered rows into audit_log.  They go straight into the heap
 * and its indexes, the way COPY does, rather than through an INSERT per
 * row: that is what makes the C trigger cheap.  audit_log has no INSERT
 * triggers, constraints beyond NOT NULL (every column that has one is
 * filled here) or row security policy but for reading; privileges are not
 * checked, since only this code writes it: the writing role needs no right
 * on audit_log.
 *
 * Only when every row was made in the current subtransaction or one of its
 * committed children: rows of an outer level written here would vanish if
 * this subtransaction rolled back.  Those wait for a flush at their level,
 * at the latest before commit.
 */
static bool
audit_flush(void)
{
	SubTransactionId current = GetCurrentSubTransactionId();
	Oid			relid;
	Oid			seqid;
	Relation	rel;
	TupleDesc	desc;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	AttrNumber	attnums[AUDIT_NCOLUMNS];
	AttrNumber	tenant_attnum;
	Datum		client_addr;
	bool		client_addr_null;
	Datum		application_name;
	Datum		txid;
	Datum		actor;
	OpsSpiState spi;
	bool		isnull;
	CommandId	cid;
	int			i;
	int			nrows = audit_nrows;

	for (i = 0; i < audit_nrows; i++)
		if (audit_rows[i].subid < current)
			return false;
	if (audit_nrows == 0)
		return true;

	relid = opsflags_relid("audit_log");
	seqid = opsflags_relid("audit_log_id_seq");
	if (!OidIsValid(relid) || !OidIsValid(seqid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags.audit_log not found")));

	/* Empty the buffer first: a failing write fails the transaction anyway. */
	audit_nrows = 0;

	opsflags_spi_begin(&spi, InvalidOid);
	opsflags_spi_run(&session_query, NULL, NULL, InvalidSnapshot, 1);
	client_addr = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &client_addr_null);
	if (!client_addr_null)
		client_addr = SPI_datumTransfer(client_addr, false, -1);
	application_name = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													   2, &isnull), false, -1);
	txid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	opsflags_spi_end(&spi);
	actor = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));

	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	for (i = 0; i < (int) AUDIT_NCOLUMNS; i++)
	{
		attnums[i] = SPI_fnumber(desc, audit_columns[i]);
		if (attnums[i] <= 0)
			elog(ERROR, "column \"%s\" of opsflags.audit_log not found", audit_columns[i]);
	}
	/* Absent until the extension is updated to 0.6.0: no trigger names a tenant then. */
	tenant_attnum = SPI_fnumber(desc, "tenant");

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = table_slot_create(rel, NULL);
	cid = GetCurrentCommandId(true);

	for (i = 0; i < nrows; i++)
	{
		AuditRow   *r = &audit_rows[i];
		Datum		v[AUDIT_NCOLUMNS];
		bool		n[AUDIT_NCOLUMNS];
		int			c;

		memset(n, false, sizeof(n));
		v[0] = Int64GetDatum(nextval_internal(seqid, false));
		v[1] = TimestampTzGetDatum(r->occurred_at);
		v[2] = actor;
		v[3] = CStringGetTextDatum(r->role);
		v[4] = CStringGetTextDatum(r->action);
		v[5] = CStringGetTextDatum(r->resource_type);
		v[6] = r->resource_id ? CStringGetTextDatum(r->resource_id) : (Datum) 0;
		n[6] = r->resource_id == NULL;
		v[7] = CStringGetTextDatum(r->table_name);
		v[8] = PointerGetDatum(r->old_values);
		n[8] = r->old_values == NULL;
		v[9] = PointerGetDatum(r->new_values);
		n[9] = r->new_values == NULL;
		v[10] = client_addr;
		n[10] = client_addr_null;
		v[11] = application_name;
		v[12] = txid;

		ExecClearTuple(slot);
		for (c = 0; c < desc->natts; c++)
			slot->tts_isnull[c] = true;
		for (c = 0; c < (int) AUDIT_NCOLUMNS; c++)
		{
			slot->tts_values[attnums[c] - 1] = v[c];
			slot->tts_isnull[attnums[c] - 1] = n[c];
		}
		if (tenant_attnum > 0 && r->tenant != NULL)
		{
			slot->tts_values[tenant_attnum - 1] = CStringGetTextDatum(r->tenant);
			slot->tts_isnull[tenant_attnum - 1] = false;
		}
		ExecStoreVirtualTuple(slot);
		table_tuple_insert(rel, slot, cid, 0, NULL);
#if PG_VERSION_NUM >= 160000
		ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
		ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
		ResetPerTupleExprContext(estate);
	}

	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);

	MemoryContextReset(AuditBufferContext);
	audit_rows = NULL;
	audit_maxrows = 0;
	audit_flush_at = AUDIT_FLUSH_ROWS;
	return true;
}

static void
audit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (audit_nrows > 0)
			{
				PushActiveSnapshot(GetTransactionSnapshot());
				audit_flush();
				PopActiveSnapshot();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* The buffer's context was a child of TopTransactionContext. */
			AuditBufferContext = NULL;
			audit_rows = NULL;
			audit_nrows = 0;
			audit_maxrows = 0;
			audit_flush_at = AUDIT_FLUSH_ROWS;
			break;
		default:
			break;
	}
}

/* Rows made in an aborted subtransaction (or its children) never happened. */
static void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (audit_nrows > 0 && audit_rows[audit_nrows - 1].subid >= mySubid)
			audit_nrows--;
	}
}

/*
 * A copy of a row image in the current memory context, with the value of
 * column redact_column (if not NULL) replaced by "[REDACTED]".
 */
static Jsonb *
redacted_copy(Jsonb *image, const char *redact_column)
{
	Datum		path;
	Datum		elem;

	if (redact_column == NULL)
		return (Jsonb *) datumCopy(PointerGetDatum(image), false, -1);

	elem = CStringGetTextDatum(redact_column);
	path = PointerGetDatum(construct_array(&elem, 1, TEXTOID, -1, false, TYPALIGN_INT));
	return DatumGetJsonbPCopy(DirectFunctionCall4(jsonb_set, PointerGetDatum(image), path,
												  DirectFunctionCall1(jsonb_in,
																	  CStringGetDatum("\"[REDACTED]\"")),
												  BoolGetDatum(false)));
}

/* Append one change to the buffer (strings and images are copied into it). */
static void
audit_buffer(const char *action, const char *resource_type, const char *resource_id,
			 const char *table_name, const char *tenant, Jsonb *old_values, Jsonb *new_values,
			 const char *redact_column)
{
	MemoryContext old;
	AuditRow   *r;

	if (!audit_callbacks_registered)
	{
		RegisterXactCallback(audit_xact_callback, NULL);
		RegisterSubXactCallback(audit_subxact_callback, NULL);
		audit_callbacks_registered = true;
	}
	if (AuditBufferContext == NULL)
		AuditBufferContext = AllocSetContextCreate(TopTransactionContext,
												   "opsflags audit buffer",
												   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(AuditBufferContext);
	if (audit_nrows == audit_maxrows)
	{
		audit_maxrows = audit_maxrows == 0 ? 64 : audit_maxrows * 2;
		audit_rows = audit_rows == NULL ? palloc(sizeof(AuditRow) * audit_maxrows)
			: repalloc(audit_rows, sizeof(AuditRow) * audit_maxrows);
	}
	r = &audit_rows[audit_nrows++];
	r->subid = GetCurrentSubTransactionId();
	r->occurred_at = GetCurrentTimestamp();
	/* Consecutive rows mostly share the role, table and resource type. */
	if (audit_nrows > 1 && audit_last_userid == GetUserId())
		r->role = audit_rows[audit_nrows - 2].role;
	else
	{
		audit_last_userid = GetUserId();
		r->role = GetUserNameFromId(audit_last_userid, false);
	}
	r->action = action;
	if (audit_nrows > 1 && strcmp(audit_rows[audit_nrows - 2].table_name, table_name) == 0 &&
		strcmp(audit_rows[audit_nrows - 2].resource_type, resource_type) == 0)
	{
		r->table_name = audit_rows[audit_nrows - 2].table_name;
		r->resource_type = audit_rows[audit_nrows - 2].resource_type;
	}
	else
	{
		r->table_name = pstrdup(table_name);
		r->resource_type = pstrdup(resource_type);
	}
	r->resource_id = resource_id ? pstrdup(resource_id) : NULL;
	r->tenant = tenant ? pstrdup(tenant) : NULL;
	r->old_values = old_values ? redacted_copy(old_values, redact_column) : NULL;
	r->new_values = new_values ? redacted_copy(new_values, redact_column) : NULL;
	MemoryContextSwitchTo(old);

	/* Written early when it can be; if not, try again at twice the size. */
	if (audit_nrows >= audit_flush_at && !audit_flush())
		audit_flush_at = audit_nrows * 2;
}

/*
 * AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW: buffer the change.
 * AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT: record a
 * TRUNCATE, and write the buffer.
 */
Datum
opsflags_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Trigger    *tg;
	const char *action;
	const char *resource_type;
	const char *id_column = NULL;
	const char *redact_column = NULL;
	const char *when_column = NULL;
	const char *tenant_column = NULL;
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	char	   *table_name;
	char	   *resource_id = NULL;
	char	   *old_tenant = NULL;
	char	   *new_tenant = NULL;
	bool		redact = false;
	Jsonb	   *old_image;
	Jsonb	   *new_image;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_trigger() must be called as an AFTER trigger")));

	rel = td->tg_relation;
	tg = td->tg_trigger;
	table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	resource_type = tg->tgnargs > 0 ? tg->tgargs[0] : RelationGetRelationName(rel);
	if (tg->tgnargs > 1 && tg->tgargs[1][0] != '\0')
		id_column = tg->tgargs[1];
	if (tg->tgnargs > 3 && tg->tgargs[3][0] != '\0')
	{
		redact_column = tg->tgargs[2];
		when_column = tg->tgargs[3];
	}
	if (tg->tgnargs > 4 && tg->tgargs[4][0] != '\0')
		tenant_column = tg->tgargs[4];

	/* Replicated changes were audited on the node that made them. */
	if (IsLogicalWorker())
		return PointerGetDatum(NULL);

	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
			audit_buffer("TRUNCATE", resource_type, NULL, table_name, NULL, NULL, NULL, NULL);
		audit_flush();
		return PointerGetDatum(NULL);
	}

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		action = "INSERT";
		newtup = td->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		action = "UPDATE";
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
	}
	else
	{
		action = "DELETE";
		oldtup = td->tg_trigtuple;
	}

	if (id_column)
		resource_id = column_text(rel, newtup ? newtup : oldtup, id_column);
	else
		resource_id = primary_key_text(rel, newtup ? newtup : oldtup);
	if (when_column)
		redact = column_true(rel, oldtup, when_column) || column_true(rel, newtup, when_column);

	old_image = oldtup ? row_image(oldtup, RelationGetDescr(rel)) : NULL;
	new_image = newtup ? row_image(newtup, RelationGetDescr(rel)) : NULL;

	/*
	 * A no-op UPDATE: both images are the same bytes (jsonb is canonical,
	 * so this is "every column has the same text", numeric scale included).
	 */
	if (old_image != NULL && new_image != NULL &&
		VARSIZE(old_image) == VARSIZE(new_image) &&
		memcmp(old_image, new_image, VARSIZE(old_image)) == 0)
		return PointerGetDatum(NULL);

	if (tenant_column)
	{
		if (oldtup)
			old_tenant = tenant_text(fcinfo, rel, tg, oldtup, tenant_column);
		if (newtup)
			new_tenant = tenant_text(fcinfo, rel, tg, newtup, tenant_column);
	}
	/* A row moving to another tenant: first a row for the tenant it leaves. */
	if (oldtup && newtup && tenant_column &&
		(old_tenant == NULL ? new_tenant != NULL
		 : new_tenant == NULL || strcmp(old_tenant, new_tenant) != 0))
		audit_buffer(action, resource_type, resource_id, table_name, old_tenant,
					 old_image, new_image, redact ? redact_column : NULL);
	audit_buffer(action, resource_type, resource_id, table_name,
				 newtup ? new_tenant : old_tenant, old_image, new_image,
				 redact ? redact_column : NULL);
	return PointerGetDatum(NULL);
}

/* BEFORE UPDATE OR DELETE (row) and BEFORE TRUNCATE on audit_log. */
Datum
opsflags_audit_log_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_log_guard() must be called as a trigger")));

	if (purge_in_progress && TRIGGER_FIRED_BY_DELETE(td->tg_event))
		return PointerGetDatum(td->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("opsflags.audit_log is append-only"),
			 errhint("Old rows are removed with opsflags.purge_audit_log(before).")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}

/*
 * purge_audit_log(before timestamptz) -> bigint: delete audit rows older
 * than before (superusers only) and record the purge itself.
 */
Datum
opsflags_purge_audit_log(PG_FUNCTION_ARGS)
{
	TimestampTz before;
	Oid			owner;
	Datum		values[1];
	uint64		deleted;
	char	   *detail;
	Jsonb	   *detail_jsonb;
	OpsSpiState spi;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to purge the audit log"),
				 errdetail("Only superusers may purge the audit log.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("purge_audit_log() needs a cut-off time")));

	before = PG_GETARG_TIMESTAMPTZ(0);
	owner = opsflags_rel_owner(opsflags_relid("audit_log"));
	values[0] = TimestampTzGetDatum(before);

	purge_in_progress = true;
	PG_TRY();
	{
		opsflags_spi_begin(&spi, owner);
		opsflags_spi_run(&purge_query, values, NULL, InvalidSnapshot, 0);
		deleted = SPI_processed;
		opsflags_spi_end(&spi);
	}
	PG_FINALLY();
	{
		purge_in_progress = false;
	}
	PG_END_TRY();

	detail = psprintf("{\"before\": \"%s\", \"deleted\": " UINT64_FORMAT "}",
					  timestamptz_to_str(before), deleted);
	detail_jsonb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(detail)));
	audit_buffer("PURGE", "audit_log", NULL, "opsflags.audit_log", NULL, NULL, detail_jsonb, NULL);
	audit_flush();
	PG_RETURN_INT64((int64) deleted);
}

/*
 * Event trigger on table_rewrite: an ALTER TABLE is about to rewrite a
 * table's rows (its catalog already describes the new columns).  If the
 * table is audited, record one REWRITE row: resource_type as its audit
 * trigger says, new_values {"reason": [...], "columns": {name: type}}.
 */
Datum
opsflags_audit_table_rewrite(PG_FUNCTION_ARGS)
{
	static const struct
	{
		int			bit;
		const char *name;
	}			reasons[] = {
		{1, "persistence"},		/* SET LOGGED / UNLOGGED */
		{2, "default"},			/* a column added with a volatile default */
		{4, "column type"},		/* ALTER COLUMN TYPE, with or without USING */
		{8, "access method"},
	};
	Oid			relid;
	int			reason;
	Oid			trigfunc;
	Relation	rel;
	char	   *resource_type = NULL;
	char	   *table_name;
	StringInfoData buf;
	bool		first;
	int			i;
	AttrNumber	attnum;
	AttrNumber	natts;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_table_rewrite() must be called as an event trigger")));
	/*
	 * Not for the extension's own scripts: a row written while installing
	 * would be dumped with audit_log and collide with the one the restore's
	 * CREATE EXTENSION writes.
	 */
	if (strcmp(((EventTriggerData *) fcinfo->context)->event, "table_rewrite") != 0 ||
		IsLogicalWorker() || creating_extension)
		PG_RETURN_NULL();

	relid = DatumGetObjectId(OidFunctionCall0(F_PG_EVENT_TRIGGER_TABLE_REWRITE_OID));
	reason = DatumGetInt32(OidFunctionCall0(F_PG_EVENT_TRIGGER_TABLE_REWRITE_REASON));
	trigfunc = LookupFuncName(list_make2(makeString("opsflags"), makeString("audit_trigger")),
							  0, NULL, true);
	if (!OidIsValid(trigfunc))
		PG_RETURN_NULL();

	/* Audited: an enabled row trigger calling audit_trigger. */
	rel = table_open(relid, NoLock);	/* ALTER TABLE holds its lock */
	if (rel->trigdesc != NULL)
	{
		for (i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *tg = &rel->trigdesc->triggers[i];

			if (tg->tgfoid == trigfunc && TRIGGER_FOR_ROW(tg->tgtype) &&
				tg->tgenabled != TRIGGER_DISABLED)
			{
				resource_type = pstrdup(tg->tgnargs > 0 ? tg->tgargs[0] : RelationGetRelationName(rel));
				break;
			}
		}
	}
	table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	natts = rel->rd_rel->relnatts;
	table_close(rel, NoLock);
	if (resource_type == NULL)
		PG_RETURN_NULL();

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"reason\": [");
	first = true;
	for (i = 0; i < (int) lengthof(reasons); i++)
	{
		if ((reason & reasons[i].bit) == 0)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, reasons[i].name);
		first = false;
	}
	appendStringInfoString(&buf, "], \"columns\": {");
	first = true;
	for (attnum = 1; attnum <= natts; attnum++)
	{
		HeapTuple	atttup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
		Form_pg_attribute att;

		if (!HeapTupleIsValid(atttup))
			continue;
		att = (Form_pg_attribute) GETSTRUCT(atttup);
		if (!att->attisdropped)
		{
			if (!first)
				appendStringInfoString(&buf, ", ");
			escape_json(&buf, NameStr(att->attname));
			appendStringInfoString(&buf, ": ");
			escape_json(&buf, format_type_with_typemod(att->atttypid, att->atttypmod));
			first = false;
		}
		ReleaseSysCache(atttup);
	}
	appendStringInfoString(&buf, "}}");

	audit_buffer("REWRITE", resource_type, NULL, table_name, NULL, NULL,
				 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data))), NULL);
	audit_flush();
	PG_RETURN_NULL();
}

/*
 * audit_links_tables(pg_ddl_command) -> boolean, for audit_new_children():
 * does this command make a table a child or partition of another (CREATE
 * TABLE ... INHERITS / PARTITION OF, ALTER TABLE ... INHERIT / ATTACH
 * PARTITION)?  Other commands are left alone; in particular the ALTER TABLE
 * ... ENABLE ALWAYS TRIGGER of a restored dump, which must not attach
 * triggers that the dump creates a moment later.
 */
Datum
opsflags_audit_links_tables(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	Node	   *parsetree = cmd->parsetree;
	ListCell   *lc;

	if (parsetree == NULL)
		PG_RETURN_BOOL(false);
	if (IsA(parsetree, CreateStmt))
		PG_RETURN_BOOL(((CreateStmt *) parsetree)->inhRelations != NIL ||
					   ((CreateStmt *) parsetree)->partbound != NULL);
	if (IsA(parsetree, AlterTableStmt))
	{
		foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
		{
			AlterTableCmd *atc = lfirst_node(AlterTableCmd, lc);

			if (atc->subtype == AT_AddInherit || atc->subtype == AT_AttachPartition)
				PG_RETURN_BOOL(true);
		}
	}
	PG_RETURN_BOOL(false);
}

/*
 * audit_reads_all() -> boolean, for audit_log's row security policy: does
 * the current role read every audit row (a superuser, the owner of the
 * extension's tables or a member of opsflags_admin)?
 */
Datum
opsflags_audit_reads_all(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(opsflags_is_admin(opsflags_rel_owner(opsflags_relid("audit_log"))));
}

/*
 * audit_reader_tenants() -> text[], for audit_log's row security policy:
 * the tenants whose rows the current role reads, as a tenant admin or a
 * member of one.  C, so that it sees the role running the query (a SQL
 * SECURITY DEFINER function would see its owner), and reads tenant_admins
 * as the table's owner (the reader has no right on it).
 */
Datum
opsflags_audit_reader_tenants(PG_FUNCTION_ARGS)
{
	Oid			owner = opsflags_rel_owner(opsflags_relid("tenant_admins"));
	Datum		values[1];
	Datum		result;
	bool		isnull;
	OpsSpiState spi;

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags.tenant_admins not found")));
	values[0] = ObjectIdGetDatum(GetUserId());
	opsflags_spi_begin(&spi, owner);
	opsflags_spi_run(&reader_tenants_query, values, NULL, InvalidSnapshot, 1);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = SPI_datumTransfer(result, false, -1);
	opsflags_spi_end(&spi);
	PG_RETURN_DATUM(result);
}
