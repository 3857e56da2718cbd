-- Targeting rules (docs/rules.md): operators, rollouts, splits, serve and
-- fallthrough, segment rules, prerequisites, explain, and refused rules.
\set SHOW_CONTEXT never

SELECT opsflags.create_flag('rules.op', 'Operators') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';

-- Whether one clause holds for a context: the flag serves on only through
-- the rule (fallthrough off).
CREATE FUNCTION holds(clause jsonb, context jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE opsflags.feature_flag_configs
    SET rules = jsonb_build_array(jsonb_build_object('id', 'r1', 'clauses', jsonb_build_array(clause)))
    WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
    RETURN opsflags.feature_enabled('rules.op', context);
END
$$;

-- No rule, fallthrough off: NO_MATCH, off variation.
SELECT opsflags.feature_explain('rules.op', '{"key": "u1"}'::jsonb) - 'environment' - 'flag_version' AS no_match;

CREATE TABLE cases (n serial, clause jsonb, context jsonb);
INSERT INTO cases (clause, context) VALUES
-- in / not_in: typed, numbers numerically, booleans, case_insensitive, missing
('{"attribute": "country", "op": "in", "values": ["DE", "AT"]}', '{"country": "DE"}'),
('{"attribute": "country", "op": "in", "values": ["DE", "AT"]}', '{"country": "FR"}'),
('{"attribute": "country", "op": "in", "values": ["DE", "AT"]}', '{"country": "de"}'),
('{"attribute": "country", "op": "in", "values": ["DE", "AT"], "case_insensitive": true}', '{"country": "de"}'),
('{"attribute": "country", "op": "in", "values": ["DE"]}', '{}'),
('{"attribute": "country", "op": "in", "values": ["DE"], "negate": true}', '{}'),
('{"attribute": "country", "op": "not_in", "values": ["DE"]}', '{}'),
('{"attribute": "country", "op": "not_in", "values": ["DE"]}', '{"country": "DE"}'),
('{"attribute": "country", "op": "not_in", "values": ["DE"]}', '{"country": "FR"}'),
('{"attribute": "country", "op": "in", "values": ["DE"]}', '{"country": null}'),
('{"attribute": "country", "op": "in", "values": ["DE"]}', '{"properties": {"country": "DE"}}'),
('{"attribute": "age", "op": "in", "values": [1, 2.50, 3]}', '{"age": 2.5}'),
('{"attribute": "age", "op": "in", "values": [1, 2, 3]}', '{"age": 2.0}'),
('{"attribute": "age", "op": "in", "values": [1, 2, 3]}', '{"age": "2"}'),
('{"attribute": "age", "op": "in", "values": ["2"]}', '{"age": 2}'),
('{"attribute": "beta", "op": "in", "values": [true]}', '{"beta": true}'),
('{"attribute": "beta", "op": "in", "values": [true]}', '{"beta": false}'),
('{"attribute": "beta", "op": "in", "values": ["true"]}', '{"beta": true}'),
('{"attribute": "key", "op": "in", "values": ["u1"]}', '{"userId": "u1"}'),
('{"attribute": "/plan/tier", "op": "in", "values": ["pro"]}', '{"plan": {"tier": "pro"}}'),
('{"attribute": "/a~1b/c~0d", "op": "in", "values": ["x"]}', '{"a/b": {"c~d": "x"}}'),
('{"attribute": "/list/1", "op": "in", "values": ["b"]}', '{"list": ["a", "b"]}'),
('{"attribute": "country", "op": "in", "values": ["DE"]}', '{"kind": "multi", "user": {"key": "u1", "country": "DE"}, "org": {"country": "FR"}}'),
-- starts_with, ends_with, contains: strings only
('{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}', '{"email": "a@example.com"}'),
('{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}', '{"email": "a@EXAMPLE.com"}'),
('{"attribute": "email", "op": "ends_with", "values": ["@example.com"], "case_insensitive": true}', '{"email": "a@EXAMPLE.com"}'),
('{"attribute": "email", "op": "starts_with", "values": ["adm", "root"]}', '{"email": "root@x"}'),
('{"attribute": "email", "op": "starts_with", "values": ["adm"]}', '{"email": "user@x"}'),
('{"attribute": "email", "op": "contains", "values": ["@"]}', '{"email": "a@b"}'),
('{"attribute": "email", "op": "contains", "values": ["@"]}', '{"email": 5}'),
('{"attribute": "email", "op": "contains", "values": ["@"], "negate": true}', '{"email": 5}'),
('{"attribute": "name", "op": "contains", "values": ["ÄR"], "case_insensitive": true}', '{"name": "Bärbel"}'),
-- matches: PostgreSQL regular expressions, anywhere in the value
('{"attribute": "email", "op": "matches", "values": ["^[a-z]+@corp\\.com$"]}', '{"email": "ann@corp.com"}'),
('{"attribute": "email", "op": "matches", "values": ["^[a-z]+@corp\\.com$"]}', '{"email": "Ann@corp.com"}'),
('{"attribute": "email", "op": "matches", "values": ["^[a-z]+@corp\\.com$"], "case_insensitive": true}', '{"email": "Ann@corp.com"}'),
('{"attribute": "email", "op": "matches", "values": ["corp"]}', '{"email": 12}'),
-- numbers: JavaScript Number() of strings
('{"attribute": "age", "op": "gte", "values": [18]}', '{"age": 18}'),
('{"attribute": "age", "op": "gt", "values": [18]}', '{"age": 18}'),
('{"attribute": "age", "op": "lt", "values": [18]}', '{"age": " 17.5 "}'),
('{"attribute": "age", "op": "lte", "values": [18]}', '{"age": "0x12"}'),
('{"attribute": "age", "op": "eq", "values": [0]}', '{"age": ""}'),
('{"attribute": "age", "op": "eq", "values": [100]}', '{"age": "1e2"}'),
('{"attribute": "age", "op": "gt", "values": [1000]}', '{"age": "Infinity"}'),
('{"attribute": "age", "op": "lt", "values": [18]}', '{"age": "12abc"}'),
('{"attribute": "age", "op": "lt", "values": [18]}', '{"age": true}'),
('{"attribute": "age", "op": "lt", "values": [18]}', '{}'),
('{"attribute": "age", "op": "eq", "values": [0.1]}', '{"age": "0.1"}'),
-- dates: RFC 3339 or ms since 1970; currentTime missing: now
('{"attribute": "signup", "op": "before", "values": ["2024-01-01T00:00:00Z"]}', '{"signup": "2023-12-31T23:59:59.999Z"}'),
('{"attribute": "signup", "op": "before", "values": ["2024-01-01T00:00:00Z"]}', '{"signup": "2024-01-01T01:00:00+02:00"}'),
('{"attribute": "signup", "op": "after", "values": ["2024-01-01"]}', '{"signup": 1704067200001}'),
('{"attribute": "signup", "op": "after", "values": [1704067200000]}', '{"signup": "2024-01-01T00:00:00Z"}'),
('{"attribute": "signup", "op": "after", "values": ["2024-01-01"]}', '{"signup": "yesterday"}'),
('{"attribute": "currentTime", "op": "after", "values": ["2020-01-01T00:00:00Z"]}', '{}'),
('{"attribute": "currentTime", "op": "before", "values": ["2020-01-01T00:00:00Z"]}', '{}'),
('{"attribute": "currentTime", "op": "before", "values": ["2020-01-01T00:00:00Z"]}', '{"currentTime": "2019-06-01T12:00:00Z"}'),
-- semantic versions, pre-releases ordered as semver says
('{"attribute": "appVersion", "op": "semver_gte", "values": ["2.1.0"]}', '{"appVersion": "2.1.0"}'),
('{"attribute": "appVersion", "op": "semver_gt", "values": ["2.1.0"]}', '{"appVersion": "2.1.0-rc.1"}'),
('{"attribute": "appVersion", "op": "semver_lt", "values": ["2.1.0"]}', '{"appVersion": "2.1.0-rc.1"}'),
('{"attribute": "appVersion", "op": "semver_lt", "values": ["1.0.0-alpha.beta"]}', '{"appVersion": "1.0.0-alpha.1"}'),
('{"attribute": "appVersion", "op": "semver_lt", "values": ["1.0.0-rc.1"]}', '{"appVersion": "1.0.0-beta.11"}'),
('{"attribute": "appVersion", "op": "semver_lt", "values": ["1.0.0-alpha.1"]}', '{"appVersion": "1.0.0-alpha"}'),
('{"attribute": "appVersion", "op": "semver_eq", "values": ["1.0.0"]}', '{"appVersion": "1.0.0+build.5"}'),
('{"attribute": "appVersion", "op": "semver_lte", "values": ["10.0.0"]}', '{"appVersion": "9.99.99"}'),
('{"attribute": "appVersion", "op": "semver_eq", "values": ["1.0.0"]}', '{"appVersion": "v1.0.0"}'),
('{"attribute": "appVersion", "op": "semver_eq", "values": ["1.0.0"]}', '{"appVersion": "1.0"}'),
('{"attribute": "appVersion", "op": "semver_gt", "values": ["1.0.0"]}', '{}'),
('{"attribute": "appVersion", "op": "semver_gt", "values": ["1.0.0"], "negate": true}', '{}'),
-- in_cidr: IPv4 and IPv6 addresses and ranges
('{"attribute": "ip", "op": "in_cidr", "values": ["10.0.0.0/8"]}', '{"ip": "10.1.2.3"}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["10.0.0.0/8"]}', '{"ip": "11.1.2.3"}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["192.168.1.7"]}', '{"ip": "192.168.1.7"}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["2001:db8::/32"]}', '{"ip": "2001:db8:0:1::5"}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["2001:db8::/32"]}', '{"ip": "10.1.2.3"}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["10.0.0.0/8"]}', '{"ip": "not an address"}'),
-- unsupported: never, negate or not
('{"op": "unsupported", "operator": "FANCY_OP", "values": ["x"]}', '{}'),
('{"op": "unsupported", "operator": "FANCY_OP", "values": ["x"], "negate": true}', '{}'),
-- values are trimmed and empty ones left out, as Unleash cleans them
('{"attribute": "country", "op": "in", "values": [" DE "]}', '{"country": "DE"}'),
('{"attribute": "country", "op": "in", "values": [""]}', '{"country": ""}'),
('{"attribute": "email", "op": "starts_with", "values": [""]}', '{"email": "a@b"}'),
('{"attribute": "ip", "op": "in_cidr", "values": [" 10.0.0.0/8 "]}', '{"ip": "10.9.9.9"}'),
-- missing attributes: the operator is false, negate makes it true
('{"attribute": "email", "op": "ends_with", "values": ["@x"]}', '{}'),
('{"attribute": "email", "op": "ends_with", "values": ["@x"], "negate": true}', '{}'),
('{"attribute": "email", "op": "matches", "values": ["x"]}', '{}'),
('{"attribute": "signup", "op": "before", "values": ["2024-01-01"]}', '{}'),
('{"attribute": "ip", "op": "in_cidr", "values": ["10.0.0.0/8"], "negate": true}', '{}'),
('{"attribute": "/plan/tier", "op": "in", "values": ["pro"]}', '{"plan": "pro"}'),
-- role and key of a context; properties
('{"attribute": "role", "op": "in", "values": ["admin"]}', '{"key": "u1", "role": "admin"}'),
('{"attribute": "region", "op": "starts_with", "values": ["eu"]}', '{"properties": {"region": "eu-west"}}'),
-- the other side of each comparison
('{"attribute": "age", "op": "eq", "values": [18]}', '{"age": 18.5}'),
('{"attribute": "age", "op": "lte", "values": [18]}', '{"age": 18.01}'),
('{"attribute": "age", "op": "gte", "values": [18]}', '{"age": "17"}'),
('{"attribute": "age", "op": "gte", "values": [18], "negate": true}', '{"age": "17"}'),
('{"attribute": "v", "op": "semver_lt", "values": ["2.0.0"]}', '{"v": "2.0.0"}'),
('{"attribute": "v", "op": "semver_lte", "values": ["2.0.0"]}', '{"v": "2.0.1"}'),
('{"attribute": "v", "op": "semver_gt", "values": ["2.0.0"]}', '{"v": "2.0.1-alpha"}'),
('{"attribute": "v", "op": "semver_gte", "values": ["2.0.0"]}', '{"v": "1.99.99"}'),
('{"attribute": "v", "op": "semver_eq", "values": ["1.0.0", "2.0.0"]}', '{"v": "2.0.0"}'),
('{"attribute": "email", "op": "starts_with", "values": ["ADM"], "case_insensitive": true}', '{"email": "admin@x"}'),
('{"attribute": "email", "op": "contains", "values": ["MIN"], "case_insensitive": true, "negate": true}', '{"email": "admin@x"}');

SELECT n, clause ->> 'op' AS op, clause -> 'values' AS values,
       coalesce(clause -> 'negate', 'false') AS neg, coalesce(clause -> 'case_insensitive', 'false') AS ci,
       context, holds(clause, context) AS holds
FROM cases ORDER BY n;

-- A rule's segments and segment_match: members, roles or segment rules.
SELECT opsflags.create_segment('rules.beta', 'Beta', '["u-listed"]', '["tester"]') IS NOT NULL AS created;
UPDATE opsflags.user_segments SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]'
WHERE segment_key = 'rules.beta';
-- Audited like every change of a segment (the row image has its rules).
SELECT new_values -> 'rules' AS audited_rules FROM opsflags.audit_log
WHERE resource_type = 'segment' AND resource_id = 'rules.beta' ORDER BY id DESC LIMIT 1;
SELECT c AS context, holds('{"op": "segment_match", "values": ["rules.beta"]}', c) AS segment_match,
       holds('{"op": "segment_match", "values": ["rules.beta"], "negate": true}', c) AS negated
