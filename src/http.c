/*
 * http.c
 *	  The background worker "opsflags http": a small HTTP/1.1 server for load
 *	  balancers, Kubernetes probes, Prometheus and people.  GET and HEAD on
 *	  /livez, /readyz, /health (and /api/health), /metrics, /flags/<env>,
 *	  /api/status and the status page at /.
 *
 * Off by default (opsflags.http_port = 0); opsflags.http_listen and
 * opsflags.http_port change on reload.  One process, one event loop on
 * PostgreSQL's WaitEventSet: the listening sockets, the clients, the latch
 * and postmaster death.  Sockets are non-blocking; a request head is at
 * most HTTP_MAX_REQUEST bytes and must arrive within opsflags.http_timeout
 * of the connection's last response (or its accept), a response must be
 * taken within the same time (a client that has not taken it by then is
 * reset, so that the kernel does not go on holding it either), and there
 * are at most opsflags.http_max_connections clients, each also counted
 * against fd.c's budget of descriptors: a slow client costs a slot for
 * that long, never the loop.  A pipelining client gets at most
 * HTTP_REQUESTS_PER_TURN answers per turn of the loop, and nothing after a
 * response that closes its connection.  At the limit of clients, a
 * newcomer takes the slot of the client idle the longest; only when every
 * client is busy is it answered 503.  Out of descriptors, the loop stops
 * accepting until a connection closes.
 *
 * The loop never runs SQL: /livez and the status page are answered at once,
 * always, and the endpoints that need the database are asked of the worker
 * "opsflags http sql" (http_sql.c) through a shared memory queue, the
 * connection waiting (unread) for its answer while the loop serves the
 * others.  At most HTTP_SQL_MAX_PENDING requests wait for it; beyond that,
 * and when it cannot be started, they are answered 503 at once.
 *
 * Like the sampler, it connects to opsflags.database; while that database
 * does not exist it serves connected to none (SQL endpoints answer 503) and
 * restarts once it is there.
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsflags.h"
#include "http.h"

PGDLLEXPORT void opsflags_http_main(Datum arg);

#define HTTP_MAX_REQUEST		8192	/* request line and headers */
#define HTTP_MAX_LISTEN			4	/* addresses of one opsflags.http_listen */
#define HTTP_MAX_CONNECTIONS	1024
#define HTTP_RETRY_LISTEN_MS	10000
#define HTTP_CHECK_DATABASE_MS	5000
#define HTTP_ACCEPT_PAUSE_MS	1000	/* out of file descriptors: wait that long */
#define HTTP_REQUESTS_PER_TURN	8	/* pipelined requests of one client per wakeup */
#define HTTP_DRAIN_PER_TURN		65536	/* bytes a lingering client may make us read per wakeup */

static char *opsflags_http_listen = NULL;
static int	opsflags_http_port = 0;
static int	opsflags_http_max_connections = 32;
int			opsflags_http_timeout_ms = 5000;

/* The status page (src/status_page.html, made a C string by the Makefile) */
static const char status_page[] =
#include "status_page.h"
			;

/* Shared: whether the next start may connect to opsflags.database */
typedef struct HttpShared
{
	slock_t		mutex;
	bool		database_ready;
} HttpShared;

static HttpShared *http_shared = NULL;

typedef struct HttpConn
{
	pgsocket	sock;
	MemoryContext context;		/* everything of this connection */
	TimestampTz deadline;		/* closed if the current step is not done */
	TimestampTz take_by;		/* the last response must be taken by then */
	char		in[HTTP_MAX_REQUEST];
	int			inlen;
	StringInfoData out;			/* response bytes not yet sent */
	int			outpos;
	bool		close_after;	/* close once out is sent */
	bool		lingering;		/* sent all, write side shut: reading to EOF */
	bool		more;			/* a request may be buffered whose turn is next */
	TimestampTz idle_since;		/* when its last response was taken (0: none yet) */
	uint32		awaiting;		/* the request the database worker has (0: none) */
	int			awaiting_endpoint;	/* ... and how that request was asked */
	bool		awaiting_head;
	bool		awaiting_keep_alive;
} HttpConn;

static pgsocket listen_socks[HTTP_MAX_LISTEN];
static int	nlisten = 0;
static char *bound_listen = NULL;	/* what the sockets are bound to */
static int	bound_port = 0;
static TimestampTz retry_listen_at = 0;

static HttpConn *conns[HTTP_MAX_CONNECTIONS];
static int	nconns = 0;
static bool events_changed = true;	/* rebuild the WaitEventSet */
static TimestampTz accept_paused_until = 0; /* out of file descriptors */
static TimestampTz accept_failure_logged = 0;

static bool connected = false;	/* to opsflags.database */
static MemoryContext request_context = NULL;

