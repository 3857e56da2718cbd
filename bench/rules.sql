-- Targeting-rule benchmark.  Run by bench/run.sh; every figure is a ratio of
-- runs in this one session (interleaved, median of REPS), so it holds on a
-- noisy machine.  The contexts are built once into a table (bench.ctx), so
-- every variant pays the same for reading them and only the evaluation
-- differs; the last two variants build each context from a row's columns, as
-- a query over an application's users table would.
\ir common.sql

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.%';
CREATE TABLE bench.users AS
SELECT i, 'user-' || i AS key, (ARRAY['DE', 'FR', 'US', 'JP', 'BR'])[1 + i % 5] AS country,
       'user' || i || '@example.com' AS email, 'pro' AS plan, 20 + i % 50 AS age,
       '2.' || (i % 10) || '.0' AS app_version, '10.1.' || (i % 250) || '.' || (i % 200) AS ip
FROM generate_series(1, 200000) i;
CREATE TABLE bench.ctx AS
SELECT i, jsonb_build_object('key', key, 'country', country, 'email', email, 'plan', plan, 'age', age,
                             'appVersion', app_version, 'ip', ip) AS c
FROM bench.users;
ANALYZE bench.users;
ANALYZE bench.ctx;

-- A plain flag: on, a 50% rollout on the key.
SELECT opsflags.create_flag('bench.plain', 'Plain flag') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = true, enabled_percentage = 50
WHERE flag_id = (SELECT id FROM opsflags.feature_flags WHERE flag_key = 'bench.plain');

-- 10 rules of 3 clauses of mixed operators.  In rules 1-9 the first two
-- clauses hold and the third does not, so all 30 clauses run; rule 10
-- matches and gates 50% on the key.
SELECT opsflags.create_flag('bench.rules', 'Ten rules') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs SET is_enabled = true, rules = (
    SELECT jsonb_agg(CASE WHEN n = 10 THEN jsonb_build_object(
               'id', 'r10',
               'clauses', '[{"attribute": "country", "op": "in", "values": ["DE", "FR", "US", "JP", "BR"]},
                            {"attribute": "email", "op": "ends_with", "values": ["@example.com"]},
                            {"attribute": "plan", "op": "in", "values": ["pro"]}]'::jsonb,
               'rollout', '{"percentage": 50}'::jsonb)
           ELSE jsonb_build_object(
               'id', 'r' || n,
               'clauses', jsonb_build_array(
                   jsonb_build_object('attribute', 'country', 'op', 'in', 'values', '["DE", "FR", "US", "JP", "BR"]'::jsonb),
                   jsonb_build_object('attribute', 'email', 'op', 'ends_with', 'values', '["@example.com"]'::jsonb),
                   CASE n % 5
                       WHEN 0 THEN jsonb_build_object('attribute', 'appVersion', 'op', 'semver_gte', 'values', '["3.0.0"]'::jsonb)
                       WHEN 1 THEN jsonb_build_object('attribute', 'age', 'op', 'gt', 'values', '[1000]'::jsonb)
                       WHEN 2 THEN jsonb_build_object('attribute', 'ip', 'op', 'in_cidr', 'values', '["192.168.0.0/16"]'::jsonb)
                       WHEN 3 THEN jsonb_build_object('attribute', 'plan', 'op', 'in', 'values', '["enterprise"]'::jsonb)
                       ELSE jsonb_build_object('attribute', 'email', 'op', 'starts_with', 'values', '["admin"]'::jsonb, 'case_insensitive', true)
                   END))
           END ORDER BY n)
    FROM generate_series(1, 10) n),
    fallthrough = '{"off": true}'
WHERE flag_id = (SELECT id FROM opsflags.feature_flags WHERE flag_key = 'bench.rules');

