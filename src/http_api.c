/*
 * http_api.c
 *	  The HTTP server's management API: JSON under /api/v1/, for the web
 *	  console and for scripts, acting as a PostgreSQL role, and its OpenAPI
 *	  description at /api/openapi.json.
 *
 *	  POST /api/v1/session signs in as a role with its password (a session
 *	  cookie and a CSRF token); GET shows the session, DELETE ends it.  Every
 *	  other request presents the session cookie (writes also X-CSRF-Token) or
 *	  an admin API key, and its SQL, opsflags_internal.api_call()
 *	  (http_api.sql), runs as the session's role or the key's as_role: reads
 *	  in a read-only transaction, writes in one read-write transaction, so
 *	  that PostgreSQL's privileges decide and a failed write leaves nothing.
 *
 * In the loop, before the database: password sign-in only over TLS or from
 * a loopback address; a write whose Origin is another site's is refused; a
 * write by session without X-CSRF-Token is refused.  Passwords and tokens
 * reach SQL only as parameters.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "opsflags.h"
#include "http.h"

#define API_JSON	"application/json"

static const char *session_cookie_attrs = "HttpOnly; SameSite=Strict; Path=/";

static bool
is_write(int method)
{
	return (method & (HTTP_POST | HTTP_PUT | HTTP_PATCH | HTTP_DELETE)) != 0;
}

/* An error answer in the API's format, from the loop */
static void
respond_error(HttpConn *conn, HttpRequest *req, int code, const char *sqlstate, const char *message)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\": {\"sqlstate\": ");
	escape_json(&buf, sqlstate);
	appendStringInfoString(&buf, ", \"message\": ");
	escape_json(&buf, message);
	appendStringInfoString(&buf, "}}");
	http_respond(conn, req, code, API_JSON, buf.data, buf.len);
	pfree(buf.data);
}

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 */
static bool
is_loopback(const char *addr)
{
	return addr != NULL &&
		(strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
		 pg_strncasecmp(addr, "::ffff:127.", 11) == 0);
}

/* Whether an Origin header names this server (scheme and Host) */
static bool
same_origin(HttpRequest *req)
{
	const char *scheme = req->tls ? "https://" : "http://";
	size_t		n = strlen(scheme);

	return req->host != NULL &&
		pg_strncasecmp(req->request_origin, scheme, n) == 0 &&
		pg_strcasecmp(req->request_origin + n, req->host) == 0;
}

/*
 * In the loop: what can be refused without SQL; the rest goes to the
 * worker as arg "<format><scheme><path>": format 'c' (CSV asked for in
 * Accept) or 'j', scheme 's' (TLS) or 'p', path after /api/v1/.
 */
static void
api(HttpConn *conn, HttpRequest *req, const char *arg)
{
	char		call[HTTP_SQL_MAX_ARG];
	bool		sign_in = req->method == HTTP_POST && strcmp(arg, "session") == 0;

	if (strlen(arg) + 3 > sizeof(call))
	{
		respond_error(conn, req, 404, "P0002", "no such resource");
		return;
	}
	if (is_write(req->method) && req->request_origin != NULL && !same_origin(req))
	{
		respond_error(conn, req, 403, "42501", "cross-origin writes are refused");
		return;
	}
	if (sign_in)
	{
		/* a password crosses the network only encrypted */
		if (!req->tls && !is_loopback(req->client_addr))
		{
			respond_error(conn, req, 403, "28000",
						  "password sign-in is only taken over TLS or from the local host");
			return;
		}
	}
	else if (req->api_key == NULL)
	{
		if (req->session == NULL)
		{
			respond_error(conn, req, 401, "28000", "sign in, or present an admin API key");
			return;
		}
		if (is_write(req->method) && req->csrf_token == NULL)
		{
			respond_error(conn, req, 403, "42501", "a write needs the session's X-CSRF-Token header");
			return;
		}
	}
	snprintf(call, sizeof(call), "%c%c%s",
			 req->accept != NULL && strstr(req->accept, "text/csv") != NULL ? 'c' : 'j',
			 req->tls ? 's' : 'p', arg);
	http_ask_database(conn, req, call);
}

/* ---------- in the worker ---------- */

static OpsQuery sign_in_query = {
	.sql = "SELECT status, token, document, retry_after FROM opsflags_internal.api_sign_in($1, $2, $3)",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID},
	.writes = true,
};

