-- test/pgtap/no_preload/no_preload.sql: opsflags on a server WITHOUT
-- shared_preload_libraries: every SQL function still
-- answers, and what needs preloading says so instead of failing.
--
-- scripts/test.sh runs this directory's files against a second throwaway
-- cluster started with OPSFLAGS_NO_PRELOAD=1, in a database with pgtap and
-- opsflags.  NOTICEs and WARNINGs cannot be caught in PL/pgSQL, so the calls
-- whose message matters run in a second psql (backquotes of \set; psql is
-- $OPSFLAGS_TEST_PSQL, else the one on PATH), connected like this session,
-- and its output (stdout and stderr) is matched.  The same way, each SQL
-- function is also called as the first thing a new session does: the library
-- is then not loaded yet (nothing preloaded it), and must still answer.
\ir ../setup.inc

\getenv psql_bin OPSFLAGS_TEST_PSQL
\if :{?psql_bin}
\else
\set psql_bin psql
\endif

SET opsflags.environment = 'production';
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.np.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap.np.%' OR config_key = 'system.maintenance_mode';
DROP TABLE IF EXISTS public.tap_np_writes;
DROP ROLE IF EXISTS tap_np_writer;

SELECT plan(51);

SELECT is(current_setting('shared_preload_libraries'), '', 'this server has no shared_preload_libraries');

-------------------------------------------------------------------------------
-- a. Flags and configuration
-------------------------------------------------------------------------------
SELECT ok(opsflags.create_flag('tap.np.flag', 'no-preload flag') IS NOT NULL, 'create_flag works');
SELECT is(opsflags.feature_enabled('tap.np.flag'), false, 'feature_enabled: a new flag is off');
SELECT opsflags.toggle_flag('tap.np.flag', true) AS x \gset
SELECT is(opsflags.feature_enabled('tap.np.flag', 'u1'), true, 'feature_enabled after toggle_flag(on): true');
SELECT is(opsflags.feature_enabled('tap.np.no-such-flag'), false, 'feature_enabled of an unknown flag: false');
SELECT is(opsflags.flag_cache_stats() ->> 'per_flag_invalidation', 'false',
          'flag_cache_stats: no per-flag invalidation without shared memory');
SELECT opsflags.flag_cache_stats() AS np_stats \gset
SELECT opsflags.toggle_flag('tap.np.flag', false) AS x \gset
SELECT is(opsflags.feature_enabled('tap.np.flag', 'u1'), false, 'feature_enabled after toggle_flag(off): false');
SELECT cmp_ok((opsflags.flag_cache_stats() ->> 'resets')::int, '>', (:'np_stats'::jsonb ->> 'resets')::int,
              'a change empties the whole flag cache at the next statement');
SELECT opsflags.toggle_flag('tap.np.flag', true) AS x \gset
SELECT opsflags.config_set('tap.np.key', '{"a": 1}') AS x \gset
SELECT is(opsflags.config_get('tap.np.key'), '{"a": 1}'::jsonb, 'config_set then config_get (environment all)');
SELECT opsflags.config_set('tap.np.key', '"prod"', environment => 'production') AS x \gset
SELECT is(opsflags.config_get('tap.np.key'), '"prod"'::jsonb, 'config_get: the environment''s value wins');
SELECT is(opsflags.config_get('tap.np.key', 'staging'), '{"a": 1}'::jsonb, 'config_get: else the value for all');

-------------------------------------------------------------------------------
-- b. Health
-------------------------------------------------------------------------------
SELECT opsflags.health_status() AS hs \gset
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'hs'::jsonb) k),
          ARRAY['checks', 'commit_sha', 'components', 'status', 'timestamp', 'version'],
          'health_status: keys status, timestamp, version, commit_sha, components, checks');
