/*
 * unleash_import.sql
 *	  import_unleash: an Unleash client document (/api/client/features, or
 *	  delta API events) as flags, rules, segments and prerequisites, with
 *	  the mapping of unleash.sql.
 */

-------------------------------------------------------------------------------
-- import_unleash
-------------------------------------------------------------------------------

-- Loads an Unleash client document into an environment.  Everything is
-- checked before anything is written; a flag, config, segment or
-- prerequisite is written only where it differs, so a second import of the
-- same document changes nothing.  The config of each feature becomes
-- exactly the Unleash feature: no user, role or segment targets, no
-- percentage or schedule, variations 0 and 1 (true, false) as on and off.
CREATE FUNCTION opsflags.import_unleash(environment text, document jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env       text := opsflags.resolve_environment(environment);
    feats     jsonb := '{}';
    segs      jsonb := '{}';
    removed   text[] := '{}';
    seg_gone  text[] := '{}';
    e         jsonb;
    en        bigint;
    x         jsonb;
    key       text;
    feat      jsonb;
    strategies jsonb;
    fv        jsonb;
    f         opsflags.feature_flags;
    c         opsflags.feature_flag_configs;
    vars      jsonb;
    vnames    jsonb;
    names     jsonb;
    idx       integer;
    vtype     text;
    rules     jsonb;
    serve     jsonb;
    fall      jsonb;
    enabled   boolean;
    ok        boolean;
    known     jsonb;
    dep       jsonb;
    parent    jsonb;
    pid       uuid;
    want      jsonb;
    chg       boolean;
    s_rules   jsonb;
    created   text[] := '{}';
    changed   text[] := '{}';
    same      text[] := '{}';
    gone      text[] := '{}';
    s_created text[] := '{}';
    s_changed text[] := '{}';
    s_same    text[] := '{}';
    s_gone    text[] := '{}';
BEGIN
    IF document IS NULL OR jsonb_typeof(document) <> 'object'
       OR NOT (jsonb_typeof(document -> 'features') = 'array' OR jsonb_typeof(document -> 'events') = 'array') THEN
        RAISE EXCEPTION 'an Unleash document is a JSON object with "features" or "events"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected the /api/client/features response {"version": 2, "features": [...], "segments": [...]} or a delta {"events": [...]}.';
    END IF;

    -- The state the document describes: features by name, segments by id,
    -- and (delta events) the features it removes.
    IF document ? 'features' THEN
        document := jsonb_build_object('events', jsonb_build_array(jsonb_build_object(
            'type', 'hydration', 'features', document -> 'features', 'segments', coalesce(document -> 'segments', '[]'))));
    END IF;
    FOR e, en IN SELECT * FROM jsonb_array_elements(document -> 'events') WITH ORDINALITY LOOP
        IF jsonb_typeof(e) IS DISTINCT FROM 'object' OR jsonb_typeof(e -> 'type') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'malformed event % in Unleash document', en
                USING ERRCODE = 'invalid_parameter_value', DETAIL = 'An event is an object with a "type".';
        END IF;
        CASE e ->> 'type'
        WHEN 'hydration' THEN
            IF jsonb_typeof(e -> 'features') IS DISTINCT FROM 'array'
               OR coalesce(jsonb_typeof(e -> 'segments'), 'null') NOT IN ('array', 'null') THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A hydration has "features" and "segments" arrays.';
            END IF;
            feats := '{}';
            segs := '{}';
            removed := '{}';
            FOR x, idx IN SELECT * FROM jsonb_array_elements(e -> 'features') WITH ORDINALITY LOOP
                PERFORM opsflags_internal.unleash_check_feature(x, format('feature %s', idx));
                IF feats ? (x ->> 'name') THEN
                    RAISE EXCEPTION 'feature "%" appears twice in Unleash document', x ->> 'name'
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                feats := feats || jsonb_build_object(x ->> 'name', x);
            END LOOP;
            FOR x IN SELECT * FROM jsonb_array_elements(coalesce(nullif(e -> 'segments', 'null'), '[]')) LOOP
                segs := segs || jsonb_build_object(coalesce(x ->> 'id', ''), x);
            END LOOP;
        WHEN 'feature-updated' THEN
            PERFORM opsflags_internal.unleash_check_feature(e -> 'feature', format('feature of event %s', en));
            feats := feats || jsonb_build_object(e -> 'feature' ->> 'name', e -> 'feature');
            removed := array_remove(removed, e -> 'feature' ->> 'name');
        WHEN 'feature-removed' THEN
            IF jsonb_typeof(e -> 'featureName') IS DISTINCT FROM 'string' THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A feature-removed event names a "featureName".';
            END IF;
            feats := feats - (e ->> 'featureName');
            removed := array_remove(removed, e ->> 'featureName') || (e ->> 'featureName');
        WHEN 'segment-updated' THEN
            segs := segs || jsonb_build_object(coalesce(e -> 'segment' ->> 'id', ''), e -> 'segment');
            seg_gone := array_remove(seg_gone, e -> 'segment' ->> 'id');
        WHEN 'segment-removed' THEN
            IF NOT opsflags_internal.is_whole_number(e -> 'segmentId', 0, 1e15) THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A segment-removed event names a "segmentId".';
            END IF;
            segs := segs - (e ->> 'segmentId');
            seg_gone := array_remove(seg_gone, e ->> 'segmentId') || (e ->> 'segmentId');
        ELSE
            RAISE EXCEPTION 'unknown event type "%" in Unleash document', e ->> 'type'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Known: hydration, feature-updated, feature-removed, segment-updated, segment-removed.';
        END CASE;
    END LOOP;

    -- Check everything before writing anything.
    FOR key, x IN SELECT * FROM jsonb_each(segs) LOOP
        IF jsonb_typeof(x) IS DISTINCT FROM 'object' OR NOT opsflags_internal.is_whole_number(x -> 'id', 0, 1e15)
           OR coalesce(jsonb_typeof(x -> 'name'), 'null') NOT IN ('string', 'null')
           OR coalesce(jsonb_typeof(x -> 'constraints'), 'null') NOT IN ('array', 'null') THEN
            RAISE EXCEPTION 'malformed segment "%" in Unleash document', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A segment is {"id": whole number, "name": string, "constraints": [...]}.';
        END IF;
        FOR e, en IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'constraints', 'null'), '[]')) WITH ORDINALITY LOOP
            PERFORM opsflags_internal.unleash_check_constraint(e, format('constraint %s of segment %s', en, key));
        END LOOP;
    END LOOP;
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF FOUND THEN
            IF f.archived THEN
                RAISE EXCEPTION 'feature flag "%" of the Unleash document is archived', key
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the document.';
            END IF;
            IF f.variations -> 0 IS DISTINCT FROM 'true' OR f.variations -> 1 IS DISTINCT FROM 'false' THEN
                RAISE EXCEPTION 'feature flag "%" of the Unleash document does not have the variations true and false first', key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'An Unleash feature is a flag whose variations are [true, false, variant payloads...].';
            END IF;
        END IF;
    END LOOP;

    -- Segments: opsflags.user_segments "unleash-segment-<id>", one rule of
    -- the segment's constraints.
    FOR key, x IN SELECT k, v FROM jsonb_each(segs) s(k, v) ORDER BY k::numeric LOOP
        s_rules := jsonb_build_array(jsonb_build_object('id', 'constraints', 'clauses',
            (SELECT coalesce(jsonb_agg(opsflags_internal.unleash_clause(cc) ORDER BY o), '[]')
             FROM jsonb_array_elements(coalesce(nullif(x -> 'constraints', 'null'), '[]')) WITH ORDINALITY a(cc, o))));
        key := 'unleash-segment-' || key;
        IF NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key) THEN
            INSERT INTO opsflags.user_segments (segment_key, name, rules)
            VALUES (key, coalesce(x ->> 'name', key), s_rules);
            s_created := s_created || key;
        ELSIF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key
                      AND (u.name, u.user_ids, u.roles, u.rules) IS NOT DISTINCT FROM (coalesce(x ->> 'name', key), '[]'::jsonb, '[]'::jsonb, s_rules)) THEN
            s_same := s_same || key;
        ELSE
            UPDATE opsflags.user_segments u
            SET name = coalesce(x ->> 'name', key), user_ids = '[]', roles = '[]', rules = s_rules, updated_at = now()
            WHERE u.segment_key = key;
            s_changed := s_changed || key;
        END IF;
    END LOOP;
    SELECT coalesce(jsonb_object_agg(substr(u.segment_key, 17), true), '{}') INTO known
    FROM opsflags.user_segments u
    WHERE u.segment_key ~ '^unleash-segment-[0-9]+$' AND substr(u.segment_key, 17) <> ALL (seg_gone);

    -- Features: the flag (variations: true, false, then one per variant
    -- name, its payload as the value) and its config in the environment.
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        feat := feats -> key;
        strategies := feat -> 'strategies';
        chg := false;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        vars := coalesce(f.variations, '[true, false]');
        vnames := coalesce(f.variation_names,
                           (SELECT jsonb_agg(NULL::text) FROM generate_series(1, jsonb_array_length(vars))));
        FOR fv IN
            SELECT v FROM (SELECT x.v, 0 AS s, x.o FROM jsonb_array_elements(coalesce(nullif(feat -> 'variants', 'null'), '[]')) WITH ORDINALITY x(v, o)
                           UNION ALL
                           SELECT y.v, s2.o, y.o
                           FROM jsonb_array_elements(coalesce(nullif(strategies, 'null'), '[]')) WITH ORDINALITY s2(s, o),
                                jsonb_array_elements(coalesce(nullif(s2.s -> 'variants', 'null'), '[]')) WITH ORDINALITY y(v, o)) z
            ORDER BY z.s, z.o
        LOOP
            SELECT o::integer - 1 INTO idx FROM jsonb_array_elements(vnames) WITH ORDINALITY a(n, o)
            WHERE a.n = fv -> 'name';
            IF idx IS NULL THEN
                vars := vars || jsonb_build_array(coalesce(fv -> 'payload', 'null'));
                vnames := vnames || jsonb_build_array(fv -> 'name');
            ELSIF vars -> idx <> coalesce(fv -> 'payload', 'null') THEN
                vars := jsonb_set(vars, ARRAY[idx::text], coalesce(fv -> 'payload', 'null'));
            END IF;
            idx := NULL;
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(vnames) n WHERE n <> 'null') THEN
            vnames := NULL;
        END IF;
        vtype := CASE WHEN jsonb_array_length(vars) > 2 THEN 'json' ELSE coalesce(f.flag_type, 'boolean') END;
        IF f.id IS NULL THEN
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, description, flag_type, variations, variation_names)
            VALUES (key, key, feat ->> 'description', vtype, vars, vnames)
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment)
            SELECT f.id, en2.name FROM opsflags.environments en2 WHERE en2.name <> env;
            created := created || key;
        ELSIF (f.flag_type, f.variations, f.variation_names) IS DISTINCT FROM (vtype, vars, vnames) THEN
            UPDATE opsflags.feature_flags ff SET flag_type = vtype, variations = vars, variation_names = vnames
            WHERE ff.id = f.id RETURNING * INTO f;
            chg := true;
        END IF;
        SELECT coalesce(jsonb_object_agg(n #>> '{}', o - 1) FILTER (WHERE n <> 'null'), '{}') INTO names
        FROM jsonb_array_elements(coalesce(vnames, '[]')) WITH ORDINALITY a(n, o);

        -- A dependency the SDK can never satisfy (a parent missing, or
        -- with dependencies of its own) leaves the feature off.
        ok := true;
        FOR dep IN SELECT * FROM jsonb_array_elements(coalesce(nullif(feat -> 'dependencies', 'null'), '[]')) LOOP
            parent := feats -> (dep ->> 'feature');
            IF parent IS NOT NULL THEN
                ok := ok AND jsonb_array_length(coalesce(nullif(parent -> 'dependencies', 'null'), '[]')) = 0;
            ELSE
                ok := ok AND dep ->> 'feature' <> ALL (removed)
                      AND EXISTS (SELECT 1 FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature' AND NOT p.archived
                                  AND NOT EXISTS (SELECT 1 FROM opsflags.flag_prerequisites pp WHERE pp.flag_id = p.id));
            END IF;
            -- Variants the parent will not have.
            ok := ok AND opsflags_internal.unleash_dependency_variants(dep,
                      coalesce((SELECT p.variation_names FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature'), '[]')
                      || coalesce(jsonb_path_query_array(parent, 'lax $.variants[*].name'), '[]')
                      || coalesce(jsonb_path_query_array(parent, 'lax $.strategies[*].variants[*].name'), '[]'))
                     IS DISTINCT FROM '[]';
        END LOOP;
        enabled := coalesce((feat ->> 'enabled')::boolean, false) AND ok;

        SELECT coalesce(jsonb_agg(r ORDER BY o, ro), '[]') INTO rules
        FROM jsonb_array_elements(coalesce(nullif(strategies, 'null'), '[]')) WITH ORDINALITY a(s, o),
             jsonb_array_elements(opsflags_internal.unleash_strategy_rules(s, o::integer, names, known,
                                                                           coalesce(f.rollout_group, key))) WITH ORDINALITY b(r, ro);
        serve := CASE WHEN jsonb_array_length(coalesce(nullif(feat -> 'variants', 'null'), '[]')) > 0
                      THEN opsflags_internal.unleash_split(feat -> 'variants', names, feat -> 'variants' -> 0 ->> 'stickiness',
                                                           key, coalesce(f.rollout_group, key)) END;
        -- No strategy: on for everyone; strategies (or none readable): on
        -- only where one is.
        fall := CASE WHEN jsonb_typeof(strategies) = 'array' AND jsonb_array_length(strategies) = 0 THEN NULL
                     ELSE '{"off": true}'::jsonb END;

        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation,
                                                       rules, serve, fallthrough)
            VALUES (f.id, env, enabled, 0, 1, rules, serve, fall);
            chg := true;
        ELSIF (c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage, c.enable_at, c.disable_at,
               c.on_variation, c.off_variation, c.variation_weights, c.segments, c.rules, c.serve, c.fallthrough)
              IS DISTINCT FROM
              (enabled, '[]'::jsonb, '[]'::jsonb, 0, NULL::timestamptz, NULL::timestamptz,
               0, 1, NULL::jsonb, '[]'::jsonb, rules, serve, fall) THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = enabled, enabled_for_users = '[]', enabled_for_roles = '[]', enabled_percentage = 0,
                enable_at = NULL, disable_at = NULL, on_variation = 0, off_variation = 1, variation_weights = NULL,
                segments = '[]', rules = import_unleash.rules, serve = import_unleash.serve, fallthrough = fall
            WHERE fc.flag_id = f.id AND fc.environment = env;
            chg := true;
        END IF;
        IF NOT (key = ANY (created)) THEN
            IF chg THEN
                changed := changed || key;
            ELSE
                same := same || key;
            END IF;
        END IF;
    END LOOP;

    -- Prerequisites, once every flag exists: a feature's dependencies (none
    -- for a feature left off above).
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        feat := feats -> key;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        want := '[]';
        IF c.is_enabled OR NOT coalesce((feat ->> 'enabled')::boolean, false) THEN
            FOR dep IN SELECT * FROM jsonb_array_elements(coalesce(nullif(feat -> 'dependencies', 'null'), '[]')) LOOP
                SELECT p.id INTO pid FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature';
                CONTINUE WHEN pid IS NULL OR dep ->> 'feature' = ANY (removed)
                              OR jsonb_array_length(coalesce(nullif(feats -> (dep ->> 'feature') -> 'dependencies', 'null'), '[]')) > 0;
                x := opsflags_internal.unleash_dependency_variants(dep,
                         (SELECT p.variation_names FROM opsflags.feature_flags p WHERE p.id = pid));
                CONTINUE WHEN x = '[]';
                want := want || jsonb_build_array(jsonb_build_object(
                    'id', pid, 'enabled', coalesce((dep ->> 'enabled')::boolean, true), 'variants', x));
            END LOOP;
        END IF;
        IF EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(want) w WHERE (w ->> 'id')::uuid = p.prerequisite_id
                                   AND p.variation IS NULL AND p.enabled = (w ->> 'enabled')::boolean
                                   AND p.variants IS NOT DISTINCT FROM nullif(w -> 'variants', 'null')))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(want) w WHERE NOT EXISTS
                      (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id AND p.prerequisite_id = (w ->> 'id')::uuid)) THEN
            DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
            INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled, variants)
            SELECT f.id, (w ->> 'id')::uuid, (w ->> 'enabled')::boolean, nullif(w -> 'variants', 'null')
            FROM jsonb_array_elements(want) w;
            IF key = ANY (same) THEN
                same := array_remove(same, key);
                changed := changed || key;
            END IF;
        END IF;
    END LOOP;

    -- Removed features are off in the environment.
    FOREACH key IN ARRAY removed LOOP
        UPDATE opsflags.feature_flag_configs fc SET is_enabled = false
        FROM opsflags.feature_flags ff
        WHERE ff.flag_key = key AND fc.flag_id = ff.id AND fc.environment = env AND fc.is_enabled;
        IF FOUND THEN
            gone := gone || key;
        END IF;
    END LOOP;
    FOREACH key IN ARRAY seg_gone LOOP
        DELETE FROM opsflags.user_segments u WHERE u.segment_key = 'unleash-segment-' || key;
        IF FOUND THEN
            s_gone := s_gone || ('unleash-segment-' || key);
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created), 'changed', to_jsonb(changed),
                              'unchanged', to_jsonb(same), 'removed', to_jsonb(gone),
                              'segments', jsonb_build_object('created', to_jsonb(s_created), 'changed', to_jsonb(s_changed),
                                                             'unchanged', to_jsonb(s_same), 'removed', to_jsonb(s_gone)));
END
$$;
COMMENT ON FUNCTION opsflags.import_unleash(text, jsonb) IS
  'Load an Unleash client document (/api/client/features, or delta events) into an environment as flags, rules, segments and prerequisites; idempotent';


-------------------------------------------------------------------------------
-- Privileges: the import is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags.import_unleash(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.import_unleash(text, jsonb)
TO opsflags_admin;