FROM (VALUES ('{"key": "u-listed"}'::jsonb), ('{"key": "x", "role": "tester"}'), ('{"key": "x", "country": "DE"}'),
             ('{"key": "x", "country": "FR"}')) v(c);
UPDATE opsflags.feature_flag_configs
SET rules = '[{"id": "seg", "segments": ["rules.beta"], "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT c AS context, opsflags.feature_enabled('rules.op', c) AS enabled
FROM (VALUES ('{"key": "x", "country": "DE", "plan": "pro"}'::jsonb), ('{"key": "x", "country": "DE"}'),
             ('{"key": "x", "plan": "pro"}')) v(c);
-- A config targeting the segment: its rules count as membership (SEGMENT_MATCH).
UPDATE opsflags.feature_flag_configs SET rules = '[]', segments = '["rules.beta"]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT c AS context, opsflags.feature_explain('rules.op', c) ->> 'reason' AS reason
FROM (VALUES ('{"key": "x", "country": "DE"}'::jsonb), ('{"key": "u-listed"}'), ('{"key": "x"}')) v(c);
-- A segment's rules change: flags see it at the next statement.
UPDATE opsflags.user_segments SET rules = '[]' WHERE segment_key = 'rules.beta';
SELECT opsflags.feature_explain('rules.op', '{"key": "x", "country": "DE"}'::jsonb) ->> 'reason' AS after_segment_change;
UPDATE opsflags.feature_flag_configs SET segments = '[]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';

