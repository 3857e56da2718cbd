/*
 * http_status.c
 *	  The HTTP server's status page: the page itself at / (and /index.html),
 *	  src/status_page.html compiled in and answered by the loop, and the
 *	  data it shows, /api/status, answered from the database by the worker
 *	  "opsflags http sql".
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "opsflags.h"
#include "http.h"

/* ---------- the page ---------- */

/* src/status_page.html, made a C string by the Makefile */
static const char status_page[] =
#include "status_page.h"
			;

static void
status_page_handler(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond(conn, req, 200, "text/html; charset=utf-8", status_page, sizeof(status_page) - 1);
}

/* ---------- /api/status ---------- */

/*
 * /api/status: what the status page shows, for opsflags.environment
 * (src/http_status.sql): health, 24 h of samples, flags with what a request
 * without a user is served and why, the last 10 deployments and the open
 * alerts.  See src/status_page.html.
 */
static OpsQuery status_query = {
	.sql = "SELECT opsflags_internal.http_status($1)::text",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

static void
answer_status(HttpAnswer *a, const char *arg)
{
	HttpResult	r;
	Datum		doc;

	if (!http_health_document(&r))
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(http_result_value(&r, 0, 0)));
	if (!http_sql(&status_query, &doc, NULL, InvalidOid, &r) || r.nrows != 1)
	{
		http_answer_unhealthy(a, r.error ? r.error : "no answer");
		return;
	}
	a->code = 200;
	appendStringInfoString(&a->body, http_result_value(&r, 0, 0));
}

/* ---------- routes ---------- */

static const HttpRoute page_route = {
	.path = "/",
	.handler = status_page_handler,
};

static const HttpRoute index_route = {
	.path = "/index.html",
	.handler = status_page_handler,
};

static const HttpRoute api_status_route = {
	.path = "/api/status",
	.handler = http_ask_database,
	.answer = answer_status,
	.content_type = "application/json",
};

void
http_status_routes(void)
{
	http_route(&page_route);
	http_route(&index_route);
	http_route(&api_status_route);
}
