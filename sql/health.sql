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
SELECT (opsflags.health_status() -> 'components' -> 'queue') - '{latency_ms,latencyMs}'::text[] AS broken_queue;
SET opsflags.health_timeout = '200ms';
SELECT opsflags.config_set('health.queue_query', '"SELECT (SELECT 1 FROM pg_sleep(30)), 0"');
SELECT (opsflags.health_status() -> 'components' -> 'queue') - '{latency_ms,latencyMs}'::text[] AS slow_queue;
RESET opsflags.health_timeout;
-- The setting's former name, in milliseconds, still works and wins where set.
SET opsflags.health_timeout = '10s';
SET opsflags.health_timeout_ms = 300;
SELECT (opsflags.health_status() -> 'components' -> 'queue') ->> 'message' AS slow_queue_former_setting;
RESET opsflags.health_timeout_ms;
RESET opsflags.health_timeout;
-- Each component's latency under one name in both spellings.
SELECT bool_and(c.value -> 'latency_ms' = c.value -> 'latencyMs') AS latency_both_names
FROM jsonb_each(opsflags.health_status() -> 'components') c;
SELECT opsflags.config_delete('health.queue_query');

-- Deployed version and commit appear in the document.
SELECT opsflags.record_deployment('2.1.0', 'production', commit_sha => 'abc1234') IS NOT NULL AS deployed;
SELECT h -> 'version' AS version, h -> 'commit_sha' AS commit_sha FROM opsflags.health_status() h;

-- check_system_health(): a summary, recorded as a row.
SELECT jsonb_object_keys(opsflags.check_system_health()) AS key ORDER BY 1;
SELECT count(*) AS rows, bool_and(recorded_at > now() - interval '1 second') AS recent,
       bool_and(status IN ('healthy', 'warning', 'degraded')) AS status_ok
FROM opsflags.system_health WHERE source = 'check_system_health';

-- system_health has the columns of its specification, filled by every
-- writer (check_system_health() above, take_sample() here).
SELECT c.name AS missing_column
FROM unnest(ARRAY['timestamp', 'db_connections_active', 'db_connections_idle', 'db_size_mb', 'largest_tables',
                  'avg_query_time_ms', 'slow_queries_count', 'cache_hit_rate', 'pending_jobs', 'failed_jobs',
                  'errors_last_hour', 'metrics']) c(name)
WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = 'opsflags.system_health'::regclass AND a.attname = c.name AND NOT a.attisdropped);
-- (Thresholds no sample crosses: the errors of the tests before this one
-- would otherwise raise an alert that the alerts test would then list.)
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}') AS x \gset
SELECT opsflags.take_sample('test') AS sample_id \gset
SELECT opsflags.config_delete('alerts.thresholds', 'all') AS x \gset
SELECT h.source, h."timestamp" = h.recorded_at AS "timestamp",
       h.db_connections_active = h.active_connections AND h.db_connections_active >= 0 AS db_connections_active,
       h.db_connections_idle = h.idle_connections AS db_connections_idle,
       h.db_size_mb = round(h.database_size_bytes / 1048576.0, 2) AND h.db_size_mb > 0 AS db_size_mb,
       jsonb_typeof(h.largest_tables) AS largest_tables, h.slow_queries_count IS NOT DISTINCT FROM h.slow_query_count AS slow_queries_count,
       h.cache_hit_rate BETWEEN 0 AND 1 AS cache_hit_rate, jsonb_typeof(h.metrics) AS metrics
FROM opsflags.system_health h WHERE h.id = :sample_id OR h.source = 'check_system_health' ORDER BY h.id;

-- health_samples(): what the status page charts.  A few samples come back
-- one by one (the first minutes already draw a line); many come back in
-- time buckets, at most max_points.
BEGIN ISOLATION LEVEL REPEATABLE READ;
DELETE FROM opsflags.system_health;
INSERT INTO opsflags.system_health (recorded_at, status, source, total_connections, cache_hit_rate)
SELECT now() - i * interval '20 seconds', 'healthy', 'test', 10 + i, 0.9 FROM generate_series(0, 2) i;
SELECT s ->> 'connections' AS connections, s ->> 'cache_hit_rate' AS cache_hit_rate,
       extract(epoch FROM now() - (s ->> 't')::timestamptz) AS seconds_ago
FROM jsonb_array_elements(opsflags.health_samples()) s;
INSERT INTO opsflags.system_health (recorded_at, status, source, total_connections, cache_hit_rate)
SELECT now() - i * interval '1 minute', 'healthy', 'test', i, 0.95 FROM generate_series(3, 1439) i;
SELECT jsonb_array_length(opsflags.health_samples()) <= 288 AS bucketed,
       jsonb_array_length(opsflags.health_samples()) >= 280 AS spread,
       jsonb_array_length(opsflags.health_samples(interval '10 minutes')) AS last_10_minutes,
       jsonb_array_length(opsflags.health_samples(interval '24 hours', 2000)) AS all_of_them;
ROLLBACK;
SELECT opsflags.health_samples(interval '0');
SELECT opsflags.health_samples(interval '1 hour', 1);

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
