-- test/pgtap/privileges_admin.sql: who may do what, and the
-- admin API under a hostile search_path.
--
-- 1. An ordinary LOGIN role (tap_priv_app) is refused (42501) every write
--    path: the flag and configuration API, maintenance mode, the audit
--    functions, plain DML and TRUNCATE on every opsflags table; it may not
--    read the audit log, app_config or a sensitive value; it may evaluate
--    flags, read plain values and the redacted listing.
-- 2. A member of opsflags_admin (tap_priv_admin) may do the admin paths and
--    read sensitive values; purging the audit log stays superuser-only.
-- 3. Hostile search_path: tap_priv_admin plants, in a schema tap_evil and in
--    pg_temp, functions, operators and tables that shadow what the admin
--    functions use; each planted function counts its calls in a sequence
--    (non-transactional, so a call is counted even in a rolled-back
--    transaction) and returns a wrong answer.  With search_path = tap_evil,
--    pg_temp, public, pg_catalog, in a fresh session (so the C code prepares
--    its queries under that path), the admin calls create_flag,
--    update_flag, toggle_flag, get_flag, get_flags,
--    feature_enabled, config_set, config_get, config_all,
--    set_maintenance_mode / is_maintenance_mode, archive_flag and
--    create_api_key / api_keys_view / revoke_api_key; the results
--    must be exactly those of the same calls in another fresh session with
--    the default search_path, and no planted object may have been called.
--    (COALESCE, NULLIF and session_user are syntax and cannot be shadowed.)
--
-- Probes run as a role inside a subtransaction that is rolled back unless
-- the probe is meant to keep its effect, so a wrongly allowed write (e.g.
-- set_maintenance_mode(true) by tap_priv_app) leaves nothing behind.  Flags,
-- keys and tables are tap_priv.* / public.tap_priv_*, roles tap_priv_app and
-- tap_priv_admin; all are removed at the start (leftovers) and at the end.
\ir setup.inc
SET opsflags.environment = 'production';

