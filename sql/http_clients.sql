-- http_clients: what the HTTP server's LaunchDarkly client-side and Unleash
-- endpoints ask the database (src/http_launchdarkly.sql,
-- src/http_unleash.sql): statuses, documents, reasons, variants, contexts
-- from query strings, ETags and keys.  Documents are shown for this file's
-- flags only (evaluate_all answers for every flag of the environment).
SET opsflags.environment = 'production';
SELECT opsflags.create_flag('hc.bool', 'hc.bool', NULL, 'boolean', '[true, false]') IS NOT NULL AS created;
SELECT opsflags.update_flag('hc.bool', '{"is_enabled": true, "rules": [{"id": "other", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "serve": {"variation": 0}}, {"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 1}}]}', 'production') IS NOT NULL AS updated;
SELECT opsflags.create_flag('hc.theme', 'hc.theme', NULL, 'string', '["light", "dark"]', '{}', '["light", "dark"]') IS NOT NULL AS created;
SELECT opsflags.update_flag('hc.theme', '{"is_enabled": true, "on_variation": 1, "off_variation": 0}', 'production') IS NOT NULL AS updated;
SELECT opsflags.update_flag('hc.theme', '{"is_enabled": true, "on_variation": 0, "off_variation": 0}', 'staging') IS NOT NULL AS updated;
SELECT opsflags.create_flag('hc.off', 'hc.off', NULL, 'boolean', '[true, false]') IS NOT NULL AS created;
SELECT opsflags.update_flag('hc.off', '{"is_enabled": false, "off_variation": null}', 'production') IS NOT NULL AS updated;

CREATE FUNCTION pg_temp.mine(doc text) RETURNS jsonb LANGUAGE sql
RETURN (SELECT jsonb_object_agg(key, value) FROM jsonb_each(doc::jsonb) WHERE key LIKE 'hc.%');
CREATE FUNCTION pg_temp.b64url(t text) RETURNS text LANGUAGE sql
RETURN rtrim(translate(encode(convert_to(t, 'UTF8'), 'base64'), E'+/\n', '-_'), '=');

-- LaunchDarkly: GET (base64url), REPORT (JSON), with reasons
SELECT status, etag IS NOT NULL AS etag, pg_temp.mine(document)
FROM opsflags_internal.launchdarkly_answer('production', pg_temp.b64url('{"kind": "user", "key": "u1", "country": "DE"}'), true, false, NULL);
SELECT status, pg_temp.mine(document)
FROM opsflags_internal.launchdarkly_answer('production', '{"kind": "multi", "user": {"key": "u2", "country": "FR"}, "org": {"key": "o"}}', false, true, NULL);
SELECT status, pg_temp.mine(document)
FROM opsflags_internal.launchdarkly_answer('production', '{"key": "u3", "country": "DE"}', false, true, NULL);
-- the same answer with its own ETag is 304; another context's ETag is not
SELECT a.status, b.status AS again, c.status AS other, b.document AS again_document
FROM opsflags_internal.launchdarkly_answer('production', '{"key": "u1"}', false, false, NULL) a,
     opsflags_internal.launchdarkly_answer('production', '{"key": "u1"}', false, false, a.etag) b,
     opsflags_internal.launchdarkly_answer('production', '{"key": "u9", "country": "DE"}', false, false, a.etag) c;
-- errors: not base64url JSON, not an object, not JSON, an unknown environment
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer('production', '%%%', true, false, NULL);
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer('production', '[1]', false, false, NULL);
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer('production', '{"key": ', false, false, NULL);
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer('production', NULL, false, false, NULL);
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer('nope', '{}', false, false, NULL);
SELECT status, etag, document FROM opsflags_internal.launchdarkly_answer(NULL, '{}', false, false, NULL);

-- LaunchDarkly reasons from feature_explain's
SELECT r AS reason, opsflags_internal.launchdarkly_reason(jsonb_build_object('reason', r, 'rule', rule), rules)
FROM (VALUES ('OFF', NULL, '[]'::jsonb), ('SCHEDULE', NULL, '[]'), ('PREREQUISITE_FAILED', NULL, '[]'),
             ('TARGET_USER', NULL, '[]'), ('TARGET_ROLE', NULL, '[]'), ('SEGMENT_MATCH', NULL, '[]'),
             ('RULE_MATCH', 'b', '[{"id": "a"}, {"id": "b"}]'),
             ('RULE_MATCH', 'ld-rule-0', '[{"id": "ld-target-0"}, {"id": "ld-target-1"}, {"id": "ld-rule-0"}]'),
             ('RULE_MATCH', 'ld-target-1', '[{"id": "ld-target-0"}, {"id": "ld-target-1"}, {"id": "ld-rule-0"}]'),
             ('ROLLOUT_IN', NULL, '[]'), ('ROLLOUT_OUT', NULL, '[]'), ('FALLTHROUGH', NULL, '[]'),
             ('NO_MATCH', NULL, '[]'), ('ERROR', NULL, '[]')) v(r, rule, rules);
