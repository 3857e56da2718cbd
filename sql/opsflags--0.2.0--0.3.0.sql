-- opsflags 0.2.0 -> 0.3.0: correctness, error and secrecy fixes. One section per
-- capability; a function redefined here replaces its 0.2.0 definition.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.3.0'" to load this file. \quit

-- ==== begin: flags (flag API validation, flag_type-checked variations, export/import fidelity, get_feature_flag, restore and delete, flag_usage) ====

-- Limits checked when a flag is written: the number of variations a flag
-- may have, and (in check_variations) a weight total that fits the 32-bit
-- arithmetic of evaluation.
CREATE FUNCTION opsflags.max_variations()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 1000';
COMMENT ON FUNCTION opsflags.max_variations() IS
  'The most variations a flag may have (1000)';

-- The flag API's error for one bad field: 22023, naming the field and what
-- it accepts, never the whole row.
CREATE FUNCTION opsflags.flag_field_error(flag_key text, field text, expected text, given jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shown text := left(given::text, 60);
BEGIN
    IF length(given::text) > 60 THEN
        shown := shown || '...';
    END IF;
    RAISE EXCEPTION 'invalid value for field "%" of feature flag "%"', field, flag_key
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = CASE WHEN given IS NULL THEN 'Expected ' || expected || '.'
                            ELSE format('Expected %s, got %s.', expected, shown) END;
END
$$;

-- A whole number within [lo, hi] (jsonb number without a fraction).
-- PL/pgSQL, so that the cast runs only after the type check (an SQL
-- function would be inlined and its cast folded for constant arguments).
CREATE FUNCTION opsflags.is_whole_number(value jsonb, lo numeric, hi numeric)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n numeric;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) <> 'number' THEN
        RETURN false;
    END IF;
    n := (value #>> '{}')::numeric;
    RETURN n = trunc(n) AND n BETWEEN lo AND hi;
END
$$;

-- A flag's variations must be a non-empty array of at most max_variations()
-- values of its type: booleans (exactly true and false), strings, numbers;
-- a json flag takes any values.
CREATE FUNCTION opsflags.check_variation_values(flag_key text, flag_type text, variations jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   integer;
    bad record;
BEGIN
    IF flag_type IS NULL OR flag_type NOT IN ('boolean', 'string', 'number', 'json') THEN
        PERFORM opsflags.flag_field_error(flag_key, 'flag_type', 'one of boolean, string, number, json',
                                          to_jsonb(flag_type));
    END IF;
    IF variations IS NULL OR jsonb_typeof(variations) <> 'array' OR jsonb_array_length(variations) = 0 THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variations', 'a non-empty JSON array of values', variations);
    END IF;
    n := jsonb_array_length(variations);
    IF n > opsflags.max_variations() THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variations',
            format('at most %s variations', opsflags.max_variations()), to_jsonb(n) );
    END IF;
    IF flag_type = 'boolean' THEN
        IF NOT (variations = '[true, false]' OR variations = '[false, true]') THEN
            PERFORM opsflags.flag_field_error(flag_key, 'variations',
                '[true, false] or [false, true] for a boolean flag', variations);
        END IF;
    ELSIF flag_type IN ('string', 'number') THEN
        SELECT o - 1 AS i, jsonb_typeof(v) AS t INTO bad
        FROM jsonb_array_elements(variations) WITH ORDINALITY a(v, o)
        WHERE jsonb_typeof(v) <> flag_type ORDER BY o LIMIT 1;
        IF FOUND THEN
            PERFORM opsflags.flag_field_error(flag_key, 'variations',
                format('%ss for a %s flag (variation %s is %s)', flag_type, flag_type, bad.i,
                       CASE bad.t WHEN 'null' THEN 'null' WHEN 'object' THEN 'an object'
                                  WHEN 'array' THEN 'an array' ELSE 'a ' || bad.t END));
        END IF;
    END IF;
END
$$;

-- Variation indexes and weights must fit the flag's variations, the weight
-- total must fit evaluation's 32-bit arithmetic, and a flag never serves
-- false while on nor true while off, so that feature_enabled and
-- feature_value always agree.  Checked on configs and, when variations
-- change, on every config of the flag.
CREATE OR REPLACE FUNCTION opsflags.check_variations(flag_key text, variations jsonb, on_variation integer,
                                                     off_variation integer, weights jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := jsonb_array_length(variations);
    bad integer;
BEGIN
    IF on_variation < 0 OR on_variation >= n THEN
        RAISE EXCEPTION 'on variation % does not exist for flag "%"', on_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The flag has %s variations, numbered from 0.', n);
    END IF;
    IF off_variation < 0 OR off_variation >= n THEN
        RAISE EXCEPTION 'off variation % does not exist for flag "%"', off_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The flag has %s variations, numbered from 0.', n);
    END IF;
    IF variations -> on_variation = 'false' THEN
        RAISE EXCEPTION 'on variation % of flag "%" is false', on_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag that is on must not serve false: feature_enabled would say true and feature_value false.',
                  HINT = 'Turn the flag off to serve false.';
    END IF;
    IF variations -> off_variation = 'true' THEN
        RAISE EXCEPTION 'off variation % of flag "%" is true', off_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag that is off must not serve true: feature_enabled would say false and feature_value true.',
                  HINT = 'Turn the flag on to serve true.';
    END IF;
    IF weights IS NOT NULL THEN
        IF jsonb_typeof(weights) <> 'array' OR jsonb_array_length(weights) <> n
           OR jsonb_path_exists(weights, 'strict $[*] ? (@.type() != "number" || @ < 0 || @.floor() != @)', '{}', true)
           OR (SELECT sum(w::numeric) FROM jsonb_array_elements_text(weights) w) NOT BETWEEN 1 AND 2147483647 THEN
            RAISE EXCEPTION 'invalid variation weights for flag "%"', flag_key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Weights are an array of %s non-negative integers, one per variation, with a total from 1 to 2147483647.', n);
        END IF;
        SELECT o - 1 INTO bad FROM jsonb_array_elements(weights) WITH ORDINALITY w(v, o)
        WHERE (w.v #>> '{}')::numeric > 0 AND variations -> (o::integer - 1) = 'false' ORDER BY o LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'variation weights of flag "%" give variation % (false) a share', flag_key, bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A flag that is on must not serve false: feature_enabled would say true and feature_value false.',
                      HINT = 'Give false a weight of 0, or use enabled_percentage for a partial rollout.';
        END IF;
    END IF;
END
$$;

-- The on and off variations a new config starts with: on the first
-- variation that is not false, off the next one that is not true.
CREATE FUNCTION opsflags.default_on_off(variations jsonb)
RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH v AS (SELECT o::integer - 1 AS i, val FROM jsonb_array_elements(variations) WITH ORDINALITY a(val, o)),
         o AS (SELECT coalesce((SELECT min(i) FROM v WHERE val <> 'false'), 0) AS on_i)
    SELECT ARRAY[o.on_i,
                 coalesce((SELECT min(i) FROM v WHERE val <> 'true' AND i <> o.on_i),
                          (SELECT min(i) FROM v WHERE val <> 'true'), 0)]
    FROM o
$$;

-- Plain DML on feature_flags gets the same checks as the API.
CREATE OR REPLACE FUNCTION opsflags.validate_flag_variations()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.variations IS DISTINCT FROM OLD.variations
       OR NEW.flag_type IS DISTINCT FROM OLD.flag_type THEN
        PERFORM opsflags.check_variation_values(NEW.flag_key, NEW.flag_type, NEW.variations);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.variations IS DISTINCT FROM OLD.variations THEN
        PERFORM opsflags.check_variations(NEW.flag_key, NEW.variations, c.on_variation, c.off_variation,
                                          c.variation_weights)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER validate_flag_variations ON opsflags.feature_flags;
CREATE TRIGGER validate_flag_variations BEFORE INSERT OR UPDATE OF variations, flag_type ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.validate_flag_variations();

-- A config's variations are checked when it is created and when they
-- change, so that switching a flag on or off is never refused because of
-- what an older version allowed.  Segments named must exist.
CREATE OR REPLACE FUNCTION opsflags.validate_flag_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.on_variation IS DISTINCT FROM OLD.on_variation
       OR NEW.off_variation IS DISTINCT FROM OLD.off_variation
       OR NEW.variation_weights IS DISTINCT FROM OLD.variation_weights
       OR NEW.flag_id IS DISTINCT FROM OLD.flag_id THEN
        SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
        IF FOUND THEN
            PERFORM opsflags.check_variations(f.flag_key, f.variations, NEW.on_variation, NEW.off_variation,
                                              NEW.variation_weights);
        END IF;
    END IF;
    IF opsflags.is_string_array(NEW.segments) THEN
        SELECT s INTO missing FROM jsonb_array_elements_text(NEW.segments) s
        WHERE NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = s) LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'segment "%" does not exist', missing
                USING ERRCODE = 'undefined_object', HINT = 'Create it with opsflags.create_segment().';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Flags written before these checks existed are not rewritten: the upgrade
-- names those that serve false while on or true while off, or whose
-- variations do not match their type, so that an admin can fix them.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(DISTINCT format('"%s"', f.flag_key), ', ') INTO bad
    FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id
    WHERE f.variations -> c.on_variation = 'false' OR f.variations -> c.off_variation = 'true'
       OR (f.flag_type = 'boolean' AND NOT f.variations IN ('[true, false]', '[false, true]'))
       OR (f.flag_type IN ('string', 'number')
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(f.variations) v WHERE jsonb_typeof(v) <> f.flag_type));
    IF bad IS NOT NULL THEN
        RAISE WARNING 'feature flags % have variations that opsflags 0.3.0 refuses', bad
            USING DETAIL = 'They serve false while on or true while off, or their variations do not match their type; feature_enabled and feature_value may disagree for them.',
                  HINT = 'Fix them with opsflags.update_feature_flag() (variations, on_variation, off_variation, is_enabled).';
    END IF;
END
$$;

-- flag_name defaults to the key; every argument is checked before anything
-- is written.
CREATE OR REPLACE FUNCTION opsflags.create_flag(
    flag_key    text,
    flag_name   text DEFAULT NULL,
    description text DEFAULT NULL,
    flag_type   text DEFAULT 'boolean',
    variations  jsonb DEFAULT NULL,
    tags        text[] DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
    ftype  text := coalesce(flag_type, 'boolean');
    vars   jsonb := coalesce(variations, CASE WHEN coalesce(flag_type, 'boolean') IN ('boolean', 'json')
                                              THEN '[true, false]'::jsonb END);
    onoff  integer[];
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT opsflags.is_valid_flag_key(flag_key) THEN
        RAISE EXCEPTION 'invalid flag key "%"', flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag key is 1 to 100 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.';
    END IF;
    IF flag_name = '' THEN
        PERFORM opsflags.flag_field_error(flag_key, 'flag_name', 'a non-empty name (NULL names the flag by its key)');
    END IF;
    PERFORM opsflags.check_variation_values(flag_key, ftype, vars);
    IF array_position(tags, NULL) IS NOT NULL THEN
        PERFORM opsflags.flag_field_error(flag_key, 'tags', 'an array of tags without NULL elements');
    END IF;
    IF EXISTS (SELECT 1 FROM opsflags.feature_flags f WHERE f.flag_key = create_flag.flag_key) THEN
        RAISE EXCEPTION 'feature flag "%" already exists', flag_key
            USING ERRCODE = 'unique_violation',
                  HINT = 'Change it with opsflags.update_feature_flag().';
    END IF;
    onoff := opsflags.default_on_off(vars);
    PERFORM opsflags.check_variations(flag_key, vars, onoff[1], onoff[2], NULL);
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, ftype, vars, coalesce(tags, '{}'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment.
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
    SELECT new_id, e.name, onoff[1], onoff[2] FROM opsflags.environments e;
    RETURN new_id;
END
$$;

-- Every field is checked for its type and range first (22023, naming the
-- field); then the resulting config as a whole.
CREATE OR REPLACE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group,variations}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at,on_variation,off_variation,variation_weights,segments}';
    env    text;
    fid    uuid;
    f      opsflags.feature_flags;
    c      opsflags.feature_flag_configs;
    field  text;
    v      jsonb;
    vars   jsonb;
    onoff  integer[];
    t_on   timestamptz;
    t_off  timestamptz;
    on_i   integer;
    off_i  integer;
    w      jsonb;
BEGIN
    fid := opsflags.flag_id(flag_key);
    env := opsflags.resolve_environment(environment);
    IF updates IS NULL OR jsonb_typeof(updates) <> 'object' THEN
        RAISE EXCEPTION 'updates must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR field IN SELECT jsonb_object_keys(updates) ORDER BY 1 LOOP
        IF NOT (field = ANY (flag_fields) OR field = ANY (config_fields)) THEN
            RAISE EXCEPTION 'unknown field "%" in feature flag update', field
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known fields: ' || array_to_string(flag_fields || config_fields, ', ') || '.';
        END IF;
    END LOOP;

    SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.id = fid;
    vars := f.variations;
    onoff := opsflags.default_on_off(vars);
    -- The field checks, in the order of the field lists.
    FOREACH field IN ARRAY flag_fields || config_fields LOOP
        CONTINUE WHEN NOT updates ? field;
        v := updates -> field;
        CASE field
        WHEN 'flag_name' THEN
            IF jsonb_typeof(v) <> 'string' OR v = '""' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a non-empty string', v);
            END IF;
        WHEN 'description' THEN
            IF jsonb_typeof(v) NOT IN ('string', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a string or null', v);
            END IF;
        WHEN 'tags' THEN
            IF NOT opsflags.is_string_array(v) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of strings', v);
            END IF;
        WHEN 'rollout_group' THEN
            IF NOT (jsonb_typeof(v) = 'null' OR (jsonb_typeof(v) = 'string' AND v <> '""')) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a non-empty string, or null for the flag key', v);
            END IF;
        WHEN 'variations' THEN
            PERFORM opsflags.check_variation_values(flag_key, f.flag_type, v);
            vars := v;
        WHEN 'is_enabled' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'true or false', v);
            END IF;
        WHEN 'enabled_for_users', 'enabled_for_roles', 'segments' THEN
            IF NOT opsflags.is_string_array(v) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of strings', v);
            END IF;
        WHEN 'enabled_percentage' THEN
            IF NOT opsflags.is_whole_number(v, 0, 100) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a whole number from 0 to 100', v);
            END IF;
        WHEN 'enable_at', 'disable_at' THEN
            IF jsonb_typeof(v) = 'string' THEN
                BEGIN
                    PERFORM (v #>> '{}')::timestamptz;
                EXCEPTION WHEN data_exception THEN
                    PERFORM opsflags.flag_field_error(flag_key, field, 'a timestamp with time zone such as "2030-01-01T00:00:00Z", or null', v);
                END;
            ELSIF jsonb_typeof(v) <> 'null' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a timestamp with time zone such as "2030-01-01T00:00:00Z", or null', v);
            END IF;
        WHEN 'on_variation', 'off_variation' THEN
            IF NOT opsflags.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'the index of a variation, a whole number from 0', v);
            END IF;
        WHEN 'variation_weights' THEN
            IF jsonb_typeof(v) NOT IN ('array', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an array of non-negative whole numbers, one per variation, or null for no split', v);
            END IF;
        END CASE;
    END LOOP;

    -- The config as it will be: the schedule and the variations together.
    IF updates ?| config_fields THEN
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = fid AND fc.environment = env;
        IF NOT FOUND THEN
            c.on_variation := onoff[1];
            c.off_variation := onoff[2];
        END IF;
        t_on := CASE WHEN updates ? 'enable_at' THEN (updates ->> 'enable_at')::timestamptz ELSE c.enable_at END;
        t_off := CASE WHEN updates ? 'disable_at' THEN (updates ->> 'disable_at')::timestamptz ELSE c.disable_at END;
        IF t_on >= t_off THEN
            PERFORM opsflags.flag_field_error(flag_key, CASE WHEN updates ? 'enable_at' THEN 'enable_at' ELSE 'disable_at' END,
                format('enable_at (%s) before disable_at (%s)', t_on, t_off));
        END IF;
        on_i := CASE WHEN updates ? 'on_variation' THEN (updates ->> 'on_variation')::numeric::integer ELSE c.on_variation END;
        off_i := CASE WHEN updates ? 'off_variation' THEN (updates ->> 'off_variation')::numeric::integer ELSE c.off_variation END;
        w := CASE WHEN updates ? 'variation_weights' THEN nullif(updates -> 'variation_weights', 'null') ELSE c.variation_weights END;
        IF updates ?| '{variations,on_variation,off_variation,variation_weights}' OR c.flag_id IS NULL THEN
            PERFORM opsflags.check_variations(flag_key, vars, on_i, off_i, w);
        END IF;
    END IF;

    IF updates ?| flag_fields THEN
        UPDATE opsflags.feature_flags ff SET
            flag_name     = CASE WHEN updates ? 'flag_name' THEN updates->>'flag_name' ELSE ff.flag_name END,
            description   = CASE WHEN updates ? 'description' THEN updates->>'description' ELSE ff.description END,
            tags          = CASE WHEN updates ? 'tags'
                                 THEN ARRAY(SELECT jsonb_array_elements_text(updates->'tags'))
                                 ELSE ff.tags END,
            rollout_group = CASE WHEN updates ? 'rollout_group' THEN updates->>'rollout_group' ELSE ff.rollout_group END,
            variations    = CASE WHEN updates ? 'variations' THEN updates->'variations' ELSE ff.variations END
        WHERE ff.id = fid;
    END IF;

    IF updates ?| config_fields THEN
        INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
        SELECT fid, env, d[1], d[2] FROM opsflags.default_on_off(vars) d
        ON CONFLICT DO NOTHING;
        UPDATE opsflags.feature_flag_configs fc SET
            is_enabled         = CASE WHEN updates ? 'is_enabled' THEN (updates->'is_enabled')::boolean ELSE fc.is_enabled END,
            enabled_for_users  = CASE WHEN updates ? 'enabled_for_users' THEN updates->'enabled_for_users' ELSE fc.enabled_for_users END,
            enabled_for_roles  = CASE WHEN updates ? 'enabled_for_roles' THEN updates->'enabled_for_roles' ELSE fc.enabled_for_roles END,
            enabled_percentage = CASE WHEN updates ? 'enabled_percentage' THEN (updates->>'enabled_percentage')::numeric::integer ELSE fc.enabled_percentage END,
            enable_at          = t_on,
            disable_at         = t_off,
            on_variation       = on_i,
            off_variation      = off_i,
            variation_weights  = w,
            segments           = CASE WHEN updates ? 'segments' THEN updates->'segments' ELSE fc.segments END,
            updated_by         = session_user
        WHERE fc.flag_id = fid AND fc.environment = env;
    END IF;
END
$$;

-- Archived flags can be brought back, and deleted for good.
CREATE FUNCTION opsflags.restore_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.feature_flags f SET archived = false
    WHERE f.id = opsflags.flag_id(restore_flag.flag_key) AND f.archived;
END
$$;
COMMENT ON FUNCTION opsflags.restore_flag(text) IS
  'Bring an archived flag back: it evaluates by its configs again';

CREATE FUNCTION opsflags.delete_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f          opsflags.feature_flags;
    dependents text;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.id = opsflags.flag_id(delete_flag.flag_key) FOR UPDATE;
    IF NOT f.archived THEN
        RAISE EXCEPTION 'feature flag "%" is not archived', flag_key
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Only archived flags can be deleted.',
                  HINT = 'Archive it first with opsflags.archive_flag().';
    END IF;
    SELECT string_agg(format('"%s"', d.flag_key), ', ' ORDER BY d.flag_key) INTO dependents
    FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags d ON d.id = p.flag_id
    WHERE p.prerequisite_id = f.id;
    IF dependents IS NOT NULL THEN
        RAISE EXCEPTION 'feature flag "%" is a prerequisite of other flags', flag_key
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Flags that name it as a prerequisite: %s.', dependents),
                  HINT = 'Remove those prerequisites with opsflags.remove_prerequisite() first.';
    END IF;
    -- Configs and prerequisites first, each audited and announced while the
    -- flag (and so its key) still exists; then the flag.
    DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
    DELETE FROM opsflags.feature_flag_configs c WHERE c.flag_id = f.id;
    DELETE FROM opsflags.feature_flags ff WHERE ff.id = f.id;
END
$$;
COMMENT ON FUNCTION opsflags.delete_flag(text) IS
  'Delete an archived flag with its configs and prerequisites; refused while other flags name it as a prerequisite';

-- Everything that decides a flag's answers in one environment.
CREATE OR REPLACE FUNCTION opsflags.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
        'flag_type', f.flag_type, 'variations', f.variations, 'tags', to_jsonb(f.tags),
        'rollout_group', f.rollout_group, 'variant_algorithm', f.variant_algorithm,
        'archived', f.archived, 'version', f.version,
        'created_at', f.created_at, 'created_by', f.created_by, 'updated_at', f.updated_at,
        'prerequisites', coalesce((
            SELECT jsonb_agg(jsonb_build_object('key', pf.flag_key, 'variation', p.variation,
                                                'value', pf.variations -> p.variation) ORDER BY pf.flag_key)
            FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
            WHERE p.flag_id = f.id), '[]'),
        'environment', environment,
        'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
            'is_enabled', c.is_enabled, 'enabled_for_users', c.enabled_for_users,
            'enabled_for_roles', c.enabled_for_roles, 'segments', c.segments,
            'enabled_percentage', c.enabled_percentage,
            'enable_at', c.enable_at, 'disable_at', c.disable_at,
            'on_variation', c.on_variation, 'off_variation', c.off_variation,
            'variation_weights', c.variation_weights, 'version', c.version,
            'updated_at', c.updated_at, 'updated_by', c.updated_by) END)
