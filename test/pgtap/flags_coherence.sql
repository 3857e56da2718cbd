-- test/pgtap/flags_coherence.sql: the per-backend flag cache (and the configuration
-- cache of config_get) is coherent across sessions and transactions, and
-- committed changes are announced with NOTIFY.
--
-- Session A is this psql session; session B is a dblink connection to the
-- same database.  The flags and configuration keys live under tap.coh.* and
-- are committed (B must see them), so the file removes them at the start
-- (leftovers of an interrupted run) and at the end.
--
-- pgTAP keeps its bookkeeping in temporary tables, which a ROLLBACK would
-- undo, so inside a transaction that A rolls back the observations go into
-- psql variables (\gset) and are asserted after the ROLLBACK.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.coh.%';
DELETE FROM opsflags.environments WHERE name = 'tapcoh';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap.coh.%';

SELECT plan(57);

-------------------------------------------------------------------------------
-- Session B and helpers
-------------------------------------------------------------------------------
SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_coherence_b')) AS connected \gset

-- Run a command in B.
CREATE FUNCTION pg_temp.b(command text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', command) $$;

-- Evaluate an expression in B for its side effects (dblink_exec refuses SELECT).
CREATE FUNCTION pg_temp.b_perform(expr text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', 'DO $do$BEGIN PERFORM ' || expr || '; END$do$') $$;

-- Evaluate a flag in B.
CREATE FUNCTION pg_temp.b_enabled(flag_key text, user_id text DEFAULT NULL) RETURNS boolean
LANGUAGE sql AS $$
  SELECT v FROM dblink('b', format('SELECT opsflags.feature_enabled(%L, %L)', flag_key, user_id)) AS t(v boolean)
$$;

SELECT pg_temp.b($$SET opsflags.environment = 'production'$$) AS x \gset

SELECT isnt((SELECT pid FROM dblink('b', 'SELECT pg_backend_pid()') AS t(pid int)), pg_backend_pid(),
            'B is a separate backend');

SELECT count(*) FROM (SELECT opsflags.create_flag(k, k)
                      FROM unnest(ARRAY['tap.coh.a', 'tap.coh.b', 'tap.coh.b2', 'tap.coh.c', 'tap.coh.d',
                                        'tap.coh.e', 'tap.coh.n', 'tap.coh.n2', 'tap.coh.s', 'tap.coh.s2']) k) s \gset

-------------------------------------------------------------------------------
-- (i) B's committed change is seen by A's next statement
-------------------------------------------------------------------------------
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), false, 'i: A evaluates tap.coh.a: off (now cached)');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.a', true)$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), true, 'i: B toggle_flag(on) committed: A''s next statement sees it on');

SELECT pg_temp.b($$UPDATE opsflags.feature_flag_configs c SET enable_at = now() + interval '1 day'
                   FROM opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.coh.a' AND c.environment = 'production'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), false, 'i: B plain UPDATE enable_at in the future: A sees it off');

SELECT pg_temp.b($$UPDATE opsflags.feature_flag_configs c SET enable_at = NULL
                   FROM opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.coh.a' AND c.environment = 'production'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), true, 'i: B plain UPDATE enable_at = NULL: A sees it on');

SELECT pg_temp.b_perform($$opsflags.archive_flag('tap.coh.a')$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), false, 'i: B archive_flag: A sees it off');

SELECT pg_temp.b($$UPDATE opsflags.feature_flags SET archived = false WHERE flag_key = 'tap.coh.a'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), true, 'i: B plain UPDATE archived = false: A sees it on');

SELECT pg_temp.b($$DELETE FROM opsflags.feature_flag_configs c USING opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.coh.a' AND c.environment = 'production'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.a', 'u1'), false, 'i: B deletes the production config: A sees it off');

SELECT pg_temp.b($$INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, enabled_percentage)
                   SELECT id, 'production', true, 30 FROM opsflags.feature_flags WHERE flag_key = 'tap.coh.a'$$) AS x \gset
SELECT is((SELECT count(*)::int FROM generate_series(1, 300) g
           WHERE opsflags.feature_enabled('tap.coh.a', 'coh-user-' || g)
                 IS DISTINCT FROM (opsflags.rollout_bucket('tap.coh.a', 'coh-user-' || g) <= 30)), 0,
          'i: B inserts a config at 30%: A evaluates 300 users by that rollout');