SELECT ok(:'hs'::jsonb ->> 'status' IN ('healthy', 'degraded', 'unhealthy'), 'health_status: status in the set');
SELECT is((SELECT count(*)::int
           FROM unnest(ARRAY['database', 'cache', 'storage', 'queue']) c
           WHERE (:'hs'::jsonb -> 'components' -> c ->> 'status') IN ('healthy', 'degraded', 'unhealthy')
             AND jsonb_typeof(:'hs'::jsonb -> 'components' -> c -> 'latencyMs') = 'number'
             AND (:'hs'::jsonb -> 'components' -> c ->> 'latencyMs')::numeric >= 0
             AND jsonb_typeof(:'hs'::jsonb -> 'components' -> c -> 'message') = 'string'
             AND (:'hs'::jsonb -> 'checks' ->> c) = CASE :'hs'::jsonb -> 'components' -> c ->> 'status'
                                                      WHEN 'healthy' THEN 'ok' WHEN 'degraded' THEN 'degraded'
                                                      ELSE 'down' END), 4,
          'health_status: database, cache, storage, queue each with status, latencyMs, message and a matching check');
SELECT is(:'hs'::jsonb -> 'components' -> 'database' ->> 'status', 'healthy', 'health_status: database healthy');
SELECT is(opsflags.health_aggregate(ARRAY['healthy', 'degraded', 'unhealthy']), 'unhealthy', 'health_aggregate works');

SELECT is(opsflags.errors_last_hour(), NULL::bigint, 'errors_last_hour() is NULL');

SELECT count(*) AS sh_before FROM opsflags.system_health \gset
SELECT opsflags.check_system_health() AS csh \gset
SELECT ok(:'csh'::jsonb ->> 'status' IN ('healthy', 'warning', 'degraded'), 'check_system_health: status in the set');
SELECT cmp_ok((:'csh'::jsonb -> 'database' ->> 'size_mb')::numeric, '>', 0::numeric, 'check_system_health: database.size_mb > 0');
SELECT ok(:'csh'::jsonb -> 'database' ? 'connections', 'check_system_health: database.connections');
SELECT is(:'csh'::jsonb -> 'errors_last_hour', 'null'::jsonb, 'check_system_health: errors_last_hour null');
SELECT ok(:'csh'::jsonb ? 'version' AND :'csh'::jsonb ? 'timestamp', 'check_system_health: version and timestamp');
SELECT is((SELECT count(*) FROM opsflags.system_health) - :sh_before, 1::bigint, 'check_system_health: one row inserted');
SELECT ok((SELECT errors_last_hour IS NULL FROM opsflags.system_health ORDER BY id DESC LIMIT 1),
          'check_system_health: its row has errors_last_hour NULL');

SELECT is(opsflags.run_startup_checks() -> 'success', 'true'::jsonb, 'run_startup_checks: success');

-------------------------------------------------------------------------------
-- c. A new session's first call, the library not loaded yet
-------------------------------------------------------------------------------
-- The second psql's command line, each argument quoted for the shell.
CREATE FUNCTION pg_temp.sh(arg text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '''' || replace(arg, '''', '''\''''') || '''' $$;
SELECT format('%s -X -q -At -v ON_ERROR_STOP=1 -h %s -p %s -U %s -d %s', pg_temp.sh(:'psql_bin'),
              pg_temp.sh(:'HOST'), pg_temp.sh(:'PORT'), pg_temp.sh(:'USER'), pg_temp.sh(:'DBNAME')) AS np_psql \gset

\set np_sql 'SELECT opsflags.feature_enabled(''tap.np.flag'', ''u1'')'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, 't', 'new session, first call: feature_enabled answers');
\set np_sql 'SELECT opsflags.config_get(''tap.np.key'', ''staging'')'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, '{"a": 1}', 'new session, first call: config_get answers');
\set np_sql 'SELECT opsflags.flag_cache_stats() ->> ''per_flag_invalidation'''
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, 'false', 'new session, first call: flag_cache_stats answers');
\set np_sql 'SELECT opsflags.config_set(''tap.np.fresh'', ''"fresh"'')'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, '', 'new session, first call: config_set works (no output, no error)');
SELECT is(opsflags.config_get('tap.np.fresh'), '"fresh"'::jsonb, 'new session, first call: config_set stored the value');
\set np_sql 'SELECT opsflags.health_status() ->> ''status'''
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT matches(:'np_out'::text, '^(healthy|degraded|unhealthy)$', 'new session, first call: health_status answers');
\set np_sql 'SELECT opsflags.check_system_health() ->> ''status'''
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT matches(:'np_out'::text, '^(healthy|warning|degraded)$', 'new session, first call: check_system_health answers');
\set np_sql 'SELECT opsflags.run_startup_checks() ->> ''success'''
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, 'true', 'new session, first call: run_startup_checks answers');
\set np_sql 'SELECT opsflags.is_maintenance_mode()'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, 'f', 'new session, first call: is_maintenance_mode answers');
\set np_sql 'SELECT opsflags.record_deployment(''7.0.1-fresh'', ''development'') IS NOT NULL'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT is(:'np_out'::text, 't', 'new session, first call: record_deployment works');
SELECT is(opsflags.config_get('app_version', 'development'), '"7.0.1-fresh"'::jsonb,
          'new session, first call: record_deployment set app_version');

