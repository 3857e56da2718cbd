/*
 * opsflags 0.1.0 -> 0.2.0: configuration, audit trail, privileges.
 */

\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.2.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- The administrators' role
-------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'opsflags_admin') THEN
        CREATE ROLE opsflags_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE opsflags_admin IS 'May change opsflags flags, configuration and deployments, and read secrets and the audit log';

-------------------------------------------------------------------------------
-- Flags: plain DML that does not set updated_by records opsflags.updated_by,
-- else the session user.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION opsflags.touch_row()
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
            NEW.updated_by := coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-------------------------------------------------------------------------------
-- Configuration
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.is_valid_config_key(config_key text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT config_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$' $$;
COMMENT ON FUNCTION opsflags.is_valid_config_key(text) IS
  'true when the text is a well-formed configuration key: 1 to 200 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit';

-- No CHECK constraints here on purpose: a constraint violation reports the
-- whole failing row, secret included.  The validation trigger below checks
-- every rule first and names only the key.
CREATE TABLE opsflags.app_config (
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    config_key   text NOT NULL,
    config_value jsonb NOT NULL,
    environment  text NOT NULL DEFAULT 'all',
    description  text,
    is_sensitive boolean NOT NULL DEFAULT false,
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT session_user,
    CONSTRAINT app_config_key_environment_key UNIQUE (config_key, environment)
);
COMMENT ON TABLE opsflags.app_config IS
  'Configuration values per environment; environment ''all'' is the fallback. Sensitive values are readable by admins only';
SELECT pg_catalog.pg_extension_config_dump('opsflags.app_config', '');

CREATE FUNCTION opsflags.validate_config_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.config_key IS NULL THEN
        RAISE EXCEPTION 'configuration key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT opsflags.is_valid_config_key(NEW.config_key) THEN
        RAISE EXCEPTION 'invalid configuration key "%"', NEW.config_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A configuration key is 1 to 200 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.';
    END IF;
    IF NEW.environment IS NULL THEN
        RAISE EXCEPTION 'environment of configuration key "%" must not be null', NEW.config_key
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Use ''all'' for every environment.';
    END IF;
    IF NEW.environment <> 'all'
       AND NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = NEW.environment) THEN
        RAISE EXCEPTION 'environment "%" does not exist', NEW.environment
            USING ERRCODE = 'undefined_object',
                  HINT = 'Environments are rows of opsflags.environments, or ''all''.';
    END IF;
    IF NEW.config_value IS NULL THEN
        RAISE EXCEPTION 'value of configuration key "%" must not be null', NEW.config_key
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Store the JSON value null (''null''::jsonb) instead.';
    END IF;
    NEW.id := coalesce(NEW.id, gen_random_uuid());
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

CREATE TRIGGER validate_config_row BEFORE INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.validate_config_row();

-- The generic name of the cache-invalidation trigger (same C function).
CREATE FUNCTION opsflags.invalidate_cache()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_invalidate_flag_cache';

CREATE TRIGGER invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_cache();
CREATE TRIGGER invalidate_cache_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_cache();
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache_truncate;

-- NOTIFY opsflags on every committed change; never the value.
CREATE FUNCTION opsflags.notify_config_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'DELETE' THEN 'config.deleted' ELSE 'config.updated' END,
        'key', r.config_key, 'environment', r.environment, 'version', r.version,
        'sensitive', r.is_sensitive)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_config_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.notify_config_change();
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER notify_config_change;

