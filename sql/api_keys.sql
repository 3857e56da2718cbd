-- API keys of the HTTP server: create, revoke, the view, errors,
-- privileges, the key format, api_key_authorize's statuses, api_key_touch,
-- and audit rows without the secret hash.  (NOTIFY payloads and concurrent
-- sessions: test/pgtap/api_keys.sql.)
\set SHOW_CONTEXT never
CREATE ROLE regress_keys_admin;
CREATE ROLE regress_keys_app;
CREATE ROLE regress_keys_ops;
CREATE ROLE regress_keys_other;
CREATE ROLE regress_keys_super SUPERUSER;
GRANT opsflags_admin TO regress_keys_admin;
GRANT regress_keys_ops TO regress_keys_admin;
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset
INSERT INTO opsflags.environments (name) VALUES ('regress-keys');

-- A client key of staging, made by an admin.
SET ROLE regress_keys_admin;
SELECT opsflags.create_api_key('staging', 'client', 'web app') AS client_key \gset
-- URL-safe, of the documented shape, 63 characters.
SELECT :'client_key' ~ '^opsf_c_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$' AS well_formed,
       length(:'client_key') AS length;
SELECT environment, kind, description, as_role, prefix = split_part(:'client_key', '_', 3) AS prefix_from_key,
       created_by = session_user AS by_session_user, active, revoked_at, revoked_by, last_used_at
FROM opsflags.api_keys_view;
SELECT id AS client_id FROM opsflags.api_keys_view WHERE kind = 'client' \gset
-- A server key of staging, an admin key acting as a role the admin is a
-- member of, a client key of production.
SELECT opsflags.create_api_key('staging', 'server') AS server_key \gset
SELECT opsflags.create_api_key('staging', 'admin', 'ops console', 'regress_keys_ops') AS admin_key \gset
SELECT opsflags.create_api_key('production', 'client') AS production_key \gset
SELECT left(:'server_key', 7) AS server_start, left(:'admin_key', 7) AS admin_start;
SELECT kind, environment, as_role, active FROM opsflags.api_keys_view ORDER BY id;
-- Two keys never share a prefix or a secret.
SELECT count(DISTINCT split_part(k, '_', 3)) AS prefixes, count(DISTINCT right(k, 43)) AS secrets
FROM unnest(ARRAY[:'client_key', :'server_key', :'admin_key', :'production_key']) k;

-- Errors: nothing written.
SELECT opsflags.create_api_key(NULL, 'client');
SELECT opsflags.create_api_key('moon', 'client');
SELECT opsflags.create_api_key('staging', 'robot');
SELECT opsflags.create_api_key('staging', NULL);
SELECT opsflags.create_api_key('staging', 'admin');
SELECT opsflags.create_api_key('staging', 'client', NULL, 'regress_keys_ops');
SELECT opsflags.create_api_key('staging', 'admin', NULL, 'regress_keys_nobody');
-- An admin may not mint a key for a role it is not a member of, nor for a
-- superuser.
SELECT opsflags.create_api_key('staging', 'admin', NULL, 'regress_keys_other');
SELECT opsflags.create_api_key('staging', 'admin', NULL, 'regress_keys_super');
SELECT opsflags.revoke_api_key(NULL);
SELECT opsflags.revoke_api_key(-1);
SELECT count(*) AS keys FROM opsflags.api_keys_view;

-- Revoke: once.
SELECT opsflags.revoke_api_key(:client_id) AS revoked;
SELECT opsflags.revoke_api_key(:client_id) AS revoked_again;
SELECT active, revoked_at IS NOT NULL AS has_revoked_at, revoked_by FROM opsflags.api_keys_view WHERE id = :client_id;
RESET ROLE;

-- Privileges: an ordinary role may do none of it; an admin reads the view,
-- not the table.
SET ROLE regress_keys_app;
SELECT opsflags.create_api_key('staging', 'client');
SELECT opsflags.revoke_api_key(1);
SELECT count(*) FROM opsflags.api_keys_view;
SELECT count(*) FROM opsflags.api_keys;
SELECT * FROM opsflags_internal.api_key_authorize(NULL, 'staging', '{client}');
SELECT opsflags_internal.api_key_touch('{1}');
RESET ROLE;
SET ROLE regress_keys_admin;
SELECT count(*) FROM opsflags.api_keys;
SELECT * FROM opsflags_internal.api_key_authorize(NULL, 'staging', '{client}');
SELECT opsflags_internal.api_key_touch('{1}');
SELECT opsflags_internal.api_key_hash_matches('\x00', '\x00');
UPDATE opsflags.api_keys SET revoked_at = NULL;
RESET ROLE;
-- Only the extension owner (and superusers) have privileges on the table.
SELECT grantee, privilege_type FROM information_schema.role_table_grants
WHERE table_schema = 'opsflags' AND table_name IN ('api_keys', 'api_keys_view') AND grantee <> current_user
ORDER BY table_name, grantee, privilege_type;

