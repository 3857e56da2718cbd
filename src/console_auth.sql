/*
 * console_auth.sql
 *	  Sign-in to the web console as a PostgreSQL role, and its server-side
 *	  sessions: the tables opsflags_internal.console_sessions and
 *	  console_signin_failures, the view console_sessions_view,
 *	  console_sign_out_all() (audited), and what the HTTP server's database
 *	  worker calls: console_sign_in(), console_session_check() and
 *	  console_sign_out().  C helpers in console_auth.c.
 *
 * A session token is 32 random bytes in base64url without padding (43
 * characters), returned once by console_sign_in; only its sha256 is stored.
 * The CSRF token of a session is not stored: it is base64url(HMAC-SHA-256
 * keyed by the session token of a fixed message), so whoever holds the
 * token can have it computed again and nobody else can.
 *
 * Throttling, per role name and per client address: an attempt is refused
 * without looking at the password while the role name has 5 failed
 * attempts, or the address 20, in a window of 15 minutes that starts at the
 * first failure (a failure after the window has passed starts a new one).
 * Refused attempts are not counted; a successful sign-in clears the role
 * name's count, not the address's.
 *
 * Passwords, tokens and CSRF tokens are never logged, audited or put in an
 * error message.  The HTTP server must pass them to these functions as bind
 * parameters (SPI arguments), never in the query text: pg_stat_activity,
 * statement logging and the STATEMENT line of an error show the text of a
 * query, not its parameters.
 */

CREATE TABLE opsflags_internal.console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL
                 CONSTRAINT console_sessions_token_hash_key UNIQUE
                 CONSTRAINT token_hash_is_sha256 CHECK (length(token_hash) = 32),
    -- An OID: a renamed role keeps its sessions, a dropped one loses them.
    role_oid     oid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    client_addr  inet,
    user_agent   text
);
CREATE INDEX console_sessions_role_idx ON opsflags_internal.console_sessions (role_oid);
COMMENT ON TABLE opsflags_internal.console_sessions IS
  'Web console sessions (sha256 of the token only); read it through opsflags.console_sessions_view';

-- One row per role name ('role') and per client address ('address') with
-- failed sign-ins in the current window.
CREATE TABLE opsflags_internal.console_signin_failures (
    kind         text NOT NULL CONSTRAINT console_signin_failure_kind CHECK (kind IN ('role', 'address')),
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    failures     integer NOT NULL CONSTRAINT failures_not_negative CHECK (failures >= 0),
    PRIMARY KEY (kind, key)
);
COMMENT ON TABLE opsflags_internal.console_signin_failures IS
  'Failed web console sign-ins per role name and per client address, for throttling';

-- C helpers (console_auth.c).
CREATE FUNCTION opsflags_internal.console_password_check(role_name text, password text, client text)
RETURNS oid
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_console_password_check';
COMMENT ON FUNCTION opsflags_internal.console_password_check(text, text, text) IS
  'The role''s OID when it may sign in with the password (as at a password login), else NULL, logged';
CREATE FUNCTION opsflags_internal.console_log_throttled(role_name text, client text)
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_console_log_throttled';
CREATE FUNCTION opsflags_internal.console_csrf_mac(token text)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_console_csrf_mac';
CREATE FUNCTION opsflags_internal.console_idle_timeout()
RETURNS integer
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_console_idle_timeout';
CREATE FUNCTION opsflags_internal.console_max_age()
RETURNS integer
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_console_max_age';
CREATE FUNCTION opsflags_internal.console_check_sign_out(role_oid oid)
RETURNS void
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsflags_console_check_sign_out';

