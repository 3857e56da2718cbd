-- test/pgtap/rules_serving.sql: what targeting rules serve, on generated
-- flags and contexts checked against the plain SQL reference of
-- rules_reference.inc (docs/rules.md):
--   a. rollout gates (bucket_by lists, groups, the flag's rollout_group)
--      against opsflags.rollout_bucket;
--   b. weighted splits and their overrides against the variant hash
--      (murmur3, seed 86028157, in PL/pgSQL);
--   c. rule order (the first rule that matches serves), rules serving a
--      variation, the config's serve or off, and the fallthrough;
--   d. segments with rules (their rollouts grouped by the segment's key
--      unless they say), as a rule's segments and as segment_match clauses,
--      and as the config's segments;
--   e. prerequisites that require another flag on or off for the context,
--      or switched on whatever it serves (enabled true, false, NULL), a
--      variation or variation names (variants);
--   f. boolean variations served decide feature_enabled, on or off, in
--      rules, splits, fallthrough and off variation (or none).
-- One transaction, rolled back; cases come from random() after setseed.
\ir setup.inc
\ir rules_reference.inc

BEGIN;
SELECT plan(19);
SET LOCAL opsflags.environment = 'production';
SELECT setseed(0.1234) AS x \gset

CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT a[1 + floor(random() * array_length(a, 1))::int] $$;
CREATE FUNCTION pg_temp.rint(lo int, hi int) RETURNS int
LANGUAGE sql VOLATILE AS $$ SELECT lo + floor(random() * (hi - lo + 1))::int $$;
-- Write a config with plain DML (the engine's triggers check it).
CREATE FUNCTION pg_temp.put_config(k text, rules jsonb, serve jsonb DEFAULT NULL, fallthrough jsonb DEFAULT NULL,
                                   on_variation int DEFAULT 0, off_variation int DEFAULT 1, enabled boolean DEFAULT true)
RETURNS void LANGUAGE sql AS $$
  UPDATE opsflags.feature_flag_configs fc
  SET is_enabled = enabled, rules = put_config.rules, serve = put_config.serve, fallthrough = put_config.fallthrough,
      on_variation = put_config.on_variation, off_variation = put_config.off_variation
  WHERE fc.flag_id = opsflags.flag_id(k) AND fc.environment = 'production'
$$;

-------------------------------------------------------------------------------
-- a. Gates: a rule without clauses whose rollout admits a share of contexts
-------------------------------------------------------------------------------
CREATE TEMP TABLE gflags AS
SELECT n, 'tap.rsv.g' || n AS k,
       CASE WHEN random() < 0.3 THEN 'shared-' || pg_temp.rint(1, 2) END AS rollout_group,
       jsonb_build_object('percentage', CASE WHEN random() < 0.1 THEN pg_temp.pick(ARRAY['0', '100'])::int ELSE pg_temp.rint(1, 99) END)
       || CASE pg_temp.rint(1, 5) WHEN 1 THEN '{}' WHEN 2 THEN '{"bucket_by": "key"}'
                                  WHEN 3 THEN '{"bucket_by": ["sessionId", "key"]}' WHEN 4 THEN '{"bucket_by": "orgId"}'
                                  ELSE '{"bucket_by": ["/org/id", "orgId"]}' END::jsonb
       || CASE WHEN random() < 0.3 THEN jsonb_build_object('group', 'g' || pg_temp.rint(1, 3)) ELSE '{}' END AS rollout
FROM generate_series(1, 40) n;
SELECT count(opsflags.create_flag(k)) AS x FROM gflags \gset
UPDATE opsflags.feature_flags f SET rollout_group = g.rollout_group FROM gflags g WHERE f.flag_key = g.k;
SELECT count(pg_temp.put_config(k, jsonb_build_array(jsonb_build_object('id', 'gate', 'rollout', rollout)),
                                fallthrough => '{"off": true}')) AS x FROM gflags \gset
CREATE TEMP TABLE gcases AS
SELECT g.*, ctx FROM gflags g, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object(
               pg_temp.pick(ARRAY['key', 'key', 'targetingKey']), CASE WHEN random() < 0.9 THEN 'u' || pg_temp.rint(1, 100000) END,
               'sessionId', CASE WHEN random() < 0.4 THEN pg_temp.pick(ARRAY['', 's' || pg_temp.rint(1, 99999)]) END,
               'orgId', CASE WHEN random() < 0.4 THEN to_jsonb(pg_temp.rint(1, 9999)) WHEN random() < 0.2 THEN to_jsonb(round((random() * 100)::numeric, 2))
                             WHEN random() < 0.5 THEN to_jsonb('org' || pg_temp.rint(1, 99)) END,
               'org', CASE WHEN random() < 0.3 THEN jsonb_build_object('id', 'o' || pg_temp.rint(1, 999)) END)) AS ctx
    FROM generate_series(1, 5) WHERE g.n > 0) c;
