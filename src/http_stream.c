/*
 * http_stream.c
 *	  The HTTP server's streams (server-sent events): connections that a
 *	  route's handler has turned into streams, their table and limit, what
 *	  is pushed to them, their heartbeat, the dropping of slow readers, the
 *	  loop's watch for changes to the flags of its database, and the signed
 *	  tickets that let a client without headers open one.  Part of the core;
 *	  the families of streams (http_ofrep_stream.c,
 *	  http_launchdarkly_stream.c) say what is pushed.
 *
 * A stream leaves http_conns (the request slots) for the table here, which
 * grows as needed up to opsflags.http_max_streams; it still holds one of
 * fd.c's external descriptors, taken at accept.  A stream is watched
 * readable (to see its client leave) and, only while it has bytes the
 * socket did not take, writeable.  On Linux the streams have an epoll set
 * of their own, which is one readable socket in the loop's WaitEventSet:
 * a stream begins, ends or changes what it waits for with one epoll_ctl,
 * and the loop's set, rebuilt whenever a request connection comes or goes,
 * stays as small as the request slots however many streams there are.
 * Elsewhere the streams are in the loop's set (what they wait for changed
 * in place, ModifyWaitEvent), which is then rebuilt with them.  When
 * nothing happens a turn of the loop costs O(1) here: one read of a shared
 * counter.  Every HTTP_STREAM_PING_MS
 * each stream gets a comment line, so that proxies keep it open and a
 * vanished client is found out.  A client may leave at most
 * HTTP_STREAM_MAX_UNTAKEN bytes untaken (queued here plus, where the kernel
 * tells, still in the socket's send queue); a push beyond that resets the
 * stream: a slow reader is dropped, never buffered without bound.  Over
 * TLS a stream waits for what OpenSSL wants (http_tls.c), and either
 * readiness retries both its write and its read.
 *
 * Changes: a commit that changes the flags of a database raises its counter
 * in shared memory (invalidation.c) and sets the latch of the process that
 * watches that database, the loop while it has streams.  The loop reads
 * the counter at every turn, and at least every HTTP_STREAM_POLL_MS (the
 * wake-up is only a hint), and calls each family's changed().
 *
 * Tickets: "<subject>.<expiry>.<mac>", the expiry in Unix seconds, the mac
 * HMAC-SHA256 (hex) of the scope, the subject, the expiry and the database,
 * with a key of 32 random bytes drawn when the server starts (shared
 * memory): unforgeable without the key, dead after the expiry or a restart.
 * Expiries are rounded up to the minute, so that a client that fetches
 * again within it is handed the same URL and keeps its stream.
 */
#include "postgres.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sockios.h>
#include <sys/epoll.h>
#define HTTP_STREAM_EPOLL 1
#endif

#include "common/hmac.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "flags.h"
#include "http_core.h"

#define HTTP_STREAM_FAMILIES	4
#define HTTP_STREAM_DRAIN		65536	/* bytes a client may make us read per turn */

struct HttpStream
{
	HttpConn   *conn;
	HttpStreamFamily *family;
	dlist_node	node;			/* in its family's list */
	int			index;			/* in streams[] */
	int			event_pos;		/* in http_event_set; -1: not in it yet */
	bool		writing;		/* waiting for the socket to take more */
	bool		pending;		/* its head waits for the family's word */
	bool		closing;		/* refused: closes once its answer is sent */
	char		data[HTTP_STREAM_MAX_DATA];
};

int			http_max_streams = 1000;
int			http_nstreams = 0;
static HttpStream **streams = NULL;
static int	streams_size = 0;

#ifdef HTTP_STREAM_EPOLL
static int	streams_epoll = -1;	/* the streams' own epoll set */
#define HTTP_STREAM_EPOLL_BATCH 256
#endif
static char streams_marker;		/* user_data of that set in the loop's */

static HttpStreamFamily *families[HTTP_STREAM_FAMILIES];
static int	nfamilies = 0;

static bool watching = false;
static bool unwatch_registered = false;
static uint64 seen_changes = 0;
static TimestampTz next_ping = 0;
static uint64 streams_dropped = 0;

typedef struct StreamShared
{
	uint8		key[32];		/* of the tickets' HMAC */
} StreamShared;

