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

-- Errors of the configuration code go through config_raise(), which keeps
-- the statement (and the context) out of the server log: a statement that
-- writes a configuration row may hold a secret.  PL/pgSQL's RAISE cannot.
CREATE FUNCTION opsflags.config_raise(sqlstate text, message text, detail text DEFAULT NULL,
                                      hint text DEFAULT NULL)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_config_raise';
COMMENT ON FUNCTION opsflags.config_raise(text, text, text, text) IS
  'Raise an error of the configuration code; the server log gets neither the statement nor the context';

-- Sensitivity belongs to the key: a key sensitive in one environment is
-- sensitive in all.  A new row of a sensitive key is sensitive; a row that
-- becomes sensitive makes every row of its key sensitive (trigger
-- spread_config_sensitivity); a key becomes public only when all its rows
-- are made public in one statement (trigger check_config_sensitivity).
-- Rows written before this rule: every row of a key with a sensitive row
-- becomes sensitive (their audit rows are redacted).
UPDATE opsflags.app_config c SET is_sensitive = true
WHERE NOT c.is_sensitive
  AND EXISTS (SELECT FROM opsflags.app_config s WHERE s.config_key = c.config_key AND s.is_sensitive);

CREATE OR REPLACE FUNCTION opsflags.validate_config_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Every rule is checked here, before the row is written, so that no
    -- constraint reports the failing row (its value); errors name the key.
    IF NEW.config_key IS NULL THEN
        PERFORM opsflags.config_raise('22004', 'configuration key must not be null');
    END IF;
    IF NOT opsflags.is_valid_config_key(NEW.config_key) THEN
        PERFORM opsflags.config_raise('22023', format('invalid configuration key "%s"', NEW.config_key),
            'A configuration key is 1 to 200 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.');
    END IF;
    IF NEW.environment IS NULL THEN
        PERFORM opsflags.config_raise('22004',
            format('environment of configuration key "%s" must not be null', NEW.config_key),
            NULL, 'Use ''all'' for every environment.');
    END IF;
    IF NEW.environment <> 'all'
       AND NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = NEW.environment) THEN
        PERFORM opsflags.config_raise('42704', format('environment "%s" does not exist', NEW.environment),
            NULL, 'Environments are rows of opsflags.environments, or ''all''.');
    END IF;
    IF NEW.config_value IS NULL THEN
        PERFORM opsflags.config_raise('22004',
            format('value of configuration key "%s" must not be null', NEW.config_key),
            NULL, 'Store the JSON value null (''null''::jsonb) instead.');
    END IF;
    -- One writer per key at a time, until commit: the sensitivity of the
    -- key's other rows, read below and spread after the write, must not
    -- change underneath (two sessions writing two environments of a key).
    PERFORM pg_advisory_xact_lock(hashtext('opsflags.app_config'), hashtext(NEW.config_key));
    -- Moving a row onto another's key and environment (an INSERT's duplicate
    -- is left to the unique constraint, whose report holds no value, so that
    -- INSERT ... ON CONFLICT keeps working).
    IF TG_OP = 'UPDATE' AND (NEW.config_key, NEW.environment) IS DISTINCT FROM (OLD.config_key, OLD.environment)
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = NEW.config_key AND c.environment = NEW.environment) THEN
        PERFORM opsflags.config_raise('23505',
            'duplicate key value violates unique constraint "app_config_key_environment_key"',
            format('Key (config_key, environment)=(%s, %s) already exists.', NEW.config_key, NEW.environment));
    END IF;
    NEW.id := coalesce(NEW.id, gen_random_uuid());
    -- A row of a key that is sensitive in another environment is sensitive,
    -- unless this very change makes a sensitive row public (allowed only for
    -- all rows of the key at once: check_config_sensitivity).
    IF TG_OP = 'UPDATE' AND NEW.is_sensitive IS NULL THEN
        NEW.is_sensitive := OLD.is_sensitive;
    END IF;
    IF NOT coalesce(NEW.is_sensitive, false)
       AND NOT (TG_OP = 'UPDATE' AND OLD.is_sensitive AND NEW.is_sensitive IS NOT NULL)
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = NEW.config_key AND c.is_sensitive
                     AND (TG_OP = 'INSERT' OR c.id <> OLD.id)) THEN
        NEW.is_sensitive := true;
    END IF;
    NEW.is_sensitive := coalesce(NEW.is_sensitive, false);
    -- A write that does not say who: opsflags.updated_by, else the session user.
    IF NEW.updated_by IS NULL OR (TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by) THEN
        NEW.updated_by := coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);
    END IF;
    -- The time of the change itself, not of the transaction's start.
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := coalesce(NEW.created_at, clock_timestamp());
        NEW.updated_at := clock_timestamp();
    ELSE
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

