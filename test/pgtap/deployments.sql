-- test/pgtap/deployments.sql: record_deployment(), record_rollback(),
-- get_deployment_history(), get_latest_deployment().
--
-- Generated cases come from md5 of a tag, the case number and a seed, so a
-- failure reproduces exactly.  Deployments go to environments tapdep-* made
-- here (committed: NOTIFY is delivered at commit), which the file removes at
-- the start (leftovers of an interrupted run) and at the end; audit_log rows
-- stay (append-only).  Session "l" (dblink) LISTENs on channel opsflags;
-- session "w" runs refused calls as top-level statements.  Inside a
-- transaction that is rolled back, observations go into psql variables
-- (pgTAP's bookkeeping would be rolled back too) and are asserted after it.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.deployment_history WHERE environment LIKE 'tapdep%';
DELETE FROM opsflags.app_config WHERE environment LIKE 'tapdep%';
DELETE FROM opsflags.environments WHERE name LIKE 'tapdep%';
INSERT INTO opsflags.environments (name, description) VALUES
    ('tapdep-a', 'test/pgtap/deployments.sql'), ('tapdep-b', 'test/pgtap/deployments.sql'),
    ('tapdep-c', 'test/pgtap/deployments.sql'), ('tapdep-empty', 'test/pgtap/deployments.sql: no deployment');

SELECT plan(76);

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.rnd(tag text, i bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT AS $$
  -- the seed: change 'opsflags-deployments-1' to draw other cases
  SELECT ('x' || substr(md5(tag || '/' || i || '/opsflags-deployments-1'), 1, 8))::bit(32)::bigint
         / 4294967296.0::double precision
$$;
CREATE FUNCTION pg_temp.irnd(tag text, i bigint, lo int, hi int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT lo + floor(pg_temp.rnd(tag, i) * (hi - lo + 1))::int $$;
CREATE FUNCTION pg_temp.pick(tag text, i bigint, choices text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT choices[pg_temp.irnd(tag, i, 1, cardinality(choices))] $$;

-- A version string: semver-ish, sometimes with a suffix that needs escaping.
CREATE FUNCTION pg_temp.rversion(tag text, i bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT format('%s.%s.%s', pg_temp.irnd(tag || '.maj', i, 0, 30), pg_temp.irnd(tag || '.min', i, 0, 99),
                pg_temp.irnd(tag || '.pat', i, 0, 999))
         || pg_temp.pick(tag || '.suffix', i, ARRAY['', '', '', '-rc.' || i, '+build.' || substr(md5(tag || i), 1, 6),
                                                   ' "quoted"', '-ünïcødé-中', E'\\back\\slash', '''single''', ' with spaces '])
$$;

-- The configuration value stored for a key in exactly that environment.
CREATE FUNCTION pg_temp.cfg(key text, env text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT config_value FROM opsflags.app_config c WHERE c.config_key = cfg.key AND c.environment = cfg.env
$$;

-- Everything the deployment API can write.
CREATE FUNCTION pg_temp.state() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT concat_ws(' ',
    (SELECT count(*) FROM opsflags.deployment_history), (SELECT count(*) FROM opsflags.audit_log),
    (SELECT count(*) FROM opsflags.app_config),
    md5((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM opsflags.deployment_history t)),
    md5((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM opsflags.app_config t)))
$$;

-- Sessions l (listens) and w (runs refused calls at top level).
SELECT dblink_connect('l', pg_temp.tap_conninfo(app => 'tap_deployments_l')) AS x \gset
SELECT dblink_connect('w', pg_temp.tap_conninfo(app => 'tap_deployments_w')) AS x \gset
SELECT dblink_exec('l', 'LISTEN opsflags') AS x \gset

-- Notifications received by l (deployment events only), kept across calls.
CREATE TEMP TABLE notes (n serial PRIMARY KEY, payload jsonb);
CREATE FUNCTION pg_temp.collect(event text, want int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    tries int := 0;
BEGIN
    LOOP
        PERFORM * FROM dblink('l', 'SELECT 1') AS t(x int);
        INSERT INTO notes (payload)
        SELECT extra::jsonb FROM dblink_get_notify('l')
        WHERE notify_name = 'opsflags' AND extra::jsonb ->> 'event' LIKE 'deployment.%';
        EXIT WHEN (SELECT count(*) FROM notes WHERE payload ->> 'event' = event) >= want OR tries >= 200;
        tries := tries + 1;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN (SELECT count(*) FROM notes WHERE payload ->> 'event' = event);
END
$$;

-------------------------------------------------------------------------------
-- The cases: case 0 is the first deployment to tapdep-a, 1..120 generated
-------------------------------------------------------------------------------
CREATE TEMP TABLE cases (
    i int PRIMARY KEY, env text, version text, changelog text, deployed_by text, notes text, sha text,
    rollback boolean, target text, reason text,
    id uuid, deployed_txid bigint, rollback_txid bigint);
INSERT INTO cases (i, env, version, changelog, deployed_by, notes, sha, rollback, target, reason)
SELECT i,
       CASE WHEN i = 0 THEN 'tapdep-a' ELSE pg_temp.pick('env', i, ARRAY['tapdep-a', 'tapdep-b', 'tapdep-c']) END,
       CASE WHEN i = 0 THEN '1.0.0' ELSE pg_temp.rversion('version', i) END,
       CASE WHEN pg_temp.rnd('changelog', i) < 0.3 THEN NULL ELSE 'changes of case ' || i || ': ' || md5('cl' || i) END,
       CASE WHEN pg_temp.rnd('by', i) < 0.3 THEN NULL ELSE pg_temp.pick('by.who', i, ARRAY['ci', 'alice', 'bob', 'deploy-bot']) END,
       CASE WHEN pg_temp.rnd('notes', i) < 0.6 THEN NULL ELSE 'migration ' || i END,
       CASE WHEN i = 0 THEN 'aaa1111' WHEN pg_temp.rnd('sha', i) < 0.4 THEN NULL
            ELSE substr(md5('sha' || i) || md5('sha2' || i), 1, pg_temp.irnd('sha.len', i, 7, 40)) END,
       i > 0 AND pg_temp.rnd('rollback', i) < 0.35,
       pg_temp.rversion('target', i),
       CASE WHEN pg_temp.rnd('reason', i) < 0.25 THEN NULL ELSE 'reason ' || i || ': error rate up' END
FROM generate_series(0, 120) i;
-- Most rollbacks go back to a version deployed before in the same
-- environment (whose commit must come back); the others to one never
-- deployed there (no commit).
UPDATE cases c SET target = (SELECT p.version FROM cases p WHERE p.env = c.env AND p.i < c.i
                             ORDER BY md5('target.pick' || c.i || '/' || p.i) LIMIT 1)
WHERE c.rollback AND pg_temp.rnd('target.earlier', c.i) < 0.7
  AND EXISTS (SELECT 1 FROM cases p WHERE p.env = c.env AND p.i < c.i);

-- Record cases lo..hi in order, checking each right after the call; what
-- went wrong, or ''.
CREATE FUNCTION pg_temp.deploy(lo int, hi int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c   cases;
    d   opsflags.deployment_history;
    new uuid;
    t0  timestamptz;
    bad text[] := '{}';
BEGIN
    FOR c IN SELECT * FROM cases WHERE i BETWEEN lo AND hi ORDER BY i LOOP
        t0 := clock_timestamp();
        IF c.deployed_by IS NULL THEN
            new := opsflags.record_deployment(c.version, c.env, changelog => c.changelog,
                                              migration_notes => c.notes, commit_sha => c.sha);
        ELSE
            new := opsflags.record_deployment(c.version, c.env, c.changelog, c.deployed_by, c.notes, c.sha);
        END IF;
        UPDATE cases SET id = new, deployed_txid = txid_current() WHERE i = c.i;
        IF new IS NULL THEN
            bad := bad || format('case %s: no id returned', c.i);
            CONTINUE;
        END IF;
        SELECT * INTO d FROM opsflags.deployment_history h WHERE h.id = new;
        IF NOT FOUND THEN
            bad := bad || format('case %s: no row with the id returned', c.i);
            CONTINUE;
        END IF;
        IF (d.version, d.environment, d.changelog, d.deployed_by, d.migration_notes, d.commit_sha, d.status)
           IS DISTINCT FROM (c.version, c.env, c.changelog, coalesce(c.deployed_by, session_user), c.notes, c.sha, 'success') THEN
            bad := bad || format('case %s: row %s', c.i, row_to_json(d));
        END IF;
        IF (d.rollback_to, d.rollback_at, d.rollback_reason) IS DISTINCT FROM (NULL::text, NULL::timestamptz, NULL::text) THEN
            bad := bad || format('case %s: rollback fields set on a new deployment', c.i);
        END IF;
        IF d.deployed_at NOT BETWEEN t0 - interval '1 second' AND clock_timestamp() + interval '1 second' THEN
            bad := bad || format('case %s: deployed_at %s is not now', c.i, d.deployed_at);
        END IF;
        IF pg_temp.cfg('app_version', c.env) IS DISTINCT FROM to_jsonb(c.version)
           OR opsflags.config_get('app_version', c.env) IS DISTINCT FROM to_jsonb(c.version) THEN
            bad := bad || format('case %s: app_version of %s is %s', c.i, c.env, pg_temp.cfg('app_version', c.env));
        END IF;
        IF c.sha IS NOT NULL AND pg_temp.cfg('commit_sha', c.env) IS DISTINCT FROM to_jsonb(c.sha) THEN
            bad := bad || format('case %s: commit_sha of %s is %s', c.i, c.env, pg_temp.cfg('commit_sha', c.env));
        END IF;
        IF (SELECT l.id FROM opsflags.get_latest_deployment(c.env) l) IS DISTINCT FROM new THEN
            bad := bad || format('case %s: get_latest_deployment is not the one just recorded', c.i);
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;

-- Roll back the cases chosen for it, checking each right after the call.
CREATE FUNCTION pg_temp.roll_back() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c   cases;
    d   opsflags.deployment_history;
    old opsflags.deployment_history;
    t0  timestamptz;
    bad text[] := '{}';
BEGIN
    FOR c IN SELECT * FROM cases WHERE rollback ORDER BY i LOOP
        SELECT * INTO old FROM opsflags.deployment_history h WHERE h.id = c.id;
        t0 := clock_timestamp();
        PERFORM opsflags.record_rollback(c.id, c.target, c.reason);
        UPDATE cases SET rollback_txid = txid_current() WHERE i = c.i;
        SELECT * INTO d FROM opsflags.deployment_history h WHERE h.id = c.id;
        IF (d.status, d.rollback_to, d.rollback_reason) IS DISTINCT FROM ('rolled_back', c.target, c.reason) THEN
            bad := bad || format('case %s: after rollback %s', c.i, row_to_json(d));
        END IF;
        IF d.rollback_at IS NULL OR d.rollback_at NOT BETWEEN least(now(), t0) - interval '1 second'
                                                         AND clock_timestamp() + interval '1 second' THEN
            bad := bad || format('case %s: rollback_at %s is not now', c.i, d.rollback_at);
        END IF;
        IF (d.id, d.version, d.environment, d.deployed_at, d.deployed_by, d.changelog, d.migration_notes, d.commit_sha)
           IS DISTINCT FROM (old.id, old.version, old.environment, old.deployed_at, old.deployed_by, old.changelog,
                             old.migration_notes, old.commit_sha) THEN
            bad := bad || format('case %s: rollback changed the deployment itself', c.i);
        END IF;
        IF pg_temp.cfg('app_version', c.env) IS DISTINCT FROM to_jsonb(c.target)
           OR opsflags.config_get('app_version', c.env) IS DISTINCT FROM to_jsonb(c.target) THEN
            bad := bad || format('case %s: app_version of %s is %s, not the target', c.i, c.env,
                                 pg_temp.cfg('app_version', c.env));
        END IF;
        -- reference: the commit of the newest other case that deployed the
        -- target version to this environment, else JSON null
        IF pg_temp.cfg('commit_sha', c.env) IS DISTINCT FROM
           coalesce((SELECT to_jsonb(p.sha) FROM cases p WHERE p.env = c.env AND p.version = c.target AND p.i <> c.i
                     ORDER BY p.i DESC LIMIT 1), 'null'::jsonb) THEN
            bad := bad || format('case %s: commit_sha of %s is %s after the rollback to %s', c.i, c.env,
                                 pg_temp.cfg('commit_sha', c.env), c.target);
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;

-------------------------------------------------------------------------------
-- a. Same transaction: app_version and commit_sha with the deployment, and a
--    ROLLBACK removes all of it
-------------------------------------------------------------------------------
SELECT is(pg_temp.deploy(0, 0), '', 'case 0: 1.0.0 recorded to tapdep-a with commit aaa1111');
SELECT pg_temp.state() AS state_a \gset
SELECT count(*) AS audit_a FROM opsflags.audit_log \gset

BEGIN;
SELECT opsflags.record_deployment('1.1.0-tx', 'tapdep-a', 'in a transaction', 'tap', NULL, 'bbb2222') AS tx_id \gset
SELECT EXISTS (SELECT 1 FROM opsflags.deployment_history WHERE id = :'tx_id' AND version = '1.1.0-tx') AS tx_row,
       pg_temp.cfg('app_version', 'tapdep-a') AS tx_version, pg_temp.cfg('commit_sha', 'tapdep-a') AS tx_sha,
       opsflags.config_get('app_version', 'tapdep-a') AS tx_get_version,
       (SELECT count(*) FROM opsflags.audit_log) - :audit_a AS tx_audit \gset
ROLLBACK;

SELECT function_returns('opsflags', 'record_deployment', ARRAY['text', 'text', 'text', 'text', 'text', 'text', 'text'], 'uuid',
                        'record_deployment returns a uuid');
SELECT ok(:'tx_row'::boolean, 'in the open transaction: the deployment row exists');
SELECT is(:'tx_version'::jsonb, '"1.1.0-tx"'::jsonb, 'in the open transaction: app_version of tapdep-a is the new version');
SELECT is(:'tx_get_version'::jsonb, '"1.1.0-tx"'::jsonb, 'in the open transaction: config_get(app_version) sees it');
SELECT is(:'tx_sha'::jsonb, '"bbb2222"'::jsonb, 'in the open transaction: commit_sha of tapdep-a is the new commit');
SELECT is(:tx_audit::int, 3, 'in the open transaction: the deployment and both config changes are audited (3 audit_log rows)');
SELECT ok(NOT EXISTS (SELECT 1 FROM opsflags.deployment_history WHERE id = :'tx_id'), 'after ROLLBACK: no deployment row');
SELECT is(ARRAY[pg_temp.cfg('app_version', 'tapdep-a'), pg_temp.cfg('commit_sha', 'tapdep-a')],
          ARRAY['"1.0.0"'::jsonb, '"aaa1111"'::jsonb], 'after ROLLBACK: app_version and commit_sha are the previous ones');
SELECT is(pg_temp.state(), :'state_a', 'after ROLLBACK: deployment_history, audit_log and app_config as before');

-------------------------------------------------------------------------------
-- b. Property 9: 120 generated deployments
-------------------------------------------------------------------------------
SELECT is(pg_temp.deploy(1, 120), '',
          'P9: 120 deployments: each returns the id of a row holding what was given, sets app_version (and commit_sha when given) for its environment, and is the latest');
SELECT is((SELECT count(*)::int FROM cases WHERE id IS NOT NULL), 121, 'P9: 121 ids recorded');
SELECT is((SELECT count(DISTINCT id)::int FROM cases), 121, 'P9: 121 distinct ids');
SELECT ok((SELECT count(DISTINCT env) = 3 AND count(*) FILTER (WHERE sha IS NULL) > 10
                  AND count(*) FILTER (WHERE deployed_by IS NULL) > 10 AND count(*) FILTER (WHERE rollback) > 20
           FROM cases WHERE i > 0), 'P9: the cases cover three environments, missing commits, default deployers, rollbacks');

-- History: newest first, per environment and for all.
SELECT is((SELECT count(*)::int FROM (VALUES ('tapdep-a'), ('tapdep-b'), ('tapdep-c')) e(env)
           WHERE ARRAY(SELECT id FROM opsflags.get_deployment_history(env))
                 IS DISTINCT FROM ARRAY(SELECT id FROM cases c WHERE c.env = e.env ORDER BY i DESC)), 0,
          'P9: get_deployment_history(env) is exactly that environment''s deployments, newest first');
SELECT is(ARRAY(SELECT id FROM opsflags.get_deployment_history(NULL) h WHERE h.environment LIKE 'tapdep%'),
          ARRAY(SELECT id FROM cases ORDER BY i DESC),
          'P9: get_deployment_history(NULL) has every environment''s deployments, newest first');
SELECT is((SELECT count(*)::int FROM (SELECT h.deployed_at, lag(h.deployed_at) OVER (ORDER BY h.ordinality) AS prev
                                     FROM ROWS FROM (opsflags.get_deployment_history()) WITH ORDINALITY AS h) s
           WHERE deployed_at > prev), 0,
          'P9: get_deployment_history() (default NULL) is ordered newest first across all environments');
SELECT is((SELECT count(*)::int FROM (VALUES ('tapdep-a'), ('tapdep-b'), ('tapdep-c')) e(env)
           WHERE (SELECT l.id FROM opsflags.get_latest_deployment(env) l)
                 IS DISTINCT FROM (SELECT id FROM cases c WHERE c.env = e.env ORDER BY i DESC LIMIT 1)), 0,
          'P9: get_latest_deployment(env) is the newest of the environment');
SELECT is((SELECT count(*)::int FROM opsflags.get_latest_deployment('tapdep-empty')), 0,
          'get_latest_deployment of an environment without deployments: no row (not a row of NULLs)');
SELECT is((SELECT count(*)::int FROM opsflags.get_deployment_history('tapdep-empty')), 0,
          'get_deployment_history of an environment without deployments: no row');

-- Audit: one INSERT row per deployment, with its values.
SELECT is((SELECT count(*)::int FROM cases c
           WHERE (SELECT count(*) FROM opsflags.audit_log a
                  WHERE a.resource_type = 'deployment' AND a.action = 'INSERT' AND a.resource_id = c.id::text
                        AND a.new_values ->> 'version' = c.version AND a.new_values ->> 'environment' = c.env
                        AND a.txid = c.deployed_txid) <> 1), 0,
          'P9: every deployment has exactly one audit_log INSERT row (resource_type deployment, its id and values)');
SELECT is((SELECT count(*)::int FROM cases c
           WHERE NOT EXISTS (SELECT 1 FROM opsflags.audit_log a
                             WHERE a.resource_type = 'config' AND a.resource_id = 'app_version'
                                   AND a.new_values ->> 'environment' = c.env
                                   AND a.new_values -> 'config_value' = to_jsonb(c.version)
                                   AND a.txid = c.deployed_txid)), 0,
          'P9: every deployment''s app_version change is audited in its transaction');

-- NOTIFY: one deployment.recorded per deployment, after commit.
SELECT is(pg_temp.collect('deployment.recorded', 121), 121, 'NOTIFY: 121 deployment.recorded received by session l');
SELECT is((SELECT count(*)::int FROM cases c
           WHERE (SELECT count(*) FROM notes n
                  WHERE n.payload ->> 'event' = 'deployment.recorded' AND n.payload ->> 'id' = c.id::text
                        AND n.payload ->> 'key' = c.version AND n.payload ->> 'environment' = c.env) <> 1), 0,
          'NOTIFY: each deployment announced once, with its id, version (key) and environment');
SELECT is((SELECT count(*)::int FROM notes WHERE payload ->> 'id' = :'tx_id'), 0,
          'NOTIFY: nothing for the deployment that was rolled back with its transaction');

-------------------------------------------------------------------------------
-- c. Rollbacks
-------------------------------------------------------------------------------
-- In a transaction that is rolled back: nothing stays.
SELECT id AS rb_tx_id, env AS rb_tx_env FROM cases WHERE NOT rollback AND i > 0 ORDER BY i LIMIT 1 \gset
SELECT pg_temp.cfg('app_version', :'rb_tx_env') AS rb_tx_version_before \gset
SELECT pg_temp.state() AS state_c \gset
BEGIN;
SELECT opsflags.record_rollback(:'rb_tx_id', '0.0.1-tx', 'in a transaction') AS x \gset
SELECT status AS rb_tx_status, rollback_to AS rb_tx_to FROM opsflags.deployment_history WHERE id = :'rb_tx_id' \gset
SELECT pg_temp.cfg('app_version', :'rb_tx_env') AS rb_tx_version \gset
ROLLBACK;
SELECT is(ARRAY[:'rb_tx_status', :'rb_tx_to'], ARRAY['rolled_back', '0.0.1-tx'],
          'record_rollback in an open transaction: status rolled_back, rollback_to the target');
SELECT is(:'rb_tx_version'::jsonb, '"0.0.1-tx"'::jsonb, 'record_rollback in an open transaction: app_version is the target');
SELECT is(pg_temp.state(), :'state_c', 'after ROLLBACK: the rollback left nothing');
SELECT is((SELECT status FROM opsflags.deployment_history WHERE id = :'rb_tx_id'), 'success', 'after ROLLBACK: still success');

SELECT ok((SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM cases p WHERE p.env = c.env AND p.version = c.target AND p.i < c.i AND p.sha IS NOT NULL)) > 10
                  AND count(*) FILTER (WHERE EXISTS (SELECT 1 FROM cases p WHERE p.env = c.env AND p.version = c.target AND p.i < c.i AND p.sha IS NULL)) > 3
                  AND count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM cases p WHERE p.env = c.env AND p.version = c.target AND p.i <> c.i)) > 3
           FROM cases c WHERE c.rollback),
          'rollbacks: the cases go back to versions deployed with a commit, without one, and never deployed');
SELECT is(pg_temp.roll_back(), '',
          'rollbacks: each marks rolled_back with rollback_to/at/reason, keeps the deployment, sets app_version to the target and commit_sha to the target''s commit (or null)');
SELECT is((SELECT count(*)::int FROM cases c JOIN opsflags.deployment_history h USING (id)
           WHERE h.status IS DISTINCT FROM CASE WHEN c.rollback THEN 'rolled_back' ELSE 'success' END), 0,
          'rollbacks: exactly the rolled-back deployments have status rolled_back');
SELECT is((SELECT count(*)::int FROM (VALUES ('tapdep-a'), ('tapdep-b'), ('tapdep-c')) e(env)
           WHERE ARRAY(SELECT id FROM opsflags.get_deployment_history(env))
                 IS DISTINCT FROM ARRAY(SELECT id FROM cases c WHERE c.env = e.env ORDER BY i DESC)), 0,
          'rollbacks: get_deployment_history still lists every deployment, newest first');
-- README: get_latest_deployment is the newest not rolled back.
SELECT is((SELECT count(*)::int FROM (VALUES ('tapdep-a'), ('tapdep-b'), ('tapdep-c')) e(env)
           WHERE (SELECT l.id FROM opsflags.get_latest_deployment(env) l)
                 IS DISTINCT FROM (SELECT id FROM cases c WHERE c.env = e.env AND NOT c.rollback ORDER BY i DESC LIMIT 1)), 0,
          'rollbacks: get_latest_deployment(env) is the newest deployment not rolled back');
SELECT is((SELECT count(*)::int FROM cases c
           WHERE c.rollback
             AND (SELECT count(*) FROM opsflags.audit_log a
                  WHERE a.resource_type = 'deployment' AND a.action = 'UPDATE' AND a.resource_id = c.id::text
                        AND a.old_values ->> 'status' = 'success' AND a.new_values ->> 'status' = 'rolled_back'
                        AND a.new_values ->> 'rollback_to' = c.target AND a.txid = c.rollback_txid) <> 1), 0,
          'rollbacks: each has exactly one audit_log UPDATE row (success -> rolled_back, its target)');
SELECT is((SELECT count(*)::int FROM cases c
           WHERE c.rollback
             AND NOT EXISTS (SELECT 1 FROM opsflags.audit_log a
                             WHERE a.resource_type = 'config' AND a.resource_id = 'app_version'
                                   AND a.new_values -> 'config_value' = to_jsonb(c.target)
                                   AND a.new_values ->> 'environment' = c.env AND a.txid = c.rollback_txid)), 0,
          'rollbacks: each app_version change is audited');
SELECT is(pg_temp.collect('deployment.rolled_back', (SELECT count(*)::int FROM cases WHERE rollback)),
          (SELECT count(*)::int FROM cases WHERE rollback), 'NOTIFY: one deployment.rolled_back per rollback received');
SELECT is((SELECT count(*)::int FROM cases c
           WHERE c.rollback
             AND (SELECT count(*) FROM notes n
                  WHERE n.payload ->> 'event' = 'deployment.rolled_back' AND n.payload ->> 'id' = c.id::text
                        AND n.payload ->> 'environment' = c.env) <> 1), 0,
          'NOTIFY: each rollback announced once, with the deployment''s id and environment');
SELECT is((SELECT count(*)::int FROM notes WHERE payload ->> 'id' = :'rb_tx_id' AND payload ->> 'event' = 'deployment.rolled_back'), 0,
          'NOTIFY: nothing for the rollback undone by ROLLBACK');
SELECT is((SELECT count(*)::int FROM notes WHERE payload ->> 'event' NOT IN ('deployment.recorded', 'deployment.rolled_back')), 0,
          'NOTIFY: deployment events so far are deployment.recorded or deployment.rolled_back');

-------------------------------------------------------------------------------
-- c2. Failed deployments: 100 generated, each recorded with status failed
--     while app_version, commit_sha and the latest deployment stay as they were
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.fail(n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    env    text;
    ver    text;
    sha    text;
    before text;
    new    uuid;
    d      opsflags.deployment_history;
    bad    text[] := '{}';
BEGIN
    FOR i IN 1 .. n LOOP
        env := pg_temp.pick('fail.env', i, ARRAY['tapdep-a', 'tapdep-b', 'tapdep-c', 'tapdep-empty']);
        ver := pg_temp.rversion('fail.version', i);
        sha := CASE WHEN pg_temp.rnd('fail.sha', i) < 0.3 THEN NULL ELSE substr(md5('fail' || i), 1, 12) END;
        -- reference: what went live, read straight from the tables
        before := concat_ws('|', pg_temp.cfg('app_version', env), pg_temp.cfg('commit_sha', env),
                            (SELECT h.id FROM opsflags.deployment_history h
                             WHERE h.environment = env AND h.status = 'success' ORDER BY h.deployed_at DESC, h.id LIMIT 1));
        IF pg_temp.rnd('fail.named', i) < 0.5 THEN
            new := opsflags.record_deployment(ver, env, commit_sha => sha, status => 'failed');
        ELSE
            new := opsflags.record_deployment(ver, env, 'failed build ' || i, 'ci', NULL, sha, 'failed');
        END IF;
        SELECT * INTO d FROM opsflags.deployment_history h WHERE h.id = new;
        IF (d.version, d.environment, d.commit_sha, d.status, d.rollback_at)
           IS DISTINCT FROM (ver, env, sha, 'failed', NULL::timestamptz) THEN
            bad := bad || format('failed %s: row %s', i, row_to_json(d));
        END IF;
        IF concat_ws('|', pg_temp.cfg('app_version', env), pg_temp.cfg('commit_sha', env),
                     (SELECT l.id FROM opsflags.get_latest_deployment(env) l)) IS DISTINCT FROM before THEN
            bad := bad || format('failed %s: app_version, commit_sha or the latest deployment of %s changed', i, env);
        END IF;
    END LOOP;
    RETURN array_to_string(bad, '; ');
END
$$;
SELECT is(pg_temp.fail(100), '',
          'failed deployments: 100 recorded with status failed, app_version, commit_sha and get_latest_deployment unchanged');
SELECT is((SELECT count(*)::int FROM opsflags.get_latest_deployment('tapdep-empty')), 0,
          'failed deployments: an environment with only failed ones has no latest deployment');
SELECT is(pg_temp.collect('deployment.failed', 100), 100, 'NOTIFY: one deployment.failed per failed deployment');
SELECT id AS failed_id FROM opsflags.deployment_history WHERE status = 'failed' AND environment = 'tapdep-a' LIMIT 1 \gset
SELECT throws_ok(format('SELECT opsflags.record_rollback(%L, %L)', :'failed_id', '1.0.0'), '55000', NULL,
                 'record_rollback of a failed deployment raises 55000');

-------------------------------------------------------------------------------
-- d. Bad input: the SQLSTATE, and nothing written
-------------------------------------------------------------------------------
SELECT id AS rolled_id FROM cases WHERE rollback ORDER BY i LIMIT 1 \gset
SELECT id AS live_id FROM cases WHERE NOT rollback AND i > 0 ORDER BY i DESC LIMIT 1 \gset
SELECT pg_temp.state() AS state_d \gset
SELECT coalesce(max(n), 0) AS notes_before_bad FROM notes \gset

CREATE TEMP TABLE bad (n serial, sql text, state text, what text);
INSERT INTO bad (sql, state, what) VALUES
    ($$SELECT opsflags.record_rollback('00000000-0000-0000-0000-000000000000', '1.0.0', 'no such')$$, '42704', 'record_rollback of the nil uuid'),
    ($$SELECT opsflags.record_rollback(gen_random_uuid(), '1.0.0')$$, '42704', 'record_rollback of an unknown id'),
    ($$SELECT opsflags.record_rollback(NULL, '1.0.0')$$, '22004', 'record_rollback(NULL id)'),
    (format($$SELECT opsflags.record_rollback(%L, '0.9.0', 'again')$$, :'rolled_id'), '55000', 'second rollback of a rolled-back deployment'),
    (format($$SELECT opsflags.record_rollback(%L, '', 'empty target')$$, :'live_id'), '22023', 'record_rollback to an empty version'),
    (format($$SELECT opsflags.record_rollback(%L, '   ', 'blank target')$$, :'live_id'), '22023', 'record_rollback to a blank version'),
    (format($$SELECT opsflags.record_rollback(%L, NULL)$$, :'live_id'), '22023', 'record_rollback to a NULL version'),
    ($$SELECT opsflags.record_deployment('', 'tapdep-a')$$, '22023', 'record_deployment of an empty version'),
    ($$SELECT opsflags.record_deployment('   ', 'tapdep-a')$$, '22023', 'record_deployment of a blank version'),
    ($$SELECT opsflags.record_deployment(NULL, 'tapdep-a')$$, '22023', 'record_deployment of a NULL version'),
    ($$SELECT opsflags.record_deployment('', 'tapdep-a', 'c', 'tap', 'n', 'abc1234')$$, '22023', 'record_deployment of an empty version with every argument'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'tapdep-nope')$$, '42704', 'record_deployment to an unknown environment'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'all')$$, '42704', 'record_deployment to environment all (not an environment)'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'TAPDEP-A')$$, '42704', 'record_deployment to TAPDEP-A (names are case-sensitive)'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'tapdep-nope', commit_sha => 'abc1234')$$, '42704', 'record_deployment to an unknown environment with a commit'),
    ($$SELECT opsflags.record_deployment('9.9.9', NULL)$$, '22004', 'record_deployment to a NULL environment'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'tapdep-a', status => 'deployed')$$, '22023', 'record_deployment with status deployed'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'tapdep-a', status => 'rolled_back')$$, '22023', 'record_deployment with status rolled_back'),
    ($$SELECT opsflags.record_deployment('9.9.9', 'tapdep-a', status => NULL)$$, '22023', 'record_deployment with a NULL status');

