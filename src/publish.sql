/*
 * publish.sql
 *	  Publishing flags to memcached (C, publish.c): the triggers that note a
 *	  change of the flags, and published_flags().
 *
 * Publishing is switched on for the database (config
 * flags.publish_to_memcached, environment 'all'), and every committed change
 * counts, whichever session or logical replication apply worker made it: row
 * triggers (the apply worker fires no statement triggers but TRUNCATE's),
 * enabled ALWAYS.
 */

CREATE FUNCTION opsflags_internal.flags_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_flags_changed';

CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.environments'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.user_segments'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.flags_changed();
CREATE TRIGGER publish_flags_truncate AFTER TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.flags_changed();
-- Switching publishing on publishes the current state at once.
CREATE TRIGGER publish_flags AFTER INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW WHEN ((NOT opsflags.restoring('opsflags.app_config'))
                       AND (NEW.config_key = 'flags.publish_to_memcached' AND NEW.environment = 'all'))
    EXECUTE FUNCTION opsflags_internal.flags_changed();

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

CREATE FUNCTION opsflags.published_flags(environment text)
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_published_flags';
COMMENT ON FUNCTION opsflags.published_flags(text) IS
  'The flag document published to memcached for an environment (key opsflags:flags:<environment>), or NULL; publishing is on with config flags.publish_to_memcached = true';

REVOKE ALL ON FUNCTION opsflags_internal.flags_changed(), opsflags.published_flags(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.published_flags(text) TO opsflags_admin;
