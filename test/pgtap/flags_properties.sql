-- test/pgtap/flags_properties.sql: generated-case properties of flag evaluation and
-- rollout bucketing.
--
-- Every generated value comes from md5 of a tag, the case number and the seed
-- below, so a failure reproduces exactly: change nothing and rerun.  Each
-- property is checked on at least 100 cases against an independent plain-SQL
-- reference or fixed values.  Everything runs in one transaction that is
-- rolled back at the end, so the file leaves nothing behind.
\ir setup.inc

BEGIN;
SELECT plan(24);

SET LOCAL opsflags.environment = 'production';

-------------------------------------------------------------------------------
-- Deterministic pseudo-random numbers: rnd(tag, i) in [0, 1), irnd in lo..hi.
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.rnd(tag text, i bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT
AS $$
  -- the seed: change 'opsflags-properties-1' to draw other cases
  SELECT ('x' || substr(md5(tag || '/' || i || '/opsflags-properties-1'), 1, 8))::bit(32)::bigint
         / 4294967296.0::double precision
$$;

CREATE FUNCTION pg_temp.irnd(tag text, i bigint, lo int, hi int)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT lo + floor(pg_temp.rnd(tag, i) * (hi - lo + 1))::int $$;

-- One element of an array, chosen by rnd(tag, i).
CREATE FUNCTION pg_temp.pick(tag text, i bigint, choices text[])
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT choices[pg_temp.irnd(tag, i, 1, cardinality(choices))] $$;

-- A random string of 0..maxlen characters drawn from a pool that mixes ASCII,
-- ':' (the separator rollout_bucket inserts) and 2-, 3- and 4-byte UTF-8.
CREATE FUNCTION pg_temp.rstr(tag text, i bigint, maxlen int)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
  SELECT coalesce(string_agg(
           pg_temp.pick(tag || '.c' || n, i,
             ARRAY['a', 'Z', '0', '9', ':', '-', '.', ' ', '_', 'é', 'ß', 'Ω', '€', '中', 'ー', '😀', '𝄞']),
           '' ORDER BY n), '')
  FROM generate_series(1, pg_temp.irnd(tag || '.len', i, 0, maxlen)) n
$$;

-------------------------------------------------------------------------------
-- a. feature_enabled equals a plain-SQL reference of the evaluation order
-------------------------------------------------------------------------------

-- Reference: the evaluation order (README, "Evaluation order"), first match wins.  Returns
-- the answer and the rule that decided it (to check the cases cover them all).
CREATE FUNCTION pg_temp.ref_eval(k text, u text, r text, OUT want boolean, OUT reason text)
LANGUAGE sql STABLE
AS $$
  WITH env AS (SELECT current_setting('opsflags.environment') AS name),
  f AS (SELECT * FROM opsflags.feature_flags WHERE flag_key = k),
  c AS (SELECT c.* FROM opsflags.feature_flag_configs c, f, env
        WHERE c.flag_id = f.id AND c.environment = env.name)
  SELECT * FROM (
    SELECT false, 'null key' WHERE k IS NULL
    UNION ALL
    SELECT false, 'unknown key' WHERE k IS NOT NULL AND NOT EXISTS (SELECT FROM f)
    UNION ALL
    SELECT CASE
             WHEN f.archived THEN false
             WHEN c.flag_id IS NULL THEN false
             WHEN NOT c.is_enabled THEN false
             WHEN c.enable_at IS NOT NULL AND statement_timestamp() < c.enable_at THEN false
             WHEN c.disable_at IS NOT NULL AND statement_timestamp() >= c.disable_at THEN false
             WHEN u IS NOT NULL AND EXISTS (
                  SELECT FROM jsonb_array_elements_text(c.enabled_for_users) x WHERE x = u) THEN true
             WHEN r IS NOT NULL AND EXISTS (
                  SELECT FROM jsonb_array_elements_text(c.enabled_for_roles) x WHERE x = r) THEN true
             WHEN c.enabled_percentage > 0 THEN
                  c.enabled_percentage = 100
                  OR (u IS NOT NULL AND opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), u)
                                         <= c.enabled_percentage)
             ELSE true
           END,
           CASE
             WHEN f.archived THEN 'archived'
             WHEN c.flag_id IS NULL THEN 'no config'
             WHEN NOT c.is_enabled THEN 'disabled'
             WHEN c.enable_at IS NOT NULL AND statement_timestamp() < c.enable_at THEN 'before enable_at'
             WHEN c.disable_at IS NOT NULL AND statement_timestamp() >= c.disable_at THEN 'after disable_at'
             WHEN u IS NOT NULL AND EXISTS (
                  SELECT FROM jsonb_array_elements_text(c.enabled_for_users) x WHERE x = u) THEN 'user listed'
             WHEN r IS NOT NULL AND EXISTS (
                  SELECT FROM jsonb_array_elements_text(c.enabled_for_roles) x WHERE x = r) THEN 'role listed'
             WHEN c.enabled_percentage = 100 THEN 'percentage 100'
             WHEN c.enabled_percentage > 0 AND u IS NULL THEN 'percentage, no user'
             WHEN c.enabled_percentage > 0
                  AND opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), u)
                      <= c.enabled_percentage THEN 'percentage, bucket in'
             WHEN c.enabled_percentage > 0 THEN 'percentage, bucket out'
             ELSE 'enabled'
           END
    FROM f LEFT JOIN c ON true
  ) s
