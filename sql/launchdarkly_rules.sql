-- LaunchDarkly's evaluation in the rule engine (docs/rules.md): sha1
-- buckets, splits, gates and experiments with launchdarkly bucketing,
-- context kinds, clauses with LaunchDarkly's semantics, refused documents.
\set SHOW_CONTEXT never

-- Buckets.  The column sdk holds the numbers LaunchDarkly's own Bucketer
-- (@launchdarkly/js-server-sdk-common 2.21.5, Bucketer.bucket, run once in
-- Node for the same key, salt or seed and value) returned; they must be
-- equal to the last bit.
SELECT p, v, opsflags.launchdarkly_bucket(p, v) AS bucket, opsflags.launchdarkly_bucket(p, v) = sdk AS same_as_sdk
FROM (VALUES ('hashKey.saltyA', 'userkeyA', 0.14948865449998205::float8),
             ('hashKey.saltyA', 'userkeyB', 0.5638449833314746),
             ('hashKey.saltyA', 'userkeyC', 0.8176190021439884),
             ('61', 'userkeyA', 0.3046087838123086),
             ('flag1.s1', 'gold', 0.83086622241012),
             ('ld.split.s1', 'u1', 0.16910138621545132),
             ('ld.split.s1', 'u8', 0.6619674704502277),
             ('ld.split.s1', '12', 0.2891339976647673),
             ('ld.seg.segsalt', 'c', 0.0296142880716439)) t(p, v, sdk);

SELECT opsflags.create_flag('ld.split', 'LaunchDarkly splits', NULL, 'string', '["a", "b", "c"]') IS NOT NULL AS created;
UPDATE opsflags.feature_flags SET bucketing = 'launchdarkly', salt = 's1' WHERE flag_key = 'ld.split';
-- Fallthrough: weights 20000 + 30000 + 0 fall short of 100000, so a bucket
-- from 0.5 on gets the last entry (c).  SDK buckets of "ld.split.s1.uN":
-- u1 0.1691, u2 0.4906, u3 0.3021, u4 0.3903, u5 0.4622, u6 0.1334,
-- u7 0.3280, u8 0.6620, u9 0.4423, u10 0.1538.
UPDATE opsflags.feature_flag_configs SET is_enabled = true,
    fallthrough = '{"split": [{"variation": 0, "weight": 20000}, {"variation": 1, "weight": 30000}, {"variation": 2, "weight": 0}]}'
WHERE flag_id = opsflags.flag_id('ld.split') AND environment = 'production';
SELECT 'u' || g AS key, opsflags.feature_value('ld.split', jsonb_build_object('key', 'u' || g)) AS value,
       opsflags.feature_explain('ld.split', jsonb_build_object('key', 'u' || g)) ->> 'reason' AS reason
FROM generate_series(1, 10) g;

-- A rule's split with a seed (buckets of "61.uN": u1 0.5648, u2 0.4933,
-- u3 0.8262, u4 0.9436), for user contexts with group "seeded"; a gate on
-- the org's tier (weight 30000: gold 0.3331 out, silver 0.0641 in, bronze
-- 0.8547 out, tin 0.2032 in).
UPDATE opsflags.feature_flag_configs SET rules = '[
  {"id": "seeded",
   "clauses": [{"attribute": "group", "op": "in", "values": ["seeded"], "semantics": "launchdarkly"}],
   "serve": {"split": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}], "seed": 61}},
  {"id": "orgs", "rollout": {"weight": 30000, "bucket_by": "/tier", "context_kind": "org"},
   "serve": {"variation": 2}}]'
WHERE flag_id = opsflags.flag_id('ld.split') AND environment = 'production';
SELECT c AS context, opsflags.feature_explain('ld.split', c::jsonb) - 'environment' - 'flag_version' - 'enabled' AS explain
FROM unnest(ARRAY[
  '{"kind": "user", "key": "u1", "group": "seeded"}', '{"kind": "user", "key": "u2", "group": "seeded"}',
  '{"kind": "user", "key": "u3", "group": "seeded"}', '{"kind": "user", "key": "u4", "group": "seeded"}',
  '{"key": "u1", "group": "seeded"}', '{"key": "u1", "custom": {"group": "seeded"}}',
  '{"kind": "org", "key": "o1", "tier": "gold"}', '{"kind": "org", "key": "o2", "tier": "silver"}',
  '{"kind": "org", "key": "o3", "tier": "bronze"}',
  '{"kind": "multi", "user": {"key": "u8"}, "org": {"key": "o4", "tier": "tin"}}',
  '{"kind": "org", "key": "o5"}']) WITH ORDINALITY t(c, n) ORDER BY n;