-- One rule of one `in` clause on the key: 10 values vs 10,000 values (the
-- contexts' keys are not among them, so every lookup misses).
SELECT opsflags.create_flag('bench.in10', 'in, 10 values') IS NOT NULL AS created,
       opsflags.create_flag('bench.in10000', 'in, 10,000 values') IS NOT NULL AS created,
       opsflags.create_flag('bench.matches', 'matches') IS NOT NULL AS created;
UPDATE opsflags.feature_flag_configs c SET is_enabled = true, fallthrough = '{"off": true}', rules = jsonb_build_array(
    jsonb_build_object('id', 'r1', 'clauses', jsonb_build_array(jsonb_build_object(
        'attribute', 'key', 'op', 'in', 'values',
        (SELECT jsonb_agg('vip-' || g) FROM generate_series(1, CASE f.flag_key WHEN 'bench.in10' THEN 10 ELSE 10000 END) g)))))
FROM opsflags.feature_flags f
WHERE f.id = c.flag_id AND f.flag_key IN ('bench.in10', 'bench.in10000');
UPDATE opsflags.feature_flag_configs c SET is_enabled = true, fallthrough = '{"off": true}', rules =
    '[{"id": "r1", "clauses": [{"attribute": "email", "op": "matches", "values": ["[0-9]+@example\\.org$"]}]}]'
FROM opsflags.feature_flags f
WHERE f.id = c.flag_id AND f.flag_key = 'bench.matches';

-- 100 flags, each with two rules, for evaluate_all.
SELECT count(opsflags.create_flag('bench.all.' || n, 'Flag ' || n)) AS created FROM generate_series(1, 100) n;
UPDATE opsflags.feature_flag_configs c SET is_enabled = true, rules =
    '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]},
      {"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "rollout": {"percentage": 30}}]',
    fallthrough = '{"off": true}'
FROM opsflags.feature_flags f
WHERE f.id = c.flag_id AND f.flag_key LIKE 'bench.all.%';
SET opsflags.environment = 'production';

\echo '== rules: per-evaluation cost over 200,000 contexts (median of 5 runs, ms)'
SELECT bench.measure(
    ARRAY['read contexts', 'plain flag', '10 rules x 3 clauses', 'in, 10 values', 'in, 10,000 values', 'matches',
          'plain flag, context per row', '10 rules, context per row'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE c IS NOT NULL) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.plain', c)) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rules', c)) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.in10', c)) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.in10000', c)) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.matches', c)) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.plain', jsonb_build_object('key', key, 'country', country,
             'email', email, 'plan', plan, 'age', age, 'appVersion', app_version, 'ip', ip))) FROM bench.users$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rules', jsonb_build_object('key', key, 'country', country,
             'email', email, 'plan', plan, 'age', age, 'appVersion', app_version, 'ip', ip))) FROM bench.users$q$],
    5);
WITH m AS (SELECT * FROM bench.median), base AS (SELECT ms FROM m WHERE variant = 'read contexts')
SELECT m.variant, round(m.ms::numeric, 1) AS total_ms,
       round(((m.ms - base.ms) * 1000 / 200000)::numeric, 3) AS us_per_evaluation
FROM m, base ORDER BY m.ms;

\echo '== rules: ratios of the net cost per evaluation, and of whole queries that build each context from a row (targets: 10 rules <= 2x plain; in 10,000 <= 1.2x in 10)'
WITH m AS (SELECT variant, ms - (SELECT ms FROM bench.median WHERE variant = 'read contexts') AS net FROM bench.median)
SELECT round(((SELECT net FROM m WHERE variant = '10 rules x 3 clauses') / (SELECT net FROM m WHERE variant = 'plain flag'))::numeric, 2) AS rules_vs_plain,
       round(((SELECT net FROM m WHERE variant = 'in, 10,000 values') / (SELECT net FROM m WHERE variant = 'in, 10 values'))::numeric, 2) AS in10000_vs_in10,
       round(((SELECT net FROM m WHERE variant = 'matches') / (SELECT net FROM m WHERE variant = 'in, 10 values'))::numeric, 2) AS matches_vs_in,
       round(((SELECT ms FROM bench.median WHERE variant = '10 rules, context per row') /
              (SELECT ms FROM bench.median WHERE variant = 'plain flag, context per row'))::numeric, 2) AS rules_vs_plain_context_per_row;

TRUNCATE bench.results;
\echo '== rules: evaluate_all over 100 flags (2 rules each) for one context, 200 calls (median of 5 runs)'
SELECT bench.measure(
    ARRAY['evaluate_all', 'feature_explain x 100'],
    ARRAY[
      $q$SELECT count(opsflags.evaluate_all(c)) FROM bench.ctx WHERE i <= 200$q$,
      $q$SELECT count(opsflags.feature_explain('bench.all.' || n, c)) FROM bench.ctx, generate_series(1, 100) n WHERE i <= 200$q$],
    5);
SELECT variant, round(ms::numeric, 1) AS total_ms,
       round((ms * 1000 / (200 * (SELECT count(*) FROM opsflags.feature_flags WHERE NOT archived)))::numeric, 2) AS us_per_flag
FROM bench.median ORDER BY ms;