$$;

CREATE TEMP TABLE user_pool (u) AS
  VALUES ('alice'), ('Alice'), ('al'), ('alice '), ('bob'), ('carol'), ('dave'), ('ünï'), ('用户'), (''),
         ('user-1'), ('user-12');
CREATE TEMP TABLE role_pool (r) AS
  VALUES ('admin'), ('Admin'), ('adm'), ('beta'), ('staff'), ('qa'), ('β-tester'), ('');

-- 160 flags with random state.
CREATE TEMP TABLE gen_flags AS
SELECT i, format('tap.prop.eval.%s', lpad(i::text, 3, '0')) AS flag_key,
       pg_temp.rnd('archived', i) < 0.08 AS archived,
       CASE WHEN pg_temp.rnd('group?', i) < 0.3 THEN 'tap.prop.group.' || (i % 4) END AS rollout_group
FROM generate_series(1, 160) i;

-- Its state in production and staging, drawn independently.
CREATE TEMP TABLE gen_configs AS
SELECT g.i, g.flag_key, e.env,
       pg_temp.rnd(e.env || 'noconfig', g.i) < 0.08 AS no_config,
       pg_temp.rnd(e.env || 'enabled', g.i) < 0.8 AS is_enabled,
       CASE WHEN pg_temp.rnd(e.env || 'pct?', g.i) < 0.3 THEN 0
            WHEN pg_temp.rnd(e.env || 'pct?', g.i) < 0.5 THEN 100
            ELSE pg_temp.irnd(e.env || 'pct', g.i, 1, 99) END AS pct,
       (SELECT coalesce(jsonb_agg(u ORDER BY u), '[]') FROM (
          SELECT u FROM user_pool WHERE pg_temp.rnd(e.env || 'user ' || u, g.i) < 0.15
          UNION ALL
          -- a few long lists, to exercise the hash sets
          SELECT 'user-' || n FROM generate_series(1, 400) n
          WHERE pg_temp.rnd(e.env || 'long', g.i) < 0.1 AND pg_temp.rnd(e.env || 'long ' || n, g.i) < 0.5
          UNION ALL
          -- duplicates are allowed in the arrays
          SELECT 'bob' WHERE pg_temp.rnd(e.env || 'dup', g.i) < 0.1) s) AS users,
       (SELECT coalesce(jsonb_agg(r ORDER BY r), '[]') FROM role_pool
        WHERE pg_temp.rnd(e.env || 'role ' || r, g.i) < 0.15) AS roles,
       pg_temp.irnd(e.env || 'enable_at', g.i, 0, 2) AS ea,   -- 0 null, 1 past, 2 future
       pg_temp.irnd(e.env || 'disable_at', g.i, 0, 2) AS da   -- 0 null, 1 past, 2 future
