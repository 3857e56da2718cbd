-- Deployments: recorded, rolled back, and reflected in config app_version.
\set SHOW_CONTEXT never
SELECT opsflags.record_deployment('1.4.0', 'staging', 'Checkout redesign', 'ci', 'adds orders.note', 'a1b2c3d') IS NOT NULL AS recorded;
SELECT opsflags.record_deployment('1.4.0', 'production', 'Checkout redesign', 'ci') IS NOT NULL AS recorded;
SELECT opsflags.record_deployment('1.5.0', 'production', 'Bulk schedules', 'ci', NULL, 'e4f5a6b') AS id \gset

-- Recording sets app_version (and commit_sha) for the environment.
SELECT opsflags.config_get('app_version', 'production') AS production_version,
       opsflags.config_get('commit_sha', 'production') AS production_sha,
       opsflags.config_get('app_version', 'staging') AS staging_version;

SELECT version, environment, status, deployed_by, changelog, commit_sha
FROM opsflags.get_deployment_history('production');
SELECT version, status FROM opsflags.get_latest_deployment('production');

-- Roll back: marks it, sets app_version to the target.
SELECT opsflags.record_rollback(:'id', '1.4.0', 'error rate up');
SELECT version, status, rollback_to, rollback_reason, rollback_at IS NOT NULL AS rolled_back_at
FROM opsflags.deployment_history WHERE id = :'id';
SELECT opsflags.config_get('app_version', 'production') AS production_version;
SELECT version, status FROM opsflags.get_latest_deployment('production');
SELECT count(*) AS all_environments FROM opsflags.get_deployment_history();

-- The commit goes back with the version: 1.4.0 went to production without a
-- commit, so none is left; in staging 1.4.0's own commit comes back.
SELECT opsflags.config_get('commit_sha', 'production') AS production_sha,
       h ->> 'version' AS health_version, h -> 'commit_sha' AS health_sha
FROM opsflags.health_status() h;
SELECT opsflags.record_deployment('1.5.0', 'staging', commit_sha => 'e4f5a6b') AS staging_id \gset
SELECT opsflags.record_rollback(:'staging_id', '1.4.0', 'same in staging');
SELECT opsflags.config_get('app_version', 'staging') AS staging_version,
       opsflags.config_get('commit_sha', 'staging') AS staging_sha;
-- A target never deployed here: no commit is known.
SELECT opsflags.record_deployment('1.5.1', 'staging', commit_sha => 'f00d123') AS staging_id \gset
SELECT opsflags.record_rollback(:'staging_id', '1.3.9', 'older than history');
SELECT opsflags.config_get('app_version', 'staging') AS staging_version,
       opsflags.config_get('commit_sha', 'staging') AS staging_sha;

-- No live deployment: no row (not a row of NULLs).
SELECT count(*) AS development_latest FROM opsflags.get_latest_deployment('development');
SELECT count(*) AS moon_latest FROM opsflags.get_latest_deployment('moon');
SELECT opsflags.record_rollback(opsflags.record_deployment('0.1.0', 'development'), '0.0.9', 'only one');
SELECT count(*) AS development_latest_after_rollback FROM opsflags.get_latest_deployment('development');

-- A failed deployment is recorded; app_version, commit_sha and the latest
-- deployment stay what went live.
SELECT opsflags.record_deployment('1.6.0', 'production', 'Broken build', 'ci', NULL, 'bad0001', 'failed') AS failed_id \gset
SELECT version, status, commit_sha FROM opsflags.deployment_history WHERE id = :'failed_id';
SELECT opsflags.config_get('app_version', 'production') AS production_version,
       opsflags.config_get('commit_sha', 'production') AS production_sha;
SELECT version, status FROM opsflags.get_latest_deployment('production');
SELECT version, status FROM opsflags.get_deployment_history('production');
SELECT opsflags.record_deployment('1.6.1', 'production', status => 'success', commit_sha => 'c0ffee1') IS NOT NULL AS recorded;
SELECT opsflags.config_get('app_version', 'production') AS production_version,
       opsflags.config_get('commit_sha', 'production') AS production_sha;

-- Every step is audited.
SELECT action, resource_type, new_values ->> 'version' AS version, new_values ->> 'status' AS status
FROM opsflags.audit_log WHERE resource_type = 'deployment' ORDER BY id;

-- Bad input: clear errors, nothing written.
\set VERBOSITY terse
SELECT opsflags.record_rollback(:'id', '1.3.0', 'again');
\set VERBOSITY default
SELECT opsflags.record_rollback('00000000-0000-0000-0000-000000000000', '1.4.0', 'no such');
SELECT opsflags.record_rollback(NULL, '1.4.0');
SELECT opsflags.record_deployment('', 'production');
SELECT opsflags.record_deployment('  ', 'production');
SELECT opsflags.record_deployment(NULL, 'production');
SELECT opsflags.record_deployment('2.0.0', 'moon');
SELECT opsflags.record_deployment('2.0.0', NULL);
SELECT opsflags.record_deployment('2.0.0', 'production', status => 'rolled_back');
SELECT opsflags.record_deployment('2.0.0', 'production', status => 'deployed');
SELECT opsflags.record_deployment('2.0.0', 'production', status => NULL);
SELECT opsflags.record_rollback(:'failed_id', '1.5.0', 'never live');
\set VERBOSITY terse
INSERT INTO opsflags.deployment_history (version, environment, status) VALUES ('2.0.0', 'production', 'deployed');
\set VERBOSITY default
SELECT count(*) AS deployments, opsflags.config_get('app_version', 'production') AS production_version
FROM opsflags.deployment_history;
