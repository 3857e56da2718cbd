-- Flag evaluation benchmark (issue: foundation).  Run by bench/run.sh; every
-- figure is a ratio of runs in this one session, so it holds on a noisy
-- machine.  Each variant runs REPS times, interleaved, and the median counts.
\ir common.sql

-- The PL/pgSQL equivalent: the same lookup and rules, reading the tables on
-- every call (it uses the C rollout_bucket for the hash, which only helps it).
CREATE FUNCTION bench.plpgsql_feature_enabled(p_key text, p_user text, p_role text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    f opsflags.feature_flags;
    c opsflags.feature_flag_configs;
BEGIN
    IF p_key IS NULL THEN RETURN false; END IF;
    SELECT * INTO f FROM opsflags.feature_flags WHERE flag_key = p_key;
    IF NOT FOUND OR f.archived THEN RETURN false; END IF;
    SELECT * INTO c FROM opsflags.feature_flag_configs
    WHERE flag_id = f.id AND environment = current_setting('opsflags.environment');
    IF NOT FOUND OR NOT c.is_enabled THEN RETURN false; END IF;
    IF statement_timestamp() < c.enable_at OR statement_timestamp() >= c.disable_at THEN RETURN false; END IF;
    IF p_user IS NOT NULL AND c.enabled_for_users ? p_user THEN RETURN true; END IF;
    IF p_role IS NOT NULL AND c.enabled_for_roles ? p_role THEN RETURN true; END IF;
    IF c.enabled_percentage > 0 THEN
        RETURN c.enabled_percentage = 100 OR (p_user IS NOT NULL AND
               opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), p_user) <= c.enabled_percentage);
    END IF;
    RETURN true;
END $$;

-- The flag under test: on, 10 targeted users, 2 roles, a 50% rollout, so a
-- typical call goes through every rule down to the bucket.
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.%';
SELECT opsflags.create_flag('bench.flag', 'Benchmark flag') IS NOT NULL AS created;
SELECT opsflags.update_flag('bench.flag', jsonb_build_object(
    'is_enabled', true, 'enabled_percentage', 50, 'enabled_for_roles', '["admin", "beta"]'::jsonb,
    'enabled_for_users', (SELECT jsonb_agg('vip-' || i) FROM generate_series(1, 10) i)));

\echo '== 1. per-evaluation cost over 1,000,000 rows (median of 5 runs, ms)'
SELECT bench.measure(
    ARRAY['loop only', 'hashtext', 'feature_enabled', 'plpgsql'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE ('user-' || i) IS NOT NULL) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE hashtext('bench.flag:user-' || i) > 0) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.flag', 'user-' || i, 'member')) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE bench.plpgsql_feature_enabled('bench.flag', 'user-' || i, 'member')) FROM generate_series(1, 100000) i$q$],
    5);
-- plpgsql ran over 100,000 rows: scale to 1,000,000.
UPDATE bench.results SET ms = ms * 10 WHERE variant = 'plpgsql';
WITH m AS (SELECT * FROM bench.median), base AS (SELECT ms FROM m WHERE variant = 'loop only')
SELECT m.variant, round(m.ms::numeric, 1) AS total_ms,
       round(((m.ms - base.ms) * 1e6 / 1e6)::numeric, 1) AS ns_per_call_net
FROM m, base ORDER BY m.ms;
WITH m AS (SELECT variant, ms FROM bench.median), b AS (SELECT ms FROM m WHERE variant = 'loop only')
SELECT round((((SELECT ms FROM m WHERE variant = 'plpgsql') - b.ms) / ((SELECT ms FROM m WHERE variant = 'feature_enabled') - b.ms))::numeric, 1)
         AS "plpgsql / feature_enabled (net, target >= 10)",
       round((((SELECT ms FROM m WHERE variant = 'feature_enabled') - b.ms) / ((SELECT ms FROM m WHERE variant = 'hashtext') - b.ms))::numeric, 2)
         AS "feature_enabled / hashtext (net, target <= 2)",
       round(((SELECT ms FROM m WHERE variant = 'feature_enabled') / (SELECT ms FROM m WHERE variant = 'hashtext'))::numeric, 2)
         AS "feature_enabled / hashtext (whole query)"
FROM b;
TRUNCATE bench.results;

\echo '== 2. flag count: 1,000,000 evaluations cycling over 10 flags vs over 10,000 flags'
INSERT INTO opsflags.feature_flags (flag_key, flag_name)
SELECT 'bench.many.' || i, 'Many ' || i FROM generate_series(1, 10000) i;
INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, enabled_percentage)
SELECT id, 'production', true, 50 FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.many.%';
SELECT bench.measure(
    ARRAY['10 flags', '10,000 flags'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.many.' || (i % 10 + 1), 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.many.' || (i % 10000 + 1), 'user-' || i)) FROM generate_series(1, 1000000) i$q$],
    5);
SELECT round((SELECT ms FROM bench.median WHERE variant = '10,000 flags')::numeric, 1) AS "10,000 flags ms",
       round((SELECT ms FROM bench.median WHERE variant = '10 flags')::numeric, 1) AS "10 flags ms",
       round(((SELECT ms FROM bench.median WHERE variant = '10,000 flags') /
              (SELECT ms FROM bench.median WHERE variant = '10 flags'))::numeric, 2) AS "ratio (target <= 1.2)";
