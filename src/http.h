/*
 * http.h
 *	  The HTTP server as its families of endpoints see it: the routing table
 *	  they register into, what a handler may do with a request in the loop
 *	  (answer it, or hand it to the database worker), and what a database
 *	  handler has in that worker (fixed queries, an answer to fill).
 *
 * The server core (http_server.c, http_conn.c, http_dbqueue.c) knows no
 * endpoint: it parses a request, finds its route (http_routes.c) and calls
 * the route's handler.  A family of endpoints is one file (http_probes.c,
 * http_metrics.c, http_status.c, http_flags.c) with a function that
 * registers its routes; a new family is a new file and one line in
 * http_endpoints.c.
 */
#ifndef OPSFLAGS_HTTP_H
#define OPSFLAGS_HTTP_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "opsflags.h"

/* A client connection; only the core looks inside. */
typedef struct HttpConn HttpConn;
struct HttpRoute;

/* Methods, as bits: a route says which it serves (HEAD with GET). */
#define HTTP_GET		0x01
#define HTTP_HEAD		0x02
#define HTTP_POST		0x04
#define HTTP_PUT		0x08
#define HTTP_PATCH		0x10
#define HTTP_DELETE		0x20
#define HTTP_OPTIONS	0x40
#define HTTP_REPORT		0x80

/* The longest request body taken (Content-Length only; 413 beyond). */
#define HTTP_MAX_BODY	65536

/*
 * A request, as the core parsed it.  Everything points into the
 * connection's buffer and lasts until the handler returns; a handler that
 * hands the request to the database worker has what the worker needs
 * copied into the queue (http_ask_database).
 */
typedef struct HttpRequest
{
	int			method;			/* one of the HTTP_* bits */
	bool		head;			/* HEAD: headers only */
	bool		keep_alive;
	char	   *path;			/* without the query string, not decoded */
	char	   *query;			/* after '?', not decoded; NULL: none */
	const struct HttpRoute *route;	/* the route that matched */
	/* the headers endpoints read (NULL: absent), values trimmed */
	const char *api_key;		/* X-API-Key, else Authorization (without
								 * "Bearer ") */
	const char *if_none_match;
	const char *origin;			/* an allowed CORS origin, else NULL */
	const char *content_type;
	const char *body;			/* NUL-terminated; NULL: none */
	int			bodylen;
} HttpRequest;

/*
 * What the database worker has of a request: the handler's argument and
 * the parts of the request an answer may read (NULL: absent).
 */
typedef struct HttpCall
{
	int			method;
	const char *arg;
	const char *query;
	const char *api_key;
	const char *if_none_match;
	const char *body;			/* NUL-terminated */
	int			bodylen;
} HttpCall;

/*
 * An answer from the database worker: a status code, header lines to add
 * ("Name: value\r\n" each, e.g. an ETag) and a body.
 */
typedef struct HttpAnswer
{
	int			code;
	StringInfoData body;
	StringInfoData headers;
	const HttpCall *call;		/* the request being answered */
} HttpAnswer;

/*
 * A route: a path (or, with prefix, what a path starts with, the rest being
 * the handler's argument), the methods it serves (0: GET and HEAD) and what
 * answers it.  The core answers other methods 405, a CORS preflight
 * (OPTIONS) itself, and bodies beyond HTTP_MAX_BODY 413.
 *
 * The handler, in the loop, answers the request: http_respond() before it
 * returns, never waiting, let alone running SQL, or http_ask_database().
 * A route that needs the database has an answer function, run in the
 * database worker "opsflags http sql" (http_sql.c), which is handed the
 * request over a shared memory queue while the loop serves everyone else:
 * its handler is http_ask_database itself, or one that calls it (or
 * answers at once, say 404 for an argument that names nothing).
 */
typedef struct HttpRoute
{
	const char *path;
	bool		prefix;			/* path is a prefix; the rest is the argument */
	int			methods;		/* HTTP_* bits; 0: GET and HEAD */

	/* In the loop */
	void		(*handler) (HttpConn *conn, HttpRequest *req, const char *arg);

	/* Routes that need the database: */
	/* in the worker, the answer (arg: what the handler passed on) */
	void		(*answer) (HttpAnswer *answer, const char *arg);
	/* the answer when the database did not give one (NULL: http_answer_unhealthy) */
	void		(*unavailable) (HttpAnswer *answer, const char *error);
	const char *content_type;	/* of both */
	/* in the loop, what it adds to the body before sending it (NULL: nothing) */
	void		(*finish) (StringInfo body, int code);
} HttpRoute;

/* http_routes.c: the routing table, filled at start-up (preload) */
extern void http_route(const HttpRoute *route);
extern const HttpRoute *http_find_route(const char *path, const char **arg);
extern int	http_route_id(const HttpRoute *route);
extern const HttpRoute *http_route_by_id(int id);

/* http_endpoints.c: the families, each registering its routes */
extern void http_register_endpoints(void);
extern void http_probes_routes(void);
extern void http_metrics_routes(void);
extern void http_status_routes(void);
extern void http_flags_routes(void);
extern void http_ofrep_routes(void);
extern void http_launchdarkly_routes(void);
extern void http_unleash_routes(void);

/* ---------- in the loop (http_conn.c, http_dbqueue.c) ---------- */

extern int	opsflags_http_timeout_ms;

/* Queue a whole response; the connection closes after it unless keep-alive. */
extern void http_respond(HttpConn *conn, HttpRequest *req, int code,
						 const char *content_type, const char *body, size_t bodylen);