ALTER TABLE gcases ADD COLUMN want boolean, ADD COLUMN got boolean;
UPDATE gcases SET want = pg_temp.ref_gate(rollout, ctx, coalesce(rollout_group, k)),
                  got = opsflags.feature_enabled(k, ctx);
SELECT diag(format('a: %s rollout %s group %s, context %s: enabled %s, reference %s', k, rollout, rollout_group, ctx, got, want))
FROM gcases WHERE got IS DISTINCT FROM want ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE want) >= 30 AND count(*) FILTER (WHERE NOT want) >= 30
                  AND count(*) FILTER (WHERE pg_temp.ref_bucket_value(ctx, rollout -> 'bucket_by') IS NULL) >= 5
           FROM gcases),
          'a: 100+ gate cases, in and out, some without a value to bucket');
SELECT is((SELECT count(*)::int FROM gcases WHERE got IS DISTINCT FROM want), 0,
          'a: a rule''s rollout admits a context iff rollout_bucket(group, first bucket_by value) <= percentage');
SELECT is((SELECT count(*)::int FROM gcases
           WHERE (opsflags.feature_explain(k, ctx) ->> 'rule') IS DISTINCT FROM CASE WHEN want THEN 'gate' END), 0,
          'a: feature_explain names the gate''s rule when it admits, no rule when not');

-- "$random": a fresh value at each evaluation, whatever the context says.
SELECT count(opsflags.create_flag(k)) AS x FROM unnest(ARRAY['tap.rsv.r0', 'tap.rsv.r50', 'tap.rsv.r100']) k \gset
SELECT count(pg_temp.put_config('tap.rsv.r' || p, jsonb_build_array(jsonb_build_object('id', 'random',
           'rollout', jsonb_build_object('percentage', p, 'bucket_by', '$random'))), fallthrough => '{"off": true}')) AS x
FROM unnest(ARRAY[0, 50, 100]) p \gset
CREATE TEMP TABLE rcases AS
SELECT p, count(*) FILTER (WHERE opsflags.feature_enabled('tap.rsv.r' || p, jsonb_build_object('key', 'same-user', 'n', g))) AS n
FROM unnest(ARRAY[0, 50, 100]) p, generate_series(1, 200) g GROUP BY p;
SELECT diag(format('a: bucket_by "$random" at %s %%: %s of 200 evaluations in', p, n)) FROM rcases
WHERE NOT CASE p WHEN 0 THEN n = 0 WHEN 100 THEN n = 200 ELSE n BETWEEN 50 AND 150 END ORDER BY p;
SELECT ok((SELECT count(*) = 3 AND bool_and(CASE p WHEN 0 THEN n = 0 WHEN 100 THEN n = 200 ELSE n BETWEEN 50 AND 150 END)
           FROM rcases),
          'a: bucket_by "$random": 0 % never, 100 % always, 50 % about half of 200 evaluations of one context');