static StreamShared *stream_shared = NULL;
static ResourceOwner ticket_owner = NULL;

static HttpStream *stream_begin(HttpConn *conn, HttpRequest *req, HttpStreamFamily *family,
								const void *data, size_t datalen, bool pending);

/* ---------- families ---------- */

void
http_stream_family(HttpStreamFamily *family)
{
	if (nfamilies == HTTP_STREAM_FAMILIES)
		elog(ERROR, "too many opsflags http stream families");
	dlist_init(&family->streams);
	family->nstreams = 0;
	families[nfamilies++] = family;
}

/* ---------- watching the database's flags ---------- */

static void
unwatch(int code, Datum arg)
{
	if (watching)
		opsflags_inval_watch(false);
	watching = false;
}

static void
watch(bool on)
{
	if (on == watching || !OidIsValid(MyDatabaseId))
		return;
	if (on && !unwatch_registered)
	{
		before_shmem_exit(unwatch, (Datum) 0);
		unwatch_registered = true;
	}
	/* from now on, every change counts: none is missed between */
	if (on)
		seen_changes = opsflags_inval_database_changes();
	opsflags_inval_watch(on);
	watching = on;
}

/* ---------- sending ---------- */

/*
 * Bytes the client has not taken: queued here, and in the socket's send
 * queue.  Over TLS too: what OpenSSL has taken but not yet written to the
 * socket is still queued here (SSL_write has not said it is sent), and the
 * kernel's queue holds records, a little more than the bytes they carry.
 */
static int
untaken(HttpConn *conn)
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
 * Whether the stream waits for the socket to be writeable: it has bytes to
 * send (over TLS: unless OpenSSL waits to read first), or OpenSSL must
 * write to read on.
 */
static bool
wants_writeable(HttpConn *conn)
{
	if (likely(conn->tls == NULL))
		return conn->out.len > 0;
	return (conn->out.len > 0 && conn->tls_write_wants == WL_SOCKET_WRITEABLE) ||
		conn->tls_read_wants == WL_SOCKET_WRITEABLE;
}

/* Wait for the socket to be writeable, or no longer: in place when possible. */
static void
set_writing(HttpStream *stream, bool writing)
{
	if (stream->writing == writing)
		return;
	stream->writing = writing;
#ifdef HTTP_STREAM_EPOLL
	if (stream->event_pos >= 0)
	{
		struct epoll_event ev;

		ev.events = EPOLLIN | (writing ? EPOLLOUT : 0);
		ev.data.ptr = stream;
		if (epoll_ctl(streams_epoll, EPOLL_CTL_MOD, stream->conn->sock, &ev) < 0)
			elog(ERROR, "epoll_ctl() failed: %m");
	}
#else
	if (stream->event_pos >= 0 && http_event_set != NULL && !http_events_changed)
		ModifyWaitEvent(http_event_set, stream->event_pos,
						WL_SOCKET_READABLE | (writing ? WL_SOCKET_WRITEABLE : 0), NULL);
#endif
}

/* Send what the socket takes now.  False when the client is gone. */
static bool
stream_send(HttpStream *stream)
{
	HttpConn   *conn = stream->conn;

	while (conn->outpos < conn->out.len)
	{
		ssize_t		n = http_conn_send(conn, conn->out.data + conn->outpos,
									   conn->out.len - conn->outpos);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return false;
		}
		conn->outpos += n;
	}
	if (conn->outpos == conn->out.len)
	{
		resetStringInfo(&conn->out);
		conn->outpos = 0;
	}
	else if (conn->outpos >= conn->out.len / 2)
	{
		/* keep the buffer within its bound: what is sent goes */
		memmove(conn->out.data, conn->out.data + conn->outpos, conn->out.len - conn->outpos);
		conn->out.len -= conn->outpos;
		conn->out.data[conn->out.len] = '\0';
		conn->outpos = 0;
	}
	set_writing(stream, wants_writeable(conn));
	return true;
}

