/*
 * http_conn.c
 *	  The HTTP server's connections: accepting them within the limits,
 *	  reading and parsing requests, queueing and sending responses, and
 *	  closing them (deadlines, eviction, lingering).  Part of the core: it
 *	  knows endpoints only through the routing table.
 *
 * Sockets are non-blocking; a request head is at most HTTP_MAX_REQUEST
 * bytes, its body (a Content-Length, or chunked: some SDKs send REPORT and
 * POST bodies so) at most HTTP_MAX_BODY, and both
 * must arrive within opsflags.http_timeout of the connection's
 * last response (or its accept), a response must be taken within the same
 * time (a client that has not taken it by then is reset, so that the kernel
 * does not go on holding it either), and there are at most
 * opsflags.http_max_connections clients, each also counted against fd.c's
 * budget of descriptors: a slow client costs a slot for that long, never
 * the loop.  A pipelining client gets at most HTTP_REQUESTS_PER_TURN answers
 * per turn of the loop, and nothing after a response that closes its
 * connection.  At the limit of clients, a newcomer takes the slot of the
 * client idle the longest; only when every client is busy is it answered
 * 503.  Out of descriptors, the loop stops accepting until a connection
 * closes.
 *
 * With opsflags.http_tls, a connection's first step is its TLS handshake,
 * within the same deadline, and it is read and written through OpenSSL
 * (http_tls.c, by way of http_conn_recv() and http_conn_send()); a plain
 * connection goes straight to its socket.
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

#include "common/ip.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsflags.h"
#include "http_core.h"

#define HTTP_ACCEPT_PAUSE_MS	1000	/* out of file descriptors: wait that long */
#define HTTP_REQUESTS_PER_TURN	8	/* pipelined requests of one client per wakeup */
#define HTTP_DRAIN_PER_TURN		65536	/* bytes a lingering client may make us read per wakeup */
#define HTTP_CHUNKED			(-2)	/* request_body_length(): a chunked body */
#define HTTP_MAX_CHUNKING		HTTP_MAX_REQUEST	/* bytes of chunk lines and trailers */

HttpConn   *http_conns[HTTP_MAX_CONNECTIONS];
int			http_nconns = 0;
bool		http_events_changed = true;
TimestampTz http_accept_paused_until = 0;
MemoryContext http_request_context = NULL;	/* reset after each request */
static TimestampTz accept_failure_logged = 0;

/* requests answered, by status code, for /metrics */
static const int counted_codes[HTTP_COUNTED_CODES] = {200, 204, 304, 400, 401, 403, 404, 405, 408, 411, 413,
													  414, 429, 431, 500, 503, 505};
static uint64 requests_by_code[HTTP_COUNTED_CODES];

void
http_count_response(int code)
{
	int			i;

	for (i = 0; i < HTTP_COUNTED_CODES; i++)
		if (counted_codes[i] == code)
			requests_by_code[i]++;
}

int
http_response_counts(int codes[HTTP_COUNTED_CODES], uint64 counts[HTTP_COUNTED_CODES])
{
	memcpy(codes, counted_codes, sizeof(counted_codes));
	memcpy(counts, requests_by_code, sizeof(requests_by_code));
	return HTTP_COUNTED_CODES;
}

/* ---------- responses ---------- */

static const char *
status_text(int code)
{
	switch (code)
	{
		case 200:
			return "OK";
		case 204:
			return "No Content";
		case 304:
			return "Not Modified";
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 408:
			return "Request Timeout";
		case 411:
			return "Length Required";
		case 413:
			return "Content Too Large";
		case 414:
			return "URI Too Long";
		case 429:
			return "Too Many Requests";
		case 431:
			return "Request Header Fields Too Large";
		case 500:
			return "Internal Server Error";
		case 503:
			return "Service Unavailable";
		case 505:
			return "HTTP Version Not Supported";
	}
	return "Error";
}

/* The methods a route serves, for Allow and preflights. */
static int
route_methods(const HttpRoute *route)
{
	int			m = route->methods ? route->methods : HTTP_GET;

	if (m & HTTP_GET)
		m |= HTTP_HEAD;
	return m;
}

