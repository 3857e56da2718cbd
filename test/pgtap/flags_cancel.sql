-- test/pgtap/flags_cancel.sql: a statement cancelled in the middle of evaluating a flag
-- (statement_timeout, or pg_cancel_backend caught by a PL/pgSQL exception
-- block) leaves the session's flag cache working: the next statements see
-- changes committed elsewhere, as a pooled connection that hit a timeout
-- must.
--
-- Session B (dblink) evaluates tap.cancel.dep, whose prerequisite
-- tap.cancel.pre targets a segment.  Session L holds an ACCESS EXCLUSIVE
-- lock on opsflags.user_segments, so B's load of the prerequisite blocks
-- exactly there (after tap.cancel.dep is cached, inside the prerequisite's
-- evaluation) until the cancel arrives.  No sleeps: the timeout ends the
-- wait, and the pg_cancel_backend case polls pg_stat_activity.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.cancel.%';
DELETE FROM opsflags.user_segments WHERE segment_key = 'tap.cancel.seg';

SELECT plan(13);

SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_cancel_b')) AS x \gset
SELECT dblink_connect('l', pg_temp.tap_conninfo(app => 'tap_cancel_lock')) AS x \gset
SELECT pid AS b_pid FROM dblink('b', 'SELECT pg_backend_pid()') AS t(pid int) \gset

CREATE FUNCTION pg_temp.b_enabled(flag_key text, user_id text) RETURNS boolean
LANGUAGE sql AS $$
  SELECT v FROM dblink('b', format('SELECT opsflags.feature_enabled(%L, %L)', flag_key, user_id)) AS t(v boolean)
$$;

-- tap.cancel.pre: on for the segment's members; tap.cancel.dep: on for
-- everyone whose tap.cancel.pre is on.
SELECT opsflags.create_segment('tap.cancel.seg', 'cancel test', '["u1", "u2"]') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.cancel.pre', 'pre') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.cancel.dep', 'dep') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.cancel.pre', '{"is_enabled": true, "segments": ["tap.cancel.seg"]}') AS x \gset
SELECT opsflags.update_flag('tap.cancel.dep', '{"is_enabled": true}') AS x \gset
SELECT opsflags.add_prerequisite('tap.cancel.dep', 'tap.cancel.pre') AS x \gset
SELECT dblink_exec('b', $$SET opsflags.environment = 'production'$$) AS x \gset

-------------------------------------------------------------------------------
-- 1. statement_timeout in the middle of the prerequisite's load
-------------------------------------------------------------------------------
SELECT dblink_exec('l', 'BEGIN') AS x \gset
SELECT dblink_exec('l', 'LOCK TABLE opsflags.user_segments IN ACCESS EXCLUSIVE MODE') AS x \gset
SELECT dblink_exec('b', $$SET statement_timeout = '150ms'$$) AS x \gset
SELECT is((SELECT count(*)::int FROM dblink('b', $$SELECT opsflags.feature_enabled('tap.cancel.dep', 'u1')$$, false)
                                    AS t(v boolean)), 0,
          '1: B''s evaluation waits on the segment''s load and is cancelled');
SELECT matches(dblink_error_message('b'), 'statement timeout', '1: by its statement_timeout');
SELECT dblink_exec('l', 'ROLLBACK') AS x \gset
SELECT dblink_exec('b', 'SET statement_timeout = 0') AS x \gset

SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u1'), true, '1: B evaluates again: on for a segment member');
SELECT opsflags.toggle_flag('tap.cancel.dep', false) AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u1'), false,
          '1: A switches tap.cancel.dep off: B''s next statement sees it off (no frozen cache)');
SELECT opsflags.toggle_flag('tap.cancel.dep', true) AS x \gset
SELECT opsflags.toggle_flag('tap.cancel.pre', false) AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u1'), false,
          '1: A switches the prerequisite off: B sees tap.cancel.dep off');
SELECT opsflags.toggle_flag('tap.cancel.pre', true) AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u2'), true, '1: and on again');
-- The cache's 65,536-entry cap still applies: after 70,000 keys B's cache
-- was emptied once and holds the rest (about 2 MB; without the cap, 28 MB).
SELECT v AS x FROM dblink('b', $$SELECT count(*) FROM generate_series(1, 70000) g
                                 WHERE opsflags.feature_enabled('tap.cancel.none.' || g)$$) AS t(v bigint) \gset
SELECT cmp_ok((SELECT v FROM dblink('b', $$SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts
                                         WHERE 'opsflags flags' IN (name, ident)$$) AS t(v bigint)),
              '<', 8000000::bigint, '1: B''s flag cache still stops at 65,536 entries');

-------------------------------------------------------------------------------
-- 2. pg_cancel_backend caught by an exception block; the transaction goes on
-------------------------------------------------------------------------------
-- A new segment member makes B load the prerequisite again.
SELECT opsflags.update_segment('tap.cancel.seg', '["u1", "u2", "u3"]') AS x \gset
SELECT dblink_exec('l', 'BEGIN') AS x \gset
SELECT dblink_exec('l', 'LOCK TABLE opsflags.user_segments IN ACCESS EXCLUSIVE MODE') AS x \gset
SELECT dblink_exec('b', 'BEGIN') AS x \gset
SELECT dblink_send_query('b', $q$
  DO $do$
  BEGIN
      PERFORM opsflags.feature_enabled('tap.cancel.dep', 'u3');
      RAISE EXCEPTION 'not cancelled';
  EXCEPTION WHEN query_canceled THEN
      NULL;
  END
  $do$$q$) AS sent \gset
-- Poll (bounded) until B waits for the lock, then cancel it.
CREATE FUNCTION pg_temp.cancel_when_waiting(p int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..2000 LOOP
        IF EXISTS (SELECT FROM pg_stat_get_activity(p) a WHERE a.wait_event_type = 'Lock') THEN
            RETURN pg_cancel_backend(p);
        END IF;
        PERFORM pg_stat_clear_snapshot();
        PERFORM pg_sleep(0.005);
    END LOOP;
    RETURN false;
END
$$;
SELECT ok(pg_temp.cancel_when_waiting(:b_pid), '2: B waits on the segment''s load inside an exception block; cancelled');
SELECT is((SELECT s FROM dblink_get_result('b') AS t(s text)), 'DO', '2: the block catches the cancel');
SELECT count(*) AS x FROM dblink_get_result('b') AS t(s text) \gset
SELECT dblink_exec('l', 'ROLLBACK') AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u3'), true,
          '2: same transaction: B evaluates again (the new member is on)');
SELECT opsflags.toggle_flag('tap.cancel.dep', false) AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u3'), false,
          '2: same transaction: A''s commit switching it off is seen by B''s next statement');
SELECT dblink_exec('b', 'COMMIT') AS x \gset
SELECT opsflags.toggle_flag('tap.cancel.dep', true) AS x \gset
SELECT is(pg_temp.b_enabled('tap.cancel.dep', 'u1'), true, '2: after COMMIT, on again');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('b') AS x \gset
SELECT dblink_disconnect('l') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.cancel.%';
DELETE FROM opsflags.user_segments WHERE segment_key = 'tap.cancel.seg';
SELECT is((SELECT count(*)::int FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.cancel.%'), 0, 'cleaned up');
SELECT * FROM finish();
