-- LaunchDarkly bucketing benchmark.  Run by bench/run.sh after
-- bench/rules.sql, whose 200,000 contexts (bench.ctx) and timing helpers
-- (bench.measure, bench.median) it reuses.  Two string flags serve the same
-- 50/50 split of variations "a" and "b" on the context's key, one bucketed
-- as LaunchDarkly does (sha1 of key.salt.value), one as Unleash does
-- (murmur3); only the hash differs.  Interleaved runs, median of 5, net of
-- reading the contexts.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
SET jit = off;
SET work_mem = '512MB';
SET opsflags.environment = 'production';
TRUNCATE bench.results;

DELETE FROM opsflags.feature_flags WHERE flag_key IN ('bench.ld.split', 'bench.unleash.split');
SELECT opsflags.create_flag('bench.ld.split', 'Split, LaunchDarkly buckets', NULL, 'string', '["a", "b"]') IS NOT NULL AS created,
       opsflags.create_flag('bench.unleash.split', 'Split, Unleash buckets', NULL, 'string', '["a", "b"]') IS NOT NULL AS created;
UPDATE opsflags.feature_flags SET bucketing = 'launchdarkly', salt = 'bench-salt' WHERE flag_key = 'bench.ld.split';
UPDATE opsflags.feature_flag_configs c SET is_enabled = true, fallthrough = CASE f.flag_key
        WHEN 'bench.ld.split' THEN '{"split": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}'::jsonb
        ELSE '{"split": [{"variation": 0, "weight": 50}, {"variation": 1, "weight": 50}]}'::jsonb END
FROM opsflags.feature_flags f
WHERE f.id = c.flag_id AND f.flag_key IN ('bench.ld.split', 'bench.unleash.split') AND c.environment = 'production';

\echo '== launchdarkly: a 50/50 split bucketed as LaunchDarkly (sha1) vs as Unleash (murmur3), 200,000 contexts (median of 5 runs)'
SELECT bench.measure(
    ARRAY['read contexts', 'LaunchDarkly-bucketed split', 'Unleash-bucketed split'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE c IS NOT NULL) FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_value('bench.ld.split', c) = '"a"') FROM bench.ctx$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_value('bench.unleash.split', c) = '"a"') FROM bench.ctx$q$],
    5);
WITH m AS (SELECT * FROM bench.median), base AS (SELECT ms FROM m WHERE variant = 'read contexts')
SELECT m.variant, round(m.ms::numeric, 1) AS total_ms,
       round(((m.ms - base.ms) * 1000 / (SELECT count(*) FROM bench.ctx))::numeric, 3) AS us_per_evaluation,
       CASE m.variant WHEN 'LaunchDarkly-bucketed split' THEN 'bench.ld.split'
                      WHEN 'Unleash-bucketed split' THEN 'bench.unleash.split' END AS flag
FROM m, base ORDER BY m.ms;

\echo '== launchdarkly: served (a, b) per flag, and the ratio of the net cost per evaluation, LaunchDarkly / Unleash'
SELECT f AS flag, count(*) FILTER (WHERE v = '"a"') AS a, count(*) FILTER (WHERE v = '"b"') AS b,
       count(*) FILTER (WHERE v IS DISTINCT FROM '"a"' AND v IS DISTINCT FROM '"b"') AS other
FROM (VALUES ('bench.ld.split'), ('bench.unleash.split')) t(f), LATERAL (SELECT opsflags.feature_value(f, c) AS v FROM bench.ctx) s
GROUP BY f ORDER BY f;
WITH m AS (SELECT variant, ms - (SELECT ms FROM bench.median WHERE variant = 'read contexts') AS net FROM bench.median)
SELECT round(((SELECT net FROM m WHERE variant = 'LaunchDarkly-bucketed split') /
              (SELECT net FROM m WHERE variant = 'Unleash-bucketed split'))::numeric, 2) AS launchdarkly_vs_unleash;