SELECT opsflags_internal.launchdarkly_reason('{"reason": "FALLTHROUGH", "in_experiment": true}', '[]');

-- Unleash: query strings
SELECT opsflags_internal.url_decode('a%20b+c%C3%A9%2B%') AS decoded, opsflags_internal.url_decode('%FF') IS NULL AS not_utf8,
       opsflags_internal.url_decode('') AS empty;
SELECT opsflags_internal.unleash_query_context('userId=u1&properties%5Bcountry%5D=DE&properties[plan]=pro&flag&appName=a%26b');
SELECT opsflags_internal.unleash_query_context(NULL) AS none, opsflags_internal.unleash_query_context('userId=%FF') AS not_utf8;

-- Unleash: variants
SELECT x, opsflags_internal.unleash_frontend_variant(x)
FROM (VALUES ('{"enabled": true, "variant": null, "value": true}'::jsonb),
             ('{"enabled": true, "variant": "blue", "value": {"type": "string", "value": "b"}}'),
             ('{"enabled": true, "variant": "dark", "value": "dark"}'),
             ('{"enabled": true, "variant": "ten", "value": 10}'),
             ('{"enabled": true, "variant": "obj", "value": {"a": [1]}}'),
             ('{"enabled": true, "variant": "none", "value": null}')) v(x);

-- Unleash: the frontend API (GET: the query; POST: the body), the client API
SELECT status, etag IS NOT NULL AS etag,
       (SELECT jsonb_agg(t) FROM jsonb_array_elements(document::jsonb -> 'toggles') t WHERE t ->> 'name' LIKE 'hc.%') AS toggles
FROM opsflags_internal.unleash_frontend_answer(NULL, 'userId=u1&properties[country]=FR', NULL, NULL);
SELECT status, (SELECT jsonb_agg(t ->> 'name') FROM jsonb_array_elements(document::jsonb -> 'toggles') t WHERE t ->> 'name' LIKE 'hc.%') AS toggles
FROM opsflags_internal.unleash_frontend_answer(NULL, NULL, '{"context": {"userId": "u1", "properties": {"country": "DE"}}}', NULL);
SELECT status, (SELECT jsonb_agg(t ->> 'name') FROM jsonb_array_elements(document::jsonb -> 'toggles') t WHERE t ->> 'name' LIKE 'hc.%') AS toggles
FROM opsflags_internal.unleash_frontend_answer(NULL, NULL, '{"userId": "u1", "country": "DE"}', NULL);
SELECT status, document FROM opsflags_internal.unleash_frontend_answer(NULL, NULL, '{"context": ', NULL);
SELECT status, document FROM opsflags_internal.unleash_frontend_answer(NULL, NULL, '{"context": 1}', NULL);
SELECT status, document FROM opsflags_internal.unleash_frontend_answer(NULL, 'userId=%FF', NULL, NULL);
SELECT a.status, b.status AS again, b.document AS again_document
FROM opsflags_internal.unleash_frontend_answer(NULL, 'userId=u1', NULL, NULL) a,
     opsflags_internal.unleash_frontend_answer(NULL, NULL, '{"context": {"userId": "u1"}}', a.etag) b;
SELECT status, document::jsonb = opsflags.unleash_features('production') AS features, etag IS NOT NULL AS etag
FROM opsflags_internal.unleash_client_answer(NULL, NULL);
SELECT b.status, b.document FROM opsflags_internal.unleash_client_answer(NULL, NULL) a,
                                 opsflags_internal.unleash_client_answer(NULL, a.etag) b;

-- Unleash: metrics, added to flag_usage (toggles that are no flag ignored)
SELECT true_count AS t0, false_count AS f0 FROM opsflags.flag_usage WHERE flag_key = 'hc.bool' \gset
SELECT status, document
FROM opsflags_internal.unleash_metrics_answer(NULL, '{server}', '{"bucket": {"toggles": {"hc.bool": {"yes": 2, "no": 1, "variants": {}}, "hc.nope": {"yes": 5}, "hc.theme": {}}}}');
SELECT true_count - :t0 AS yes, false_count - :f0 AS no FROM opsflags.flag_usage WHERE flag_key = 'hc.bool';
SELECT count(*) AS nope FROM opsflags.flag_usage_counts() WHERE flag_key = 'hc.nope';
SELECT b AS body, (SELECT status FROM opsflags_internal.unleash_metrics_answer(NULL, '{server}', b))
FROM (VALUES ('{"bucket": {"toggles": {"hc.bool": {"yes": -1}}}}'), ('{"bucket": {"toggles": {"hc.bool": {"yes": 1.5}}}}'),
             ('{"bucket": {"toggles": {"hc.bool": {"no": "1"}}}}'), ('{"bucket": {"toggles": {"hc.bool": 3}}}'),
             ('{"bucket": {}}'), ('[]'), ('x'), (''), (NULL)) v(b);
