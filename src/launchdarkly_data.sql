/*
 * launchdarkly_data.sql
 *	  LaunchDarkly's server-side data ({"flags": {...}, "segments": {...}},
 *	  as an SDK's file data source holds it): import_launchdarkly_data maps
 *	  it onto flags, rules, segments and prerequisites, launchdarkly_data
 *	  exports them back in that format.
 */

-------------------------------------------------------------------------------
-- The mapping
--
-- flag                  feature_flags (variations as they are, bucketing
--                       "launchdarkly", salt) and its config
-- on, offVariation      is_enabled, off_variation (null: none)
-- targets               rules "ld-target-<n>" ({key in values} of the
--                       target's context kind), first
-- rules                 rules (their id, else "ld-rule-<n>"), clauses with
--                       LaunchDarkly's semantics
-- variation, rollout    serve {"variation": i}, or a LaunchDarkly split
-- fallthrough           fallthrough
-- prerequisites         flag_prerequisites (enabled NULL: switched on, and
--                       variation)
-- segment               user_segments of the same key (bucketing
--                       "launchdarkly", salt), all in rules, in LaunchDarkly's
--                       order (the first rule that holds decides):
--                       "ld-included-<n>" for included keys and each
--                       includedContexts entry, "ld-excluded-<n>" (exclude)
--                       for excluded keys and each excludedContexts entry,
--                       then each rule as "ld-rule-<n>", a weight as its
--                       gate, segmentMatch as segment_match (nested segments)
--
-- Any variation is served as it is: a boolean one decides what
-- feature_enabled says.
-------------------------------------------------------------------------------

-- LaunchDarkly's operators and the engine's.
CREATE FUNCTION opsflags_internal.ld_operators()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"in": "in", "startsWith": "starts_with", "endsWith": "ends_with", "contains": "contains",
         "matches": "matches", "lessThan": "lt", "lessThanOrEqual": "lte", "greaterThan": "gt",
         "greaterThanOrEqual": "gte", "before": "before", "after": "after", "semVerEqual": "semver_eq",
         "semVerLessThan": "semver_lt", "semVerGreaterThan": "semver_gt", "segmentMatch": "segment_match"}'::jsonb;

-- Raise the import's error for one flag or segment.
CREATE FUNCTION opsflags_internal.ld_error(what text, detail text, code text DEFAULT '22023')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'invalid LaunchDarkly %', what USING ERRCODE = code, DETAIL = detail;
END
$$;

