-- test/pgtap/rules_segments.sql: membership of segments whose rules
-- exclude and name other segments (docs/rules.md), on generated segments
-- and contexts checked against a plain recursive reference: listed keys and
-- roles are in, else the first rule that holds decides (in, or out when it
-- excludes), else out; a rule's segment_match clauses and segments name
-- segments written before (nested, no cycle).  Also the depth bound of
-- nesting.  One transaction, rolled back; cases come from random() after
-- setseed.
\ir setup.inc
\ir rules_reference.inc

BEGIN;
SELECT plan(6);
SET LOCAL opsflags.environment = 'production';
SELECT setseed(0.4321) AS x \gset

CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT a[1 + floor(random() * array_length(a, 1))::int] $$;
CREATE FUNCTION pg_temp.rint(lo int, hi int) RETURNS int
LANGUAGE sql VOLATILE AS $$ SELECT lo + floor(random() * (hi - lo + 1))::int $$;

-- 40 configurations of 4 segments each; segment j names only segments
-- 1..j-1 of its configuration.
CREATE TEMP TABLE segs (cfg int, j int, key text, user_ids jsonb, roles jsonb, rules jsonb);
DO $$
DECLARE
    rules jsonb;
    rule  jsonb;
    cls   jsonb;
BEGIN
    FOR cfg IN 1..40 LOOP
        FOR j IN 1..4 LOOP
            rules := '[]';
            FOR r IN 1..pg_temp.rint(0, 3) LOOP
                cls := '[]';
                FOR c IN 1..pg_temp.rint(0, 2) LOOP
                    IF j > 1 AND random() < 0.4 THEN
                        cls := cls || jsonb_build_array(jsonb_build_object('op', 'segment_match',
                            'values', jsonb_build_array(format('tap.rsg.%s.%s', cfg, pg_temp.rint(1, j - 1))),
                            'negate', random() < 0.25));
                    ELSE
                        cls := cls || jsonb_build_array(jsonb_build_object('attribute', a[1], 'op', 'in',
                            'values', a[2]::jsonb, 'negate', random() < 0.2))
                            FROM (SELECT string_to_array(pg_temp.pick(ARRAY['country|["DE"]', 'country|["DE", "FR"]',
                                      'plan|["pro"]', 'plan|["free", "pro"]', 'team|["ops"]']), '|') AS a) l;
                    END IF;
                END LOOP;
                rule := jsonb_build_object('id', 'r' || r, 'clauses', cls);
                IF j > 1 AND random() < 0.25 THEN
                    rule := rule || jsonb_build_object('segments',
                        jsonb_build_array(format('tap.rsg.%s.%s', cfg, pg_temp.rint(1, j - 1))));
                END IF;
                IF random() < 0.15 THEN
                    rule := rule || jsonb_build_object('rollout', jsonb_build_object('percentage', pg_temp.rint(20, 80)));
                END IF;
                IF random() < 0.4 THEN
                    rule := rule || jsonb_build_object('exclude', random() < 0.9);
                END IF;
                rules := rules || jsonb_build_array(rule);
            END LOOP;
            INSERT INTO segs VALUES (cfg, j, format('tap.rsg.%s.%s', cfg, j),
                (SELECT coalesce(jsonb_agg('u' || pg_temp.rint(1, 8)), '[]') FROM generate_series(1, pg_temp.rint(0, 2))),
                CASE WHEN random() < 0.2 THEN '["admin"]'::jsonb ELSE '[]' END, rules);
        END LOOP;
    END LOOP;
END
$$;
SELECT count(opsflags.create_segment(key, key, user_ids, roles, NULL, rules)) AS x
FROM (SELECT * FROM segs ORDER BY cfg, j) s \gset

-- The reference: the first rule that holds decides.
CREATE FUNCTION pg_temp.ref_in_segment(seg_key text, ctx jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s segs;
    r jsonb;
BEGIN
    SELECT * INTO s FROM segs WHERE key = seg_key;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF coalesce(s.user_ids ? (ctx ->> 'key'), false) OR coalesce(s.roles ? (ctx ->> 'role'), false) THEN
        RETURN true;
    END IF;
    FOR r IN SELECT v FROM jsonb_array_elements(s.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
        IF NOT EXISTS (SELECT FROM jsonb_array_elements(r -> 'clauses') cl
                       WHERE CASE WHEN cl ->> 'op' = 'segment_match'
                                  THEN (SELECT bool_or(pg_temp.ref_in_segment(k, ctx)) FROM jsonb_array_elements_text(cl -> 'values') k)
                                       = (cl ->> 'negate')::boolean
                                  ELSE NOT pg_temp.ref_clause(cl, ctx) END)
           AND NOT EXISTS (SELECT FROM jsonb_array_elements_text(coalesce(r -> 'segments', '[]')) k
                           WHERE NOT pg_temp.ref_in_segment(k, ctx))
           AND (NOT r ? 'rollout' OR pg_temp.ref_gate(r -> 'rollout', ctx, s.key)) THEN
            RETURN NOT coalesce((r ->> 'exclude')::boolean, false);
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- A flag per configuration: its rule names the top segment (a rule's
-- segments), or the top two (segment_match, any).
CREATE TEMP TABLE flags AS
SELECT cfg, 'tap.rsg.f' || cfg AS k, cfg % 2 = 0 AS by_segments FROM generate_series(1, 40) cfg;
SELECT count(opsflags.create_flag(k)) AS x FROM flags \gset
UPDATE opsflags.feature_flag_configs fc
SET is_enabled = true, fallthrough = '{"off": true}',
    rules = CASE WHEN f.by_segments THEN jsonb_build_array(jsonb_build_object('id', 'top', 'segments', jsonb_build_array(format('tap.rsg.%s.4', f.cfg))))
                 ELSE jsonb_build_array(jsonb_build_object('id', 'top', 'clauses', jsonb_build_array(jsonb_build_object(
                          'op', 'segment_match', 'values', jsonb_build_array(format('tap.rsg.%s.4', f.cfg), format('tap.rsg.%s.3', f.cfg)))))) END
FROM flags f WHERE fc.flag_id = opsflags.flag_id(f.k) AND fc.environment = 'production';

CREATE TEMP TABLE cases AS
SELECT f.*, ctx FROM flags f, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'key', 'u' || pg_temp.rint(1, 8),
               'role', pg_temp.pick(ARRAY['admin', 'member', NULL]),
               'country', pg_temp.pick(ARRAY['DE', 'FR', 'US', NULL]),
               'plan', pg_temp.pick(ARRAY['pro', 'free', NULL]),
               'team', pg_temp.pick(ARRAY['ops', 'dev', NULL]))) AS ctx
    FROM generate_series(1, 8) WHERE f.cfg > 0) c;
