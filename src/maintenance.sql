/*
 * maintenance.sql
 *	  Maintenance mode: the truth is config system.maintenance_mode ('all');
 *	  enforcement (C, maintenance.c, shared memory) is told when a
 *	  transaction changes it, and refuses table rewrites too.
 */

CREATE FUNCTION opsflags_internal.maintenance_config_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_maintenance_config_changed';
CREATE TRIGGER maintenance_config_changed
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.maintenance_config_changed();
CREATE TRIGGER maintenance_config_changed_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.maintenance_config_changed();
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

-- An ALTER TABLE that rewrites a table is a write.
CREATE FUNCTION opsflags_internal.maintenance_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_maintenance_table_rewrite';
COMMENT ON FUNCTION opsflags_internal.maintenance_table_rewrite() IS
  'Refuses an ALTER TABLE that rewrites a table outside schema opsflags while maintenance mode is on';
CREATE EVENT TRIGGER opsflags_maintenance_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags_internal.maintenance_table_rewrite();
ALTER EVENT TRIGGER opsflags_maintenance_table_rewrite ENABLE ALWAYS;

REVOKE ALL ON FUNCTION
    opsflags_internal.maintenance_config_changed(), opsflags_internal.maintenance_table_rewrite(),
    opsflags.set_maintenance_mode(boolean, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.set_maintenance_mode(boolean, text) TO opsflags_admin;
