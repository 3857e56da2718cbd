-- test/pgtap/console_auth.sql: web console sign-in and sessions.
--
-- 1. Property: 300 generated sign-in attempts, in order, against 24
--    generated roles (SCRAM or MD5 passwords; some without LOGIN, some
--    without a password, some with VALID UNTIL in the past or the future)
--    and a few names of no role, with the right password, a wrong one,
--    another role's or an empty one, from one busy address or from many.
--    The reference knows each role's attributes and password, and the
--    throttling rule as a count per role name (reset by a success) and
--    per address: it says 200, 401 or 429 for every attempt.  Every token
--    it got then opens a session of its role.  A role that cannot sign in
--    takes about as long to refuse as a wrong password.
-- 2. Property: expiry of every session so made, its created_at and
--    last_seen_at moved back by random amounts, under three pairs of
--    settings: the status is the reference's (idle and absolute limits).
-- 3. Concurrency (dblink): a session signed out (or all of a role's) in one
--    connection is still valid in another until the commit, and refused
--    after it; a check that would touch last_seen_at waits for a
--    concurrent sign-out and then refuses.  Concurrent failed sign-ins of
--    one role name are all counted: the fifth failure, still uncommitted,
--    makes a concurrent sign-in with the right password wait and then be
--    refused (429).
-- 4. Secrets: no password (right or wrong), token or CSRF token is in the
--    server log ($OPSFLAGS_TEST_LOG) or in an audit row, while the log has
--    the failed and refused sign-ins.
--
-- Roles tap_console_*: removed at the start (leftovers of an interrupted
-- run) and at the end, with their sessions and counters.
\ir setup.inc

\getenv logpath OPSFLAGS_TEST_LOG
\if :{?logpath}
\else
\set logpath ''
\endif

DELETE FROM opsflags_internal.console_sessions s
WHERE pg_get_userbyid(s.role_oid) LIKE 'tap\_console\_%' OR pg_get_userbyid(s.role_oid) LIKE 'unknown (OID=%)';
DELETE FROM opsflags_internal.console_signin_failures WHERE key LIKE 'tap\_console\_%' OR key LIKE '198.51.100.%';
DO $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'tap\_console\_%' LOOP
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

SELECT plan(23);

SELECT CASE WHEN :'logpath' <> '' THEN (pg_stat_file(:'logpath')).size ELSE 0 END AS log_start \gset
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

-- Passwords, computed on the server: no statement text holds one.
CREATE FUNCTION pg_temp.pw(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'pw-' || md5('tap_console/' || i) $$;
CREATE FUNCTION pg_temp.wrong(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'wrong-' || md5('tap_console_wrong/' || i) $$;

-------------------------------------------------------------------------------
-- 1. Property: sign-in
-------------------------------------------------------------------------------
SELECT setseed(0.42) AS x \gset
-- Roles 1 to 7 are one of each kind; the others are drawn.
CREATE TEMP TABLE roles AS
SELECT i, 'tap_console_' || i AS name,
       CASE WHEN i = 2 OR i = 6 OR (i > 7 AND random() < 0.4) THEN 'md5' ELSE 'scram-sha-256' END AS enc,
       CASE WHEN i = 3 THEN false WHEN i <= 7 THEN true ELSE random() < 0.8 END AS login,
       CASE WHEN i = 4 THEN false WHEN i <= 7 THEN true ELSE random() < 0.85 END AS has_password,
       CASE WHEN i IN (5, 6) THEN now() - interval '1 day' WHEN i = 7 THEN now() + interval '1 day'
            WHEN i > 7 AND random() < 0.15 THEN now() - interval '1 hour'
            WHEN i > 7 AND random() < 0.15 THEN now() + interval '1 hour' END AS valid_until
FROM generate_series(1, 24) i;
-- PostgreSQL 18 warns about MD5 passwords, with the statement (and the
-- password the test sets) as CONTEXT: not to the client, nor to the log
SET client_min_messages = error;
SET log_min_messages = error;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM roles ORDER BY i LOOP
        PERFORM set_config('password_encryption', r.enc, true);
        EXECUTE format('CREATE ROLE %I %s %s %s', r.name, CASE WHEN r.login THEN 'LOGIN' ELSE 'NOLOGIN' END,
                       CASE WHEN r.has_password THEN format('PASSWORD %L', pg_temp.pw(r.i)) ELSE '' END,
                       CASE WHEN r.valid_until IS NOT NULL THEN format('VALID UNTIL %L', r.valid_until) ELSE '' END);
    END LOOP;
END
$$;
SET client_min_messages = warning;
RESET log_min_messages;

-- The attempts: a role (or, one in ten, no role), a password (right, wrong,
-- another role's, empty), an address (one in five the busy one).
CREATE TEMP TABLE attempts AS
SELECT n, role_i, CASE WHEN role_i IS NULL THEN 'tap_console_ghost_' || (n % 3) ELSE 'tap_console_' || role_i END AS role_name,
       pw_kind,
       CASE pw_kind WHEN 'right' THEN pg_temp.pw(coalesce(role_i, 1)) WHEN 'wrong' THEN pg_temp.wrong(n)
                    WHEN 'other' THEN pg_temp.pw(coalesce(role_i, 1) % 24 + 1) ELSE '' END AS password,
       addr
FROM (SELECT n, CASE WHEN random() < 0.1 THEN NULL ELSE 1 + floor(random() * 24)::int END AS role_i,
             (SELECT CASE WHEN x < 0.55 THEN 'right' WHEN x < 0.85 THEN 'wrong' WHEN x < 0.95 THEN 'other' ELSE 'empty' END
              FROM (SELECT random() + n * 0 AS x) r) AS pw_kind,
             CASE WHEN random() < 0.2 THEN '198.51.100.7' ELSE '198.51.100.' || (10 + floor(random() * 60)::int) END::inet AS addr
      FROM generate_series(1, 300) n) a;

-- The reference, attempt by attempt: may the role sign in with this
-- password (by what the test knows), and is the name or the address
-- throttled (failures counted here, a success clearing the name's)?
CREATE TEMP TABLE results (n int, want int, throttled_by text, got int, token text, csrf text, role text);
CREATE TEMP TABLE model_failures (key text PRIMARY KEY, failures int);
DO $$
DECLARE
    a       record;
    allowed boolean;
    reason  text;
    want    int;
    s       record;
BEGIN
    FOR a IN SELECT * FROM attempts ORDER BY n LOOP
        reason := CASE WHEN coalesce((SELECT failures FROM model_failures WHERE key = 'role ' || a.role_name), 0) >= 5 THEN 'role'
                   WHEN coalesce((SELECT failures FROM model_failures WHERE key = 'address ' || a.addr), 0) >= 20 THEN 'address' END;
        allowed := EXISTS (SELECT FROM roles r WHERE r.name = a.role_name AND r.login AND r.has_password
                           AND (r.valid_until IS NULL OR r.valid_until > now()) AND pg_temp.pw(r.i) = a.password);
        want := CASE WHEN reason IS NOT NULL THEN 429 WHEN allowed THEN 200 ELSE 401 END;
        IF want = 401 THEN
            INSERT INTO model_failures VALUES ('role ' || a.role_name, 1), ('address ' || a.addr, 1)
            ON CONFLICT (key) DO UPDATE SET failures = model_failures.failures + 1;
        ELSIF want = 200 THEN
            DELETE FROM model_failures WHERE key = 'role ' || a.role_name;
        END IF;
        SELECT * INTO s FROM opsflags_internal.console_sign_in(a.role_name, a.password, a.addr, 'tap');
        INSERT INTO results VALUES (a.n, want, reason, s.status, s.token, s.csrf_token, s.role);
    END LOOP;
END
$$;

SELECT cmp_ok((SELECT count(*)::int FROM results), '>=', 100, 'sign-in: at least 100 generated attempts');
SELECT is((SELECT count(*)::int FROM results WHERE got IS DISTINCT FROM want), 0,
          'sign-in: every attempt gets the reference''s status (200, 401, 429)');
SELECT diag(format('attempt %s (%s, %s password, %s): want %s, got %s', r.n, a.role_name, a.pw_kind, a.addr, r.want, r.got))
FROM results r JOIN attempts a USING (n) WHERE r.got IS DISTINCT FROM r.want ORDER BY n LIMIT 10;
SELECT is((SELECT array_agg(DISTINCT concat_ws(' ', want, throttled_by) ORDER BY concat_ws(' ', want, throttled_by)) FROM results),
          ARRAY['200', '401', '429 address', '429 role'],
          'sign-in: the cases reach success, failure, and refusal for the role name and for the address');
-- The right password of a role that may not sign in is refused, in each way.
SELECT is((SELECT array_agg(DISTINCT k ORDER BY k)
           FROM results r JOIN attempts a USING (n) JOIN roles o ON o.i = a.role_i,
                LATERAL (SELECT CASE WHEN NOT o.login THEN 'no login' WHEN NOT o.has_password THEN 'no password'
                                     WHEN o.valid_until <= now() THEN 'expired' END) c(k)
           WHERE a.pw_kind = 'right' AND r.want = 401 AND r.got = 401 AND k IS NOT NULL),
          ARRAY['expired', 'no login', 'no password'],
          'sign-in: the right password of a role without LOGIN, without a password or past VALID UNTIL is refused');
SELECT is((SELECT array_agg(DISTINCT o.enc ORDER BY o.enc) FROM results r JOIN attempts a USING (n) JOIN roles o ON o.i = a.role_i
           WHERE r.got = 200),
          ARRAY['md5', 'scram-sha-256'], 'sign-in: roles with MD5 and with SCRAM-SHA-256 passwords sign in');
SELECT is((SELECT count(*)::int FROM results r JOIN attempts a USING (n)
           WHERE (r.got = 200) <> (r.token IS NOT NULL AND r.csrf IS NOT NULL AND r.role = a.role_name)),
          0, 'sign-in: a token, a CSRF token and the role exactly when signed in');
SELECT is((SELECT count(DISTINCT token)::int FROM results), (SELECT count(*)::int FROM results WHERE got = 200),
          'sign-in: every token is new');
SELECT is((SELECT count(*)::int FROM results r, opsflags_internal.console_session_check(r.token, r.csrf) c
           WHERE r.got = 200 AND (c.status <> 200 OR c.role IS DISTINCT FROM r.role)),
          0, 'sign-in: every token opens a session of its role, with its CSRF token');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log l JOIN results r ON r.got = 200
           JOIN opsflags_internal.console_sessions s ON s.token_hash = sha256(convert_to(r.token, 'UTF8'))
           WHERE l.id > :audit_start AND l.action = 'SIGN_IN' AND l.resource_id = s.id::text AND l.role = r.role),
          (SELECT count(*)::int FROM results WHERE got = 200),
          'sign-in: each is audited as its session''s SIGN_IN');

-- Timing: a role that does not exist, has no password or no LOGIN (its
-- own SCRAM secret, or the dummy's) costs what a wrong password of a SCRAM
-- role costs; without the dummy check the first two would be some hundred
-- times faster.  Medians of 15 interleaved attempts each, counters cleared
-- before each.
CREATE TEMP TABLE timings (kind text, ms float8);
DO $$
DECLARE
    t0 timestamptz;
    c  record;
BEGIN
    FOR k IN 1 .. 15 LOOP
        FOR c IN SELECT * FROM (VALUES ('no such role', 'tap_console_ghost_t' || k, pg_temp.wrong(2000 + k)),
                                       ('no password', 'tap_console_4', pg_temp.wrong(2100 + k)),
                                       ('no login', 'tap_console_3', pg_temp.pw(3)),
                                       ('wrong password', 'tap_console_1', pg_temp.wrong(2200 + k))) v(kind, name, password) LOOP
            DELETE FROM opsflags_internal.console_signin_failures WHERE key = c.name OR key = '198.51.100.250';
            t0 := clock_timestamp();
            PERFORM * FROM opsflags_internal.console_sign_in(c.name, c.password, '198.51.100.250', 'tap');
            INSERT INTO timings VALUES (c.kind, extract(epoch FROM clock_timestamp() - t0) * 1000);
        END LOOP;
    END LOOP;
END
$$;
SELECT is((SELECT array_agg(kind ORDER BY kind) FROM (
               SELECT kind, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median FROM timings GROUP BY kind) m
           WHERE median NOT BETWEEN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 3 FROM timings WHERE kind = 'wrong password')
                                AND (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) * 3 FROM timings WHERE kind = 'wrong password')),
          NULL::text[], 'timing: no role, no password and no LOGIN take about as long as a wrong password (medians within 3x)');
SELECT diag(format('%s: median %s ms', kind, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3)))
FROM timings GROUP BY kind ORDER BY kind;

-------------------------------------------------------------------------------
-- 2. Property: expiry
-------------------------------------------------------------------------------
CREATE TEMP TABLE shifts AS
SELECT r.n, r.token, s.id, c_back, least(c_back, l_back) AS l_back
FROM results r JOIN opsflags_internal.console_sessions s ON s.token_hash = sha256(convert_to(r.token, 'UTF8')),
     LATERAL (SELECT make_interval(secs => random() * 30 * 3600 + r.n * 0) AS c_back,
                     make_interval(secs => random() * 3 * 3600 + r.n * 0) AS l_back) b
WHERE r.got = 200;
CREATE TEMP TABLE expiry (idle interval, max_age interval, n int, want int, got int);
CREATE FUNCTION pg_temp.expiry_case(idle text, max_age text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('opsflags.console_session_idle_timeout', idle, true);
    PERFORM set_config('opsflags.console_session_max_age', max_age, true);
    UPDATE opsflags_internal.console_sessions s SET created_at = now() - h.c_back, last_seen_at = now() - h.l_back
    FROM shifts h WHERE h.id = s.id;
    INSERT INTO expiry
    SELECT idle::interval, max_age::interval, h.n,
           CASE WHEN h.l_back >= idle::interval OR h.c_back >= max_age::interval THEN 401 ELSE 200 END,
           (SELECT c.status FROM opsflags_internal.console_session_check(h.token) c)
    FROM shifts h;
END
$$;
-- One transaction per case, so that now() is the same throughout.
BEGIN;
SELECT pg_temp.expiry_case('30min', '12h') AS x \gset
COMMIT;
BEGIN;
SELECT pg_temp.expiry_case('5min', '1h') AS x \gset
COMMIT;
BEGIN;
SELECT pg_temp.expiry_case('2h', '20h') AS x \gset
COMMIT;
SELECT cmp_ok((SELECT count(*)::int FROM expiry), '>=', 100, 'expiry: at least 100 generated cases');
SELECT is((SELECT count(*)::int FROM expiry WHERE got IS DISTINCT FROM want), 0,
          'expiry: a session is refused exactly when idle for the idle timeout or older than the maximum age');
SELECT is((SELECT array_agg(DISTINCT k ORDER BY k)
           FROM expiry e JOIN shifts h USING (n),
                LATERAL (SELECT CASE WHEN e.want = 200 THEN 'valid'
                                     WHEN h.l_back >= e.idle AND h.c_back < e.max_age THEN 'idle'
                                     WHEN h.c_back >= e.max_age AND h.l_back < e.idle THEN 'too old' END) c(k)
           WHERE k IS NOT NULL),
          ARRAY['idle', 'too old', 'valid'], 'expiry: the cases reach valid, idle only and too old only');
UPDATE opsflags_internal.console_sessions s SET created_at = now(), last_seen_at = now()
FROM shifts h WHERE h.id = s.id;

-------------------------------------------------------------------------------
-- 3. Concurrency
-------------------------------------------------------------------------------
SELECT dblink_connect('s1', pg_temp.tap_conninfo()) AS x \gset
SELECT dblink_connect('s2', pg_temp.tap_conninfo()) AS x \gset
SELECT pid AS s2_pid FROM dblink('s2', 'SELECT pg_backend_pid()') AS t(pid int) \gset
CREATE FUNCTION pg_temp.check_in(conn text, token text) RETURNS int LANGUAGE sql AS $$
  SELECT status FROM dblink(conn, format('SELECT status FROM opsflags_internal.console_session_check(%L)', token)) AS t(status int)
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
-- The one integer an asynchronous query returns, once it is done (up to 10 s).
CREATE FUNCTION pg_temp.async_int(conn text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v int;
BEGIN
    FOR i IN 1 .. 200 LOOP
        EXIT WHEN dblink_is_busy(conn) = 0;
        PERFORM pg_sleep(0.05);
    END LOOP;
    SELECT x INTO v FROM dblink_get_result(conn) AS t(x int);
    PERFORM * FROM dblink_get_result(conn) AS t(x int);
    RETURN v;
END
$$;

-- Sign-out: seen by the other connection at its commit, not before.
SELECT token AS ta FROM results r JOIN attempts a USING (n) WHERE r.got = 200 AND a.role_name = 'tap_console_1' LIMIT 1 \gset
SELECT pg_temp.check_in('s2', :'ta') AS a_before \gset
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT ok FROM dblink('s1', format('SELECT opsflags_internal.console_sign_out(%L)', :'ta')) AS t(ok boolean) \gset
SELECT pg_temp.check_in('s2', :'ta') AS a_uncommitted \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.check_in('s2', :'ta') AS a_committed \gset
SELECT is(ARRAY[:a_before, :a_uncommitted, :a_committed], ARRAY[200, 200, 401],
          'concurrency: a signed-out session is valid elsewhere until the sign-out commits, refused after');
-- A check that touches last_seen_at waits for a concurrent sign-out, then
-- refuses.
SELECT token AS tb FROM results r JOIN attempts a USING (n) WHERE r.got = 200 AND a.role_name = 'tap_console_1' OFFSET 1 LIMIT 1 \gset
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '5 minutes'
WHERE token_hash = sha256(convert_to(:'tb', 'UTF8'));
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT ok FROM dblink('s1', format('SELECT opsflags_internal.console_sign_out(%L)', :'tb')) AS t(ok boolean) \gset
SELECT dblink_send_query('s2', format('SELECT status FROM opsflags_internal.console_session_check(%L)', :'tb')) AS x \gset
SELECT pg_temp.wait_until_blocked(:s2_pid) AS b_blocked \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.async_int('s2') AS b_status \gset
SELECT is(ARRAY[:'b_blocked'::boolean::text, :'b_status'], ARRAY['true', '401'],
          'concurrency: a check waits for a concurrent sign-out of its session, then refuses it');
-- console_sign_out_all: the same.
SELECT token AS tc FROM results r JOIN attempts a USING (n) WHERE r.got = 200 AND a.role_name = 'tap_console_2' LIMIT 1 \gset
SELECT pg_temp.check_in('s2', :'tc') AS c_before \gset
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT n AS c_signed_out FROM dblink('s1', $$SELECT opsflags.console_sign_out_all('tap_console_2')$$) AS t(n int) \gset
SELECT pg_temp.check_in('s2', :'tc') AS c_uncommitted \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT is(ARRAY[:c_before, :c_uncommitted, pg_temp.check_in('s2', :'tc')], ARRAY[200, 200, 401],
          'concurrency: console_sign_out_all is seen elsewhere at its commit, not before');
SELECT cmp_ok(:c_signed_out, '>=', 1, 'concurrency: (console_sign_out_all ended the role''s sessions)');

-- Failed sign-ins at once: every one counts.  Four failures committed, a
-- fifth in s1 not yet: s2 with the right password waits for it, then is
-- refused.  The counter has all five.
DELETE FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'tap_console_1';
SELECT count(*) AS x FROM generate_series(1, 4) n,
       opsflags_internal.console_sign_in('tap_console_1', pg_temp.wrong(1000 + n), ('198.51.100.' || (200 + n))::inet, 'tap') \gset
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT status AS d_fifth FROM dblink('s1', $$SELECT status FROM opsflags_internal.console_sign_in('tap_console_1', 'wrong-' || md5('tap_console_wrong/1005'), '198.51.100.205', 'tap')$$) AS t(status int) \gset
SELECT dblink_send_query('s2', $$SELECT status FROM opsflags_internal.console_sign_in('tap_console_1', 'pw-' || md5('tap_console/1'), '198.51.100.206', 'tap')$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:s2_pid) AS d_blocked \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.async_int('s2') AS d_status \gset
SELECT is(ARRAY[:d_fifth::text, :'d_blocked'::boolean::text, :'d_status',
                (SELECT failures::text FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'tap_console_1')],
          ARRAY['401', 'true', '429', '5'],
          'concurrency: a sign-in waits for a concurrent failure of its role name, and counts it: refused after the fifth');
-- Two concurrent failures of a fresh name: both counted.
DELETE FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'tap_console_2';
SELECT dblink_exec('s1', 'BEGIN') AS x \gset
SELECT status AS e_first FROM dblink('s1', $$SELECT status FROM opsflags_internal.console_sign_in('tap_console_2', 'wrong-' || md5('tap_console_wrong/1006'), '198.51.100.207', 'tap')$$) AS t(status int) \gset
SELECT dblink_send_query('s2', $$SELECT status FROM opsflags_internal.console_sign_in('tap_console_2', 'wrong-' || md5('tap_console_wrong/1007'), '198.51.100.208', 'tap')$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:s2_pid) AS e_blocked \gset
SELECT dblink_exec('s1', 'COMMIT') AS x \gset
SELECT pg_temp.async_int('s2') AS e_status \gset
SELECT is(ARRAY[:e_first::text, :'e_blocked'::boolean::text, :'e_status',
                (SELECT failures::text FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'tap_console_2')],
          ARRAY['401', 'true', '401', '2'],
          'concurrency: two failures of one role name at once count as two');
SELECT dblink_disconnect('s1') AS x \gset
SELECT dblink_disconnect('s2') AS x \gset

-------------------------------------------------------------------------------
-- 4. Secrets
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.log_since(path text, start bigint) RETURNS bytea LANGUAGE sql AS $$
  SELECT CASE WHEN path = '' THEN ''::bytea
              ELSE pg_read_binary_file(path, least(start, (pg_stat_file(path)).size),
                                       (pg_stat_file(path)).size - least(start, (pg_stat_file(path)).size)) END
$$;
CREATE TEMP TABLE logged AS SELECT pg_temp.log_since(:'logpath', :log_start) AS b;
CREATE TEMP TABLE secrets AS
SELECT pg_temp.pw(i) AS s FROM generate_series(1, 24) i
UNION ALL SELECT password FROM attempts WHERE password <> ''
UNION ALL SELECT pg_temp.wrong(n) FROM generate_series(1001, 1007) n
UNION ALL SELECT token FROM results WHERE token IS NOT NULL
UNION ALL SELECT csrf FROM results WHERE csrf IS NOT NULL;
SELECT isnt(:'logpath'::text, ''::text, 'secrets: OPSFLAGS_TEST_LOG names the server log');
SELECT ok((SELECT position(convert_to('console sign-in failed for role "tap_console_', 'UTF8') IN b) > 0
              AND position(convert_to('console sign-in refused for role "tap_console_', 'UTF8') IN b) > 0 FROM logged),
          'secrets: the server log has the failed and the refused sign-ins, with their role');
SELECT is((SELECT count(*)::int FROM secrets, logged WHERE position(convert_to(s, 'UTF8') IN b) > 0), 0,
          'secrets: no password, token or CSRF token is in the server log');
SELECT is((SELECT count(*)::int FROM secrets, opsflags.audit_log a WHERE a.id > :audit_start AND strpos(a::text, s) > 0)
          + (SELECT count(*)::int FROM opsflags.audit_log a, results r
             WHERE a.id > :audit_start AND r.token IS NOT NULL
               AND strpos(a::text, encode(sha256(convert_to(r.token, 'UTF8')), 'hex')) > 0),
          0, 'secrets: no password, token, CSRF token or token hash is in an audit row');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
DELETE FROM opsflags_internal.console_sessions s WHERE pg_get_userbyid(s.role_oid) LIKE 'tap\_console\_%';
DELETE FROM opsflags_internal.console_signin_failures WHERE key LIKE 'tap\_console\_%' OR key LIKE '198.51.100.%';
DO $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'tap\_console\_%' LOOP
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

SELECT * FROM finish();
