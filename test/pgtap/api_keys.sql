-- test/pgtap/api_keys.sql: API keys of the HTTP server.
--
-- 1. Property: api_key_authorize against a plain-SQL reference of the
--    status rule, on every combination of a generated key (three
--    environments x three kinds, some revoked), a presented text made from
--    it (the key, another secret with its prefix, truncated, one character
--    too many, another kind letter, garbage, NULL), the environment asked
--    for (the key's, another with keys, one without) and the kinds an
--    endpoint accepts (client, server, management): 744 cases.  The
--    reference knows the whole keys and compares them as strings; it knows
--    nothing of prefixes, hashes or the key format.
-- 2. Concurrency (dblink): a key revoked and committed in one session is
--    refused in another at its next statement, within the same read-only
--    transaction; a key created in a transaction not yet committed is
--    refused elsewhere until it commits, and never if it rolls back.
-- 3. NOTIFY: a listening session receives api_key.created and
--    api_key.revoked with id and environment, and never the key, its
--    secret or its hash.
--
-- Environments tap-keys-*, role tap_keys_role, and their keys: removed at
-- the start (leftovers of an interrupted run) and at the end.
-- opsflags.http_require_keys is off (its default) throughout.
\ir setup.inc

DELETE FROM opsflags.api_keys WHERE environment LIKE 'tap-keys-%';
DELETE FROM opsflags.environments WHERE name LIKE 'tap-keys-%';
DROP ROLE IF EXISTS tap_keys_role;

SELECT plan(16);

CREATE ROLE tap_keys_role;
INSERT INTO opsflags.environments (name) VALUES ('tap-keys-a'), ('tap-keys-b'), ('tap-keys-c'), ('tap-keys-d');

SELECT dblink_connect('listen', pg_temp.tap_conninfo()) AS x \gset
SELECT dblink_exec('listen', 'LISTEN opsflags') AS x \gset

-------------------------------------------------------------------------------
-- 1. Property
-------------------------------------------------------------------------------
-- Keys: every kind in a, b and c; in c all are revoked, in b the client
-- key.  d has none.
CREATE TEMP TABLE keys (id bigint, environment text, kind text, key text, revoked boolean);
INSERT INTO keys (environment, kind, key, revoked)
SELECT e, k, opsflags.create_api_key(e, k, 'tap', CASE WHEN k = 'admin' THEN 'tap_keys_role' END),
       e = 'tap-keys-c' OR (e = 'tap-keys-b' AND k = 'client')
FROM unnest(ARRAY['tap-keys-a', 'tap-keys-b', 'tap-keys-c']) e, unnest(ARRAY['client', 'server', 'admin']) k;
UPDATE keys SET id = v.id FROM opsflags.api_keys_view v WHERE v.prefix = split_part(keys.key, '_', 3);
SELECT count(*) FILTER (WHERE opsflags.revoke_api_key(id)) AS x FROM keys WHERE revoked \gset

CREATE TEMP TABLE presented (variant text, key_id bigint, text text);
INSERT INTO presented
SELECT 'right', id, key FROM keys
UNION ALL SELECT 'wrong secret', id, left(key, 20) || opsflags_internal.base64url(opsflags_internal.api_key_random(32)) FROM keys
UNION ALL SELECT 'truncated', id, left(key, 62) FROM keys
UNION ALL SELECT 'truncated to the prefix', id, left(key, 20) FROM keys
UNION ALL SELECT 'one too many', id, key || 'A' FROM keys
UNION ALL SELECT 'other letter', id, overlay(key PLACING CASE WHEN kind = 'client' THEN 's' ELSE 'c' END FROM 6 FOR 1) FROM keys
UNION ALL SELECT 'garbage', NULL, g FROM unnest(ARRAY['', 'opsf', 'opsf_c_', 'Bearer x', md5('tap'),
                                                     'opsf_c_000000000000_' || repeat('A', 43), repeat('é', 63)]) g
UNION ALL SELECT 'null', NULL, NULL;

CREATE TEMP TABLE cases AS
SELECT p.variant, p.key_id, p.text AS presented, e AS environment, kinds
FROM presented p,
     unnest(ARRAY['tap-keys-a', 'tap-keys-b', 'tap-keys-c', 'tap-keys-d']) e,
     (VALUES (ARRAY['client', 'server']), (ARRAY['server']), (ARRAY['admin'])) ks(kinds);

-- The reference: the presented text is exactly an unrevoked key, or not.
CREATE TEMP VIEW expected AS
SELECT c.*, CASE WHEN fits THEN 200 WHEN NOT required THEN 200 WHEN k.id IS NOT NULL THEN 403 ELSE 401 END AS status,
       CASE WHEN fits OR (k.id IS NOT NULL AND required) THEN k.id END AS want_key,
       required
FROM cases c
LEFT JOIN keys k ON k.key = c.presented AND NOT k.revoked
CROSS JOIN LATERAL (SELECT coalesce(k.environment = c.environment AND k.kind = ANY (c.kinds), false) AS fits,
                           'admin' = ANY (c.kinds)
                           OR EXISTS (SELECT FROM keys r WHERE r.environment = c.environment AND NOT r.revoked) AS required) f;

CREATE TEMP TABLE results AS
SELECT e.*, a.status AS got, a.key_id AS got_key, a.as_role AS got_role, a.key_environment AS got_environment,
       (SELECT count(*) FROM opsflags_internal.api_key_authorize(e.presented, e.environment, e.kinds)) AS nrows
FROM expected e, opsflags_internal.api_key_authorize(e.presented, e.environment, e.kinds) a;

SELECT cmp_ok((SELECT count(*)::int FROM results), '>=', 700, 'property: over 700 generated cases');
SELECT is((SELECT count(*)::int FROM results WHERE nrows <> 1), 0, 'property: one row for every case');
SELECT is((SELECT count(*)::int FROM results WHERE got IS DISTINCT FROM status), 0,
          'property: the status of every case is the reference''s');
SELECT diag(format('%s %s at %s %s: want %s, got %s', variant, key_id, environment, kinds, status, got))
FROM results WHERE got IS DISTINCT FROM status LIMIT 10;
SELECT is((SELECT count(*)::int FROM results WHERE got_key IS DISTINCT FROM want_key), 0,
          'property: key_id is the key''s for a 200 with a fitting key and for a 403, NULL otherwise');
SELECT is((SELECT count(*)::int FROM results r LEFT JOIN keys k ON k.id = r.got_key
           WHERE r.got_role IS DISTINCT FROM CASE WHEN r.got = 200 AND k.kind = 'admin' THEN 'tap_keys_role' END
              OR r.got_environment IS DISTINCT FROM k.environment), 0,
          'property: as_role only for an accepted admin key; key_environment the key''s');
-- The cases reach every branch of the rule (the test could fail).
SELECT is((SELECT array_agg(b ORDER BY b)
           FROM (SELECT DISTINCT concat_ws(' ', status, CASE WHEN want_key IS NULL THEN 'no key' ELSE 'key' END,
                                           CASE WHEN required THEN 'required' ELSE 'not required' END) b
                 FROM results) s),
          ARRAY['200 key required', '200 no key not required', '401 no key required', '403 key required'],
          'property: the cases reach 200 with a key, 200 without one (none required), 401 and 403');
SELECT is((SELECT count(DISTINCT variant)::int FROM results WHERE status = 401), 8,
          'property: every kind of presented text is refused somewhere (the right one when revoked)');
SELECT is((SELECT count(*)::int FROM results WHERE variant <> 'right' AND got = 200 AND got_key IS NOT NULL), 0,
          'property: only the right key is ever accepted as a key');

-------------------------------------------------------------------------------
-- 2. Concurrency
-------------------------------------------------------------------------------
SELECT dblink_connect('s1', pg_temp.tap_conninfo()) AS x \gset
SELECT dblink_connect('s2', pg_temp.tap_conninfo()) AS x \gset
SELECT key AS ka, id AS ka_id FROM keys WHERE environment = 'tap-keys-a' AND kind = 'server' \gset
CREATE FUNCTION pg_temp.auth_in(conn text, presented text, env text) RETURNS int LANGUAGE sql AS $$
  SELECT status FROM dblink(conn, format('SELECT status FROM opsflags_internal.api_key_authorize(%L, %L, %L)',
                                          presented, env, '{client,server}')) AS t(status int)
$$;
-- s2 is the worker: a read-only transaction, several statements.
SELECT dblink_exec('s2', 'BEGIN READ ONLY') AS x \gset
SELECT pg_temp.auth_in('s2', :'ka', 'tap-keys-a') AS before_revoke \gset
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT status AS revoke_returned FROM dblink('s1', format('SELECT opsflags.revoke_api_key(%s)::text', :ka_id)) AS t(status text) \gset
SELECT pg_temp.auth_in('s2', :'ka', 'tap-keys-a') AS revoke_uncommitted \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.auth_in('s2', :'ka', 'tap-keys-a') AS revoke_committed \gset
SELECT dblink_exec('s2', 'COMMIT') AS x \gset
SELECT is(ARRAY[:before_revoke, :revoke_uncommitted, :revoke_committed], ARRAY[200, 200, 401],
          'concurrency: a revocation is seen by another session''s next statement once committed, not before (in one read-only transaction)');
SELECT is(:'revoke_returned'::text, 'true', 'concurrency: (the revocation returned true)');

SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT key AS kn FROM dblink('s1', $$SELECT opsflags.create_api_key('tap-keys-a', 'client')$$) AS t(key text) \gset
SELECT pg_temp.auth_in('s1', :'kn', 'tap-keys-a') AS own_session,
       pg_temp.auth_in('s2', :'kn', 'tap-keys-a') AS other_session \gset
SELECT dblink_exec('s1', 'ROLLBACK') AS x \gset
SELECT pg_temp.auth_in('s2', :'kn', 'tap-keys-a') AS after_rollback \gset
SELECT is(ARRAY[:own_session, :other_session, :after_rollback], ARRAY[200, 401, 401],
          'concurrency: a key created in a transaction not committed works in it, nowhere else, and never once rolled back');
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT key AS kc FROM dblink('s1', $$SELECT opsflags.create_api_key('tap-keys-a', 'client')$$) AS t(key text) \gset
SELECT pg_temp.auth_in('s2', :'kc', 'tap-keys-a') AS before_commit \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.auth_in('s2', :'kc', 'tap-keys-a') AS after_commit \gset
SELECT is(ARRAY[:before_commit, :after_commit], ARRAY[401, 200],
          'concurrency: a created key works elsewhere from its commit on');
-- A key created elsewhere makes keys required at once, here in d.
SELECT pg_temp.auth_in('s2', NULL, 'tap-keys-d') AS d_open \gset
SELECT key AS kd FROM dblink('s1', $$SELECT opsflags.create_api_key('tap-keys-d', 'client')$$) AS t(key text) \gset
SELECT is(ARRAY[:d_open, pg_temp.auth_in('s2', NULL, 'tap-keys-d'), pg_temp.auth_in('s2', :'kd', 'tap-keys-d')],
          ARRAY[200, 401, 200],
          'concurrency: the first active key of an environment requires keys there for every session');
SELECT dblink_disconnect('s1') AS x \gset
SELECT dblink_disconnect('s2') AS x \gset

-------------------------------------------------------------------------------
-- 3. NOTIFY
-------------------------------------------------------------------------------
CREATE TEMP TABLE notes (n serial, payload text);
DO $$
DECLARE
    tries int := 0;
BEGIN
    -- every key of this file was created or revoked by now; the last one
    -- (kd) announces itself last
    LOOP
        PERFORM * FROM dblink('listen', 'SELECT 1') AS t(x int);
        INSERT INTO notes (payload) SELECT extra FROM dblink_get_notify('listen')
        WHERE notify_name = 'opsflags' AND extra LIKE '%api\_key.%';
        EXIT WHEN (SELECT count(*) FROM notes) >= (SELECT count(*) FROM opsflags.api_keys WHERE environment LIKE 'tap-keys-%')
                                                  + (SELECT count(*) FROM opsflags.api_keys WHERE environment LIKE 'tap-keys-%' AND revoked_at IS NOT NULL)
             OR tries >= 200;
        tries := tries + 1;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT is((SELECT array_agg(p ORDER BY p) FROM (SELECT DISTINCT string_agg(k, ',' ORDER BY k) p
                                                 FROM notes, jsonb_object_keys(payload::jsonb) k GROUP BY n) s),
          ARRAY['environment,event,id'], 'NOTIFY: every api_key payload has exactly event, id and environment');
SELECT is((SELECT array_agg(concat_ws(' ', payload::jsonb->>'event', payload::jsonb->>'environment') ORDER BY n)
           FROM notes WHERE (payload::jsonb->>'id')::bigint = :ka_id),
          ARRAY['api_key.created tap-keys-a', 'api_key.revoked tap-keys-a'],
          'NOTIFY: a key''s creation and revocation, each once (the rolled-back key''s never)');
SELECT is((SELECT count(*)::int FROM notes n, opsflags.api_keys k
           WHERE k.environment LIKE 'tap-keys-%'
             AND (n.payload LIKE '%' || k.prefix || '%' OR n.payload LIKE '%' || encode(k.secret_hash, 'hex') || '%'
                  OR n.payload LIKE '%' || encode(k.secret_hash, 'base64') || '%'))
          + (SELECT count(*)::int FROM notes n, (SELECT key FROM keys UNION ALL SELECT :'kc' UNION ALL SELECT :'kd') s
             WHERE n.payload LIKE '%' || right(s.key, 43) || '%'),
          0, 'NOTIFY: no payload holds a key, a secret, a hash or even a prefix');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('listen') AS x \gset
DELETE FROM opsflags.api_keys WHERE environment LIKE 'tap-keys-%';
DELETE FROM opsflags.environments WHERE name LIKE 'tap-keys-%';
DROP ROLE tap_keys_role;

SELECT * FROM finish();