FROM gen_flags g, (VALUES ('production'), ('staging')) e(env);

SELECT count(*) FROM (SELECT opsflags.create_flag(flag_key, 'generated ' || i) FROM gen_flags) s \gset

UPDATE opsflags.feature_flags f SET rollout_group = g.rollout_group
FROM gen_flags g WHERE f.flag_key = g.flag_key AND g.rollout_group IS NOT NULL;

UPDATE opsflags.feature_flag_configs c SET
    is_enabled = g.is_enabled,
    enabled_percentage = g.pct,
    enabled_for_users = g.users,
    enabled_for_roles = g.roles,
    enable_at = CASE g.ea WHEN 1 THEN now() - interval '2 days' WHEN 2 THEN now() + interval '1 day' END,
    disable_at = CASE
                   WHEN g.da = 1 AND g.ea <> 2 THEN now() - interval '1 day'
                   WHEN g.da = 2 THEN now() + interval '2 days'
                 END
FROM gen_configs g JOIN opsflags.feature_flags f ON f.flag_key = g.flag_key
WHERE c.flag_id = f.id AND c.environment = g.env;

DELETE FROM opsflags.feature_flag_configs c
USING gen_configs g, opsflags.feature_flags f
WHERE g.no_config AND f.flag_key = g.flag_key AND c.flag_id = f.id AND c.environment = g.env;

UPDATE opsflags.feature_flags f SET archived = true
FROM gen_flags g WHERE f.flag_key = g.flag_key AND g.archived;

-- 1,000 (flag, user, role) cases: each flag once, then random ones; unknown
-- keys (including a differently-cased known key); NULL users and roles.
CREATE TEMP TABLE eval_cases AS
SELECT n,
       CASE WHEN n <= 160 THEN format('tap.prop.eval.%s', lpad(n::text, 3, '0'))
            WHEN pg_temp.rnd('key?', n) < 0.85
              THEN format('tap.prop.eval.%s', lpad(pg_temp.irnd('key', n, 1, 160)::text, 3, '0'))
            WHEN pg_temp.rnd('key?', n) < 0.93 THEN 'tap.prop.unknown.' || n
            ELSE format('TAP.PROP.EVAL.%s', lpad(pg_temp.irnd('key', n, 1, 160)::text, 3, '0'))
       END AS flag_key,
       CASE WHEN pg_temp.rnd('user?', n) < 0.15 THEN NULL
            WHEN pg_temp.rnd('user?', n) < 0.55 THEN pg_temp.pick('user', n, (SELECT array_agg(u) FROM user_pool))
            ELSE 'user-' || pg_temp.irnd('user', n, 1, 500)
       END AS user_id,
       CASE WHEN pg_temp.rnd('role?', n) < 0.25 THEN NULL
            WHEN pg_temp.rnd('role?', n) < 0.8 THEN pg_temp.pick('role', n, (SELECT array_agg(r) FROM role_pool))
            ELSE 'role-' || n
       END AS user_role
FROM generate_series(1, 1000) n;

-- Cold cache, production.
CREATE TEMP TABLE eval_prod_cold AS
SELECT e.*, opsflags.feature_enabled(e.flag_key, e.user_id, e.user_role) AS got, r.want, r.reason
FROM eval_cases e CROSS JOIN LATERAL pg_temp.ref_eval(e.flag_key, e.user_id, e.user_role) r;

-- Same cases again: now served from the cache.
CREATE TEMP TABLE eval_prod_warm AS
SELECT e.*, opsflags.feature_enabled(e.flag_key, e.user_id, e.user_role) AS got, r.want, r.reason
FROM eval_cases e CROSS JOIN LATERAL pg_temp.ref_eval(e.flag_key, e.user_id, e.user_role) r;

SET LOCAL opsflags.environment = 'staging';
CREATE TEMP TABLE eval_staging AS
SELECT e.*, opsflags.feature_enabled(e.flag_key, e.user_id, e.user_role) AS got, r.want, r.reason
FROM eval_cases e CROSS JOIN LATERAL pg_temp.ref_eval(e.flag_key, e.user_id, e.user_role) r;
SET LOCAL opsflags.environment = 'production';