$$;

-- The export evaluates each flag once, for no particular user, without
-- counting it as usage.
CREATE OR REPLACE FUNCTION opsflags.flags_for_environment(environment text)
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

-- A client document says what each flag serves a context without
-- attributes.  A flag that already serves that is left alone (so importing
-- the database's own export changes nothing); otherwise the smallest change
-- that makes it serve the value: the variation of the state it is in (on or
-- off), and the state only where the value needs it (true is served only
-- while on, false only while off).
CREATE OR REPLACE FUNCTION opsflags.import_launchdarkly(environment text, document jsonb)
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
           OR (item.value ? 'version' AND NOT opsflags.is_whole_number(item.value -> 'version', 0, 2147483647))
           OR (item.value ? 'flagVersion' AND NOT opsflags.is_whole_number(item.value -> 'flagVersion', 0, 2147483647))
           OR (item.value ? 'variation' AND jsonb_typeof(item.value -> 'variation') <> 'null'
               AND NOT opsflags.is_whole_number(item.value -> 'variation', 0, 2147483647)) THEN
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
            onoff := opsflags.default_on_off(vars);
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
        onoff := opsflags.default_on_off(f.variations);

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

-- Every flag, archived ones too.
CREATE OR REPLACE VIEW opsflags.flag_usage AS
SELECT f.flag_key,
       coalesce(u.true_count, 0) AS true_count,
       coalesce(u.false_count, 0) AS false_count,
       u.last_evaluated,
       u.last_evaluated IS NULL
         OR u.last_evaluated < now() - make_interval(days =>
              coalesce((opsflags.config_get('flags.stale_after_days', 'all') #>> '{}')::integer, 30)) AS stale,
       f.archived
FROM opsflags.feature_flags f
LEFT JOIN opsflags.flag_usage_counts() u ON u.flag_key = f.flag_key;
COMMENT ON VIEW opsflags.flag_usage IS
  'Evaluations per flag, archived ones included (true, false) and the last one, since the server started; stale: none for config flags.stale_after_days (30) days';

REVOKE ALL ON FUNCTION
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags.is_whole_number(jsonb, numeric, numeric),
    opsflags.check_variation_values(text, text, jsonb), opsflags.default_on_off(jsonb),
    opsflags.restore_flag(text), opsflags.delete_flag(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags.is_whole_number(jsonb, numeric, numeric),
    opsflags.check_variation_values(text, text, jsonb), opsflags.default_on_off(jsonb),
    opsflags.restore_flag(text), opsflags.delete_flag(text)
TO opsflags_admin;

-- ==== end: flags ====


-- ==== begin: evaluation (evaluation: environments, guard environment, evaluation-path limits) ====

COMMENT ON FUNCTION opsflags.feature_guard() IS
  'Trigger: EXECUTE FUNCTION opsflags.feature_guard(''flag.key'' [, ''environment'']) refuses writes while the flag is off for session_user/current_user in that environment, else in opsflags.guard_environment, else in the server''s opsflags.environment';

-- The most prerequisites one flag may reach, directly or through others:
-- bounds the work of one evaluation (each is evaluated once).
CREATE FUNCTION opsflags.max_prerequisite_count()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 100';

-- Refuse cycles, chains deeper than max_prerequisite_depth(), flags that
-- would reach more than max_prerequisite_count() prerequisites, and
-- variations the prerequisite does not have.
CREATE OR REPLACE FUNCTION opsflags.validate_prerequisite()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- recursive estimates are far above the rows these queries see
AS $$
DECLARE
    cycle text;
    depth integer;
    nvar  integer;
    worst_key text;
    worst bigint;
BEGIN
    -- Every query below keeps sets (UNION), not paths: its work grows with
    -- the flags and prerequisites involved, not with the number of paths
    -- through a graph of shared prerequisites.

    -- A cycle: the flag is reachable from its new prerequisite.  Then name
    -- one: walk back from the flag to the prerequisite along one edge each.
    WITH RECURSIVE reach(id, parent) AS (
        SELECT NEW.prerequisite_id, NULL::uuid
        UNION
        SELECT p.prerequisite_id, p.flag_id
        FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
        WHERE r.id <> NEW.flag_id
    ), back(id, path, n) AS (
        SELECT NEW.flag_id, ARRAY[NEW.flag_id], 1
        WHERE EXISTS (SELECT FROM reach WHERE id = NEW.flag_id)
        UNION ALL
        SELECT (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL),
               (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL) || b.path,
               b.n + 1
        FROM back b
        WHERE b.id <> NEW.prerequisite_id AND b.n <= (SELECT count(*) FROM reach)
    )
    SELECT (SELECT string_agg(f.flag_key, ' -> ' ORDER BY o)
            FROM unnest(NEW.flag_id || b.path) WITH ORDINALITY u(id, o) JOIN opsflags.feature_flags f ON f.id = u.id)
    INTO cycle FROM back b WHERE b.id = NEW.prerequisite_id LIMIT 1;
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION 'prerequisite would create a cycle: %', cycle
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Depth of the chains through the new edge: below the flag plus above it.
    WITH RECURSIVE down(id, d) AS (
        SELECT NEW.prerequisite_id, 1
        UNION
        SELECT p.prerequisite_id, down.d + 1 FROM down JOIN opsflags.flag_prerequisites p ON p.flag_id = down.id
        WHERE down.d <= opsflags.max_prerequisite_depth()
    ), up(id, d) AS (
        SELECT NEW.flag_id, 0
        UNION
        SELECT p.flag_id, up.d + 1 FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
        WHERE up.d <= opsflags.max_prerequisite_depth()
    )
    SELECT (SELECT max(d) FROM down) + (SELECT max(d) FROM up) INTO depth;
    IF depth > opsflags.max_prerequisite_depth() THEN
        RAISE EXCEPTION 'prerequisite chain would be % deep', depth
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Chains of prerequisites are at most %s deep.', opsflags.max_prerequisite_depth());
    END IF;

    -- Prerequisites reachable, with the new edge, from the flag and from
    -- every flag that requires it: each counted once.
    WITH RECURSIVE up(id) AS (
        SELECT NEW.flag_id
        UNION
        SELECT p.flag_id FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
    ), reach(root, id) AS (
        SELECT up.id, p.prerequisite_id FROM up JOIN opsflags.flag_prerequisites p ON p.flag_id = up.id
        UNION
        SELECT up.id, NEW.prerequisite_id FROM up
        UNION
        SELECT r.root, p.prerequisite_id FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
    )
    SELECT f.flag_key, n INTO worst_key, worst
    FROM (SELECT r.root, count(*) AS n FROM reach r GROUP BY r.root) c
    JOIN opsflags.feature_flags f ON f.id = c.root
    ORDER BY n DESC, f.flag_key LIMIT 1;
    IF worst > opsflags.max_prerequisite_count() THEN
        RAISE EXCEPTION 'prerequisite would make flag "%" depend on % prerequisites', worst_key, worst
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A flag depends on at most %s prerequisites, directly or through other prerequisites.',
                                  opsflags.max_prerequisite_count());
    END IF;

    IF NEW.variation IS NOT NULL THEN
        SELECT jsonb_array_length(f.variations) INTO nvar FROM opsflags.feature_flags f WHERE f.id = NEW.prerequisite_id;
        IF NEW.variation >= nvar THEN
            RAISE EXCEPTION 'variation % does not exist for the prerequisite flag', NEW.variation
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The flag has %s variations, numbered from 0.', nvar);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- ==== end: evaluation ====


-- ==== begin: deployments and health (deployments (failed, rollback of commit_sha), system_health columns) ====

-- Deployments have the statuses success, failed and rolled_back (0.2 called
-- a live deployment "deployed": those rows become "success").  The rewrite is
-- a migration, not a change anyone made: no audit row, no NOTIFY.
ALTER TABLE opsflags.deployment_history DROP CONSTRAINT status_known;
ALTER TABLE opsflags.deployment_history DISABLE TRIGGER USER;
UPDATE opsflags.deployment_history SET status = 'success' WHERE status = 'deployed';
ALTER TABLE opsflags.deployment_history ENABLE TRIGGER USER;
ALTER TABLE opsflags.deployment_history ALTER COLUMN status SET DEFAULT 'success',
    ADD CONSTRAINT status_known CHECK (status IN ('success', 'failed', 'rolled_back'));
COMMENT ON COLUMN opsflags.deployment_history.status IS
  'success (went live), failed (never went live: app_version unchanged) or rolled_back';

CREATE OR REPLACE FUNCTION opsflags.notify_deployment()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'INSERT' AND NEW.status = 'failed' THEN 'deployment.failed'
                      WHEN TG_OP = 'INSERT' THEN 'deployment.recorded'
                      WHEN NEW.status = 'rolled_back' AND OLD.status IS DISTINCT FROM 'rolled_back'
                          THEN 'deployment.rolled_back'
                      ELSE 'deployment.updated' END,
        'key', NEW.version, 'environment', NEW.environment, 'version', NEW.version,
        'id', NEW.id, 'status', NEW.status)::text);
    RETURN NULL;
END
$$;

-- A status argument: a failed deployment is recorded without touching
-- app_version or commit_sha.  (A new argument is a new signature: the old
-- one goes, or every call with defaults would be ambiguous.)
DROP FUNCTION opsflags.record_deployment(text, text, text, text, text, text);
CREATE FUNCTION opsflags.record_deployment(
    version         text,
    environment     text,
    changelog       text DEFAULT NULL,
    deployed_by     text DEFAULT session_user,
    migration_notes text DEFAULT NULL,
    commit_sha      text DEFAULT NULL,
    status          text DEFAULT 'success')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    IF version IS NULL OR version !~ '\S' THEN
        RAISE EXCEPTION 'deployment version must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF environment IS NULL THEN
        RAISE EXCEPTION 'deployment environment must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF status IS NULL OR status NOT IN ('success', 'failed') THEN
        RAISE EXCEPTION 'invalid deployment status "%"', coalesce(status, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A deployment is recorded as success or failed; record_rollback() marks one rolled_back.';
    END IF;
    PERFORM opsflags.resolve_environment(environment);
    INSERT INTO opsflags.deployment_history AS d
        (version, environment, changelog, deployed_by, migration_notes, commit_sha, status)
    VALUES (version, environment, changelog, coalesce(deployed_by, session_user), migration_notes, commit_sha,
            record_deployment.status)
    RETURNING d.id INTO new_id;
    IF record_deployment.status = 'failed' THEN
        -- It never went live: the running version and commit stay.
        RETURN new_id;
    END IF;
    PERFORM opsflags.config_set('app_version', to_jsonb(version), coalesce(deployed_by, session_user),
                                environment, 'Deployed version (record_deployment)');
    -- JSON null when not given: the previous deployment's commit no longer applies.
    PERFORM opsflags.config_set('commit_sha', coalesce(to_jsonb(commit_sha), 'null'::jsonb),
                                coalesce(deployed_by, session_user), environment,
                                'Deployed commit (record_deployment)');
    RETURN new_id;
END
$$;

-- The commit goes back with the version: the target version's own commit
-- (its newest deployment here that went live), else none.
CREATE OR REPLACE FUNCTION opsflags.record_rollback(deployment_id uuid, target_version text, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d          opsflags.deployment_history;
    target_sha text;
BEGIN
    IF deployment_id IS NULL THEN
        RAISE EXCEPTION 'deployment id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF target_version IS NULL OR target_version !~ '\S' THEN
        RAISE EXCEPTION 'rollback target version must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO d FROM opsflags.deployment_history h WHERE h.id = deployment_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deployment % does not exist', deployment_id USING ERRCODE = 'undefined_object';
    END IF;
    IF d.status = 'rolled_back' THEN
        RAISE EXCEPTION 'deployment of version "%" to % is already rolled back', d.version, d.environment
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It was rolled back to "%s" at %s.', d.rollback_to, d.rollback_at);
    END IF;
    IF d.status = 'failed' THEN
        RAISE EXCEPTION 'deployment of version "%" to % failed and cannot be rolled back', d.version, d.environment
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A failed deployment never went live; app_version was not changed by it.';
    END IF;
    SELECT h.commit_sha INTO target_sha
    FROM opsflags.deployment_history h
    WHERE h.environment = d.environment AND h.version = target_version AND h.id <> d.id
      AND h.status <> 'failed'
    ORDER BY h.deployed_at DESC, h.id
    LIMIT 1;
    UPDATE opsflags.deployment_history h
    SET status = 'rolled_back', rollback_to = target_version, rollback_at = now(), rollback_reason = reason
    WHERE h.id = deployment_id;
    PERFORM opsflags.config_set('app_version', to_jsonb(target_version), session_user, d.environment,
                                'Deployed version (record_rollback)');
    PERFORM opsflags.config_set('commit_sha', coalesce(to_jsonb(target_sha), 'null'::jsonb), session_user,
                                d.environment, 'Deployed commit (record_rollback)');
END
$$;

-- No row (not one row of NULLs) when the environment has no live deployment.
DROP FUNCTION opsflags.get_latest_deployment(text);
CREATE FUNCTION opsflags.get_latest_deployment(environment text)
RETURNS SETOF opsflags.deployment_history
LANGUAGE sql STABLE ROWS 1
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM opsflags.deployment_history h
    WHERE h.environment = get_latest_deployment.environment AND h.status = 'success'
    ORDER BY h.deployed_at DESC, h.id
    LIMIT 1
$$;
COMMENT ON FUNCTION opsflags.get_latest_deployment(text) IS
  'The environment''s newest deployment that went live and was not rolled back; no row if there is none';

REVOKE ALL ON FUNCTION
    opsflags.record_deployment(text, text, text, text, text, text, text),
    opsflags.get_latest_deployment(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.record_deployment(text, text, text, text, text, text, text),
    opsflags.get_latest_deployment(text)
TO opsflags_admin;

-- system_health under the names of its specification.  The 0.2 columns stay
-- (the sampler and existing queries write and read them); these follow them,
-- so every writer fills both.
ALTER TABLE opsflags.system_health
    ADD COLUMN "timestamp" timestamptz GENERATED ALWAYS AS (recorded_at) STORED,
    ADD COLUMN db_connections_active bigint GENERATED ALWAYS AS (active_connections) STORED,
    ADD COLUMN db_connections_idle bigint GENERATED ALWAYS AS (idle_connections) STORED,
    ADD COLUMN db_size_mb numeric GENERATED ALWAYS AS (round(database_size_bytes / 1048576.0, 2)) STORED,
    ADD COLUMN slow_queries_count bigint GENERATED ALWAYS AS (slow_query_count) STORED;
COMMENT ON TABLE opsflags.system_health IS
  'Health samples: one row per sampler cycle, take_sample() and check_system_health() call';
COMMENT ON COLUMN opsflags.system_health."timestamp" IS 'Same as recorded_at';
COMMENT ON COLUMN opsflags.system_health.db_connections_active IS 'Same as active_connections';
COMMENT ON COLUMN opsflags.system_health.db_connections_idle IS 'Same as idle_connections';
COMMENT ON COLUMN opsflags.system_health.db_size_mb IS 'database_size_bytes in MiB, 2 decimals';
COMMENT ON COLUMN opsflags.system_health.slow_queries_count IS 'Same as slow_query_count';

-- The samples the status page charts: every sample while there are at most
-- max_points in the window (so the first minutes already draw a line),
-- otherwise the window in equal buckets (max of counts, mean of the rate).
CREATE FUNCTION opsflags.health_samples(since interval DEFAULT '24 hours', max_points integer DEFAULT 288)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n      bigint;
    bucket interval;
    doc    jsonb;
BEGIN
    IF since IS NULL OR since <= interval '0' THEN
        RAISE EXCEPTION 'health_samples window must be a positive interval' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_points IS NULL OR max_points < 2 THEN
        RAISE EXCEPTION 'health_samples max_points must be at least 2' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT count(*) INTO n FROM opsflags.system_health h WHERE h.recorded_at > now() - since;
    IF n <= max_points THEN
        SELECT coalesce(jsonb_agg(jsonb_build_object('t', h.recorded_at, 'connections', h.total_connections,
                   'active', h.active_connections, 'cache_hit_rate', h.cache_hit_rate,
                   'errors', h.errors_last_hour, 'database_size', h.database_size_bytes)
                   ORDER BY h.recorded_at, h.id), '[]')
        INTO doc
        FROM opsflags.system_health h WHERE h.recorded_at > now() - since;
        RETURN doc;
    END IF;
    -- whole seconds, at least one; a window not aligned to the buckets
    -- touches one more than it spans
    bucket := make_interval(secs => greatest(ceil(extract(epoch FROM since) / (max_points - 1)), 1));
    SELECT coalesce(jsonb_agg(jsonb_build_object('t', b.t, 'connections', b.connections, 'active', b.active,
               'cache_hit_rate', b.cache_hit_rate, 'errors', b.errors, 'database_size', b.database_size)
               ORDER BY b.t), '[]')
    INTO doc
    FROM (SELECT date_bin(bucket, h.recorded_at, timestamptz '2000-01-01') AS t,
                 max(h.total_connections) AS connections, max(h.active_connections) AS active,
                 avg(h.cache_hit_rate) AS cache_hit_rate, max(h.errors_last_hour) AS errors,
                 max(h.database_size_bytes) AS database_size
          FROM opsflags.system_health h WHERE h.recorded_at > now() - since
          GROUP BY 1) b;
    RETURN doc;
END
$$;
COMMENT ON FUNCTION opsflags.health_samples(interval, integer) IS
  'Samples of the window for charts: each one while there are at most max_points, else max_points time buckets';
REVOKE ALL ON FUNCTION opsflags.health_samples(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.health_samples(interval, integer) TO opsflags_admin, pg_monitor;

-- ==== end: deployments and health ====


-- ==== begin: secrets (configuration secrets: sensitivity per key, queue query) ====

-- Errors of the configuration code go through config_raise(), which keeps
-- the statement (and the context) out of the server log: a statement that
-- writes a configuration row may hold a secret.  PL/pgSQL's RAISE cannot.
CREATE FUNCTION opsflags.config_raise(sqlstate text, message text, detail text DEFAULT NULL,
                                      hint text DEFAULT NULL)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_config_raise';
COMMENT ON FUNCTION opsflags.config_raise(text, text, text, text) IS
  'Raise an error of the configuration code; the server log gets neither the statement nor the context';

-- Sensitivity belongs to the key: a key sensitive in one environment is
-- sensitive in all.  A new row of a sensitive key is sensitive; a row that
-- becomes sensitive makes every row of its key sensitive (trigger
-- spread_config_sensitivity); a key becomes public only when all its rows
-- are made public in one statement (trigger check_config_sensitivity).
-- Rows written before this rule: every row of a key with a sensitive row
-- becomes sensitive (their audit rows are redacted).
UPDATE opsflags.app_config c SET is_sensitive = true
WHERE NOT c.is_sensitive
  AND EXISTS (SELECT FROM opsflags.app_config s WHERE s.config_key = c.config_key AND s.is_sensitive);

CREATE OR REPLACE FUNCTION opsflags.validate_config_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Every rule is checked here, before the row is written, so that no
    -- constraint reports the failing row (its value); errors name the key.
    IF NEW.config_key IS NULL THEN
        PERFORM opsflags.config_raise('22004', 'configuration key must not be null');
    END IF;
    IF NOT opsflags.is_valid_config_key(NEW.config_key) THEN
        PERFORM opsflags.config_raise('22023', format('invalid configuration key "%s"', NEW.config_key),
            'A configuration key is 1 to 200 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.');
    END IF;
    IF NEW.environment IS NULL THEN
        PERFORM opsflags.config_raise('22004',
            format('environment of configuration key "%s" must not be null', NEW.config_key),
            NULL, 'Use ''all'' for every environment.');
    END IF;
    IF NEW.environment <> 'all'
       AND NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = NEW.environment) THEN
        PERFORM opsflags.config_raise('42704', format('environment "%s" does not exist', NEW.environment),
            NULL, 'Environments are rows of opsflags.environments, or ''all''.');
    END IF;
    IF NEW.config_value IS NULL THEN
        PERFORM opsflags.config_raise('22004',
            format('value of configuration key "%s" must not be null', NEW.config_key),
            NULL, 'Store the JSON value null (''null''::jsonb) instead.');
    END IF;
    -- One writer per key at a time, until commit: the sensitivity of the
    -- key's other rows, read below and spread after the write, must not
    -- change underneath (two sessions writing two environments of a key).
    PERFORM pg_advisory_xact_lock(hashtext('opsflags.app_config'), hashtext(NEW.config_key));
    -- Moving a row onto another's key and environment (an INSERT's duplicate
    -- is left to the unique constraint, whose report holds no value, so that
    -- INSERT ... ON CONFLICT keeps working).
    IF TG_OP = 'UPDATE' AND (NEW.config_key, NEW.environment) IS DISTINCT FROM (OLD.config_key, OLD.environment)
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = NEW.config_key AND c.environment = NEW.environment) THEN
        PERFORM opsflags.config_raise('23505',
            'duplicate key value violates unique constraint "app_config_key_environment_key"',
            format('Key (config_key, environment)=(%s, %s) already exists.', NEW.config_key, NEW.environment));
    END IF;
    NEW.id := coalesce(NEW.id, gen_random_uuid());
    -- A row of a key that is sensitive in another environment is sensitive,
    -- unless this very change makes a sensitive row public (allowed only for
    -- all rows of the key at once: check_config_sensitivity).
    IF TG_OP = 'UPDATE' AND NEW.is_sensitive IS NULL THEN
        NEW.is_sensitive := OLD.is_sensitive;
    END IF;
    IF NOT coalesce(NEW.is_sensitive, false)
       AND NOT (TG_OP = 'UPDATE' AND OLD.is_sensitive AND NEW.is_sensitive IS NOT NULL)
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = NEW.config_key AND c.is_sensitive
                     AND (TG_OP = 'INSERT' OR c.id <> OLD.id)) THEN
        NEW.is_sensitive := true;
    END IF;
    NEW.is_sensitive := coalesce(NEW.is_sensitive, false);
    -- A write that does not say who: opsflags.updated_by, else the session user.
    IF NEW.updated_by IS NULL OR (TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by) THEN
        NEW.updated_by := coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);
    END IF;
    -- The time of the change itself, not of the transaction's start.
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := coalesce(NEW.created_at, clock_timestamp());
        NEW.updated_at := clock_timestamp();
    ELSE
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

-- A row that became sensitive (inserted so, marked, or moved to another
-- key) makes the other rows of its key sensitive.
CREATE FUNCTION opsflags.spread_config_sensitivity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.is_sensitive
       AND (TG_OP = 'INSERT' OR NOT OLD.is_sensitive OR NEW.config_key <> OLD.config_key) THEN
        UPDATE opsflags.app_config c SET is_sensitive = true
        WHERE c.config_key = NEW.config_key AND NOT c.is_sensitive;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER spread_config_sensitivity
    AFTER INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.spread_config_sensitivity();

-- After each statement: no key written by it is sensitive in one
-- environment and public in another (making one environment's row public
-- while the key stays sensitive elsewhere is refused).
CREATE FUNCTION opsflags.check_config_sensitivity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    SELECT n.config_key INTO k
    FROM (SELECT DISTINCT w.config_key FROM written w) n
    WHERE EXISTS (SELECT 1 FROM opsflags.app_config c WHERE c.config_key = n.config_key AND c.is_sensitive)
      AND EXISTS (SELECT 1 FROM opsflags.app_config c WHERE c.config_key = n.config_key AND NOT c.is_sensitive)
    ORDER BY n.config_key
    LIMIT 1;
    IF FOUND THEN
        PERFORM opsflags.config_raise('22023',
            format('configuration key "%s" cannot be public in one environment and sensitive in another', k),
            'A key that is sensitive in one environment is sensitive in all.',
            'To make the key public, set is_sensitive to false on all its rows in one statement.');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER check_config_sensitivity_insert
    AFTER INSERT ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.check_config_sensitivity();
CREATE TRIGGER check_config_sensitivity_update
    AFTER UPDATE ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.check_config_sensitivity();

CREATE OR REPLACE FUNCTION opsflags.config_set(
    config_key   text,
    config_value jsonb,
    updated_by   text DEFAULT session_user,
    environment  text DEFAULT 'all',
    description  text DEFAULT NULL,
    is_sensitive boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    writer text := coalesce(config_set.updated_by, session_user);
    previous text := coalesce(current_setting('opsflags.updated_by', true), '');
BEGIN
    -- Validation happens in validate_config_row(), for this and plain DML;
    -- its errors, and this one, leave the statement (the value) out of the log.
    -- The key's lock (see validate_config_row) before its rows are read.
    PERFORM pg_advisory_xact_lock(hashtext('opsflags.app_config'), hashtext(config_set.config_key));
    IF config_set.is_sensitive IS FALSE
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = config_set.config_key AND c.is_sensitive
                     AND c.environment IS DISTINCT FROM config_set.environment) THEN
        PERFORM opsflags.config_raise('22023',
            format('configuration key "%s" is sensitive in another environment', config_set.config_key),
            'A key that is sensitive in one environment is sensitive in all.',
            'Leave is_sensitive NULL, or make the key public by setting is_sensitive to false on all its rows in one statement.');
    END IF;
    -- The writer named here is recorded even when it equals the previous one.
    PERFORM set_config('opsflags.updated_by', writer, true);
    -- is_sensitive NULL: a new row takes the key's sensitivity, a row keeps its own.
    INSERT INTO opsflags.app_config AS c
        (config_key, config_value, environment, description, is_sensitive, updated_by)
    VALUES (config_key, config_value, environment, description, is_sensitive, writer)
    ON CONFLICT ON CONSTRAINT app_config_key_environment_key DO UPDATE SET
        config_value = EXCLUDED.config_value,
        description  = coalesce(config_set.description, c.description),
        is_sensitive = coalesce(config_set.is_sensitive, c.is_sensitive),
        updated_by   = EXCLUDED.updated_by;
    PERFORM set_config('opsflags.updated_by', previous, true);
END
$$;
COMMENT ON FUNCTION opsflags.config_set(text, jsonb, text, text, text, boolean) IS
  'Create or replace a configuration value; is_sensitive NULL keeps the key''s sensitivity (true makes the key sensitive in every environment)';

-- Listing for anyone: values of a key sensitive in any environment are redacted.
CREATE OR REPLACE FUNCTION opsflags.config_all(environment text DEFAULT NULL)
RETURNS TABLE (config_key text, environment text, config_value jsonb, description text,
               is_sensitive boolean, version integer, updated_at timestamptz, updated_by text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_key, c.environment,
           CASE WHEN s.sensitive THEN '"[REDACTED]"'::jsonb ELSE c.config_value END,
           c.description, s.sensitive, c.version, c.updated_at, c.updated_by
    FROM opsflags.app_config c
    CROSS JOIN LATERAL (SELECT c.is_sensitive OR EXISTS (SELECT 1 FROM opsflags.app_config o
                                                         WHERE o.config_key = c.config_key AND o.is_sensitive)
                        AS sensitive) s
    WHERE config_all.environment IS NULL OR c.environment IN (config_all.environment, 'all')
    ORDER BY c.config_key, c.environment = 'all', c.environment
$$;

REVOKE ALL ON FUNCTION
    opsflags.config_raise(text, text, text, text),
    opsflags.spread_config_sensitivity(), opsflags.check_config_sensitivity()
FROM PUBLIC;
-- The triggers run as the writer, who must be able to raise their errors.
GRANT EXECUTE ON FUNCTION opsflags.config_raise(text, text, text, text) TO opsflags_admin;


-- health.queue_query for the sampler: run as health_status() runs it.
CREATE FUNCTION opsflags.queue_depth(log_failure boolean DEFAULT false,
                                     OUT pending bigint, OUT failed bigint, OUT error text)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_queue_depth';
COMMENT ON FUNCTION opsflags.queue_depth(boolean) IS
  'health.queue_query''s pending and failed counts, or its error (never a sensitive query''s); log_failure: a WARNING once per change of the error';
REVOKE ALL ON FUNCTION opsflags.queue_depth(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.queue_depth(boolean) TO opsflags_admin;

-- take_sample(): the queue query through queue_depth() (the block after
-- "The admin's queue query"), and largest_tables without the tables locked
-- exclusively (the rest as in 0.2.0).
CREATE OR REPLACE FUNCTION opsflags.take_sample(source text DEFAULT 'sampler')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          jsonb := coalesce(opsflags.config_get('alerts.thresholds', 'all'), '{}');
    q          record;
    slow_ms    double precision := coalesce((t ->> 'slow_query_ms')::double precision, 1000);
    s          record;
    prev       opsflags.system_health;
    m          jsonb := '{}';
    active     bigint; idle bigint; total bigint; max_conn bigint;
    size_bytes bigint;
    largest    jsonb;
    hit_rate   double precision;
    avg_ms     double precision;
    slow       bigint;
    pending    bigint;
    failed     bigint;
    errors     bigint := opsflags.errors_last_hour();
    pss        text;
    new_id     bigint;
    open_alerts integer;
    critical   boolean;
    status     text;
BEGIN
    SELECT count(*) FILTER (WHERE a.state = 'active'), count(*) FILTER (WHERE a.state LIKE 'idle%'), count(*),
           current_setting('max_connections')::bigint
    INTO active, idle, total, max_conn
    FROM pg_stat_activity a WHERE a.backend_type = 'client backend';
    m := m || jsonb_build_object('oldest_transaction_age_s',
        (SELECT round(extract(epoch FROM clock_timestamp() - min(a.xact_start))::numeric, 3)
         FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.xact_start IS NOT NULL));

    size_bytes := pg_database_size(current_database());

    SELECT jsonb_agg(jsonb_build_object('table', x.name, 'bytes', x.bytes) ORDER BY x.bytes DESC)
    INTO largest
    FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
                 pg_total_relation_size(c.oid) AS bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
            -- Measuring takes a lock: a table locked exclusively (or about
            -- to be) is left out rather than wait for its owner.
            AND NOT EXISTS (SELECT FROM pg_locks l
                            WHERE l.locktype = 'relation' AND l.relation = c.oid
                              AND l.mode = 'AccessExclusiveLock'
                              AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
          ORDER BY 2 DESC LIMIT 10) x;

    SELECT d.blks_hit::double precision / nullif(d.blks_hit + d.blks_read, 0) AS hit_rate,
           d.xact_commit, d.xact_rollback, d.deadlocks, d.temp_bytes
    INTO s FROM pg_stat_database d WHERE d.datname = current_database();
    hit_rate := s.hit_rate;
    m := m || jsonb_build_object('xact_commit', s.xact_commit, 'xact_rollback', s.xact_rollback,
                                 'deadlocks', s.deadlocks, 'temp_bytes', s.temp_bytes);

    -- Rates since the previous sample.
    SELECT * INTO prev FROM opsflags.system_health h
    WHERE h.metrics ? 'xact_commit' ORDER BY h.id DESC LIMIT 1;
    IF FOUND AND clock_timestamp() > prev.recorded_at THEN
        m := m || jsonb_build_object(
            'commits_per_s', round(((s.xact_commit - (prev.metrics ->> 'xact_commit')::bigint)
                / extract(epoch FROM clock_timestamp() - prev.recorded_at))::numeric, 3),
            'rollbacks_per_s', round(((s.xact_rollback - (prev.metrics ->> 'xact_rollback')::bigint)
                / extract(epoch FROM clock_timestamp() - prev.recorded_at))::numeric, 3));
    END IF;

    -- Replication lag: replay lag on a standby, the slowest replica on a primary.
    m := m || jsonb_build_object('replication_lag_s', CASE
        WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
        ELSE (SELECT max(extract(epoch FROM r.replay_lag)) FROM pg_stat_replication r) END);
    m := m || (SELECT jsonb_build_object('checkpoints_timed', b.checkpoints_timed,
                                         'checkpoints_req', b.checkpoints_req,
                                         'checkpoint_pressure',
                                         round(b.checkpoints_req::numeric / nullif(b.checkpoints_timed + b.checkpoints_req, 0), 3))
               FROM pg_stat_bgwriter b);
    m := m || jsonb_build_object('transaction_id_age',
        (SELECT max(age(d.datfrozenxid)) FROM pg_database d));

    -- Query times: pg_stat_statements when installed here.
    SELECT n.nspname INTO pss FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_stat_statements';
    IF pss IS NULL THEN
        m := m || '{"pg_stat_statements": "not installed in this database: avg_query_time_ms and slow_query_count are null"}';
    ELSE
        BEGIN
            EXECUTE format('SELECT sum(total_exec_time) / nullif(sum(calls), 0), count(*) FILTER (WHERE mean_exec_time > $1) FROM %I.pg_stat_statements', pss)
            INTO avg_ms, slow USING slow_ms;
        EXCEPTION WHEN OTHERS THEN
            m := m || jsonb_build_object('pg_stat_statements', 'unavailable: ' || SQLERRM);
        END;
    END IF;

    -- The admin's queue query, as health_status() runs it (queue_depth):
    -- a failure is recorded, and logged once per change, never with the
    -- text of a sensitive query's error.
    SELECT * INTO q FROM opsflags.queue_depth(true);
    IF q.error IS NOT NULL THEN
        m := m || jsonb_build_object('queue', 'failed: ' || q.error);
    ELSIF q.pending IS NULL THEN
        m := m || '{"queue": "not configured"}';
    ELSE
        pending := q.pending;
        failed := q.failed;
    END IF;

    -- Alerts: raised once per episode, resolved when the value is back.
    PERFORM opsflags.evaluate_alert('connections', total > max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100,
        'warning', 'Many connections', format('%s of %s connections in use', total, max_conn), 'database',
        total, max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100);
    PERFORM opsflags.evaluate_alert('cache_hit_rate', hit_rate < coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9),
        'warning', 'Low cache hit rate', format('cache hit rate %s', round(hit_rate::numeric, 3)), 'database',
        hit_rate, coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9));
    PERFORM opsflags.evaluate_alert('errors', errors > coalesce((t ->> 'errors_per_hour')::double precision, 100),
        'critical', 'Errors in the last hour', format('%s errors in the last hour', errors), 'database',
        errors, coalesce((t ->> 'errors_per_hour')::double precision, 100));
    PERFORM opsflags.evaluate_alert('failed_jobs', failed > coalesce((t ->> 'failed_jobs')::double precision, 0),
        'warning', 'Failed jobs', format('%s failed jobs', failed), 'queue',
        failed, coalesce((t ->> 'failed_jobs')::double precision, 0));
    PERFORM opsflags.evaluate_alert('replication_lag', (m ->> 'replication_lag_s')::double precision
            > coalesce((t ->> 'replication_lag_s')::double precision, 300),
        'critical', 'Replication lag', format('replication lag %s s', round((m ->> 'replication_lag_s')::numeric, 1)), 'database',
        (m ->> 'replication_lag_s')::double precision, coalesce((t ->> 'replication_lag_s')::double precision, 300));
    PERFORM opsflags.evaluate_alert('database_size', size_bytes > (t ->> 'database_size_mb')::double precision * 1048576,
        'warning', 'Database size', format('database is %s', pg_size_pretty(size_bytes)), 'storage',
        size_bytes / 1048576.0, (t ->> 'database_size_mb')::double precision);

    SELECT count(*), bool_or(a.severity = 'critical') INTO open_alerts, critical
    FROM opsflags.alerts a WHERE NOT a.resolved;
    status := CASE WHEN critical THEN 'degraded' WHEN open_alerts > 0 THEN 'warning' ELSE 'healthy' END;

    INSERT INTO opsflags.system_health (recorded_at, status, source, active_connections, idle_connections,
        total_connections, database_size_bytes, largest_tables, avg_query_time_ms, slow_query_count,
        cache_hit_rate, pending_jobs, failed_jobs, errors_last_hour, metrics)
    VALUES (clock_timestamp(), status, coalesce(take_sample.source, 'sampler'), active, idle, total, size_bytes,
        coalesce(largest, '[]'), avg_ms, slow, hit_rate, pending, failed, errors, m)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION opsflags.take_sample(text) IS
  'Write one system_health sample with every field and raise or resolve alerts (what the sampler does each interval)';

-- ==== end: secrets ====


-- ==== begin: workers (background workers: timeouts) ====



-- ==== end: workers ====


-- ==== begin: publishing (publishing to memcached from every session) ====

-- Publishing is switched on for the database (config flags.publish_to_memcached,
-- environment 'all'), and every committed change counts, whichever session or
-- logical replication apply worker made it: row triggers (the apply worker
-- fires no statement triggers but TRUNCATE's), enabled ALWAYS.
DROP TRIGGER publish_flags ON opsflags.environments;
DROP TRIGGER publish_flags ON opsflags.feature_flags;
DROP TRIGGER publish_flags ON opsflags.feature_flag_configs;
DROP TRIGGER publish_flags ON opsflags.user_segments;
DROP TRIGGER publish_flags ON opsflags.flag_prerequisites;

CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
-- Switching publishing on publishes the current state at once.
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW WHEN (NEW.config_key = 'flags.publish_to_memcached' AND NEW.environment = 'all')
    EXECUTE FUNCTION opsflags.flags_changed();

ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER publish_flags;
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER publish_flags_truncate;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER publish_flags_truncate;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER publish_flags_truncate;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER publish_flags_truncate;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER publish_flags_truncate;

COMMENT ON FUNCTION opsflags.published_flags(text) IS
  'The flag document published to memcached for an environment (key opsflags:flags:<environment>), or NULL; publishing is on with config flags.publish_to_memcached = true';

-- ==== end: publishing ====


-- ==== begin: audit and maintenance (audit coverage, no-op rows, maintenance enforcement) ====

-- Audit: application tables' triggers reach inheritance children and
-- partitions (also those made later), are ENABLE ALWAYS (so writes under
-- session_replication_role = replica are recorded), and a rewriting ALTER
-- TABLE of an audited table is recorded.

-- The triggers on one table (no-op for what is already there).
CREATE FUNCTION opsflags.audit_attach(target regclass, resource_type text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A partitioned table gets no row trigger: PostgreSQL would clone it
    -- onto each new partition with the privileges of whoever creates the
    -- partition (who need not be allowed to use audit_trigger).  Each
    -- partition gets its own instead (audit_table, audit_new_children).
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = target) = 'p' THEN
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('DROP TRIGGER opsflags_audit ON %s', target);
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, resource_type);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit_statement') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, resource_type);
    END IF;
    -- ALWAYS: also under session_replication_role = replica.
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target
               AND t.tgname IN ('opsflags_audit', 'opsflags_audit_statement') AND t.tgenabled <> 'A') THEN
        EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit_statement', target);
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit', target);
        END IF;
    END IF;
