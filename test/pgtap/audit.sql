-- test/pgtap/audit.sql: the audit trail.
--
-- Application tables public.tap_audit_items (one-column primary key) and
-- public.tap_audit_pairs (composite key) are given to opsflags.audit_table.
-- Every INSERT, UPDATE and DELETE must leave exactly one audit row per row,
-- with the action, resource_type (the table's name), resource_id (the
-- primary key, "a,b" for a composite key), table_name, old_values /
-- new_values (to_jsonb of the row before / after), actor (session_user),
-- role (current_user), client_addr, application_name and txid of the
-- writing transaction; the expectations are taken inside each writing
-- transaction.  Writes also come from a TCP session of another login role
-- (so actor, role and client_addr differ from this session's), under SET
-- ROLE, from nested statements, in bulk, in savepoints that are rolled back
-- and in statements that fail half-way.  TRUNCATE is recorded; unaudit_table
-- stops it; audit_table twice is the same as once.  An UPDATE that leaves a
-- row's text unchanged is not recorded (300 generated updates checked
-- against a SQL reference).  Writes under session_replication_role =
-- replica are recorded, and so are writes to partitions and inheritance
-- children (also those made after audit_table, by a role that is not an
-- admin), through the parent or directly.  Flag and configuration
-- changes are recorded.  audit_log is append-only even for a superuser
-- (also with session_replication_role = replica); purge_audit_log(before)
-- deletes exactly the older rows and records itself; only superusers may
-- purge.
--
-- Tables tap_audit_*, roles tap_audit_*, flag tap_aud.flag, key tap_aud.*
-- are removed at the start (leftovers) and at the end.  Audit rows of
-- earlier runs are told apart by id (everything after :audit_start).
\ir setup.inc
SET opsflags.environment = 'production';
SET application_name = 'tap_audit_A';

DROP TABLE IF EXISTS public.tap_audit_items, public.tap_audit_pairs, public.tap_audit_parts, public.tap_audit_noop CASCADE;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap_aud.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_aud.%';
DROP ROLE IF EXISTS tap_audit_writer;
DROP ROLE IF EXISTS tap_audit_login;
DROP ROLE IF EXISTS tap_audit_admin;

SELECT plan(56);

SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

CREATE ROLE tap_audit_writer;
CREATE ROLE tap_audit_login LOGIN;
CREATE ROLE tap_audit_admin LOGIN;
GRANT opsflags_admin TO tap_audit_admin;
GRANT tap_audit_writer TO tap_audit_login;