-- The one- and two-argument forms (user and role default to NULL).
CREATE TEMP TABLE eval_short AS
SELECT e.*,
       opsflags.feature_enabled(e.flag_key) AS got1, (pg_temp.ref_eval(e.flag_key, NULL, NULL)).want AS want1,
       opsflags.feature_enabled(e.flag_key, e.user_id) AS got2, (pg_temp.ref_eval(e.flag_key, e.user_id, NULL)).want AS want2
FROM eval_cases e;

SELECT diag('a mismatch (' || t || '): ' || flag_key || ' user=' || coalesce(quote_literal(user_id), 'NULL')
            || ' role=' || coalesce(quote_literal(user_role), 'NULL') || ' got ' || coalesce(got::text, 'NULL')
            || ', reference ' || want || ' (' || reason || ')')
FROM (SELECT 'production, cold' t, * FROM eval_prod_cold
      UNION ALL SELECT 'production, cached', * FROM eval_prod_warm
      UNION ALL SELECT 'staging', * FROM eval_staging) m
WHERE got IS DISTINCT FROM want
ORDER BY t, n LIMIT 20;

SELECT cmp_ok((SELECT count(*)::int FROM eval_cases), '>=', 100, 'a: at least 100 generated (flag, user, role) cases');
SELECT is((SELECT count(*)::int FROM gen_flags), 160, 'a: 160 generated flags');
SELECT is((SELECT count(*)::int FROM eval_prod_cold WHERE got IS DISTINCT FROM want), 0,
          'a: feature_enabled = reference on every case (production, cold cache)');
SELECT is((SELECT count(*)::int FROM eval_prod_warm WHERE got IS DISTINCT FROM want), 0,
          'a: feature_enabled = reference on every case (production, cached)');
SELECT is((SELECT count(*)::int FROM eval_staging WHERE got IS DISTINCT FROM want), 0,
          'a: feature_enabled = reference on every case (opsflags.environment = staging)');
SELECT is((SELECT count(*)::int FROM eval_short WHERE got1 IS DISTINCT FROM want1 OR got2 IS DISTINCT FROM want2), 0,
          'a: feature_enabled(key) and feature_enabled(key, user) = reference with NULL defaults');
-- The cases reach every rule of the evaluation order (so the above is not vacuous).
SELECT is((SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(ARRAY[
              'unknown key', 'archived', 'no config', 'disabled', 'before enable_at', 'after disable_at',
              'user listed', 'role listed', 'percentage 100', 'percentage, no user',
              'percentage, bucket in', 'percentage, bucket out', 'enabled']) x
           WHERE x NOT IN (SELECT reason FROM eval_prod_cold UNION SELECT reason FROM eval_staging)),
          '{}'::text[], 'a: the generated cases reach every rule of the evaluation order');

-- Schedule boundaries, exactly: inside one DO block statement_timestamp() does
-- not move, so a schedule set to it is evaluated at that very instant.
SELECT opsflags.create_flag('tap.prop.edge', 'schedule edges') AS x \gset
SELECT opsflags.toggle_flag('tap.prop.edge', true) AS x \gset
CREATE TEMP TABLE edge_results (n int, got boolean);
DO $$
DECLARE
    st timestamptz := statement_timestamp();
    s record;
BEGIN
    FOR s IN SELECT * FROM (VALUES
            (1, st, NULL::timestamptz),                            -- at enable_at: on
            (2, NULL, st),                                         -- at disable_at: off
            (3, st - interval '1 microsecond', st + interval '1 microsecond'),  -- on
            (4, st + interval '1 microsecond', NULL),              -- just before enable_at: off
            (5, NULL, st + interval '1 microsecond'),              -- just before disable_at: on
            (6, st - interval '1 microsecond', st)                 -- window just closed: off
        ) v(n, ea, da) ORDER BY n LOOP
        UPDATE opsflags.feature_flag_configs c SET enable_at = NULL, disable_at = NULL
        FROM opsflags.feature_flags f
        WHERE c.flag_id = f.id AND f.flag_key = 'tap.prop.edge' AND c.environment = 'production';
        UPDATE opsflags.feature_flag_configs c SET enable_at = s.ea, disable_at = s.da
        FROM opsflags.feature_flags f
        WHERE c.flag_id = f.id AND f.flag_key = 'tap.prop.edge' AND c.environment = 'production';
        INSERT INTO edge_results VALUES (s.n, opsflags.feature_enabled('tap.prop.edge', 'u1'));
    END LOOP;
