-- test/pgtap/privileges_hostile.sql: the privilege rules against a hostile
-- ordinary role, one group of tests per rule.  The hostile role tap_hostile
-- has LOGIN, no opsflags grant and only CREATE on the database (so that it
-- can own schemas, as application roles do).
--
--   R1  Any role may evaluate flags, call health_status(), read
--       non-sensitive configuration ... and nothing else: the set of
--       opsflags functions it may execute is exactly the evaluation and
--       read-only set; each of them works for it (section R5 runs them all).
--   R2  Only superusers, the extension owner and opsflags_admin may change
--       flags, configuration or deployments: the hostile role holds no
--       privilege on any opsflags table, view or sequence (catalog), cannot
--       create, replace, alter or drop anything in schema opsflags, cannot
--       attach its own triggers, rules, policies or foreign keys to
--       opsflags tables (a trigger there would see every admin's change,
--       secrets included), cannot attach opsflags' trigger functions other
--       than feature_guard to its own tables (audit_trigger there would let
--       it forge audit rows, maintenance_config_changed would flip
--       maintenance mode for everyone), and none of this writes anything.
--   R3  ... may read sensitive values: not through config_get after an admin
--       warmed this backend's cache, health_status (app_version, commit_sha,
--       the error of a sensitive queue query), config_all with crafted
--       environments, any view, NOTIFY payloads it LISTENs to, or any
--       result or error text it received anywhere in this file.
--   R4  ... may read the audit log: it cannot read it through any view or
--       sequence, and the rows its audited writes produce cannot be forged
--       or dropped (savepoints, rolled-back subtransactions, exception
--       blocks, look-alike ids and payloads, a spoofed application_name).
--   R5  SECURITY DEFINER functions pin search_path: every one in schema
--       opsflags (found in pg_proc, so new ones are checked too) pins a
--       path of trusted schemas with pg_temp last; and the C functions that
--       read as the tables' owner cannot be made to run the hostile role's
--       code: in a fresh session with search_path = pg_temp,
--       tap_hostile_evil, pg_catalog, public and functions, aggregates,
--       operators, domains, tables and views planted (in its schema and in
--       pg_temp) under the names opsflags uses, every function it may call
--       (and feature_guard, via an insert) returns exactly what it returns
--       in a clean session, and no planted object is ever called.  This
--       includes health_status() with an admin's health.queue_query, which
--       runs as the owner of app_config: planted "=" and count(*), and a
--       temporary view under an unqualified table name.
--   Section 8 (errors) for crafted flag keys: 230+ keys (quotes,
--       backslashes, %, SQL injection, NUL-looking escapes, Unicode look-
--       alikes, 100/101/200/201/100000 characters, environment-looking and
--       "env|key" keys, and generated mutations of real keys) fed to
--       feature_enabled, feature_value, feature_explain, config_get, the
--       admin functions and feature_guard; crafted user ids and roles;
--       crafted environments (argument and opsflags.environment): every
--       answer equals a plain-SQL reference (false / NULL / the fallback
--       row / 42501 / 0A000 / 22023), no internal error, nothing written.
--
-- Already covered elsewhere, not repeated here: the ordinary role refused
-- every admin function, plain DML and TRUNCATE of every opsflags table,
-- audit_table / unaudit_table / purge_audit_log, and reading audit_log,
-- app_config or a sensitive value by config_get (test/pgtap/privileges_admin.sql
-- section 1, sql/privileges.sql); an admin under a hostile search_path
-- (test/pgtap/privileges_admin.sql section 3); secrets in the server log, audit
-- rows, listings and NOTIFY payloads as seen by admins
-- (test/pgtap/config_secrets.sql); hostile arguments to every function by a superuser
-- (test/pgtap/api_fuzz.sql).
--
-- Roles tap_hostile and tap_hostile_admin (a member of opsflags_admin),
-- schemas tap_hostile_app and tap_hostile_evil (owned by tap_hostile),
-- tables public.tap_hostile_*, keys tap_hostile.*: removed at the start
-- (leftovers of an interrupted run) and at the end.  health.queue_query is
-- saved and restored.  Secrets are 'S3cr3t-' || md5('tap_hostile/<n>'),
-- computed on the server.  No sleeps: the NOTIFY wait polls round trips.
\ir setup.inc
SET opsflags.environment = 'production';

