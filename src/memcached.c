/*
 * memcached.c
 *	  The memcached client: a set/get round trip through libmemcached to
 *	  opsflags.memcached_servers (or MEMCACHED_URL when the setting is
 *	  empty), over the binary protocol, bounded by a timeout so that a dead
 *	  or hanging server costs at most that long.
 *
 * Also the plain set and get that flag publishing uses.
 *
 * A backend keeps one client, connected, for as long as the servers and the
 * timeout stay the same and nothing fails: a health check every few
 * milliseconds (an HTTP probe, a monitoring loop) then costs one round trip
 * on an open connection, not a TCP connection each (whose TIME_WAIT sockets
 * would pile up by the thousand).  Any error drops the client, so the next
 * call connects afresh and a restarted server is found again.
 *
 * libmemcached allocates with malloc and reports errors as return codes;
 * nothing here calls ereport between creating and freeing its handle.
 */
#include "postgres.h"

#include <libmemcached/memcached.h>

#include "miscadmin.h"
#include "portability/instr_time.h"

#include "opsflags.h"

/* The servers to use: the setting, else $MEMCACHED_URL, else NULL. */
const char *
opsflags_memcached_server_list(void)
{
	const char *env;

	if (opsflags_memcached_servers != NULL && opsflags_memcached_servers[0] != '\0')
		return opsflags_memcached_servers;
	env = getenv("MEMCACHED_URL");
	if (env != NULL && env[0] != '\0')
		return env;
	return NULL;
}

/*
 * Add "host:port[,host:port]" to a handle (a "memcached://" prefix on each
 * entry is accepted, as MEMCACHED_URL often carries one).  False on a
 * malformed list.
 */
static bool
add_servers(memcached_st *memc, const char *list, char *err, size_t errlen)
{
	char		buf[1024];
	char	   *save = NULL;
	char	   *item;

	if (strlen(list) >= sizeof(buf))
	{
		snprintf(err, errlen, "server list too long");
		return false;
	}
	strlcpy(buf, list, sizeof(buf));
	for (item = strtok_r(buf, ", ", &save); item != NULL; item = strtok_r(NULL, ", ", &save))
	{
		char	   *colon;
		long		port = 11211;

		if (strncmp(item, "memcached://", 12) == 0)
			item += 12;
		colon = strrchr(item, ':');
		if (colon != NULL)
		{
			char	   *end;

			*colon = '\0';
			port = strtol(colon + 1, &end, 10);
			if (*end != '\0' && *end != '/')
				port = -1;
		}
		if (item[0] == '\0' || port <= 0 || port > 65535)
		{
			snprintf(err, errlen, "malformed server \"%s\" (expected host:port)", item);
			return false;
		}
		if (memcached_server_add(memc, item, (in_port_t) port) != MEMCACHED_SUCCESS)
		{
			snprintf(err, errlen, "cannot add server \"%s\"", item);
			return false;
		}
	}
	return true;
}

static memcached_st *kept_client = NULL;
static char kept_servers[1024];
static int	kept_timeout_ms;

/* A new client for the servers with timeouts from timeout_ms; NULL on error. */
static memcached_st *
client_create(const char *servers, int timeout_ms, char *err, size_t errlen)
{
	memcached_st *memc = memcached_create(NULL);

	if (memc == NULL)
	{
		snprintf(err, errlen, "could not create a memcached client");
		return NULL;
	}
	/* Connect and each wait share the budget; no retries. */
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, Max(timeout_ms / 2, 1));
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, Max(timeout_ms / 2, 1));
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t) Max(timeout_ms / 2, 1) * 1000);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t) Max(timeout_ms / 2, 1) * 1000);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
	if (!add_servers(memc, servers, err, errlen))
	{
		memcached_free(memc);
		return NULL;
	}
	return memc;
}

/* The backend's client for these servers and timeout; NULL on error. */
static memcached_st *
client_get(const char *servers, int timeout_ms, char *err, size_t errlen)
{
	if (kept_client != NULL &&
		(kept_timeout_ms != timeout_ms || strcmp(kept_servers, servers) != 0))
	{
		memcached_free(kept_client);
		kept_client = NULL;
	}
	if (kept_client == NULL && strlen(servers) < sizeof(kept_servers))
	{
		kept_client = client_create(servers, timeout_ms, err, errlen);
		strlcpy(kept_servers, servers, sizeof(kept_servers));
		kept_timeout_ms = timeout_ms;
	}
	else if (kept_client == NULL)
		snprintf(err, errlen, "server list too long");
	return kept_client;
}

