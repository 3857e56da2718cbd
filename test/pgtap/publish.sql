-- test/pgtap/publish.sql: publishing is a property of the database.  With config
-- flags.publish_to_memcached on, every committed change to the flag tables,
-- whichever session made it and whatever that session has set, leads to
-- every environment's flags_for_environment() document in memcached
-- (opsflags:flags:<environment>) within moments; concurrent committers leave
-- the latest state there; an uncommitted or rolled-back change is never
-- published; a memcached outage does not fail the transaction and the next
-- change publishes again.  The session setting opsflags.publish_to_memcached
-- keeps working.
\ir setup.inc

\getenv mc OPSFLAGS_TEST_MEMCACHED
\getenv down OPSFLAGS_TEST_DOWN

-- Top-level statements until this session sees the reloaded setting.
CREATE FUNCTION pg_temp.wait_for(target text) RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT format('DO $w$BEGIN IF current_setting(%L) IS DISTINCT FROM %L THEN PERFORM pg_sleep(0.05); END IF; END$w$',
                'opsflags.memcached_servers', target)
  FROM generate_series(1, 200)
$$;

-- Poll (bounded, 10 s) until memcached holds the environment's current
-- document, as this session's next statements see the tables.  "extra" must
-- hold as well (a condition on the published document d).
CREATE FUNCTION pg_temp.published_current(env text, extra text DEFAULT 'true') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
    ok boolean;
BEGIN
    LOOP
        EXECUTE format('SELECT d IS NOT DISTINCT FROM opsflags.flags_for_environment(%L) AND (%s)
                        FROM opsflags.published_flags(%L) AS d', env, extra, env) INTO ok;
        IF ok THEN RETURN true; END IF;
        IF clock_timestamp() > deadline THEN RETURN false; END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;

-- Run a statement in a dblink session (committed there at once unless a
-- transaction is open there); a SELECT returns one column.
CREATE FUNCTION pg_temp.run_in(conn text, stmt text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF stmt ~* '^\s*SELECT' THEN
        PERFORM * FROM dblink(conn, stmt) AS t(x text);
    ELSE
        PERFORM dblink_exec(conn, stmt);
    END IF;
END $$;

SELECT plan(16);
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.pub.%';
SELECT opsflags.config_delete('flags.publish_to_memcached') AS x \gset

-- Two plain sessions: nothing set in either.
SELECT dblink_connect('a', pg_temp.tap_conninfo()) \gset
SELECT dblink_connect('b', pg_temp.tap_conninfo()) \gset

-- 1. The database switch, from another session's commit.
SELECT pg_temp.run_in('b', $$SELECT opsflags.config_set('flags.publish_to_memcached', 'true')$$);
SELECT pg_temp.run_in('a', $$SELECT opsflags.create_flag('tap.pub.flag', 'Published')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'false'$$),
          'a flag created by a session with nothing set is published, off');
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'true'$$),
          'a toggle committed by a session with nothing set is published');
SELECT is((opsflags.published_flags('staging') -> 'tap.pub.flag' ->> 'version')::int,
          (SELECT c.version FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
           WHERE f.flag_key = 'tap.pub.flag' AND c.environment = 'staging'),
          'the published version is the committed version');
SELECT ok(pg_temp.published_current('production') AND pg_temp.published_current('development'),
          'every environment is published');

-- 2. A session that turned the session setting off is published all the same.
SELECT pg_temp.run_in('a', 'SET opsflags.publish_to_memcached = off');
SELECT pg_temp.run_in('a', $$SELECT opsflags.update_flag('tap.pub.flag', '{"enabled_percentage": 100}', 'staging')$$);
SELECT ok(pg_temp.published_current('staging'),
          'a change from a session with opsflags.publish_to_memcached off is published');
SELECT pg_temp.run_in('a', 'RESET opsflags.publish_to_memcached');

-- 3. Plain DML by an admin (no flag API), and another table: segments.
SELECT pg_temp.run_in('b', $$UPDATE opsflags.feature_flag_configs c SET is_enabled = false
                              FROM opsflags.feature_flags f
                              WHERE f.id = c.flag_id AND f.flag_key = 'tap.pub.flag' AND c.environment = 'staging'$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'false'$$),
          'plain DML on the flag tables is published');

-- 4. Uncommitted and rolled-back changes: never in memcached.
SELECT opsflags.create_flag('tap.pub.other', 'Other') IS NOT NULL AS x \gset
SELECT pg_temp.run_in('a', 'BEGIN');
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging')$$);
SELECT pg_temp.run_in('b', $$SELECT opsflags.toggle_flag('tap.pub.other', true, 'staging')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.other' -> 'value' = 'true'$$),
          'a change committed while another transaction is open is published');
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'false'::jsonb,
          'the open transaction''s change is not');