-------------------------------------------------------------------------------
-- b. Splits: a rule serving a weighted split, with overrides
-------------------------------------------------------------------------------
CREATE TEMP TABLE sflags AS
SELECT n, 'tap.rsv.s' || n AS k,
       jsonb_build_object('split', (SELECT jsonb_agg(jsonb_build_object('variation', v, 'weight',
                                                     pg_temp.pick(ARRAY['0', '1', '5', '50', '100', '1000', '1000000'])::int)
                                                     ORDER BY o)
                                    FROM (SELECT v, random() AS o FROM generate_series(0, 3) v WHERE n > 0) vs))
       || CASE pg_temp.rint(1, 3) WHEN 1 THEN '{}' WHEN 2 THEN '{"bucket_by": ["accountId", "key"]}' ELSE '{"bucket_by": "key"}' END::jsonb
       || CASE WHEN random() < 0.3 THEN jsonb_build_object('group', 'sg' || pg_temp.rint(1, 3)) ELSE '{}' END
       || CASE WHEN random() < 0.3 THEN '{"overrides": [{"attribute": "plan", "values": ["gold", "platinum"], "variation": 3},
                                                        {"attribute": "/org/tier", "values": ["1"], "variation": 2}]}'
               ELSE '{}' END::jsonb AS serve
FROM generate_series(1, 40) n;
-- every split has a weight
UPDATE sflags SET serve = jsonb_set(serve, '{split,0,weight}', '7') WHERE NOT EXISTS (
    SELECT FROM jsonb_array_elements(serve -> 'split') e WHERE (e ->> 'weight')::int > 0);
SELECT count(opsflags.create_flag(k, k, NULL, 'string', '["v0", "v1", "v2", "v3"]')) AS x FROM sflags \gset
SELECT count(pg_temp.put_config(k, jsonb_build_array(jsonb_build_object('id', 'split', 'serve', serve)),
                                fallthrough => '{"off": true}')) AS x FROM sflags \gset
CREATE TEMP TABLE scases AS
SELECT s.*, ctx FROM sflags s, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'key', CASE WHEN random() < 0.9 THEN 'u' || pg_temp.rint(1, 100000) END,
               'accountId', CASE WHEN random() < 0.3 THEN 'a' || pg_temp.rint(1, 999) END,
               'plan', CASE WHEN random() < 0.2 THEN pg_temp.pick(ARRAY['gold', 'free']) END,
               'org', CASE WHEN random() < 0.2 THEN jsonb_build_object('tier', pg_temp.pick(ARRAY['1', '2'])) END)) AS ctx
    FROM generate_series(1, 5) WHERE s.n > 0) c;
ALTER TABLE scases ADD COLUMN want jsonb, ADD COLUMN got jsonb;
UPDATE scases SET want = to_jsonb('v' || pg_temp.ref_split(serve, ctx, k)), got = opsflags.feature_value(k, ctx);
SELECT diag(format('b: %s serve %s, context %s: value %s, reference %s', k, serve, ctx, got, want))
FROM scases WHERE got IS DISTINCT FROM want ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(DISTINCT want) = 4 AND count(*) FILTER (WHERE serve ? 'overrides') >= 20
           FROM scases),
          'b: 100+ split cases, every variation served, 20+ with overrides');
SELECT is((SELECT count(*)::int FROM scases WHERE got IS DISTINCT FROM want), 0,
          'b: a rule''s split serves by overrides, then murmur3(group:value, seed 86028157) % total + 1 over the running weights');