/* requests answered, by status code, for /metrics */
#define N_COUNTED_CODES 10
static const int counted_codes[N_COUNTED_CODES] = {200, 400, 404, 405, 408, 413, 414, 431, 503, 505};
static uint64 requests_by_code[N_COUNTED_CODES];

static void
count_response(int code)
{
	int			i;

	for (i = 0; i < N_COUNTED_CODES; i++)
		if (counted_codes[i] == code)
			requests_by_code[i]++;
}

/* ---------- shared state ---------- */

static void
http_shmem_attach(void)
{
	bool		found;

	http_shared = ShmemInitStruct("opsflags http", sizeof(HttpShared), &found);
	if (!found)
	{
		memset(http_shared, 0, sizeof(HttpShared));
		SpinLockInit(&http_shared->mutex);
	}
}

/* ---------- responses ---------- */

static const char *
status_text(int code)
{
	switch (code)
	{
		case 200:
			return "OK";
		case 400:
			return "Bad Request";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 408:
			return "Request Timeout";
		case 413:
			return "Content Too Large";
		case 414:
			return "URI Too Long";
		case 431:
			return "Request Header Fields Too Large";
		case 503:
			return "Service Unavailable";
		case 505:
			return "HTTP Version Not Supported";
	}
	return "Error";
}

typedef struct HttpRequest
{
	bool		head;			/* HEAD: headers only */
	bool		keep_alive;
	char	   *path;			/* without the query string */
} HttpRequest;

/* Queue a whole response on the connection. */
static void
respond(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
		const char *body, size_t bodylen)
{
	MemoryContext old = MemoryContextSwitchTo(conn->context);

	if (req == NULL || !req->keep_alive)
		conn->close_after = true;

	appendStringInfo(&conn->out,
					 "HTTP/1.1 %d %s\r\n"
					 "Content-Type: %s\r\n"
					 "Content-Length: %zu\r\n"
					 "Cache-Control: no-store\r\n"
					 "X-Content-Type-Options: nosniff\r\n",
					 code, status_text(code), content_type, bodylen);
	if (strncmp(content_type, "text/html", 9) == 0)
		appendStringInfoString(&conn->out,
							   "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
							   "style-src 'unsafe-inline'; img-src data:; connect-src 'self'\r\n");
	if (code == 405)
		appendStringInfoString(&conn->out, "Allow: GET, HEAD\r\n");
	appendStringInfo(&conn->out, "Connection: %s\r\n\r\n",
					 conn->close_after ? "close" : "keep-alive");
	if (req == NULL || !req->head)
		appendBinaryStringInfo(&conn->out, body, bodylen);
	MemoryContextSwitchTo(old);

	count_response(code);
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
	conn->take_by = conn->deadline;
}