CREATE TABLE public.tap_audit_items (
    id      int PRIMARY KEY,
    name    text NOT NULL,
    qty     int,
    price   numeric(12, 3),
    tags    text[],
    meta    jsonb,
    seen_at timestamptz,
    raw     bytea
);
CREATE TABLE public.tap_audit_pairs (
    a int,
    b text,
    v text,
    PRIMARY KEY (a, b)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tap_audit_items, public.tap_audit_pairs TO tap_audit_writer, tap_audit_login;

-- Expectations, recorded inside each writing transaction.
CREATE TEMP TABLE expect (n serial, label text, action text, resource_type text, resource_id text, table_name text,
                          old_values jsonb, new_values jsonb, actor text, role text, client_addr inet,
                          application_name text, txid bigint);
GRANT ALL ON expect, expect_n_seq TO PUBLIC;

-- An audit row (or an expectation) as one comparable value.
CREATE FUNCTION pg_temp.shape(action text, resource_type text, resource_id text, table_name text,
                              old_values jsonb, new_values jsonb, actor text, role text, client_addr inet,
                              application_name text, txid bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('action', action, 'resource_type', resource_type, 'resource_id', resource_id,
                            'table_name', table_name, 'old_values', old_values, 'new_values', new_values,
                            'actor', actor, 'role', role, 'client_addr', client_addr::text,
                            'application_name', application_name, 'txid', txid)
$$;

-- The audit rows of this run for one table and resource.
CREATE FUNCTION pg_temp.audited(tbl text, rid text, since bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(pg_temp.shape(action, resource_type, resource_id, table_name, old_values, new_values,
                                          actor, role, client_addr, application_name, txid) ORDER BY id), '[]')
  FROM opsflags.audit_log
  WHERE id > since AND table_name = tbl AND resource_id IS NOT DISTINCT FROM rid
$$;
CREATE FUNCTION pg_temp.expected(labels text[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(pg_temp.shape(action, resource_type, resource_id, table_name, old_values, new_values,
                                          actor, role, client_addr, application_name, txid) ORDER BY n), '[]')
  FROM expect WHERE label = ANY (labels)
$$;

-- Record the expectation for one row write in the current transaction:
-- old and new images are read by the caller.
CREATE FUNCTION pg_temp.expect_row(label text, action text, tbl text, rid text, old_values jsonb, new_values jsonb)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO expect (label, action, resource_type, resource_id, table_name, old_values, new_values,
                      actor, role, client_addr, application_name, txid)
  VALUES (label, action, split_part(tbl, '.', 2), rid, tbl, old_values, new_values,
          session_user, current_user, inet_client_addr(), current_setting('application_name'), txid_current())
$$;

-------------------------------------------------------------------------------
-- audit_table, twice
-------------------------------------------------------------------------------
SELECT opsflags.audit_table('public.tap_audit_items') AS x \gset
SELECT count(*) AS triggers_once FROM pg_trigger WHERE tgrelid = 'public.tap_audit_items'::regclass AND NOT tgisinternal \gset
SELECT opsflags.audit_table('public.tap_audit_items') AS x \gset
SELECT opsflags.audit_table('tap_audit_pairs') AS x \gset
SELECT cmp_ok(:triggers_once::int, '>', 0, 'audit_table creates a trigger');
SELECT throws_ok('SELECT opsflags.audit_table(NULL)', '22004', NULL, 'audit_table(NULL): 22004');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'public.tap_audit_items'::regclass AND NOT tgisinternal), :triggers_once,
          'audit_table a second time adds no trigger');

-------------------------------------------------------------------------------
-- One INSERT, one UPDATE, one DELETE (this session: superuser, Unix socket)
-------------------------------------------------------------------------------
BEGIN;
INSERT INTO public.tap_audit_items VALUES (1, 'widget', 3, 9.5, '{a,"b c"}', '{"k": [1, {"x": null}]}', '2024-02-29 12:34:56.789+00', '\x00ff');
SELECT pg_temp.expect_row('ins', 'INSERT', 'public.tap_audit_items', '1', NULL,
                          (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 1)) AS x \gset
COMMIT;
SELECT is(pg_temp.audited('public.tap_audit_items', '1', :audit_start), pg_temp.expected('{ins}'),
          'INSERT: one row: action, resource_type, resource_id, table_name, new_values, actor, role, client_addr, application_name, txid');

BEGIN;
CREATE TEMP TABLE before_image AS SELECT to_jsonb(t) AS j FROM public.tap_audit_items t WHERE id = 1;
UPDATE public.tap_audit_items SET qty = qty + 1, price = NULL, tags = tags || '{ü}'::text[], meta = meta || '{"u": true}' WHERE id = 1;
SELECT pg_temp.expect_row('upd', 'UPDATE', 'public.tap_audit_items', '1', (SELECT j FROM before_image),
                          (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 1)) AS x \gset
DROP TABLE before_image;
COMMIT;
SELECT is(pg_temp.audited('public.tap_audit_items', '1', :audit_start), pg_temp.expected('{ins,upd}'),
          'UPDATE: one more row, with old_values and new_values');

BEGIN;
SELECT pg_temp.expect_row('del', 'DELETE', 'public.tap_audit_items', '1',
                          (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 1), NULL) AS x \gset
DELETE FROM public.tap_audit_items WHERE id = 1;
COMMIT;
SELECT is(pg_temp.audited('public.tap_audit_items', '1', :audit_start), pg_temp.expected('{ins,upd,del}'),
          'DELETE: one more row, with old_values');

-------------------------------------------------------------------------------
-- Composite primary key
-------------------------------------------------------------------------------
BEGIN;
INSERT INTO public.tap_audit_pairs VALUES (7, 'x', 'first');
SELECT pg_temp.expect_row('pair ins', 'INSERT', 'public.tap_audit_pairs', '7,x', NULL,
                          (SELECT to_jsonb(t) FROM public.tap_audit_pairs t WHERE a = 7 AND b = 'x')) AS x \gset
COMMIT;
BEGIN;
SELECT pg_temp.expect_row('pair upd', 'UPDATE', 'public.tap_audit_pairs', '7,x',
                          (SELECT to_jsonb(t) FROM public.tap_audit_pairs t WHERE a = 7 AND b = 'x'),
                          '{"a": 7, "b": "x", "v": "second"}') AS x \gset
UPDATE public.tap_audit_pairs SET v = 'second' WHERE a = 7 AND b = 'x';
SELECT pg_temp.expect_row('pair del', 'DELETE', 'public.tap_audit_pairs', '7,x', '{"a": 7, "b": "x", "v": "second"}', NULL) AS x \gset
DELETE FROM public.tap_audit_pairs WHERE a = 7;
COMMIT;
SELECT is(pg_temp.audited('public.tap_audit_pairs', '7,x', :audit_start), pg_temp.expected('{pair ins,pair upd,pair del}'),
          'composite key: INSERT, UPDATE (same transaction as the DELETE) and DELETE, resource_id "a,b"');

-- A key change: the row is recorded under its new key.
INSERT INTO public.tap_audit_pairs VALUES (8, 'k', 'moves');
UPDATE public.tap_audit_pairs SET b = 'k2' WHERE a = 8;
SELECT is((SELECT jsonb_agg(jsonb_build_array(action, resource_id, old_values->>'b', new_values->>'b') ORDER BY id)
           FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_pairs' AND resource_id LIKE '8,%'),
          '[["INSERT", "8,k", null, "k"], ["UPDATE", "8,k2", "k", "k2"]]'::jsonb,
          'composite key: an UPDATE of the key is recorded with both images');

-------------------------------------------------------------------------------
-- SET ROLE; another login role over TCP
-------------------------------------------------------------------------------
BEGIN;
SET LOCAL ROLE tap_audit_writer;
INSERT INTO public.tap_audit_items (id, name) VALUES (2, 'by writer');
SELECT pg_temp.expect_row('role', 'INSERT', 'public.tap_audit_items', '2', NULL,
                          (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 2)) AS x \gset
COMMIT;
SELECT is(pg_temp.audited('public.tap_audit_items', '2', :audit_start), pg_temp.expected('{role}'),
          'under SET ROLE: role is the current role, actor the session user');
SELECT is((SELECT role || ' ' || actor FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_items'
           AND resource_id = '2'), 'tap_audit_writer ' || session_user, '... (tap_audit_writer, ' || session_user || ')');

-- Over TCP to 127.0.0.1 when the server listens there (scripts/test.sh sets
-- listen_addresses = '127.0.0.1'), else over the Unix socket.
SELECT current_setting('listen_addresses') <> '' AS tcp \gset
SELECT dblink_connect('tcp', format('host=%s port=%s dbname=%s user=tap_audit_login application_name=tap_audit_tcp',
                                    CASE WHEN :'tcp' THEN '127.0.0.1'
                                         ELSE '''' || replace(replace(split_part(current_setting('unix_socket_directories'), ',', 1),
                                                                      '\', '\\'), '''', '\''') || '''' END,
                                    current_setting('port'),
                                    '''' || replace(replace(current_database(), '\', '\\'), '''', '\''') || '''')) AS x \gset
SELECT dblink_exec('tcp', 'BEGIN') AS x \gset
SELECT dblink_exec('tcp', $$INSERT INTO public.tap_audit_items (id, name, qty) VALUES (3, 'over tcp', 1)$$) AS x \gset
INSERT INTO expect (label, action, resource_type, resource_id, table_name, old_values, new_values, actor, role, client_addr, application_name, txid)
SELECT 'tcp ins', 'INSERT', 'tap_audit_items', '3', 'public.tap_audit_items', NULL, new, actor, role, addr, app, tx
FROM dblink('tcp', $$SELECT (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 3), session_user, current_user,
                            inet_client_addr(), current_setting('application_name'), txid_current()$$)
  AS t(new jsonb, actor text, role text, addr inet, app text, tx bigint);
SELECT dblink_exec('tcp', 'COMMIT') AS x \gset
SELECT dblink_exec('tcp', 'BEGIN') AS x \gset
SELECT dblink_exec('tcp', 'SET LOCAL ROLE tap_audit_writer') AS x \gset
INSERT INTO expect (label, action, resource_type, resource_id, table_name, old_values, new_values, actor, role, client_addr, application_name, txid)
SELECT 'tcp upd', 'UPDATE', 'tap_audit_items', '3', 'public.tap_audit_items', old, NULL, actor, role, addr, app, tx
FROM dblink('tcp', $$SELECT (SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 3), session_user, current_user,
                            inet_client_addr(), current_setting('application_name'), txid_current()$$)
  AS t(old jsonb, actor text, role text, addr inet, app text, tx bigint);
SELECT dblink_exec('tcp', $$UPDATE public.tap_audit_items SET qty = 2 WHERE id = 3$$) AS x \gset
UPDATE expect SET new_values = (SELECT j FROM dblink('tcp', 'SELECT to_jsonb(t) FROM public.tap_audit_items t WHERE id = 3') AS t(j jsonb))
WHERE label = 'tcp upd';
SELECT dblink_exec('tcp', 'COMMIT') AS x \gset
SELECT dblink_disconnect('tcp') AS x \gset
SELECT is(pg_temp.audited('public.tap_audit_items', '3', :audit_start), pg_temp.expected('{tcp ins,tcp upd}'),
          'another login role over TCP: actor, role, client_addr, application_name and txid of that session');
SELECT is((SELECT array_agg(actor || ' ' || role || ' ' || coalesce(host(client_addr), 'local') || ' ' || application_name ORDER BY id)
           FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_items' AND resource_id = '3'),
          ARRAY['tap_audit_login tap_audit_login ' || CASE WHEN :'tcp' THEN '127.0.0.1' ELSE 'local' END || ' tap_audit_tcp',
                'tap_audit_login tap_audit_writer ' || CASE WHEN :'tcp' THEN '127.0.0.1' ELSE 'local' END || ' tap_audit_tcp'],
          '... (tap_audit_login from 127.0.0.1; then under SET ROLE tap_audit_writer)');

-------------------------------------------------------------------------------
-- Rolled back, savepoints, failed statements: nothing recorded
-------------------------------------------------------------------------------
BEGIN;
INSERT INTO public.tap_audit_items (id, name) VALUES (4, 'rolled back');
UPDATE public.tap_audit_items SET name = 'rolled back' WHERE id = 2;
DELETE FROM public.tap_audit_items WHERE id = 3;
ROLLBACK;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_items'
           AND (resource_id = '4' OR new_values->>'name' = 'rolled back' OR action = 'DELETE' AND resource_id = '3')), 0,
          'a rolled-back transaction (INSERT, UPDATE, DELETE) leaves no audit row');

BEGIN;
SAVEPOINT s1;
INSERT INTO public.tap_audit_items (id, name) VALUES (5, 'rolled back to savepoint');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO public.tap_audit_items (id, name) VALUES (6, 'kept');
SAVEPOINT s2;
UPDATE public.tap_audit_items SET name = 'rolled back to savepoint' WHERE id = 6;
ROLLBACK TO SAVEPOINT s2;
SELECT txid_current() AS sp_txid \gset
COMMIT;
SELECT is((SELECT jsonb_agg(jsonb_build_array(action, resource_id, new_values->>'name', txid = :sp_txid) ORDER BY id)
           FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_items' AND resource_id IN ('5', '6')),
          '[["INSERT", "6", "kept", true]]'::jsonb,
          'writes rolled back to a savepoint leave nothing; the rest of the transaction is recorded');

-- A statement that fails after some rows (duplicate key on the third).
SELECT throws_ok($$INSERT INTO public.tap_audit_items (id, name) VALUES (20, 'a'), (21, 'b'), (6, 'duplicate')$$, '23505',
                 NULL, 'a multi-row INSERT fails on its third row (duplicate key)');
INSERT INTO public.tap_audit_items (id, name) VALUES (22, 'after the failure');
SELECT is((SELECT array_agg(resource_id ORDER BY id) FROM opsflags.audit_log WHERE id > :audit_start
           AND table_name = 'public.tap_audit_items' AND resource_id IN ('20', '21', '22')),
          ARRAY['22'], 'the failed statement''s first rows leave no audit row; the next statement is recorded');

-- Writes in a PL/pgSQL block whose exception handler rolls them back.
DO $$
BEGIN
    BEGIN
        INSERT INTO public.tap_audit_items (id, name) VALUES (23, 'undone by the handler');
        UPDATE public.tap_audit_items SET name = 'undone by the handler' WHERE id = 22;
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    INSERT INTO public.tap_audit_items (id, name) VALUES (24, 'after the handler');
END
$$;
SELECT is((SELECT array_agg(action || ' ' || resource_id ORDER BY id) FROM opsflags.audit_log WHERE id > :audit_start
           AND table_name = 'public.tap_audit_items' AND (resource_id IN ('23', '24') OR new_values->>'name' = 'undone by the handler')),
          ARRAY['INSERT 24'], 'writes undone by an exception handler leave nothing; the block''s later write is recorded');

-- A big statement that fails on its last row, then a TRUNCATE rolled back.
SELECT coalesce(max(id), 0) AS bigfail_start FROM opsflags.audit_log \gset
SELECT throws_ok($$INSERT INTO public.tap_audit_items (id, name)
                   SELECT g, 'big failure' FROM generate_series(10000, 15999) g UNION ALL SELECT 6, 'duplicate'$$,
                 '23505', NULL, 'a 6001-row INSERT fails on its last row');
BEGIN;
TRUNCATE public.tap_audit_items;
ROLLBACK;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :bigfail_start AND table_name = 'public.tap_audit_items'), 0,
          '... and leaves no audit row; nor does a rolled-back TRUNCATE');

-- COPY FROM and MERGE.
SELECT coalesce(max(id), 0) AS copy_start FROM opsflags.audit_log \gset
COPY public.tap_audit_items (id, name) FROM PROGRAM 'printf "60,copied\n61,copied\n"' WITH (FORMAT csv);
MERGE INTO public.tap_audit_items t
USING (VALUES (60, 'merge update'), (61, 'merge delete'), (62, 'merge insert')) s(id, name) ON t.id = s.id
WHEN MATCHED AND s.name = 'merge delete' THEN DELETE
WHEN MATCHED THEN UPDATE SET name = s.name
WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name);
SELECT is((SELECT jsonb_agg(jsonb_build_array(action, resource_id, old_values->>'name', new_values->>'name') ORDER BY resource_id, id)
           FROM opsflags.audit_log WHERE id > :copy_start AND table_name = 'public.tap_audit_items'),
          '[["INSERT", "60", null, "copied"], ["UPDATE", "60", "copied", "merge update"],
            ["INSERT", "61", null, "copied"], ["DELETE", "61", "copied", null],
            ["INSERT", "62", null, "merge insert"]]'::jsonb,
          'COPY FROM and MERGE (UPDATE, DELETE and INSERT actions): one row each');

