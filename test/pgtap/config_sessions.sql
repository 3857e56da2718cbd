-- test/pgtap/config_sessions.sql: configuration changed from several sessions at
-- once, and maintenance mode seen by other sessions.
--
-- a. Concurrent config_set of one key: session B changes it in an open
--    transaction; session C's config_set of the same key (sent with
--    dblink_send_query) must wait for B; when B commits, C completes without
--    error or deadlock, C's value wins, the version went up by two and the
--    audit trail has both changes.  The same for two sessions creating a new
--    key at once.  Two sessions writing two environments of one key, one of
--    them marking it sensitive: the other waits, and the key ends up
--    sensitive in both.
-- b. Maintenance mode: session "mm" (ordinary role tap_mm_app) has a
--    transaction open when this session A switches maintenance mode on; its
--    next writes to public.tap_mm_orders (INSERT, UPDATE, DELETE, MERGE,
--    TRUNCATE, COPY FROM, through a view, a writable CTE or a DO block) fail
--    with SQLSTATE 25006 (so do those of a REPEATABLE READ transaction whose
--    snapshot predates the switch) while reads and temporary tables work;
--    superusers and roles in opsflags.maintenance_exempt_roles (set with
--    ALTER SYSTEM and a reload) may write; switching it off restores writes
--    in the same open transaction; a rolled-back switch never blocks anyone.
--
-- Maintenance mode affects every later test file, so the maintenance part
-- runs without ON_ERROR_STOP (every remote statement goes through a wrapper
-- that catches its error) and the clean-up at the end always switches it
-- off and resets opsflags.maintenance_exempt_roles.  pgTAP keeps its
-- bookkeeping in temporary tables, which a ROLLBACK would undo, so inside a
-- transaction that is rolled back the observations go into psql variables
-- (\gset) and are asserted after the ROLLBACK.
\ir setup.inc
SET opsflags.environment = 'production';

-- Leftovers of an interrupted run.
SELECT count(*) AS x FROM (SELECT opsflags.set_maintenance_mode(false) WHERE opsflags.is_maintenance_mode()) s \gset
ALTER SYSTEM RESET opsflags.maintenance_exempt_roles;
SELECT pg_reload_conf() AS x \gset
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_ses.%';
DROP VIEW IF EXISTS public.tap_mm_orders_v;
DROP TABLE IF EXISTS public.tap_mm_orders;
DROP ROLE IF EXISTS tap_mm_app;
DROP ROLE IF EXISTS tap_mm_exempt;

SELECT plan(44);