static OpsQuery sign_out_query = {
	.sql = "SELECT opsflags_internal.console_sign_out($1)",
	.nargs = 1,
	.argtypes = {TEXTOID},
	.writes = true,
};

static OpsQuery authenticate_query = {
	.sql = "SELECT status, role_oid, key_id, document FROM opsflags_internal.api_authenticate($1, $2, $3)",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID},
	.writes = true,
};

static OpsQuery read_query = {
	.sql = "SELECT status, content_type, document FROM opsflags_internal.api_call($1, $2, $3, $4, $5)",
	.nargs = 5,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID},
};

static OpsQuery write_query = {
	.sql = "SELECT status, content_type, document FROM opsflags_internal.api_call($1, $2, $3, $4, $5)",
	.nargs = 5,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID},
	.writes = true,
};

/* The HTTP status of an SQL error */
static int
error_status(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_INSUFFICIENT_PRIVILEGE:
			return 403;
		case ERRCODE_UNDEFINED_OBJECT:
		case ERRCODE_NO_DATA_FOUND:
			return 404;
		case ERRCODE_UNIQUE_VIOLATION:
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:
		case ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST:
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
			return 409;
		case ERRCODE_FEATURE_NOT_SUPPORTED:
			return 405;		/* api_call: a method a resource does not take */
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_READ_ONLY_SQL_TRANSACTION:
			return 503;
	}
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
			return 400;
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:
			return 422;
	}
	return 500;
}

static void
answer_error(HttpAnswer *a, int sqlerrcode, const char *message)
{
	a->code = error_status(sqlerrcode);
	a->content_type = API_JSON;
	resetStringInfo(&a->body);
	appendStringInfoString(&a->body, "{\"error\": {\"sqlstate\": ");
	escape_json(&a->body, unpack_sql_state(sqlerrcode));
	appendStringInfoString(&a->body, ", \"message\": ");
	escape_json(&a->body, message != NULL ? message : "no answer");
	appendStringInfoString(&a->body, "}}");
}

static void
set_session_cookie(HttpAnswer *a, const char *token, bool tls)
{
	if (token != NULL)
		appendStringInfo(&a->headers, "Set-Cookie: opsflags_session=%s; %s%s\r\n",
						 token, session_cookie_attrs, tls ? "; Secure" : "");
	else
		appendStringInfo(&a->headers, "Set-Cookie: opsflags_session=; %s; Max-Age=0%s\r\n",
						 session_cookie_attrs, tls ? "; Secure" : "");
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = s != NULL ? ' ' : 'n';
	return s != NULL ? CStringGetTextDatum(s) : (Datum) 0;
}

