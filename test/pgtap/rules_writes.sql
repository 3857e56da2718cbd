-- test/pgtap/rules_writes.sql: bad targeting rules are refused when they are
-- written, whichever way (update_flag, add_rule, create_segment,
-- update_segment, plain UPDATE of the tables), with SQLSTATE 22023 and an
-- error naming the flag, environment and rule, and nothing is written:
-- after every refused write the state of every flag, config, segment and
-- prerequisite is what it was.  Each kind of error (an unknown operator,
-- values of the wrong type, an invalid regular expression, version,
-- address, range or date, a missing or malformed member, a duplicate id, a
-- rollout or serve out of range; bad variation names, serve and
-- fallthrough) is tried in several places of a rules list.  Then
-- add_rule and remove_rule.  One transaction, rolled back.
\ir setup.inc

BEGIN;
SELECT plan(19);
SET LOCAL opsflags.environment = 'production';

-- Everything a rule write could touch.
CREATE FUNCTION pg_temp.state() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT md5(concat_ws('#',
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.feature_flags t),
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.feature_flag_configs t),
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.user_segments t),
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.flag_prerequisites t)))
$$;
-- Run a statement: 'ok', or the SQLSTATE, message and detail of its error.
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || msg || coalesce(' / ' || nullif(det, ''), '');
END
$$;

-- Fixtures: a string flag on with a good rule; a segment with a good rule.
SELECT opsflags.create_flag('tap.rw.f', 'rule writes', NULL, 'string', '["a", "b", "c"]') AS x \gset
SELECT opsflags.update_flag('tap.rw.f', '{"is_enabled": true, "rules": [{"id": "good", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 2}}]}') AS x \gset
SELECT opsflags.create_segment('tap.rw.seg', 'rule writes', '["u1"]', '[]', NULL,
                               '[{"id": "good", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]') AS x \gset
SELECT pg_temp.state() AS state0 \gset

-- The bad rules: a bad clause in a rule of its own, after a good rule, or
-- after a good clause; a bad rule alone, after a good rule, before one.
CREATE TEMP TABLE bad_clauses (kind text, clause jsonb);
INSERT INTO bad_clauses VALUES
    ('unknown operator', '{"attribute": "country", "op": "equals", "values": ["DE"]}'),
    ('a number for starts_with', '{"attribute": "email", "op": "starts_with", "values": [1]}'),
    ('an invalid regular expression', '{"attribute": "name", "op": "matches", "values": ["(a"]}'),
    ('an invalid version', '{"attribute": "appVersion", "op": "semver_gt", "values": ["1.2"]}'),
    ('an invalid range', '{"attribute": "ip", "op": "in_cidr", "values": ["10.0.0.0/33"]}'),
    ('an invalid address', '{"attribute": "ip", "op": "in_cidr", "values": ["not-an-address"]}'),
    ('an invalid date', '{"attribute": "signup", "op": "before", "values": ["yesterday"]}'),
    ('a string for lt', '{"attribute": "age", "op": "lt", "values": ["abc"]}'),
    ('an object for in', '{"attribute": "country", "op": "in", "values": [{"a": 1}]}'),
    ('no attribute', '{"op": "in", "values": ["DE"]}'),
    ('no op', '{"attribute": "country", "values": ["DE"]}'),
    ('no values', '{"attribute": "country", "op": "in"}'),
    ('values not an array', '{"attribute": "country", "op": "in", "values": "DE"}'),
    ('negate not a boolean', '{"attribute": "country", "op": "in", "values": ["DE"], "negate": "yes"}'),
    ('a clause that is not an object', '"country"');
CREATE TEMP TABLE bad_rules (kind text, rule jsonb, names_rule boolean DEFAULT true);
INSERT INTO bad_rules (kind, rule, names_rule) VALUES
    ('no id', '{"clauses": []}', false),
    ('an id with a space', '{"id": "bad id"}', false),
    ('an id of 101 characters', jsonb_build_object('id', repeat('x', 101)), false),
    ('a rollout of 101 %', '{"id": "bad", "rollout": {"percentage": 101}}', true),
    ('a rollout of 2.5 %', '{"id": "bad", "rollout": {"percentage": 2.5}}', true),
    ('serving variation 7 of 3', '{"id": "bad", "serve": {"variation": 7}}', true),
    ('a split with a negative weight', '{"id": "bad", "serve": {"split": [{"variation": 0, "weight": -1}, {"variation": 1, "weight": 2}]}}', true),
    ('a split weighing 0', '{"id": "bad", "serve": {"split": [{"variation": 0, "weight": 0}]}}', true),
    ('clauses not an array', '{"id": "bad", "clauses": {}}', true),
    ('segments not strings', '{"id": "bad", "segments": [1]}', true),
    ('exclude in a config''s rule', '{"id": "bad", "exclude": true}', true),
    ('a duplicate id', '{"id": "good"}', true);