SELECT pg_temp.run_in('a', 'ROLLBACK');
SELECT pg_temp.run_in('a', 'BEGIN');
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging')$$);
SELECT pg_temp.run_in('a', 'ROLLBACK');
SELECT pg_temp.run_in('b', $$SELECT opsflags.toggle_flag('tap.pub.other', false, 'staging')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.other' -> 'value' = 'false'
                                                 AND d -> 'tap.pub.flag' -> 'value' = 'false'$$),
          'a rolled-back change is never published');

-- 5. Concurrent committers: two sessions, 25 commits each, interleaved.
SELECT count(*) FROM (SELECT opsflags.create_flag('tap.pub.c' || i, 'Concurrent') FROM generate_series(1, 10) i) s \gset
SELECT count(*) FROM (
  SELECT dblink_send_query(s, format($q$DO $do$BEGIN
            FOR i IN 1..25 LOOP
                PERFORM opsflags.update_flag('tap.pub.c' || (i %% 10 + 1),
                                                     jsonb_build_object('enabled_percentage', %s + i), 'staging');
                COMMIT;
            END LOOP;
         END $do$$q$, CASE s WHEN 'a' THEN 0 ELSE 50 END))
  FROM unnest(ARRAY['a', 'b']) s) sent \gset
SELECT count(*) FROM dblink_get_result('a') AS t(r text) \gset
SELECT count(*) FROM dblink_get_result('a') AS t(r text) \gset
SELECT count(*) FROM dblink_get_result('b') AS t(r text) \gset
SELECT count(*) FROM dblink_get_result('b') AS t(r text) \gset
SELECT ok(pg_temp.published_current('staging'),
          'after concurrent committers, memcached holds the latest state');

-- A writer in REPEATABLE READ whose snapshot predates another session's
-- commit, and commits last: memcached still ends with both changes.
SELECT pg_temp.run_in('a', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT pg_temp.run_in('a', $$SELECT count(*) FROM opsflags.feature_flags$$);
SELECT pg_temp.run_in('b', $$SELECT opsflags.toggle_flag('tap.pub.c1', true, 'staging')$$);
SELECT ok(pg_temp.published_current('staging'), 'the other session''s commit is published');
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.c2', true, 'staging')$$);
SELECT pg_temp.run_in('a', 'COMMIT');
SELECT ok(pg_temp.published_current('staging'),
          'a repeatable-read writer committing last leaves the newest state, with both changes');

-- 6. The session setting alone (the database switch off) still publishes.
SELECT opsflags.config_delete('flags.publish_to_memcached') AS x \gset
SET opsflags.publish_to_memcached = on;
SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging') IS NULL AS x \gset
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'true'$$),
          'SET opsflags.publish_to_memcached = on publishes that session''s changes');
RESET opsflags.publish_to_memcached;
SELECT opsflags.config_set('flags.publish_to_memcached', 'true') AS x \gset

-- 7. memcached down: the transaction still commits.
ALTER SYSTEM SET opsflags.memcached_servers = :'down';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'down') \gexec
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.flag', false, 'staging')$$);
SELECT is((SELECT c.is_enabled FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
           WHERE f.flag_key = 'tap.pub.flag' AND c.environment = 'staging'), false,
          'with memcached down the change commits anyway');

-- Back up: the next change publishes the current state.
ALTER SYSTEM RESET opsflags.memcached_servers;
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'mc') \gexec
SELECT pg_temp.run_in('a', $$SELECT opsflags.update_flag('tap.pub.other', '{"description": "touched"}')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'false'$$),
          'the next change publishes the current state again');

-- 8. Switching the database switch on publishes what changed while it was off.
SELECT opsflags.config_set('flags.publish_to_memcached', 'false') AS x \gset
SELECT pg_temp.run_in('a', $$SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging')$$);
SELECT pg_temp.run_in('a', $$SELECT opsflags.config_set('flags.publish_to_memcached', 'true')$$);
SELECT ok(pg_temp.published_current('staging', $$d -> 'tap.pub.flag' -> 'value' = 'true'$$),
          'switching publishing on publishes the current state');

SELECT dblink_disconnect('a') \gset
SELECT dblink_disconnect('b') \gset
SELECT opsflags.config_delete('flags.publish_to_memcached') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.pub.%';
SELECT * FROM finish();