END
$$;
SELECT is((SELECT array_agg(got ORDER BY n) FROM edge_results), ARRAY[true, false, true, false, true, false],
          'a: schedule boundaries: on at enable_at, off at disable_at (statement_timestamp)');

-------------------------------------------------------------------------------
-- b. Rollout is monotonic: enabled at p => enabled at p' > p
-------------------------------------------------------------------------------
CREATE TEMP TABLE mono_cases AS
SELECT n, format('tap.prop.mono.%s', n % 10) AS flag_key,
       'mono-user-' || pg_temp.irnd('mono user', n, 1, 100000) AS user_id,
       pg_temp.irnd('mono p', n, 1, 99) AS p
FROM generate_series(1, 150) n;
ALTER TABLE mono_cases ADD p2 int, ADD e1 boolean, ADD e2 boolean, ADD b int;
UPDATE mono_cases SET p2 = p + pg_temp.irnd('mono p2', n, 1, 100 - p);

SELECT count(*) FROM (SELECT opsflags.create_flag(format('tap.prop.mono.%s', k), 'monotonic ' || k)
                      FROM generate_series(0, 9) k) s \gset
SELECT count(*) FROM (SELECT opsflags.update_flag(format('tap.prop.mono.%s', k),
                               CASE WHEN k < 3 THEN jsonb_build_object('is_enabled', true, 'rollout_group', 'tap.prop.mono.grp' || k)
                                    ELSE jsonb_build_object('is_enabled', true) END)
                      FROM generate_series(0, 9) k) s \gset

DO $$
DECLARE
    c record;
    v1 boolean;
    v2 boolean;
BEGIN
    FOR c IN SELECT * FROM mono_cases ORDER BY n LOOP
        PERFORM opsflags.update_flag(c.flag_key, jsonb_build_object('enabled_percentage', c.p));
        v1 := opsflags.feature_enabled(c.flag_key, c.user_id);
        PERFORM opsflags.update_flag(c.flag_key, jsonb_build_object('enabled_percentage', c.p2));
        v2 := opsflags.feature_enabled(c.flag_key, c.user_id);
        UPDATE mono_cases SET e1 = v1, e2 = v2 WHERE n = c.n;
    END LOOP;
END
$$;
UPDATE mono_cases m SET b = opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), m.user_id)
FROM opsflags.feature_flags f WHERE f.flag_key = m.flag_key;

SELECT diag('b violation: ' || flag_key || ' user ' || user_id || ' on at ' || p || '% but off at ' || p2 || '%')
FROM mono_cases WHERE e1 AND NOT e2 ORDER BY n LIMIT 20;

SELECT cmp_ok((SELECT count(*)::int FROM mono_cases WHERE p2 > p AND p >= 1 AND p2 <= 100), '>=', 100,
              'b: at least 100 (flag, user, p < p'') cases');
SELECT is((SELECT count(*)::int FROM mono_cases WHERE e1 IS NULL OR e2 IS NULL OR (e1 AND NOT e2)), 0,
          'b: a user enabled at p% is enabled at every p'' > p');
SELECT is((SELECT count(*)::int FROM mono_cases WHERE e1 IS DISTINCT FROM (b <= p) OR e2 IS DISTINCT FROM (b <= p2)), 0,
          'b: after each update_flag, feature_enabled = (bucket <= percentage)');
SELECT ok((SELECT count(*) FILTER (WHERE e1) > 0 AND count(*) FILTER (WHERE NOT e1 AND e2) > 0
                  AND count(*) FILTER (WHERE NOT e2) > 0 FROM mono_cases),
          'b: cases include users on at p, users switched on between p and p'', and users off at p''');