-------------------------------------------------------------------------------
-- Leftovers of an interrupted run
-------------------------------------------------------------------------------
DROP SCHEMA IF EXISTS tap_hostile_evil, tap_hostile_app CASCADE;
DROP TABLE IF EXISTS public.tap_hostile_jobs, public.tap_hostile_audited;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap\_hostile.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap\_hostile.%';
DELETE FROM opsflags.app_config WHERE config_key = 'health.queue_query' AND config_value::text LIKE '%tap_hostile_jobs%';
DO $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('tap_hostile', 'tap_hostile_admin') LOOP
        EXECUTE format('DROP OWNED BY %I', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

SELECT plan(41);

SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

-- An admin's queue query of another test would change health_status(): set
-- it aside, put it back at the end.
CREATE TEMP TABLE saved_queue AS SELECT * FROM opsflags.app_config WHERE config_key = 'health.queue_query';
DELETE FROM opsflags.app_config WHERE config_key = 'health.queue_query';

CREATE ROLE tap_hostile LOGIN;
CREATE ROLE tap_hostile_admin NOLOGIN;
GRANT opsflags_admin TO tap_hostile_admin;
SELECT format('GRANT CREATE ON DATABASE %I TO tap_hostile', current_database()) \gexec

-- The secrets, and a regular expression matching any of them.
CREATE FUNCTION pg_temp.secret(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'S3cr3t-' || md5('tap_hostile/' || n) $$;
\set nsecrets 9
SELECT '(' || string_agg(pg_temp.secret(n), '|') || ')' AS secret_re FROM generate_series(1, :nsecrets) n \gset

-------------------------------------------------------------------------------
-- Fixtures (made by this superuser session)
-------------------------------------------------------------------------------
SELECT opsflags.create_flag('tap_hostile.on', 'on for everyone') AS x \gset
SELECT opsflags.toggle_flag('tap_hostile.on', true) AS x \gset
SELECT opsflags.create_flag('tap_hostile.off', 'off') AS x \gset
SELECT opsflags.create_flag('tap_hostile.roll', '30% rollout') AS x \gset
SELECT opsflags.update_flag('tap_hostile.roll', '{"is_enabled": true, "enabled_percentage": 30, "enabled_for_users": ["u1"], "enabled_for_roles": ["ops"]}') AS x \gset
SELECT opsflags.create_flag('tap_hostile.v', 'variations', NULL, 'string', '["red", "blue", "green"]') AS x \gset
SELECT opsflags.update_flag('tap_hostile.v', '{"is_enabled": true, "variation_weights": [1, 1, 1]}') AS x \gset

SELECT opsflags.config_set('tap_hostile.plain', '{"limit": 10}') AS x \gset
SELECT opsflags.config_set('tap_hostile.plain', '"staging value"', 'tap', 'staging') AS x \gset
SELECT opsflags.config_set('tap_hostile.secret', to_jsonb(pg_temp.secret(1)), 'tap', 'all', 'a secret', true) AS x \gset
SELECT opsflags.config_set('tap_hostile.secret', to_jsonb(pg_temp.secret(2)), 'tap', 'production', NULL, true) AS x \gset
SELECT opsflags.config_set('tap_hostile.api', jsonb_build_object('token', pg_temp.secret(3)), 'tap', 'production', NULL, true) AS x \gset

-- The admin's queue query: tables schema-qualified (as take_sample() needs
-- them), operators and count(*) not (as people write them).
CREATE TABLE public.tap_hostile_jobs (state text);
INSERT INTO public.tap_hostile_jobs VALUES ('pending'), ('failed'), ('done');
SELECT opsflags.config_set('health.queue_query',
  to_jsonb($q$SELECT count(*) FILTER (WHERE j.state = 'pending'), count(*) FILTER (WHERE j.state = 'failed') FROM public.tap_hostile_jobs j$q$::text)) AS x \gset

-- An application table an admin audits, which the hostile role may write.
CREATE TABLE public.tap_hostile_audited (id text PRIMARY KEY, payload jsonb);
SELECT opsflags.audit_table('public.tap_hostile_audited') AS x \gset
GRANT SELECT, INSERT, UPDATE ON public.tap_hostile_audited TO tap_hostile;

-------------------------------------------------------------------------------
-- The hostile role's own objects, and what it plants
-------------------------------------------------------------------------------
SET ROLE tap_hostile;
CREATE SCHEMA tap_hostile_app;
CREATE TABLE tap_hostile_app.own (id int);
CREATE TABLE tap_hostile_app.guarded (id int);
CREATE TRIGGER guard BEFORE INSERT ON tap_hostile_app.guarded
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('tap_hostile.on');
CREATE TABLE tap_hostile_app.guarded_off (id int);
CREATE TRIGGER guard BEFORE INSERT ON tap_hostile_app.guarded_off
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('tap_hostile.off');
CREATE TABLE tap_hostile_app.probe_guarded (id int);
CREATE TABLE tap_hostile_app.stolen (t text, v text);
-- What its trigger on an opsflags table would do: copy every change.
CREATE FUNCTION tap_hostile_app.spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tap_hostile_app.stolen VALUES (TG_TABLE_NAME, to_jsonb(NEW)::text);
    RETURN NULL;
END
$$;
GRANT USAGE ON SCHEMA tap_hostile_app TO PUBLIC;
GRANT INSERT ON tap_hostile_app.stolen TO PUBLIC;

-- Planted objects: every call of one is counted in tap_hostile_evil.calls,
-- and in tap_hostile_evil.escalated when it runs as another role (the
-- sequences are not transactional: a call is counted even if its
-- transaction rolls back).  Each returns a wrong answer.
CREATE SCHEMA tap_hostile_evil;
GRANT USAGE ON SCHEMA tap_hostile_evil TO PUBLIC;
CREATE SEQUENCE tap_hostile_evil.calls;
CREATE SEQUENCE tap_hostile_evil.escalated;
GRANT USAGE, SELECT ON SEQUENCE tap_hostile_evil.calls, tap_hostile_evil.escalated TO PUBLIC;
CREATE FUNCTION tap_hostile_evil.hit() RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM nextval('tap_hostile_evil.calls');
    IF current_user::text <> 'tap_hostile' THEN
        PERFORM nextval('tap_hostile_evil.escalated');
    END IF;
    RETURN true;
END
$$;
CREATE FUNCTION tap_hostile_evil.now() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_hostile_evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_hostile_evil.statement_timestamp() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_hostile_evil.current_setting(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'staging' $$;
CREATE FUNCTION tap_hostile_evil.current_setting(text, boolean) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'staging' $$;
CREATE FUNCTION tap_hostile_evil.set_config(text, text, boolean) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT $2 $$;
CREATE FUNCTION tap_hostile_evil.lower(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_hostile_evil.btrim(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_hostile_evil.format(text, text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'SELECT 1' $$;
CREATE FUNCTION tap_hostile_evil.jsonb_build_object(text, jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '{}'::jsonb $$;
CREATE FUNCTION tap_hostile_evil.jsonb_build_object(text, text) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '{}'::jsonb $$;
CREATE FUNCTION tap_hostile_evil.jsonb_build_object(text, boolean) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '{}'::jsonb $$;
CREATE FUNCTION tap_hostile_evil.json_build_object(text, text) RETURNS json LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '{}'::json $$;
CREATE FUNCTION tap_hostile_evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'null'::jsonb $$;
CREATE FUNCTION tap_hostile_evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'object' $$;
CREATE FUNCTION tap_hostile_evil.jsonb_array_elements(jsonb) RETURNS SETOF jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '"evil"'::jsonb $$;
CREATE FUNCTION tap_hostile_evil.jsonb_array_elements_text(jsonb) RETURNS SETOF text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_hostile_evil.jsonb_path_exists(jsonb, jsonpath, jsonb, boolean) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT true $$;
CREATE FUNCTION tap_hostile_evil.pg_notify(text, text) RETURNS void LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); $$;
CREATE FUNCTION tap_hostile_evil.gen_random_uuid() RETURNS uuid LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '00000000-0000-0000-0000-0000000000ee'::uuid $$;
CREATE FUNCTION tap_hostile_evil.txid_current() RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 666::bigint $$;
CREATE FUNCTION tap_hostile_evil.inet_client_addr() RETURNS inet LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '10.6.6.6'::inet $$;
CREATE FUNCTION tap_hostile_evil.current_database() RETURNS name LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil'::name $$;
CREATE FUNCTION tap_hostile_evil.pg_database_size(name) RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 666::bigint $$;
CREATE FUNCTION tap_hostile_evil.pg_is_in_recovery() RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT true $$;
CREATE FUNCTION tap_hostile_evil.to_regclass(text) RETURNS regclass LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'pg_class'::regclass $$;
CREATE FUNCTION tap_hostile_evil.regexp_split_to_table(text, text) RETURNS SETOF text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_hostile_evil.array_to_string(anyarray, text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 'evil' $$;
CREATE FUNCTION tap_hostile_evil.cardinality(anyarray) RETURNS integer LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 0 $$;
-- Aggregates.
CREATE FUNCTION tap_hostile_evil.count_step(bigint) RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 666::bigint $$;
CREATE AGGREGATE tap_hostile_evil.count(*) (SFUNC = tap_hostile_evil.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION tap_hostile_evil.agg_step(jsonb, jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT '[]'::jsonb $$;
CREATE AGGREGATE tap_hostile_evil.jsonb_agg(jsonb) (SFUNC = tap_hostile_evil.agg_step, STYPE = jsonb);
CREATE FUNCTION tap_hostile_evil.max_step(bigint, bigint) RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
  AS $$ SELECT tap_hostile_evil.hit(); SELECT 0::bigint $$;
CREATE AGGREGATE tap_hostile_evil.max(bigint) (SFUNC = tap_hostile_evil.max_step, STYPE = bigint);
-- Operators: each one's function counts and answers wrongly.
DO $$
DECLARE
    o record;
BEGIN
    FOR o IN SELECT * FROM (VALUES
        ('=', 'text', 'text', 'bool', 'SELECT false'), ('<>', 'text', 'text', 'bool', 'SELECT false'),
        ('~', 'text', 'text', 'bool', 'SELECT true'), ('~~', 'text', 'text', 'bool', 'SELECT true'),
        ('||', 'text', 'text', 'text', 'SELECT ''evil''::text'),
        ('=', 'jsonb', 'jsonb', 'bool', 'SELECT false'), ('->', 'jsonb', 'text', 'jsonb', 'SELECT ''"evil"''::jsonb'),
        ('->', 'jsonb', 'int4', 'jsonb', 'SELECT ''"evil"''::jsonb'), ('->>', 'jsonb', 'text', 'text', 'SELECT ''evil''::text'),
        ('?', 'jsonb', 'text', 'bool', 'SELECT true'), ('?|', 'jsonb', 'text[]', 'bool', 'SELECT true'),
        ('@>', 'jsonb', 'jsonb', 'bool', 'SELECT true'),
        ('=', 'uuid', 'uuid', 'bool', 'SELECT false'), ('=', 'bool', 'bool', 'bool', 'SELECT false'),
        ('=', 'int4', 'int4', 'bool', 'SELECT false'), ('<=', 'int4', 'int4', 'bool', 'SELECT true'),
        ('>', 'int4', 'int4', 'bool', 'SELECT true'), ('=', 'int8', 'int8', 'bool', 'SELECT false'),
        ('<', 'timestamptz', 'timestamptz', 'bool', 'SELECT true'),
        ('>=', 'timestamptz', 'timestamptz', 'bool', 'SELECT true'),
        ('-', 'timestamptz', 'timestamptz', 'interval', 'SELECT ''1 year''::interval'),
        ('=', 'name', 'name', 'bool', 'SELECT false'), ('=', 'name', 'text', 'bool', 'SELECT false'))
        AS t(op, l, r, res, body)
    LOOP
        EXECUTE format('CREATE FUNCTION tap_hostile_evil.%I(pg_catalog.%s, pg_catalog.%s) RETURNS pg_catalog.%s '
                       'LANGUAGE sql SET search_path = pg_catalog AS %L',
                       'op_' || md5(o.op || o.l || o.r), o.l, o.r, o.res,
                       'SELECT tap_hostile_evil.hit(); ' || o.body);
        EXECUTE format('CREATE OPERATOR tap_hostile_evil.%s (LEFTARG = pg_catalog.%s, RIGHTARG = pg_catalog.%s, FUNCTION = tap_hostile_evil.%I)',
                       o.op, o.l, o.r, 'op_' || md5(o.op || o.l || o.r));
    END LOOP;
END
$$;
-- Domains named like the types opsflags casts to: a cast runs the check.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['text', 'jsonb', 'int8', 'int4', 'float8', 'bool', 'uuid', 'timestamptz', 'name', 'regclass'] LOOP
        EXECUTE format('CREATE DOMAIN tap_hostile_evil.%I AS pg_catalog.%I CHECK (tap_hostile_evil.hit())', t, t);
    END LOOP;
END
$$;
-- Tables and views named like opsflags' and the catalogs' relations.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['feature_flags', 'feature_flag_configs', 'environments', 'app_config', 'audit_log',
                             'user_segments', 'flag_prerequisites', 'system_health', 'alerts', 'deployment_history',
                             'pg_stat_activity', 'pg_database', 'pg_extension', 'pg_class', 'pg_namespace',
                             'pg_roles', 'pg_settings', 'pg_proc'] LOOP
        EXECUTE format('CREATE VIEW tap_hostile_evil.%I AS SELECT tap_hostile_evil.hit() AS hit', t);
    END LOOP;
END
$$;
RESET ROLE;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------
-- Everything the hostile role received in this file (results, error texts).
CREATE TEMP TABLE hostile_saw (src text, query text, got text, detail text);

-- Run query as role in a subtransaction (after setup, run as this
-- superuser), always rolled back; the value (text) or 'ERROR <sqlstate>'.
CREATE FUNCTION pg_temp.in_rollback(setup text, role text, query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v text;
    st text;
    m text;
    d text;
    h text;
    got text;
BEGIN
    BEGIN
        IF setup IS NOT NULL THEN
            EXECUTE setup;
        END IF;
        EXECUTE format('SET LOCAL ROLE %I', role);
        IF query ~* '^\s*(SELECT|WITH|VALUES)\M' THEN
            EXECUTE query INTO v;
        ELSE
            EXECUTE query;
        END IF;
        RESET ROLE;
        RAISE EXCEPTION 'tap: roll back' USING ERRCODE = 'P0001';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
        IF st = 'P0001' AND m = 'tap: roll back' THEN
            got := coalesce(v, '(null)');
            m := NULL;
        ELSE
            got := 'ERROR ' || st;
        END IF;
    END;
    IF role = 'tap_hostile' THEN
        INSERT INTO hostile_saw VALUES ('in_rollback', left(query, 2000), got, concat_ws(' | ', v, m, d, h));
    END IF;
    RETURN got;
END
$$;
-- Its error message.
CREATE FUNCTION pg_temp.error_text(role text, query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m text;
BEGIN
    SET LOCAL ROLE tap_hostile;
    EXECUTE query;
    RESET ROLE;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT;
    RETURN m;
END
$$;

-- Calls made as tap_hostile, in order, each rolled back; want is the
-- plain-SQL reference.
CREATE TEMP TABLE calls (n serial, grp text, label text, sql text, want text, got text);
CREATE FUNCTION pg_temp.run_calls() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT n, sql FROM calls WHERE got IS NULL ORDER BY n LOOP
        UPDATE calls SET got = pg_temp.in_rollback(NULL, 'tap_hostile', r.sql) WHERE n = r.n;
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.mismatches(g text) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(left(label, 60) || ': want ' || left(want, 80) || ', got ' || left(got, 80) ORDER BY n)
  FROM calls WHERE grp = g AND got IS DISTINCT FROM want
$$;

-- Fingerprint of everything opsflags stores (the sampler's tables aside).
CREATE FUNCTION pg_temp.fingerprint() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v text;
    acc text := '';
BEGIN
    FOR r IN SELECT c.oid::regclass::text AS rel, c.relname, c.relkind FROM pg_class c
             WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('r', 'p', 'S')
               AND c.relname NOT IN ('system_health', 'system_health_id_seq', 'alerts', 'alerts_id_seq')
             ORDER BY c.relname LOOP
        IF r.relname = 'audit_log' THEN
            SELECT count(*) || '/' || coalesce(max(id), 0) INTO v FROM opsflags.audit_log;
        ELSIF r.relkind = 'S' THEN
            EXECUTE format('SELECT last_value || %L || is_called FROM %s', '/', r.rel) INTO v;
        ELSE
            EXECUTE format('SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %s t', '|', '', r.rel) INTO v;
        END IF;
        acc := acc || r.rel || '=' || v || ';';
    END LOOP;
    RETURN md5(acc);
END
$$;

-- Deterministic pseudo-random choices (change the seed to draw other cases).
CREATE FUNCTION pg_temp.rnd(tag text, i int) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
  SELECT ('x' || substr(md5(tag || '/' || i || '/opsflags-security-1'), 1, 8))::bit(32)::bigint / 4294967296.0::double precision
$$;
CREATE FUNCTION pg_temp.irnd(tag text, i int, lo int, hi int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$ SELECT lo + floor(pg_temp.rnd(tag, i) * (hi - lo + 1))::int $$;
-- base with 1 to 3 hostile characters inserted (so never equal to it).
CREATE FUNCTION pg_temp.mutate(tag text, i int, base text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    pool constant text[] := ARRAY['''', '"', '\', '%', '_', ';', '|', ' ', E'\n', E'\t', chr(8203), chr(160), 'é', '用',
                                  chr(128681), '$', '*', '?', '(', ')', ',', '/', '#', '@', '[', ']', '{', '}', '=', '<',
                                  '>', '!', '&', '^', '~', '+', '.', ':', '-', 'X', '0', '--', '/*', '\x00', '\0', '%s', '%%',
                                  ''' OR ''1''=''1', '; DROP TABLE opsflags.app_config; --'];
    s text := base;
    pos int;
BEGIN
    FOR j IN 1 .. pg_temp.irnd(tag || '/n', i, 1, 3) LOOP
        pos := pg_temp.irnd(tag || '/p' || j, i, 0, length(s));
        s := substr(s, 1, pos) || pool[pg_temp.irnd(tag || '/c' || j, i, 1, cardinality(pool))] || substr(s, pos + 1);
    END LOOP;
    RETURN s;
END
$$;

-- Plain-SQL reference of config_get(key, environment) as the hostile role
-- sees it: the environment's row, else 'all', else NULL; 42501 if sensitive.
CREATE FUNCTION pg_temp.ref_config(k text, e text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN r.config_value IS NULL THEN '(null)'
              WHEN r.is_sensitive THEN 'ERROR 42501'
              ELSE r.config_value::text END
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT c.config_value, c.is_sensitive FROM opsflags.app_config c
                     WHERE c.config_key = k AND c.environment IN (coalesce(e, current_setting('opsflags.environment')), 'all')
                     ORDER BY c.environment = 'all' LIMIT 1) r ON true
$$;

SELECT pg_temp.fingerprint() AS fp_start \gset

-------------------------------------------------------------------------------
-- R1: the hostile role may evaluate flags, call health_status() and read
-- non-sensitive configuration, and execute nothing else
-------------------------------------------------------------------------------
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname::text)
           FROM pg_proc p WHERE p.pronamespace IN ('opsflags'::regnamespace, 'opsflags_internal'::regnamespace)
             AND has_function_privilege('tap_hostile', p.oid, 'EXECUTE')),
          -- feature_enabled, feature_explain, feature_value: for a user and role, and for a context;
          -- audit_reader_tenants, audit_reads_all: what audit_log's policy asks about the reader
          -- (its own tenants, whether it is an admin), run as the reader;
          -- console_sign_out_all: a role may end its own console sessions (it checks the caller, 42501
          -- for another role's: sql/console_auth.sql);
          -- api_*: the management API's dispatcher and its helpers, SECURITY INVOKER, run as the
          -- signed-in role, so that the role's own privileges decide (sql/http_api.sql), and
          -- url_decode, which api_decode calls;
          -- writer: the default of created_by and updated_by (opsflags.updated_by, else session_user)
          ARRAY['api_audit', 'api_body', 'api_bool', 'api_call', 'api_csv_field', 'api_decode', 'api_error', 'api_fields',
                'api_flag', 'api_flags', 'api_openapi', 'api_param', 'api_strings', 'api_text',
                'audit_reader_tenants', 'audit_reads_all', 'config_all', 'config_get', 'console_sign_out_all', 'errors_last_hour', 'feature_enabled', 'feature_enabled',
                'feature_explain', 'feature_explain', 'feature_guard', 'feature_value', 'feature_value', 'flag_cache_stats', 'health_aggregate', 'health_status', 'is_maintenance_mode', 'is_string_array',
                'is_valid_config_key', 'is_valid_flag_key', 'launchdarkly_bucket', 'maintenance_enforced', 'max_prerequisite_count', 'max_prerequisite_depth',
                'restoring', 'rollout_bucket', 'run_startup_checks', 'url_decode', 'variant_bucket', 'worker_status',
                'writer'],
          'R1: the opsflags functions (schemas opsflags and opsflags_internal) an ordinary role may execute are exactly the evaluation, health and read-only ones (a new function granted to PUBLIC must be added here on purpose)');

-------------------------------------------------------------------------------
-- R5: SECURITY DEFINER functions pin search_path; nothing the hostile role
-- plants runs inside opsflags
-------------------------------------------------------------------------------
CREATE TEMP VIEW pinned AS
SELECT p.oid::regprocedure::text AS fn, p.prosecdef,
       (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%') AS path
FROM pg_proc p WHERE p.pronamespace IN ('opsflags'::regnamespace, 'opsflags_internal'::regnamespace);
SELECT cmp_ok((SELECT count(*)::int FROM pinned WHERE prosecdef), '>=', 1,
              'R5: (pg_proc lists the SECURITY DEFINER functions of schema opsflags: config_all at least)');
SELECT is((SELECT array_agg(fn ORDER BY fn) FROM pinned
           WHERE (prosecdef AND path IS NULL)
              OR (path IS NOT NULL
                  AND (NOT (SELECT bool_and(btrim(s) IN ('pg_catalog', 'pg_temp', 'opsflags'))
                            FROM unnest(string_to_array(path, ',')) s)
                       OR btrim((string_to_array(path, ','))[cardinality(string_to_array(path, ','))]) <> 'pg_temp'))),
          NULL,
          'R5: every SECURITY DEFINER function of schema opsflags sets search_path, and every pinned search_path names only pg_catalog, opsflags and pg_temp, with pg_temp last');

-- The planted objects work: planted code runs for unqualified names in a
-- session with the hostile path, and the escalation counter counts a call
-- made as another role.
SELECT dblink_connect('h_clean', pg_temp.tap_conninfo(usr => 'tap_hostile', app => 'tap_hostile')) AS x \gset
SELECT dblink_connect('h_evil', pg_temp.tap_conninfo(usr => 'tap_hostile', app => 'tap_hostile')) AS x \gset
SELECT dblink_exec('h_evil', $evil$
CREATE TEMP VIEW feature_flags AS SELECT tap_hostile_evil.hit() AS hit;
CREATE TEMP VIEW feature_flag_configs AS SELECT tap_hostile_evil.hit() AS hit;
CREATE TEMP VIEW app_config AS SELECT tap_hostile_evil.hit() AS hit;
CREATE TEMP VIEW environments AS SELECT tap_hostile_evil.hit() AS hit;
CREATE TEMP VIEW pg_stat_activity AS SELECT tap_hostile_evil.hit() AS hit;
CREATE TEMP VIEW tap_hostile_jobs AS SELECT 'pending'::pg_catalog.text AS state WHERE tap_hostile_evil.hit();
SET search_path = pg_temp, tap_hostile_evil, pg_catalog, public;
$evil$) AS x \gset
SELECT is((SELECT v FROM dblink('h_evil', $$SELECT concat_ws(' ', 'a' = 'a', extract(year FROM now()), current_setting('opsflags.environment'),
                                                        jsonb_typeof('[]'), gen_random_uuid(), (SELECT count(*) FROM pg_stat_activity),
                                                        (SELECT hit FROM app_config), 'x'::text)$$) AS t(v text)),
          'f 2000 staging object 00000000-0000-0000-0000-0000000000ee 666 t x',
          'R5: (in the hostile session, =, now(), current_setting, jsonb_typeof, gen_random_uuid, count(*), pg_stat_activity, app_config and text are the planted ones)');
SELECT tap_hostile_evil.hit() AS x \gset
SELECT is(ARRAY[(SELECT last_value >= 5 FROM tap_hostile_evil.calls), (SELECT last_value = 1 AND is_called FROM tap_hostile_evil.escalated)],
          ARRAY[true, true], 'R5: (planted code counts its calls, and those made as another role as escalations)');
SELECT setval('tap_hostile_evil.calls', 1, false) AS x, setval('tap_hostile_evil.escalated', 1, false) AS y \gset

-- The same steps in a clean and in the hostile session (fresh backends, so
-- the C code prepares its queries under the hostile path).  The step
-- queries themselves name everything with its schema.
CREATE TEMP TABLE steps (step int, sql text);
INSERT INTO steps VALUES
  (1, $$SELECT opsflags.feature_enabled('tap_hostile.roll', u)::pg_catalog.text
        FROM pg_catalog.unnest(ARRAY['u1', 'u2', 'user-3', 'user-4', 'user-5', 'user-6', 'user-7', 'user-8', NULL]::pg_catalog.text[])
             WITH ORDINALITY AS t(u, i) ORDER BY i$$),
  (2, $$SELECT opsflags.feature_enabled('tap_hostile.roll', NULL, 'ops')::pg_catalog.text$$),
  (3, $$SELECT opsflags.feature_enabled(k)::pg_catalog.text
        FROM pg_catalog.unnest(ARRAY['tap_hostile.on', 'tap_hostile.off', 'tap_hostile.nope']::pg_catalog.text[]) WITH ORDINALITY AS t(k, i) ORDER BY i$$),
  (4, $$SELECT opsflags.feature_value('tap_hostile.v', pg_catalog.concat('user-', g))::pg_catalog.text
        FROM pg_catalog.generate_series(1, 12) g ORDER BY g$$),
  (5, $$SELECT opsflags.feature_explain('tap_hostile.roll', 'user-7', 'dev')::pg_catalog.text$$),
  (6, $$SELECT pg_catalog.concat_ws(' ', opsflags.rollout_bucket('gr1', '123'), opsflags.variant_bucket('gr1', '123', 7))$$),
  (7, $$SELECT opsflags.config_get('tap_hostile.plain')::pg_catalog.text$$),
  (8, $$SELECT opsflags.config_get('tap_hostile.plain', 'staging')::pg_catalog.text$$),
  (9, $$SELECT opsflags.config_get('tap_hostile.secret')::pg_catalog.text$$),
  (10, $$SELECT t::pg_catalog.text FROM opsflags.config_all() t WHERE t.config_key OPERATOR(pg_catalog.~~) 'tap\_hostile.%'
         ORDER BY t.config_key, t.environment$$),
  (11, $$SELECT pg_catalog.concat_ws(' ', opsflags.is_maintenance_mode(), opsflags.maintenance_enforced(),
                                     opsflags.health_aggregate(ARRAY['healthy', 'degraded']::pg_catalog.text[]))$$),
  (12, $$SELECT pg_catalog.jsonb_extract_path_text(opsflags.health_status(), 'components', 'queue', 'message')$$),
  (13, $$SELECT pg_catalog.concat_ws(' ', pg_catalog.jsonb_extract_path_text(h, 'components', 'queue', 'status'),
                                     pg_catalog.jsonb_extract_path_text(h, 'components', 'database', 'status'),
                                     pg_catalog.jsonb_extract_path_text(h, 'version'))
         FROM opsflags.health_status() h$$),
  (14, $$SELECT pg_catalog.concat_ws(' ', pg_catalog.jsonb_extract_path_text(opsflags.run_startup_checks(), 'success'),
                                     opsflags.errors_last_hour() IS NOT NULL, pg_catalog.jsonb_typeof(opsflags.worker_status()))$$),
  (15, $$SELECT pg_catalog.concat_ws(' ', opsflags.is_valid_flag_key('tap_hostile.on'), opsflags.is_valid_flag_key('bad key'),
                                     opsflags.is_valid_config_key('a.b'), opsflags.is_string_array('["a"]'),
                                     opsflags.is_string_array('[1]'), opsflags.max_prerequisite_depth())$$),
  (16, $$INSERT INTO tap_hostile_app.guarded VALUES (1) RETURNING 'inserted'::pg_catalog.text$$),
  (17, $$INSERT INTO tap_hostile_app.guarded_off VALUES (1) RETURNING 'inserted'::pg_catalog.text$$),
  (18, $$SELECT opsflags.get_flag('tap_hostile.on')::pg_catalog.text$$),
  (19, $$SELECT pg_catalog.set_config('opsflags.environment', 'staging', false)$$),
  (20, $$SELECT pg_catalog.concat_ws(' ', opsflags.feature_enabled('tap_hostile.on'), opsflags.feature_enabled('tap_hostile.roll', 'u1'),
                                     opsflags.config_get('tap_hostile.plain'),
                                     pg_catalog.jsonb_extract_path_text(opsflags.feature_explain('tap_hostile.on'), 'environment'))$$),
  (21, $$SELECT pg_catalog.set_config('opsflags.environment', 'production', false)$$);

CREATE TEMP TABLE hostile_results (run text, step int, n int, v text);
CREATE FUNCTION pg_temp.run_steps(conn text, run text, which int[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    st text;
    msg text;
BEGIN
    FOR s IN SELECT * FROM steps WHERE step = ANY (which) ORDER BY step LOOP
        BEGIN
            INSERT INTO hostile_results
            SELECT run, s.step, row_number() OVER (), t.v FROM dblink(conn, s.sql) AS t(v text);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            INSERT INTO hostile_results VALUES (run, s.step, 0, 'ERROR ' || st || ' ' || msg);
        END;
    END LOOP;
END
$$;
SELECT pg_temp.run_steps('h_clean', 'clean', ARRAY(SELECT step FROM steps)) AS x \gset
SELECT pg_temp.run_steps('h_evil', 'evil', ARRAY(SELECT step FROM steps)) AS x \gset

SELECT diag('R5 step ' || coalesce(c.step, e.step) || ' clean: ' || coalesce(c.v, '(none)') || ' | hostile path: ' || coalesce(e.v, '(none)'))
FROM (SELECT * FROM hostile_results WHERE run = 'clean') c
FULL JOIN (SELECT * FROM hostile_results WHERE run = 'evil') e USING (step, n)
WHERE c.v IS DISTINCT FROM e.v ORDER BY 1 LIMIT 20;
SELECT is((SELECT array_agg(step ORDER BY step) FROM hostile_results WHERE run = 'clean' AND v LIKE 'ERROR %'),
          ARRAY[9, 17, 18],
          'R5: in a clean session the hostile role''s calls all work, except reading the secret (9), the guarded write while the flag is off (17) and get_flag (18)');
SELECT is((SELECT array_agg(v ORDER BY step) FROM hostile_results WHERE run = 'clean' AND step IN (9, 17, 18)),
          ARRAY['ERROR 42501 permission denied to read sensitive configuration value "tap_hostile.secret"',
                'ERROR 0A000 feature flag "tap_hostile.off" is off: writes to table "guarded_off" are disabled',
                'ERROR 42501 permission denied for function get_flag'],
          'R5: ... and those fail with 42501, 0A000 and 42501');
SELECT is((SELECT count(*)::int FROM (SELECT * FROM hostile_results WHERE run = 'clean') c
           FULL JOIN (SELECT * FROM hostile_results WHERE run = 'evil') e USING (step, n)
           WHERE c.v IS DISTINCT FROM e.v), 0,
          'R5: under search_path = pg_temp, tap_hostile_evil, pg_catalog, public with planted objects every call returns exactly what it returns in a clean session (flags, variations, explain, config_get, config_all, maintenance, health_status with the queue query, startup checks, feature_guard, staging)');
SELECT is((SELECT v FROM hostile_results WHERE run = 'evil' AND step = 12), '1 pending, 1 failed',
          'R5: health_status() as the hostile role under its path: the admin''s queue query counted with the real = and count(*)');
SELECT is(ARRAY[(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.calls),
                (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.escalated)],
          ARRAY[0::bigint, 0::bigint],
          'R5: no planted function, aggregate, operator, domain, table or view was called by opsflags (none as another role)');

-------------------------------------------------------------------------------
-- R2: the hostile role cannot change anything of opsflags
-------------------------------------------------------------------------------
SELECT is(nullif((SELECT array_agg(c.relname || ' ' || p ORDER BY c.relname, p)
           FROM pg_class c,
                unnest(CASE WHEN c.relkind = 'S' THEN ARRAY['USAGE', 'SELECT', 'UPDATE']
                            ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] END) p
           WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('tap_hostile', c.oid, p)
                      WHEN p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                      THEN has_any_column_privilege('tap_hostile', c.oid, p)
                      ELSE has_table_privilege('tap_hostile', c.oid, p) END)
          || CASE WHEN has_schema_privilege('tap_hostile', 'opsflags', 'CREATE') THEN ARRAY['schema opsflags CREATE'] ELSE '{}' END
          || CASE WHEN has_schema_privilege('tap_hostile', 'opsflags_internal', 'CREATE') THEN ARRAY['schema opsflags_internal CREATE'] ELSE '{}' END, '{}'),
          NULL,
          'R2: tap_hostile holds no privilege on any table, view or sequence of schema opsflags (not even on one column), nor CREATE on the schema (nor on opsflags_internal)');

-- DDL and ownership paths, each tried as tap_hostile (rolled back).
INSERT INTO calls (grp, label, sql, want)
SELECT 'ddl', c.relname || ': ' || a.label, format(a.tmpl, c.relname), 'ERROR 42501'
FROM pg_class c,
     (VALUES ('own trigger', 'CREATE TRIGGER tap_spy AFTER INSERT OR UPDATE ON opsflags.%I FOR EACH ROW EXECUTE FUNCTION tap_hostile_app.spy()'),
             ('rule', 'CREATE RULE tap_spy AS ON INSERT TO opsflags.%I DO ALSO NOTIFY tap_spy'),
             ('policy', 'CREATE POLICY tap_spy ON opsflags.%I USING (true)'),
             ('disable triggers', 'ALTER TABLE opsflags.%I DISABLE TRIGGER ALL'),
             ('owner', 'ALTER TABLE opsflags.%I OWNER TO tap_hostile'),
             ('index', 'CREATE INDEX ON opsflags.%I ((1))'),
             ('lock', 'LOCK TABLE opsflags.%I IN ACCESS SHARE MODE'),
             ('comment', 'COMMENT ON TABLE opsflags.%I IS ''hostile''')) AS a(label, tmpl)
WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.label;
INSERT INTO calls (grp, label, sql, want)
SELECT 'ddl', c.relname || ': ' || a.label, format(a.tmpl, 'opsflags.' || quote_ident(c.relname)), 'ERROR 42501'
FROM pg_class c,
     (VALUES ('nextval', 'SELECT nextval(%L)'), ('setval', 'SELECT setval(%L, 1)'), ('currval', 'SELECT currval(%L)'),
             ('read', 'SELECT last_value FROM %s')) AS a(label, tmpl)
WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind = 'S'
ORDER BY c.relname, a.label;
INSERT INTO calls (grp, label, sql, want) VALUES
  ('ddl', 'foreign key to feature_flags', 'CREATE TABLE tap_hostile_app.fk (x uuid REFERENCES opsflags.feature_flags (id))', 'ERROR 42501'),
  ('ddl', 'foreign key to app_config', 'CREATE TABLE tap_hostile_app.fk (x uuid REFERENCES opsflags.app_config (id))', 'ERROR 42501'),
  ('ddl', 'new function in opsflags', 'CREATE FUNCTION opsflags.tap_hostile_f() RETURNS int LANGUAGE sql AS ''SELECT 1''', 'ERROR 42501'),
  ('ddl', 'replace feature_enabled',
   'CREATE OR REPLACE FUNCTION opsflags.feature_enabled(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL) RETURNS boolean LANGUAGE sql AS ''SELECT true''',
   'ERROR 42501'),
  ('ddl', 'replace config_all',
   'CREATE OR REPLACE FUNCTION opsflags.config_all(environment text DEFAULT NULL) RETURNS SETOF opsflags.app_config LANGUAGE sql AS ''SELECT * FROM opsflags.app_config''',
   'ERROR 42501'),
  ('ddl', 'unpin config_all''s search_path', 'ALTER FUNCTION opsflags.config_all(text) RESET search_path', 'ERROR 42501'),
  ('ddl', 'config_all SECURITY INVOKER', 'ALTER FUNCTION opsflags.config_all(text) SECURITY INVOKER', 'ERROR 42501'),
  ('ddl', 'take feature_enabled', 'ALTER FUNCTION opsflags.feature_enabled(text, text, text) OWNER TO tap_hostile', 'ERROR 42501'),
  ('ddl', 'drop is_valid_flag_key', 'DROP FUNCTION opsflags.is_valid_flag_key(text)', 'ERROR 42501'),
  ('ddl', 'operator in opsflags', 'CREATE OPERATOR opsflags.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texteq)', 'ERROR 42501'),
  ('ddl', 'table in opsflags', 'CREATE TABLE opsflags.tap_hostile_t (x int)', 'ERROR 42501'),
  ('ddl', 'view in opsflags', 'CREATE VIEW opsflags.app_config_all AS SELECT 1 AS x', 'ERROR 42501'),
  ('ddl', 'rename schema opsflags', 'ALTER SCHEMA opsflags RENAME TO tap_hostile_x', 'ERROR 42501'),
  ('ddl', 'new function in opsflags_internal', 'CREATE FUNCTION opsflags_internal.tap_hostile_f() RETURNS int LANGUAGE sql AS ''SELECT 1''', 'ERROR 42501'),
  ('ddl', 'replace validate_config_row',
   'CREATE OR REPLACE FUNCTION opsflags_internal.validate_config_row() RETURNS trigger LANGUAGE plpgsql AS ''BEGIN RETURN NEW; END''',
   'ERROR 42501'),
  ('ddl', 'take check_variations', 'ALTER FUNCTION opsflags_internal.check_variations(text, jsonb, integer, integer, jsonb) OWNER TO tap_hostile', 'ERROR 42501'),
  ('ddl', 'rename schema opsflags_internal', 'ALTER SCHEMA opsflags_internal RENAME TO tap_hostile_y', 'ERROR 42501'),
  ('ddl', 'update the extension', 'ALTER EXTENSION opsflags UPDATE', 'ERROR 42501'),
  ('ddl', 'drop the extension', 'DROP EXTENSION opsflags CASCADE', 'ERROR 42501'),
  ('ddl', 'GRANT opsflags_admin to itself', 'GRANT opsflags_admin TO tap_hostile', 'ERROR 42501'),
  ('ddl', 'superuser for itself', 'ALTER ROLE tap_hostile SUPERUSER', 'ERROR 42501'),
  ('ddl', 'ordinary trigger on its own table (control)',
   'CREATE TRIGGER tap_spy AFTER INSERT ON tap_hostile_app.own FOR EACH ROW EXECUTE FUNCTION tap_hostile_app.spy()', '(null)');
SELECT pg_temp.run_calls() AS x \gset
-- SET ROLE is checked against the session user: tried in its own session.
CREATE FUNCTION pg_temp.remote_state(conn text, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    PERFORM dblink_exec(conn, cmd);
    RETURN '(null)';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    RETURN 'ERROR ' || st;
END
$$;
INSERT INTO calls (grp, label, sql, want, got)
SELECT 'ddl', 'in its own session: ' || x, x, 'ERROR 42501', pg_temp.remote_state('h_clean', x)
FROM unnest(ARRAY['SET ROLE opsflags_admin', 'SET ROLE postgres', 'SET SESSION AUTHORIZATION postgres']) x;
SELECT cmp_ok((SELECT count(*)::int FROM calls WHERE grp = 'ddl'), '>=', 100,
              'R2: (at least 100 DDL and ownership paths tried)');
SELECT is(pg_temp.mismatches('ddl'), NULL,
          'R2: tap_hostile gets 42501 attaching its trigger, a rule, a policy, an index or a foreign key to any opsflags table, disabling their triggers, taking, locking or commenting them, using their sequences, creating, replacing, altering or dropping anything in schema opsflags (or opsflags_internal), the extension, or becoming opsflags_admin or a superuser (it may put a trigger on its own table)');

-- opsflags' trigger functions on its own table: only feature_guard.
INSERT INTO calls (grp, label, sql, want)
SELECT 'trigger functions', p.proname,
       format('CREATE TRIGGER tap_t AFTER INSERT OR UPDATE OR DELETE ON tap_hostile_app.own FOR EACH ROW EXECUTE FUNCTION %I.%I(%s)',
              p.pronamespace::regnamespace::text, p.proname, CASE WHEN p.proname = 'feature_guard' THEN '''tap_hostile.on''' ELSE '''config'', ''id''' END),
       CASE WHEN p.proname = 'feature_guard' THEN '(null)' ELSE 'ERROR 42501' END
FROM pg_proc p WHERE p.pronamespace IN ('opsflags'::regnamespace, 'opsflags_internal'::regnamespace)
  AND p.prorettype = 'trigger'::regtype
ORDER BY p.proname;
SELECT pg_temp.run_calls() AS x \gset
SELECT cmp_ok((SELECT count(*)::int FROM calls WHERE grp = 'trigger functions'), '>=', 10,
              'R2: (every trigger function of schemas opsflags and opsflags_internal tried, from pg_proc)');
SELECT is(pg_temp.mismatches('trigger functions'), NULL,
          'R2: on its own table tap_hostile may attach feature_guard and no other opsflags trigger function (audit_trigger would forge audit rows, maintenance_config_changed would reach every session, invalidate_flag_cache, notify_*, validate_*, touch_row, audit_log_guard, flags_changed: 42501)');

-------------------------------------------------------------------------------
-- Section 8 for crafted input: flag keys, user ids, roles, environments
-------------------------------------------------------------------------------
CREATE TEMP TABLE ckeys (n serial, label text, k text);
INSERT INTO ckeys (label, k) VALUES
  ('quote', 'tap_hostile.on'''), ('double quote', 'tap_hostile.on"'), ('backslash', 'tap_hostile.on\'),
  ('backslash n', 'tap_hostile.on\n'), ('newline', E'tap_hostile.on\n'), ('tab', E'tap_hostile.on\t'), ('carriage return', E'tap_hostile.on\r'),
  ('percent', 'tap_hostile.%'), ('only percent', '%'), ('LIKE underscore', 'tap_hostile.o_'), ('star', '*'), ('regex', '.*'),
  ('anchored regex', '^tap_hostile\.on$'), ('injection', '''; DROP TABLE opsflags.feature_flags; --'),
  ('injection or', 'tap_hostile.on'' OR ''1''=''1'), ('injection delete', 'x"); DELETE FROM opsflags.app_config; --'),
  ('injection union', 'tap_hostile.on'' UNION SELECT config_value FROM opsflags.app_config --'),
  ('NUL escape \0', 'tap_hostile.on\0'), ('NUL escape \x00', 'tap_hostile.on\x00'), ('NUL escape %00', 'tap_hostile.on%00'),
  ('NUL escape \u0000', 'tap_hostile.on\u0000'), ('NUL-ish E escape', E'tap_hostile.on\\000'),
  ('umlaut', 'tap_hostile.ön'), ('zero width space', 'tap_hostile.on' || chr(8203)), ('no-break space', 'tap_hostile.on' || chr(160)),
  ('cyrillic o', 'tap_hostile.' || chr(1086) || 'n'), ('fullwidth', 'ｔａｐ＿ｈｏｓｔｉｌｅ．ｏｎ'), ('emoji', 'tap_hostile.on' || chr(128681)),
  ('right-to-left override', chr(8238) || 'no.elitsoh_pat'), ('combining accent', 'tap_hostile.on' || chr(769)),
  ('upper case', 'TAP_HOSTILE.ON'), ('leading space', ' tap_hostile.on'), ('trailing space', 'tap_hostile.on '),
  ('empty', ''), ('space', ' '), ('environment production', 'production'), ('environment staging', 'staging'),
  ('environment all', 'all'), ('environment development', 'development'), ('env:key', 'staging:tap_hostile.on'),
  ('env|key', 'production|tap_hostile.on'), ('key@env', 'tap_hostile.on@staging'), ('env/key', 'staging/tap_hostile.on'),
  ('key:env (valid, unknown)', 'tap_hostile.on:staging'), ('pipe before config key', 'x|tap_hostile.plain'),
  ('pipe after config key', 'tap_hostile.plain|all'), ('config key trailing space', 'tap_hostile.secret '),
  ('config key LIKE', 'tap_hostile.secre_'), ('config key percent', 'tap_hostile.secret%'),
  ('100 characters (valid, unknown)', 'tap_hostile.' || repeat('a', 88)), ('101 characters', 'tap_hostile.on' || repeat('x', 87)),
  ('200 characters', 'tap_hostile.' || repeat('k', 188)), ('201 characters', 'tap_hostile.' || repeat('k', 189)),
  ('100000 characters', repeat('tap_hostile.on', 7143)), ('json', '{"key": "tap_hostile.on"}'), ('array literal', '{tap_hostile.on}'),
  ('dollar quote', '$$tap_hostile.on$$'), ('semicolon', 'tap_hostile.on;'), ('comment', 'tap_hostile.on--'),
  ('block comment', 'tap_hostile.on/*'), ('format directives', 'tap_hostile.%s%I%L'), ('printf', '%s%s%s%n%x'),
  ('path', '../tap_hostile.on'), ('dot', '.'), ('dots', '..'), ('colon', ':'), ('leading dash', '-tap_hostile.on'),
  ('valid, unknown', 'tap_hostile.nope'), ('trailing dot (valid, unknown)', 'tap_hostile.on.'), ('psql variable', ':tap_hostile');
-- Generated: real keys with 1 to 3 hostile characters inserted.
INSERT INTO ckeys (label, k)
SELECT 'generated ' || g, pg_temp.mutate('key', g, (ARRAY['tap_hostile.on', 'tap_hostile.roll', 'tap_hostile.v', 'tap_hostile.off',
                                                          'tap_hostile.plain', 'tap_hostile.secret', 'tap_hostile.api'])[1 + g % 7])
FROM generate_series(1, 160) g;

INSERT INTO calls (grp, label, sql, want)
SELECT 'feature_enabled', label, format('SELECT opsflags.feature_enabled(%L, %L, %L)', k, 'u1', 'ops'),
       CASE WHEN EXISTS (SELECT FROM opsflags.feature_flags f WHERE f.flag_key = k) THEN 'a real key' ELSE 'false' END
FROM ckeys ORDER BY n;
INSERT INTO calls (grp, label, sql, want)
SELECT 'feature_value', label, format('SELECT opsflags.feature_value(%L, %L)', k, 'u1'), '(null)' FROM ckeys ORDER BY n;
INSERT INTO calls (grp, label, sql, want)
SELECT 'feature_explain', label, format('SELECT opsflags.feature_explain(%L, %L, %L)', k, 'u1', 'ops'),
       '{"rule": null, "value": null, "bucket": null, "reason": "FLAG_NOT_FOUND", "enabled": false, "variant": null, "variation": null, "environment": "production", "flag_version": null}'
FROM ckeys ORDER BY n;
INSERT INTO calls (grp, label, sql, want)
SELECT 'config_get', label || ' @ ' || coalesce(e, 'default'), format('SELECT opsflags.config_get(%L, %L)', k, e), pg_temp.ref_config(k, e)
FROM ckeys, unnest(ARRAY[NULL, 'staging', 'all']) e ORDER BY n, e;
-- Cache keys "<environment>|<key>": a crafted key after a crafted
-- environment that spells the same cache key.
INSERT INTO calls (grp, label, sql, want)
SELECT 'config_get', q.label, q.sql, q.want
FROM unnest(ARRAY['tap_hostile.plain', 'tap_hostile.secret', 'tap_hostile.api']) WITH ORDINALITY AS rk(k, i),
     unnest(ARRAY['b', 'x.y', 'tap_hostile', 'all', 'staging']) WITH ORDINALITY AS s(s, j),
     unnest(ARRAY['production', 'staging']) WITH ORDINALITY AS env(e, h),
     LATERAL (VALUES (1, format('config_get(%s, %s)', rk.k, env.e || '|' || s.s),
                      format('SELECT opsflags.config_get(%L, %L)', rk.k, env.e || '|' || s.s), pg_temp.ref_config(rk.k, env.e || '|' || s.s)),
                     (2, format('then config_get(%s, %s)', s.s || '|' || rk.k, env.e),
                      format('SELECT opsflags.config_get(%L, %L)', s.s || '|' || rk.k, env.e), pg_temp.ref_config(s.s || '|' || rk.k, env.e)))
             AS q(o, label, sql, want)
ORDER BY rk.i, s.j, env.h, q.o;
-- Real keys in crafted environments.
CREATE TEMP TABLE cenvs (n serial, e text);
INSERT INTO cenvs (e) VALUES
  ('production '), (' production'), ('PRODUCTION'), ('Production'), ('production|x'), ('production|tap_hostile.plain'),
  ('all'), ('ALL'), (''), (' '), ('staging'''), ('staging"'), ('staging\'), ('staging;'), ('staging--'), ('%'), ('prod%'),
  ('prod_ction'), ('staging' || chr(8203)), ('stagïng'), (repeat('e', 63)), (repeat('e', 64)), (repeat('e', 1000)),
  ('tap-hostile'), ('-staging'), ('_staging'), ('staging_'), ('staging-2'), (E'production\n'), ('production\x00'),
  ('development'), ('staging'), ('production'), ('staging'' OR ''1''=''1'), ('production; SET ROLE postgres');
INSERT INTO calls (grp, label, sql, want)
SELECT 'config_get', format('config_get(%s, %s)', k, left(e, 40)), format('SELECT opsflags.config_get(%L, %L)', k, e), pg_temp.ref_config(k, e)
FROM cenvs, unnest(ARRAY['tap_hostile.plain', 'tap_hostile.secret', 'tap_hostile.api']) k ORDER BY cenvs.n, k;
-- config_all in crafted environments: sensitive values redacted.
INSERT INTO calls (grp, label, sql, want)
SELECT 'config_all', format('config_all(%s)', left(e, 40)),
       format($$SELECT count(*) FILTER (WHERE t.is_sensitive AND t.config_value <> '"[REDACTED]"') || ' ' || count(*) FILTER (WHERE t::text ~ %L)
                FROM opsflags.config_all(%L) t$$, :'secret_re', e),
       '0 0'
FROM cenvs ORDER BY n;
-- The admin functions: 42501 whatever the key (the privilege comes first).
INSERT INTO calls (grp, label, sql, want)
SELECT 'admin functions', f.label || ' ' || c.label, format(f.tmpl, c.k), 'ERROR 42501'
FROM (SELECT * FROM ckeys WHERE n <= 80) c,
     (VALUES ('get_flag', 'SELECT opsflags.get_flag(%L)'),
             ('get_flag env', 'SELECT opsflags.get_flag(''tap_hostile.on'', %L)'),
             ('get_flags', 'SELECT opsflags.get_flags(%L)'),
             ('toggle_flag', 'SELECT opsflags.toggle_flag(%L, true)'),
             ('update_flag', 'SELECT opsflags.update_flag(%L, ''{"is_enabled": true}'')'),
             ('archive_flag', 'SELECT opsflags.archive_flag(%L)'),
             ('create_flag', 'SELECT opsflags.create_flag(%L, ''x'')'),
             ('config_set', 'SELECT opsflags.config_set(%L, ''1'')'),
             ('config_delete', 'SELECT opsflags.config_delete(%L, ''all'')'),
             ('flags_for_environment', 'SELECT opsflags.flags_for_environment(%L)'),
             ('add_prerequisite', 'SELECT opsflags.add_prerequisite(%L, ''tap_hostile.on'')'),
             ('create_segment', 'SELECT opsflags.create_segment(%L, ''x'')'),
             ('add_rule', 'SELECT opsflags.add_rule(%L, ''{"id": "r"}'')'),
             ('remove_rule', 'SELECT opsflags.remove_rule(%L, ''r'')'),
             ('record_deployment', 'SELECT opsflags.record_deployment(''1.0'', %L)'),
             ('published_flags', 'SELECT opsflags.published_flags(%L)')) AS f(label, tmpl)
ORDER BY c.n, f.label;
-- Crafted user ids and roles against the 30% rollout with listed user u1
-- and role ops.
CREATE TEMP TABLE cusers (n serial, u text, r text);
INSERT INTO cusers (u, r)
SELECT CASE WHEN g % 10 = 0 THEN 'u1' ELSE pg_temp.mutate('user', g, 'u1') END,
       CASE WHEN g % 7 = 0 THEN 'ops' WHEN g % 7 = 1 THEN NULL ELSE pg_temp.mutate('role', g, 'ops') END
FROM generate_series(1, 150) g;
INSERT INTO cusers (u, r) VALUES ('U1', 'OPS'), ('u1 ', 'ops '), ('%', '%'), ('u_', 'op_'), ('["u1"]', '["ops"]'),
  ('u1,u2', 'ops,dev'), ('*', '*'), ('', ''), (NULL, NULL), (NULL, 'ops');
INSERT INTO calls (grp, label, sql, want)
SELECT 'users', format('user %s role %s', coalesce(u, 'NULL'), coalesce(r, 'NULL')),
       format('SELECT opsflags.feature_enabled(%L, %L, %L)', 'tap_hostile.roll', u, r),
       (coalesce(u = 'u1', false) OR coalesce(r = 'ops', false)
        OR (u IS NOT NULL AND opsflags.rollout_bucket('tap_hostile.roll', u) <= 30))::text
FROM cusers ORDER BY n;
-- Crafted opsflags.environment values.
INSERT INTO calls (grp, label, sql, want)
SELECT 'environment setting', left(e, 40), format('SELECT set_config(%L, %L, true)', 'opsflags.environment', e),
       CASE WHEN e !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN 'ERROR 22023'
            WHEN NOT EXISTS (SELECT FROM opsflags.environments v WHERE v.name = e) THEN 'ERROR 42704'
            ELSE e END
FROM cenvs ORDER BY n;
-- feature_guard with crafted keys on its own table.
CREATE FUNCTION pg_temp.guard_probe(k text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE format('CREATE TRIGGER tap_guard BEFORE INSERT ON tap_hostile_app.probe_guarded FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard(%L)', k);
    INSERT INTO tap_hostile_app.probe_guarded VALUES (1);
    RETURN 'inserted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ' ' || msg;
END
$$;
INSERT INTO calls (grp, label, sql, want)
SELECT 'feature_guard', label, format('SELECT pg_temp.guard_probe(%L)', k),
       '0A000 ' || format('feature flag "%s" is off: writes to table "%s" are disabled', k, 'probe_guarded')
FROM ckeys WHERE label NOT LIKE 'generated %' ORDER BY n;
INSERT INTO calls (grp, label, sql, want) VALUES
  ('feature_guard', 'the real key (control)', $$SELECT pg_temp.guard_probe('tap_hostile.on')$$, 'inserted');

SELECT pg_temp.run_calls() AS x \gset

SELECT cmp_ok((SELECT count(*)::int FROM ckeys), '>=', 230, 'section 8: (230 crafted flag keys, 160 of them generated)');
SELECT is(pg_temp.mismatches('feature_enabled'), NULL,
          'crafted keys: feature_enabled is false for every crafted key (none names a flag)');
SELECT is(array_cat(pg_temp.mismatches('feature_value'), pg_temp.mismatches('feature_explain')), NULL,
          'crafted keys: feature_value is NULL and feature_explain says FLAG_NOT_FOUND (no value, version or bucket of another flag) for every crafted key');
SELECT is(pg_temp.mismatches('config_get'), NULL,
          'crafted keys: config_get equals the plain-SQL reference for every crafted key and environment (NULL, the ''all'' fallback or 42501), also when a crafted environment spells the same cache key as a crafted key');
SELECT is(pg_temp.mismatches('config_all'), NULL,
          'crafted keys: config_all in every crafted environment redacts every sensitive value');
SELECT is(pg_temp.mismatches('admin functions'), NULL,
          'crafted keys: every admin function refuses tap_hostile with 42501 whatever the key (80 keys x 14 functions)');
SELECT is(pg_temp.mismatches('users'), NULL,
          'crafted user ids and roles: feature_enabled matches the reference (listed user, listed role, else bucket <= 30) for 160 pairs');
SELECT is(pg_temp.mismatches('environment setting'), NULL,
          'crafted environments: SET opsflags.environment refuses every malformed name with 22023 and every unknown one with 42704');
SELECT is(pg_temp.mismatches('feature_guard'), NULL,
          'crafted keys: feature_guard on its own table refuses the write with 0A000 and names the key verbatim (the real key lets it through; no key runs as SQL)');
SELECT is((SELECT array_agg(DISTINCT got ORDER BY got) FROM calls
           WHERE got LIKE 'ERROR %' AND got NOT IN ('ERROR 42501', 'ERROR 22023')
                 AND (grp, got) IS DISTINCT FROM ('environment setting', 'ERROR 42704')),
          NULL, 'crafted input: no other error (no internal error, no syntax error from a key that reached SQL)');
SELECT is(ARRAY[pg_temp.fingerprint(), to_regclass('tap_hostile_app.probe_guarded')::text,
                (SELECT count(*)::text FROM tap_hostile_app.stolen), (SELECT count(*)::text FROM tap_hostile_app.probe_guarded)],
          ARRAY[:'fp_start', 'tap_hostile_app.probe_guarded', '0', '0'],
          'R2: nothing the hostile role did so far wrote to any opsflags table, sequence or the audit log, or ran a spying trigger; its tables are intact');

-------------------------------------------------------------------------------
-- R5 (continued): health.queue_query naming a table without its schema,
-- and a temporary view of that name in the hostile session
-------------------------------------------------------------------------------
SELECT opsflags.config_set('health.queue_query',
  to_jsonb($q$SELECT count(*) FILTER (WHERE j.state = 'pending'), count(*) FILTER (WHERE j.state = 'failed') FROM tap_hostile_jobs j$q$::text)) AS x \gset
SELECT pg_temp.run_steps('h_clean', 'clean unqualified', ARRAY[12]) AS x \gset
SELECT pg_temp.run_steps('h_evil', 'evil unqualified', ARRAY[12]) AS x \gset
SELECT is(ARRAY[(SELECT v FROM hostile_results WHERE run = 'clean unqualified'), (SELECT v FROM hostile_results WHERE run = 'evil unqualified')],
          ARRAY['relation "tap_hostile_jobs" does not exist', 'health.queue_query must not read temporary relations'],
          'R5: an unqualified table in the queue query is not found (it runs with search_path = pg_catalog, pg_temp), and the hostile role''s temporary view of that name is refused');
SELECT is(ARRAY[(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.calls),
                (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.escalated)],
          ARRAY[0::bigint, 0::bigint],
          'R5: the temporary view''s planted function never ran as the owner of app_config');
SELECT opsflags.config_set('health.queue_query',
  to_jsonb($q$SELECT count(*) FILTER (WHERE j.state = 'pending'), count(*) FILTER (WHERE j.state = 'failed') FROM public.tap_hostile_jobs j$q$::text)) AS x \gset

-------------------------------------------------------------------------------
-- R3: sensitive values only for admins
-------------------------------------------------------------------------------
-- This backend's configuration cache holds the secrets an admin just read.
CREATE FUNCTION pg_temp.warm_then_hostile(k text, e text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM opsflags.config_get(k, e);
    RETURN pg_temp.in_rollback(format('SELECT opsflags.config_get(%L, %L)', k, e), 'tap_hostile',
                               format('SELECT opsflags.config_get(%L, %L)', k, e));
END
$$;
SELECT is(ARRAY[pg_temp.warm_then_hostile('tap_hostile.secret', NULL), pg_temp.warm_then_hostile('tap_hostile.secret', 'staging'),
                pg_temp.warm_then_hostile('tap_hostile.api', 'production'),
                pg_temp.in_rollback(NULL, 'tap_hostile_admin', $$SELECT opsflags.config_get('tap_hostile.api', 'production') ->> 'token'$$)],
          ARRAY['ERROR 42501', 'ERROR 42501', 'ERROR 42501', pg_temp.secret(3)],
          'R3: config_get of a sensitive value right after an admin read it in the same backend and transaction: 42501 for tap_hostile (an opsflags_admin member reads it)');

-- health_status(): app_version, commit_sha and the queue query's error.
CREATE FUNCTION pg_temp.health_with(setup text, role text, what text) RETURNS text
LANGUAGE sql AS $$
  SELECT pg_temp.in_rollback(setup, role,
           CASE what WHEN 'version' THEN $q$SELECT concat_ws(' / ', h ->> 'version', h ->> 'commit_sha') FROM opsflags.health_status() h$q$
                     ELSE $q$SELECT opsflags.health_status() -> 'components' -> 'queue' ->> 'message'$q$ END)
$$;
SELECT format($s$SELECT opsflags.config_set('app_version', to_jsonb(%L::text), 'tap', 'production', NULL, true),
                        opsflags.config_set('commit_sha', to_jsonb(%L::text), 'tap', 'production', NULL, true)$s$,
              pg_temp.secret(4), pg_temp.secret(5)) AS set_sensitive_version \gset
SELECT format($s$SELECT opsflags.config_set('health.queue_query', to_jsonb(%L::text), 'tap', 'all', NULL, true)$s$,
              format('SELECT %L::bigint, 0', pg_temp.secret(6))) AS set_sensitive_queue \gset
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'opsflags') AS extversion \gset
SELECT is(ARRAY[pg_temp.health_with(:'set_sensitive_version', 'tap_hostile', 'version'),
                pg_temp.health_with(:'set_sensitive_version', 'tap_hostile_admin', 'version'),
                pg_temp.health_with($s$SELECT opsflags.config_set('app_version', '"9.9.9-plain"', 'tap', 'production', NULL, false),
                                               opsflags.config_set('commit_sha', '"abc123-plain"', 'tap', 'production', NULL, false)$s$,
                                    'tap_hostile', 'version')],
          ARRAY[:'extversion',
                pg_temp.secret(4) || ' / ' || pg_temp.secret(5),
                '9.9.9-plain / abc123-plain'],
          'R3: health_status() shows a sensitive app_version and commit_sha to admins only (tap_hostile gets the extension''s version and no commit, as if unset); plain ones to everyone');
SELECT is(ARRAY[pg_temp.health_with(:'set_sensitive_queue', 'tap_hostile', 'queue'),
                pg_temp.health_with(:'set_sensitive_queue', 'tap_hostile_admin', 'queue'),
                pg_temp.health_with(NULL, 'tap_hostile', 'queue')],
          ARRAY['the query failed (health.queue_query is sensitive: administrators see the error)',
                'invalid input syntax for type bigint: "' || pg_temp.secret(6) || '"',
                '1 pending, 1 failed'],
          'R3: health_status(): the error of a sensitive queue query (which quotes it) is shown to admins only');

-- Every view of schema opsflags.
SELECT is((SELECT array_agg(c.relname || ': ' || pg_temp.in_rollback(NULL, 'tap_hostile', format('SELECT count(*) FROM opsflags.%I', c.relname))
                            ORDER BY c.relname)
           FROM pg_class c WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('v', 'm')),
          (SELECT array_agg(c.relname || ': ERROR 42501' ORDER BY c.relname)
           FROM pg_class c WHERE c.relnamespace = 'opsflags'::regnamespace AND c.relkind IN ('v', 'm')),
          'R3/R4: tap_hostile reads no view of schema opsflags (flag_usage, ...): 42501 for each');

-- NOTIFY payloads, received by the hostile role.
SELECT dblink_connect('h_listen', pg_temp.tap_conninfo(usr => 'tap_hostile', app => 'tap_hostile')) AS x \gset
SELECT dblink_exec('h_listen', 'LISTEN opsflags') AS x \gset
SELECT opsflags.config_set('tap_hostile.notify', to_jsonb(pg_temp.secret(7)), 'tap', 'all', NULL, true) AS x \gset
SELECT opsflags.config_set('tap_hostile.notify', to_jsonb(pg_temp.secret(8)), 'tap', 'staging', NULL, true) AS x \gset
UPDATE opsflags.app_config SET config_value = to_jsonb(pg_temp.secret(9)) WHERE config_key = 'tap_hostile.notify' AND environment = 'all';
SELECT opsflags.toggle_flag('tap_hostile.off', true) AS x \gset
SELECT opsflags.toggle_flag('tap_hostile.off', false) AS x \gset
SELECT opsflags.config_set('tap_hostile.marker', '"end"') AS x \gset
-- Poll with round trips (no sleep) until the marker is there.
CREATE TEMP TABLE notes (n serial, payload text);
DO $$
DECLARE
    tries int := 0;
BEGIN
    LOOP
        PERFORM * FROM dblink('h_listen', 'SELECT 1') AS t(x int);
        INSERT INTO notes (payload) SELECT extra FROM dblink_get_notify('h_listen') WHERE notify_name = 'opsflags';
        EXIT WHEN EXISTS (SELECT FROM notes WHERE payload::jsonb ->> 'key' = 'tap_hostile.marker') OR tries >= 20000;
        tries := tries + 1;
    END LOOP;
END
$$;
INSERT INTO hostile_saw SELECT 'notify', NULL, payload, NULL FROM notes;
SELECT is(ARRAY[(SELECT count(*)::int FROM notes WHERE payload::jsonb ->> 'key' = 'tap_hostile.marker'),
                (SELECT count(*)::int FROM notes WHERE payload::jsonb ->> 'key' IN ('tap_hostile.notify', 'tap_hostile.off'))],
          ARRAY[1, 5], 'R3: (tap_hostile, LISTENing on opsflags, received the marker and one payload per committed change before it)');
SELECT is((SELECT count(*)::int FROM notes WHERE payload ~ :'secret_re'), 0,
          'R3: no NOTIFY payload tap_hostile received holds a secret');

-------------------------------------------------------------------------------
-- R4: the audit trail of the hostile role's writes cannot be forged or
-- dropped
-------------------------------------------------------------------------------
SELECT dblink_connect('h_audit', pg_temp.tap_conninfo(usr => 'tap_hostile', app => 'opsflags sampler')) AS x \gset
CREATE TEMP TABLE audit_steps (i serial, sql text);
INSERT INTO audit_steps (sql) VALUES
  ('BEGIN'),
  ('SAVEPOINT a'),
  ($s$INSERT INTO public.tap_hostile_audited VALUES ('r1', '{"config_key": "tap_hostile.secret", "is_sensitive": false, "config_value": "forged"}')$s$),
  ('RELEASE a'),
  ('SAVEPOINT b'),
  ($s$INSERT INTO public.tap_hostile_audited VALUES ('r2', '{}')$s$),
  ('ROLLBACK TO b'),
  ($s$INSERT INTO public.tap_hostile_audited VALUES ('tap_hostile.secret', '{"resource_type": "config", "actor": "postgres", "role": "opsflags_admin"}')$s$),
  ($s$DO $d$
   BEGIN
       BEGIN
           INSERT INTO public.tap_hostile_audited VALUES ('r4', '{}');
           RAISE EXCEPTION 'undo';
       EXCEPTION WHEN raise_exception THEN NULL;
       END;
       INSERT INTO public.tap_hostile_audited VALUES ('r5', '{}');
   END
   $d$$s$),
  ($s$UPDATE public.tap_hostile_audited SET id = 'config' WHERE id = 'r1'$s$),
  ('COMMIT'),
  ('BEGIN'),
  ($s$INSERT INTO public.tap_hostile_audited VALUES ('r6', '{}')$s$),
  ('ROLLBACK');
DO $do$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT sql FROM audit_steps ORDER BY i LOOP
        PERFORM dblink_exec('h_audit', r.sql);
    END LOOP;
END
$do$;
SELECT dblink_disconnect('h_audit') AS x \gset
CREATE TEMP TABLE hostile_audit AS
SELECT * FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_hostile_audited';
SELECT is((SELECT array_agg(action || ' ' || resource_id ORDER BY id) FROM hostile_audit),
          ARRAY['INSERT r1', 'INSERT tap_hostile.secret', 'INSERT r5', 'UPDATE config'],
          'R4: the audit rows of tap_hostile''s writes are exactly its committed changes (released savepoint kept; rolled-back savepoint, exception block and transaction dropped)');
SELECT is((SELECT array_agg(id ORDER BY id) FROM public.tap_hostile_audited), ARRAY['config', 'r5', 'tap_hostile.secret'],
          'R4: ... which are the rows in the table');
SELECT is((SELECT array_agg(DISTINCT concat_ws(' ', actor, role, resource_type, table_name, application_name)) FROM hostile_audit)
          || (SELECT count(DISTINCT txid)::text FROM hostile_audit),
          ARRAY['tap_hostile tap_hostile tap_hostile_audited public.tap_hostile_audited opsflags sampler', '1'],
          'R4: each row names tap_hostile as actor and role and the table as resource type and table, whatever the row holds (the application_name it claimed is recorded as such)');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log
           WHERE id > :audit_start AND 'tap_hostile' IN (actor, role) AND table_name <> 'public.tap_hostile_audited'), 0,
          'R4: no audit row by tap_hostile for any opsflags resource (config, feature_flag, ...) was written in this file');

-------------------------------------------------------------------------------
-- Everything tap_hostile received in this file
-------------------------------------------------------------------------------
INSERT INTO hostile_saw SELECT 'dblink', NULL, v, NULL FROM hostile_results;
SELECT cmp_ok((SELECT count(*)::int FROM hostile_saw), '>=', 2500,
              'R3: (over 2500 results, error texts and payloads received by tap_hostile recorded)');
SELECT diag('R3: secret received by tap_hostile: ' || src || ' ' || coalesce(left(query, 200), '')) FROM hostile_saw
WHERE concat_ws(' ', got, detail) ~ :'secret_re';
SELECT is((SELECT count(*)::int FROM hostile_saw WHERE concat_ws(' ', got, detail) ~ :'secret_re'), 0,
          'R3: no result, error message, detail, hint or payload tap_hostile received in this file holds a secret');
SELECT is(ARRAY[(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.calls),
                (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tap_hostile_evil.escalated),
                (SELECT count(*) FROM tap_hostile_app.stolen)],
          ARRAY[0::bigint, 0::bigint, 0::bigint],
          'R5: over the whole file no planted object was called and no spying trigger fired');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('h_listen') AS x \gset
SELECT dblink_exec('h_evil', 'DISCARD TEMP') AS x \gset
SELECT dblink_disconnect('h_evil') AS x \gset
SELECT dblink_disconnect('h_clean') AS x \gset
DROP SCHEMA tap_hostile_evil, tap_hostile_app CASCADE;
SELECT opsflags.unaudit_table('public.tap_hostile_audited') AS x \gset
DROP TABLE public.tap_hostile_jobs, public.tap_hostile_audited;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap\_hostile.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap\_hostile.%';
DELETE FROM opsflags.app_config WHERE config_key = 'health.queue_query';
INSERT INTO opsflags.app_config (config_key, config_value, environment, description, is_sensitive, updated_by)
SELECT config_key, config_value, environment, description, is_sensitive, updated_by FROM saved_queue;
DROP OWNED BY tap_hostile, tap_hostile_admin;
DROP ROLE tap_hostile, tap_hostile_admin;
RESET opsflags.environment;

SELECT * FROM finish();
