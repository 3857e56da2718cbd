/*
 * shmem.c
 *	  opsflags' shared memory.  The capabilities that keep state there
 *	  (maintenance mode, the error counter, the sampler, usage counts)
 *	  register its size, an optional LWLock tranche and an attach function
 *	  from _PG_init; this file chains the one pair of shmem request/startup
 *	  hooks and calls each attach function with AddinShmemInitLock held.
 *	  Only when opsflags is in shared_preload_libraries.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "opsflags.h"

#define MAX_SHMEM_PARTS 16

typedef struct ShmemPart
{
	Size		size;
	const char *tranche;		/* NULL: no LWLock */
	void		(*attach) (void);
} ShmemPart;

static ShmemPart parts[MAX_SHMEM_PARTS];
static int	nparts = 0;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
opsflags_shmem_request(void)
{
	int			i;

#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	for (i = 0; i < nparts; i++)
	{
		RequestAddinShmemSpace(MAXALIGN(parts[i].size));
		if (parts[i].tranche)
			RequestNamedLWLockTranche(parts[i].tranche, 1);
	}
}

static void
opsflags_shmem_startup(void)
{
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (i = 0; i < nparts; i++)
		parts[i].attach();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Reserve size bytes (and an LWLock tranche of one lock, if named); attach
 * is called at every shared-memory (re)initialisation, with
 * AddinShmemInitLock held, to find or create the state.  Call from _PG_init
 * while shared_preload_libraries are loading.
 */
void
opsflags_shmem_register(Size size, const char *tranche, void (*attach) (void))
{
	Assert(process_shared_preload_libraries_in_progress);
	if (nparts >= MAX_SHMEM_PARTS)
		elog(ERROR, "too many opsflags shared memory parts");
	parts[nparts].size = size;
	parts[nparts].tranche = tranche;
	parts[nparts].attach = attach;
	nparts++;
}

/* Install the hooks, once every capability has registered. */
void
opsflags_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress || nparts == 0)
		return;
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = opsflags_shmem_request;
#else
	opsflags_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = opsflags_shmem_startup;
}
