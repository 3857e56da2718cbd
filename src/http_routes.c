/*
 * http_routes.c
 *	  The HTTP server's routing table: the routes that the families of
 *	  endpoints register (http_endpoints.c), and the route of a path; and
 *	  what their handlers share in reading a request (http_query_flag).
 *
 * The table is filled by _PG_init (preload), in the postmaster, so the
 * loop and its database worker, both started from there, hold the same
 * table: a request names its route to the worker by its index.
 */
#include "postgres.h"

#include "miscadmin.h"

#include "opsflags.h"
#include "http.h"

#define HTTP_MAX_ROUTES 64

static const HttpRoute *routes[HTTP_MAX_ROUTES];
static int	nroutes = 0;

/* Add a route (the family keeps it: a static const). */
void
http_route(const HttpRoute *route)
{
	Assert(route->handler != NULL);
	Assert(route->answer == NULL || route->content_type != NULL);
	if (nroutes == HTTP_MAX_ROUTES)
		elog(ERROR, "too many opsflags http routes");
	routes[nroutes++] = route;
}

/*
 * The route of a path: the first whose path is equal to it or, for a
 * prefix, begins it (*arg: the rest; "" for an exact path).  NULL: none.
 */
const HttpRoute *
http_find_route(const char *path, const char **arg)
{
	int			i;

	for (i = 0; i < nroutes; i++)
	{
		const HttpRoute *r = routes[i];
		size_t		len = strlen(r->path);

		if (r->prefix ? strncmp(path, r->path, len) == 0 : strcmp(path, r->path) == 0)
		{
			*arg = path + len;
			return r;
		}
	}
	return NULL;
}

int
http_route_id(const HttpRoute *route)
{
	int			i;

	for (i = 0; i < nroutes; i++)
		if (routes[i] == route)
			return i;
	elog(ERROR, "unknown opsflags http route");
	return -1;					/* keep the compiler quiet */
}

const HttpRoute *
http_route_by_id(int id)
{
	if (id < 0 || id >= nroutes)
		elog(ERROR, "unknown opsflags http endpoint %d", id);
	return routes[id];
}

bool
http_query_flag(const char *query, const char *name)
{
	size_t		len = strlen(name);
	const char *p = query;

	while (p != NULL && *p != '\0')
	{
		if (strncmp(p, name, len) == 0 && strncmp(p + len, "=true", 5) == 0 &&
			(p[len + 5] == '\0' || p[len + 5] == '&'))
			return true;
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	return false;
}