static void
stream_close(HttpStream *stream, bool abort)
{
	HttpConn   *conn = stream->conn;
	int			i = stream->index;

	http_db_forget_stream(stream);
	dlist_delete(&stream->node);
	stream->family->nstreams--;
	http_nstreams--;
	if (i < http_nstreams)
	{
		streams[i] = streams[http_nstreams];
		streams[i]->index = i;
	}
#ifdef HTTP_STREAM_EPOLL
	if (stream->event_pos >= 0)
		(void) epoll_ctl(streams_epoll, EPOLL_CTL_DEL, conn->sock, NULL);
#endif
	if (abort)
	{
		struct linger lg;

		lg.l_onoff = 1;
		lg.l_linger = 0;
		(void) setsockopt(conn->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	if (conn->tls != NULL)
		http_tls_end(conn, abort);
	closesocket(conn->sock);
	ReleaseExternalFD();
	MemoryContextDelete(conn->context);
#ifndef HTTP_STREAM_EPOLL
	http_events_changed = true;
#endif
	if (http_accept_paused_until != 0)
	{
		http_accept_paused_until = 0;	/* a descriptor is free again */
		http_events_changed = true;
	}
	if (http_nstreams == 0)
		watch(false);
}

void
http_stream_close(HttpStream *stream)
{
	stream_close(stream, false);
}

bool
http_stream_push(HttpStream *stream, const char *data, size_t len)
{
	HttpConn   *conn = stream->conn;

	if (stream->pending || stream->closing)
		return true;			/* nothing goes before the head, or after a refusal */
	if (untaken(conn) + len > HTTP_STREAM_MAX_UNTAKEN)
	{
		streams_dropped++;
		stream_close(stream, true);
		return false;
	}
	appendBinaryStringInfo(&conn->out, data, len);
	if (!stream->writing && !stream_send(stream))
	{
		stream_close(stream, false);
		return false;
	}
	return true;
}

void *
http_stream_data(HttpStream *stream)
{
	return stream->data;
}

MemoryContext
http_stream_context(HttpStream *stream)
{
	return stream->conn->context;
}

bool
http_stream_is_open(HttpStream *stream)
{
	return !stream->pending && !stream->closing;
}

void
http_stream_answered(HttpStream *stream, int code, const char *body, size_t len)
{
	if (stream->family->answered != NULL && !stream->closing)
		stream->family->answered(stream, code, body, len);
}

void
http_stream_foreach(HttpStreamFamily *family, void (*visit) (HttpStream *stream, void *ctx),
					void *ctx)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &family->streams)
		visit(dlist_container(HttpStream, node, iter.cur), ctx);
}

uint64
http_stream_changes(void)
{
	return opsflags_inval_database_changes();
}

void
http_stream_counts(uint64 *open, uint64 *dropped)
{
	*open = http_nstreams;
	*dropped = streams_dropped;
}

/* ---------- beginning ---------- */

/* The 200 head of a stream, queued to be sent */
static void
queue_head(HttpStream *stream)
{
	HttpConn   *conn = stream->conn;
	MemoryContext old = MemoryContextSwitchTo(conn->context);

	appendStringInfoString(&conn->out,
						   "HTTP/1.1 200 OK\r\n"
						   "Content-Type: text/event-stream\r\n"
						   "Cache-Control: no-cache\r\n"
						   "X-Accel-Buffering: no\r\n"
						   "X-Content-Type-Options: nosniff\r\n");
	if (conn->awaiting_origin[0] != '\0')
		appendStringInfo(&conn->out,
						 "Access-Control-Allow-Origin: %s\r\n"
						 "Vary: Origin\r\n", conn->awaiting_origin);
	appendStringInfoString(&conn->out, "Connection: close\r\n\r\n");
	MemoryContextSwitchTo(old);
	http_count_response(200);
}

bool
http_stream_open(HttpStream *stream)
{
	if (!stream->pending)
		return true;
	stream->pending = false;
	queue_head(stream);
	if (!stream_send(stream))
	{
		stream_close(stream, false);
		return false;
	}
	return true;
}

void
http_stream_refuse(HttpStream *stream, int code, const char *content_type,
				   const char *body, size_t len)
{
	HttpConn   *conn = stream->conn;
	HttpRequest req;

	if (!stream->pending)
		return;
	stream->pending = false;
	stream->closing = true;
	memset(&req, 0, sizeof(req));
	req.keep_alive = false;
	req.origin = conn->awaiting_origin[0] != '\0' ? conn->awaiting_origin : NULL;
	http_respond(conn, &req, code, content_type, body, len);
	if (!stream_send(stream) || conn->out.len == 0)
		stream_close(stream, false);
}

