-- opsflags 0.2.0 -> 0.3.0: correctness, error and secrecy fixes. One section per
-- capability; a function redefined here replaces its 0.2.0 definition.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.3.0'" to load this file. \quit

-- ==== begin: flags (flag API validation, flag_type-checked variations, export/import fidelity, get_feature_flag, restore and delete, flag_usage) ====



-- ==== end: flags ====


-- ==== begin: evaluation (evaluation: environments, guard environment, evaluation-path limits) ====



-- ==== end: evaluation ====


-- ==== begin: deployments and health (deployments (failed, rollback of commit_sha), system_health columns) ====



-- ==== end: deployments and health ====


-- ==== begin: secrets (configuration secrets: sensitivity per key, queue query) ====



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



-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====



-- ==== end: dump and restore ====

