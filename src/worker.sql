/*
 * worker.sql
 *	  What the background worker "opsflags sampler" (worker.c) runs each
 *	  interval, callable by admins too: take_sample() (a system_health row,
 *	  then alerts) and apply_retention(); opsflags.alerts; worker_status().
 */

CREATE TABLE opsflags.alerts (
    id          bigserial PRIMARY KEY,
    type        text NOT NULL,
    severity    text NOT NULL CONSTRAINT severity_known CHECK (severity IN ('info', 'warning', 'critical')),
    title       text NOT NULL,
    message     text NOT NULL,
    component   text NOT NULL,
    value       double precision,
    threshold   double precision,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved    boolean NOT NULL DEFAULT false,
    resolved_at timestamptz,
    resolved_by text,
    CONSTRAINT resolution_recorded CHECK (resolved = (resolved_at IS NOT NULL))
);
-- One open alert per type: an episode raises one alert.
CREATE UNIQUE INDEX alerts_one_open_per_type ON opsflags.alerts (type) WHERE NOT resolved;
COMMENT ON TABLE opsflags.alerts IS
  'Raised when a sample crosses a threshold of config alerts.thresholds, resolved when it is back';
SELECT pg_catalog.pg_extension_config_dump('opsflags.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.alerts_id_seq', '');

CREATE FUNCTION opsflags_internal.notify_alert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'INSERT' THEN 'alert.raised' ELSE 'alert.resolved' END,
        'key', NEW.type, 'id', NEW.id, 'severity', NEW.severity, 'component', NEW.component)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_alert AFTER INSERT OR UPDATE OF resolved ON opsflags.alerts
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.alerts'))
    EXECUTE FUNCTION opsflags_internal.notify_alert();

-- SECURITY DEFINER (as is evaluate_alert): opsflags_admin members may
-- resolve alerts without write access to opsflags.alerts.
CREATE FUNCTION opsflags.resolve_alert(alert_id bigint, resolved_by text DEFAULT session_user)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a opsflags.alerts;
BEGIN
    SELECT * INTO a FROM opsflags.alerts WHERE id = alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', alert_id USING ERRCODE = 'undefined_object';
    END IF;
    IF a.resolved THEN
        RAISE EXCEPTION 'alert % is already resolved', alert_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Resolved by %s at %s.', a.resolved_by, a.resolved_at);
    END IF;
    UPDATE opsflags.alerts
    SET resolved = true, resolved_at = clock_timestamp(),
        resolved_by = coalesce(resolve_alert.resolved_by, session_user)
    WHERE id = alert_id;
END
$$;

-- Raise (once per episode) or resolve the alert of one type.
CREATE FUNCTION opsflags_internal.evaluate_alert(alert_type text, crossed boolean, severity text, title text,
                                        message text, component text, value double precision,
                                        threshold double precision)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF crossed THEN
        INSERT INTO opsflags.alerts (type, severity, title, message, component, value, threshold)
        VALUES (alert_type, severity, title, message, component, value, threshold)
        ON CONFLICT (type) WHERE NOT resolved DO NOTHING;
    ELSIF crossed IS NOT NULL THEN
        UPDATE opsflags.alerts
        SET resolved = true, resolved_at = clock_timestamp(), resolved_by = 'opsflags sampler'
        WHERE type = alert_type AND NOT resolved;
    END IF;
    RETURN crossed;
END
$$;

-- One sample: a system_health row with every field, then the alerts.
-- Returns the row's id.  The queue query runs through queue_depth(), and
-- largest_tables leaves out the tables locked exclusively.
CREATE FUNCTION opsflags.take_sample(source text DEFAULT 'sampler')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          jsonb := coalesce(opsflags.config_get('alerts.thresholds', 'all'), '{}');
    q          record;
    slow_ms    double precision := coalesce((t ->> 'slow_query_ms')::double precision, 1000);
    s          record;
    prev       opsflags.system_health;
    m          jsonb := '{}';
    active     bigint; idle bigint; total bigint; max_conn bigint;
    size_bytes bigint;
    largest    jsonb;
    hit_rate   double precision;
    avg_ms     double precision;
    slow       bigint;
    pending    bigint;
    failed     bigint;
    errors     bigint := opsflags.errors_last_hour();
    pss        text;
    new_id     bigint;
    open_alerts integer;
    critical   boolean;
    status     text;
