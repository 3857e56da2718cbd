-- test/pgtap/flags_environments.sql: opsflags.environment naming an environment that
-- does not exist.  SET refuses it for every role (42704); where a value
-- cannot be refused without silently evaluating in the default environment
-- instead (connection options, ALTER ROLE settings, an environment deleted
-- after SET), the session connects, every flag is off, and feature_explain
-- says UNKNOWN_ENVIRONMENT.  Roles and flags are committed (other sessions
-- log in with them) and removed at the start and at the end.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.env.%';
DELETE FROM opsflags.environments WHERE name LIKE 'tapenv%';
DROP TABLE IF EXISTS public.tap_env_guarded;
DROP ROLE IF EXISTS tap_env_app;
DROP ROLE IF EXISTS tap_env_conf;
ALTER SYSTEM RESET opsflags.environment;
SELECT pg_reload_conf() AS x \gset

SELECT plan(15);

CREATE ROLE tap_env_app LOGIN;
CREATE ROLE tap_env_conf LOGIN;
SELECT opsflags.create_flag('tap.env.f', 'f') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.env.f', '{"is_enabled": true}') AS x \gset
SELECT opsflags.update_flag('tap.env.f', '{"is_enabled": true}', 'staging') AS x \gset

CREATE FUNCTION pg_temp.explain_in(conn text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT v FROM dblink(conn, $q$SELECT opsflags.feature_explain('tap.env.f', 'u1')$q$) AS t(v jsonb)
$$;

-- SET and set_config refuse it, for an ordinary role too; the setting stays.
SELECT throws_ok($$SET opsflags.environment = 'tapenv-none'$$, '42704', NULL,
                 'SET opsflags.environment to an unknown environment raises 42704');
SELECT dblink_connect('app', pg_temp.tap_conninfo(usr => 'tap_env_app', app => 'tap_env_app')) AS x \gset
SELECT is((SELECT v FROM dblink('app', $$SELECT s || ' ' || current_setting('opsflags.environment')
    FROM (SELECT 'ok'::text AS s) x$$) AS t(v text)), 'ok production', 'an ordinary role connects in production');
SELECT is((SELECT v FROM dblink('app', $q$DO $d$ BEGIN PERFORM set_config('opsflags.environment', 'tapenv-none', false);
    EXCEPTION WHEN undefined_object THEN RAISE EXCEPTION 'refused %', current_setting('opsflags.environment'); END $d$$q$, false)
    AS t(v text)), NULL, 'an ordinary role''s set_config to an unknown environment is refused');
SELECT matches(dblink_error_message('app'), 'refused production', '... with 42704, and its environment stays production');
SELECT is((SELECT v FROM dblink('app', $$SELECT set_config('opsflags.environment', 'staging', false)$$) AS t(v text)),
          'staging', 'an ordinary role sets an existing environment');
SELECT dblink_disconnect('app') AS x \gset

-- A connection option naming an unknown environment: the session starts,
-- and evaluates every flag as off.
SELECT dblink_connect('opt', pg_temp.tap_conninfo(app => 'tap_env_opt') || ' options=''-c opsflags.environment=tapenv-none''') AS x \gset
SELECT is(pg_temp.explain_in('opt') - 'flag_version',
          '{"enabled": false, "value": null, "reason": "UNKNOWN_ENVIRONMENT", "bucket": null, "variation": null, "variant": null, "rule": null, "environment": "tapenv-none"}'::jsonb,
          'connection option: the session connects; feature_explain says UNKNOWN_ENVIRONMENT');
SELECT dblink_disconnect('opt') AS x \gset

-- ALTER ROLE ... SET: accepted (it may be meant for another database); the
-- role's sessions start and evaluate every flag as off.
ALTER ROLE tap_env_conf SET opsflags.environment = 'tapenv-none';
SELECT is((SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
           WHERE r.rolname = 'tap_env_conf'), '{opsflags.environment=tapenv-none}'::text[],
          'ALTER ROLE SET an unknown environment is stored');
SELECT dblink_connect('conf', pg_temp.tap_conninfo(usr => 'tap_env_conf', app => 'tap_env_conf')) AS x \gset
SELECT is(pg_temp.explain_in('conf') ->> 'reason', 'UNKNOWN_ENVIRONMENT',
          'ALTER ROLE SET: the role''s session connects; feature_explain says UNKNOWN_ENVIRONMENT');
-- Once the environment exists, the next statement evaluates in it.
INSERT INTO opsflags.environments (name) VALUES ('tapenv-none');
SELECT opsflags.update_flag('tap.env.f', '{"is_enabled": true}', 'tapenv-none') AS x \gset
SELECT is(pg_temp.explain_in('conf') ->> 'reason', 'FALLTHROUGH',
          'the environment created: the same session evaluates in it');
-- Deleted while a session uses it: off again, for the next statement.
DELETE FROM opsflags.feature_flag_configs WHERE environment = 'tapenv-none';
DELETE FROM opsflags.environments WHERE name = 'tapenv-none';
SELECT is(pg_temp.explain_in('conf') ->> 'reason', 'UNKNOWN_ENVIRONMENT',
          'the environment deleted: UNKNOWN_ENVIRONMENT again');

-- Guards evaluate in opsflags.environment as the server sets it
-- (postgresql.conf, ALTER SYSTEM), not as roles or sessions do.
-- tap.env.f: off in production, on in staging.
SELECT opsflags.toggle_flag('tap.env.f', false) AS x \gset
CREATE TABLE public.tap_env_guarded (id int);
CREATE TRIGGER tap_env_guard BEFORE INSERT ON public.tap_env_guarded
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('tap.env.f');
GRANT INSERT ON public.tap_env_guarded TO tap_env_conf;
-- A new connection once the server has reloaded its configuration (polled).
CREATE FUNCTION pg_temp.connect_when(conn text, env text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..500 LOOP
        PERFORM dblink_connect(conn, pg_temp.tap_conninfo(app => 'tap_env_srv'));
        IF (SELECT v FROM dblink(conn, $q$SELECT current_setting('opsflags.environment')$q$) AS t(v text)) = env THEN
            RETURN true;
        END IF;
        PERFORM dblink_disconnect(conn);
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END
$$;
CREATE FUNCTION pg_temp.insert_in(conn text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec(conn, 'INSERT INTO public.tap_env_guarded VALUES (1)');
    RETURN 'inserted';
EXCEPTION WHEN OTHERS THEN
    RETURN 'refused';
END
$$;
SELECT is(ARRAY[pg_temp.insert_in('conf')], ARRAY['refused'],
          'guard: a role whose ALTER ROLE setting names another environment is refused in production');
ALTER SYSTEM SET opsflags.environment = 'staging';
SELECT pg_reload_conf() AS x \gset
SELECT ok(pg_temp.connect_when('srv', 'staging'), 'ALTER SYSTEM SET opsflags.environment = staging, reloaded');
SELECT dblink_exec('srv', $$SET opsflags.environment = 'production'$$) AS x \gset
SELECT dblink_disconnect('conf') AS x \gset
SELECT dblink_connect('conf', pg_temp.tap_conninfo(usr => 'tap_env_conf', app => 'tap_env_conf')) AS x \gset
SELECT is(ARRAY[pg_temp.insert_in('srv'), pg_temp.insert_in('conf')], ARRAY['inserted', 'inserted'],
          'guard: the server''s environment is staging: a session in production and a role set elsewhere write');
SELECT dblink_disconnect('srv') AS x \gset
ALTER SYSTEM RESET opsflags.environment;
SELECT pg_reload_conf() AS x \gset
SELECT ok(pg_temp.connect_when('srv', 'production'), 'ALTER SYSTEM RESET, reloaded');
SELECT dblink_exec('srv', $$SET opsflags.environment = 'staging'$$) AS x \gset
SELECT is(pg_temp.insert_in('srv'), 'refused', 'guard: back in production: a session in staging is refused');
SELECT dblink_disconnect('srv') AS x \gset
SELECT dblink_disconnect('conf') AS x \gset
DROP TABLE public.tap_env_guarded;

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.env.%';
DROP ROLE tap_env_app;
DROP ROLE tap_env_conf;
SELECT * FROM finish();
