/*
 * http_dbqueue.c
 *	  The HTTP server's side of its database worker: requests that need SQL
 *	  go to "opsflags http sql" (http_sql.c) over a shared memory queue, so
 *	  that the loop never waits for the database.  Part of the core.
 *
 * The worker is started with the first such request, with a dynamic shared
 * memory segment holding the two queues, and again after it exits.  A
 * connection with a request there is AWAITING (http_conn_await) until the
 * answer comes, which is framed for it with its route's content type.  At
 * most HTTP_SQL_MAX_PENDING requests wait for the worker; beyond that,
 * while not connected to opsflags.database, and when the worker cannot be
 * started, a request gets its route's answer for an unavailable database
 * at once.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsflags.h"
#include "http_core.h"

bool		http_db_connected = false;

typedef struct HttpPending
{
	uint32		id;
	/* who waits: a connection, or a stream; both NULL: gone or answered */
	HttpConn   *conn;
	HttpStream *stream;
	const HttpRoute *route;
	Size		bytes;			/* what its request takes of the queue */
} HttpPending;

static MemoryContext sql_context = NULL;	/* the handles below; NULL: stopped */
static dsm_segment *sql_segment = NULL;
static shm_mq_handle *sql_requests = NULL;
static shm_mq_handle *sql_answers = NULL;
static BackgroundWorkerHandle *sql_worker = NULL;
static TimestampTz sql_retry_at = 0;	/* after a failed start */
static HttpPending pending[HTTP_SQL_MAX_PENDING];	/* in the order asked */
static int	npending = 0;
static Size pending_bytes = 0;	/* of the request queue, until answered */
static uint32 last_request_id = 0;

#define HTTP_SQL_RETRY_MS	1000

static void sql_stop(void);
static void answer_unavailable(HttpConn *conn, HttpRequest *req, const char *error);
static void stream_unavailable(HttpStream *stream, const HttpRoute *route, const char *error);
static void frame_answer(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
						 const char *headers,
						 const char *body, size_t len);

/* Start the worker, with a new segment for the queues. */
static bool
sql_start(void)
{
	BackgroundWorker worker;
	shm_mq	   *request_queue;
	shm_mq	   *answer_queue;
	MemoryContext old;

	if (GetCurrentTimestamp() < sql_retry_at)
		return false;
	sql_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_SQL_RETRY_MS);

	sql_segment = dsm_create(HTTP_SQL_REQUEST_QUEUE + HTTP_SQL_ANSWER_QUEUE, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (sql_segment == NULL)
		return false;
	/* The handles (and the queues' buffers) live until the worker stops. */
	sql_context = AllocSetContextCreate(TopMemoryContext, "opsflags http sql queues",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(sql_context);
	dsm_pin_mapping(sql_segment);
	request_queue = shm_mq_create(dsm_segment_address(sql_segment), HTTP_SQL_REQUEST_QUEUE);
	answer_queue = shm_mq_create((char *) dsm_segment_address(sql_segment) + HTTP_SQL_REQUEST_QUEUE,
								 HTTP_SQL_ANSWER_QUEUE);
	shm_mq_set_sender(request_queue, MyProc);
	shm_mq_set_receiver(answer_queue, MyProc);

	opsflags_worker_prepare(&worker, "opsflags http sql", "opsflags_http_sql_main");
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the loop starts it again */
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(sql_segment));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &sql_worker))
	{
		MemoryContextSwitchTo(old);
		sql_worker = NULL;
		sql_stop();
		return false;
	}
	sql_requests = shm_mq_attach(request_queue, sql_segment, sql_worker);
	sql_answers = shm_mq_attach(answer_queue, sql_segment, sql_worker);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * The worker is gone (or never came): answer what was waiting for it, and
 * let the next request start another.
 */
static void
sql_stop(void)
{
	static HttpPending gone[HTTP_SQL_MAX_PENDING];
	int			n;
	int			i;

	if (sql_worker != NULL)
		TerminateBackgroundWorker(sql_worker);
	if (sql_segment != NULL)
		dsm_detach(sql_segment);
	if (sql_context != NULL)
		MemoryContextDelete(sql_context);
	sql_context = NULL;
	sql_segment = NULL;
	sql_requests = sql_answers = NULL;
	sql_worker = NULL;
	/* (taken out first: a stream told may ask again) */
	n = npending;
	memcpy(gone, pending, sizeof(HttpPending) * n);
	npending = 0;
	pending_bytes = 0;
	for (i = 0; i < n; i++)
	{
		if (gone[i].conn != NULL)
		{
			HttpConn   *conn = gone[i].conn;
			HttpRequest req = conn->awaiting;

			answer_unavailable(conn, &req, "the database worker of opsflags http exited");
		}
		else if (gone[i].stream != NULL)
			stream_unavailable(gone[i].stream, gone[i].route,
							   "the database worker of opsflags http exited");
	}
}