BEGIN
    SELECT count(*) FILTER (WHERE a.state = 'active'), count(*) FILTER (WHERE a.state LIKE 'idle%'), count(*),
           current_setting('max_connections')::bigint
    INTO active, idle, total, max_conn
    FROM pg_stat_activity a WHERE a.backend_type = 'client backend';
    m := m || jsonb_build_object('oldest_transaction_age_s',
        (SELECT round(extract(epoch FROM clock_timestamp() - min(a.xact_start))::numeric, 3)
         FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.xact_start IS NOT NULL));

    size_bytes := pg_database_size(current_database());

    SELECT jsonb_agg(jsonb_build_object('table', x.name, 'bytes', x.bytes) ORDER BY x.bytes DESC)
    INTO largest
    FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
                 pg_total_relation_size(c.oid) AS bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
            -- Measuring takes a lock: a table locked exclusively (or about
            -- to be) is left out rather than wait for its owner.
            AND NOT EXISTS (SELECT FROM pg_locks l
                            WHERE l.locktype = 'relation' AND l.relation = c.oid
                              AND l.mode = 'AccessExclusiveLock'
                              AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
          ORDER BY 2 DESC LIMIT 10) x;

    SELECT d.blks_hit::double precision / nullif(d.blks_hit + d.blks_read, 0) AS hit_rate,
           d.xact_commit, d.xact_rollback, d.deadlocks, d.temp_bytes
    INTO s FROM pg_stat_database d WHERE d.datname = current_database();
    hit_rate := s.hit_rate;
    m := m || jsonb_build_object('xact_commit', s.xact_commit, 'xact_rollback', s.xact_rollback,
                                 'deadlocks', s.deadlocks, 'temp_bytes', s.temp_bytes);

    -- Rates since the previous sample.
    SELECT * INTO prev FROM opsflags.system_health h
    WHERE h.metrics ? 'xact_commit' ORDER BY h.id DESC LIMIT 1;
    IF FOUND AND clock_timestamp() > prev.recorded_at THEN
        m := m || jsonb_build_object(
            'commits_per_s', round(((s.xact_commit - (prev.metrics ->> 'xact_commit')::bigint)
                / extract(epoch FROM clock_timestamp() - prev.recorded_at))::numeric, 3),
            'rollbacks_per_s', round(((s.xact_rollback - (prev.metrics ->> 'xact_rollback')::bigint)
                / extract(epoch FROM clock_timestamp() - prev.recorded_at))::numeric, 3));
    END IF;

    -- Replication lag: replay lag on a standby, the slowest replica on a primary.
    m := m || jsonb_build_object('replication_lag_s', CASE
        WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
        ELSE (SELECT max(extract(epoch FROM r.replay_lag)) FROM pg_stat_replication r) END);
    -- Checkpoints: counted in pg_stat_checkpointer from PostgreSQL 17 on, in
    -- pg_stat_bgwriter before (a branch not taken is never planned).
    IF current_setting('server_version_num')::int >= 170000 THEN
        m := m || (SELECT jsonb_build_object('checkpoints_timed', c.num_timed,
                                             'checkpoints_req', c.num_requested,
                                             'checkpoint_pressure',
                                             round(c.num_requested::numeric / nullif(c.num_timed + c.num_requested, 0), 3))
                   FROM pg_stat_checkpointer c);
    ELSE
        m := m || (SELECT jsonb_build_object('checkpoints_timed', b.checkpoints_timed,
                                             'checkpoints_req', b.checkpoints_req,
                                             'checkpoint_pressure',
                                             round(b.checkpoints_req::numeric / nullif(b.checkpoints_timed + b.checkpoints_req, 0), 3))
                   FROM pg_stat_bgwriter b);
    END IF;
    m := m || jsonb_build_object('transaction_id_age',
        (SELECT max(age(d.datfrozenxid)) FROM pg_database d));

    -- Query times: pg_stat_statements when installed here.
    SELECT n.nspname INTO pss FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_stat_statements';
    IF pss IS NULL THEN
        m := m || '{"pg_stat_statements": "not installed in this database: avg_query_time_ms and slow_query_count are null"}';
    ELSE
        BEGIN
            EXECUTE format('SELECT sum(total_exec_time) / nullif(sum(calls), 0), count(*) FILTER (WHERE mean_exec_time > $1) FROM %I.pg_stat_statements', pss)
            INTO avg_ms, slow USING slow_ms;
        EXCEPTION WHEN OTHERS THEN
            m := m || jsonb_build_object('pg_stat_statements', 'unavailable: ' || SQLERRM);
        END;
    END IF;

    -- The admin's queue query, as health_status() runs it (queue_depth):
    -- a failure is recorded, and logged once per change, never with the
    -- text of a sensitive query's error.
    SELECT * INTO q FROM opsflags.queue_depth(true);
    IF q.error IS NOT NULL THEN
        m := m || jsonb_build_object('queue', 'failed: ' || q.error);
    ELSIF q.pending IS NULL THEN
        m := m || '{"queue": "not configured"}';
    ELSE
        pending := q.pending;
        failed := q.failed;
    END IF;

    -- Alerts: raised once per episode, resolved when the value is back.
    PERFORM opsflags_internal.evaluate_alert('connections', total > max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100,
        'warning', 'Many connections', format('%s of %s connections in use', total, max_conn), 'database',
        total, max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100);
    PERFORM opsflags_internal.evaluate_alert('cache_hit_rate', hit_rate < coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9),
        'warning', 'Low cache hit rate', format('cache hit rate %s', round(hit_rate::numeric, 3)), 'database',
        hit_rate, coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9));
    PERFORM opsflags_internal.evaluate_alert('errors', errors > coalesce((t ->> 'errors_per_hour')::double precision, 100),
        'critical', 'Errors in the last hour', format('%s errors in the last hour', errors), 'database',
        errors, coalesce((t ->> 'errors_per_hour')::double precision, 100));
    PERFORM opsflags_internal.evaluate_alert('failed_jobs', failed > coalesce((t ->> 'failed_jobs')::double precision, 0),
        'warning', 'Failed jobs', format('%s failed jobs', failed), 'queue',
        failed, coalesce((t ->> 'failed_jobs')::double precision, 0));
    PERFORM opsflags_internal.evaluate_alert('replication_lag', (m ->> 'replication_lag_s')::double precision
            > coalesce((t ->> 'replication_lag_s')::double precision, 300),
        'critical', 'Replication lag', format('replication lag %s s', round((m ->> 'replication_lag_s')::numeric, 1)), 'database',
        (m ->> 'replication_lag_s')::double precision, coalesce((t ->> 'replication_lag_s')::double precision, 300));
    PERFORM opsflags_internal.evaluate_alert('database_size', size_bytes > (t ->> 'database_size_mb')::double precision * 1048576,
        'warning', 'Database size', format('database is %s', pg_size_pretty(size_bytes)), 'storage',
        size_bytes / 1048576.0, (t ->> 'database_size_mb')::double precision);

    SELECT count(*), bool_or(a.severity = 'critical') INTO open_alerts, critical
    FROM opsflags.alerts a WHERE NOT a.resolved;
    status := CASE WHEN critical THEN 'degraded' WHEN open_alerts > 0 THEN 'warning' ELSE 'healthy' END;

    INSERT INTO opsflags.system_health (recorded_at, status, source, active_connections, idle_connections,
        total_connections, database_size_bytes, largest_tables, avg_query_time_ms, slow_query_count,
        cache_hit_rate, pending_jobs, failed_jobs, errors_last_hour, metrics)
    VALUES (clock_timestamp(), status, coalesce(take_sample.source, 'sampler'), active, idle, total, size_bytes,
        coalesce(largest, '[]'), avg_ms, slow, hit_rate, pending, failed, errors, m)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION opsflags.take_sample(text) IS
  'Write one system_health sample with every field and raise or resolve alerts (what the sampler does each interval)';