-- When a session ends, by the settings as they are now.
CREATE FUNCTION opsflags_internal.console_session_expires_at(created_at timestamptz, last_seen_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(last_seen_at + make_interval(secs => opsflags_internal.console_idle_timeout()),
                 created_at + make_interval(secs => opsflags_internal.console_max_age()))
$$;

-- A session's CSRF token.
CREATE FUNCTION opsflags_internal.console_csrf_token(token text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT opsflags_internal.base64url(opsflags_internal.console_csrf_mac(token)) $$;

-- An audit row written here: action SIGN_IN or SIGN_OUT, resource
-- console_session <id>, the session without its hash.
CREATE FUNCTION opsflags_internal.console_session_audit(action text, s opsflags_internal.console_sessions,
                                                        actor text, acting_role text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO opsflags.audit_log (actor, role, action, resource_type, resource_id, table_name,
                                    old_values, new_values, client_addr, application_name, txid)
    VALUES (actor, acting_role, action, 'console_session', s.id::text, 'opsflags_internal.console_sessions',
            NULL,
            pg_catalog.jsonb_build_object('id', s.id, 'role', pg_catalog.pg_get_userbyid(s.role_oid),
                                          'created_at', s.created_at, 'last_seen_at', s.last_seen_at,
                                          'client_addr', s.client_addr, 'user_agent', s.user_agent),
            s.client_addr, pg_catalog.current_setting('application_name'), pg_catalog.txid_current());
$$;

-- The sessions console_session_check accepts.
CREATE VIEW opsflags.console_sessions_view AS
SELECT s.id, r.rolname::text AS role, s.created_at, s.last_seen_at,
       opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) AS expires_at,
       s.client_addr, s.user_agent
FROM opsflags_internal.console_sessions s
JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.role_oid AND r.rolcanlogin
WHERE opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) OPERATOR(pg_catalog.>) pg_catalog.now();
COMMENT ON VIEW opsflags.console_sessions_view IS
  'Web console sessions that are valid (not expired, of a role with LOGIN), without their token';

-- For the HTTP server's database worker (a superuser), in a read-write
-- transaction that it commits whatever the status: a failure is counted
-- there.  status:
--   200  signed in: token (shown this once), csrf_token, role, expires_at,
--        session_id;
--   401  role_name cannot sign in with password (no such role, no LOGIN,
--        no password, past VALID UNTIL, wrong password: all alike);
--   429  too many failed attempts for the role name or the address: the
--        password was not looked at.
-- role_name is matched exactly (no case folding, no quotes).  Expired
-- sessions, sessions of dropped roles and past failure windows are removed
-- here, a hundred at a time.  Without client_addr, only the role name's
-- failures are counted.
CREATE FUNCTION opsflags_internal.console_sign_in(role_name text, password text, client_addr inet,
                                                  user_agent text DEFAULT NULL)
RETURNS TABLE (status integer, token text, csrf_token text, role text, expires_at timestamptz,
               session_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_role_failures    constant integer := 5;
    max_address_failures constant integer := 20;
    failure_window       constant interval := '15 minutes';
    role_key     text := CASE WHEN octet_length(role_name) BETWEEN 1 AND 63 THEN role_name END;
    address_key  text := host(client_addr);
    n_role       integer := 0;
    n_address    integer := 0;
    roleid       oid;
    tok          text;
    s            opsflags_internal.console_sessions;
BEGIN
    -- Forget what has expired, a little at a time, skipping rows in use.
    DELETE FROM opsflags_internal.console_signin_failures f
    WHERE f.ctid = ANY (ARRAY(SELECT o.ctid FROM opsflags_internal.console_signin_failures o
                              WHERE o.window_start <= now() - failure_window
                              LIMIT 100 FOR UPDATE SKIP LOCKED));
    DELETE FROM opsflags_internal.console_sessions c
    WHERE c.ctid = ANY (ARRAY(SELECT o.ctid FROM opsflags_internal.console_sessions o
                              WHERE opsflags_internal.console_session_expires_at(o.created_at, o.last_seen_at) <= now()
                                 OR NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = o.role_oid)
                              LIMIT 100 FOR UPDATE SKIP LOCKED));

    -- Lock the counters (role name first, then address, always in this
    -- order) until commit: attempts for the same name or address take
    -- turns, so that each sees the failures of those before it.
    IF role_key IS NOT NULL THEN
        INSERT INTO opsflags_internal.console_signin_failures AS f (kind, key, window_start, failures)
        VALUES ('role', role_key, now(), 0)
        ON CONFLICT (kind, key) DO UPDATE
            SET failures = CASE WHEN f.window_start <= now() - failure_window THEN 0 ELSE f.failures END
        RETURNING f.failures INTO n_role;
    END IF;
    IF address_key IS NOT NULL THEN
        INSERT INTO opsflags_internal.console_signin_failures AS f (kind, key, window_start, failures)
        VALUES ('address', address_key, now(), 0)
        ON CONFLICT (kind, key) DO UPDATE
            SET failures = CASE WHEN f.window_start <= now() - failure_window THEN 0 ELSE f.failures END
        RETURNING f.failures INTO n_address;
    END IF;

    IF n_role >= max_role_failures OR n_address >= max_address_failures THEN
        PERFORM opsflags_internal.console_log_throttled(role_name, host(client_addr));
        RETURN QUERY SELECT 429, NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;

    roleid := opsflags_internal.console_password_check(role_name, password, host(client_addr));

    IF roleid IS NULL THEN
        -- A first failure opens a window.
        UPDATE opsflags_internal.console_signin_failures f
        SET failures = f.failures + 1,
            window_start = CASE WHEN f.failures = 0 THEN now() ELSE f.window_start END
        WHERE (f.kind = 'role' AND f.key = role_key) OR (f.kind = 'address' AND f.key = address_key);
        RETURN QUERY SELECT 401, NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;

    DELETE FROM opsflags_internal.console_signin_failures f
    WHERE (f.kind = 'role' AND f.key = role_key) OR (f.kind = 'address' AND f.key = address_key AND f.failures = 0);
    tok := opsflags_internal.base64url(opsflags_internal.api_key_random(32));
    INSERT INTO opsflags_internal.console_sessions (token_hash, role_oid, client_addr, user_agent)
    VALUES (sha256(convert_to(tok, 'UTF8')), roleid, console_sign_in.client_addr, left(console_sign_in.user_agent, 512))
    RETURNING * INTO s;
    PERFORM opsflags_internal.console_session_audit('SIGN_IN', s, role_name, role_name);
    RETURN QUERY SELECT 200, tok, opsflags_internal.console_csrf_token(tok), role_name,
                        opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at), s.id;
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_sign_in(text, text, inet, text) IS
  'HTTP server: sign in to the console as a role with its password; 200 with a new session''s token, 401 or 429';