static void
respond_text(HttpConn *conn, HttpRequest *req, int code, const char *text)
{
	respond(conn, req, code, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---------- the database worker ---------- */

/*
 * Requests that need SQL go to "opsflags http sql" (http_sql.c) over a
 * shared memory queue, so that the loop never waits for the database.  A
 * connection with a request there is "awaiting": not read (its pipelined
 * requests wait) until the answer comes.
 */
typedef struct HttpPending
{
	uint32		id;
	HttpConn   *conn;			/* NULL: the client has gone or been answered */
} HttpPending;

static MemoryContext sql_context = NULL;	/* the handles below; NULL: stopped */
static dsm_segment *sql_segment = NULL;
static shm_mq_handle *sql_requests = NULL;
static shm_mq_handle *sql_answers = NULL;
static BackgroundWorkerHandle *sql_worker = NULL;
static TimestampTz sql_retry_at = 0;	/* after a failed start */
static HttpPending pending[HTTP_SQL_MAX_PENDING];	/* in the order asked */
static int	npending = 0;
static uint32 last_request_id = 0;

#define HTTP_SQL_RETRY_MS	1000

static void sql_stop(void);

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

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the loop starts it again */
	strlcpy(worker.bgw_library_name, "opsflags", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "opsflags_http_sql_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "opsflags http sql", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "opsflags http sql", BGW_MAXLEN);
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

static void answer_unavailable(HttpConn *conn, HttpSqlEndpoint endpoint, const char *error);
static void frame_answer(HttpConn *conn, int code, HttpBodyKind kind, const char *body, size_t len);

/*
 * The worker is gone (or never came): answer what was waiting for it, and
 * let the next request start another.
 */
static void
sql_stop(void)
{
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
	for (i = 0; i < npending; i++)
		if (pending[i].conn != NULL)
		{
			HttpConn   *conn = pending[i].conn;

			conn->awaiting = 0;
			answer_unavailable(conn, conn->awaiting_endpoint, "the database worker of opsflags http exited");
		}
	npending = 0;
}

/* Hand a request to the worker; the connection waits for its answer. */
static void
ask_sql(HttpConn *conn, HttpRequest *req, HttpSqlEndpoint endpoint, const char *arg)
{
	HttpSqlRequest msg;

	conn->awaiting_head = req->head;
	conn->awaiting_keep_alive = req->keep_alive;
	if (!connected)
	{
		char	   *error = psprintf("database \"%s\" does not exist", opsflags_database);

		answer_unavailable(conn, endpoint, error);
		return;
	}
	if (npending == HTTP_SQL_MAX_PENDING)
	{
		answer_unavailable(conn, endpoint, "too many requests are waiting for the database");
		return;
	}
	if (sql_segment == NULL && !sql_start())
	{
		answer_unavailable(conn, endpoint, "the database worker of opsflags http could not be started");
		return;
	}

	memset(&msg, 0, sizeof(msg));
	msg.id = ++last_request_id;
	msg.endpoint = endpoint;
	msg.queued_at = GetCurrentTimestamp();
	if (arg)
		strlcpy(msg.arg, arg, sizeof(msg.arg));
	/* Never blocks: the queue has room for HTTP_SQL_MAX_PENDING requests. */
	if (shm_mq_send(sql_requests, sizeof(msg), &msg, true, true) != SHM_MQ_SUCCESS)
	{
		sql_stop();
		answer_unavailable(conn, endpoint, "the database worker of opsflags http exited");
		return;
	}
	pending[npending].id = msg.id;
	pending[npending].conn = conn;
	npending++;
	conn->awaiting = msg.id;
	conn->awaiting_endpoint = endpoint;
	/* The worker answers within about twice the timeout; this is the backstop. */
	conn->deadline = TimestampTzPlusMilliseconds(msg.queued_at, 3 * opsflags_http_timeout_ms);
	events_changed = true;
}

/* Forget the connection's request: its answer, when it comes, goes nowhere. */
static void
sql_forget(HttpConn *conn)
{
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].conn == conn)
			pending[i].conn = NULL;
	conn->awaiting = 0;
}

/* Take the worker's answers, and notice that it has gone. */
static void
sql_receive(void)
{
	while (sql_answers != NULL)
	{
		Size		nbytes;
		void	   *data;
		HttpSqlAnswer head;
		shm_mq_result res = shm_mq_receive(sql_answers, &nbytes, &data, true);
		HttpConn   *conn;
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
		npending -= i + 1;
		memmove(pending, pending + i + 1, sizeof(HttpPending) * npending);
		if (conn == NULL)
			continue;

		conn->awaiting = 0;
		frame_answer(conn, head.code, head.kind, (char *) data + sizeof(head), nbytes - sizeof(head));
	}
}

/*
 * Queue the answer of a request that needed SQL, framed for its
 * connection, then go on with the connection's next request.
 */
static void
frame_answer(HttpConn *conn, int code, HttpBodyKind kind, const char *body, size_t len)
{
	HttpRequest req;

	memset(&req, 0, sizeof(req));
	req.head = conn->awaiting_head;
	req.keep_alive = conn->awaiting_keep_alive;
	if (kind == HTTP_BODY_METRICS)
	{
		StringInfoData buf;
		int			i;

		/* The loop's own family, last */
		initStringInfo(&buf);
		appendBinaryStringInfo(&buf, body, len);
		http_metrics_requests_header(&buf);
		for (i = 0; i < N_COUNTED_CODES; i++)
			appendStringInfo(&buf, "opsflags_http_requests_total{code=\"%d\"} " UINT64_FORMAT "\n",
							 counted_codes[i], requests_by_code[i] + (counted_codes[i] == code ? 1 : 0));
		respond(conn, &req, code, "text/plain; version=0.0.4; charset=utf-8", buf.data, buf.len);
		pfree(buf.data);
	}
	else
		respond(conn, &req, code, "application/json", body, len);
	conn->more = true;			/* its pipelined requests are next */
	events_changed = true;
}

static void
answer_unavailable(HttpConn *conn, HttpSqlEndpoint endpoint, const char *error)
{
	StringInfoData body;
	int			code;
	HttpBodyKind kind;

	initStringInfo(&body);
	http_sql_unavailable(endpoint, error, &code, &kind, &body);
	frame_answer(conn, code, kind, body.data, body.len);
	pfree(body.data);
}

/* An environment name as opsflags.environments allows it */
static bool
valid_environment(const char *p)
{
	const char *s = p;

	if (*p == '\0' || strlen(p) > 63)
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  (p != s && (*p == '_' || *p == '-'))))
			return false;
	return true;
}

