-- test/pgtap/config_properties.sql: generated-case properties of configuration
-- config_set / config_get round trips of every kind of
-- JSON value, environment resolution (environment row, else 'all', else
-- NULL), config_all listings with redaction (sensitivity belongs to the key:
-- sensitive in one environment, redacted in all; is_sensitive false refused
-- beside a sensitive environment), updated_at / updated_by /
-- version bookkeeping, and config_get's per-backend cache seeing its own
-- uncommitted changes and forgetting them on ROLLBACK.
--
-- Every generated value comes from md5 of a tag, the case number and the seed
-- in pg_temp.rnd, so a failure reproduces exactly: change nothing and rerun.
-- Each property is checked on at least 100 cases against an independent
-- reference (a plain-SQL query over opsflags.app_config, or a model table
-- kept by the test itself).
--
-- The values are committed (part d needs one transaction per call, to compare
-- updated_at with the clock), under keys tap_cfg.* and environments
-- tapcfg-a / tapcfg_b, which the file removes at the start (leftovers of an
-- interrupted run) and at the end.  pgTAP keeps its bookkeeping in temporary
-- tables, which a ROLLBACK would undo, so inside a transaction that is rolled
-- back the observations go into psql variables (\gset) and are asserted
-- after the ROLLBACK.
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_cfg.%';
DELETE FROM opsflags.environments WHERE name IN ('tapcfg-a', 'tapcfg_b');
INSERT INTO opsflags.environments (name, description)
VALUES ('tapcfg-a', 'config_properties test'), ('tapcfg_b', 'config_properties test, never has rows');

SELECT plan(44);