SELECT is((SELECT count(*)::int FROM scases s, LATERAL (SELECT opsflags.feature_explain(s.k, s.ctx) AS e) x
           WHERE (e ->> 'variation')::int IS DISTINCT FROM substr(s.want #>> '{}', 2)::int
              OR e ->> 'reason' IS DISTINCT FROM 'RULE_MATCH' OR e ->> 'rule' IS DISTINCT FROM 'split'), 0,
          'b: feature_explain: RULE_MATCH, the rule, the index of the variation served');

-------------------------------------------------------------------------------
-- c. Rule order, what a rule serves, the config's serve and the fallthrough
-------------------------------------------------------------------------------
CREATE TEMP TABLE oflags AS
SELECT n, 'tap.rsv.o' || n AS k,
       (SELECT jsonb_agg(jsonb_build_object('id', 'r' || j,
                   'clauses', (SELECT jsonb_agg(jsonb_build_object('attribute', 'n', 'op', pg_temp.pick(ARRAY['lt', 'gte', 'in']),
                                                                   'values', jsonb_build_array(pg_temp.rint(0, 9))))
                               FROM generate_series(1, pg_temp.rint(1, 2) + 0 * j) WHERE j > 0))
                || CASE pg_temp.rint(1, 10) WHEN 1 THEN '{}' WHEN 2 THEN '{"serve": {"off": true}}'
                                            ELSE jsonb_build_object('serve', jsonb_build_object('variation', j)) END
                ORDER BY j)
        FROM generate_series(1, pg_temp.rint(1, 4) + 0 * n) j WHERE n > 0) AS rules,
       CASE WHEN random() < 0.5 THEN '{"variation": 5}'::jsonb END AS serve,
       pg_temp.pick(ARRAY[NULL, '{"off": true}', '{"variation": 4}'])::jsonb AS fallthrough
FROM generate_series(1, 30) n;
SELECT count(opsflags.create_flag(k, k, NULL, 'string', '["v0", "v1", "v2", "v3", "v4", "v5", "v6"]')) AS x FROM oflags \gset
SELECT count(pg_temp.put_config(k, rules, serve, fallthrough, on_variation => 6, off_variation => 0)) AS x FROM oflags \gset
CREATE TEMP TABLE ocases AS
SELECT o.*, ctx FROM oflags o, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object('key', 'u' || g, 'n', CASE WHEN random() < 0.9 THEN pg_temp.rint(0, 9) END)) AS ctx
    FROM generate_series(1, 6) g WHERE o.n > 0) c;
-- The reference: the first rule whose clauses all hold, else the fallthrough.
ALTER TABLE ocases ADD COLUMN rule jsonb, ADD COLUMN want_variation int, ADD COLUMN want_enabled boolean,
                   ADD COLUMN want_reason text, ADD COLUMN e jsonb;
UPDATE ocases SET rule = (SELECT r FROM jsonb_array_elements(rules) WITH ORDINALITY x(r, i)
                          WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(r -> 'clauses') cl WHERE NOT pg_temp.ref_clause(cl, ctx))
                          ORDER BY i LIMIT 1);
UPDATE ocases SET
    want_variation = CASE WHEN rule IS NOT NULL THEN
                              CASE WHEN rule #> '{serve,off}' = 'true' THEN 0
                                   ELSE coalesce((rule #>> '{serve,variation}')::int, (serve ->> 'variation')::int, 6) END
                          WHEN fallthrough ->> 'off' = 'true' THEN 0
                          ELSE coalesce((fallthrough ->> 'variation')::int, (serve ->> 'variation')::int, 6) END,
    want_enabled = CASE WHEN rule IS NOT NULL THEN rule #> '{serve,off}' IS DISTINCT FROM 'true'
                        ELSE fallthrough IS DISTINCT FROM '{"off": true}' END,
    want_reason = CASE WHEN rule IS NOT NULL THEN 'RULE_MATCH'
                       WHEN fallthrough = '{"off": true}' THEN 'NO_MATCH' ELSE 'FALLTHROUGH' END,
    e = opsflags.feature_explain(k, ctx);
SELECT diag(format('c: %s rules %s serve %s fallthrough %s, context %s: explain %s, reference variation %s rule %s',
                   k, rules, serve, fallthrough, ctx, e, want_variation, rule ->> 'id'))
FROM ocases WHERE (e ->> 'variation')::int IS DISTINCT FROM want_variation OR e ->> 'rule' IS DISTINCT FROM rule ->> 'id'
ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE rule IS NULL) >= 20
                  AND count(*) FILTER (WHERE (rule ->> 'id') <> (rules -> 0 ->> 'id')) >= 20
                  AND count(DISTINCT fallthrough) = 2 AND count(*) FILTER (WHERE NOT want_enabled) >= 10
           FROM ocases),
          'c: 100+ cases: first, later and no rule matching, every kind of fallthrough, some served off');
SELECT is((SELECT count(*)::int FROM ocases WHERE (e ->> 'variation')::int IS DISTINCT FROM want_variation
                                               OR e -> 'value' IS DISTINCT FROM to_jsonb('v' || want_variation)), 0,
          'c: the variation served: the first matching rule''s (its serve, the config''s serve, the on variation; off: the off variation), else the fallthrough''s');
SELECT is((SELECT count(*)::int FROM ocases WHERE e ->> 'rule' IS DISTINCT FROM rule ->> 'id'), 0,
          'c: feature_explain names the first rule that matches (none for the fallthrough)');
