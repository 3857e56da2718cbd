/*
 * http_launchdarkly_stream.c
 *	  LaunchDarkly's client-side stream, as LaunchDarkly's client-side SDKs
 *	  open it with streaming on: GET /eval/{id}/{base64url context} and
 *	  REPORT /eval/{id} (the context as the body), withReasons=true for
 *	  reasons; {id} as for /sdk/evalx (http_launchdarkly.c).
 *
 * The database worker evaluates the stream's context
 * (launchdarkly_request() and launchdarkly_lines(), http_launchdarkly.sql)
 * before the stream
 * answers: a bad key or context is refused with its status (the SDK stops
 * on 401, 403 and 404), and a good one opens with "put", every flag.
 * After each change to the flags of the database, the worker evaluates
 * every stream's context again and the stream says what changed for it:
 * "patch" for a flag whose entry changed with a greater version (the SDK
 * ignores any other), "delete" for a flag that is gone, "put" again when a
 * change cannot be told so (an entry changed without its version rising:
 * a segment, the flag's own definition), and "ping" when the worker could
 * not answer or a put would be too large to push: the SDK then fetches
 * /sdk/evalx itself.  An answer of 401, 403 or 404 (a key revoked, an
 * environment dropped) ends the stream.
 *
 * A change costs one evaluation per stream.  The streams ask the worker a
 * few at a time, leaving room in its queue for requests (LD_MAX_ASKING of
 * HTTP_SQL_MAX_PENDING); each answer lets the next ask.  A stream's state
 * (its request, and a hash of each flag's entry as last told) lives in the
 * stream's memory.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

#define LD_MAX_ID		128		/* as http_launchdarkly.c */
#define LD_MAX_ASKING	(HTTP_SQL_MAX_PENDING / 2)
#define LD_MAX_PUSH		(HTTP_STREAM_MAX_UNTAKEN / 2)	/* beyond: ping */

typedef struct LdFlag
{
	char	   *key;
	int32		version;
	uint64		hash;			/* of its entry */
} LdFlag;

typedef struct LdStream
{
	HttpStream *stream;
	char		arg[LD_MAX_ID + 2]; /* "b{id}" or "j{id}", as /sdk/evalx's */
	char	   *context;		/* as sent: base64url or JSON */
	int			contextlen;
	bool		with_reasons;
	bool		asking;			/* the worker has its request */
	bool		stale;			/* the client may have other flags than these */
	uint64		asked;			/* the generation its evaluation covers */
	LdFlag	   *flags;			/* as last told, in the order of their keys */
	int			nflags;
} LdStream;

static void ld_changed(HttpStreamFamily *family, uint64 changes);
static void ld_tick(HttpStreamFamily *family);
static void ld_answered(HttpStream *stream, int code, const char *body, size_t len);

static HttpStreamFamily ld_streams = {
	.name = "launchdarkly",
	.changed = ld_changed,
	.tick = ld_tick,
	.answered = ld_answered,
};

/* Changes seen (the generation every stream should be told), and whether some may be behind */
static uint64 generation = 1;
static bool behind = false;

static const HttpRoute eval_route;

static LdStream *
ld_of(HttpStream *stream)
{
	return *(LdStream **) http_stream_data(stream);
}

/* Hand the worker the stream's evaluation; false if it cannot take it now. */
static bool
ask(LdStream *ld)
{
	if (!http_stream_ask_database(ld->stream, &eval_route, ld->arg,
								  ld->with_reasons ? "withReasons=true" : NULL,
								  ld->context, ld->contextlen))
		return false;
	ld->asking = true;
	ld->asked = generation;
	return true;
}

/* ---------- in the loop: opening ---------- */