static void
sign_in(HttpAnswer *a, bool tls)
{
	const HttpCall *call = a->call;
	HttpResult	r;
	Datum		args[3];
	char		nulls[3];

	args[0] = text_or_null(call->body, &nulls[0]);
	args[1] = text_or_null(call->client_addr != NULL && call->client_addr[0] != '\0' ?
						   call->client_addr : NULL, &nulls[1]);
	args[2] = text_or_null(call->user_agent, &nulls[2]);
	if (!http_sql_request(&sign_in_query, args, nulls, InvalidOid, false, &r) || r.nrows != 1)
	{
		answer_error(a, r.nrows == 0 && r.sqlerrcode == 0 ? ERRCODE_INTERNAL_ERROR : r.sqlerrcode,
					 r.error);
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if (a->code == 200)
		set_session_cookie(a, http_result_value(&r, 0, 1), tls);
	if (http_result_value(&r, 0, 3) != NULL)
		appendStringInfo(&a->headers, "Retry-After: %s\r\n", http_result_value(&r, 0, 3));
	appendStringInfoString(&a->body, http_result_value(&r, 0, 2));
}

/*
 * arg: see api().  The caller is authenticated (as superuser: the session
 * check writes last_seen_at), then the request runs as its role.
 */
static void
answer_api(HttpAnswer *a, const char *arg)
{
	const HttpCall *call = a->call;
	bool		csv = arg[0] == 'c';
	bool		tls = arg[1] == 's';
	const char *path = arg + 2;
	bool		write = is_write(call->method);
	HttpResult	r;
	Datum		args[5];
	char		nulls[5];
	Oid			role;
	const char *key_id;
	const char *ct;

	a->content_type = API_JSON;
	if (call->method == HTTP_POST && strcmp(path, "session") == 0)
	{
		sign_in(a, tls);
		return;
	}

	args[0] = text_or_null(call->api_key == NULL ? call->session : NULL, &nulls[0]);
	args[1] = text_or_null(write ? call->csrf_token : NULL, &nulls[1]);
	args[2] = text_or_null(call->api_key, &nulls[2]);
	if (!http_sql_request(&authenticate_query, args, nulls, InvalidOid, false, &r) || r.nrows != 1)
	{
		answer_error(a, r.nrows == 0 && r.sqlerrcode == 0 ? ERRCODE_INTERNAL_ERROR : r.sqlerrcode,
					 r.error);
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if (a->code != 200)
	{
		appendStringInfoString(&a->body, http_result_value(&r, 0, 3));
		return;
	}
	role = (Oid) strtoul(http_result_value(&r, 0, 1), NULL, 10);
	if ((key_id = http_result_value(&r, 0, 2)) != NULL)
		http_key_used(atoll(key_id));

	if (strcmp(path, "session") == 0)
	{
		if (call->method == HTTP_DELETE)
		{
			HttpResult	out;

			if (call->session != NULL && call->api_key == NULL)
			{
				args[0] = CStringGetTextDatum(call->session);
				if (!http_sql_request(&sign_out_query, args, NULL, InvalidOid, false, &out))
				{
					answer_error(a, out.sqlerrcode, out.error);
					return;
				}
			}
			set_session_cookie(a, NULL, tls);
			appendStringInfoString(&a->body, "{\"signed_out\": true}");
		}
		else
			appendStringInfoString(&a->body, http_result_value(&r, 0, 3));
		return;
	}

	/* the request's own SQL, as the role */
	args[0] = CStringGetTextDatum(call->method == HTTP_GET || call->method == HTTP_HEAD ? "GET" :
								  call->method == HTTP_POST ? "POST" :
								  call->method == HTTP_PUT ? "PUT" :
								  call->method == HTTP_PATCH ? "PATCH" : "DELETE");
	nulls[0] = ' ';
	args[1] = CStringGetTextDatum(path);
	nulls[1] = ' ';
	args[2] = text_or_null(call->query, &nulls[2]);
	args[3] = text_or_null(call->body, &nulls[3]);
	args[4] = BoolGetDatum(csv);
	nulls[4] = ' ';
	if (!http_sql_request(write ? &write_query : &read_query, args, nulls, role, !write, &r) ||
		r.nrows != 1)
	{
		answer_error(a, r.nrows == 0 && r.sqlerrcode == 0 ? ERRCODE_INTERNAL_ERROR : r.sqlerrcode,
					 r.error);
		return;
	}
	a->code = atoi(http_result_value(&r, 0, 0));
	if ((ct = http_result_value(&r, 0, 1)) != NULL)
		a->content_type = pstrdup(ct);
	if (http_result_value(&r, 0, 2) != NULL)
		appendStringInfoString(&a->body, http_result_value(&r, 0, 2));
}

static void
api_unavailable(HttpAnswer *a, const char *error)
{
	a->code = 503;
	appendStringInfoString(&a->body, "{\"error\": {\"sqlstate\": \"57P03\", \"message\": ");
	escape_json(&a->body, error);
	appendStringInfoString(&a->body, "}}");
}

/* ---------- /api/openapi.json ---------- */

static OpsQuery openapi_query = {
	.sql = "SELECT opsflags_internal.api_openapi()::text",
	.nargs = 0,
};

static void
answer_openapi(HttpAnswer *a, const char *arg)
{
	HttpResult	r;

	if (!http_sql(&openapi_query, NULL, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		api_unavailable(a, r.error != NULL ? r.error : "no answer");
		return;
	}
	a->code = 200;
	appendStringInfoString(&a->body, http_result_value(&r, 0, 0));
}

static const HttpRoute api_route = {
	.path = "/api/v1/",
	.prefix = true,
	.methods = HTTP_GET | HTTP_POST | HTTP_PUT | HTTP_PATCH | HTTP_DELETE,
	.handler = api,
	.answer = answer_api,
	.unavailable = api_unavailable,
	.content_type = API_JSON,
};

static const HttpRoute openapi_route = {
	.path = "/api/openapi.json",
	.handler = http_ask_database,
	.answer = answer_openapi,
	.unavailable = api_unavailable,
	.content_type = API_JSON,
};

void
http_api_routes(void)
{
	http_route(&api_route);
	http_route(&openapi_route);
}