/*
 * The connection closes before the answer comes (that answer then goes
 * nowhere), or the answer is late (the backstop: the worker answers within
 * about twice the timeout): answered as if the database had not answered.
 */
static void
forget(HttpConn *conn, bool expired)
{
	HttpRequest req = conn->awaiting;
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].conn == conn)
			pending[i].conn = NULL;
	if (expired)
		answer_unavailable(conn, &req, "the database did not answer in time");
}

/* A part of a request for the worker: its length (-1: absent), then its bytes. */
static void
add_part(StringInfo msg, int part, const char *s, int len)
{
	HttpSqlRequest *head = (HttpSqlRequest *) msg->data;

	if (s == NULL)
	{
		head->lengths[part] = -1;
		return;
	}
	head->lengths[part] = len;
	appendBinaryStringInfo(msg, s, len);
	appendStringInfoChar(msg, '\0');
}

static void
add_string(StringInfo msg, int part, const char *s)
{
	add_part(msg, part, s, s ? strlen(s) : 0);
}

/*
 * Queue a request for the worker (the headers it passes on from req, NULL:
 * none); its id, or 0 with *error set when the
 * worker cannot take it now.
 */
static uint32
queue_request(const HttpRoute *route, int method, const char *arg, const char *query,
			  const HttpRequest *req, const char *body, int bodylen, Size *bytes,
			  const char **error)
{
	HttpSqlRequest msg;
	StringInfoData buf;

	if (!http_db_connected)
	{
		*error = psprintf("database \"%s\" does not exist", opsflags_database);
		return 0;
	}
	if (npending == HTTP_SQL_MAX_PENDING)
	{
		*error = "too many requests are waiting for the database";
		return 0;
	}
	if (sql_segment == NULL && !sql_start())
	{
		*error = "the database worker of opsflags http could not be started";
		return 0;
	}

	memset(&msg, 0, sizeof(msg));
	msg.id = last_request_id + 1;
	msg.route = http_route_id(route);
	msg.method = method;
	msg.queued_at = GetCurrentTimestamp();
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &msg, sizeof(msg));
	add_part(&buf, 0, arg, arg ? strnlen(arg, HTTP_SQL_MAX_ARG - 1) : 0);
	add_part(&buf, 1, query, query ? strlen(query) : 0);
	add_string(&buf, 2, req ? req->api_key : NULL);
	add_string(&buf, 3, req ? req->if_none_match : NULL);
	add_string(&buf, 4, req ? req->client_addr : NULL);
	add_string(&buf, 5, req ? req->session : NULL);
	add_string(&buf, 6, req ? req->csrf_token : NULL);
	add_string(&buf, 7, req ? req->user_agent : NULL);
	add_part(&buf, HTTP_SQL_PARTS - 1, body, bodylen);

	/*
	 * Never blocks: requests wait only while the queue has room for them
	 * (with shm_mq's length word and alignment), else 503.
	 */
	*bytes = MAXALIGN(buf.len) + MAXALIGN(sizeof(Size));
	if (pending_bytes + *bytes > HTTP_SQL_REQUEST_QUEUE)
	{
		*error = "too many requests are waiting for the database";
		return 0;
	}
	if (shm_mq_send(sql_requests, buf.len, buf.data, true, true) != SHM_MQ_SUCCESS)
	{
		sql_stop();
		*error = "the database worker of opsflags http exited";
		return 0;
	}
	last_request_id = msg.id;
	pending[npending].id = msg.id;
	pending[npending].conn = NULL;
	pending[npending].stream = NULL;
	pending[npending].route = route;
	pending[npending].bytes = *bytes;
	pending_bytes += *bytes;
	npending++;
	return msg.id;
}

/*
 * A route's handler: hand the request, and arg (at most HTTP_SQL_MAX_ARG
 * bytes), to the worker; the connection waits for its answer.
 */
void
http_ask_database(HttpConn *conn, HttpRequest *req, const char *arg)
{
	const char *error = NULL;
	Size		bytes;

	Assert(req->route != NULL && req->route->answer != NULL);
	if (queue_request(req->route, req->method, arg, req->query, req, req->body, req->bodylen,
					  &bytes, &error) == 0)
	{
		answer_unavailable(conn, req, error);
		return;
	}
	pending[npending - 1].conn = conn;
	/* The worker answers within about twice the timeout; this is the backstop. */
	http_conn_await(conn, req, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															3 * opsflags_http_timeout_ms),
					forget);
}

