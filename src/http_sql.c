/*
 * http_sql.c
 *	  "opsflags http sql": the HTTP server's database worker.  The server's
 *	  event loop never runs SQL itself, so that /livez and every other
 *	  client are answered while the database is slow or a lock is held; it
 *	  hands each request that needs SQL to this worker over a shared memory
 *	  queue (http_dbqueue.c) and frames the answer it gets back.  This file
 *	  is the worker's loop and what every database handler uses; the
 *	  handlers, and their queries, are their families' (http_probes.c,
 *	  http_metrics.c, http_status.c, http_flags.c).
 *
 * The worker runs one request at a time, calling its route's answer
 * function; each query runs in its own read-only transaction (read-write
 * only for console sign-in and the management API's writes) with
 * search_path pinned to pg_catalog, cancelled after opsflags.http_timeout,
 * and waiting at most a quarter of that for a lock; a request that waited
 * in the queue longer than opsflags.http_timeout is answered as if the
 * database had not answered, without running.  A failed query is logged
 * (at most once a minute; not a management API request's own errors,
 * which are its answer) and the worker carries on.  The worker is the
 * bootstrap superuser; no handler reads a configuration value but through
 * health_status() called as pg_monitor, or through config_all() as the
 * signed-in role (http_api.c), so no secret can be served.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/array.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "opsflags.h"
#include "http.h"

static TimestampTz last_failure_logged = 0;

/*
 * The API keys this worker answered with, and when it last wrote each one's
 * last_used_at: a key's first use is written right after its answer, later
 * ones at most once a minute per key, in a transaction of their own
 * (requests run read-only).  A full table forgets the key written longest
 * ago; a key forgotten is written again at its next use.
 */
#define HTTP_KEYS_NOTED 64
typedef struct KeyUse
{
	int64		id;
	TimestampTz written_at;		/* 0: never by this worker */
	bool		due;			/* used since written_at */
} KeyUse;
static KeyUse keys_used[HTTP_KEYS_NOTED];
static int	nkeys_used = 0;

/* ---------- what handlers use ---------- */

/*
 * Run a query in its own read-only transaction, as as_role (InvalidOid: the
 * worker's own superuser), cancelled after opsflags.http_timeout and waiting
 * at most a quarter of that for any lock.  On failure, false, with the
 * error's code and message in *result: the endpoint answers 503 (or 404).
 */
static bool run_query(OpsQuery *query, Datum *args, const char *nulls, Oid as_role,
					  HttpResult *result, bool read_only, bool log_failure);

bool
http_sql(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, HttpResult *result)
{
	return run_query(query, args, nulls, as_role, result, true, true);
}

bool
http_sql_write(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, HttpResult *result)
{
	Assert(query->writes);
	return run_query(query, args, nulls, as_role, result, false, true);
}

bool
http_sql_request(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, bool read_only,
				 HttpResult *result)
{
	Assert(read_only || query->writes);
	return run_query(query, args, nulls, as_role, result, read_only, false);
}

/* A request was answered for this API key. */
void
http_key_used(int64 key_id)
{
	int			oldest = -1;

	for (int i = 0; i < nkeys_used; i++)
	{
		if (keys_used[i].id == key_id)
		{
			keys_used[i].due = true;
			return;
		}
		if (!keys_used[i].due && (oldest < 0 || keys_used[i].written_at < keys_used[oldest].written_at))
			oldest = i;
	}
	if (nkeys_used < HTTP_KEYS_NOTED)
		oldest = nkeys_used++;
	else if (oldest < 0)
		return;					/* every key waits for its write: this one's next use */
	keys_used[oldest].id = key_id;
	keys_used[oldest].written_at = 0;
	keys_used[oldest].due = true;
}

static OpsQuery touch_query = {
	.sql = "SELECT opsflags_internal.api_key_touch($1)",
	.nargs = 1,
	.argtypes = {INT8ARRAYOID},
};

/* Write last_used_at of the keys due (see keys_used); not on a standby. */
static void
write_keys_used(void)
{
	HttpResult	r;
	Datum	   *ids;
	Datum		arg;
	TimestampTz now;
	int			n = 0;

	if (nkeys_used == 0 || RecoveryInProgress())
		return;
	now = GetCurrentTimestamp();
	ids = palloc(sizeof(Datum) * nkeys_used);
	for (int i = 0; i < nkeys_used; i++)
	{
		KeyUse	   *k = &keys_used[i];

		if (k->due && TimestampDifferenceExceeds(k->written_at, now, 60000))
		{
			ids[n++] = Int64GetDatum(k->id);
			k->written_at = now;
			k->due = false;
		}
	}
	if (n == 0)
		return;
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) run_query(&touch_query, &arg, NULL, InvalidOid, &r, false, true);
}