-- Whether the engine takes v as a value of op (a version, a regular
-- expression, a timestamp): LaunchDarkly never matches one it cannot read.
CREATE FUNCTION opsflags_internal.ld_value_ok(op text, v jsonb)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM opsflags_internal.check_segment_rules('ld-check', jsonb_build_array(jsonb_build_object('id', 'v', 'clauses',
        jsonb_build_array(jsonb_build_object('attribute', 'a', 'op', op, 'values', jsonb_build_array(v),
                                             'semantics', 'launchdarkly')))), 'launchdarkly');
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- A clause as the engine's clause.  what names the flag or segment, pos the
-- rule and clause; segment_keys are the LaunchDarkly segments known.
CREATE FUNCTION opsflags_internal.ld_clause(c jsonb, what text, pos text, segment_keys jsonb, in_segment boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op   text;
    vals jsonb;
BEGIN
    IF jsonb_typeof(c) IS DISTINCT FROM 'object' OR jsonb_typeof(c -> 'op') IS DISTINCT FROM 'string'
       OR jsonb_typeof(c -> 'values') IS DISTINCT FROM 'array'
       OR coalesce(jsonb_typeof(c -> 'negate'), 'boolean') <> 'boolean' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause is {"attribute", "op", "values": [...], "negate"}.');
    END IF;
    op := opsflags_internal.ld_operators() ->> (c ->> 'op');
    IF op IS NULL THEN
        PERFORM opsflags_internal.ld_error(what, format('%s: unknown operator "%s".', pos, c ->> 'op'));
    END IF;
    IF coalesce(jsonb_typeof(c -> 'contextKind'), 'string') <> 'string' OR c ->> 'contextKind' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': "contextKind" is a non-empty string.');
    END IF;
    vals := c -> 'values';
    IF op = 'segment_match' THEN
        -- A segment's rule may name a segment of the database too.
        IF in_segment AND EXISTS (SELECT 1 FROM jsonb_array_elements(vals) v WHERE jsonb_typeof(v) <> 'string'
                                  OR NOT (segment_keys ? (v #>> '{}')
                                          OR EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = v #>> '{}'))) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch names a segment that is neither in the data nor in the database.', '42704');
        END IF;
        IF NOT in_segment AND EXISTS (SELECT 1 FROM jsonb_array_elements(vals) v WHERE jsonb_typeof(v) <> 'string' OR NOT segment_keys ? (v #>> '{}')) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch names a segment that is not in the data.');
        END IF;
        RETURN jsonb_build_object('op', op, 'values', vals, 'negate', coalesce((c ->> 'negate')::boolean, false),
                                  'semantics', 'launchdarkly');
    END IF;
    IF jsonb_typeof(c -> 'attribute') IS DISTINCT FROM 'string' OR c ->> 'attribute' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause names an attribute.');
    END IF;
    -- Members of values the operator never holds for are left out, as the
    -- engine refuses them: LaunchDarkly never matches them.
    SELECT coalesce(jsonb_agg(v ORDER BY o), '[]') INTO vals
    FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)
    WHERE CASE WHEN op = 'in' THEN jsonb_typeof(v) IN ('string', 'number', 'boolean')
               WHEN op IN ('lt', 'lte', 'gt', 'gte') THEN jsonb_typeof(v) = 'number'
               WHEN op IN ('before', 'after') THEN jsonb_typeof(v) IN ('string', 'number')
               ELSE jsonb_typeof(v) = 'string' END
      AND (op NOT IN ('matches', 'before', 'after') AND op !~ '^semver_'
           OR opsflags_internal.ld_value_ok(op, v));
    RETURN jsonb_strip_nulls(jsonb_build_object('attribute', c ->> 'attribute', 'op', op, 'values', vals,
                                                'negate', coalesce((c ->> 'negate')::boolean, false),
                                                'semantics', 'launchdarkly', 'context_kind', c -> 'contextKind'));
END
$$;

-- What a variation-or-rollout serves, as a serve object.
CREATE FUNCTION opsflags_internal.ld_serve(vr jsonb, vars jsonb, what text, pos text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i  integer;
    ro jsonb := vr -> 'rollout';
BEGIN
    IF jsonb_typeof(ro) = 'object' THEN
        IF jsonb_typeof(ro -> 'variations') IS DISTINCT FROM 'array' OR jsonb_array_length(ro -> 'variations') = 0
           OR jsonb_path_exists(ro, '$.variations[*] ? (!(@.variation.type() == "number") || !(@.weight.type() == "number"))')
           OR coalesce(jsonb_typeof(ro -> 'bucketBy'), 'string') <> 'string'
           OR coalesce(jsonb_typeof(ro -> 'contextKind'), 'string') <> 'string'
           OR coalesce(jsonb_typeof(ro -> 'seed'), 'null') NOT IN ('number', 'null')
           OR coalesce(ro ->> 'kind', 'rollout') NOT IN ('rollout', 'experiment') THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': a rollout is {"variations": [{"variation", "weight"}], "bucketBy", "contextKind", "seed", "kind"}.');
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(ro -> 'variations') e
                   WHERE NOT opsflags_internal.is_whole_number(e -> 'variation', 0, jsonb_array_length(vars) - 1)) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': a rollout names a variation the flag does not have.');
        END IF;
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'split', (SELECT jsonb_agg(jsonb_build_object('variation', (e ->> 'variation')::integer, 'weight', e -> 'weight')
                                       || CASE WHEN (e ->> 'untracked')::boolean THEN '{"untracked": true}'::jsonb ELSE '{}' END
                                       ORDER BY o)
                      FROM jsonb_array_elements(ro -> 'variations') WITH ORDINALITY a(e, o)),
            'bucket_by', ro -> 'bucketBy', 'context_kind', ro -> 'contextKind', 'seed', nullif(ro -> 'seed', 'null'),
            'kind', CASE WHEN ro ->> 'kind' = 'experiment' THEN 'experiment' END));
    END IF;
    IF NOT opsflags_internal.is_whole_number(vr -> 'variation', 0, jsonb_array_length(vars) - 1) THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': "variation" is not the index of one of the flag''s variations.');
    END IF;
    RETURN jsonb_build_object('variation', (vr ->> 'variation')::integer);
END
$$;