-- An experiment: buckets by key; untracked entries and contexts without
-- the kind are not in it, the fallback last entry is.
UPDATE opsflags.feature_flag_configs SET rules = '[]',
    fallthrough = '{"split": [{"variation": 0, "weight": 20000, "untracked": true}, {"variation": 1, "weight": 30000}],
                    "kind": "experiment", "bucket_by": "ignored"}'
WHERE flag_id = opsflags.flag_id('ld.split') AND environment = 'production';
SELECT c AS context, opsflags.feature_explain('ld.split', c::jsonb) - 'environment' - 'flag_version' - 'enabled' AS explain
FROM unnest(ARRAY['{"key": "u1"}', '{"key": "u2"}', '{"key": "u8"}', '{"kind": "org", "key": "u2"}'])
     WITH ORDINALITY t(c, n) ORDER BY n;

-- bucket_by an integral number ("12", 0.2891) buckets, another number at 0.
UPDATE opsflags.feature_flag_configs SET
    fallthrough = '{"split": [{"variation": 0, "weight": 28000}, {"variation": 1, "weight": 2000}, {"variation": 2, "weight": 70000}],
                    "bucket_by": "/n", "context_kind": "org"}'
WHERE flag_id = opsflags.flag_id('ld.split') AND environment = 'production';
SELECT c AS context, opsflags.feature_value('ld.split', c::jsonb) AS value
FROM unnest(ARRAY['{"kind": "org", "key": "o", "n": 12}', '{"kind": "org", "key": "o", "n": 12.0}',
                  '{"kind": "org", "key": "o", "n": 12.5}', '{"kind": "org", "key": "o", "n": "12"}',
                  '{"kind": "org", "key": "o"}', '{"key": "u1", "n": 12}']) WITH ORDINALITY t(c, n) ORDER BY n;

-- A segment whose rule admits 25% as LaunchDarkly ("ld.seg.segsalt.K":
-- a 0.2291 in, b 0.5095 out, c 0.0296 in, d 0.8061 out, e 0.2844 out).
SELECT opsflags.create_segment('ld.seg', 'LaunchDarkly segment') IS NOT NULL AS created;
UPDATE opsflags.user_segments SET bucketing = 'launchdarkly', salt = 'segsalt',
    rules = '[{"id": "quarter", "rollout": {"weight": 25000}}]' WHERE segment_key = 'ld.seg';
UPDATE opsflags.feature_flag_configs SET fallthrough = NULL,
    rules = '[{"id": "in-seg", "clauses": [{"op": "segment_match", "values": ["ld.seg"], "semantics": "launchdarkly"}], "serve": {"variation": 2}}]'
WHERE flag_id = opsflags.flag_id('ld.split') AND environment = 'production';
SELECT k, opsflags.feature_explain('ld.split', jsonb_build_object('key', k)) ->> 'rule' AS rule
FROM unnest(ARRAY['a', 'b', 'c', 'd', 'e']) k;

