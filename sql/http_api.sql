-- The management API's SQL (http_api.sql): api_call's answers for each
-- resource, run as roles with and without the rights (PostgreSQL's own
-- privileges decide), its errors and their SQLSTATEs (the HTTP server maps
-- them), query string and body parsing, CSV, api_sign_in and
-- api_authenticate.  (The HTTP side: test/console/api.sh.)
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = error;
SET password_encryption = 'scram-sha-256';
CREATE ROLE regress_api_admin LOGIN PASSWORD 'admin api pass';
CREATE ROLE regress_api_viewer LOGIN PASSWORD 'viewer api pass';
RESET password_encryption;
RESET client_min_messages;
GRANT opsflags_admin TO regress_api_admin;
GRANT SELECT ON opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.flag_prerequisites,
                opsflags.environments TO regress_api_viewer;
GRANT EXECUTE ON FUNCTION opsflags.get_flag(text, text), opsflags.resolve_environment(text),
                          opsflags.flag_id(text),
                          opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text)
TO regress_api_viewer;
SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset
-- An error as the server sees it: its SQLSTATE and message.
CREATE FUNCTION pg_temp.try(method text, path text, query text, body text)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM opsflags_internal.api_call(method, path, query, body);
    RETURN 'no error';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- Helpers: decoding, query parameters, body fields, CSV fields.
SELECT opsflags_internal.api_decode('a%20b+c%C3%A9%'), opsflags_internal.api_decode('plain');
SELECT opsflags_internal.api_decode('%ff');
SELECT opsflags_internal.api_param('a=1&search=x%26y&a=2', 'search') AS search,
       opsflags_internal.api_param('a=1&a=2', 'a') AS first, opsflags_internal.api_param('a=', 'a') AS empty,
       opsflags_internal.api_param(NULL, 'a') AS no_query;
SELECT opsflags_internal.api_body(NULL), opsflags_internal.api_body('  ');
SELECT opsflags_internal.api_body('[1]');
SELECT opsflags_internal.api_body('{"a": ');
SELECT opsflags_internal.api_text('{"a": 1}', 'a');
SELECT opsflags_internal.api_bool('{"a": "true"}', 'a');
SELECT opsflags_internal.api_bool('{}', 'a', true);
SELECT opsflags_internal.api_strings('{"a": ["x", 1]}', 'a');
SELECT opsflags_internal.api_fields('{"key": 1, "zzz": 2}', '{key}');
SELECT opsflags_internal.api_csv_field(v) FROM (VALUES ('plain'), ('a,b'), ('say "hi"'), (E'two\nlines'), (NULL)) x(v);

-- As the admin role: create, read, change, toggle, archive, restore, delete.
SET ROLE regress_api_admin;
SELECT status, content_type, document::jsonb - '{id,created_at,updated_at,created_by}'::text[] - 'config' AS flag
FROM opsflags_internal.api_call('POST', 'flags', NULL, '{"key": "api-one", "name": "API one", "tags": ["t1"], "description": "The first"}');
SELECT status, document::jsonb -> 'config' -> 'is_enabled' AS enabled
FROM opsflags_internal.api_call('POST', 'flags/api-one/toggle', NULL, '{"environment": "staging", "enabled": true}');
SELECT status, document::jsonb ->> 'environment' AS env, document::jsonb -> 'config' -> 'is_enabled' AS enabled
FROM opsflags_internal.api_call('GET', 'flags/api-one', 'environment=staging', NULL);
SELECT status, document::jsonb ->> 'description' AS description
FROM opsflags_internal.api_call('PATCH', 'flags/api-one', NULL, '{"description": "Zebracorn changed"}');
-- The evaluation tester: feature_explain for a context in an environment
SELECT status, document::jsonb ->> 'enabled' AS enabled, document::jsonb ->> 'reason' AS reason,
       document::jsonb ->> 'environment' AS env
FROM opsflags_internal.api_call('POST', 'flags/api-one/evaluate', NULL, '{"environment": "staging", "context": {"key": "u1"}}');
SELECT pg_temp.try('POST', 'flags/api-one/evaluate', NULL, '{"context": [1]}');                -- 22023
SELECT pg_temp.try('POST', 'flags/api-one/evaluate', NULL, '{"environment": "nowhere"}');     -- 42704
SELECT pg_temp.try('POST', 'flags/nope/evaluate', NULL, '{}');                                -- 42704
SELECT status FROM opsflags_internal.api_call('POST', 'flags', NULL, '{"key": "api-two", "tags": ["t2"]}');
-- Lists: search (key, name, description; any case), tag, archived.
SELECT status, (SELECT array_agg(f ->> 'key') FROM jsonb_array_elements(document::jsonb -> 'flags') f) AS keys
FROM (VALUES ('search=api-'), ('search=ZEBRACORN'), ('search=API-&tag=t1'), ('tag=t2&search=api-'), ('search=nothing'), ('search=api-&archived=true')) v(q),
     LATERAL opsflags_internal.api_call('GET', 'flags', q, NULL);
