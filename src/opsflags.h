/*
 * opsflags.h
 *	  Declarations shared between the opsflags C files.
 */
#ifndef OPSFLAGS_H
#define OPSFLAGS_H

#include "postgres.h"

#include "executor/spi.h"
#include "postmaster/bgworker.h"
#include "storage/spin.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

/* Longest flag key: ^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$ */
#define OPSFLAGS_FLAG_KEY_MAXLEN 100

/*
 * Longest environment name.  The rule for a name is
 * opsflags_valid_environment_name(), the same as opsflags.environments'
 * CHECK (^[a-z0-9][a-z0-9_-]{0,62}$), which also keeps 'all' (configuration
 * for every environment) from naming one.
 */
#define OPSFLAGS_ENVIRONMENT_MAXLEN 63

/* opsflags.c: settings */
extern char *opsflags_environment;
extern char *opsflags_memcached_servers;
extern bool opsflags_valid_environment_name(const char *name);
extern const char *opsflags_guard_environment_name(void);

/* hashing.c: MurmurHash3 x86_32, incremental, and Unleash buckets */
typedef struct OpsMurmur3
{
	uint32		h;
	uint32		tail;			/* bytes of an unfinished block */
	uint32		ntail;
	uint32		len;
} OpsMurmur3;

extern void opsflags_murmur3_init(OpsMurmur3 *state, uint32 seed);
extern void opsflags_murmur3_update(OpsMurmur3 *state, const unsigned char *data, size_t len);
extern uint32 opsflags_murmur3_final(const OpsMurmur3 *state);
extern void opsflags_bucket_prefix(OpsMurmur3 *state, const char *group, size_t grouplen,
								   uint32 seed);
extern int	opsflags_bucket_finish(const OpsMurmur3 *prefix, const char *stickiness,
								   size_t stickinesslen, uint32 modulus);

/* sha1.c: SHA-1, incremental, and LaunchDarkly buckets */
typedef struct OpsSha1
{
	uint32		h[5];
	uint64		len;
	int			nbuf;
	unsigned char buf[64];
} OpsSha1;

extern void opsflags_sha1_init(OpsSha1 *s);
extern void opsflags_sha1_update(OpsSha1 *s, const unsigned char *data, size_t len);
extern void opsflags_sha1_final(OpsSha1 *s, unsigned char out[20]);
extern double opsflags_ld_bucket(const OpsSha1 *prefix, const char *value, size_t len);

/* spi.c: the one place that runs SQL from C */
typedef struct OpsQuery
{
	const char *sql;			/* query text, schema-qualified throughout */
	int			nargs;
	Oid			argtypes[10];
	bool		writes;			/* false: run read-only */
	SPIPlanPtr	plan;			/* prepared on first use, kept for the backend */
} OpsQuery;

/* The caller's identity, restored by opsflags_spi_end() */
typedef struct OpsSpiState
{
	Oid			saved_userid;
	int			saved_sec_context;
} OpsSpiState;

extern void opsflags_spi_begin(OpsSpiState *state, Oid as_role);
extern int	opsflags_spi_run(OpsQuery *query, Datum *values, const char *nulls,
							 Snapshot snapshot, long limit);
extern void opsflags_spi_end(OpsSpiState *state);
extern bool opsflags_try(void (*fn) (void *), void *arg, bool cancel_ok, ErrorData **error);

/* shmem.c */
extern void opsflags_shmem_register(Size size, const char *tranche, void (*attach) (void));
extern void opsflags_shmem_init(void);

/* cache.c */

/*
 * When a per-backend cache (flags, configuration) is emptied.  Its relcache
 * callback sets stale; opsflags_cache_check() at the start of each lookup
 * says whether to empty it now, and the cache's reset clears both marks
 * (opsflags_cache_reset_done).  Zero-initialized: a cache that was never
 * loaded is emptied on its first lookup anyway.
 */
typedef struct OpsCacheSync
{
	bool		stale;			/* invalidated: empty at the next statement,
								 * transaction or command */
	bool		reset_now;		/* empty at the next lookup */
	/* statement, transaction and command of the last lookup */
	TimestampTz stmt_start;
	LocalTransactionId lxid;
	CommandId	cid;
	uint64		subxact_aborts; /* subtransactions rolled back before it */
} OpsCacheSync;