END
$$;

-- The table and every inheritance child and partition, at any depth.
CREATE OR REPLACE FUNCTION opsflags.audit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_class c WHERE c.oid = target);
    rel regclass;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        PERFORM opsflags.audit_attach(rel, name);
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.audit_table(regclass) IS
  'Record every change to the table, its inheritance children and its partitions (also later ones) in opsflags.audit_log';

CREATE OR REPLACE FUNCTION opsflags.unaudit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    trig text;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Parents first: dropping a partitioned table's row trigger (made by
    -- an earlier version) drops its partitions' clones, which cannot be
    -- dropped on their own.
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        FOREACH trig IN ARRAY ARRAY['opsflags_audit', 'opsflags_audit_statement'] LOOP
            IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = trig) THEN
                EXECUTE format('DROP TRIGGER %I ON %s', trig, rel);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.unaudit_table(regclass) IS
  'Stop recording changes to the table, its inheritance children and its partitions';

CREATE FUNCTION opsflags.audit_links_tables(pg_ddl_command)
RETURNS boolean
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'opsflags_audit_links_tables';

-- A table made a child or partition of an audited table (CREATE TABLE ...
-- INHERITS / PARTITION OF, ALTER TABLE ... INHERIT / ATTACH PARTITION) is
-- audited like its parent, whoever runs the command.
CREATE FUNCTION opsflags.audit_new_children()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH RECURSIVE
        touched(relid) AS (
            SELECT c.objid FROM pg_event_trigger_ddl_commands() c
            WHERE c.classid = 'pg_class'::regclass AND c.object_type = 'table'
              AND opsflags.audit_links_tables(c.command)),
        down(relid) AS (
            SELECT relid FROM touched
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.relid),
        up(relid, ancestor, depth) AS (
            SELECT d.relid, i.inhparent, 1 FROM down d JOIN pg_inherits i ON i.inhrelid = d.relid
            UNION ALL
            SELECT u.relid, i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.ancestor)
        SELECT DISTINCT ON (u.relid) u.relid::regclass AS relid, t.tgargs
        FROM up u
        JOIN pg_trigger t ON t.tgrelid = u.ancestor AND t.tgname = 'opsflags_audit_statement'
                         AND t.tgfoid = 'opsflags.audit_trigger()'::regprocedure
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger m WHERE m.tgrelid = u.relid AND m.tgname = 'opsflags_audit_statement'
                          AND m.tgenabled = 'A')
        ORDER BY u.relid, u.depth
    LOOP
        -- tgargs: the resource type, NUL-terminated, in the server encoding.
        PERFORM opsflags.audit_attach(r.relid,
            convert_from(substring(r.tgargs FROM 1 FOR position('\x00'::bytea IN r.tgargs) - 1),
                         current_setting('server_encoding')));
    END LOOP;
