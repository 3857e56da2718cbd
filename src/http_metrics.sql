/*
 * http_metrics.sql
 *	  What /metrics asks the database: one row per sample, by family number
 *	  (http_metrics.c holds the families' names and writes the text format).
 */

-- health: the health_status() document the same request read.
-- PL/pgSQL keeps its plan for the session (an SQL function with SET is
-- planned again at every call, and the HTTP server calls this one often).
CREATE FUNCTION opsflags_internal.http_metrics(health jsonb)
RETURNS TABLE (family integer, value text, label1 text, value1 text, label2 text, value2 text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH h AS (SELECT http_metrics.health AS doc),
         st(s) AS (VALUES ('healthy'), ('degraded'), ('unhealthy')),
         comp AS (SELECT c.key, c.value FROM h, jsonb_each(h.doc -> 'components') c),
         w AS (SELECT opsflags.worker_status() AS doc)
    SELECT 1, (h.doc ->> 'status' = st.s)::int::text, 'status', st.s, NULL, NULL FROM h, st
    UNION ALL
    SELECT 2, (comp.value ->> 'status' = st.s)::int::text, 'component', comp.key, 'status', st.s FROM comp, st
    UNION ALL
    SELECT 3, ((comp.value ->> 'latency_ms')::float8 / 1000)::text, 'component', comp.key, NULL, NULL FROM comp
    UNION ALL
    SELECT 4, count(a.pid)::text, 'state', s.state, NULL, NULL
      FROM (VALUES ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'),
                   ('fastpath function call')) s(state)
      LEFT JOIN pg_stat_activity a ON a.state = s.state AND a.backend_type = 'client backend'
      GROUP BY s.state
    UNION ALL
    SELECT 5, current_setting('max_connections'), NULL, NULL, NULL, NULL
    UNION ALL
    SELECT 6, pg_database_size(current_database())::text, 'database', current_database(), NULL, NULL
    UNION ALL
    SELECT 7, opsflags.errors_last_hour()::text, NULL, NULL, NULL, NULL
    UNION ALL
    SELECT 8, (w.doc ->> 'running')::boolean::int::text, NULL, NULL, NULL, NULL FROM w
    UNION ALL
    SELECT 9, date_part('epoch', (w.doc ->> 'last_sample_at')::timestamptz)::text, NULL, NULL, NULL, NULL
      FROM w WHERE w.doc ->> 'last_sample_at' IS NOT NULL
    UNION ALL
    SELECT 10, r.n::text, 'flag', u.flag_key, 'result', r.result
      FROM opsflags.flag_usage_counts() u,
           LATERAL (VALUES ('true', u.true_count), ('false', u.false_count)) r(result, n)
    UNION ALL
    SELECT 11, count(a.id)::text, 'severity', s.severity, NULL, NULL
      FROM (VALUES ('info'), ('warning'), ('critical')) s(severity)
      LEFT JOIN opsflags.alerts a ON a.severity = s.severity AND NOT a.resolved
      GROUP BY s.severity
    UNION ALL
    SELECT 12, opsflags.is_maintenance_mode()::int::text, NULL, NULL, NULL, NULL
    UNION ALL
    SELECT 13, pg_is_in_recovery()::int::text, NULL, NULL, NULL, NULL
    UNION ALL
    SELECT 14, CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                    ELSE date_part('epoch', now() - pg_last_xact_replay_timestamp()) END::text,
           NULL, NULL, NULL, NULL WHERE pg_is_in_recovery();
END
$$;
COMMENT ON FUNCTION opsflags_internal.http_metrics(jsonb) IS
  '/metrics: (family, value, label, value, label, value) rows for a health_status() document';
REVOKE ALL ON FUNCTION opsflags_internal.http_metrics(jsonb) FROM PUBLIC;