-- A row that became sensitive (inserted so, marked, or moved to another
-- key) makes the other rows of its key sensitive.
CREATE FUNCTION opsflags.spread_config_sensitivity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.is_sensitive
       AND (TG_OP = 'INSERT' OR NOT OLD.is_sensitive OR NEW.config_key <> OLD.config_key) THEN
        UPDATE opsflags.app_config c SET is_sensitive = true
        WHERE c.config_key = NEW.config_key AND NOT c.is_sensitive;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER spread_config_sensitivity
    AFTER INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.spread_config_sensitivity();

-- After each statement: no key written by it is sensitive in one
-- environment and public in another (making one environment's row public
-- while the key stays sensitive elsewhere is refused).
CREATE FUNCTION opsflags.check_config_sensitivity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    SELECT n.config_key INTO k
    FROM (SELECT DISTINCT w.config_key FROM written w) n
    WHERE EXISTS (SELECT 1 FROM opsflags.app_config c WHERE c.config_key = n.config_key AND c.is_sensitive)
      AND EXISTS (SELECT 1 FROM opsflags.app_config c WHERE c.config_key = n.config_key AND NOT c.is_sensitive)
    ORDER BY n.config_key
    LIMIT 1;
    IF FOUND THEN
        PERFORM opsflags.config_raise('22023',
            format('configuration key "%s" cannot be public in one environment and sensitive in another', k),
            'A key that is sensitive in one environment is sensitive in all.',
            'To make the key public, set is_sensitive to false on all its rows in one statement.');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER check_config_sensitivity_insert
    AFTER INSERT ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.check_config_sensitivity();
CREATE TRIGGER check_config_sensitivity_update
    AFTER UPDATE ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.check_config_sensitivity();

