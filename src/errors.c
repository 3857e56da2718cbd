/*
 * errors.c
 *	  The error counter: an emit_log_hook that counts ERROR, FATAL and PANIC
 *	  reports of every process into per-minute buckets in shared memory, and
 *	  errors_last_hour() that sums the last 60 minutes.
 *
 * The hook runs in every process type, the postmaster included, and maybe
 * while things are going wrong: it uses atomics only (no locks), allocates
 * nothing, and does nothing before shared memory is attached.  Needs
 * shared_preload_libraries; without it errors_last_hour() is NULL and says
 * why.
 */
#include "postgres.h"

#include <time.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_errors_last_hour_sql);

#define ERROR_BUCKETS 60		/* one a minute */

typedef struct ErrorCounter
{
	pg_atomic_uint64 minute[ERROR_BUCKETS];	/* which minute the bucket counts */
	pg_atomic_uint64 count[ERROR_BUCKETS];
} ErrorCounter;

static ErrorCounter *counter = NULL;

static emit_log_hook_type prev_emit_log_hook = NULL;
static void
errors_shmem_attach(void)
{
	bool		found;
	ErrorCounter *c;

	c = ShmemInitStruct("opsflags error counter", sizeof(ErrorCounter), &found);
	if (!found)
	{
		int			i;

		for (i = 0; i < ERROR_BUCKETS; i++)
		{
			pg_atomic_init_u64(&c->minute[i], 0);
			pg_atomic_init_u64(&c->count[i], 0);
		}
	}
	counter = c;
}

static void
errors_emit_log(ErrorData *edata)
{
	if (edata->elevel >= ERROR && counter != NULL)
	{
		uint64		now = (uint64) time(NULL) / 60;
		int			i = (int) (now % ERROR_BUCKETS);
		uint64		seen = pg_atomic_read_u64(&counter->minute[i]);

		/* First error of this minute in this bucket: start it afresh. */
		if (seen != now && pg_atomic_compare_exchange_u64(&counter->minute[i], &seen, now))
			pg_atomic_write_u64(&counter->count[i], 0);
		pg_atomic_fetch_add_u64(&counter->count[i], 1);
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Errors of the last hour, or -1 without shared memory. */
int64
opsflags_errors_last_hour(void)
{
	uint64		now = (uint64) time(NULL) / 60;
	int64		total = 0;
	int			i;

	if (counter == NULL)
		return -1;
	for (i = 0; i < ERROR_BUCKETS; i++)
	{
		uint64		minute = pg_atomic_read_u64(&counter->minute[i]);

		if (minute + ERROR_BUCKETS > now)
			total += (int64) pg_atomic_read_u64(&counter->count[i]);
	}
	return total;
}

/* errors_last_hour() -> bigint */
Datum
opsflags_errors_last_hour_sql(PG_FUNCTION_ARGS)
{
	int64		n = opsflags_errors_last_hour();

	if (n < 0)
	{
		ereport(NOTICE,
				(errmsg("errors_last_hour() needs opsflags in shared_preload_libraries"),
				 errhint("Add opsflags to shared_preload_libraries and restart the server.")));
		PG_RETURN_NULL();
	}
	PG_RETURN_INT64(n);
}

void
opsflags_errors_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	opsflags_shmem_register(sizeof(ErrorCounter), NULL, errors_shmem_attach);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = errors_emit_log;
}
