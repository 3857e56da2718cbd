-- Console sign-in and sessions: console_sign_in's statuses for every kind
-- of role, session_check with and without the CSRF token, last_seen_at,
-- idle and absolute expiry, sign-out, console_sign_out_all's privileges,
-- the view, throttling per role name and per address, privileges and audit
-- rows.  (Generated cases, concurrent sessions and the server log:
-- test/pgtap/console_auth.sql.)
\set SHOW_CONTEXT never
SET client_min_messages = error;   -- PostgreSQL 18 warns about MD5 passwords
SET password_encryption = 'scram-sha-256';
CREATE ROLE regress_console_scram LOGIN PASSWORD 'scram pass 1';
CREATE ROLE regress_console_nologin PASSWORD 'nologin pass';
CREATE ROLE regress_console_nopassword LOGIN;
CREATE ROLE regress_console_expired LOGIN PASSWORD 'expired pass' VALID UNTIL '2001-01-01';
CREATE ROLE regress_console_later LOGIN PASSWORD 'later pass' VALID UNTIL 'infinity';
SET password_encryption = 'md5';
CREATE ROLE regress_console_md5 LOGIN PASSWORD 'md5 pass';
RESET password_encryption;
RESET client_min_messages;
CREATE ROLE regress_console_admin;
GRANT opsflags_admin TO regress_console_admin;
CREATE ROLE regress_console_other;
SELECT rolname, left(rolpassword, 6) AS stored FROM pg_authid WHERE rolname LIKE 'regress_console_%' ORDER BY 1;
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

