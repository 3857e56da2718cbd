-- test/pgtap/health_memcached.sql: the cache component of health_status(), a
-- set/get round trip through libmemcached to opsflags.memcached_servers.
--
-- The harness (scripts/test.sh) provides three addresses in the environment:
--   OPSFLAGS_TEST_MEMCACHED  a real memcached (also the cluster's setting)
--   OPSFLAGS_TEST_DOWN       a port nothing listens on
--   OPSFLAGS_TEST_HANG       a listener that accepts and never answers
--                            (scripts/hang_listener.pl)
-- opsflags.memcached_servers is a reload setting: each case sets it with
-- ALTER SYSTEM, reloads, and runs a bounded series of top-level statements
-- (a backend applies a reload between statements) until this session sees
-- the new value.  The file resets the setting at the start (leftovers of an
-- interrupted run) and at the end.
\ir setup.inc

\getenv mc OPSFLAGS_TEST_MEMCACHED
\getenv down OPSFLAGS_TEST_DOWN
\getenv hang OPSFLAGS_TEST_HANG
\if :{?mc}
\else
\set mc ''
\endif
\if :{?down}
\else
\set down ''
\endif
\if :{?hang}
\else
\set hang ''
\endif

-- 200 statements for \gexec that each wait 50 ms while this session's
-- opsflags.memcached_servers is not yet `target` (at most 10 s in all).
CREATE FUNCTION pg_temp.wait_for(target text) RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT format('DO $w$BEGIN IF current_setting(%L) IS DISTINCT FROM %L THEN PERFORM pg_sleep(0.05); END IF; END$w$',
                'opsflags.memcached_servers', target)
  FROM generate_series(1, 200)
$$;

ALTER SYSTEM RESET opsflags.memcached_servers;
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'mc') \gexec

SELECT plan(41);

SELECT isnt(:'mc'::text, '', 'OPSFLAGS_TEST_MEMCACHED is set');
SELECT isnt(:'down'::text, '', 'OPSFLAGS_TEST_DOWN is set');
SELECT isnt(:'hang'::text, '', 'OPSFLAGS_TEST_HANG is set');

-- health_status() with the time it took and the error it raised, if any.
CREATE TEMP TABLE runs (label text PRIMARY KEY, doc jsonb, raised text, ms double precision NOT NULL);

CREATE FUNCTION pg_temp.run(label text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t0  timestamptz := clock_timestamp();
    d   jsonb;
    err text;
BEGIN
    BEGIN
        d := opsflags.health_status();
    EXCEPTION WHEN others THEN
        err := SQLSTATE || ': ' || SQLERRM;
    END;
    INSERT INTO runs VALUES (label, d, err, extract(epoch FROM clock_timestamp() - t0) * 1000);
END
$$;

CREATE FUNCTION pg_temp.cache(label text) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT doc -> 'components' -> 'cache' FROM runs r WHERE r.label = cache.label $$;

-- What is wrong with the run: raised, or cache/check/status inconsistent.
CREATE FUNCTION pg_temp.problems(label text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT concat_ws('; ',
    'raised ' || r.raised,
    CASE WHEN r.raised IS NULL AND (r.doc -> 'components' -> 'cache' ->> 'status') IS NULL THEN 'no cache status' END,
    CASE WHEN jsonb_typeof(r.doc -> 'components' -> 'cache' -> 'latencyMs') IS DISTINCT FROM 'number'
              OR (r.doc -> 'components' -> 'cache' ->> 'latencyMs')::numeric < 0 THEN 'latencyMs not a number >= 0' END,
    CASE WHEN jsonb_typeof(r.doc -> 'components' -> 'cache' -> 'message') IS DISTINCT FROM 'string'
         THEN 'message not a string' END,
    CASE WHEN (r.doc -> 'checks' ->> 'cache') IS DISTINCT FROM
              (CASE r.doc -> 'components' -> 'cache' ->> 'status'
                    WHEN 'healthy' THEN 'ok' WHEN 'degraded' THEN 'degraded' WHEN 'unhealthy' THEN 'down' END)
         THEN 'checks.cache ' || coalesce(r.doc -> 'checks' ->> 'cache', 'NULL') || ' does not match' END)
  FROM runs r WHERE r.label = problems.label
$$;

-------------------------------------------------------------------------------
-- The real memcached: healthy
-------------------------------------------------------------------------------
SELECT is(current_setting('opsflags.memcached_servers'), :'mc',
          'the cluster''s opsflags.memcached_servers is the test memcached');
SELECT pg_temp.run('real') AS x \gset
SELECT is(pg_temp.problems('real'), '', 'real memcached: no raise, cache component well formed');
SELECT is(pg_temp.cache('real') ->> 'status', 'healthy', 'real memcached: cache healthy');
SELECT is((SELECT doc -> 'checks' ->> 'cache' FROM runs WHERE label = 'real'), 'ok', 'real memcached: check cache ok');
SELECT doesnt_match(pg_temp.cache('real') ->> 'message', 'not configured', 'real memcached: configured');

-------------------------------------------------------------------------------
-- Nothing listening: degraded, no raise
-------------------------------------------------------------------------------
\set target :down
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'target', 'down: setting applied after reload');
SELECT pg_temp.run('down') AS x \gset
SELECT is(pg_temp.problems('down'), '', 'nothing listening: no raise, cache component well formed');
SELECT is(pg_temp.cache('down') ->> 'status', 'degraded', 'nothing listening: cache degraded');
SELECT isnt(pg_temp.cache('down') ->> 'message', '', 'nothing listening: the message says what failed');
SELECT isnt((SELECT doc ->> 'status' FROM runs WHERE label = 'down'), 'healthy',
            'nothing listening: top status not healthy');
SELECT cmp_ok((SELECT ms FROM runs WHERE label = 'down'), '<', 6000::double precision,
              'nothing listening, default timeout: returns within the timeout plus a margin');

SET opsflags.health_timeout = 500;
SELECT pg_temp.run('down 500') AS x \gset
SELECT is(pg_temp.cache('down 500') ->> 'status', 'degraded', 'nothing listening, timeout 500 ms: cache degraded');
SELECT cmp_ok((SELECT ms FROM runs WHERE label = 'down 500'), '<', 3000::double precision,
              'nothing listening, timeout 500 ms: returns in < 3 s');
RESET opsflags.health_timeout;

-------------------------------------------------------------------------------
-- A server that accepts and never answers: degraded within the timeout
-------------------------------------------------------------------------------
\set target :hang
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'target', 'hang: setting applied after reload');
SET opsflags.health_timeout = 500;
SELECT pg_temp.run('hang') AS x \gset
SELECT is(pg_temp.problems('hang'), '', 'hanging server: no raise, cache component well formed');
SELECT is(pg_temp.cache('hang') ->> 'status', 'degraded', 'hanging server: cache degraded');
SELECT isnt(pg_temp.cache('hang') ->> 'message', '', 'hanging server: the message says what failed');
SELECT cmp_ok((SELECT ms FROM runs WHERE label = 'hang'), '<', 3000::double precision,
              'hanging server, timeout 500 ms: health_status returns in < 3 s');
