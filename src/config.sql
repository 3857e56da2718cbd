/*
 * config.sql
 *	  Configuration: opsflags.app_config (a value per key and environment,
 *	  'all' the fallback), the validation and sensitivity triggers, NOTIFY,
 *	  and the API (config_get in C, config.c; config_set, config_delete,
 *	  config_all).
 *
 * Sensitivity belongs to the key: a key sensitive in one environment is
 * sensitive in all.  A new row of a sensitive key is sensitive; a row that
 * becomes sensitive makes every row of its key sensitive (trigger
 * spread_config_sensitivity); a key becomes public only when all its rows
 * are made public in one statement (trigger check_config_sensitivity).
 */

CREATE FUNCTION opsflags.is_valid_config_key(config_key text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT config_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$' $$;
COMMENT ON FUNCTION opsflags.is_valid_config_key(text) IS
  'true when the text is a well-formed configuration key: 1 to 200 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit';

-- No CHECK constraints here on purpose: a constraint violation reports the
-- whole failing row, secret included.  The validation trigger below checks
-- every rule first and names only the key.
CREATE TABLE opsflags.app_config (
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    config_key   text NOT NULL,
    config_value jsonb NOT NULL,
    environment  text NOT NULL DEFAULT 'all',
    description  text,
    is_sensitive boolean NOT NULL DEFAULT false,
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT session_user,
    CONSTRAINT app_config_key_environment_key UNIQUE (config_key, environment)
);
COMMENT ON TABLE opsflags.app_config IS
  'Configuration values per environment; environment ''all'' is the fallback. Sensitive values are readable by admins only';
SELECT pg_catalog.pg_extension_config_dump('opsflags.app_config', '');

-- Errors of the configuration code go through config_raise(), which keeps
-- the statement (and the context) out of the server log: a statement that
-- writes a configuration row may hold a secret.  PL/pgSQL's RAISE cannot.
CREATE FUNCTION opsflags_internal.config_raise(sqlstate text, message text, detail text DEFAULT NULL,
                                      hint text DEFAULT NULL)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_config_raise';
COMMENT ON FUNCTION opsflags_internal.config_raise(text, text, text, text) IS
  'Raise an error of the configuration code; the server log gets neither the statement nor the context';

CREATE FUNCTION opsflags_internal.validate_config_row()
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
CREATE TRIGGER validate_config_row BEFORE INSERT OR UPDATE ON opsflags.app_config
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.app_config'))
    EXECUTE FUNCTION opsflags_internal.validate_config_row();

-- A row that became sensitive (inserted so, marked, or moved to another
-- key) makes the other rows of its key sensitive.
CREATE FUNCTION opsflags_internal.spread_config_sensitivity()
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
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.app_config'))
    EXECUTE FUNCTION opsflags_internal.spread_config_sensitivity();

-- After each statement: no key written by it is sensitive in one
-- environment and public in another (making one environment's row public
-- while the key stays sensitive elsewhere is refused).
CREATE FUNCTION opsflags_internal.check_config_sensitivity()
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
CREATE TRIGGER check_config_sensitivity_insert
    AFTER INSERT ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.check_config_sensitivity();
CREATE TRIGGER check_config_sensitivity_update
    AFTER UPDATE ON opsflags.app_config REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.check_config_sensitivity();

-- NOTIFY opsflags on every committed change; never the value.
CREATE FUNCTION opsflags_internal.notify_config_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('opsflags', json_build_object(
        'event', CASE WHEN TG_OP = 'DELETE' THEN 'config.deleted' ELSE 'config.updated' END,
        'key', r.config_key, 'environment', r.environment, 'version', r.version,
        'sensitive', r.is_sensitive)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_config_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.app_config'))
    EXECUTE FUNCTION opsflags_internal.notify_config_change();
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER notify_config_change;

-- Reads: C, cached per backend, sensitive values for admins only.
CREATE FUNCTION opsflags.config_get(config_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_config_get';
COMMENT ON FUNCTION opsflags.config_get(text, text) IS
  'The value for the environment (default opsflags.environment), else for ''all'', else NULL; sensitive values for admins only (else 42501)';

CREATE FUNCTION opsflags.config_set(
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
COMMENT ON FUNCTION opsflags.config_set(text, jsonb, text, text, text, boolean) IS
  'Create or replace a configuration value; is_sensitive NULL keeps the key''s sensitivity (true makes the key sensitive in every environment)';

CREATE FUNCTION opsflags.config_delete(config_key text, environment text DEFAULT 'all')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM opsflags.app_config c
    WHERE c.config_key = config_delete.config_key AND c.environment = config_delete.environment;
    RETURN FOUND;
END
$$;

-- Listing for anyone: values of a key sensitive in any environment are redacted.
CREATE FUNCTION opsflags.config_all(environment text DEFAULT NULL)
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
COMMENT ON FUNCTION opsflags.config_all(text) IS
  'Configuration rows of an environment plus ''all'' (every row when NULL); sensitive values redacted';

REVOKE ALL ON FUNCTION
    opsflags_internal.config_raise(text, text, text, text),
    opsflags_internal.validate_config_row(), opsflags_internal.spread_config_sensitivity(), opsflags_internal.check_config_sensitivity(),
    opsflags_internal.notify_config_change(),
    opsflags.config_set(text, jsonb, text, text, text, boolean),
    opsflags.config_delete(text, text)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON opsflags.app_config TO opsflags_admin;
-- The triggers run as the writer, who must be able to raise their errors.
GRANT EXECUTE ON FUNCTION
    opsflags_internal.config_raise(text, text, text, text),
    opsflags.config_set(text, jsonb, text, text, text, boolean),
    opsflags.config_delete(text, text)
TO opsflags_admin;