-- A segment's rules decide in order, the first that holds: in, or out when
-- it excludes (listed keys and roles come first); they may name segments.
SELECT opsflags.create_segment('rules.staff', 'Staff', rules => '[
    {"id": "no-ops", "clauses": [{"attribute": "team", "op": "in", "values": ["ops"]}], "exclude": true},
    {"id": "corp", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@corp"]}]}]') IS NOT NULL AS created;
UPDATE opsflags.user_segments SET rules = '[
    {"id": "no-fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "exclude": true},
    {"id": "staff", "clauses": [{"op": "segment_match", "values": ["rules.staff"]}]},
    {"id": "pro-staff", "segments": ["rules.staff"], "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "exclude": false}]'
WHERE segment_key = 'rules.beta';
SELECT c AS context, holds('{"op": "segment_match", "values": ["rules.beta"]}', c) AS in_beta
FROM (VALUES ('{"key": "u-listed", "country": "FR"}'::jsonb), ('{"key": "x", "country": "FR", "email": "a@corp"}'),
             ('{"key": "x", "email": "a@corp"}'), ('{"key": "x", "email": "a@corp", "team": "ops"}'),
             ('{"key": "x"}')) v(c);
-- The nested segment changes: a flag naming the outer one sees it at the
-- next statement.
UPDATE opsflags.feature_flag_configs
SET rules = '[{"id": "beta", "clauses": [{"op": "segment_match", "values": ["rules.beta"]}]}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT opsflags.feature_enabled('rules.op', '{"key": "x", "email": "a@corp"}'::jsonb) AS before_change;
UPDATE opsflags.user_segments SET rules = '[{"id": "corp", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@corp.example"]}]}]'
WHERE segment_key = 'rules.staff';
SELECT opsflags.feature_enabled('rules.op', '{"key": "x", "email": "a@corp"}'::jsonb) AS after_change,
       opsflags.feature_enabled('rules.op', '{"key": "x", "email": "a@corp.example"}'::jsonb) AS after_change_new;
-- Cycles, through any chain and a segment naming itself, are refused, and
-- so is a segment that does not exist.
SELECT opsflags.create_segment('rules.mid', 'Mid', rules => '[{"id": "s", "segments": ["rules.beta"]}]') IS NOT NULL AS created;
UPDATE opsflags.user_segments SET rules = '[{"id": "s", "clauses": [{"op": "segment_match", "values": ["rules.mid"]}]}]'
WHERE segment_key = 'rules.staff';
UPDATE opsflags.user_segments SET rules = '[{"id": "s", "segments": ["rules.staff", "rules.staff"]}]'
WHERE segment_key = 'rules.staff';
SELECT opsflags.create_segment('rules.self', 'Self', rules => '[{"id": "s", "segments": ["rules.self"]}]');
SELECT opsflags.update_segment('rules.staff', rules => '[{"id": "s", "segments": ["no.such.segment"]}]');
SELECT opsflags.update_segment('rules.staff', rules => '[{"id": "s", "exclude": "yes"}]');
-- A nested segment that is deleted contains nobody (as one a config names).
DELETE FROM opsflags.user_segments WHERE segment_key = 'rules.staff';
SELECT opsflags.feature_enabled('rules.op', '{"key": "x", "email": "a@corp.example"}'::jsonb) AS after_delete;
DELETE FROM opsflags.user_segments WHERE segment_key = 'rules.mid';
UPDATE opsflags.user_segments SET rules = '[]' WHERE segment_key = 'rules.beta';

-- Serving variations, splits, overrides; explain names variation, variant, rule.
SELECT opsflags.create_flag('rules.theme', 'Theme', NULL, 'string', '["light", "dark", "contrast"]') IS NOT NULL AS created;
UPDATE opsflags.feature_flags SET variation_names = '["Light", "Dark", null]' WHERE flag_key = 'rules.theme';
UPDATE opsflags.feature_flag_configs SET is_enabled = true, on_variation = 0, off_variation = 2,
    rules = '[{"id": "de-dark", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 1}},
              {"id": "fr-off", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}], "serve": {"off": true}},
              {"id": "split", "clauses": [{"attribute": "country", "op": "in", "values": ["US"]}],
               "serve": {"split": [{"variation": 0, "weight": 1}, {"variation": 1, "weight": 3}],
                         "bucket_by": ["sessionId", "key"], "group": "theme-split",
                         "overrides": [{"attribute": "email", "values": ["boss@example.com"], "variation": 2},
                                       {"attribute": "tier", "values": [3], "variation": 2}]}}]'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
SELECT c AS context, e - 'environment' - 'flag_version' - 'bucket' AS explain
FROM (VALUES ('{"key": "u1", "country": "DE"}'::jsonb), ('{"key": "u1", "country": "FR"}'), ('{"key": "u1"}'),
             ('{"key": "u1", "country": "US", "email": "boss@example.com"}'),
             ('{"key": "u1", "country": "US", "tier": 3.0}'),
             ('{"country": "US"}')) v(c),
     LATERAL opsflags.feature_explain('rules.theme', c) e;
-- The split: 1:3 over the variant hash of "theme-split:<value>", as variant_bucket.
SELECT count(*) FILTER (WHERE opsflags.feature_value('rules.theme', jsonb_build_object('key', 'user-' || i, 'country', 'US'))
                        IS DISTINCT FROM CASE WHEN opsflags.variant_bucket('theme-split', 'user-' || i, 4) <= 1
                                              THEN '"light"'::jsonb ELSE '"dark"' END) AS mismatches,
       count(*) FILTER (WHERE opsflags.feature_value('rules.theme', jsonb_build_object('key', 'user-' || i, 'country', 'US'))
                        = '"dark"') AS dark
FROM generate_series(1, 4000) i;
-- bucket_by tries sessionId first; a number buckets as its text.
SELECT opsflags.feature_value('rules.theme', '{"key": "a", "sessionId": 12, "country": "US"}'::jsonb)
     = CASE WHEN opsflags.variant_bucket('theme-split', '12', 4) <= 1 THEN '"light"'::jsonb ELSE '"dark"' END AS by_session;

-- The config's serve and fallthrough.
UPDATE opsflags.feature_flag_configs SET serve = '{"variation": 1}', fallthrough = '{"variation": 0}'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
UPDATE opsflags.feature_flag_configs SET enabled_for_users = '["vip"]'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
SELECT c AS context, e ->> 'reason' AS reason, e -> 'value' AS value, e -> 'variant' AS variant
FROM (VALUES ('{"key": "vip"}'::jsonb), ('{"key": "u2"}')) v(c), LATERAL opsflags.feature_explain('rules.theme', c) e;

-- Rollout gates: murmur3("group:value", seed 0) % 100 + 1 <= percentage.
UPDATE opsflags.feature_flag_configs SET fallthrough = '{"off": true}',
    rules = '[{"id": "gate", "rollout": {"percentage": 30, "bucket_by": "key", "group": "g1"}}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('rules.op', jsonb_build_object('key', 'user-' || i))
                        <> (opsflags.rollout_bucket('g1', 'user-' || i) <= 30)) AS mismatches,
       count(*) FILTER (WHERE opsflags.feature_enabled('rules.op', jsonb_build_object('key', 'user-' || i))) AS admitted
