/*
 * config.c
 *	  Configuration reads: config_get() served from a per-backend cache of
 *	  opsflags.app_config, invalidated transactionally like the flag cache
 *	  (see cache.c, opsflags_cache_check: another session's change is taken
 *	  in at the next statement, transaction or command, so one statement
 *	  gets one answer per key), with sensitive values readable by admins
 *	  only.
 *	  Writes (config_set, config_delete) are SQL functions checked by the
 *	  table's validation trigger, which raises its errors through
 *	  config_raise() below so that no statement holding a value is logged.
 *
 *	  Sensitivity belongs to the key: a key is sensitive in every environment
 *	  as soon as one of its rows is (the triggers keep the rows alike; reads
 *	  here take the key's sensitivity too, whatever a single row says).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_config_get);
PG_FUNCTION_INFO_V1(opsflags_config_raise);

/* Longest configuration key (see opsflags.is_valid_config_key). */
#define CONFIG_KEY_MAXLEN 200
/* Cache key: "<environment>|<config key>" */
#define CONFIG_CACHE_KEYLEN (OPSFLAGS_ENVIRONMENT_MAXLEN + 1 + CONFIG_KEY_MAXLEN + 1)
#define CONFIG_CACHE_MAX_ENTRIES 65536

typedef struct ConfigEntry
{
	char		key[CONFIG_CACHE_KEYLEN];	/* hash key */
	bool		found;
	bool		is_sensitive;
	Jsonb	   *value;			/* in the cache context; NULL if !found */
} ConfigEntry;

static MemoryContext ConfigCacheContext = NULL;
static HTAB *ConfigCache = NULL;
static OpsCacheSync config_cache_sync;	/* when to empty it (cache.c) */
static Oid	config_table_oid = InvalidOid;
static Oid	config_table_owner = InvalidOid;

/*
 * The environment's row, else the 'all' row, and whether the key is
 * sensitive in any environment.
 */
static OpsQuery config_query = {
	.sql =
	"SELECT c.config_value, "
	"       EXISTS (SELECT FROM opsflags.app_config s "
	"               WHERE s.config_key OPERATOR(pg_catalog.=) $1 AND s.is_sensitive) "
	"FROM opsflags.app_config c "
	"WHERE c.config_key OPERATOR(pg_catalog.=) $1 "
	"  AND c.environment OPERATOR(pg_catalog.=) ANY (ARRAY[$2, 'all']) "
	"ORDER BY c.environment OPERATOR(pg_catalog.=) 'all' "
	"LIMIT 1",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID},
};

static void
config_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == config_table_oid)
		config_cache_sync.stale = true;
}

static void
config_cache_reset(void)
{
	HASHCTL		ctl;

	if (ConfigCacheContext == NULL)
		ConfigCacheContext = AllocSetContextCreate(CacheMemoryContext,
												   "opsflags config cache",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(ConfigCacheContext);

	ctl.keysize = CONFIG_CACHE_KEYLEN;
	ctl.entrysize = sizeof(ConfigEntry);
	ctl.hcxt = ConfigCacheContext;
	ConfigCache = hash_create("opsflags config", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	config_table_oid = opsflags_relid("app_config");
	config_table_owner = opsflags_rel_owner(config_table_oid);
	opsflags_cache_reset_done(&config_cache_sync);
}

/* Read one key for one environment, as the table's owner. */
static void
config_load(ConfigEntry *entry, const char *key, const char *environment)
{
	Datum		values[2];
	OpsSpiState spi;

	if (!OidIsValid(config_table_owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("opsflags tables not found"),
				 errhint("Run CREATE EXTENSION opsflags in this database.")));

	values[0] = CStringGetTextDatum(key);
	values[1] = CStringGetTextDatum(environment);

	opsflags_spi_begin(&spi, config_table_owner);
	if (opsflags_spi_run(&config_query, values, NULL, opsflags_cache_snapshot(), 1) == 1)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		entry->found = !isnull;
		entry->is_sensitive = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 2, &isnull));
		if (entry->found)
		{
			MemoryContext old = MemoryContextSwitchTo(ConfigCacheContext);

			entry->value = DatumGetJsonbPCopy(value);
			MemoryContextSwitchTo(old);
		}
	}
	opsflags_spi_end(&spi);
}

/*
 * Can key name a row?  The shape opsflags.is_valid_config_key() and the
 * table's validation trigger enforce: 1 to 200 characters from A-Z a-z 0-9
 * . _ : -, starting with a letter or digit.  In particular a key never
 * holds "|", which keeps the cache key "<environment>|<key>" unambiguous
 * whatever the environment argument holds (else config_get('b|k', 'a')
 * could be answered from the entry of config_get('k', 'a|b')).
 */
static bool
config_key_valid(const char *key, int keylen)
{
	int			i;

	if (keylen <= 0 || keylen > CONFIG_KEY_MAXLEN)
		return false;
	for (i = 0; i < keylen; i++)
	{
		char		c = key[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i > 0 && (c == '.' || c == '_' || c == ':' || c == '-'))
			continue;
		return false;
	}
	return true;
}

/*
 * The cached entry for (key, environment); NULL when the key cannot name a
 * row.
 */
