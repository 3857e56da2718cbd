-- test/publish.sql: with opsflags.publish_to_memcached on, each committed flag
-- change writes every environment's document to memcached
-- (opsflags:flags:<environment>); a rolled-back change publishes nothing; a
-- memcached outage does not fail the transaction and the next change
-- publishes again.
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

SELECT plan(7);
SET opsflags.publish_to_memcached = on;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.pub.%';

SELECT opsflags.create_flag('tap.pub.flag', 'Published') IS NOT NULL AS x \gset
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'false'::jsonb,
          'a new flag is published, off, in every environment');
SELECT opsflags.toggle_flag('tap.pub.flag', true, 'staging') IS NULL AS x \gset
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'true'::jsonb,
          'a committed toggle is published');
SELECT is(opsflags.published_flags('staging'), opsflags.flags_for_environment('staging'),
          'the published document is flags_for_environment()');

BEGIN;
SELECT opsflags.toggle_flag('tap.pub.flag', false, 'staging') IS NULL AS x \gset
ROLLBACK;
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'true'::jsonb,
          'a rolled-back change publishes nothing');

-- memcached down: the transaction still commits.
ALTER SYSTEM SET opsflags.memcached_servers = :'down';
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'down') \gexec
SET client_min_messages = error;
SELECT opsflags.toggle_flag('tap.pub.flag', false, 'staging') IS NULL AS x \gset
SET client_min_messages = warning;
SELECT is((SELECT c.is_enabled FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
           WHERE f.flag_key = 'tap.pub.flag' AND c.environment = 'staging'), false,
          'with memcached down the change commits anyway');

-- Back up: the next change publishes the current state.
ALTER SYSTEM RESET opsflags.memcached_servers;
SELECT pg_reload_conf() AS x \gset
SELECT pg_temp.wait_for(:'mc') \gexec
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'true'::jsonb,
          'while memcached was down, the old document stayed');
SELECT opsflags.update_feature_flag('tap.pub.flag', '{"description": "touched"}') IS NULL AS x \gset
SELECT is(opsflags.published_flags('staging') -> 'tap.pub.flag' -> 'value', 'false'::jsonb,
          'the next change publishes the current state again');

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.pub.%';
RESET opsflags.publish_to_memcached;
SELECT * FROM finish();