FROM generate_series(1, 2000) i;
SELECT opsflags.feature_enabled('rules.op', '{"role": "x"}'::jsonb) AS no_bucket_value_is_out;
UPDATE opsflags.feature_flag_configs
SET rules = '[{"id": "none", "rollout": {"percentage": 0}}, {"id": "all", "rollout": {"percentage": 100, "bucket_by": ["$random"]}}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT opsflags.feature_explain('rules.op', '{}'::jsonb) ->> 'rule' AS random_gate_rule;
-- Default group: the flag's key (its rollout_group when set).
UPDATE opsflags.feature_flag_configs SET rules = '[{"id": "g", "rollout": {"percentage": 50}}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('rules.op', jsonb_build_object('key', 'user-' || i))
                        <> (opsflags.rollout_bucket('rules.op', 'user-' || i) <= 50)) AS mismatches
FROM generate_series(1, 1000) i;

-- Prerequisites: must be off (enabled false), or serve one of the named variants.
SELECT opsflags.create_flag('rules.child', 'Child') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = true
WHERE flag_id = opsflags.flag_id('rules.child') AND environment = 'production';
UPDATE opsflags.feature_flag_configs SET rules = '[]', fallthrough = NULL, serve = NULL, enabled_for_users = '[]'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled)
VALUES (opsflags.flag_id('rules.child'), opsflags.flag_id('rules.theme'), false);
SELECT opsflags.feature_explain('rules.child', '{"key": "u1"}'::jsonb) ->> 'reason' AS theme_on;
SELECT opsflags.toggle_flag('rules.theme', false);
SELECT opsflags.feature_explain('rules.child', '{"key": "u1"}'::jsonb) ->> 'reason' AS theme_off;
SELECT opsflags.toggle_flag('rules.theme', true);
UPDATE opsflags.flag_prerequisites SET enabled = true, variants = '["Dark"]'
WHERE flag_id = opsflags.flag_id('rules.child');
SELECT opsflags.feature_explain('rules.child', '{"key": "u1"}'::jsonb) ->> 'reason' AS theme_light;
UPDATE opsflags.feature_flag_configs
SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 1}}]'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
SELECT c AS context, opsflags.feature_explain('rules.child', c) ->> 'reason' AS reason
FROM (VALUES ('{"key": "u1", "country": "DE"}'::jsonb), ('{"key": "u1", "country": "AT"}')) v(c);
UPDATE opsflags.flag_prerequisites SET variants = '["Purple"]' WHERE flag_id = opsflags.flag_id('rules.child');
UPDATE opsflags.flag_prerequisites SET variants = '[]' WHERE flag_id = opsflags.flag_id('rules.child');