-------------------------------------------------------------------------------
-- Many rows
-------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS bulk_start FROM opsflags.audit_log \gset
INSERT INTO public.tap_audit_items (id, name, qty) SELECT g, 'bulk ' || g, g % 7 FROM generate_series(100, 5099) g;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :bulk_start AND table_name = 'public.tap_audit_items'
           AND action = 'INSERT'), 5000, 'a 5000-row INSERT leaves 5000 rows');
SELECT is((SELECT count(*)::int FROM public.tap_audit_items t
           FULL JOIN (SELECT * FROM opsflags.audit_log WHERE id > :bulk_start AND table_name = 'public.tap_audit_items') a
             ON a.resource_id = t.id::text
           WHERE t.id BETWEEN 100 AND 5099 AND (a.id IS NULL OR a.new_values IS DISTINCT FROM to_jsonb(t))
              OR t.id IS NULL), 0,
          '... one per row, each with the row as new_values');

BEGIN;
CREATE TEMP TABLE multi_before AS SELECT id, to_jsonb(t) AS j FROM public.tap_audit_items t WHERE id BETWEEN 100 AND 119;
SELECT txid_current() AS multi_txid \gset
SELECT coalesce(max(id), 0) AS multi_start FROM opsflags.audit_log \gset
UPDATE public.tap_audit_items SET qty = -qty, name = name || ' updated' WHERE id BETWEEN 100 AND 119;
CREATE TEMP TABLE multi_after AS SELECT id, to_jsonb(t) AS j FROM public.tap_audit_items t WHERE id BETWEEN 100 AND 119;
COMMIT;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :multi_start AND table_name = 'public.tap_audit_items'), 20,
          'a 20-row UPDATE leaves 20 rows');
