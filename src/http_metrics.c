/*
 * http_metrics.c
 *	  The HTTP server's /metrics, in Prometheus' text format: the families
 *	  the database worker reads (health, connections, size, errors, the
 *	  sampler, flag evaluations, alerts, maintenance, replication), then the
 *	  loop's own count of the responses it sent.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "opsflags.h"
#include "http.h"

/* ---------- /metrics ---------- */

/*
 * /metrics: Prometheus text format.  The families, in order; the query
 * returns (family number, value, label, value, label, value) rows ordered
 * by family.  opsflags_up comes from here, opsflags_http_requests_total
 * (the last) from the loop.
 */
typedef struct MetricFamily
{
	const char *name;
	const char *type;
	const char *help;
} MetricFamily;

static const MetricFamily metric_families[] = {
	{"opsflags_up", "gauge", "1 if the database answered this scrape, else 0"},
	{"opsflags_health_status", "gauge", "Aggregate health_status(): 1 for the current status"},
	{"opsflags_component_status", "gauge", "Status of each health_status() component: 1 for the current status"},
	{"opsflags_component_latency_seconds", "gauge", "Time each health_status() probe took"},
	{"opsflags_connections", "gauge", "Client backends by state"},
	{"opsflags_max_connections", "gauge", "The server's max_connections"},
	{"opsflags_database_size_bytes", "gauge", "Size of the database opsflags.database"},
	{"opsflags_errors_last_hour", "gauge", "ERROR, FATAL and PANIC reports of the server in the last 60 minutes"},
	{"opsflags_sampler_running", "gauge", "1 while the opsflags sampler runs"},
	{"opsflags_sampler_last_sample_timestamp_seconds", "gauge", "When the sampler last took a sample (absent before the first)"},
	{"opsflags_flag_evaluations_total", "counter", "Flag evaluations since the server started, by result"},
	{"opsflags_alerts_open", "gauge", "Open alerts by severity"},
	{"opsflags_maintenance_mode", "gauge", "1 while maintenance mode is on"},
	{"opsflags_in_recovery", "gauge", "1 on a standby"},
	{"opsflags_replication_lag_seconds", "gauge", "On a standby: how far replay is behind what was received"},
	{"opsflags_http_requests_total", "counter", "Requests this HTTP server answered since it started, by status code"},
};

/* Rows by family, in order (src/http_metrics.sql) */
static OpsQuery metrics_query = {
	.sql = "SELECT * FROM opsflags_internal.http_metrics($1) ORDER BY 1, 4, 6",
	.nargs = 1,
	.argtypes = {JSONBOID},
};

/* A label value with \, " and newline escaped */
static void
append_label_value(StringInfo buf, const char *v)
{
	for (; *v; v++)
	{
		if (*v == '\\' || *v == '"')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, *v);
		}
		else if (*v == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *v);
	}
}

/* A float8's text as Prometheus writes it */
static const char *
prometheus_value(const char *v)
{
	if (strcmp(v, "Infinity") == 0)
		return "+Inf";
	if (strcmp(v, "-Infinity") == 0)
		return "-Inf";
	return v;
}

static void
append_family(StringInfo buf, int family)
{
	const MetricFamily *f = &metric_families[family];

	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

/*
 * The families from the database's answer (up: the rows of r), all but the
 * loop's own last one, which it appends.
 */
static void
metrics_body(StringInfo buf, bool up, HttpResult *r)
{
	int			family;
	int			row = 0;

	append_family(buf, 0);
	appendStringInfo(buf, "opsflags_up %d\n", up ? 1 : 0);
	for (family = 1; family < (int) lengthof(metric_families) - 1; family++)
	{
		append_family(buf, family);
		for (; up && row < r->nrows && atoi(http_result_value(r, row, 0)) == family; row++)
		{
			const char *value = http_result_value(r, row, 1);
			int			l;

			if (value == NULL)
				continue;
			appendStringInfoString(buf, metric_families[family].name);
			for (l = 0; l < 2 && http_result_value(r, row, 2 + 2 * l) != NULL; l++)
			{
				const char *label = http_result_value(r, row, 2 + 2 * l);
				const char *lvalue = http_result_value(r, row, 3 + 2 * l);

				appendStringInfo(buf, "%c%s=\"", l == 0 ? '{' : ',', label);
				append_label_value(buf, lvalue ? lvalue : "");
				appendStringInfoChar(buf, '"');
			}
			if (l > 0)
				appendStringInfoChar(buf, '}');
			appendStringInfo(buf, " %s\n", prometheus_value(value));
		}
	}
}

/*
 * In the loop: the last family, the loop's own count of responses by status
 * code, this one included.
 */
static void
requests_family(StringInfo buf, int code)
{
	int			codes[HTTP_COUNTED_CODES];
	uint64		counts[HTTP_COUNTED_CODES];
	int			n = http_response_counts(codes, counts);
	uint64		open,
				dropped;
	int			i;

	append_family(buf, lengthof(metric_families) - 1);
	for (i = 0; i < n; i++)
		appendStringInfo(buf, "opsflags_http_requests_total{code=\"%d\"} " UINT64_FORMAT "\n",
						 codes[i], counts[i] + (codes[i] == code ? 1 : 0));
	http_stream_counts(&open, &dropped);
	appendStringInfo(buf,
					 "# HELP opsflags_http_streams Event streams open.\n"
					 "# TYPE opsflags_http_streams gauge\n"
					 "opsflags_http_streams " UINT64_FORMAT "\n"
					 "# HELP opsflags_http_streams_dropped_total Event streams closed because their client did not take what was sent.\n"
					 "# TYPE opsflags_http_streams_dropped_total counter\n"
					 "opsflags_http_streams_dropped_total " UINT64_FORMAT "\n",
					 open, dropped);
}

/* /metrics stays 200 when the database does not answer, with opsflags_up 0. */
static void
answer_metrics(HttpAnswer *a, const char *arg)
{
	HttpResult	r;
	bool		up;

	up = http_health_document(&r);
	if (up)
	{
		Datum		doc = DirectFunctionCall1(jsonb_in, CStringGetDatum(http_result_value(&r, 0, 0)));

		up = http_sql(&metrics_query, &doc, NULL, InvalidOid, &r);
	}
	a->code = 200;
	metrics_body(&a->body, up, &r);
}

/* The database did not answer: still 200, with opsflags_up 0. */
static void
metrics_unavailable(HttpAnswer *a, const char *error)
{
	a->code = 200;
	metrics_body(&a->body, false, NULL);
}

static const HttpRoute metrics_route = {
	.path = "/metrics",
	.handler = http_ask_database,
	.answer = answer_metrics,
	.unavailable = metrics_unavailable,
	.content_type = "text/plain; version=0.0.4; charset=utf-8",
	.finish = requests_family,
};

void
http_metrics_routes(void)
{
	http_route(&metrics_route);
}

