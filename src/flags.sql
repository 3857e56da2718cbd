/*
 * flags.sql
 *	  Feature flags: the environments, the flags, their per-environment
 *	  configs and their prerequisites (the tables); the row triggers that
 *	  version them and announce changes; and the administration API
 *	  (create_flag, update_flag, toggle_flag, add_rule, remove_rule,
 *	  archive_flag, restore_flag, delete_flag, get_flag, get_flags and their
 *	  former names).  The checks of variations and prerequisites are in
 *	  variations.sql and prerequisites.sql, the checks of targeting rules in
 *	  rules.sql, evaluation in evaluation.sql (C, evaluation.c) and the
 *	  LaunchDarkly client format in launchdarkly.sql.
 *
 * The tables hold the truth; the C library evaluates flags from a
 * per-backend cache (flags.c) that triggers invalidate transactionally
 * (cache.sql).
 */

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

-- Who a write is recorded as in created_by and updated_by: opsflags.updated_by
-- when set (the HTTP server's management API sets it to the signed-in role
-- for its transaction), else the session user.
CREATE FUNCTION opsflags_internal.writer()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);

CREATE TABLE opsflags.environments (
    name        text PRIMARY KEY
                CONSTRAINT environment_name_format
                CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' AND name <> 'all'),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE opsflags.environments IS
  'Environments a flag can be configured for; a session evaluates in opsflags.environment';

INSERT INTO opsflags.environments (name, description) VALUES
    ('development', 'Local and development systems'),
    ('staging',     'Pre-production'),
    ('production',  'Production');

CREATE TABLE opsflags.feature_flags (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flag_key          text NOT NULL
                      CONSTRAINT feature_flags_flag_key_key UNIQUE
                      CONSTRAINT flag_key_format CHECK (opsflags.is_valid_flag_key(flag_key)),
    flag_name         text NOT NULL CONSTRAINT flag_name_not_empty CHECK (flag_name <> ''),
    description       text,
    flag_type         text NOT NULL DEFAULT 'boolean'
                      CONSTRAINT flag_type_known
                      CHECK (flag_type IN ('boolean', 'string', 'number', 'json')),
    variations        jsonb NOT NULL DEFAULT '[true, false]'
                      CONSTRAINT variations_is_array CHECK (jsonb_typeof(variations) = 'array'),
    tags              text[] NOT NULL DEFAULT '{}',
    rollout_group     text CONSTRAINT rollout_group_not_empty CHECK (rollout_group <> ''),
    archived          boolean NOT NULL DEFAULT false,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text NOT NULL DEFAULT opsflags_internal.writer(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- The variant algorithm is pinned per flag: a later algorithm gets a new
    -- number and existing flags keep theirs, so nobody is re-bucketed.
    variant_algorithm smallint NOT NULL DEFAULT 1
                      CONSTRAINT variant_algorithm_known CHECK (variant_algorithm = 1)
);
COMMENT ON TABLE opsflags.feature_flags IS
  'Feature flags: global definition (key, name, type, variations, tags); state lives per environment in feature_flag_configs';

-- Each environment serves the on variation (or a weighted split) when the
-- flag is on, the off variation when it is off.
CREATE TABLE opsflags.feature_flag_configs (
    flag_id            uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    environment        text NOT NULL REFERENCES opsflags.environments (name) ON UPDATE CASCADE,
    is_enabled         boolean NOT NULL DEFAULT false,
    enabled_for_users  jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT enabled_for_users_is_string_array
                       CHECK (opsflags.is_string_array(enabled_for_users)),
    enabled_for_roles  jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT enabled_for_roles_is_string_array
                       CHECK (opsflags.is_string_array(enabled_for_roles)),
    enabled_percentage integer NOT NULL DEFAULT 0
                       CONSTRAINT enabled_percentage_between_0_and_100
                       CHECK (enabled_percentage BETWEEN 0 AND 100),
    enable_at          timestamptz,
    disable_at         timestamptz,
    version            integer NOT NULL DEFAULT 1,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text NOT NULL DEFAULT opsflags_internal.writer(),
    on_variation       integer NOT NULL DEFAULT 0,
    off_variation      integer DEFAULT 1,  -- NULL: off serves no value
    variation_weights  jsonb,
    -- Keys of opsflags.user_segments (segments.sql).
    segments           jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT segments_is_string_array CHECK (opsflags.is_string_array(segments)),
    PRIMARY KEY (flag_id, environment),
    CONSTRAINT enable_at_before_disable_at CHECK (enable_at < disable_at)
);
CREATE INDEX ON opsflags.feature_flag_configs (environment);
COMMENT ON TABLE opsflags.feature_flag_configs IS
  'Per-environment state of a flag: on/off, targeting, percentage rollout and schedule';

CREATE TABLE opsflags.flag_prerequisites (
    flag_id         uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    prerequisite_id uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    variation       integer CONSTRAINT variation_not_negative CHECK (variation >= 0),
    PRIMARY KEY (flag_id, prerequisite_id),
    CONSTRAINT not_its_own_prerequisite CHECK (flag_id <> prerequisite_id)
);
COMMENT ON TABLE opsflags.flag_prerequisites IS
  'A flag is evaluated further only if each prerequisite is on for the context (off, when enabled is false; switched on in the environment, when enabled is NULL) and, when variation is set, serves that variation';

SELECT pg_catalog.pg_extension_config_dump('opsflags.environments',
    $$WHERE name NOT IN ('development', 'staging', 'production')$$);
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flags', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flag_configs', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.flag_prerequisites', '');

-------------------------------------------------------------------------------
-- Row triggers: version and timestamps, NOTIFY
-------------------------------------------------------------------------------

-- Bump version and updated_at on every real change, whoever makes it.
-- Plain DML on a config that does not set updated_by records
-- opsflags.updated_by, else the session user.
CREATE FUNCTION opsflags_internal.touch_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW IS NOT DISTINCT FROM OLD THEN
        RETURN NEW;
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := pg_catalog.now();
    IF TG_TABLE_NAME = 'feature_flag_configs' THEN
        IF NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
            NEW.updated_by := opsflags_internal.writer();
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.touch_row();
CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.touch_row();

-- NOTIFY opsflags with one JSON event per changed row; delivered on commit only.
CREATE FUNCTION opsflags_internal.notify_flag_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event   text;
    key     text;
    env     text;
    version integer;
BEGIN
    IF TG_TABLE_NAME = 'feature_flags' THEN
        IF TG_OP = 'INSERT' THEN
            event := 'flag.created';
        ELSIF TG_OP = 'DELETE' THEN
            event := 'flag.deleted';
        ELSIF NEW.archived AND NOT OLD.archived THEN
            event := 'flag.archived';
        ELSE
            event := 'flag.updated';
        END IF;
        IF TG_OP = 'DELETE' THEN
            key := OLD.flag_key; version := OLD.version;
        ELSE
            key := NEW.flag_key; version := NEW.version;
        END IF;
    ELSE
        IF TG_OP = 'UPDATE' AND NEW.is_enabled IS DISTINCT FROM OLD.is_enabled THEN
            event := 'flag.toggled';
        ELSE
            event := 'flag.updated';
        END IF;
        IF TG_OP = 'DELETE' THEN
            env := OLD.environment; version := OLD.version;
            SELECT f.flag_key INTO key FROM opsflags.feature_flags f WHERE f.id = OLD.flag_id;
        ELSE
            env := NEW.environment; version := NEW.version;
            SELECT f.flag_key INTO key FROM opsflags.feature_flags f WHERE f.id = NEW.flag_id;
        END IF;
    END IF;
    PERFORM pg_notify('opsflags', json_build_object(
        'event', event, 'key', key, 'environment', env, 'version', version)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_flag_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.notify_flag_change();
CREATE TRIGGER notify_flag_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.notify_flag_change();
-- Changes applied by logical replication (session_replication_role =
-- replica) notify too.
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER notify_flag_change;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER notify_flag_change;

-------------------------------------------------------------------------------
-- Administration API
-------------------------------------------------------------------------------

-- The environment an API call acts on: the argument, else opsflags.environment.
-- Raises 42704 for an environment that does not exist.
CREATE FUNCTION opsflags.resolve_environment(environment text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := coalesce(environment, current_setting('opsflags.environment', true), 'production');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = env) THEN
        RAISE EXCEPTION 'environment "%" does not exist', env
            USING ERRCODE = 'undefined_object',
                  HINT = 'Environments are rows of opsflags.environments.';
    END IF;
    RETURN env;
END
$$;

-- The id of a flag by key; 22004 for NULL, 42704 for an unknown key.
CREATE FUNCTION opsflags.flag_id(flag_key text)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id uuid;
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT f.id INTO id FROM opsflags.feature_flags f WHERE f.flag_key = flag_id.flag_key;
    IF id IS NULL THEN
        RAISE EXCEPTION 'feature flag "%" does not exist', flag_key USING ERRCODE = 'undefined_object';
    END IF;
    RETURN id;
END
$$;

-- flag_name defaults to the key; every argument is checked before anything
-- is written.
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

-- Every field is checked for its type and range first (22023, naming the
-- field); then the resulting config as a whole.
CREATE FUNCTION opsflags.update_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
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
        WHEN 'on_variation' THEN
            IF NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'the index of a variation, a whole number from 0', v);
            END IF;
        WHEN 'off_variation' THEN
            IF jsonb_typeof(v) <> 'null' AND NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'the index of a variation, a whole number from 0, or null for no value when off', v);
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
            updated_by         = opsflags_internal.writer()
        WHERE fc.flag_id = fid AND fc.environment = env;
    END IF;
END
$$;

CREATE FUNCTION opsflags.toggle_flag(flag_key text, enabled boolean, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('is_enabled', enabled), environment);
END
$$;

-- A rule added to, or removed from, the rules of a flag's config; the
-- config row is locked first so that concurrent calls do not lose each
-- other's rules.  The rule itself is checked by the config's trigger.
-- at_position: the index the rule takes (0 is first), NULL for last
-- ("position" is an SQL keyword, awkward in named notation).
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

-- Whether there was a rule of that id.
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

CREATE FUNCTION opsflags.archive_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.feature_flags f SET archived = true
    WHERE f.id = opsflags.flag_id(archive_flag.flag_key) AND NOT f.archived;
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

-- Everything that decides a flag's answers in one environment.  PL/pgSQL:
-- the rule columns are added by rules.sql, after this file.
CREATE FUNCTION opsflags_internal.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
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

CREATE FUNCTION opsflags.get_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
    doc jsonb;
BEGIN
    SELECT opsflags_internal.flag_document(f, c, env) INTO doc
    FROM opsflags.feature_flags f
    LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
    WHERE f.flag_key = get_flag.flag_key;
    RETURN doc;
END
$$;

CREATE FUNCTION opsflags.get_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
BEGIN
    RETURN coalesce((
        SELECT jsonb_agg(opsflags_internal.flag_document(f, c, env) ORDER BY f.flag_key)
        FROM opsflags.feature_flags f
        LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE include_archived OR NOT f.archived), '[]');
END
$$;

-- The flag API's earlier names (update_feature_flag, get_feature_flag,
-- get_all_feature_flags), kept for code that calls them: the API names a flag
-- "flag" throughout.
CREATE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$ SELECT opsflags.update_flag(flag_key, updates, environment) $$;
COMMENT ON FUNCTION opsflags.update_feature_flag(text, jsonb, text) IS 'Former name of update_flag()';

CREATE FUNCTION opsflags.get_feature_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flag(flag_key, environment) $$;
COMMENT ON FUNCTION opsflags.get_feature_flag(text, text) IS 'Former name of get_flag()';

CREATE FUNCTION opsflags.get_all_feature_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flags(environment, include_archived) $$;
COMMENT ON FUNCTION opsflags.get_all_feature_flags(text, boolean) IS 'Former name of get_flags()';

-------------------------------------------------------------------------------
-- Privileges: changing and reading flag state is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.touch_row(), opsflags_internal.notify_flag_change(),
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.update_flag(text, jsonb, text), opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.archive_flag(text), opsflags.restore_flag(text), opsflags.delete_flag(text),
    opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_flag(text, text), opsflags.get_feature_flag(text, text),
    opsflags.get_flags(text, boolean), opsflags.get_all_feature_flags(text, boolean)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    opsflags.environments, opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.flag_prerequisites
TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.update_flag(text, jsonb, text), opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.archive_flag(text), opsflags.restore_flag(text), opsflags.delete_flag(text),
    opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_flag(text, text), opsflags.get_feature_flag(text, text),
    opsflags.get_flags(text, boolean), opsflags.get_all_feature_flags(text, boolean)
TO opsflags_admin;