static void
append_methods(StringInfo buf, int methods)
{
	static const struct
	{
		int			bit;
		const char *name;
	}			names[] = {
		{HTTP_GET, "GET"}, {HTTP_HEAD, "HEAD"}, {HTTP_POST, "POST"}, {HTTP_PUT, "PUT"},
		{HTTP_PATCH, "PATCH"}, {HTTP_DELETE, "DELETE"}, {HTTP_REPORT, "REPORT"}, {HTTP_OPTIONS, "OPTIONS"}
	};
	bool		first = true;

	for (int i = 0; i < (int) lengthof(names); i++)
		if (methods & names[i].bit)
		{
			appendStringInfo(buf, "%s%s", first ? "" : ", ", names[i].name);
			first = false;
		}
}

/* Queue a whole response on the connection, with header lines (or NULL). */
void
http_respond_headers(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
					 const char *headers, const char *body, size_t bodylen)
{
	MemoryContext old = MemoryContextSwitchTo(conn->context);
	bool		no_body = code == 204 || code == 304;

	if (req == NULL || !req->keep_alive)
		conn->close_after = true;

	appendStringInfo(&conn->out, "HTTP/1.1 %d %s\r\n", code, status_text(code));
	if (!no_body)
		appendStringInfo(&conn->out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
						 content_type, bodylen);
	appendStringInfoString(&conn->out,
						   "Cache-Control: no-store\r\n"
						   "X-Content-Type-Options: nosniff\r\n");
	/* A page that gives its own policy (the console's) keeps it. */
	if (strncmp(content_type, "text/html", 9) == 0 &&
		(headers == NULL || strstr(headers, "Content-Security-Policy:") == NULL))
		appendStringInfoString(&conn->out,
							   "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
							   "style-src 'unsafe-inline'; img-src data:; connect-src 'self'\r\n");
	if (code == 405)
	{
		appendStringInfoString(&conn->out, "Allow: ");
		append_methods(&conn->out, req && req->route ? route_methods(req->route) : HTTP_GET | HTTP_HEAD);
		appendStringInfoString(&conn->out, "\r\n");
	}
	/* A browser page of an allowed origin may read the answer and its ETag. */
	if (req != NULL && req->origin != NULL)
		appendStringInfo(&conn->out,
						 "Access-Control-Allow-Origin: %s\r\n"
						 "Access-Control-Expose-Headers: ETag\r\n"
						 "Vary: Origin\r\n", req->origin);
	if (headers != NULL)
		appendStringInfoString(&conn->out, headers);
	appendStringInfo(&conn->out, "Connection: %s\r\n\r\n",
					 conn->close_after ? "close" : "keep-alive");
	if ((req == NULL || !req->head) && !no_body)
		appendBinaryStringInfo(&conn->out, body, bodylen);
	MemoryContextSwitchTo(old);

	http_count_response(code);
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), opsflags_http_timeout_ms);
	conn->take_by = conn->deadline;
}

void
http_respond(HttpConn *conn, HttpRequest *req, int code, const char *content_type,
			 const char *body, size_t bodylen)
{
	http_respond_headers(conn, req, code, content_type, NULL, body, bodylen);
}

void
http_respond_text(HttpConn *conn, HttpRequest *req, int code, const char *text)
{
	http_respond(conn, req, code, "text/plain; charset=utf-8", text, strlen(text));
}

void
http_respond_json_error(HttpConn *conn, HttpRequest *req, int code, const char *error_code,
						const char *details)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"errorCode\": ");
	escape_json(&buf, error_code);
	appendStringInfoString(&buf, ", \"errorDetails\": ");
	escape_json(&buf, details);
	appendStringInfoString(&buf, "}");
	http_respond(conn, req, code, "application/json", buf.data, buf.len);
}

void
http_conn_await(HttpConn *conn, HttpRequest *req, TimestampTz deadline,
				void (*cancel) (HttpConn *conn, bool expired))
{
	conn->state = HTTP_CONN_AWAITING;
	conn->awaiting = *req;
	/* only what framing the answer needs outlives the request */
	conn->awaiting.path = conn->awaiting.query = NULL;
	conn->awaiting.api_key = conn->awaiting.if_none_match = conn->awaiting.content_type = NULL;
	conn->awaiting.last_event_id = NULL;
	conn->awaiting.session = conn->awaiting.csrf_token = conn->awaiting.request_origin = NULL;
	conn->awaiting.host = conn->awaiting.user_agent = conn->awaiting.accept = NULL;
	conn->awaiting.body = NULL;
	conn->awaiting.bodylen = 0;
	if (req->origin != NULL)
	{
		strlcpy(conn->awaiting_origin, req->origin, sizeof(conn->awaiting_origin));
		conn->awaiting.origin = conn->awaiting_origin;
	}
	conn->await_cancel = cancel;
	conn->deadline = deadline;
	http_events_changed = true;
}

