/*
 * restore.c
 *	  Telling a restore from a change.  pg_restore and the scripts of pg_dump
 *	  and pg_dumpall load each table with COPY ... FROM stdin after CREATE
 *	  EXTENSION has created the triggers, and they set nothing that a
 *	  trigger could look at.  What they do have in common is the command:
 *	  a COPY FROM into the table, run by a role that owns it.  Such a role
 *	  may disable the table's triggers anyway, so loading its rows as they
 *	  are gives it no power it did not have.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/portal.h"
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class.h"
#endif

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_restoring);

/*
 * restoring(regclass) -> boolean: true while the running top-level command
 * is a COPY FROM into that table by a role with the privileges of its owner.
 */
Datum
opsflags_restoring(PG_FUNCTION_ARGS)
{
	Oid			relid;
	PlannedStmt *stmt;
	CopyStmt   *copy;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	relid = PG_GETARG_OID(0);

	/* The command the client sent, not one run inside a function. */
	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY ||
		list_length(ActivePortal->stmts) != 1)
		PG_RETURN_BOOL(false);
	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->commandType != CMD_UTILITY || stmt->utilityStmt == NULL ||
		!IsA(stmt->utilityStmt, CopyStmt))
		PG_RETURN_BOOL(false);
	copy = (CopyStmt *) stmt->utilityStmt;
	if (!copy->is_from || copy->relation == NULL)
		PG_RETURN_BOOL(false);

	/* The COPY already holds its lock on the table it names. */
	if (RangeVarGetRelid(copy->relation, NoLock, true) != relid)
		PG_RETURN_BOOL(false);

#if PG_VERSION_NUM >= 160000
	PG_RETURN_BOOL(object_ownercheck(RelationRelationId, relid, GetUserId()));
#else
	PG_RETURN_BOOL(pg_class_ownercheck(relid, GetUserId()));
#endif
}
