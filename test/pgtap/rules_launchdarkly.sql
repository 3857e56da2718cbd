-- test/pgtap/rules_launchdarkly.sql: LaunchDarkly's evaluation in the rule
-- engine (docs/rules.md), on generated cases checked against plain SQL
-- references (pgcrypto's sha1, from contrib):
--   a. launchdarkly_bucket() against sha1 in SQL, values of all lengths;
--   b. launchdarkly splits (salt, seed, weights falling short, bucket_by
--      from a context kind, integral and other numbers) against the bucket
--      in SQL and the running total of weight / 100000;
--   c. segment rules with a weight (the segment's key and salt);
--   d. clauses with LaunchDarkly's semantics: missing attributes, arrays,
--      negate, strict in.
-- One transaction, rolled back; cases come from random() after setseed.
\ir setup.inc

BEGIN;
SELECT plan(4);
SET LOCAL opsflags.environment = 'production';
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT setseed(0.4321) AS x \gset

CREATE FUNCTION pg_temp.rint(lo int, hi int) RETURNS int
LANGUAGE sql VOLATILE AS $$ SELECT lo + floor(random() * (hi - lo + 1))::int $$;
-- The reference bucket: the first 15 hex digits of sha1(prefix.value), as
-- a double, over 0xFFFFFFFFFFFFFFF as a double.
CREATE FUNCTION pg_temp.ref_bucket(prefix text, value text) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
  SELECT ('x' || substr(encode(digest(convert_to(prefix || '.' || value, 'UTF8'), 'sha1'), 'hex'), 1, 15))::bit(60)::bigint::float8
         / 1152921504606846975::float8
$$;
CREATE FUNCTION pg_temp.rstr(n int) RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT coalesce(string_agg(substr('abcXYZ019.-_/~ éß€', 1 + floor(random() * 18)::int, 1), ''), '') FROM generate_series(1, n)
$$;

-------------------------------------------------------------------------------
-- a. Buckets
-------------------------------------------------------------------------------
CREATE TEMP TABLE bcases AS
SELECT n, pg_temp.rstr(pg_temp.rint(0, 30)) AS prefix,
       pg_temp.rstr((ARRAY[0, 1, 5, 40, 45, 46, 50, 55, 63, 64, 65, 119, 120, 200])[pg_temp.rint(1, 14)]) AS value
FROM generate_series(1, 300) n;
SELECT is((SELECT count(*) FROM bcases WHERE opsflags.launchdarkly_bucket(prefix, value) = pg_temp.ref_bucket(prefix, value)),
          300::bigint,
          'a. launchdarkly_bucket equals the first 15 hex digits of sha1(prefix.value) / 0xFFFFFFFFFFFFFFF (300 generated prefixes and values of 0 to 200 characters, across sha1 block boundaries)');

-------------------------------------------------------------------------------
-- b. Splits
-------------------------------------------------------------------------------
CREATE TEMP TABLE sflags AS
SELECT n, 'tap.ld.s' || n AS k,
       CASE WHEN random() < 0.8 THEN pg_temp.rstr(pg_temp.rint(0, 12)) END AS salt,
       CASE WHEN random() < 0.25 THEN pg_temp.rint(-1000, 100000) END AS seed,
       random() < 0.4 AS by_org,
       pg_temp.rint(1, 4) AS nentries
FROM generate_series(1, 40) n;
CREATE TEMP TABLE sentries AS
SELECT f.n, e AS i, pg_temp.rint(0, 2) AS variation,
       CASE WHEN random() < 0.15 THEN 0 ELSE pg_temp.rint(0, least(100000, 100000 / f.nentries + 5000)) END AS weight
FROM sflags f, generate_series(1, f.nentries) e;
SELECT count(opsflags.create_flag(k, NULL, NULL, 'string', '["v0", "v1", "v2"]')) AS x FROM sflags \gset
UPDATE opsflags.feature_flags ff SET bucketing = 'launchdarkly', salt = f.salt FROM sflags f WHERE ff.flag_key = f.k;
UPDATE opsflags.feature_flag_configs fc SET is_enabled = true,
    fallthrough = jsonb_build_object('split', (SELECT jsonb_agg(jsonb_build_object('variation', e.variation, 'weight', e.weight) ORDER BY e.i)
                                               FROM sentries e WHERE e.n = f.n))
                  || CASE WHEN f.seed IS NOT NULL THEN jsonb_build_object('seed', f.seed) ELSE '{}' END
                  || CASE WHEN f.by_org THEN '{"bucket_by": "/id", "context_kind": "org"}' ELSE '{}' END::jsonb
FROM sflags f WHERE fc.flag_id = opsflags.flag_id(f.k) AND fc.environment = 'production';
CREATE TEMP TABLE scontexts AS
SELECT f.n, c, jsonb_build_object('kind', 'multi', 'user', jsonb_build_object('key', 'u-' || pg_temp.rstr(pg_temp.rint(1, 20))),
                                  'org', jsonb_build_object('key', 'o') ||
                                  CASE pg_temp.rint(1, 5) WHEN 1 THEN jsonb_build_object('id', pg_temp.rint(-50, 5000))
                                                          WHEN 2 THEN jsonb_build_object('id', pg_temp.rint(1, 50) + 0.5)
                                                          WHEN 3 THEN '{}'
                                                          ELSE jsonb_build_object('id', pg_temp.rstr(pg_temp.rint(0, 10))) END) AS ctx
FROM sflags f, generate_series(1, 6) c;
-- The reference: the bucket of the value (a string, an integral number as
-- text, else 0), then the first entry whose running total exceeds it, else
-- the last entry.
CREATE TEMP VIEW sref AS
SELECT s.n, s.c, s.ctx, f.k,
       coalesce((SELECT e.variation FROM (SELECT e.variation, e.i, sum(e.weight / 1e5::float8) OVER (ORDER BY e.i) AS total
                                           FROM sentries e WHERE e.n = s.n) e
                 WHERE b.bucket < e.total ORDER BY e.i LIMIT 1),
                (SELECT e.variation FROM sentries e WHERE e.n = s.n ORDER BY e.i DESC LIMIT 1)) AS variation
FROM scontexts s JOIN sflags f USING (n)
CROSS JOIN LATERAL (SELECT CASE WHEN v IS NULL THEN 0::float8
                                ELSE pg_temp.ref_bucket(coalesce(f.seed::text, ff.flag_key || '.' || coalesce(f.salt, '')), v) END AS bucket
                    FROM opsflags.feature_flags ff,
                         LATERAL (SELECT CASE WHEN NOT f.by_org THEN s.ctx #>> '{user,key}'
                                              WHEN jsonb_typeof(s.ctx #> '{org,id}') = 'string' THEN s.ctx #>> '{org,id}'
                                              WHEN jsonb_typeof(s.ctx #> '{org,id}') = 'number'
                                                   AND (s.ctx #>> '{org,id}')::numeric = trunc((s.ctx #>> '{org,id}')::numeric)
                                              THEN trunc((s.ctx #>> '{org,id}')::numeric)::text END AS v) vv
                    WHERE ff.flag_key = f.k) b;
-- a seed of 0 is as if absent
UPDATE sflags SET seed = NULL WHERE seed = 0;
SELECT is((SELECT count(*) FROM sref WHERE opsflags.feature_value(k, ctx) = to_jsonb('v' || variation)), 240::bigint,
          'b. launchdarkly splits serve as the reference (40 generated flags: salts, seeds, 1 to 4 entries whose weights often fall short, bucket_by the user key or an org''s /id of any type; 240 contexts)');

-------------------------------------------------------------------------------
-- c. Segment rules with a weight
-------------------------------------------------------------------------------
CREATE TEMP TABLE gsegs AS
SELECT n, 'tap.ld.g' || n AS k, pg_temp.rstr(pg_temp.rint(0, 8)) AS salt, pg_temp.rint(0, 100000) AS weight
FROM generate_series(1, 20) n;
SELECT count(opsflags.create_segment(k, k)) AS x FROM gsegs \gset
UPDATE opsflags.user_segments s SET bucketing = 'launchdarkly', salt = g.salt,
    rules = jsonb_build_array(jsonb_build_object('id', 'w', 'rollout', jsonb_build_object('weight', g.weight)))
FROM gsegs g WHERE s.segment_key = g.k;
SELECT count(opsflags.create_flag('tap.ld.f' || n)) AS x FROM gsegs \gset
UPDATE opsflags.feature_flag_configs fc SET is_enabled = true, fallthrough = '{"off": true}',
    rules = jsonb_build_array(jsonb_build_object('id', 'r', 'clauses',
              jsonb_build_array(jsonb_build_object('op', 'segment_match', 'values', jsonb_build_array(g.k), 'semantics', 'launchdarkly'))))
FROM gsegs g WHERE fc.flag_id = opsflags.flag_id('tap.ld.f' || g.n) AND fc.environment = 'production';
CREATE TEMP TABLE gcases AS
SELECT g.n, g.k, g.salt, g.weight, 'u' || pg_temp.rstr(pg_temp.rint(1, 12)) AS u FROM gsegs g, generate_series(1, 6);
SELECT is((SELECT count(*) FROM gcases
           WHERE opsflags.feature_enabled('tap.ld.f' || n, jsonb_build_object('key', u))
                 = (pg_temp.ref_bucket(k || '.' || salt, u) < weight / 1e5::float8)), 120::bigint,
          'c. a launchdarkly segment rule admits a context when the bucket of segmentKey.salt.key is below weight / 100000 (20 generated segments, 120 contexts)');

-------------------------------------------------------------------------------
-- d. Clause semantics: missing, arrays, negate, strict in
-------------------------------------------------------------------------------
SELECT opsflags.create_flag('tap.ld.c') IS NOT NULL AS x \gset
CREATE TEMP TABLE ccases AS
SELECT n, random() < 0.5 AS negate,
       (SELECT jsonb_agg(v) FROM (SELECT (ARRAY['"a"', '"b"', '1', '2.0', 'true', '"1"'])[pg_temp.rint(1, 6)]::jsonb v
                                  FROM generate_series(1, pg_temp.rint(1, 3))) t) AS vals,
       CASE pg_temp.rint(1, 5)
         WHEN 1 THEN NULL
         WHEN 2 THEN 'null'::jsonb
         WHEN 3 THEN (SELECT jsonb_agg(v) FROM (SELECT (ARRAY['"a"', '"c"', '1', '2', 'false', '"2"', '[1]', '{"a": 1}'])[pg_temp.rint(1, 8)]::jsonb v
                                                FROM generate_series(1, pg_temp.rint(0, 3))) t)
         ELSE (ARRAY['"a"', '"b"', '"c"', '1', '2', '3', 'true', 'false', '"1"', '{"x": 1}'])[pg_temp.rint(1, 10)]::jsonb
       END AS attr
FROM generate_series(1, 150) n;
CREATE FUNCTION pg_temp.ld_holds(negate boolean, vals jsonb, attr jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}',
      rules = jsonb_build_array(jsonb_build_object('id', 'r', 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'x', 'op', 'in', 'values', vals, 'negate', negate, 'semantics', 'launchdarkly'))))
  WHERE flag_id = opsflags.flag_id('tap.ld.c') AND environment = 'production';
  RETURN opsflags.feature_enabled('tap.ld.c', jsonb_build_object('kind', 'user', 'key', 'k')
                                              || CASE WHEN attr IS NULL THEN '{}' ELSE jsonb_build_object('x', attr) END);
END
$$;
-- The reference: missing (absent, null) never holds; else any element of
-- an array (or the value) equal to a value of the same JSON type (numbers
-- numerically, objects and arrays never), then negate.
SELECT is((SELECT count(*) FROM ccases c
           WHERE pg_temp.ld_holds(negate, vals, attr) =
                 CASE WHEN attr IS NULL OR attr = 'null' THEN false
                      ELSE negate <> EXISTS (
                          SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof(attr) = 'array' THEN attr ELSE jsonb_build_array(attr) END) e,
                                      jsonb_array_elements(vals) v
                          WHERE jsonb_typeof(e) = jsonb_typeof(v) AND jsonb_typeof(e) IN ('string', 'number', 'boolean') AND e = v)
                 END), 150::bigint,
          'd. a launchdarkly in clause: missing never holds (negate or not), arrays hold by any element, values compare strictly by JSON type (150 generated clauses and contexts)');

SELECT * FROM finish();
ROLLBACK;
