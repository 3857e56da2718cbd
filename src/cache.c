/*
 * cache.c
 *	  What opsflags' per-backend caches (flags, configuration) share: the
 *	  trigger on a changed table (per-flag invalidation, invalidation.c, and
 *	  a relcache invalidation), when a cache takes changes in and when to
 *	  empty it (other sessions' invalidations taken in once per statement
 *	  and applied at the next one), what a relcache invalidation of the flag
 *	  cache's tables means, the snapshot that cache loads read with, and
 *	  finding the extension's tables, their owner and whether the current
 *	  user administers them.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_invalidate_flag_cache);

static TimestampTz last_statement_start = 0;
static uint64 subxact_aborts = 0;	/* subtransactions rolled back so far */

/*
 * Trigger (row-level, and statement-level for TRUNCATE) on a cached table.
 * With shared memory, invalidation.c notes which flags or segments a row of
 * a flag table changes, for this backend's next command and, at commit,
 * for the other backends (per-flag invalidation), and the relcache
 * invalidation queued is that of the table's primary key: it empties no
 * cache and invalidates no plan on this server, but is written to WAL,
 * where standbys take it as the announcement of a change.  Otherwise (the
 * configuration table, no shared memory) it is that of the table, which
 * the caches' relcache callbacks take as one.  PostgreSQL applies it in
 * this backend at the end of the command (and again, to undo, on rollback)
 * and sends it to every other backend at commit.  Repeats within a command
 * are merged, so a row trigger costs little more than a statement trigger;
 * it has to be a row trigger because logical replication apply fires only
 * those.
 */
Datum
opsflags_invalidate_flag_cache(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			index = InvalidOid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("invalidate_flag_cache() must be called as a trigger")));

	if (opsflags_inval_record(trigdata))
#if PG_VERSION_NUM >= 180000
		index = RelationGetPrimaryKeyIndex(trigdata->tg_relation, false);
#else
		index = RelationGetPrimaryKeyIndex(trigdata->tg_relation);
#endif
	if (OidIsValid(index))
		CacheInvalidateRelcacheByRelid(index);
	else
		CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/* The backend's local transaction id: part of MyProc->vxid from PostgreSQL 17 on. */
#if PG_VERSION_NUM >= 170000
#define MY_LXID (MyProc->vxid.lxid)
#else
#define MY_LXID (MyProc->lxid)
#endif

/*
 * Called at the start of each lookup in a cache: is this the first lookup
 * of a new statement, transaction or command (a boundary), where the cache
 * may take in changes?
 *
 * Other sessions' committed changes are taken in once per statement (for
 * all caches at once), so a committed change is seen by the next
 * statement.  PostgreSQL also takes them in whenever a statement first
 * locks a table, a cache load's included, so they can arrive in the middle
 * of a statement: a cache applies them only at its next boundary, so that
 * one statement gets one answer per key (a key it had not read yet is
 * loaded afresh and may show the change).
 *
 * The transaction's own changes are seen at once: PostgreSQL applies their
 * invalidations in this backend at a command boundary, and undoes them when
 * a subtransaction rolls back (in the middle of a statement too, say in a
 * PL/pgSQL exception block) without starting a new command, which counts
 * as a boundary here.
 *
 * This runs on every cache hit: a few comparisons, no allocation.
 */
bool
opsflags_cache_boundary(OpsCacheSync *sync)
{
	TimestampTz stmt_start = GetCurrentStatementStartTimestamp();
	CommandId	cid;

	if (unlikely(stmt_start != last_statement_start))
	{
		last_statement_start = stmt_start;
		AcceptInvalidationMessages();
	}

	cid = GetCurrentCommandId(false);
	if (likely(stmt_start == sync->stmt_start && cid == sync->cid &&
			   MY_LXID == sync->lxid && subxact_aborts == sync->subxact_aborts))
		return false;
	sync->stmt_start = stmt_start;
	sync->cid = cid;
	sync->lxid = MY_LXID;
	sync->subxact_aborts = subxact_aborts;
	return true;
}

/*
 * For a cache emptied whole on invalidation: should it be emptied before
 * this lookup?  At a boundary if invalidated (stale); at once if reset_now
 * (set by the cache itself).
 */
bool
opsflags_cache_check(OpsCacheSync *sync)
{
	if (opsflags_cache_boundary(sync))
		return sync->stale || sync->reset_now;
	return sync->reset_now;
}

/* ---------- the flag cache's tables: what their invalidations mean ---------- */