void
http_conn_resume(HttpConn *conn)
{
	conn->state = HTTP_CONN_OPEN;
	conn->await_cancel = NULL;
	conn->more = true;			/* its pipelined requests are next */
	http_events_changed = true;
}

/* ---------- routing ---------- */

/*
 * A CORS preflight: the methods the route serves and the headers asked for
 * (when they are plain header names), for an allowed origin; without CORS
 * headers otherwise, which the browser takes as a refusal.
 */
static void
preflight(HttpConn *conn, HttpRequest *req, const char *headers)
{
	StringInfoData h;

	initStringInfo(&h);
	if (req->origin != NULL)
	{
		appendStringInfoString(&h, "Access-Control-Allow-Methods: ");
		append_methods(&h, route_methods(req->route));
		appendStringInfoString(&h, "\r\n");
		if (headers != NULL && headers[0] != '\0' &&
			strspn(headers, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ") == strlen(headers))
			appendStringInfo(&h, "Access-Control-Allow-Headers: %s\r\n", headers);
		appendStringInfoString(&h, "Access-Control-Max-Age: 600\r\n");
	}
	http_respond_headers(conn, req, 204, "text/plain", h.data, "", 0);
}

/* Answer a parsed request: its route's handler does. */
static void
route_request(HttpConn *conn, HttpRequest *req, const char *preflight_headers)
{
	const char *arg;
	const HttpRoute *route = http_find_route(req->path, &arg);

	if (route == NULL)
	{
		http_respond_text(conn, req, 404, "not found\n");
		return;
	}
	req->route = route;
	if (req->method == HTTP_OPTIONS && !(route->methods & HTTP_OPTIONS))
		preflight(conn, req, preflight_headers);
	else if (!(route_methods(route) & req->method))
		http_respond_text(conn, req, 405, "method not allowed\n");
	else
		route->handler(conn, req, arg);
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
 * The length of the body of the request whose head is conn->in[0,
 * headlen): its Content-Length, 0 without one, HTTP_CHUNKED for a chunked
 * one.  -1 when the request is answered already (a body that cannot be
 * taken), the connection to close.
 */
static int
request_body_length(HttpConn *conn, int headlen)
{
	char	   *p = conn->in;
	char	   *end = conn->in + headlen;
	int			len = 0;
	bool		seen = false;
	bool		chunked = false;

	while (p < end)
	{
		char	   *line_end = memchr(p, '\n', end - p);
		char	   *v;

		if (line_end == NULL)
			break;
		if ((v = header_value(p, line_end, "Transfer-Encoding")) != NULL)
		{
			/* chunked alone (a coding under it would need decoding) */
			char	   *e = line_end - 1;

			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if (e - v != 7 || pg_strncasecmp(v, "chunked", 7) != 0 || chunked)
			{
				http_respond_text(conn, NULL, 411, "a request body needs a Content-Length or chunked encoding\n");
				return -1;
			}
			chunked = true;
		}
		if ((v = header_value(p, line_end, "Content-Length")) != NULL)
		{
			/* digits only; a second one must say the same (no smuggling) */
			char	   *e = v;
			long		n = 0;

			while (e < line_end && *e >= '0' && *e <= '9')
			{
				n = n * 10 + (*e++ - '0');
				if (n > HTTP_MAX_BODY)
					n = HTTP_MAX_BODY + 1;
			}
			if (e == v || e + 1 != line_end || *e != '\r' || (len >= 0 && n != len && seen))
			{
				http_respond_text(conn, NULL, 400, "malformed Content-Length\n");
				return -1;
			}
			if (n > HTTP_MAX_BODY)
			{
				http_respond_text(conn, NULL, 413, "request body too large\n");
				return -1;
			}
			len = (int) n;
			seen = true;
		}
		p = line_end + 1;
	}
	if (chunked && seen)
	{
		/* either, never both: they could be read two ways (smuggling) */
		http_respond_text(conn, NULL, 400, "a request has a Content-Length or is chunked, not both\n");
		return -1;
	}
	return chunked ? HTTP_CHUNKED : len;
}

/*
 * A chunked body at conn->in + headlen: once it is all there, its chunks
 * are joined in place (the body then starts at headlen, as any other) and
 * this returns the body's length, *taken the bytes the request took
 * after its head.  0 without *taken set: not all there yet.  -1: answered
 * already (malformed, or beyond HTTP_MAX_BODY), the connection to close.
 */
static int
chunked_body(HttpConn *conn, int headlen, int *taken)
{
	char	   *in = conn->in;
	int			pos = headlen;
	int			len = 0;
	int			partial = 0;
	int			out;

	/* first see it is all there and well-formed; only then move bytes */
	for (;;)
	{
		char	   *eol = memchr(in + pos, '\n', conn->inlen - pos);
		long		size = 0;
		int			digits = 0;
		char	   *p = in + pos;

		if (eol == NULL)
		{
			partial = conn->inlen - pos;	/* of a chunk line */
			break;
		}
		while (p < eol && isxdigit((unsigned char) *p))
		{
			if (size <= HTTP_MAX_BODY)
				size = size * 16 + (isdigit((unsigned char) *p) ? *p - '0' : (*p | 0x20) - 'a' + 10);
			p++;
			digits++;
		}
		/* a chunk extension (";name=value") is allowed and ignored */
		if (digits == 0 || eol[-1] != '\r' || (p != eol - 1 && *p != ';'))
		{
			http_respond_text(conn, NULL, 400, "malformed chunked body\n");
			return -1;
		}
		if (len + size > HTTP_MAX_BODY)
		{
			http_respond_text(conn, NULL, 413, "request body too large\n");
			return -1;
		}
		pos = eol + 1 - in;
		if (size == 0)
		{
			/* trailers, up to an empty line; ignored */
			for (;;)
			{
				char	   *tl = memchr(in + pos, '\n', conn->inlen - pos);

				if (tl == NULL)
				{
					if (conn->inlen - headlen - len >= HTTP_MAX_CHUNKING)
					{
						http_respond_text(conn, NULL, 400, "malformed chunked body\n");
						return -1;
					}
					return 0;
				}
				if (tl == in + pos + 1 && in[pos] == '\r')
				{
					pos += 2;
					break;
				}
				pos = tl + 1 - in;
			}
			/* all there: join the chunks */
			out = headlen;
			for (int at = headlen; at < pos;)
			{
				char	   *e = memchr(in + at, '\n', pos - at);
				long		n = strtol(in + at, NULL, 16);

				at = e + 1 - in;
				if (n == 0)
					break;
				memmove(in + out, in + at, n);
				out += n;
				at += n + 2;
			}
			*taken = pos - headlen;
			return len;
		}
		if (conn->inlen < pos + size + 2)
			break;
		if (in[pos + size] != '\r' || in[pos + size + 1] != '\n')
		{
			http_respond_text(conn, NULL, 400, "malformed chunked body\n");
			return -1;
		}
		len += size;
		pos += size + 2;
	}
	/* not all there: chunk lines beyond their bound (a full buffer) are refused */
	if (pos - headlen - len + partial >= HTTP_MAX_CHUNKING)
	{
		http_respond_text(conn, NULL, 400, "malformed chunked body\n");
		return -1;
	}
	return 0;
}

/* The trimmed value of a header line ending at line_end, NUL-terminated. */
static char *
header_text(char *v, char *line_end)
{
	char	   *e = line_end;

	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	return v;
}

/*
 * The value of cookie opsflags_session in a Cookie header's value (cut
 * there, in place), else NULL.
 */
static char *
session_cookie(char *v)
{
	static const char name[] = "opsflags_session=";

	while (v != NULL && *v != '\0')
	{
		while (*v == ' ' || *v == '\t')
			v++;
		if (strncmp(v, name, sizeof(name) - 1) == 0)
		{
			char	   *value = v + sizeof(name) - 1;
			char	   *end = strchr(value, ';');

			if (end != NULL)
				*end = '\0';
			return value[0] != '\0' ? value : NULL;
		}
		v = strchr(v, ';');
		if (v != NULL)
			v++;
	}
	return NULL;
}

static const struct
{
	const char *name;
	int			bit;
}			methods[] = {
	{"GET", HTTP_GET}, {"HEAD", HTTP_HEAD}, {"POST", HTTP_POST}, {"PUT", HTTP_PUT},
	{"PATCH", HTTP_PATCH}, {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS}, {"REPORT", HTTP_REPORT}
};

/*
 * Answer the complete request in conn->in: its head [0, headlen), then
 * bodylen bytes of body.  A malformed request gets a 4xx and the
 * connection closes after it.
 */
static void
handle_request(HttpConn *conn, int headlen, int bodylen)
{
	HttpRequest req;
	char	   *head = conn->in;
	char	   *end = head + headlen;
	char	   *line_end;
	char	   *method,
			   *target,
			   *version,
			   *p;
	char	   *authorization = NULL;
	char	   *api_key = NULL;
	char	   *origin = NULL;
	char	   *ac_headers = NULL;
	bool		http10;

	memset(&req, 0, sizeof(req));
	if (memchr(head, '\0', headlen) != NULL)
	{
		http_respond_text(conn, NULL, 400, "malformed request\n");
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
		http_respond_text(conn, NULL, 400, "malformed request line\n");
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
		http_respond_text(conn, NULL, strncmp(version, "HTTP/", 5) == 0 ? 505 : 400,
						  "only HTTP/1.0 and HTTP/1.1 are served\n");
		return;
	}
	if (target[0] != '/')
	{
		http_respond_text(conn, NULL, 400, "the request target must be a path\n");
		return;
	}
	req.keep_alive = !http10;

	/* the headers that matter; each value is NUL-terminated in place */
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
		else if ((v = header_value(p, line_end, "Authorization")) != NULL)
			authorization = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "X-API-Key")) != NULL)
			api_key = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "If-None-Match")) != NULL)
			req.if_none_match = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Last-Event-ID")) != NULL)
			req.last_event_id = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Origin")) != NULL)
			origin = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Content-Type")) != NULL)
			req.content_type = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Access-Control-Request-Headers")) != NULL)
			ac_headers = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Cookie")) != NULL)
		{
			char	   *session = session_cookie(header_text(v, line_end));

			if (session != NULL)
				req.session = session;
		}
		else if ((v = header_value(p, line_end, "X-CSRF-Token")) != NULL)
			req.csrf_token = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Host")) != NULL)
			req.host = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "User-Agent")) != NULL)
			req.user_agent = header_text(v, line_end);
		else if ((v = header_value(p, line_end, "Accept")) != NULL)
			req.accept = header_text(v, line_end);
	}

	/* the key: X-API-Key, else Authorization, "Bearer " or not */
	if (api_key == NULL && authorization != NULL)
		api_key = pg_strncasecmp(authorization, "Bearer ", 7) == 0 ? authorization + 7 : authorization;
	req.api_key = api_key != NULL && api_key[0] != '\0' ? api_key : NULL;
	req.origin = origin != NULL && http_cors_allowed(origin) ? origin : NULL;
	req.request_origin = origin;

	for (int i = 0; i < (int) lengthof(methods); i++)
		if (strcmp(method, methods[i].name) == 0)
			req.method = methods[i].bit;
	req.head = req.method == HTTP_HEAD;
	if (req.method == 0)
	{
		http_respond_text(conn, &req, 405, "method not allowed\n");
		return;
	}
	if (bodylen > 0)
	{
		/* a copy, NUL-terminated, for the request's life */
		req.body = pnstrdup(conn->in + headlen, bodylen);
		req.bodylen = bodylen;
	}
	req.client_addr = conn->peer;
	req.tls = conn->tls != NULL;
	req.path = target;
	if ((p = strchr(target, '?')) != NULL)
	{
		*p = '\0';
		req.query = p + 1;
	}
	route_request(conn, &req, ac_headers);
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
void
http_close_conn(int i, bool abort)
{
	HttpConn   *conn = http_conns[i];

	if (conn->state == HTTP_CONN_AWAITING)
		conn->await_cancel(conn, false);
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
	http_conns[i] = http_conns[--http_nconns];
	http_events_changed = true;
	/* a descriptor is free again */
	http_accept_paused_until = 0;
}