SELECT status, document::jsonb -> 'archived' AS archived FROM opsflags_internal.api_call('POST', 'flags/api-two/archive', NULL, NULL);
SELECT status, (SELECT array_agg(f ->> 'key') FROM jsonb_array_elements(document::jsonb -> 'flags') f) AS keys
FROM (VALUES ('search=api-&archived=true'), ('archived=all&search=api-'), ('search=api-&archived=false')) v(q),
     LATERAL opsflags_internal.api_call('GET', 'flags', q, NULL);
SELECT status, document::jsonb -> 'archived' AS archived FROM opsflags_internal.api_call('POST', 'flags/api-two/restore', '', '');
SELECT status FROM opsflags_internal.api_call('POST', 'flags/api-two/archive', NULL, '{}');
SELECT status, content_type, document FROM opsflags_internal.api_call('DELETE', 'flags/api-two', NULL, NULL);
SELECT status, document::jsonb -> 'environments' @> '[{"name": "production"}, {"name": "staging"}]' AS listed
FROM opsflags_internal.api_call('GET', 'environments', NULL, NULL);
SELECT status, document FROM opsflags_internal.api_call('PUT', 'maintenance', NULL, '{"enabled": false}');
SELECT status, document::jsonb -> 'config_value' AS value, document::jsonb ->> 'updated_by' AS by
FROM opsflags_internal.api_call('PUT', 'config/api.limit', NULL, '{"value": 5, "environment": "staging"}');
SELECT status, document::jsonb -> 'config_value' AS value
FROM opsflags_internal.api_call('PUT', 'config/api.secret', NULL, '{"value": "hunter2", "is_sensitive": true}');
SELECT status, jsonb_path_query_array(document::jsonb, '$.config[*] ? (@.config_key starts with "api.").config_value') AS values
FROM opsflags_internal.api_call('GET', 'config', 'environment=staging', NULL);

-- Deployments (recorded by the role), segments, alerts.
SELECT status, document::jsonb ->> 'version' AS version, document::jsonb ->> 'status' AS st,
       document::jsonb ->> 'deployed_by' AS by
FROM (VALUES (1, '{"version": "api-1.0", "environment": "staging", "commit_sha": "a1"}'),
             (2, '{"version": "api-1.1", "environment": "staging", "status": "failed"}')) v(i, b),
     LATERAL opsflags_internal.api_call('POST', 'deployments', NULL, b) ORDER BY i;
SELECT id AS deployment_id FROM opsflags.deployment_history WHERE version = 'api-1.0' \gset
SELECT status, document::jsonb ->> 'status' AS st, document::jsonb ->> 'rollback_to' AS rollback_to
FROM opsflags_internal.api_call('POST', 'deployments/' || :'deployment_id' || '/rollback', NULL, '{"target_version": "api-0.9", "reason": "regress"}');
SELECT status, jsonb_path_query_array(document::jsonb, '$.deployments[*] ? (@.version starts with "api-").status') AS statuses
FROM opsflags_internal.api_call('GET', 'deployments', 'environment=staging', NULL);
SELECT status, document::jsonb - '{id,created_at,updated_at}'::text[] AS segment
FROM opsflags_internal.api_call('PUT', 'segments/api-beta', NULL, '{"name": "Beta", "user_ids": ["u1"]}');
SELECT status, document::jsonb -> 'user_ids' AS user_ids, document::jsonb -> 'roles' AS roles
FROM opsflags_internal.api_call('PUT', 'segments/api-beta', NULL, '{"roles": ["tester"]}');
SELECT status, document::jsonb ->> 'name' AS name FROM opsflags_internal.api_call('GET', 'segments/api-beta', NULL, NULL);
SELECT status, jsonb_path_query_array(document::jsonb, '$.segments[*] ? (@.segment_key starts with "api-").segment_key') AS keys
FROM opsflags_internal.api_call('GET', 'segments', NULL, NULL);
SELECT status FROM opsflags_internal.api_call('GET', 'alerts', 'resolved=all', NULL);