SELECT throws_ok(sql, state, NULL, format('%s raises %s', what, state)) FROM bad ORDER BY n;
SELECT is(pg_temp.state(), :'state_d', 'refused calls in this session: deployment_history, audit_log and app_config unchanged');
SELECT is((SELECT status FROM opsflags.deployment_history WHERE id = :'rolled_id'), 'rolled_back',
          'the second rollback left the deployment as it was');

-- The same calls as top-level statements of session w.
SELECT is((SELECT count(*)::int FROM bad WHERE dblink_exec('w', sql, false) <> 'ERROR'), 0,
          'refused calls as top-level statements of session w: every one fails');
SELECT is(pg_temp.state(), :'state_d', 'refused top-level calls: deployment_history, audit_log and app_config unchanged');

-- After the refusals, a good call writes only its own audit rows (no
-- leftover of a refused call) and is the only deployment announced.
SELECT count(*) AS audit_before_good FROM opsflags.audit_log \gset
SELECT opsflags.record_deployment('5.0.0-after-bad', 'tapdep-b') AS good_id, txid_current() AS good_txid \gset
SELECT is((SELECT count(*)::int FROM opsflags.audit_log) - :audit_before_good, 3,
          'a good call after the refusals: exactly three new audit_log rows');
SELECT is((SELECT array_agg(resource_type || ' ' || action || ' ' || resource_id ORDER BY resource_type, resource_id)
           FROM opsflags.audit_log WHERE txid = :good_txid),
          ARRAY['config UPDATE app_version', 'config UPDATE commit_sha', 'deployment INSERT ' || :'good_id'],
          'a good call after the refusals: its audit rows are its deployment, its app_version and its commit_sha (null: none given)');