static void
route(HttpConn *conn, HttpRequest *req)
{
	const char *p = req->path;

	if (strcmp(p, "/") == 0 || strcmp(p, "/index.html") == 0)
		respond(conn, req, 200, "text/html; charset=utf-8", status_page, sizeof(status_page) - 1);
	else if (strcmp(p, "/livez") == 0)
		respond_text(conn, req, 200, "ok\n");
	else if (strcmp(p, "/readyz") == 0)
		ask_sql(conn, req, HTTP_SQL_READY, NULL);
	else if (strcmp(p, "/health") == 0 || strcmp(p, "/api/health") == 0)
		ask_sql(conn, req, HTTP_SQL_HEALTH, NULL);
	else if (strcmp(p, "/metrics") == 0)
		ask_sql(conn, req, HTTP_SQL_METRICS, NULL);
	else if (strcmp(p, "/api/status") == 0)
		ask_sql(conn, req, HTTP_SQL_STATUS, NULL);
	else if (strncmp(p, "/flags/", 7) == 0 && valid_environment(p + 7))
		ask_sql(conn, req, HTTP_SQL_FLAGS, p + 7);
	else
		respond_text(conn, req, 404, "not found\n");
}

/* ---------- requests ---------- */

/* Does header line [line, end) have this name?  Returns its value or NULL. */
static char *
header_value(char *line, char *end, const char *name)
{
	size_t		n = strlen(name);

	if ((size_t) (end - line) <= n || pg_strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	while (line < end && (*line == ' ' || *line == '\t'))
		line++;
	return line;
}

/*
 * Answer the complete request head in conn->in[0, headlen).  A malformed
 * request gets a 4xx and the connection closes after it.
 */
static void
handle_request(HttpConn *conn, int headlen)
{
	HttpRequest req;
	char	   *head = conn->in;
	char	   *end = head + headlen;
	char	   *line_end;
	char	   *method,
			   *target,
			   *version,
			   *p;
	bool		http10;

	memset(&req, 0, sizeof(req));
	if (memchr(head, '\0', headlen) != NULL)
	{
		respond_text(conn, NULL, 400, "malformed request\n");
		return;
	}
	head[headlen - 1] = '\0';	/* the last '\n' of the blank line */

	/* request line: METHOD SP target SP HTTP/1.x */
	line_end = strstr(head, "\r\n");
	*line_end = '\0';			/* there is one: the head ends with two */
	method = head;
	target = strchr(method, ' ');
	version = target ? strchr(target + 1, ' ') : NULL;
	if (target == NULL || version == NULL || strchr(version + 1, ' ') != NULL)
	{
		respond_text(conn, NULL, 400, "malformed request line\n");
		return;
	}
	*target++ = '\0';
	*version++ = '\0';
	if (strcmp(version, "HTTP/1.1") == 0)
		http10 = false;
	else if (strcmp(version, "HTTP/1.0") == 0)
		http10 = true;
	else
	{
		respond_text(conn, NULL, strncmp(version, "HTTP/", 5) == 0 ? 505 : 400,
					 "only HTTP/1.0 and HTTP/1.1 are served\n");
		return;
	}
	if (target[0] != '/')
	{
		respond_text(conn, NULL, 400, "the request target must be a path\n");
		return;
	}
	req.keep_alive = !http10;

	/* headers: only Connection and a body matter */
	for (p = line_end + 2; p < end && *p != '\r'; p = line_end + 2)
	{
		char	   *v;

		line_end = strstr(p, "\r\n");
		if (line_end == NULL)
			break;
		if ((v = header_value(p, line_end, "Connection")) != NULL)
		{
			if (pg_strncasecmp(v, "close", 5) == 0)
				req.keep_alive = false;
			else if (pg_strncasecmp(v, "keep-alive", 10) == 0)
				req.keep_alive = true;
		}
		else if (header_value(p, line_end, "Transfer-Encoding") != NULL ||
				 ((v = header_value(p, line_end, "Content-Length")) != NULL && atol(v) != 0))
		{
			respond_text(conn, NULL, 413, "request bodies are not accepted\n");
			return;
		}
	}

	req.head = strcmp(method, "HEAD") == 0;
	if (!req.head && strcmp(method, "GET") != 0)
	{
		respond_text(conn, &req, 405, "only GET and HEAD are served\n");
		return;
	}
	req.path = target;
	if ((p = strchr(target, '?')) != NULL)
		*p = '\0';
	route(conn, &req);
}

/* ---------- connections ---------- */

/*
 * Bytes of responses the client has not taken: still queued here or, where
 * the kernel tells, in the socket's send queue.
 */
static int
untaken_bytes(HttpConn *conn)
{
	int			n = conn->out.len - conn->outpos;

#ifdef SIOCOUTQ
	{
		int			queued = 0;

		if (ioctl(conn->sock, SIOCOUTQ, &queued) == 0 && queued > 0)
			n += queued;
	}
#endif
	return n;
}

/*
 * Close connection i.  abort: reset it, discarding what the client has not
 * taken, rather than leave the kernel holding that for a client that does
 * not read.
 */
static void
close_conn(int i, bool abort)
{
	HttpConn   *conn = conns[i];

	if (conn->awaiting)
		sql_forget(conn);
	if (abort)
	{
		struct linger lg;

		lg.l_onoff = 1;
		lg.l_linger = 0;
		(void) setsockopt(conn->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	closesocket(conn->sock);
	ReleaseExternalFD();
	MemoryContextDelete(conn->context);
	conns[i] = conns[--nconns];
	events_changed = true;
	/* a descriptor is free again */
	accept_paused_until = 0;
}

static bool read_conn(HttpConn *conn);

/*
 * At the limit: close the connections whose clients are gone but not yet
 * seen to be (a lingering one at its end, an idle one closed), so that a
 * newcomer gets their slot rather than a 503.
 */
static void
reap_gone_clients(void)
{
	int			i = 0;

	while (i < nconns)
	{
		HttpConn   *conn = conns[i];
		char		c;

		if (conn->out.len == 0 &&
			(conn->lingering ? !read_conn(conn) :
			 conn->inlen == 0 && recv(conn->sock, &c, 1, MSG_PEEK) == 0))
		{
			close_conn(i, false);
			continue;
		}
		i++;
	}
}

/*
 * At the limit still: close the keep-alive connection idle the longest (it
 * has been answered, has begun no other request, has nothing to send and
 * nothing asked of the database), so that idle keep-alive clients never lock
 * a probe out.  A client whose idle connection is closed just connects
 * again, as HTTP/1.1 allows.  A connection not yet answered is not idle: its
 * request may be on its way.
 */
static void
close_idlest_client(void)
{
	int			idlest = -1;
	int			i;

	for (i = 0; i < nconns; i++)
	{
		HttpConn   *conn = conns[i];
		char		c;

		if (conn->idle_since != 0 && conn->inlen == 0 && conn->out.len == 0 &&
			conn->awaiting == 0 && !conn->lingering && !conn->more &&
			(idlest < 0 || conn->idle_since < conns[idlest]->idle_since) &&
			recv(conn->sock, &c, 1, MSG_PEEK) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			idlest = i;
	}
	if (idlest >= 0)
		close_conn(idlest, false);
}

static void
accept_clients(pgsocket lsock)
{
	bool		reaped = false;

	for (;;)
	{
		pgsocket	sock = accept(lsock, NULL, NULL);
		HttpConn   *conn;
		MemoryContext cxt;
		int			on = 1;

		if (sock == PGINVALID_SOCKET)
		{
			int			save_errno = errno;
			bool		exhausted;

			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
				return;

			/*
			 * Out of descriptors or memory, the listening socket stays
			 * readable: stop waiting on it until a connection closes or a
			 * moment has passed.  Say so at most once a minute.
			 */
			exhausted = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
			if (exhausted)
			{
				accept_paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_ACCEPT_PAUSE_MS);
				events_changed = true;
			}
			if (TimestampDifferenceExceeds(accept_failure_logged, GetCurrentTimestamp(), 60000))
			{
				accept_failure_logged = GetCurrentTimestamp();
				errno = save_errno;
				ereport(WARNING,
						(errcode_for_socket_access(),
						 errmsg("opsflags http could not accept a connection: %m"),
						 exhausted ? errdetail("New clients wait until a connection closes.") : 0,
						 errhint("This is logged at most once a minute.")));
			}
			return;
		}

		/*
		 * A client holds a descriptor for up to opsflags.http_timeout: count
		 * it as PostgreSQL's fd.c asks, so that the server's own files are
		 * not starved of descriptors.
		 */
		if (nconns >= opsflags_http_max_connections && !reaped)
		{
			reap_gone_clients();
			reaped = true;
		}
		if (nconns >= opsflags_http_max_connections)
			close_idlest_client();
		if (nconns >= opsflags_http_max_connections || !AcquireExternalFD())
		{
			static const char busy[] =
				"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
				"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

			/* Best effort: the client is told, the slot is not taken. */
			(void) pg_set_noblock(sock);
			(void) send(sock, busy, sizeof(busy) - 1, 0);
			closesocket(sock);
			count_response(503);
			continue;
		}
		if (!pg_set_noblock(sock))
		{
			closesocket(sock);
			ReleaseExternalFD();
			continue;
		}
		(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

		cxt = AllocSetContextCreate(TopMemoryContext, "opsflags http connection",
									ALLOCSET_SMALL_SIZES);
		conn = MemoryContextAllocZero(cxt, sizeof(HttpConn));
		conn->sock = sock;
		conn->context = cxt;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
		MemoryContextSwitchTo(cxt);
		initStringInfo(&conn->out);
		MemoryContextSwitchTo(request_context);
		conns[nconns++] = conn;
		events_changed = true;
	}
}

/* Send what is queued.  False when the connection is done with. */
static bool
flush_conn(HttpConn *conn)
{
	while (conn->outpos < conn->out.len)
	{
		ssize_t		n = send(conn->sock, conn->out.data + conn->outpos,
							 conn->out.len - conn->outpos, 0);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;	/* wait until writeable */
			return false;
		}
		conn->outpos += n;
	}
	resetStringInfo(&conn->out);
	conn->outpos = 0;
	if (conn->close_after)
	{
		/*
		 * Closing with unread input would reset the connection, and the
		 * client could lose the response: shut our side and read what it
		 * still sends until it closes (or a second passes).
		 */
		shutdown(conn->sock, SHUT_WR);
		conn->lingering = true;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 Min(opsflags_http_timeout_ms, 1000));
		events_changed = true;
		return true;
	}
	/* Now idle: the next request has the timeout from here. */
	conn->idle_since = GetCurrentTimestamp();
	conn->deadline = TimestampTzPlusMilliseconds(conn->idle_since, opsflags_http_timeout_ms);
	return true;
}

/* Find the end of a request head; returns its length or 0. */
static int
head_length(HttpConn *conn)
{
	int			i;

	for (i = 3; i < conn->inlen; i++)
		if (conn->in[i] == '\n' && conn->in[i - 1] == '\r' &&
			conn->in[i - 2] == '\n' && conn->in[i - 3] == '\r')
			return i + 1;
	return 0;
}

/*
 * Read what the client sent and answer the complete requests in it, one at
 * a time (a pipelined one waits until the previous response is sent), at
 * most HTTP_REQUESTS_PER_TURN per call: conn->more says the rest wait for
 * the loop's next turn, so that one busy client cannot starve the others.
 * Nothing after a response that closes the connection is answered.  False
 * when the connection is done with.
 */
static bool
read_conn(HttpConn *conn)
{
	bool		was_writing = conn->out.len > 0;
	int			served = 0;

	conn->more = false;
	while (conn->out.len == 0 && !conn->lingering && conn->awaiting == 0)
	{
		int			headlen = head_length(conn);

		if (headlen > 0)
		{
			if (served++ == HTTP_REQUESTS_PER_TURN)
			{
				conn->more = true;
				break;
			}
			handle_request(conn, headlen);
			MemoryContextReset(request_context);
			memmove(conn->in, conn->in + headlen, conn->inlen - headlen);
			conn->inlen -= headlen;
			if (conn->awaiting)
				break;			/* its answer comes from the database worker */
			if (!flush_conn(conn))
				return false;
			continue;
		}
		if (conn->inlen == HTTP_MAX_REQUEST)
		{
			respond_text(conn, NULL, 431, "request head too large\n");
			if (!flush_conn(conn))
				return false;
			continue;
		}
		else
		{
			ssize_t		n = recv(conn->sock, conn->in + conn->inlen,
								 HTTP_MAX_REQUEST - conn->inlen, 0);

			if (n == 0)
				return false;	/* the client closed */
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				return false;
			}
			conn->inlen += n;
		}
	}

	/*
	 * Lingering: discard what the client still sends until it closes, a
	 * bounded amount per turn (what is left keeps the socket readable).
	 */
	if (conn->lingering)
	{
		int			drained = 0;

		while (drained < HTTP_DRAIN_PER_TURN)
		{
			char		discard[4096];
			ssize_t		n = recv(conn->sock, discard, sizeof(discard), 0);

			if (n == 0)
				return false;
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				return errno == EAGAIN || errno == EWOULDBLOCK;
			}
			drained += n;
		}
	}
	if (was_writing != (conn->out.len > 0))
		events_changed = true;
	return true;
}