/*
 * The tables the flag cache reads, whose relcache invalidations announce
 * DDL (and VACUUM, ANALYZE), and their primary keys, whose invalidations
 * announce changes to their rows (the trigger above).
 */
#define FLAG_TABLES 5
static const char *const flag_table_names[FLAG_TABLES] = {
	"feature_flags", "feature_flag_configs", "environments", "user_segments", "flag_prerequisites"
};
static Oid	flag_table_oids[FLAG_TABLES];
static Oid	flag_index_oids[FLAG_TABLES];
static uint64 tables_signature; /* their definitions (tables_signature_now) */
static bool tables_changed = false; /* a table's invalidation came */
static bool rows_changed = false;	/* a primary key's invalidation came */

static void
tables_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid)
		tables_changed = rows_changed = true;
	for (i = 0; i < FLAG_TABLES; i++)
	{
		if (relid == flag_table_oids[i])
			tables_changed = true;
		else if (relid == flag_index_oids[i])
			rows_changed = true;
	}
}

/*
 * What the tables are (name, schema, owner, file, columns): DDL changes
 * it, VACUUM and ANALYZE (which also send relcache invalidations) do not.
 */
static uint64
tables_signature_now(void)
{
	uint64		sig = 0;
	int			i;

	for (i = 0; i < FLAG_TABLES; i++)
	{
		Oid			relid = opsflags_relid(flag_table_names[i]);
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		Form_pg_class cls;
		AttrNumber	att;

		sig = hash_combine64(sig, relid);
		if (!HeapTupleIsValid(tup))
			continue;
		cls = (Form_pg_class) GETSTRUCT(tup);
		sig = hash_combine64(sig, hash_bytes((const unsigned char *) NameStr(cls->relname),
											 strlen(NameStr(cls->relname))));
		sig = hash_combine64(sig, ((uint64) cls->relnamespace << 32) | cls->relowner);
		sig = hash_combine64(sig, ((uint64) cls->relfilenode << 32) | (uint32) cls->relnatts);
		for (att = 1; att <= cls->relnatts; att++)
		{
			HeapTuple	atup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(att));
			Form_pg_attribute a;

			if (!HeapTupleIsValid(atup))
				continue;
			a = (Form_pg_attribute) GETSTRUCT(atup);
			sig = hash_combine64(sig, hash_bytes((const unsigned char *) NameStr(a->attname),
												 strlen(NameStr(a->attname))));
			sig = hash_combine64(sig, ((uint64) a->atttypid << 1) | a->attisdropped);
			ReleaseSysCache(atup);
		}
		ReleaseSysCache(tup);
	}
	return sig;
}

/*
 * The primary key of a table, InvalidOid if none (or no table), from
 * pg_index: locking the table could wait on a writer.
 */
static Oid
table_primary_key(Oid relid)
{
	Relation	pg_index;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			index = InvalidOid;

	if (!OidIsValid(relid))
		return InvalidOid;
	ScanKeyInit(&key, Anum_pg_index_indrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	pg_index = table_open(IndexRelationId, AccessShareLock);
	scan = systable_beginscan(pg_index, IndexIndrelidIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_index form = (Form_pg_index) GETSTRUCT(tup);

		if (form->indisprimary)
		{
			index = form->indexrelid;
			break;
		}
	}
	systable_endscan(scan);
	table_close(pg_index, AccessShareLock);
	return index;
}

/* The cache is emptied: note what its tables are now. */
void
opsflags_flag_tables_reset(void)
{
	int			i;

	for (i = 0; i < FLAG_TABLES; i++)
	{
		flag_table_oids[i] = opsflags_relid(flag_table_names[i]);
		flag_index_oids[i] = table_primary_key(flag_table_oids[i]);
	}
	tables_signature = tables_signature_now();
	tables_changed = rows_changed = false;
}

/*
 * At a boundary of the flag cache: do the relcache invalidations of its
 * tables received since the last one empty it?  Those of the primary keys
 * do where they announce row changes (relcache_resets); those of the tables
 * there too, and wherever the tables' definitions changed.
 */
bool
opsflags_flag_tables_changed(void)
{
	bool		changed;

	if (!tables_changed && !rows_changed)
		return false;
	changed = opsflags_inval_relcache_resets() ||
		(tables_changed && tables_signature_now() != tables_signature);
	tables_changed = rows_changed = false;
	return changed;
}

/* Count rolled-back subtransactions (see opsflags_cache_check). */
static void
cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		subxact_aborts++;
}

void
opsflags_cache_init(void)
{
	RegisterSubXactCallback(cache_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(tables_relcache_callback, (Datum) 0);
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
