/*
 * unleash_export.sql
 *	  unleash_features: an environment's flags as an Unleash client document
 *	  (/api/client/features), so that Unleash SDKs answer as opsflags does.
 */

-------------------------------------------------------------------------------
-- Export: rules and serves as strategies and variants
-------------------------------------------------------------------------------

-- A PostgreSQL pattern as RE2 reads it (the inverse of unleash_regex):
-- {"value", "caseInsensitive"}.  A pattern without embedded options has
-- PostgreSQL's defaults: "." matches newlines, anchors at the text's ends.
CREATE FUNCTION opsflags_internal.unleash_regex_out(pattern text, case_insensitive boolean)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m     text[] := regexp_match(pattern, '^\(\?([a-z]*)\)');
    opts  text := coalesce(m[1], 's');
    body  text := CASE WHEN m IS NULL THEN pattern ELSE substr(pattern, length(m[1]) + 4) END;
    flags text;
BEGIN
    body := regexp_replace(regexp_replace(regexp_replace(body, '(^|[^\\])((\\\\)*)\\y', '\1\2\\b', 'g'),
                                          '(^|[^\\])((\\\\)*)\\Y', '\1\2\\B', 'g'),
                           '(^|[^\\])((\\\\)*)\\Z', '\1\2\\z', 'g');
    flags := CASE WHEN opts ~ 'w' THEN 'ms' WHEN opts ~ '[nm]' THEN 'm' WHEN opts ~ 'p' THEN '' ELSE 's' END
             || CASE WHEN opts ~ 'i' THEN 'i' ELSE '' END;
    RETURN jsonb_build_object('value', CASE WHEN flags = '' THEN body ELSE '(?' || flags || ')' || body END,
                              'caseInsensitive', coalesce(case_insensitive, false));
END
$$;