-- Reads: C, cached per backend, sensitive values for admins only.
CREATE FUNCTION opsflags.config_get(config_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_config_get';
COMMENT ON FUNCTION opsflags.config_get(text, text) IS
  'The value for the environment (default opsflags.environment), else for ''all'', else NULL; sensitive values for admins only (else 42501)';

CREATE FUNCTION opsflags.config_set(
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
    -- Validation happens in validate_config_row(), for this and plain DML.
    -- The writer named here is recorded even when it equals the previous one.
    PERFORM set_config('opsflags.updated_by', writer, true);
    INSERT INTO opsflags.app_config AS c
        (config_key, config_value, environment, description, is_sensitive, updated_by)
    VALUES (config_key, config_value, environment, description, coalesce(is_sensitive, false), writer)
    ON CONFLICT ON CONSTRAINT app_config_key_environment_key DO UPDATE SET
        config_value = EXCLUDED.config_value,
        description  = coalesce(config_set.description, c.description),
        is_sensitive = coalesce(config_set.is_sensitive, c.is_sensitive),
        updated_by   = EXCLUDED.updated_by;
    PERFORM set_config('opsflags.updated_by', previous, true);
END
$$;
COMMENT ON FUNCTION opsflags.config_set(text, jsonb, text, text, text, boolean) IS
  'Create or replace a configuration value; is_sensitive NULL keeps the current setting (false for a new key)';

CREATE FUNCTION opsflags.config_delete(config_key text, environment text DEFAULT 'all')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM opsflags.app_config c
    WHERE c.config_key = config_delete.config_key AND c.environment = config_delete.environment;
    RETURN FOUND;
END
$$;

-- Listing for anyone: sensitive values are always redacted.
CREATE FUNCTION opsflags.config_all(environment text DEFAULT NULL)
RETURNS TABLE (config_key text, environment text, config_value jsonb, description text,
               is_sensitive boolean, version integer, updated_at timestamptz, updated_by text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_key, c.environment,
           CASE WHEN c.is_sensitive THEN '"[REDACTED]"'::jsonb ELSE c.config_value END,
           c.description, c.is_sensitive, c.version, c.updated_at, c.updated_by
    FROM opsflags.app_config c
    WHERE config_all.environment IS NULL OR c.environment IN (config_all.environment, 'all')
    ORDER BY c.config_key, c.environment = 'all', c.environment
$$;
COMMENT ON FUNCTION opsflags.config_all(text) IS
  'Configuration rows of an environment plus ''all'' (every row when NULL); sensitive values redacted';

-------------------------------------------------------------------------------
-- Audit trail
-------------------------------------------------------------------------------

CREATE TABLE opsflags.audit_log (
    id               bigserial PRIMARY KEY,
    occurred_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor            text NOT NULL,
    role             text NOT NULL,
    action           text NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text,
    table_name       text,
    old_values       jsonb,
    new_values       jsonb,
    client_addr      inet,
    application_name text,
    txid             bigint NOT NULL
);
-- BRIN: rows arrive in time order, and a B-tree here would cost every
-- audited write an index insertion.  Add your own index for lookups by
-- resource if you need them.
CREATE INDEX audit_log_occurred_at_idx ON opsflags.audit_log USING brin (occurred_at);
COMMENT ON TABLE opsflags.audit_log IS
  'Append-only record of every change to flags, configuration, deployments and audited application tables';
SELECT pg_catalog.pg_extension_config_dump('opsflags.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.audit_log_id_seq', '');

CREATE FUNCTION opsflags.audit_trigger()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_trigger';
COMMENT ON FUNCTION opsflags.audit_trigger() IS
  'Records row changes in opsflags.audit_log (FOR EACH ROW, plus FOR EACH STATEMENT to write them); arguments: resource_type [, id_column [, redact_column, when_column]]';

CREATE FUNCTION opsflags.audit_log_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_log_guard';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON opsflags.audit_log
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_log_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON opsflags.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_log_guard();
ALTER TABLE opsflags.audit_log ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE opsflags.audit_log ENABLE ALWAYS TRIGGER append_only_truncate;

CREATE FUNCTION opsflags.purge_audit_log(before timestamptz)
RETURNS bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_purge_audit_log';
COMMENT ON FUNCTION opsflags.purge_audit_log(timestamptz) IS
  'Superusers: delete audit rows older than before; the purge itself is audited';

-- The extension's own tables are audited from install on.  Row triggers
-- buffer the changes; the statement trigger (after them) writes the buffer
-- and records TRUNCATE.
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('environment', 'name');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('feature_flag', 'flag_key');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('flag_config');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('config', 'config_key', 'config_value', 'is_sensitive');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('environment');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('feature_flag');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('flag_config');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('config');

-- Any application table.
CREATE FUNCTION opsflags.audit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_class c WHERE c.oid = target);
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER opsflags_audit AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, name);
    EXECUTE format('CREATE TRIGGER opsflags_audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, name);
END
$$;
COMMENT ON FUNCTION opsflags.audit_table(regclass) IS 'Record every change to the table in opsflags.audit_log';

CREATE FUNCTION opsflags.unaudit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS opsflags_audit ON %s', target);
    EXECUTE format('DROP TRIGGER IF EXISTS opsflags_audit_statement ON %s', target);
END
$$;
COMMENT ON FUNCTION opsflags.unaudit_table(regclass) IS 'Stop recording changes to the table';

-------------------------------------------------------------------------------
-- Maintenance mode: the truth is config system.maintenance_mode ('all');
-- enforcement (C, shared memory) is told when a transaction changes it.
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.maintenance_config_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_maintenance_config_changed';

CREATE TRIGGER maintenance_config_changed
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.maintenance_config_changed();
CREATE TRIGGER maintenance_config_changed_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.maintenance_config_changed();
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER maintenance_config_changed;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER maintenance_config_changed_truncate;

CREATE FUNCTION opsflags.maintenance_enforced()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_maintenance_enforced';
COMMENT ON FUNCTION opsflags.maintenance_enforced() IS
  'true when this server enforces maintenance mode (opsflags is in shared_preload_libraries)';

CREATE FUNCTION opsflags.is_maintenance_mode()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(opsflags.config_get('system.maintenance_mode', 'all') = 'true'::jsonb, false) $$;
COMMENT ON FUNCTION opsflags.is_maintenance_mode() IS 'true while maintenance mode is on';

CREATE FUNCTION opsflags.set_maintenance_mode(enabled boolean, updated_by text DEFAULT session_user)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM opsflags.config_set('system.maintenance_mode', to_jsonb(enabled), updated_by, 'all',
                                'Maintenance mode: writes outside schema opsflags are refused while true');
    IF NOT opsflags.maintenance_enforced() THEN
        RAISE WARNING 'maintenance mode is recorded but not enforced on this server'
            USING DETAIL = 'Enforcement needs opsflags in shared_preload_libraries.',
                  HINT = 'Add opsflags to shared_preload_libraries and restart the server.';
    END IF;
END
$$;
COMMENT ON FUNCTION opsflags.set_maintenance_mode(boolean, text) IS
  'Turn maintenance mode on or off (takes effect for every session at commit)';

-------------------------------------------------------------------------------
-- Privileges: any role evaluates flags, reads non-sensitive configuration
-- (config_get, config_all); opsflags_admin does the rest.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags.validate_config_row(), opsflags.invalidate_cache(), opsflags.notify_config_change(),
    opsflags.config_set(text, jsonb, text, text, text, boolean),
    opsflags.config_delete(text, text),
    opsflags.audit_trigger(), opsflags.audit_log_guard(),
    opsflags.purge_audit_log(timestamptz),
    opsflags.audit_table(regclass), opsflags.unaudit_table(regclass),
    opsflags.maintenance_config_changed(),
    opsflags.set_maintenance_mode(boolean, text)
FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON
    opsflags.environments, opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.app_config
TO opsflags_admin;
GRANT SELECT ON opsflags.audit_log TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[]),
    opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.archive_flag(text),
    opsflags.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_feature_flag(text, text),
    opsflags.get_all_feature_flags(text, boolean),
    opsflags.config_set(text, jsonb, text, text, text, boolean),
    opsflags.config_delete(text, text),
    opsflags.audit_trigger(),
    opsflags.audit_table(regclass), opsflags.unaudit_table(regclass),
    opsflags.set_maintenance_mode(boolean, text)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Deployments
-------------------------------------------------------------------------------

CREATE TABLE opsflags.deployment_history (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version         text NOT NULL CONSTRAINT version_not_blank CHECK (version ~ '\S'),
    environment     text NOT NULL REFERENCES opsflags.environments (name) ON UPDATE CASCADE,
    status          text NOT NULL DEFAULT 'deployed'
                    CONSTRAINT status_known CHECK (status IN ('deployed', 'rolled_back')),
    deployed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    deployed_by     text NOT NULL DEFAULT session_user,
    changelog       text,
    migration_notes text,
    commit_sha      text,
    rollback_to     text,
    rollback_at     timestamptz,
    rollback_reason text,
    CONSTRAINT rollback_recorded CHECK ((status = 'rolled_back') = (rollback_at IS NOT NULL))
);
CREATE INDEX deployment_history_environment_idx
    ON opsflags.deployment_history (environment, deployed_at DESC);
COMMENT ON TABLE opsflags.deployment_history IS 'Deployments and rollbacks, newest first per environment';
SELECT pg_catalog.pg_extension_config_dump('opsflags.deployment_history', '');

CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.deployment_history
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('deployment');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.deployment_history
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('deployment');

CREATE FUNCTION opsflags.notify_deployment()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'INSERT' THEN 'deployment.recorded' ELSE 'deployment.rolled_back' END,
        'key', NEW.version, 'environment', NEW.environment, 'version', NEW.version,
        'id', NEW.id, 'status', NEW.status)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_deployment AFTER INSERT OR UPDATE ON opsflags.deployment_history
    FOR EACH ROW EXECUTE FUNCTION opsflags.notify_deployment();