END
$$;
CREATE EVENT TRIGGER opsflags_audit_new_children ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION opsflags.audit_new_children();
ALTER EVENT TRIGGER opsflags_audit_new_children ENABLE ALWAYS;

CREATE FUNCTION opsflags.audit_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_table_rewrite';
COMMENT ON FUNCTION opsflags.audit_table_rewrite() IS
  'Records an ALTER TABLE that rewrites an audited table as one REWRITE row (reason, column types after)';
CREATE EVENT TRIGGER opsflags_audit_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags.audit_table_rewrite();
ALTER EVENT TRIGGER opsflags_audit_table_rewrite ENABLE ALWAYS;

-- The extension's own audit triggers, and those audit_table made before.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.tgrelid::regclass AS rel, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE t.tgfoid = 'opsflags.audit_trigger()'::regprocedure AND t.tgenabled <> 'A'
               AND t.tgparentid = 0 AND c.relnamespace = 'opsflags'::regnamespace
    LOOP
        EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
    END LOOP;
    FOR r IN SELECT DISTINCT t.tgrelid::regclass AS rel FROM pg_trigger t
             WHERE t.tgfoid = 'opsflags.audit_trigger()'::regprocedure AND t.tgname = 'opsflags_audit_statement'
    LOOP
        PERFORM opsflags.audit_table(r.rel);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION opsflags.audit_attach(regclass, text), opsflags.audit_new_children(),
    opsflags.audit_links_tables(pg_ddl_command), opsflags.audit_table_rewrite()
