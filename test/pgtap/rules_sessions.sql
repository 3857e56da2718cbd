-- test/pgtap/rules_sessions.sql: a change of a flag's rules, or of a
-- segment's rules, committed by session B is seen by session A's next
-- statement; while B has not committed, A keeps the committed rules (B
-- sees its own); a rolled-back change is never seen.  Two add_rule calls
-- at once (B's transaction open, C's call waiting for it) lose neither
-- rule.
--
-- Session A is this psql session; session B is a dblink connection.  The
-- flag and segment live under tap.rses.* and are committed (B must see
-- them), so the file removes them at the start (leftovers of an
-- interrupted run) and at the end.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.rses.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.rses.%';

SELECT plan(15);

SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_rules_sessions_b')) AS connected \gset
CREATE FUNCTION pg_temp.b(command text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', command) $$;
CREATE FUNCTION pg_temp.b_enabled(flag_key text, ctx jsonb) RETURNS boolean
LANGUAGE sql AS $$
  SELECT v FROM dblink('b', format('SELECT opsflags.feature_enabled(%L, %L::jsonb)', flag_key, ctx)) AS t(v boolean)
$$;
-- Evaluate an expression in B for its side effects (dblink_exec runs no SELECT).
CREATE FUNCTION pg_temp.b_perform(expr text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', 'DO $do$BEGIN PERFORM ' || expr || '; END$do$') $$;
SELECT pg_temp.b($$SET opsflags.environment = 'production'$$) AS x \gset

SELECT opsflags.create_flag('tap.rses.f') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.rses.f', '{"is_enabled": true, "fallthrough": {"off": true},
    "rules": [{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]}') AS x \gset
SELECT opsflags.create_segment('tap.rses.seg', 'sessions', '[]', '[]', NULL, '[]') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.rses.g') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.rses.g', '{"is_enabled": true, "fallthrough": {"off": true},
    "rules": [{"id": "seg", "segments": ["tap.rses.seg"]}]}') AS x \gset

SELECT is(opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "FR"}'::jsonb), false,
          'A: rule country in [DE]: a context from FR is out (now cached)');

-- committed by B: seen by A's next statement
SELECT pg_temp.b_perform($$opsflags.update_flag('tap.rses.f', '{"rules": [{"id": "fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]}')$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "FR"}'::jsonb), true,
          'B commits rule country in [FR]: A''s next statement has the context from FR in');

-- not yet committed by B: A keeps the committed rules, B sees its own
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.feature_flag_configs SET rules = '[{"id": "us", "clauses": [{"attribute": "country", "op": "in", "values": ["US"]}]}]'
                   WHERE flag_id = opsflags.flag_id('tap.rses.f') AND environment = 'production'$$) AS x \gset
SELECT is(pg_temp.b_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'), true,
          'B, in its transaction: its own rule country in [US] holds');
SELECT is(ARRAY[opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'::jsonb)],
          ARRAY[true, false], 'A while B has not committed: the committed rule (FR in, US out)');
SELECT pg_temp.b('COMMIT') AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'::jsonb)],
          ARRAY[false, true], 'B commits: A''s next statement has the new rule (FR out, US in)');

-- rolled back by B: never seen
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b_perform($$opsflags.remove_rule('tap.rses.f', 'us')$$) AS x \gset
SELECT is(pg_temp.b_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'), false,
          'B, in its transaction: remove_rule took the rule out');
SELECT is(opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'::jsonb), true,
          'A while B has not committed: the rule is still there');
SELECT pg_temp.b('ROLLBACK') AS x \gset
SELECT is(opsflags.feature_enabled('tap.rses.f', '{"key": "u1", "country": "US"}'::jsonb), true,
          'B rolls back: A still has the rule');

-- a segment's rules
SELECT is(opsflags.feature_enabled('tap.rses.g', '{"key": "u1", "plan": "pro"}'::jsonb), false,
          'A: the segment has no rules: a pro context is out (now cached)');
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b_perform($$opsflags.update_segment('tap.rses.seg', rules => '[{"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]')$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.rses.g', '{"key": "u1", "plan": "pro"}'::jsonb), false,
          'A while B has not committed the segment''s rule: still out');
SELECT is(pg_temp.b_enabled('tap.rses.g', '{"key": "u1", "plan": "pro"}'), true,
          'B, in its transaction: in by the segment''s new rule');
SELECT pg_temp.b('COMMIT') AS x \gset
SELECT is(opsflags.feature_enabled('tap.rses.g', '{"key": "u1", "plan": "pro"}'::jsonb), true,
          'B commits the segment''s rule: A''s next statement has the pro context in');

-- add_rule from B (not committed) and from C at once: C waits for B's
-- row lock, then adds its rule to B's.
SELECT dblink_connect('c', pg_temp.tap_conninfo(app => 'tap_rules_sessions_c')) AS connected \gset
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b_perform($$opsflags.add_rule('tap.rses.f', '{"id": "from-b"}')$$) AS x \gset
SELECT dblink_send_query('c', $$SELECT opsflags.add_rule('tap.rses.f', '{"id": "from-c"}', 'production')$$) AS sent \gset
CREATE FUNCTION pg_temp.wait_for_lock(app text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        IF EXISTS (SELECT FROM pg_stat_activity WHERE application_name = app AND wait_event_type = 'Lock') THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT ok(pg_temp.wait_for_lock('tap_rules_sessions_c'), 'C''s add_rule waits for B''s transaction');
SELECT pg_temp.b('COMMIT') AS x \gset
SELECT is((SELECT r FROM dblink_get_result('c') AS t(r text)), '', 'C''s add_rule completes once B commits');
SELECT is(jsonb_path_query_array(opsflags.get_flag('tap.rses.f'), '$.config.rules[*].id'), '["us", "from-b", "from-c"]',
          'both rules are there: neither add_rule lost the other''s');
SELECT dblink_disconnect('c') AS x \gset

SELECT dblink_disconnect('b') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.rses.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.rses.%';
RESET opsflags.environment;

SELECT * FROM finish();