TRUNCATE bench.results;
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.many.%';

\echo '== 3. targeting list: 1,000,000 evaluations of users outside a list of 10 vs of 100,000 entries'
SELECT opsflags.create_flag('bench.small', 'Small list') IS NOT NULL AS created;
SELECT opsflags.create_flag('bench.large', 'Large list') IS NOT NULL AS created;
SELECT opsflags.update_flag('bench.small', jsonb_build_object('is_enabled', true, 'enabled_percentage', 50,
    'enabled_for_users', (SELECT jsonb_agg('vip-' || i) FROM generate_series(1, 10) i)));
SELECT opsflags.update_flag('bench.large', jsonb_build_object('is_enabled', true, 'enabled_percentage', 50,
    'enabled_for_users', (SELECT jsonb_agg('vip-' || i) FROM generate_series(1, 100000) i)));
SELECT bench.measure(
    ARRAY['10 users', '100,000 users'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.small', 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.large', 'user-' || i)) FROM generate_series(1, 1000000) i$q$],
    5);
SELECT round((SELECT ms FROM bench.median WHERE variant = '100,000 users')::numeric, 1) AS "100,000 users ms",
       round((SELECT ms FROM bench.median WHERE variant = '10 users')::numeric, 1) AS "10 users ms",
       round(((SELECT ms FROM bench.median WHERE variant = '100,000 users') /
              (SELECT ms FROM bench.median WHERE variant = '10 users'))::numeric, 2) AS "ratio (target <= 1.2)";

TRUNCATE bench.results;

\echo '== 9. 1,000,000 evaluations: a plain flag vs with a segment of 100,000 members and two prerequisites; feature_value vs feature_enabled'
TRUNCATE bench.results;

\echo '== 10. usage counting: 1,000,000 evaluations with opsflags.track_usage on vs off'
SELECT bench.measure(
    ARRAY['counting', 'not counting'],
    ARRAY[
      $q$SET opsflags.track_usage = on; SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rich.plain', 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SET opsflags.track_usage = off; SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rich.plain', 'user-' || i)) FROM generate_series(1, 1000000) i$q$],
    5);
RESET opsflags.track_usage;
SELECT round((100 * ((SELECT ms FROM bench.median WHERE variant = 'counting') /
                     (SELECT ms FROM bench.median WHERE variant = 'not counting') - 1))::numeric, 1)
       AS "usage counting overhead % (target < 5)";
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.rich.%';
DELETE FROM opsflags.user_segments WHERE segment_key = 'bench.segment';
SELECT opsflags.create_segment('bench.segment', 'Bench', (SELECT jsonb_agg('member-' || i) FROM generate_series(1, 100000) i)) IS NOT NULL AS created;
SELECT count(opsflags.create_flag(k, k, NULL, 'string', '["a", "b", "c"]'))
FROM unnest(ARRAY['bench.rich.plain', 'bench.rich.full', 'bench.rich.pre1', 'bench.rich.pre2']) k;
SELECT count(opsflags.update_flag(k, '{"is_enabled": true, "enabled_percentage": 50, "variation_weights": [50, 30, 20]}'))
FROM unnest(ARRAY['bench.rich.plain', 'bench.rich.full']) k;
SELECT count(opsflags.toggle_flag(k, true)) FROM unnest(ARRAY['bench.rich.pre1', 'bench.rich.pre2']) k;
SELECT opsflags.update_flag('bench.rich.full', '{"segments": ["bench.segment"]}');
SELECT opsflags.add_prerequisite('bench.rich.full', 'bench.rich.pre1'), opsflags.add_prerequisite('bench.rich.full', 'bench.rich.pre2');
SELECT bench.measure(
    ARRAY['plain feature_enabled', 'rich feature_enabled', 'plain feature_value', 'rich feature_value'],
    ARRAY[
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rich.plain', 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.rich.full', 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(DISTINCT opsflags.feature_value('bench.rich.plain', 'user-' || i)) FROM generate_series(1, 1000000) i$q$,
      $q$SELECT count(DISTINCT opsflags.feature_value('bench.rich.full', 'user-' || i)) FROM generate_series(1, 1000000) i$q$],
    5);
SELECT round((SELECT ms FROM bench.median WHERE variant = 'rich feature_enabled')::numeric /
              (SELECT ms FROM bench.median WHERE variant = 'plain feature_enabled')::numeric, 2) AS "feature_enabled rich / plain (target <= 1.5)",
       round((SELECT ms FROM bench.median WHERE variant = 'rich feature_value')::numeric /
              (SELECT ms FROM bench.median WHERE variant = 'plain feature_value')::numeric, 2) AS "feature_value rich / plain (target <= 1.5)";
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'bench.rich.%';
DELETE FROM opsflags.user_segments WHERE segment_key = 'bench.segment';

DELETE FROM opsflags.feature_flags WHERE flag_key IN ('bench.small', 'bench.large');
DROP SCHEMA bench CASCADE;
