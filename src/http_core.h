/*
 * http_core.h
 *	  What the files of the HTTP server's core share, and no endpoint sees:
 *	  a connection's insides, the table of connections, and the calls
 *	  between the loop (http_server.c), the connections (http_conn.c) and
 *	  the queue to the database worker (http_dbqueue.c).
 */
#ifndef OPSFLAGS_HTTP_CORE_H
#define OPSFLAGS_HTTP_CORE_H

#include <sys/socket.h>

#include "storage/latch.h"

#include "http.h"

#define HTTP_MAX_REQUEST		8192	/* request line and headers */
#define HTTP_MAX_CONNECTIONS	1024

/*
 * Where a connection is.  OPEN: reading requests and sending their
 * responses, one at a time (out is non-empty while a response is being
 * sent).  AWAITING: another part of the server (the queue to the database
 * worker) answers its request; the connection is not read (its pipelined
 * requests wait) until http_conn_resume().
 * LINGERING: the last response is sent and our side shut; what the client
 * still sends is read and dropped until it closes.  STREAM: a stream
 * (http_stream.c): no longer in http_conns but in the streams' own table,
 * sent to as its family pushes, read only for EOF.
 */
typedef enum HttpConnState
{
	HTTP_CONN_OPEN,
	HTTP_CONN_AWAITING,
	HTTP_CONN_LINGERING,
	HTTP_CONN_STREAM
} HttpConnState;

struct HttpConn
{
	pgsocket	sock;
	HttpConnState state;
	MemoryContext context;		/* everything of this connection */
	TimestampTz deadline;		/* closed if the current step is not done */
	TimestampTz take_by;		/* the last response must be taken by then */
	char	   *in;				/* what the client sent, not yet answered ... */
	int			inlen;
	int			insize;			/* ... in HTTP_MAX_REQUEST bytes, more while
								 * a body is read */
	StringInfoData out;			/* response bytes not yet sent */
	int			outpos;
	bool		close_after;	/* close once out is sent */
	bool		more;			/* a request may be buffered whose turn is next */
	TimestampTz idle_since;		/* when its last response was taken (0: none yet) */
	/* AWAITING: the request answered elsewhere (its path is not kept) */
	HttpRequest awaiting;
	char		awaiting_origin[256];	/* its allowed CORS origin */
	char		peer[64];		/* the client's address, numeric */
	/* ... and who is told when the connection closes or its deadline passes */
	void		(*await_cancel) (HttpConn *conn, bool expired);
	/* STREAM: its state (http_stream.c) */
	HttpStream *stream;
	/* TLS (http_tls.c): its session, NULL on a plain connection */
	struct ssl_st *tls;
	bool		tls_ready;		/* handshake done */
	bool		tls_failed;		/* a fatal error: nothing more is said on it */
	uint32		tls_read_wants; /* what a handshake or read waits for */
	uint32		tls_write_wants;	/* what a write waits for */
	uint32		waits;			/* what the loop's set waits for on it */
};

/* http_conn.c: the connections */
extern HttpConn *http_conns[HTTP_MAX_CONNECTIONS];
extern int	http_nconns;
extern bool http_events_changed;	/* rebuild the WaitEventSet */
extern TimestampTz http_accept_paused_until;	/* out of file descriptors */
extern MemoryContext http_request_context;
extern int	http_max_connections;

extern void http_accept_clients(pgsocket lsock);
extern bool http_read_conn(HttpConn *conn);
extern bool http_flush_conn(HttpConn *conn);
extern void http_close_conn(int i, bool abort);
extern long http_expire_conns(void);
extern void http_count_response(int code);

/*
 * Leave the answer to req to another part of the server until deadline.
 * cancel(conn, false) is called if the connection closes first;
 * cancel(conn, true) when the deadline passes, and must answer it.
 */
extern void http_conn_await(HttpConn *conn, HttpRequest *req, TimestampTz deadline,
							void (*cancel) (HttpConn *conn, bool expired));
/* Before answering an AWAITING connection: it is OPEN again, its next request next */
extern void http_conn_resume(HttpConn *conn);

/*
 * http_tls.c: TLS on the connections (opsflags.http_tls).  A context is
 * loaded (http_tls_load(): false, with a WARNING, if it could not be, the
 * previous one kept) while the server listens with TLS.
 */
#define HTTP_TLS_DONE	0		/* http_tls_handshake(): done */
#define HTTP_TLS_WAIT	1		/* ... not yet: wait for tls_read_wants */
#define HTTP_TLS_FAILED	2		/* ... failed: close */
#define HTTP_TLS_PLAIN	3		/* ... a plain HTTP request came instead */
extern bool http_tls_active;	/* new connections speak TLS */
extern bool http_tls_load(void);
extern bool http_tls_loaded(void);
extern void http_tls_unload(void);
extern bool http_tls_start(HttpConn *conn);
extern int	http_tls_handshake(HttpConn *conn);
extern ssize_t http_tls_recv(HttpConn *conn, void *buf, size_t len);
extern ssize_t http_tls_send(HttpConn *conn, const void *buf, size_t len);
extern int	http_tls_pending(HttpConn *conn);
extern void http_tls_shutdown(HttpConn *conn);
extern void http_tls_end(HttpConn *conn, bool abort);

/*
 * Reading and writing a connection, as recv() and send() do (-1 with errno
 * EAGAIN: not now): plain connections go straight to the socket.
 */
static inline ssize_t
http_conn_recv(HttpConn *conn, void *buf, size_t len)
{
	if (likely(conn->tls == NULL))
		return recv(conn->sock, buf, len, 0);
	return http_tls_recv(conn, buf, len);
}

static inline ssize_t
http_conn_send(HttpConn *conn, const void *buf, size_t len)
{
	if (likely(conn->tls == NULL))
		return send(conn->sock, buf, len, 0);
	return http_tls_send(conn, buf, len);
}

/* What a request connection waits for: to send its response, else to read */
static inline uint32
http_conn_wait_events(HttpConn *conn)
{
	if (likely(conn->tls == NULL))
		return conn->out.len > 0 ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE;
	if (conn->state == HTTP_CONN_LINGERING)
		return WL_SOCKET_READABLE;	/* drained undecrypted (http_read_conn) */
	return conn->out.len > 0 ? conn->tls_write_wants : conn->tls_read_wants;
}

/* http_server.c: the loop's WaitEventSet, while it is current */
extern WaitEventSet *http_event_set;

/* http_stream.c: the streams, out of http_conns */
extern int	http_nstreams;
extern int	http_streams_events(void);
extern void http_streams_add_events(WaitEventSet *set);
extern long http_streams_tick(void);
extern bool http_stream_event(void *user_data, uint32 events);
extern void http_streams_close_all(void);
extern void http_stream_init(void);
extern bool http_stream_tls(HttpStream *stream);
/* the worker's answer to a stream's request (http_dbqueue.c calls) */
extern void http_stream_answered(HttpStream *stream, int code, const char *body, size_t len);

/* http_dbqueue.c: a stream closes, and its requests' answers go nowhere */
extern void http_db_forget_stream(HttpStream *stream);

/* http_dbqueue.c: the queue to the database worker */
extern bool http_db_connected;	/* to opsflags.database */
extern void http_db_receive(void);

#endif							/* OPSFLAGS_HTTP_CORE_H */
