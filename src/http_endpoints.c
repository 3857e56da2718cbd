/*
 * http_endpoints.c
 *	  The families of endpoints the HTTP server serves, each a file that
 *	  registers its routes.  A new family is a new file and one line here;
 *	  the server's core is not touched.
 */
#include "postgres.h"

#include "opsflags.h"
#include "http.h"

/* Every family's routes, in the order paths are matched (preload only) */
void
http_register_endpoints(void)
{
	http_probes_routes();		/* /livez, /readyz, /health */
	http_metrics_routes();		/* /metrics */
	http_status_routes();		/* /, /index.html, /api/status */
	http_flags_routes();		/* /flags/<environment> */
	http_ofrep_routes();		/* /ofrep/v1/evaluate/flags[/<key>] */
	http_launchdarkly_routes();	/* /sdk/evalx/, /sdk/goals/, /events/ */
	http_unleash_routes();		/* /api/frontend, /api/client/ */
	http_ofrep_stream_routes();	/* /ofrep/v1/stream */
	http_launchdarkly_stream_routes();	/* /eval */
	http_api_routes();			/* /api/v1/, /api/openapi.json */
	http_console_routes();		/* /console/ and its files */
}