SELECT is((SELECT count(*)::int FROM multi_before b JOIN multi_after f USING (id)
           JOIN opsflags.audit_log a ON a.id > :multi_start AND a.table_name = 'public.tap_audit_items' AND a.resource_id = b.id::text
           WHERE a.action = 'UPDATE' AND a.old_values = b.j AND a.new_values = f.j AND a.txid = :multi_txid), 20,
          '... one per row, with its own old and new image and the transaction''s txid');

-- Rows written by statements nested in other statements.
CREATE FUNCTION pg_temp.add_item(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tap_audit_items (id, name) VALUES (i, 'nested ' || i);
    UPDATE public.tap_audit_items SET qty = i WHERE id = i;
    RETURN i;
END
$$;
SELECT count(pg_temp.add_item(g)) AS x FROM generate_series(30, 32) g \gset
SELECT is((SELECT array_agg(action || ' ' || resource_id || ' ' || coalesce(new_values->>'qty', '-') ORDER BY id) FROM opsflags.audit_log
           WHERE id > :audit_start AND table_name = 'public.tap_audit_items' AND resource_id IN ('30', '31', '32')),
          ARRAY['INSERT 30 -', 'UPDATE 30 30', 'INSERT 31 -', 'UPDATE 31 31', 'INSERT 32 -', 'UPDATE 32 32'],
          'writes by a function called once per row of a SELECT: each recorded, in order');

-------------------------------------------------------------------------------
-- TRUNCATE, then unaudit_table
-------------------------------------------------------------------------------
BEGIN;
SELECT txid_current() AS trunc_txid \gset
TRUNCATE public.tap_audit_pairs;
COMMIT;
SELECT is((SELECT jsonb_agg(jsonb_build_array(action, resource_type, resource_id, old_values, new_values, actor, role, txid = :trunc_txid))
           FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_pairs' AND action = 'TRUNCATE'),
          jsonb_build_array(jsonb_build_array('TRUNCATE', 'tap_audit_pairs', NULL, NULL, NULL, session_user, current_user, true)),
          'TRUNCATE leaves one TRUNCATE row');

SELECT opsflags.unaudit_table('public.tap_audit_pairs') AS x \gset
SELECT coalesce(max(id), 0) AS unaudit_start FROM opsflags.audit_log \gset
INSERT INTO public.tap_audit_pairs VALUES (9, 'z', 'not audited');
UPDATE public.tap_audit_pairs SET v = 'still not' WHERE a = 9;
DELETE FROM public.tap_audit_pairs WHERE a = 9;
TRUNCATE public.tap_audit_pairs;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :unaudit_start AND table_name = 'public.tap_audit_pairs'), 0,
          'after unaudit_table nothing is recorded (INSERT, UPDATE, DELETE, TRUNCATE)');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'public.tap_audit_pairs'::regclass AND NOT tgisinternal), 0,
          'unaudit_table removes the triggers');
