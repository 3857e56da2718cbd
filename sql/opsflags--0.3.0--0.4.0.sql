-- opsflags 0.3.0 -> 0.4.0: the API apart from the internals; one SQL name per
-- C function; the HTTP server's queries as functions; one noun for a flag
-- (update_flag, get_flag, get_flags; the former names stay as aliases);
-- take_sample() on PostgreSQL 17 and later (pg_stat_checkpointer).
-- Nothing else changes: a fresh install of 0.4.0 (built from
-- src/*.sql) and an updated one are the same (test/upgrade/upgrade.sh).
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.4.0'" to load this file. \quit

-- invalidate_cache() and invalidate_flag_cache() were two SQL names of one C
-- function.  app_config's triggers keep their names and run
-- invalidate_flag_cache(), as every other table's do; invalidate_cache()
-- goes (a trigger function, which no user can have attached: EXECUTE on it
-- was never granted).
CREATE OR REPLACE TRIGGER invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE OR REPLACE TRIGGER invalidate_cache_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
-- CREATE OR REPLACE TRIGGER enables a trigger for origin sessions only.
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache_truncate;
DROP FUNCTION opsflags.invalidate_cache();

-- Schema opsflags holds the API (\df opsflags.* lists it).  Trigger
-- functions and the helpers that API functions call are not an API: they
-- live in opsflags_internal, with the same privileges they would have in
-- opsflags (USAGE for everyone, EXECUTE as each capability grants it).
CREATE SCHEMA opsflags_internal;
COMMENT ON SCHEMA opsflags_internal IS
  'opsflags: trigger functions and helpers of the API; not for direct use, may change in any version';
GRANT USAGE ON SCHEMA opsflags_internal TO PUBLIC;

-- Moved with their privileges and comments; triggers and event triggers
-- follow (they name a function by its identity, not by its name).
ALTER FUNCTION opsflags.touch_row() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.notify_flag_change() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.validate_flag_variations() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.validate_flag_config() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.validate_prerequisite() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.validate_config_row() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.spread_config_sensitivity() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.check_config_sensitivity() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.notify_config_change() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.invalidate_flag_cache() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.maintenance_config_changed() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.notify_deployment() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.notify_alert() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.flags_changed() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.audit_log_guard() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.audit_new_children() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.audit_table_rewrite() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.maintenance_table_rewrite() SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.check_variation_values(text, text, jsonb) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.check_variations(text, jsonb, integer, integer, jsonb) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.default_on_off(jsonb) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.is_whole_number(jsonb, numeric, numeric) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.config_raise(text, text, text, text) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.audit_attach(regclass, text) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.audit_links_tables(pg_ddl_command) SET SCHEMA opsflags_internal;
ALTER FUNCTION opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision) SET SCHEMA opsflags_internal;

-- flag_field_error() stays: error contexts that users see name it.
COMMENT ON FUNCTION opsflags.flag_field_error(text, text, text, jsonb) IS
  'Internal to the flag API (not for direct use): raises its 22023 error for one bad field; in schema opsflags because error contexts name it';

-- The functions that call a moved one by name, with the new name (their
-- bodies are otherwise as in 0.3.0).

-- opsflags_internal.validate_flag_variations (src/variations.sql)
CREATE OR REPLACE FUNCTION opsflags_internal.validate_flag_variations()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.variations IS DISTINCT FROM OLD.variations
       OR NEW.flag_type IS DISTINCT FROM OLD.flag_type THEN
        PERFORM opsflags_internal.check_variation_values(NEW.flag_key, NEW.flag_type, NEW.variations);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.variations IS DISTINCT FROM OLD.variations THEN
        PERFORM opsflags_internal.check_variations(NEW.flag_key, NEW.variations, c.on_variation, c.off_variation,
                                          c.variation_weights)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;

-- opsflags_internal.validate_flag_config (src/variations.sql)
CREATE OR REPLACE FUNCTION opsflags_internal.validate_flag_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.on_variation IS DISTINCT FROM OLD.on_variation
       OR NEW.off_variation IS DISTINCT FROM OLD.off_variation
       OR NEW.variation_weights IS DISTINCT FROM OLD.variation_weights
       OR NEW.flag_id IS DISTINCT FROM OLD.flag_id THEN
        SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
        IF FOUND THEN
            PERFORM opsflags_internal.check_variations(f.flag_key, f.variations, NEW.on_variation, NEW.off_variation,
                                              NEW.variation_weights);
        END IF;
    END IF;
    IF opsflags.is_string_array(NEW.segments) THEN
        SELECT s INTO missing FROM jsonb_array_elements_text(NEW.segments) s
        WHERE NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = s) LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'segment "%" does not exist', missing
                USING ERRCODE = 'undefined_object', HINT = 'Create it with opsflags.create_segment().';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- (create_flag, update_feature_flag, get_feature_flag and get_all_feature_flags
-- are replaced further down, with the flag API's new names.)

-- opsflags.import_launchdarkly (src/launchdarkly.sql)
CREATE OR REPLACE FUNCTION opsflags.import_launchdarkly(environment text, document jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    prev     text := coalesce(current_setting('opsflags.environment', true), 'production');
    item     record;
    spec     jsonb;
    val      jsonb;
    vtype    text;
    f        opsflags.feature_flags;
    c        opsflags.feature_flag_configs;
    vars     jsonb;
    idx      integer;
    want     integer;
    onoff    integer[];
    x        jsonb;
    on_now   boolean;
    served   integer;
    weights  jsonb;
    created  text[] := '{}';
    changed  text[] := '{}';
    same     text[] := '{}';
BEGIN
    IF document IS NULL OR jsonb_typeof(document) <> 'object' THEN
        RAISE EXCEPTION 'a LaunchDarkly document is a JSON object of flags'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected {"flag.key": {"value": ..., "variation": 0, "version": 1, "flagVersion": 1}, ...}.';
    END IF;
    -- Validate everything before writing anything.
    FOR item IN SELECT key, value FROM jsonb_each(document) ORDER BY key LOOP
        IF NOT opsflags.is_valid_flag_key(item.key) THEN
            RAISE EXCEPTION 'invalid flag key "%" in LaunchDarkly document', item.key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(item.value) <> 'object' OR NOT item.value ? 'value'
           OR (item.value ? 'version' AND NOT opsflags_internal.is_whole_number(item.value -> 'version', 0, 2147483647))
           OR (item.value ? 'flagVersion' AND NOT opsflags_internal.is_whole_number(item.value -> 'flagVersion', 0, 2147483647))
           OR (item.value ? 'variation' AND jsonb_typeof(item.value -> 'variation') <> 'null'
               AND NOT opsflags_internal.is_whole_number(item.value -> 'variation', 0, 2147483647)) THEN
            RAISE EXCEPTION 'malformed LaunchDarkly flag "%"', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each flag is an object with a "value" and optional whole-number "variation", "version" and "flagVersion".';
        END IF;
        val := item.value -> 'value';
        vtype := CASE jsonb_typeof(val) WHEN 'boolean' THEN 'boolean' WHEN 'string' THEN 'string'
                                        WHEN 'number' THEN 'number' ELSE 'json' END;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = item.key;
        IF FOUND THEN
            IF f.archived THEN
                RAISE EXCEPTION 'feature flag "%" of the LaunchDarkly document is archived', item.key
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the document.';
            END IF;
            IF f.flag_type <> 'json' AND f.flag_type <> vtype THEN
                RAISE EXCEPTION 'LaunchDarkly flag "%" serves a % value, but the flag is of type %',
                                item.key, jsonb_typeof(val), f.flag_type
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'A flag''s variations match its type; only a json flag takes values of any type.';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(f.variations) v WHERE v = val)
               AND jsonb_array_length(f.variations) >= opsflags.max_variations() THEN
                PERFORM opsflags.flag_field_error(item.key, 'variations',
                    format('at most %s variations', opsflags.max_variations()));
            END IF;
        ELSIF (item.value ->> 'variation')::numeric >= opsflags.max_variations() THEN
            PERFORM opsflags.flag_field_error(item.key, 'variation',
                format('the index of one of at most %s variations', opsflags.max_variations()),
                item.value -> 'variation');
        END IF;
    END LOOP;

    -- Evaluate in the target environment, as the export does.
    PERFORM set_config('opsflags.environment', env, true);
    FOR item IN SELECT key, value FROM jsonb_each(document) ORDER BY key LOOP
        spec := item.value;
        val := spec -> 'value';
        want := (spec ->> 'variation')::numeric::integer;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = item.key;
        IF NOT FOUND THEN
            -- A client document has the served value and its index, not the
            -- other variations.  A boolean flag gets [true, false] (or
            -- [false, true] to keep the index); another type the value at its
            -- index and placeholders of the same type before it ("", 0 or
            -- null), so an export gives the same index.
            IF jsonb_typeof(val) = 'boolean' THEN
                vars := CASE WHEN (want = 1) = (val = 'true') THEN '[false, true]'::jsonb ELSE '[true, false]' END;
                idx := CASE WHEN vars -> 0 = val THEN 0 ELSE 1 END;
            ELSE
                idx := coalesce(want, 0);
                vars := (SELECT jsonb_agg(CASE WHEN i = idx THEN val
                                               ELSE CASE jsonb_typeof(val) WHEN 'string' THEN '""'::jsonb
                                                                           WHEN 'number' THEN '0'::jsonb
                                                                           ELSE 'null'::jsonb END END ORDER BY i)
                         FROM generate_series(0, idx) i);
            END IF;
            onoff := opsflags_internal.default_on_off(vars);
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, version)
            VALUES (item.key, item.key,
                    CASE jsonb_typeof(val) WHEN 'boolean' THEN 'boolean' WHEN 'string' THEN 'string'
                         WHEN 'number' THEN 'number' ELSE 'json' END,
                    vars, coalesce((spec ->> 'flagVersion')::numeric::integer, 1))
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, e.name, onoff[1], onoff[2] FROM opsflags.environments e
            WHERE e.name <> env;
            -- Serving the value: off on it when it is false, else on on it.
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation, version)
            VALUES (f.id, env, val <> 'false',
                    CASE WHEN val = 'false' THEN onoff[1] ELSE idx END,
                    CASE WHEN val = 'false' THEN idx WHEN idx = onoff[2] THEN onoff[1] ELSE onoff[2] END,
                    coalesce((spec ->> 'version')::numeric::integer, 1));
            created := created || item.key;
            CONTINUE;
        END IF;

        -- The variation holding the value: the document's index when it
        -- holds it, else the first that does (NULL: none yet).
        idx := NULL;
        IF f.variations -> want = val THEN
            idx := want;
        ELSE
            SELECT o::integer - 1 INTO idx FROM jsonb_array_elements(f.variations) WITH ORDINALITY v(v, o)
            WHERE v.v = val ORDER BY o LIMIT 1;
        END IF;

        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF FOUND THEN
            x := opsflags.feature_explain(item.key, NULL::text, NULL::text);
            on_now := coalesce((x ->> 'enabled')::boolean, false);
            served := CASE WHEN on_now THEN c.on_variation ELSE c.off_variation END;
            -- Already served (an index that does not hold the value says nothing).
            IF x -> 'value' = val AND (served = idx OR want IS NULL OR f.variations -> want IS DISTINCT FROM val) THEN
                same := same || item.key;
                CONTINUE;
            END IF;
        END IF;

        IF idx IS NULL THEN
            -- A new variation (a weighted split gives it no share).
            UPDATE opsflags.feature_flags ff SET variations = ff.variations || jsonb_build_array(val)
            WHERE ff.id = f.id RETURNING * INTO f;
            idx := jsonb_array_length(f.variations) - 1;
        END IF;
        onoff := opsflags_internal.default_on_off(f.variations);

        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation, version)
            VALUES (f.id, env, val <> 'false',
                    CASE WHEN val = 'false' THEN onoff[1] ELSE idx END,
                    CASE WHEN val = 'false' THEN idx WHEN idx = onoff[2] THEN onoff[1] ELSE onoff[2] END,
                    coalesce((spec ->> 'version')::numeric::integer, 1));
        ELSE
            weights := CASE WHEN c.variation_weights IS NOT NULL
                                 AND jsonb_array_length(c.variation_weights) < jsonb_array_length(f.variations)
                            THEN c.variation_weights || '[0]'::jsonb ELSE c.variation_weights END;
            IF val = 'false' OR (NOT on_now AND val <> 'true') THEN
                -- Served while off: stay (or turn) off, on this variation.
                UPDATE opsflags.feature_flag_configs fc
                SET is_enabled = CASE WHEN on_now THEN false ELSE fc.is_enabled END,
                    off_variation = idx, variation_weights = weights
                WHERE fc.flag_id = f.id AND fc.environment = env;
            ELSE
                -- Served while on: on for a context without attributes, so
                -- no schedule outside its window and no partial rollout.
                UPDATE opsflags.feature_flag_configs fc
                SET is_enabled = true, on_variation = idx, variation_weights = weights,
                    enabled_percentage = CASE WHEN fc.enabled_percentage = 100 THEN 100 ELSE 0 END,
                    enable_at = CASE WHEN fc.enable_at > statement_timestamp() THEN NULL ELSE fc.enable_at END,
                    disable_at = CASE WHEN fc.disable_at <= statement_timestamp() THEN NULL ELSE fc.disable_at END
                WHERE fc.flag_id = f.id AND fc.environment = env;
            END IF;
        END IF;
        changed := changed || item.key;
    END LOOP;
    PERFORM set_config('opsflags.environment', prev, true);

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created),
                              'changed', to_jsonb(changed), 'unchanged', to_jsonb(same));
END
$$;

-- opsflags_internal.validate_config_row (src/config.sql)
CREATE OR REPLACE FUNCTION opsflags_internal.validate_config_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Every rule is checked here, before the row is written, so that no
    -- constraint reports the failing row (its value); errors name the key.
    IF NEW.config_key IS NULL THEN
        PERFORM opsflags_internal.config_raise('22004', 'configuration key must not be null');
    END IF;
    IF NOT opsflags.is_valid_config_key(NEW.config_key) THEN
        PERFORM opsflags_internal.config_raise('22023', format('invalid configuration key "%s"', NEW.config_key),
            'A configuration key is 1 to 200 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.');
    END IF;
    IF NEW.environment IS NULL THEN
        PERFORM opsflags_internal.config_raise('22004',
            format('environment of configuration key "%s" must not be null', NEW.config_key),
            NULL, 'Use ''all'' for every environment.');
    END IF;
    IF NEW.environment <> 'all'
       AND NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = NEW.environment) THEN
        PERFORM opsflags_internal.config_raise('42704', format('environment "%s" does not exist', NEW.environment),
            NULL, 'Environments are rows of opsflags.environments, or ''all''.');
    END IF;
    IF NEW.config_value IS NULL THEN
        PERFORM opsflags_internal.config_raise('22004',
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
        PERFORM opsflags_internal.config_raise('23505',
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

-- opsflags_internal.check_config_sensitivity (src/config.sql)
CREATE OR REPLACE FUNCTION opsflags_internal.check_config_sensitivity()
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
        PERFORM opsflags_internal.config_raise('22023',
            format('configuration key "%s" cannot be public in one environment and sensitive in another', k),
            'A key that is sensitive in one environment is sensitive in all.',
            'To make the key public, set is_sensitive to false on all its rows in one statement.');
    END IF;
    RETURN NULL;
END
$$;

-- opsflags.config_set (src/config.sql)
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
        PERFORM opsflags_internal.config_raise('22023',
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

-- opsflags.take_sample (src/worker.sql)
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

-- opsflags.audit_table (src/audit.sql)
CREATE OR REPLACE FUNCTION opsflags.audit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_class c WHERE c.oid = target);
    rel regclass;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        PERFORM opsflags_internal.audit_attach(rel, name);
    END LOOP;
END
$$;

-- opsflags_internal.audit_new_children (src/audit.sql)
CREATE OR REPLACE FUNCTION opsflags_internal.audit_new_children()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH RECURSIVE
        touched(relid) AS (
            SELECT c.objid FROM pg_event_trigger_ddl_commands() c
            WHERE c.classid = 'pg_class'::regclass AND c.object_type = 'table'
              AND opsflags_internal.audit_links_tables(c.command)),
        down(relid) AS (
            SELECT relid FROM touched
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.relid),
        up(relid, ancestor, depth) AS (
            SELECT d.relid, i.inhparent, 1 FROM down d JOIN pg_inherits i ON i.inhrelid = d.relid
            UNION ALL
            SELECT u.relid, i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.ancestor)
        SELECT DISTINCT ON (u.relid) u.relid::regclass AS relid, t.tgargs
        FROM up u
        JOIN pg_trigger t ON t.tgrelid = u.ancestor AND t.tgname = 'opsflags_audit_statement'
                         AND t.tgfoid = 'opsflags.audit_trigger()'::regprocedure
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger m WHERE m.tgrelid = u.relid AND m.tgname = 'opsflags_audit_statement'
                          AND m.tgenabled = 'A')
        ORDER BY u.relid, u.depth
    LOOP
        -- tgargs: the resource type, NUL-terminated, in the server encoding.
        PERFORM opsflags_internal.audit_attach(r.relid,
            convert_from(substring(r.tgargs FROM 1 FOR position('\x00'::bytea IN r.tgargs) - 1),
                         current_setting('server_encoding')));
    END LOOP;
END
$$;

-- The queries the HTTP server runs, as functions (they were text in C).

-- Not ready: maintenance mode, or a standby whose replay lags what it has
-- received by more than health.thresholds' replication_lag_s (300 s).
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

-- health: the health_status() document the same request read.
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

-- For opsflags.environment: health (the health_status() document the
-- request read, as pg_monitor sees it), 24 h of samples, the flags with what
-- a request without a user is served and why, the last 10 deployments and
-- the open alerts.  A deployment's version and commit are the values of
-- config app_version and commit_sha: where those keys are sensitive they are
-- left out (null), as health_status() leaves them out for pg_monitor.
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

-- One noun for a flag throughout the API: update_flag, get_flag and get_flags
-- are the functions; their former names stay as thin aliases.
CREATE FUNCTION opsflags.update_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group,variations}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at,on_variation,off_variation,variation_weights,segments}';
    env    text;
    fid    uuid;
    f      opsflags.feature_flags;
    c      opsflags.feature_flag_configs;
    field  text;
    v      jsonb;
    vars   jsonb;
    onoff  integer[];
    t_on   timestamptz;
    t_off  timestamptz;
    on_i   integer;
    off_i  integer;
    w      jsonb;
BEGIN
    fid := opsflags.flag_id(flag_key);
    env := opsflags.resolve_environment(environment);
    IF updates IS NULL OR jsonb_typeof(updates) <> 'object' THEN
        RAISE EXCEPTION 'updates must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR field IN SELECT jsonb_object_keys(updates) ORDER BY 1 LOOP
        IF NOT (field = ANY (flag_fields) OR field = ANY (config_fields)) THEN
            RAISE EXCEPTION 'unknown field "%" in feature flag update', field
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known fields: ' || array_to_string(flag_fields || config_fields, ', ') || '.';
        END IF;
    END LOOP;

    SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.id = fid;
    vars := f.variations;
    onoff := opsflags_internal.default_on_off(vars);
    -- The field checks, in the order of the field lists.
    FOREACH field IN ARRAY flag_fields || config_fields LOOP
        CONTINUE WHEN NOT updates ? field;
        v := updates -> field;
        CASE field
        WHEN 'flag_name' THEN
            IF jsonb_typeof(v) <> 'string' OR v = '""' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a non-empty string', v);
            END IF;
        WHEN 'description' THEN
            IF jsonb_typeof(v) NOT IN ('string', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a string or null', v);
            END IF;
        WHEN 'tags' THEN
            IF NOT opsflags.is_string_array(v) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of strings', v);
            END IF;
        WHEN 'rollout_group' THEN
            IF NOT (jsonb_typeof(v) = 'null' OR (jsonb_typeof(v) = 'string' AND v <> '""')) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a non-empty string, or null for the flag key', v);
            END IF;
        WHEN 'variations' THEN
            PERFORM opsflags_internal.check_variation_values(flag_key, f.flag_type, v);
            vars := v;
        WHEN 'is_enabled' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'true or false', v);
            END IF;
        WHEN 'enabled_for_users', 'enabled_for_roles', 'segments' THEN
            IF NOT opsflags.is_string_array(v) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of strings', v);
            END IF;
        WHEN 'enabled_percentage' THEN
            IF NOT opsflags_internal.is_whole_number(v, 0, 100) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a whole number from 0 to 100', v);
            END IF;
        WHEN 'enable_at', 'disable_at' THEN
            IF jsonb_typeof(v) = 'string' THEN
                BEGIN
                    PERFORM (v #>> '{}')::timestamptz;
                EXCEPTION WHEN data_exception THEN
                    PERFORM opsflags.flag_field_error(flag_key, field, 'a timestamp with time zone such as "2030-01-01T00:00:00Z", or null', v);
                END;
            ELSIF jsonb_typeof(v) <> 'null' THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a timestamp with time zone such as "2030-01-01T00:00:00Z", or null', v);
            END IF;
        WHEN 'on_variation', 'off_variation' THEN
            IF NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'the index of a variation, a whole number from 0', v);
            END IF;
        WHEN 'variation_weights' THEN
            IF jsonb_typeof(v) NOT IN ('array', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an array of non-negative whole numbers, one per variation, or null for no split', v);
            END IF;
        END CASE;
    END LOOP;

    -- The config as it will be: the schedule and the variations together.
    IF updates ?| config_fields THEN
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = fid AND fc.environment = env;
        IF NOT FOUND THEN
            c.on_variation := onoff[1];
            c.off_variation := onoff[2];
        END IF;
        t_on := CASE WHEN updates ? 'enable_at' THEN (updates ->> 'enable_at')::timestamptz ELSE c.enable_at END;
        t_off := CASE WHEN updates ? 'disable_at' THEN (updates ->> 'disable_at')::timestamptz ELSE c.disable_at END;
        IF t_on >= t_off THEN
            PERFORM opsflags.flag_field_error(flag_key, CASE WHEN updates ? 'enable_at' THEN 'enable_at' ELSE 'disable_at' END,
                format('enable_at (%s) before disable_at (%s)', t_on, t_off));
        END IF;
        on_i := CASE WHEN updates ? 'on_variation' THEN (updates ->> 'on_variation')::numeric::integer ELSE c.on_variation END;
        off_i := CASE WHEN updates ? 'off_variation' THEN (updates ->> 'off_variation')::numeric::integer ELSE c.off_variation END;
        w := CASE WHEN updates ? 'variation_weights' THEN nullif(updates -> 'variation_weights', 'null') ELSE c.variation_weights END;
        IF updates ?| '{variations,on_variation,off_variation,variation_weights}' OR c.flag_id IS NULL THEN
            PERFORM opsflags_internal.check_variations(flag_key, vars, on_i, off_i, w);
        END IF;
    END IF;

    IF updates ?| flag_fields THEN
        UPDATE opsflags.feature_flags ff SET
            flag_name     = CASE WHEN updates ? 'flag_name' THEN updates->>'flag_name' ELSE ff.flag_name END,
            description   = CASE WHEN updates ? 'description' THEN updates->>'description' ELSE ff.description END,
            tags          = CASE WHEN updates ? 'tags'
                                 THEN ARRAY(SELECT jsonb_array_elements_text(updates->'tags'))
                                 ELSE ff.tags END,
            rollout_group = CASE WHEN updates ? 'rollout_group' THEN updates->>'rollout_group' ELSE ff.rollout_group END,
            variations    = CASE WHEN updates ? 'variations' THEN updates->'variations' ELSE ff.variations END
        WHERE ff.id = fid;
    END IF;

    IF updates ?| config_fields THEN
        INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
        SELECT fid, env, d[1], d[2] FROM opsflags_internal.default_on_off(vars) d
        ON CONFLICT DO NOTHING;
        UPDATE opsflags.feature_flag_configs fc SET
            is_enabled         = CASE WHEN updates ? 'is_enabled' THEN (updates->'is_enabled')::boolean ELSE fc.is_enabled END,
            enabled_for_users  = CASE WHEN updates ? 'enabled_for_users' THEN updates->'enabled_for_users' ELSE fc.enabled_for_users END,
            enabled_for_roles  = CASE WHEN updates ? 'enabled_for_roles' THEN updates->'enabled_for_roles' ELSE fc.enabled_for_roles END,
            enabled_percentage = CASE WHEN updates ? 'enabled_percentage' THEN (updates->>'enabled_percentage')::numeric::integer ELSE fc.enabled_percentage END,
            enable_at          = t_on,
            disable_at         = t_off,
            on_variation       = on_i,
            off_variation      = off_i,
            variation_weights  = w,
            segments           = CASE WHEN updates ? 'segments' THEN updates->'segments' ELSE fc.segments END,
            updated_by         = session_user
        WHERE fc.flag_id = fid AND fc.environment = env;
    END IF;
END
$$;

CREATE FUNCTION opsflags.get_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
    doc jsonb;
BEGIN
    SELECT opsflags_internal.flag_document(f, c, env) INTO doc
    FROM opsflags.feature_flags f
    LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
    WHERE f.flag_key = get_flag.flag_key;
    RETURN doc;
END
$$;

CREATE FUNCTION opsflags.get_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := opsflags.resolve_environment(environment);
BEGIN
    RETURN coalesce((
        SELECT jsonb_agg(opsflags_internal.flag_document(f, c, env) ORDER BY f.flag_key)
        FROM opsflags.feature_flags f
        LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE include_archived OR NOT f.archived), '[]');
END
$$;

CREATE OR REPLACE FUNCTION opsflags.create_flag(
    flag_key    text,
    flag_name   text DEFAULT NULL,
    description text DEFAULT NULL,
    flag_type   text DEFAULT 'boolean',
    variations  jsonb DEFAULT NULL,
    tags        text[] DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
    ftype  text := coalesce(flag_type, 'boolean');
    vars   jsonb := coalesce(variations, CASE WHEN coalesce(flag_type, 'boolean') IN ('boolean', 'json')
                                              THEN '[true, false]'::jsonb END);
    onoff  integer[];
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT opsflags.is_valid_flag_key(flag_key) THEN
        RAISE EXCEPTION 'invalid flag key "%"', flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag key is 1 to 100 characters from A-Z, a-z, 0-9, ".", "_", ":" and "-", starting with a letter or digit.';
    END IF;
    IF flag_name = '' THEN
        PERFORM opsflags.flag_field_error(flag_key, 'flag_name', 'a non-empty name (NULL names the flag by its key)');
    END IF;
    PERFORM opsflags_internal.check_variation_values(flag_key, ftype, vars);
    IF array_position(tags, NULL) IS NOT NULL THEN
        PERFORM opsflags.flag_field_error(flag_key, 'tags', 'an array of tags without NULL elements');
    END IF;
    IF EXISTS (SELECT 1 FROM opsflags.feature_flags f WHERE f.flag_key = create_flag.flag_key) THEN
        RAISE EXCEPTION 'feature flag "%" already exists', flag_key
            USING ERRCODE = 'unique_violation',
                  HINT = 'Change it with opsflags.update_flag().';
    END IF;
    onoff := opsflags_internal.default_on_off(vars);
    PERFORM opsflags_internal.check_variations(flag_key, vars, onoff[1], onoff[2], NULL);
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, ftype, vars, coalesce(tags, '{}'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment.
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
    SELECT new_id, e.name, onoff[1], onoff[2] FROM opsflags.environments e;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION opsflags.toggle_flag(flag_key text, enabled boolean, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('is_enabled', enabled), environment);
END
$$;

CREATE OR REPLACE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$ SELECT opsflags.update_flag(flag_key, updates, environment) $$;
COMMENT ON FUNCTION opsflags.update_feature_flag(text, jsonb, text) IS 'Former name of update_flag()';

CREATE OR REPLACE FUNCTION opsflags.get_feature_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flag(flag_key, environment) $$;
COMMENT ON FUNCTION opsflags.get_feature_flag(text, text) IS 'Former name of get_flag()';

CREATE OR REPLACE FUNCTION opsflags.get_all_feature_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flags(environment, include_archived) $$;
COMMENT ON FUNCTION opsflags.get_all_feature_flags(text, boolean) IS 'Former name of get_flags()';

REVOKE ALL ON FUNCTION opsflags.update_flag(text, jsonb, text), opsflags.get_flag(text, text),
    opsflags.get_flags(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.update_flag(text, jsonb, text), opsflags.get_flag(text, text),
    opsflags.get_flags(text, boolean) TO opsflags_admin;