-- Bad rules are refused (22023) with the flag, environment, rule and clause;
-- nothing is written.
CREATE FUNCTION set_rules(rules jsonb) RETURNS void LANGUAGE sql AS $$
    UPDATE opsflags.feature_flag_configs SET rules = set_rules.rules
    WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production'
$$;
\set VERBOSITY default
SELECT set_rules('{"id": "x"}');
SELECT set_rules('[1]');
SELECT set_rules('[{"clauses": []}]');
SELECT set_rules('[{"id": "bad id!"}]');
SELECT set_rules('[{"id": "a"}, {"id": "a"}]');
SELECT set_rules('[{"id": "beta", "clauses": [{"attribute": "a", "op": "in", "values": ["x"]}, {"attribute": "a", "op": "foo", "values": []}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"op": "in", "values": ["x"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "in"}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "in", "values": [null]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "starts_with", "values": [5]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "matches", "values": ["(unclosed"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "lt", "values": ["ten"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "before", "values": ["2024-13-01"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "semver_gt", "values": ["v1.0.0"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "in_cidr", "values": ["10.0.0.0/33"]}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "a", "op": "in", "values": [], "negate": "yes"}]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"attribute": "/a~2", "op": "in", "values": []}]}]');
SELECT set_rules('[{"id": "r", "rollout": {"percentage": 101}}]');
SELECT set_rules('[{"id": "r", "rollout": {"percentage": 5, "bucket_by": []}}]');
SELECT set_rules('[{"id": "r", "serve": {"variation": 3}}]');
SELECT set_rules('[{"id": "r", "serve": {"variation": 0, "off": true}}]');
SELECT set_rules('[{"id": "r", "serve": {"split": [{"variation": 0, "weight": 0}]}}]');
SELECT set_rules('[{"id": "r", "serve": {"split": [{"variation": 0, "weight": 1}], "overrides": [{"attribute": "a", "values": ["x"], "variation": 9}]}}]');
SELECT set_rules('[{"id": "r", "segments": ["no.such.segment"]}]');
SELECT set_rules('[{"id": "r", "clauses": [{"op": "segment_match", "values": ["no.such.segment"]}]}]');
UPDATE opsflags.feature_flag_configs SET serve = '{"variation": 7}'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
UPDATE opsflags.feature_flag_configs SET fallthrough = '"off"'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
-- A boolean flag may serve false while on: the value decides, so the rule
-- matches and the flag is not enabled.
UPDATE opsflags.feature_flag_configs SET rules = '[{"id": "f", "serve": {"variation": 1}}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT opsflags.feature_enabled('rules.op', '{"key": "u1"}'::jsonb) AS enabled,
       opsflags.feature_explain('rules.op', '{"key": "u1"}'::jsonb) - 'environment' - 'flag_version' AS explain;