/* GET /eval/{id}/{base64url context}, REPORT /eval/{id} */
static void
eval_stream(HttpConn *conn, HttpRequest *req, const char *arg)
{
	const char *slash = strchr(arg, '/');
	const char *context;
	int			contextlen;
	size_t		idlen;
	HttpStream *stream;
	LdStream   *ld = NULL;
	MemoryContext old;

	if (req->method == HTTP_REPORT)
	{
		idlen = strlen(arg);
		context = req->body;
		contextlen = req->bodylen;
		if (slash != NULL || context == NULL)
		{
			http_respond_json_error(conn, req, slash ? 404 : 400, slash ? "NOT_FOUND" : "PARSE_ERROR",
									slash ? "not found" : "REPORT /eval/{id} takes the context as its body");
			return;
		}
	}
	else
	{
		if (slash == NULL || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		{
			http_respond_json_error(conn, req, 404, "NOT_FOUND", "not found");
			return;
		}
		idlen = slash - arg;
		context = slash + 1;
		contextlen = strlen(context);
	}
	if (idlen == 0 || idlen > LD_MAX_ID)
	{
		http_respond_json_error(conn, req, 404, "NOT_FOUND", "not found");
		return;
	}

	stream = http_stream_begin_pending(conn, req, &ld_streams, &ld, sizeof(ld));
	if (stream == NULL)
		return;					/* answered (HEAD, or too many streams) */

	old = MemoryContextSwitchTo(http_stream_context(stream));
	ld = palloc0(sizeof(LdStream));
	ld->stream = stream;
	ld->arg[0] = req->method == HTTP_REPORT ? 'j' : 'b';
	memcpy(ld->arg + 1, arg, idlen);
	ld->arg[idlen + 1] = '\0';
	ld->context = pnstrdup(context, contextlen);
	ld->contextlen = contextlen;
	ld->with_reasons = http_query_flag(req->query, "withReasons");
	ld->stale = true;
	MemoryContextSwitchTo(old);
	*(LdStream **) http_stream_data(stream) = ld;

	if (!ask(ld))
	{
		static const char busy[] = "{\"message\": \"too many requests are waiting for the database\"}";

		http_stream_refuse(stream, 503, "application/json", busy, sizeof(busy) - 1);
	}
}

/* ---------- in the loop: changes ---------- */

static void
ld_changed(HttpStreamFamily *family, uint64 changes)
{
	generation++;
	behind = true;
}

typedef struct TickState
{
	bool		full;			/* the worker's queue has no more room for us */
	bool		waiting;		/* some stream is still to be told */
} TickState;

static void
ask_if_behind(HttpStream *stream, void *ctx)
{
	TickState  *ts = ctx;
	LdStream   *ld = ld_of(stream);

	if (ld == NULL || ld->asking || ld->asked == generation)
		return;
	if (ts->full || http_db_room() <= HTTP_SQL_MAX_PENDING - LD_MAX_ASKING || !ask(ld))
	{
		ts->full = true;
		ts->waiting = true;
	}
}

/* At each turn: the streams behind ask, while the worker has room for them. */
static void
ld_tick(HttpStreamFamily *family)
{
	TickState	ts = {false, false};

	if (!behind)
		return;
	http_stream_foreach(family, ask_if_behind, &ts);
	behind = ts.waiting;
}

/* ---------- in the loop: the worker's answers ---------- */

/*
 * The answer's flags: lines "key TAB version TAB entry", in the order of
 * their keys (see answer_eval).  Entries point into body (NUL-terminated
 * in place).
 */
static int
parse_flags(char *body, size_t len, LdFlag **flags, char ***entries)
{
	int			n = 0;
	int			size = 16;
	char	   *p = body;
	char	   *end = body + len;

	*flags = palloc(size * sizeof(LdFlag));
	*entries = palloc(size * sizeof(char *));
	while (p < end)
	{
		char	   *nl = memchr(p, '\n', end - p);
		char	   *tab1 = memchr(p, '\t', end - p);
		char	   *tab2 = tab1 ? memchr(tab1 + 1, '\t', end - tab1 - 1) : NULL;

		if (nl == NULL || tab1 == NULL || tab2 == NULL || tab2 > nl)
			elog(ERROR, "opsflags http received a malformed LaunchDarkly evaluation");
		*tab1 = *tab2 = *nl = '\0';
		if (n == size)
		{
			size *= 2;
			*flags = repalloc(*flags, size * sizeof(LdFlag));
			*entries = repalloc(*entries, size * sizeof(char *));
		}
		(*flags)[n].key = p;
		(*flags)[n].version = atoi(tab1 + 1);
		(*flags)[n].hash = hash_bytes_extended((unsigned char *) tab2 + 1, nl - tab2 - 1, 0);
		(*entries)[n] = tab2 + 1;
		n++;
		p = nl + 1;
	}
	return n;
}

/* An event whose data is {"key": key, <the members of entry>} */
static void
append_keyed(StringInfo out, const char *event, const char *key, const char *entry)
{
	appendStringInfo(out, "event: %s\ndata: {\"key\": ", event);
	escape_json(out, key);
	if (entry[0] == '{' && entry[1] != '}')
		appendStringInfo(out, ", %s\n\n", entry + 1);
	else
		appendStringInfoString(out, "}\n\n");
}

static void
append_put(StringInfo out, LdFlag *flags, char **entries, int n)
{
	appendStringInfoString(out, "event: put\ndata: {");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(out, ", ");
		escape_json(out, flags[i].key);
		appendStringInfo(out, ": %s", entries[i]);
	}
	appendStringInfoString(out, "}\n\n");
}

/*
 * What to tell a client that has ld's flags so that it has these: patches
 * and deletes, or, when a change cannot be told so, false.
 */
static bool
append_changes(StringInfo out, LdStream *ld, LdFlag *flags, char **entries, int n)
{
	int			i = 0;
	int			j = 0;

	while (i < ld->nflags || j < n)
	{
		int			cmp = i == ld->nflags ? 1 : j == n ? -1 :
			strcmp(ld->flags[i].key, flags[j].key);

		if (cmp < 0)
		{
			/* gone: a delete wins over the version the client has */
			appendStringInfoString(out, "event: delete\ndata: {\"key\": ");
			escape_json(out, ld->flags[i].key);
			appendStringInfo(out, ", \"version\": %d}\n\n", ld->flags[i].version + 1);
			i++;
		}
		else if (cmp > 0)
		{
			append_keyed(out, "patch", flags[j].key, entries[j]);
			j++;
		}
		else
		{
			if (flags[j].hash != ld->flags[i].hash)
			{
				if (flags[j].version <= ld->flags[i].version)
					return false;
				append_keyed(out, "patch", flags[j].key, entries[j]);
			}
			i++;
			j++;
		}
	}
	return true;
}