-------------------------------------------------------------------------------
-- Deterministic pseudo-random numbers: rnd(tag, i) in [0, 1), irnd in lo..hi.
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.rnd(tag text, i bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT
AS $$
  -- the seed: change 'opsflags-config-properties-1' to draw other cases
  SELECT ('x' || substr(md5(tag || '/' || i || '/opsflags-config-properties-1'), 1, 8))::bit(32)::bigint
         / 4294967296.0::double precision
$$;

CREATE FUNCTION pg_temp.irnd(tag text, i bigint, lo int, hi int)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT lo + floor(pg_temp.rnd(tag, i) * (hi - lo + 1))::int $$;

CREATE FUNCTION pg_temp.pick(tag text, i bigint, choices text[])
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT choices[pg_temp.irnd(tag, i, 1, cardinality(choices))] $$;

-- n pseudo-random decimal digits.
CREATE FUNCTION pg_temp.digits(tag text, i bigint, n int)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
  SELECT left(string_agg(translate(md5(tag || '/' || i || '/' || g), 'abcdef', '012345'), '' ORDER BY g), n)
  FROM generate_series(0, n / 32) g
$$;

-- An integer of 20..60 digits, sometimes negative.
CREATE FUNCTION pg_temp.gen_bigint(tag text, i bigint)
RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT
AS $$
  SELECT (CASE WHEN pg_temp.rnd(tag || '.neg', i) < 0.3 THEN '-' ELSE '' END
          || pg_temp.irnd(tag || '.lead', i, 1, 9)
          || pg_temp.digits(tag || '.d', i, pg_temp.irnd(tag || '.len', i, 19, 59)))::jsonb
$$;

-- A decimal with many digits: 1..30 before the point, 1..45 after (trailing
-- zeros kept as written), sometimes an exponent.
CREATE FUNCTION pg_temp.gen_decimal(tag text, i bigint)
RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT
AS $$
  SELECT (CASE WHEN pg_temp.rnd(tag || '.neg', i) < 0.3 THEN '-' ELSE '' END
          || CASE WHEN pg_temp.rnd(tag || '.zero', i) < 0.2 THEN '0'
                  ELSE pg_temp.irnd(tag || '.lead', i, 1, 9)
                       || pg_temp.digits(tag || '.int', i, pg_temp.irnd(tag || '.ilen', i, 0, 29)) END
          || '.' || pg_temp.digits(tag || '.frac', i, pg_temp.irnd(tag || '.flen', i, 1, 45))
          || CASE WHEN pg_temp.rnd(tag || '.trail', i) < 0.3 THEN '000' ELSE '' END
          || CASE WHEN pg_temp.rnd(tag || '.exp', i) < 0.2
                  THEN pg_temp.pick(tag || '.e', i, ARRAY['e', 'E']) || pg_temp.pick(tag || '.es', i, ARRAY['', '+', '-'])
                       || pg_temp.irnd(tag || '.ev', i, 0, 40)
                  ELSE '' END)::jsonb
$$;

-- A string of 0..maxlen pieces: ASCII, JSON escapes and control characters,
-- precomposed and combining accents, CJK, Hangul, right-to-left text, emoji
-- (with skin tone, ZWJ sequences and flags), astral-plane characters.
CREATE FUNCTION pg_temp.gen_ustr(tag text, i bigint, maxlen int)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
  SELECT coalesce(string_agg(
           pg_temp.pick(tag || '.c' || n, i,
             ARRAY['a', 'Z', '0', ' ', '"', '\', '/', chr(10), chr(9), chr(1), chr(31), chr(127),
                   'é', 'e' || U&'\0301', 'n' || U&'\0303' || U&'\0323', 'ß', 'Ω', 'ﬁ',
                   '中', '文字', '日本語', 'ー', '한국어', 'עברית', 'العربية',
                   '😀', '👍🏽', U&'\+01F469\200D\+01F4BB', '🇩🇪', '𝄞', U&'\+10FFFD',
                   U&'\200B', U&'\FEFF', U&'\2028', U&'\FFFD']),
           '' ORDER BY n), '')
  FROM generate_series(1, pg_temp.irnd(tag || '.len', i, 0, maxlen)) n
$$;

-- Any JSON value; containers (nested up to depth) when depth > 0.
CREATE FUNCTION pg_temp.gen_json(tag text, i bigint, depth int)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    kind int := pg_temp.irnd(tag || '.kind', i, 0, CASE WHEN depth > 0 THEN 8 ELSE 5 END);
    r jsonb;
BEGIN
    CASE kind
        WHEN 0 THEN RETURN pg_temp.gen_bigint(tag, i);
        WHEN 1 THEN RETURN to_jsonb(pg_temp.gen_ustr(tag, i, 12));
        WHEN 2 THEN RETURN 'null'::jsonb;
        WHEN 3 THEN RETURN to_jsonb(pg_temp.rnd(tag || '.bool', i) < 0.5);
        WHEN 4 THEN RETURN pg_temp.gen_decimal(tag, i);
        WHEN 5 THEN RETURN pg_temp.pick(tag || '.edge', i,
                        ARRAY['0', '-0', '1', '-1', '0.0', '1e-30', '2147483648', '9223372036854775808',
                              '""', '"null"', '"true"', '{}', '[]', '[null]', '{"": null}'])::jsonb;
        WHEN 6, 7 THEN
            r := '[]';
            FOR j IN 1 .. pg_temp.irnd(tag || '.alen', i, 0, 5) LOOP
                r := r || jsonb_build_array(pg_temp.gen_json(tag || '.' || j, i, depth - 1));
            END LOOP;
            RETURN r;
        ELSE
            r := '{}';
            FOR j IN 1 .. pg_temp.irnd(tag || '.olen', i, 0, 5) LOOP
                r := r || jsonb_build_object(pg_temp.gen_ustr(tag || '.k' || j, i, 4),
                                             pg_temp.gen_json(tag || '.' || j, i, depth - 1));
            END LOOP;
            RETURN r;
    END CASE;
END
$$;

-------------------------------------------------------------------------------
-- a. config_set then config_get returns the same jsonb
-------------------------------------------------------------------------------
CREATE TEMP TABLE rt_cases AS
SELECT i, kind, format('tap_cfg.rt.%s', lpad(i::text, 3, '0')) AS k,
       pg_temp.pick('rt.env', i, ARRAY['all', 'production', 'staging', 'tapcfg-a']) AS env,
       CASE kind
         WHEN 'bigint' THEN pg_temp.gen_bigint('rt.v', i)
         WHEN 'decimal' THEN pg_temp.gen_decimal('rt.v', i)
         WHEN 'unicode' THEN to_jsonb(pg_temp.gen_ustr('rt.v', i, 40))
         WHEN 'nested' THEN
           CASE WHEN i % 2 = 0 THEN jsonb_build_object('a', pg_temp.gen_json('rt.a', i, 4), 'b', pg_temp.gen_json('rt.b', i, 4))
                ELSE jsonb_build_array(pg_temp.gen_json('rt.a', i, 4), pg_temp.gen_json('rt.b', i, 4)) END
         WHEN 'null' THEN 'null'::jsonb
         WHEN 'large' THEN
           CASE WHEN i % 3 = 0
                THEN (SELECT jsonb_agg(md5('rt.large/' || i || '/' || g)) FROM generate_series(1, 3000 + i * 10) g)
                ELSE to_jsonb(repeat(md5('rt.large/' || i) || '€😀中"\' || chr(10), pg_temp.irnd('rt.rep', i, 2500, 9000))) END
         WHEN 'boolean' THEN to_jsonb(i % 2 = 0)
         ELSE pg_temp.gen_json('rt.v', i, 0)
       END AS v
FROM (SELECT i, (ARRAY['bigint', 'decimal', 'unicode', 'nested', 'null', 'large', 'boolean', 'scalar'])[i % 8 + 1] AS kind
      FROM generate_series(1, 128) i) s;

SELECT count(*) FROM (SELECT opsflags.config_set(k, v, 'tap', env) FROM rt_cases ORDER BY i) s \gset
-- First read (cache cold), second read (cached).
CREATE TEMP TABLE rt_cold AS SELECT i, opsflags.config_get(k, env) AS got FROM rt_cases;
CREATE TEMP TABLE rt_warm AS SELECT i, opsflags.config_get(k, env) AS got FROM rt_cases;

SELECT diag('a mismatch: ' || c.k || ' (' || c.kind || ', ' || c.env || ') set ' || left(c.v::text, 80)
            || ', got ' || coalesce(left(r.got::text, 80), 'SQL NULL'))
FROM rt_cases c JOIN rt_cold r USING (i)
WHERE r.got IS NULL OR r.got <> c.v OR r.got::text <> c.v::text
ORDER BY i LIMIT 10;

SELECT cmp_ok((SELECT count(*)::int FROM rt_cases), '>=', 100, 'a: at least 100 generated values');
SELECT ok((SELECT bool_and(n >= 10) AND count(*) = 8 FROM (SELECT kind, count(*) n FROM rt_cases GROUP BY kind) s)
          AND (SELECT count(*) FROM rt_cases WHERE kind IN ('bigint', 'decimal')
                 AND length(regexp_replace(v::text, '[^0-9]', '', 'g')) >= 20) >= 20
          AND (SELECT count(*) FROM rt_cases WHERE kind = 'large' AND octet_length(v::text) >= 100000) >= 10
          AND (SELECT count(*) FROM rt_cases WHERE kind = 'unicode' AND v::text ~ '[😀👍🇩𝄞]' AND v::text ~ '[中文日한]'
                 AND v::text ~ U&'\0301|\0303') >= 1
          AND (SELECT count(*) FROM rt_cases WHERE v = 'null'::jsonb) >= 10
          AND (SELECT count(*) FROM rt_cases WHERE jsonb_typeof(v) = 'boolean') >= 10
          AND (SELECT count(*) FROM rt_cases WHERE kind = 'nested' AND v::text ~ '[\[{].*[\[{].*[\[{]') >= 5,
          'a: cases cover 20+ digit numbers, long decimals, unicode (emoji, CJK, combining marks), nesting, JSON null, 100 kB+ values, booleans');
SELECT is((SELECT count(*)::int FROM rt_cases c JOIN rt_cold r USING (i)
           WHERE r.got IS NULL OR r.got <> c.v), 0,
          'a: config_get returns a value equal to what config_set stored (cache cold)');
SELECT is((SELECT count(*)::int FROM rt_cases c JOIN rt_cold r USING (i)
           WHERE r.got IS NULL OR r.got::text <> c.v::text), 0,
          'a: ... and with the same text (every digit, trailing zero and character kept)');
SELECT is((SELECT count(*)::int FROM rt_cases c JOIN rt_warm r USING (i)
           WHERE r.got IS NULL OR r.got::text <> c.v::text), 0,
          'a: the same on a second read (served from the cache)');
SELECT is((SELECT count(*)::int FROM rt_cases c JOIN opsflags.app_config a ON a.config_key = c.k
           WHERE a.environment <> c.env OR a.config_value::text <> c.v::text), 0,
          'a: the stored row holds the value and environment given');
SELECT is((SELECT array_agg(DISTINCT jsonb_typeof(opsflags.config_get(k, env))) FROM rt_cases WHERE kind = 'null'),
          ARRAY['null'], 'a: JSON null comes back as the JSON value null, not as SQL NULL');
SELECT ok((SELECT count(*) FILTER (WHERE opsflags.config_get(k, 'all') IS NULL
                                      AND opsflags.config_get(k, CASE env WHEN 'staging' THEN 'production' ELSE 'staging' END) IS NULL)
                  = count(*) AND count(*) > 0
           FROM rt_cases WHERE env <> 'all'),
          'a: a key set only for one environment is found neither under ''all'' nor in another environment');

-- The large values are not needed any more (they would only slow the listings below).
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_cfg.rt.%';

-------------------------------------------------------------------------------
-- b. Environment resolution: the environment's row, else 'all', else NULL
-------------------------------------------------------------------------------
CREATE TEMP TABLE res_envs (env) AS VALUES ('development'), ('staging'), ('production'), ('tapcfg-a'), ('tapcfg_b');

-- 150 keys with random rows for 'all' and each environment but tapcfg_b.
CREATE TEMP TABLE res_rows AS
SELECT j, format('tap_cfg.env.%s', lpad(j::text, 3, '0')) AS k, e.env,
       CASE WHEN pg_temp.rnd('res.v?' || e.env, j) < 0.15 THEN 'null'::jsonb
            ELSE pg_temp.gen_json('res.v' || e.env, j, 1) END AS v,
       pg_temp.rnd('res.sensitive' || e.env, j) < 0.25 AS sensitive,
       CASE WHEN pg_temp.rnd('res.desc?' || e.env, j) < 0.5 THEN 'description ' || j || ' ' || e.env END AS descr
FROM generate_series(1, 150) j,
     (VALUES ('all'), ('development'), ('staging'), ('production'), ('tapcfg-a')) e(env)
WHERE pg_temp.rnd('res.has ' || e.env, j) < CASE WHEN e.env = 'all' THEN 0.6 ELSE 0.35 END;

-- (is_sensitive true or NULL: a key sensitive in one environment is in all)
SELECT count(*) FROM (SELECT opsflags.config_set(k, v, 'tap', env, descr, CASE WHEN sensitive THEN true END)
                      FROM res_rows ORDER BY j, env) s \gset

-- Every (key, environment): the 150 keys and 20 keys that do not exist.
CREATE TEMP TABLE res_cases AS
SELECT row_number() OVER (ORDER BY k, env) AS n, k, env
FROM (SELECT format('tap_cfg.env.%s', lpad(j::text, 3, '0')) AS k FROM generate_series(1, 150) j
      UNION ALL SELECT 'tap_cfg.env.missing.' || j FROM generate_series(1, 20) j) keys, res_envs;

-- Reference: two plain lookups, the environment's row first.
CREATE FUNCTION pg_temp.ref_get(key text, env text, OUT want jsonb, OUT source text)
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(e.config_value, a.config_value),
         CASE WHEN e.config_value IS NOT NULL THEN 'environment' WHEN a.config_value IS NOT NULL THEN 'all' ELSE 'none' END
  FROM (SELECT 1) one
  LEFT JOIN opsflags.app_config e ON e.config_key = key AND e.environment = env
  LEFT JOIN opsflags.app_config a ON a.config_key = key AND a.environment = 'all'
$$;

CREATE TEMP TABLE res_results (round text, n bigint, got jsonb, want jsonb, source text);

-- Round 1: explicit environment argument, cold then cached; then the
-- environment from opsflags.environment (argument omitted, and NULL).
INSERT INTO res_results
SELECT 'explicit, cold', c.n, opsflags.config_get(c.k, c.env), r.want, r.source
FROM res_cases c CROSS JOIN LATERAL pg_temp.ref_get(c.k, c.env) r;
INSERT INTO res_results
SELECT 'explicit, cached', c.n, opsflags.config_get(c.k, c.env), r.want, r.source
FROM res_cases c CROSS JOIN LATERAL pg_temp.ref_get(c.k, c.env) r;
DO $$
DECLARE
    e text;
BEGIN
    FOR e IN SELECT env FROM res_envs ORDER BY env LOOP
        PERFORM set_config('opsflags.environment', e, false);
        INSERT INTO res_results
        SELECT 'opsflags.environment', c.n, opsflags.config_get(c.k), r.want, r.source
        FROM res_cases c CROSS JOIN LATERAL pg_temp.ref_get(c.k, c.env) r WHERE c.env = e;
        INSERT INTO res_results
        SELECT 'environment NULL', c.n, opsflags.config_get(c.k, NULL), r.want, r.source
        FROM res_cases c CROSS JOIN LATERAL pg_temp.ref_get(c.k, c.env) r WHERE c.env = e;
    END LOOP;
END
$$;
SET opsflags.environment = 'production';

-- Round 2: change a third of the rows, delete a fifth, add new environment
-- rows (each its own committed statement), then read again: the cache must
-- follow.
SELECT count(*) FROM (SELECT opsflags.config_set(k, pg_temp.gen_json('res.v2', j, 1), 'tap', env)
                      FROM res_rows WHERE pg_temp.rnd('res.change', j) < 0.33 ORDER BY j, env) s \gset
SELECT count(*) FROM (SELECT opsflags.config_delete(k, env)
                      FROM res_rows WHERE pg_temp.rnd('res.delete ' || env, j) < 0.2 ORDER BY j, env) s \gset
SELECT count(*) FROM (SELECT opsflags.config_set(format('tap_cfg.env.%s', lpad(j::text, 3, '0')),
                                                 to_jsonb('added ' || j), 'tap', e.env)
                      FROM generate_series(1, 150) j, (VALUES ('staging'), ('tapcfg-a'), ('all')) e(env)
                      WHERE pg_temp.rnd('res.add ' || e.env, j) < 0.1
                      ORDER BY j, e.env) s \gset
INSERT INTO res_results
SELECT 'after changes', c.n, opsflags.config_get(c.k, c.env), r.want, r.source
FROM res_cases c CROSS JOIN LATERAL pg_temp.ref_get(c.k, c.env) r;

SELECT diag('b mismatch (' || round || '): ' || c.k || ' in ' || c.env || ' got ' || coalesce(got::text, 'SQL NULL')
            || ', reference ' || coalesce(want::text, 'SQL NULL') || ' (' || source || ')')
FROM res_results r JOIN res_cases c USING (n)
WHERE got::text IS DISTINCT FROM want::text
ORDER BY round, n LIMIT 20;

SELECT cmp_ok((SELECT count(*)::int FROM res_cases), '>=', 100, 'b: at least 100 generated (key, environment) cases');
SELECT is((SELECT array_agg(DISTINCT source ORDER BY source) FROM res_results WHERE round IN ('explicit, cold', 'after changes')),
          ARRAY['all', 'environment', 'none'], 'b: cases resolve to an environment row, to the ''all'' row and to nothing');
SELECT is((SELECT count(*)::int FROM res_results WHERE round = 'explicit, cold' AND got::text IS DISTINCT FROM want::text), 0,
          'b: config_get(key, env) = environment row, else ''all'' row, else NULL (cache cold)');
SELECT is((SELECT count(*)::int FROM res_results WHERE round = 'explicit, cached' AND got::text IS DISTINCT FROM want::text), 0,
          'b: the same on a second read (cached)');
SELECT is((SELECT count(*)::int FROM res_results WHERE round IN ('opsflags.environment', 'environment NULL')
             AND got::text IS DISTINCT FROM want::text), 0,
          'b: environment omitted or NULL: resolved in opsflags.environment');
SELECT is((SELECT count(*)::int FROM res_results WHERE round IN ('opsflags.environment', 'environment NULL')),
          2 * (SELECT count(*)::int FROM res_cases), 'b: (every case was read with the environment from the setting)');
SELECT is((SELECT count(*)::int FROM res_results WHERE round = 'after changes' AND got::text IS DISTINCT FROM want::text), 0,
          'b: after updates, deletes and new rows committed by later statements, config_get follows them');

-------------------------------------------------------------------------------
-- c. config_all(env): rows of env plus 'all', sensitive values redacted
-------------------------------------------------------------------------------
-- Reference over the table: a key sensitive in any environment is redacted
-- in all.
CREATE FUNCTION pg_temp.ref_all(env text)
RETURNS TABLE (config_key text, environment text, config_value jsonb, description text,
               is_sensitive boolean, version integer, updated_at timestamptz, updated_by text)
LANGUAGE sql STABLE
AS $$
  SELECT c.config_key, c.environment,
         CASE WHEN c.key_sensitive THEN to_jsonb('[REDACTED]'::text) ELSE c.config_value END,
         c.description, c.key_sensitive, c.version, c.updated_at, c.updated_by
  FROM (SELECT a.*, bool_or(a.is_sensitive) OVER (PARTITION BY a.config_key) AS key_sensitive
        FROM opsflags.app_config a) c
  WHERE env IS NULL OR c.environment = env OR c.environment = 'all'
$$;

-- A listing as one comparable value: sorted rows as jsonb.
CREATE FUNCTION pg_temp.listing(rows jsonb[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(jsonb_agg(r ORDER BY r->>'config_key', r->>'environment'), '[]') FROM unnest(rows) r
$$;

-- The model: what the tap_cfg.all.* rows should be, kept by this test from
-- the documented meaning of config_set / config_delete: is_sensitive NULL
-- gives a new row the key's sensitivity and keeps an existing row's; true
-- makes every row of the key sensitive; false is refused (22023, nothing
-- changes) while another environment's row of the key is sensitive.
CREATE TEMP TABLE model (k text, env text, v jsonb, descr text, sensitive boolean, PRIMARY KEY (k, env));
CREATE TEMP TABLE all_results (round int, env text, listing_ok boolean, table_ok boolean, model_ok boolean,
                               delete_ok boolean, redacted int, plain int, refused_ok boolean, uniform boolean, refusal boolean);

DO $$
DECLARE
    envs constant text[] := ARRAY['all', 'development', 'staging', 'production', 'tapcfg-a'];
    qenvs constant text[] := ARRAY[NULL, 'development', 'staging', 'production', 'tapcfg-a', 'tapcfg_b'];
    r int;
    op text;
    ck text;
    ce text;
    q text;
    cv jsonb;
    cd text;
    cs boolean;
    existed boolean;
    deleted boolean;
    want_refused boolean;
    refused boolean;
BEGIN
    FOR r IN 1 .. 120 LOOP
        op := pg_temp.pick('all.op', r, ARRAY['set', 'set', 'set', 'set', 'resensitize', 'delete']);
        ck := 'tap_cfg.all.' || pg_temp.irnd('all.k', r, 1, 12);
        ce := pg_temp.pick('all.env', r, envs);
        existed := EXISTS (SELECT FROM model m WHERE m.k = ck AND m.env = ce);
        deleted := NULL;
        want_refused := false;
        refused := false;
        IF op = 'set' OR op = 'resensitize' THEN
            IF op = 'set' OR NOT existed THEN
                cv := pg_temp.gen_json('all.v', r, 1);
                cd := CASE WHEN pg_temp.rnd('all.d?', r) < 0.5 THEN 'round ' || r END;
                cs := CASE pg_temp.irnd('all.s', r, 0, 2) WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END;
            ELSE
                -- Same value, sensitivity switched.
                SELECT m.v, NULL, NOT m.sensitive INTO cv, cd, cs FROM model m WHERE m.k = ck AND m.env = ce;
            END IF;
            want_refused := cs IS FALSE AND EXISTS (SELECT FROM model m WHERE m.k = ck AND m.env <> ce AND m.sensitive);
            BEGIN
                PERFORM opsflags.config_set(ck, cv, 'tap', ce, cd, cs);
            EXCEPTION WHEN invalid_parameter_value THEN
                refused := true;
            END;
            IF NOT want_refused THEN
                INSERT INTO model AS m
                VALUES (ck, ce, cv, cd, coalesce(cs, EXISTS (SELECT FROM model o WHERE o.k = ck AND o.sensitive)))
                ON CONFLICT (k, env) DO UPDATE SET v = EXCLUDED.v, descr = coalesce(cd, m.descr),
                                                   sensitive = coalesce(cs, m.sensitive);
                IF cs THEN
                    UPDATE model m SET sensitive = true WHERE m.k = ck;
                END IF;
            END IF;
        ELSE
            deleted := opsflags.config_delete(ck, ce);
            DELETE FROM model m WHERE m.k = ck AND m.env = ce;
        END IF;

        q := qenvs[pg_temp.irnd('all.q', r, 1, cardinality(qenvs))];
        INSERT INTO all_results
        SELECT r, q,
               (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM opsflags.config_all(q) t)
                 = (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM pg_temp.ref_all(q) t),
               (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM opsflags.config_all() t)
                 = (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM pg_temp.ref_all(NULL) t),
               (SELECT pg_temp.listing(array_agg(jsonb_build_object('config_key', t.config_key, 'environment', t.environment,
                                                                    'config_value', t.config_value, 'description', t.description,
                                                                    'is_sensitive', t.is_sensitive)))
                FROM opsflags.config_all(q) t WHERE t.config_key LIKE 'tap_cfg.all.%')
                 = (SELECT pg_temp.listing(array_agg(jsonb_build_object('config_key', m.k, 'environment', m.env,
                                                                        'config_value', CASE WHEN m.sensitive THEN '"[REDACTED]"' ELSE m.v END,
                                                                        'description', m.descr, 'is_sensitive', m.sensitive)))
                    FROM model m WHERE q IS NULL OR m.env IN (q, 'all')),
               deleted IS NOT DISTINCT FROM CASE WHEN op = 'delete' THEN existed END,
               (SELECT count(*) FROM opsflags.config_all(q) t WHERE t.config_key LIKE 'tap_cfg.all.%' AND t.is_sensitive),
               (SELECT count(*) FROM opsflags.config_all(q) t WHERE t.config_key LIKE 'tap_cfg.all.%' AND NOT t.is_sensitive),
               refused = want_refused,
               NOT EXISTS (SELECT FROM opsflags.app_config c WHERE c.config_key LIKE 'tap_cfg.all.%'
                           GROUP BY c.config_key HAVING bool_or(c.is_sensitive) <> bool_and(c.is_sensitive)),
               want_refused;
    END LOOP;
END
$$;

SELECT diag('c mismatch in round ' || round || ', config_all(' || coalesce(quote_literal(env), 'NULL') || '): listing '
            || listing_ok || ', every row ' || table_ok || ', model ' || model_ok || ', delete result ' || delete_ok
            || ', refusal ' || refused_ok || ', uniform ' || uniform)
FROM all_results WHERE NOT (listing_ok AND table_ok AND model_ok AND delete_ok AND refused_ok AND uniform) ORDER BY round LIMIT 10;

SELECT cmp_ok((SELECT count(*)::int FROM all_results), '>=', 100, 'c: at least 100 generated rounds of changes and listings');
SELECT ok((SELECT count(DISTINCT coalesce(env, '(null)')) = 6 AND sum(redacted) > 0 AND sum(plain) > 0 FROM all_results),
          'c: listings of every environment (and of all), with sensitive and plain rows');
SELECT is((SELECT count(*)::int FROM all_results WHERE listing_ok IS NOT TRUE), 0,
          'c: config_all(env) = rows of env plus ''all'' with sensitive values "[REDACTED]" (SQL reference)');
SELECT is((SELECT count(*)::int FROM all_results WHERE table_ok IS NOT TRUE), 0,
          'c: config_all() = every row, sensitive values "[REDACTED]" (SQL reference)');
SELECT is((SELECT count(*)::int FROM all_results WHERE model_ok IS NOT TRUE), 0,
          'c: the listed tap_cfg.all.* rows match the model of config_set / config_delete (is_sensitive and description NULL keep the old)');
SELECT is((SELECT count(*)::int FROM all_results WHERE delete_ok IS NOT TRUE), 0,
          'c: config_delete returns whether a row was deleted');
SELECT is((SELECT count(*)::int FROM all_results WHERE refused_ok IS NOT TRUE), 0,
          'c: config_set with is_sensitive false is refused exactly when another environment of the key is sensitive');
SELECT cmp_ok((SELECT count(*)::int FROM all_results WHERE refusal), '>=', 3,
              'c: (at least 3 rounds made one environment of a sensitive key public, and were refused)');
SELECT is((SELECT count(*)::int FROM all_results WHERE uniform IS NOT TRUE), 0,
          'c: after every round, each key is sensitive in all its environments or in none');

-- The rows of part b (random sensitivity and descriptions), per environment.
SELECT is((SELECT count(*)::int FROM res_envs e
           WHERE (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM opsflags.config_all(e.env) t)
                 IS DISTINCT FROM (SELECT pg_temp.listing(array_agg(to_jsonb(t))) FROM pg_temp.ref_all(e.env) t)), 0,
          'c: config_all(env) = reference for every environment over the part b rows');
SELECT ok((SELECT count(*) FROM opsflags.config_all('tapcfg_b') t WHERE t.environment <> 'all') = 0
          AND (SELECT count(*) FROM opsflags.config_all('tapcfg_b')) = (SELECT count(*) FROM opsflags.app_config WHERE environment = 'all')
          AND (SELECT count(*) FROM opsflags.config_all('tapcfg_b')) > 0,
          'c: config_all of an environment without rows lists exactly the ''all'' rows');
SELECT is((SELECT count(*)::int FROM opsflags.config_all() t JOIN opsflags.app_config c USING (config_key, environment)
           WHERE c.is_sensitive AND t.config_value <> '"[REDACTED]"'::jsonb), 0,
          'c: no sensitive value is listed by config_all()');
SELECT cmp_ok((SELECT count(*)::int FROM opsflags.app_config WHERE config_key LIKE 'tap_cfg.%' AND is_sensitive), '>=', 50,
              'c: (the listings above included at least 50 sensitive rows)');

-------------------------------------------------------------------------------
-- d. updated_at, updated_by and version, one transaction per change
-------------------------------------------------------------------------------
CREATE TEMP TABLE meta_cases AS
SELECT i, 'tap_cfg.meta.' || pg_temp.irnd('meta.k', i, 1, 12) AS k,
       pg_temp.pick('meta.env', i, ARRAY['all', 'staging', 'tapcfg-a']) AS env,
       CASE WHEN pg_temp.rnd('meta.op', i) < 0.40 THEN 'given'
            WHEN pg_temp.rnd('meta.op', i) < 0.60 THEN 'default'
            WHEN pg_temp.rnd('meta.op', i) < 0.70 THEN 'null'
            WHEN pg_temp.rnd('meta.op', i) < 0.80 THEN 'as_role'
            WHEN pg_temp.rnd('meta.op', i) < 0.92 THEN 'dml'
            ELSE 'delete' END AS op,
       pg_temp.pick('meta.by', i, ARRAY['deploy-bot', 'alice', 'Ünïcødé 用户 😀', 'ops team', 'x']) AS by,
       jsonb_build_object('case', i, 'token', md5('meta/' || i)) AS v
FROM generate_series(1, 130) i;

CREATE TEMP TABLE meta_obs (i int, t0 timestamptz, t1 timestamptz, present boolean,
                            version int, updated_at timestamptz, updated_by text, value jsonb);

-- One DO block per case: each runs in its own transaction (autocommit), so
-- clock_timestamp() at the call is compared with the row's updated_at.
SELECT format($gen$DO $do$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    %s;
    INSERT INTO meta_obs
    SELECT %s, t0, clock_timestamp(), c.config_key IS NOT NULL, c.version, c.updated_at, c.updated_by, c.config_value
    FROM (SELECT 1) one LEFT JOIN opsflags.app_config c ON c.config_key = %L AND c.environment = %L;
END
$do$$gen$,
    CASE op
      WHEN 'given' THEN format('PERFORM opsflags.config_set(%L, %L::jsonb, %L, %L)', k, v, by, env)
      WHEN 'default' THEN format('PERFORM opsflags.config_set(%L, %L::jsonb, environment => %L)', k, v, env)
      WHEN 'null' THEN format('PERFORM opsflags.config_set(%L, %L::jsonb, NULL, %L)', k, v, env)
      WHEN 'as_role' THEN format('SET LOCAL ROLE opsflags_admin; PERFORM opsflags.config_set(%L, %L::jsonb, environment => %L); RESET ROLE', k, v, env)
      WHEN 'dml' THEN format('IF EXISTS (SELECT FROM opsflags.app_config WHERE config_key = %1$L AND environment = %3$L) THEN '
                             'UPDATE opsflags.app_config SET config_value = %2$L WHERE config_key = %1$L AND environment = %3$L; '
                             'ELSE INSERT INTO opsflags.app_config (config_key, config_value, environment) VALUES (%1$L, %2$L, %3$L); END IF',
                             k, v, env)
      ELSE format('PERFORM opsflags.config_delete(%L, %L)', k, env)
    END, i, k, env)
FROM meta_cases ORDER BY i \gexec

-- Reference: per (key, environment), changes since the last delete.
CREATE TEMP TABLE meta_want AS
SELECT c.*,
       op <> 'delete' AS want_present,
       CASE WHEN op <> 'delete' THEN
         (SELECT count(*) FROM meta_cases p WHERE p.k = c.k AND p.env = c.env AND p.i <= c.i
            AND p.i > coalesce((SELECT max(d.i) FROM meta_cases d WHERE d.k = c.k AND d.env = c.env AND d.op = 'delete' AND d.i < c.i), 0))
       END::int AS want_version,
       CASE op WHEN 'given' THEN by WHEN 'delete' THEN NULL ELSE session_user END AS want_by
FROM meta_cases c;

SELECT diag('d mismatch: case ' || w.i || ' ' || w.op || ' ' || w.k || '/' || w.env || ': version ' || coalesce(o.version::text, '-')
            || ' (want ' || coalesce(w.want_version::text, '-') || '), updated_by ' || coalesce(o.updated_by, '-')
            || ' (want ' || coalesce(w.want_by, '-') || '), updated_at - clock ' || coalesce((o.updated_at - o.t0)::text, '-'))
FROM meta_want w JOIN meta_obs o USING (i)
WHERE o.present IS DISTINCT FROM w.want_present OR o.version IS DISTINCT FROM w.want_version
   OR o.updated_by IS DISTINCT FROM w.want_by
   OR (w.want_present AND (abs(extract(epoch FROM o.updated_at - o.t0)) > 1 OR o.updated_at > o.t1))
ORDER BY i LIMIT 10;

SELECT is((SELECT count(*)::int FROM meta_obs), (SELECT count(*)::int FROM meta_cases),
          'd: 130 generated changes, each observed in its own transaction');
SELECT ok((SELECT count(DISTINCT op) = 6 AND count(*) FILTER (WHERE want_version >= 4) > 10 FROM meta_want),
          'd: cases include every kind of change and rows changed four times or more');
SELECT is((SELECT count(*)::int FROM meta_want w JOIN meta_obs o USING (i)
           WHERE o.present IS DISTINCT FROM w.want_present OR o.version IS DISTINCT FROM w.want_version), 0,
          'd: version is 1 for a new row and increments by one on each change (config_set and plain DML)');
SELECT is((SELECT count(*)::int FROM meta_want w JOIN meta_obs o USING (i)
           WHERE w.want_present AND NOT (abs(extract(epoch FROM o.updated_at - o.t0)) <= 1 AND o.updated_at <= o.t1)), 0,
          'd: updated_at is within 1 s of clock_timestamp() at the call (and not after it)');
SELECT is((SELECT count(*)::int FROM meta_want w JOIN meta_obs o USING (i)
           WHERE w.op IN ('given', 'default', 'null', 'as_role') AND o.updated_by IS DISTINCT FROM w.want_by), 0,
          'd: config_set: updated_by is the value given, else (omitted or NULL, also under SET ROLE) session_user');
SELECT is((SELECT count(*)::int FROM meta_want w JOIN meta_obs o USING (i)
           WHERE w.op = 'dml' AND o.updated_by IS DISTINCT FROM w.want_by), 0,
          'd: plain DML that does not set updated_by records session_user');
SELECT is((SELECT count(*)::int FROM meta_want w JOIN meta_obs o USING (i)
           WHERE w.want_present AND o.value IS DISTINCT FROM w.v), 0,
          'd: each change stored its value');

-------------------------------------------------------------------------------
-- e. Cache coherence inside one session
-------------------------------------------------------------------------------
SELECT opsflags.config_set('tap_cfg.coh', '"v1"') AS x \gset
SELECT opsflags.config_set('tap_cfg.coh', '"v1-staging"', 'tap', 'staging') AS x \gset
SELECT is(opsflags.config_get('tap_cfg.coh'), '"v1"'::jsonb, 'e: committed value v1 (now cached)');
SELECT is(opsflags.config_get('tap_cfg.coh', 'staging'), '"v1-staging"'::jsonb, 'e: staging value (now cached)');
SELECT is(opsflags.config_get('tap_cfg.coh.new'), NULL, 'e: a key that does not exist: NULL (now cached)');

BEGIN;
SELECT opsflags.config_set('tap_cfg.coh', '"v2"') AS x \gset
SELECT coalesce(opsflags.config_get('tap_cfg.coh'), '"SQL NULL"') AS e_own \gset
SELECT opsflags.config_set('tap_cfg.coh.new', '{"n": 1}') AS x \gset
SELECT coalesce(opsflags.config_get('tap_cfg.coh.new'), '"SQL NULL"') AS e_new \gset
SELECT opsflags.config_delete('tap_cfg.coh', 'staging') AS x \gset
SELECT coalesce(opsflags.config_get('tap_cfg.coh', 'staging'), '"SQL NULL"') AS e_staging_deleted \gset
SAVEPOINT s1;
SELECT opsflags.config_set('tap_cfg.coh', '"v3"') AS x \gset
SELECT coalesce(opsflags.config_get('tap_cfg.coh'), '"SQL NULL"') AS e_savepoint \gset
ROLLBACK TO SAVEPOINT s1;
SELECT coalesce(opsflags.config_get('tap_cfg.coh'), '"SQL NULL"') AS e_after_savepoint \gset
-- Inside one PL/pgSQL block: each statement sees the one before.
CREATE TEMP TABLE e_block (n int, got jsonb);
DO $$
BEGIN
    PERFORM opsflags.config_set('tap_cfg.coh', '"v4"');
    INSERT INTO e_block VALUES (1, opsflags.config_get('tap_cfg.coh'));
    PERFORM opsflags.config_set('tap_cfg.coh', '"v5"');
    INSERT INTO e_block VALUES (2, opsflags.config_get('tap_cfg.coh'));
END
$$;
SELECT coalesce((SELECT jsonb_agg(got ORDER BY n) FROM e_block), '[]') AS e_block \gset
ROLLBACK;

SELECT is(:'e_own'::jsonb, '"v2"'::jsonb, 'e: own uncommitted config_set is seen by the next statement');
SELECT is(:'e_new'::jsonb, '{"n": 1}'::jsonb, 'e: own uncommitted new key is seen (the cached miss is forgotten)');
SELECT is(:'e_staging_deleted'::jsonb, '"v2"'::jsonb, 'e: own uncommitted delete of the staging row: staging falls back to ''all''');
SELECT is(ARRAY[:'e_savepoint'::jsonb, :'e_after_savepoint'::jsonb], ARRAY['"v3"', '"v2"']::jsonb[],
          'e: a change in a savepoint is seen, and forgotten after ROLLBACK TO SAVEPOINT');
SELECT is(:'e_block'::jsonb, '["v4", "v5"]'::jsonb, 'e: inside a PL/pgSQL block each config_get sees the config_set before it');
SELECT is(ARRAY[opsflags.config_get('tap_cfg.coh'), opsflags.config_get('tap_cfg.coh', 'staging'),
                coalesce(opsflags.config_get('tap_cfg.coh.new'), '"SQL NULL"')],
          ARRAY['"v1"', '"v1-staging"', '"SQL NULL"']::jsonb[],
          'e: after ROLLBACK: the old values again, and the new key is gone');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
DELETE FROM opsflags.app_config WHERE config_key LIKE 'tap_cfg.%';
DELETE FROM opsflags.environments WHERE name IN ('tapcfg-a', 'tapcfg_b');
RESET opsflags.environment;

SELECT * FROM finish();
