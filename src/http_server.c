/*
 * http_server.c
 *	  The background worker "opsflags http": a small HTTP/1.1 server for load
 *	  balancers, Kubernetes probes, Prometheus and people.  This file is the
 *	  core's loop: the settings, the listening sockets and the event loop.
 *	  The connections are http_conn.c's, the queue to the database worker
 *	  http_dbqueue.c's, the endpoints the routing table's (http_routes.c).
 *
 * Off by default (opsflags.http_port = 0); opsflags.http_listen,
 * opsflags.http_port and opsflags.http_tls (HTTPS with the server's
 * certificate, http_tls.c) change on reload.  One process, one event loop on
 * PostgreSQL's WaitEventSet: the listening sockets, the clients, the latch
 * and postmaster death.  A slow client costs a slot, never the loop.
 *
 * The loop never runs SQL: /livez and the status page are answered at once,
 * always, and the endpoints that need the database are asked of the worker
 * "opsflags http sql" (http_sql.c) through a shared memory queue, the
 * connection waiting (unread) for its answer while the loop serves the
 * others.
 *
 * Like the sampler, it connects to opsflags.database; while that database
 * does not exist it serves connected to none (SQL endpoints answer 503) and
 * restarts once it is there (bgworker.c).
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsflags.h"
#include "http_core.h"

PGDLLEXPORT void opsflags_http_main(Datum arg);

#define HTTP_MAX_LISTEN			4	/* addresses of one opsflags.http_listen */
#define HTTP_RETRY_LISTEN_MS	10000

static char *http_listen = NULL;
static int	http_port = 0;
static bool http_tls = false;
int			http_max_connections = 32;
int			opsflags_http_timeout_ms = 5000;

WaitEventSet *http_event_set = NULL;

/* Shared: whether the next start may connect to opsflags.database */
static OpsWorkerStart *http_shared = NULL;

static pgsocket listen_socks[HTTP_MAX_LISTEN];
static int	nlisten = 0;
static char *bound_listen = NULL;	/* what the sockets are bound to */
static int	bound_port = 0;
static bool bound_tls = false;	/* what they speak */
static TimestampTz retry_listen_at = 0;

static void
http_shmem_attach(void)
{
	bool		found;

	http_shared = ShmemInitStruct("opsflags http", sizeof(OpsWorkerStart), &found);
	if (!found)
		opsflags_worker_start_init(http_shared);
}

/* ---------- listening ---------- */

static void
close_listeners(void)
{
	int			i;

	for (i = 0; i < nlisten; i++)
	{
		closesocket(listen_socks[i]);
		ReleaseExternalFD();
	}
	nlisten = 0;
	bound_port = 0;
	bound_tls = false;
	http_tls_active = false;
	http_tls_unload();
	if (bound_listen)
		pfree(bound_listen);
	bound_listen = NULL;
	http_events_changed = true;
}

/* Listen on opsflags.http_listen (one name: every address it has; "*": all). */
static void
open_listeners(void)
{
	struct addrinfo hints;
	struct addrinfo *addrs,
			   *ai;
	char		port[16];
	const char *node;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	node = strcmp(http_listen, "*") == 0 || http_listen[0] == '\0' ? NULL : http_listen;
	snprintf(port, sizeof(port), "%d", http_port);

	retry_listen_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_RETRY_LISTEN_MS);
	rc = getaddrinfo(node, port, &hints, &addrs);
	if (rc != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("opsflags http could not resolve \"%s\": %s", http_listen, gai_strerror(rc)),
				 errhint("Set opsflags.http_listen to an address of this host, or \"*\".")));
		return;
	}
	for (ai = addrs; ai != NULL && nlisten < HTTP_MAX_LISTEN; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			on = 1;

		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
#endif
		if (bind(sock, ai->ai_addr, ai->ai_addrlen) < 0 || listen(sock, 128) < 0 ||
			!pg_set_noblock(sock))
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("opsflags http could not listen on \"%s\" port %d: %m",
							http_listen, http_port),
					 errhint("Another attempt is made every %d s and on reload.", HTTP_RETRY_LISTEN_MS / 1000)));
			closesocket(sock);
			continue;
		}
		ReserveExternalFD();
		listen_socks[nlisten++] = sock;
	}
	freeaddrinfo(addrs);

	if (nlisten > 0)
	{
		bound_listen = MemoryContextStrdup(TopMemoryContext, http_listen);
		bound_port = http_port;
		bound_tls = http_tls;
		http_tls_active = http_tls;
		ereport(LOG,
				(errmsg("opsflags http listening on \"%s\" port %d%s", bound_listen, bound_port,
						bound_tls ? " with TLS" : "")));
	}
	http_events_changed = true;
}

