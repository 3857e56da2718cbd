/*
 * http.h
 *	  What the HTTP server's event loop (http.c) and its database worker
 *	  (http_sql.c) share: the settings, the shared memory queues' layout and
 *	  the messages on them, and the bodies both may answer with.
 */
#ifndef OPSFLAGS_HTTP_H
#define OPSFLAGS_HTTP_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

extern int	opsflags_http_timeout_ms;

/* Endpoints answered from the database */
typedef enum HttpSqlEndpoint
{
	HTTP_SQL_HEALTH,			/* /health, /api/health */
	HTTP_SQL_READY,				/* /readyz */
	HTTP_SQL_METRICS,			/* /metrics, but for the loop's own counters */
	HTTP_SQL_FLAGS,				/* /flags/<environment> */
	HTTP_SQL_STATUS				/* /api/status */
} HttpSqlEndpoint;

/* What a body is; the loop frames it */
typedef enum HttpBodyKind
{
	HTTP_BODY_JSON,
	HTTP_BODY_METRICS			/* the loop appends opsflags_http_requests_total */
} HttpBodyKind;

/* Loop -> worker: one request */
typedef struct HttpSqlRequest
{
	uint32		id;
	int32		endpoint;		/* HttpSqlEndpoint */
	TimestampTz queued_at;
	char		arg[64];		/* the environment of /flags/<environment> */
} HttpSqlRequest;

/* Worker -> loop: this header, then the body */
typedef struct HttpSqlAnswer
{
	uint32		id;
	int32		code;
	int32		kind;			/* HttpBodyKind */
} HttpSqlAnswer;

/*
 * Requests in the queue at once: the loop answers 503 beyond that, so the
 * request queue (sized for them) never makes it wait.
 */
#define HTTP_SQL_MAX_PENDING	64
#define HTTP_SQL_REQUEST_QUEUE	16384
#define HTTP_SQL_ANSWER_QUEUE	65536

/* The answer of an endpoint whose database did not answer */
extern void http_sql_unavailable(HttpSqlEndpoint endpoint, const char *error,
								 int *code, HttpBodyKind *kind, StringInfo body);
/* The header of the loop's own family of /metrics */
extern void http_metrics_requests_header(StringInfo buf);

PGDLLEXPORT void opsflags_http_sql_main(Datum arg);

#endif							/* OPSFLAGS_HTTP_H */
