/*
 * publish.c
 *	  Publishing flags to memcached (opt-in, opsflags.publish_to_memcached):
 *	  after each committed change to the flag tables, every environment's
 *	  LaunchDarkly-format document (flags_for_environment) is written to
 *	  memcached under opsflags:flags:<environment>, so application servers
 *	  can read flags without a database round trip.
 *
 * A trigger notes that the transaction changed flags.  Just before commit
 * the documents are built (a query, in a subtransaction so that a failure
 * only costs a WARNING); once the transaction has committed they are sent.
 * A memcached outage never fails the transaction: it is logged, and the
 * next change publishes everything again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_flags_changed);
PG_FUNCTION_INFO_V1(opsflags_published_flags);

bool		opsflags_publish_to_memcached = false;

static bool flags_changed = false;
static List *pending = NIL;		/* (key, document) pairs, in TopMemoryContext */
static bool callback_registered = false;

typedef struct FlagDocument
{
	char	   *key;
	char	   *document;
} FlagDocument;

static OpsQuery documents_query = {
	.sql =
	"SELECT 'opsflags:flags:' OPERATOR(pg_catalog.||) e.name, "
	"       opsflags.flags_for_environment(e.name)::pg_catalog.text "
	"FROM opsflags.environments e ORDER BY e.name",
	.nargs = 0,
	.writes = true,				/* flags_for_environment sets a GUC */
};

static void
build_documents(void *arg)
{
	OpsSpiState spi;
	int			n;
	int			i;

	opsflags_spi_begin(&spi, InvalidOid);
	n = opsflags_spi_run(&documents_query, NULL, NULL, InvalidSnapshot, 0);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		FlagDocument *p = palloc(sizeof(FlagDocument));

		p->key = pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		p->document = pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		pending = lappend(pending, p);
		MemoryContextSwitchTo(old);
	}
	opsflags_spi_end(&spi);
}

static void
discard_pending(void)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		FlagDocument *p = lfirst(lc);

		pfree(p->key);
		pfree(p->document);
		pfree(p);
	}
	list_free(pending);
	pending = NIL;
}

static void
publish_xact_callback(XactEvent event, void *arg)
{
	const char *servers;
	ListCell   *lc;
	char		err[256];

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (flags_changed && opsflags_publish_to_memcached &&
				opsflags_memcached_server_list() != NULL)
			{
				ErrorData  *edata;

				PushActiveSnapshot(GetTransactionSnapshot());
				if (!opsflags_try(build_documents, NULL, false, &edata))
				{
					ereport(WARNING,
							(errmsg("could not build the flag documents to publish to memcached"),
							 errdetail_internal("%s", edata->message)));
					FreeErrorData(edata);
					discard_pending();
				}
				PopActiveSnapshot();
			}
			flags_changed = false;
			break;

		case XACT_EVENT_COMMIT:
			servers = opsflags_memcached_server_list();
			foreach(lc, pending)
			{
				FlagDocument *p = lfirst(lc);

				if (servers != NULL &&
					!opsflags_memcached_set(servers, opsflags_health_timeout_ms, p->key,
											p->document, strlen(p->document), err, sizeof(err)))
					ereport(WARNING,
							(errmsg("could not publish flags to memcached key \"%s\"", p->key),
							 errdetail_internal("%s", err),
							 errhint("The next change to the flags publishes them again.")));
			}
			discard_pending();
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			flags_changed = false;
			discard_pending();
			break;

		default:
			break;
	}
}

/* Trigger on the flag tables (statement-level): flags changed here. */
Datum
opsflags_flags_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("flags_changed() must be called as a trigger")));

	if (opsflags_publish_to_memcached)
	{
		if (!callback_registered)
		{
			RegisterXactCallback(publish_xact_callback, NULL);
			callback_registered = true;
		}
		flags_changed = true;
	}
	return PointerGetDatum(NULL);
}

/*
 * published_flags(environment text) -> jsonb: the document published for
 * an environment, read back from memcached (NULL when there is none).
 */
Datum
opsflags_published_flags(PG_FUNCTION_ARGS)
{
	const char *servers = opsflags_memcached_server_list();
	char	   *key;
	char	   *doc;
	char		err[256];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (servers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no memcached servers configured"),
				 errhint("Set opsflags.memcached_servers.")));
	key = psprintf("opsflags:flags:%s", text_to_cstring(PG_GETARG_TEXT_PP(0)));
	err[0] = '\0';
	doc = opsflags_memcached_get(servers, opsflags_health_timeout_ms, key, err, sizeof(err));
	if (doc == NULL)
	{
		if (err[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read memcached key \"%s\"", key),
					 errdetail_internal("%s", err)));
		PG_RETURN_NULL();
	}
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(doc)));
}

void
opsflags_publish_init(void)
{
	DefineCustomBoolVariable("opsflags.publish_to_memcached",
							 "Write each environment's flags to memcached after every committed change.",
							 "Keys opsflags:flags:<environment>, LaunchDarkly client format.",
							 &opsflags_publish_to_memcached,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}
