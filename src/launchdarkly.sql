/*
 * launchdarkly.sql
 *	  The LaunchDarkly client format: flags_for_environment exports the
 *	  evaluated flags of an environment as a client document,
 *	  import_launchdarkly loads such a document through the flag API.
 */

-------------------------------------------------------------------------------
-- LaunchDarkly client format: the evaluated flags of an environment as
-- {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}},
-- and the import of such a document.
-------------------------------------------------------------------------------

-- The export evaluates each flag once, for no particular user, without
-- counting it as usage.
CREATE FUNCTION opsflags.flags_for_environment(environment text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env  text := opsflags.resolve_environment(environment);
    prev text := coalesce(current_setting('opsflags.environment', true), 'production');
    doc  jsonb;
BEGIN
    PERFORM set_config('opsflags.environment', env, true);
    SELECT coalesce(jsonb_object_agg(s.flag_key, jsonb_build_object(
               'flagVersion', s.fversion,
               'trackEvents', false,
               'value', s.x -> 'value',
               'variation', CASE WHEN (s.x ->> 'enabled')::boolean THEN s.on_variation ELSE s.off_variation END,
               'version', s.cversion) ORDER BY s.flag_key), '{}')
    INTO doc
    FROM (SELECT f.flag_key, f.version AS fversion, c.version AS cversion, c.on_variation, c.off_variation,
                 opsflags.feature_explain(f.flag_key, NULL::text, NULL::text) AS x
          FROM opsflags.feature_flags f
          JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
          WHERE NOT f.archived) s;
    PERFORM set_config('opsflags.environment', prev, true);
    RETURN doc;
END
$$;
COMMENT ON FUNCTION opsflags.flags_for_environment(text) IS
  'The environment''s flags in LaunchDarkly''s client format: {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}}';

-- A client document says what each flag serves a context without
-- attributes.  A flag that already serves that is left alone (so importing
-- the database's own export changes nothing); otherwise the smallest change
-- that makes it serve the value: the variation of the state it is in (on or
-- off), and the state only where the value needs it (true is served only
-- while on, false only while off).
CREATE FUNCTION opsflags.import_launchdarkly(environment text, document jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    prev     text := coalesce(current_setting('opsflags.environment', true), 'production');
    item     record;
    spec     jsonb;
    val      jsonb;
    vtype    text;
    f        opsflags.feature_flags;
    c        opsflags.feature_flag_configs;
    vars     jsonb;
    idx      integer;
    want     integer;
    onoff    integer[];
    x        jsonb;
    on_now   boolean;
    served   integer;
    weights  jsonb;
    created  text[] := '{}';
    changed  text[] := '{}';
    same     text[] := '{}';
BEGIN
    IF document IS NULL OR jsonb_typeof(document) <> 'object' THEN
        RAISE EXCEPTION 'a LaunchDarkly document is a JSON object of flags'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected {"flag.key": {"value": ..., "variation": 0, "version": 1, "flagVersion": 1}, ...}.';
    END IF;
    -- Validate everything before writing anything.
    FOR item IN SELECT key, value FROM jsonb_each(document) ORDER BY key LOOP
        IF NOT opsflags.is_valid_flag_key(item.key) THEN
            RAISE EXCEPTION 'invalid flag key "%" in LaunchDarkly document', item.key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(item.value) <> 'object' OR NOT item.value ? 'value'
           OR (item.value ? 'version' AND NOT opsflags_internal.is_whole_number(item.value -> 'version', 0, 2147483647))
           OR (item.value ? 'flagVersion' AND NOT opsflags_internal.is_whole_number(item.value -> 'flagVersion', 0, 2147483647))
           OR (item.value ? 'variation' AND jsonb_typeof(item.value -> 'variation') <> 'null'
               AND NOT opsflags_internal.is_whole_number(item.value -> 'variation', 0, 2147483647)) THEN
            RAISE EXCEPTION 'malformed LaunchDarkly flag "%"', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each flag is an object with a "value" and optional whole-number "variation", "version" and "flagVersion".';
        END IF;
        val := item.value -> 'value';
        vtype := CASE jsonb_typeof(val) WHEN 'boolean' THEN 'boolean' WHEN 'string' THEN 'string'
                                        WHEN 'number' THEN 'number' ELSE 'json' END;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = item.key;
        IF FOUND THEN
            IF f.archived THEN
                RAISE EXCEPTION 'feature flag "%" of the LaunchDarkly document is archived', item.key
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the document.';
            END IF;
            IF f.flag_type <> 'json' AND f.flag_type <> vtype THEN
                RAISE EXCEPTION 'LaunchDarkly flag "%" serves a % value, but the flag is of type %',
                                item.key, jsonb_typeof(val), f.flag_type
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'A flag''s variations match its type; only a json flag takes values of any type.';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(f.variations) v WHERE v = val)
               AND jsonb_array_length(f.variations) >= opsflags.max_variations() THEN
                PERFORM opsflags.flag_field_error(item.key, 'variations',
                    format('at most %s variations', opsflags.max_variations()));
            END IF;
        ELSIF (item.value ->> 'variation')::numeric >= opsflags.max_variations() THEN
            PERFORM opsflags.flag_field_error(item.key, 'variation',
                format('the index of one of at most %s variations', opsflags.max_variations()),
                item.value -> 'variation');
        END IF;
    END LOOP;

    -- Evaluate in the target environment, as the export does.
    PERFORM set_config('opsflags.environment', env, true);
    FOR item IN SELECT key, value FROM jsonb_each(document) ORDER BY key LOOP
        spec := item.value;
        val := spec -> 'value';
        want := (spec ->> 'variation')::numeric::integer;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = item.key;
        IF NOT FOUND THEN
            -- A client document has the served value and its index, not the
            -- other variations.  A boolean flag gets [true, false] (or
            -- [false, true] to keep the index); another type the value at its
            -- index and placeholders of the same type before it ("", 0 or
            -- null), so an export gives the same index.
            IF jsonb_typeof(val) = 'boolean' THEN
                vars := CASE WHEN (want = 1) = (val = 'true') THEN '[false, true]'::jsonb ELSE '[true, false]' END;
                idx := CASE WHEN vars -> 0 = val THEN 0 ELSE 1 END;
            ELSE
                idx := coalesce(want, 0);
                vars := (SELECT jsonb_agg(CASE WHEN i = idx THEN val
                                               ELSE CASE jsonb_typeof(val) WHEN 'string' THEN '""'::jsonb
                                                                           WHEN 'number' THEN '0'::jsonb
                                                                           ELSE 'null'::jsonb END END ORDER BY i)
                         FROM generate_series(0, idx) i);
            END IF;
            onoff := opsflags_internal.default_on_off(vars);
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, version)
            VALUES (item.key, item.key,
                    CASE jsonb_typeof(val) WHEN 'boolean' THEN 'boolean' WHEN 'string' THEN 'string'
                         WHEN 'number' THEN 'number' ELSE 'json' END,
                    vars, coalesce((spec ->> 'flagVersion')::numeric::integer, 1))
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, e.name, onoff[1], onoff[2] FROM opsflags.environments e
            WHERE e.name <> env;
            -- Serving the value: off on it when it is false, else on on it.
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation, version)
            VALUES (f.id, env, val <> 'false',
                    CASE WHEN val = 'false' THEN onoff[1] ELSE idx END,
                    CASE WHEN val = 'false' THEN idx WHEN idx = onoff[2] THEN onoff[1] ELSE onoff[2] END,
                    coalesce((spec ->> 'version')::numeric::integer, 1));
            created := created || item.key;
            CONTINUE;
        END IF;

        -- The variation holding the value: the document's index when it
        -- holds it, else the first that does (NULL: none yet).
        idx := NULL;
        IF f.variations -> want = val THEN
            idx := want;
        ELSE
            SELECT o::integer - 1 INTO idx FROM jsonb_array_elements(f.variations) WITH ORDINALITY v(v, o)
            WHERE v.v = val ORDER BY o LIMIT 1;
        END IF;

        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF FOUND THEN
            x := opsflags.feature_explain(item.key, NULL::text, NULL::text);
            on_now := coalesce((x ->> 'enabled')::boolean, false);
            served := CASE WHEN on_now THEN c.on_variation ELSE c.off_variation END;
            -- Already served (an index that does not hold the value says nothing).
            IF x -> 'value' = val AND (served = idx OR want IS NULL OR f.variations -> want IS DISTINCT FROM val) THEN
                same := same || item.key;
                CONTINUE;
            END IF;
        END IF;

        IF idx IS NULL THEN
            -- A new variation (a weighted split gives it no share).
            UPDATE opsflags.feature_flags ff SET variations = ff.variations || jsonb_build_array(val)
            WHERE ff.id = f.id RETURNING * INTO f;
            idx := jsonb_array_length(f.variations) - 1;
        END IF;
        onoff := opsflags_internal.default_on_off(f.variations);

        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation, version)
            VALUES (f.id, env, val <> 'false',
                    CASE WHEN val = 'false' THEN onoff[1] ELSE idx END,
                    CASE WHEN val = 'false' THEN idx WHEN idx = onoff[2] THEN onoff[1] ELSE onoff[2] END,
                    coalesce((spec ->> 'version')::numeric::integer, 1));
        ELSE
            weights := CASE WHEN c.variation_weights IS NOT NULL
                                 AND jsonb_array_length(c.variation_weights) < jsonb_array_length(f.variations)
                            THEN c.variation_weights || '[0]'::jsonb ELSE c.variation_weights END;
            IF val = 'false' OR (NOT on_now AND val <> 'true') THEN
                -- Served while off: stay (or turn) off, on this variation.
                UPDATE opsflags.feature_flag_configs fc
                SET is_enabled = CASE WHEN on_now THEN false ELSE fc.is_enabled END,
                    off_variation = idx, variation_weights = weights
                WHERE fc.flag_id = f.id AND fc.environment = env;
            ELSE
                -- Served while on: on for a context without attributes, so
                -- no schedule outside its window and no partial rollout.
                UPDATE opsflags.feature_flag_configs fc
                SET is_enabled = true, on_variation = idx, variation_weights = weights,
                    enabled_percentage = CASE WHEN fc.enabled_percentage = 100 THEN 100 ELSE 0 END,
                    enable_at = CASE WHEN fc.enable_at > statement_timestamp() THEN NULL ELSE fc.enable_at END,
                    disable_at = CASE WHEN fc.disable_at <= statement_timestamp() THEN NULL ELSE fc.disable_at END
                WHERE fc.flag_id = f.id AND fc.environment = env;
            END IF;
        END IF;
        changed := changed || item.key;
    END LOOP;
    PERFORM set_config('opsflags.environment', prev, true);

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created),
                              'changed', to_jsonb(changed), 'unchanged', to_jsonb(same));
END
$$;
COMMENT ON FUNCTION opsflags.import_launchdarkly(text, jsonb) IS
  'Load a LaunchDarkly client-format document into an environment: creates missing flags, changes a flag only where it does not serve the document''s value; idempotent';

-------------------------------------------------------------------------------
-- Privileges: export and import are for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags.flags_for_environment(text), opsflags.import_launchdarkly(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.flags_for_environment(text), opsflags.import_launchdarkly(text, jsonb)
TO opsflags_admin;