SELECT pg_temp.b_perform($$opsflags.update_flag('tap.coh.a', '{"rollout_group": "tap.coh.group"}')$$) AS x \gset
SELECT is((SELECT count(*)::int FROM generate_series(1, 300) g
           WHERE opsflags.feature_enabled('tap.coh.a', 'coh-user-' || g)
                 IS DISTINCT FROM (opsflags.rollout_bucket('tap.coh.group', 'coh-user-' || g) <= 30)), 0,
          'i: B sets a rollout_group: A buckets 300 users by the new group');

SELECT pg_temp.b_perform($$opsflags.update_flag('tap.coh.a', '{"enabled_percentage": 0, "enabled_for_users": ["u2"], "is_enabled": true}')$$) AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.feature_flag_configs c SET enabled_percentage = 100
                   FROM opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.coh.a' AND c.environment = 'production'$$) AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.feature_flag_configs c SET enabled_percentage = 1, enabled_for_users = '["u1"]'
                   FROM opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.coh.a' AND c.environment = 'production'$$) AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.coh.a', 'u1'), opsflags.feature_enabled('tap.coh.a', 'u2'),
                opsflags.feature_enabled('tap.coh.a')],
          ARRAY[true, opsflags.rollout_bucket('tap.coh.group', 'u2') <= 1, false],
          'i: three commits by B in a row: A sees the last state');

-------------------------------------------------------------------------------
-- (ii) inside A's open transaction, B's commit is seen by A's next statement
-------------------------------------------------------------------------------
BEGIN;
SELECT is(opsflags.feature_enabled('tap.coh.b'), false, 'ii: A in a transaction: tap.coh.b off');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.b', true)$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.b'), true, 'ii: B commits on: A''s next statement, same transaction, sees on');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.b', false)$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.b'), false, 'ii: B commits off: A sees off');
COMMIT;

-- Again while A's transaction holds its own uncommitted change to the flag tables.
BEGIN;
SELECT opsflags.toggle_flag('tap.coh.b2', true) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.b2'), true, 'ii: A''s own uncommitted toggle of tap.coh.b2 is seen by A');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.b', true)$$) AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.coh.b'), opsflags.feature_enabled('tap.coh.b2')], ARRAY[true, true],
          'ii: with its own change pending, A sees B''s commit (and still its own change)');
SELECT is(pg_temp.b_enabled('tap.coh.b2'), false, 'ii: B does not see A''s uncommitted change');
COMMIT;
SELECT is(pg_temp.b_enabled('tap.coh.b2'), true, 'ii: after A''s COMMIT, B sees A''s change');

-- One statement keeps one answer per flag even when B's commit reaches A in
-- its middle: PostgreSQL takes it in when A's statement first locks the flag
-- tables, here to load tap.coh.s2, which is not cached.
SELECT opsflags.feature_enabled('tap.coh.s') AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.coh.s'),
                pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.s', true)$$) IS NOT NULL,
                opsflags.feature_enabled('tap.coh.s2'),
                opsflags.feature_enabled('tap.coh.s')],
          ARRAY[false, true, false, false],
          'ii: B commits on in the middle of A''s statement: A keeps the answer off for the rest of it');
SELECT is(opsflags.feature_enabled('tap.coh.s'), true, 'ii: A''s next statement sees it on');

-- The same for config_get: B's config_set reaches A when A's statement first
-- locks app_config, here to load tap.coh.cfg2, which is not cached.
SELECT opsflags.config_set('tap.coh.cfg', '"old"') AS x \gset
SELECT opsflags.config_set('tap.coh.cfg2', '"other"') AS x \gset
SELECT opsflags.config_get('tap.coh.cfg') AS x \gset
SELECT is(ARRAY[opsflags.config_get('tap.coh.cfg'),
                to_jsonb(pg_temp.b_perform($$opsflags.config_set('tap.coh.cfg', '"new"')$$) IS NOT NULL),
                opsflags.config_get('tap.coh.cfg2'),
                opsflags.config_get('tap.coh.cfg')],
          ARRAY['"old"', 'true', '"other"', '"old"']::jsonb[],
          'ii: B''s config_set commits in the middle of A''s statement: config_get keeps the old value for the rest of it');