INSERT INTO bad_rules (kind, rule)
SELECT kind, jsonb_build_object('id', 'bad', 'clauses', jsonb_build_array(clause)) FROM bad_clauses;

CREATE TEMP TABLE good AS
SELECT '{"id": "good", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 2}}'::jsonb AS rule,
       '{"attribute": "country", "op": "in", "values": ["DE"]}'::jsonb AS clause;
CREATE TEMP TABLE lists AS
SELECT b.kind, b.names_rule, p.place, CASE p.place
           WHEN 'alone' THEN jsonb_build_array(b.rule)
           WHEN 'after a good rule' THEN jsonb_build_array(g.rule, b.rule)
           ELSE jsonb_build_array(b.rule, g.rule) END AS rules
FROM bad_rules b, good g, (VALUES ('alone'), ('after a good rule'), ('before a good rule')) p(place)
WHERE NOT (b.kind = 'a duplicate id' AND p.place = 'alone')
UNION ALL
SELECT c.kind, true, 'after a good clause',
       jsonb_build_array(jsonb_build_object('id', 'bad', 'clauses', jsonb_build_array(g.clause, c.clause)))
FROM bad_clauses c, good g;

CREATE TEMP TABLE attempts (n serial, kind text, place text, way text, names_rule boolean, sql text, result text, state text);
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT kind, place, w.way, names_rule, format(w.tmpl, rules)
FROM lists, (VALUES
    ('update_flag', $$SELECT opsflags.update_flag('tap.rw.f', jsonb_build_object('rules', %L::jsonb))$$),
    ('update_flag with another field', $$SELECT opsflags.update_flag('tap.rw.f', jsonb_build_object('is_enabled', false, 'rules', %L::jsonb))$$),
    ('plain UPDATE', $$UPDATE opsflags.feature_flag_configs SET rules = %L WHERE flag_id = opsflags.flag_id('tap.rw.f') AND environment = 'production'$$)
    ) w(way, tmpl);
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT kind, 'added', 'add_rule', names_rule, format($$SELECT opsflags.add_rule('tap.rw.f', %L)$$, rule)
FROM bad_rules WHERE kind NOT IN ('no id', 'a duplicate id');
-- Segment rules (rules without serve)
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT b.kind, 'segment', w.way, b.names_rule, format(w.tmpl, jsonb_build_array(b.rule))
FROM bad_rules b, (VALUES
    ('update_segment', $$SELECT opsflags.update_segment('tap.rw.seg', rules => %L)$$),
    ('create_segment', $$SELECT opsflags.create_segment('tap.rw.seg2', 'new', rules => %L)$$),
    ('plain UPDATE of user_segments', $$UPDATE opsflags.user_segments SET rules = %L WHERE segment_key = 'tap.rw.seg'$$),
    ('plain INSERT into user_segments', $$INSERT INTO opsflags.user_segments (segment_key, name, rules) VALUES ('tap.rw.seg3', 'new', %L)$$)
    ) w(way, tmpl)
WHERE b.kind NOT IN ('serving variation 7 of 3', 'a split with a negative weight', 'a split weighing 0', 'a duplicate id',
                     'segments not strings', 'exclude in a config''s rule');
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT k.kind, 'segment', 'update_segment', k.names_rule, format($$SELECT opsflags.update_segment('tap.rw.seg', rules => %L)$$, k.rules)
FROM (VALUES ('a segment whose segment_match names itself (a cycle)', '[{"id": "bad", "clauses": [{"op": "segment_match", "values": ["tap.rw.seg"]}]}]', false),
             ('a serve in a segment''s rule', '[{"id": "bad", "serve": {"variation": 0}}]', true),
             ('an exclude that is not a boolean', '[{"id": "bad", "exclude": "yes"}]', true),
             ('a segment whose segments name itself (a cycle)', '[{"id": "bad", "segments": ["tap.rw.seg"]}]', false)) k(kind, rules, names_rule);