-- Checks a string array member (null or absent is []).
CREATE FUNCTION opsflags_internal.ld_strings(x jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN x IS NULL OR x = 'null' OR opsflags.is_string_array(x);

-------------------------------------------------------------------------------
-- import_launchdarkly_data
-------------------------------------------------------------------------------

-- Loads LaunchDarkly's server-side data into an environment.  Everything
-- is mapped (and so checked) before anything is written; a flag, config,
-- segment or prerequisite is written only where it differs, so a second
-- import changes nothing.
CREATE FUNCTION opsflags.import_launchdarkly_data(environment text, data jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env       text := opsflags.resolve_environment(environment);
    flags     jsonb;
    segs      jsonb;
    key       text;
    x         jsonb;
    r         jsonb;
    t         jsonb;
    rn        bigint;
    cn        bigint;
    what      text;
    vars      jsonb;
    off_i     integer;
    on_i      integer;
    rules     jsonb;
    clauses   jsonb;
    incl      jsonb;
    rid       text;
    todo      text[];
    batch     text[];
    sorder    text[] := '{}';
    mapped    jsonb := '{}';   -- key -> {"type", "vars", "on", "on_i", "off_i", "rules", "fall", "prereqs"}
    smapped   jsonb := '{}';   -- native segment key -> {"name", "user_ids", "rules"}
    f         opsflags.feature_flags;
    c         opsflags.feature_flag_configs;
    m         jsonb;
    chg       boolean;
    created   text[] := '{}';
    changed   text[] := '{}';
    same      text[] := '{}';
    s_created text[] := '{}';
    s_changed text[] := '{}';
    s_same    text[] := '{}';
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> 'object' OR jsonb_typeof(data -> 'flags') IS DISTINCT FROM 'object'
       OR coalesce(jsonb_typeof(data -> 'segments'), 'object') <> 'object' THEN
        RAISE EXCEPTION 'LaunchDarkly data is a JSON object with "flags" and "segments"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected {"flags": {"key": {...}}, "segments": {"key": {...}}}, as /sdk/latest-all returns it.';
    END IF;
    flags := data -> 'flags';
    segs := coalesce(data -> 'segments', '{}');

    -- Segments.
    FOR key, x IN SELECT k, v FROM jsonb_each(segs) s(k, v) ORDER BY k LOOP
        what := format('segment "%s"', key);
        IF jsonb_typeof(x) <> 'object' OR NOT opsflags.is_valid_flag_key(key)
           OR NOT opsflags_internal.ld_strings(x -> 'included') OR NOT opsflags_internal.ld_strings(x -> 'excluded')
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'includedContexts', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'excludedContexts', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A segment is {"included": [keys], "excluded": [keys], "includedContexts", "excludedContexts", "rules": [...]}, its key letters, digits and . _ -.');
        END IF;
        IF coalesce((x ->> 'unbounded')::boolean, false) THEN
            PERFORM opsflags_internal.ld_error(what, 'Big (unbounded) segments are not supported.', '0A000');
        END IF;
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t IN SELECT v FROM jsonb_array_elements(coalesce(nullif(x -> 'includedContexts', 'null'), '[]')
                                                    || coalesce(nullif(x -> 'excludedContexts', 'null'), '[]')) v LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'contextKind') IS DISTINCT FROM 'string' OR t ->> 'contextKind' = ''
               OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, 'includedContexts and excludedContexts are [{"contextKind", "values": [keys]}].');
            END IF;
        END LOOP;
        -- Included keys: one rule for the user kind ("ld-included-1"), one per
        -- includedContexts entry that has keys (numbered from 2).
        rules := '[]';
        FOR t, rn IN
            SELECT e, CASE WHEN o = 1 THEN 1 ELSE 1 + row_number() OVER (PARTITION BY o = 1 ORDER BY o) END AS n
            FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('contextKind', 'user', 'values', coalesce(nullif(x -> 'included', 'null'), '[]')))
                                      || coalesce(nullif(x -> 'includedContexts', 'null'), '[]')) WITH ORDINALITY a(e, o)
            WHERE jsonb_array_length(coalesce(nullif(e -> 'values', 'null'), '[]')) > 0
            ORDER BY n
        LOOP
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-included-' || rn, 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                   'semantics', 'launchdarkly', 'context_kind', t -> 'contextKind'))));
        END LOOP;
        -- Excluded keys, likewise: rules that put the context out.
        FOR t, rn IN
            SELECT e, CASE WHEN o = 1 THEN 1 ELSE 1 + row_number() OVER (PARTITION BY o = 1 ORDER BY o) END AS n
            FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('contextKind', 'user', 'values', coalesce(nullif(x -> 'excluded', 'null'), '[]')))
                                      || coalesce(nullif(x -> 'excludedContexts', 'null'), '[]')) WITH ORDINALITY a(e, o)
            WHERE jsonb_array_length(coalesce(nullif(e -> 'values', 'null'), '[]')) > 0
            ORDER BY n
        LOOP
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-excluded-' || rn, 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                   'semantics', 'launchdarkly', 'context_kind', t -> 'contextKind')), 'exclude', true));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"clauses": [...]}.', rn));
            END IF;
            IF coalesce(jsonb_typeof(r -> 'weight'), 'null') NOT IN ('number', 'null')
               OR (jsonb_typeof(r -> 'weight') = 'number' AND NOT opsflags_internal.is_whole_number(r -> 'weight', 0, 100000))
               OR coalesce(jsonb_typeof(r -> 'bucketBy'), 'string') <> 'string'
               OR coalesce(jsonb_typeof(r -> 'rolloutContextKind'), 'string') <> 'string' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: "weight" is a whole number from 0 to 100000, "bucketBy" and "rolloutContextKind" strings.', rn));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, true) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            t := CASE WHEN jsonb_typeof(r -> 'weight') = 'number' THEN jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
                     'weight', r -> 'weight', 'bucket_by', r -> 'bucketBy', 'context_kind', r -> 'rolloutContextKind'))) ELSE '{}' END;
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-rule-' || rn, 'clauses', clauses) || t);
        END LOOP;
        -- The segment keeps its key: a rule's weight buckets with it.
        IF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key AND u.bucketing <> 'launchdarkly') THEN
            RAISE EXCEPTION 'segment "%" of the LaunchDarkly data exists and is not a LaunchDarkly segment', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Rename or drop that segment, or leave this one out of the data.';
        END IF;
        smapped := smapped || jsonb_build_object(key, jsonb_build_object(
            'name', key, 'salt', x -> 'salt', 'rules', rules));
    END LOOP;
    -- Nested segments: no cycle (with the database's other segments).
    FOR key, m IN SELECT k, v FROM jsonb_each(smapped) s(k, v) ORDER BY k LOOP
        what := opsflags_internal.segment_cycle(key, m -> 'rules',
                    (SELECT jsonb_object_agg(k, v -> 'rules') FROM jsonb_each(smapped) s(k, v)));
        IF what IS NOT NULL THEN
            PERFORM opsflags_internal.ld_error(format('segment "%s"', key), format('Its rules would form a cycle: %s.', what));
        END IF;
    END LOOP;
    -- The order segments are written in: each after the segments it names.
    todo := ARRAY(SELECT k FROM jsonb_object_keys(smapped) k ORDER BY k);
    WHILE cardinality(todo) > 0 LOOP
        batch := ARRAY(SELECT k FROM unnest(todo) k
                       WHERE NOT EXISTS (SELECT 1 FROM opsflags_internal.rule_segment_keys(smapped -> k -> 'rules') n
                                         WHERE n = ANY (todo))
                       ORDER BY k);
        sorder := sorder || batch;
        todo := ARRAY(SELECT k FROM unnest(todo) k WHERE NOT k = ANY (batch) ORDER BY k);
    END LOOP;

    -- Flags.
    FOR key, x IN SELECT k, v FROM jsonb_each(flags) s(k, v) ORDER BY k LOOP
        what := format('flag "%s"', key);
        IF NOT opsflags.is_valid_flag_key(key) OR jsonb_typeof(x) <> 'object'
           OR jsonb_typeof(x -> 'variations') IS DISTINCT FROM 'array' OR jsonb_array_length(x -> 'variations') = 0
           OR jsonb_typeof(x -> 'on') IS DISTINCT FROM 'boolean'
           OR jsonb_typeof(x -> 'fallthrough') IS DISTINCT FROM 'object'
           OR coalesce(jsonb_typeof(nullif(x -> 'targets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'contextTargets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'prerequisites', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A flag is {"on": boolean, "variations": [...], "offVariation", "fallthrough": {...}, "targets", "contextTargets", "rules", "prerequisites"}, its key a valid flag key.');
        END IF;
        vars := x -> 'variations';
        IF jsonb_array_length(vars) > opsflags.max_variations() THEN
            PERFORM opsflags_internal.ld_error(what, format('At most %s variations.', opsflags.max_variations()));
        END IF;
        IF coalesce(jsonb_typeof(x -> 'offVariation'), 'null') <> 'null'
           AND NOT opsflags_internal.is_whole_number(x -> 'offVariation', 0, jsonb_array_length(vars) - 1) THEN
            PERFORM opsflags_internal.ld_error(what, '"offVariation" is not the index of one of the flag''s variations.');
        END IF;
        off_i := (x ->> 'offVariation')::integer;  -- null: off serves no value
        SELECT coalesce(min(o) - 1, 0) INTO on_i FROM jsonb_array_elements(vars) WITH ORDINALITY a(v, o) WHERE v <> 'false';
        rules := '[]';
        -- Targets: contextTargets in their order (a "user" one stands for
        -- the first targets entry of its variation, whatever its own
        -- values), else targets.
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR coalesce(jsonb_typeof(t -> 'contextKind'), 'string') <> 'string' OR t ->> 'contextKind' = '' THEN
                PERFORM opsflags_internal.ld_error(what, format('Context target %s: a target is {"contextKind", "values": [keys], "variation": i}.', rn));
            END IF;
        END LOOP;
        FOR t, rn IN
            SELECT CASE WHEN coalesce(ct.v ->> 'contextKind', 'user') = 'user' THEN coalesce(tt.v, '{}') ELSE ct.v END, ct.o
            FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY ct(v, o)
            LEFT JOIN LATERAL (SELECT t2.v FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t2(v, o2)
                               WHERE t2.v -> 'variation' = ct.v -> 'variation' ORDER BY t2.o2 LIMIT 1) tt ON true
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) > 0
            UNION ALL
            SELECT t3.v, t3.o FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t3(v, o)
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) = 0
            ORDER BY 2
        LOOP
            IF jsonb_typeof(t) <> 'object' OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, format('Target %s: a target is {"values": [keys], "variation": i}.', rn));
            END IF;
            CONTINUE WHEN jsonb_array_length(coalesce(nullif(t -> 'values', 'null'), '[]')) = 0;
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', 'ld-target-' || rn,
                'clauses', jsonb_build_array(jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                                                'semantics', 'launchdarkly', 'context_kind', coalesce(t ->> 'contextKind', 'user'))),
                'serve', opsflags_internal.ld_serve(t, vars, what, format('Target %s', rn))));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"id", "clauses": [...], "variation" or "rollout"}.', rn));
            END IF;
            rid := CASE WHEN r ->> 'id' ~ '^[A-Za-z0-9._:-]{1,100}$' AND r ->> 'id' !~ '^ld-(target|rule)-' THEN r ->> 'id'
                        ELSE 'ld-rule-' || rn END;
            IF jsonb_path_exists(rules, '$[*] ? (@.id == $id)', jsonb_build_object('id', rid)) THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: id "%s" appears twice.', rn, rid));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, false) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', rid, 'clauses', clauses, 'serve', opsflags_internal.ld_serve(r, vars, what, format('Rule %s', rn))));
        END LOOP;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'prerequisites', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'key') IS DISTINCT FROM 'string' OR t ->> 'key' = key
               OR NOT opsflags_internal.is_whole_number(t -> 'variation', 0, 2147483647) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: a prerequisite is {"key": another flag, "variation": i}.', rn));
            END IF;
            IF flags ? (t ->> 'key') THEN
                IF NOT opsflags_internal.is_whole_number(t -> 'variation', 0, jsonb_array_length(flags -> (t ->> 'key') -> 'variations') - 1) THEN
                    PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" has no variation %s.', rn, t ->> 'key', t -> 'variation'));
                END IF;
            ELSIF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags p WHERE p.flag_key = t ->> 'key' AND NOT p.archived) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" is neither in the data nor in the database.', rn, t ->> 'key'));
            END IF;
        END LOOP;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF FOUND AND f.archived THEN
            RAISE EXCEPTION 'feature flag "%" of the LaunchDarkly data is archived', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the data.';
        END IF;
        mapped := mapped || jsonb_build_object(key, jsonb_build_object(
            'type', CASE WHEN vars = '[true, false]' THEN 'boolean'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "string")') THEN 'string'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "number")') THEN 'number'
                         ELSE 'json' END,
            'vars', vars, 'salt', x -> 'salt', 'on', x -> 'on', 'on_i', on_i, 'off_i', off_i, 'rules', rules,
            'fall', opsflags_internal.ld_serve(x -> 'fallthrough', vars, what, 'Fallthrough'),
            'prereqs', coalesce(nullif(x -> 'prerequisites', 'null'), '[]')));
    END LOOP;

    -- Write segments, then flags and configs, then prerequisites.
    FOR key, m IN SELECT k, smapped -> k FROM unnest(sorder) WITH ORDINALITY a(k, o) ORDER BY o LOOP
        IF NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key) THEN
            INSERT INTO opsflags.user_segments (segment_key, name, bucketing, salt, rules)
            VALUES (key, m ->> 'name', 'launchdarkly', m ->> 'salt', m -> 'rules');
            s_created := s_created || key;
        ELSIF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key
                      AND (u.name, u.user_ids, u.roles, u.bucketing, u.salt, u.rules)
                          IS NOT DISTINCT FROM (m ->> 'name', '[]'::jsonb, '[]'::jsonb, 'launchdarkly', m ->> 'salt', m -> 'rules')) THEN
            s_same := s_same || key;
        ELSE
            -- The bucketing first: the rules are checked against it.
            UPDATE opsflags.user_segments u
            SET name = m ->> 'name', user_ids = '[]', roles = '[]', bucketing = 'launchdarkly', salt = m ->> 'salt',
                rules = m -> 'rules', updated_at = now()
            WHERE u.segment_key = key;
            s_changed := s_changed || key;
        END IF;
    END LOOP;
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        chg := false;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF f.id IS NULL THEN
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, bucketing, salt)
            VALUES (key, key, m ->> 'type', m -> 'vars', 'launchdarkly', m ->> 'salt')
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, en2.name, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer
            FROM opsflags.environments en2 WHERE en2.name <> env;
            created := created || key;
        ELSIF (f.flag_type, f.variations, f.variation_names, f.bucketing, f.salt)
              IS DISTINCT FROM (m ->> 'type', m -> 'vars', NULL::jsonb, 'launchdarkly', m ->> 'salt') THEN
            UPDATE opsflags.feature_flags ff SET flag_type = m ->> 'type', variations = m -> 'vars', variation_names = NULL,
                                                 bucketing = 'launchdarkly', salt = m ->> 'salt'
            WHERE ff.id = f.id RETURNING * INTO f;
            chg := true;
        END IF;
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation,
                                                       rules, serve, fallthrough)
            VALUES (f.id, env, (m ->> 'on')::boolean, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer,
                    m -> 'rules', NULL, m -> 'fall');
            chg := true;
        ELSIF (c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage, c.enable_at, c.disable_at,
               c.on_variation, c.off_variation, c.variation_weights, c.segments, c.rules, c.serve, c.fallthrough)
              IS DISTINCT FROM
              ((m ->> 'on')::boolean, '[]'::jsonb, '[]'::jsonb, 0, NULL::timestamptz, NULL::timestamptz,
               (m ->> 'on_i')::integer, (m ->> 'off_i')::integer, NULL::jsonb, '[]'::jsonb, m -> 'rules', NULL::jsonb, m -> 'fall') THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = (m ->> 'on')::boolean, enabled_for_users = '[]', enabled_for_roles = '[]', enabled_percentage = 0,
                enable_at = NULL, disable_at = NULL, on_variation = (m ->> 'on_i')::integer,
                off_variation = (m ->> 'off_i')::integer, variation_weights = NULL, segments = '[]',
                rules = m -> 'rules', serve = NULL, fallthrough = m -> 'fall'
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
    -- Prerequisites: the prerequisite is switched on (enabled NULL) and
    -- serves the variation, whatever that variation is (LaunchDarkly's rule).
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        x := (SELECT coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'variation', (q ->> 'variation')::integer)), '[]')
              FROM jsonb_array_elements(m -> 'prereqs') q JOIN opsflags.feature_flags p ON p.flag_key = q ->> 'key');
        IF EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE (w ->> 'id')::uuid = p.prerequisite_id
                                   AND p.variation = (w ->> 'variation')::integer AND p.enabled IS NULL AND p.variants IS NULL))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE NOT EXISTS
                      (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id AND p.prerequisite_id = (w ->> 'id')::uuid)) THEN
            DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
            INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled, variation)
            SELECT DISTINCT ON ((w ->> 'id')::uuid) f.id, (w ->> 'id')::uuid, NULL, (w ->> 'variation')::integer
            FROM jsonb_array_elements(x) w;
            IF key = ANY (same) THEN
                same := array_remove(same, key);
                changed := changed || key;
            END IF;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created), 'changed', to_jsonb(changed),
                              'unchanged', to_jsonb(same),
                              'segments', jsonb_build_object('created', to_jsonb(ARRAY(SELECT unnest(s_created) ORDER BY 1)),
                                                             'changed', to_jsonb(ARRAY(SELECT unnest(s_changed) ORDER BY 1)),
                                                             'unchanged', to_jsonb(ARRAY(SELECT unnest(s_same) ORDER BY 1))));