-------------------------------------------------------------------------------
-- c. Share: p% rollout enables p% of 10,000 users, within 2 points
-------------------------------------------------------------------------------
CREATE TEMP TABLE share_flags AS
SELECT k, format('tap.prop.share.%s', lpad(k::text, 3, '0')) AS flag_key, pg_temp.irnd('share p', k, 1, 99) AS p
FROM generate_series(1, 100) k;
SELECT count(*) FROM (SELECT opsflags.create_flag(flag_key, 'share') FROM share_flags) s \gset
UPDATE opsflags.feature_flag_configs c SET is_enabled = true, enabled_percentage = s.p
FROM share_flags s JOIN opsflags.feature_flags f ON f.flag_key = s.flag_key
WHERE c.flag_id = f.id AND c.environment = 'production';
-- Half of them bucket by a rollout group instead of the key.
UPDATE opsflags.feature_flags f SET rollout_group = 'tap.prop.share.group.' || s.k
FROM share_flags s WHERE f.flag_key = s.flag_key AND s.k % 2 = 0;

CREATE TEMP TABLE share_results AS
SELECT s.k, s.flag_key, s.p,
       count(*) FILTER (WHERE opsflags.feature_enabled(s.flag_key, 'user-' || g)) / 100.0 AS share
FROM share_flags s CROSS JOIN generate_series(1, 10000) g
GROUP BY s.k, s.flag_key, s.p;

SELECT diag('c: ' || flag_key || ' at ' || p || '% enabled ' || share || '% of 10,000 users')
FROM share_results WHERE abs(share - p) > 2 ORDER BY k LIMIT 20;

SELECT is((SELECT count(*)::int FROM share_results), 100, 'c: 100 random percentages in 1..99, 10,000 users each');
SELECT is((SELECT count(*)::int FROM share_results WHERE abs(share - p) > 2), 0,
          'c: the share of users enabled is within 2 points of the percentage');

-------------------------------------------------------------------------------
-- d. rollout_bucket: range, determinism, known vectors, murmur3 reference
-------------------------------------------------------------------------------

-- MurmurHash3 x86_32 over bytes, in PL/pgSQL: values are kept in 0..2^32-1 in
-- bigints, products go through numeric and are reduced modulo 2^32.
CREATE FUNCTION pg_temp.murmur3_ref(data bytea, seed bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    m32 constant bigint := 4294967295;
    c1 constant bigint := 3432918353;   -- 0xcc9e2d51
    c2 constant bigint := 461845907;    -- 0x1b873593
    len int := length(data);
    h bigint := seed & m32;
    k bigint;
    i int := 0;
    tail int;
BEGIN
    WHILE i + 4 <= len LOOP
        k := get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8)
             | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24);
        k := ((k::numeric * c1) % 4294967296)::bigint;
        k := ((k << 15) | (k >> 17)) & m32;
        k := ((k::numeric * c2) % 4294967296)::bigint;
        h := h # k;
        h := ((h << 13) | (h >> 19)) & m32;
        h := ((h::numeric * 5 + 3864292196) % 4294967296)::bigint;   -- + 0xe6546b64
        i := i + 4;
    END LOOP;
    tail := len - i;
    k := 0;
    IF tail >= 3 THEN k := k # (get_byte(data, i + 2)::bigint << 16); END IF;
    IF tail >= 2 THEN k := k # (get_byte(data, i + 1)::bigint << 8); END IF;
    IF tail >= 1 THEN
        k := k # get_byte(data, i)::bigint;
        k := ((k::numeric * c1) % 4294967296)::bigint;
        k := ((k << 15) | (k >> 17)) & m32;
        k := ((k::numeric * c2) % 4294967296)::bigint;
        h := h # k;
    END IF;
    h := h # len;
    h := h # (h >> 16);
    h := ((h::numeric * 2246822507) % 4294967296)::bigint;   -- 0x85ebca6b
    h := h # (h >> 13);
    h := ((h::numeric * 3266489909) % 4294967296)::bigint;   -- 0xc2b2ae35
    h := h # (h >> 16);
    RETURN h;