static bool
run_query(OpsQuery *query, Datum *args, const char *nulls, Oid as_role, HttpResult *result,
		  bool read_only, bool log_failure)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile bool ok = true;

	memset(result, 0, sizeof(*result));

	PG_TRY();
	{
		OpsSpiState spi;
		int			nrows;
		int			i,
					j;

		opsflags_step_begin(query->sql, opsflags_http_timeout_ms, read_only);
		opsflags_spi_begin(&spi, as_role);
		nrows = opsflags_spi_run(query, args, nulls, InvalidSnapshot, 0);

		MemoryContextSwitchTo(oldcontext);
		result->nrows = nrows;
		result->ncols = SPI_tuptable->tupdesc->natts;
		result->values = palloc0(sizeof(char *) * Max(nrows * result->ncols, 1));
		for (i = 0; i < nrows; i++)
			for (j = 0; j < result->ncols; j++)
				result->values[i * result->ncols + j] =
					SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, j + 1);

		opsflags_spi_end(&spi);
		opsflags_step_end();
	}
	PG_CATCH();
	{
		ErrorData  *edata = opsflags_step_failed(oldcontext, false);

		/* A shutdown request is not the database failing to answer. */
		CHECK_FOR_INTERRUPTS();

		result->sqlerrcode = edata->sqlerrcode;
		result->error = pstrdup(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(oldcontext);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* Say why requests fail, but at most once a minute. */
	if (!ok && log_failure &&
		TimestampDifferenceExceeds(last_failure_logged, GetCurrentTimestamp(), 60000))
	{
		last_failure_logged = GetCurrentTimestamp();
		ereport(WARNING,
				(errmsg("opsflags http could not answer from the database: %s", result->error),
				 errdetail("Requests that need SQL get status 503 until it answers; this is logged at most once a minute.")));
	}
	return ok;
}

/* The usual answer of an endpoint whose database did not answer */
void
http_answer_unhealthy(HttpAnswer *answer, const char *error)
{
	answer->code = 503;
	appendStringInfoString(&answer->body, "{\"status\": \"unhealthy\", \"error\": ");
	escape_json(&answer->body, error);
	appendStringInfoString(&answer->body, "}");
}

void
http_answer_document(HttpAnswer *answer, const HttpResult *result)
{
	const char *etag = http_result_value(result, 0, 1);
	const char *key_id = http_result_value(result, 0, 3);

	answer->code = atoi(http_result_value(result, 0, 0));
	if (key_id != NULL && (answer->code == 200 || answer->code == 304))
		http_key_used(atoll(key_id));
	if (etag != NULL)
		appendStringInfo(&answer->headers, "ETag: %s\r\n", etag);
	appendStringInfoString(&answer->body, http_result_value(result, 0, 2));
}

void
http_answer_message(HttpAnswer *answer, int code, const char *message)
{
	answer->code = code;
	appendStringInfoString(&answer->body, "{\"message\": ");
	escape_json(&answer->body, message);
	appendStringInfoString(&answer->body, "}");
}

/* The route's answer when the database did not answer: in the loop and here */
void
http_answer_unavailable(const HttpRoute *route, const char *error, HttpAnswer *answer)
{
	if (route->unavailable != NULL)
		route->unavailable(answer, error);
	else
		http_answer_unhealthy(answer, error);
}

/* Fixed queries only, resolved in pg_catalog; evaluations are not usage. */
void
http_pin_session(void)
{
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("opsflags.track_usage", "off", PGC_SUSET, PGC_S_OVERRIDE);
}

/* ---------- the worker ---------- */

/*
 * The request in a message from the loop: its header, then its parts
 * (http_dbqueue.c), each NUL-terminated.
 */
static void
read_call(char *data, Size nbytes, HttpSqlRequest *req, HttpCall *call)
{
	const char **parts[HTTP_SQL_PARTS] = {&call->arg, &call->query, &call->api_key,
										  &call->if_none_match, &call->client_addr,
										  &call->session, &call->csrf_token, &call->user_agent,
										  &call->body};
	Size		pos = sizeof(HttpSqlRequest);

	if (nbytes < sizeof(HttpSqlRequest))
		elog(ERROR, "opsflags http sql received a message of %zu bytes", nbytes);
	memcpy(req, data, sizeof(HttpSqlRequest));
	memset(call, 0, sizeof(*call));
	call->method = req->method;
	call->tls = req->tls;
	for (int i = 0; i < HTTP_SQL_PARTS; i++)
	{
		int			len = req->lengths[i];

		if (len < 0)
			continue;
		if (pos + len + 1 > nbytes || data[pos + len] != '\0')
			elog(ERROR, "opsflags http sql received a malformed message");
		*parts[i] = data + pos;
		if (i == HTTP_SQL_PARTS - 1)
			call->bodylen = len;
		pos += len + 1;
	}
	if (call->arg == NULL)
		call->arg = "";
}

static void
answer(HttpSqlRequest *req, HttpAnswer *a)
{
	const HttpRoute *route = http_route_by_id(req->route);

	/* Waited too long already: the client has been kept long enough. */
	if (TimestampDifferenceExceeds(req->queued_at, GetCurrentTimestamp(), opsflags_http_timeout_ms))
	{
		http_answer_unavailable(route, "the database did not answer in time", a);
		return;
	}
	if (route->answer == NULL)
		elog(ERROR, "opsflags http endpoint %d does not need the database", req->route);
	route->answer(a, a->call->arg);
}

/*
 * Started by the loop with its segment's handle; exits when the loop
 * detaches (it stopped) or on SIGTERM.
 */
void
opsflags_http_sql_main(Datum arg)
{
	dsm_segment *seg;
	shm_mq	   *request_queue;
	shm_mq	   *answer_queue;
	shm_mq_handle *requests;
	shm_mq_handle *answers;
	MemoryContext request_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "opsflags http sql");
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("opsflags http sql could not map its queues")));
	/* The queues live as long as this process, across its transactions. */
	dsm_pin_mapping(seg);
	request_queue = (shm_mq *) dsm_segment_address(seg);
	answer_queue = (shm_mq *) ((char *) request_queue + HTTP_SQL_REQUEST_QUEUE);
	shm_mq_set_receiver(request_queue, MyProc);
	shm_mq_set_sender(answer_queue, MyProc);
	requests = shm_mq_attach(request_queue, seg, NULL);
	answers = shm_mq_attach(answer_queue, seg, NULL);

	BackgroundWorkerInitializeConnection(opsflags_database, NULL, 0);
	pgstat_report_appname("opsflags http sql");
	http_pin_session();

	request_context = AllocSetContextCreate(TopMemoryContext, "opsflags http sql request",
											ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		char	   *copy;
		HttpSqlRequest req;
		HttpSqlAnswer head;
		HttpAnswer	a;
		HttpCall	call;
		StringInfoData msg;

		MemoryContextSwitchTo(request_context);
		pgstat_report_activity(STATE_IDLE, NULL);
		if (shm_mq_receive(requests, &nbytes, &data, false) != SHM_MQ_SUCCESS)
			proc_exit(0);		/* the loop is gone */
		/* a copy: the queue's buffer is reused by the next receive */
		copy = palloc(nbytes + 1);
		memcpy(copy, data, nbytes);
		read_call(copy, nbytes, &req, &call);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* The answer is sent as one message: header, header lines, body. */
		memset(&a, 0, sizeof(a));
		initStringInfo(&a.body);
		initStringInfo(&a.headers);
		a.call = &call;
		answer(&req, &a);
		memset(&head, 0, sizeof(head));
		head.id = req.id;
		head.code = a.code;
		head.headers_len = a.headers.len;
		if (a.content_type != NULL)
			strlcpy(head.content_type, a.content_type, sizeof(head.content_type));
		initStringInfo(&msg);
		appendBinaryStringInfo(&msg, (char *) &head, sizeof(head));
		appendBinaryStringInfo(&msg, a.headers.data, a.headers.len);
		appendBinaryStringInfo(&msg, a.body.data, a.body.len);

		if (shm_mq_send(answers, msg.len, msg.data, false, true) != SHM_MQ_SUCCESS)
			proc_exit(0);
		write_keys_used();
		MemoryContextReset(request_context);
	}
}