-- Variation names, serve and fallthrough
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT v.kind, 'variation_names', w.way, false, format(w.tmpl, v.names)
FROM (VALUES ('two equal names', '["x", "x", null]'), ('fewer names than variations', '["x"]'),
             ('a name that is a number', '[1, "y", "z"]'), ('not an array', '"xyz"')) v(kind, names),
     (VALUES ('update_flag', $$SELECT opsflags.update_flag('tap.rw.f', jsonb_build_object('variation_names', %L::jsonb))$$),
             ('plain UPDATE', $$UPDATE opsflags.feature_flags SET variation_names = %L WHERE flag_key = 'tap.rw.f'$$)) w(way, tmpl);
INSERT INTO attempts (kind, place, way, names_rule, sql)
SELECT s.kind, f.field, w.way, false, format(w.tmpl, f.field, s.serve)
FROM (VALUES ('variation 9 of 3', '{"variation": 9}'), ('an empty split', '{"split": []}'),
             ('a split over variation 5', '{"split": [{"variation": 5, "weight": 1}]}'),
             ('an unknown member', '{"color": "red"}'), ('an array', '[0]'), ('a number', '1')) s(kind, serve),
     (VALUES ('serve'), ('fallthrough')) f(field),
     (VALUES ('update_flag', $$SELECT opsflags.update_flag('tap.rw.f', jsonb_build_object(%L, %L::jsonb))$$),
             ('plain UPDATE', $$UPDATE opsflags.feature_flag_configs SET %I = %L WHERE flag_id = opsflags.flag_id('tap.rw.f') AND environment = 'production'$$)) w(way, tmpl);
-- Variations that a rule's serve no longer fits
INSERT INTO attempts (kind, place, way, names_rule, sql) VALUES
    ('fewer variations than a rule serves', 'variations', 'update_flag', true,
     $$SELECT opsflags.update_flag('tap.rw.f', '{"variations": ["a", "b"]}')$$),
    ('fewer variations than a rule serves', 'variations', 'plain UPDATE', true,
     $$UPDATE opsflags.feature_flags SET variations = '["a", "b"]' WHERE flag_key = 'tap.rw.f'$$);

-- Each attempt, then the state.
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM attempts ORDER BY n LOOP
        UPDATE attempts SET result = pg_temp.try(a.sql), state = pg_temp.state() WHERE n = a.n;
    END LOOP;
END
$$;

SELECT diag(format('%s (%s) by %s: %s', kind, place, way, result))
FROM attempts WHERE result NOT LIKE '22023 %' ORDER BY n LIMIT 20;
SELECT diag(format('%s (%s) by %s wrote something', kind, place, way))
FROM attempts WHERE state <> :'state0' ORDER BY n LIMIT 10;

SELECT cmp_ok((SELECT count(*)::int FROM attempts), '>=', 100, 'at least 100 bad writes');
SELECT is((SELECT array_agg(DISTINCT way ORDER BY way) FROM attempts),
          ARRAY['add_rule', 'create_segment', 'plain INSERT into user_segments', 'plain UPDATE', 'plain UPDATE of user_segments',
                'update_flag', 'update_flag with another field', 'update_segment'],
          'tried through the API and through plain DML');
SELECT is((SELECT count(*)::int FROM attempts WHERE result NOT LIKE '22023 %'), 0,
          'every bad rule, variation names, serve and fallthrough is refused with SQLSTATE 22023');
SELECT is((SELECT count(*)::int FROM attempts WHERE state <> :'state0'), 0,
          'a refused write writes nothing (flags, configs, segments, prerequisites unchanged)');
SELECT is((SELECT count(*)::int FROM attempts WHERE place NOT IN ('segment', 'variation_names', 'variations')
           AND result NOT LIKE '%tap.rw.f%'), 0,
          'the error names the flag');
SELECT is((SELECT count(*)::int FROM attempts WHERE place NOT IN ('segment', 'variation_names', 'variations', 'serve', 'fallthrough')
           AND result NOT LIKE '%production%'), 0,
          'the error of a config''s rule names the environment');
SELECT is((SELECT count(*)::int FROM attempts WHERE place NOT IN ('variation_names', 'variations', 'serve', 'fallthrough')
           AND names_rule AND result !~ '"?bad"?|"good"'), 0,
          'the error names the rule');
