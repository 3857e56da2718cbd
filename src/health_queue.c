/*
 * health_queue.c
 *	  The queue probe: health.queue_query (the application's job queue,
 *	  pending and failed), run for health_status()'s queue component and
 *	  for queue_depth(), which the sampler calls (worker.sql).
 *
 * The query is the admin's, run as the owner of the configuration for any
 * caller: it runs read-only, with a fixed search_path, never on the
 * caller's temporary relations, bounded by opsflags.health_timeout, and a
 * sensitive query's errors reach administrators only.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"

#include "health.h"

PG_FUNCTION_INFO_V1(opsflags_queue_depth);


typedef struct QueueProbeArgs
{
	Probe	   *probe;
	Thresholds *t;
	const char *query;
	bool		sensitive;		/* health.queue_query is sensitive */
	int64		pending;		/* out */
	int64		failed;			/* out */
} QueueProbeArgs;

/* Set a setting until the GUC nest level ends, as a superuser may. */
static void
set_quietly(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * The admin's query, read-only, as the owner of the configuration, for
 * whichever role calls health_status().  So that nothing that role set up
 * runs with the owner's rights, the query is parsed and run with
 * search_path = pg_catalog, pg_temp (as take_sample() runs it; tables and
 * functions of other schemas must be schema-qualified), and it may not read
 * temporary relations, which belong to the calling session: an unqualified
 * name the query leaves to pg_temp must not find the caller's temporary
 * view.
 *
 * The query text is the admin's: the caller's debug_print_* settings, which
 * would print its parse tree and plan to the caller (and the log), are off
 * while it runs.  A sensitive query also runs silenced (no notice, warning
 * or log line reaches the client or the server log: SPI attaches the query
 * text to each as its context); its errors are caught by the caller.
 */
static void
queue_probe(void *arg)
{
	QueueProbeArgs *a = (QueueProbeArgs *) arg;
	OpsSpiState spi;
	char	   *sql;
	SPIPlanPtr	plan;
	ListCell   *lc;
	int			save_nestlevel;
	bool		isnull;
	Datum		d;

	sql = psprintf("SELECT q.pending::pg_catalog.int8, q.failed::pg_catalog.int8 "
				   "FROM (%s) AS q(pending, failed)", a->query);
	opsflags_spi_begin(&spi, opsflags_rel_owner(opsflags_relid("app_config")));
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	set_quietly("debug_print_parse", "off");
	set_quietly("debug_print_rewritten", "off");
	set_quietly("debug_print_plan", "off");
	if (a->sensitive)
	{
		set_quietly("client_min_messages", "error");
		set_quietly("log_min_messages", "panic");
	}

	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for health.queue_query: %s",
			 SPI_result_code_string(SPI_result));
	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *source = (CachedPlanSource *) lfirst(lc);
		ListCell   *rc;

		foreach(rc, source->relationOids)
		{
			Oid			nsp = get_rel_namespace(lfirst_oid(rc));

			if (OidIsValid(nsp) && isAnyTempNamespace(nsp))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("health.queue_query must not read temporary relations"),
						 errdetail("Relation \"%s\" is temporary.",
								   get_rel_name(lfirst_oid(rc))),
						 errhint("Schema-qualify the tables the query reads.")));
		}
	}

	if (SPI_execute_plan(plan, NULL, NULL, true, 2) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("health.queue_query must return one row (pending, failed)")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	a->pending = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	a->failed = isnull ? 0 : DatumGetInt64(d);
	AtEOXact_GUC(true, save_nestlevel);
	opsflags_spi_end(&spi);
}

/* The message of a failed sensitive queue query, for roles that may not read it. */
#define QUEUE_SENSITIVE_FAILURE \
	"the query failed (health.queue_query is sensitive: administrators see the error)"

/*
 * Run health.queue_query ('all') into p.  A failure's message is the
 * error's, except for a sensitive query when reveal is false (the error
 * can quote the query).  *configured says whether the query is set.
 */
static void
queue_run(Probe *p, Thresholds *t, int64 *pending, int64 *failed, bool reveal,
		  bool *configured, bool *sensitive)
{
	QueueProbeArgs a = {p, t, NULL, false, 0, 0};

	*pending = -1;
	*failed = -1;
	a.query = health_jsonb_string(opsflags_config_value_ext("health.queue_query", "all", &a.sensitive));
	*configured = a.query != NULL;
	*sensitive = a.sensitive;
	if (a.query == NULL)
	{
		p->state = HEALTHY;
		snprintf(p->message, sizeof(p->message),
				 "not configured (set config health.queue_query to a query returning pending, failed)");
		return;
	}
	health_run_probe(p, queue_probe, &a, DEGRADED);
	if (p->message[0] != '\0')
	{
		if (a.sensitive && !health_probe_timed_out() && !reveal)
			snprintf(p->message, sizeof(p->message), "%s", QUEUE_SENSITIVE_FAILURE);
		return;
	}
	*pending = a.pending;
	*failed = a.failed;
	if (a.failed > t->queue_failed_max || a.pending > t->queue_pending_max)
		p->state = DEGRADED;
	snprintf(p->message, sizeof(p->message), INT64_FORMAT " pending, " INT64_FORMAT " failed",
			 a.pending, a.failed);
}

/* The queue component of health_status(): errors of a sensitive query for admins only. */
void
health_queue_status(Probe *p, Thresholds *t, int64 *pending, int64 *failed)
{
	bool		configured;
	bool		sensitive;

	queue_run(p, t, pending, failed,
			  opsflags_is_admin(opsflags_rel_owner(opsflags_relid("app_config"))),
			  &configured, &sensitive);
}

/* The last failure queue_depth(true) logged in this backend, if failing. */
static char queue_logged_failure[512];
static bool queue_failing = false;

/*
 * queue_depth(log_failure boolean) -> (pending bigint, failed bigint, error text)
 *
 * health.queue_query run as health_status() runs it (read-only, bounded by
 * opsflags.health_timeout, silenced when sensitive), for take_sample().
 * A failure gives NULL counts and the error; a sensitive query's error is
 * never given (it can quote the query).  With log_failure, a failure is
 * logged as a WARNING once per change of its error in this backend (the
 * sampler's is long-lived: not every cycle), a sensitive one without its
 * text.  Not configured: NULLs and error NULL.
 */
Datum
opsflags_queue_depth(PG_FUNCTION_ARGS)
{
	bool		log_failure = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	Probe		p = {0};
	Thresholds	t;
	int64		pending,
				failed;
	bool		configured;
	bool		sensitive;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "queue_depth must return a record");
	desc = BlessTupleDesc(desc);

	health_get_thresholds(&t);
	queue_run(&p, &t, &pending, &failed, false, &configured, &sensitive);
	if (configured && pending >= 0)
	{
		values[0] = Int64GetDatum(pending);
		values[1] = Int64GetDatum(failed);
		nulls[0] = nulls[1] = false;
		queue_failing = false;
	}
	else if (configured)
	{
		values[2] = CStringGetTextDatum(p.message);
		nulls[2] = false;
		if (log_failure && (!queue_failing || strcmp(queue_logged_failure, p.message) != 0))
		{
			strlcpy(queue_logged_failure, p.message, sizeof(queue_logged_failure));
			queue_failing = true;
			if (sensitive)
				ereport(WARNING,
						(errmsg("opsflags sampler: queue query failed"),
						 errdetail("health.queue_query is sensitive: health_status() shows its error to administrators.")));
			else
				ereport(WARNING,
						(errmsg("opsflags sampler: queue query failed: %s", p.message)));
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