/* Close connections past their deadline; returns ms to the next one (-1: none). */
static long
expire_conns(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	int			i = 0;

	while (i < nconns)
	{
		HttpConn   *conn = conns[i];

		if (conn->awaiting && conn->deadline <= now)
		{
			/* The backstop: the database worker should have answered. */
			int			endpoint = conn->awaiting_endpoint;

			sql_forget(conn);
			answer_unavailable(conn, endpoint, "the database did not answer in time");
		}
		else if (conn->deadline <= now)
		{
			int			untaken = untaken_bytes(conn);

			/*
			 * A client that is still taking its last response may do so
			 * until opsflags.http_timeout after it was queued, lingering or
			 * not.
			 */
			if (conn->lingering && untaken > 0 && conn->take_by > now)
				conn->deadline = conn->take_by;
			else
			{
				/*
				 * A request begun but not finished is told so; an idle one
				 * is just closed; one whose response was not taken in time
				 * is reset.
				 */
				if (untaken == 0 && conn->inlen > 0 && !conn->lingering)
				{
					respond_text(conn, NULL, 408, "request not received in time\n");
					(void) send(conn->sock, conn->out.data, conn->out.len, 0);
				}
				close_conn(i, untaken > 0);
				continue;
			}
		}
		if (next == 0 || conn->deadline < next)
			next = conn->deadline;
		i++;
	}
	if (next == 0)
		return -1;
	return TimestampDifferenceMilliseconds(now, next) + 1;
}