ALTER TABLE cases ADD COLUMN want boolean, ADD COLUMN got boolean;
UPDATE cases SET
    want = CASE WHEN by_segments THEN pg_temp.ref_in_segment(format('tap.rsg.%s.4', cfg), ctx)
                ELSE pg_temp.ref_in_segment(format('tap.rsg.%s.4', cfg), ctx) OR pg_temp.ref_in_segment(format('tap.rsg.%s.3', cfg), ctx) END,
    got = opsflags.feature_enabled(k, ctx);
SELECT diag(format('%s, context %s: enabled %s, reference %s', k, ctx, got, want))
FROM cases WHERE got IS DISTINCT FROM want ORDER BY cfg LIMIT 10;

SELECT ok((SELECT count(*) >= 300 AND count(*) FILTER (WHERE want) >= 50 AND count(*) FILTER (WHERE NOT want) >= 50 FROM cases)
          AND (SELECT count(*) >= 40 FROM segs WHERE jsonb_path_exists(rules, '$[*] ? (@.exclude == true)'))
          AND (SELECT count(*) >= 40 FROM segs WHERE EXISTS (SELECT FROM opsflags_internal.rule_segment_keys(rules))),
          '300+ cases over 160 segments, in and out, many with exclude rules and nested segments');
SELECT is((SELECT count(*)::int FROM cases WHERE got IS DISTINCT FROM want), 0,
          'in a segment: listed, else the first rule that holds decides (in, or out when it excludes); nested segments as the reference');
-- Each segment directly, through a flag's segment_match clause.
SELECT opsflags.create_flag('tap.rsg.one') IS NOT NULL AS x \gset
CREATE FUNCTION pg_temp.holds_segment(seg_key text, ctx jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE opsflags.feature_flag_configs
    SET is_enabled = true, fallthrough = '{"off": true}',
        rules = jsonb_build_array(jsonb_build_object('id', 'one', 'clauses', jsonb_build_array(
                    jsonb_build_object('op', 'segment_match', 'values', jsonb_build_array(seg_key)))))
    WHERE flag_id = opsflags.flag_id('tap.rsg.one') AND environment = 'production';
    RETURN opsflags.feature_enabled('tap.rsg.one', ctx);
END
$$;
CREATE TEMP TABLE direct AS
SELECT s.key, c.ctx, pg_temp.holds_segment(s.key, c.ctx) AS got, pg_temp.ref_in_segment(s.key, c.ctx) AS want
FROM segs s JOIN LATERAL (SELECT ctx FROM cases c WHERE c.cfg = s.cfg LIMIT 3) c ON true;
SELECT diag(format('%s, context %s: enabled %s, reference %s', key, ctx, got, want))
FROM direct WHERE got IS DISTINCT FROM want LIMIT 10;
SELECT is((SELECT count(*)::int FROM direct WHERE got IS DISTINCT FROM want), 0,
          'every segment (480 cases), directly, as the reference');

-- Nesting is bounded: a chain of 33 segments, each naming the one below;
-- the bottom one holds for everyone.  The 32nd is decided, the 33rd is
-- beyond the bound (not in).
SELECT count(opsflags.create_segment('tap.rsg.chain.' || n, 'chain',
           rules => CASE WHEN n = 1 THEN '[{"id": "all"}]'::jsonb
                         ELSE jsonb_build_array(jsonb_build_object('id', 'down', 'segments', jsonb_build_array('tap.rsg.chain.' || (n - 1)))) END))
       AS x FROM generate_series(1, 33) n \gset
SELECT count(opsflags.create_flag('tap.rsg.chain' || n)) AS x FROM unnest(ARRAY[32, 33]) n \gset
UPDATE opsflags.feature_flag_configs fc
SET is_enabled = true, fallthrough = '{"off": true}',
    rules = jsonb_build_array(jsonb_build_object('id', 'top', 'segments', jsonb_build_array('tap.rsg.chain.' || n)))
FROM unnest(ARRAY[32, 33]) n WHERE fc.flag_id = opsflags.flag_id('tap.rsg.chain' || n) AND fc.environment = 'production';
SELECT is(opsflags.feature_enabled('tap.rsg.chain32', '{"key": "u1"}'::jsonb), true,
          'segments nested 32 deep are decided');
SELECT is(opsflags.feature_enabled('tap.rsg.chain33', '{"key": "u1"}'::jsonb), false,
          'segments nested deeper than 32: not in');
SELECT is((SELECT count(*)::int FROM pg_stat_activity WHERE pid = pg_backend_pid()), 1, 'the backend is still there');

SELECT * FROM finish();
ROLLBACK;