static ConfigEntry *
config_lookup(const char *key, int keylen, const char *environment)
{
	char		cachekey[CONFIG_CACHE_KEYLEN];
	size_t		envlen = strlen(environment);
	ConfigEntry *entry;
	bool		found;

	if (!config_key_valid(key, keylen))
		return NULL;
	/* No environment has so long a name: only the 'all' row can answer. */
	if (envlen > OPSFLAGS_ENVIRONMENT_MAXLEN)
	{
		environment = "";
		envlen = 0;
	}

	if (opsflags_cache_check(&config_cache_sync) || ConfigCache == NULL)
		config_cache_reset();

	/* "<environment>|<key>" (it fits: see CONFIG_CACHE_KEYLEN) */
	memcpy(cachekey, environment, envlen);
	cachekey[envlen] = '|';
	memcpy(cachekey + envlen + 1, key, keylen);
	cachekey[envlen + 1 + keylen] = '\0';
	entry = hash_search(ConfigCache, cachekey, HASH_FIND, NULL);
	if (entry == NULL)
	{
		ConfigEntry loaded;

		/* A miss: make room, then load (before, so no invalidation is lost). */
		if (hash_get_num_entries(ConfigCache) >= CONFIG_CACHE_MAX_ENTRIES)
			config_cache_reset();
		memset(&loaded, 0, sizeof(loaded));
		strlcpy(loaded.key, cachekey, sizeof(loaded.key));
		config_load(&loaded, pnstrdup(key, keylen), environment);
		entry = hash_search(ConfigCache, cachekey, HASH_ENTER, &found);
		memcpy(entry, &loaded, sizeof(ConfigEntry));
	}
	return entry;
}

/*
 * For opsflags' own use (health thresholds, the queue query): a copy of the
 * value of key in environment (NULL: opsflags.environment), else 'all',
 * else NULL.  No privilege check: callers never hand out sensitive values
 * (see opsflags_config_value_readable for values that are handed out).
 * *is_sensitive (if not NULL) says whether the value is sensitive.
 */
Jsonb *
opsflags_config_value_ext(const char *key, const char *environment, bool *is_sensitive)
{
	ConfigEntry *entry = config_lookup(key, strlen(key),
									   environment ? environment : opsflags_environment);

	if (is_sensitive)
		*is_sensitive = entry != NULL && entry->found && entry->is_sensitive;
	if (entry == NULL || !entry->found)
		return NULL;
	return (Jsonb *) datumCopy(PointerGetDatum(entry->value), false, -1);
}

Jsonb *
opsflags_config_value(const char *key, const char *environment)
{
	return opsflags_config_value_ext(key, environment, NULL);
}

/*
 * The value as opsflags_config_value finds it, for code that hands it to
 * the caller (health_status' version and commit_sha): NULL when it is
 * sensitive and the current user may not read sensitive values, as if it
 * were not set.
 */
Jsonb *
opsflags_config_value_readable(const char *key, const char *environment)
{
	bool		is_sensitive;
	Jsonb	   *value = opsflags_config_value_ext(key, environment, &is_sensitive);

	if (value != NULL && is_sensitive && !opsflags_is_admin(config_table_owner))
		return NULL;
	return value;
}

/*
 * config_get(config_key text, environment text) -> jsonb
 *
 * The environment's value, else the 'all' value, else NULL; environment
 * NULL means opsflags.environment.  A sensitive value only for admins.
 */
Datum
opsflags_config_get(PG_FUNCTION_ARGS)
{
	text	   *keyt;
	ConfigEntry *entry;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	keyt = PG_GETARG_TEXT_PP(0);
	entry = config_lookup(VARDATA_ANY(keyt), VARSIZE_ANY_EXHDR(keyt),
						  PG_ARGISNULL(1) ? opsflags_environment
						  : text_to_cstring(PG_GETARG_TEXT_PP(1)));

	if (entry == NULL || !entry->found)
		PG_RETURN_NULL();
	if (entry->is_sensitive && !opsflags_is_admin(config_table_owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read sensitive configuration value \"%s\"",
						text_to_cstring(keyt)),
				 errhint("Sensitive values are readable by superusers and members of opsflags_admin.")));

	/* A copy: the cache may be emptied while the caller still holds it. */
	PG_RETURN_JSONB_P((Jsonb *) datumCopy(PointerGetDatum(entry->value), false, -1));
}

/*
 * config_raise(sqlstate text, message text, detail text, hint text)
 *
 * Raise an error of the configuration code (the validation triggers of
 * opsflags.app_config, config_set) with the given SQLSTATE and texts,
 * which name keys and environments, never values.  The server log gets
 * neither the statement nor the context: a statement that writes a
 * configuration row may hold its value, a secret (PL/pgSQL's RAISE cannot
 * leave the statement out).  The client gets everything as usual.
 */
Datum
opsflags_config_raise(PG_FUNCTION_ARGS)
{
	char	   *state;
	char	   *detail;
	char	   *hint;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sqlstate and message must not be null")));
	state = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* Five digits or upper-case letters, of an error class (not 00, 01, 02). */
	if (strlen(state) != 5 || strspn(state, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 5 ||
		(state[0] == '0' && (state[1] == '0' || state[1] == '1' || state[1] == '2')))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid SQLSTATE \"%s\"", state),
				 errhint("An error SQLSTATE is five digits or upper-case letters, not of class 00, 01 or 02.")));
	detail = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	hint = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4])),
			 errmsg_internal("%s", text_to_cstring(PG_GETARG_TEXT_PP(1))),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 errhidestmt(true),
			 errhidecontext(true)));
	PG_RETURN_VOID();
}

void
opsflags_config_init(void)
{
	CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
}
