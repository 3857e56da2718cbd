/*
 * opsflags 0.1.0: feature flags.
 *
 * Tables hold the truth; the C library evaluates flags from a per-backend
 * cache that statement-level triggers invalidate transactionally.  Every
 * function body below refers to objects by schema-qualified names and runs
 * with a pinned search_path, so objects planted in public or pg_temp cannot
 * change what it does.
 */

\echo Use "CREATE EXTENSION opsflags" to load this file. \quit

-------------------------------------------------------------------------------
-- Validation helpers (immutable, used by table constraints and the API alike)
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.is_valid_flag_key(flag_key text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT flag_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$' $$;
COMMENT ON FUNCTION opsflags.is_valid_flag_key(text) IS
  'true when the text is a well-formed flag key: 1 to 100 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit';

CREATE FUNCTION opsflags.is_string_array(value jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT pg_catalog.jsonb_typeof(value) OPERATOR(pg_catalog.=) 'array'
     AND NOT pg_catalog.jsonb_path_exists(value, 'strict $[*] ? (@.type() != "string")', '{}', true)
$$;
COMMENT ON FUNCTION opsflags.is_string_array(jsonb) IS
  'true when the jsonb value is an array whose elements are all strings';

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

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
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flag_key      text NOT NULL
                  CONSTRAINT feature_flags_flag_key_key UNIQUE
                  CONSTRAINT flag_key_format CHECK (opsflags.is_valid_flag_key(flag_key)),
    flag_name     text NOT NULL CONSTRAINT flag_name_not_empty CHECK (flag_name <> ''),
    description   text,
    flag_type     text NOT NULL DEFAULT 'boolean'
                  CONSTRAINT flag_type_known
                  CHECK (flag_type IN ('boolean', 'string', 'number', 'json')),
    variations    jsonb NOT NULL DEFAULT '[true, false]'
                  CONSTRAINT variations_is_array CHECK (jsonb_typeof(variations) = 'array'),
    tags          text[] NOT NULL DEFAULT '{}',
    rollout_group text CONSTRAINT rollout_group_not_empty CHECK (rollout_group <> ''),
    archived      boolean NOT NULL DEFAULT false,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT session_user,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE opsflags.feature_flags IS
  'Feature flags: global definition (key, name, type, variations, tags); state lives per environment in feature_flag_configs';

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
    updated_by         text NOT NULL DEFAULT session_user,
    PRIMARY KEY (flag_id, environment),
    CONSTRAINT enable_at_before_disable_at CHECK (enable_at < disable_at)
);
CREATE INDEX ON opsflags.feature_flag_configs (environment);
COMMENT ON TABLE opsflags.feature_flag_configs IS
  'Per-environment state of a flag: on/off, targeting, percentage rollout and schedule';

SELECT pg_catalog.pg_extension_config_dump('opsflags.environments',
    $$WHERE name NOT IN ('development', 'staging', 'production')$$);
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flags', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flag_configs', '');

-------------------------------------------------------------------------------
-- Triggers: version and timestamps, cache invalidation, NOTIFY
-------------------------------------------------------------------------------

-- Bump version and updated_at on every real change, whoever makes it.
CREATE FUNCTION opsflags.touch_row()
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
    -- Plain DML that does not say who made the change: the session user did.
    IF TG_TABLE_NAME = 'feature_flag_configs' THEN
        IF NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
            NEW.updated_by := session_user;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.touch_row();
CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.touch_row();

-- In C: queue a relcache invalidation of the table, which every backend's
-- flag cache listens for.  Sent at commit, applied locally at the end of the
-- statement, undone on rollback.  Row-level, because logical replication
-- apply fires only row triggers (repeats within a command are merged);
-- TRUNCATE has statement triggers only.
CREATE FUNCTION opsflags.invalidate_flag_cache()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_invalidate_flag_cache';

CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();

-- NOTIFY opsflags with one JSON event per changed row; delivered on commit only.
CREATE FUNCTION opsflags.notify_flag_change()
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
    FOR EACH ROW EXECUTE FUNCTION opsflags.notify_flag_change();
CREATE TRIGGER notify_flag_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.notify_flag_change();

-- Changes applied by logical replication (session_replication_role = replica)
-- must invalidate and notify too.
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER notify_flag_change;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER notify_flag_change;

-------------------------------------------------------------------------------
-- Evaluation (C)
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.rollout_bucket(group_id text, stickiness text)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_rollout_bucket';
COMMENT ON FUNCTION opsflags.rollout_bucket(text, text) IS
  'Unleash normalized bucket 1..100: murmur3_x86_32(group_id || '':'' || stickiness, seed 0) % 100 + 1';