-------------------------------------------------------------------------------
-- d. What needs preloading says so
-------------------------------------------------------------------------------
\set np_sql 'SELECT coalesce(opsflags.errors_last_hour()::text, ''is null'')'
\set np_out `:np_psql -c :'np_sql' 2>&1`
SELECT matches(:'np_out'::text, '(^|\n)is null($|\n)', 'second psql: errors_last_hour() is NULL there too');
SELECT matches(:'np_out'::text, 'NOTICE:[^\n]*errors_last_hour[^\n]*shared_preload_libraries',
               'errors_last_hour() raises a NOTICE that it needs shared_preload_libraries');

SELECT is(opsflags.maintenance_enforced(), false, 'maintenance_enforced() is false');
SELECT is(opsflags.is_maintenance_mode(), false, 'is_maintenance_mode() is false');

CREATE ROLE tap_np_writer NOLOGIN;
CREATE TABLE public.tap_np_writes (i int);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tap_np_writes TO tap_np_writer;

-- (maintenance_enforced() first loads the library, so that these test the
-- warning, not a new session's first call)
\set np_sql 'SELECT opsflags.set_maintenance_mode(true)'
\set np_out `:np_psql -c 'SELECT opsflags.maintenance_enforced()' -c :'np_sql' 2>&1`
SELECT matches(:'np_out'::text, 'WARNING:[^\n]*not enforced', 'set_maintenance_mode(true) warns that maintenance mode is not enforced');
SELECT matches(:'np_out'::text, 'shared_preload_libraries', 'the warning says enforcement needs shared_preload_libraries');
SELECT is(opsflags.is_maintenance_mode(), true, 'set_maintenance_mode(true) is recorded: is_maintenance_mode() true');

SET ROLE tap_np_writer;
SELECT lives_ok('INSERT INTO public.tap_np_writes VALUES (1), (2)', 'maintenance mode on, not enforced: a plain role can INSERT');
SELECT lives_ok('UPDATE public.tap_np_writes SET i = i + 10', 'maintenance mode on, not enforced: a plain role can UPDATE');
RESET ROLE;
SELECT is((SELECT array_agg(i ORDER BY i) FROM public.tap_np_writes), ARRAY[11, 12], 'the writes happened');

\set np_sql 'SELECT opsflags.set_maintenance_mode(false)'
\set np_out `:np_psql -c 'SELECT opsflags.maintenance_enforced()' -c :'np_sql' 2>&1`
SELECT doesnt_match(:'np_out'::text, 'ERROR', 'set_maintenance_mode(false) works');
SELECT is(opsflags.is_maintenance_mode(), false, 'maintenance mode off again');

-------------------------------------------------------------------------------
-- e. Deployments
-------------------------------------------------------------------------------
SELECT opsflags.record_deployment('7.0.0-np', 'staging', commit_sha => 'abcdef1') AS np_dep \gset
SELECT is(opsflags.config_get('app_version', 'staging'), '"7.0.0-np"'::jsonb, 'record_deployment sets app_version');
SELECT is((opsflags.get_latest_deployment('staging')).id, :'np_dep'::uuid, 'get_latest_deployment is the new one');
SELECT is(opsflags.health_status() ->> 'version', (SELECT extversion FROM pg_extension WHERE extname = 'opsflags'),
          'health_status version (production has no app_version): the extension''s');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
DELETE FROM opsflags.deployment_history WHERE id = :'np_dep' OR version = '7.0.1-fresh';
DELETE FROM opsflags.app_config WHERE config_key IN ('app_version', 'commit_sha') AND environment IN ('staging', 'development');
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap.np.%' OR config_key = 'system.maintenance_mode';
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.np.%';
DROP TABLE public.tap_np_writes;
DROP ROLE tap_np_writer;
RESET opsflags.environment;

SELECT * FROM finish();