SELECT is(opsflags.config_get('tap.coh.cfg'), '"new"'::jsonb, 'ii: A''s next statement gets B''s new value');
-- Each cache keeps its own account of statements: a flag lookup first in
-- A's statement does not make config_get miss B's commit.
SELECT pg_temp.b_perform($$opsflags.config_set('tap.coh.cfg', '"newer"')$$) AS x \gset
SELECT is(ARRAY[to_jsonb(opsflags.feature_enabled('tap.coh.s')), opsflags.config_get('tap.coh.cfg')],
          ARRAY['true', '"newer"']::jsonb[],
          'ii: B commits again: A''s next statement, a flag evaluated first, gets the newer value');

-- A's own change rolled back with a subtransaction in the middle of a
-- statement (a PL/pgSQL exception block) is gone at once, for the rest of
-- the statement: the cache read it inside the subtransaction.
CREATE FUNCTION pg_temp.read_in_rolled_back_subxact(change text, read text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    got text;
BEGIN
    BEGIN
        EXECUTE 'SELECT ' || change;
        EXECUTE 'SELECT (' || read || ')::text' INTO got;
        RAISE EXCEPTION 'tap: roll back' USING ERRCODE = 'P0001';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN got;
END
$$;
SELECT is(ARRAY[opsflags.config_get('tap.coh.cfg')::text,
                pg_temp.read_in_rolled_back_subxact($$opsflags.config_set('tap.coh.cfg', '"rolled back"')$$,
                                                    $$opsflags.config_get('tap.coh.cfg')$$),
                opsflags.config_get('tap.coh.cfg')::text],
          ARRAY['"newer"', '"rolled back"', '"newer"'],
          'ii: A''s config_set rolled back with a subtransaction mid-statement: config_get is back to the old value at once');
SELECT is(ARRAY[opsflags.feature_enabled('tap.coh.s')::text,
                pg_temp.read_in_rolled_back_subxact($$opsflags.toggle_flag('tap.coh.s', false)$$,
                                                    $$opsflags.feature_enabled('tap.coh.s')$$),
                opsflags.feature_enabled('tap.coh.s')::text],
          ARRAY['true', 'false', 'true'],
          'ii: A''s toggle_flag rolled back with a subtransaction mid-statement: feature_enabled is back to the old answer at once');

-------------------------------------------------------------------------------
-- (iii) a change B rolls back is never seen by A
-------------------------------------------------------------------------------
SELECT is(opsflags.feature_enabled('tap.coh.c'), false, 'iii: A sees tap.coh.c off (now cached)');
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.c', true)$$) AS x \gset
SELECT is(pg_temp.b_enabled('tap.coh.c'), true, 'iii: B sees its own uncommitted change');
SELECT is(opsflags.feature_enabled('tap.coh.c'), false, 'iii: A does not see B''s uncommitted change');
SELECT is(opsflags.feature_enabled('tap.coh.c'), false, 'iii: nor in A''s next statement');
SELECT pg_temp.b('ROLLBACK') AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.c'), false, 'iii: after B''s ROLLBACK, A still sees it off');
SELECT is(pg_temp.b_enabled('tap.coh.c'), false, 'iii: after its ROLLBACK, B sees it off');

-- Same with A's cache cold while B's transaction is open (B's committed no-op
-- UPDATE invalidates it), so A loads the flag from the tables mid-transaction.
SELECT pg_temp.b($$UPDATE opsflags.feature_flags SET rollout_group = NULL WHERE flag_key = 'tap.coh.c'$$) AS x \gset
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b($$DELETE FROM opsflags.feature_flags WHERE flag_key = 'tap.coh.b'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.b'), true, 'iii: B deleted tap.coh.b uncommitted: A still sees it on');
SELECT pg_temp.b('ROLLBACK') AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.b'), true, 'iii: after B''s ROLLBACK of the DELETE, A sees it on');

-------------------------------------------------------------------------------
-- (iv) A's uncommitted change: seen by A's next statement, not by B; after
-- A's ROLLBACK, A sees the old value again
-------------------------------------------------------------------------------
SELECT is(opsflags.feature_enabled('tap.coh.d'), false, 'iv: A sees tap.coh.d off (now cached)');
BEGIN;
SELECT opsflags.toggle_flag('tap.coh.d', true) AS x \gset
SELECT opsflags.feature_enabled('tap.coh.d') AS iv_a_own \gset
SELECT pg_temp.b_enabled('tap.coh.d') AS iv_b \gset
SAVEPOINT s1;
UPDATE opsflags.feature_flags SET archived = true WHERE flag_key = 'tap.coh.d';
SELECT opsflags.feature_enabled('tap.coh.d') AS iv_a_archived \gset
ROLLBACK TO SAVEPOINT s1;
SELECT opsflags.feature_enabled('tap.coh.d') AS iv_a_after_savepoint \gset
ROLLBACK;
SELECT is(:'iv_a_own'::boolean, true, 'iv: A''s uncommitted toggle is seen by A''s next statement');
SELECT is(:'iv_b'::boolean, false, 'iv: A''s uncommitted toggle is not seen by B');
SELECT is(:'iv_a_archived'::boolean, false, 'iv: A archives it in a savepoint: A sees it off');
SELECT is(:'iv_a_after_savepoint'::boolean, true, 'iv: after ROLLBACK TO SAVEPOINT, A sees it on again');
SELECT is(opsflags.feature_enabled('tap.coh.d'), false, 'iv: after A''s ROLLBACK, A sees the old value (off)');
SELECT is(pg_temp.b_enabled('tap.coh.d'), false, 'iv: after A''s ROLLBACK, B sees off');

-- Plain DML by A, rolled back.
BEGIN;
DELETE FROM opsflags.feature_flags WHERE flag_key = 'tap.coh.b';
SELECT opsflags.feature_enabled('tap.coh.b') AS iv_deleted \gset
ROLLBACK;
SELECT is(:'iv_deleted'::boolean, false, 'iv: A deletes tap.coh.b uncommitted: A sees it off');
SELECT is(opsflags.feature_enabled('tap.coh.b'), true, 'iv: after A''s ROLLBACK of the DELETE, A sees it on');

-------------------------------------------------------------------------------
-- (v) opsflags.environment selects the config that is evaluated
-------------------------------------------------------------------------------
SELECT opsflags.toggle_flag('tap.coh.e', true, 'staging') AS x \gset
SELECT opsflags.update_flag('tap.coh.e', '{"is_enabled": true, "enabled_for_users": ["dev-only"], "enabled_percentage": 1}', 'development') AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.e'), false, 'v: production: off');
SET opsflags.environment = 'staging';
SELECT is(opsflags.feature_enabled('tap.coh.e'), true, 'v: SET opsflags.environment = staging: on');
SELECT is(pg_temp.b_enabled('tap.coh.e'), false, 'v: B, still in production, sees it off');
SET opsflags.environment = 'development';
SELECT is(ARRAY[opsflags.feature_enabled('tap.coh.e', 'dev-only'), opsflags.feature_enabled('tap.coh.e')],
          ARRAY[true, false], 'v: development: its own targeting (listed user on, no user off)');
RESET opsflags.environment;
SELECT is(opsflags.feature_enabled('tap.coh.e'), false, 'v: RESET: production again, off');

BEGIN;
SET LOCAL opsflags.environment = 'staging';
SELECT opsflags.feature_enabled('tap.coh.e') AS v_local \gset
ROLLBACK;
SELECT is(:'v_local'::boolean, true, 'v: SET LOCAL staging inside a transaction: on');
SELECT is(opsflags.feature_enabled('tap.coh.e'), false, 'v: after the transaction ends the setting reverts: off');

BEGIN;
SET opsflags.environment = 'staging';
SELECT opsflags.feature_enabled('tap.coh.e') AS v_set \gset
ROLLBACK;
SELECT is(:'v_set'::boolean, true, 'v: SET staging in a transaction: on');
SELECT is(opsflags.feature_enabled('tap.coh.e'), false, 'v: after ROLLBACK the SET is undone: off');

-- An environment where the flag has no config.
INSERT INTO opsflags.environments (name, description) VALUES ('tapcoh', 'coherence test');
SET opsflags.environment = 'tapcoh';
SELECT is(opsflags.feature_enabled('tap.coh.e'), false, 'v: a new environment without a config for the flag: off');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.coh.e', true, 'tapcoh')$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.coh.e'), true, 'v: B creates and enables its config there: A sees it on');
SET opsflags.environment = 'production';

