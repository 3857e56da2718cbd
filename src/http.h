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

#include "lib/ilist.h"
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
	const char *last_event_id;	/* of a stream that reconnects */
	const char *origin;			/* an allowed CORS origin, else NULL */
	const char *content_type;
	const char *body;			/* NUL-terminated; NULL: none */
	int			bodylen;
	const char *client_addr;	/* the peer's address, numeric ("" if unknown) */
	const char *session;		/* the value of cookie opsflags_session */
	const char *csrf_token;		/* X-CSRF-Token */
	const char *request_origin; /* Origin as sent, allowed by CORS or not */
	const char *host;			/* Host */
	const char *user_agent;
	const char *accept;
	/*
	 * It came over TLS (opsflags.http_tls): session cookies are then
	 * Secure, and password sign-in is taken from any address.
	 */
	bool		tls;
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
	const char *client_addr;	/* the peer's address, numeric (NULL: unknown) */
	const char *session;		/* the session cookie's value */
	const char *csrf_token;		/* X-CSRF-Token */
	const char *user_agent;
	const char *body;			/* NUL-terminated */
	int			bodylen;
	bool		tls;			/* it came over TLS (opsflags.http_tls) */
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
	const char *content_type;	/* NULL: the route's (at most 63 bytes) */
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

/* http_routes.c: what handlers share, in the loop and in the worker */
/* Whether a query string (not decoded; NULL: none) has name=true */
extern bool http_query_flag(const char *query, const char *name);

