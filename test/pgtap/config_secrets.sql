-- test/pgtap/config_secrets.sql: a sensitive configuration value appears in no listing,
-- log line, audit row, NOTIFY payload or error message.
--
-- Sensitive values are set, changed (in 'all' and in single environments, by
-- config_set and by plain DML, from this session A and from a second session
-- B), switched from plain to sensitive and back, and deleted.  Then paths that
-- could leak them are tried: config_set with an invalid environment, with a
-- NULL value, with an invalid key; plain DML violating the unique constraint
-- or naming a missing environment; an ordinary role (tap_sec_app) reading,
-- listing and writing them.  Every error is caught in PL/pgSQL, with its
-- message, detail, hint and context kept in a temporary table; the same
-- errors are also raised in dblink sessions, whose backends write them to the
-- server log (with the default log settings an ERROR is logged with its
-- DETAIL, HINT, CONTEXT and STATEMENT).  Session "listen" LISTENs on channel
-- opsflags throughout.  Finally every secret is searched for in the server log
-- ($OPSFLAGS_TEST_LOG), every row of opsflags.audit_log, config_all() (as
-- admin and as the ordinary role), every NOTIFY payload and every error text.
--
-- Then writes that opsflags refuses are sent to session B with the secret
-- written in the statement itself (config_set with an unknown environment or
-- an invalid key, plain INSERT and UPDATE naming a missing environment or an
-- existing key, making one environment of a sensitive key public): after
-- each, the server log holds the error but not the secret.  Sensitivity per
-- key (tap_seckey.*): overrides without is_sensitive, a public row of a key
-- marked sensitive elsewhere, refusal of a public row beside sensitive ones,
-- making a key public at once.  A sensitive health.queue_query: health_status()
-- by the ordinary role with debug_print_* on and client_min_messages = debug5
-- (dblink prints what the session receives to the server log), the sampler's
-- take_sample() with a query whose error quotes it, and /api/status of the
-- HTTP worker (started on a free port) with sensitive app_version and
-- commit_sha.
--
-- The secrets are 'S3cr3t-' || md5('tap_sec/<n>'); except in the refused
-- writes, statements (here and in dblink sessions) compute them on the
-- server, so no statement text, and so no logged STATEMENT line, contains
-- one.  Keys tap_sec*, role tap_sec_app; both are removed at the start
-- (leftovers of an interrupted run) and at the end; health.queue_query,
-- app_version and commit_sha are saved and restored.
\ir setup.inc
SET opsflags.environment = 'production';

\getenv logpath OPSFLAGS_TEST_LOG
\if :{?logpath}
\else
\set logpath ''
\endif

DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_sec%';
DROP ROLE IF EXISTS tap_sec_app;
CREATE ROLE tap_sec_app LOGIN;

SELECT plan(43);