-- Errors, with the SQLSTATE the server maps to a status.
SELECT pg_temp.try('GET', 'flags/no-such-flag', NULL, NULL);           -- 42704: 404
SELECT pg_temp.try('POST', 'flags', NULL, '{"key": "api-one"}');      -- 23505: 409
SELECT pg_temp.try('POST', 'flags', NULL, '{"key": "bad key!"}');     -- 22023: 400
SELECT pg_temp.try('POST', 'flags', NULL, '{"name": "no key"}');      -- 22004: 400
SELECT pg_temp.try('POST', 'flags', NULL, '{"key": "x", "bogus": 1}'); -- 22023
SELECT pg_temp.try('POST', 'flags', NULL, '{"key": ');                -- 22P02
SELECT pg_temp.try('PATCH', 'flags/api-one', NULL, '{"enabled_percentage": "x"}');
SELECT pg_temp.try('POST', 'flags/api-one/toggle', NULL, '{"enabled": "yes"}');
SELECT pg_temp.try('DELETE', 'flags/api-one', NULL, NULL);            -- 55000: 409
SELECT pg_temp.try('GET', 'flags', 'environment=nowhere', NULL);      -- 42704
SELECT pg_temp.try('GET', 'flags', 'archived=maybe', NULL);
SELECT pg_temp.try('GET', 'nothing', NULL, NULL);                     -- P0002: 404
SELECT pg_temp.try('GET', 'flags/a/b/c', NULL, NULL);
SELECT pg_temp.try('GET', 'flags/api-one/nothing', NULL, NULL);
SELECT pg_temp.try('PUT', 'flags', NULL, NULL);                       -- 0A000: 405
SELECT pg_temp.try('GET', 'audit', 'limit=0', NULL);
SELECT pg_temp.try('GET', 'audit', 'since=yesterday-ish', NULL);
SELECT pg_temp.try('POST', 'deployments', NULL, '{"environment": "staging"}');
SELECT pg_temp.try('POST', 'deployments/not-a-uuid/rollback', NULL, '{"target_version": "1"}');
SELECT pg_temp.try('PUT', 'segments/api-beta', NULL, '{"name": "Renamed"}');
SELECT pg_temp.try('PUT', 'segments/api-bad', NULL, '{"user_ids": "u1"}');
SELECT pg_temp.try('GET', 'segments/api-none', NULL, NULL);
SELECT pg_temp.try('GET', 'alerts', 'resolved=maybe', NULL);
SELECT pg_temp.try('POST', 'alerts/999999999/resolve', NULL, NULL);
SELECT pg_temp.try('POST', 'alerts/x/resolve', NULL, NULL);
RESET ROLE;

-- The viewer reads, and may not write (42501: 403); nothing is written.
SET ROLE regress_api_viewer;
SELECT status, document::jsonb ->> 'key' AS key FROM opsflags_internal.api_call('GET', 'flags/api-one', NULL, NULL);
SELECT pg_temp.try('POST', 'flags', NULL, '{"key": "viewer-flag"}');
SELECT pg_temp.try('POST', 'flags/api-one/toggle', NULL, '{"enabled": true}');
SELECT pg_temp.try('GET', 'audit', NULL, NULL);
RESET ROLE;
SELECT count(*) AS viewer_flags FROM opsflags.feature_flags WHERE flag_key = 'viewer-flag';

-- The audit rows of the API's writes name the role; JSON and CSV.
SET ROLE regress_api_admin;
SELECT a ->> 'role' AS role, a ->> 'action' AS action, a ->> 'resource_type' AS type, a ->> 'resource_id' AS id
FROM opsflags_internal.api_call('GET', 'audit', 'resource_type=feature_flag&limit=3', NULL) c,
     jsonb_array_elements(c.document::jsonb -> 'audit') a;
SELECT count(*) > 0 AS some, bool_and(a ->> 'resource_type' IN ('feature_flag', 'flag_config')) AS only_its
FROM opsflags_internal.api_call('GET', 'flags/api-one/audit', NULL, NULL) c, jsonb_array_elements(c.document::jsonb -> 'audit') a;
SELECT status, content_type, split_part(document, E'\r\n', 1) AS header,
       split_part(split_part(document, E'\r\n', 2), ',', 4) AS role
FROM opsflags_internal.api_call('GET', 'audit', 'limit=1&action=insert', NULL, true);
SELECT content_type FROM opsflags_internal.api_call('GET', 'audit', 'format=csv&limit=1', NULL);
RESET ROLE;

