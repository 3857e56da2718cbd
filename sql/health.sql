-- Health: health_status(), check_system_health(), startup checks, error counter.
\set SHOW_CONTEXT never

-- The document's shape (values vary from run to run).
SELECT jsonb_object_keys(opsflags.health_status()) AS key ORDER BY 1;
SELECT c.key AS component, jsonb_typeof(c.value -> 'status') AS status,
       jsonb_typeof(c.value -> 'latencyMs') AS "latencyMs", jsonb_typeof(c.value -> 'message') AS message
FROM jsonb_each(opsflags.health_status() -> 'components') c ORDER BY 1;
SELECT jsonb_object_keys(opsflags.health_status() -> 'checks') AS check ORDER BY 1;
SELECT opsflags.health_status() ->> 'version' AS version;

-- Aggregation: any unhealthy -> unhealthy, else any degraded -> degraded.
SELECT opsflags.health_aggregate(ARRAY['healthy', 'healthy', 'healthy', 'healthy']) AS all_healthy,
       opsflags.health_aggregate(ARRAY['healthy', 'degraded', 'healthy', 'healthy']) AS one_degraded,
       opsflags.health_aggregate(ARRAY['degraded', 'unhealthy', 'healthy', 'degraded']) AS one_unhealthy;
SELECT opsflags.health_aggregate(ARRAY['fine']);

-- A queue query set by an admin: one row of (pending, failed).
SELECT opsflags.config_set('health.queue_query', '"SELECT 3, 0"');
SELECT opsflags.health_status() -> 'components' -> 'queue' ->> 'message' AS queue;
SELECT opsflags.config_set('health.queue_query', '"SELECT 3, 2"');
SELECT opsflags.health_status() -> 'components' -> 'queue' ->> 'status' AS queue_with_failures;
-- A broken or slow one is reported, never raised.
SELECT opsflags.config_set('health.queue_query', '"SELECT * FROM no_such_jobs"');
SELECT (opsflags.health_status() -> 'components' -> 'queue') - 'latencyMs'::text AS broken_queue;
SET opsflags.health_timeout_ms = 200;
SELECT opsflags.config_set('health.queue_query', '"SELECT (SELECT 1 FROM pg_sleep(30)), 0"');
SELECT (opsflags.health_status() -> 'components' -> 'queue') - 'latencyMs'::text AS slow_queue;
RESET opsflags.health_timeout_ms;
SELECT opsflags.config_delete('health.queue_query');

-- Deployed version and commit appear in the document.
SELECT opsflags.record_deployment('2.1.0', 'production', commit_sha => 'abc1234') IS NOT NULL AS deployed;
SELECT h -> 'version' AS version, h -> 'commit_sha' AS commit_sha FROM opsflags.health_status() h;

-- check_system_health(): a summary, recorded as a row.
SELECT jsonb_object_keys(opsflags.check_system_health()) AS key ORDER BY 1;
SELECT count(*) AS rows, bool_and(recorded_at > now() - interval '1 second') AS recent,
       bool_and(status IN ('healthy', 'warning', 'degraded')) AS status_ok
FROM opsflags.system_health WHERE source = 'check_system_health';

-- errors_last_hour() counts ERROR and worse, server-wide.
SELECT opsflags.errors_last_hour() AS before \gset
SELECT 1 / 0;
SELECT no_such_column FROM opsflags.environments;
SELECT opsflags.errors_last_hour() - :before AS new_errors;

-- Startup checks list every failure at once.
SET opsflags.required_settings = 'application_name, opsflags.no_such_setting';
SET opsflags.required_tables = 'opsflags.environments, public.orders, missing_table';
SELECT jsonb_pretty(opsflags.run_startup_checks());
RESET opsflags.required_settings;
RESET opsflags.required_tables;
SELECT opsflags.run_startup_checks();
