-- LaunchDarkly server-side data: import_launchdarkly_data maps {"flags",
-- "segments"} onto flags, rules, segments and prerequisites;
-- launchdarkly_data exports them back.  Errors: 22023 for malformed data,
-- 0A000 for what the mapping cannot express exactly (nothing written either
-- way), 42501 for a role that is not opsflags_admin.
\set VERBOSITY default
\set SHOW_CONTEXT never
INSERT INTO opsflags.environments (name) VALUES ('ld-test');
SET opsflags.environment = 'ld-test';

\set data '{"flags": {"ld.checkout": {"key": "ld.checkout", "on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 1}, "targets": [{"values": ["u1", "u2"], "variation": 0}, {"values": ["u3"], "variation": 1}], "contextTargets": [{"contextKind": "user", "variation": 1, "values": []}, {"contextKind": "user", "variation": 0, "values": []}], "rules": [{"id": "beta", "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"], "negate": false}, {"attribute": "", "op": "segmentMatch", "values": ["staff"], "negate": true}], "variation": 0}, {"clauses": [{"contextKind": "user", "attribute": "/plan/tier", "op": "in", "values": ["pro"]}], "variation": 0}], "prerequisites": [], "salt": "s1", "version": 4}, "ld.color": {"key": "ld.color", "on": true, "variations": ["red", "green", "blue"], "offVariation": 2, "fallthrough": {"variation": 0}, "rules": [{"id": "old", "clauses": [{"attribute": "appVersion", "op": "semVerLessThan", "values": ["2.0.0"]}], "variation": 1}], "prerequisites": [{"key": "ld.checkout", "variation": 0}]}, "ld.off": {"key": "ld.off", "on": false, "variations": [1, 2], "offVariation": 1, "fallthrough": {"variation": 0}}, "ld.rollout": {"key": "ld.rollout", "on": true, "salt": "abc", "variations": ["a", "b"], "offVariation": 1, "contextTargets": [{"contextKind": "org", "variation": 1, "values": ["acme"]}], "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 40000}], "bucketBy": "/org/id", "contextKind": "user", "seed": 61}}}}, "segments": {"staff": {"key": "staff", "included": ["u9"], "excluded": ["u1"], "rules": [{"clauses": [{"attribute": "email", "op": "endsWith", "values": ["@corp.example"]}]}]}}}'

-- The first import creates; the report names flags and segments.
SELECT jsonb_pretty(opsflags.import_launchdarkly_data('ld-test', :'data'));
SELECT f.flag_key, f.flag_type, f.variations, f.bucketing, f.salt FROM opsflags.feature_flags f WHERE f.flag_key LIKE 'ld.%' ORDER BY 1;
SELECT f.flag_key || ': ' || jsonb_pretty(jsonb_build_object('is_enabled', c.is_enabled, 'on_variation', c.on_variation,
                                                             'off_variation', c.off_variation, 'rules', c.rules,
                                                             'fallthrough', c.fallthrough)) AS config
FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = 'ld-test'
WHERE f.flag_key LIKE 'ld.%' ORDER BY 1;
SELECT segment_key, name, bucketing, salt, user_ids, jsonb_pretty(rules) AS rules FROM opsflags.user_segments WHERE segment_key = 'staff';
SELECT f.flag_key, p.flag_key AS prerequisite, fp.enabled, fp.variation FROM opsflags.flag_prerequisites fp
JOIN opsflags.feature_flags f ON f.id = fp.flag_id JOIN opsflags.feature_flags p ON p.id = fp.prerequisite_id
WHERE f.flag_key LIKE 'ld.%';

-- Evaluation is native: targets first (u3 is targeted to false before u1's
-- true, as contextTargets order them), then rules, then the fallthrough.
SELECT ctx, opsflags.feature_value('ld.checkout', ctx) AS checkout,
       opsflags.feature_explain('ld.checkout', ctx) ->> 'variation' AS variation,
       opsflags.feature_value('ld.color', ctx) AS color, opsflags.feature_value('ld.rollout', ctx) AS split