FROM PUBLIC;
-- audit_table runs with its caller's rights (who must be allowed to create
-- triggers on the table).
GRANT EXECUTE ON FUNCTION opsflags.audit_attach(regclass, text) TO opsflags_admin;

-- Maintenance mode: an ALTER TABLE that rewrites a table is a write.
CREATE FUNCTION opsflags.maintenance_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_maintenance_table_rewrite';
COMMENT ON FUNCTION opsflags.maintenance_table_rewrite() IS
  'Refuses an ALTER TABLE that rewrites a table outside schema opsflags while maintenance mode is on';
CREATE EVENT TRIGGER opsflags_maintenance_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags.maintenance_table_rewrite();
ALTER EVENT TRIGGER opsflags_maintenance_table_rewrite ENABLE ALWAYS;
REVOKE ALL ON FUNCTION opsflags.maintenance_table_rewrite() FROM PUBLIC;

-- Alerts: the sampler's functions work for opsflags_admin members (who may
-- call take_sample and resolve_alert) without write access to the tables:
-- evaluate_alert and resolve_alert change opsflags.alerts as its owner.
ALTER FUNCTION opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision)
    SECURITY DEFINER;
ALTER FUNCTION opsflags.resolve_alert(bigint, text) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision)
TO opsflags_admin;
-- take_sample writes its sample with the caller's rights.
GRANT INSERT ON opsflags.system_health TO opsflags_admin;
GRANT USAGE ON SEQUENCE opsflags.system_health_id_seq TO opsflags_admin;