extern void opsflags_cache_init(void);
extern bool opsflags_cache_boundary(OpsCacheSync *sync);
extern bool opsflags_cache_check(OpsCacheSync *sync);

static inline void
opsflags_cache_reset_done(OpsCacheSync *sync)
{
	sync->stale = false;
	sync->reset_now = false;
}

extern void opsflags_flag_tables_reset(void);
extern bool opsflags_flag_tables_changed(void);
extern Snapshot opsflags_cache_snapshot(void);
extern Oid	opsflags_relid(const char *relname);
extern Oid	opsflags_rel_owner(Oid relid);
extern bool opsflags_is_admin(Oid owner_hint);

/* maintenance.c */
extern void opsflags_maintenance_init(void);

/* config.c */
extern void opsflags_config_init(void);
extern Jsonb *opsflags_config_value(const char *key, const char *environment);
extern Jsonb *opsflags_config_value_ext(const char *key, const char *environment,
										bool *is_sensitive);
extern Jsonb *opsflags_config_value_readable(const char *key, const char *environment);

/* errors.c */
extern void opsflags_errors_init(void);
extern int64 opsflags_errors_last_hour(void);

/* memcached.c */
extern const char *opsflags_memcached_server_list(void);
extern bool opsflags_memcached_probe(const char *servers, int timeout_ms, double *elapsed_ms,
									 char *err, size_t errlen);
extern bool opsflags_memcached_set(const char *servers, int timeout_ms, const char *key,
								   const char *value, size_t valuelen, char *err, size_t errlen);
extern char *opsflags_memcached_get(const char *servers, int timeout_ms, const char *key,
									char *err, size_t errlen);

/* publish.c */
extern void opsflags_publish_init(void);

/* api_keys.c: API keys of the HTTP server */
extern void opsflags_api_keys_init(void);

/* console_auth.c: sign-in to the web console */
extern void opsflags_console_auth_init(void);

/* usage.c: per-flag evaluation counters */
typedef struct OpsUsage
{
	char		flag_key[OPSFLAGS_FLAG_KEY_MAXLEN + 1];	/* hash key */
	uint64		n_true;
	uint64		n_false;
	TimestampTz last_evaluated;
	bool		dirty;			/* moved since the last flush */
} OpsUsage;

extern bool opsflags_track_usage;
extern OpsUsage *opsflags_usage_for(const char *flag_key);
extern void opsflags_usage_mark_dirty(OpsUsage *u);
extern void opsflags_usage_init(void);

/* bgworker.c: what the background workers share */
extern char *opsflags_database;

/* In a worker's shared memory: whether its next start connects */
typedef struct OpsWorkerStart
{
	slock_t		mutex;
	bool		database_ready;
} OpsWorkerStart;

/* How often a worker waiting for opsflags.database looks for it */
#define OPSFLAGS_CHECK_DATABASE_MS 5000

extern void opsflags_bgworker_init(void);
extern void opsflags_worker_prepare(BackgroundWorker *worker, const char *name,
									const char *function);
extern void opsflags_register_worker(const char *name, const char *function);
extern bool opsflags_database_exists(const char *name);
extern void opsflags_worker_start_init(OpsWorkerStart *start);
extern bool opsflags_worker_connect(OpsWorkerStart *start);
extern void opsflags_worker_restart_if_database(OpsWorkerStart *start);
extern void opsflags_step_begin(const char *activity, int timeout_ms, bool read_only);
extern void opsflags_step_end(void);
extern ErrorData *opsflags_step_failed(MemoryContext context, bool report);

/* worker.c */
extern void opsflags_worker_init(void);

/* http_server.c: the HTTP server */
extern void opsflags_http_init(void);

/* health.c (health.h: what health.c and health_queue.c share) */
extern int	opsflags_health_timeout(void);
extern void opsflags_health_init(void);

/* flags.c (flags.h: what flags.c and evaluation.c share) */
extern void opsflags_flags_init(void);

/* invalidation.c: per-flag invalidation of the flag cache (flags.h: its readers' side) */
struct TriggerData;
extern bool opsflags_inval_record(struct TriggerData *trigdata);
extern bool opsflags_inval_relcache_resets(void);
extern void opsflags_inval_init(void);

#endif							/* OPSFLAGS_H */