END
$$;

CREATE FUNCTION pg_temp.bucket_ref(g text, s text)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT (pg_temp.murmur3_ref(convert_to(g || ':' || s, 'UTF8'), 0) % 100)::int + 1 $$;

-- 260 inputs: random strings (0..10 characters, multibyte, ':' included), then
-- hash inputs of every byte length 1..21 from ASCII and from multibyte text.
CREATE TEMP TABLE bucket_cases AS
SELECT n, pg_temp.rstr('group', n, 10) AS g, pg_temp.rstr('stickiness', n, 10) AS s
FROM generate_series(1, 200) n
UNION ALL
SELECT 1000 + n, left('abcdefghijklmnopqrstu', n), '' FROM generate_series(0, 20) n
UNION ALL
SELECT 2000 + n, '', left('ABCDEFGHIJKLMNOPQRSTU', n) FROM generate_series(0, 20) n
UNION ALL
SELECT 3000 + n, left('é€😀中ßΩ', n), left('😀é', n % 3) FROM generate_series(0, 6) n
UNION ALL
SELECT 4000 + n, repeat('ü', n), repeat('x', n % 4) FROM generate_series(0, 10) n;

CREATE TEMP TABLE bucket_first AS
SELECT n, opsflags.rollout_bucket(g, s) AS b FROM bucket_cases;
CREATE TEMP TABLE bucket_second AS
SELECT n, opsflags.rollout_bucket(g, s) AS b FROM bucket_cases;

SELECT diag('d: rollout_bucket(' || quote_literal(c.g) || ', ' || quote_literal(c.s) || ') = '
            || coalesce(f.b::text, 'NULL') || ', murmur3 reference ' || pg_temp.bucket_ref(c.g, c.s))
FROM bucket_cases c JOIN bucket_first f USING (n)
WHERE f.b IS DISTINCT FROM pg_temp.bucket_ref(c.g, c.s)
ORDER BY n LIMIT 20;

SELECT cmp_ok((SELECT count(*)::int FROM bucket_cases), '>=', 100, 'd: at least 100 (group, stickiness) inputs');
SELECT ok((SELECT count(*) FILTER (WHERE g = '' OR s = '') > 0
                  AND count(*) FILTER (WHERE octet_length(g || s) > length(g || s)) > 0
                  AND count(DISTINCT octet_length(g || ':' || s) % 4) = 4
                  AND bool_and(octet_length(g || ':' || s) BETWEEN 1 AND 50)
                  AND count(DISTINCT octet_length(g || ':' || s)) FILTER (WHERE octet_length(g || ':' || s) <= 21) = 21
           FROM bucket_cases),
          'd: inputs include empty strings, multibyte UTF-8 and hash inputs of every length 1..21');
SELECT is((SELECT count(*)::int FROM bucket_first WHERE b IS NULL OR b NOT BETWEEN 1 AND 100), 0,
          'd: rollout_bucket is in 1..100');
SELECT is((SELECT count(*)::int FROM bucket_first f JOIN bucket_second s USING (n) WHERE f.b IS DISTINCT FROM s.b), 0,
          'd: rollout_bucket is deterministic (same inputs, separate statements, same bucket)');
SELECT is(opsflags.rollout_bucket('gr1', '123'), 73, 'd: rollout_bucket(''gr1'', ''123'') = 73 (Unleash vector)');
SELECT is(opsflags.rollout_bucket('AB12A', '122'), 23, 'd: rollout_bucket(''AB12A'', ''122'') = 23 (Unleash vector)');
-- The reference itself against published MurmurHash3 x86_32 vectors.
SELECT is(ARRAY[pg_temp.murmur3_ref('', 0), pg_temp.murmur3_ref('', 1),
                pg_temp.murmur3_ref(convert_to('The quick brown fox jumps over the lazy dog', 'UTF8'), 0),
                pg_temp.bucket_ref('gr1', '123'), pg_temp.bucket_ref('AB12A', '122')],
          ARRAY[0, 1364076727, 776992547, 73, 23]::bigint[],
          'd: the SQL murmur3 reference reproduces known vectors');