HttpStream *
http_stream_begin(HttpConn *conn, HttpRequest *req, HttpStreamFamily *family,
				  const void *data, size_t datalen)
{
	return stream_begin(conn, req, family, data, datalen, false);
}

HttpStream *
http_stream_begin_pending(HttpConn *conn, HttpRequest *req, HttpStreamFamily *family,
						  const void *data, size_t datalen)
{
	return stream_begin(conn, req, family, data, datalen, true);
}

static HttpStream *
stream_begin(HttpConn *conn, HttpRequest *req, HttpStreamFamily *family,
			 const void *data, size_t datalen, bool pending)
{
	HttpStream *stream;
	MemoryContext old;
	int			i;

	if (req->head)
	{
		http_respond(conn, req, 200, "text/event-stream", "", 0);
		return NULL;
	}
	if (http_nstreams >= http_max_streams)
	{
		http_respond_text(conn, req, 503, "too many streams\n");
		return NULL;
	}
	for (i = 0; i < http_nconns && http_conns[i] != conn; i++)
		;
	if (i == http_nconns)
		elog(ERROR, "opsflags http stream of an unknown connection");

	if (http_nstreams == streams_size)
	{
		int			size = Max(64, streams_size * 2);

		streams = streams == NULL ?
			MemoryContextAlloc(TopMemoryContext, size * sizeof(HttpStream *)) :
			repalloc(streams, size * sizeof(HttpStream *));
		streams_size = size;
	}

	old = MemoryContextSwitchTo(conn->context);
	stream = palloc0(sizeof(HttpStream));
	stream->conn = conn;
	stream->family = family;
	stream->event_pos = -1;
	memcpy(stream->data, data, Min(datalen, HTTP_STREAM_MAX_DATA));
	stream->data[HTTP_STREAM_MAX_DATA - 1] = '\0';
	MemoryContextSwitchTo(old);
	/* the origin outlives the request, for the head */
	if (req->origin != NULL)
		strlcpy(conn->awaiting_origin, req->origin, sizeof(conn->awaiting_origin));
	else
		conn->awaiting_origin[0] = '\0';
	stream->pending = pending;
	if (!pending)
		queue_head(stream);		/* sent by the loop's next turn (the set is
								 * rebuilt with it) */
	stream->writing = wants_writeable(conn);

	/* out of the request slots, into the streams' table */
	http_conns[i] = http_conns[--http_nconns];
	conn->state = HTTP_CONN_STREAM;
	conn->stream = stream;
	conn->more = false;
	stream->index = http_nstreams;
	streams[http_nstreams++] = stream;
	dlist_push_tail(&family->streams, &stream->node);
	family->nstreams++;
	http_events_changed = true; /* its connection leaves the loop's set */
#ifdef HTTP_STREAM_EPOLL
	{
		struct epoll_event ev;

		if (streams_epoll < 0)
		{
			/* one more descriptor, as the listening sockets */
			streams_epoll = epoll_create1(EPOLL_CLOEXEC);
			if (streams_epoll < 0)
				elog(ERROR, "epoll_create1() failed: %m");
			ReserveExternalFD();
		}
		ev.events = EPOLLIN | (stream->writing ? EPOLLOUT : 0);
		ev.data.ptr = stream;
		if (epoll_ctl(streams_epoll, EPOLL_CTL_ADD, conn->sock, &ev) < 0)
			elog(ERROR, "epoll_ctl() failed: %m");
		stream->event_pos = 0;
	}
#endif
	if (next_ping == 0 || http_nstreams == 1)
		next_ping = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_STREAM_PING_MS);
	watch(true);
	return stream;
}

/* ---------- the loop's side ---------- */

/* How many events http_streams_add_events() adds */
int
http_streams_events(void)
{
#ifdef HTTP_STREAM_EPOLL
	return streams_epoll >= 0 ? 1 : 0;
#else
	return http_nstreams;
#endif
}

