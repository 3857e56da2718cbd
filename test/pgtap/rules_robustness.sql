-- test/pgtap/rules_robustness.sql: compiled rules outlive the load that made
-- them, and what a load cannot use fails closed.
--   a. A `matches` clause keeps answering after other flags were loaded
--      (each load runs its own SPI queries, whose memory is freed when it
--      returns: the compiled expression must not live there) and after the
--      whole cache was emptied and loaded again.
--   b. A stored fallthrough that does not compile (written with the
--      validation trigger disabled, as a restore could) serves the off
--      variation, with a WARNING: it never turns the flag on for everyone.
--   c. Blank members of an in_cidr clause's values are left out, as for the
--      other operators (Unleash cleans values so).
--   d. Segments whose rules name each other in a cycle (stored with the
--      validation trigger disabled, as a restore could) load and evaluate
--      (the loading and evaluation guards end the cycle): the cycle never
--      takes a context in, the other rules still do.
-- One transaction, rolled back.  Contexts are written '...'::jsonb: an untyped
-- literal would call the (flag_key, user_id, user_role) form.
\ir setup.inc

BEGIN;
SELECT plan(8);
SET LOCAL opsflags.environment = 'production';

SELECT opsflags.create_flag('tap.rob.re', 'Regex') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.rob.re', '{"is_enabled": true, "fallthrough": {"off": true},
    "rules": [{"id": "corp", "clauses": [{"attribute": "email", "op": "matches", "values": ["@corp\\.com$", "^admin-[0-9]+@"]}]}]}') AS x \gset
SELECT count(opsflags.create_flag('tap.rob.other' || n, 'Other ' || n)) AS x FROM generate_series(1, 30) n \gset
-- A separate transaction would see them; this one sees its own writes.
SELECT is(ARRAY[opsflags.feature_enabled('tap.rob.re', '{"email": "a@corp.com"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"email": "admin-7@x.org"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"email": "a@corp.org"}'::jsonb)],
          ARRAY[true, true, false],
          'a: a matches clause answers once loaded');
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.rob.other' || n, '{"key": "u1"}'::jsonb)) AS x
FROM generate_series(1, 30) n \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.rob.re', '{"email": "b@corp.com"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"email": "admin-8@y.org"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"email": "admin@y.org"}'::jsonb)],
          ARRAY[true, true, false],
          'a: it answers the same after 30 other flags were loaded in later statements');
-- A new environment empties every cache; the flag loads again.
INSERT INTO opsflags.environments (name) VALUES ('taprob');
SELECT is(ARRAY[opsflags.feature_enabled('tap.rob.re', '{"email": "c@corp.com"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"email": "c@corp.net"}'::jsonb)],
          ARRAY[true, false],
          'a: and after the cache was emptied and the flag loaded again');

SELECT opsflags.create_flag('tap.rob.ft', 'Bad fallthrough') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.rob.ft', '{"is_enabled": true}') AS x \gset
ALTER TABLE opsflags.feature_flag_configs DISABLE TRIGGER validate_config_rules;
UPDATE opsflags.feature_flag_configs SET fallthrough = '{"off": "yes"}'
WHERE flag_id = opsflags.flag_id('tap.rob.ft') AND environment = 'production';
ALTER TABLE opsflags.feature_flag_configs ENABLE TRIGGER validate_config_rules;
SELECT is(opsflags.feature_explain('tap.rob.ft', '{"key": "u1"}'::jsonb) - 'flag_version' - 'environment',
          '{"enabled": false, "value": false, "reason": "NO_MATCH", "bucket": null, "variation": 1, "variant": null, "rule": null}',
          'b: a fallthrough that does not compile serves the off variation (NO_MATCH)');

SELECT lives_ok($$SELECT opsflags.update_flag('tap.rob.re', '{"rules": [{"id": "net", "clauses": [
                      {"attribute": "remoteAddress", "op": "in_cidr", "values": ["10.0.0.0/8", " ", ""]}]}]}')$$,
                'c: blank values of an in_cidr clause are accepted');
SELECT is(ARRAY[opsflags.feature_enabled('tap.rob.re', '{"remoteAddress": "10.1.2.3"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"remoteAddress": "11.1.2.3"}'::jsonb),
                opsflags.feature_enabled('tap.rob.re', '{"remoteAddress": ""}'::jsonb)],
          ARRAY[true, false, false],
          'c: and left out: only the range matches');

ALTER TABLE opsflags.user_segments DISABLE TRIGGER validate_segment_rules;
INSERT INTO opsflags.user_segments (segment_key, name, rules) VALUES
    ('tap.rob.s1', 's1', '[{"id": "s2", "segments": ["tap.rob.s2"]}, {"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]'),
    ('tap.rob.s2', 's2', '[{"id": "s1", "clauses": [{"op": "segment_match", "values": ["tap.rob.s1"]}]}]'),
    ('tap.rob.s3', 's3', '[{"id": "self", "segments": ["tap.rob.s3"]}]');
ALTER TABLE opsflags.user_segments ENABLE TRIGGER validate_segment_rules;
SELECT count(opsflags.create_flag('tap.rob.seg' || n)) AS x FROM generate_series(1, 3) n \gset
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}',
    rules = jsonb_build_array(jsonb_build_object('id', 'seg', 'segments', jsonb_build_array('tap.rob.s' || n)))
FROM generate_series(1, 3) n WHERE flag_id = opsflags.flag_id('tap.rob.seg' || n) AND environment = 'production';
SELECT is(ARRAY[opsflags.feature_enabled('tap.rob.seg1', '{"key": "u1", "country": "DE"}'::jsonb),
                opsflags.feature_enabled('tap.rob.seg1', '{"key": "u1", "country": "FR"}'::jsonb),
                opsflags.feature_enabled('tap.rob.seg2', '{"key": "u1", "country": "FR"}'::jsonb)],
          ARRAY[true, false, false],
          'd: segments naming each other load and answer: the cycle takes nobody in, a rule outside it does');
SELECT is(opsflags.feature_enabled('tap.rob.seg3', '{"key": "u1", "country": "DE"}'::jsonb), false,
          'd: a segment naming itself takes nobody in');

SELECT * FROM finish();
ROLLBACK;