SELECT is((SELECT count(*)::int FROM ocases WHERE (e -> 'enabled')::boolean IS DISTINCT FROM want_enabled
                                               OR opsflags.feature_enabled(k, ctx) IS DISTINCT FROM want_enabled
                                               OR e ->> 'reason' IS DISTINCT FROM want_reason), 0,
          'c: enabled and reason: RULE_MATCH (disabled only when the rule serves off), FALLTHROUGH, or NO_MATCH for a fallthrough that is off');

-------------------------------------------------------------------------------
-- d. Segments with rules
-------------------------------------------------------------------------------
CREATE TEMP TABLE segs AS
SELECT n, 'tap.rsv.seg' || n AS key,
       (SELECT coalesce(jsonb_agg('u' || pg_temp.rint(1, 12)), '[]') FROM generate_series(1, pg_temp.rint(0, 3) + 0 * n) WHERE n > 0) AS user_ids,
       CASE WHEN random() < 0.3 THEN '["admin"]'::jsonb ELSE '[]' END AS roles,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', 'sr' || j,
                    'clauses', jsonb_build_array(jsonb_build_object(
                        'attribute', a[1], 'op', 'in', 'values', a[2]::jsonb, 'negate', random() < 0.2)))
                || CASE WHEN random() < 0.2 THEN jsonb_build_object('rollout', jsonb_build_object('percentage', pg_temp.rint(20, 80), 'group', 'seg' || n))
                        WHEN random() < 0.2 THEN jsonb_build_object('rollout', jsonb_build_object('percentage', pg_temp.rint(20, 80)))
                        ELSE '{}' END), '[]')
        FROM generate_series(1, pg_temp.rint(0, 2) + 0 * n) j,
             LATERAL (SELECT string_to_array(pg_temp.pick(ARRAY['country|["DE"]', 'country|["DE", "FR"]', 'plan|["pro"]',
                                                                 'plan|["free", "pro"]']), '|') || j::text AS a) l
        WHERE n > 0) AS rules
FROM generate_series(1, 6) n;
SELECT count(opsflags.create_segment(key, key, user_ids, roles, NULL, rules)) AS x FROM segs \gset
CREATE TEMP TABLE dflags AS
SELECT n, 'tap.rsv.d' || n AS k, pg_temp.rint(1, 4) AS form,
       (SELECT jsonb_agg(DISTINCT 'tap.rsv.seg' || pg_temp.rint(1, 6)) FROM generate_series(1, pg_temp.rint(1, 2) + 0 * n) WHERE n > 0) AS seg_keys,
       random() < 0.2 AS negate
FROM generate_series(1, 30) n;
SELECT count(opsflags.create_flag(k)) AS x FROM dflags \gset
-- form 1: the rule's segments (every one); 2: a segment_match clause (any);
-- 3: both; 4: the config's segments (evaluation step 7)
SELECT count(pg_temp.put_config(k,
           CASE form WHEN 1 THEN jsonb_build_array(jsonb_build_object('id', 'seg', 'segments', seg_keys))
                     WHEN 2 THEN jsonb_build_array(jsonb_build_object('id', 'seg', 'clauses', jsonb_build_array(
                                     jsonb_build_object('attribute', 'key', 'op', 'segment_match', 'values', seg_keys, 'negate', negate))))
                     WHEN 3 THEN jsonb_build_array(jsonb_build_object('id', 'seg', 'segments', jsonb_build_array(seg_keys -> 0), 'clauses', jsonb_build_array(
                                     jsonb_build_object('attribute', 'key', 'op', 'segment_match', 'values', seg_keys))))
                     ELSE '[]' END,
           fallthrough => '{"off": true}')) AS x FROM dflags \gset
UPDATE opsflags.feature_flag_configs fc SET segments = d.seg_keys
FROM dflags d WHERE d.form = 4 AND fc.flag_id = opsflags.flag_id(d.k) AND fc.environment = 'production';
CREATE TEMP TABLE dcases AS
SELECT d.*, ctx FROM dflags d, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'key', 'u' || pg_temp.rint(1, 12),
               'role', pg_temp.pick(ARRAY['admin', 'member', NULL]),
               'country', pg_temp.pick(ARRAY['DE', 'FR', 'US', NULL]),
               'plan', pg_temp.pick(ARRAY['pro', 'free', NULL]))) AS ctx
    FROM generate_series(1, 6) WHERE d.n > 0) c;