SELECT is((SELECT count(*)::int FROM bucket_cases c JOIN bucket_first f USING (n)
           WHERE f.b IS DISTINCT FROM pg_temp.bucket_ref(c.g, c.s)), 0,
          'd: rollout_bucket = murmur3_x86_32(UTF-8 of group:stickiness, seed 0) % 100 + 1 (SQL reference)');

-------------------------------------------------------------------------------
-- (e) any stored variation weights: 120 flags whose weights are drawn from a
-- pool with values past int4 and totals past the variant hash's range
-- (stored past the write-time checks, as replication could), 5 users each.
-- Reference: weights that are whole numbers 0..2147483647 (rounded, as
-- numeric to int does) with a total of 1..2147483647 split by variant_bucket;
-- any other weights serve the on variation.  Never an error.
-------------------------------------------------------------------------------
CREATE TEMP TABLE wflags AS
SELECT n, 'tap.prop.w.' || n AS key,
       jsonb_build_array(w[1], w[2], w[3]) AS weights
FROM generate_series(1, 120) n,
     LATERAL (SELECT array_agg(pg_temp.pick('weight', n * 3 + k,
                 ARRAY['0', '1', '7', '50', '100', '1073741824', '2147483647', '2147483648',
                       '10000000000', '-1', '2.5', '1e12'])::numeric ORDER BY k) AS w
              FROM generate_series(0, 2) k) ws;
SELECT count(opsflags.create_flag(key, key, NULL, 'string', '["x", "y", "z"]')) AS x FROM wflags \gset
SELECT count(opsflags.update_flag(key, '{"is_enabled": true, "on_variation": 1}')) AS x FROM wflags \gset
SET LOCAL session_replication_role = replica;
UPDATE opsflags.feature_flag_configs c SET variation_weights = w.weights
FROM wflags w WHERE c.flag_id = opsflags.flag_id(w.key) AND c.environment = 'production';
SET LOCAL session_replication_role = origin;

CREATE FUNCTION pg_temp.weights_ref(k text, weights jsonb, u text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    w numeric[] := ARRAY(SELECT round(e::text::numeric) FROM jsonb_array_elements(weights) e);
    total numeric := 0;
    b int;
    i int;
BEGIN
    IF u IS NULL OR EXISTS (SELECT FROM unnest(w) x WHERE x < 0 OR x > 2147483647)
       OR (SELECT sum(x) FROM unnest(w) x) NOT BETWEEN 1 AND 2147483647 THEN
        RETURN '"y"';
    END IF;
    b := opsflags.variant_bucket(k, u, (SELECT sum(x) FROM unnest(w) x)::int);
    FOR i IN 1..3 LOOP
        total := total + w[i];
        IF b <= total THEN
            RETURN to_jsonb((ARRAY['x', 'y', 'z'])[i]);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

SET LOCAL client_min_messages = error;   -- one WARNING per unusable flag
CREATE TEMP TABLE wcases AS
SELECT w.key, w.weights, u, opsflags.feature_value(w.key, u) AS got, pg_temp.weights_ref(w.key, w.weights, u) AS want
FROM wflags w, (SELECT 'user-' || g AS u FROM generate_series(1, 4) g UNION ALL SELECT NULL) us;
SET LOCAL client_min_messages = warning;
SELECT ok((SELECT count(*) >= 500 AND count(DISTINCT want) = 3
                  AND count(*) FILTER (WHERE (SELECT sum(e::text::numeric) FROM jsonb_array_elements(weights) e) > 2147483647) >= 100
           FROM wcases),
          'e: 600 cases, all three variations served, and 100+ with weight totals past 2147483647');
SELECT is((SELECT count(*)::int FROM wcases WHERE got IS DISTINCT FROM want), 0,
          'e: feature_value with any stored weights equals the reference (split by variant_bucket, else the on variation)');

SELECT * FROM finish();
ROLLBACK;