void
http_streams_add_events(WaitEventSet *set)
{
#ifdef HTTP_STREAM_EPOLL
	if (streams_epoll >= 0)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, streams_epoll, NULL, &streams_marker);
#else
	int			i;

	for (i = 0; i < http_nstreams; i++)
		streams[i]->event_pos =
			AddWaitEventToSet(set, WL_SOCKET_READABLE | (streams[i]->writing ? WL_SOCKET_WRITEABLE : 0),
							  streams[i]->conn->sock, NULL, streams[i]);
#endif
}

/* A stream's socket is ready: send, or see its client leave. */
static void
stream_ready(HttpStream *stream, bool writeable, bool readable)
{
	HttpConn   *conn = stream->conn;

	/* over TLS, either may be what OpenSSL waited for, to write or to read */
	if (conn->tls != NULL && (writeable || readable))
	{
		writeable = conn->out.len > 0;
		readable = true;
	}
	if (writeable && (!stream_send(stream) || (stream->closing && stream->conn->out.len == 0)))
	{
		stream_close(stream, false);
		return;
	}
	if (readable)
	{
		int			drained = 0;

		/* a stream is only read to see its client leave; what it sends is dropped */
		while (drained < HTTP_STREAM_DRAIN)
		{
			char		discard[1024];
			ssize_t		n = http_conn_recv(conn, discard, sizeof(discard));

			if (n > 0)
				drained += n;
			else if (n < 0 && errno == EINTR)
				continue;
			else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			else
			{
				stream_close(stream, false);
				return;
			}
		}
		if (conn->tls != NULL)
			set_writing(stream, wants_writeable(conn));
	}
}

bool
http_stream_tls(HttpStream *stream)
{
	return stream->conn->tls != NULL;
}

/*
 * An event of the loop's set whose user_data is not a request
 * connection's: the streams' (their epoll set, or one stream), if it is.
 * False if it is not theirs.
 */
bool
http_stream_event(void *user_data, uint32 events)
{
#ifdef HTTP_STREAM_EPOLL
	struct epoll_event ready[HTTP_STREAM_EPOLL_BATCH];
	int			n;
	int			i;

	if (user_data != &streams_marker)
		return false;
	/* one batch per turn: more keep the set readable for the next */
	n = epoll_wait(streams_epoll, ready, lengthof(ready), 0);
	for (i = 0; i < n; i++)
		stream_ready((HttpStream *) ready[i].data.ptr,
					 (ready[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0,
					 (ready[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0);
	return true;
#else
	int			i;

	for (i = 0; i < http_nstreams; i++)
		if (streams[i] == user_data)
		{
			stream_ready(streams[i], (events & WL_SOCKET_WRITEABLE) != 0,
						 (events & WL_SOCKET_READABLE) != 0);
			return true;
		}
	return false;
#endif
}

static void
ping_all(void)
{
	int			i;

	/* backwards: a stream dropped takes the place of one already pinged */
	for (i = http_nstreams - 1; i >= 0; i--)
		if (i < http_nstreams)
			(void) http_stream_push(streams[i], ": ping\n\n", 8);
}

/*
 * At each turn of the loop: tell the families of a change, ping when it is
 * time.  Returns ms to the next time it must be called (-1: no streams).
 */
long
http_streams_tick(void)
{
	TimestampTz now;
	uint64		changes;
	long		ms;
	int			f;

	if (http_nstreams == 0)
		return -1;
	changes = opsflags_inval_database_changes();
	if (changes != seen_changes)
	{
		seen_changes = changes;
		for (f = 0; f < nfamilies; f++)
			if (families[f]->nstreams > 0)
				families[f]->changed(families[f], changes);
	}
	for (f = 0; f < nfamilies; f++)
		if (families[f]->tick != NULL && families[f]->nstreams > 0)
			families[f]->tick(families[f]);
	now = GetCurrentTimestamp();
	if (now >= next_ping)
	{
		ping_all();
		next_ping = TimestampTzPlusMilliseconds(now, HTTP_STREAM_PING_MS);
	}
	if (http_nstreams == 0)
		return -1;
	ms = TimestampDifferenceMilliseconds(now, next_ping) + 1;
	return Min(ms, HTTP_STREAM_POLL_MS);
}

/* The server stops listening (or its settings changed): every stream ends. */
void
http_streams_close_all(void)
{
	while (http_nstreams > 0)
		stream_close(streams[http_nstreams - 1], false);
}

/* ---------- tickets ---------- */

static bool
ticket_mac(const char *scope, const char *subject, int64 expiry, uint8 mac[PG_SHA256_DIGEST_LENGTH])
{
	ResourceOwner save = CurrentResourceOwner;
	pg_hmac_ctx *ctx;
	char		tail[64];
	bool		ok;

	if (stream_shared == NULL)
		return false;
	/* the loop has no transaction: the HMAC's resources need an owner */
	if (CurrentResourceOwner == NULL)
	{
		if (ticket_owner == NULL)
			ticket_owner = ResourceOwnerCreate(NULL, "opsflags http tickets");
		CurrentResourceOwner = ticket_owner;
	}
	snprintf(tail, sizeof(tail), INT64_FORMAT ".%u", expiry, MyDatabaseId);
	ctx = pg_hmac_create(PG_SHA256);
	ok = ctx != NULL &&
		pg_hmac_init(ctx, stream_shared->key, sizeof(stream_shared->key)) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) scope, strlen(scope) + 1) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) subject, strlen(subject) + 1) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) tail, strlen(tail)) == 0 &&
		pg_hmac_final(ctx, mac, PG_SHA256_DIGEST_LENGTH) == 0;
	pg_hmac_free(ctx);
	CurrentResourceOwner = save;
	return ok;
}

