-- test/pgtap/flags_variations.sql: feature_explain agrees with feature_enabled and
-- feature_value; weighted splits follow their weights and are independent of
-- the rollout buckets.
-- One transaction, rolled back; cases derive from md5 of a seed string.
\ir setup.inc

BEGIN;
SELECT plan(6);
SET LOCAL opsflags.environment = 'production';

-- 120 flags with random states and variations.
CREATE TEMP TABLE cases AS
SELECT i, 'tap.var.' || i AS key,
       ('x' || substr(md5('var' || i), 1, 8))::bit(32)::int AS r
FROM generate_series(1, 120) i;
SELECT count(opsflags.create_flag(key, key, NULL, 'number',
                                  (SELECT jsonb_agg(v) FROM generate_series(1, 2 + abs(r) % 3) v)))
FROM cases \gset
SELECT count(opsflags.update_flag(key, jsonb_build_object(
         'is_enabled', abs(r) % 5 <> 0,
         'enabled_for_users', CASE WHEN abs(r) % 3 = 0 THEN '["u3", "u7"]'::jsonb ELSE '[]' END,
         'enabled_for_roles', CASE WHEN abs(r) % 4 = 0 THEN '["admin"]'::jsonb ELSE '[]' END,
         'enabled_percentage', (ARRAY[0, 100, 10, 50, 90])[1 + abs(r / 7) % 5],
         'on_variation', abs(r / 11) % 2,
         'variation_weights', CASE WHEN abs(r) % 2 = 0 THEN NULL
              ELSE (SELECT jsonb_agg(1 + abs(r / (13 * v)) % 5)
                    FROM generate_series(1, 2 + abs(r) % 3) v) END)))
FROM cases \gset

CREATE TEMP TABLE calls AS
SELECT c.key, u, ro,
       opsflags.feature_enabled(c.key, u, ro) AS enabled,
       opsflags.feature_value(c.key, u, ro) AS value,
       opsflags.feature_explain(c.key, u, ro) AS explain
FROM cases c,
     (VALUES ('u1', NULL), ('u3', NULL), ('u9', 'admin'), (NULL, NULL), ('u42', 'member'), ('u100', NULL)) v(u, ro);

SELECT cmp_ok((SELECT count(*)::int FROM calls), '>=', 100, 'at least 100 generated (flag, user, role) cases');
SELECT is((SELECT count(*)::int FROM calls WHERE (explain -> 'enabled')::boolean IS DISTINCT FROM enabled), 0,
          'feature_explain.enabled = feature_enabled on every case');
SELECT is((SELECT count(*)::int FROM calls WHERE explain -> 'value' IS DISTINCT FROM coalesce(value, 'null')), 0,
          'feature_explain.value = feature_value on every case');
SELECT is((SELECT count(*)::int FROM calls
           WHERE (explain ->> 'reason') NOT IN ('TARGET_USER', 'TARGET_ROLE', 'ROLLOUT_IN', 'FALLTHROUGH')
                 = enabled), 0,
          'the reason is an enabling one exactly when the flag is enabled');

-- A 50/30/20 split over 10,000 users, and independence from the rollout.
SELECT opsflags.create_flag('tap.var.split', 'Split', NULL, 'string', '["a", "b", "c"]') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.var.split',
    '{"is_enabled": true, "variation_weights": [50, 30, 20]}') IS NULL AS x \gset
CREATE TEMP TABLE split AS
SELECT i, opsflags.feature_value('tap.var.split', 'user-' || i) #>> '{}' AS v,
       opsflags.rollout_bucket('tap.var.split', 'user-' || i) <= 50 AS in_half
FROM generate_series(1, 10000) i;
SELECT is((SELECT count(*)::int FROM (SELECT v, count(*) n FROM split GROUP BY v) s
           WHERE abs(100.0 * n / 10000 - CASE v WHEN 'a' THEN 50 WHEN 'b' THEN 30 ELSE 20 END) > 2), 0,
          'each variation''s share of 10,000 users is within 2 points of its weight');
SELECT is((SELECT count(*)::int FROM (
             SELECT v,
                    abs(100.0 * count(*) FILTER (WHERE in_half) / (SELECT count(*) FROM split WHERE in_half)
                        - 100.0 * count(*) FILTER (WHERE NOT in_half) / (SELECT count(*) FROM split WHERE NOT in_half)) AS gap
             FROM split GROUP BY v) s WHERE gap > 3), 0,
          'variation shares are the same (within 3 points) inside and outside a 50% rollout: independent hashes');

SELECT * FROM finish();
ROLLBACK;