SELECT true_count - :t0 AS yes, false_count - :f0 AS no FROM opsflags.flag_usage WHERE flag_key = 'hc.bool';
SELECT opsflags_internal.usage_add('hc.bool', -1, 0);
SELECT opsflags_internal.usage_add(repeat('k', 101), 1, 0);

-- Keys: once production has one, a name or nothing is 401, another
-- environment's key evaluates that environment, a client key is not a
-- server key, an admin key serves neither
SELECT opsflags.create_api_key('production', 'client', 'http_clients') AS ckey \gset
SELECT opsflags.create_api_key('staging', 'client', 'http_clients') AS skey \gset
SELECT opsflags.create_api_key('production', 'admin', 'http_clients', as_role => 'opsflags_admin') AS akey \gset
SELECT (SELECT status FROM opsflags_internal.launchdarkly_answer('production', '{}', false, false, NULL)) AS ld_name,
       (SELECT status FROM opsflags_internal.launchdarkly_answer(:'ckey', '{}', false, false, NULL)) AS ld_key,
       (SELECT pg_temp.mine(document) -> 'hc.theme' FROM opsflags_internal.launchdarkly_answer(:'skey', '{}', false, false, NULL)) AS ld_staging_theme,
       (SELECT status FROM opsflags_internal.launchdarkly_answer(:'akey', '{}', false, false, NULL)) AS ld_admin,
       (SELECT status FROM opsflags_internal.unleash_frontend_answer(NULL, '', NULL, NULL)) AS frontend_none,
       (SELECT status FROM opsflags_internal.unleash_frontend_answer(:'ckey', '', NULL, NULL)) AS frontend_key,
       (SELECT status FROM opsflags_internal.unleash_client_answer(:'ckey', NULL)) AS client_api_client_key,
       (SELECT status FROM opsflags_internal.unleash_client_answer(NULL, NULL)) AS client_api_none,
       (SELECT status FROM opsflags_internal.unleash_metrics_answer(:'ckey', '{server}', '{}')) AS metrics_client_key,
       (SELECT status FROM opsflags_internal.unleash_metrics_answer(:'ckey', '{client,server}', '{"bucket": {"toggles": {}}}')) AS frontend_metrics;
-- the key used is reported (for its last_used_at), the name is no key
SELECT (SELECT key_id FROM opsflags_internal.launchdarkly_answer(:'ckey', '{}', false, false, NULL)) = k.id AS ld,
       (SELECT key_id FROM opsflags_internal.unleash_frontend_answer(:'ckey', '', NULL, NULL)) = k.id AS frontend,
       (SELECT key_id FROM opsflags_internal.unleash_metrics_answer(:'ckey', '{client,server}', '{"bucket": {"toggles": {}}}')) = k.id AS metrics,
       (SELECT key_id FROM opsflags_internal.unleash_client_answer(:'ckey', NULL)) = k.id AS client_api_refused
FROM opsflags.api_keys_view k WHERE k.description = 'http_clients' AND k.environment = 'production' AND k.kind = 'client';
SELECT (SELECT key_id FROM opsflags_internal.launchdarkly_answer('staging', '{}', false, false, NULL)) AS ld_name,
       (SELECT key_id FROM opsflags_internal.unleash_client_answer(NULL, NULL)) AS client_api_none;
SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = 'http_clients';
SELECT (SELECT status FROM opsflags_internal.launchdarkly_answer(:'ckey', '{}', false, false, NULL)) AS ld_revoked,
       (SELECT status FROM opsflags_internal.launchdarkly_answer('production', '{}', false, false, NULL)) AS ld_name_again,
       (SELECT document FROM opsflags_internal.unleash_client_answer(:'ckey', NULL)) AS client_api_revoked;
DELETE FROM opsflags.api_keys WHERE description = 'http_clients';

-- Nobody else may call them
SET ROLE opsflags_admin;
SELECT * FROM opsflags_internal.launchdarkly_answer('production', '{}', false, false, NULL);
SELECT * FROM opsflags_internal.unleash_frontend_answer(NULL, '', NULL, NULL);
RESET ROLE;

SELECT opsflags.archive_flag(k), opsflags.delete_flag(k) FROM unnest('{hc.bool,hc.theme,hc.off}'::text[]) k;