/* After a call: keep the client if it worked, else drop it (and its connections). */
static void
client_release(bool ok)
{
	if (!ok && kept_client != NULL)
	{
		memcached_free(kept_client);
		kept_client = NULL;
	}
}

/* Store value under key (no expiry).  False with err on failure; never raises. */
bool
opsflags_memcached_set(const char *servers, int timeout_ms, const char *key,
					   const char *value, size_t valuelen, char *err, size_t errlen)
{
	memcached_st *memc = client_get(servers, timeout_ms, err, errlen);
	memcached_return_t rc;

	if (memc == NULL)
		return false;
	rc = memcached_set(memc, key, strlen(key), value, valuelen, 0, 0);
	if (rc != MEMCACHED_SUCCESS)
		snprintf(err, errlen, "set failed: %s", memcached_strerror(memc, rc));
	client_release(rc == MEMCACHED_SUCCESS);
	return rc == MEMCACHED_SUCCESS;
}

/*
 * The value under key, palloc'd and NUL-terminated, or NULL (missing, or
 * an error in err).  Never raises, but for palloc.
 */
char *
opsflags_memcached_get(const char *servers, int timeout_ms, const char *key,
					   char *err, size_t errlen)
{
	memcached_st *memc = client_get(servers, timeout_ms, err, errlen);
	memcached_return_t rc;
	size_t		len = 0;
	uint32_t	flags = 0;
	char	   *got;
	char	   *result = NULL;

	if (memc == NULL)
		return NULL;
	got = memcached_get(memc, key, strlen(key), &len, &flags, &rc);
	if (got != NULL)
	{
		result = palloc(len + 1);
		memcpy(result, got, len);
		result[len] = '\0';
		free(got);
	}
	else if (rc != MEMCACHED_NOTFOUND)
		snprintf(err, errlen, "get failed: %s", memcached_strerror(memc, rc));
	client_release(got != NULL || rc == MEMCACHED_NOTFOUND);
	return result;
}

/*
 * One set/get round trip of a unique key.  Returns true when the value came
 * back intact; otherwise err says what went wrong.  *elapsed_ms is the time
 * spent.  Never raises.
 */
bool
opsflags_memcached_probe(const char *servers, int timeout_ms, double *elapsed_ms,
						 char *err, size_t errlen)
{
	memcached_st *memc;
	memcached_return_t rc;
	char		key[64];
	char		value[64];
	char	   *got = NULL;
	size_t		gotlen = 0;
	uint32_t	flags = 0;
	bool		ok = false;
	instr_time	start;
	instr_time	duration;

	INSTR_TIME_SET_CURRENT(start);
	err[0] = '\0';

	memc = client_get(servers, timeout_ms, err, errlen);
	if (memc == NULL)
		goto done;

	snprintf(key, sizeof(key), "opsflags:health:%d:%ld", MyProcPid, (long) random());
	snprintf(value, sizeof(value), "%ld", (long) random());

	rc = memcached_set(memc, key, strlen(key), value, strlen(value), 60, 0);
	if (rc != MEMCACHED_SUCCESS)
	{
		snprintf(err, errlen, "set failed: %s", memcached_strerror(memc, rc));
		goto done;
	}
	got = memcached_get(memc, key, strlen(key), &gotlen, &flags, &rc);
	if (got == NULL || rc != MEMCACHED_SUCCESS)
	{
		snprintf(err, errlen, "get failed: %s", memcached_strerror(memc, rc));
		goto done;
	}
	if (gotlen != strlen(value) || memcmp(got, value, gotlen) != 0)
	{
		snprintf(err, errlen, "get returned a different value");
		goto done;
	}
	memcached_delete(memc, key, strlen(key), 0);
	ok = true;

done:
	if (got != NULL)
		free(got);
	client_release(ok);
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	*elapsed_ms = INSTR_TIME_GET_MILLISEC(duration);
	return ok;
}
