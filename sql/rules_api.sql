-- The flag and segment API for targeting rules (docs/rules.md): update_flag's
-- rules, serve, fallthrough and variation_names; create_flag's
-- variation_names; create_segment's and update_segment's rules; add_rule and
-- remove_rule; what get_flag shows; the API's own errors.  (Rules the
-- engine refuses are in rules.)
\set SHOW_CONTEXT never

SELECT opsflags.create_flag('api.theme', 'Theme', NULL, 'string', '["light", "dark", "contrast"]',
                            variation_names => '["light", "dark", null]') IS NOT NULL AS created;
SELECT opsflags.update_flag('api.theme', '{"is_enabled": true, "serve": {"variation": 1}, "fallthrough": {"off": true},
    "rules": [{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 2}}]}');
SELECT jsonb_pretty(jsonb_build_object('variation_names', d -> 'variation_names', 'rules', d #> '{config,rules}',
                                       'serve', d #> '{config,serve}', 'fallthrough', d #> '{config,fallthrough}'))
FROM opsflags.get_flag('api.theme') d;
SELECT ctx, opsflags.feature_explain('api.theme', ctx) - 'environment' - 'flag_version' - 'bucket' AS explain
FROM (VALUES ('{"key": "u1", "country": "DE"}'::jsonb), ('{"key": "u1", "country": "FR"}')) v(ctx);
-- The former name takes the new fields too; null serve and fallthrough
-- are the defaults again; variation_names null: no names.
SELECT opsflags.update_feature_flag('api.theme', '{"serve": null, "fallthrough": null, "variation_names": null}');
SELECT d -> 'variation_names' AS names, d #> '{config,serve}' AS serve, d #> '{config,fallthrough}' AS fallthrough
FROM opsflags.get_flag('api.theme') d;
-- Another environment's rules are its own.
SELECT opsflags.update_flag('api.theme', '{"rules": []}', 'staging');
SELECT e, jsonb_array_length(opsflags.get_flag('api.theme', e) #> '{config,rules}') AS rules
FROM unnest(ARRAY['production', 'staging']) e;

-- The API's checks, before anything is written (22023, naming the field).
SELECT opsflags.update_flag('api.theme', '{"rules": {"id": "x"}}');
SELECT opsflags.update_flag('api.theme', '{"rules": null}');
SELECT opsflags.update_flag('api.theme', '{"rules": ["x"]}');
SELECT opsflags.update_flag('api.theme', '{"serve": 1}');
SELECT opsflags.update_flag('api.theme', '{"fallthrough": "off"}');
SELECT opsflags.update_flag('api.theme', '{"variation_names": ["a", "b"]}');
SELECT opsflags.update_flag('api.theme', '{"variation_names": ["a", "a", null]}');
SELECT opsflags.update_flag('api.theme', '{"variation_names": ["a", "", null]}');
SELECT opsflags.update_flag('api.theme', '{"variation_names": "abc"}');
SELECT opsflags.create_flag('api.bad', NULL, NULL, 'string', '["x", "y"]', variation_names => '["x"]');
SELECT opsflags.get_flag('api.bad') IS NULL AS not_created;
-- Names follow the variations they name: both change in one update.
SELECT opsflags.update_flag('api.theme', '{"variations": ["light", "dark", "contrast", "sepia"], "variation_names": ["l", "d", "c", "s"]}');
SELECT opsflags.get_flag('api.theme') -> 'variation_names' AS names;
-- A bad rule is refused by the config's trigger, with the rest of the update.
SELECT opsflags.update_flag('api.theme', '{"is_enabled": false, "rules": [{"id": "x", "clauses": [{"attribute": "a", "op": "nope", "values": []}]}]}') IS NULL;
SELECT d #> '{config,is_enabled}' AS is_enabled, jsonb_array_length(d #> '{config,rules}') AS rules
FROM opsflags.get_flag('api.theme') d;

-- add_rule: last, or at a position from 0; remove_rule.
SELECT opsflags.add_rule('api.theme', '{"id": "fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "serve": {"variation": 0}}');
SELECT opsflags.add_rule('api.theme', '{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}]}', at_position => 0);
SELECT jsonb_path_query_array(opsflags.get_flag('api.theme'), '$.config.rules[*].id') AS rule_ids;
SELECT opsflags.add_rule('api.theme', '{"id": "fr"}');
SELECT opsflags.add_rule('api.theme', '{"id": "x"}', NULL, 4);
SELECT opsflags.add_rule('api.theme', '{"id": "x"}', NULL, -1);
SELECT opsflags.add_rule('api.theme', '["x"]');
SELECT opsflags.add_rule('api.theme', '{"clauses": []}');
SELECT opsflags.add_rule('api.theme', NULL);
SELECT opsflags.add_rule('api.nope', '{"id": "x"}');
SELECT opsflags.add_rule('api.theme', '{"id": "x"}', 'nowhere');
SELECT opsflags.remove_rule('api.theme', 'fr') AS removed, opsflags.remove_rule('api.theme', 'fr') AS again;
SELECT opsflags.remove_rule('api.theme', NULL);
SELECT jsonb_path_query_array(opsflags.get_flag('api.theme'), '$.config.rules[*].id') AS rule_ids;
-- In an environment without a config row yet, add_rule creates it.
INSERT INTO opsflags.environments (name) VALUES ('api-env');
SELECT opsflags.add_rule('api.theme', '{"id": "first"}', 'api-env');
SELECT d #> '{config,rules}' AS rules, d #> '{config,is_enabled}' AS is_enabled
FROM opsflags.get_flag('api.theme', 'api-env') d;

-- Segments with rules.
SELECT opsflags.create_segment('api.pro', 'Pro plans', rules => '[{"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]') IS NOT NULL AS created;
SELECT opsflags.update_flag('api.theme', '{"rules": [{"id": "pro", "segments": ["api.pro"]}]}');
SELECT opsflags.feature_explain('api.theme', '{"key": "u9", "plan": "pro"}'::jsonb) ->> 'rule' AS pro,
       opsflags.feature_explain('api.theme', '{"key": "u9", "plan": "free"}'::jsonb) ->> 'rule' AS free;
SELECT opsflags.update_segment('api.pro', rules => '[{"id": "free", "clauses": [{"attribute": "plan", "op": "in", "values": ["free"]}]}]');
SELECT opsflags.feature_explain('api.theme', '{"key": "u9", "plan": "pro"}'::jsonb) ->> 'rule' AS pro,
       opsflags.feature_explain('api.theme', '{"key": "u9", "plan": "free"}'::jsonb) ->> 'rule' AS free;
-- update_segment without rules keeps them.
SELECT opsflags.update_segment('api.pro', '["u1"]');
SELECT rules FROM opsflags.user_segments WHERE segment_key = 'api.pro';
-- Old calls still work (rules is the last argument).
SELECT opsflags.create_segment('api.old', 'Old call', '["u1"]', '[]', 'described') IS NOT NULL AS created;
SELECT opsflags.update_segment('api.old', '["u2"]', '["qa"]');
SELECT user_ids, roles, rules FROM opsflags.user_segments WHERE segment_key = 'api.old';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'api.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'api.%';
DELETE FROM opsflags.environments WHERE name = 'api-env';