/* ... with header lines ("Name: value\r\n" each; NULL: none) */
extern void http_respond_headers(HttpConn *conn, HttpRequest *req, int code,
								 const char *content_type, const char *headers,
								 const char *body, size_t bodylen);
/* A JSON answer {"errorCode": code, "errorDetails": details} */
extern void http_respond_json_error(HttpConn *conn, HttpRequest *req, int code,
									const char *error_code, const char *details);
extern void http_respond_text(HttpConn *conn, HttpRequest *req, int code, const char *text);

/*
 * A handler: the database worker answers (arg: at most HTTP_SQL_MAX_ARG
 * bytes), with the request's query, key, If-None-Match and body.
 */
extern void http_ask_database(HttpConn *conn, HttpRequest *req, const char *arg);

/* opsflags.http_cors_origins: whether a browser page of this origin may read answers */
extern char *opsflags_http_cors_origins;
extern bool http_cors_allowed(const char *origin);

/* Responses answered since the server started, by status code; returns how many codes. */
#define HTTP_COUNTED_CODES 17
extern int	http_response_counts(int codes[HTTP_COUNTED_CODES], uint64 counts[HTTP_COUNTED_CODES]);

/*
 * Streams: the shape for server-sent events, to be built with the first
 * endpoint that streams (no code yet: nothing could exercise it).  A
 * connection has a state (HttpConnState, http_core.h), its own memory
 * context and output buffer, and one pass over the connections keeps
 * every deadline (http_expire_conns); a stream is one more state.  A
 * family of streaming endpoints will use:
 *
 *	HttpStream *http_stream_begin(HttpConn *conn, HttpRequest *req,
 *								  const char *content_type,
 *								  void (*closed) (HttpStream *, void *), void *arg);
 *		In a route's handler: queue the response head (no Content-Length:
 *		closing the connection ends the stream) and make the connection a
 *		stream: out of the request slots (opsflags.http_max_connections;
 *		streams get a limit of their own and a table that grows), never
 *		evicted as idle, read only to see EOF (its request buffer freed),
 *		and with a heartbeat (an SSE comment line) instead of a deadline.
 *	bool http_stream_push(HttpStream *stream, const char *data, size_t len);
 *		In the loop, from the family's own wakeup: append to the stream's
 *		buffer and send what the socket takes now, never waiting.  A buffer
 *		that would pass its bound closes the stream and returns false: a
 *		slow reader is dropped, not waited for.
 *	void http_stream_close(HttpStream *stream);
 *
 * The core calls closed() whenever it drops a stream (client gone, buffer
 * full, reload), so that the family forgets its handle.  With thousands of
 * streams the WaitEventSet, rebuilt at most once per turn of the loop
 * today, should instead be changed in place (ModifyWaitEvent) for a stream
 * that has bytes to send.
 */

/* ---------- the database worker (http_sql.c) ---------- */

/* A query's rows as C strings (NULL for SQL NULL) */
typedef struct HttpResult
{
	int			nrows;
	int			ncols;
	char	  **values;			/* nrows * ncols */
	int			sqlerrcode;		/* when the query failed */
	char	   *error;
} HttpResult;

static inline const char *
http_result_value(HttpResult *r, int row, int col)
{
	return r->values[row * r->ncols + col];
}

/*
 * Run a fixed query in its own read-only transaction as as_role (InvalidOid:
 * the worker's own superuser), bounded by opsflags.http_timeout; false, with
 * the error in *result, if it failed.
 */
extern bool http_sql(OpsQuery *query, Datum *args, const char *nulls, Oid as_role,
					 HttpResult *result);

/* An answer was given for this API key: its last_used_at is written (once a minute). */
extern void http_key_used(int64 key_id);

/* The health_status() document and status as pg_monitor sees them (http_probes.c) */
extern bool http_health_document(HttpResult *result);

/* 503 {"status": "unhealthy", "error": error} */
extern void http_answer_unhealthy(HttpAnswer *answer, const char *error);
/* The route's answer when the database did not answer */
extern void http_answer_unavailable(const HttpRoute *route, const char *error, HttpAnswer *answer);

/* Both workers: fixed queries only, resolved in pg_catalog; evaluations are not usage. */
extern void http_pin_session(void);

/* ---------- the queue between them ---------- */

/*
 * Loop -> worker: one request, this header then its strings, each with its
 * terminating NUL: arg, query, api_key, if_none_match, body (a length of -1:
 * absent, not sent).
 */
#define HTTP_SQL_MAX_ARG	256
#define HTTP_SQL_PARTS		5
typedef struct HttpSqlRequest
{
	uint32		id;
	int32		route;			/* http_route_id() */
	int32		method;
	TimestampTz queued_at;
	int32		lengths[HTTP_SQL_PARTS];
} HttpSqlRequest;

/* Worker -> loop: this header, then the header lines, then the body */
typedef struct HttpSqlAnswer
{
	uint32		id;
	int32		code;
	int32		headers_len;
} HttpSqlAnswer;

/*
 * Requests in the queue at once, and their bytes: the loop answers 503
 * beyond either, so the request queue (sized for them) never makes it
 * wait.
 */
#define HTTP_SQL_MAX_PENDING	64
#define HTTP_SQL_REQUEST_QUEUE	(1024 * 1024)
#define HTTP_SQL_ANSWER_QUEUE	(256 * 1024)

PGDLLEXPORT void opsflags_http_sql_main(Datum arg);

#endif							/* OPSFLAGS_HTTP_H */