CREATE FUNCTION opsflags.record_deployment(
    version         text,
    environment     text,
    changelog       text DEFAULT NULL,
    deployed_by     text DEFAULT session_user,
    migration_notes text DEFAULT NULL,
    commit_sha      text DEFAULT NULL)
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
    PERFORM opsflags.resolve_environment(environment);
    INSERT INTO opsflags.deployment_history AS d
        (version, environment, changelog, deployed_by, migration_notes, commit_sha)
    VALUES (version, environment, changelog, coalesce(deployed_by, session_user), migration_notes, commit_sha)
    RETURNING d.id INTO new_id;
    PERFORM opsflags.config_set('app_version', to_jsonb(version), coalesce(deployed_by, session_user),
                                environment, 'Deployed version (record_deployment)');
    -- JSON null when not given: the previous deployment's commit no longer applies.
    PERFORM opsflags.config_set('commit_sha', coalesce(to_jsonb(commit_sha), 'null'::jsonb),
                                coalesce(deployed_by, session_user), environment,
                                'Deployed commit (record_deployment)');
    RETURN new_id;
END
$$;

CREATE FUNCTION opsflags.record_rollback(deployment_id uuid, target_version text, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d opsflags.deployment_history;
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
    UPDATE opsflags.deployment_history h
    SET status = 'rolled_back', rollback_to = target_version, rollback_at = now(), rollback_reason = reason
    WHERE h.id = deployment_id;
    PERFORM opsflags.config_set('app_version', to_jsonb(target_version), session_user, d.environment,
                                'Deployed version (record_rollback)');
END
$$;

CREATE FUNCTION opsflags.get_deployment_history(environment text DEFAULT NULL)
RETURNS SETOF opsflags.deployment_history
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM opsflags.deployment_history h
    WHERE get_deployment_history.environment IS NULL OR h.environment = get_deployment_history.environment
    ORDER BY h.deployed_at DESC, h.id
$$;

CREATE FUNCTION opsflags.get_latest_deployment(environment text)
RETURNS opsflags.deployment_history
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM opsflags.deployment_history h
    WHERE h.environment = get_latest_deployment.environment AND h.status = 'deployed'
    ORDER BY h.deployed_at DESC
    LIMIT 1
$$;

REVOKE ALL ON FUNCTION
    opsflags.notify_deployment(),
    opsflags.record_deployment(text, text, text, text, text, text),
    opsflags.record_rollback(uuid, text, text),
    opsflags.get_deployment_history(text),
    opsflags.get_latest_deployment(text)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON opsflags.deployment_history TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.record_deployment(text, text, text, text, text, text),
    opsflags.record_rollback(uuid, text, text),
    opsflags.get_deployment_history(text),
    opsflags.get_latest_deployment(text)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Health
-------------------------------------------------------------------------------

CREATE TABLE opsflags.system_health (
    id                  bigserial PRIMARY KEY,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    status              text NOT NULL,
    source              text NOT NULL,
    active_connections  bigint,
    idle_connections    bigint,
    total_connections   bigint,
    database_size_bytes bigint,
    largest_tables      jsonb,
    avg_query_time_ms   double precision,
    slow_query_count    bigint,
    cache_hit_rate      double precision,
    pending_jobs        bigint,
    failed_jobs         bigint,
    errors_last_hour    bigint,
    metrics             jsonb
);
CREATE INDEX system_health_recorded_at_idx ON opsflags.system_health USING brin (recorded_at);
COMMENT ON TABLE opsflags.system_health IS
  'Health samples: one row per check_system_health() call (and, later, per sampler cycle)';
SELECT pg_catalog.pg_extension_config_dump('opsflags.system_health', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.system_health_id_seq', '');

CREATE FUNCTION opsflags.health_status()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_health_status';
COMMENT ON FUNCTION opsflags.health_status() IS
  'Health of database, cache, storage and queue with the aggregate status; never raises';

CREATE FUNCTION opsflags.health_aggregate(statuses text[])
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_health_aggregate';
COMMENT ON FUNCTION opsflags.health_aggregate(text[]) IS
  'Aggregate component statuses: any unhealthy -> unhealthy, else any degraded -> degraded, else healthy';

CREATE FUNCTION opsflags.check_system_health()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_check_system_health';
COMMENT ON FUNCTION opsflags.check_system_health() IS
  'Summary (status, database size and connections, errors last hour, version) recorded in opsflags.system_health';

CREATE FUNCTION opsflags.errors_last_hour()
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_errors_last_hour_sql';
COMMENT ON FUNCTION opsflags.errors_last_hour() IS
  'ERROR, FATAL and PANIC reports of the server in the last 60 minutes (NULL without shared_preload_libraries)';

CREATE FUNCTION opsflags.run_startup_checks()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    errors    text[] := '{}';
    database  boolean := false;
    settings  boolean := true;
    tables    boolean := true;
    name      text;
    own       constant text[] := '{opsflags.environments,opsflags.feature_flags,opsflags.feature_flag_configs,'
                                 'opsflags.app_config,opsflags.audit_log,opsflags.deployment_history,'
                                 'opsflags.system_health}';
BEGIN
    BEGIN
        PERFORM 1;
        database := true;
    EXCEPTION WHEN OTHERS THEN
        errors := errors || ('database is not answering queries: ' || SQLERRM);
    END;

    FOR name IN
        SELECT btrim(s) FROM regexp_split_to_table(coalesce(current_setting('opsflags.required_settings', true), ''), ',') s
        WHERE btrim(s) <> ''
    LOOP
        IF coalesce(current_setting(name, true), '') = '' THEN
            settings := false;
            errors := errors || format('setting "%s" is empty or unknown: set it in postgresql.conf, '
                                       'with ALTER SYSTEM, or with ALTER DATABASE/ROLE ... SET', name);
        END IF;
    END LOOP;

    FOREACH name IN ARRAY own LOOP
        IF to_regclass(name) IS NULL THEN
            tables := false;
            errors := errors || format('opsflags table "%s" is missing: run ALTER EXTENSION opsflags UPDATE, '
                                       'or drop and create the extension', name);
        END IF;
    END LOOP;
    FOR name IN
        SELECT btrim(s) FROM regexp_split_to_table(coalesce(current_setting('opsflags.required_tables', true), ''), ',') s
        WHERE btrim(s) <> ''
    LOOP
        IF to_regclass(name) IS NULL THEN
            tables := false;
            errors := errors || format('required table "%s" does not exist: run the migrations that create it '
                                       '(or remove it from opsflags.required_tables)', name);
        END IF;
    END LOOP;

    RETURN jsonb_build_object(
        'success', cardinality(errors) = 0,
        'errors', to_jsonb(errors),
        'checks', jsonb_build_object('database', database, 'settings', settings, 'tables', tables));
END
$$;
COMMENT ON FUNCTION opsflags.run_startup_checks() IS
  'Database reachable, opsflags.required_settings non-empty, opsflags'' and opsflags.required_tables present: every failure listed';

REVOKE ALL ON FUNCTION opsflags.check_system_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.check_system_health() TO opsflags_admin;
GRANT SELECT ON opsflags.system_health TO opsflags_admin;

-------------------------------------------------------------------------------
-- Sampling, retention and alerts (run by the background worker "opsflags
-- sampler"; callable by admins too)
-------------------------------------------------------------------------------

CREATE TABLE opsflags.alerts (
    id          bigserial PRIMARY KEY,
    type        text NOT NULL,
    severity    text NOT NULL CONSTRAINT severity_known CHECK (severity IN ('info', 'warning', 'critical')),
    title       text NOT NULL,
    message     text NOT NULL,
    component   text NOT NULL,
    value       double precision,
    threshold   double precision,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved    boolean NOT NULL DEFAULT false,
    resolved_at timestamptz,
    resolved_by text,
    CONSTRAINT resolution_recorded CHECK (resolved = (resolved_at IS NOT NULL))
);
-- One open alert per type: an episode raises one alert.
CREATE UNIQUE INDEX alerts_one_open_per_type ON opsflags.alerts (type) WHERE NOT resolved;
COMMENT ON TABLE opsflags.alerts IS
  'Raised when a sample crosses a threshold of config alerts.thresholds, resolved when it is back';
SELECT pg_catalog.pg_extension_config_dump('opsflags.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.alerts_id_seq', '');

CREATE FUNCTION opsflags.notify_alert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'INSERT' THEN 'alert.raised' ELSE 'alert.resolved' END,
        'key', NEW.type, 'id', NEW.id, 'severity', NEW.severity, 'component', NEW.component)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_alert AFTER INSERT OR UPDATE OF resolved ON opsflags.alerts
    FOR EACH ROW EXECUTE FUNCTION opsflags.notify_alert();

CREATE FUNCTION opsflags.resolve_alert(alert_id bigint, resolved_by text DEFAULT session_user)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a opsflags.alerts;
BEGIN
    SELECT * INTO a FROM opsflags.alerts WHERE id = alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', alert_id USING ERRCODE = 'undefined_object';
    END IF;
    IF a.resolved THEN
        RAISE EXCEPTION 'alert % is already resolved', alert_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Resolved by %s at %s.', a.resolved_by, a.resolved_at);
    END IF;
    UPDATE opsflags.alerts
    SET resolved = true, resolved_at = clock_timestamp(),
        resolved_by = coalesce(resolve_alert.resolved_by, session_user)
    WHERE id = alert_id;
END
$$;

-- Raise (once per episode) or resolve the alert of one type.
CREATE FUNCTION opsflags.evaluate_alert(alert_type text, crossed boolean, severity text, title text,
                                        message text, component text, value double precision,
                                        threshold double precision)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF crossed THEN
        INSERT INTO opsflags.alerts (type, severity, title, message, component, value, threshold)
        VALUES (alert_type, severity, title, message, component, value, threshold)
        ON CONFLICT (type) WHERE NOT resolved DO NOTHING;
    ELSIF crossed IS NOT NULL THEN
        UPDATE opsflags.alerts
        SET resolved = true, resolved_at = clock_timestamp(), resolved_by = 'opsflags sampler'
        WHERE type = alert_type AND NOT resolved;
    END IF;
    RETURN crossed;
END
$$;

-- One sample: a system_health row with every field, then the alerts.
-- Returns the row's id.
CREATE FUNCTION opsflags.take_sample(source text DEFAULT 'sampler')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          jsonb := coalesce(opsflags.config_get('alerts.thresholds', 'all'), '{}');
    q          text := opsflags.config_get('health.queue_query', 'all') #>> '{}';
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

    -- The admin's queue query, guarded: a failure is recorded, not raised.
    IF q IS NULL THEN
        m := m || '{"queue": "not configured"}';
    ELSE
        BEGIN
            EXECUTE format('SELECT q.pending::bigint, q.failed::bigint FROM (%s) AS q(pending, failed)', q)
            INTO pending, failed;
        EXCEPTION WHEN OTHERS THEN
            m := m || jsonb_build_object('queue', 'failed: ' || SQLERRM);
            RAISE WARNING 'opsflags sampler: queue query failed: %', SQLERRM;
        END;
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

-- Delete samples older than retention, at most batch rows; returns how many.
CREATE FUNCTION opsflags.apply_retention(retention interval, batch integer DEFAULT 1000)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH doomed AS (
        SELECT h.id FROM opsflags.system_health h
        WHERE h.recorded_at < clock_timestamp() - retention
        ORDER BY h.id LIMIT batch)
    , gone AS (DELETE FROM opsflags.system_health h USING doomed d WHERE h.id = d.id RETURNING 1)
    SELECT count(*) FROM gone
$$;

CREATE FUNCTION opsflags.worker_status()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_worker_status';
COMMENT ON FUNCTION opsflags.worker_status() IS
  'Whether the opsflags sampler runs, its state, last sample and last error';

REVOKE ALL ON FUNCTION
    opsflags.notify_alert(), opsflags.resolve_alert(bigint, text),
    opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision),
    opsflags.take_sample(text), opsflags.apply_retention(interval, integer)
FROM PUBLIC;
GRANT SELECT ON opsflags.alerts TO opsflags_admin;
GRANT EXECUTE ON FUNCTION opsflags.resolve_alert(bigint, text), opsflags.take_sample(text),
    opsflags.apply_retention(interval, integer)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Variations: each environment serves its on variation (or a weighted split)
-- when the flag is on, its off variation when it is off.
-------------------------------------------------------------------------------

-- The variant algorithm is pinned per flag: a later algorithm gets a new
-- number and existing flags keep theirs, so nobody is re-bucketed.
ALTER TABLE opsflags.feature_flags
    ADD COLUMN variant_algorithm smallint NOT NULL DEFAULT 1
        CONSTRAINT variant_algorithm_known CHECK (variant_algorithm = 1);
ALTER TABLE opsflags.feature_flag_configs
    ADD COLUMN on_variation integer NOT NULL DEFAULT 0,
    ADD COLUMN off_variation integer NOT NULL DEFAULT 1,
    ADD COLUMN variation_weights jsonb;

-- Variation indexes and weights must fit the flag's variations.  Checked on
-- configs and, when variations change, on every config of the flag.
CREATE FUNCTION opsflags.check_variations(flag_key text, variations jsonb, on_variation integer,
                                          off_variation integer, weights jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := jsonb_array_length(variations);
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
    IF weights IS NOT NULL THEN
        IF jsonb_typeof(weights) <> 'array' OR jsonb_array_length(weights) <> n
           OR jsonb_path_exists(weights, 'strict $[*] ? (@.type() != "number" || @ < 0 || @.floor() != @)', '{}', true)
           OR (SELECT sum(w::numeric) FROM jsonb_array_elements_text(weights) w) <= 0 THEN
            RAISE EXCEPTION 'invalid variation weights for flag "%"', flag_key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Weights are an array of %s non-negative integers, one per variation, with a positive total.', n);
        END IF;
    END IF;
END
$$;

CREATE FUNCTION opsflags.validate_flag_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
    IF FOUND THEN
        PERFORM opsflags.check_variations(f.flag_key, f.variations, NEW.on_variation, NEW.off_variation,
                                          NEW.variation_weights);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_flag_config BEFORE INSERT OR UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags.validate_flag_config();

CREATE FUNCTION opsflags.validate_flag_variations()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.variations IS DISTINCT FROM OLD.variations THEN
        PERFORM opsflags.check_variations(NEW.flag_key, NEW.variations, c.on_variation, c.off_variation,
                                          c.variation_weights)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_flag_variations BEFORE UPDATE OF variations ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags.validate_flag_variations();

-- A new flag with a single variation is off on it too.
CREATE OR REPLACE FUNCTION opsflags.create_flag(
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
    vars jsonb := coalesce(variations, '[true, false]');
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT opsflags.is_valid_flag_key(flag_key) THEN
        RAISE EXCEPTION 'invalid flag key "%"', flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag key is 1 to 100 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.';
    END IF;
    IF jsonb_typeof(vars) <> 'array' OR jsonb_array_length(vars) = 0 THEN
        RAISE EXCEPTION 'variations of flag "%" must be a non-empty JSON array', flag_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, coalesce(flag_type, 'boolean'),
            vars, coalesce(tags, '{}'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment: on serves the first
    -- variation, off the second (the first when there is only one).
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
    SELECT new_id, e.name, 0, least(1, jsonb_array_length(vars) - 1) FROM opsflags.environments e;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group,variations}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at,on_variation,off_variation,variation_weights,segments}';
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
            rollout_group = CASE WHEN updates ? 'rollout_group' THEN updates->>'rollout_group' ELSE f.rollout_group END,
            variations    = CASE WHEN updates ? 'variations' THEN updates->'variations' ELSE f.variations END
        WHERE f.id = fid;
    END IF;

    IF updates ?| config_fields THEN
        INSERT INTO opsflags.feature_flag_configs (flag_id, environment, off_variation)
        SELECT fid, env, least(1, jsonb_array_length(f.variations) - 1)
        FROM opsflags.feature_flags f WHERE f.id = fid
        ON CONFLICT DO NOTHING;
        UPDATE opsflags.feature_flag_configs c SET
            is_enabled         = CASE WHEN updates ? 'is_enabled' THEN (updates->'is_enabled')::boolean ELSE c.is_enabled END,
            enabled_for_users  = CASE WHEN updates ? 'enabled_for_users' THEN updates->'enabled_for_users' ELSE c.enabled_for_users END,
            enabled_for_roles  = CASE WHEN updates ? 'enabled_for_roles' THEN updates->'enabled_for_roles' ELSE c.enabled_for_roles END,
            enabled_percentage = CASE WHEN updates ? 'enabled_percentage' THEN (updates->'enabled_percentage')::integer ELSE c.enabled_percentage END,
            enable_at          = CASE WHEN updates ? 'enable_at' THEN (updates->>'enable_at')::timestamptz ELSE c.enable_at END,
            disable_at         = CASE WHEN updates ? 'disable_at' THEN (updates->>'disable_at')::timestamptz ELSE c.disable_at END,
            on_variation       = CASE WHEN updates ? 'on_variation' THEN (updates->'on_variation')::integer ELSE c.on_variation END,
            off_variation      = CASE WHEN updates ? 'off_variation' THEN (updates->'off_variation')::integer ELSE c.off_variation END,
            variation_weights  = CASE WHEN updates ? 'variation_weights' THEN nullif(updates->'variation_weights', 'null') ELSE c.variation_weights END,
            segments           = CASE WHEN updates ? 'segments' THEN updates->'segments' ELSE c.segments END,
            updated_by         = session_user
        WHERE c.flag_id = fid AND c.environment = env;
    END IF;
END
$$;

CREATE FUNCTION opsflags.feature_value(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_value';
COMMENT ON FUNCTION opsflags.feature_value(text, text, text) IS
  'The variation served to a user: on (or a weighted split) when the flag is on for them, off when not; NULL for an unknown flag';

CREATE FUNCTION opsflags.feature_explain(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_explain';
COMMENT ON FUNCTION opsflags.feature_explain(text, text, text) IS
  'Why feature_enabled answers as it does: enabled, value, reason, bucket, environment, flag_version';

CREATE FUNCTION opsflags.variant_bucket(group_id text, user_id text, total_weight integer)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_variant_bucket';
COMMENT ON FUNCTION opsflags.variant_bucket(text, text, integer) IS
  'Unleash variant hash: murmur3_x86_32(group_id || '':'' || user_id, seed 86028157) % total_weight + 1';

REVOKE ALL ON FUNCTION
    opsflags.check_variations(text, jsonb, integer, integer, jsonb),
    opsflags.validate_flag_config(), opsflags.validate_flag_variations()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.check_variations(text, jsonb, integer, integer, jsonb) TO opsflags_admin;

-------------------------------------------------------------------------------
-- Segments (evaluation step 7) and prerequisites (step 4)
-------------------------------------------------------------------------------

CREATE TABLE opsflags.user_segments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    segment_key text NOT NULL
                CONSTRAINT user_segments_segment_key_key UNIQUE
                CONSTRAINT segment_key_format CHECK (opsflags.is_valid_flag_key(segment_key)),
    name        text NOT NULL,
    description text,
    user_ids    jsonb NOT NULL DEFAULT '[]'
                CONSTRAINT user_ids_is_string_array CHECK (opsflags.is_string_array(user_ids)),
    roles       jsonb NOT NULL DEFAULT '[]'
                CONSTRAINT roles_is_string_array CHECK (opsflags.is_string_array(roles)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE opsflags.user_segments IS 'Named sets of user ids and roles that flag configs target';
SELECT pg_catalog.pg_extension_config_dump('opsflags.user_segments', '');

ALTER TABLE opsflags.feature_flag_configs
    ADD COLUMN segments jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT segments_is_string_array CHECK (opsflags.is_string_array(segments));

CREATE TABLE opsflags.flag_prerequisites (
    flag_id         uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    prerequisite_id uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    variation       integer CONSTRAINT variation_not_negative CHECK (variation >= 0),
    PRIMARY KEY (flag_id, prerequisite_id),
    CONSTRAINT not_its_own_prerequisite CHECK (flag_id <> prerequisite_id)
);
COMMENT ON TABLE opsflags.flag_prerequisites IS
  'A flag is on for a user only if each prerequisite is on for them (and, when variation is set, serves that variation)';
SELECT pg_catalog.pg_extension_config_dump('opsflags.flag_prerequisites', '');

-- Prerequisite chains are at most this deep; evaluation stops there too.
CREATE FUNCTION opsflags.max_prerequisite_depth()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 8';

-- Refuse cycles and chains deeper than max_prerequisite_depth(), and
-- variations the prerequisite does not have.
CREATE FUNCTION opsflags.validate_prerequisite()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cycle text;
    depth integer;
    nvar  integer;
BEGIN
    WITH RECURSIVE chain(id, path, depth) AS (
        SELECT NEW.prerequisite_id, ARRAY[NEW.flag_id, NEW.prerequisite_id], 1
        UNION ALL
        SELECT p.prerequisite_id, c.path || p.prerequisite_id, c.depth + 1
        FROM chain c JOIN opsflags.flag_prerequisites p ON p.flag_id = c.id
        WHERE NOT p.prerequisite_id = ANY (c.path[2:]) AND c.depth <= opsflags.max_prerequisite_depth()
    )
    SELECT (SELECT string_agg(f.flag_key, ' -> ' ORDER BY o)
            FROM unnest(c.path) WITH ORDINALITY u(id, o) JOIN opsflags.feature_flags f ON f.id = u.id)
    INTO cycle FROM chain c WHERE c.id = NEW.flag_id LIMIT 1;
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION 'prerequisite would create a cycle: %', cycle
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Depth of the chains through the new edge: below the flag plus above it.
    WITH RECURSIVE down(id, d) AS (
        SELECT NEW.prerequisite_id, 1
        UNION ALL
        SELECT p.prerequisite_id, down.d + 1 FROM down JOIN opsflags.flag_prerequisites p ON p.flag_id = down.id
        WHERE down.d <= opsflags.max_prerequisite_depth()
    ), up(id, d) AS (
        SELECT NEW.flag_id, 0
        UNION ALL
        SELECT p.flag_id, up.d + 1 FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
        WHERE up.d <= opsflags.max_prerequisite_depth()
    )
    SELECT (SELECT max(d) FROM down) + (SELECT max(d) FROM up) INTO depth;
    IF depth > opsflags.max_prerequisite_depth() THEN
        RAISE EXCEPTION 'prerequisite chain would be % deep', depth
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Chains of prerequisites are at most %s deep.', opsflags.max_prerequisite_depth());
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
CREATE TRIGGER validate_prerequisite BEFORE INSERT OR UPDATE ON opsflags.flag_prerequisites
    FOR EACH ROW EXECUTE FUNCTION opsflags.validate_prerequisite();

-- Segments named by a config must exist.
CREATE OR REPLACE FUNCTION opsflags.validate_flag_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
    missing text;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
    IF FOUND THEN
        PERFORM opsflags.check_variations(f.flag_key, f.variations, NEW.on_variation, NEW.off_variation,
                                          NEW.variation_weights);
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

-- Cache invalidation, audit and NOTIFY for the new tables, as for the others.
CREATE TRIGGER invalidate_flag_cache AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate AFTER TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate AFTER TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('segment', 'segment_key');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('segment');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger('prerequisite');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('prerequisite');

CREATE FUNCTION opsflags.create_segment(segment_key text, name text, user_ids jsonb DEFAULT '[]',
                                        roles jsonb DEFAULT '[]', description text DEFAULT NULL)
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
    INSERT INTO opsflags.user_segments AS s (segment_key, name, user_ids, roles, description)
    VALUES (segment_key, coalesce(name, segment_key), coalesce(user_ids, '[]'), coalesce(roles, '[]'), description)
    RETURNING s.id INTO new_id;
    RETURN new_id;
END
$$;

CREATE FUNCTION opsflags.update_segment(segment_key text, user_ids jsonb DEFAULT NULL, roles jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.user_segments s
    SET user_ids = coalesce(update_segment.user_ids, s.user_ids),
        roles = coalesce(update_segment.roles, s.roles),
        updated_at = now()
    WHERE s.segment_key = update_segment.segment_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'segment "%" does not exist', segment_key USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

CREATE FUNCTION opsflags.add_prerequisite(flag_key text, prerequisite_key text, variation integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, variation)
    VALUES (opsflags.flag_id(flag_key), opsflags.flag_id(prerequisite_key), variation)
    ON CONFLICT (flag_id, prerequisite_id) DO UPDATE SET variation = EXCLUDED.variation;
END
$$;

CREATE FUNCTION opsflags.remove_prerequisite(flag_key text, prerequisite_key text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM opsflags.flag_prerequisites p
    WHERE p.flag_id = opsflags.flag_id(flag_key) AND p.prerequisite_id = opsflags.flag_id(prerequisite_key);
    RETURN FOUND;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags.validate_prerequisite(),
    opsflags.create_segment(text, text, jsonb, jsonb, text), opsflags.update_segment(text, jsonb, jsonb),
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON opsflags.user_segments, opsflags.flag_prerequisites TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.create_segment(text, text, jsonb, jsonb, text), opsflags.update_segment(text, jsonb, jsonb),
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- LaunchDarkly client format: the evaluated flags of an environment as
-- {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}},
-- and the import of such a document.
-------------------------------------------------------------------------------

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
    -- Evaluate (for no particular user) in that environment.
    PERFORM set_config('opsflags.environment', env, true);
    SELECT coalesce(jsonb_object_agg(f.flag_key, jsonb_build_object(
               'flagVersion', f.version,
               'trackEvents', false,
               'value', opsflags.feature_value(f.flag_key),
               'variation', CASE WHEN opsflags.feature_enabled(f.flag_key) THEN c.on_variation ELSE c.off_variation END,
               'version', c.version) ORDER BY f.flag_key), '{}')
    INTO doc
    FROM opsflags.feature_flags f
    JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
    WHERE NOT f.archived;
    PERFORM set_config('opsflags.environment', prev, true);
    RETURN doc;
END
$$;
COMMENT ON FUNCTION opsflags.flags_for_environment(text) IS
  'The environment''s flags in LaunchDarkly''s client format: {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}}';

CREATE FUNCTION opsflags.import_launchdarkly(environment text, document jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    item     record;
    spec     jsonb;
    f        opsflags.feature_flags;
    c        opsflags.feature_flag_configs;
    vars     jsonb;
    idx      integer;
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
           OR (item.value ? 'version' AND jsonb_typeof(item.value -> 'version') <> 'number')
           OR (item.value ? 'flagVersion' AND jsonb_typeof(item.value -> 'flagVersion') <> 'number')
           OR (item.value ? 'variation' AND (jsonb_typeof(item.value -> 'variation') <> 'number'
                                             OR (item.value ->> 'variation')::numeric < 0)) THEN
            RAISE EXCEPTION 'malformed LaunchDarkly flag "%"', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each flag is an object with a "value" and optional numeric "version" and "flagVersion".';
        END IF;
    END LOOP;

    FOR item IN SELECT key, value FROM jsonb_each(document) ORDER BY key LOOP
        spec := item.value;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = item.key;
        IF NOT FOUND THEN
            -- A client document has the served value and its index, not the
            -- other variations: a non-boolean flag gets the value at that
            -- index and JSON nulls before it (so an export gives the same index).
            idx := coalesce((spec ->> 'variation')::integer, 0);
            vars := CASE WHEN jsonb_typeof(spec -> 'value') = 'boolean' THEN '[true, false]'::jsonb
                         ELSE (SELECT jsonb_agg(CASE WHEN i = idx THEN spec -> 'value' ELSE 'null'::jsonb END ORDER BY i)
                               FROM generate_series(0, greatest(idx, 0)) i) END;
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, version)
            VALUES (item.key, item.key,
                    CASE jsonb_typeof(spec -> 'value') WHEN 'boolean' THEN 'boolean' WHEN 'string' THEN 'string'
                         WHEN 'number' THEN 'number' ELSE 'json' END,
                    vars, coalesce((spec ->> 'flagVersion')::integer, 1))
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, e.name, 0, least(1, jsonb_array_length(vars) - 1) FROM opsflags.environments e
            WHERE e.name <> env;
            created := created || item.key;
        END IF;

        -- The served value must be one of the variations: the document's
        -- index when it holds that value, else the first that does.
        idx := NULL;
        IF f.variations -> ((spec ->> 'variation')::integer) = spec -> 'value' THEN
            idx := (spec ->> 'variation')::integer;
        ELSE
            SELECT o - 1 INTO idx FROM jsonb_array_elements(f.variations) WITH ORDINALITY v(val, o)
            WHERE v.val = spec -> 'value' ORDER BY o LIMIT 1;
        END IF;
        IF idx IS NULL THEN
            UPDATE opsflags.feature_flags ff SET variations = ff.variations || jsonb_build_array(spec -> 'value')
            WHERE ff.id = f.id RETURNING * INTO f;
            idx := jsonb_array_length(f.variations) - 1;
        END IF;

        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF NOT FOUND THEN
            -- Serving the value: on, on that variation.
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation, version)
            VALUES (f.id, env, true, idx, CASE WHEN idx = 0 THEN least(1, jsonb_array_length(f.variations) - 1) ELSE 0 END,
                    coalesce((spec ->> 'version')::integer, 1));
        ELSIF NOT c.is_enabled OR c.on_variation <> idx OR c.enabled_percentage NOT IN (0, 100)
              OR c.variation_weights IS NOT NULL OR c.enable_at IS NOT NULL OR c.disable_at IS NOT NULL THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = true, on_variation = idx, enabled_percentage = 0, variation_weights = NULL,
                enable_at = NULL, disable_at = NULL
            WHERE fc.flag_id = f.id AND fc.environment = env;
            IF NOT item.key = ANY (created) THEN
                changed := changed || item.key;
            END IF;
        ELSIF NOT item.key = ANY (created) THEN
            same := same || item.key;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created),
                              'changed', to_jsonb(changed), 'unchanged', to_jsonb(same));
END
$$;
COMMENT ON FUNCTION opsflags.import_launchdarkly(text, jsonb) IS
  'Load a LaunchDarkly client-format document into an environment: creates missing flags, makes each serve its value; idempotent';

REVOKE ALL ON FUNCTION opsflags.import_launchdarkly(text, jsonb), opsflags.flags_for_environment(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.import_launchdarkly(text, jsonb), opsflags.flags_for_environment(text)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Usage: evaluation counts per flag since the server started (shared memory)
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.flag_usage_counts(OUT flag_key text, OUT true_count bigint,
                                           OUT false_count bigint, OUT last_evaluated timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_flag_usage_counts';

CREATE VIEW opsflags.flag_usage AS
SELECT f.flag_key,
       coalesce(u.true_count, 0) AS true_count,
       coalesce(u.false_count, 0) AS false_count,
       u.last_evaluated,
       u.last_evaluated IS NULL
         OR u.last_evaluated < now() - make_interval(days =>
              coalesce((opsflags.config_get('flags.stale_after_days', 'all') #>> '{}')::integer, 30)) AS stale
FROM opsflags.feature_flags f
LEFT JOIN opsflags.flag_usage_counts() u ON u.flag_key = f.flag_key
WHERE NOT f.archived;
COMMENT ON VIEW opsflags.flag_usage IS
  'Evaluations per flag (true, false) and the last one, since the server started; stale: none for config flags.stale_after_days (30) days';
GRANT SELECT ON opsflags.flag_usage TO opsflags_admin;
REVOKE ALL ON FUNCTION opsflags.flag_usage_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.flag_usage_counts() TO opsflags_admin;

-------------------------------------------------------------------------------
-- Publishing flags to memcached (opt-in: opsflags.publish_to_memcached)
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.flags_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_flags_changed';

CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.flags_changed();

CREATE FUNCTION opsflags.published_flags(environment text)
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_published_flags';
COMMENT ON FUNCTION opsflags.published_flags(text) IS
  'The flag document published to memcached for an environment (key opsflags:flags:<environment>), or NULL';

REVOKE ALL ON FUNCTION opsflags.flags_changed(), opsflags.published_flags(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.published_flags(text) TO opsflags_admin;
