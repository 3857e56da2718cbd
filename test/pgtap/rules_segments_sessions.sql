-- test/pgtap/rules_segments_sessions.sql: nested segments across statements
-- and sessions.  A flag targets segment A, whose rules name segment B:
-- when B changes (in this session, or committed by another), the flag sees
-- it at the next statement, also a flag loaded after A was cached.  Two
-- transactions that would form a cycle together (B's rules name C while
-- C's rules are set to name B) are serialized: the second waits for the
-- first and is refused (at REPEATABLE READ, with a serialization failure).
--
-- Session A is this psql session; sessions B and C are dblink connections.
-- Everything lives under tap.rsgs.* and is committed (the other sessions
-- must see it), so the file removes it at the start (leftovers of an
-- interrupted run) and at the end.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.rsgs.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.rsgs.%';

SELECT plan(16);

SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_rsgs_b')) AS connected \gset
SELECT dblink_connect('c', pg_temp.tap_conninfo(app => 'tap_rsgs_c')) AS connected \gset
CREATE FUNCTION pg_temp.b(command text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', command) $$;
CREATE FUNCTION pg_temp.b_enabled(flag_key text, ctx jsonb) RETURNS boolean
LANGUAGE sql AS $$
  SELECT v FROM dblink('b', format('SELECT opsflags.feature_enabled(%L, %L::jsonb)', flag_key, ctx)) AS t(v boolean)
$$;
SELECT pg_temp.b($$SET opsflags.environment = 'production'$$) AS x \gset

SELECT opsflags.create_segment('tap.rsgs.b', 'nested', rules => '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]') IS NOT NULL AS x \gset
SELECT opsflags.create_segment('tap.rsgs.a', 'outer', rules => '[{"id": "b", "clauses": [{"op": "segment_match", "values": ["tap.rsgs.b"]}]}]') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.rsgs.f') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.rsgs.g') IS NOT NULL AS x \gset
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}',
    rules = '[{"id": "a", "segments": ["tap.rsgs.a"]}]'
WHERE flag_id IN (opsflags.flag_id('tap.rsgs.f'), opsflags.flag_id('tap.rsgs.g')) AND environment = 'production';

-- f loads A and B; g is loaded afterwards, with A already cached.
SELECT is(opsflags.feature_enabled('tap.rsgs.f', '{"key": "u1", "country": "DE"}'::jsonb), true,
          'A: f targets A, A names B (country DE): in (now cached)');
SELECT is(opsflags.feature_enabled('tap.rsgs.g', '{"key": "u1", "country": "DE"}'::jsonb), true,
          'A: g, loaded with A cached: in');
SELECT is(pg_temp.b_enabled('tap.rsgs.g', '{"key": "u1", "country": "DE"}'), true,
          'B: g: in (now cached in B)');

-- B changes in this session: both flags see it at the next statement.
SELECT opsflags.update_segment('tap.rsgs.b', rules => '[{"id": "fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]') AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.rsgs.f', '{"key": "u1", "country": "DE"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.f', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.g', '{"key": "u1", "country": "DE"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.g', '{"key": "u1", "country": "FR"}'::jsonb)],
          ARRAY[false, true, false, true], 'A changes B: f and g see it at the next statement');
SELECT is(pg_temp.b_enabled('tap.rsgs.g', '{"key": "u1", "country": "FR"}'), true,
          'A changes B: session B sees it too');

-- B changes in session B (committed): A's next statement sees it.
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "us", "clauses": [{"attribute": "country", "op": "in", "values": ["US"]}], "exclude": false}, {"id": "no-fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "exclude": true}]' WHERE segment_key = 'tap.rsgs.b'$$) AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.rsgs.f', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.f', '{"key": "u1", "country": "US"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.g', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rsgs.g', '{"key": "u1", "country": "US"}'::jsonb)],
          ARRAY[false, true, false, true], 'session B changes B: f and g see it at A''s next statement');

