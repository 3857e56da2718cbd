-- Samples and alerts, as the sampler takes them each interval.
\set SHOW_CONTEXT never
-- Thresholds that this test alone crosses (the defaults depend on the server's state).
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
SELECT opsflags.take_sample('regress') > 0 AS sampled;
SELECT status IN ('healthy', 'warning', 'degraded') AS status_ok, total_connections > 0 AS connections,
       database_size_bytes > 0 AS size, jsonb_typeof(largest_tables) AS largest_tables,
       metrics ->> 'queue' AS queue, metrics ? 'checkpoint_pressure' AS checkpoint_pressure
FROM opsflags.system_health WHERE source = 'regress';

-- A threshold crossed raises one alert per episode; back below, it is resolved.
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 0, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
SELECT opsflags.take_sample('regress') > 0 AS sampled, opsflags.take_sample('regress') > 0 AS sampled_again;
SELECT type, severity, title, component, resolved FROM opsflags.alerts ORDER BY id;
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
SELECT opsflags.take_sample('regress') > 0 AS sampled;
SELECT type, resolved, resolved_by FROM opsflags.alerts ORDER BY id;

-- People resolve alerts too.
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 0, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
SELECT opsflags.take_sample('regress') > 0 AS sampled;
SELECT id AS open_id FROM opsflags.alerts WHERE NOT resolved \gset
SELECT opsflags.resolve_alert(:open_id, 'oncall');
SELECT type, resolved, resolved_by FROM opsflags.alerts WHERE id = :open_id;
\set VERBOSITY terse
SELECT opsflags.resolve_alert(:open_id, 'oncall');
SELECT opsflags.resolve_alert(-1);
\set VERBOSITY default

-- Members of opsflags_admin take samples (which raise and resolve alerts)
-- and resolve alerts.
CREATE ROLE regress_opsflags_alert_admin IN ROLE opsflags_admin;
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 2}');
SET ROLE regress_opsflags_alert_admin;
SELECT opsflags.take_sample('regress') > 0 AS sampled_by_admin;
SELECT type, resolved FROM opsflags.alerts WHERE NOT resolved;
RESET ROLE;
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
SET ROLE regress_opsflags_alert_admin;
SELECT opsflags.take_sample('regress') > 0 AS sampled_by_admin;
SELECT type, resolved, resolved_by FROM opsflags.alerts WHERE type = 'cache_hit_rate';
RESET ROLE;
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 2}');
SELECT opsflags.take_sample('regress') > 0 AS sampled;
SELECT id AS open_id FROM opsflags.alerts WHERE NOT resolved \gset
SET ROLE regress_opsflags_alert_admin;
SELECT opsflags.resolve_alert(:open_id, 'admin on call');
RESET ROLE;
SELECT type, resolved, resolved_by FROM opsflags.alerts WHERE id = :open_id;
-- Still no direct writes to the tables for them.
SET ROLE regress_opsflags_alert_admin;
\set VERBOSITY terse
UPDATE opsflags.alerts SET resolved_by = 'forged';
\set VERBOSITY default
RESET ROLE;
DROP ROLE regress_opsflags_alert_admin;

-- Retention deletes old samples in batches.
INSERT INTO opsflags.system_health (recorded_at, status, source)
SELECT now() - interval '30 days', 'healthy', 'regress-old' FROM generate_series(1, 5);
SELECT opsflags.apply_retention(interval '7 days', 3) AS first_batch,
       opsflags.apply_retention(interval '7 days', 3) AS second_batch,
       opsflags.apply_retention(interval '7 days', 3) AS third_batch;

-- Without a running sampler (sampling is off in the test cluster): its status.
SELECT opsflags.worker_status() ? 'running' AS has_running, opsflags.worker_status() ? 'last_error' AS has_last_error;

SELECT opsflags.config_delete('alerts.thresholds');
DELETE FROM opsflags.alerts;
DELETE FROM opsflags.system_health WHERE source = 'regress';
