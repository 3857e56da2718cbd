-- Shared by the benchmark scripts (\ir common.sql): settings, and timing
-- helpers in schema bench.  Each variant runs reps times, interleaved with
-- the others after one warm-up run each, and the median counts.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
-- Measure the functions, not JIT compilation or tuplestore spills.
SET jit = off;
SET work_mem = '512MB';
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;

-- Time one query (ms).
CREATE FUNCTION bench.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; BEGIN
    t0 := clock_timestamp(); EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

CREATE TABLE bench.results (variant text, run int, ms float8);
CREATE FUNCTION bench.measure(variants text[], queries text[], reps int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. array_length(queries, 1) LOOP PERFORM bench.time_ms(queries[i]); END LOOP;  -- warm up
    FOR r IN 1 .. reps LOOP
        FOR i IN 1 .. array_length(queries, 1) LOOP
            INSERT INTO bench.results VALUES (variants[i], r, bench.time_ms(queries[i]));
        END LOOP;
    END LOOP;
END $$;
CREATE VIEW bench.median AS
SELECT variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM bench.results GROUP BY variant;