-- Settings and their defaults.
SHOW opsflags.console_session_idle_timeout;
SHOW opsflags.console_session_max_age;
-- Out of range (22023; the message's wording differs between versions).
\set VERBOSITY sqlstate
SET opsflags.console_session_idle_timeout = 0;
SET opsflags.console_session_max_age = '-1s';
\set VERBOSITY default
SET ROLE regress_console_admin;
SET opsflags.console_session_idle_timeout = '1h';
RESET ROLE;

-- Signed in, with a SCRAM and an MD5 password: a 43-character token, a
-- different CSRF token, the role, the end of the idle timeout.
SELECT status, token ~ '^[A-Za-z0-9_-]{43}$' AS token_ok, csrf_token ~ '^[A-Za-z0-9_-]{43}$' AS csrf_ok,
       token <> csrf_token AS distinct_tokens, role, expires_at = now() + interval '30 minutes' AS expires_ok,
       session_id IS NOT NULL AS has_id
FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.1', 'regress agent');
SELECT status, role FROM opsflags_internal.console_sign_in('regress_console_md5', 'md5 pass', '192.0.2.1', NULL);
SELECT status, role FROM opsflags_internal.console_sign_in('regress_console_later', 'later pass', NULL, NULL);
-- Refused, all alike: wrong password, wrong case, no such role, no LOGIN,
-- no password, past VALID UNTIL, nothing given, a name too long.
SELECT r.attempt, s.*
FROM (VALUES (1, 'wrong password', 'regress_console_scram', 'scram pass 2'),
             (2, 'password of another role', 'regress_console_scram', 'md5 pass'),
             (3, 'name in another case', 'REGRESS_CONSOLE_SCRAM', 'scram pass 1'),
             (4, 'no such role', 'regress_console_nobody', 'scram pass 1'),
             (5, 'no LOGIN', 'regress_console_nologin', 'nologin pass'),
             (6, 'no password', 'regress_console_nopassword', ''),
             (7, 'past VALID UNTIL', 'regress_console_expired', 'expired pass'),
             (8, 'md5 secret as password', 'regress_console_md5', (SELECT rolpassword FROM pg_authid WHERE rolname = 'regress_console_md5')),
             (9, 'null role', NULL, 'x'),
             (10, 'null password', 'regress_console_scram', NULL),
             (11, 'empty role', '', ''),
             (12, 'role name too long', repeat('r', 64), 'x'),
             (13, 'password too long', 'regress_console_scram', repeat('p', 2000))) r(attempt, what, role_name, password),
     opsflags_internal.console_sign_in(r.role_name, r.password, '192.0.2.2', 'regress agent') s
ORDER BY r.attempt;
SELECT kind, key, failures FROM opsflags_internal.console_signin_failures WHERE key LIKE 'regress_console_%' OR key LIKE '192.0.2.%' ORDER BY 1, 2;

-- Sessions: the token and CSRF token of a new one.
SELECT token AS tok, csrf_token AS csrf, session_id AS sid
FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.3', 'regress agent') \gset
SELECT p.presented, c.status, c.role, c.session_id = :sid AS this_session,
       c.expires_at = s.last_seen_at + interval '30 minutes' AS expires_ok
FROM (VALUES (1, 'the right token', :'tok', NULL),
             (2, 'with its CSRF token', :'tok', :'csrf'),
             (3, 'with a wrong CSRF token', :'tok', left(:'csrf', 42) || 'x'),
             (4, 'with an empty CSRF token', :'tok', ''),
             (5, 'with the token as CSRF token', :'tok', :'tok'),
             (6, 'the CSRF token', :'csrf', NULL),
             (7, 'one character off', left(:'tok', 42) || CASE WHEN right(:'tok', 1) = 'A' THEN 'B' ELSE 'A' END, NULL),
             (8, 'truncated', left(:'tok', 42), NULL),
             (9, 'null', NULL, NULL),
             (10, 'garbage', 'Bearer x', NULL)) p(n, presented, token, csrf)
CROSS JOIN LATERAL opsflags_internal.console_session_check(p.token, p.csrf) c
LEFT JOIN opsflags_internal.console_sessions s ON s.id = c.session_id
ORDER BY p.n;
-- The CSRF token is the HMAC of the fixed message keyed by the token.
SELECT opsflags_internal.console_csrf_token(:'tok') = :'csrf' AS derived,
       opsflags_internal.console_csrf_token(:'tok') = opsflags_internal.console_csrf_token(:'tok' || 'x') AS same_for_another;

-- last_seen_at: written when over a minute old, not before.
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '30 seconds' WHERE id = :sid
RETURNING last_seen_at AS seen_before \gset
SELECT status FROM opsflags_internal.console_session_check(:'tok');
SELECT last_seen_at = :'seen_before' AS not_touched FROM opsflags_internal.console_sessions WHERE id = :sid;
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '90 seconds' WHERE id = :sid;
SELECT status FROM opsflags_internal.console_session_check(:'tok');
SELECT last_seen_at > now() - interval '10 seconds' AS touched FROM opsflags_internal.console_sessions WHERE id = :sid;
-- With an idle timeout of a minute, at half of it.
SET opsflags.console_session_idle_timeout = '1min';
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '40 seconds' WHERE id = :sid;
SELECT status FROM opsflags_internal.console_session_check(:'tok');
SELECT last_seen_at > now() - interval '10 seconds' AS touched FROM opsflags_internal.console_sessions WHERE id = :sid;
RESET opsflags.console_session_idle_timeout;

-- Idle expiry, at the settings in force when checked.
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '31 minutes' WHERE id = :sid;
SELECT * FROM opsflags_internal.console_session_check(:'tok');
SET opsflags.console_session_idle_timeout = '1h';
SELECT status, role FROM opsflags_internal.console_session_check(:'tok');
RESET opsflags.console_session_idle_timeout;
-- Absolute expiry, however recently used.
UPDATE opsflags_internal.console_sessions SET created_at = now() - interval '12 hours 1 second', last_seen_at = now() WHERE id = :sid;
SELECT * FROM opsflags_internal.console_session_check(:'tok');
SET opsflags.console_session_max_age = '1d';
SELECT status, role, expires_at = last_seen_at + interval '30 minutes' AS idle_first
FROM opsflags_internal.console_session_check(:'tok'), opsflags_internal.console_sessions WHERE id = :sid;
UPDATE opsflags_internal.console_sessions SET created_at = now() - interval '23 hours 50 minutes' WHERE id = :sid;
SELECT status, expires_at = created_at + interval '1 day' AS max_age_first
FROM opsflags_internal.console_session_check(:'tok'), opsflags_internal.console_sessions WHERE id = :sid;
RESET opsflags.console_session_max_age;
UPDATE opsflags_internal.console_sessions SET created_at = now(), last_seen_at = now() WHERE id = :sid;

-- A role that loses LOGIN loses its sessions until it has it again; a
-- renamed role keeps them under its new name.
ALTER ROLE regress_console_scram NOLOGIN;
SELECT status, role FROM opsflags_internal.console_session_check(:'tok');
ALTER ROLE regress_console_scram LOGIN;
SELECT status, role FROM opsflags_internal.console_session_check(:'tok');
SET client_min_messages = error;   -- renaming clears an MD5 password, not this SCRAM one
ALTER ROLE regress_console_scram RENAME TO regress_console_renamed;
SELECT status, role FROM opsflags_internal.console_session_check(:'tok');
ALTER ROLE regress_console_renamed RENAME TO regress_console_scram;
RESET client_min_messages;

-- A dropped role's sessions are refused, left out of the view, and
-- removed by the next sign-in.
CREATE ROLE regress_console_dropped LOGIN PASSWORD 'dropped pass';
SELECT token AS tok_dropped, session_id AS sid_dropped
FROM opsflags_internal.console_sign_in('regress_console_dropped', 'dropped pass', '192.0.2.6', NULL) \gset
SELECT status, role FROM opsflags_internal.console_session_check(:'tok_dropped');
DROP ROLE regress_console_dropped;
SELECT status, role FROM opsflags_internal.console_session_check(:'tok_dropped');
SELECT count(*) AS in_view FROM opsflags.console_sessions_view WHERE id = :sid_dropped;
SELECT status FROM opsflags_internal.console_sign_in('regress_console_nobody', 'x', NULL, NULL);
SELECT count(*) AS left_over FROM opsflags_internal.console_sessions WHERE id = :sid_dropped;

-- The view: live sessions, no secret; admins only.
SELECT role, client_addr, user_agent, expires_at = last_seen_at + interval '30 minutes' AS expires_ok
FROM opsflags.console_sessions_view ORDER BY id;
SELECT string_agg(attname, ', ' ORDER BY attnum) AS view_columns
FROM pg_attribute WHERE attrelid = 'opsflags.console_sessions_view'::regclass AND attnum > 0;
SET ROLE regress_console_admin;
SELECT count(*) AS sessions FROM opsflags.console_sessions_view;
SELECT count(*) FROM opsflags_internal.console_sessions;
SELECT * FROM opsflags_internal.console_session_check(:'tok');
SELECT * FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.3', NULL);
SET ROLE regress_console_other;
SELECT count(*) FROM opsflags.console_sessions_view;
RESET ROLE;

-- Sign-out: once; the token is then refused.
SELECT opsflags_internal.console_sign_out(:'tok') AS signed_out;
SELECT * FROM opsflags_internal.console_session_check(:'tok');
SELECT opsflags_internal.console_sign_out(:'tok') AS signed_out_again,
       opsflags_internal.console_sign_out(NULL) AS null_token,
       opsflags_internal.console_sign_out('garbage') AS garbage;

-- console_sign_out_all: admins, and the role itself; nobody else.
SELECT token AS tok1 FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.3', NULL) \gset
SELECT token AS tok2 FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.4', NULL) \gset
SELECT token AS tok_md5 FROM opsflags_internal.console_sign_in('regress_console_md5', 'md5 pass', '192.0.2.3', NULL) \gset
SET ROLE regress_console_other;
SELECT opsflags.console_sign_out_all('regress_console_scram');
SET ROLE regress_console_scram;
SELECT opsflags.console_sign_out_all('regress_console_md5');
SELECT opsflags.console_sign_out_all('regress_console_scram') AS own_sessions;
SET ROLE regress_console_admin;
SELECT opsflags.console_sign_out_all('regress_console_md5') AS by_admin;
SELECT opsflags.console_sign_out_all('regress_console_md5') AS none_left;
SELECT opsflags.console_sign_out_all(NULL);
SELECT opsflags.console_sign_out_all('regress_console_nobody');
RESET ROLE;
SELECT (SELECT status FROM opsflags_internal.console_session_check(:'tok1')) AS tok1,
       (SELECT status FROM opsflags_internal.console_session_check(:'tok2')) AS tok2,
       (SELECT status FROM opsflags_internal.console_session_check(:'tok_md5')) AS tok_md5;

-- Throttling per role name: five failures, then refused even with the
-- right password, until the window has passed.
SELECT string_agg(s.status::text, ' ' ORDER BY n) AS statuses
FROM generate_series(1, 6) n,
     opsflags_internal.console_sign_in('regress_console_md5', CASE WHEN n = 6 THEN 'md5 pass' ELSE 'wrong' END,
                                       ('192.0.2.' || (10 + n))::inet, NULL) s;
SELECT status FROM opsflags_internal.console_sign_in('regress_console_md5', 'md5 pass', '192.0.2.30', NULL);
SELECT failures FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'regress_console_md5';
-- Other roles are not affected; nor the same name in another case.
SELECT status FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '192.0.2.11', NULL);
SELECT status FROM opsflags_internal.console_sign_in('REGRESS_CONSOLE_MD5', 'md5 pass', '192.0.2.11', NULL);
-- The window has passed: one more try, counted in a new window.
UPDATE opsflags_internal.console_signin_failures SET window_start = now() - interval '15 minutes'
WHERE kind = 'role' AND key = 'regress_console_md5';
SELECT status FROM opsflags_internal.console_sign_in('regress_console_md5', 'wrong', '192.0.2.30', NULL);
SELECT failures, window_start > now() - interval '1 minute' AS new_window FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'regress_console_md5';
-- A success clears the role name's count.
SELECT string_agg(s.status::text, ' ' ORDER BY n) AS statuses
FROM generate_series(1, 9) n,
     opsflags_internal.console_sign_in('regress_console_md5', CASE WHEN n = 4 THEN 'md5 pass' ELSE 'wrong' END,
                                       ('192.0.2.' || (40 + n))::inet, NULL) s;
