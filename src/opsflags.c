/*
 * opsflags.c
 *	  Module entry point: the settings (GUCs) and the start-up of each
 *	  capability.  Everything works when the library is loaded on demand;
 *	  what needs shared_preload_libraries checks process_shared_preload_libraries_in_progress.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/parallel.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "opsflags.h"

PG_MODULE_MAGIC;

char	   *opsflags_environment = NULL;
static char *opsflags_guard_environment = NULL;

/*
 * opsflags.environment as the server sets it (its default, postgresql.conf,
 * ALTER SYSTEM, the command line), whatever roles, databases and sessions
 * set: where guards evaluate unless opsflags.guard_environment says.
 */
static char server_environment[OPSFLAGS_ENVIRONMENT_MAXLEN + 1] = "production";
char	   *opsflags_memcached_servers = NULL;
static char *opsflags_updated_by = NULL;

void		_PG_init(void);

/* Until _PG_init() ends: values set before the library was loaded are
 * taken as they are (refusing one would silently fall back to the default). */
static bool gucs_defined = false;

/*
 * The one test of an environment name's shape, for settings, guard
 * triggers and the HTTP server's /flags/<environment>: that of
 * opsflags.environments.name (see OPSFLAGS_ENVIRONMENT_MAXLEN).
 */
bool
opsflags_valid_environment_name(const char *name)
{
	const char *p = name;

	if (p == NULL || *p == '\0' || strlen(p) > OPSFLAGS_ENVIRONMENT_MAXLEN)
		return false;
	for (; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  (p != name && (*p == '_' || *p == '-'))))
			return false;
	}
	return true;
}

/*
 * Does environment name exist in this database?  Unknown (false in
 * *checked) without the extension's table.  Read like PostgreSQL's own
 * check hooks read catalogs: a fresh MVCC snapshot, no privilege check (the
 * names of environments are no secret), no query.
 */
static bool
environment_exists(const char *name, bool *checked)
{
	Oid			relid = opsflags_relid("environments");
	AttrNumber	attnum;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	*checked = false;
	if (!OidIsValid(relid) || (attnum = get_attnum(relid, "name")) == InvalidAttrNumber)
		return false;
	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&key, attnum, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	*checked = true;
	return found;
}

/*
 * An environment name set for opsflags.environment or guard_environment:
 * its shape always; its existence where a session sets it (SET,
 * set_config(), a function's SET clause) in a database with the extension,
 * inside a transaction.  postgresql.conf, ALTER ROLE/DATABASE settings and
 * connection options are applied where the table cannot be read, or where
 * refusing the value would silently evaluate in the default environment
 * instead: evaluation warns about those (once per session).  ALTER
 * ROLE/DATABASE SET itself gets a NOTICE, since the setting may be meant for
 * another database.
 */
static bool
check_environment_name(const char *name, GucSource source)
{
	bool		checked;

	if (name == NULL || *name == '\0' || strlen(name) > OPSFLAGS_ENVIRONMENT_MAXLEN)
	{
		GUC_check_errdetail("An environment name has 1 to 63 characters.");
		return false;
	}
	if (!opsflags_valid_environment_name(name))
	{
		GUC_check_errdetail("An environment name has lower-case letters, digits, \"_\" and \"-\", and starts with a letter or digit.");
		return false;
	}
	if (!gucs_defined || (source != PGC_S_SESSION && source != PGC_S_TEST) ||
		!IsTransactionState() || !OidIsValid(MyDatabaseId) ||
		InitializingParallelWorker || IsParallelWorker())
		return true;
	if (environment_exists(name, &checked) || !checked)
		return true;
	if (source == PGC_S_TEST)
	{
		ereport(NOTICE,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("environment \"%s\" does not exist in this database", name)));
		return true;
	}
	GUC_check_errcode(ERRCODE_UNDEFINED_OBJECT);
	GUC_check_errdetail("Environment \"%s\" does not exist.", name);
	GUC_check_errhint("Environments are rows of opsflags.environments.");
	return false;
}

/* opsflags.environment; also notes the server's own value. */
static bool
check_environment(char **newval, void **extra, GucSource source)
{
	if (!check_environment_name(*newval, source))
		return false;
	if (source <= PGC_S_ARGV)
		strlcpy(server_environment, *newval, sizeof(server_environment));
	return true;
}

/* opsflags.guard_environment: empty (the server's environment) or a name. */
static bool
check_guard_environment(char **newval, void **extra, GucSource source)
{
	return **newval == '\0' || check_environment_name(*newval, source);
}

/* Where feature_guard() triggers without an environment argument evaluate. */
const char *
opsflags_guard_environment_name(void)
{
	return opsflags_guard_environment[0] != '\0' ? opsflags_guard_environment : server_environment;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("opsflags.environment",
							   "Environment in which feature flags are evaluated and configuration is resolved.",
							   NULL,
							   &opsflags_environment,
							   "production",
							   PGC_USERSET,
							   0,
							   check_environment,
							   NULL,
							   NULL);

	/* Superuser-only, so that a writer's SET cannot switch a guard off. */
	DefineCustomStringVariable("opsflags.guard_environment",
							   "Environment in which feature_guard() triggers without an environment argument evaluate their flag.",
							   "Empty: opsflags.environment as the server configuration sets it, not as roles, databases or sessions do.",
							   &opsflags_guard_environment,
							   "",
							   PGC_SUSET,
							   0,
							   check_guard_environment,
							   NULL,
							   NULL);

	DefineCustomStringVariable("opsflags.updated_by",
							   "Name recorded in updated_by and created_by by writes that do not set it (default: session_user).",
							   NULL,
							   &opsflags_updated_by,
							   "",
							   PGC_USERSET,
							   0,
							   NULL,
							   NULL,
							   NULL);

	DefineCustomStringVariable("opsflags.memcached_servers",
							   "memcached servers (host:port[,host:port]) that health checks probe.",
							   NULL,
							   &opsflags_memcached_servers,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL,
							   NULL,
							   NULL);

	opsflags_cache_init();
	opsflags_flags_init();
	opsflags_inval_init();
	opsflags_config_init();
	opsflags_maintenance_init();
	opsflags_errors_init();
	opsflags_health_init();
	opsflags_bgworker_init();
	opsflags_worker_init();
	opsflags_http_init();
	opsflags_usage_init();
	opsflags_publish_init();
	opsflags_api_keys_init();
	opsflags_console_auth_init();
	opsflags_shmem_init();

	MarkGUCPrefixReserved("opsflags");
	gucs_defined = true;
}
