-- test/pgtap/ofrep.sql: the OFREP answers the HTTP server sends, written in
-- C (ofrep_one, ofrep_bulk), against their plain SQL reference (ofrep_item
-- over feature_explain and evaluate_all), and so the Unleash frontend API's
-- toggles (unleash_toggles against unleash_frontend_toggles) and the context
-- of its query parameters (unleash_query_context against its reference),
-- and the flags of LaunchDarkly's stream (launchdarkly_lines against
-- launchdarkly_flags),
-- on generated flags (rules, splits,
-- percentage rollouts, off flags with and without an off variation, named
-- variations, archived and unknown keys) and contexts (with and without a
-- targeting key); and ofrep_answer's statuses, ETag and 304.
-- One transaction, rolled back; cases come from random() after setseed.
\ir setup.inc

BEGIN;
SELECT plan(11);
SET LOCAL opsflags.environment = 'production';
SELECT setseed(0.4242) AS x \gset

CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT a[1 + floor(random() * array_length(a, 1))::int] $$;

CREATE TEMP TABLE oflags AS
SELECT n, 'tap.ofrep.f' || n AS k,
       pg_temp.pick(ARRAY['[true, false]', '["a", "b", "c"]', '[1, 2.5]', '[{"x": 1}, [1, 2]]'])::jsonb AS vars,
       random() < 0.8 AS is_on, random() < 0.15 AS no_off, pg_temp.pick(ARRAY['rule', 'split', 'rollout', 'plain']) AS kind,
       random() < 0.3 AS named
FROM generate_series(1, 40) n;
SELECT count(opsflags.create_flag(k, k, NULL, CASE jsonb_typeof(vars -> 0) WHEN 'boolean' THEN 'boolean'
                                                   WHEN 'string' THEN 'string' WHEN 'number' THEN 'number' ELSE 'json' END, vars)) AS x
FROM oflags \gset
UPDATE opsflags.feature_flags f SET variation_names = (SELECT jsonb_agg('v' || o) FROM jsonb_array_elements(o.vars) WITH ORDINALITY a(v, o))
FROM oflags o WHERE f.flag_key = o.k AND o.named;
SELECT count(opsflags.update_flag(k, jsonb_build_object('is_enabled', is_on, 'off_variation', CASE WHEN no_off THEN NULL ELSE 1 END)
          || CASE kind
               WHEN 'rule' THEN jsonb_build_object('rules', '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 1}}]'::jsonb,
                                                   'fallthrough', '{"off": true}'::jsonb)
               WHEN 'split' THEN jsonb_build_object('fallthrough', '{"split": [{"variation": 0, "weight": 50}, {"variation": 1, "weight": 50}]}'::jsonb)
               WHEN 'rollout' THEN jsonb_build_object('enabled_percentage', 40)
               ELSE '{}'::jsonb END)) AS x
FROM oflags \gset
SELECT count(opsflags.archive_flag(k)) AS x FROM oflags WHERE n % 13 = 0 \gset

CREATE TEMP TABLE ocases AS
SELECT o.k, c.ctx, c.ctx ? 'targetingKey' AS keyed
FROM oflags o, LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object('targetingKey', CASE WHEN random() < 0.8 THEN 'u' || g END,
                                                'country', pg_temp.pick(ARRAY['DE', 'US', NULL]))) AS ctx
    FROM generate_series(1, 4) g WHERE o.n > 0) c
UNION ALL
SELECT 'tap.ofrep.nope', '{"targetingKey": "u1"}', true;
ALTER TABLE ocases ADD COLUMN got jsonb, ADD COLUMN status integer, ADD COLUMN want jsonb;
UPDATE ocases SET (status, got) = (SELECT o.status, o.document::jsonb FROM opsflags_internal.ofrep_one(ctx, 'production', k, keyed) o),
                  want = opsflags_internal.ofrep_item(k, opsflags.feature_explain(k, ctx), keyed);
SELECT diag(format('%s for %s: C %s, SQL %s', k, ctx, got, want)) FROM ocases WHERE got IS DISTINCT FROM want LIMIT 5;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE got ? 'errorCode') >= 10
                  AND count(*) FILTER (WHERE NOT got ? 'value' AND NOT got ? 'errorCode') >= 3
                  AND count(*) FILTER (WHERE got ->> 'errorCode' = 'TARGETING_KEY_MISSING') >= 1
                  AND count(*) FILTER (WHERE got ? 'variant' AND got ->> 'variant' LIKE 'v%') >= 3 FROM ocases),
          '100+ cases: errors, no value, a missing targeting key, named variants');
SELECT is((SELECT count(*)::int FROM ocases WHERE got IS DISTINCT FROM want), 0,
          'ofrep_one (C) is ofrep_item (SQL) over feature_explain for every case');
SELECT is((SELECT count(*)::int FROM ocases
           WHERE status IS DISTINCT FROM CASE got ->> 'errorCode' WHEN 'FLAG_NOT_FOUND' THEN 404 WHEN 'TARGETING_KEY_MISSING' THEN 400
                                                                 WHEN 'GENERAL' THEN 500 ELSE 200 END), 0,
          'its status is the error''s (404, 400, 500), else 200');

-- The bulk answer: the same items, for every flag not archived.
CREATE TEMP TABLE octx AS SELECT DISTINCT ctx, keyed FROM ocases;
SELECT is((SELECT count(*)::int FROM octx
           WHERE (SELECT jsonb_agg(i ORDER BY i ->> 'key') FROM jsonb_array_elements(opsflags_internal.ofrep_bulk(ctx, 'production', keyed)::jsonb -> 'flags') i)
                 IS DISTINCT FROM
                 (SELECT jsonb_agg(opsflags_internal.ofrep_item(e.key, e.value, keyed) ORDER BY e.key)
                  FROM jsonb_each(opsflags.evaluate_all(ctx, 'production')) e)), 0,
          'ofrep_bulk (C) is ofrep_item over evaluate_all for every context');

