/*
 * http_ofrep_stream.c
 *	  OFREP's event stream (server-sent events, as the OpenFeature web
 *	  provider reads them): the ticket that the bulk evaluation hands out in
 *	  its "eventStreams" (ofrep_stream_token(), called by ofrep_answer(),
 *	  http_ofrep.sql), and GET /ofrep/v1/stream?token=<ticket>, a stream
 *	  that says {"type": "refetchEvaluation"} whenever the flags change.
 *
 * The provider connects with EventSource, which sends no headers: the URL
 * carries a ticket for the environment of the key that fetched the bulk
 * evaluation (http_stream.c: signed, valid for ten minutes), never
 * the key.  The loop checks it without SQL; an invalid or expired one is
 * 401, and the provider fetches the bulk evaluation again, for a new one.
 * Every change to the flags of the database is told to every stream
 * (whatever its environment): the provider then fetches its bulk
 * evaluation with its ETag, and a change that is not its environment's
 * costs it a 304.  A stream is also told so when it opens, unless it comes
 * back (Last-Event-ID) with nothing changed since: a change committed
 * between the bulk evaluation and the stream's start, or while the client
 * was away, is never missed.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "opsflags.h"
#include "http.h"

PG_FUNCTION_INFO_V1(opsflags_ofrep_stream_token);

#define OFREP_SCOPE "ofrep"

static void ofrep_changed(HttpStreamFamily *family, uint64 changes);

static HttpStreamFamily ofrep_streams = {
	.name = "ofrep",
	.changed = ofrep_changed,
};

typedef struct OfrepEvent
{
	char		text[128];
	size_t		len;
} OfrepEvent;

static void
push_event(HttpStream *stream, void *ctx)
{
	OfrepEvent *event = ctx;

	(void) http_stream_push(stream, event->text, event->len);
}

static void
refetch_event(OfrepEvent *event, uint64 changes)
{
	event->len = snprintf(event->text, sizeof(event->text),
						  "id: " UINT64_FORMAT "\nevent: message\ndata: {\"type\": \"refetchEvaluation\"}\n\n",
						  changes);
}

/* The flags changed: every stream is told to fetch its evaluations again. */
static void
ofrep_changed(HttpStreamFamily *family, uint64 changes)
{
	OfrepEvent	event;

	refetch_event(&event, changes);
	http_stream_foreach(family, push_event, &event);
}

static void
unauthorized(HttpConn *conn, HttpRequest *req, const char *details)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"errorDetails\": \"");
	appendStringInfoString(&body, details);
	appendStringInfoString(&body, "\"}");
	http_respond(conn, req, 401, "application/json", body.data, body.len);
}

/* GET /ofrep/v1/stream?token=<ticket> */
static void
ofrep_stream(HttpConn *conn, HttpRequest *req, const char *arg)
{
	char		environment[HTTP_STREAM_MAX_DATA];
	HttpStream *stream;
	char	   *ticket = NULL;
	char	   *p = req->query;

	/* the token parameter (a ticket needs no decoding: [A-Za-z0-9_.-]) */
	while (p != NULL && *p != '\0')
	{
		if (strncmp(p, "token=", 6) == 0)
		{
			ticket = p + 6;
			break;
		}
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	if (ticket != NULL)
	{
		char	   *end = strchr(ticket, '&');

		if (end != NULL)
			*end = '\0';		/* the query is the request's own */
	}
	if (ticket == NULL || ticket[0] == '\0')
	{
		unauthorized(conn, req, "a token from the bulk evaluation's eventStreams is required");
		return;
	}
	if (http_stream_ticket_check(OFREP_SCOPE, ticket, environment, sizeof(environment)) == NULL)
	{
		unauthorized(conn, req, "the token is not valid or has expired: evaluate the flags again for a new one");
		return;
	}
	stream = http_stream_begin(conn, req, &ofrep_streams, environment, strlen(environment) + 1);
	if (stream != NULL)
	{
		uint64		changes = http_stream_changes();
		char		now[32];

		snprintf(now, sizeof(now), UINT64_FORMAT, changes);
		if (req->last_event_id == NULL || strcmp(req->last_event_id, now) != 0)
		{
			OfrepEvent	event;

			refetch_event(&event, changes);
			(void) http_stream_push(stream, event.text, event.len);
		}
	}
}

static const HttpRoute ofrep_stream_route = {
	.path = "/ofrep/v1/stream",
	.handler = ofrep_stream,
};

void
http_ofrep_stream_routes(void)
{
	http_route(&ofrep_stream_route);
	http_stream_family(&ofrep_streams);
}

/*
 * ofrep_stream_token(environment text, lifetime integer) -> text: a ticket
 * to the stream of an environment, valid for lifetime seconds (and up to a
 * minute more), for the bulk evaluation's eventStreams; NULL when the
 * server offers no streams (opsflags.http_max_streams = 0, or no shared
 * memory).  For the HTTP server's database worker only (revoked from
 * PUBLIC): a ticket opens a stream without a key.
 */
Datum
opsflags_ofrep_stream_token(PG_FUNCTION_ARGS)
{
	char	   *environment = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *ticket;

	if (http_max_streams == 0)
		PG_RETURN_NULL();
	ticket = http_stream_ticket(OFREP_SCOPE, environment, PG_GETARG_INT32(1));
	if (ticket == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(ticket));
}