INSERT INTO public.tap_audit_items (id, name) VALUES (40, 'still audited');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :unaudit_start AND table_name = 'public.tap_audit_items'), 1,
          '... and only on that table');

-------------------------------------------------------------------------------
-- Flags and configuration are audited
-------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS flag_start FROM opsflags.audit_log \gset
SELECT opsflags.create_flag('tap_aud.flag', 'audited flag') AS flag_id \gset
SELECT is((SELECT jsonb_agg(jsonb_build_array(resource_type, action, resource_id, table_name) ORDER BY resource_type, resource_id)
           FROM opsflags.audit_log WHERE id > :flag_start),
          (SELECT jsonb_build_array(jsonb_build_array('feature_flag', 'INSERT', 'tap_aud.flag', 'opsflags.feature_flags'))
                  || jsonb_agg(jsonb_build_array('flag_config', 'INSERT', :'flag_id' || ',' || name, 'opsflags.feature_flag_configs')
                               ORDER BY :'flag_id' || ',' || name)
           FROM opsflags.environments),
          'create_flag: a feature_flag row and a flag_config row per environment');
SELECT is((SELECT new_values->>'flag_name' FROM opsflags.audit_log WHERE id > :flag_start AND resource_type = 'feature_flag'),
          'audited flag', '... with the new row as new_values');