SELECT is((SELECT count(*)::int FROM octx
           WHERE opsflags_internal.unleash_toggles(ctx, 'production')::jsonb
                 IS DISTINCT FROM opsflags_internal.unleash_frontend_toggles(ctx, 'production')), 0,
          'unleash_toggles (C) is unleash_frontend_toggles (SQL) for every context');

-- LaunchDarkly's stream: launchdarkly_lines (C) against launchdarkly_flags
-- (SQL), with and without reasons, for every context.
SELECT is((SELECT count(*)::int FROM octx, (VALUES (false), (true)) r(with_reasons)
           WHERE (SELECT jsonb_agg(jsonb_build_array(split_part(l, E'\t', 1), split_part(l, E'\t', 2)::int,
                                                     substr(l, length(split_part(l, E'\t', 1)) + length(split_part(l, E'\t', 2)) + 3)::jsonb)
                                   ORDER BY o)
                  FROM regexp_split_to_table(rtrim(opsflags_internal.launchdarkly_lines(ctx, 'production', with_reasons), E'\n'), E'\n')
                       WITH ORDINALITY t(l, o))
                 IS DISTINCT FROM
                 (SELECT jsonb_agg(jsonb_build_array(f.flag_key, coalesce(f.version, 0), f.entry) ORDER BY f.flag_key COLLATE "C")
                  FROM opsflags_internal.launchdarkly_flags(ctx, 'production', with_reasons) f)), 0,
          'launchdarkly_lines (C) is launchdarkly_flags (SQL), in key order, with and without reasons, for every context');

-- The frontend API's context of a GET's query string: C against SQL, on
-- generated strings of names (plain, properties[...], encoded), values
-- (percent-encoded UTF-8, '+', a lone '%', bytes that are not UTF-8, NUL),
-- empty parts, repeated names.
CREATE TEMP TABLE qcases AS
SELECT g, string_agg(pg_temp.pick(ARRAY['userId', 'sessionId', 'properties[plan]', 'properties%5Bteam%5D',
                                         'properties[a]b]', 'properties[]', 'properties', 'remote%41ddress', 'x+y', ''])
                     || CASE WHEN random() < 0.9 THEN '=' || pg_temp.pick(ARRAY['u1', 'pro', 'a+b', '%C3%A9t%C3%A9', '100%',
                                                                               '%4', '%zz', CASE WHEN random() < 0.5 THEN '%FF' ELSE '%00' END,
                                                                               '', 'x=y', '%2B%26', '%C3%A9t%C3%A9'])
                             ELSE '' END,
                     '&') AS query
FROM generate_series(1, 150) g, LATERAL generate_series(0, floor(random() * 5)::int) p
WHERE g > 0 AND p >= 0
GROUP BY g;
ALTER TABLE qcases ADD COLUMN got jsonb, ADD COLUMN want jsonb;
UPDATE qcases SET got = opsflags_internal.unleash_query_context(query),
                  want = opsflags_internal.unleash_query_context_reference(query);
SELECT diag(format('%s: C %s, SQL %s', query, got, want)) FROM qcases WHERE got IS DISTINCT FROM want LIMIT 5;
SELECT ok((SELECT count(*) >= 100 AND count(*) FILTER (WHERE got IS NULL) >= 5 AND count(*) FILTER (WHERE got ? 'properties') >= 20
                  AND count(*) FILTER (WHERE got::text LIKE '%été%') >= 5 FROM qcases),
          '100+ query strings: some that do not decode, properties, encoded UTF-8');
SELECT is((SELECT count(*)::int FROM qcases WHERE got IS DISTINCT FROM want), 0,
          'unleash_query_context (C) is its SQL reference for every query string');

-- ofrep_answer: statuses, the ETag, 304.
SELECT is((SELECT array_agg(a.status ORDER BY o) FROM unnest(ARRAY['{"context": {"targetingKey": "u1"}}', 'nope', '{"context": 5}', '[]']) WITH ORDINALITY b(body, o),
           LATERAL opsflags_internal.ofrep_answer(NULL, 'tap.ofrep.f1', b.body, NULL) a),
          ARRAY[200, 400, 400, 400], 'ofrep_answer: 200; PARSE_ERROR, INVALID_CONTEXT 400');
SELECT etag AS tag FROM opsflags_internal.ofrep_answer(NULL, NULL, '{"context": {"targetingKey": "u1"}}', NULL) \gset
SELECT is((SELECT array[a.status::text, b.status::text, (a.etag = :'tag')::text, (b.etag <> :'tag')::text]
           FROM opsflags_internal.ofrep_answer(NULL, NULL, '{"context": {"targetingKey": "u1"}}', :'tag') a,
                opsflags_internal.ofrep_answer(NULL, NULL, '{"context": {"targetingKey": "u2", "country": "DE"}}', :'tag') b),
          ARRAY['304', '200', 'true', 'true'], 'bulk: 304 for its own ETag, 200 and another ETag for another context');
UPDATE opsflags.feature_flag_configs SET is_enabled = NOT is_enabled
WHERE flag_id = opsflags.flag_id('tap.ofrep.f2') AND environment = 'production';
SELECT is((SELECT a.status FROM opsflags_internal.ofrep_answer(NULL, NULL, '{"context": {"targetingKey": "u1"}}', :'tag') a), 200,
          'bulk: 200 once a flag changed');

SELECT * FROM finish();
ROLLBACK;