-- Sign-in with a JSON body, and who a request is.
SELECT status, token IS NOT NULL AS token, document::jsonb ?& '{role,csrf_token,expires_at}' AS doc, retry_after
FROM opsflags_internal.api_sign_in('{"role": "regress_api_admin", "password": "admin api pass"}', '127.0.0.1', 'regress');
SELECT status, token, document, retry_after
FROM (VALUES ('{"role": "regress_api_admin", "password": "wrong"}'), ('{"role": "regress_api_admin"}'),
             ('not json'), ('{"role": 1, "password": "x"}'), (NULL)) v(b),
     LATERAL opsflags_internal.api_sign_in(b, '127.0.0.1', NULL);
SELECT s.token AS tok, s.document::jsonb ->> 'csrf_token' AS csrf
FROM opsflags_internal.api_sign_in('{"role": "regress_api_viewer", "password": "viewer api pass"}', '::1', NULL) s \gset
SELECT status, role_oid = 'regress_api_viewer'::regrole AS is_viewer, key_id,
       document::jsonb ->> 'role' AS role, document::jsonb ->> 'csrf_token' = :'csrf' AS csrf
FROM opsflags_internal.api_authenticate(:'tok', NULL, NULL);
SELECT status, role_oid = 'regress_api_viewer'::regrole AS is_viewer FROM opsflags_internal.api_authenticate(:'tok', :'csrf', NULL);
SELECT status, role_oid, document FROM opsflags_internal.api_authenticate(:'tok', 'wrong', NULL);
SELECT status, role_oid, document FROM opsflags_internal.api_authenticate('no-such-token', NULL, NULL);
SELECT status, role_oid, document FROM opsflags_internal.api_authenticate(NULL, NULL, NULL);
-- Admin API keys act as their role; other keys are refused.
SELECT opsflags.create_api_key('production', 'admin', 'regress', 'regress_api_admin') AS admin_key \gset
SELECT opsflags.create_api_key('production', 'server', 'regress') AS server_key \gset
SELECT status, role_oid = 'regress_api_admin'::regrole AS is_admin, key_id IS NOT NULL AS key, document::jsonb ->> 'role' AS role
FROM opsflags_internal.api_authenticate(NULL, NULL, :'admin_key');
SELECT status, document FROM opsflags_internal.api_authenticate(NULL, NULL, :'server_key');
SELECT status, document FROM opsflags_internal.api_authenticate(:'tok', NULL, 'opsf_a_000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');
-- Throttled after 5 failures: 429 with the seconds left.
SELECT status, retry_after BETWEEN 800 AND 900 AS retry_after
FROM generate_series(1, 6) i,
     LATERAL opsflags_internal.api_sign_in('{"role": "regress_api_viewer", "password": "wrong ' || i || '"}', '10.0.0.9', NULL)
ORDER BY i;
-- Neither the password nor the token is in the audit log.
SELECT count(*) AS leaks FROM opsflags.audit_log
WHERE id > :audit_start AND (new_values::text LIKE '%api pass%' OR new_values::text LIKE '%' || :'tok' || '%');
-- Only the server's worker signs in or authenticates.
SET ROLE regress_api_admin;
SELECT * FROM opsflags_internal.api_authenticate(NULL, NULL, NULL);
SELECT * FROM opsflags_internal.api_sign_in('{}', NULL, NULL);
RESET ROLE;

-- The OpenAPI document lists what api_call serves.
SELECT d ->> 'openapi' AS openapi, (SELECT array_agg(p ORDER BY p) FROM jsonb_object_keys(d -> 'paths') p) AS paths
FROM opsflags_internal.api_openapi() d;

-- Clean up.
SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys WHERE description = 'regress' ORDER BY id;
DELETE FROM opsflags_internal.console_sessions;
DELETE FROM opsflags_internal.console_signin_failures;
SELECT opsflags.archive_flag('api-one');
SELECT opsflags.delete_flag('api-one');
SELECT opsflags.config_delete('api.limit', 'staging'), opsflags.config_delete('api.secret', 'all');
DELETE FROM opsflags.user_segments WHERE segment_key = 'api-beta';
DELETE FROM opsflags.deployment_history WHERE version LIKE 'api-%';
REVOKE ALL ON opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.flag_prerequisites,
              opsflags.environments FROM regress_api_viewer;
REVOKE ALL ON FUNCTION opsflags.get_flag(text, text), opsflags.resolve_environment(text), opsflags.flag_id(text),
                       opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text)
FROM regress_api_viewer;
DROP ROLE regress_api_admin, regress_api_viewer;