-- STABLE: one statement sees one state of the flags.  PARALLEL RESTRICTED:
-- the cache lives in the leader backend.
CREATE FUNCTION opsflags.feature_enabled(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS boolean
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_enabled';
COMMENT ON FUNCTION opsflags.feature_enabled(text, text, text) IS
  'Evaluate a feature flag for a user and role in the environment opsflags.environment; never raises, false when in doubt';

CREATE FUNCTION opsflags.feature_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_feature_guard';
COMMENT ON FUNCTION opsflags.feature_guard() IS
  'Trigger: EXECUTE FUNCTION opsflags.feature_guard(''flag.key'') refuses writes while the flag is off for session_user/current_user';

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

CREATE FUNCTION opsflags.create_flag(
    flag_key    text,
    flag_name   text,
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
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT opsflags.is_valid_flag_key(flag_key) THEN
        RAISE EXCEPTION 'invalid flag key "%"', flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag key is 1 to 100 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.';
    END IF;
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, coalesce(flag_type, 'boolean'),
            coalesce(variations, '[true, false]'), coalesce(tags, '{}'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment.
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment)
    SELECT new_id, e.name FROM opsflags.environments e;
    RETURN new_id;
END
$$;

CREATE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at}';
    env  text;
    fid  uuid;
    field text;
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

    IF updates ?| flag_fields THEN
        UPDATE opsflags.feature_flags f SET
            flag_name     = CASE WHEN updates ? 'flag_name' THEN updates->>'flag_name' ELSE f.flag_name END,
            description   = CASE WHEN updates ? 'description' THEN updates->>'description' ELSE f.description END,
            tags          = CASE WHEN updates ? 'tags'
                                 THEN ARRAY(SELECT jsonb_array_elements_text(updates->'tags'))
                                 ELSE f.tags END,
            rollout_group = CASE WHEN updates ? 'rollout_group' THEN updates->>'rollout_group' ELSE f.rollout_group END
        WHERE f.id = fid;
    END IF;

    IF updates ?| config_fields THEN
        INSERT INTO opsflags.feature_flag_configs (flag_id, environment)
        VALUES (fid, env) ON CONFLICT DO NOTHING;
        UPDATE opsflags.feature_flag_configs c SET
            is_enabled         = CASE WHEN updates ? 'is_enabled' THEN (updates->'is_enabled')::boolean ELSE c.is_enabled END,
            enabled_for_users  = CASE WHEN updates ? 'enabled_for_users' THEN updates->'enabled_for_users' ELSE c.enabled_for_users END,
            enabled_for_roles  = CASE WHEN updates ? 'enabled_for_roles' THEN updates->'enabled_for_roles' ELSE c.enabled_for_roles END,
            enabled_percentage = CASE WHEN updates ? 'enabled_percentage' THEN (updates->'enabled_percentage')::integer ELSE c.enabled_percentage END,
            enable_at          = CASE WHEN updates ? 'enable_at' THEN (updates->>'enable_at')::timestamptz ELSE c.enable_at END,
            disable_at         = CASE WHEN updates ? 'disable_at' THEN (updates->>'disable_at')::timestamptz ELSE c.disable_at END,
            updated_by         = session_user
        WHERE c.flag_id = fid AND c.environment = env;
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
    PERFORM opsflags.update_feature_flag(flag_key, jsonb_build_object('is_enabled', enabled), environment);
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

CREATE FUNCTION opsflags.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
        'flag_type', f.flag_type, 'variations', f.variations, 'tags', to_jsonb(f.tags),
        'rollout_group', f.rollout_group, 'archived', f.archived, 'version', f.version,
        'created_at', f.created_at, 'created_by', f.created_by, 'updated_at', f.updated_at,
        'environment', environment,
        'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
            'is_enabled', c.is_enabled, 'enabled_for_users', c.enabled_for_users,
            'enabled_for_roles', c.enabled_for_roles, 'enabled_percentage', c.enabled_percentage,
            'enable_at', c.enable_at, 'disable_at', c.disable_at, 'version', c.version,
            'updated_at', c.updated_at, 'updated_by', c.updated_by) END)
$$;

CREATE FUNCTION opsflags.get_feature_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
    doc jsonb;
BEGIN
    SELECT opsflags.flag_document(f, c, env) INTO doc
    FROM opsflags.feature_flags f
    LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
    WHERE f.flag_key = get_feature_flag.flag_key;
    RETURN doc;
END
$$;

CREATE FUNCTION opsflags.get_all_feature_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
BEGIN
    RETURN coalesce((
        SELECT jsonb_agg(opsflags.flag_document(f, c, env) ORDER BY f.flag_key)
        FROM opsflags.feature_flags f
        LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE include_archived OR NOT f.archived), '[]');
END
$$;

-------------------------------------------------------------------------------
-- Privileges: anyone may evaluate; changing and reading flag state is for the
-- extension owner (and, later, opsflags_admin).
-------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA opsflags TO PUBLIC;
REVOKE ALL ON FUNCTION
    opsflags.touch_row(), opsflags.invalidate_flag_cache(), opsflags.notify_flag_change(),
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[]),
    opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.archive_flag(text),
    opsflags.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_feature_flag(text, text),
    opsflags.get_all_feature_flags(text, boolean)
FROM PUBLIC;