/* Make the sockets match the settings (after start and reload). */
static void
apply_settings(void)
{
	bool		wanted = http_port > 0;
	bool		same = nlisten > 0 && bound_port == http_port &&
		strcmp(bound_listen, http_listen) == 0 && bound_tls == http_tls;
	bool		no_certificate = false;

	if (nlisten > 0 && !same)
	{
		int			i;

		ereport(LOG,
				(errmsg("opsflags http stops listening on \"%s\" port %d", bound_listen, bound_port)));
		close_listeners();
		for (i = http_nconns - 1; i >= 0; i--)
			http_close_conn(i, false);
		http_streams_close_all();
	}
	if (wanted && nlisten == 0)
	{
		/* HTTPS without a certificate is not served, nor plain HTTP instead */
		if (http_tls && !http_tls_load())
		{
			no_certificate = true;
			retry_listen_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HTTP_RETRY_LISTEN_MS);
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("opsflags http does not listen on \"%s\" port %d: opsflags.http_tls is on and the certificate did not load",
							http_listen, http_port),
					 errhint("Another attempt is made every %d s and on reload.", HTTP_RETRY_LISTEN_MS / 1000)));
		}
		else
			open_listeners();
	}
	else if (same && bound_tls && !http_tls_load())
	{
		/* a reload re-reads the certificate; new connections get the new one */
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("opsflags http keeps its previous TLS certificate")));
	}

	if (nlisten > 0)
		pgstat_report_activity(STATE_IDLE, psprintf("listening on %s port %d%s", bound_listen, bound_port,
													 bound_tls ? " with TLS" : ""));
	else if (wanted)
		pgstat_report_activity(STATE_IDLE, psprintf("cannot listen on %s port %d%s", http_listen,
													 http_port,
													 no_certificate ? " (TLS certificate)" : ""));
	else
		pgstat_report_activity(STATE_IDLE, "off (opsflags.http_port = 0)");
}

/* ---------- main ---------- */

static WaitEventSet *
build_event_set(void)
{
#if PG_VERSION_NUM >= 170000
	/* No resource owner: freed by the loop, like the TopMemoryContext set before 17 */
	WaitEventSet *set = CreateWaitEventSet(NULL, 2 + nlisten + http_nconns + http_streams_events());
#else
	WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, 2 + nlisten + http_nconns + http_streams_events());
#endif
	int			i;

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nlisten && http_accept_paused_until == 0; i++)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, listen_socks[i], NULL, NULL);
	for (i = 0; i < http_nconns; i++)
		if (http_conns[i]->state != HTTP_CONN_AWAITING)	/* not read while the database answers */
		{
			http_conns[i]->waits = http_conn_wait_events(http_conns[i]);
			AddWaitEventToSet(set, http_conns[i]->waits, http_conns[i]->sock, NULL, http_conns[i]);
		}
	http_streams_add_events(set);
	http_events_changed = false;
	return set;
}

void
opsflags_http_main(Datum arg)
{
	WaitEventSet *set = NULL;
	WaitEvent	events[64];
	pgsocket	ready_listen[HTTP_MAX_LISTEN];
	int			nready;
	TimestampTz next_database_check = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	http_db_connected = opsflags_worker_connect(http_shared);
	pgstat_report_appname("opsflags http");
	http_pin_session();

	http_request_context = AllocSetContextCreate(TopMemoryContext, "opsflags http request",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(http_request_context);
	apply_settings();

	for (;;)
	{
		long		timeout;
		int			nevents;
		int			i;

		/* Not connected: look for the database, restart connected once it is there. */
		if (!http_db_connected && GetCurrentTimestamp() >= next_database_check)
		{
			opsflags_worker_restart_if_database(http_shared);
			next_database_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  OPSFLAGS_CHECK_DATABASE_MS);
		}
		if (http_port > 0 && nlisten == 0 && GetCurrentTimestamp() >= retry_listen_at)
			apply_settings();

		/* Clients with buffered requests whose turn has come (http_read_conn) */
		for (i = 0; i < http_nconns;)
		{
			HttpConn   *conn = http_conns[i];

			if (conn->more && conn->out.len == 0 && conn->state != HTTP_CONN_AWAITING &&
				!http_read_conn(conn))
			{
				http_close_conn(i, false);
				continue;
			}
			i++;
		}
		MemoryContextReset(http_request_context);

		timeout = http_expire_conns();
		{
			/* the streams: changes to push, heartbeats */
			long		streams_ms = http_streams_tick();

			if (streams_ms >= 0)
				timeout = timeout < 0 ? streams_ms : Min(timeout, streams_ms);
		}
		for (i = 0; i < http_nconns; i++)
		{
			HttpConn   *conn = http_conns[i];

			if (conn->more && conn->out.len == 0 && conn->state != HTTP_CONN_AWAITING)
				timeout = 0;
			/* a TLS connection waits for what OpenSSL wants, which may change */
			if (conn->tls != NULL && conn->state != HTTP_CONN_AWAITING &&
				http_conn_wait_events(conn) != conn->waits)
				http_events_changed = true;
		}
		if (http_accept_paused_until != 0)
		{
			long		paused_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																	http_accept_paused_until);

			if (paused_ms <= 0)
			{
				http_accept_paused_until = 0;
				http_events_changed = true;
			}
			else
				timeout = timeout < 0 ? paused_ms : Min(timeout, paused_ms);
		}
		if (!http_db_connected)
			timeout = timeout < 0 ? OPSFLAGS_CHECK_DATABASE_MS : Min(timeout, OPSFLAGS_CHECK_DATABASE_MS);
		if (http_port > 0 && nlisten == 0)
			timeout = timeout < 0 ? HTTP_RETRY_LISTEN_MS : Min(timeout, HTTP_RETRY_LISTEN_MS);

		if (http_events_changed)
		{
			if (set)
				FreeWaitEventSet(set);
			http_event_set = NULL;
			set = build_event_set();
			http_event_set = set;
		}
		nevents = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);

		/*
		 * Clients first, then new connections: a slot that a client has just
		 * given up is free before a newcomer is counted against
		 * opsflags.http_max_connections.
		 */
		nready = 0;
		for (i = 0; i < nevents; i++)
		{
			WaitEvent  *ev = &events[i];
			HttpConn   *conn = (HttpConn *) ev->user_data;
			int			j;
			bool		flush;

			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
				if (ConfigReloadPending)
				{
					ConfigReloadPending = false;
					ProcessConfigFile(PGC_SIGHUP);
					apply_settings();
					nready = 0;
					break;		/* the sockets may have changed */
				}
				continue;
			}
			if (conn == NULL)
			{
				if (ev->events & WL_SOCKET_READABLE)
					ready_listen[nready++] = ev->fd;
				continue;
			}
			/* Still open?  An earlier event of this round may have closed it. */
			for (j = 0; j < http_nconns && http_conns[j] != conn; j++)
				;
			if (j == http_nconns)
			{
				/* a stream's (or one closed earlier this round) */
				(void) http_stream_event(ev->user_data, ev->events);
				continue;
			}
			/* TLS: a response to send may wait for readable (OpenSSL's wish) */
			flush = conn->tls != NULL ? conn->out.len > 0 : (ev->events & WL_SOCKET_WRITEABLE) != 0;
			if (!(flush ? http_flush_conn(conn) && http_read_conn(conn) : http_read_conn(conn)))
				http_close_conn(j, false);
			else if ((ev->events & WL_SOCKET_WRITEABLE) && conn->out.len == 0)
				http_events_changed = true; /* back to reading */
		}
		for (i = 0; i < nready; i++)
			http_accept_clients(ready_listen[i]);
		/* The database worker's answers (it sets our latch) */
		http_db_receive();
		MemoryContextReset(http_request_context);
	}
}