CREATE FUNCTION pg_temp.ref_in_segment(seg_key text, ctx jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT coalesce(s.user_ids ? (pg_temp.ref_attr(ctx, 'key') #>> '{}'), false) OR coalesce(s.roles ? (ctx ->> 'role'), false)
         OR EXISTS (SELECT FROM jsonb_array_elements(s.rules) r
                    WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(r -> 'clauses') cl WHERE NOT pg_temp.ref_clause(cl, ctx))
                      AND (NOT r ? 'rollout' OR pg_temp.ref_gate(r -> 'rollout', ctx, s.key)))
  FROM segs s WHERE s.key = seg_key
$$;
ALTER TABLE dcases ADD COLUMN want boolean, ADD COLUMN got boolean;
UPDATE dcases SET
    want = CASE form WHEN 1 THEN (SELECT bool_and(pg_temp.ref_in_segment(s, ctx)) FROM jsonb_array_elements_text(seg_keys) s)
                     WHEN 3 THEN pg_temp.ref_in_segment(seg_keys ->> 0, ctx)
                                 AND (SELECT bool_or(pg_temp.ref_in_segment(s, ctx)) FROM jsonb_array_elements_text(seg_keys) s)
                     ELSE (SELECT bool_or(pg_temp.ref_in_segment(s, ctx)) FROM jsonb_array_elements_text(seg_keys) s) <> (form = 2 AND negate) END,
    got = opsflags.feature_enabled(k, ctx);
SELECT diag(format('d: %s form %s segments %s negate %s, context %s: enabled %s, reference %s', k, form, seg_keys, negate, ctx, got, want))
FROM dcases WHERE got IS DISTINCT FROM want ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE want) >= 20 AND count(*) FILTER (WHERE NOT want) >= 20
                  AND count(DISTINCT form) = 4 FROM dcases)
          AND (SELECT count(*) FILTER (WHERE rules <> '[]') >= 3 FROM segs),
          'd: 100+ cases over segments with rules, in and out, every way of naming a segment');
SELECT is((SELECT count(*)::int FROM dcases WHERE got IS DISTINCT FROM want), 0,
          'd: a context is in a segment by key, role or any of its rules (with their rollouts); a rule''s segments need every one, segment_match any');

-------------------------------------------------------------------------------
-- e. Prerequisites: on or off (enabled), a variation, variation names
-------------------------------------------------------------------------------
-- Prerequisite flags: tier a serves variation 0 ("r"), b 1 ("g"), c off,
-- anything else the fallthrough, variation 2 (unnamed).
CREATE TEMP TABLE pflags AS
SELECT n, 'tap.rsv.p' || n AS k, random() < 0.8 AS is_on, pg_temp.rint(1, 2) AS off_variation FROM generate_series(1, 4) n;
SELECT count(opsflags.create_flag(k, k, NULL, 'string', '["red", "green", "blue"]', variation_names => '["r", "g", null]')) AS x
FROM pflags \gset
SELECT count(pg_temp.put_config(k,
           '[{"id": "a", "clauses": [{"attribute": "tier", "op": "in", "values": ["a"]}], "serve": {"variation": 0}},
             {"id": "b", "clauses": [{"attribute": "tier", "op": "in", "values": ["b"]}], "serve": {"variation": 1}},
             {"id": "c", "clauses": [{"attribute": "tier", "op": "in", "values": ["c"]}], "serve": {"off": true}}]',
           fallthrough => '{"variation": 2}', off_variation => off_variation, enabled => is_on)) AS x FROM pflags \gset
CREATE TEMP TABLE qflags AS
SELECT n, 'tap.rsv.q' || n AS k, 'tap.rsv.p' || pg_temp.rint(1, 4) AS p,
       CASE WHEN random() < 0.25 THEN NULL ELSE random() < 0.6 END AS enabled,
       CASE WHEN random() < 0.3 THEN pg_temp.rint(0, 2) END AS variation,
       CASE WHEN random() < 0.5 THEN pg_temp.pick(ARRAY['["r"]', '["g"]', '["r", "g"]'])::jsonb END AS variants