-- The alternatives one clause is in Unleash: a list of constraint lists,
-- any of which holds when the clause does (an operator of one value with
-- several values is one constraint per value; negated, all of them).
-- Members "segments" of an alternative are strategy segment ids.
CREATE FUNCTION opsflags_internal.unleash_constraints(cl jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op    text := cl ->> 'op';
    neg   boolean := coalesce((cl ->> 'negate')::boolean, false);
    ci    boolean := coalesce((cl ->> 'case_insensitive')::boolean, false);
    name  text := opsflags_internal.unleash_context_name(cl ->> 'attribute');
    vals  jsonb := coalesce(cl -> 'values', '[]');
    uop   text;
    one   jsonb;
BEGIN
    IF op = 'unsupported' THEN
        IF cl ->> 'attribute' = 'segment' AND cl ->> 'operator' = 'segment' THEN
            RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object('segment', (vals ->> 0)::numeric)));
        END IF;
        RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object(
            'contextName', name, 'operator', coalesce(cl ->> 'operator', 'UNSUPPORTED'),
            'values', CASE WHEN jsonb_path_exists(vals, 'strict $[*] ? (@.type() != "string")')
                           THEN '[]'::jsonb ELSE vals END)));
    END IF;
    IF op IN ('in', 'not_in', 'starts_with', 'ends_with', 'contains', 'in_cidr') THEN
        one := jsonb_build_object('contextName', name,
                   'operator', CASE op WHEN 'in' THEN 'IN' WHEN 'not_in' THEN 'NOT_IN' WHEN 'starts_with' THEN 'STR_STARTS_WITH'
                                       WHEN 'ends_with' THEN 'STR_ENDS_WITH' WHEN 'contains' THEN 'STR_CONTAINS' ELSE 'IN_CIDR' END,
                   'values', (SELECT coalesce(jsonb_agg(to_jsonb(v #>> '{}') ORDER BY o), '[]')
                              FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)),
                   'inverted', neg);
        IF op IN ('starts_with', 'ends_with', 'contains') THEN
            one := one || jsonb_build_object('caseInsensitive', ci);
        END IF;
        RETURN jsonb_build_array(jsonb_build_array(one));
    END IF;
    IF op = 'segment_match' THEN
        -- Segments imported from Unleash only.
        RETURN (SELECT coalesce(jsonb_agg(jsonb_build_array(jsonb_build_object('segment', substr(v #>> '{}', 17)::numeric))), '[]')
                FROM jsonb_array_elements(vals) v WHERE v #>> '{}' ~ '^unleash-segment-[0-9]+$');
    END IF;
    uop := CASE op WHEN 'eq' THEN 'NUM_EQ' WHEN 'lt' THEN 'NUM_LT' WHEN 'lte' THEN 'NUM_LTE' WHEN 'gt' THEN 'NUM_GT'
                   WHEN 'gte' THEN 'NUM_GTE' WHEN 'before' THEN 'DATE_BEFORE' WHEN 'after' THEN 'DATE_AFTER'
                   WHEN 'matches' THEN 'REGEX' ELSE upper(op) END;
    SELECT jsonb_agg(CASE WHEN op = 'matches'
                          THEN jsonb_build_object('contextName', name, 'operator', uop, 'inverted', neg)
                               || opsflags_internal.unleash_regex_out(v #>> '{}', ci)
                          ELSE jsonb_build_object('contextName', name, 'operator', uop, 'value', v #>> '{}', 'inverted', neg) END
                     ORDER BY o)
    INTO one FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o);
    IF one IS NULL THEN
        -- No value: never holds, negated always.
        RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object('contextName', name, 'operator', 'IN',
                                                                      'values', '[]'::jsonb, 'inverted', neg)));
    END IF;
    IF neg THEN
        RETURN jsonb_build_array(one);
    END IF;
    RETURN (SELECT jsonb_agg(jsonb_build_array(x)) FROM jsonb_array_elements(one) x);
END
$$;

-- A split or variation serve as Unleash variants: {"variants", "stickiness",
-- "groupId"}; NULL when a variation it serves has no name.
CREATE FUNCTION opsflags_internal.unleash_variants(serve jsonb, vars jsonb, vnames jsonb, default_group text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bb    jsonb := coalesce(serve -> 'bucket_by', '["key"]');
    stick text;
    out   jsonb;
BEGIN
    IF serve ? 'variation' THEN
        serve := jsonb_build_object('split', jsonb_build_array(jsonb_build_object('variation', serve -> 'variation', 'weight', 1000)));
        bb := '["key", "sessionId", "remoteAddress", "$random"]';
    END IF;
    IF NOT serve ? 'split' OR EXISTS (SELECT 1 FROM jsonb_array_elements(serve -> 'split') s
                                      WHERE jsonb_typeof(vnames -> (s ->> 'variation')::integer) IS DISTINCT FROM 'string') THEN
        RETURN NULL;
    END IF;
    stick := CASE WHEN bb = '["key", "sessionId", "remoteAddress", "$random"]' THEN 'default'
                  ELSE opsflags_internal.unleash_context_name(bb ->> 0) END;
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'name', vnames -> (s ->> 'variation')::integer,
               'weight', s -> 'weight',
               'weightType', 'fix',
               'stickiness', stick,
               'payload', nullif(vars -> (s ->> 'variation')::integer, 'null'),
               'overrides', (SELECT jsonb_agg(jsonb_build_object(
                                        'contextName', opsflags_internal.unleash_context_name(ov ->> 'attribute'),
                                        'values', ov -> 'values') ORDER BY oo)
                             FROM jsonb_array_elements(coalesce(serve -> 'overrides', '[]')) WITH ORDINALITY b(ov, oo)
                             WHERE (ov ->> 'variation')::integer = (s ->> 'variation')::integer))) ORDER BY o)
    INTO out FROM jsonb_array_elements(serve -> 'split') WITH ORDINALITY a(s, o);
    RETURN jsonb_build_object('variants', out, 'stickiness', stick, 'groupId', coalesce(serve ->> 'group', default_group));
END
$$;

-- The strategies one rule is (its clauses' alternatives multiplied out);
-- vr: its serve as unleash_variants gives it, or NULL.
CREATE FUNCTION opsflags_internal.unleash_rule_strategies(r jsonb, vr jsonb, default_group text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    alts    jsonb := '[[]]';
    cl      jsonb;
    kind    text := 'default';
    params  jsonb := '{}';
    gate    jsonb := r -> 'rollout';
    bb      jsonb;
    segs    jsonb;
    out     jsonb := '[]';
    a       jsonb;
    n       integer := 0;
    first   boolean := true;
BEGIN
    FOR cl IN SELECT * FROM jsonb_array_elements(coalesce(r -> 'clauses', '[]')) LOOP
        IF first AND cl ->> 'op' = 'unsupported' AND cl ->> 'attribute' = 'strategy' THEN
            kind := cl ->> 'operator';
            params := coalesce(cl -> 'values' -> 0, '{}');
        ELSE
            SELECT jsonb_agg(x || y ORDER BY i, j) INTO alts
            FROM jsonb_array_elements(alts) WITH ORDINALITY p(x, i),
                 jsonb_array_elements(opsflags_internal.unleash_constraints(cl)) WITH ORDINALITY q(y, j);
            IF alts IS NULL OR jsonb_array_length(alts) > 1000 THEN
                RETURN '[]';
            END IF;
        END IF;
        first := false;
    END LOOP;
    IF gate IS NOT NULL THEN
        bb := coalesce(gate -> 'bucket_by', '["key"]');
        kind := 'flexibleRollout';
        params := jsonb_build_object('rollout', (gate ->> 'percentage'),
            'stickiness', CASE WHEN bb = '["key", "sessionId", "$random"]' THEN 'default'
                               WHEN bb = '["$random"]' THEN 'random'
                               ELSE opsflags_internal.unleash_context_name(bb ->> 0) END,
            'groupId', coalesce(gate ->> 'group', default_group));
    END IF;
    segs := (SELECT coalesce(jsonb_agg(substr(s #>> '{}', 17)::numeric ORDER BY o), '[]')
             FROM jsonb_array_elements(coalesce(r -> 'segments', '[]')) WITH ORDINALITY b(s, o)
             WHERE s #>> '{}' ~ '^unleash-segment-[0-9]+$');
    IF vr IS NOT NULL THEN
        -- One groupId buckets both the gate and the variants: a random gate
        -- has no group of its own.
        params := params || jsonb_build_object('groupId', CASE WHEN bb = '["$random"]' THEN vr ->> 'groupId'
                                                               ELSE coalesce(params ->> 'groupId', vr ->> 'groupId') END);
        -- Without a groupId the SDK buckets the rollout in "" and the
        -- variants in "undefined".
        IF params ->> 'groupId' = '' AND vr ->> 'groupId' = 'undefined' THEN
            params := params - 'groupId';
        END IF;
        IF NOT params ? 'stickiness' OR kind <> 'flexibleRollout' THEN
            params := params || jsonb_build_object('stickiness', vr ->> 'stickiness');
        END IF;
    END IF;
    FOR a IN SELECT * FROM jsonb_array_elements(alts) LOOP
        n := n + 1;
        out := out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'id', (r ->> 'id') || CASE WHEN n > 1 THEN '.' || n ELSE '' END,
            'name', kind,
            'parameters', params,
            'constraints', (SELECT coalesce(jsonb_agg(c ORDER BY o), '[]') FROM jsonb_array_elements(a) WITH ORDINALITY e(c, o)
                            WHERE NOT c ? 'segment'),
            'segments', segs || (SELECT coalesce(jsonb_agg(c -> 'segment' ORDER BY o), '[]')
                                 FROM jsonb_array_elements(a) WITH ORDINALITY e(c, o) WHERE c ? 'segment'),
            'variants', vr -> 'variants')));
    END LOOP;
    RETURN out;
END
$$;

-------------------------------------------------------------------------------
-- unleash_features
-------------------------------------------------------------------------------

-- An environment's flags as Unleash's /api/client/features response, so
-- that an Unleash SDK answers as feature_enabled and feature_explain do:
-- user targets as a userWithId strategy, role targets and rules as
-- strategies with constraints, a percentage rollout as flexibleRollout on
-- userId, the serves as variants (named variations only), prerequisites as
-- dependencies, segments imported from Unleash as segments.
CREATE FUNCTION opsflags.unleash_features(environment text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    f        record;
    grp      text;
    st       jsonb;
    vr       jsonb;
    fvr      jsonb;
    tail     jsonb;
    r        jsonb;
    seg      record;
    features jsonb := '[]';
    segments jsonb := '[]';
BEGIN
    FOR f IN SELECT ff.*, c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage,
                    c.on_variation, c.segments AS target_segments, c.rules, c.serve, c.fallthrough
             FROM opsflags.feature_flags ff
             JOIN opsflags.feature_flag_configs c ON c.flag_id = ff.id AND c.environment = env
             WHERE NOT ff.archived ORDER BY ff.flag_key LOOP
        grp := coalesce(f.rollout_group, f.flag_key);
        st := '[]';
        -- What the flag serves when it is on and nothing more specific
        -- says: as feature variants when bucketed by the flag's key (the
        -- group Unleash gives them), else on each strategy.
        fvr := opsflags_internal.unleash_variants(coalesce(f.serve, jsonb_build_object('variation', f.on_variation)),
                                                   f.variations, f.variation_names, grp);
        IF f.serve IS NULL AND f.variations -> f.on_variation = 'true' THEN
            fvr := NULL;
        END IF;
        IF jsonb_array_length(f.enabled_for_users) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'users', 'name', 'userWithId',
                      'parameters', jsonb_build_object('userIds',
                          (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(f.enabled_for_users) WITH ORDINALITY a(u, o)))));
        END IF;
        IF jsonb_array_length(f.enabled_for_roles) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'roles', 'name', 'default', 'parameters', '{}'::jsonb,
                      'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                          'values', f.enabled_for_roles))));
        END IF;
        FOR seg IN SELECT u.* FROM jsonb_array_elements_text(f.target_segments) WITH ORDINALITY a(k, o)
                   JOIN opsflags.user_segments u ON u.segment_key = a.k ORDER BY a.o LOOP
            IF jsonb_array_length(seg.user_ids) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'userWithId',
                          'parameters', jsonb_build_object('userIds',
                              (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(seg.user_ids) WITH ORDINALITY a(u, o)))));
            END IF;
            IF jsonb_array_length(seg.roles) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                              'values', seg.roles))));
            END IF;
            IF seg.segment_key ~ '^unleash-segment-[0-9]+$' THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'segments', jsonb_build_array(substr(seg.segment_key, 17)::numeric)));
            ELSE
                -- Its rules up to the first that excludes (Unleash's
                -- strategies only include).
                FOR r IN SELECT v FROM jsonb_array_elements(seg.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
                    EXIT WHEN coalesce((r ->> 'exclude')::boolean, false);
                    st := st || opsflags_internal.unleash_rule_strategies(r - 'id' - 'exclude', NULL, grp);
                END LOOP;
            END IF;
        END LOOP;
        -- Strategies from the targets above serve what the flag serves.
        IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN
            st := (SELECT coalesce(jsonb_agg(s || jsonb_build_object('variants', fvr -> 'variants',
                                             'parameters', s -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'))
                                             ORDER BY o), '[]')
                   FROM jsonb_array_elements(st) WITH ORDINALITY a(s, o));
        END IF;
        FOR r IN SELECT * FROM jsonb_array_elements(f.rules) LOOP
            CONTINUE WHEN r -> 'serve' ? 'off';
            vr := CASE WHEN r ? 'serve' THEN opsflags_internal.unleash_variants(r -> 'serve', f.variations, f.variation_names, grp)
                       WHEN fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN fvr END;
            st := st || opsflags_internal.unleash_rule_strategies(r, vr, grp);
        END LOOP;
        -- Then the percentage rollout, else the fallthrough.
        tail := NULL;
        IF f.enabled_percentage > 0 THEN
            tail := jsonb_build_object('id', 'rollout', 'name', 'flexibleRollout',
                        'parameters', jsonb_build_object('rollout', f.enabled_percentage::text, 'stickiness', 'userId',
                                                         'groupId', grp));
        ELSIF f.fallthrough IS NULL AND jsonb_array_length(st) > 0 THEN
            tail := jsonb_build_object('id', 'fallthrough', 'name', 'default', 'parameters', '{}'::jsonb);
        ELSIF f.fallthrough IS NOT NULL AND NOT f.fallthrough ? 'off' THEN
            vr := opsflags_internal.unleash_variants(f.fallthrough, f.variations, f.variation_names, grp);
            tail := jsonb_strip_nulls(jsonb_build_object('id', 'fallthrough', 'name', 'default',
                        'parameters', CASE WHEN vr IS NULL THEN '{}'::jsonb
                                           ELSE jsonb_build_object('groupId', vr -> 'groupId', 'stickiness', vr -> 'stickiness') END,
                        'variants', vr -> 'variants'));
        ELSIF f.fallthrough ? 'off' AND jsonb_array_length(st) = 0 THEN
            -- Off for everyone: a strategy that never holds.
            tail := jsonb_build_object('id', 'never', 'name', 'default', 'parameters', '{}'::jsonb,
                        'constraints', jsonb_build_array(jsonb_build_object('contextName', 'userId', 'operator', 'IN',
                                                                            'values', '[]'::jsonb, 'inverted', false)));
        END IF;
        IF tail IS NOT NULL THEN
            IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key AND NOT tail ? 'variants' THEN
                tail := tail || jsonb_build_object('variants', fvr -> 'variants',
                                                   'parameters', tail -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'));
            END IF;
            st := st || jsonb_build_array(tail);
        END IF;
        features := features || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'name', f.flag_key,
            'description', f.description,
            'type', 'release',
            'project', 'default',
            'enabled', f.is_enabled,
            'stale', false,
            'impressionData', false,
            'strategies', st,
            'variants', CASE WHEN fvr ->> 'groupId' = f.flag_key THEN fvr -> 'variants' ELSE '[]'::jsonb END,
            'dependencies', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                        'feature', pf.flag_key, 'enabled', p.enabled,
                                        'variants', coalesce(p.variants,
                                                             CASE WHEN p.variation IS NOT NULL
                                                                  THEN jsonb_build_array(coalesce(pf.variation_names ->> p.variation, 'disabled')) END)))
                                    ORDER BY pf.flag_key)
                             FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                             WHERE p.flag_id = f.id))));
    END LOOP;
    FOR seg IN SELECT * FROM opsflags.user_segments u WHERE u.segment_key ~ '^unleash-segment-[0-9]+$'
               ORDER BY substr(u.segment_key, 17)::numeric LOOP
        segments := segments || jsonb_build_array(jsonb_build_object(
            'id', substr(seg.segment_key, 17)::numeric, 'name', seg.name,
            'constraints', coalesce((SELECT jsonb_agg(x ORDER BY o)
                                     FROM jsonb_array_elements(seg.rules -> 0 -> 'clauses') WITH ORDINALITY a(cl, o),
                                          jsonb_array_elements(opsflags_internal.unleash_constraints(cl) -> 0) x), '[]')));
    END LOOP;
    RETURN jsonb_build_object('version', 2, 'features', features, 'segments', segments);
END
$$;
COMMENT ON FUNCTION opsflags.unleash_features(text) IS
  'The environment''s flags as Unleash''s /api/client/features response {"version": 2, "features", "segments"}';


-------------------------------------------------------------------------------
-- Privileges: the export is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.unleash_regex_out(text, boolean),
    opsflags_internal.unleash_constraints(jsonb),
    opsflags_internal.unleash_variants(jsonb, jsonb, jsonb, text),
    opsflags_internal.unleash_rule_strategies(jsonb, jsonb, text),
    opsflags.unleash_features(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.unleash_regex_out(text, boolean),
    opsflags_internal.unleash_constraints(jsonb),
    opsflags_internal.unleash_variants(jsonb, jsonb, jsonb, text),
    opsflags_internal.unleash_rule_strategies(jsonb, jsonb, text),
    opsflags.unleash_features(text)
TO opsflags_admin;