FROM (VALUES ('{"kind": "user", "key": "u3"}'::jsonb), ('{"kind": "user", "key": "u1"}'),
             ('{"kind": "user", "key": "u5", "email": "a@example.com"}'),
             ('{"kind": "user", "key": "u9", "email": "a@example.com"}'),
             ('{"kind": "user", "key": "u1", "email": "a@corp.example", "appVersion": "1.5.0"}'),
             ('{"kind": "user", "key": "u6", "plan": {"tier": "pro"}, "appVersion": "1.5.0"}'),
             ('{"kind": "multi", "user": {"key": "u7", "org": {"id": "x1"}}, "org": {"key": "acme"}}')) v(ctx);

-- A second import, and the import of the export, change nothing.
SELECT jsonb_pretty(opsflags.import_launchdarkly_data('ld-test', :'data'));
SELECT jsonb_pretty(opsflags.launchdarkly_data('ld-test'));
SELECT opsflags.import_launchdarkly_data('ld-test', opsflags.launchdarkly_data('ld-test'));

-- A changed flag is reported as changed.
SELECT opsflags.import_launchdarkly_data('ld-test', jsonb_set(:'data', '{flags,ld.off,on}', 'true'));

-- Segments in LaunchDarkly's order, the first that holds deciding:
-- included keys, excluded keys of any context kind (exclude rules), then
-- rules; segmentMatch in a segment's rules names segments of the data
-- (written before the segments naming them) or of the database.
\set segdata '{"flags": {"ld.seg": {"on": true, "variations": ["no", "yes"], "offVariation": 0, "fallthrough": {"variation": 0}, "rules": [{"id": "outer", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["a.outer"]}], "variation": 1}]}}, "segments": {"a.outer": {"included": ["u1"], "excludedContexts": [{"contextKind": "org", "values": ["acme"]}, {"contextKind": "user", "values": []}, {"contextKind": "user", "values": ["u2"]}], "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["z.inner", "staff"]}]}]}, "z.inner": {"excluded": ["u3"], "rules": [{"clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]}}}'
SELECT jsonb_pretty(opsflags.import_launchdarkly_data('ld-test', :'segdata'));
SELECT segment_key, jsonb_pretty(rules) AS rules FROM opsflags.user_segments WHERE segment_key IN ('a.outer', 'z.inner') ORDER BY 1;
SELECT ctx, opsflags.feature_value('ld.seg', ctx) AS in_outer
FROM (VALUES ('{"kind": "user", "key": "u1", "country": "DE"}'::jsonb), ('{"kind": "user", "key": "u2", "country": "DE"}'),
             ('{"kind": "multi", "user": {"key": "u5", "country": "DE"}, "org": {"key": "acme"}}'),
             ('{"kind": "user", "key": "u5", "country": "DE"}'), ('{"kind": "user", "key": "u3", "country": "DE"}'),
             ('{"kind": "user", "key": "u4", "email": "x@corp.example"}')) v(ctx);
SELECT jsonb_pretty(opsflags.launchdarkly_data('ld-test') -> 'segments' -> 'a.outer') AS exported;
SELECT opsflags.import_launchdarkly_data('ld-test', :'segdata') -> 'segments' AS again,
       opsflags.import_launchdarkly_data('ld-test', opsflags.launchdarkly_data('ld-test')) -> 'segments' AS export_again;
-- Cycles, in the data or with the database's segments, and a named segment
-- in neither, are refused before anything is written.
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {}, "segments": {"c1": {"rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["c2"]}]}]}, "c2": {"rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["c1"]}]}]}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {}, "segments": {"c0": {}, "z.inner": {"rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["a.outer"]}]}]}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {}, "segments": {"c0": {}, "c4": {"rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["nope"]}]}]}}}');
SELECT count(*) AS not_written FROM opsflags.user_segments WHERE segment_key IN ('c0', 'c1', 'c2', 'c4');

