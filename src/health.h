/*
 * health.h
 *	  What health_status() (health.c) and the queue probe (health_queue.c)
 *	  share: a probe's result, the thresholds in force, and running a probe
 *	  guarded and bounded by opsflags.health_timeout.
 */
#ifndef OPSFLAGS_HEALTH_H
#define OPSFLAGS_HEALTH_H

#include "utils/jsonb.h"

#include "opsflags.h"

typedef enum HealthState
{
	HEALTHY = 0,
	DEGRADED = 1,
	UNHEALTHY = 2
} HealthState;


typedef struct Probe
{
	HealthState state;
	double		latency_ms;
	char		message[512];
} Probe;

/* Defaults of config health.thresholds; each may be overridden there. */
typedef struct Thresholds
{
	double		connections_pct;	/* degraded above this share of max_connections */
	double		xid_age;		/* degraded above this age(datfrozenxid) */
	double		replication_lag_s;	/* degraded when a standby lags more */
	double		storage_degraded_pct;	/* free space below: degraded */
	double		storage_unhealthy_pct;	/* free space below: unhealthy */
	double		queue_pending_max;	/* degraded above this many pending jobs */
	double		queue_failed_max;	/* degraded above this many failed jobs */
	double		errors_per_hour_warning;	/* check_system_health: warning above */
} Thresholds;

extern void health_get_thresholds(Thresholds *t);
extern char *health_jsonb_string(Jsonb *jb);
extern void health_run_probe(Probe *p, void (*fn) (void *), void *arg, HealthState on_error);
extern bool health_probe_timed_out(void);

/* health_queue.c */
extern void health_queue_status(Probe *p, Thresholds *t, int64 *pending, int64 *failed);

#endif							/* OPSFLAGS_HEALTH_H */