SELECT coalesce(max(id), 0) AS toggle_start FROM opsflags.audit_log \gset
SELECT opsflags.toggle_flag('tap_aud.flag', true, 'staging') AS x \gset
SELECT is((SELECT jsonb_agg(jsonb_build_array(resource_type, action, resource_id, old_values->'is_enabled', new_values->'is_enabled',
                                              (new_values->>'version')::int - (old_values->>'version')::int))
           FROM opsflags.audit_log WHERE id > :toggle_start),
          jsonb_build_array(jsonb_build_array('flag_config', 'UPDATE', :'flag_id' || ',staging', false, true, 1)),
          'toggle_flag: one flag_config UPDATE row, is_enabled false -> true');
SELECT coalesce(max(id), 0) AS config_start FROM opsflags.audit_log \gset
SELECT opsflags.config_set('tap_aud.key', '{"n": 1}') AS x \gset
SELECT opsflags.config_set('tap_aud.key', '{"n": 2}') AS x \gset
SELECT opsflags.config_delete('tap_aud.key') AS x \gset
SELECT is((SELECT jsonb_agg(jsonb_build_array(resource_type, action, resource_id, table_name, old_values->'config_value', new_values->'config_value') ORDER BY id)
           FROM opsflags.audit_log WHERE id > :config_start),
          '[["config", "INSERT", "tap_aud.key", "opsflags.app_config", null, {"n": 1}],
            ["config", "UPDATE", "tap_aud.key", "opsflags.app_config", {"n": 1}, {"n": 2}],
            ["config", "DELETE", "tap_aud.key", "opsflags.app_config", {"n": 2}, null]]'::jsonb,
          'config_set, config_set, config_delete: config INSERT, UPDATE, DELETE rows');

-------------------------------------------------------------------------------
-- No-op UPDATEs (generated cases against a SQL reference)
-------------------------------------------------------------------------------
-- 300 rows, each updated once by one statement to values drawn so that
-- about half leave the row as it was (same values, NULL to NULL) and the
-- rest change it (another value, NULL <-> value, numeric scale 1.5 -> 1.50).
-- Reference: a row is recorded iff its text form changed; the recorded
-- images are the row before and after.
CREATE TABLE public.tap_audit_noop (id int PRIMARY KEY, a int, b text, c numeric);
SELECT opsflags.audit_table('public.tap_audit_noop') AS x \gset
SELECT setseed(0.42) AS x \gset
INSERT INTO public.tap_audit_noop
SELECT g, CASE WHEN random() < 0.2 THEN NULL ELSE (random() * 3)::int END,
       CASE WHEN random() < 0.2 THEN NULL ELSE 'v' || (random() * 3)::int END,
       CASE WHEN random() < 0.2 THEN NULL ELSE round((random() * 3)::numeric, 1) END
FROM generate_series(1, 300) g;
CREATE TEMP TABLE noop_cases AS
SELECT t.id,
       CASE WHEN r1 < 0.7 THEN t.a WHEN r1 < 0.85 THEN NULL ELSE (r1 * 3)::int END AS a,
       CASE WHEN r2 < 0.7 THEN t.b WHEN r2 < 0.85 THEN NULL ELSE 'v' || (r2 * 3)::int END AS b,
       CASE WHEN r3 < 0.7 THEN t.c WHEN r3 < 0.8 THEN round(t.c, 2) WHEN r3 < 0.9 THEN NULL ELSE round((r3 * 3)::numeric, 1) END AS c,
       to_jsonb(t) AS before
FROM public.tap_audit_noop t, LATERAL (SELECT random() + 0 * t.id AS r1, random() + 0 * t.id AS r2, random() + 0 * t.id AS r3) r;
SELECT coalesce(max(id), 0) AS noop_start FROM opsflags.audit_log \gset
UPDATE public.tap_audit_noop t SET a = n.a, b = n.b, c = n.c FROM noop_cases n WHERE n.id = t.id;
CREATE TEMP TABLE noop_reference AS
SELECT n.id::text AS id, n.before, to_jsonb(t) AS after
FROM noop_cases n JOIN public.tap_audit_noop t USING (id)
WHERE (n.before ->> 'a', n.before ->> 'b', n.before ->> 'c') IS DISTINCT FROM (t.a::text, t.b, t.c::text);
SELECT ok((SELECT count(*) FROM noop_reference) BETWEEN 50 AND 250,
          'no-op UPDATEs: of 300 generated updates, some change the row and some do not');
SELECT is((SELECT count(*)::int FROM noop_cases n WHERE n.id::text IN (SELECT id FROM noop_reference)
                                                    AND (n.before -> 'c') IS NOT NULL AND n.c IS NOT NULL
                                                    AND (n.before ->> 'c')::numeric = n.c AND (n.before ->> 'c') <> n.c::text) > 0,
          true, '... among the changes, some only change a numeric''s scale');
SELECT is((SELECT coalesce(jsonb_agg(jsonb_build_array(resource_id, old_values, new_values) ORDER BY resource_id::int), '[]')
           FROM opsflags.audit_log WHERE id > :noop_start AND table_name = 'public.tap_audit_noop'),
          (SELECT coalesce(jsonb_agg(jsonb_build_array(id, before, after) ORDER BY id::int), '[]') FROM noop_reference),
          'no-op UPDATEs: exactly the rows whose text changed are recorded, with their images before and after');