UPDATE opsflags.feature_flag_configs SET rules = '[{"id": "g", "rollout": {"percentage": 50}}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
-- Segment rules serve nothing; only they exclude.
UPDATE opsflags.user_segments SET rules = '[{"id": "s", "serve": {"variation": 0}}]' WHERE segment_key = 'rules.beta';
SELECT set_rules('[{"id": "r", "exclude": true}]');
UPDATE opsflags.user_segments SET rules = '[{"id": "s", "clauses": [{"op": "segment_match", "values": ["rules.beta"]}]}]'
WHERE segment_key = 'rules.beta';
-- Variation names: one unique name or null per variation.
UPDATE opsflags.feature_flags SET variation_names = '["a", "a", null]' WHERE flag_key = 'rules.theme';
UPDATE opsflags.feature_flags SET variation_names = '["a"]' WHERE flag_key = 'rules.theme';
-- Variations that rules serve cannot go away.
UPDATE opsflags.feature_flag_configs SET off_variation = 0,
    rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 2}}]'
WHERE flag_id = opsflags.flag_id('rules.theme') AND environment = 'production';
UPDATE opsflags.feature_flags SET variations = '["light", "dark"]', variation_names = NULL WHERE flag_key = 'rules.theme';
\set VERBOSITY terse
-- Nothing was written.
SELECT c.rules, c.serve, c.fallthrough, f.variations, f.variation_names
FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
WHERE f.flag_key IN ('rules.theme', 'rules.op') AND c.environment = 'production' ORDER BY f.flag_key;

