-- Unleash import and export: import_unleash maps an Unleash client document
-- onto flags, rules, segments and prerequisites; unleash_features exports
-- an environment's flags in that format.  Errors: 22023 for a malformed
-- document (nothing written), 55000 for an archived flag, 42501 for a role
-- that is not opsflags_admin.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- An environment of its own: the export holds every flag of an environment,
-- and other tests' flags are not Unleash features (importing an export of
-- a flag whose variations do not begin with true, false is refused).
INSERT INTO opsflags.environments (name) VALUES ('unleash-test');
SET opsflags.environment = 'unleash-test';

\set doc '{"version": 2, "segments": [{"id": 7, "name": "eu", "constraints": [{"contextName": "region", "operator": "IN", "values": ["eu", " de ", ""]}]}], "features": [{"name": "u.checkout", "enabled": true, "strategies": [{"name": "userWithId", "parameters": {"userIds": "u1, u2"}}, {"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "default", "groupId": "g"}, "constraints": [{"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@example.com"], "caseInsensitive": true}, {"contextName": "appVersion", "operator": "SEMVER_LT", "value": "v2.0.0", "inverted": true}], "segments": [7]}, {"name": "applicationHostname", "parameters": {"hostNames": "db1"}}], "variants": [{"name": "blue", "weight": 500, "payload": {"type": "string", "value": "b"}}, {"name": "green", "weight": 500, "stickiness": "default", "overrides": [{"contextName": "userId", "values": ["u2"]}]}]}, {"name": "u.banner", "enabled": true, "strategies": [], "dependencies": [{"feature": "u.checkout"}]}, {"name": "u.legacy", "enabled": false, "strategies": [{"name": "default", "constraints": [{"contextName": "level", "operator": "NUM_GT", "value": "x"}, {"contextName": "x", "operator": "NOT_AN_OPERATOR", "values": ["1"]}]}]}]}'

-- The first import creates; the report names flags and segments.
SELECT jsonb_pretty(opsflags.import_unleash('unleash-test', :'doc'));
SELECT f.flag_key, f.flag_type, f.variations, f.variation_names FROM opsflags.feature_flags f
WHERE f.flag_key LIKE 'u.%' ORDER BY 1;
SELECT f.flag_key || ': ' || jsonb_pretty(jsonb_build_object('is_enabled', c.is_enabled, 'rules', c.rules,
                                                             'serve', c.serve, 'fallthrough', c.fallthrough)) AS config
FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = 'unleash-test'
WHERE f.flag_key LIKE 'u.%' ORDER BY 1;
SELECT segment_key, name, rules FROM opsflags.user_segments WHERE segment_key LIKE 'unleash-%';
SELECT f.flag_key, p.flag_key AS prerequisite, fp.enabled, fp.variants FROM opsflags.flag_prerequisites fp
JOIN opsflags.feature_flags f ON f.id = fp.flag_id JOIN opsflags.feature_flags p ON p.id = fp.prerequisite_id
WHERE f.flag_key LIKE 'u.%';

-- Evaluation is native.
SELECT ctx, opsflags.feature_enabled('u.checkout', ctx) AS checkout,
       opsflags.feature_explain('u.checkout', ctx) ->> 'variant' AS variant,
       opsflags.feature_enabled('u.banner', ctx) AS banner
FROM (VALUES ('{"userId": "u1"}'::jsonb), ('{"userId": "u2"}'), ('{"userId": "u3"}'),
             ('{"userId": "u9", "properties": {"email": "A@EXAMPLE.COM", "region": "de"}}')) v(ctx);

-- A second import, and the import of the export, change nothing.
SELECT opsflags.import_unleash('unleash-test', :'doc') - 'environment';
SELECT opsflags.import_unleash('unleash-test', opsflags.unleash_features('unleash-test')) - 'environment';
SELECT jsonb_pretty(f) FROM jsonb_array_elements(opsflags.unleash_features('unleash-test') -> 'features') f
WHERE f ->> 'name' = 'u.checkout';

-- A targeted segment's rules are exported up to the first that excludes
-- (Unleash's strategies only include).
SELECT opsflags.create_segment('u.seg', 'u.seg', rules => '[{"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]},
    {"id": "no-fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "exclude": true},
    {"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]') IS NOT NULL AS created;
SELECT opsflags.create_flag('u.segflag') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = false, segments = '["u.seg"]'
WHERE flag_id = opsflags.flag_id('u.segflag') AND environment = 'unleash-test';
SELECT jsonb_pretty(f -> 'strategies') AS strategies FROM jsonb_array_elements(opsflags.unleash_features('unleash-test') -> 'features') f
WHERE f ->> 'name' = 'u.segflag';

-- Delta API events: a feature removed is off.
SELECT opsflags.import_unleash('unleash-test', '{"events": [{"eventId": 1, "type": "feature-removed", "featureName": "u.banner", "project": "default"}]}') - 'environment';
SELECT opsflags.feature_enabled('u.banner', '{}'::jsonb);

-- Errors (SQLSTATE after each): nothing is written.
SELECT opsflags.import_unleash('unleash-test', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "bad key!", "enabled": true}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "u.x", "strategies": [{"name": "default", "constraints": [{"operator": "IN"}]}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "u.x", "strategies": [{"parameters": {}}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "u.x", "variants": [{"name": "a", "weight": 1.5}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "u.x", "variants": [{"name": "a", "weight": 1, "payload": {"type": "string", "value": "1"}}], "strategies": [{"name": "default", "variants": [{"name": "a", "weight": 1, "payload": {"type": "string", "value": "2"}}]}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"features": [{"name": "u.x"}, {"name": "u.x"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('unleash-test', '{"events": [{"eventId": 1, "type": "feature-renamed"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.import_unleash('nowhere', '{"features": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM opsflags.feature_flags WHERE flag_key = 'u.x';
SELECT opsflags.archive_flag('u.legacy');
SELECT opsflags.import_unleash('unleash-test', :'doc');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.restore_flag('u.legacy');

-- Admins only.
CREATE ROLE unleash_nobody;
SET ROLE unleash_nobody;
SELECT opsflags.import_unleash('unleash-test', '{"features": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT opsflags.unleash_features('unleash-test');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE unleash_nobody;

-- Leave nothing behind for the tests that follow.
DELETE FROM opsflags.flag_prerequisites p USING opsflags.feature_flags f WHERE f.id = p.flag_id AND f.flag_key LIKE 'u.%';
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'u.%';
DELETE FROM opsflags.user_segments WHERE segment_key IN ('unleash-segment-7', 'u.seg');
DELETE FROM opsflags.environments WHERE name = 'unleash-test';
RESET opsflags.environment;