/* ---------- listening ---------- */

static void
close_listeners(void)
{
	int			i;

	for (i = 0; i < nlisten; i++)
	{
		closesocket(listen_socks[i]);
		ReleaseExternalFD();
	}
	nlisten = 0;
	bound_port = 0;
	if (bound_listen)
		pfree(bound_listen);
	bound_listen = NULL;
	events_changed = true;
}

/* Listen on opsflags.http_listen (one name: every address it has; "*": all). */
static void
open_listeners(void)
{
	struct addrinfo hints;
	struct addrinfo *addrs,
			   *ai;
	char		port[16];
	const char *node;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	node = strcmp(opsflags_http_listen, "*") == 0 || opsflags_http_listen[0] == '\0' ? NULL : opsflags_http_listen;
	snprintf(port, sizeof(port), "%d", opsflags_http_port);

	retry_listen_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_RETRY_LISTEN_MS);
	rc = getaddrinfo(node, port, &hints, &addrs);
	if (rc != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("opsflags http could not resolve \"%s\": %s", opsflags_http_listen, gai_strerror(rc)),
				 errhint("Set opsflags.http_listen to an address of this host, or \"*\".")));
		return;
	}
	for (ai = addrs; ai != NULL && nlisten < HTTP_MAX_LISTEN; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			on = 1;

		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
#endif
		if (bind(sock, ai->ai_addr, ai->ai_addrlen) < 0 || listen(sock, 128) < 0 ||
			!pg_set_noblock(sock))
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("opsflags http could not listen on \"%s\" port %d: %m",
							opsflags_http_listen, opsflags_http_port),
					 errhint("Another attempt is made every %d s and on reload.", HTTP_RETRY_LISTEN_MS / 1000)));
			closesocket(sock);
			continue;
		}
		ReserveExternalFD();
		listen_socks[nlisten++] = sock;
	}
	freeaddrinfo(addrs);

	if (nlisten > 0)
	{
		bound_listen = MemoryContextStrdup(TopMemoryContext, opsflags_http_listen);
		bound_port = opsflags_http_port;
		ereport(LOG,
				(errmsg("opsflags http listening on \"%s\" port %d", bound_listen, bound_port)));
	}
	events_changed = true;
}