SELECT count(*) AS counters FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'regress_console_md5';
DELETE FROM opsflags_internal.console_signin_failures WHERE kind = 'role' AND key = 'regress_console_md5';

-- Per address: twenty failures from one address, whatever the role names;
-- then every sign-in from it is refused, from other addresses not.
SELECT string_agg(s.status::text, ' ' ORDER BY n) AS statuses
FROM generate_series(1, 21) n,
     opsflags_internal.console_sign_in('regress_console_guess_' || n, 'guess', '2001:db8::1', NULL) s;
SELECT status FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '2001:db8::1', NULL);
SELECT status FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', '2001:db8::2', NULL);
SELECT failures FROM opsflags_internal.console_signin_failures WHERE kind = 'address' AND key = '2001:db8::1';
-- A success from an address does not clear its count.
UPDATE opsflags_internal.console_signin_failures SET failures = 19 WHERE kind = 'address' AND key = '2001:db8::1';
SELECT string_agg(s.status::text, ' ' ORDER BY n) AS statuses
FROM generate_series(1, 3) n,
     opsflags_internal.console_sign_in('regress_console_scram', CASE WHEN n = 1 THEN 'scram pass 1' ELSE 'wrong' END,
                                       '2001:db8::1', NULL) s;
-- Expired counters are removed by later sign-ins.
UPDATE opsflags_internal.console_signin_failures SET window_start = now() - interval '1 hour'
WHERE key LIKE 'regress_console_guess_%';
SELECT status FROM opsflags_internal.console_sign_in('regress_console_nobody', 'x', NULL, NULL);
SELECT count(*) AS guess_counters FROM opsflags_internal.console_signin_failures WHERE key LIKE 'regress_console_guess_%';

