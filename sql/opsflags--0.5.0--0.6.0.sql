-- opsflags 0.5.0 -> 0.6.0: targeting rules on any attribute of a context,
-- named variations, Unleash import and export, per-flag cache invalidation.
-- A fresh install of 0.6.0 (built from src/*.sql) and an updated one are the
-- same (test/upgrade/upgrade.sh).
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.6.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Targeting rules (src/rules.sql): rules, serve and fallthrough of configs,
-- variation names, segment rules, prerequisites that must be off or serve
-- named variants, and the triggers that check them.
-------------------------------------------------------------------------------

ALTER TABLE opsflags.feature_flag_configs
    ADD COLUMN rules jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN serve jsonb,
    ADD COLUMN fallthrough jsonb;
ALTER TABLE opsflags.feature_flags ADD COLUMN variation_names jsonb;
ALTER TABLE opsflags.user_segments ADD COLUMN rules jsonb NOT NULL DEFAULT '[]';
ALTER TABLE opsflags.flag_prerequisites
    ADD COLUMN enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN variants jsonb;

-- The compiler in strict mode: raises 22023 naming the flag, environment,
-- rule and clause of the first thing invalid.
CREATE FUNCTION opsflags_internal.check_config_rules(flag_key text, environment text, variations jsonb,
                                                     rules jsonb, serve jsonb, fallthrough jsonb,
                                                     rollout_group text)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_check_config_rules';
CREATE FUNCTION opsflags_internal.check_segment_rules(segment_key text, rules jsonb)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_check_segment_rules';

-- Segments named by rules (a rule's segments, segment_match values).
CREATE FUNCTION opsflags_internal.rule_segment_keys(rules jsonb)
RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k #>> '{}' FROM jsonb_path_query(rules, 'lax $[*].segments[*] ? (@.type() == "string")') k
    UNION
    SELECT k #>> '{}' FROM jsonb_path_query(rules,
        'lax $[*].clauses[*] ? (@.op == "segment_match").values[*] ? (@.type() == "string")') k
$$;

-- A config's rules, serve and fallthrough, checked when written; the
-- segments the rules name must exist.
CREATE FUNCTION opsflags_internal.validate_config_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules OR NEW.serve IS DISTINCT FROM OLD.serve
       OR NEW.fallthrough IS DISTINCT FROM OLD.fallthrough OR NEW.flag_id IS DISTINCT FROM OLD.flag_id THEN
        SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
        IF FOUND THEN
            PERFORM opsflags_internal.check_config_rules(f.flag_key, NEW.environment, f.variations, NEW.rules,
                                                         NEW.serve, NEW.fallthrough, f.rollout_group);
        END IF;
        SELECT s INTO missing FROM opsflags_internal.rule_segment_keys(NEW.rules) s
        WHERE NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = s) LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'segment "%" does not exist', missing
                USING ERRCODE = 'undefined_object', HINT = 'Create it with opsflags.create_segment().';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_config_rules BEFORE INSERT OR UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.validate_config_rules();

-- variation_names: NULL, or one unique name (string) or null per variation.
-- When variations change, every config's rules must still fit them.
CREATE FUNCTION opsflags_internal.validate_variation_names()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.variation_names IS NOT NULL AND (
           jsonb_typeof(NEW.variation_names) <> 'array'
           OR jsonb_typeof(NEW.variations) <> 'array'
           OR jsonb_array_length(NEW.variation_names) <> jsonb_array_length(NEW.variations)
           OR EXISTS (SELECT FROM jsonb_array_elements(NEW.variation_names) n
                      WHERE jsonb_typeof(n) NOT IN ('string', 'null') OR n = '""')
           OR (SELECT count(*) <> count(DISTINCT n) FROM jsonb_array_elements(NEW.variation_names) n
               WHERE jsonb_typeof(n) = 'string')) THEN
        PERFORM opsflags.flag_field_error(NEW.flag_key, 'variation_names',
            'an array of unique non-empty names (strings) or nulls, one per variation', NEW.variation_names);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.variations IS DISTINCT FROM OLD.variations THEN
        PERFORM opsflags_internal.check_config_rules(NEW.flag_key, c.environment, NEW.variations, c.rules,
                                                     c.serve, c.fallthrough, NEW.rollout_group)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_variation_names BEFORE INSERT OR UPDATE OF variations, variation_names
    ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.validate_variation_names();

-- A segment's rules (no serve, no segments of their own).
CREATE FUNCTION opsflags_internal.validate_segment_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules THEN
        PERFORM opsflags_internal.check_segment_rules(NEW.segment_key, NEW.rules);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_segment_rules BEFORE INSERT OR UPDATE ON opsflags.user_segments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.user_segments'))
    EXECUTE FUNCTION opsflags_internal.validate_segment_rules();

-- A prerequisite's variants: a non-empty array of names of the
-- prerequisite's variations.
CREATE FUNCTION opsflags_internal.validate_prerequisite_variants()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
BEGIN
    IF NEW.variants IS NOT NULL THEN
        IF jsonb_typeof(NEW.variants) <> 'array' OR jsonb_array_length(NEW.variants) = 0
           OR NOT opsflags.is_string_array(NEW.variants) THEN
            RAISE EXCEPTION 'invalid variants for a prerequisite'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Variants are a non-empty array of names of the prerequisite''s variations.';
        END IF;
        SELECT v INTO missing FROM jsonb_array_elements(NEW.variants) v
        WHERE NOT EXISTS (SELECT FROM opsflags.feature_flags f
                          WHERE f.id = NEW.prerequisite_id AND coalesce(f.variation_names, '[]') @> jsonb_build_array(v))
        LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'variant % does not exist for the prerequisite flag', missing
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Variants name variations of the prerequisite (its variation_names).';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_prerequisite_variants BEFORE INSERT OR UPDATE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags_internal.validate_prerequisite_variants();

REVOKE ALL ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text),
    opsflags_internal.check_segment_rules(text, jsonb),
    opsflags_internal.rule_segment_keys(jsonb),
    opsflags_internal.validate_config_rules(), opsflags_internal.validate_variation_names(),
    opsflags_internal.validate_segment_rules(), opsflags_internal.validate_prerequisite_variants()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text),
    opsflags_internal.check_segment_rules(text, jsonb),
    opsflags_internal.rule_segment_keys(jsonb)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Rules in the flag and segment API: update_flag takes rules, serve,
-- fallthrough and variation_names; create_flag takes variation_names and
-- create_segment/update_segment rules (their signatures change: dropped and
-- created again, with their grants); add_rule and remove_rule; get_flag
-- shows the new columns (flags.sql, variations.sql, segments.sql).
-------------------------------------------------------------------------------

DROP FUNCTION opsflags.create_flag(text, text, text, text, jsonb, text[]);
DROP FUNCTION opsflags.create_segment(text, text, jsonb, jsonb, text);
DROP FUNCTION opsflags.update_segment(text, jsonb, jsonb);
CREATE FUNCTION opsflags_internal.check_variation_names(flag_key text, variations jsonb, names jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF names IS NULL OR jsonb_typeof(names) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(names) <> 'array'
       OR EXISTS (SELECT FROM jsonb_array_elements(names) n WHERE jsonb_typeof(n) NOT IN ('string', 'null') OR n = '""')
       OR jsonb_array_length(names) <> jsonb_array_length(variations) THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variation_names',
            format('an array of %s non-empty names (strings, or null for no name), one per variation, or null',
                   jsonb_array_length(variations)), names);
    END IF;
    IF EXISTS (SELECT FROM jsonb_array_elements(names) n WHERE jsonb_typeof(n) = 'string'
               GROUP BY n HAVING count(*) > 1) THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variation_names', 'names that differ from each other', names);
    END IF;
END
$$;

CREATE FUNCTION opsflags.create_flag(
    flag_key    text,
    flag_name   text DEFAULT NULL,
    description text DEFAULT NULL,
    flag_type   text DEFAULT 'boolean',
    variations  jsonb DEFAULT NULL,
    tags        text[] DEFAULT '{}',
    variation_names jsonb DEFAULT NULL)
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
    PERFORM opsflags_internal.check_variation_values(flag_key, ftype, vars);
    IF array_position(tags, NULL) IS NOT NULL THEN
        PERFORM opsflags.flag_field_error(flag_key, 'tags', 'an array of tags without NULL elements');
    END IF;
    PERFORM opsflags_internal.check_variation_names(flag_key, vars, coalesce(variation_names, 'null'));
    IF EXISTS (SELECT 1 FROM opsflags.feature_flags f WHERE f.flag_key = create_flag.flag_key) THEN
        RAISE EXCEPTION 'feature flag "%" already exists', flag_key
            USING ERRCODE = 'unique_violation',
                  HINT = 'Change it with opsflags.update_flag().';
    END IF;
    onoff := opsflags_internal.default_on_off(vars);
    PERFORM opsflags_internal.check_variations(flag_key, vars, onoff[1], onoff[2], NULL);
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags, variation_names)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, ftype, vars, coalesce(tags, '{}'),
            nullif(variation_names, 'null'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment.
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
    SELECT new_id, e.name, onoff[1], onoff[2] FROM opsflags.environments e;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION opsflags.update_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group,variations,variation_names}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at,on_variation,off_variation,variation_weights,segments,rules,serve,fallthrough}';
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
    onoff := opsflags_internal.default_on_off(vars);
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
            PERFORM opsflags_internal.check_variation_values(flag_key, f.flag_type, v);
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
            IF NOT opsflags_internal.is_whole_number(v, 0, 100) THEN
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
            IF NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'the index of a variation, a whole number from 0', v);
            END IF;
        WHEN 'variation_weights' THEN
            IF jsonb_typeof(v) NOT IN ('array', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an array of non-negative whole numbers, one per variation, or null for no split', v);
            END IF;
        WHEN 'variation_names' THEN
            PERFORM opsflags_internal.check_variation_names(flag_key, vars, v);
        WHEN 'rules' THEN
            -- The rules themselves are checked by the config's trigger
            -- (rules.sql), which names the rule and clause.
            IF jsonb_typeof(v) <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(v) r WHERE jsonb_typeof(r) <> 'object') THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of rule objects', v);
            END IF;
        WHEN 'serve', 'fallthrough' THEN
            IF jsonb_typeof(v) NOT IN ('object', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an object such as {"variation": 0}, {"split": [...]} or {"off": true}, or null', v);
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
            PERFORM opsflags_internal.check_variations(flag_key, vars, on_i, off_i, w);
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
            variations    = CASE WHEN updates ? 'variations' THEN updates->'variations' ELSE ff.variations END,
            variation_names = CASE WHEN updates ? 'variation_names' THEN nullif(updates->'variation_names', 'null') ELSE ff.variation_names END
        WHERE ff.id = fid;
    END IF;

    IF updates ?| config_fields THEN
        INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
        SELECT fid, env, d[1], d[2] FROM opsflags_internal.default_on_off(vars) d
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
            rules              = CASE WHEN updates ? 'rules' THEN updates->'rules' ELSE fc.rules END,
            serve              = CASE WHEN updates ? 'serve' THEN nullif(updates->'serve', 'null') ELSE fc.serve END,
            fallthrough        = CASE WHEN updates ? 'fallthrough' THEN nullif(updates->'fallthrough', 'null') ELSE fc.fallthrough END,
            updated_by         = session_user
        WHERE fc.flag_id = fid AND fc.environment = env;
    END IF;
END
$$;

CREATE FUNCTION opsflags.add_rule(flag_key text, rule jsonb, environment text DEFAULT NULL, at_position integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fid   uuid := opsflags.flag_id(flag_key);
    env   text := opsflags.resolve_environment(environment);
    rules jsonb;
    n     integer;
BEGIN
    IF rule IS NULL THEN
        RAISE EXCEPTION 'rule must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(rule) <> 'object' OR jsonb_typeof(rule -> 'id') IS DISTINCT FROM 'string' THEN
        PERFORM opsflags.flag_field_error(flag_key, 'rules', 'a rule: an object with an "id"', rule);
    END IF;
    SELECT fc.rules INTO rules FROM opsflags.feature_flag_configs fc
    WHERE fc.flag_id = fid AND fc.environment = env FOR UPDATE;
    rules := coalesce(rules, '[]');
    n := jsonb_array_length(rules);
    IF EXISTS (SELECT FROM jsonb_array_elements(rules) r WHERE r -> 'id' = rule -> 'id') THEN
        RAISE EXCEPTION 'rule "%" of feature flag "%" already exists in environment "%"', rule ->> 'id', flag_key, env
            USING ERRCODE = 'unique_violation',
                  HINT = 'Remove it first with opsflags.remove_rule(), or give the new rule another id.';
    END IF;
    IF at_position < 0 OR at_position > n THEN
        RAISE EXCEPTION 'position % is out of range for the % rules of feature flag "%" in environment "%"',
                        at_position, n, flag_key, env
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('A position is from 0 (first) to %s (last), or NULL for last.', n);
    END IF;
    rules := coalesce((SELECT jsonb_agg(r ORDER BY o) FROM (
                SELECT r, (i - 1) * 2 AS o FROM jsonb_array_elements(rules) WITH ORDINALITY e(r, i)
                UNION ALL
                SELECT rule, coalesce(at_position, n) * 2 - 1) x(r, o)), '[]');
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('rules', rules), env);
END
$$;

CREATE FUNCTION opsflags.remove_rule(flag_key text, rule_id text, environment text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fid   uuid := opsflags.flag_id(flag_key);
    env   text := opsflags.resolve_environment(environment);
    rules jsonb;
    kept  jsonb;
BEGIN
    IF rule_id IS NULL THEN
        RAISE EXCEPTION 'rule id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT fc.rules INTO rules FROM opsflags.feature_flag_configs fc
    WHERE fc.flag_id = fid AND fc.environment = env FOR UPDATE;
    kept := coalesce((SELECT jsonb_agg(r ORDER BY i) FROM jsonb_array_elements(rules) WITH ORDINALITY e(r, i)
                      WHERE r ->> 'id' IS DISTINCT FROM rule_id), '[]');
    IF rules IS NULL OR kept = rules THEN
        RETURN false;
    END IF;
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('rules', kept), env);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION opsflags_internal.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
        'flag_type', f.flag_type, 'variations', f.variations, 'variation_names', f.variation_names,
        'tags', to_jsonb(f.tags), 'rollout_group', f.rollout_group, 'variant_algorithm', f.variant_algorithm,
        'archived', f.archived, 'version', f.version,
        'created_at', f.created_at, 'created_by', f.created_by, 'updated_at', f.updated_at,
        'prerequisites', coalesce((
            SELECT jsonb_agg(jsonb_build_object('key', pf.flag_key, 'enabled', p.enabled, 'variation', p.variation,
                                                'value', pf.variations -> p.variation, 'variants', p.variants)
                             ORDER BY pf.flag_key)
            FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
            WHERE p.flag_id = f.id), '[]'),
        'environment', environment,
        'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
            'is_enabled', c.is_enabled, 'enabled_for_users', c.enabled_for_users,
            'enabled_for_roles', c.enabled_for_roles, 'segments', c.segments,
            'enabled_percentage', c.enabled_percentage,
            'enable_at', c.enable_at, 'disable_at', c.disable_at,
            'on_variation', c.on_variation, 'off_variation', c.off_variation,
            'variation_weights', c.variation_weights,
            'rules', c.rules, 'serve', c.serve, 'fallthrough', c.fallthrough, 'version', c.version,
            'updated_at', c.updated_at, 'updated_by', c.updated_by) END);
END
$$;

CREATE FUNCTION opsflags.create_segment(segment_key text, name text, user_ids jsonb DEFAULT '[]',
                                        roles jsonb DEFAULT '[]', description text DEFAULT NULL,
                                        rules jsonb DEFAULT '[]')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    IF segment_key IS NULL THEN
        RAISE EXCEPTION 'segment key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO opsflags.user_segments AS s (segment_key, name, user_ids, roles, description, rules)
    VALUES (segment_key, coalesce(name, segment_key), coalesce(user_ids, '[]'), coalesce(roles, '[]'), description,
            coalesce(rules, '[]'))
    RETURNING s.id INTO new_id;
    RETURN new_id;
END
$$;

CREATE FUNCTION opsflags.update_segment(segment_key text, user_ids jsonb DEFAULT NULL, roles jsonb DEFAULT NULL,
                                        rules jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.user_segments s
    SET user_ids = coalesce(update_segment.user_ids, s.user_ids),
        roles = coalesce(update_segment.roles, s.roles),
        rules = coalesce(update_segment.rules, s.rules),
        updated_at = now()
    WHERE s.segment_key = update_segment.segment_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'segment "%" does not exist', segment_key USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.check_variation_names(text, jsonb, jsonb),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_variation_names(text, jsonb, jsonb),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
TO opsflags_admin;