char	   *opsflags_http_cors_origins = NULL;

/*
 * Whether opsflags.http_cors_origins lets a page of this origin read the
 * answers: "*" or the origin itself (scheme, host and port, compared
 * exactly, case-insensitively).
 */
bool
http_cors_allowed(const char *origin)
{
	const char *p = opsflags_http_cors_origins;
	size_t		olen = strlen(origin);

	if (p == NULL || olen == 0 || olen >= 256)
		return false;
	while (*p != '\0')
	{
		const char *e;
		const char *t;

		while (*p == ' ' || *p == ',')
			p++;
		e = p;
		while (*e != '\0' && *e != ',')
			e++;
		t = e;
		while (t > p && t[-1] == ' ')
			t--;
		if ((t - p == 1 && *p == '*') ||
			((size_t) (t - p) == olen && pg_strncasecmp(p, origin, olen) == 0))
			return true;
		p = e;
	}
	return false;
}

void
opsflags_http_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("opsflags.http_listen",
							   "Address the opsflags HTTP server listens on (\"*\": all).",
							   NULL,
							   &http_listen,
							   "127.0.0.1",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_port",
							"TCP port of the opsflags HTTP server (0 turns it off).",
							NULL,
							&http_port,
							0, 0, 65535,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("opsflags.http_tls",
							 "Whether the opsflags HTTP server speaks HTTPS, with the server's ssl_cert_file and ssl_key_file.",
							 "Changed on reload (its clients are closed); the certificate is also read again on every reload.",
							 &http_tls,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_max_connections",
							"Clients the opsflags HTTP server serves at once; more are answered 503 and closed.",
							NULL,
							&http_max_connections,
							32, 1, HTTP_MAX_CONNECTIONS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_max_streams",
							"Event streams the opsflags HTTP server holds at once; more are answered 503.",
							"Streams are not counted against opsflags.http_max_connections; 0 offers none.",
							&http_max_streams,
							1000, 0, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.http_timeout",
							"Time a client has to send a request and take a response, and a query to answer.",
							NULL,
							&opsflags_http_timeout_ms,
							5000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("opsflags.http_cors_origins",
							   "Origins whose browser pages may read the opsflags HTTP server's answers (comma-separated; \"*\": any).",
							   "Empty: none (no CORS headers are sent).",
							   &opsflags_http_cors_origins,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	opsflags_shmem_register(sizeof(OpsWorkerStart), NULL, http_shmem_attach);
	http_stream_init();
	http_register_endpoints();

	/* Also on a standby, where /readyz reports the replay lag. */
	opsflags_register_worker("opsflags http", "opsflags_http_main");
}