FROM generate_series(1, 40) n;
SELECT count(opsflags.create_flag(k)) AS x FROM qflags \gset
SELECT count(opsflags.toggle_flag(k, true)) AS x FROM qflags \gset
SELECT count(opsflags.add_prerequisite(k, p)) AS x FROM qflags \gset
UPDATE opsflags.flag_prerequisites fp SET enabled = q.enabled, variation = q.variation, variants = q.variants
FROM qflags q WHERE fp.flag_id = opsflags.flag_id(q.k) AND fp.prerequisite_id = opsflags.flag_id(q.p);
CREATE TEMP TABLE qcases AS
SELECT q.*, ctx FROM qflags q, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object('key', 'u' || g, 'tier', pg_temp.pick(ARRAY['a', 'b', 'c', 'd', NULL]))) AS ctx
    FROM generate_series(1, 5) g WHERE q.n > 0) c;
ALTER TABLE qcases ADD COLUMN p_on boolean, ADD COLUMN p_enabled boolean, ADD COLUMN p_variation int,
    ADD COLUMN want boolean, ADD COLUMN got boolean;
UPDATE qcases c SET
    p_on = pf.is_on,
    p_enabled = pf.is_on AND coalesce(c.ctx ->> 'tier', '') <> 'c',
    p_variation = CASE WHEN NOT pf.is_on OR c.ctx ->> 'tier' = 'c' THEN pf.off_variation
                       WHEN c.ctx ->> 'tier' = 'a' THEN 0 WHEN c.ctx ->> 'tier' = 'b' THEN 1 ELSE 2 END
FROM pflags pf WHERE pf.k = c.p;
UPDATE qcases SET
    want = CASE WHEN enabled IS NULL THEN p_on ELSE p_enabled = enabled END AND (variation IS NULL OR p_variation = variation)
           AND (variants IS NULL OR coalesce(variants ? (('["r", "g", null]'::jsonb) ->> p_variation), false)),
    got = opsflags.feature_enabled(k, ctx);
SELECT diag(format('e: %s needs %s enabled %s variation %s variants %s, context %s: enabled %s, reference %s (%s serves %s, enabled %s)',
                   k, p, enabled, variation, variants, ctx, got, want, p, p_variation, p_enabled))
FROM qcases WHERE got IS DISTINCT FROM want ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE want) >= 15 AND count(*) FILTER (WHERE NOT want) >= 15
                  AND count(*) FILTER (WHERE NOT enabled AND want) >= 5 AND count(*) FILTER (WHERE variants IS NOT NULL AND want) >= 5
                  AND count(*) FILTER (WHERE enabled IS NULL AND NOT p_enabled AND want) >= 3
                  AND count(*) FILTER (WHERE enabled IS NULL AND NOT want) >= 3
           FROM qcases),
          'e: 100+ prerequisite cases, met and not, met by a flag that is off, met by a variation''s name, met by a flag switched on but off for the context');
SELECT is((SELECT count(*)::int FROM qcases WHERE got IS DISTINCT FROM want), 0,
          'e: a prerequisite holds iff the other flag is on (enabled) or off (not enabled) for the context, or switched on (enabled NULL), serving the variation and a variation of the names required');
SELECT is((SELECT count(*)::int FROM qcases
           WHERE NOT want AND opsflags.feature_explain(k, ctx) ->> 'reason' IS DISTINCT FROM 'PREREQUISITE_FAILED'), 0,
          'e: feature_explain says PREREQUISITE_FAILED when one does not hold');

-------------------------------------------------------------------------------
-- f. Boolean values decide: tier a gets the rule's variation, tier b the
--    rule serving off, others the fallthrough (a variation, or off); off,
--    the off variation (or none)
-------------------------------------------------------------------------------
CREATE TEMP TABLE bflags AS
SELECT n, 'tap.rsv.b' || n AS k, pg_temp.pick(ARRAY['[true, false]', '[false, true]', '[false, "x", true]'])::jsonb AS vars,
       random() < 0.7 AS is_on, pg_temp.rint(0, 1) AS on_variation,
       CASE WHEN random() < 0.2 THEN NULL ELSE pg_temp.rint(0, 1) END AS off_variation,
       pg_temp.rint(0, 1) AS rule_variation,
       CASE WHEN random() < 0.3 THEN NULL ELSE pg_temp.rint(0, 1) END AS fall_variation
