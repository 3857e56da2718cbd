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
-- One transaction, rolled back.  Contexts are written '...'::jsonb: an untyped
-- literal would call the (flag_key, user_id, user_role) form.
\ir setup.inc

BEGIN;
SELECT plan(6);
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

SELECT * FROM finish();
ROLLBACK;
