/*
 * opsflags.c
 *	  Module entry point: the settings (GUCs) and the start-up of each
 *	  capability.  Everything works when the library is loaded on demand;
 *	  what needs shared_preload_libraries checks process_shared_preload_libraries_in_progress.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "opsflags.h"

PG_MODULE_MAGIC;

char	   *opsflags_environment = NULL;
char	   *opsflags_memcached_servers = NULL;
char	   *opsflags_updated_by = NULL;

void		_PG_init(void);

static bool
check_environment(char **newval, void **extra, GucSource source)
{
	/* Same shape as opsflags.environments.name; existence is checked on use. */
	const char *p = *newval;

	if (p == NULL || *p == '\0' || strlen(p) > 63)
	{
		GUC_check_errdetail("An environment name has 1 to 63 characters.");
		return false;
	}
	for (; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  (p != *newval && (*p == '_' || *p == '-'))))
		{
			GUC_check_errdetail("An environment name has lower-case letters, digits, \"_\" and \"-\", and starts with a letter or digit.");
			return false;
		}
	}
	return true;
}

static void
assign_environment(const char *newval, void *extra)
{
	opsflags_environment_changed();
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
							   assign_environment,
							   NULL);

	DefineCustomStringVariable("opsflags.updated_by",
							   "Name recorded in updated_by by writes that do not set it (default: session_user).",
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
	opsflags_config_init();
	opsflags_maintenance_init();
	opsflags_errors_init();
	opsflags_health_init();
	opsflags_worker_init();
	opsflags_http_init();
	opsflags_usage_init();
	opsflags_publish_init();
	opsflags_shmem_init();

	MarkGUCPrefixReserved("opsflags");
}
