/*
 * deployments.sql
 *	  Deployments: opsflags.deployment_history (success, failed,
 *	  rolled_back), NOTIFY, and the API that records deployments and
 *	  rollbacks and keeps config app_version and commit_sha in step.
 */

CREATE TABLE opsflags.deployment_history (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version         text NOT NULL CONSTRAINT version_not_blank CHECK (version ~ '\S'),
    environment     text NOT NULL REFERENCES opsflags.environments (name) ON UPDATE CASCADE,
    status          text NOT NULL DEFAULT 'success'
                    CONSTRAINT status_known CHECK (status IN ('success', 'failed', 'rolled_back')),
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
COMMENT ON COLUMN opsflags.deployment_history.status IS
  'success (went live), failed (never went live: app_version unchanged) or rolled_back';
SELECT pg_catalog.pg_extension_config_dump('opsflags.deployment_history', '');

CREATE FUNCTION opsflags_internal.notify_deployment()
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
CREATE TRIGGER notify_deployment AFTER INSERT OR UPDATE ON opsflags.deployment_history
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.deployment_history'))
    EXECUTE FUNCTION opsflags_internal.notify_deployment();

-- A failed deployment is recorded without touching app_version or
-- commit_sha.
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
CREATE FUNCTION opsflags.record_rollback(deployment_id uuid, target_version text, reason text DEFAULT NULL)
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

-- Newest first.
CREATE FUNCTION opsflags.get_deployment_history(environment text DEFAULT NULL)
RETURNS SETOF opsflags.deployment_history
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM opsflags.deployment_history h
    WHERE get_deployment_history.environment IS NULL OR h.environment = get_deployment_history.environment
    ORDER BY h.deployed_at DESC, h.id
$$;

-- No row (not one row of NULLs) when the environment has no live deployment.
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
    opsflags_internal.notify_deployment(),
    opsflags.record_deployment(text, text, text, text, text, text, text),
    opsflags.record_rollback(uuid, text, text),
    opsflags.get_deployment_history(text),
    opsflags.get_latest_deployment(text)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON opsflags.deployment_history TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.record_deployment(text, text, text, text, text, text, text),
    opsflags.record_rollback(uuid, text, text),
    opsflags.get_deployment_history(text),
    opsflags.get_latest_deployment(text)
TO opsflags_admin;