-- A new session ends at the earlier of the two limits; the view leaves
-- out sessions that have expired.
SET opsflags.console_session_max_age = '10min';
SELECT status, expires_at = now() + interval '10 minutes' AS max_age_first, session_id AS short_sid
FROM opsflags_internal.console_sign_in('regress_console_later', 'later pass', '192.0.2.5', NULL) \gset
SELECT :status AS status, :'max_age_first' AS max_age_first,
       (SELECT count(*) FROM opsflags.console_sessions_view WHERE id = :short_sid) AS in_view;
RESET opsflags.console_session_max_age;
UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '31 minutes' WHERE id = :short_sid;
SELECT count(*) AS in_view FROM opsflags.console_sessions_view WHERE id = :short_sid;

-- Privileges: the worker's functions are for superusers only.
SET ROLE regress_console_admin;
SELECT * FROM opsflags_internal.console_sign_in('regress_console_scram', 'scram pass 1', NULL, NULL);
SELECT * FROM opsflags_internal.console_sign_out('x');
SELECT * FROM opsflags_internal.console_password_check('regress_console_scram', 'scram pass 1', NULL);
RESET ROLE;
SELECT p.oid::regprocedure AS function FROM pg_proc p
WHERE p.pronamespace = 'opsflags_internal'::regnamespace AND p.proname LIKE 'console%'
  AND has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1;

-- Audit: every sign-in and sign-out, as the session's row without a secret.
SELECT action, resource_type, actor, role, new_values->>'role' AS session_role,
       new_values->>'client_addr' AS client_addr, resource_id = new_values->>'id' AS id_ok
FROM opsflags.audit_log WHERE id > :audit_start ORDER BY id;
SELECT DISTINCT string_agg(k, ',' ORDER BY k) AS audited_keys
FROM opsflags.audit_log, jsonb_object_keys(new_values) k WHERE id > :audit_start GROUP BY id;
SELECT count(*) AS leaks FROM opsflags.audit_log a
WHERE a.id > :audit_start
  AND (a::text LIKE '%' || :'tok' || '%' OR a::text LIKE '%' || :'csrf' || '%' OR a::text LIKE '%pass%'
       OR a::text LIKE '%' || encode(sha256(convert_to(:'tok', 'UTF8')), 'hex') || '%'
       OR a::text LIKE '%' || encode(sha256(convert_to(:'tok', 'UTF8')), 'base64') || '%');

-- Clean up.
DELETE FROM opsflags_internal.console_sessions;
DELETE FROM opsflags_internal.console_signin_failures;
DROP ROLE regress_console_scram, regress_console_md5, regress_console_nologin, regress_console_nopassword,
          regress_console_expired, regress_console_later, regress_console_admin, regress_console_other;
