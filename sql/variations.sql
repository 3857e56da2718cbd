-- Variations: what feature_value serves, and feature_explain's account of it.
\set SHOW_CONTEXT never

-- The Unleash variant hash (seed 86028157), independent of the rollout's.
SELECT opsflags.variant_bucket('gr1', '123', 100) AS gr1_123;

-- A string flag: on serves the first variation, off the second, until set.
SELECT opsflags.create_flag('ui.theme', 'Theme', NULL, 'string', '["light", "dark", "contrast"]') IS NOT NULL AS created;
SELECT opsflags.feature_value('ui.theme', 'u1') AS off_value;
SELECT opsflags.update_flag('ui.theme', '{"is_enabled": true, "on_variation": 2, "off_variation": 0}');
SELECT opsflags.feature_value('ui.theme', 'u1') AS on_value;
SELECT opsflags.feature_explain('ui.theme', 'u1') - 'flag_version' AS explain;

-- A weighted split among the variations for users who get the flag.
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [50, 30, 20]}');
SELECT v AS value, round(count(*) / 100.0) AS percent
FROM (SELECT opsflags.feature_value('ui.theme', 'user-' || i) v FROM generate_series(1, 10000) i) s
GROUP BY v ORDER BY v;
-- Without a user id there is nothing to split on: the on variation.
SELECT opsflags.feature_value('ui.theme') AS anonymous;

-- Each reason feature_explain gives.
SELECT opsflags.create_flag('explain.flag', 'Explained') IS NOT NULL AS created;
SELECT opsflags.update_flag('explain.flag',
    '{"is_enabled": true, "enabled_for_users": ["vip"], "enabled_for_roles": ["admin"], "enabled_percentage": 50}');
SELECT u AS user_id, r AS user_role, e ->> 'reason' AS reason, e -> 'enabled' AS enabled,
       e -> 'value' AS value, e -> 'bucket' AS bucket
FROM (VALUES ('vip', NULL), ('someone', 'admin'), ('alice', NULL), ('carol', NULL), (NULL, NULL)) v(u, r),
     LATERAL opsflags.feature_explain('explain.flag', u, r) e;
SELECT opsflags.update_flag('explain.flag', '{"enable_at": "2999-01-01T00:00:00Z"}');
SELECT opsflags.feature_explain('explain.flag', 'vip') ->> 'reason' AS scheduled;
SELECT opsflags.toggle_flag('explain.flag', false);
SELECT opsflags.feature_explain('explain.flag', 'vip') ->> 'reason' AS switched_off;
SELECT opsflags.archive_flag('explain.flag');
SELECT opsflags.feature_explain('explain.flag', 'vip') ->> 'reason' AS archived,
       opsflags.feature_explain('no.such.flag') ->> 'reason' AS unknown,
       opsflags.feature_value('no.such.flag') IS NULL AS unknown_value_is_null;

-- Bad input: clear errors, nothing written.
SELECT opsflags.update_flag('ui.theme', '{"on_variation": 3}');
SELECT opsflags.update_flag('ui.theme', '{"off_variation": -1}');
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [0, 0, 0]}');
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [60, 40]}');
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [50, 30.5, 19.5]}');
SELECT opsflags.update_flag('ui.theme', '{"variations": ["only"]}');
SELECT opsflags.create_flag('empty.variations', 'x', NULL, 'json', '[]');
SELECT c.on_variation, c.off_variation, c.variation_weights, f.variations
FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
WHERE f.flag_key = 'ui.theme' AND c.environment = 'production';