/* Make the sockets match the settings (after start and reload). */
static void
apply_settings(void)
{
	bool		wanted = opsflags_http_port > 0;
	bool		same = nlisten > 0 && bound_port == opsflags_http_port &&
		strcmp(bound_listen, opsflags_http_listen) == 0;

	if (nlisten > 0 && !same)
	{
		int			i;

		ereport(LOG,
				(errmsg("opsflags http stops listening on \"%s\" port %d", bound_listen, bound_port)));
		close_listeners();
		for (i = nconns - 1; i >= 0; i--)
			close_conn(i, false);
	}
	if (wanted && nlisten == 0)
		open_listeners();

	if (nlisten > 0)
		pgstat_report_activity(STATE_IDLE, psprintf("listening on %s port %d", bound_listen, bound_port));
	else if (wanted)
		pgstat_report_activity(STATE_IDLE, psprintf("cannot listen on %s port %d", opsflags_http_listen,
													 opsflags_http_port));
	else
		pgstat_report_activity(STATE_IDLE, "off (opsflags.http_port = 0)");
}

/* ---------- main ---------- */

static WaitEventSet *
build_event_set(void)
{
	int			i;
#if PG_VERSION_NUM >= 170000
	/* No resource owner: freed by the loop, like the TopMemoryContext set before 17 */
	WaitEventSet *set = CreateWaitEventSet(NULL, 2 + nlisten + nconns);
#else
	WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, 2 + nlisten + nconns);
#endif

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nlisten && accept_paused_until == 0; i++)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, listen_socks[i], NULL, NULL);
	for (i = 0; i < nconns; i++)
		if (conns[i]->awaiting == 0)	/* not read while the database answers */
			AddWaitEventToSet(set, conns[i]->out.len > 0 ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE,
							  conns[i]->sock, NULL, conns[i]);
	events_changed = false;
	return set;
}