-- Leftovers of an interrupted run.
DROP SCHEMA IF EXISTS tap_evil CASCADE;
DROP TABLE IF EXISTS public.tap_priv_t, public.tap_priv_app_t;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap_priv.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_priv.%';
DELETE FROM opsflags.api_keys WHERE environment LIKE 'tap-priv-%';
DELETE FROM opsflags.environments WHERE name LIKE 'tap-priv-%';
DO $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('tap_priv_app', 'tap_priv_admin') LOOP
        EXECUTE format('DROP OWNED BY %I', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

SELECT plan(39);

-- Audit rows of earlier runs are not this run's.
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

CREATE ROLE tap_priv_app LOGIN;
CREATE ROLE tap_priv_admin LOGIN;
GRANT opsflags_admin TO tap_priv_admin;

-- Fixtures, made by the superuser.
SELECT opsflags.create_flag('tap_priv.f', 'privileges fixture') AS x \gset
SELECT opsflags.update_flag('tap_priv.f', '{"is_enabled": true, "enabled_percentage": 30, "enabled_for_users": ["u1"]}') AS x \gset
SELECT opsflags.config_set('tap_priv.plain', '{"limit": 10}') AS x \gset
SELECT opsflags.config_set('tap_priv.secret', '"tap-priv-hush"', 'tap', 'all', NULL, true) AS x \gset
CREATE TABLE public.tap_priv_t (id int PRIMARY KEY, v text);
ALTER TABLE public.tap_priv_t OWNER TO tap_priv_admin;
GRANT SELECT, INSERT ON public.tap_priv_t TO tap_priv_app;
CREATE TABLE public.tap_priv_app_t (id int PRIMARY KEY);
ALTER TABLE public.tap_priv_app_t OWNER TO tap_priv_app;

-- Run cmd as role in a subtransaction; 'ok' or the SQLSTATE.  Rolled back
-- unless keep.
CREATE FUNCTION pg_temp.as_role(role text, cmd text, keep boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', role);
        EXECUTE cmd;
        RESET ROLE;
        IF NOT keep THEN
            RAISE EXCEPTION 'tap: roll back' USING ERRCODE = 'P0001';
        END IF;
        RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RETURN CASE WHEN st = 'P0001' AND msg = 'tap: roll back' THEN 'ok' ELSE st END;
    END;
END
$$;

-- The value (as text) of a one-value query run as role; 'ERROR <sqlstate>'
-- if it fails.  Rolled back.
CREATE FUNCTION pg_temp.as_role_value(role text, query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    v text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', role);
        EXECUTE query INTO v;
        RESET ROLE;
        RAISE EXCEPTION 'tap: roll back' USING ERRCODE = 'P0001';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RETURN CASE WHEN st = 'P0001' AND msg = 'tap: roll back' THEN coalesce(v, '(null)') ELSE 'ERROR ' || st END;
    END;
END
$$;

-------------------------------------------------------------------------------
-- 1. The ordinary role
-------------------------------------------------------------------------------
CREATE TEMP TABLE refused (n serial, what text, cmd text, got text);
INSERT INTO refused (what, cmd) VALUES
  ('create_flag', $$SELECT opsflags.create_flag('tap_priv.new', 'new')$$),
  ('update_flag', $$SELECT opsflags.update_flag('tap_priv.f', '{"is_enabled": false}')$$),
  ('toggle_flag', $$SELECT opsflags.toggle_flag('tap_priv.f', false)$$),
  ('archive_flag', $$SELECT opsflags.archive_flag('tap_priv.f')$$),
  ('get_flag', $$SELECT opsflags.get_flag('tap_priv.f')$$),
  ('get_flags', $$SELECT opsflags.get_flags()$$),
  ('flag_id', $$SELECT opsflags.flag_id('tap_priv.f')$$),
  ('resolve_environment', $$SELECT opsflags.resolve_environment('staging')$$),
  ('config_set', $$SELECT opsflags.config_set('tap_priv.plain', '1')$$),
  ('config_set of a new key', $$SELECT opsflags.config_set('tap_priv.new', '1')$$),
  ('config_delete', $$SELECT opsflags.config_delete('tap_priv.plain', 'all')$$),
  ('set_maintenance_mode(true)', $$SELECT opsflags.set_maintenance_mode(true)$$),
  ('set_maintenance_mode(false)', $$SELECT opsflags.set_maintenance_mode(false)$$),
  ('audit_table (of a table it owns)', $$SELECT opsflags.audit_table('public.tap_priv_app_t')$$),
  ('unaudit_table (of a table it owns)', $$SELECT opsflags.unaudit_table('public.tap_priv_app_t')$$),
  ('purge_audit_log', $$SELECT opsflags.purge_audit_log(now() - interval '100 years')$$),
  ('SELECT audit_log', $$SELECT count(*) FROM opsflags.audit_log$$),
  ('SELECT app_config', $$SELECT count(*) FROM opsflags.app_config$$),
  ('SELECT feature_flags', $$SELECT count(*) FROM opsflags.feature_flags$$),
  ('SELECT feature_flag_configs', $$SELECT count(*) FROM opsflags.feature_flag_configs$$),
  ('config_get of a sensitive key', $$SELECT opsflags.config_get('tap_priv.secret')$$),
  ('config_get of a sensitive key (staging)', $$SELECT opsflags.config_get('tap_priv.secret', 'staging')$$),
  ('create_api_key', $$SELECT opsflags.create_api_key('staging', 'client')$$),
  ('revoke_api_key', $$SELECT opsflags.revoke_api_key(1)$$),
  ('SELECT api_keys_view', $$SELECT count(*) FROM opsflags.api_keys_view$$),
  ('SELECT api_keys', $$SELECT count(*) FROM opsflags.api_keys$$),
  ('api_key_authorize', $$SELECT * FROM opsflags_internal.api_key_authorize(NULL, 'staging', '{client}')$$),
  ('api_key_touch', $$SELECT opsflags_internal.api_key_touch('{1}')$$);
-- Plain DML and TRUNCATE on every table of schema opsflags (the privilege
-- check comes before any constraint or row is looked at).
CREATE TEMP TABLE opsflags_tables AS
SELECT c.relname::text AS t, (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = 1) AS col
FROM pg_class c WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('r', 'p');
INSERT INTO refused (what, cmd)
SELECT t || ' ' || op,
       CASE op
         WHEN 'INSERT' THEN format('INSERT INTO opsflags.%I DEFAULT VALUES', t)
         WHEN 'UPDATE' THEN format('UPDATE opsflags.%I SET %I = %I', t, col, col)
         WHEN 'DELETE' THEN format('DELETE FROM opsflags.%I', t)
         ELSE format('TRUNCATE opsflags.%I CASCADE', t)
       END
FROM opsflags_tables, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY AS oo(op, opn)
ORDER BY t, opn;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM refused ORDER BY n LOOP
        UPDATE refused SET got = pg_temp.as_role('tap_priv_app', r.cmd) WHERE n = r.n;
    END LOOP;
END
$$;

SELECT diag('tap_priv_app ' || what || ': ' || got) FROM refused WHERE got IS DISTINCT FROM '42501' ORDER BY n;
SELECT is((SELECT count(*)::int FROM refused WHERE what !~ ' (INSERT|UPDATE|DELETE|TRUNCATE)$'), 28,
          '1: 28 refused function calls and reads tried');
SELECT ok((SELECT array_agg(t) FROM opsflags_tables) @> ARRAY['environments', 'feature_flags', 'feature_flag_configs', 'app_config', 'audit_log']
          AND (SELECT count(*) FROM refused WHERE what ~ ' (INSERT|UPDATE|DELETE|TRUNCATE)$') = 4 * (SELECT count(*) FROM opsflags_tables),
          '1: INSERT, UPDATE, DELETE and TRUNCATE tried on every opsflags table (environments, feature_flags, feature_flag_configs, app_config, audit_log, ...)');
SELECT is((SELECT array_agg(what ORDER BY n) FROM refused WHERE got IS DISTINCT FROM '42501'), NULL,
          '1: tap_priv_app gets 42501 on every flag/config/maintenance/audit/API key function, DML, TRUNCATE and protected read');
SELECT ok(NOT pg_has_role('tap_priv_app', 'opsflags_admin', 'MEMBER'), '1: (tap_priv_app is not a member of opsflags_admin)');

-- What it may do.
SELECT is(pg_temp.as_role_value('tap_priv_app', $$SELECT opsflags.feature_enabled('tap_priv.f', 'u1')$$),
          opsflags.feature_enabled('tap_priv.f', 'u1')::text, '1: tap_priv_app evaluates a flag (listed user)');
SELECT is((SELECT count(*)::int FROM generate_series(1, 200) g
           WHERE pg_temp.as_role_value('tap_priv_app', format('SELECT opsflags.feature_enabled(%L, %L)', 'tap_priv.f', 'user-' || g))
                 IS DISTINCT FROM (opsflags.rollout_bucket('tap_priv.f', 'user-' || g) <= 30)::text), 0,
          '1: tap_priv_app evaluates a 30% rollout for 200 users as the superuser''s bucketing says');
SELECT is(pg_temp.as_role_value('tap_priv_app', $$SELECT opsflags.rollout_bucket('gr1', '123')$$), '73',
          '1: tap_priv_app calls rollout_bucket');
SELECT is(pg_temp.as_role_value('tap_priv_app', $$SELECT opsflags.config_get('tap_priv.plain')$$), '{"limit": 10}',
          '1: tap_priv_app reads a plain value with config_get');
SELECT is(pg_temp.as_role_value('tap_priv_app',
            $$SELECT jsonb_agg(jsonb_build_array(config_key, environment, config_value, is_sensitive) ORDER BY config_key)
              FROM opsflags.config_all() WHERE config_key LIKE 'tap_priv.%'$$),
          '[["tap_priv.plain", "all", {"limit": 10}, false], ["tap_priv.secret", "all", "[REDACTED]", true]]',
          '1: tap_priv_app lists configuration with config_all: the sensitive value redacted');
SELECT is(pg_temp.as_role_value('tap_priv_app', $$SELECT opsflags.is_maintenance_mode()$$), 'false',
          '1: tap_priv_app calls is_maintenance_mode');
SELECT is(ARRAY[opsflags.feature_enabled('tap_priv.f', 'u1')::text, opsflags.config_get('tap_priv.plain')::text,
                opsflags.is_maintenance_mode()::text,
                (SELECT count(*)::text FROM opsflags.feature_flags WHERE flag_key LIKE 'tap_priv.%'),
                (SELECT count(*)::text FROM opsflags.app_config WHERE config_key LIKE 'tap_priv.%')],
          ARRAY['true', '{"limit": 10}', 'false', '1', '2'], '1: nothing the refused paths tried was written');

-------------------------------------------------------------------------------
-- 2. A member of opsflags_admin
-------------------------------------------------------------------------------
SELECT ok(pg_has_role('tap_priv_admin', 'opsflags_admin', 'MEMBER') AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'tap_priv_admin'),
          '2: (tap_priv_admin is a member of opsflags_admin and not a superuser)');
CREATE TEMP TABLE allowed (n serial, what text, cmd text, got text);
INSERT INTO allowed (what, cmd) VALUES
  ('create_flag', $$SELECT opsflags.create_flag('tap_priv.admin', 'admin-made')$$),
  ('update_flag', $$SELECT opsflags.update_flag('tap_priv.admin', '{"enabled_for_users": ["a1"], "description": "by admin"}', 'staging')$$),
  ('toggle_flag', $$SELECT opsflags.toggle_flag('tap_priv.admin', true, 'staging')$$),
  ('get_flag', $$SELECT opsflags.get_flag('tap_priv.admin', 'staging')$$),
  ('get_flags', $$SELECT opsflags.get_flags('staging', true)$$),
  ('config_set', $$SELECT opsflags.config_set('tap_priv.admin.c', '[1, 2]', 'tap_priv_admin', 'staging')$$),
  ('config_set of a sensitive value', $$SELECT opsflags.config_set('tap_priv.admin.s', '"admin-hush"', NULL, 'all', NULL, true)$$),
  ('config_delete', $$SELECT opsflags.config_delete('tap_priv.admin.c', 'staging')$$),
  ('plain UPDATE of app_config', $$UPDATE opsflags.app_config SET description = 'admin dml' WHERE config_key = 'tap_priv.plain'$$),
  ('plain UPDATE of feature_flag_configs', $$UPDATE opsflags.feature_flag_configs c SET enabled_percentage = 50
                                             FROM opsflags.feature_flags f
                                             WHERE c.flag_id = f.id AND f.flag_key = 'tap_priv.admin' AND c.environment = 'development'$$),
  ('SELECT audit_log', $$SELECT count(*) FROM opsflags.audit_log$$),
  ('SELECT app_config', $$SELECT count(*) FROM opsflags.app_config$$),
  ('audit_table', $$SELECT opsflags.audit_table('public.tap_priv_t')$$),
  ('archive_flag', $$SELECT opsflags.archive_flag('tap_priv.admin')$$);
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM allowed ORDER BY n LOOP
        UPDATE allowed SET got = pg_temp.as_role('tap_priv_admin', r.cmd, true) WHERE n = r.n;
    END LOOP;
END
$$;
SELECT diag('tap_priv_admin ' || what || ': ' || got) FROM allowed WHERE got IS DISTINCT FROM 'ok' ORDER BY n;
SELECT is((SELECT array_agg(what ORDER BY n) FROM allowed WHERE got IS DISTINCT FROM 'ok'), NULL,
          '2: tap_priv_admin may call the flag and configuration API, plain DML, read the audit log, audit_table');
SELECT is((SELECT jsonb_build_array(f.description, f.archived, c.is_enabled, c.enabled_for_users, d.enabled_percentage, f.created_by)
           FROM opsflags.feature_flags f
           JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = 'staging'
           JOIN opsflags.feature_flag_configs d ON d.flag_id = f.id AND d.environment = 'development'
           WHERE f.flag_key = 'tap_priv.admin'),
          jsonb_build_array('by admin', true, true, '["a1"]'::jsonb, 50, session_user),
          '2: ... and the changes are there');
SELECT is(ARRAY(SELECT config_key || '/' || environment || '/' || config_value::text || '/' || updated_by || '/' || coalesce(description, '-')
                FROM opsflags.app_config WHERE config_key LIKE 'tap_priv.%' ORDER BY config_key, environment),
          ARRAY['tap_priv.admin.s/all/"admin-hush"/' || session_user || '/-', 'tap_priv.plain/all/{"limit": 10}/' || session_user || '/admin dml',
                'tap_priv.secret/all/"tap-priv-hush"/tap/-'],
          '2: configuration as the admin left it (its config_delete removed tap_priv.admin.c)');
SELECT is(pg_temp.as_role_value('tap_priv_admin', $$SELECT opsflags.config_get('tap_priv.secret')$$), '"tap-priv-hush"',
          '2: tap_priv_admin reads a sensitive value with config_get');
SELECT is(pg_temp.as_role_value('tap_priv_admin',
            format('SELECT count(*) FROM opsflags.audit_log WHERE resource_type = %L AND resource_id = %L AND id > %s',
                   'config', 'tap_priv.admin.s', :audit_start)), '1',
          '2: tap_priv_admin reads the audit log');
SELECT is(pg_temp.as_role_value('tap_priv_admin', $$SELECT opsflags.get_flag('tap_priv.f')->'config'->>'enabled_percentage'$$),
          '30', '2: tap_priv_admin reads flag state with get_flag');
-- API keys (rolled back: a key would close staging's HTTP endpoints to
-- later files): created, listed and revoked through the API; the table
-- itself, with the hashes, stays closed.
CREATE FUNCTION pg_temp.tap_key_cycle() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k text := opsflags.create_api_key('staging', 'client');
    n bigint;
    r boolean;
BEGIN
    SELECT count(*) INTO n FROM opsflags.api_keys_view v WHERE v.prefix = split_part(k, '_', 3) AND v.active;
    SELECT opsflags.revoke_api_key(v.id) INTO r FROM opsflags.api_keys_view v WHERE v.prefix = split_part(k, '_', 3);
    RETURN concat_ws(' ', k ~ '^opsf_c_', n, r);
END
$$;
SELECT is(pg_temp.as_role_value('tap_priv_admin', $$SELECT pg_temp.tap_key_cycle()$$), 't 1 t',
          '2: tap_priv_admin creates, lists and revokes API keys');
SELECT is(ARRAY[pg_temp.as_role_value('tap_priv_admin', $$SELECT count(*) FROM opsflags.api_keys$$),
                pg_temp.as_role_value('tap_priv_admin', $$SELECT count(*) FROM opsflags_internal.api_key_authorize(NULL, 'staging', '{client}')$$)],
          ARRAY['ERROR 42501', 'ERROR 42501'],
          '2: tap_priv_admin reads neither the table api_keys nor authorizes keys (the HTTP server does)');
-- The sampler's work as an admin (rolled back): take_sample raises an alert
-- (a cache hit rate below 2 always crosses), take_sample resolves it, and
-- resolve_alert resolves one.
CREATE FUNCTION pg_temp.sample_raise_resolve() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    raised text;
    resolved text;
    new_id bigint;
BEGIN
    RESET ROLE;
    PERFORM opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 2}');
    SET LOCAL ROLE tap_priv_admin;
    PERFORM opsflags.take_sample('tap');
    SELECT string_agg(a.type, ',') INTO raised FROM opsflags.alerts a WHERE NOT a.resolved AND a.type = 'cache_hit_rate';
    RESET ROLE;
    PERFORM opsflags.config_set('alerts.thresholds', '{"connections_pct": 100, "errors_per_hour": 1000000000, "cache_hit_rate_min": 0}');
    SET LOCAL ROLE tap_priv_admin;
    PERFORM opsflags.take_sample('tap');
    SELECT string_agg(a.resolved_by, ',') INTO resolved FROM opsflags.alerts a
    WHERE a.type = 'cache_hit_rate' AND a.resolved_at >= now();
    RESET ROLE;
    INSERT INTO opsflags.alerts (type, severity, title, message, component) VALUES ('tap_priv', 'info', 't', 'm', 'c')
    RETURNING id INTO new_id;
    SET LOCAL ROLE tap_priv_admin;
    PERFORM opsflags.resolve_alert(new_id, 'tap admin');
    RETURN raised || ' ' || resolved || ' ' || (SELECT a.resolved_by FROM opsflags.alerts a WHERE a.id = new_id);
END
$$;
SELECT is(pg_temp.as_role_value('tap_priv_admin', 'SELECT pg_temp.sample_raise_resolve()'),
          'cache_hit_rate opsflags sampler tap admin',
          '2: tap_priv_admin takes samples (raising and resolving an alert) and resolves alerts');
-- Maintenance mode, switched on and off inside one transaction (rolled back):
-- never on for anyone else.
CREATE FUNCTION pg_temp.maintenance_on_and_look() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM opsflags.set_maintenance_mode(true);
    RETURN opsflags.is_maintenance_mode();
END
$$;
SELECT is(pg_temp.as_role_value('tap_priv_admin', 'SELECT pg_temp.maintenance_on_and_look()'),
          'true', '2: tap_priv_admin switches maintenance mode on (seen in its transaction, rolled back)');
SELECT is(ARRAY[pg_temp.as_role('tap_priv_admin', $$SELECT opsflags.set_maintenance_mode(false)$$),
                opsflags.is_maintenance_mode()::text],
          ARRAY['ok', 'false'], '2: tap_priv_admin may call set_maintenance_mode(false); maintenance mode is off');
-- The audited table: a write by the ordinary role is recorded; unaudit_table.
SELECT is(pg_temp.as_role('tap_priv_app', $$INSERT INTO public.tap_priv_t VALUES (1, 'audited')$$, true), 'ok',
          '2: tap_priv_app writes the table tap_priv_admin audits');
SELECT is((SELECT array_agg(action || ' ' || role || ' ' || resource_id) FROM opsflags.audit_log
           WHERE table_name = 'public.tap_priv_t' AND id > :audit_start),
          ARRAY['INSERT tap_priv_app 1'], '2: the write is in the audit log (written for a role without rights on audit_log)');
SELECT is(pg_temp.as_role('tap_priv_admin', $$SELECT opsflags.unaudit_table('public.tap_priv_t')$$, true), 'ok',
          '2: tap_priv_admin may call unaudit_table');
SELECT is(ARRAY[pg_temp.as_role('tap_priv_admin', $$SELECT opsflags.purge_audit_log(now() - interval '100 years')$$),
                pg_temp.as_role('tap_priv_admin', $$UPDATE opsflags.audit_log SET action = action WHERE id = -1$$),
                pg_temp.as_role('tap_priv_admin', $$DELETE FROM opsflags.audit_log WHERE id = -1$$)],
          ARRAY['42501', '42501', '42501'],
          '2: but purge_audit_log is for superusers, and audit_log UPDATE / DELETE are refused to the admin too');

-------------------------------------------------------------------------------
-- 3. Hostile search_path
-------------------------------------------------------------------------------
SELECT format('GRANT CREATE ON DATABASE %I TO tap_priv_admin', current_database()) \gexec
-- Environments of the API keys the steps create.
INSERT INTO opsflags.environments (name) VALUES ('tap-priv-clean'), ('tap-priv-evil');

SELECT dblink_connect('evil', pg_temp.tap_conninfo(usr => 'tap_priv_admin', app => 'tap_priv_hostile')) AS x \gset
SELECT dblink_connect('clean', pg_temp.tap_conninfo(usr => 'tap_priv_admin', app => 'tap_priv_hostile')) AS x \gset

-- The planted objects, made by tap_priv_admin in its session.
SELECT dblink_exec('evil', $evil$
CREATE SCHEMA tap_evil;
CREATE SEQUENCE tap_evil.calls;
CREATE FUNCTION tap_evil.hit() RETURNS void LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT pg_catalog.nextval('tap_evil.calls'); SELECT $$;
CREATE FUNCTION tap_evil.now() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_evil.statement_timestamp() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_evil.gen_random_uuid() RETURNS uuid LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '00000000-0000-0000-0000-0000000000ee'::uuid $$;
CREATE FUNCTION tap_evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'object' $$;
CREATE FUNCTION tap_evil.jsonb_build_object(text, boolean) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '{}'::jsonb $$;
CREATE FUNCTION tap_evil.jsonb_build_object(text, jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '{}'::jsonb $$;
CREATE FUNCTION tap_evil.to_jsonb(boolean) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'false'::jsonb $$;
CREATE FUNCTION tap_evil.jsonb_object_keys(jsonb) RETURNS SETOF text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'evil_field' $$;
CREATE FUNCTION tap_evil.jsonb_array_elements_text(jsonb) RETURNS SETOF text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_evil.jsonb_path_exists(jsonb, jsonpath, jsonb, boolean) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT true $$;
CREATE FUNCTION tap_evil.jsonb_set(jsonb, text[], jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT $1 $$;
CREATE FUNCTION tap_evil.array_to_string(text[], text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_evil.format(text, text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'SELECT 1' $$;
CREATE FUNCTION tap_evil.current_setting(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'development' $$;
CREATE FUNCTION tap_evil.current_setting(text, boolean) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'development' $$;
CREATE FUNCTION tap_evil.pg_notify(text, text) RETURNS void LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit() $$;
CREATE FUNCTION tap_evil.inet_client_addr() RETURNS inet LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT '10.6.6.6'::inet $$;
CREATE FUNCTION tap_evil.txid_current() RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 666::bigint $$;
CREATE FUNCTION tap_evil.lower(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_evil.texteq(text, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT NOT pg_catalog.texteq($1, $2) $$;
CREATE OPERATOR tap_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.texteq);
CREATE FUNCTION tap_evil.jsonbeq(jsonb, jsonb) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT NOT pg_catalog.jsonb_eq($1, $2) $$;
CREATE OPERATOR tap_evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = tap_evil.jsonbeq);
CREATE FUNCTION tap_evil.uuideq(uuid, uuid) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT NOT pg_catalog.uuid_eq($1, $2) $$;
CREATE OPERATOR tap_evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = tap_evil.uuideq);
CREATE FUNCTION tap_evil.textne(text, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT false $$;
CREATE OPERATOR tap_evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.textne);
CREATE FUNCTION tap_evil.jsonb_exists(jsonb, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT true $$;
CREATE OPERATOR tap_evil.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = tap_evil.jsonb_exists);
CREATE FUNCTION tap_evil.concat_text(text, text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT 'evil' $$;
CREATE OPERATOR tap_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.concat_text);
CREATE FUNCTION tap_evil.regex(text, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_evil.hit(); SELECT true $$;
CREATE OPERATOR tap_evil.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.regex);
CREATE TABLE tap_evil.app_config (config_key text, config_value jsonb, environment text, is_sensitive boolean);
INSERT INTO tap_evil.app_config VALUES ('tap_priv.evil.c', '"from tap_evil.app_config"', 'staging', false);
CREATE TABLE tap_evil.feature_flag_configs (flag_id uuid, environment text, is_enabled boolean);
$evil$) AS x \gset
SELECT dblink_exec('evil', $evil$
CREATE TEMP TABLE feature_flags (id uuid, flag_key text, archived boolean);
INSERT INTO feature_flags VALUES ('00000000-0000-0000-0000-0000000000ee', 'tap_priv.evil.f', true);
CREATE TEMP TABLE environments (name text);
INSERT INTO environments VALUES ('staging'), ('moon');
CREATE TEMP TABLE audit_log (id bigint, action text);
CREATE TEMP TABLE app_config (config_key text, config_value jsonb, environment text, is_sensitive boolean);
INSERT INTO app_config VALUES ('tap_priv.evil.c', '"from pg_temp.app_config"', 'staging', false);
SET search_path = tap_evil, pg_temp, public, pg_catalog;
SET opsflags.environment = 'production';
$evil$) AS x \gset
SELECT dblink_exec('clean', $$SET opsflags.environment = 'production'$$) AS x \gset

-- The planted objects work: unqualified names in the hostile session reach them.
SELECT is((SELECT v FROM dblink('evil', $$SELECT concat_ws(' ', 'a' = 'a', extract(year FROM now()), gen_random_uuid(), jsonb_typeof('[]'),
                                                     (SELECT config_value FROM app_config LIMIT 1), (SELECT count(*) FROM feature_flags),
                                                     current_setting('opsflags.environment'), pg_catalog.current_setting('search_path'))$$) AS t(v text)),
          'f 2000 00000000-0000-0000-0000-0000000000ee object "from tap_evil.app_config" 1 development tap_evil, pg_temp, public, pg_catalog',
          '3: in the hostile session, =, now(), gen_random_uuid(), jsonb_typeof, current_setting, app_config and feature_flags are the planted ones');
SELECT cmp_ok((SELECT last_value FROM tap_evil.calls), '>=', 5::bigint, '3: ... and the planted functions count their calls');
SELECT setval('tap_evil.calls', 1, false) AS x \gset

-- The same calls in both sessions; every result row kept as text.
CREATE TEMP TABLE hostile_results (run text, step int, n int, v text);
CREATE TEMP TABLE hostile_steps (step int, sql text);
INSERT INTO hostile_steps VALUES
  (1, $$SELECT opsflags.create_flag('tap_priv.%1$s.f', 'Hostile path flag', 'described', 'boolean', NULL, ARRAY['a', 'b'])::text$$),
  (2, $$SELECT opsflags.update_flag('tap_priv.%1$s.f', '{"enabled_percentage": 40, "enabled_for_users": ["u1"], "enabled_for_roles": ["ops"], "tags": ["x", "y"], "description": "d2", "rollout_group": "grp"}', 'staging')::text$$),
  (3, $$SELECT opsflags.toggle_flag('tap_priv.%1$s.f', true, 'staging')::text$$),
  (4, $$SELECT opsflags.toggle_flag('tap_priv.%1$s.f', true)::text$$),
  (5, $$SELECT opsflags.update_flag('tap_priv.%1$s.f', '{"is_enabled": false}', 'development')::text$$),
  (6, $$SELECT opsflags.get_flag('tap_priv.%1$s.f', 'staging')::text$$),
  (7, $$SELECT opsflags.get_flag('tap_priv.%1$s.f')::text$$),
  (8, $$SELECT e::text FROM jsonb_array_elements(opsflags.get_flags('staging')) e$$),
  (9, $$SELECT opsflags.feature_enabled('tap_priv.%1$s.f', u)::text FROM unnest(ARRAY['u1', 'u2', 'user-3', NULL]) u$$),
  (10, $$SELECT set_config('opsflags.environment', 'staging', false)$$),
  (11, $$SELECT opsflags.feature_enabled('tap_priv.%1$s.f', u, r)::text
         FROM unnest(ARRAY['u1', 'u2', 'user-3', 'user-4', 'user-5', NULL, NULL]) WITH ORDINALITY a(u, i)
         JOIN unnest(ARRAY[NULL, 'ops', NULL, NULL, NULL, 'ops', NULL]) WITH ORDINALITY b(r, j) ON i OPERATOR(pg_catalog.=) j$$),
  (12, $$SELECT opsflags.config_set('tap_priv.%1$s.c', '{"a": [1, "x"], "b": null}', 'admin-x', 'staging', 'descr', false)::text$$),
  (13, $$SELECT opsflags.config_set('tap_priv.%1$s.c', '"all value"')::text$$),
  (14, $$SELECT opsflags.config_set('tap_priv.%1$s.s', '"hush"', NULL, 'all', NULL, true)::text$$),
  (15, $$SELECT opsflags.config_get('tap_priv.%1$s.c', 'staging')::text$$),
  (16, $$SELECT opsflags.config_get('tap_priv.%1$s.c')::text$$),
  (17, $$SELECT opsflags.config_get('tap_priv.%1$s.c', 'production')::text$$),
  (18, $$SELECT opsflags.config_get('tap_priv.%1$s.s')::text$$),
  (19, $$SELECT t::text FROM opsflags.config_all('staging') t$$),
  (20, $$SELECT t::text FROM opsflags.config_all() t$$),
  (21, $$SELECT opsflags.is_maintenance_mode()::text$$),
  (22, $$SELECT opsflags.maintenance_enforced()::text$$),
  (23, 'BEGIN'),
  (24, $$SELECT opsflags.set_maintenance_mode(true)::text$$),
  (25, $$SELECT opsflags.is_maintenance_mode()::text$$),
  (26, $$SELECT opsflags.set_maintenance_mode(false)::text$$),
  (27, $$SELECT opsflags.is_maintenance_mode()::text$$),
  (28, 'COMMIT'),
  (29, $$SELECT opsflags.is_maintenance_mode()::text$$),
  (30, $$SELECT opsflags.config_delete('tap_priv.%1$s.c', 'staging')::text$$),
  (31, $$SELECT opsflags.config_get('tap_priv.%1$s.c', 'staging')::text$$),
  (32, $$SELECT opsflags.archive_flag('tap_priv.%1$s.f')::text$$),
  (33, $$SELECT opsflags.feature_enabled('tap_priv.%1$s.f', 'u1')::text$$),
  (34, $$SELECT opsflags.get_flag('tap_priv.%1$s.f', 'staging')::text$$),
  (35, $$SELECT (opsflags.create_api_key('tap-priv-%1$s', 'admin', 'hostile path', 'opsflags_admin')
                 OPERATOR(pg_catalog.~) '^opsf_a_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$')::text$$),
  (36, $$SELECT pg_catalog.concat_ws(' ', kind, description, as_role, active, created_by OPERATOR(pg_catalog.=) session_user)
         FROM opsflags.api_keys_view WHERE environment OPERATOR(pg_catalog.=) 'tap-priv-%1$s'$$),
  (37, $$SELECT opsflags.revoke_api_key(id)::text FROM opsflags.api_keys_view WHERE environment OPERATOR(pg_catalog.=) 'tap-priv-%1$s'$$),
  (38, $$SELECT pg_catalog.concat_ws(' ', action, role, new_values OPERATOR(pg_catalog.?) 'secret_hash', txid OPERATOR(pg_catalog.<>) 666)
         FROM opsflags.audit_log
         WHERE resource_type OPERATOR(pg_catalog.=) 'api_key'
           AND new_values OPERATOR(pg_catalog.->>) 'environment' OPERATOR(pg_catalog.=) 'tap-priv-%1$s'
         ORDER BY id$$);

-- Run every step in a session; an error is kept as its SQLSTATE and message.
CREATE FUNCTION pg_temp.run_steps(conn text, run text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    st text;
    msg text;
BEGIN
    FOR s IN SELECT * FROM hostile_steps ORDER BY step LOOP
        BEGIN
            IF s.sql IN ('BEGIN', 'COMMIT') THEN
                PERFORM dblink_exec(conn, s.sql);
            ELSE
                INSERT INTO hostile_results
                SELECT run, s.step, row_number() OVER (), t.v FROM dblink(conn, format(s.sql, run)) AS t(v text);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            INSERT INTO hostile_results VALUES (run, s.step, 0, 'ERROR ' || st || ' ' || msg);
        END;
    END LOOP;
END
$$;

SELECT pg_temp.run_steps('clean', 'clean') AS x \gset
SELECT pg_temp.run_steps('evil', 'evil') AS x \gset
SELECT last_value AS evil_calls, is_called AS evil_called FROM tap_evil.calls \gset
-- Make sure no remote transaction is left open (step 28 commits), then end them.
SELECT dblink_exec('evil', 'ROLLBACK') AS x \gset
SELECT dblink_exec('clean', 'ROLLBACK') AS x \gset
SELECT dblink_disconnect('evil') AS x \gset
SELECT dblink_disconnect('clean') AS x \gset

-- A result as comparable text: the run's name, ids, timestamps masked;
-- listings restricted to the run's own rows.
CREATE FUNCTION pg_temp.norm(run text, v text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT regexp_replace(regexp_replace(replace(v, 'tap_priv.' || run || '.', 'tap_priv.RUN.'),
           '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'UUID', 'g'),
           '\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?)?', 'TIMESTAMP', 'g')
$$;
CREATE TEMP VIEW hostile_norm AS
SELECT run, step, row_number() OVER (PARTITION BY run, step ORDER BY pg_temp.norm(run, v)) AS n, pg_temp.norm(run, v) AS v
FROM hostile_results
WHERE step NOT IN (8, 19, 20) OR v LIKE '%tap\_priv.' || run || '.%';

SELECT diag('3: ' || coalesce(c.step, e.step) || ' clean: ' || coalesce(c.v, '(none)') || ' | hostile: ' || coalesce(e.v, '(none)'))
FROM (SELECT * FROM hostile_norm WHERE run = 'clean') c
FULL JOIN (SELECT * FROM hostile_norm WHERE run = 'evil') e USING (step, n)
WHERE c.v IS DISTINCT FROM e.v
ORDER BY coalesce(c.step, e.step), n LIMIT 20;

SELECT is((SELECT count(*)::int FROM hostile_results WHERE run = 'clean' AND v LIKE 'ERROR %'), 0,
          '3: with the default search_path every step succeeds');
SELECT is((SELECT count(*)::int FROM (SELECT * FROM hostile_norm WHERE run = 'clean') c
           FULL JOIN (SELECT * FROM hostile_norm WHERE run = 'evil') e USING (step, n)
           WHERE c.v IS DISTINCT FROM e.v),
          0, '3: under search_path = tap_evil, pg_temp, public, pg_catalog every step returns exactly what it returns with the default path');
SELECT cmp_ok((SELECT count(*)::int FROM hostile_norm WHERE run = 'evil' AND v NOT LIKE 'ERROR %'), '>=', 40,
              '3: (at least 40 result rows compared, none an error)');
SELECT is(:'evil_called'::boolean, false, '3: no planted function or operator was called');
SELECT is((SELECT array_agg(v ORDER BY step) FROM hostile_results WHERE run = 'evil' AND step IN (9, 18, 21, 25, 27, 29, 33) AND (step <> 9 OR n = 1)),
          ARRAY['true', '"hush"', 'false', 'true', 'false', 'false', 'false'],
          '3: hostile session: flag on for u1, sensitive value read, maintenance mode on and off, archived flag off');
SELECT is((SELECT count(*)::int FROM hostile_results WHERE run = 'evil' AND step = 19 AND v LIKE '%tap\_priv.evil.s%[REDACTED]%'), 1,
          '3: hostile session: config_all redacts the sensitive value');
SELECT ok((SELECT f.id <> '00000000-0000-0000-0000-0000000000ee' AND f.created_at > now() - interval '1 hour'
                  AND f.updated_at > now() - interval '1 hour' AND f.archived
           FROM opsflags.feature_flags f WHERE f.flag_key = 'tap_priv.evil.f')
          AND (SELECT bool_and(c.updated_at > now() - interval '1 hour') FROM opsflags.feature_flag_configs c
               JOIN opsflags.feature_flags f ON f.id = c.flag_id WHERE f.flag_key = 'tap_priv.evil.f')
          AND (SELECT bool_and(c.updated_at > now() - interval '1 hour' AND c.id <> '00000000-0000-0000-0000-0000000000ee')
               FROM opsflags.app_config c WHERE c.config_key LIKE 'tap_priv.evil.%'),
          '3: rows written under the hostile path have real ids and timestamps');
SELECT is((SELECT coalesce(array_agg(resource_type || ' ' || action || ' ' || pg_temp.norm('evil', coalesce(resource_id, '-')) || ' '
                            || actor || ' ' || role || ' ' || coalesce(host(client_addr), '-') || ' ' || (txid <> 666)
                            ORDER BY id), '{}')
           FROM opsflags.audit_log WHERE application_name = 'tap_priv_hostile' AND id > :audit_start
             AND (resource_id LIKE 'tap_priv.evil.%' OR new_values->>'flag_id' IN (SELECT id::text FROM opsflags.feature_flags WHERE flag_key = 'tap_priv.evil.f'))),
          (SELECT array_agg(resource_type || ' ' || action || ' ' || pg_temp.norm('clean', coalesce(resource_id, '-')) || ' '
                            || actor || ' ' || role || ' ' || coalesce(host(client_addr), '-') || ' ' || (txid <> 666)
                            ORDER BY id)
           FROM opsflags.audit_log WHERE application_name = 'tap_priv_hostile' AND id > :audit_start
             AND (resource_id LIKE 'tap_priv.clean.%' OR new_values->>'flag_id' IN (SELECT id::text FROM opsflags.feature_flags WHERE flag_key = 'tap_priv.clean.f'))),
          '3: the audit rows written under the hostile path are those written with the default path');
SELECT is((SELECT array_agg(v ORDER BY step, n) FROM hostile_results WHERE run = 'evil' AND step BETWEEN 35 AND 38),
          ARRAY['true', 'admin hostile path opsflags_admin t t', 'true',
                'CREATE tap_priv_admin f t', 'REVOKE tap_priv_admin f t'],
          '3: hostile session: an API key created, listed and revoked; its audit rows name the admin and hold no hash');
SELECT is(opsflags.is_maintenance_mode(), false, '3: maintenance mode is off');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT count(*) AS x FROM (SELECT opsflags.set_maintenance_mode(false) WHERE opsflags.is_maintenance_mode()) s \gset
DROP SCHEMA tap_evil CASCADE;
DROP TABLE public.tap_priv_t, public.tap_priv_app_t;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap_priv.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_priv.%';
DELETE FROM opsflags.api_keys WHERE environment LIKE 'tap-priv-%';
DELETE FROM opsflags.environments WHERE name LIKE 'tap-priv-%';
DROP OWNED BY tap_priv_app, tap_priv_admin;
DROP ROLE tap_priv_app;
DROP ROLE tap_priv_admin;
RESET opsflags.environment;

SELECT * FROM finish();