-- A rule stored while the checks were off (a restore) never matches, with
-- one WARNING per load; the rules after it still work.
ALTER TABLE opsflags.feature_flag_configs DISABLE TRIGGER validate_config_rules;
UPDATE opsflags.feature_flag_configs
SET rules = '[{"id": "bad", "clauses": [{"attribute": "a", "op": "nope", "values": []}]}, {"id": "good"}]', fallthrough = NULL
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
ALTER TABLE opsflags.feature_flag_configs ENABLE TRIGGER validate_config_rules;
SELECT opsflags.feature_explain('rules.op', '{"a": 1}'::jsonb) ->> 'rule' AS served_by, opsflags.feature_enabled('rules.op', '{}'::jsonb) AS enabled;

-- The (flag_key, user_id, user_role) form is the context {key, role}.
UPDATE opsflags.feature_flag_configs SET fallthrough = '{"off": true}',
    rules = '[{"id": "admins", "clauses": [{"attribute": "role", "op": "in", "values": ["admin"]}, {"attribute": "key", "op": "starts_with", "values": ["u"]}]}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT opsflags.feature_explain('rules.op', 'u1', 'admin') ->> 'rule' AS by_role,
       opsflags.feature_enabled('rules.op', 'x1', 'admin') AS other_key,
       opsflags.feature_enabled('rules.op', 'u1', 'member') AS other_role;