SELECT is((SELECT count(*)::int FROM attempts WHERE place = 'segment' AND result NOT LIKE '%tap.rw.seg%'), 0,
          'the error of a segment''s rule names the segment');
SELECT is(pg_temp.state(), :'state0', 'the fixtures are as they were');

-------------------------------------------------------------------------------
-- Good writes: the API writes what it is given, get_flag shows it
-------------------------------------------------------------------------------
SELECT opsflags.update_flag('tap.rw.f', '{"serve": {"variation": 1}, "fallthrough": {"off": true}, "variation_names": ["x", null, "z"]}') AS x \gset
SELECT is(opsflags.get_flag('tap.rw.f') -> 'config' -> 'serve', '{"variation": 1}', 'update_flag writes serve');
SELECT is(opsflags.get_flag('tap.rw.f') -> 'config' -> 'fallthrough', '{"off": true}', 'update_flag writes fallthrough');
SELECT is(opsflags.get_flag('tap.rw.f') -> 'variation_names', '["x", null, "z"]', 'update_flag writes variation_names');
SELECT opsflags.update_flag('tap.rw.f', '{"serve": null, "variation_names": null}') AS x \gset
SELECT is(opsflags.get_flag('tap.rw.f') -> 'config' -> 'serve', 'null', 'serve null: the on variation again');
SELECT is(opsflags.get_flag('tap.rw.f') -> 'variation_names', 'null', 'variation_names null: no names');

-------------------------------------------------------------------------------
-- add_rule, remove_rule
-------------------------------------------------------------------------------
SELECT opsflags.add_rule('tap.rw.f', '{"id": "last"}') AS x \gset
SELECT opsflags.add_rule('tap.rw.f', '{"id": "first"}', at_position => 0) AS x \gset
SELECT opsflags.add_rule('tap.rw.f', '{"id": "second"}', 'production', 1) AS x \gset
SELECT opsflags.add_rule('tap.rw.f', '{"id": "in-staging"}', 'staging') AS x \gset
SELECT is((SELECT jsonb_agg(r -> 'id') FROM jsonb_array_elements(opsflags.get_flag('tap.rw.f') -> 'config' -> 'rules') r),
          '["first", "second", "good", "last"]', 'add_rule: at a position from 0, or last');
SELECT is(opsflags.get_flag('tap.rw.f', 'staging') -> 'config' -> 'rules', '[{"id": "in-staging"}]', 'add_rule: in the environment given');
SELECT is(ARRAY[pg_temp.try($$SELECT opsflags.add_rule('tap.rw.f', '{"id": "second"}')$$),
                pg_temp.try($$SELECT opsflags.add_rule('tap.rw.f', '{"id": "x"}', NULL, 5)$$),
                pg_temp.try($$SELECT opsflags.add_rule('tap.rw.f', '{"id": "x"}', NULL, -1)$$),
                pg_temp.try($$SELECT opsflags.add_rule('tap.rw.f', NULL)$$),
                pg_temp.try($$SELECT opsflags.add_rule('tap.rw.none', '{"id": "x"}')$$),
                pg_temp.try($$SELECT opsflags.add_rule('tap.rw.f', '{"id": "x"}', 'nowhere')$$)],
          ARRAY['23505 rule "second" of feature flag "tap.rw.f" already exists in environment "production"',
                '22023 position 5 is out of range for the 4 rules of feature flag "tap.rw.f" in environment "production"',
                '22023 position -1 is out of range for the 4 rules of feature flag "tap.rw.f" in environment "production"',
                '22004 rule must not be null',
                '42704 feature flag "tap.rw.none" does not exist',
                '42704 environment "nowhere" does not exist'],
          'add_rule: a duplicate id 23505, a position out of range 22023, NULL 22004, unknown flag or environment 42704');
SELECT is(ARRAY[opsflags.remove_rule('tap.rw.f', 'second'), opsflags.remove_rule('tap.rw.f', 'second'),
                opsflags.remove_rule('tap.rw.f', 'in-staging')],
          ARRAY[true, false, false], 'remove_rule: true when there was one in the environment');
SELECT is((SELECT jsonb_agg(r -> 'id') FROM jsonb_array_elements(opsflags.get_flag('tap.rw.f') -> 'config' -> 'rules') r),
          '["first", "good", "last"]', 'remove_rule: the others keep their order');

SELECT * FROM finish();
ROLLBACK;