SELECT is(pg_temp.collect('deployment.recorded', 122), 122, 'NOTIFY: the good call is announced');
SELECT is((SELECT array_agg(payload ->> 'key' ORDER BY n) FROM notes WHERE n > :notes_before_bad),
          ARRAY['5.0.0-after-bad'], 'NOTIFY: no refused call was announced, only the good one');

-- Whitespace other than spaces is blank too.
SELECT pg_temp.state() AS state_ws \gset
SELECT throws_ok(format('SELECT opsflags.record_deployment(%L, %L)', v, 'tapdep-a'), '22023', NULL,
                 format('record_deployment of the blank version %s raises 22023', d))
FROM (VALUES (E'\t', 'tab'), (E'\n', 'newline'), (E' \t\r\n ', 'mixed whitespace')) s(v, d);
SELECT throws_ok(format('SELECT opsflags.record_rollback(%L, %L)', :'live_id', E'\t'), '22023', NULL,
                 'record_rollback to the blank version tab raises 22023');
SELECT is(pg_temp.state(), :'state_ws', 'blank versions: nothing written');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('l') AS x \gset
SELECT dblink_disconnect('w') AS x \gset
DELETE FROM opsflags.deployment_history WHERE environment LIKE 'tapdep%';
DELETE FROM opsflags.app_config WHERE environment LIKE 'tapdep%';
DELETE FROM opsflags.environments WHERE name LIKE 'tapdep%';
RESET opsflags.environment;

SELECT * FROM finish();
