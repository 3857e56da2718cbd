-- test/pgtap/worker.sql: the background worker "opsflags sampler":
-- rows with every field at a 1 s interval, reload of the
-- interval (and 0 pauses), restart after it is terminated, retention,
-- alerts raised once per episode and resolved, a failing queue query, and
-- tables other sessions hold locked (no sample waits on them for long).
--
-- scripts/test.sh starts the cluster with opsflags.database = 'opsflags_tap'
-- and opsflags.sample_interval = 0; this file switches sampling on with
-- ALTER SYSTEM + reload and off again at the end.  Every wait is a bounded
-- poll of a condition.
\ir setup.inc

SELECT plan(23);

-- Wait (at most 30 s) until a query returns true.
CREATE FUNCTION pg_temp.wait_for(condition text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds'; ok boolean;
BEGIN
    LOOP
        EXECUTE condition INTO ok;
        IF ok THEN RETURN true; END IF;
        IF clock_timestamp() > deadline THEN RETURN false; END IF;
        PERFORM pg_sleep(0.05);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END $$;

CREATE FUNCTION pg_temp.samples() RETURNS bigint LANGUAGE sql AS $$
  SELECT (opsflags.worker_status() ->> 'samples')::bigint $$;

DELETE FROM opsflags.alerts;
SELECT opsflags.config_delete('alerts.thresholds') \gset
SELECT opsflags.config_delete('health.queue_query') \gset

-- The worker runs (connected to this database) and shows in pg_stat_activity.
SELECT ok(pg_temp.wait_for($$SELECT (opsflags.worker_status() ->> 'running')::boolean
                             AND EXISTS (SELECT 1 FROM pg_stat_activity
                                         WHERE backend_type = 'opsflags sampler' AND datname = current_database())$$),
          'the sampler runs, connected to opsflags.database, and shows in pg_stat_activity');

-- 1 s interval: rows appear with every field.
ALTER SYSTEM SET opsflags.sample_interval = '1s';
SELECT pg_reload_conf() \gset
SELECT pg_temp.samples() AS samples_0 \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 2', :samples_0)),
          'at a 1 s interval, samples are taken');
SELECT is((SELECT count(*)::int FROM (SELECT * FROM opsflags.system_health WHERE source = 'sampler'
                                      ORDER BY id DESC LIMIT 1) h
           WHERE h.active_connections IS NOT NULL AND h.idle_connections IS NOT NULL
             AND h.total_connections IS NOT NULL AND h.database_size_bytes > 0
             AND jsonb_typeof(h.largest_tables) = 'array' AND jsonb_array_length(h.largest_tables) BETWEEN 1 AND 10
             AND h.cache_hit_rate BETWEEN 0 AND 1 AND h.errors_last_hour IS NOT NULL
             AND h.status IN ('healthy', 'warning', 'degraded')), 1,
          'the latest sample has connections, size, largest tables, cache hit rate, errors and a status');
SELECT ok((SELECT h.metrics ?& ARRAY['deadlocks', 'temp_bytes', 'xact_commit', 'replication_lag_s',
                                     'checkpoint_pressure', 'transaction_id_age', 'oldest_transaction_age_s',
                                     'commits_per_s', 'rollbacks_per_s']
           FROM opsflags.system_health h WHERE source = 'sampler' ORDER BY id DESC LIMIT 1),
          'metrics hold rates since the last sample, deadlocks, temp bytes, transaction ages, lag and checkpoint pressure');
SELECT ok((SELECT h.avg_query_time_ms IS NULL AND h.metrics ->> 'pg_stat_statements' LIKE 'not installed%'
                  AND h.pending_jobs IS NULL AND h.metrics ->> 'queue' = 'not configured'
           FROM opsflags.system_health h WHERE source = 'sampler' ORDER BY id DESC LIMIT 1),
          'without pg_stat_statements and a queue query, those fields are null and metrics say why');

-- Reload: a shorter interval takes effect at once; 0 pauses.
ALTER SYSTEM SET opsflags.sample_interval = '200ms';
SELECT pg_reload_conf() \gset
SELECT pg_temp.samples() AS samples_1, clock_timestamp() AS t1 \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 5', :samples_1)),
          'a 200 ms interval set by reload takes effect');
SELECT ok(extract(epoch FROM clock_timestamp() - :'t1'::timestamptz) < 5,
          'five samples at 200 ms took less than 5 s');
ALTER SYSTEM SET opsflags.sample_interval = 0;
SELECT pg_reload_conf() \gset
SELECT ok(pg_temp.wait_for($$SELECT opsflags.worker_status() ->> 'state' LIKE 'paused%'$$),
          'interval 0 pauses the sampler');
SELECT pg_temp.samples() AS samples_2 \gset
SELECT pg_sleep(1);
SELECT is(pg_temp.samples(), :samples_2::bigint, 'paused: no sample in a second');

-- Terminated, it comes back and samples again.
ALTER SYSTEM SET opsflags.sample_interval = '200ms';
SELECT pg_reload_conf() \gset
SELECT (opsflags.worker_status() ->> 'pid')::int AS old_pid \gset
SELECT pg_terminate_backend(:old_pid) \gset
SELECT ok(pg_temp.wait_for(format($$SELECT (opsflags.worker_status() ->> 'running')::boolean
                                     AND (opsflags.worker_status() ->> 'pid')::int <> %s
                                     AND pg_temp.samples() > 0$$, :old_pid)),
          'terminated, the sampler is started again and samples');