FROM generate_series(1, 40) n;
UPDATE bflags SET rule_variation = 2, fall_variation = coalesce(fall_variation, 2) WHERE jsonb_array_length(vars) = 3 AND n % 2 = 0;
SELECT count(opsflags.create_flag(k, k, NULL, CASE WHEN jsonb_array_length(vars) = 2 THEN 'boolean' ELSE 'json' END, vars)) AS x
FROM bflags \gset
SELECT count(pg_temp.put_config(k,
           jsonb_build_array(
             jsonb_build_object('id', 'a', 'clauses', '[{"attribute": "tier", "op": "in", "values": ["a"]}]'::jsonb,
                                'serve', jsonb_build_object('variation', rule_variation)),
             '{"id": "b", "clauses": [{"attribute": "tier", "op": "in", "values": ["b"]}], "serve": {"off": true}}'::jsonb),
           fallthrough => CASE WHEN fall_variation IS NULL THEN '{"off": true}' ELSE jsonb_build_object('variation', fall_variation) END,
           on_variation => on_variation, off_variation => off_variation, enabled => is_on)) AS x FROM bflags \gset
CREATE TEMP TABLE bcases AS
SELECT b.*, ctx FROM bflags b, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object('key', 'u' || g, 'tier', pg_temp.pick(ARRAY['a', 'b', 'c', NULL]))) AS ctx
    FROM generate_series(1, 5) g WHERE b.n > 0) c;
ALTER TABLE bcases ADD COLUMN want_value jsonb, ADD COLUMN want boolean, ADD COLUMN got_value jsonb, ADD COLUMN got boolean,
    ADD COLUMN explained boolean;
UPDATE bcases SET want_value = vars -> CASE WHEN NOT is_on OR ctx ->> 'tier' = 'b' THEN off_variation
                                            WHEN ctx ->> 'tier' = 'a' THEN rule_variation
                                            ELSE coalesce(fall_variation, off_variation) END;
UPDATE bcases SET want = CASE WHEN jsonb_typeof(want_value) = 'boolean' THEN want_value::boolean
                              ELSE is_on AND ctx ->> 'tier' IS DISTINCT FROM 'b' AND (coalesce(ctx ->> 'tier', '') = 'a' OR fall_variation IS NOT NULL) END,
                  got = opsflags.feature_enabled(k, ctx), got_value = opsflags.feature_value(k, ctx),
                  explained = (opsflags.feature_explain(k, ctx) ->> 'enabled')::boolean;
SELECT diag(format('f: %s %s on %s off %s rule %s fallthrough %s, context %s: enabled %s value %s, reference %s %s',
                   k, vars, is_on, off_variation, rule_variation, fall_variation, ctx, got, got_value, want, want_value))
FROM bcases WHERE got IS DISTINCT FROM want OR got_value IS DISTINCT FROM want_value ORDER BY n LIMIT 10;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE want AND NOT is_on) >= 3
                  AND count(*) FILTER (WHERE NOT want AND is_on AND ctx ->> 'tier' = 'a') >= 3
                  AND count(*) FILTER (WHERE want_value IS NULL) >= 3 AND count(*) FILTER (WHERE want_value = '"x"') >= 3
           FROM bcases),
          'f: 100+ cases: true served while off, false served by a rule, no value, a value that is not a boolean');
SELECT is((SELECT count(*)::int FROM bcases WHERE got IS DISTINCT FROM want OR got_value IS DISTINCT FROM want_value), 0,
          'f: feature_value serves the reference''s variation, and feature_enabled is that value when it is a boolean');
SELECT is((SELECT count(*)::int FROM bcases WHERE explained IS DISTINCT FROM got), 0,
          'f: feature_explain''s enabled is feature_enabled');

SELECT * FROM finish();
ROLLBACK;
