/*
 * health.sql
 *	  Health: opsflags.system_health (the samples), the checks in C
 *	  (health.c: health_status, check_system_health, health_aggregate),
 *	  start-up checks (run_startup_checks), and the samples the status page
 *	  charts.  queue_depth is in health_queue.sql.
 */

-- The first column names (written by the sampler and read by existing
-- queries) and, generated from them, the names of its specification.
CREATE TABLE opsflags.system_health (
    id                    bigserial PRIMARY KEY,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    status                text NOT NULL,
    source                text NOT NULL,
    active_connections    bigint,
    idle_connections      bigint,
    total_connections     bigint,
    database_size_bytes   bigint,
    largest_tables        jsonb,
    avg_query_time_ms     double precision,
    slow_query_count      bigint,
    cache_hit_rate        double precision,
    pending_jobs          bigint,
    failed_jobs           bigint,
    errors_last_hour      bigint,
    metrics               jsonb,
    "timestamp"           timestamptz GENERATED ALWAYS AS (recorded_at) STORED,
    db_connections_active bigint GENERATED ALWAYS AS (active_connections) STORED,
    db_connections_idle   bigint GENERATED ALWAYS AS (idle_connections) STORED,
    db_size_mb            numeric GENERATED ALWAYS AS (round(database_size_bytes / 1048576.0, 2)) STORED,
    slow_queries_count    bigint GENERATED ALWAYS AS (slow_query_count) STORED
);
CREATE INDEX system_health_recorded_at_idx ON opsflags.system_health USING brin (recorded_at);
COMMENT ON TABLE opsflags.system_health IS
  'Health samples: one row per sampler cycle, take_sample() and check_system_health() call';
COMMENT ON COLUMN opsflags.system_health."timestamp" IS 'Same as recorded_at';
COMMENT ON COLUMN opsflags.system_health.db_connections_active IS 'Same as active_connections';
COMMENT ON COLUMN opsflags.system_health.db_connections_idle IS 'Same as idle_connections';
COMMENT ON COLUMN opsflags.system_health.db_size_mb IS 'database_size_bytes in MiB, 2 decimals';
COMMENT ON COLUMN opsflags.system_health.slow_queries_count IS 'Same as slow_query_count';
SELECT pg_catalog.pg_extension_config_dump('opsflags.system_health', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.system_health_id_seq', '');

CREATE FUNCTION opsflags.health_status()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_health_status';
COMMENT ON FUNCTION opsflags.health_status() IS
  'Health of database, cache, storage and queue with the aggregate status; never raises';

CREATE FUNCTION opsflags.health_aggregate(statuses text[])
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_health_aggregate';
COMMENT ON FUNCTION opsflags.health_aggregate(text[]) IS
  'Aggregate component statuses: any unhealthy -> unhealthy, else any degraded -> degraded, else healthy';

CREATE FUNCTION opsflags.check_system_health()
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_check_system_health';
COMMENT ON FUNCTION opsflags.check_system_health() IS
  'Summary (status, database size and connections, errors last hour, version) recorded in opsflags.system_health';

CREATE FUNCTION opsflags.run_startup_checks()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    errors    text[] := '{}';
    database  boolean := false;
    settings  boolean := true;
    tables    boolean := true;
    name      text;
    own       constant text[] := '{opsflags.environments,opsflags.feature_flags,opsflags.feature_flag_configs,'
                                 'opsflags.app_config,opsflags.audit_log,opsflags.deployment_history,'
                                 'opsflags.system_health}';
BEGIN
    BEGIN
        PERFORM 1;
        database := true;
    EXCEPTION WHEN OTHERS THEN
        errors := errors || ('database is not answering queries: ' || SQLERRM);
    END;

    FOR name IN
        SELECT btrim(s) FROM regexp_split_to_table(coalesce(current_setting('opsflags.required_settings', true), ''), ',') s
        WHERE btrim(s) <> ''
    LOOP
        IF coalesce(current_setting(name, true), '') = '' THEN
            settings := false;
            errors := errors || format('setting "%s" is empty or unknown: set it in postgresql.conf, '
                                       'with ALTER SYSTEM, or with ALTER DATABASE/ROLE ... SET', name);
        END IF;
    END LOOP;

    FOREACH name IN ARRAY own LOOP
        IF to_regclass(name) IS NULL THEN
            tables := false;
            errors := errors || format('opsflags table "%s" is missing: run ALTER EXTENSION opsflags UPDATE, '
                                       'or drop and create the extension', name);
        END IF;
    END LOOP;
    FOR name IN
        SELECT btrim(s) FROM regexp_split_to_table(coalesce(current_setting('opsflags.required_tables', true), ''), ',') s
        WHERE btrim(s) <> ''
    LOOP
        IF to_regclass(name) IS NULL THEN
            tables := false;
            errors := errors || format('required table "%s" does not exist: run the migrations that create it '
                                       '(or remove it from opsflags.required_tables)', name);
        END IF;
    END LOOP;

    RETURN jsonb_build_object(
        'success', cardinality(errors) = 0,
        'errors', to_jsonb(errors),
        'checks', jsonb_build_object('database', database, 'settings', settings, 'tables', tables));
END
$$;
COMMENT ON FUNCTION opsflags.run_startup_checks() IS
  'Database reachable, opsflags.required_settings non-empty, opsflags'' and opsflags.required_tables present: every failure listed';

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

REVOKE ALL ON FUNCTION
    opsflags.check_system_health(), opsflags.health_samples(interval, integer)
FROM PUBLIC;
GRANT SELECT ON opsflags.system_health TO opsflags_admin;
GRANT EXECUTE ON FUNCTION opsflags.check_system_health() TO opsflags_admin;
GRANT EXECUTE ON FUNCTION opsflags.health_samples(interval, integer) TO opsflags_admin, pg_monitor;
