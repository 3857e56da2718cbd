-- opsflags 0.3.0 -> 0.4.0: take_sample() on PostgreSQL 17 and later.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.4.0'" to load this file. \quit

-- take_sample(): the checkpoint counters come from pg_stat_checkpointer on
-- PostgreSQL 17 and later, which moved them out of pg_stat_bgwriter (the
-- rest as in 0.3.0).
CREATE OR REPLACE FUNCTION opsflags.take_sample(source text DEFAULT 'sampler')
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
    PERFORM opsflags.evaluate_alert('connections', total > max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100,
        'warning', 'Many connections', format('%s of %s connections in use', total, max_conn), 'database',
        total, max_conn * coalesce((t ->> 'connections_pct')::double precision, 80) / 100);
    PERFORM opsflags.evaluate_alert('cache_hit_rate', hit_rate < coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9),
        'warning', 'Low cache hit rate', format('cache hit rate %s', round(hit_rate::numeric, 3)), 'database',
        hit_rate, coalesce((t ->> 'cache_hit_rate_min')::double precision, 0.9));
    PERFORM opsflags.evaluate_alert('errors', errors > coalesce((t ->> 'errors_per_hour')::double precision, 100),
        'critical', 'Errors in the last hour', format('%s errors in the last hour', errors), 'database',
        errors, coalesce((t ->> 'errors_per_hour')::double precision, 100));
    PERFORM opsflags.evaluate_alert('failed_jobs', failed > coalesce((t ->> 'failed_jobs')::double precision, 0),
        'warning', 'Failed jobs', format('%s failed jobs', failed), 'queue',
        failed, coalesce((t ->> 'failed_jobs')::double precision, 0));
    PERFORM opsflags.evaluate_alert('replication_lag', (m ->> 'replication_lag_s')::double precision
            > coalesce((t ->> 'replication_lag_s')::double precision, 300),
        'critical', 'Replication lag', format('replication lag %s s', round((m ->> 'replication_lag_s')::numeric, 1)), 'database',
        (m ->> 'replication_lag_s')::double precision, coalesce((t ->> 'replication_lag_s')::double precision, 300));
    PERFORM opsflags.evaluate_alert('database_size', size_bytes > (t ->> 'database_size_mb')::double precision * 1048576,
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
