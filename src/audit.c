/*
 * audit.c
 *	  The audit trail: audit_trigger(), the one trigger that records a row
 *	  change (old and new images, actor, role, client, transaction) in
 *	  opsflags.audit_log for the extension's tables and any application
 *	  table given to audit_table(); the guard that keeps audit_log
 *	  append-only; and purge_audit_log(), the one way rows leave it.
 *
 * audit_trigger(resource_type [, id_column [, redact_column, when_column]])
 *	  resource_type  what the row is ('feature_flag', 'config', a table name)
 *	  id_column      column naming the resource; '' or absent: the primary key
 *	  redact_column  column replaced by "[REDACTED]" in both images ...
 *	  when_column    ... when this boolean column is true in either image
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_audit_trigger);
PG_FUNCTION_INFO_V1(opsflags_audit_log_guard);
PG_FUNCTION_INFO_V1(opsflags_purge_audit_log);

/* Set only while purge_audit_log() deletes: the guard lets those through. */
static bool purge_in_progress = false;

static OpsQuery insert_query = {
	.sql =
	"INSERT INTO opsflags.audit_log (actor, role, action, resource_type, resource_id, "
	"  table_name, old_values, new_values, client_addr, application_name, txid) "
	"VALUES ($1, $2, $3, $4, $5, $6, "
	"  CASE WHEN $9 THEN pg_catalog.jsonb_set($7::pg_catalog.jsonb, ARRAY[$10], '\"[REDACTED]\"') "
	"       ELSE $7::pg_catalog.jsonb END, "
	"  CASE WHEN $9 THEN pg_catalog.jsonb_set($8::pg_catalog.jsonb, ARRAY[$10], '\"[REDACTED]\"') "
	"       ELSE $8::pg_catalog.jsonb END, "
	"  pg_catalog.inet_client_addr(), pg_catalog.current_setting('application_name'), "
	"  pg_catalog.txid_current())",
	.nargs = 10,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	BOOLOID, TEXTOID},
	.writes = true,
};

static OpsQuery purge_query = {
	.sql = "DELETE FROM opsflags.audit_log WHERE occurred_at OPERATOR(pg_catalog.<) $1",
	.nargs = 1,
	.argtypes = {TIMESTAMPTZOID},
	.writes = true,
};

/* Row image as JSON text. */
static char *
row_image(HeapTuple tuple, TupleDesc desc)
{
	Datum		record = heap_copy_tuple_as_datum(tuple, desc);

	return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(row_to_json, record)));
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
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
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

/* Insert one audit row as the owner of audit_log. */
static void
audit_insert(const char *action, const char *resource_type, const char *resource_id,
			 const char *table_name, const char *old_values, const char *new_values,
			 bool redact, const char *redact_column)
{
	Datum		values[10];
	char		nulls[10];
	Oid			owner = opsflags_rel_owner(opsflags_relid("audit_log"));
	int			i;

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags.audit_log not found")));

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
	values[1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[2] = CStringGetTextDatum(action);
	values[3] = CStringGetTextDatum(resource_type);
	values[4] = resource_id ? CStringGetTextDatum(resource_id) : (Datum) 0;
	values[5] = table_name ? CStringGetTextDatum(table_name) : (Datum) 0;
	values[6] = old_values ? CStringGetTextDatum(old_values) : (Datum) 0;
	values[7] = new_values ? CStringGetTextDatum(new_values) : (Datum) 0;
	values[8] = BoolGetDatum(redact);
	values[9] = CStringGetTextDatum(redact_column ? redact_column : "");
	for (i = 4; i < 8; i++)
		if (values[i] == (Datum) 0)
			nulls[i] = 'n';

	opsflags_spi_begin(owner);
	opsflags_spi_run(&insert_query, values, nulls, InvalidSnapshot, 0);
	opsflags_spi_end();
}

/*
 * AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW, or AFTER TRUNCATE FOR EACH
 * STATEMENT: record the change.
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
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	char	   *table_name;
	char	   *resource_id = NULL;
	bool		redact = false;

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
	if (tg->tgnargs > 3)
	{
		redact_column = tg->tgargs[2];
		when_column = tg->tgargs[3];
	}

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		audit_insert("TRUNCATE", resource_type, NULL, table_name, NULL, NULL, false, NULL);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_trigger() must be fired FOR EACH ROW, or FOR EACH STATEMENT on TRUNCATE")));

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

	audit_insert(action, resource_type, resource_id, table_name,
				 oldtup ? row_image(oldtup, RelationGetDescr(rel)) : NULL,
				 newtup ? row_image(newtup, RelationGetDescr(rel)) : NULL,
				 redact, redact_column);
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
		opsflags_spi_begin(owner);
		opsflags_spi_run(&purge_query, values, NULL, InvalidSnapshot, 0);
		deleted = SPI_processed;
		opsflags_spi_end();
	}
	PG_FINALLY();
	{
		purge_in_progress = false;
	}
	PG_END_TRY();

	detail = psprintf("{\"before\": \"%s\", \"deleted\": " UINT64_FORMAT "}",
					  timestamptz_to_str(before), deleted);
	audit_insert("PURGE", "audit_log", NULL, "opsflags.audit_log", NULL, detail, false, NULL);
	PG_RETURN_INT64((int64) deleted);
}
