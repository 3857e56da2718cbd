/*
 * http_probes.sql
 *	  What /readyz asks the database (http_probes.c formats the answer):
 *	  why the server is not ready, or NULL.  /health is health_status().
 */

-- Not ready: maintenance mode, or a standby whose replay lags what it has
-- received by more than health.thresholds' replication_lag_s (300 s).
-- PL/pgSQL keeps its plan for the session (an SQL function with SET is
-- planned again at every call, and the HTTP server calls this one often).
CREATE FUNCTION opsflags_internal.http_readiness()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT CASE WHEN m THEN 'maintenance mode is on'
                WHEN lag > threshold THEN format('standby replay lags %s s (threshold %s s)',
                                                 round(lag::numeric, 1), threshold) END
    FROM (SELECT opsflags.is_maintenance_mode() AS m,
                 CASE WHEN NOT pg_is_in_recovery() THEN NULL
                      WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                      ELSE date_part('epoch', now() - pg_last_xact_replay_timestamp()) END AS lag,
                 coalesce((opsflags.config_get('health.thresholds', 'all') ->> 'replication_lag_s')::float8,
                          300) AS threshold) s);
END
$$;
COMMENT ON FUNCTION opsflags_internal.http_readiness() IS
  'Why the server is not ready (/readyz), or NULL';
REVOKE ALL ON FUNCTION opsflags_internal.http_readiness() FROM PUBLIC;