-- Retention: rows older than opsflags.health_retention disappear.
INSERT INTO opsflags.system_health (recorded_at, status, source)
SELECT now() - interval '30 days', 'healthy', 'backdated' FROM generate_series(1, 2500);
SELECT ok(pg_temp.wait_for($$SELECT NOT EXISTS (SELECT 1 FROM opsflags.system_health WHERE source = 'backdated')$$),
          'backdated rows past retention are deleted (in batches)');

-- Alerts: crossing a threshold raises exactly one alert; coming back resolves it.
LISTEN opsflags;
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 0}') \gset
SELECT ok(pg_temp.wait_for($$SELECT EXISTS (SELECT 1 FROM opsflags.alerts WHERE type = 'connections' AND NOT resolved)$$),
          'a crossed threshold raises an alert');
SELECT pg_temp.samples() AS samples_3 \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 3', :samples_3)), 'three more samples');
SELECT is((SELECT count(*)::int FROM opsflags.alerts WHERE type = 'connections'), 1,
          'one alert per episode, however many samples cross');
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 100}') \gset
SELECT ok(pg_temp.wait_for($$SELECT EXISTS (SELECT 1 FROM opsflags.alerts WHERE type = 'connections'
                                           AND resolved AND resolved_by = 'opsflags sampler')$$),
          'back below the threshold, the alert is resolved by the sampler');

-- A failing queue query: the other fields are still recorded.
SELECT opsflags.config_set('health.queue_query', '"SELECT * FROM no_such_job_table"') \gset
SELECT pg_temp.samples() AS samples_4 \gset
SELECT ok(pg_temp.wait_for(format($$SELECT EXISTS (SELECT 1 FROM opsflags.system_health
                                   WHERE source = 'sampler' AND metrics ->> 'queue' LIKE 'failed:%%'
                                     AND total_connections IS NOT NULL AND database_size_bytes > 0)$$)),
          'a failing queue query: the sample is recorded with the failure in metrics');

SELECT pg_temp.samples() AS samples_5 \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 3', :samples_5)), 'three more failing cycles');
\getenv logpath OPSFLAGS_TEST_LOG
SELECT pg_temp.samples() AS samples_6 \gset
-- (read as bytes: other test files put invalid UTF-8 into the log)
SELECT cmp_ok((SELECT count(*)::int FROM regexp_split_to_table(encode(pg_read_binary_file(:'logpath'), 'escape'), E'\n') l
               WHERE l LIKE '%opsflags sampler: queue query failed%'),
              '<=', :samples_6 - :samples_4 + 1,
              'a failing queue query is logged at most once per cycle');

-- Locks.  A table another session holds exclusively is left out of
-- largest_tables rather than waited for; a lock on what the sampler writes
-- costs it a cycle (its step waits a quarter of the 1 s bound), not its
-- life, and it samples again once the lock is gone.
SELECT opsflags.config_delete('health.queue_query') \gset
CREATE TABLE public.tap_worker_locked AS SELECT i, repeat('x', 100) AS pad FROM generate_series(1, 200000) i;
SELECT ok(pg_temp.wait_for($$SELECT EXISTS (SELECT FROM opsflags.system_health h, jsonb_array_elements(h.largest_tables) t
                                            WHERE h.id = (SELECT max(id) FROM opsflags.system_health WHERE source = 'sampler')
                                              AND t ->> 'table' = 'public.tap_worker_locked')$$),
          'a 30 MB table is among the largest tables of a sample');
SELECT dblink_connect('locker', pg_temp.tap_conninfo(app => 'tap_worker_locker')) \gset
SELECT dblink_exec('locker', 'BEGIN') \gset
SELECT dblink_exec('locker', 'LOCK TABLE public.tap_worker_locked IN ACCESS EXCLUSIVE MODE') \gset
SELECT pg_temp.samples() AS samples_7 \gset
SELECT max(id) AS before_lock FROM opsflags.system_health \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 2', :samples_7)),
          'while another session holds it locked, samples go on');
SELECT is((SELECT count(*)::int FROM opsflags.system_health h, jsonb_array_elements(h.largest_tables) t
           WHERE h.id > :before_lock AND h.source = 'sampler' AND t ->> 'table' = 'public.tap_worker_locked'), 0,
          '... and leave the locked table out');
SELECT dblink_exec('locker', 'LOCK TABLE opsflags.system_health IN ACCESS EXCLUSIVE MODE') \gset
SELECT ok(pg_temp.wait_for($$SELECT opsflags.worker_status() ->> 'last_error' = 'canceling statement due to lock timeout'$$),
          'a lock on system_health: the sampler gives up the cycle after its lock timeout');
SELECT dblink_exec('locker', 'ROLLBACK') \gset
SELECT dblink_disconnect('locker') \gset
SELECT pg_temp.samples() AS samples_8 \gset
SELECT ok(pg_temp.wait_for(format('SELECT pg_temp.samples() >= %s + 2', :samples_8)),
          'once the lock is gone, it samples again');
DROP TABLE public.tap_worker_locked;

-- Back to the harness's state.
SELECT opsflags.config_delete('health.queue_query') \gset
SELECT opsflags.config_delete('alerts.thresholds') \gset
ALTER SYSTEM RESET opsflags.sample_interval;
SELECT pg_reload_conf() \gset
DELETE FROM opsflags.alerts;

SELECT * FROM finish();
