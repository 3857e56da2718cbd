/*
 * http_status.sql
 *	  What the status page's data, /api/status, asks the database
 *	  (http_status.c serves it as it is).
 */

-- For opsflags.environment: health (the health_status() document the
-- request read, as pg_monitor sees it), 24 h of samples, the flags with what
-- a request without a user is served and why, the last 10 deployments and
-- the open alerts.  A deployment's version and commit are the values of
-- config app_version and commit_sha: where those keys are sensitive they are
-- left out (null), as health_status() leaves them out for pg_monitor.
-- PL/pgSQL keeps its plan for the session (an SQL function with SET is
-- planned again at every call, and the HTTP server calls this one often).
CREATE FUNCTION opsflags_internal.http_status(health jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    WITH env AS (SELECT opsflags.resolve_environment(NULL) AS name),
         sensitive AS (
           SELECT EXISTS (SELECT FROM opsflags.app_config c WHERE c.config_key = 'app_version' AND c.is_sensitive) AS version,
                  EXISTS (SELECT FROM opsflags.app_config c WHERE c.config_key = 'commit_sha' AND c.is_sensitive) AS sha)
    SELECT jsonb_build_object(
      'generated_at', clock_timestamp(),
      'environment', env.name,
      'in_recovery', pg_is_in_recovery(),
      'maintenance', opsflags.is_maintenance_mode(),
      'health', http_status.health,
      'samples', opsflags.health_samples(interval '24 hours', 288),
      'flags', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', f.flag_key, 'name', f.flag_name,
                       'enabled', c.is_enabled, 'percentage', c.enabled_percentage,
                       'value', e.x -> 'value', 'served', e.x -> 'enabled', 'reason', e.x -> 'reason',
                       'enable_at', c.enable_at, 'disable_at', c.disable_at,
                       'version', c.version, 'updated_at', c.updated_at) ORDER BY f.flag_key), '[]')
                  FROM opsflags.feature_flags f
                  JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env.name
                  CROSS JOIN LATERAL (SELECT opsflags.feature_explain(f.flag_key) AS x) e
                 WHERE NOT f.archived),
      'deployments', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', d.id,
                       'version', CASE WHEN s.version THEN NULL ELSE d.version END,
                       'status', d.status, 'deployed_at', d.deployed_at, 'deployed_by', d.deployed_by,
                       'commit_sha', CASE WHEN s.sha THEN NULL ELSE d.commit_sha END) ORDER BY d.deployed_at DESC), '[]')
                  FROM (SELECT * FROM opsflags.deployment_history d
                         WHERE d.environment = env.name ORDER BY d.deployed_at DESC LIMIT 10) d),
      'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'type', a.type,
                       'severity', a.severity, 'title', a.title, 'message', a.message,
                       'component', a.component, 'created_at', a.created_at) ORDER BY a.created_at DESC), '[]')
                  FROM opsflags.alerts a WHERE NOT a.resolved))
    FROM env, sensitive s);
END
$$;
COMMENT ON FUNCTION opsflags_internal.http_status(jsonb) IS
  'The status page''s data (/api/status) for a health_status() document';
REVOKE ALL ON FUNCTION opsflags_internal.http_status(jsonb) FROM PUBLIC;