-- A superuser may create an admin key for any role, the superuser too.
SET ROLE regress_keys_super;
SELECT opsflags.create_api_key('regress-keys', 'admin', NULL, 'regress_keys_super') ~ '^opsf_a_' AS superuser_key;
RESET ROLE;

-- api_key_authorize (what the HTTP server's worker calls).
CREATE FUNCTION pg_temp.auth(presented text, env text, kinds text[]) RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws(' ', a.status, CASE WHEN a.key_id IS NULL THEN 'no key' ELSE 'key' END,
                   a.as_role, a.key_environment)
  FROM opsflags_internal.api_key_authorize(presented, env, kinds) a
$$;
-- staging has active keys: a key is required.
SELECT pg_temp.auth(:'server_key', 'staging', '{client,server}') AS server_at_client_endpoint,
       pg_temp.auth(:'server_key', 'staging', '{server}') AS server_at_server_endpoint,
       pg_temp.auth(:'admin_key', 'staging', '{admin}') AS admin_at_management;
SELECT pg_temp.auth(NULL, 'staging', '{client,server}') AS no_key,
       pg_temp.auth('', 'staging', '{client,server}') AS empty,
       pg_temp.auth('opsf_s_nonsense', 'staging', '{client,server}') AS malformed,
       pg_temp.auth(:'client_key', 'staging', '{client,server}') AS revoked;
-- The right prefix with another secret, a truncated key, the secret of
-- another key, another kind letter.
SELECT pg_temp.auth(left(:'server_key', 20) || repeat('A', 43), 'staging', '{server}') AS wrong_secret,
       pg_temp.auth(left(:'server_key', 62), 'staging', '{server}') AS truncated,
       pg_temp.auth(:'server_key' || 'A', 'staging', '{server}') AS too_long,
       pg_temp.auth(left(:'server_key', 20) || right(:'admin_key', 43), 'staging', '{server}') AS other_secret,
       pg_temp.auth('opsf_c' || substr(:'server_key', 7), 'staging', '{client,server}') AS other_letter;
-- Valid keys at the wrong place: 403.
SELECT pg_temp.auth(:'server_key', 'production', '{client,server}') AS other_environment,
       pg_temp.auth(:'production_key', 'production', '{server}') AS client_at_server_endpoint,
       pg_temp.auth(:'admin_key', 'staging', '{client,server}') AS admin_at_client_endpoint,
       pg_temp.auth(:'server_key', 'staging', '{admin}') AS server_at_management,
       pg_temp.auth(:'server_key', 'staging', NULL) AS no_kinds;
-- development has no active key: none is required (a presented key that
-- fits is still named).  The management API always requires one.
SELECT pg_temp.auth(NULL, 'development', '{client,server}') AS no_key,
       pg_temp.auth('garbage', 'development', '{client,server}') AS garbage,
       pg_temp.auth(:'server_key', 'development', '{client,server}') AS other_environment,
       pg_temp.auth(NULL, 'development', '{admin}') AS management,
       pg_temp.auth(NULL, 'nowhere', '{client}') AS unknown_environment,
       pg_temp.auth(NULL, 'development', NULL) AS no_kinds;
-- Once any active key exists for an environment, keys are required there;
-- revoking the last one lifts the requirement.
SELECT opsflags.create_api_key('development', 'server') AS dev_key \gset
SELECT pg_temp.auth(NULL, 'development', '{client,server}') AS no_key,
       pg_temp.auth(:'dev_key', 'development', '{client,server}') AS dev_key;
SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE environment = 'development';
SELECT pg_temp.auth(NULL, 'development', '{client,server}') AS no_key_after_revoke,
       pg_temp.auth(:'dev_key', 'development', '{client,server}') AS revoked_key_not_required;
-- opsflags.http_require_keys: keys everywhere.
SHOW opsflags.http_require_keys;
SET opsflags.http_require_keys = on;
SELECT context FROM pg_settings WHERE name = 'opsflags.http_require_keys';
ALTER SYSTEM SET opsflags.http_require_keys = on;
SELECT pg_reload_conf();
-- (the reload reaches this session between statements)
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'off' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SHOW opsflags.http_require_keys;
SELECT pg_temp.auth(NULL, 'development', '{client,server}') AS no_key,
       pg_temp.auth(:'dev_key', 'development', '{client,server}') AS revoked_key;
ALTER SYSTEM RESET opsflags.http_require_keys;
SELECT pg_reload_conf();
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SELECT current_setting('opsflags.http_require_keys') = 'on' AS waiting \gset
\if :waiting
SELECT pg_sleep(0.3) AS x \gset
\endif
SHOW opsflags.http_require_keys;

-- api_key_touch: last_used_at, at most once a minute per key.
SELECT id AS server_id FROM opsflags.api_keys_view WHERE environment = 'staging' AND kind = 'server' \gset
SELECT opsflags_internal.api_key_touch(ARRAY[:server_id, -5]) AS touched;
SELECT opsflags_internal.api_key_touch(ARRAY[:server_id]) AS touched_again;
SELECT opsflags_internal.api_key_touch(NULL) AS touched_none;
SELECT last_used_at IS NOT NULL AS used FROM opsflags.api_keys_view WHERE id = :server_id;
UPDATE opsflags.api_keys SET last_used_at = now() - interval '61 seconds' WHERE id = :server_id;
SELECT opsflags_internal.api_key_touch(ARRAY[:server_id]) AS touched_after_a_minute;

-- The constant-time comparison, and base64url.
SELECT opsflags_internal.api_key_hash_matches('\x0102', '\x0102') AS same,
       opsflags_internal.api_key_hash_matches('\x0102', '\x0103') AS last_differs,
       opsflags_internal.api_key_hash_matches('\x0102', '\x01') AS shorter,
       opsflags_internal.api_key_hash_matches('', '') AS empty;
SELECT b, opsflags_internal.base64url(b::bytea) AS url,
       opsflags_internal.base64url(b::bytea) = translate(rtrim(encode(b::bytea, 'base64'), '='), '+/', '-_') AS as_base64
FROM unnest(ARRAY['', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar', '\xfbff', '\xfbffbf']) b;
SELECT length(opsflags_internal.api_key_random(32)) AS bytes;
SELECT opsflags_internal.api_key_random(0);
SELECT opsflags_internal.api_key_random(65);

-- Audit: one row per creation and revocation, as the session user, without
-- the secret hash (or anything of the key but its public prefix).
SELECT actor, role, action, resource_type, table_name, old_values,
       new_values - ARRAY['id', 'prefix', 'created_at', 'revoked_at', 'last_used_at'] AS new_values
FROM opsflags.audit_log WHERE id > :audit_start AND resource_type = 'api_key' ORDER BY id;
SELECT count(*) AS rows_with_secret FROM opsflags.audit_log
WHERE id > :audit_start AND (new_values ? 'secret_hash' OR old_values ? 'secret_hash'
      OR new_values::text LIKE '%' || right(:'server_key', 43) || '%'
      OR new_values::text LIKE '%' || encode(sha256(convert_to(right(:'server_key', 43), 'UTF8')), 'hex') || '%');
-- Stored: sha256 of the secret, not the key.
SELECT secret_hash = sha256(convert_to(right(:'server_key', 43), 'UTF8')) AS hash_of_secret
FROM opsflags.api_keys WHERE id = :server_id;

-- Renaming an environment takes its keys along; one with keys cannot be
-- deleted.
UPDATE opsflags.environments SET name = 'regress-keys-2' WHERE name = 'regress-keys';
SELECT environment FROM opsflags.api_keys_view WHERE as_role = 'regress_keys_super';
DELETE FROM opsflags.environments WHERE name = 'regress-keys-2';

-- Clean up (later files must not find keys).
DELETE FROM opsflags.api_keys;
DELETE FROM opsflags.environments WHERE name = 'regress-keys-2';
DROP ROLE regress_keys_admin, regress_keys_app, regress_keys_ops, regress_keys_other, regress_keys_super;