static int
ticket_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
subject_ok(const char *subject, size_t len)
{
	return len > 0 && len < HTTP_STREAM_MAX_DATA &&
		strspn(subject, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

static int64
unix_now(void)
{
	return (int64) ((GetCurrentTimestamp() / USECS_PER_SEC) +
					(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

char *
http_stream_ticket(const char *scope, const char *subject, int seconds)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	int64		expiry = (unix_now() + seconds) / 60 * 60 + 60;
	StringInfoData buf;

	if (!subject_ok(subject, strlen(subject)) || !ticket_mac(scope, subject, expiry, mac))
		return NULL;
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s." INT64_FORMAT ".", subject, expiry);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		appendStringInfo(&buf, "%02x", mac[i]);
	return buf.data;
}

const char *
http_stream_ticket_check(const char *scope, const char *ticket, char *subject, size_t subjectlen)
{
	const char *dot2 = strrchr(ticket, '.');
	const char *dot1;
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	int64		expiry = 0;
	int			diff = 0;
	const char *p;

	if (dot2 == NULL || strlen(dot2 + 1) != 2 * PG_SHA256_DIGEST_LENGTH)
		return NULL;
	for (dot1 = dot2 - 1; dot1 > ticket && *dot1 != '.'; dot1--)
		;
	if (dot1 <= ticket || (size_t) (dot1 - ticket) >= subjectlen || dot2 - dot1 < 2 || dot2 - dot1 > 16)
		return NULL;
	for (p = dot1 + 1; p < dot2; p++)
	{
		if (*p < '0' || *p > '9')
			return NULL;
		expiry = expiry * 10 + (*p - '0');
	}
	memcpy(subject, ticket, dot1 - ticket);
	subject[dot1 - ticket] = '\0';
	if (!subject_ok(subject, dot1 - ticket) || expiry < unix_now() ||
		!ticket_mac(scope, subject, expiry, mac))
		return NULL;
	/* in constant time */
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		const char *h = dot2 + 1 + 2 * i;
		int			hi = ticket_hex(h[0]);
		int			lo = ticket_hex(h[1]);

		diff |= (hi < 0 || lo < 0) ? 1 : ((hi << 4 | lo) ^ mac[i]);
	}
	return diff == 0 ? subject : NULL;
}

/* ---------- set-up ---------- */

static void
stream_shmem_attach(void)
{
	bool		found;

	stream_shared = ShmemInitStruct("opsflags http streams", sizeof(StreamShared), &found);
	if (!found && !pg_strong_random(stream_shared->key, sizeof(stream_shared->key)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate the key of opsflags stream tickets")));
}

void
http_stream_init(void)
{
	opsflags_shmem_register(sizeof(StreamShared), NULL, stream_shmem_attach);
}