END
$$;
COMMENT ON FUNCTION opsflags.import_launchdarkly_data(text, jsonb) IS
  'Load LaunchDarkly server-side data {"flags", "segments"} into an environment as flags, rules, segments and prerequisites; idempotent';

-------------------------------------------------------------------------------
-- launchdarkly_data: the export
-------------------------------------------------------------------------------

-- A rule's clause back in LaunchDarkly's form; NULL when it has none (a
-- clause without LaunchDarkly's semantics).
CREATE FUNCTION opsflags_internal.ld_clause_out(c jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN c ->> 'op' = 'segment_match' THEN
            jsonb_build_object('attribute', '', 'op', 'segmentMatch', 'negate', coalesce((c ->> 'negate')::boolean, false),
                'values', c -> 'values')
        WHEN c ->> 'semantics' = 'launchdarkly' AND op.k IS NOT NULL THEN
            jsonb_strip_nulls(jsonb_build_object('attribute', c ->> 'attribute', 'op', op.k, 'values', c -> 'values',
                                                 'negate', coalesce((c ->> 'negate')::boolean, false),
                                                 'contextKind', c -> 'context_kind'))
    END
    FROM (SELECT (SELECT e.key FROM jsonb_each_text(opsflags_internal.ld_operators()) e WHERE e.value = c ->> 'op') AS k) op
$$;

-- A serve back as {"variation"} or {"rollout"}; NULL when it has none.
CREATE FUNCTION opsflags_internal.ld_serve_out(s jsonb, off_variation integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN s ? 'off' AND off_variation IS NOT NULL THEN jsonb_build_object('variation', off_variation)
        WHEN s ? 'variation' THEN jsonb_build_object('variation', s -> 'variation')
        WHEN s ? 'split' THEN jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
            'variations', (SELECT jsonb_agg(jsonb_build_object('variation', e -> 'variation', 'weight', e -> 'weight')
                                            || CASE WHEN (e ->> 'untracked')::boolean THEN '{"untracked": true}'::jsonb ELSE '{}' END
                                            ORDER BY o)
                           FROM jsonb_array_elements(s -> 'split') WITH ORDINALITY a(e, o)),
            'bucketBy', s -> 'bucket_by', 'contextKind', s -> 'context_kind', 'seed', s -> 'seed', 'kind', s -> 'kind')))
    END