-------------------------------------------------------------------------------
-- Clauses with LaunchDarkly's semantics
-------------------------------------------------------------------------------
SELECT opsflags.create_flag('ld.op', 'Operators') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}'
WHERE flag_id = opsflags.flag_id('ld.op') AND environment = 'production';
CREATE FUNCTION holds(clause jsonb, context jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE opsflags.feature_flag_configs
    SET rules = jsonb_build_array(jsonb_build_object('id', 'r1', 'clauses',
                    jsonb_build_array(clause || '{"semantics": "launchdarkly"}')))
    WHERE flag_id = opsflags.flag_id('ld.op') AND environment = 'production';
    RETURN opsflags.feature_enabled('ld.op', context);
END
$$;
-- Each case was also run once through the SDK's own evaluation
-- (@launchdarkly/node-server-sdk 9.13.7, TestData flags with the clause
-- as written in LaunchDarkly's format): the same result for all but 34,
-- a context LaunchDarkly refuses (no key: it serves the default value).
CREATE TABLE cases (n serial, clause jsonb, context jsonb);
INSERT INTO cases (clause, context) VALUES
-- missing never holds, negated or not; arrays: any element
('{"attribute": "country", "op": "in", "values": ["DE"], "negate": true}', '{"kind": "user", "key": "u"}'),
('{"attribute": "country", "op": "in", "values": ["DE"], "negate": true}', '{"kind": "user", "key": "u", "country": null}'),
('{"attribute": "country", "op": "in", "values": ["DE"], "negate": true}', '{"kind": "user", "key": "u", "country": "FR"}'),
('{"attribute": "groups", "op": "in", "values": ["b"]}', '{"kind": "user", "key": "u", "groups": ["a", "b"]}'),
('{"attribute": "groups", "op": "in", "values": ["b"], "negate": true}', '{"kind": "user", "key": "u", "groups": ["a", "b"]}'),
('{"attribute": "groups", "op": "in", "values": ["c"], "negate": true}', '{"kind": "user", "key": "u", "groups": ["a", "b"]}'),
-- in: strict JSON equality, values as written
('{"attribute": "age", "op": "in", "values": [2]}', '{"kind": "user", "key": "u", "age": 2.0}'),
('{"attribute": "age", "op": "in", "values": ["2"]}', '{"kind": "user", "key": "u", "age": 2}'),
('{"attribute": "beta", "op": "in", "values": ["true"]}', '{"kind": "user", "key": "u", "beta": true}'),
('{"attribute": "name", "op": "in", "values": [" a "]}', '{"kind": "user", "key": "u", "name": " a "}'),
('{"attribute": "name", "op": "in", "values": [" a "]}', '{"kind": "user", "key": "u", "name": "a"}'),
('{"attribute": "obj", "op": "in", "values": [{"a": 1}]}', '{"kind": "user", "key": "u", "obj": {"a": 1}}'),
-- string operators on strings only
('{"attribute": "email", "op": "ends_with", "values": ["@x.com"]}', '{"kind": "user", "key": "u", "email": "a@x.com"}'),
('{"attribute": "n", "op": "starts_with", "values": ["1"]}', '{"kind": "user", "key": "u", "n": 12}'),
('{"attribute": "email", "op": "contains", "values": [""]}', '{"kind": "user", "key": "u", "email": "a"}'),
('{"attribute": "email", "op": "matches", "values": ["^a.*com$"]}', '{"kind": "user", "key": "u", "email": "a@x.com"}'),
-- numbers only: a numeric string is not a number
('{"attribute": "n", "op": "lt", "values": [10]}', '{"kind": "user", "key": "u", "n": 5}'),
('{"attribute": "n", "op": "lt", "values": [10]}', '{"kind": "user", "key": "u", "n": "5"}'),
('{"attribute": "n", "op": "gte", "values": [10]}', '{"kind": "user", "key": "u", "n": 10}'),
-- before/after: epoch ms or timestamps with time and zone
('{"attribute": "t", "op": "before", "values": ["2024-01-01T00:00:00Z"]}', '{"kind": "user", "key": "u", "t": 1600000000000}'),
('{"attribute": "t", "op": "before", "values": [1704067200000]}', '{"kind": "user", "key": "u", "t": "2023-12-31T23:59:59.999Z"}'),
('{"attribute": "t", "op": "after", "values": [0]}', '{"kind": "user", "key": "u", "t": "2023-12-31T23:59:59+01:00"}'),
('{"attribute": "t", "op": "after", "values": [0]}', '{"kind": "user", "key": "u", "t": "2023-12-31"}'),
-- versions, loosely
('{"attribute": "v", "op": "semver_eq", "values": ["2"]}', '{"kind": "user", "key": "u", "v": "2.0.0"}'),
('{"attribute": "v", "op": "semver_lt", "values": ["2.1"]}', '{"kind": "user", "key": "u", "v": "2.0.9"}'),
('{"attribute": "v", "op": "semver_gt", "values": ["2.0.0"]}', '{"kind": "user", "key": "u", "v": "2.1-beta"}'),
('{"attribute": "v", "op": "semver_eq", "values": ["2.0.0"]}', '{"kind": "user", "key": "u", "v": "v2.0.0"}'),
-- kinds: key, kind, anonymous, references
('{"attribute": "kind", "op": "in", "values": ["org"]}', '{"kind": "multi", "user": {"key": "u"}, "org": {"key": "o"}}'),
('{"attribute": "kind", "op": "in", "values": ["org"]}', '{"key": "u"}'),
('{"attribute": "kind", "op": "in", "values": ["user"]}', '{"key": "u"}'),
('{"attribute": "key", "op": "in", "values": ["o"], "context_kind": "org"}', '{"kind": "multi", "user": {"key": "u"}, "org": {"key": "o"}}'),
('{"attribute": "key", "op": "in", "values": ["o"], "context_kind": "org"}', '{"kind": "org", "key": "o"}'),
('{"attribute": "key", "op": "in", "values": ["o"]}', '{"kind": "org", "key": "o"}'),
('{"attribute": "key", "op": "in", "values": ["u"]}', '{"targetingKey": "u"}'),
('{"attribute": "anonymous", "op": "in", "values": [false]}', '{"kind": "user", "key": "u"}'),
('{"attribute": "anonymous", "op": "in", "values": [false]}', '{"kind": "org", "key": "o"}'),
('{"attribute": "/a/b~1c", "op": "in", "values": ["x"], "context_kind": "org"}', '{"kind": "org", "key": "o", "a": {"b/c": "x"}}'),
('{"attribute": "/a/0", "op": "in", "values": ["x"], "context_kind": "org"}', '{"kind": "org", "key": "o", "a": ["x"]}'),
('{"attribute": "/a", "op": "in", "values": ["x"]}', '{"kind": "user", "key": "u", "/a": "x"}'),
('{"attribute": "/a", "op": "in", "values": ["x"], "context_kind": "user"}', '{"kind": "user", "key": "u", "a": "x"}'),
('{"attribute": "plan", "op": "in", "values": ["pro"]}', '{"key": "u", "plan": "pro"}'),
('{"attribute": "plan", "op": "in", "values": ["pro"]}', '{"key": "u", "custom": {"plan": "pro"}}'),
('{"attribute": "country", "op": "in", "values": ["DE"]}', '{"key": "u", "country": "DE", "custom": {"country": "FR"}}');
SELECT n, clause, context, holds(clause, context) FROM cases ORDER BY n;

-- The (key, user, role) form is a user context {key, role}: role is custom.
SELECT holds('{"attribute": "key", "op": "in", "values": ["u1"]}', NULL) AS no_context,
       (SELECT opsflags.feature_enabled('ld.op', 'u1', 'admin')) AS key_form;
SELECT holds('{"attribute": "role", "op": "in", "values": ["admin"]}', NULL) IS NOT NULL AS set,
       opsflags.feature_enabled('ld.op', 'u1', 'admin') AS role_form;

-------------------------------------------------------------------------------
-- Refused when written
-------------------------------------------------------------------------------
\set VERBOSITY terse
UPDATE opsflags.feature_flags SET bucketing = 'optimizely' WHERE flag_key = 'ld.op';
UPDATE opsflags.user_segments SET bucketing = '' WHERE segment_key = 'ld.seg';
\set VERBOSITY default
CREATE FUNCTION try_rules(rules jsonb, flag text DEFAULT 'ld.op') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    UPDATE opsflags.feature_flag_configs SET rules = try_rules.rules
    WHERE flag_id = opsflags.flag_id(flag) AND environment = 'production';
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || d;
END
$$;
CREATE FUNCTION try_serve(serve jsonb, flag text DEFAULT 'ld.split') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    UPDATE opsflags.feature_flag_configs SET fallthrough = try_serve.serve, rules = '[]'
    WHERE flag_id = opsflags.flag_id(flag) AND environment = 'production';
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || d;
END
$$;
SELECT c, try_rules(jsonb_build_array(jsonb_build_object('id', 'r', 'clauses', jsonb_build_array(c::jsonb)))) AS result
FROM unnest(ARRAY[
  '{"attribute": "a", "op": "in", "values": ["x"], "semantics": "ld"}',
  '{"attribute": "a", "op": "in", "values": ["x"], "context_kind": "org"}',
  '{"attribute": "a", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "multi"}',
  '{"attribute": "a", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "a b"}',
  '{"attribute": "a", "op": "in", "values": ["x"], "semantics": "launchdarkly", "case_insensitive": true}',
  '{"attribute": "a", "op": "not_in", "values": ["x"], "semantics": "launchdarkly"}',
  '{"attribute": "a", "op": "in_cidr", "values": ["10.0.0.0/8"], "semantics": "launchdarkly"}',
  '{"attribute": "a", "op": "starts_with", "values": [1], "semantics": "launchdarkly"}',
  '{"attribute": "a", "op": "lt", "values": ["5"], "semantics": "launchdarkly"}',
  '{"attribute": "a", "op": "before", "values": ["2024-01-01"], "semantics": "launchdarkly"}',
  '{"attribute": "a", "op": "semver_eq", "values": ["v1.0.0"], "semantics": "launchdarkly"}',
  '{"attribute": "//a", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "org"}',
  '{"attribute": "/a~2", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "org"}',
  '{"attribute": "/_meta/x", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "org"}',
  '{"attribute": "/a~1b", "op": "in", "values": ["x"], "semantics": "launchdarkly", "context_kind": "org"}']) WITH ORDINALITY t(c, n) ORDER BY n;
-- Splits and gates: each bucketing takes its own members.
SELECT s, try_serve(s::jsonb) AS launchdarkly, try_serve(s::jsonb, 'ld.op') AS unleash
FROM unnest(ARRAY[
  '{"split": [{"variation": 0, "weight": 100001}]}',
  '{"split": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 40000}], "group": "g"}',
  '{"split": [{"variation": 0, "weight": 60000}], "bucket_by": ["key", "id"]}',
  '{"split": [{"variation": 0, "weight": 60000}], "seed": 1.5}',
  '{"split": [{"variation": 0, "weight": 60000}], "kind": "holdout"}',
  '{"split": [{"variation": 0, "weight": 60000, "untracked": 1}]}',
  '{"split": [{"variation": 0, "weight": 0}, {"variation": 1, "weight": 0}]}']) WITH ORDINALITY t(s, n) ORDER BY n;
SELECT g, try_rules(jsonb_build_array(jsonb_build_object('id', 'r', 'rollout', g::jsonb)), 'ld.split') AS launchdarkly,
       try_rules(jsonb_build_array(jsonb_build_object('id', 'r', 'rollout', g::jsonb))) AS unleash
FROM unnest(ARRAY['{"weight": 50000}', '{"percentage": 50}', '{"weight": 100001}',
                  '{"weight": 5000, "bucket_by": "/a", "context_kind": "org"}']) WITH ORDINALITY t(g, n) ORDER BY n;
-- A boolean flag whose split falls short serves its last entry, false
-- here: the contexts past the first half get false, and feature_enabled
-- says so.
SELECT opsflags.create_flag('ld.bool', 'Boolean') IS NOT NULL AS created;
UPDATE opsflags.feature_flags SET bucketing = 'launchdarkly' WHERE flag_key = 'ld.bool';
SELECT try_serve('{"split": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 0}]}', 'ld.bool') AS falls_short_on_false;
SELECT opsflags.toggle_flag('ld.bool', true, 'production');
SELECT count(*) FILTER (WHERE e) AS enabled, count(*) FILTER (WHERE NOT e) AS served_false,
       count(*) FILTER (WHERE e IS DISTINCT FROM (opsflags.launchdarkly_bucket('ld.bool.', k) < 0.5)) AS not_launchdarkly_buckets
FROM (SELECT 'user-' || i AS k, opsflags.feature_enabled('ld.bool', jsonb_build_object('key', 'user-' || i)) AS e
      FROM generate_series(1, 200) i) us;
-- Changing the bucketing checks the configs again.
UPDATE opsflags.feature_flag_configs SET rules = '[]', fallthrough = '{"split": [{"variation": 0, "weight": 200000}]}'
WHERE flag_id = opsflags.flag_id('ld.op') AND environment = 'production';
UPDATE opsflags.feature_flags SET bucketing = 'launchdarkly' WHERE flag_key = 'ld.op';
UPDATE opsflags.user_segments SET bucketing = 'unleash' WHERE segment_key = 'ld.seg';