SELECT coalesce(max(id), 0) AS noop_start FROM opsflags.audit_log \gset
UPDATE public.tap_audit_noop SET a = a, b = b, c = c;
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :noop_start AND table_name = 'public.tap_audit_noop'), 0,
          'UPDATE t SET every column to itself on 300 rows: nothing recorded');

-------------------------------------------------------------------------------
-- session_replication_role = replica; children and partitions
-------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS replica_start FROM opsflags.audit_log \gset
SET session_replication_role = replica;
INSERT INTO public.tap_audit_noop (id, a) SELECT g, g FROM generate_series(1001, 1100) g;
UPDATE public.tap_audit_noop SET a = -a WHERE id BETWEEN 1001 AND 1050;
DELETE FROM public.tap_audit_noop WHERE id BETWEEN 1051 AND 1060;
RESET session_replication_role;
SELECT is((SELECT jsonb_object_agg(action, n) FROM (SELECT action, count(*) AS n FROM opsflags.audit_log
           WHERE id > :replica_start AND table_name = 'public.tap_audit_noop' GROUP BY action) x),
          '{"INSERT": 100, "UPDATE": 50, "DELETE": 10}'::jsonb,
          'under session_replication_role = replica: 100 INSERTs, 50 UPDATEs, 10 DELETEs recorded');

CREATE TABLE public.tap_audit_parts (id int, region text, v int) PARTITION BY LIST (region);
CREATE TABLE public.tap_audit_parts_eu PARTITION OF public.tap_audit_parts FOR VALUES IN ('eu');
CREATE TABLE public.tap_audit_kids (k int) INHERITS (public.tap_audit_noop);
SELECT opsflags.audit_table('public.tap_audit_parts') AS x \gset
-- Made after audit_table, by a role that is not an admin.
GRANT CREATE ON SCHEMA public TO tap_audit_writer;
ALTER TABLE public.tap_audit_parts OWNER TO tap_audit_writer;
ALTER TABLE public.tap_audit_kids OWNER TO tap_audit_writer;
SET ROLE tap_audit_writer;
CREATE TABLE public.tap_audit_parts_us PARTITION OF public.tap_audit_parts FOR VALUES IN ('us');
CREATE TABLE public.tap_audit_grandkids () INHERITS (public.tap_audit_kids);
RESET ROLE;
SELECT coalesce(max(id), 0) AS child_start FROM opsflags.audit_log \gset
INSERT INTO public.tap_audit_parts SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 100) g;
UPDATE public.tap_audit_parts SET v = v + 1 WHERE id <= 10;
INSERT INTO public.tap_audit_kids (id, a, k) SELECT g, g, g FROM generate_series(2001, 2050) g;
INSERT INTO public.tap_audit_grandkids (id, a, k) SELECT g, g, g FROM generate_series(3001, 3050) g;
UPDATE public.tap_audit_noop SET a = a + 1 WHERE id > 2000;
DELETE FROM public.tap_audit_noop WHERE id > 3040;
TRUNCATE public.tap_audit_parts_us;
SELECT is((SELECT jsonb_object_agg(k, n) FROM (SELECT resource_type || ' ' || table_name || ' ' || action AS k, count(*) AS n
           FROM opsflags.audit_log WHERE id > :child_start GROUP BY 1) x),
          '{"tap_audit_parts public.tap_audit_parts_eu INSERT": 50, "tap_audit_parts public.tap_audit_parts_us INSERT": 50,
            "tap_audit_parts public.tap_audit_parts_eu UPDATE": 5, "tap_audit_parts public.tap_audit_parts_us UPDATE": 5,
            "tap_audit_parts public.tap_audit_parts_us TRUNCATE": 1,
            "tap_audit_noop public.tap_audit_kids INSERT": 50, "tap_audit_noop public.tap_audit_grandkids INSERT": 50,
            "tap_audit_noop public.tap_audit_kids UPDATE": 50, "tap_audit_noop public.tap_audit_grandkids UPDATE": 50,
            "tap_audit_noop public.tap_audit_grandkids DELETE": 10}'::jsonb,
          'partitions and inheritance children (also made later, by a non-admin) are audited: writes through the parent and directly');
SELECT opsflags.unaudit_table('public.tap_audit_noop') AS x \gset
SELECT opsflags.unaudit_table('public.tap_audit_parts') AS x \gset
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'tap_audit_%' AND tgname LIKE 'opsflags_audit%'
             AND tgrelid::regclass::text NOT IN ('tap_audit_items')), 0,
          'unaudit_table removes the triggers of children and partitions too');
DROP TABLE public.tap_audit_parts, public.tap_audit_noop CASCADE;
REVOKE CREATE ON SCHEMA public FROM tap_audit_writer;

-------------------------------------------------------------------------------
-- Append-only
-------------------------------------------------------------------------------
SELECT max(id) AS some_id, count(*) AS log_count FROM opsflags.audit_log \gset
SELECT throws_ok(format('UPDATE opsflags.audit_log SET action = %L WHERE id = %s', 'forged', :some_id),
                 '42501', 'opsflags.audit_log is append-only', 'superuser UPDATE of audit_log: 42501 append-only');