/*
 * On a stream's behalf (http.h).  A stream waits as long as it takes: the
 * worker answers everything, within about twice the timeout, or exits.
 */
bool
http_stream_ask_database(HttpStream *stream, const HttpRoute *route, const char *arg,
						 const char *query, const char *body, int bodylen)
{
	const char *error = NULL;
	Size		bytes;

	Assert(route->answer != NULL);
	if (queue_request(route, HTTP_GET, arg, query, NULL, body, bodylen, &bytes, &error) == 0)
		return false;
	pending[npending - 1].stream = stream;
	return true;
}

int
http_db_room(void)
{
	if (!http_db_connected)
		return 0;
	return HTTP_SQL_MAX_PENDING - npending;
}

/* A stream closes: an answer for it goes nowhere. */
void
http_db_forget_stream(HttpStream *stream)
{
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].stream == stream)
			pending[i].stream = NULL;
}

/* Take the worker's answers, and notice that it has gone. */
void
http_db_receive(void)
{
	while (sql_answers != NULL)
	{
		Size		nbytes;
		void	   *data;
		HttpSqlAnswer head;
		shm_mq_result res = shm_mq_receive(sql_answers, &nbytes, &data, true);
		HttpConn   *conn;
		HttpStream *stream;
		HttpRequest req;
		int			i;

		if (res == SHM_MQ_WOULD_BLOCK)
			return;
		if (res == SHM_MQ_DETACHED)
		{
			ereport(LOG,
					(errmsg("the database worker of opsflags http exited"),
					 errdetail("It is started again for the next request that needs SQL.")));
			sql_stop();
			return;
		}
		if (nbytes < sizeof(head))
			elog(ERROR, "opsflags http received an answer of %zu bytes", nbytes);
		memcpy(&head, data, sizeof(head));

		/* Answers come in the order asked; earlier ones are lost causes. */
		for (i = 0; i < npending && pending[i].id != head.id; i++)
			;
		if (i == npending)
			continue;
		conn = pending[i].conn;
		stream = pending[i].stream;
		for (int j = 0; j <= i; j++)
			pending_bytes -= pending[j].bytes;
		npending -= i + 1;
		memmove(pending, pending + i + 1, sizeof(HttpPending) * npending);
		if (head.headers_len < 0 || sizeof(head) + head.headers_len > nbytes)
			elog(ERROR, "opsflags http received a malformed answer");
		if (stream != NULL)
		{
			/* a stream takes the body; header lines are for responses */
			http_stream_answered(stream, head.code,
								 (char *) data + sizeof(head) + head.headers_len,
								 nbytes - sizeof(head) - head.headers_len);
			continue;
		}
		if (conn == NULL)
			continue;

		req = conn->awaiting;
		{
			char	   *headers = pnstrdup((char *) data + sizeof(head), head.headers_len);

			head.content_type[sizeof(head.content_type) - 1] = '\0';
			frame_answer(conn, &req, head.code,
						 head.content_type[0] != '\0' ? head.content_type : NULL, headers,
						 (char *) data + sizeof(head) + head.headers_len,
						 nbytes - sizeof(head) - head.headers_len);
		}
	}
}

/*
 * Queue the answer of a request that needed SQL, framed for its
 * connection, then go on with the connection's next request.
 */
static void
frame_answer(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
			 const char *headers, const char *body, size_t len)
{
	const HttpRoute *route = req->route;

	if (content_type == NULL)
		content_type = route->content_type;

	http_conn_resume(conn);
	if (route->finish != NULL)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendBinaryStringInfo(&buf, body, len);
		route->finish(&buf, code);
		http_respond_headers(conn, req, code, content_type, headers, buf.data, buf.len);
		pfree(buf.data);
	}
	else
		http_respond_headers(conn, req, code, content_type, headers, body, len);
}

static void
answer_unavailable(HttpConn *conn, HttpRequest *req, const char *error)
{
	HttpAnswer	a;

	initStringInfo(&a.body);
	a.call = NULL;
	http_answer_unavailable(req->route, error, &a);
	frame_answer(conn, req, a.code, NULL, NULL, a.body.data, a.body.len);
	pfree(a.body.data);
}

static void
stream_unavailable(HttpStream *stream, const HttpRoute *route, const char *error)
{
	HttpAnswer	a;

	initStringInfo(&a.body);
	a.call = NULL;
	http_answer_unavailable(route, error, &a);
	http_stream_answered(stream, a.code, a.body.data, a.body.len);
	pfree(a.body.data);
}
