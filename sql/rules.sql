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
SELECT opsflags.feature_explain('rules.op', '{"key": "u1"}') - 'environment' - 'flag_version' AS no_match;

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
('{"op": "unsupported", "operator": "FANCY_OP", "values": ["x"], "negate": true}', '{}');

SELECT n, clause ->> 'op' AS op, clause -> 'values' AS values,
       coalesce(clause -> 'negate', 'false') AS neg, coalesce(clause -> 'case_insensitive', 'false') AS ci,
       context, holds(clause, context) AS holds
FROM cases ORDER BY n;