-- For the HTTP server's database worker, per request, in a read-write
-- transaction.  status:
--   200  token is a live session's: role, session_id, expires_at;
--   401  token is malformed, unknown, signed out or expired, or its role no
--        longer exists or has lost LOGIN;
--   403  a live session, but csrf (when given) is not its CSRF token.
-- last_seen_at is written at most once a minute (more often with an idle
-- timeout under two minutes), so that most checks only read.
CREATE FUNCTION opsflags_internal.console_session_check(token text, csrf text DEFAULT NULL)
RETURNS TABLE (status integer, role text, session_id bigint, expires_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h     bytea;
    s     opsflags_internal.console_sessions;
    rname text;
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{43}$' THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    h := sha256(convert_to(token, 'UTF8'));
    SELECT * INTO s FROM opsflags_internal.console_sessions c WHERE c.token_hash = h;
    IF FOUND AND opsflags_internal.api_key_hash_matches(s.token_hash, h)
       AND opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) > now() THEN
        SELECT a.rolname INTO rname FROM pg_catalog.pg_roles a WHERE a.oid = s.role_oid AND a.rolcanlogin;
    END IF;
    IF rname IS NULL THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    IF csrf IS NOT NULL
       AND NOT opsflags_internal.api_key_hash_matches(convert_to(csrf, 'UTF8'),
                                                      convert_to(opsflags_internal.console_csrf_token(token), 'UTF8')) THEN
        RETURN QUERY SELECT 403, NULL::text, s.id, NULL::timestamptz;
        RETURN;
    END IF;
    IF s.last_seen_at <= now() - least(interval '1 minute',
                                       make_interval(secs => opsflags_internal.console_idle_timeout()) / 2) THEN
        -- the condition again: a concurrent check may have written it
        UPDATE opsflags_internal.console_sessions c SET last_seen_at = now()
        WHERE c.id = s.id AND c.last_seen_at < now();
        -- signed out meanwhile (the update waited for that to commit)
        IF NOT FOUND AND NOT EXISTS (SELECT FROM opsflags_internal.console_sessions c WHERE c.id = s.id) THEN
            RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
            RETURN;
        END IF;
        s.last_seen_at := greatest(s.last_seen_at, now());
    END IF;
    RETURN QUERY SELECT 200, rname, s.id,
                        opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at);
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_session_check(text, text) IS
  'HTTP server: the role of a console session token (200), 401, or 403 when the CSRF token given is wrong';

-- For the HTTP server's database worker: end the session of token (expired
-- or not).  false: no session has this token.
CREATE FUNCTION opsflags_internal.console_sign_out(token text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h     bytea;
    s     opsflags_internal.console_sessions;
    rname text;
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{43}$' THEN
        RETURN false;
    END IF;
    h := sha256(convert_to(token, 'UTF8'));
    DELETE FROM opsflags_internal.console_sessions c WHERE c.token_hash = h RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    rname := pg_get_userbyid(s.role_oid);
    PERFORM opsflags_internal.console_session_audit('SIGN_OUT', s, rname, rname);
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_sign_out(text) IS
  'HTTP server: end the console session of a token (false: no such session)';

-- SECURITY DEFINER: admins, and every role for its own sessions, without
-- access to the table.
CREATE FUNCTION opsflags.console_sign_out_all(role regrole)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    s opsflags_internal.console_sessions;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM opsflags_internal.console_check_sign_out(role::oid);
    FOR s IN DELETE FROM opsflags_internal.console_sessions c WHERE c.role_oid = role::oid RETURNING * LOOP
        PERFORM opsflags_internal.console_session_audit('SIGN_OUT', s, session_user, opsflags_internal.api_key_caller());
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION opsflags.console_sign_out_all(regrole) IS
  'End every web console session of a role at once (admins, and the role itself); returns how many';

REVOKE ALL ON FUNCTION
    opsflags_internal.console_password_check(text, text, text),
    opsflags_internal.console_log_throttled(text, text), opsflags_internal.console_csrf_mac(text),
    opsflags_internal.console_idle_timeout(), opsflags_internal.console_max_age(),
    opsflags_internal.console_check_sign_out(oid),
    opsflags_internal.console_session_expires_at(timestamptz, timestamptz),
    opsflags_internal.console_csrf_token(text),
    opsflags_internal.console_session_audit(text, opsflags_internal.console_sessions, text, text),
    opsflags_internal.console_sign_in(text, text, inet, text),
    opsflags_internal.console_session_check(text, text), opsflags_internal.console_sign_out(text)
FROM PUBLIC;
-- What the view calls (nothing secret).
GRANT EXECUTE ON FUNCTION
    opsflags_internal.console_idle_timeout(), opsflags_internal.console_max_age(),
    opsflags_internal.console_session_expires_at(timestamptz, timestamptz)
TO opsflags_admin;
GRANT SELECT ON opsflags.console_sessions_view TO opsflags_admin;