SELECT throws_ok(format('DELETE FROM opsflags.audit_log WHERE id = %s', :some_id),
                 '42501', 'opsflags.audit_log is append-only', 'superuser DELETE from audit_log: 42501 append-only');
SELECT throws_ok('TRUNCATE opsflags.audit_log',
                 '42501', 'opsflags.audit_log is append-only', 'superuser TRUNCATE of audit_log: 42501 append-only');
SET session_replication_role = replica;
SELECT throws_ok(format('UPDATE opsflags.audit_log SET action = %L WHERE id = %s', 'forged', :some_id),
                 '42501', 'opsflags.audit_log is append-only', 'session_replication_role = replica: UPDATE still refused');
SELECT throws_ok(format('DELETE FROM opsflags.audit_log WHERE id = %s', :some_id),
                 '42501', 'opsflags.audit_log is append-only', 'session_replication_role = replica: DELETE still refused');
SELECT throws_ok('TRUNCATE opsflags.audit_log',
                 '42501', 'opsflags.audit_log is append-only', 'session_replication_role = replica: TRUNCATE still refused');
RESET session_replication_role;
SELECT is(ARRAY[(SELECT count(*) FROM opsflags.audit_log WHERE id <= :some_id), (SELECT count(*) FROM opsflags.audit_log WHERE action = 'forged')],
          ARRAY[:log_count, 0]::bigint[], 'audit_log is unchanged');

-------------------------------------------------------------------------------
-- purge_audit_log
-------------------------------------------------------------------------------
-- Run cmd as role; 'ok' or the SQLSTATE and message.  Rolled back.
CREATE FUNCTION pg_temp.as_role(role text, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE cmd;
    RAISE EXCEPTION 'tap: roll back' USING ERRCODE = 'P0001';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN CASE WHEN st = 'P0001' AND msg = 'tap: roll back' THEN 'ok' ELSE st END;
END
$$;
SELECT is(ARRAY[pg_temp.as_role('tap_audit_writer', 'SELECT opsflags.purge_audit_log(now())'),
                pg_temp.as_role('tap_audit_admin', 'SELECT opsflags.purge_audit_log(now())')],
          ARRAY['42501', '42501'], 'purge_audit_log by a non-superuser (also a member of opsflags_admin): 42501');
-- Even with EXECUTE granted (in a transaction rolled back), only a superuser may purge.
BEGIN;
GRANT EXECUTE ON FUNCTION opsflags.purge_audit_log(timestamptz) TO tap_audit_admin;
SELECT pg_temp.as_role('tap_audit_admin', 'SELECT opsflags.purge_audit_log(now())') AS purge_granted \gset
ROLLBACK;
SELECT is(:'purge_granted'::text, '42501', 'purge_audit_log by a non-superuser with EXECUTE granted: 42501');
SELECT is((SELECT count(*) FROM opsflags.audit_log), :log_count::bigint, '... and nothing was purged');

SELECT throws_ok('SELECT opsflags.purge_audit_log(NULL)', '22004', NULL, 'purge_audit_log(NULL): 22004');
-- Cut-off: the time of a row in the middle of this file's rows.
SELECT occurred_at AS cutoff FROM opsflags.audit_log WHERE id > :audit_start AND table_name = 'public.tap_audit_items' AND resource_id = '6' AND action = 'INSERT' \gset
SELECT count(*) AS want_purged FROM opsflags.audit_log WHERE occurred_at < :'cutoff' \gset
CREATE TEMP TABLE kept AS SELECT id FROM opsflags.audit_log WHERE occurred_at >= :'cutoff';
SELECT opsflags.purge_audit_log(:'cutoff') AS purged \gset
SELECT ok(:want_purged > 0 AND (SELECT count(*) FROM kept) > 0, 'purge_audit_log: the cut-off has rows before and after it');
SELECT is(:purged::bigint, :want_purged::bigint, 'purge_audit_log returns the number of rows older than before');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE occurred_at < :'cutoff'), 0, '... none of them is left');
SELECT is((SELECT count(*)::int FROM kept k LEFT JOIN opsflags.audit_log a USING (id) WHERE a.id IS NULL), 0,
          '... every row at or after before is kept');
SELECT is((SELECT jsonb_agg(jsonb_build_array(action, resource_type, (new_values->>'deleted')::bigint, actor, role,
                                              (new_values->>'before')::timestamptz = :'cutoff'::timestamptz))
           FROM opsflags.audit_log WHERE id > (SELECT max(id) FROM kept)),
          jsonb_build_array(jsonb_build_array('PURGE', 'audit_log', :want_purged, session_user, current_user, true)),
          '... and the purge itself is recorded: one PURGE row with the count and the cut-off');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
DROP TABLE public.tap_audit_items, public.tap_audit_pairs;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap_aud.%';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_aud.%';
DROP TABLE expect;
DROP ROLE tap_audit_login;
DROP ROLE tap_audit_writer;
DROP ROLE tap_audit_admin;
RESET application_name;
RESET opsflags.environment;

SELECT * FROM finish();