/* http_endpoints.c: the families, each registering its routes */
extern void http_register_endpoints(void);
extern void http_probes_routes(void);
extern void http_metrics_routes(void);
extern void http_status_routes(void);
extern void http_flags_routes(void);
extern void http_ofrep_routes(void);
extern void http_launchdarkly_routes(void);
extern void http_unleash_routes(void);
extern void http_ofrep_stream_routes(void);
extern void http_launchdarkly_stream_routes(void);
extern void http_api_routes(void);
extern void http_console_routes(void);

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
 * Streams (http_stream.c): server-sent events.  A route's handler turns its
 * connection into a stream with http_stream_begin(): the response head is
 * queued (text/event-stream, no Content-Length: closing the connection ends
 * the stream) and the connection leaves the request slots
 * (opsflags.http_max_connections) for the streams' own table and limit
 * (opsflags.http_max_streams; 503 beyond).  A stream is never evicted as
 * idle, is read only to see its client leave, gets a comment line every
 * HTTP_STREAM_PING_MS so that proxies keep it, and has at most
 * HTTP_STREAM_MAX_UNTAKEN bytes not yet taken by its client: a reader that
 * does not keep up is dropped, never waited for.
 *
 * A family of streams (say, OFREP's) registers an HttpStreamFamily at
 * start-up; the core calls its changed() in the loop, within
 * HTTP_STREAM_POLL_MS of a commit that changed the flags of the server's
 * database (or at once, woken by it), and the family pushes to its streams
 * (http_stream_foreach, http_stream_push).  Each stream carries a copy of
 * the data its family gave it (say, its environment).
 */
typedef struct HttpStream HttpStream;

typedef struct HttpStreamFamily
{
	const char *name;
	/* in the loop: the flags of the database changed (changes: a counter) */
	void		(*changed) (struct HttpStreamFamily *family, uint64 changes);
	/* Families whose streams ask the database worker (NULL otherwise): */
	/* in the loop, at every turn while the family has streams */
	void		(*tick) (struct HttpStreamFamily *family);
	/* in the loop, the worker's answer to http_stream_ask_database() */
	void		(*answered) (HttpStream *stream, int code, const char *body, size_t len);
	/* the core's */
	dlist_head	streams;
	int			nstreams;
} HttpStreamFamily;

#define HTTP_STREAM_PING_MS		20000	/* a comment line that often */
#define HTTP_STREAM_POLL_MS		200 /* changes seen at least that soon */
#define HTTP_STREAM_MAX_UNTAKEN	65536	/* bytes a client may leave untaken */
#define HTTP_STREAM_MAX_DATA	128 /* bytes of a stream's family data */

/* opsflags.http_max_streams */
extern int	http_max_streams;

/* At start-up (preload): a family of streams */
extern void http_stream_family(HttpStreamFamily *family);

/*
 * In a route's handler: make the connection a stream of family, with a copy
 * of data.  NULL when it is not one (the request is answered: a HEAD, or
 * 503 beyond opsflags.http_max_streams).
 */
extern HttpStream *http_stream_begin(HttpConn *conn, HttpRequest *req, HttpStreamFamily *family,
									 const void *data, size_t datalen);
/*
 * ... or a stream whose head waits for the family's word: the connection
 * leaves the request slots at once, and the family, once it knows (say,
 * from the database worker's answer), opens it (the 200 head is sent) or
 * refuses it (an error response is sent instead, and it closes).  Nothing
 * is pushed to it, nor pings, until it is open.
 */
extern HttpStream *http_stream_begin_pending(HttpConn *conn, HttpRequest *req,
											 HttpStreamFamily *family,
											 const void *data, size_t datalen);
/* false: the client is gone (the stream closed) */
extern bool http_stream_open(HttpStream *stream);
extern void http_stream_refuse(HttpStream *stream, int code, const char *content_type,
							   const char *body, size_t len);
extern bool http_stream_is_open(HttpStream *stream);
/* The family's data of a stream */
extern void *http_stream_data(HttpStream *stream);
/* Memory that lives as long as the stream */
extern MemoryContext http_stream_context(HttpStream *stream);
/*
 * Hand the worker a request on the stream's behalf (route's answer, with
 * arg, query and body as a request would have them); the family's
 * answered() gets the answer, unless the stream closes first.  false when
 * the worker cannot take it now (no room in the queue: ask again later).
 */
extern bool http_stream_ask_database(HttpStream *stream, const struct HttpRoute *route,
									 const char *arg, const char *query,
									 const char *body, int bodylen);
/* Requests the worker can still take now (see HTTP_SQL_MAX_PENDING) */
extern int	http_db_room(void);
/*
 * Queue bytes on a stream and send what the socket takes now.  false when
 * that would leave more than HTTP_STREAM_MAX_UNTAKEN bytes untaken: the
 * stream is closed (a slow reader dropped) and must not be used again.
 */
extern bool http_stream_push(HttpStream *stream, const char *data, size_t len);
extern void http_stream_close(HttpStream *stream);
/* Call visit for each stream of family; visit may push (and so drop one). */
extern void http_stream_foreach(HttpStreamFamily *family,
								void (*visit) (HttpStream *stream, void *ctx), void *ctx);
/* The counter of changes, as changed() is given it (say, for event ids) */
extern uint64 http_stream_changes(void);
/* Streams open and dropped (slow readers) since start, for /metrics */
extern void http_stream_counts(uint64 *open, uint64 *dropped);

/*
 * Tickets to streams: a client that cannot send headers (a browser's
 * EventSource) presents, in the stream's URL, a ticket that an answer
 * handed it, instead of its API key.  A ticket names a subject (say, an
 * environment) and an expiry (seconds from now, rounded up to the next
 * minute), signed with HMAC-SHA256 and a key that the
 * server draws at start (shared memory), so it cannot be forged and dies
 * with the server.  http_stream_ticket() works in any backend of the
 * server (NULL without shared memory); http_stream_ticket_check() in the
 * loop, without SQL: the subject, or NULL (forged, expired, malformed).
 */
extern char *http_stream_ticket(const char *scope, const char *subject, int seconds);
extern const char *http_stream_ticket_check(const char *scope, const char *ticket,
											char *subject, size_t subjectlen);

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
http_result_value(const HttpResult *r, int row, int col)
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
/* ... in a read-write transaction (query->writes must be set) */
extern bool http_sql_write(OpsQuery *query, Datum *args, const char *nulls, Oid as_role,
						   HttpResult *result);
/*
 * ... for a request's own SQL (the management API): read-only or not, and
 * a failure is the client's answer (say, 42501), not logged as the
 * database failing.
 */
extern bool http_sql_request(OpsQuery *query, Datum *args, const char *nulls, Oid as_role,
							 bool read_only, HttpResult *result);

/* An answer was given for this API key: its last_used_at is written (once a minute). */
extern void http_key_used(int64 key_id);

/* The health_status() document and status as pg_monitor sees them (http_probes.c) */
extern bool http_health_document(HttpResult *result);

/* 503 {"status": "unhealthy", "error": error} */
extern void http_answer_unhealthy(HttpAnswer *answer, const char *error);
/*
 * The answer of a client endpoint's SQL, whose row is (status, etag,
 * document, key_id): its status, ETag and body, and the API key noted as
 * used when it was answered (200 or 304).
 */
extern void http_answer_document(HttpAnswer *answer, const HttpResult *result);
/* An answer {"message": message} with status code */
extern void http_answer_message(HttpAnswer *answer, int code, const char *message);
/* The route's answer when the database did not answer */
extern void http_answer_unavailable(const HttpRoute *route, const char *error, HttpAnswer *answer);

/* Both workers: fixed queries only, resolved in pg_catalog; evaluations are not usage. */
extern void http_pin_session(void);

/* ---------- the queue between them ---------- */

/*
 * Loop -> worker: one request, this header then its strings, each with its
 * terminating NUL: arg, query, api_key, if_none_match, client_addr, session,
 * csrf_token, user_agent, body (a length of -1: absent, not sent); body is
 * the last.
 */
#define HTTP_SQL_MAX_ARG	256
#define HTTP_SQL_PARTS		9
typedef struct HttpSqlRequest
{
	uint32		id;
	int32		route;			/* http_route_id() */
	int32		method;
	bool		tls;			/* HttpCall.tls */
	TimestampTz queued_at;
	int32		lengths[HTTP_SQL_PARTS];
} HttpSqlRequest;

/* Worker -> loop: this header, then the header lines, then the body */
typedef struct HttpSqlAnswer
{
	uint32		id;
	int32		code;
	int32		headers_len;
	char		content_type[64];	/* "": the route's */
} HttpSqlAnswer;

/*
 * Requests in the queue at once, and their bytes: the loop answers 503
 * beyond either, so the request queue (sized for them) never makes it
 * wait.
 */
#define HTTP_SQL_MAX_PENDING	128
#define HTTP_SQL_REQUEST_QUEUE	(1024 * 1024)
#define HTTP_SQL_ANSWER_QUEUE	(256 * 1024)

PGDLLEXPORT void opsflags_http_sql_main(Datum arg);

#endif							/* OPSFLAGS_HTTP_H */