-- Variations match the flag's type: booleans, strings, numbers; json takes anything.
SELECT opsflags.create_flag('t.num', 'n', NULL, 'number', '[1, "a"]');
SELECT opsflags.create_flag('t.str', 's', NULL, 'string', '["a", null]');
SELECT opsflags.create_flag('t.bool', 'b', NULL, 'boolean', '[true, "yes"]');
SELECT opsflags.create_flag('t.bool', 'b', NULL, 'boolean', '[true, true]');
SELECT opsflags.create_flag('t.str', 's', NULL, 'string');
SELECT opsflags.create_flag('t.scalar', 's', NULL, 'json', '"x"');
SELECT opsflags.update_flag('ui.theme', '{"variations": {"light": 1}}');
SELECT opsflags.update_flag('ui.theme', '{"variations": ["light", "dark", 3]}');
UPDATE opsflags.feature_flags SET variations = '["light", {"dark": true}, "contrast"]' WHERE flag_key = 'ui.theme';
SELECT opsflags.create_flag('t.json', 'j', NULL, 'json', '[{"a": 1}, [1, 2], "x", 2.5, null]') IS NOT NULL AS json_takes_anything;
SELECT opsflags.create_flag('t.flip', 'f', NULL, 'boolean', '[false, true]') IS NOT NULL AS false_first;
SELECT c.on_variation, c.off_variation FROM opsflags.feature_flag_configs c
WHERE c.flag_id = opsflags.flag_id('t.flip') AND c.environment = 'production';

-- Any variation may be served on or off: a boolean one served decides what
-- feature_enabled says, so it and feature_value always agree.
SELECT opsflags.update_flag('t.flip', '{"on_variation": 0, "off_variation": 1}');
SELECT opsflags.toggle_flag('t.flip', true);
SELECT opsflags.feature_enabled('t.flip', 'u1'), opsflags.feature_value('t.flip', 'u1'),
       opsflags.feature_explain('t.flip', 'u1') ->> 'reason' AS reason;
SELECT opsflags.toggle_flag('t.flip', false);
SELECT opsflags.feature_enabled('t.flip', 'u1'), opsflags.feature_value('t.flip', 'u1'),
       opsflags.feature_explain('t.flip', 'u1') ->> 'reason' AS reason;
-- A split over true and false: each user's value is what feature_enabled says.
SELECT opsflags.update_flag('t.flip', '{"is_enabled": true, "variation_weights": [50, 50]}');
SELECT count(*) AS users, count(*) FILTER (WHERE opsflags.feature_enabled('t.flip', u)) AS enabled,
       count(*) FILTER (WHERE opsflags.feature_enabled('t.flip', u) IS DISTINCT FROM (opsflags.feature_value('t.flip', u))::boolean) AS disagree
FROM (SELECT 'user-' || i AS u FROM generate_series(1, 200) i) us;
-- No off variation: off serves no value.
SELECT opsflags.update_flag('t.flip', '{"is_enabled": false, "off_variation": null, "variation_weights": null}');
SELECT opsflags.feature_enabled('t.flip', 'u1'), opsflags.feature_value('t.flip', 'u1') IS NULL AS no_value,
       opsflags.feature_explain('t.flip', 'u1') -> 'variation' AS variation;
SELECT opsflags.update_flag('t.flip', '{"off_variation": 0, "on_variation": 1}');

-- Limits: weights fit 32-bit evaluation, at most max_variations() variations.
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [1, 2147483647, 2147483647]}');
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [10000000000, 1, 0]}');
UPDATE opsflags.feature_flag_configs SET variation_weights = '[2147483647, 1, 0]'
WHERE flag_id = opsflags.flag_id('ui.theme');
SELECT opsflags.max_variations();
SELECT opsflags.create_flag('t.many', 'm', NULL, 'number', (SELECT jsonb_agg(i) FROM generate_series(1, 1001) i));
SELECT opsflags.create_flag('t.many', 'm', NULL, 'number', (SELECT jsonb_agg(i) FROM generate_series(1, 1000) i)) IS NOT NULL AS thousand_is_fine;
SELECT opsflags.import_launchdarkly('production', '{"t.huge": {"value": "x", "variation": 5000000}}');
SELECT opsflags.import_launchdarkly('production', '{"t.num": {"value": "a"}, "ui.theme": {"value": 3}}');
SELECT opsflags.update_flag('ui.theme', '{"variation_weights": [2147483645, 1, 1]}');
SELECT count(*) AS created FROM opsflags.feature_flags WHERE flag_key IN ('t.num', 't.str', 't.bool', 't.huge');
