/*
 * cache.c
 *	  What opsflags' per-backend caches (flags, configuration) share: the
 *	  trigger that queues a relcache invalidation of a changed table, taking
 *	  in other sessions' invalidations once per statement, the snapshot that
 *	  cache loads read with, and finding the extension's tables, their owner
 *	  and whether the current user administers them.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_invalidate_flag_cache);

static TimestampTz last_statement_start = 0;

/*
 * Trigger (row-level, and statement-level for TRUNCATE) on a cached table:
 * queue a relcache invalidation of it.  PostgreSQL applies it in this
 * backend at the end of the statement (and again, to undo, on rollback) and
 * sends it to every other backend at commit, where the caches' relcache
 * callbacks mark them stale.  Repeats within a command are merged, so a row
 * trigger costs little more than a statement trigger; it has to be a row
 * trigger because logical replication apply fires only those.
 */
Datum
opsflags_invalidate_flag_cache(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("invalidate_cache() must be called as a trigger")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/*
 * Take in other sessions' committed changes, once per statement: a
 * committed change is seen by the next statement, and one statement sees
 * one state.
 */
void
opsflags_accept_invalidations(void)
{
	TimestampTz stmt_start = GetCurrentStatementStartTimestamp();

	if (stmt_start != last_statement_start)
	{
		last_statement_start = stmt_start;
		AcceptInvalidationMessages();
	}
}

/*
 * The snapshot cache loads read with: the latest one, taken after the stale
 * mark was cleared, so a load never brings back data older than an
 * invalidation already received.  A parallel leader cannot take a new
 * snapshot and uses the statement's.
 */
Snapshot
opsflags_cache_snapshot(void)
{
	return IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot();
}

/* OID of table opsflags.<relname>, InvalidOid when absent. */
Oid
opsflags_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid("opsflags", true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/* Owner of a relation, InvalidOid when it does not exist. */
Oid
opsflags_rel_owner(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Does the current user administer opsflags: a superuser, the owner of its
 * tables (owner_hint, if known), or a member of opsflags_admin?
 */
bool
opsflags_is_admin(Oid owner_hint)
{
	Oid			user = GetUserId();
	Oid			admin;

	if (superuser_arg(user))
		return true;
	if (OidIsValid(owner_hint) && has_privs_of_role(user, owner_hint))
		return true;
	admin = get_role_oid("opsflags_admin", true);
	return OidIsValid(admin) && has_privs_of_role(user, admin);
}