/* Keep what the client was told, in the stream's memory. */
static void
remember(LdStream *ld, LdFlag *flags, int n)
{
	MemoryContext old = MemoryContextSwitchTo(http_stream_context(ld->stream));
	LdFlag	   *kept = n > 0 ? palloc(n * sizeof(LdFlag)) : NULL;

	for (int i = 0; i < ld->nflags; i++)
		pfree(ld->flags[i].key);
	if (ld->flags != NULL)
		pfree(ld->flags);
	for (int i = 0; i < n; i++)
	{
		kept[i] = flags[i];
		kept[i].key = pstrdup(flags[i].key);
	}
	ld->flags = kept;
	ld->nflags = n;
	MemoryContextSwitchTo(old);
}

static const char ping_event[] = "event: ping\ndata: {}\n\n";

static void
ld_answered(HttpStream *stream, int code, const char *body, size_t len)
{
	LdStream   *ld = ld_of(stream);
	StringInfoData out;
	LdFlag	   *flags;
	char	  **entries;
	char	   *copy;
	int			n;

	ld->asking = false;
	if (ld->asked != generation)
		behind = true;			/* changed since: ask again */
	if (!http_stream_is_open(stream))
	{
		if (code != 200)
		{
			http_stream_refuse(stream, code, "application/json", body, len);
			return;
		}
		if (!http_stream_open(stream))
			return;				/* the client is gone */
	}
	else if (code == 401 || code == 403 || code == 404)
	{
		/* the key or the environment is gone: so is the stream */
		http_stream_close(stream);
		return;
	}
	if (code != 200)
	{
		/* the client fetches for itself, and is told everything next time */
		ld->stale = true;
		(void) http_stream_push(stream, ping_event, sizeof(ping_event) - 1);
		return;
	}

	copy = pnstrdup(body, len);
	n = parse_flags(copy, len, &flags, &entries);
	initStringInfo(&out);
	if (ld->stale || !append_changes(&out, ld, flags, entries, n))
	{
		resetStringInfo(&out);
		append_put(&out, flags, entries, n);
	}
	if (out.len > LD_MAX_PUSH)
	{
		resetStringInfo(&out);
		appendStringInfoString(&out, ping_event);
	}
	remember(ld, flags, n);
	ld->stale = false;
	if (out.len > 0)
		(void) http_stream_push(stream, out.data, out.len); /* false: dropped */
	pfree(out.data);
	pfree(copy);
	pfree(flags);
	pfree(entries);
}

/* ---------- in the worker ---------- */

static OpsQuery eval_query = {
	.sql = "SELECT r.status, r.key_id, r.message, "
	"CASE WHEN r.status = 200 THEN opsflags_internal.launchdarkly_lines(r.ctx, r.environment, $4) END "
	"FROM opsflags_internal.launchdarkly_request($1, $2, $3) r",
	.nargs = 4,
	.argtypes = {TEXTOID, TEXTOID, BOOLOID, BOOLOID},
};

/*
 * arg: "b{id}" (the body is the base64url context) or "j{id}" (JSON).  200:
 * a line "key TAB version TAB entry" per flag; else the JSON message.
 */
static void
answer_eval(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	HttpResult	r;
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	const char *key_id;

	/* the ID may be a key: it is a parameter, in no query text */
	args[0] = CStringGetTextDatum(arg + 1);
	if (call->body != NULL)
		args[1] = CStringGetTextDatum(call->body);
	else
		nulls[1] = 'n';
	args[2] = BoolGetDatum(arg[0] == 'b');
	args[3] = BoolGetDatum(call->query != NULL && strcmp(call->query, "withReasons=true") == 0);
	if (!http_sql(&eval_query, args, nulls, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_message(a, 500, r.error ? r.error : "no answer");
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if ((key_id = http_result_value(&r, 0, 1)) != NULL && a->code == 200)
		http_key_used(atoll(key_id));
	appendStringInfoString(&a->body, http_result_value(&r, 0, a->code == 200 ? 3 : 2));
}

static void
eval_unavailable(HttpAnswer *a, const char *error)
{
	http_answer_message(a, 503, error);
}

static const HttpRoute eval_route = {
	.path = "/eval/",
	.prefix = true,
	.methods = HTTP_GET | HTTP_REPORT,
	.handler = eval_stream,
	.answer = answer_eval,
	.unavailable = eval_unavailable,
	.content_type = "application/json",
};

void
http_launchdarkly_stream_routes(void)
{
	http_route(&eval_route);
	http_stream_family(&ld_streams);
}