-- evaluate_all reports the rule too.
SELECT opsflags.evaluate_all('{"key": "u1", "role": "admin"}') -> 'rules.op' ->> 'rule' AS evaluate_all_rule;

-- A clause repeated in several rules is decided once per evaluation and an
-- attribute read once: the answers are each rule's alone (a negated copy is
-- another clause; a name and a pointer read the same member).  A regular
-- expression's fixed prefix and a case-insensitive prefix are checked as the
-- whole value would be.
UPDATE opsflags.feature_flag_configs SET fallthrough = '{"off": true}',
    rules = '[{"id": "r1", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}, {"attribute": "plan", "op": "in", "values": ["gold"]}]},
              {"id": "r2", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"], "negate": true}, {"attribute": "plan", "op": "in", "values": ["pro"]}]},
              {"id": "r3", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}, {"attribute": "/plan", "op": "in", "values": ["pro"]}]},
              {"id": "r4", "clauses": [{"attribute": "email", "op": "matches", "values": ["^VIP-[0-9]", "^ab(c|d)e$"], "case_insensitive": true}]},
              {"id": "r5", "clauses": [{"attribute": "email", "op": "starts_with", "values": ["ÄB"], "case_insensitive": true}]}]'
WHERE flag_id = opsflags.flag_id('rules.op') AND environment = 'production';
SELECT c AS context, opsflags.feature_explain('rules.op', c) ->> 'rule' AS rule
FROM (VALUES ('{"country": "DE", "plan": "pro"}'::jsonb), ('{"country": "FR", "plan": "pro"}'),
             ('{"country": "DE", "plan": "gold"}'), ('{"properties": {"country": "DE"}, "plan": "pro"}'),
             ('{"email": "vip-7@x.org"}'), ('{"email": "xvip-7"}'), ('{"email": "ABDE"}'),
             ('{"email": "äbc@x.org"}'), ('{"email": "ab"}')) v(c);

-- Leave nothing behind for the tests that follow.
DELETE FROM opsflags.feature_flags WHERE flag_key IN ('rules.op', 'rules.theme', 'rules.child');
DELETE FROM opsflags.user_segments WHERE segment_key = 'rules.beta';
DROP FUNCTION holds(jsonb, jsonb);
DROP FUNCTION set_rules(jsonb);
DROP TABLE cases;
