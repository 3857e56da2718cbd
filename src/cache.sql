/*
 * cache.sql
 *	  Cache invalidation: the trigger (C, cache.c) on every table that the
 *	  per-backend flag and configuration caches read.
 *
 * It queues a relcache invalidation of the table, which every backend's
 * caches listen for: sent at commit, applied locally at the end of the
 * statement, undone on rollback.  Row-level, because logical replication
 * apply fires only row triggers (repeats within a command are merged);
 * TRUNCATE has statement triggers only.  Enabled ALWAYS, so that changes
 * applied by logical replication (session_replication_role = replica)
 * invalidate too; no WHEN (NOT restoring()): the caches must follow
 * restored rows.
 */

CREATE FUNCTION opsflags_internal.invalidate_flag_cache()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_invalidate_flag_cache';

CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate
    AFTER TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
-- Cache invalidation, audit and NOTIFY for the new tables, as for the others.
CREATE TRIGGER invalidate_flag_cache AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate AFTER TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_flag_cache_truncate AFTER TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();
CREATE TRIGGER invalidate_cache_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.invalidate_flag_cache();

ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER invalidate_flag_cache;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER invalidate_flag_cache_truncate;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache_truncate;

REVOKE ALL ON FUNCTION opsflags_internal.invalidate_flag_cache() FROM PUBLIC;