-- The secrets, and a SQL expression that computes each one.
CREATE FUNCTION pg_temp.secret(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'S3cr3t-' || md5('tap_sec/' || n) $$;
CREATE FUNCTION pg_temp.sx(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT format('(%L || md5(%L))', 'S3cr3t-', 'tap_sec/' || n) $$;
-- The same as a jsonb string.
CREATE FUNCTION pg_temp.jx(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT format('to_jsonb%s', pg_temp.sx(n)) $$;
\set nsecrets 40
-- A regular expression matching any of them.
SELECT '(' || string_agg(pg_temp.secret(n), '|') || ')' AS secret_re FROM generate_series(1, :nsecrets) n \gset

-- Where the server log stood when this file started.
SELECT CASE WHEN :'logpath' <> '' THEN (pg_stat_file(:'logpath')).size ELSE 0 END AS log_start \gset
-- ... and the audit trail.
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

-------------------------------------------------------------------------------
-- Sessions: B (admin, as this superuser), app (tap_sec_app), listen
-------------------------------------------------------------------------------
SELECT dblink_connect('b', pg_temp.tap_conninfo(usr => current_user, app => 'tap_secrets_b')) AS x \gset
SELECT dblink_connect('app', pg_temp.tap_conninfo(usr => 'tap_sec_app', app => 'tap_secrets_app')) AS x \gset
SELECT dblink_connect('listen', pg_temp.tap_conninfo(usr => current_user, app => 'tap_secrets_listen')) AS x \gset
SELECT dblink_exec('listen', 'LISTEN opsflags') AS x \gset
SELECT dblink_exec('app', 'SET opsflags.environment = ''production''') AS x \gset

-- Run an expression in B for its side effects.
CREATE FUNCTION pg_temp.b(expr text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', 'DO $do$BEGIN PERFORM ' || expr || '; END$do$') $$;

-- Every error raised by a probe, with all its text.
CREATE TEMP TABLE errs (n serial, label text, session text, sqlstate text,
                        message text, detail text, hint text, context text);
GRANT ALL ON errs TO tap_sec_app;
GRANT ALL ON SEQUENCE errs_n_seq TO tap_sec_app;

-- Run cmd here (session NULL) or in a dblink session (a query returning one
-- column, or a command); record the error if there is one.  Returns the
-- SQLSTATE, or 'ok'.
CREATE FUNCTION pg_temp.probe(label text, session text, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; m text; d text; h text; c text;
BEGIN
    IF session IS NULL THEN
        EXECUTE cmd;
    ELSIF cmd ~* '^\s*SELECT' THEN
        PERFORM * FROM dblink(session, cmd) AS t(x text);
    ELSE
        PERFORM dblink_exec(session, cmd);
    END IF;
    INSERT INTO errs (label, session, sqlstate) VALUES (label, coalesce(session, 'A'), 'ok');
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                            h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
    INSERT INTO errs (label, session, sqlstate, message, detail, hint, context)
    VALUES (label, coalesce(session, 'A'), st, m, d, h, c);
    RETURN st;
END
$$;

-------------------------------------------------------------------------------
-- Set, change and delete sensitive values (committed, one change per
-- transaction)
-------------------------------------------------------------------------------
-- tap_sec.db_password: 'all' set by A, changed by B, by A, by plain DML.
SELECT opsflags.config_set('tap_sec.db_password', to_jsonb(pg_temp.secret(1)), 'tap', 'all', 'database password', true) AS x \gset
SELECT pg_temp.b(format('opsflags.config_set(%L, %s)', 'tap_sec.db_password', pg_temp.jx(2))) AS x \gset
SELECT opsflags.config_set('tap_sec.db_password', to_jsonb(pg_temp.secret(3)), 'tap', 'all', NULL, NULL) AS x \gset
UPDATE opsflags.app_config SET config_value = to_jsonb(pg_temp.secret(4))
WHERE config_key = 'tap_sec.db_password' AND environment = 'all';
-- ... and in single environments.
SELECT opsflags.config_set('tap_sec.db_password', to_jsonb(pg_temp.secret(5)), 'tap', 'staging', NULL, true) AS x \gset
SELECT pg_temp.b(format('opsflags.config_set(%L, %s, %L, %L)', 'tap_sec.db_password', pg_temp.jx(6), 'tap-b', 'staging')) AS x \gset
SELECT pg_temp.b(format('opsflags.config_set(%L, %s, %L, %L, NULL, true)', 'tap_sec.db_password', pg_temp.jx(7), 'tap-b', 'production')) AS x \gset
SELECT opsflags.config_set('tap_sec.db_password', to_jsonb(pg_temp.secret(8)), 'tap', 'production') AS x \gset

-- tap_sec.api: secrets nested in an object and an array.
SELECT opsflags.config_set('tap_sec.api', jsonb_build_object('user', 'svc', 'token', pg_temp.secret(9),
                                                             'fallbacks', jsonb_build_array(pg_temp.secret(10), 1)),
                           'tap', 'production', 'API credentials', true) AS x \gset

-- tap_sec.flip: plain, then switched to sensitive, changed, switched back
-- with a public value.  The ordinary role reads it while it is plain.
SELECT opsflags.config_set('tap_sec.flip', '"public-value"') AS x \gset
SELECT pg_temp.probe('app reads tap_sec.flip while plain', 'app', $$SELECT opsflags.config_get('tap_sec.flip')$$) AS x \gset
SELECT v AS flip_plain FROM dblink('app', $$SELECT opsflags.config_get('tap_sec.flip')$$) AS t(v jsonb) \gset
SELECT pg_temp.b(format('opsflags.config_set(%L, %s, NULL, %L, NULL, true)', 'tap_sec.flip', pg_temp.jx(11), 'all')) AS x \gset
SELECT pg_temp.probe('app reads tap_sec.flip after it became sensitive', 'app', $$SELECT opsflags.config_get('tap_sec.flip')$$) AS x \gset
SELECT opsflags.config_set('tap_sec.flip', to_jsonb(pg_temp.secret(12))) AS x \gset
SELECT opsflags.config_set('tap_sec.flip', '"public-again"', 'tap', 'all', NULL, false) AS x \gset

-- tap_sec.dml: plain INSERT, UPDATE and DELETE of a sensitive row.
INSERT INTO opsflags.app_config (config_key, config_value, environment, is_sensitive)
VALUES ('tap_sec.dml', to_jsonb(pg_temp.secret(13)), 'development', true);
UPDATE opsflags.app_config SET config_value = to_jsonb(pg_temp.secret(14))
WHERE config_key = 'tap_sec.dml' AND environment = 'development';
DELETE FROM opsflags.app_config WHERE config_key = 'tap_sec.dml';

-- tap_sec.del: set, then deleted by B with config_delete.
SELECT opsflags.config_set('tap_sec.del', to_jsonb(pg_temp.secret(15)), 'tap', 'all', NULL, true) AS x \gset
SELECT pg_temp.b($$opsflags.config_delete('tap_sec.del', 'all')$$) AS x \gset

-- A change that is rolled back.
BEGIN;
SELECT opsflags.config_set('tap_sec.db_password', to_jsonb(pg_temp.secret(16))) AS x \gset
ROLLBACK;

-------------------------------------------------------------------------------
-- Paths that could leak: each here (A) and in a dblink session
-------------------------------------------------------------------------------
CREATE TEMP TABLE probes (label text, cmd text, want text, as_app boolean);
INSERT INTO probes VALUES
  ('config_set of a sensitive key, invalid environment',
   format('SELECT opsflags.config_set(%L, %s, %L, %L, NULL, true)', 'tap_sec.db_password', pg_temp.jx(17), 'tap', 'no_such_env'),
   '42704', false),
  ('config_set of a new sensitive key, invalid environment',
   format('SELECT opsflags.config_set(%L, %s, %L, %L, %L, true)', 'tap_sec.new', pg_temp.jx(18), 'tap', 'no_such_env', 'new'),
   '42704', false),
  ('config_set of a sensitive key, NULL value',
   $$SELECT opsflags.config_set('tap_sec.db_password', NULL::jsonb, 'tap', 'all', NULL, true)$$, '22004', false),
  ('config_set of a sensitive value under an invalid key',
   format('SELECT opsflags.config_set(%L, %s, %L, %L, NULL, true)', 'tap_sec bad key', pg_temp.jx(19), 'tap', 'all'),
   '22023', false),
  ('plain INSERT violating the unique constraint',
   format('INSERT INTO opsflags.app_config (config_key, config_value, environment, is_sensitive) VALUES (%L, %s, %L, true)',
          'tap_sec.db_password', pg_temp.jx(20), 'staging'),
   '23505', false),
  ('plain UPDATE of a sensitive row onto an existing key',
   $$UPDATE opsflags.app_config SET config_key = 'tap_sec.api' WHERE config_key = 'tap_sec.db_password' AND environment = 'production'$$,
   '23505', false),
  ('plain UPDATE of a sensitive row: new value, missing environment',
   format('UPDATE opsflags.app_config SET environment = %L, config_value = %s WHERE config_key = %L AND environment = %L',
          'no_such_env', pg_temp.jx(21), 'tap_sec.db_password', 'staging'),
   '42704', false),
  ('plain UPDATE of a sensitive row: NULL value',
   $$UPDATE opsflags.app_config SET config_value = NULL WHERE config_key = 'tap_sec.api'$$, '22004', false),
  ('ordinary role: config_get of a sensitive value (all)',
   $$SELECT opsflags.config_get('tap_sec.db_password')::text$$, '42501', true),
  ('ordinary role: config_get of a sensitive value (staging)',
   $$SELECT opsflags.config_get('tap_sec.db_password', 'staging')::text$$, '42501', true),
  ('ordinary role: config_get of a sensitive nested value',
   $$SELECT opsflags.config_get('tap_sec.api', 'production')::text$$, '42501', true),
  ('ordinary role: SELECT from app_config',
   $$SELECT config_value::text FROM opsflags.app_config WHERE config_key = 'tap_sec.db_password'$$, '42501', true),
  ('ordinary role: SELECT from audit_log',
   $$SELECT new_values::text FROM opsflags.audit_log WHERE resource_id = 'tap_sec.db_password'$$, '42501', true),
  ('ordinary role: config_set of a sensitive key',
   format('SELECT opsflags.config_set(%L, %s, NULL, %L, NULL, true)', 'tap_sec.db_password', pg_temp.jx(22), 'all'),
   '42501', true),
  ('ordinary role: plain UPDATE of app_config',
   format('UPDATE opsflags.app_config SET config_value = %s WHERE config_key = %L', pg_temp.jx(23), 'tap_sec.db_password'),
   '42501', true),
  ('append-only audit_log: UPDATE of the audit rows',
   format('UPDATE opsflags.audit_log SET new_values = jsonb_build_object(%L, %s) WHERE resource_id = %L',
          'x', pg_temp.sx(24), 'tap_sec.db_password'),
   '42501', false);

GRANT SELECT ON probes TO tap_sec_app;

-- Here, in a subtransaction each (as tap_sec_app where the probe says so).
SELECT count(*) FROM (SELECT pg_temp.probe(label, NULL, cmd) FROM probes WHERE NOT as_app ORDER BY label) s \gset
SET ROLE tap_sec_app;
SELECT count(*) FROM (SELECT pg_temp.probe(label, NULL, cmd) FROM probes WHERE as_app ORDER BY label) s \gset
RESET ROLE;
-- In B and in the app session: these errors go to the server log.
SELECT count(*) FROM (SELECT pg_temp.probe(label, CASE WHEN as_app THEN 'app' ELSE 'b' END, cmd)
                      FROM probes ORDER BY label) s \gset
SELECT dblink_exec('app', 'SET opsflags.environment = ''staging''') AS x \gset
SELECT pg_temp.probe('ordinary role: config_get in opsflags.environment staging', 'app',
                     $$SELECT opsflags.config_get('tap_sec.db_password')::text$$) AS x \gset

-- The ordinary role's listing.
CREATE TEMP TABLE app_listing AS
SELECT * FROM dblink('app', 'SELECT config_key, environment, config_value, is_sensitive FROM opsflags.config_all()')
  AS t(config_key text, environment text, config_value jsonb, is_sensitive boolean);

-- Marker: once B's notification for it arrives, every earlier commit's has.
SELECT opsflags.config_set('tap_sec.marker', '"end"') AS x \gset

-------------------------------------------------------------------------------
-- NOTIFY payloads received by the listening session
-------------------------------------------------------------------------------
CREATE TEMP TABLE notes (n serial, payload text);
DO $$
DECLARE
    tries int := 0;
BEGIN
    LOOP
        PERFORM * FROM dblink('listen', 'SELECT 1') AS t(x int);
        INSERT INTO notes (payload) SELECT extra FROM dblink_get_notify('listen') WHERE notify_name = 'opsflags';
        EXIT WHEN EXISTS (SELECT FROM notes WHERE payload::jsonb->>'key' = 'tap_sec.marker') OR tries >= 200;
        tries := tries + 1;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-------------------------------------------------------------------------------
-- The probes failed as they should
-------------------------------------------------------------------------------
SELECT diag('probe ' || label || ' in ' || session || ': ' || sqlstate || ' ' || coalesce(message, ''))
FROM errs e WHERE sqlstate IS DISTINCT FROM coalesce((SELECT want FROM probes p WHERE p.label = e.label), sqlstate)
ORDER BY n;

SELECT is((SELECT count(*)::int FROM errs e JOIN probes p USING (label) WHERE e.sqlstate = p.want AND e.session = 'A'),
          (SELECT count(*)::int FROM probes), 'probes here (A): each failed with its SQLSTATE');
SELECT is((SELECT count(*)::int FROM errs e JOIN probes p USING (label) WHERE e.sqlstate = p.want AND e.session IN ('b', 'app')),
          (SELECT count(*)::int FROM probes), 'probes in dblink sessions: each failed with its SQLSTATE');
SELECT is(ARRAY(SELECT sqlstate FROM errs WHERE label LIKE 'app reads tap_sec.flip%' ORDER BY n),
          ARRAY['ok', '42501'], 'the ordinary role reads tap_sec.flip while plain, and gets 42501 once it is sensitive');
SELECT is(:'flip_plain'::jsonb, '"public-value"'::jsonb, 'the ordinary role read the plain value');
SELECT is((SELECT sqlstate FROM errs WHERE label = 'ordinary role: config_get in opsflags.environment staging'), '42501',
          'the ordinary role in staging: config_get of the sensitive staging value: 42501');
SELECT ok((SELECT bool_and(message LIKE '%tap_sec.db_password%') FROM errs
           WHERE label LIKE 'ordinary role: config_get of a sensitive value%'),
          'the 42501 message names the key');
SELECT is(opsflags.config_get('tap_sec.db_password'), to_jsonb(pg_temp.secret(8)),
          'the admin reads the sensitive production value (last set by A; the failed probes changed nothing)');
SELECT is(ARRAY[opsflags.config_get('tap_sec.db_password', 'staging'), opsflags.config_get('tap_sec.db_password', 'all'),
                opsflags.config_get('tap_sec.flip'), coalesce(opsflags.config_get('tap_sec.del'), '"gone"')],
          ARRAY[to_jsonb(pg_temp.secret(6)), to_jsonb(pg_temp.secret(4)), '"public-again"', '"gone"'],
          'the admin reads staging, all, the switched-back key and the deleted key as last written');

-------------------------------------------------------------------------------
-- Refused writes whose statement holds the secret itself, in session B: the
-- server log gets the error but never the statement (nor its context).
-- After each, the log written by it is read.
-------------------------------------------------------------------------------
SELECT set_config('tap_secrets.logpath', :'logpath', false) AS x \gset
CREATE FUNCTION pg_temp.log_size() RETURNS bigint LANGUAGE sql AS $$
  SELECT CASE WHEN current_setting('tap_secrets.logpath') <> ''
              THEN (pg_stat_file(current_setting('tap_secrets.logpath'))).size ELSE 0 END
$$;
-- What the log got since start (its size then).
CREATE FUNCTION pg_temp.log_since(start bigint) RETURNS bytea LANGUAGE sql AS $$
  SELECT CASE WHEN current_setting('tap_secrets.logpath') = '' THEN ''::bytea
              ELSE pg_read_binary_file(current_setting('tap_secrets.logpath'), least(start, s.size), s.size - least(start, s.size)) END
  FROM (SELECT pg_temp.log_size() AS size) s
$$;
CREATE TEMP TABLE refused (label text, n int, cmd text, want text, error_text text, logged bytea);
-- Run cmd in B (it names secret n literally), record the SQLSTATE and what
-- the log got meanwhile.
CREATE FUNCTION pg_temp.refuse(label text, n int, cmd text, want text, error_text text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    mark bigint := pg_temp.log_size();
    st text;
BEGIN
    st := pg_temp.probe(label, 'b', cmd);
    INSERT INTO refused VALUES (label, n, cmd, want || CASE WHEN st = want THEN '' ELSE ' (got ' || st || ')' END,
                                error_text, pg_temp.log_since(mark));
END
$$;
SELECT pg_temp.refuse('config_set, unknown environment', 25,
    format('SELECT opsflags.config_set(%L, %L, %L, %L, NULL, true)', 'tap_sec.db_password', to_jsonb(pg_temp.secret(25)), 'tap', 'no_such_env'),
    '42704', 'environment "no_such_env" does not exist') AS x \gset
SELECT pg_temp.refuse('config_set, invalid key', 26,
    format('SELECT opsflags.config_set(%L, %L, %L, %L, NULL, true)', 'tap_sec bad', to_jsonb(pg_temp.secret(26)), 'tap', 'all'),
    '22023', 'invalid configuration key "tap_sec bad"') AS x \gset
SELECT pg_temp.refuse('plain INSERT, unknown environment', 27,
    format('INSERT INTO opsflags.app_config (config_key, config_value, environment, is_sensitive) VALUES (%L, %L, %L, true)',
           'tap_sec.db_password', to_jsonb(pg_temp.secret(27)), 'no_such_env'),
    '42704', 'environment "no_such_env" does not exist') AS x \gset
SELECT pg_temp.refuse('plain UPDATE, unknown environment', 28,
    format('UPDATE opsflags.app_config SET config_value = %L, environment = %L WHERE config_key = %L AND environment = %L',
           to_jsonb(pg_temp.secret(28)), 'no_such_env', 'tap_sec.db_password', 'staging'),
    '42704', 'environment "no_such_env" does not exist') AS x \gset
SELECT pg_temp.refuse('plain UPDATE onto an existing key', 29,
    format('UPDATE opsflags.app_config SET config_value = %L, config_key = %L WHERE config_key = %L AND environment = %L',
           to_jsonb(pg_temp.secret(29)), 'tap_sec.api', 'tap_sec.db_password', 'production'),
    '23505', 'duplicate key value violates unique constraint "app_config_key_environment_key"') AS x \gset
SELECT pg_temp.refuse('config_set is_sensitive => false in one environment of a sensitive key', 30,
    format('SELECT opsflags.config_set(%L, %L, %L, %L, NULL, false)', 'tap_sec.db_password', to_jsonb(pg_temp.secret(30)), 'tap', 'development'),
    '22023', 'configuration key "tap_sec.db_password" is sensitive in another environment') AS x \gset
SELECT pg_temp.refuse('plain UPDATE making one environment public', 31,
    format('UPDATE opsflags.app_config SET is_sensitive = false, config_value = %L WHERE config_key = %L AND environment = %L',
           to_jsonb(pg_temp.secret(31)), 'tap_sec.db_password', 'staging'),
    '22023', 'configuration key "tap_sec.db_password" cannot be public in one environment and sensitive in another') AS x \gset

SELECT is((SELECT array_agg(label || ': ' || want ORDER BY label) FROM refused),
          (SELECT array_agg(label || ': ' || split_part(want, ' ', 1) ORDER BY label) FROM refused),
          'refused writes holding a secret: each failed with its SQLSTATE');
SELECT is((SELECT array_agg(label ORDER BY label) FROM refused
           WHERE position(convert_to(error_text, 'UTF8') IN logged) = 0),
          NULL, 'refused writes holding a secret: the server log got each error (so the search below can fail)');
SELECT is((SELECT array_agg(label ORDER BY label) FROM refused
           WHERE position(convert_to(pg_temp.secret(n), 'UTF8') IN logged) > 0),
          NULL, 'refused writes holding a secret: after each, the server log holds no secret (no STATEMENT, no CONTEXT)');

-------------------------------------------------------------------------------
-- Sensitivity belongs to the key, in every environment
-------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS key_audit_start FROM opsflags.audit_log \gset
-- A sensitive 'all' value, overridden per environment without is_sensitive
-- (config_set in B, plain INSERT here): the overrides are sensitive.
SELECT opsflags.config_set('tap_seckey.password', to_jsonb(pg_temp.secret(32)), 'tap', 'all', NULL, true) AS x \gset
SELECT pg_temp.b(format('opsflags.config_set(%L, %s, %L, %L)', 'tap_seckey.password', pg_temp.jx(33), 'tap-b', 'production')) AS x \gset
INSERT INTO opsflags.app_config (config_key, config_value, environment)
VALUES ('tap_seckey.password', to_jsonb(pg_temp.secret(34)), 'development');
-- A public staging value; the key then marked sensitive in production.
SELECT opsflags.config_set('tap_seckey.token', '"public-token"', 'tap', 'staging') AS x \gset
SELECT opsflags.config_set('tap_seckey.token', to_jsonb(pg_temp.secret(35)), 'tap', 'production', NULL, true) AS x \gset
SELECT pg_temp.probe('sensitive key: config_set false in staging', NULL,
                     $$SELECT opsflags.config_set('tap_seckey.token', '"x"', 'tap', 'staging', NULL, false)$$) AS x \gset
CREATE TEMP TABLE key_rows AS
SELECT config_key, environment, is_sensitive FROM opsflags.app_config WHERE config_key LIKE 'tap_seckey.%';
CREATE TEMP TABLE key_reads AS
SELECT e.env, pg_temp.probe('ordinary role: config_get tap_seckey.password ' || e.env, 'app',
                            format('SELECT opsflags.config_get(%L, %L)::text', 'tap_seckey.password', e.env)) AS password,
       pg_temp.probe('ordinary role: config_get tap_seckey.token ' || e.env, 'app',
                     format('SELECT opsflags.config_get(%L, %L)::text', 'tap_seckey.token', e.env)) AS token
FROM unnest(ARRAY['production', 'staging', 'development']) e(env);
CREATE TEMP TABLE key_listing AS
SELECT * FROM dblink('app', $$SELECT config_key, environment, config_value::text, is_sensitive FROM opsflags.config_all() WHERE config_key LIKE 'tap_seckey.%'$$)
  AS t(config_key text, environment text, config_value text, is_sensitive boolean);
-- Making the key public again: all its rows in one statement.
UPDATE opsflags.app_config SET is_sensitive = false, config_value = '"public-again"' WHERE config_key = 'tap_seckey.token';
SELECT v AS token_public FROM dblink('app', $$SELECT opsflags.config_get('tap_seckey.token', 'staging')::text$$) AS t(v text) \gset

SELECT is((SELECT array_agg(config_key || ' ' || environment || ' ' || is_sensitive ORDER BY config_key, environment) FROM key_rows),
          ARRAY['tap_seckey.password all true', 'tap_seckey.password development true', 'tap_seckey.password production true',
                'tap_seckey.token production true', 'tap_seckey.token staging true'],
          'sensitivity per key: overrides without is_sensitive (config_set, plain INSERT) and the older public row are sensitive');
SELECT is((SELECT array_agg(env || ' ' || password || ' ' || token ORDER BY env) FROM key_reads),
          ARRAY['development 42501 ok', 'production 42501 42501', 'staging 42501 42501'],
          'sensitivity per key: the ordinary role reads no environment of a sensitive key (42501; tap_seckey.token has no development value)');
SELECT is((SELECT array_agg(config_value || ' ' || is_sensitive ORDER BY config_key, environment) FROM key_listing),
          ARRAY['"[REDACTED]" true', '"[REDACTED]" true', '"[REDACTED]" true', '"[REDACTED]" true', '"[REDACTED]" true'],
          'sensitivity per key: config_all() as the ordinary role redacts every row of a sensitive key');
SELECT is((SELECT sqlstate || ' ' || message FROM errs WHERE label = 'sensitive key: config_set false in staging'),
          '22023 configuration key "tap_seckey.token" is sensitive in another environment',
          'sensitivity per key: is_sensitive => false in one environment of a key sensitive in another is refused');
SELECT is(:'token_public'::text, '"public-again"'::text, 'sensitivity per key: made public in every environment at once, the key is readable');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log
           WHERE id > :key_audit_start AND resource_type = 'config' AND resource_id LIKE 'tap_seckey.%'
             AND (coalesce(old_values->'config_value', '"[REDACTED]"') NOT IN ('"[REDACTED]"', '"public-token"', '"public-again"')
                  OR coalesce(new_values->'config_value', '"[REDACTED]"') NOT IN ('"[REDACTED]"', '"public-token"', '"public-again"'))), 0,
          'sensitivity per key: every audit row of the overrides and of the marked rows is redacted');

-------------------------------------------------------------------------------
-- A sensitive health.queue_query: hidden from debug_print_* and notices of
-- the ordinary role, and from the sampler's log and metrics
-------------------------------------------------------------------------------
CREATE TEMP TABLE saved_config AS
SELECT * FROM opsflags.app_config WHERE config_key IN ('health.queue_query', 'app_version', 'commit_sha');
DELETE FROM opsflags.app_config WHERE config_key IN ('health.queue_query', 'app_version', 'commit_sha');
-- Column names the secret, and an over-long one (the parser's truncation
-- NOTICE quotes it, with the query as context).
SELECT opsflags.config_set('health.queue_query',
                           to_jsonb(format('SELECT 1 AS %I, 0 AS %I', pg_temp.secret(36), pg_temp.secret(37) || pg_temp.secret(37))),
                           'tap', 'all', NULL, true) AS x \gset
SELECT pg_temp.log_size() AS mark_debug \gset
SELECT dblink_exec('app', 'SET debug_print_parse = on; SET debug_print_rewritten = on; SET debug_print_plan = on; SET client_min_messages = debug5') AS x \gset
SELECT v AS app_queue FROM dblink('app', $$SELECT opsflags.health_status() -> 'components' -> 'queue' ->> 'message'$$) AS t(v text) \gset
SELECT dblink_exec('app', 'RESET debug_print_parse; RESET debug_print_rewritten; RESET debug_print_plan; RESET client_min_messages') AS x \gset
SELECT is(:'app_queue'::text, '1 pending, 0 failed'::text, 'sensitive queue query: health_status() runs it for the ordinary role');
SELECT ok(position(convert_to(':targetList', 'UTF8') IN pg_temp.log_since(:mark_debug)) > 0,
          'sensitive queue query: the ordinary role''s debug_print_parse printed its own statement (so the search below can fail)');
SELECT is((SELECT array_agg(n) FROM unnest(ARRAY[36, 37]) n
           WHERE position(convert_to(pg_temp.secret(n), 'UTF8') IN pg_temp.log_since(:mark_debug)) > 0),
          NULL, 'sensitive queue query: no parse tree, plan or notice of it reached the ordinary role or the log');

-- The sampler's path (take_sample) with a failing sensitive query whose
-- error quotes it: twice, logged once, never its text.
SELECT opsflags.config_set('health.queue_query', to_jsonb(format('SELECT %L::bigint, 0', pg_temp.secret(38))),
                           'tap', 'all', NULL, true) AS x \gset
SELECT pg_temp.log_size() AS mark_sample \gset
SET client_min_messages = error;
SELECT opsflags.take_sample('tap_secrets') AS sample_1 \gset
SELECT opsflags.take_sample('tap_secrets') AS sample_2 \gset
SET client_min_messages = warning;
SELECT is((SELECT array_agg(metrics ->> 'queue' ORDER BY id) FROM opsflags.system_health WHERE id IN (:sample_1, :sample_2)),
          ARRAY['failed: the query failed (health.queue_query is sensitive: administrators see the error)',
                'failed: the query failed (health.queue_query is sensitive: administrators see the error)'],
          'sampler: a failing sensitive queue query is recorded in metrics without its error');
SELECT is((SELECT count(*)::int FROM regexp_split_to_table(encode(pg_temp.log_since(:mark_sample), 'escape'), E'\n') l
           WHERE l LIKE '%queue query failed%'), 1,
          'sampler: the failure is logged once, not at every sample');
SELECT is(position(convert_to(pg_temp.secret(38), 'UTF8') IN pg_temp.log_since(:mark_sample)), 0,
          'sampler: the log holds no text of the sensitive query or its error');

-------------------------------------------------------------------------------
-- /api/status: deployments' version and commit left out where app_version
-- and commit_sha are sensitive (as health_status() leaves them out)
-------------------------------------------------------------------------------
SELECT opsflags.config_set('app_version', to_jsonb(pg_temp.secret(39)), 'tap', 'all', NULL, true) AS x \gset
SELECT opsflags.config_set('commit_sha', to_jsonb(pg_temp.secret(40)), 'tap', 'all', NULL, true) AS x \gset
-- (the deployment's own version and commit are no configuration secrets:
-- deployment_history and its audit rows, for admins, hold them)
SELECT 'tap-deployed-' || md5('tap_sec/version') AS deployed_version, 'tap-deployed-' || md5('tap_sec/commit') AS deployed_commit \gset
SELECT opsflags.record_deployment(:'deployed_version', 'production', commit_sha => :'deployed_commit') AS deployment_id \gset
CREATE TEMP TABLE program_out (line text);
COPY program_out FROM PROGRAM $$bash -c 'for p in $(shuf -i 20000-60000 -n 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; exit; }; done'$$;
SELECT line AS http_port, set_config('tap_secrets.http_port', line, false) AS x FROM program_out \gset
ALTER SYSTEM SET opsflags.http_port = :'http_port';
SELECT pg_reload_conf() AS x \gset
CREATE FUNCTION pg_temp.http_get(path text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE program_out;
    EXECUTE format('COPY program_out FROM PROGRAM %L',
                   format('curl -s --max-time 5 http://127.0.0.1:%s%s | base64 -w0; echo', current_setting('tap_secrets.http_port'), path));
    RETURN convert_from(decode((SELECT string_agg(line, '') FROM program_out), 'base64'), 'UTF8');
END
$$;
-- Until the server answers from the database (bounded).
DO $$
DECLARE
    tries int := 0;
BEGIN
    WHILE NOT coalesce(pg_temp.http_get('/api/status') LIKE '{%"deployments"%', false) AND tries < 300 LOOP
        tries := tries + 1;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT pg_temp.http_get('/api/status') AS api_status \gset
ALTER SYSTEM RESET opsflags.http_port;
SELECT pg_reload_conf() AS x \gset
SELECT is((SELECT d ->> 'status' FROM jsonb_array_elements(:'api_status'::jsonb -> 'deployments') d
           WHERE d ->> 'id' = :'deployment_id'), 'success',
          '/api/status: the deployment is listed');
SELECT is((SELECT array_agg(v) FROM unnest(ARRAY[pg_temp.secret(39), pg_temp.secret(40), :'deployed_version', :'deployed_commit']) v
           WHERE position(v IN :'api_status') > 0),
          NULL, '/api/status: no sensitive app_version or commit_sha, nor the deployment''s version and commit (the same values)');
DELETE FROM opsflags.deployment_history WHERE id = :'deployment_id';
DELETE FROM opsflags.app_config WHERE config_key IN ('health.queue_query', 'app_version', 'commit_sha');
INSERT INTO opsflags.app_config SELECT * FROM saved_config;

-------------------------------------------------------------------------------
-- No secret anywhere
-------------------------------------------------------------------------------
-- Error texts.
SELECT diag('secret in the error of probe ' || label || ' (' || session || ')') FROM errs
WHERE concat_ws(' ', message, detail, hint, context) ~ :'secret_re';
SELECT cmp_ok((SELECT count(*)::int FROM errs WHERE sqlstate <> 'ok'), '>=', 30, 'error texts: at least 30 errors caught');
SELECT is((SELECT count(*)::int FROM errs WHERE concat_ws(' ', message, detail, hint, context) ~ :'secret_re'), 0,
          'error texts: no secret in any message, detail, hint or context');

-- Server log.
CREATE FUNCTION pg_temp.log_bytes(path text, start bigint) RETURNS bytea LANGUAGE sql AS $$
  SELECT CASE WHEN path = '' THEN ''::bytea
              ELSE pg_read_binary_file(path, least(start, (pg_stat_file(path)).size), (pg_stat_file(path)).size) END
$$;
SELECT isnt(:'logpath'::text, ''::text, 'server log: OPSFLAGS_TEST_LOG names the server log file');
SELECT cmp_ok(length(pg_temp.log_bytes(:'logpath', :log_start)), '>', 0, 'server log: it grew while this file ran');
SELECT ok(position(convert_to('permission denied to read sensitive configuration value "tap_sec.db_password"', 'UTF8')
                   IN pg_temp.log_bytes(:'logpath', :log_start)) > 0
          AND position(convert_to('duplicate key value violates unique constraint', 'UTF8')
                       IN pg_temp.log_bytes(:'logpath', :log_start)) > 0
          AND position(convert_to('environment "no_such_env" does not exist', 'UTF8')
                       IN pg_temp.log_bytes(:'logpath', :log_start)) > 0,
          'server log: it holds the errors raised in the dblink sessions (so the search below can fail)');
SELECT is((SELECT array_agg(n ORDER BY n) FROM generate_series(1, :nsecrets) n
           WHERE position(convert_to(pg_temp.secret(n), 'UTF8') IN pg_temp.log_bytes(:'logpath', 0)) > 0),
          NULL, 'server log: no secret anywhere in the whole file');

-- Audit trail: the changes are there, redacted.
CREATE TEMP TABLE sec_audit AS
SELECT id, action, resource_id, new_values->>'environment' AS new_env, old_values->>'environment' AS old_env,
       old_values->'config_value' AS old_value, new_values->'config_value' AS new_value,
       (old_values->>'is_sensitive')::boolean AS old_sensitive, (new_values->>'is_sensitive')::boolean AS new_sensitive
FROM opsflags.audit_log
WHERE id > :audit_start AND resource_type = 'config' AND resource_id LIKE 'tap_sec.%' AND resource_id <> 'tap_sec.marker';
SELECT is((SELECT array_agg(resource_id || ' ' || action || ' ' || coalesce(new_env, old_env) ORDER BY id) FROM sec_audit),
          ARRAY['tap_sec.db_password INSERT all', 'tap_sec.db_password UPDATE all', 'tap_sec.db_password UPDATE all',
                'tap_sec.db_password UPDATE all', 'tap_sec.db_password INSERT staging', 'tap_sec.db_password UPDATE staging',
                'tap_sec.db_password INSERT production', 'tap_sec.db_password UPDATE production',
                'tap_sec.api INSERT production',
                'tap_sec.flip INSERT all', 'tap_sec.flip UPDATE all', 'tap_sec.flip UPDATE all', 'tap_sec.flip UPDATE all',
                'tap_sec.dml INSERT development', 'tap_sec.dml UPDATE development', 'tap_sec.dml DELETE development',
                'tap_sec.del INSERT all', 'tap_sec.del DELETE all'],
          'audit: one row per committed change of the sensitive keys, in order (none for the rolled-back or failed ones)');
SELECT is((SELECT count(*)::int FROM sec_audit
           WHERE (old_sensitive OR new_sensitive)
             AND NOT (coalesce(old_value, '"[REDACTED]"') = '"[REDACTED]"' AND coalesce(new_value, '"[REDACTED]"') = '"[REDACTED]"')), 0,
          'audit: config_value is "[REDACTED]" in both images of every row touching a sensitive value');
SELECT is((SELECT array_agg(coalesce(old_value::text, '-') || ' -> ' || coalesce(new_value::text, '-') ORDER BY id)
           FROM sec_audit WHERE resource_id = 'tap_sec.flip'),
          ARRAY['- -> "public-value"', '"[REDACTED]" -> "[REDACTED]"', '"[REDACTED]" -> "[REDACTED]"', '"[REDACTED]" -> "[REDACTED]"'],
          'audit: tap_sec.flip: the plain value is recorded; switching on and off redacts the images around the secret');
SELECT is((SELECT count(*)::int FROM sec_audit WHERE action <> 'INSERT' AND old_value IS NULL)
          + (SELECT count(*)::int FROM sec_audit WHERE action <> 'DELETE' AND new_value IS NULL), 0,
          'audit: the value column is present (redacted, not dropped) in every image');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log
           WHERE concat_ws(' ', old_values::text, new_values::text, resource_id, table_name) ~ :'secret_re'), 0,
          'audit: no secret in any row of opsflags.audit_log');

-- Listings.
SELECT is((SELECT count(*)::int FROM opsflags.config_all() t WHERE t::text ~ :'secret_re'), 0,
          'config_all(): no secret in any row');
SELECT is((SELECT array_agg(config_key || ' ' || environment || ' ' || config_value::text ORDER BY config_key, environment)
           FROM opsflags.config_all() WHERE config_key LIKE 'tap_sec.%' AND config_key <> 'tap_sec.marker'),
          ARRAY['tap_sec.api production "[REDACTED]"', 'tap_sec.db_password all "[REDACTED]"',
                'tap_sec.db_password production "[REDACTED]"', 'tap_sec.db_password staging "[REDACTED]"',
                'tap_sec.flip all "public-again"'],
          'config_all(): the sensitive keys are listed, redacted');
SELECT is((SELECT count(*)::int FROM app_listing WHERE app_listing::text ~ :'secret_re'), 0,
          'config_all() as the ordinary role: no secret');
SELECT is((SELECT count(*)::int FROM app_listing WHERE config_key LIKE 'tap_sec.%' AND is_sensitive AND config_value = '"[REDACTED]"'),
          4, 'config_all() as the ordinary role: the four sensitive rows, redacted');

-- NOTIFY.
SELECT ok(EXISTS (SELECT FROM notes WHERE payload::jsonb->>'key' = 'tap_sec.marker'),
          'NOTIFY: the listening session received the marker');
SELECT is((SELECT count(*)::int FROM notes WHERE payload::jsonb->>'key' LIKE 'tap_sec.%' AND payload::jsonb->>'key' <> 'tap_sec.marker'),
          (SELECT count(*)::int FROM sec_audit), 'NOTIFY: one payload per committed change of the sensitive keys');
SELECT is((SELECT count(*)::int FROM notes WHERE payload ~ :'secret_re'), 0, 'NOTIFY: no secret in any payload');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('listen') AS x \gset
SELECT dblink_disconnect('app') AS x \gset
SELECT dblink_disconnect('b') AS x \gset
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_sec%';
DROP TABLE errs, probes;
DROP ROLE tap_sec_app;
RESET opsflags.environment;

SELECT * FROM finish();