SELECT cmp_ok((pg_temp.cache('hang') ->> 'latencyMs')::double precision, '<', 3000::double precision,
              'hanging server, timeout 500 ms: the cache latency reported is < 3 s');
SET opsflags.health_timeout = 1500;
SELECT pg_temp.run('hang 1500') AS x \gset
SELECT is(pg_temp.cache('hang 1500') ->> 'status', 'degraded', 'hanging server, timeout 1500 ms: cache degraded');
SELECT cmp_ok((SELECT ms FROM runs WHERE label = 'hang 1500'), '<', 4500::double precision,
              'hanging server, timeout 1500 ms: returns in < 4.5 s');
RESET opsflags.health_timeout;

-------------------------------------------------------------------------------
-- Unparsable server lists: degraded with a message
-------------------------------------------------------------------------------
\set target '::::'
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'target', '"::::": setting applied after reload');
SELECT pg_temp.run('colons') AS x \gset
SELECT is(pg_temp.problems('colons'), '', '"::::": no raise, cache component well formed');
SELECT is(pg_temp.cache('colons') ->> 'status', 'degraded', '"::::": cache degraded');
SELECT isnt(pg_temp.cache('colons') ->> 'message', '', '"::::": with a message');

\set target 'host:notaport'
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'target', '"host:notaport": setting applied after reload');
SELECT pg_temp.run('notaport') AS x \gset
SELECT is(pg_temp.problems('notaport'), '', '"host:notaport": no raise, cache component well formed');
SELECT is(pg_temp.cache('notaport') ->> 'status', 'degraded', '"host:notaport": cache degraded');
SELECT matches(pg_temp.cache('notaport') ->> 'message', 'notaport', '"host:notaport": the message names the bad entry');

SELECT :'mc' || ',127.0.0.1:99999' AS target \gset
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'target', 'real + port 99999: setting applied after reload');
SELECT pg_temp.run('bad port') AS x \gset
SELECT is(pg_temp.problems('bad port'), '', 'a real server and port 99999: no raise, cache component well formed');
SELECT is(pg_temp.cache('bad port') ->> 'status', 'degraded', 'a real server and port 99999: cache degraded');

-------------------------------------------------------------------------------
-- Not configured: healthy, and says so
-------------------------------------------------------------------------------
\set target ''
ALTER SYSTEM SET opsflags.memcached_servers = :'target';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'target') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), '', 'empty: setting applied after reload');
SELECT pg_temp.run('empty') AS x \gset
SELECT is(pg_temp.problems('empty'), '', 'not configured: no raise, cache component well formed');
SELECT is(pg_temp.cache('empty') ->> 'status', 'healthy', 'not configured: cache healthy');
SELECT matches(pg_temp.cache('empty') ->> 'message', 'not configured', 'not configured: the message says so');

-------------------------------------------------------------------------------
-- Back to the cluster's setting
-------------------------------------------------------------------------------
ALTER SYSTEM RESET opsflags.memcached_servers;
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'mc') \gexec
SELECT is(current_setting('opsflags.memcached_servers'), :'mc', 'reset: back to the cluster''s setting');
SELECT pg_temp.run('again') AS x \gset
SELECT is(pg_temp.cache('again') ->> 'status', 'healthy', 'reset: cache healthy again');

SELECT * FROM finish();