-- Delete samples older than retention, at most batch rows; returns how many.
CREATE FUNCTION opsflags.apply_retention(retention interval, batch integer DEFAULT 1000)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH doomed AS (
        SELECT h.id FROM opsflags.system_health h
        WHERE h.recorded_at < clock_timestamp() - retention
        ORDER BY h.id LIMIT batch)
    , gone AS (DELETE FROM opsflags.system_health h USING doomed d WHERE h.id = d.id RETURNING 1)
    SELECT count(*) FROM gone
$$;

CREATE FUNCTION opsflags.worker_status()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_worker_status';
COMMENT ON FUNCTION opsflags.worker_status() IS
  'Whether the opsflags sampler runs, its state, last sample and last error';

REVOKE ALL ON FUNCTION
    opsflags_internal.notify_alert(), opsflags.resolve_alert(bigint, text),
    opsflags_internal.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision),
    opsflags.take_sample(text), opsflags.apply_retention(interval, integer)
FROM PUBLIC;
GRANT SELECT ON opsflags.alerts TO opsflags_admin;
GRANT EXECUTE ON FUNCTION opsflags.resolve_alert(bigint, text), opsflags.take_sample(text),
    opsflags.apply_retention(interval, integer),
    opsflags_internal.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision)
TO opsflags_admin;
-- take_sample writes its sample with the caller's rights.
GRANT INSERT ON opsflags.system_health TO opsflags_admin;
GRANT USAGE ON SEQUENCE opsflags.system_health_id_seq TO opsflags_admin;