$$;

-- The environment's flags and segments as LaunchDarkly server-side data:
-- the flags of LaunchDarkly bucketing whose config has no part LaunchDarkly
-- lacks (user or role lists, percentage, schedule, weights, a clause
-- without its semantics), and the segments the import made.
CREATE FUNCTION opsflags.launchdarkly_data(environment text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env    text := opsflags.resolve_environment(environment);
    flags  jsonb := '{}';
    segs   jsonb := '{}';
    fl     record;
    r      jsonb;
    lr     jsonb;
    cl     jsonb;
    tgts   jsonb;
    ctgts  jsonb;
    rules  jsonb;
    fall   jsonb;
    ok     boolean;
    s      record;
    incl   jsonb;
    inclc  jsonb;
    excl   jsonb;
    exclc  jsonb;
BEGIN
    FOR fl IN
        SELECT f.id, f.flag_key, f.variations, f.salt, c.*
        FROM opsflags.feature_flags f
        JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE NOT f.archived AND f.bucketing = 'launchdarkly'
          AND c.enabled_for_users = '[]' AND c.enabled_for_roles = '[]' AND c.enabled_percentage = 0
          AND c.enable_at IS NULL AND c.disable_at IS NULL AND c.variation_weights IS NULL
          AND c.segments = '[]' AND c.serve IS NULL
          AND NOT EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                          AND (p.enabled IS NOT NULL OR p.variation IS NULL OR p.variants IS NOT NULL))
        ORDER BY f.flag_key
    LOOP
        ok := true;
        tgts := '[]';
        ctgts := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(fl.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            lr := opsflags_internal.ld_serve_out(r -> 'serve', fl.off_variation);
            IF lr IS NULL OR r ? 'rollout' OR jsonb_array_length(coalesce(r -> 'segments', '[]')) > 0 THEN
                ok := false;
                EXIT;
            END IF;
            -- Targets: user ones in targets, every one in contextTargets.
            IF r ->> 'id' ~ '^ld-target-' THEN
                IF r -> 'clauses' -> 0 ->> 'context_kind' = 'user' THEN
                    tgts := tgts || jsonb_build_array(lr || jsonb_build_object('values', r -> 'clauses' -> 0 -> 'values'));
                    ctgts := ctgts || jsonb_build_array(lr || '{"contextKind": "user", "values": []}');
                ELSE
                    ctgts := ctgts || jsonb_build_array(lr || jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                                 'values', r -> 'clauses' -> 0 -> 'values'));
                END IF;
                CONTINUE;
            END IF;
            lr := lr || jsonb_build_object('id', r ->> 'id', 'clauses', '[]'::jsonb, 'trackEvents', false);
            FOR cl IN SELECT opsflags_internal.ld_clause_out(v) FROM jsonb_array_elements(coalesce(r -> 'clauses', '[]')) WITH ORDINALITY a(v, o) ORDER BY o LOOP
                IF cl IS NULL THEN
                    ok := false;
                END IF;
                lr := jsonb_set(lr, '{clauses}', (lr -> 'clauses') || jsonb_build_array(cl));
            END LOOP;
            rules := rules || jsonb_build_array(lr);
        END LOOP;
        IF jsonb_array_length(ctgts) = jsonb_array_length(tgts) THEN
            ctgts := '[]';
        END IF;
        fall := CASE WHEN fl.fallthrough IS NULL THEN jsonb_build_object('variation', fl.on_variation)
                     ELSE opsflags_internal.ld_serve_out(fl.fallthrough, fl.off_variation) END;
        CONTINUE WHEN NOT ok OR fall IS NULL;
        flags := flags || jsonb_build_object(fl.flag_key, jsonb_strip_nulls(jsonb_build_object(
            'key', fl.flag_key, 'version', fl.version, 'on', fl.is_enabled, 'variations', fl.variations,
            'offVariation', fl.off_variation, 'fallthrough', fall, 'targets', tgts, 'contextTargets', ctgts,
            'rules', rules, 'salt', fl.salt, 'trackEvents', false, 'trackEventsFallthrough', false,
            'clientSide', false, 'deleted', false,
            'prerequisites', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', pf.flag_key, 'variation', p.variation) ORDER BY pf.flag_key), '[]')
                              FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                              WHERE p.flag_id = fl.flag_id))));
    END LOOP;
    -- Segments the import made: "ld-included-<n>" rules as included keys,
    -- "ld-excluded-<n>" ones as excluded keys, the others as rules.
    FOR s IN SELECT u.* FROM opsflags.user_segments u
             WHERE u.bucketing = 'launchdarkly' AND u.user_ids = '[]' AND u.roles = '[]'
             ORDER BY u.segment_key LOOP
        incl := '[]';
        inclc := '[]';
        excl := '[]';
        exclc := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(s.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            IF r ->> 'id' = 'ld-included-1' THEN
                incl := r -> 'clauses' -> 0 -> 'values';
            ELSIF r ->> 'id' ~ '^ld-included-' THEN
                inclc := inclc || jsonb_build_array(jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                       'values', r -> 'clauses' -> 0 -> 'values'));
            ELSIF r ->> 'id' = 'ld-excluded-1' THEN
                excl := r -> 'clauses' -> 0 -> 'values';
            ELSIF r ->> 'id' ~ '^ld-excluded-' THEN
                exclc := exclc || jsonb_build_array(jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                       'values', r -> 'clauses' -> 0 -> 'values'));
            ELSE
                rules := rules || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                    'id', r ->> 'id',
                    'clauses', (SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause_out(cc) ORDER BY co), '[]')
                                FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY b(cc, co)),
                    'weight', r -> 'rollout' -> 'weight', 'bucketBy', r -> 'rollout' -> 'bucket_by',
                    'rolloutContextKind', r -> 'rollout' -> 'context_kind')));
            END IF;
        END LOOP;
        segs := segs || jsonb_build_object(s.segment_key, jsonb_strip_nulls(jsonb_build_object(
            'key', s.segment_key, 'version', 1, 'deleted', false, 'salt', s.salt,
            'included', incl, 'excluded', excl, 'includedContexts', inclc, 'excludedContexts', exclc, 'rules', rules)));
    END LOOP;
    RETURN jsonb_build_object('flags', flags, 'segments', segs);