-- Run cmd in a dblink session (a query returning one column, or a command);
-- returns 'ok' or the SQLSTATE of the error.  With savepoint, inside the
-- session's open transaction, a failed statement is rolled back to a
-- savepoint so the transaction can go on.
CREATE FUNCTION pg_temp.try(conn text, cmd text, savepoint boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    IF savepoint THEN
        PERFORM dblink_exec(conn, 'SAVEPOINT tap_try');
    END IF;
    BEGIN
        IF cmd ~* '^\s*(SELECT|WITH)\M' THEN
            PERFORM * FROM dblink(conn, cmd) AS t(x text);
        ELSE
            PERFORM dblink_exec(conn, cmd);
        END IF;
        st := 'ok';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    END;
    IF savepoint THEN
        PERFORM dblink_exec(conn, CASE WHEN st = 'ok' THEN 'RELEASE SAVEPOINT tap_try'
                                       ELSE 'ROLLBACK TO SAVEPOINT tap_try' END);
    END IF;
    RETURN st;
END
$$;

-- The same here, in a subtransaction.
CREATE FUNCTION pg_temp.try_here(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    RETURN st;
END
$$;

-- Wait (up to 10 s) until the backend pid waits for a lock; true if it does.
CREATE FUNCTION pg_temp.wait_until_blocked(pid int) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        IF EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = wait_until_blocked.pid AND a.wait_event_type = 'Lock') THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN false;
END
$$;

-- Wait (up to 10 s) for an asynchronous query to finish; cancel it if it
-- does not.  Returns whether it finished by itself.
CREATE FUNCTION pg_temp.wait_until_done(conn text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        IF dblink_is_busy(conn) = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM dblink_cancel_query(conn);
    RETURN false;
END
$$;

-- The result of an asynchronous query: its one text value, or 'error: ' and
-- the message.  Reads results until there are none.
CREATE FUNCTION pg_temp.async_result(conn text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    got text;
    msg text;
BEGIN
    SELECT x INTO got FROM dblink_get_result(conn, false) AS t(x text);
    msg := dblink_error_message(conn);
    PERFORM * FROM dblink_get_result(conn, false) AS t(x text);
    RETURN CASE WHEN msg = 'OK' THEN coalesce(got, '(null)') ELSE 'error: ' || msg END;
END
$$;

SELECT dblink_connect('b', pg_temp.tap_conninfo(usr => current_user, app => 'tap_sessions_b')) AS x \gset
SELECT dblink_connect('c', pg_temp.tap_conninfo(usr => current_user, app => 'tap_sessions_c')) AS x \gset
SELECT pid AS c_pid FROM dblink('c', 'SELECT pg_backend_pid()') AS t(pid int) \gset

-------------------------------------------------------------------------------
-- a. Concurrent config_set of one key
-------------------------------------------------------------------------------
SELECT opsflags.config_set('tap_ses.k', '"initial"') AS x \gset
SELECT version AS k_version0 FROM opsflags.app_config WHERE config_key = 'tap_ses.k' AND environment = 'all' \gset
SELECT max(id) AS k_audit0 FROM opsflags.audit_log WHERE resource_type = 'config' AND resource_id = 'tap_ses.k' \gset

SELECT dblink_exec('b', 'BEGIN') AS x \gset
SELECT pg_temp.try('b', $$SELECT opsflags.config_set('tap_ses.k', '"from-b"')$$) AS a_b_set \gset
SELECT dblink_send_query('c', $$SELECT opsflags.config_set('tap_ses.k', '"from-c"')::text$$) AS a_sent \gset
SELECT pg_temp.wait_until_blocked(:c_pid) AS a_blocked \gset
SELECT dblink_is_busy('c') AS a_busy_while_b_open \gset
SELECT opsflags.config_get('tap_ses.k') AS a_value_during \gset
SELECT dblink_exec('b', 'COMMIT') AS a_b_commit \gset
SELECT pg_temp.wait_until_done('c') AS a_done \gset
SELECT pg_temp.async_result('c') AS a_c_result \gset

SELECT is(:'a_b_set'::text, 'ok', 'a: B config_set in its open transaction');
SELECT is(:a_sent, 1, 'a: C''s config_set of the same key sent asynchronously');
SELECT ok(:'a_blocked'::boolean, 'a: C waits for a lock while B''s transaction is open');
SELECT is(:a_busy_while_b_open, 1, 'a: C''s query is still running while B''s transaction is open');
SELECT is(:'a_value_during'::jsonb, '"initial"'::jsonb, 'a: A still sees the committed value meanwhile');
SELECT is(:'a_b_commit'::text, 'COMMIT', 'a: B commits');
SELECT ok(:'a_done'::boolean, 'a: then C''s config_set completes');
SELECT is(:'a_c_result'::text, '', 'a: without error (no deadlock, no serialization failure)');
SELECT is(opsflags.config_get('tap_ses.k'), '"from-c"'::jsonb, 'a: the later change (C''s) is the final value');
SELECT is((SELECT version FROM opsflags.app_config WHERE config_key = 'tap_ses.k' AND environment = 'all'),
          :k_version0 + 2, 'a: version went up by two');
SELECT is((SELECT array_agg(action || ' ' || coalesce((old_values->'config_value')::text, '-') || ' -> ' || (new_values->'config_value')::text
                            ORDER BY id)
           FROM opsflags.audit_log WHERE resource_type = 'config' AND resource_id = 'tap_ses.k' AND id >= :k_audit0),
          ARRAY['INSERT - -> "initial"', 'UPDATE "initial" -> "from-b"', 'UPDATE "from-b" -> "from-c"'],
          'a: audit: the initial row plus exactly one row per change, C''s made on top of B''s (no lost update)');

-- Two sessions creating the same new key at once.
SELECT dblink_exec('b', 'BEGIN') AS x \gset
SELECT pg_temp.try('b', $$SELECT opsflags.config_set('tap_ses.new', '"from-b"', 'b', 'staging')$$) AS a2_b_set \gset
SELECT dblink_send_query('c', $$SELECT opsflags.config_set('tap_ses.new', '"from-c"', 'c', 'staging')::text$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:c_pid) AS a2_blocked \gset
SELECT dblink_exec('b', 'COMMIT') AS x \gset
SELECT pg_temp.wait_until_done('c') AS a2_done \gset
SELECT pg_temp.async_result('c') AS a2_c_result \gset

SELECT ok(:'a2_blocked'::boolean AND :'a2_b_set' = 'ok', 'a: new key: C''s config_set waits for B''s uncommitted insert');
SELECT is(ARRAY[:'a2_done', :'a2_c_result'], ARRAY['t', ''], 'a: new key: after B commits, C completes without error');
SELECT is((SELECT array_agg(config_value::text || ' v' || version || ' by ' || updated_by) FROM opsflags.app_config
           WHERE config_key = 'tap_ses.new'),
          ARRAY['"from-c" v2 by c'], 'a: new key: one row, C''s value, version 2');
SELECT is((SELECT array_agg(action || ' ' || (new_values->'config_value')::text ORDER BY id)
           FROM opsflags.audit_log WHERE resource_type = 'config' AND resource_id = 'tap_ses.new' AND id > :k_audit0),
          ARRAY['INSERT "from-b"', 'UPDATE "from-c"'], 'a: new key: audit has B''s insert and C''s update');

-- Sensitivity per key across sessions: while B marks a key sensitive in
-- 'all' (open transaction), C's new production row of the key waits, then
-- is sensitive; while B writes a public production row, C's marking of the
-- key in 'all' waits, then covers B's row.
SELECT dblink_exec('b', 'BEGIN') AS x \gset
SELECT pg_temp.try('b', $$SELECT opsflags.config_set('tap_ses.sens1', '"secret-all"', 'b', 'all', NULL, true)$$) AS a3_b_set \gset
SELECT dblink_send_query('c', $$SELECT opsflags.config_set('tap_ses.sens1', '"secret-prod"', 'c', 'production')::text$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:c_pid) AS a3_blocked \gset
SELECT dblink_exec('b', 'COMMIT') AS x \gset
SELECT pg_temp.wait_until_done('c') AS a3_done \gset
SELECT pg_temp.async_result('c') AS a3_c_result \gset
SELECT dblink_exec('b', 'BEGIN') AS x \gset
SELECT pg_temp.try('b', $$SELECT opsflags.config_set('tap_ses.sens2', '"public-prod"', 'b', 'production')$$) AS a4_b_set \gset
SELECT dblink_send_query('c', $$SELECT opsflags.config_set('tap_ses.sens2', '"secret-all"', 'c', 'all', NULL, true)::text$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:c_pid) AS a4_blocked \gset
SELECT dblink_exec('b', 'COMMIT') AS x \gset
SELECT pg_temp.wait_until_done('c') AS a4_done \gset
SELECT pg_temp.async_result('c') AS a4_c_result \gset

SELECT is(ARRAY[:'a3_b_set', :'a3_blocked', :'a3_done', :'a3_c_result', :'a4_b_set', :'a4_blocked', :'a4_done', :'a4_c_result'],
          ARRAY['ok', 't', 't', '', 'ok', 't', 't', ''],
          'a: sensitivity: a write to another environment of the key waits for the open transaction, then completes');
SELECT is((SELECT array_agg(config_key || ' ' || environment || ' ' || is_sensitive ORDER BY config_key, environment)
           FROM opsflags.app_config WHERE config_key IN ('tap_ses.sens1', 'tap_ses.sens2')),
          ARRAY['tap_ses.sens1 all true', 'tap_ses.sens1 production true', 'tap_ses.sens2 all true', 'tap_ses.sens2 production true'],
          'a: sensitivity: both keys are sensitive in every environment, whichever session marked them');

-------------------------------------------------------------------------------
-- b. Maintenance mode
-------------------------------------------------------------------------------
\set ON_ERROR_STOP 0

CREATE ROLE tap_mm_app LOGIN;
CREATE ROLE tap_mm_exempt LOGIN;
-- COPY FROM PROGRAM: a COPY FROM that needs no client-side data.
GRANT pg_execute_server_program TO tap_mm_app;
CREATE TABLE public.tap_mm_orders (id int PRIMARY KEY, item text NOT NULL);
INSERT INTO public.tap_mm_orders SELECT g, 'seed ' || g FROM generate_series(100, 109) g;
CREATE VIEW public.tap_mm_orders_v AS SELECT id, item FROM public.tap_mm_orders;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.tap_mm_orders, public.tap_mm_orders_v TO tap_mm_app, tap_mm_exempt;

SELECT dblink_connect('mm', pg_temp.tap_conninfo(usr => 'tap_mm_app', app => 'tap_sessions_mm')) AS x \gset
SELECT dblink_connect('ex', pg_temp.tap_conninfo(usr => 'tap_mm_exempt', app => 'tap_sessions_ex')) AS x \gset
SELECT dblink_connect('rr', pg_temp.tap_conninfo(usr => 'tap_mm_app', app => 'tap_sessions_rr')) AS x \gset

SELECT is(opsflags.is_maintenance_mode(), false, 'b: maintenance mode is off to begin with');
SELECT ok(opsflags.maintenance_enforced(), 'b: maintenance mode is enforced here (opsflags preloaded)');

-- mm opens a transaction and writes.
SELECT pg_temp.try('mm', 'BEGIN') AS x \gset
SELECT pg_temp.try('mm', 'CREATE TEMP TABLE tap_mm_scratch (x int)', true) AS x \gset
SELECT pg_temp.try('mm', $$INSERT INTO public.tap_mm_orders VALUES (1, 'before maintenance')$$, true) AS mm_before \gset
SELECT is(:'mm_before'::text, 'ok', 'b: tap_mm_app, in an open transaction, writes before maintenance mode');
-- A REPEATABLE READ transaction whose snapshot predates the switch.
SELECT pg_temp.try('rr', 'BEGIN ISOLATION LEVEL REPEATABLE READ') AS x \gset
SELECT pg_temp.try('rr', 'SELECT count(*) FROM public.tap_mm_orders', true) AS rr_snapshot \gset

SELECT opsflags.set_maintenance_mode(true) AS x \gset
SELECT is(opsflags.is_maintenance_mode(), true, 'b: set_maintenance_mode(true) committed: is_maintenance_mode() is true');

-- mm's next statements, same transaction.
CREATE TEMP TABLE mm_writes (n serial, what text, cmd text, got text);
INSERT INTO mm_writes (what, cmd) VALUES
  ('INSERT', $$INSERT INTO public.tap_mm_orders VALUES (2, 'during maintenance')$$),
  ('UPDATE', $$UPDATE public.tap_mm_orders SET item = 'changed' WHERE id = 100$$),
  ('UPDATE of its own uncommitted row', $$UPDATE public.tap_mm_orders SET item = 'changed' WHERE id = 1$$),
  ('DELETE', $$DELETE FROM public.tap_mm_orders WHERE id = 101$$),
  ('MERGE', $$MERGE INTO public.tap_mm_orders o USING (SELECT 102 AS id) s ON o.id = s.id
              WHEN MATCHED THEN UPDATE SET item = 'merged'$$),
  ('INSERT through a view', $$INSERT INTO public.tap_mm_orders_v VALUES (3, 'through the view')$$),
  ('writable CTE', $$WITH d AS (DELETE FROM public.tap_mm_orders WHERE id = 103 RETURNING 1) SELECT count(*) FROM d$$),
  ('INSERT in a DO block', $q$DO $do$BEGIN INSERT INTO public.tap_mm_orders VALUES (4, 'do block'); END$do$$q$),
  ('INSERT ... ON CONFLICT', $$INSERT INTO public.tap_mm_orders VALUES (100, 'upsert') ON CONFLICT (id) DO UPDATE SET item = 'upsert'$$),
  ('TRUNCATE', $$TRUNCATE public.tap_mm_orders$$),
  ('COPY FROM', $$COPY public.tap_mm_orders FROM PROGRAM 'echo 5,copied' WITH (FORMAT csv)$$);
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN SELECT * FROM mm_writes ORDER BY n LOOP
        UPDATE mm_writes SET got = pg_temp.try('mm', w.cmd, true) WHERE n = w.n;
    END LOOP;
END
$$;

SELECT diag('b: tap_mm_app ' || what || ' during maintenance: ' || got) FROM mm_writes WHERE got IS DISTINCT FROM '25006' ORDER BY n;
SELECT is((SELECT array_agg(got ORDER BY n) FROM mm_writes), array_fill('25006'::text, ARRAY[11]),
          'b: in the same open transaction, every write of tap_mm_app fails with 25006 (INSERT, UPDATE, DELETE, MERGE, view, CTE, DO, upsert, TRUNCATE, COPY FROM)');
SELECT is(ARRAY[:'rr_snapshot', pg_temp.try('rr', $$INSERT INTO public.tap_mm_orders VALUES (10, 'repeatable read')$$, true),
                pg_temp.try('rr', $$DELETE FROM public.tap_mm_orders WHERE id = 105$$, true),
                pg_temp.try('rr', 'SELECT count(*) FROM public.tap_mm_orders', true)],
          ARRAY['ok', '25006', '25006', 'ok'],
          'b: a REPEATABLE READ transaction with a snapshot from before the switch: writes fail with 25006, reads work');
SELECT pg_temp.try('rr', 'ROLLBACK') AS x \gset
SELECT is((SELECT count(*)::int FROM dblink('mm', 'SELECT id FROM public.tap_mm_orders') AS t(id int)), 11,
          'b: tap_mm_app reads: the 10 seed rows and its own row of before');
SELECT is((SELECT v FROM dblink('mm', 'SELECT opsflags.is_maintenance_mode()') AS t(v boolean)), true,
          'b: tap_mm_app''s open transaction sees is_maintenance_mode() true');
SELECT is(ARRAY[pg_temp.try('mm', 'INSERT INTO tap_mm_scratch VALUES (1), (2)', true),
                pg_temp.try('mm', 'UPDATE tap_mm_scratch SET x = x + 1', true),
                pg_temp.try('mm', 'TRUNCATE tap_mm_scratch', true)],
          ARRAY['ok', 'ok', 'ok'], 'b: tap_mm_app writes its temporary table (INSERT, UPDATE, TRUNCATE)');
SELECT is(pg_temp.try('mm', $$COPY public.tap_mm_orders TO PROGRAM 'cat > /dev/null'$$, true), 'ok',
          'b: tap_mm_app COPY TO (a read) works');
SELECT is(pg_temp.try_here($$INSERT INTO public.tap_mm_orders VALUES (200, 'by a superuser')$$), 'ok',
          'b: a superuser (A) writes');

-- A role in opsflags.maintenance_exempt_roles: not yet listed, then listed.
SELECT is(pg_temp.try('ex', $$INSERT INTO public.tap_mm_orders VALUES (300, 'exempt?')$$), '25006',
          'b: tap_mm_exempt before it is listed in opsflags.maintenance_exempt_roles: 25006');
ALTER SYSTEM SET opsflags.maintenance_exempt_roles = 'tap_mm_exempt';
SELECT pg_reload_conf() AS x \gset
DO $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        EXIT WHEN (SELECT v FROM dblink('ex', $q$SELECT current_setting('opsflags.maintenance_exempt_roles')$q$) AS t(v text))
                  = 'tap_mm_exempt';
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT is((SELECT v FROM dblink('ex', $q$SELECT current_setting('opsflags.maintenance_exempt_roles')$q$) AS t(v text)),
          'tap_mm_exempt', 'b: after ALTER SYSTEM and a reload, the exempt session sees the setting');
SELECT is(ARRAY[pg_temp.try('ex', $$INSERT INTO public.tap_mm_orders VALUES (300, 'exempt')$$),
                pg_temp.try('ex', $$UPDATE public.tap_mm_orders SET item = 'exempt update' WHERE id = 300$$),
                pg_temp.try('ex', $$INSERT INTO public.tap_mm_orders VALUES (301, 'exempt, to delete')$$),
                pg_temp.try('ex', $$DELETE FROM public.tap_mm_orders WHERE id = 301$$)],
          ARRAY['ok', 'ok', 'ok', 'ok'], 'b: tap_mm_exempt, listed, may INSERT, UPDATE and DELETE');
SELECT is(pg_temp.try('mm', $$INSERT INTO public.tap_mm_orders VALUES (6, 'still not exempt')$$, true), '25006',
          'b: tap_mm_app, not listed, still gets 25006');

-- Switched off: mm's next write in the same open transaction works.
SELECT opsflags.set_maintenance_mode(false) AS x \gset
SELECT is(opsflags.is_maintenance_mode(), false, 'b: set_maintenance_mode(false): is_maintenance_mode() is false');
SELECT is(pg_temp.try('mm', $$INSERT INTO public.tap_mm_orders VALUES (7, 'after maintenance')$$, true), 'ok',
          'b: tap_mm_app''s next write in the same open transaction succeeds');
SELECT is(pg_temp.try('mm', $$UPDATE public.tap_mm_orders SET item = 'after maintenance' WHERE id = 104$$, true), 'ok',
          'b: ... and an UPDATE');
SELECT is(pg_temp.try('mm', 'COMMIT'), 'ok', 'b: tap_mm_app commits');
SELECT is((SELECT array_agg(id || ' ' || item ORDER BY id) FROM public.tap_mm_orders WHERE id < 100 OR id >= 200 OR item NOT LIKE 'seed %'),
          ARRAY['1 before maintenance', '7 after maintenance', '104 after maintenance', '200 by a superuser', '300 exempt update'],
          'b: committed: the writes made outside maintenance mode and the allowed ones, none of the refused ones');
SELECT is((SELECT count(*)::int FROM public.tap_mm_orders WHERE id BETWEEN 100 AND 109), 10, 'b: the seed rows are all there');

-- A switch that is rolled back never blocks anyone.
BEGIN;
SELECT opsflags.set_maintenance_mode(true) AS x \gset
SELECT pg_temp.try('mm', $$INSERT INTO public.tap_mm_orders VALUES (8, 'while A''s switch is uncommitted')$$) AS rb_during \gset
SELECT (SELECT v FROM dblink('mm', 'SELECT opsflags.is_maintenance_mode()') AS t(v boolean)) AS rb_mm_sees \gset
ROLLBACK;
SELECT pg_temp.try('mm', $$INSERT INTO public.tap_mm_orders VALUES (9, 'after A''s rollback')$$) AS rb_after \gset
SELECT is(:'rb_during'::text, 'ok', 'b: while A''s set_maintenance_mode(true) is uncommitted, tap_mm_app writes');
SELECT is(:'rb_mm_sees'::text, 'f', 'b: ... and sees is_maintenance_mode() false');
SELECT is(:'rb_after'::text, 'ok', 'b: after A''s ROLLBACK, tap_mm_app writes');
SELECT is(opsflags.is_maintenance_mode(), false, 'b: after the ROLLBACK maintenance mode is off');
SELECT is((SELECT array_agg(id ORDER BY id) FROM public.tap_mm_orders WHERE id IN (8, 9)), ARRAY[8, 9],
          'b: both writes are there');

-------------------------------------------------------------------------------
-- Clean up (also after a failure above: ON_ERROR_STOP is off here)
-------------------------------------------------------------------------------
SELECT count(*) AS x FROM (SELECT opsflags.set_maintenance_mode(false) WHERE opsflags.is_maintenance_mode()) s \gset
ALTER SYSTEM RESET opsflags.maintenance_exempt_roles;
SELECT pg_reload_conf() AS x \gset
SELECT count(dblink_disconnect(c)) AS x FROM unnest(dblink_get_connections()) c \gset
-- A disconnected session drops its temporary tables as it exits: wait for
-- the test roles' backends to be gone before dropping the roles.
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    WHILE EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename IN ('tap_mm_app', 'tap_mm_exempt'))
          AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.02);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END $$;
\set ON_ERROR_STOP 1
SELECT is(opsflags.is_maintenance_mode(), false, 'maintenance mode is off at the end');
DROP VIEW public.tap_mm_orders_v;
DROP TABLE public.tap_mm_orders;
DROP ROLE tap_mm_app;
DROP ROLE tap_mm_exempt;
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_ses.%';
RESET opsflags.environment;

SELECT * FROM finish();