-- Errors name the flag, rule and clause; nothing is written.
SELECT opsflags.import_launchdarkly_data('ld-test', '[]');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {"ld.new": {"on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}}, "ld.bad": {"on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}, "rules": [{"id": "r", "clauses": [{"attribute": "a", "op": "in", "values": ["x"]}, {"attribute": "a", "op": "notAnOperator", "values": []}], "variation": 0}]}}}');
SELECT count(*) AS not_written FROM opsflags.feature_flags WHERE flag_key = 'ld.new';
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {"ld.bad": {"on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 5}}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {"ld.bad": {"on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}, "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["nope"]}], "variation": 0}]}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {"ld.bad": {"on": true, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}, "prerequisites": [{"key": "ld.missing", "variation": 0}]}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {"ld.bad": {"on": true, "variations": ["a", "b"], "offVariation": 1, "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000}, {"variation": 7, "weight": 50000}]}}}}}');
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {}, "segments": {"bad": {"rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["bad"]}]}]}}}');

-- Served as LaunchDarkly serves them: no offVariation (off: no value, the
-- caller's default), a 50/50 rollout of a boolean flag (feature_enabled is
-- the value each user gets), and a prerequisite passed by its off variation
-- where its own prerequisite fails (switched on, serving the variation
-- required).
SELECT opsflags.import_launchdarkly_data('ld-test', '{"flags": {
  "ld.nooff": {"on": false, "variations": ["a", "b"], "fallthrough": {"variation": 0}},
  "ld.half": {"on": true, "salt": "s", "variations": [true, false], "offVariation": 0,
              "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}},
  "ld.root": {"on": false, "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}},
  "ld.mid": {"on": true, "variations": ["x", "y"], "offVariation": 1, "fallthrough": {"variation": 0},
             "prerequisites": [{"key": "ld.root", "variation": 0}]},
  "ld.top": {"on": true, "variations": ["yes", "no"], "offVariation": 1, "fallthrough": {"variation": 0},
             "prerequisites": [{"key": "ld.mid", "variation": 1}]}}}') - 'environment';
SELECT opsflags.feature_value('ld.nooff', '{"key": "u1"}'::jsonb) IS NULL AS no_value,
       opsflags.feature_explain('ld.nooff', '{"key": "u1"}'::jsonb) - 'environment' - 'flag_version' AS explain;
SELECT count(*) AS users,
       count(*) FILTER (WHERE opsflags.feature_enabled('ld.half', c)) AS enabled,
       count(*) FILTER (WHERE opsflags.feature_enabled('ld.half', c)
                        IS DISTINCT FROM (opsflags.feature_value('ld.half', c))::boolean) AS disagree,
       count(*) FILTER (WHERE (opsflags.feature_value('ld.half', c))::boolean
                        IS DISTINCT FROM (opsflags.launchdarkly_bucket('ld.half.s', c ->> 'key') < 0.5)) AS not_launchdarkly_buckets
FROM (SELECT jsonb_build_object('key', 'user-' || i) AS c FROM generate_series(1, 200) i) us;
SELECT k, opsflags.feature_value(k, '{"key": "u1"}'::jsonb) AS value,
       opsflags.feature_explain(k, '{"key": "u1"}'::jsonb) ->> 'reason' AS reason
FROM unnest(ARRAY['ld.root', 'ld.mid', 'ld.top']) k;
SELECT f.flag_key, p.flag_key AS prerequisite, r.enabled, r.variation
FROM opsflags.flag_prerequisites r JOIN opsflags.feature_flags f ON f.id = r.flag_id
JOIN opsflags.feature_flags p ON p.id = r.prerequisite_id
WHERE f.flag_key IN ('ld.mid', 'ld.top') ORDER BY 1;
-- Its export says the same.
SELECT e -> 'flags' -> 'ld.nooff' ? 'offVariation' AS nooff_has_off, e -> 'flags' -> 'ld.top' -> 'prerequisites' AS top_prerequisites
FROM opsflags.launchdarkly_data('ld-test') e;

-- Only opsflags_admin imports and exports.
CREATE ROLE ld_nobody;
SET ROLE ld_nobody;
SELECT opsflags.import_launchdarkly_data('ld-test', :'data');
SELECT opsflags.launchdarkly_data('ld-test');
RESET ROLE;
DROP ROLE ld_nobody;
RESET opsflags.environment;