END
$$;
COMMENT ON FUNCTION opsflags.launchdarkly_data(text) IS
  'The environment''s flags and segments as LaunchDarkly server-side data {"flags", "segments"}, which import_launchdarkly_data reads back unchanged';

-- The import and export, and their helpers, are for opsflags_admin.
REVOKE ALL ON FUNCTION
    opsflags.import_launchdarkly_data(text, jsonb), opsflags.launchdarkly_data(text),
    opsflags_internal.ld_operators(), opsflags_internal.ld_error(text, text, text), opsflags_internal.ld_value_ok(text, jsonb),
    opsflags_internal.ld_clause(jsonb, text, text, jsonb, boolean),
    opsflags_internal.ld_serve(jsonb, jsonb, text, text), opsflags_internal.ld_strings(jsonb),
    opsflags_internal.ld_clause_out(jsonb), opsflags_internal.ld_serve_out(jsonb, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.import_launchdarkly_data(text, jsonb), opsflags.launchdarkly_data(text),
    opsflags_internal.ld_operators(), opsflags_internal.ld_error(text, text, text), opsflags_internal.ld_value_ok(text, jsonb),
    opsflags_internal.ld_clause(jsonb, text, text, jsonb, boolean),
    opsflags_internal.ld_serve(jsonb, jsonb, text, text), opsflags_internal.ld_strings(jsonb),
    opsflags_internal.ld_clause_out(jsonb), opsflags_internal.ld_serve_out(jsonb, integer)
TO opsflags_admin;