CREATE OR REPLACE FUNCTION opsflags.config_set(
    config_key   text,
    config_value jsonb,
    updated_by   text DEFAULT session_user,
    environment  text DEFAULT 'all',
    description  text DEFAULT NULL,
    is_sensitive boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    writer text := coalesce(config_set.updated_by, session_user);
    previous text := coalesce(current_setting('opsflags.updated_by', true), '');
BEGIN
    -- Validation happens in validate_config_row(), for this and plain DML;
    -- its errors, and this one, leave the statement (the value) out of the log.
    -- The key's lock (see validate_config_row) before its rows are read.
    PERFORM pg_advisory_xact_lock(hashtext('opsflags.app_config'), hashtext(config_set.config_key));
    IF config_set.is_sensitive IS FALSE
       AND EXISTS (SELECT 1 FROM opsflags.app_config c
                   WHERE c.config_key = config_set.config_key AND c.is_sensitive
                     AND c.environment IS DISTINCT FROM config_set.environment) THEN
        PERFORM opsflags.config_raise('22023',
            format('configuration key "%s" is sensitive in another environment', config_set.config_key),
            'A key that is sensitive in one environment is sensitive in all.',
            'Leave is_sensitive NULL, or make the key public by setting is_sensitive to false on all its rows in one statement.');
    END IF;
    -- The writer named here is recorded even when it equals the previous one.
    PERFORM set_config('opsflags.updated_by', writer, true);
    -- is_sensitive NULL: a new row takes the key's sensitivity, a row keeps its own.
    INSERT INTO opsflags.app_config AS c
        (config_key, config_value, environment, description, is_sensitive, updated_by)
    VALUES (config_key, config_value, environment, description, is_sensitive, writer)
    ON CONFLICT ON CONSTRAINT app_config_key_environment_key DO UPDATE SET
        config_value = EXCLUDED.config_value,
        description  = coalesce(config_set.description, c.description),
        is_sensitive = coalesce(config_set.is_sensitive, c.is_sensitive),
        updated_by   = EXCLUDED.updated_by;
    PERFORM set_config('opsflags.updated_by', previous, true);
END
$$;
COMMENT ON FUNCTION opsflags.config_set(text, jsonb, text, text, text, boolean) IS
  'Create or replace a configuration value; is_sensitive NULL keeps the key''s sensitivity (true makes the key sensitive in every environment)';

-- Listing for anyone: values of a key sensitive in any environment are redacted.
CREATE OR REPLACE FUNCTION opsflags.config_all(environment text DEFAULT NULL)
RETURNS TABLE (config_key text, environment text, config_value jsonb, description text,
               is_sensitive boolean, version integer, updated_at timestamptz, updated_by text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_key, c.environment,
           CASE WHEN s.sensitive THEN '"[REDACTED]"'::jsonb ELSE c.config_value END,
           c.description, s.sensitive, c.version, c.updated_at, c.updated_by
    FROM opsflags.app_config c
    CROSS JOIN LATERAL (SELECT c.is_sensitive OR EXISTS (SELECT 1 FROM opsflags.app_config o
                                                         WHERE o.config_key = c.config_key AND o.is_sensitive)
                        AS sensitive) s
    WHERE config_all.environment IS NULL OR c.environment IN (config_all.environment, 'all')
    ORDER BY c.config_key, c.environment = 'all', c.environment
$$;

REVOKE ALL ON FUNCTION
    opsflags.config_raise(text, text, text, text),
    opsflags.spread_config_sensitivity(), opsflags.check_config_sensitivity()
FROM PUBLIC;
-- The triggers run as the writer, who must be able to raise their errors.
GRANT EXECUTE ON FUNCTION opsflags.config_raise(text, text, text, text) TO opsflags_admin;


-- health.queue_query for the sampler: run as health_status() runs it.
CREATE FUNCTION opsflags.queue_depth(log_failure boolean DEFAULT false,
                                     OUT pending bigint, OUT failed bigint, OUT error text)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_queue_depth';
COMMENT ON FUNCTION opsflags.queue_depth(boolean) IS
  'health.queue_query''s pending and failed counts, or its error (never a sensitive query''s); log_failure: a WARNING once per change of the error';
REVOKE ALL ON FUNCTION opsflags.queue_depth(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.queue_depth(boolean) TO opsflags_admin;

-- take_sample(): the queue query through queue_depth() (the block after
-- "The admin's queue query"; the rest as in 0.2.0).
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
    m := m || (SELECT jsonb_build_object('checkpoints_timed', b.checkpoints_timed,
                                         'checkpoints_req', b.checkpoints_req,
                                         'checkpoint_pressure',
                                         round(b.checkpoints_req::numeric / nullif(b.checkpoints_timed + b.checkpoints_req, 0), 3))
               FROM pg_stat_bgwriter b);
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
COMMENT ON FUNCTION opsflags.take_sample(text) IS
  'Write one system_health sample with every field and raise or resolve alerts (what the sampler does each interval)';

-- ==== end: secrets ====


-- ==== begin: workers (background workers: timeouts) ====



-- ==== end: workers ====


-- ==== begin: publishing (publishing to memcached from every session) ====



-- ==== end: publishing ====


-- ==== begin: audit and maintenance (audit coverage, no-op rows, maintenance enforcement) ====



-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====



-- ==== end: dump and restore ====