-- A cycle formed by two transactions: B's transaction has C name B (not
-- committed); session C sets B's rules to name C: it waits, then is refused.
SELECT opsflags.create_segment('tap.rsgs.c', 'other') IS NOT NULL AS x \gset
CREATE FUNCTION pg_temp.wait_for_advisory(app text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        IF EXISTS (SELECT FROM pg_stat_activity WHERE application_name = app AND wait_event_type = 'Lock'
                   AND wait_event = 'advisory') THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "b", "segments": ["tap.rsgs.b"]}]' WHERE segment_key = 'tap.rsgs.c'$$) AS x \gset
SELECT dblink_send_query('c', $$UPDATE opsflags.user_segments SET rules = '[{"id": "c", "clauses": [{"op": "segment_match", "values": ["tap.rsgs.c"]}]}]' WHERE segment_key = 'tap.rsgs.b'$$) AS sent \gset
SELECT ok(pg_temp.wait_for_advisory('tap_rsgs_c'), 'C''s write naming C waits for B''s transaction');
SELECT pg_temp.b('COMMIT') AS x \gset
SELECT is((SELECT count(*)::int FROM dblink_get_result('c', false) AS t(r text)), 0, 'C''s write fails once B commits');
SELECT matches(dblink_error_message('c'), 'segment rules would form a cycle: tap\.rsgs\.b -> tap\.rsgs\.c -> tap\.rsgs\.b',
               'C''s write is refused: it names the cycle');
SELECT is((SELECT r FROM dblink_get_result('c') AS t(r text)), NULL, 'C has no more results');
SELECT is((SELECT rules -> 0 ->> 'id' FROM opsflags.user_segments WHERE segment_key = 'tap.rsgs.b'), 'us',
          'B''s rules are as they were: no cycle');

-- Without a cycle, the second write waits and then succeeds.
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[]' WHERE segment_key = 'tap.rsgs.c'$$) AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "b", "segments": ["tap.rsgs.b"]}]' WHERE segment_key = 'tap.rsgs.a'$$) AS x \gset
SELECT dblink_send_query('c', $$UPDATE opsflags.user_segments SET rules = '[{"id": "c", "segments": ["tap.rsgs.c"]}]' WHERE segment_key = 'tap.rsgs.b'$$) AS sent \gset
SELECT pg_temp.wait_for_advisory('tap_rsgs_c') AS x \gset
SELECT pg_temp.b('COMMIT') AS x \gset
SELECT is((SELECT r FROM dblink_get_result('c') AS t(r text)), 'UPDATE 1', 'without a cycle, C''s write succeeds once B commits');
SELECT is((SELECT r FROM dblink_get_result('c') AS t(r text)), NULL, 'C has no more results');

-- At REPEATABLE READ, C's snapshot predates B's commit: C's write is not
-- checked against what it cannot see, it fails with a serialization
-- failure.
SELECT opsflags.create_segment('tap.rsgs.x', 'x') IS NOT NULL AS x \gset
SELECT opsflags.create_segment('tap.rsgs.y', 'y') IS NOT NULL AS x \gset
SELECT dblink_exec('c', 'BEGIN ISOLATION LEVEL REPEATABLE READ') AS x \gset
SELECT dblink_exec('c', 'DO $do$BEGIN PERFORM count(*) FROM opsflags.user_segments; END$do$') AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "y", "segments": ["tap.rsgs.y"]}]' WHERE segment_key = 'tap.rsgs.x'$$) AS x \gset
SELECT is(dblink_exec('c', $$UPDATE opsflags.user_segments SET rules = '[{"id": "x", "segments": ["tap.rsgs.x"]}]' WHERE segment_key = 'tap.rsgs.y'$$, false),
          'ERROR', 'REPEATABLE READ: C''s write naming a segment changed since its snapshot fails');
SELECT matches(dblink_error_message('c'), 'could not serialize access', '... with a serialization failure');
SELECT dblink_exec('c', 'ROLLBACK') AS x \gset
SELECT is((SELECT rules FROM opsflags.user_segments WHERE segment_key = 'tap.rsgs.y'), '[]', 'y''s rules are as they were: no cycle');

SELECT dblink_disconnect('c') AS x \gset
SELECT dblink_disconnect('b') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.rsgs.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.rsgs.%';
RESET opsflags.environment;

SELECT * FROM finish();