/*
 * At the limit: close the connections whose clients are gone but not yet
 * seen to be (a lingering one at its end, an idle one closed), so that a
 * newcomer gets their slot rather than a 503.
 */
static void
reap_gone_clients(void)
{
	int			i = 0;

	while (i < http_nconns)
	{
		HttpConn   *conn = http_conns[i];
		char		c;

		if (conn->out.len == 0 &&
			(conn->state == HTTP_CONN_LINGERING ? !http_read_conn(conn) :
			 conn->inlen == 0 && recv(conn->sock, &c, 1, MSG_PEEK) == 0))
		{
			http_close_conn(i, false);
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

	for (i = 0; i < http_nconns; i++)
	{
		HttpConn   *conn = http_conns[i];
		char		c;

		if (conn->idle_since != 0 && conn->inlen == 0 && conn->out.len == 0 &&
			conn->state == HTTP_CONN_OPEN && !conn->more &&
			(conn->tls == NULL || http_tls_pending(conn) == 0) &&
			(idlest < 0 || conn->idle_since < http_conns[idlest]->idle_since) &&
			recv(conn->sock, &c, 1, MSG_PEEK) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			idlest = i;
	}
	if (idlest >= 0)
		http_close_conn(idlest, false);
}

void
http_accept_clients(pgsocket lsock)
{
	bool		reaped = false;

	for (;;)
	{
		struct sockaddr_storage peer;
		socklen_t	peerlen = sizeof(peer);
		pgsocket	sock = accept(lsock, (struct sockaddr *) &peer, &peerlen);
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
				http_accept_paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_ACCEPT_PAUSE_MS);
				http_events_changed = true;
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
		if (http_nconns >= http_max_connections && !reaped)
		{
			reap_gone_clients();
			reaped = true;
		}
		if (http_nconns >= http_max_connections)
			close_idlest_client();
		if (http_nconns >= http_max_connections || !AcquireExternalFD())
		{
			static const char busy[] =
				"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
				"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

			/*
			 * Best effort: the client is told, the slot is not taken.  A TLS
			 * client could not read it before a handshake: it is just
			 * closed.
			 */
			(void) pg_set_noblock(sock);
			if (!http_tls_active)
				(void) send(sock, busy, sizeof(busy) - 1, 0);
			closesocket(sock);
			http_count_response(503);
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
		conn->in = MemoryContextAlloc(cxt, HTTP_MAX_REQUEST);
		conn->insize = HTTP_MAX_REQUEST;
		/* for endpoints that take it into their context (Unleash's remoteAddress) */
		if (pg_getnameinfo_all(&peer, peerlen, conn->peer, sizeof(conn->peer), NULL, 0,
							   NI_NUMERICHOST) != 0)
			conn->peer[0] = '\0';
		MemoryContextSwitchTo(cxt);
		initStringInfo(&conn->out);
		MemoryContextSwitchTo(http_request_context);
		/* HTTPS: its handshake is the first step, within the same deadline */
		if (http_tls_active && !http_tls_start(conn))
		{
			closesocket(sock);
			ReleaseExternalFD();
			MemoryContextDelete(cxt);
			continue;
		}
		http_conns[http_nconns++] = conn;
		http_events_changed = true;
	}
}

/* Send what is queued.  False when the connection is done with. */
bool
http_flush_conn(HttpConn *conn)
{
	while (conn->outpos < conn->out.len)
	{
		ssize_t		n = http_conn_send(conn, conn->out.data + conn->outpos,
									   conn->out.len - conn->outpos);

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
		 * client could lose the response: shut our side (after TLS's
		 * close_notify) and read what it still sends until it closes (or a
		 * second passes).
		 */
		if (conn->tls != NULL)
			http_tls_shutdown(conn);
		shutdown(conn->sock, SHUT_WR);
		conn->state = HTTP_CONN_LINGERING;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 Min(opsflags_http_timeout_ms, 1000));
		http_events_changed = true;
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
bool
http_read_conn(HttpConn *conn)
{
	bool		was_writing = conn->out.len > 0;
	int			served = 0;

	conn->more = false;
	if (conn->tls != NULL && !conn->tls_ready && conn->state == HTTP_CONN_OPEN)
	{
		switch (http_tls_handshake(conn))
		{
			case HTTP_TLS_DONE:
				break;
			case HTTP_TLS_WAIT:
				return true;	/* the loop waits as it says (waits) */
			case HTTP_TLS_FAILED:
				return false;
			case HTTP_TLS_PLAIN:
				/* told in plain HTTP, then closed */
				http_tls_end(conn, true);
				http_respond_text(conn, NULL, 400, "this port speaks HTTPS\n");
				http_events_changed = true;
				return http_flush_conn(conn);
		}
	}
	while (conn->out.len == 0 && conn->state == HTTP_CONN_OPEN)
	{
		int			headlen = head_length(conn);

		if (headlen > 0)
		{
			int			bodylen = request_body_length(conn, headlen);
			bool		chunked = bodylen == HTTP_CHUNKED;
			int			taken = -1; /* bytes after the head, once all there */

			if (chunked)
				bodylen = chunked_body(conn, headlen, &taken);
			else if (bodylen >= 0 && conn->inlen >= headlen + bodylen)
				taken = bodylen;
			if (bodylen < 0)
			{
				/* answered; nothing after it is read */
				conn->inlen = 0;
				if (!http_flush_conn(conn))
					return false;
				continue;
			}
			if (taken >= 0)
			{
				if (served++ == HTTP_REQUESTS_PER_TURN)
				{
					conn->more = true;
					break;
				}
				handle_request(conn, headlen, bodylen);
				MemoryContextReset(http_request_context);
				if (conn->state == HTTP_CONN_STREAM)
				{
					/* a stream now (http_stream.c), only read for EOF */
					pfree(conn->in);
					conn->in = NULL;
					conn->inlen = conn->insize = 0;
					return true;
				}
				memmove(conn->in, conn->in + headlen + taken, conn->inlen - headlen - taken);
				conn->inlen -= headlen + taken;
				/* a buffer grown for a body goes back to its size */
				if (conn->insize > HTTP_MAX_REQUEST && conn->inlen <= HTTP_MAX_REQUEST)
				{
					conn->in = repalloc(conn->in, HTTP_MAX_REQUEST);
					conn->insize = HTTP_MAX_REQUEST;
				}
				if (conn->state == HTTP_CONN_AWAITING)
					break;		/* its answer comes from the database worker */
				if (!http_flush_conn(conn))
					return false;
				continue;
			}
			/* room for the whole body (a chunked one: its chunk lines too) */
			if (chunked)
				bodylen = HTTP_MAX_BODY + HTTP_MAX_CHUNKING;
			if (conn->insize < headlen + bodylen)
			{
				conn->in = repalloc(conn->in, headlen + bodylen);
				conn->insize = headlen + bodylen;
			}
		}
		else if (conn->inlen >= HTTP_MAX_REQUEST)
		{
			http_respond_text(conn, NULL, 431, "request head too large\n");
			if (!http_flush_conn(conn))
				return false;
			continue;
		}

		{
			ssize_t		n = http_conn_recv(conn, conn->in + conn->inlen,
										   conn->insize - conn->inlen);

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
	if (conn->state == HTTP_CONN_LINGERING)
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
		http_events_changed = true;
	return true;
}

/* Close connections past their deadline; returns ms to the next one (-1: none). */
long
http_expire_conns(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	int			i = 0;

	while (i < http_nconns)
	{
		HttpConn   *conn = http_conns[i];

		if (conn->state == HTTP_CONN_AWAITING && conn->deadline <= now)
		{
			/* The backstop: whoever has the request should have answered. */
			conn->await_cancel(conn, true);
		}
		else if (conn->deadline <= now)
		{
			int			untaken = untaken_bytes(conn);

			/*
			 * A client that is still taking its last response may do so
			 * until opsflags.http_timeout after it was queued, lingering or
			 * not.
			 */
			if (conn->state == HTTP_CONN_LINGERING && untaken > 0 && conn->take_by > now)
				conn->deadline = conn->take_by;
			else
			{
				/*
				 * A request begun but not finished is told so; an idle one
				 * is just closed; one whose response was not taken in time
				 * is reset.
				 */
				if (untaken == 0 && conn->inlen > 0 && conn->state != HTTP_CONN_LINGERING)
				{
					http_respond_text(conn, NULL, 408, "request not received in time\n");
					(void) http_conn_send(conn, conn->out.data, conn->out.len);
				}
				http_close_conn(i, untaken > 0);
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

