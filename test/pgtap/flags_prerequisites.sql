-- test/pgtap/flags_prerequisites.sql: prerequisite chains on generated flags agree with a
-- recursive plain-SQL reference of evaluation steps 2, 4 and 8, for >= 100 (flag, user) cases.  One transaction, rolled back.
\ir setup.inc

BEGIN;
SELECT plan(7);
SET LOCAL opsflags.environment = 'production';

-- 40 flags; flag i may require flags with a larger number (no cycles), and
-- chains stay within the depth limit because each edge skips ahead.
CREATE TEMP TABLE g AS
SELECT i, 'tap.pre.' || i AS key, ('x' || substr(md5('pre' || i), 1, 8))::bit(32)::int AS r
FROM generate_series(1, 40) i;
SELECT count(opsflags.create_flag(key, key)) AS x FROM g \gset
SELECT count(opsflags.update_flag(key, jsonb_build_object(
         'is_enabled', abs(r) % 6 <> 0,
         'enabled_percentage', (ARRAY[0, 0, 100, 30, 70])[1 + abs(r / 7) % 5]))) AS x FROM g \gset
SELECT count(opsflags.add_prerequisite(a.key, b.key)) AS x
FROM g a JOIN g b ON b.i > a.i AND b.i <= a.i + 12 AND b.i > a.i + 4
WHERE abs(a.r / (b.i + 3)) % 3 = 0 \gset

-- The reference: on iff enabled, every prerequisite on, and the rollout.
CREATE FUNCTION pg_temp.ref(k text, u text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE c opsflags.feature_flag_configs; f opsflags.feature_flags; p text;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags WHERE flag_key = k;
    SELECT * INTO c FROM opsflags.feature_flag_configs WHERE flag_id = f.id AND environment = 'production';
    IF NOT c.is_enabled THEN RETURN false; END IF;
    FOR p IN SELECT pf.flag_key FROM opsflags.flag_prerequisites x JOIN opsflags.feature_flags pf ON pf.id = x.prerequisite_id
             WHERE x.flag_id = f.id LOOP
        IF NOT pg_temp.ref(p, u) THEN RETURN false; END IF;
    END LOOP;
    IF c.enabled_percentage > 0 THEN
        RETURN c.enabled_percentage = 100 OR
               (u IS NOT NULL AND opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), u) <= c.enabled_percentage);
    END IF;
    RETURN true;
END $$;

CREATE TEMP TABLE cases AS
SELECT g.key, u, opsflags.feature_enabled(g.key, u) AS got, pg_temp.ref(g.key, u) AS want,
       opsflags.feature_explain(g.key, u) ->> 'reason' AS reason
FROM g, (SELECT 'user-' || n AS u FROM generate_series(1, 5) n UNION ALL SELECT NULL) us;

SELECT cmp_ok((SELECT count(*)::int FROM cases), '>=', 100, 'at least 100 generated (flag, user) cases');
SELECT is((SELECT count(*)::int FROM cases WHERE got IS DISTINCT FROM want), 0,
          'feature_enabled with prerequisite chains equals the recursive reference');
SELECT ok((SELECT count(*) FROM cases WHERE reason = 'PREREQUISITE_FAILED') > 0
          AND (SELECT count(*) FROM opsflags.flag_prerequisites) >= 10,
          'the cases include chains and prerequisite failures');

-- A graph of shared prerequisites: tap.dag.top requires the 8 flags of
-- layer 1, each flag of a layer requires all 8 of the next, 8 layers deep
-- (8^8 paths, 64 flags).  Each flag is evaluated once per evaluation, so
-- this is quick; and a statement_timeout is honoured.
CREATE TEMP TABLE dag AS
SELECT l, w, CASE WHEN l = 0 THEN 'tap.dag.top' ELSE format('tap.dag.%s.%s', l, w) END AS key
FROM generate_series(0, 8) l, generate_series(1, 8) w WHERE l > 0 OR w = 1;
SELECT count(opsflags.create_flag(key, key)) AS x FROM dag \gset
SELECT count(opsflags.update_flag(key, '{"is_enabled": true, "enabled_percentage": 100}')) AS x FROM dag \gset
SELECT count(opsflags.add_prerequisite(a.key, b.key)) AS x
FROM (SELECT * FROM dag ORDER BY l DESC, w) a JOIN dag b ON b.l = a.l + 1 \gset
SELECT is((SELECT count(*)::int FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags f ON f.id = p.flag_id
           WHERE f.flag_key LIKE 'tap.dag.%'), 8 + 7 * 64, 'the shared-prerequisite graph has 456 edges');
SET LOCAL statement_timeout = '2s';
SELECT is((SELECT count(*)::int FROM generate_series(1, 20) g WHERE opsflags.feature_enabled('tap.dag.top', 'user-' || g)),
          20, 'a flag with 8^8 prerequisite paths evaluates (20 users) within the statement timeout');
SELECT opsflags.toggle_flag('tap.dag.8.5', false) AS x \gset
SELECT is(opsflags.feature_explain('tap.dag.top', 'user-1') ->> 'reason', 'PREREQUISITE_FAILED',
          'one flag off at the bottom switches the top flag off');
SET LOCAL statement_timeout = 0;

-- A flag reaching more than max_prerequisite_count() prerequisites is refused.
SELECT count(opsflags.create_flag('tap.wide.' || i, 'w')) AS x FROM generate_series(1, 40) i \gset
SELECT throws_ok($$SELECT opsflags.add_prerequisite('tap.dag.top', 'tap.wide.' || i) FROM generate_series(1, 40) i$$,
                 '22023', NULL, 'a 64-prerequisite flag cannot take 40 more (limit 100)');

SELECT * FROM finish();
ROLLBACK;