-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====

-- pg_restore, and the scripts of pg_dump and pg_dumpall, create the extension
-- (and so every trigger of its tables) and then load each table with COPY FROM.
-- A restored row is not a change: it must come back as it was (version,
-- timestamps, updated_by), without a second audit row, a NOTIFY, or a check
-- against tables that are not loaded yet (pg_dump orders tables by foreign
-- keys only).  restoring() recognises that load without any setting.
CREATE FUNCTION opsflags.restoring(target regclass)
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_restoring';
COMMENT ON FUNCTION opsflags.restoring(regclass) IS
  'true while the running command is a COPY FROM into the table by a role with its owner''s privileges (how pg_restore and pg_dump scripts load rows)';

-- Every row trigger of the extension's tables that fires on INSERT skips the
-- rows of such a load (WHEN NOT restoring(table)), except cache invalidation
-- and the maintenance-mode state, which must follow the restored rows.  The
-- definitions are rewritten as they stand, so whatever the sections above
-- changed in them is kept.  A trigger added later needs the same WHEN.
DO $$
DECLARE
    t     record;
    head  text;
    tail  text;
    cond  text;
    guard text;
BEGIN
    FOR t IN
        SELECT tg.tgname, tg.tgrelid::regclass AS tab, tg.tgenabled,
               pg_catalog.pg_get_triggerdef(tg.oid) AS def
        FROM pg_catalog.pg_trigger tg
        JOIN pg_catalog.pg_depend d
          ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = tg.tgrelid
         AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'opsflags'
        JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid AND c.relkind IN ('r', 'p')
        WHERE NOT tg.tgisinternal AND tg.tgconstraint = 0
          AND (tg.tgtype & 69) = 5   -- FOR EACH ROW (1), on INSERT (4), not INSTEAD OF (64)
          AND tg.tgfoid NOT IN ('opsflags.invalidate_flag_cache()'::regprocedure,
                                'opsflags.invalidate_cache()'::regprocedure,
                                'opsflags.maintenance_config_changed()'::regprocedure)
        ORDER BY 2, 1
    LOOP
        -- CREATE TRIGGER name ... FOR EACH ROW [WHEN (cond)] EXECUTE FUNCTION f(args)
        head := split_part(t.def, ' EXECUTE FUNCTION ', 1);
        tail := substr(t.def, length(head) + 1);
        guard := format('NOT opsflags.restoring(%L::regclass)', t.tab::text);
        IF position(guard IN head) > 0 THEN
            CONTINUE;
        END IF;
        IF head LIKE '% FOR EACH ROW WHEN %' THEN
            cond := substr(head, position(' FOR EACH ROW WHEN ' IN head) + length(' FOR EACH ROW WHEN '));
            head := substr(head, 1, position(' FOR EACH ROW WHEN ' IN head) - 1);
            cond := format('(%s) AND %s', guard, cond);
        ELSE
            head := substr(head, 1, length(head) - length(' FOR EACH ROW'));
            cond := format('(%s)', guard);
        END IF;
        EXECUTE 'CREATE OR REPLACE TRIGGER' || substr(head, length('CREATE TRIGGER') + 1)
                || ' FOR EACH ROW WHEN (' || cond || ')' || tail;
        -- CREATE OR REPLACE TRIGGER enables it for origin sessions only.
        IF t.tgenabled <> 'O' THEN
            EXECUTE format('ALTER TABLE %s %s TRIGGER %I', t.tab,
                           CASE t.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA'
                                ELSE 'DISABLE' END, t.tgname);
        END IF;
    END LOOP;
END
$$;

-- ==== end: dump and restore ====