-------------------------------------------------------------------------------
-- (vi) NOTIFY opsflags: a committed toggle is announced once, a rolled-back
-- change never
-------------------------------------------------------------------------------
CREATE TEMP TABLE notes (n serial, notify_name text, be_pid int, payload text);

-- Collect what B has received, waiting (up to 10 s) for at least `want`.
CREATE FUNCTION pg_temp.collect_notes(want int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    tries int := 0;
BEGIN
    TRUNCATE notes;
    LOOP
        PERFORM * FROM dblink('b', 'SELECT 1') AS t(x int);
        INSERT INTO notes (notify_name, be_pid, payload)
        SELECT notify_name, be_pid, extra FROM dblink_get_notify('b');
        EXIT WHEN (SELECT count(*) FROM notes) >= want OR tries >= 200;
        tries := tries + 1;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN (SELECT count(*) FROM notes);
END
$$;

SELECT pg_temp.b('LISTEN opsflags') AS x \gset
SELECT pg_temp.collect_notes(0) AS x \gset

SELECT (opsflags.get_flag('tap.coh.n')->'config'->>'version')::int AS n_version_before \gset
SELECT opsflags.toggle_flag('tap.coh.n', true) AS x \gset
SELECT (opsflags.get_flag('tap.coh.n')->'config'->>'version')::int AS n_version \gset
SELECT pg_temp.collect_notes(1) AS x \gset
-- whatever else might still arrive for it
SELECT pg_sleep(0.2) AS x \gset
INSERT INTO notes (notify_name, be_pid, payload) SELECT notify_name, be_pid, extra FROM dblink_get_notify('b');

SELECT is(:n_version, :n_version_before + 1, 'vi: the toggle bumped the config version by one');
SELECT is((SELECT jsonb_agg(payload::jsonb ORDER BY n) FROM notes),
          jsonb_build_array(jsonb_build_object('event', 'flag.toggled', 'key', 'tap.coh.n',
                                               'environment', 'production', 'version', :n_version)),
          'vi: B received exactly one notification: flag.toggled, key, environment, version');
SELECT is((SELECT array_agg(DISTINCT notify_name || ' ' || (be_pid = pg_backend_pid())) FROM notes),
          ARRAY['opsflags true'], 'vi: on channel opsflags, from A''s backend');

-- A rolled-back change sends nothing.  Then a committed one on another flag:
-- notifications arrive in commit order, so once it is there, anything from
-- the rolled-back transaction would have arrived before it.
BEGIN;
SELECT opsflags.toggle_flag('tap.coh.n', false) AS x \gset
UPDATE opsflags.feature_flags SET description = 'rolled back' WHERE flag_key = 'tap.coh.n';
ROLLBACK;
SELECT opsflags.toggle_flag('tap.coh.n2', true, 'staging') AS x \gset
SELECT (opsflags.get_flag('tap.coh.n2', 'staging')->'config'->>'version')::int AS n2_version \gset
SELECT pg_temp.collect_notes(1) AS x \gset
SELECT pg_sleep(0.2) AS x \gset
INSERT INTO notes (notify_name, be_pid, payload) SELECT notify_name, be_pid, extra FROM dblink_get_notify('b');
SELECT is((SELECT jsonb_agg(payload::jsonb ORDER BY n) FROM notes),
          jsonb_build_array(jsonb_build_object('event', 'flag.toggled', 'key', 'tap.coh.n2',
                                               'environment', 'staging', 'version', :n2_version)),
          'vi: a rolled-back change sends nothing (only the later committed toggle arrives)');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('b') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.coh.%';
DELETE FROM opsflags.environments WHERE name = 'tapcoh';
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap.coh.%';
RESET opsflags.environment;

SELECT * FROM finish();
