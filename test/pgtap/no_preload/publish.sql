-- test/pgtap/no_preload/publish.sql: publishing to memcached on a server WITHOUT
-- shared_preload_libraries.  With config flags.publish_to_memcached on, each
-- commit starts a publisher (no shared memory to say one is already pending);
-- after a burst of commits memcached still holds the latest state.
\ir ../setup.inc

\getenv mc OPSFLAGS_TEST_MEMCACHED

-- Poll (bounded, 10 s) until memcached holds the environment's current
-- document.
CREATE FUNCTION pg_temp.published_current(env text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
    ok boolean;
BEGIN
    LOOP
        SELECT d IS NOT DISTINCT FROM opsflags.flags_for_environment(env) INTO ok
        FROM opsflags.published_flags(env) AS d;
        IF ok THEN RETURN true; END IF;
        IF clock_timestamp() > deadline THEN RETURN false; END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;

-- Top-level statements until this session sees the reloaded setting.
CREATE FUNCTION pg_temp.wait_for(target text) RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT format('DO $w$BEGIN IF current_setting(%L, true) IS DISTINCT FROM %L THEN PERFORM pg_sleep(0.05); END IF; END$w$',
                'opsflags.memcached_servers', target)
  FROM generate_series(1, 200)
$$;

SELECT plan(3);
SELECT opsflags.feature_enabled('tap.np.pub.none') AS x \gset
ALTER SYSTEM SET opsflags.memcached_servers = :'mc';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'mc') \gexec
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.np.pub.%';

SELECT is(current_setting('shared_preload_libraries'), '', 'this server has no shared_preload_libraries');

SELECT opsflags.config_set('flags.publish_to_memcached', 'true') AS x \gset
SELECT opsflags.create_flag('tap.np.pub.flag', 'Published') IS NOT NULL AS x \gset
SELECT opsflags.toggle_flag('tap.np.pub.flag', true, 'staging') IS NULL AS x \gset
SELECT ok(pg_temp.published_current('staging'), 'a committed change is published');

-- A burst: 40 commits in a row.
DO $$
BEGIN
    FOR i IN 1..40 LOOP
        PERFORM opsflags.update_flag('tap.np.pub.flag', jsonb_build_object('enabled_percentage', i), 'staging');
        COMMIT;
    END LOOP;
END $$;
SELECT ok(pg_temp.published_current('staging'), 'after a burst of commits, memcached holds the latest state');

SELECT opsflags.config_delete('flags.publish_to_memcached') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.np.pub.%';
ALTER SYSTEM RESET opsflags.memcached_servers;
SELECT pg_reload_conf() AS x \gset
SELECT * FROM finish();