void
opsflags_http_main(Datum arg)
{
	WaitEventSet *set = NULL;
	WaitEvent	events[64];
	pgsocket	ready_listen[HTTP_MAX_LISTEN];
	int			nready;
	bool		ready;
	TimestampTz next_database_check = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&http_shared->mutex);
	ready = http_shared->database_ready;
	http_shared->database_ready = false;	/* if connecting fails, the next start waits */
	SpinLockRelease(&http_shared->mutex);

	BackgroundWorkerInitializeConnection(ready ? opsflags_database : NULL, NULL, 0);
	connected = ready;
	if (ready)
	{
		SpinLockAcquire(&http_shared->mutex);
		http_shared->database_ready = true;
		SpinLockRelease(&http_shared->mutex);
	}
	pgstat_report_appname("opsflags http");

	/* Fixed queries only, resolved in pg_catalog; evaluations are not usage. */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("opsflags.track_usage", "off", PGC_SUSET, PGC_S_OVERRIDE);

	request_context = AllocSetContextCreate(TopMemoryContext, "opsflags http request",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(request_context);
	apply_settings();

	for (;;)
	{
		long		timeout;
		int			nevents;
		int			i;

		/* Not connected: look for the database, restart connected once it is there. */
		if (!connected && GetCurrentTimestamp() >= next_database_check)
		{
			if (opsflags_database_exists(opsflags_database))
			{
				SpinLockAcquire(&http_shared->mutex);
				http_shared->database_ready = true;
				SpinLockRelease(&http_shared->mutex);
				proc_exit(1);
			}
			MemoryContextSwitchTo(request_context);
			next_database_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_CHECK_DATABASE_MS);
		}
		if (opsflags_http_port > 0 && nlisten == 0 && GetCurrentTimestamp() >= retry_listen_at)
			apply_settings();

		/* Clients with buffered requests whose turn has come (read_conn) */
		for (i = 0; i < nconns;)
		{
			HttpConn   *conn = conns[i];

			if (conn->more && conn->out.len == 0 && conn->awaiting == 0 && !read_conn(conn))
			{
				close_conn(i, false);
				continue;
			}
			i++;
		}
		MemoryContextReset(request_context);

		timeout = expire_conns();
		for (i = 0; i < nconns; i++)
			if (conns[i]->more && conns[i]->out.len == 0 && conns[i]->awaiting == 0)
				timeout = 0;
		if (accept_paused_until != 0)
		{
			long		paused_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), accept_paused_until);

			if (paused_ms <= 0)
			{
				accept_paused_until = 0;
				events_changed = true;
			}
			else
				timeout = timeout < 0 ? paused_ms : Min(timeout, paused_ms);
		}
		if (!connected)
			timeout = timeout < 0 ? HTTP_CHECK_DATABASE_MS : Min(timeout, HTTP_CHECK_DATABASE_MS);
		if (opsflags_http_port > 0 && nlisten == 0)
			timeout = timeout < 0 ? HTTP_RETRY_LISTEN_MS : Min(timeout, HTTP_RETRY_LISTEN_MS);

		if (events_changed)
		{
			if (set)
				FreeWaitEventSet(set);
			set = build_event_set();
		}
		nevents = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);

		/*
		 * Clients first, then new connections: a slot that a client has just
		 * given up is free before a newcomer is counted against
		 * opsflags.http_max_connections.
		 */
		nready = 0;
		for (i = 0; i < nevents; i++)
		{
			WaitEvent  *ev = &events[i];
			HttpConn   *conn = (HttpConn *) ev->user_data;
			int			j;

			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
				if (ConfigReloadPending)
				{
					ConfigReloadPending = false;
					ProcessConfigFile(PGC_SIGHUP);
					apply_settings();
					nready = 0;
					break;		/* the sockets may have changed */
				}
				continue;
			}
			if (conn == NULL)
			{
				if (ev->events & WL_SOCKET_READABLE)
					ready_listen[nready++] = ev->fd;
				continue;
			}
			/* Still open?  An earlier event of this round may have closed it. */
			for (j = 0; j < nconns && conns[j] != conn; j++)
				;
			if (j == nconns)
				continue;
			if (!((ev->events & WL_SOCKET_WRITEABLE) ? flush_conn(conn) && read_conn(conn) : read_conn(conn)))
				close_conn(j, false);
			else if ((ev->events & WL_SOCKET_WRITEABLE) && conn->out.len == 0)
				events_changed = true;	/* back to reading */
		}
		for (i = 0; i < nready; i++)
			accept_clients(ready_listen[i]);
		/* The database worker's answers (it sets our latch) */
		sql_receive();
		MemoryContextReset(request_context);
	}
}

void
opsflags_http_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("opsflags.http_listen",
							   "Address the opsflags HTTP server listens on (\"*\": all).",
							   NULL,
							   &opsflags_http_listen,
							   "127.0.0.1",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_port",
							"TCP port of the opsflags HTTP server (0 turns it off).",
							NULL,
							&opsflags_http_port,
							0, 0, 65535,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_max_connections",
							"Clients the opsflags HTTP server serves at once; more are answered 503 and closed.",
							NULL,
							&opsflags_http_max_connections,
							32, 1, HTTP_MAX_CONNECTIONS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_timeout",
							"Time a client has to send a request and take a response, and a query to answer.",
							NULL,
							&opsflags_http_timeout_ms,
							5000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	opsflags_shmem_register(sizeof(HttpShared), NULL, http_shmem_attach);

	/* Also on a standby, where /readyz reports the replay lag. */
	opsflags_register_worker("opsflags http", "opsflags_http_main");
}
