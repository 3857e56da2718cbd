-- test/pgtap/health.sql: health_status(), health_aggregate(), check_system_health(),
-- errors_last_hour() and run_startup_checks().
--
-- Everything runs in one transaction that is rolled back at the end: the
-- configuration the probes read (health.thresholds, health.queue_query,
-- app_version, commit_sha) is changed only inside it, and the rows
-- check_system_health() inserts go away with it.  The errors counted by
-- errors_last_hour() are provoked in a second session (a dblink connection):
-- an error caught by PL/pgSQL is never reported, so it is not counted, and
-- ON_ERROR_STOP forbids failing statements in this one.
--
-- The memcached component is tested in health_memcached.sql (it needs a
-- reload of opsflags.memcached_servers, which a transaction cannot hold).
\ir setup.inc

BEGIN;
SELECT plan(198);

SET LOCAL opsflags.environment = 'production';
SET LOCAL opsflags.health_timeout = 5000;
SET LOCAL opsflags.required_tables = '';
SET LOCAL opsflags.required_settings = '';

-- Start from no health configuration (committed leftovers are hidden by the
-- rollback at the end).
DELETE FROM opsflags.app_config
WHERE config_key IN ('health.thresholds', 'health.queue_query', 'app_version', 'commit_sha');

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

-- The aggregation rule, in plain SQL (README, "Health and alerts").
CREATE FUNCTION pg_temp.ref_aggregate(s text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN 'unhealthy' = ANY (s) THEN 'unhealthy'
              WHEN 'degraded' = ANY (s) THEN 'degraded'
              ELSE 'healthy' END
$$;

-- Everything wrong with the shape of a health_status() document, as a list
-- of problems; empty when it is right.
CREATE FUNCTION pg_temp.shape_problems(doc jsonb) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    p      text[] := '{}';
    k      text;
    c      jsonb;
    st     text;
    states text[] := '{}';
    comps  constant text[] := ARRAY['database', 'cache', 'storage', 'queue'];
BEGIN
    IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
        RETURN ARRAY['not a JSON object: ' || coalesce(doc::text, 'NULL')];
    END IF;
    FOREACH k IN ARRAY ARRAY['status', 'timestamp', 'version', 'commit_sha', 'components', 'checks'] LOOP
        IF NOT doc ? k THEN
            p := p || ('missing key ' || k);
        END IF;
    END LOOP;
    IF (doc ->> 'status') IS NULL OR (doc ->> 'status') NOT IN ('healthy', 'degraded', 'unhealthy') THEN
        p := p || ('status not healthy/degraded/unhealthy: ' || coalesce(doc ->> 'status', 'NULL'));
    END IF;
    IF jsonb_typeof(doc -> 'timestamp') IS DISTINCT FROM 'string' THEN
        p := p || 'timestamp is not a string'::text;
    ELSE
        BEGIN
            IF abs(extract(epoch FROM (doc ->> 'timestamp')::timestamptz - clock_timestamp())) > 60 THEN
                p := p || ('timestamp is not now: ' || (doc ->> 'timestamp'));
            END IF;
        EXCEPTION WHEN others THEN
            p := p || ('timestamp is not a timestamp: ' || (doc ->> 'timestamp'));
        END;
    END IF;
    IF coalesce(jsonb_typeof(doc -> 'version'), 'missing') NOT IN ('string', 'null') THEN
        p := p || 'version is not a string or null'::text;
    END IF;
    IF coalesce(jsonb_typeof(doc -> 'commit_sha'), 'missing') NOT IN ('string', 'null') THEN
        p := p || 'commit_sha is not a string or null'::text;
    END IF;
    IF jsonb_typeof(doc -> 'components') IS DISTINCT FROM 'object' THEN
        RETURN p || 'components is not an object'::text;
    END IF;
    IF jsonb_typeof(doc -> 'checks') IS DISTINCT FROM 'object' THEN
        RETURN p || 'checks is not an object'::text;
    END IF;
    IF (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(doc -> 'components') x)
       IS DISTINCT FROM ARRAY['cache', 'database', 'queue', 'storage'] THEN
        p := p || ('components are not database, cache, storage, queue: ' || (doc -> 'components')::text);
    END IF;
    IF (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(doc -> 'checks') x)
       IS DISTINCT FROM ARRAY['cache', 'database', 'queue', 'storage'] THEN
        p := p || ('checks are not database, cache, storage, queue: ' || (doc -> 'checks')::text);
    END IF;
    FOREACH k IN ARRAY comps LOOP
        c := doc -> 'components' -> k;
        st := c ->> 'status';
        IF jsonb_typeof(c) IS DISTINCT FROM 'object' THEN
            p := p || (k || ' is not an object');
            CONTINUE;
        END IF;
        IF st IS NULL OR st NOT IN ('healthy', 'degraded', 'unhealthy') THEN
            p := p || (k || ': status not healthy/degraded/unhealthy: ' || coalesce(st, 'NULL'));
        END IF;
        states := states || st;
        IF jsonb_typeof(c -> 'latencyMs') IS DISTINCT FROM 'number' THEN
            p := p || (k || ': latencyMs is not a number');
        ELSIF (c ->> 'latencyMs')::numeric < 0 THEN
            p := p || (k || ': latencyMs is negative: ' || (c ->> 'latencyMs'));
        END IF;
        IF jsonb_typeof(c -> 'message') IS DISTINCT FROM 'string' THEN
            p := p || (k || ': message is not a string');
        END IF;
        IF (doc -> 'checks' ->> k) IS DISTINCT FROM
           (CASE st WHEN 'healthy' THEN 'ok' WHEN 'degraded' THEN 'degraded' WHEN 'unhealthy' THEN 'down' END) THEN
            p := p || format('checks.%s is %s for status %s', k, coalesce(doc -> 'checks' ->> k, 'NULL'), st);
        END IF;
    END LOOP;
    IF (doc ->> 'status') IS DISTINCT FROM pg_temp.ref_aggregate(states) THEN
        p := p || format('status %s is not the aggregate %s of %s', doc ->> 'status',
                         pg_temp.ref_aggregate(states), array_to_string(states, ','));
    END IF;
    RETURN p;
END
$$;

-- Every health_status() call of the file is recorded here: its document, the
-- error it raised (if it did) and how long it took.
CREATE TEMP TABLE runs (n serial PRIMARY KEY, label text NOT NULL, doc jsonb, raised text,
                        ms double precision NOT NULL);

CREATE FUNCTION pg_temp.run(label text, times int DEFAULT 1) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t0  timestamptz;
    d   jsonb;
    err text;
BEGIN
    FOR i IN 1..times LOOP
        d := NULL;
        err := NULL;
        t0 := clock_timestamp();
        BEGIN
            d := opsflags.health_status();
        EXCEPTION WHEN others THEN
            err := SQLSTATE || ': ' || SQLERRM;
        END;
        INSERT INTO runs (label, doc, raised, ms)
        VALUES (label, d, err, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
END
$$;

-- The document of the last run with that label.
CREATE FUNCTION pg_temp.doc(label text) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT doc FROM runs r WHERE r.label = doc.label ORDER BY n DESC LIMIT 1 $$;

-- One component of it.
CREATE FUNCTION pg_temp.comp(label text, component text) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT pg_temp.doc(label) -> 'components' -> component $$;

-- What went wrong in the runs with that label: errors raised, shape problems.
CREATE FUNCTION pg_temp.run_problems(label text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(string_agg(DISTINCT x, '; '), '')
  FROM runs r, LATERAL unnest(CASE WHEN r.raised IS NOT NULL THEN ARRAY['raised ' || r.raised]
                                   ELSE pg_temp.shape_problems(r.doc) END) x
  WHERE r.label = run_problems.label
$$;

CREATE FUNCTION pg_temp.set_thresholds(v jsonb) RETURNS void
LANGUAGE sql AS $$ SELECT opsflags.config_set('health.thresholds', v) $$;

CREATE FUNCTION pg_temp.set_queue(q jsonb) RETURNS void
LANGUAGE sql AS $$ SELECT opsflags.config_set('health.queue_query', q) $$;

-------------------------------------------------------------------------------
-- a. Property 1: health_aggregate over all 81 combinations of four states
-------------------------------------------------------------------------------
SELECT is(opsflags.health_aggregate(ARRAY[a, b, c, d]), pg_temp.ref_aggregate(ARRAY[a, b, c, d]),
          format('P1: health_aggregate({%s,%s,%s,%s})', a, b, c, d))
FROM unnest(ARRAY['healthy', 'degraded', 'unhealthy']) WITH ORDINALITY s1(a, i1),
     unnest(ARRAY['healthy', 'degraded', 'unhealthy']) WITH ORDINALITY s2(b, i2),
     unnest(ARRAY['healthy', 'degraded', 'unhealthy']) WITH ORDINALITY s3(c, i3),
     unnest(ARRAY['healthy', 'degraded', 'unhealthy']) WITH ORDINALITY s4(d, i4)
ORDER BY i1, i2, i3, i4;

-- Other lengths (0 to 8 components, 300 generated cases).
SELECT is((SELECT count(*)::int
           FROM (SELECT g, array_agg((ARRAY['healthy', 'degraded', 'unhealthy'])[1 + abs(hashint4(g * 31 + k)::bigint) % 3]
                                     ORDER BY k) AS s
                 FROM generate_series(1, 300) g, generate_series(1, 1 + g % 8) k
                 GROUP BY g) cases
           WHERE opsflags.health_aggregate(s) IS DISTINCT FROM pg_temp.ref_aggregate(s)), 0,
          'P1: health_aggregate equals the reference on 300 arrays of 1 to 8 statuses');
SELECT is(opsflags.health_aggregate('{}'::text[]), 'healthy', 'health_aggregate of no component: healthy');
SELECT throws_ok($$SELECT opsflags.health_aggregate(ARRAY['healthy', 'fine'])$$, '22023', NULL,
                 'health_aggregate with an unknown status raises 22023');
SELECT throws_ok($$SELECT opsflags.health_aggregate(ARRAY['healthy', NULL])$$, '22004', NULL,
                 'health_aggregate with a NULL status raises 22004');

-------------------------------------------------------------------------------
-- b. Property 3: the shape of health_status(), on every call
-------------------------------------------------------------------------------
SELECT pg_temp.run('baseline', 120) AS x \gset
SELECT is((SELECT count(*)::int FROM runs WHERE label = 'baseline'), 120, 'P3: 120 baseline calls recorded');
SELECT is(pg_temp.run_problems('baseline'), '',
          'P3: 120 calls of health_status(): none raises, every document has the full shape');
SELECT is(pg_temp.comp('baseline', 'database') ->> 'status', 'healthy', 'baseline: database healthy');
SELECT matches(pg_temp.comp('baseline', 'database') ->> 'message', 'connections',
               'baseline: the database message counts connections');
SELECT is(pg_temp.comp('baseline', 'queue') ->> 'status', 'healthy', 'queue not configured: healthy');
SELECT matches(pg_temp.comp('baseline', 'queue') ->> 'message', 'not configured',
               'queue not configured: its message says so');

-- version: the extension's without app_version; then app_version and commit_sha.
SELECT is(pg_temp.doc('baseline') ->> 'version',
          (SELECT extversion FROM pg_extension WHERE extname = 'opsflags'),
          'version without config app_version: the extension''s version');
SELECT is(pg_temp.doc('baseline') -> 'commit_sha', 'null'::jsonb, 'commit_sha without config commit_sha: null');
SELECT opsflags.config_set('app_version', '"9.8.7-tap"') AS x \gset
SELECT opsflags.config_set('commit_sha', '"c0ffee1"') AS x \gset
SELECT pg_temp.run('version all') AS x \gset
SELECT is(ARRAY[pg_temp.doc('version all') ->> 'version', pg_temp.doc('version all') ->> 'commit_sha'],
          ARRAY['9.8.7-tap', 'c0ffee1'], 'version and commit_sha come from config (environment all)');
SELECT opsflags.config_set('app_version', '"9.8.8-prod"', environment => 'production') AS x \gset
SELECT pg_temp.run('version production') AS x \gset
SELECT is(pg_temp.doc('version production') ->> 'version', '9.8.8-prod',
          'version: the current environment''s app_version wins over all''s');

-------------------------------------------------------------------------------
-- c. The queue probe: configured, failing, slow, wrong shape; never raises
-------------------------------------------------------------------------------
SELECT pg_temp.set_queue('"SELECT 3, 0"') AS x \gset
SELECT pg_temp.run('queue 3 0') AS x \gset
SELECT is(pg_temp.comp('queue 3 0', 'queue') ->> 'status', 'healthy', 'queue 3 pending, 0 failed: healthy');
SELECT matches(pg_temp.comp('queue 3 0', 'queue') ->> 'message', '3 pending',
               'queue: the message gives the pending count');

SELECT pg_temp.set_queue('"SELECT 3, 2"') AS x \gset
SELECT pg_temp.run('queue 3 2') AS x \gset
SELECT is(pg_temp.comp('queue 3 2', 'queue') ->> 'status', 'degraded', 'queue with failed jobs: degraded');
SELECT is(pg_temp.doc('queue 3 2') -> 'checks' ->> 'queue', 'degraded', 'queue with failed jobs: check degraded');

SELECT pg_temp.set_thresholds('{"queue_failed_max": 5}') AS x \gset
SELECT pg_temp.run('queue 3 2 failed_max 5') AS x \gset
SELECT is(pg_temp.comp('queue 3 2 failed_max 5', 'queue') ->> 'status', 'healthy',
          'thresholds queue_failed_max 5: 2 failed jobs are healthy');
SELECT pg_temp.set_thresholds('{"queue_pending_max": 2}') AS x \gset
SELECT pg_temp.set_queue('"SELECT 3, 0"') AS x \gset
SELECT pg_temp.run('queue 3 0 pending_max 2') AS x \gset
SELECT is(pg_temp.comp('queue 3 0 pending_max 2', 'queue') ->> 'status', 'degraded',
          'thresholds queue_pending_max 2: 3 pending jobs are degraded');
SELECT opsflags.config_delete('health.thresholds') AS x \gset

-- Broken: an unknown table, a run-time error.
SELECT pg_temp.set_queue('"SELECT count(*), 0 FROM tap_no_such_jobs"') AS x \gset
SELECT pg_temp.run('queue broken', 3) AS x \gset
SELECT is(pg_temp.run_problems('queue broken'), '', 'broken queue query: health_status does not raise, full shape');
SELECT is(pg_temp.comp('queue broken', 'queue') ->> 'status', 'degraded', 'broken queue query: queue degraded');
SELECT matches(pg_temp.comp('queue broken', 'queue') ->> 'message', 'tap_no_such_jobs',
               'broken queue query: the message is the error');
SELECT is(pg_temp.comp('queue broken', 'database') ->> 'status', 'healthy',
          'broken queue query: the database is still healthy');

SELECT pg_temp.set_queue('"SELECT 1 / (random() * 0)::int, 0"') AS x \gset
SELECT pg_temp.run('queue division by zero', 3) AS x \gset
SELECT is(pg_temp.run_problems('queue division by zero'), '',
          'queue query failing at run time: no raise, full shape');
SELECT is(pg_temp.comp('queue division by zero', 'queue') ->> 'status', 'degraded',
          'queue query failing at run time: queue degraded');

-- Slow: cancelled at opsflags.health_timeout.
SET LOCAL opsflags.health_timeout = 300;
SELECT pg_temp.set_queue('"SELECT count(*), 0 FROM pg_sleep(30)"') AS x \gset
SELECT pg_temp.run('queue slow', 2) AS x \gset
SELECT is(pg_temp.run_problems('queue slow'), '', 'slow queue query: health_status does not raise, full shape');
SELECT is(pg_temp.comp('queue slow', 'queue') ->> 'status', 'degraded', 'slow queue query: queue degraded');
SELECT matches(pg_temp.comp('queue slow', 'queue') ->> 'message', 'timed out',
               'slow queue query: the message says it timed out');
SELECT cmp_ok((SELECT max(ms) FROM runs WHERE label = 'queue slow'), '<', 3000::double precision,
              'slow queue query, health_timeout 300 ms: each call returns in < 3 s');
SELECT lives_ok('SELECT pg_sleep(0.6)',
                'after a timed-out probe no cancel is left pending (a 0.6 s statement completes)');
SET LOCAL opsflags.health_timeout = 5000;

-- Wrong shapes.
SELECT pg_temp.set_queue('"SELECT 1"') AS x \gset
SELECT pg_temp.run('queue one column') AS x \gset
SELECT pg_temp.set_queue('"SELECT 1, 2 FROM generate_series(1, 3)"') AS x \gset
SELECT pg_temp.run('queue three rows') AS x \gset
SELECT pg_temp.set_queue('"SELECT 1, 2 WHERE false"') AS x \gset
SELECT pg_temp.run('queue no row') AS x \gset
SELECT pg_temp.set_queue($$"SELECT 'many', 'few'"$$) AS x \gset
SELECT pg_temp.run('queue text columns') AS x \gset
SELECT pg_temp.set_queue('"not sql at all"') AS x \gset
SELECT pg_temp.run('queue not sql') AS x \gset
SELECT pg_temp.set_queue('""') AS x \gset
SELECT pg_temp.run('queue empty string') AS x \gset
SELECT is(pg_temp.run_problems(l), '', format('%s: health_status does not raise, full shape', l))
FROM unnest(ARRAY['queue one column', 'queue three rows', 'queue no row', 'queue text columns',
                  'queue not sql', 'queue empty string']) l;
SELECT is(pg_temp.comp(l, 'queue') ->> 'status', 'degraded', format('%s: queue degraded', l))
FROM unnest(ARRAY['queue one column', 'queue three rows', 'queue no row', 'queue text columns',
                  'queue not sql', 'queue empty string']) l;

-- Read-only: a queue query that tries to write is refused, and writes nothing.
SELECT pg_temp.set_queue(to_jsonb('SELECT 1, 2) AS q(pending, failed); CREATE TABLE public.tap_health_written (); '
                                  || 'SELECT * FROM (SELECT 1, 2'::text)) AS x \gset
SELECT pg_temp.run('queue writes') AS x \gset
SELECT is(pg_temp.run_problems('queue writes'), '', 'queue query that writes: no raise, full shape');
SELECT is(pg_temp.comp('queue writes', 'queue') ->> 'status', 'degraded', 'queue query that writes: degraded');
SELECT hasnt_table('public', 'tap_health_written', 'queue query that writes: it wrote nothing (runs read-only)');

-- Not a string: treated as no query; never raises.
SELECT pg_temp.set_queue('42') AS x \gset
SELECT pg_temp.run('queue number') AS x \gset
SELECT pg_temp.set_queue('{"sql": "SELECT 1, 2"}') AS x \gset
SELECT pg_temp.run('queue object') AS x \gset
SELECT pg_temp.set_queue('null') AS x \gset
SELECT pg_temp.run('queue json null') AS x \gset
SELECT is(pg_temp.run_problems(l), '', format('%s: health_status does not raise, full shape', l))
FROM unnest(ARRAY['queue number', 'queue object', 'queue json null']) l;
SELECT opsflags.config_delete('health.queue_query') AS x \gset

-------------------------------------------------------------------------------
-- d. Thresholds: garbage is ignored (defaults), each threshold works
-------------------------------------------------------------------------------
CREATE TEMP TABLE garbage (i serial, v jsonb);
INSERT INTO garbage (v) VALUES
    ('"garbage"'), ('[1, 2, 3]'), ('null'), ('42'), ('true'), ('{}'),
    ('{"connections_pct": "0", "storage_degraded_pct": "100", "storage_unhealthy_pct": "100", "xid_age": "0"}'),
    ('{"connections_pct": null, "storage_degraded_pct": [100], "storage_unhealthy_pct": true, "xid_age": false}'),
    ('{"connections_pct": {"value": 0}, "storage_unhealthy_pct": {"pct": 100}}'),
    ('{"connections_pct": 1e400}'),
    ('{"storage_unhealthy_pct": -1e400, "queue_pending_max": 1e400}'),
    ('{"CONNECTIONS_PCT": 0, "connections pct": 0, "storage-unhealthy-pct": 100}');
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM garbage ORDER BY i LOOP
        PERFORM pg_temp.set_thresholds(g.v);
        PERFORM pg_temp.run('garbage thresholds ' || g.i, 2);
    END LOOP;
END
$$;
SELECT is(pg_temp.run_problems('garbage thresholds ' || i), '',
          format('thresholds %s: health_status does not raise, full shape', v))
FROM garbage ORDER BY i;
SELECT is((SELECT count(*)::int FROM garbage
           WHERE pg_temp.comp('garbage thresholds ' || i, 'database') ->> 'status'
                 IS DISTINCT FROM pg_temp.comp('baseline', 'database') ->> 'status'
              OR pg_temp.comp('garbage thresholds ' || i, 'storage') ->> 'status'
                 IS DISTINCT FROM pg_temp.comp('baseline', 'storage') ->> 'status'), 0,
          'thresholds of the wrong JSON types are ignored: database and storage as with the defaults');

SELECT pg_temp.set_thresholds('{"connections_pct": 0}') AS x \gset
SELECT pg_temp.run('connections_pct 0') AS x \gset
SELECT is(pg_temp.run_problems('connections_pct 0'), '', 'connections_pct 0: full shape');
SELECT is(pg_temp.comp('connections_pct 0', 'database') ->> 'status', 'degraded',
          'thresholds connections_pct 0: database degraded');
SELECT matches(pg_temp.comp('connections_pct 0', 'database') ->> 'message', 'connections',
               'thresholds connections_pct 0: the message is about connections');
SELECT ok(pg_temp.doc('connections_pct 0') ->> 'status' IN ('degraded', 'unhealthy'),
          'thresholds connections_pct 0: top status not healthy');

SELECT pg_temp.set_thresholds('{"xid_age": 0}') AS x \gset
SELECT pg_temp.run('xid_age 0') AS x \gset
SELECT is(pg_temp.comp('xid_age 0', 'database') ->> 'status', 'degraded', 'thresholds xid_age 0: database degraded');
SELECT matches(pg_temp.comp('xid_age 0', 'database') ->> 'message', 'transaction id|wraparound|xid',
               'thresholds xid_age 0: the message is about transaction id age');

SELECT pg_temp.set_thresholds('{"storage_degraded_pct": 100, "storage_unhealthy_pct": 0}') AS x \gset
SELECT pg_temp.run('storage_degraded_pct 100') AS x \gset
SELECT is(pg_temp.run_problems('storage_degraded_pct 100'), '', 'storage_degraded_pct 100: full shape');
SELECT is(pg_temp.comp('storage_degraded_pct 100', 'storage') ->> 'status', 'degraded',
          'thresholds storage_degraded_pct 100: storage degraded');
SELECT is(pg_temp.doc('storage_degraded_pct 100') -> 'checks' ->> 'storage', 'degraded',
          'thresholds storage_degraded_pct 100: check storage degraded');
SELECT matches(pg_temp.comp('storage_degraded_pct 100', 'storage') ->> 'message', 'free',
               'storage: the message gives the free space');

SELECT pg_temp.set_thresholds('{"storage_unhealthy_pct": 100}') AS x \gset
SELECT pg_temp.run('storage_unhealthy_pct 100') AS x \gset
SELECT is(pg_temp.run_problems('storage_unhealthy_pct 100'), '', 'storage_unhealthy_pct 100: full shape');
SELECT is(pg_temp.comp('storage_unhealthy_pct 100', 'storage') ->> 'status', 'unhealthy',
          'thresholds storage_unhealthy_pct 100: storage unhealthy');
SELECT is(pg_temp.doc('storage_unhealthy_pct 100') -> 'checks' ->> 'storage', 'down',
          'thresholds storage_unhealthy_pct 100: check storage down');
SELECT is(pg_temp.doc('storage_unhealthy_pct 100') ->> 'status', 'unhealthy',
          'thresholds storage_unhealthy_pct 100: top status unhealthy');

-- Several at once, with a failing queue: the worst wins.
SELECT pg_temp.set_thresholds('{"connections_pct": 0, "storage_unhealthy_pct": 100}') AS x \gset
SELECT pg_temp.set_queue('"SELECT count(*), 0 FROM tap_no_such_jobs"') AS x \gset
SELECT pg_temp.run('all bad') AS x \gset
SELECT is(ARRAY[pg_temp.comp('all bad', 'database') ->> 'status', pg_temp.comp('all bad', 'storage') ->> 'status',
                pg_temp.comp('all bad', 'queue') ->> 'status', pg_temp.doc('all bad') ->> 'status'],
          ARRAY['degraded', 'unhealthy', 'degraded', 'unhealthy'],
          'database degraded, storage unhealthy, queue degraded: unhealthy');
SELECT opsflags.config_delete('health.thresholds') AS x \gset
SELECT opsflags.config_delete('health.queue_query') AS x \gset

-- Every call of the file so far, together.
SELECT cmp_ok((SELECT count(*)::int FROM runs), '>=', 150, 'P3: at least 150 health_status() calls made');
SELECT is((SELECT coalesce(string_agg(DISTINCT p, '; '), '')
           FROM runs r, LATERAL unnest(CASE WHEN r.raised IS NOT NULL THEN ARRAY['raised ' || r.raised]
                                            ELSE pg_temp.shape_problems(r.doc) END) p), '',
          'P3: no call raised and every document had the full shape, whatever the configuration');

-------------------------------------------------------------------------------
-- e. check_system_health(): one row per call (Property 2), the summary
-------------------------------------------------------------------------------
-- No warning for errors made by the rest of the suite; no app_version.
DELETE FROM opsflags.app_config WHERE config_key IN ('app_version', 'commit_sha');
SELECT pg_temp.set_thresholds('{"errors_per_hour_warning": 1000000000}') AS x \gset

CREATE FUNCTION pg_temp.p2(calls int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    bad text[] := '{}';
    c0  bigint;
    c1  bigint;
    t0  timestamptz;
    t1  timestamptz;
    d   jsonb;
    r   opsflags.system_health;
BEGIN
    FOR i IN 1..calls LOOP
        SELECT count(*) INTO c0 FROM opsflags.system_health WHERE source = 'check_system_health';
        t0 := clock_timestamp();
        d := opsflags.check_system_health();
        t1 := clock_timestamp();
        SELECT count(*) INTO c1 FROM opsflags.system_health WHERE source = 'check_system_health';
        IF c1 <> c0 + 1 THEN
            bad := bad || format('call %s inserted %s rows', i, c1 - c0);
        END IF;
        SELECT * INTO r FROM opsflags.system_health ORDER BY id DESC LIMIT 1;
        IF r.recorded_at < t0 - interval '1 second' OR r.recorded_at > t1 + interval '1 second' THEN
            bad := bad || format('call %s: recorded_at %s not within 1 s of %s..%s', i, r.recorded_at, t0, t1);
        END IF;
        IF r.status IS DISTINCT FROM d ->> 'status' THEN
            bad := bad || format('call %s: row status %s, document %s', i, r.status, d ->> 'status');
        END IF;
        IF abs((d -> 'database' ->> 'size_mb')::numeric - r.database_size_bytes / 1048576.0) > 0.01 THEN
            bad := bad || format('call %s: size_mb %s, row %s bytes', i, d -> 'database' ->> 'size_mb',
                                 r.database_size_bytes);
        END IF;
        IF r.errors_last_hour IS DISTINCT FROM (d ->> 'errors_last_hour')::bigint THEN
            bad := bad || format('call %s: row errors_last_hour %s, document %s', i, r.errors_last_hour,
                                 d ->> 'errors_last_hour');
        END IF;
        IF abs(extract(epoch FROM (d ->> 'timestamp')::timestamptz - r.recorded_at)) > 1 THEN
            bad := bad || format('call %s: document timestamp %s, row %s', i, d ->> 'timestamp', r.recorded_at);
        END IF;
        -- the row under the specification's column names
        IF (r."timestamp", r.db_connections_active, r.db_connections_idle, r.errors_last_hour)
           IS DISTINCT FROM (r.recorded_at, (d -> 'database' -> 'connections' ->> 'active')::bigint,
                             (d -> 'database' -> 'connections' ->> 'idle')::bigint, (d ->> 'errors_last_hour')::bigint)
           OR abs(r.db_size_mb - (d -> 'database' ->> 'size_mb')::numeric) > 0.01 THEN
            bad := bad || format('call %s: specified columns %s, document %s', i, row_to_json(r), d);
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;

SELECT is(pg_temp.p2(120), '',
          'P2: 120 calls of check_system_health(): each inserts exactly one row, recorded_at within 1 s, row = document (also under timestamp, db_connections_active/idle, db_size_mb)');

-- take_sample() fills the specified columns too.
CREATE FUNCTION pg_temp.samples_spec(calls int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    bad    text[] := '{}';
    r      opsflags.system_health;
    new_id bigint;
BEGIN
    FOR i IN 1..calls LOOP
        new_id := opsflags.take_sample('tap');
        SELECT * INTO r FROM opsflags.system_health WHERE id = new_id;
        IF r."timestamp" IS DISTINCT FROM r.recorded_at OR r.db_connections_active IS DISTINCT FROM r.active_connections
           OR r.db_connections_idle IS DISTINCT FROM r.idle_connections OR r.db_connections_active IS NULL
           OR r.db_size_mb IS DISTINCT FROM round(r.database_size_bytes / 1048576.0, 2) OR r.db_size_mb IS NULL
           OR r.slow_queries_count IS DISTINCT FROM r.slow_query_count
           OR jsonb_typeof(r.largest_tables) <> 'array' OR jsonb_typeof(r.metrics) <> 'object'
           OR NOT r.cache_hit_rate BETWEEN 0 AND 1 THEN
            bad := bad || format('sample %s: %s', i, row_to_json(r));
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;
SELECT is(pg_temp.samples_spec(100), '',
          '100 take_sample() rows: timestamp, db_connections_active/idle, db_size_mb, slow_queries_count, largest_tables, cache_hit_rate, metrics filled');

-- health_samples() against a plain SQL reference, on 120 generated sets of
-- samples: every sample of the last 24 hours while there are at most
-- max_points, else one point per bucket of ceil(86400 / (max_points - 1)) s
-- from 2000-01-01 (the maximum of the counts), never more than max_points.
CREATE FUNCTION pg_temp.samples_prop(cases int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    bad  text[] := '{}';
    k    int;
    m    int;
    w    bigint;
    doc  jsonb;
    want jsonb;
BEGIN
    FOR i IN 1..cases LOOP
        k := ('x' || substr(md5('hs.k' || i), 1, 6))::bit(24)::int % 700;
        m := 2 + ('x' || substr(md5('hs.m' || i), 1, 6))::bit(24)::int % 400;
        DELETE FROM opsflags.system_health;
        INSERT INTO opsflags.system_health (recorded_at, status, source, total_connections, cache_hit_rate)
        SELECT now() - make_interval(secs => ('x' || substr(md5('hs.t' || i || '/' || j), 1, 7))::bit(28)::int % 108000),
               'healthy', 'tap', ('x' || substr(md5('hs.c' || i || '/' || j), 1, 4))::bit(16)::int % 500, 0.9
        FROM generate_series(1, k) j;
        doc := opsflags.health_samples(interval '24 hours', m);
        IF (SELECT count(*) FROM opsflags.system_health WHERE recorded_at > now() - interval '24 hours') <= m THEN
            SELECT coalesce(jsonb_agg(jsonb_build_array(recorded_at, total_connections) ORDER BY recorded_at, id), '[]')
            INTO want FROM opsflags.system_health WHERE recorded_at > now() - interval '24 hours';
        ELSE
            w := ceil(86400.0 / (m - 1));
            SELECT jsonb_agg(jsonb_build_array(to_timestamp(946684800 + b * w), c) ORDER BY b)
            INTO want
            FROM (SELECT floor((extract(epoch FROM recorded_at) - 946684800) / w)::bigint AS b, max(total_connections) AS c
                  FROM opsflags.system_health WHERE recorded_at > now() - interval '24 hours' GROUP BY 1) x;
            IF jsonb_array_length(want) > m THEN
                bad := bad || format('case %s: the reference has %s buckets for max_points %s', i, jsonb_array_length(want), m);
            END IF;
        END IF;
        IF (SELECT coalesce(jsonb_agg(jsonb_build_array((e ->> 't')::timestamptz, (e ->> 'connections')::int) ORDER BY o), '[]')
            FROM jsonb_array_elements(doc) WITH ORDINALITY AS x(e, o)) IS DISTINCT FROM want THEN
            bad := bad || format('case %s (%s samples, max_points %s): %s points, reference %s', i, k, m,
                                 jsonb_array_length(doc), jsonb_array_length(want));
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;
SAVEPOINT samples;
SELECT is(pg_temp.samples_prop(120), '',
          'health_samples: 120 generated sample sets, each sample while few, else max_points buckets (max of the counts), as the reference');
ROLLBACK TO SAVEPOINT samples;

SELECT opsflags.check_system_health() AS csh \gset
SELECT ok(:'csh'::jsonb ->> 'status' IN ('healthy', 'warning', 'degraded'), 'check_system_health: status in healthy/warning/degraded');
SELECT is(:'csh'::jsonb ->> 'status', 'healthy', 'check_system_health: healthy with few connections and no error warning');
SELECT is(jsonb_typeof(:'csh'::jsonb -> 'database' -> 'size_mb'), 'number', 'check_system_health: database.size_mb is a number');
SELECT cmp_ok((:'csh'::jsonb -> 'database' ->> 'size_mb')::numeric, '>', 0::numeric, 'check_system_health: database.size_mb > 0');
SELECT ok(:'csh'::jsonb -> 'database' ? 'connections'
          AND jsonb_typeof(:'csh'::jsonb -> 'database' -> 'connections') IN ('object', 'number'),
          'check_system_health: database.connections present');
SELECT cmp_ok(coalesce((:'csh'::jsonb -> 'database' -> 'connections' ->> 'total')::int,
                       (:'csh'::jsonb -> 'database' ->> 'connections')::int), '>=', 1,
              'check_system_health: at least this connection counted');
SELECT is(jsonb_typeof(:'csh'::jsonb -> 'errors_last_hour'), 'number', 'check_system_health: errors_last_hour is a number (preloaded)');
SELECT is(:'csh'::jsonb ->> 'version', (SELECT extversion FROM pg_extension WHERE extname = 'opsflags'),
          'check_system_health: version (no app_version: the extension''s)');
SELECT ok(abs(extract(epoch FROM (:'csh'::jsonb ->> 'timestamp')::timestamptz - clock_timestamp())) < 60,
          'check_system_health: timestamp is now');

SELECT pg_temp.set_thresholds('{"connections_pct": 0, "errors_per_hour_warning": 1000000000}') AS x \gset
SELECT is(opsflags.check_system_health() ->> 'status', 'degraded', 'check_system_health: above connections_pct: degraded');
SELECT pg_temp.set_thresholds('{"errors_per_hour_warning": -1}') AS x \gset
SELECT is(opsflags.check_system_health() ->> 'status', 'warning',
          'check_system_health: more errors than errors_per_hour_warning: warning');
SELECT opsflags.config_set('app_version', '"9.8.9-csh"', environment => 'production') AS x \gset
SELECT is(opsflags.check_system_health() ->> 'version', '9.8.9-csh', 'check_system_health: version is config app_version');
SELECT opsflags.config_delete('health.thresholds') AS x \gset

-------------------------------------------------------------------------------
-- f. errors_last_hour(): grows by exactly the errors reported
-------------------------------------------------------------------------------
SELECT dblink_connect('e', pg_temp.tap_conninfo(app => 'tap_health_errors')) AS connected \gset

-- Run each command in session e, which fails or not as it likes; the
-- number of commands that failed there.
CREATE FUNCTION pg_temp.in_e(commands text[]) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    c      text;
    failed int := 0;
BEGIN
    FOREACH c IN ARRAY commands LOOP
        IF dblink_exec('e', c, false) = 'ERROR' THEN
            failed := failed + 1;
        END IF;
    END LOOP;
    RETURN failed;
END
$$;

SELECT is(pg_typeof(opsflags.errors_last_hour())::text, 'bigint', 'errors_last_hour() is a bigint');
SELECT cmp_ok(opsflags.errors_last_hour(), '>=', 0::bigint, 'errors_last_hour() is not NULL, >= 0 (preloaded)');

SELECT opsflags.errors_last_hour() AS e0 \gset
SELECT pg_temp.in_e(ARRAY[
    'DO $$BEGIN PERFORM 1 / 0; END$$',
    'INSERT INTO tap_health_no_such_table VALUES (1)',
    'SELEKT 1',
    $q$DO $do$BEGIN RAISE EXCEPTION 'tap: provoked'; END$do$$q$,
    'DO $$BEGIN PERFORM ''x''::int; END$$']) AS failed1 \gset
SELECT is(:failed1, 5, 'session e: 5 statements failed');
SELECT is(opsflags.errors_last_hour() - :e0, 5::bigint, 'errors_last_hour() grew by exactly the 5 errors of session e');

SELECT opsflags.errors_last_hour() AS e1 \gset
SELECT pg_temp.in_e(ARRAY[
    $q$DO $do$BEGIN RAISE WARNING 'tap: only a warning'; END$do$$q$,
    $q$DO $do$BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END$do$$q$,
    'SET application_name = ''tap_health_errors''']) AS failed2 \gset
SELECT is(opsflags.errors_last_hour() - :e1, 0::bigint,
          'a WARNING, an error caught by PL/pgSQL and a success in session e: no growth');

SELECT opsflags.errors_last_hour() AS e2 \gset
SELECT pg_temp.in_e(array_agg(format('DO $$BEGIN RAISE EXCEPTION ''tap: error %s''; END$$', g)))
       AS failed3 FROM generate_series(1, 17) g \gset
SELECT is(opsflags.errors_last_hour() - :e2, 17::bigint, 'errors_last_hour() grew by exactly 17 more errors');

-- This session's caught errors (throws_ok) are not reports.
SELECT opsflags.errors_last_hour() AS e3 \gset
SELECT throws_ok('SELECT 1 / 0', '22012', NULL, 'a division by zero, caught by throws_ok') ;
SELECT is(opsflags.errors_last_hour() - :e3, 0::bigint, 'an error caught in this session is not counted');

-- A FATAL of another backend counts too.
SELECT opsflags.errors_last_hour() AS e4 \gset
SELECT pid AS e_pid FROM dblink('e', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT ok(pg_terminate_backend(:e_pid, 10000), 'session e terminated (FATAL) and gone') ;
SELECT is(opsflags.errors_last_hour() - :e4, 1::bigint, 'errors_last_hour() counts the FATAL of the terminated backend');
SELECT dblink_disconnect('e') AS x \gset

-------------------------------------------------------------------------------
-- g. run_startup_checks(): every failure at once
-------------------------------------------------------------------------------
SELECT is(opsflags.run_startup_checks(),
          '{"success": true, "errors": [], "checks": {"database": true, "settings": true, "tables": true}}'::jsonb,
          'startup checks with nothing required and every table present: success');

SET LOCAL application_name = '';
SET LOCAL opsflags.required_tables = 'opsflags.environments, pg_catalog.pg_class, tap_missing_a, public.tap_missing_b, tap_no_schema.tap_missing_c';
SET LOCAL opsflags.required_settings = 'work_mem, opsflags.environment, opsflags.tap_no_such_setting, application_name';
SELECT opsflags.run_startup_checks() AS rsc \gset
SELECT is((:'rsc'::jsonb) -> 'success', 'false'::jsonb, '3 missing tables + 2 empty settings: success false');
SELECT is(jsonb_array_length((:'rsc'::jsonb) -> 'errors'), 5, '3 missing tables + 2 empty settings: 5 errors, all at once');
SELECT is((:'rsc'::jsonb) -> 'checks', '{"database": true, "settings": false, "tables": false}'::jsonb,
          '3 missing tables + 2 empty settings: checks database true, settings false, tables false');
SELECT is((SELECT array_agg(n ORDER BY n) FROM unnest(ARRAY['tap_missing_a', 'tap_missing_b', 'tap_missing_c',
                                                          'opsflags.tap_no_such_setting', 'application_name']) n
           WHERE EXISTS (SELECT 1 FROM jsonb_array_elements_text((:'rsc'::jsonb) -> 'errors') e
                         WHERE strpos(e, n) > 0)),
          ARRAY['application_name', 'opsflags.tap_no_such_setting', 'tap_missing_a', 'tap_missing_b', 'tap_missing_c'],
          'each missing table and setting is named in an error');
SELECT is((SELECT count(*)::int FROM jsonb_array_elements_text((:'rsc'::jsonb) -> 'errors') e
           WHERE e ~ '(environments|pg_class|work_mem|"opsflags\.environment")'), 0,
          'present tables and non-empty settings are not reported');

SET LOCAL opsflags.required_tables = '';
SELECT is(opsflags.run_startup_checks() -> 'checks', '{"database": true, "settings": false, "tables": true}'::jsonb,
          'only settings missing: tables true, settings false');
SELECT is(jsonb_array_length(opsflags.run_startup_checks() -> 'errors'), 2, 'only settings missing: 2 errors');
SET LOCAL opsflags.required_settings = '';
SET LOCAL opsflags.required_tables = 'tap_missing_a, public.tap_missing_b, tap_no_schema.tap_missing_c';
SELECT is(opsflags.run_startup_checks() -> 'checks', '{"database": true, "settings": true, "tables": false}'::jsonb,
          'only tables missing: settings true, tables false');
SELECT is(jsonb_array_length(opsflags.run_startup_checks() -> 'errors'), 3, 'only tables missing: 3 errors');

-- One of opsflags' own tables missing (renamed in a savepoint; observations in
-- psql variables, as the rollback to the savepoint undoes pgTAP's bookkeeping).
SET LOCAL opsflags.required_tables = '';
SAVEPOINT own_table;
ALTER TABLE opsflags.system_health RENAME TO tap_system_health_renamed;
SELECT opsflags.run_startup_checks() AS rsc_own \gset
ROLLBACK TO SAVEPOINT own_table;
SELECT is((:'rsc_own'::jsonb) -> 'checks' -> 'tables', 'false'::jsonb, 'opsflags.system_health missing: tables false');
SELECT ok(jsonb_array_length((:'rsc_own'::jsonb) -> 'errors') = 1
          AND (:'rsc_own'::jsonb) -> 'errors' ->> 0 ~ 'system_health',
          'opsflags.system_health missing: one error that names it');

SET LOCAL application_name = 'tap_health';
SET LOCAL opsflags.required_tables = 'opsflags.environments, pg_catalog.pg_class';
SET LOCAL opsflags.required_settings = 'work_mem, application_name';
SELECT is(opsflags.run_startup_checks(),
          '{"success": true, "errors": [], "checks": {"database": true, "settings": true, "tables": true}}'::jsonb,
          'every required table and setting present: success true, no error');

SELECT * FROM finish();
ROLLBACK;
