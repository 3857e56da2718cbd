/*
 * http_console.c
 *	  The web console's files: its page at /console/, its script
 *	  /console/app.js and its style sheet /console/app.css (src/console/,
 *	  compiled in by the Makefile), answered by the loop.  The page talks to
 *	  the management API (/api/v1/...) with its session cookie; nothing here
 *	  reads the database.
 *
 * The files go out under a policy of their own: the script and the style
 * sheet come from the server itself and nothing is inline, so a value that
 * reached the page as markup could still run nothing.
 */
#include "postgres.h"

#include "opsflags.h"
#include "http.h"

/* The files of src/console/, made C strings by the Makefile */
static const char console_html[] =
#include "console/console.html.h"
			;
static const char console_js[] =
#include "console/app.js.h"
			;
static const char console_css[] =
#include "console/app.css.h"
			;

#define CONSOLE_HEADERS \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; " \
	"frame-ancestors 'none'\r\n" \
	"X-Frame-Options: DENY\r\n" \
	"Referrer-Policy: no-referrer\r\n"

static void
console_page(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond_headers(conn, req, 200, "text/html; charset=utf-8", CONSOLE_HEADERS,
						 console_html, sizeof(console_html) - 1);
}

static void
console_script(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond_headers(conn, req, 200, "text/javascript; charset=utf-8", CONSOLE_HEADERS,
						 console_js, sizeof(console_js) - 1);
}

static void
console_style(HttpConn *conn, HttpRequest *req, const char *arg)
{
	http_respond_headers(conn, req, 200, "text/css; charset=utf-8", CONSOLE_HEADERS,
						 console_css, sizeof(console_css) - 1);
}

/* The page names its files by absolute paths, so /console serves it as well. */
static const HttpRoute console_bare_route = {
	.path = "/console",
	.handler = console_page,
};

static const HttpRoute console_page_route = {
	.path = "/console/",
	.handler = console_page,
};

static const HttpRoute console_script_route = {
	.path = "/console/app.js",
	.handler = console_script,
};

static const HttpRoute console_style_route = {
	.path = "/console/app.css",
	.handler = console_style,
};

void
http_console_routes(void)
{
	http_route(&console_bare_route);
	http_route(&console_page_route);
	http_route(&console_script_route);
	http_route(&console_style_route);
}
