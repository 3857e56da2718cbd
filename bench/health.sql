-- Health benchmark (issue: deployments and health).  Run by bench/run.sh
-- with memcached up; medians of 50 calls.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench_health CASCADE;
CREATE SCHEMA bench_health;

CREATE FUNCTION bench_health.median_ms(q text, n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; times float8[] := '{}';
BEGIN
    EXECUTE q;   -- warm up
    FOR i IN 1 .. n LOOP
        t0 := clock_timestamp(); EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t);
END $$;

\echo '== 7. health_status() with memcached up; check_system_health() and one sampler cycle (take_sample) on a database with 1,000 tables (median of 50 calls, ms)'
SELECT opsflags.health_status() -> 'components' -> 'cache' ->> 'status' AS cache_status;
DO $$
BEGIN
    FOR i IN 1 .. 1000 LOOP
        EXECUTE format('CREATE TABLE bench_health.t%s (id int PRIMARY KEY, v text)', i);
    END LOOP;
END $$;
SELECT count(*) AS tables_in_database FROM pg_class WHERE relkind = 'r';
SELECT round(bench_health.median_ms('SELECT opsflags.health_status()', 50)::numeric, 2) AS "health_status ms (target <= 10)",
       round(bench_health.median_ms('SELECT opsflags.check_system_health()', 50)::numeric, 2) AS "check_system_health ms (target <= 50)",
       round(bench_health.median_ms($$SELECT opsflags.take_sample('bench')$$, 50)::numeric, 2) AS "one sample ms (target <= 100)";
DROP SCHEMA bench_health CASCADE;
DELETE FROM opsflags.system_health WHERE source IN ('check_system_health', 'bench');
