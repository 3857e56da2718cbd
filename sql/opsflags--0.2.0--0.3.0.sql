-- opsflags 0.2.0 -> 0.3.0: correctness, error and secrecy fixes. One section per
-- capability; a function redefined here replaces its 0.2.0 definition.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.3.0'" to load this file. \quit

-- ==== begin: flags (flag API validation, flag_type-checked variations, export/import fidelity, get_feature_flag, restore and delete, flag_usage) ====



-- ==== end: flags ====


-- ==== begin: evaluation (evaluation: environments, guard environment, evaluation-path limits) ====



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



-- ==== end: secrets ====


-- ==== begin: workers (background workers: timeouts) ====



-- ==== end: workers ====


-- ==== begin: publishing (publishing to memcached from every session) ====



-- ==== end: publishing ====


-- ==== begin: audit and maintenance (audit coverage, no-op rows, maintenance enforcement) ====



-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====



-- ==== end: dump and restore ====

