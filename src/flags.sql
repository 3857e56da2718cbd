/*
 * flags.sql
 *	  Feature flags: the environments, the flags, their per-environment
 *	  configs and their prerequisites; the checks that keep a flag's
 *	  variations, configs and prerequisites consistent (for the API and plain
 *	  DML alike); evaluation (C, flags.c); the administration API; and the
 *	  LaunchDarkly client format (export and import).
 *
 * The tables hold the truth; the C library evaluates flags from a
 * per-backend cache that triggers invalidate transactionally (cache.sql).
 */

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

CREATE TABLE opsflags.environments (
    name        text PRIMARY KEY
                CONSTRAINT environment_name_format
                CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' AND name <> 'all'),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE opsflags.environments IS
  'Environments a flag can be configured for; a session evaluates in opsflags.environment';

INSERT INTO opsflags.environments (name, description) VALUES
    ('development', 'Local and development systems'),
    ('staging',     'Pre-production'),
    ('production',  'Production');

CREATE TABLE opsflags.feature_flags (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flag_key          text NOT NULL
                      CONSTRAINT feature_flags_flag_key_key UNIQUE
                      CONSTRAINT flag_key_format CHECK (opsflags.is_valid_flag_key(flag_key)),
    flag_name         text NOT NULL CONSTRAINT flag_name_not_empty CHECK (flag_name <> ''),
    description       text,
    flag_type         text NOT NULL DEFAULT 'boolean'
                      CONSTRAINT flag_type_known
                      CHECK (flag_type IN ('boolean', 'string', 'number', 'json')),
    variations        jsonb NOT NULL DEFAULT '[true, false]'
                      CONSTRAINT variations_is_array CHECK (jsonb_typeof(variations) = 'array'),
    tags              text[] NOT NULL DEFAULT '{}',
    rollout_group     text CONSTRAINT rollout_group_not_empty CHECK (rollout_group <> ''),
    archived          boolean NOT NULL DEFAULT false,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text NOT NULL DEFAULT session_user,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- The variant algorithm is pinned per flag: a later algorithm gets a new
    -- number and existing flags keep theirs, so nobody is re-bucketed.
    variant_algorithm smallint NOT NULL DEFAULT 1
                      CONSTRAINT variant_algorithm_known CHECK (variant_algorithm = 1)
);
COMMENT ON TABLE opsflags.feature_flags IS
  'Feature flags: global definition (key, name, type, variations, tags); state lives per environment in feature_flag_configs';

-- Each environment serves the on variation (or a weighted split) when the
-- flag is on, the off variation when it is off.
CREATE TABLE opsflags.feature_flag_configs (
    flag_id            uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    environment        text NOT NULL REFERENCES opsflags.environments (name) ON UPDATE CASCADE,
    is_enabled         boolean NOT NULL DEFAULT false,
    enabled_for_users  jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT enabled_for_users_is_string_array
                       CHECK (opsflags.is_string_array(enabled_for_users)),
    enabled_for_roles  jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT enabled_for_roles_is_string_array
                       CHECK (opsflags.is_string_array(enabled_for_roles)),
    enabled_percentage integer NOT NULL DEFAULT 0
                       CONSTRAINT enabled_percentage_between_0_and_100
                       CHECK (enabled_percentage BETWEEN 0 AND 100),
    enable_at          timestamptz,
    disable_at         timestamptz,
    version            integer NOT NULL DEFAULT 1,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text NOT NULL DEFAULT session_user,
    on_variation       integer NOT NULL DEFAULT 0,
    off_variation      integer NOT NULL DEFAULT 1,
    variation_weights  jsonb,
    -- Keys of opsflags.user_segments (segments.sql).
    segments           jsonb NOT NULL DEFAULT '[]'
                       CONSTRAINT segments_is_string_array CHECK (opsflags.is_string_array(segments)),
    PRIMARY KEY (flag_id, environment),
    CONSTRAINT enable_at_before_disable_at CHECK (enable_at < disable_at)
);
CREATE INDEX ON opsflags.feature_flag_configs (environment);
COMMENT ON TABLE opsflags.feature_flag_configs IS
  'Per-environment state of a flag: on/off, targeting, percentage rollout and schedule';

CREATE TABLE opsflags.flag_prerequisites (
    flag_id         uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    prerequisite_id uuid NOT NULL REFERENCES opsflags.feature_flags (id) ON DELETE CASCADE,
    variation       integer CONSTRAINT variation_not_negative CHECK (variation >= 0),
    PRIMARY KEY (flag_id, prerequisite_id),
    CONSTRAINT not_its_own_prerequisite CHECK (flag_id <> prerequisite_id)
);
COMMENT ON TABLE opsflags.flag_prerequisites IS
  'A flag is on for a user only if each prerequisite is on for them (and, when variation is set, serves that variation)';

SELECT pg_catalog.pg_extension_config_dump('opsflags.environments',
    $$WHERE name NOT IN ('development', 'staging', 'production')$$);
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flags', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.feature_flag_configs', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.flag_prerequisites', '');

-------------------------------------------------------------------------------
-- Row triggers: version and timestamps, NOTIFY
-------------------------------------------------------------------------------

-- Bump version and updated_at on every real change, whoever makes it.
-- Plain DML on a config that does not set updated_by records
-- opsflags.updated_by, else the session user.
CREATE FUNCTION opsflags_internal.touch_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW IS NOT DISTINCT FROM OLD THEN
        RETURN NEW;
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := pg_catalog.now();
    IF TG_TABLE_NAME = 'feature_flag_configs' THEN
        IF NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
            NEW.updated_by := coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flags
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.touch_row();
CREATE TRIGGER touch_row BEFORE UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.touch_row();

-- NOTIFY opsflags with one JSON event per changed row; delivered on commit only.
CREATE FUNCTION opsflags_internal.notify_flag_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event   text;
    key     text;
    env     text;
    version integer;
BEGIN
    IF TG_TABLE_NAME = 'feature_flags' THEN
        IF TG_OP = 'INSERT' THEN
            event := 'flag.created';
        ELSIF TG_OP = 'DELETE' THEN
            event := 'flag.deleted';
        ELSIF NEW.archived AND NOT OLD.archived THEN
            event := 'flag.archived';
        ELSE
            event := 'flag.updated';
        END IF;
        IF TG_OP = 'DELETE' THEN
            key := OLD.flag_key; version := OLD.version;
        ELSE
            key := NEW.flag_key; version := NEW.version;
        END IF;
    ELSE
        IF TG_OP = 'UPDATE' AND NEW.is_enabled IS DISTINCT FROM OLD.is_enabled THEN
            event := 'flag.toggled';
        ELSE
            event := 'flag.updated';
        END IF;
        IF TG_OP = 'DELETE' THEN
            env := OLD.environment; version := OLD.version;
            SELECT f.flag_key INTO key FROM opsflags.feature_flags f WHERE f.id = OLD.flag_id;
        ELSE
            env := NEW.environment; version := NEW.version;
            SELECT f.flag_key INTO key FROM opsflags.feature_flags f WHERE f.id = NEW.flag_id;
        END IF;
    END IF;
    PERFORM pg_notify('opsflags', json_build_object(
        'event', event, 'key', key, 'environment', env, 'version', version)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_flag_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.notify_flag_change();
CREATE TRIGGER notify_flag_change
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.notify_flag_change();
-- Changes applied by logical replication (session_replication_role =
-- replica) notify too.
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER notify_flag_change;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER notify_flag_change;

-------------------------------------------------------------------------------
-- Variations: checked when a flag or config is written
-------------------------------------------------------------------------------

-- Limits checked when a flag is written: the number of variations a flag
-- may have, and (in check_variations) a weight total that fits the 32-bit
-- arithmetic of evaluation.
CREATE FUNCTION opsflags.max_variations()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 1000';
COMMENT ON FUNCTION opsflags.max_variations() IS
  'The most variations a flag may have (1000)';

-- The flag API's error for one bad field: 22023, naming the field and what
-- it accepts, never the whole row.
CREATE FUNCTION opsflags.flag_field_error(flag_key text, field text, expected text, given jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shown text := left(given::text, 60);
BEGIN
    IF length(given::text) > 60 THEN
        shown := shown || '...';
    END IF;
    RAISE EXCEPTION 'invalid value for field "%" of feature flag "%"', field, flag_key
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = CASE WHEN given IS NULL THEN 'Expected ' || expected || '.'
                            ELSE format('Expected %s, got %s.', expected, shown) END;
END
$$;
COMMENT ON FUNCTION opsflags.flag_field_error(text, text, text, jsonb) IS
  'Internal to the flag API (not for direct use): raises its 22023 error for one bad field; in schema opsflags because error contexts name it';

-- A whole number within [lo, hi] (jsonb number without a fraction).
-- PL/pgSQL, so that the cast runs only after the type check (an SQL
-- function would be inlined and its cast folded for constant arguments).
CREATE FUNCTION opsflags_internal.is_whole_number(value jsonb, lo numeric, hi numeric)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n numeric;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) <> 'number' THEN
        RETURN false;
    END IF;
    n := (value #>> '{}')::numeric;
    RETURN n = trunc(n) AND n BETWEEN lo AND hi;
END
$$;

-- A flag's variations must be a non-empty array of at most max_variations()
-- values of its type: booleans (exactly true and false), strings, numbers;
-- a json flag takes any values.
CREATE FUNCTION opsflags_internal.check_variation_values(flag_key text, flag_type text, variations jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   integer;
    bad record;
BEGIN
    IF flag_type IS NULL OR flag_type NOT IN ('boolean', 'string', 'number', 'json') THEN
        PERFORM opsflags.flag_field_error(flag_key, 'flag_type', 'one of boolean, string, number, json',
                                          to_jsonb(flag_type));
    END IF;
    IF variations IS NULL OR jsonb_typeof(variations) <> 'array' OR jsonb_array_length(variations) = 0 THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variations', 'a non-empty JSON array of values', variations);
    END IF;
    n := jsonb_array_length(variations);
    IF n > opsflags.max_variations() THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variations',
            format('at most %s variations', opsflags.max_variations()), to_jsonb(n) );
    END IF;
    IF flag_type = 'boolean' THEN
        IF NOT (variations = '[true, false]' OR variations = '[false, true]') THEN
            PERFORM opsflags.flag_field_error(flag_key, 'variations',
                '[true, false] or [false, true] for a boolean flag', variations);
        END IF;
    ELSIF flag_type IN ('string', 'number') THEN
        SELECT o - 1 AS i, jsonb_typeof(v) AS t INTO bad
        FROM jsonb_array_elements(variations) WITH ORDINALITY a(v, o)
        WHERE jsonb_typeof(v) <> flag_type ORDER BY o LIMIT 1;
        IF FOUND THEN
            PERFORM opsflags.flag_field_error(flag_key, 'variations',
                format('%ss for a %s flag (variation %s is %s)', flag_type, flag_type, bad.i,
                       CASE bad.t WHEN 'null' THEN 'null' WHEN 'object' THEN 'an object'
                                  WHEN 'array' THEN 'an array' ELSE 'a ' || bad.t END));
        END IF;
    END IF;
END
$$;

-- Variation indexes and weights must fit the flag's variations, the weight
-- total must fit evaluation's 32-bit arithmetic, and a flag never serves
-- false while on nor true while off, so that feature_enabled and
-- feature_value always agree.  Checked on configs and, when variations
-- change, on every config of the flag.
CREATE FUNCTION opsflags_internal.check_variations(flag_key text, variations jsonb, on_variation integer,
                                                     off_variation integer, weights jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := jsonb_array_length(variations);
    bad integer;
BEGIN
    IF on_variation < 0 OR on_variation >= n THEN
        RAISE EXCEPTION 'on variation % does not exist for flag "%"', on_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The flag has %s variations, numbered from 0.', n);
    END IF;
    IF off_variation < 0 OR off_variation >= n THEN
        RAISE EXCEPTION 'off variation % does not exist for flag "%"', off_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The flag has %s variations, numbered from 0.', n);
    END IF;
    IF variations -> on_variation = 'false' THEN
        RAISE EXCEPTION 'on variation % of flag "%" is false', on_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag that is on must not serve false: feature_enabled would say true and feature_value false.',
                  HINT = 'Turn the flag off to serve false.';
    END IF;
    IF variations -> off_variation = 'true' THEN
        RAISE EXCEPTION 'off variation % of flag "%" is true', off_variation, flag_key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag that is off must not serve true: feature_enabled would say false and feature_value true.',
                  HINT = 'Turn the flag on to serve true.';
    END IF;
    IF weights IS NOT NULL THEN
        IF jsonb_typeof(weights) <> 'array' OR jsonb_array_length(weights) <> n
           OR jsonb_path_exists(weights, 'strict $[*] ? (@.type() != "number" || @ < 0 || @.floor() != @)', '{}', true)
           OR (SELECT sum(w::numeric) FROM jsonb_array_elements_text(weights) w) NOT BETWEEN 1 AND 2147483647 THEN
            RAISE EXCEPTION 'invalid variation weights for flag "%"', flag_key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Weights are an array of %s non-negative integers, one per variation, with a total from 1 to 2147483647.', n);
        END IF;
        SELECT o - 1 INTO bad FROM jsonb_array_elements(weights) WITH ORDINALITY w(v, o)
        WHERE (w.v #>> '{}')::numeric > 0 AND variations -> (o::integer - 1) = 'false' ORDER BY o LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'variation weights of flag "%" give variation % (false) a share', flag_key, bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A flag that is on must not serve false: feature_enabled would say true and feature_value false.',
                      HINT = 'Give false a weight of 0, or use enabled_percentage for a partial rollout.';
        END IF;
    END IF;
END
$$;

-- The on and off variations a new config starts with: on the first
-- variation that is not false, off the next one that is not true.
CREATE FUNCTION opsflags_internal.default_on_off(variations jsonb)
RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH v AS (SELECT o::integer - 1 AS i, val FROM jsonb_array_elements(variations) WITH ORDINALITY a(val, o)),
         o AS (SELECT coalesce((SELECT min(i) FROM v WHERE val <> 'false'), 0) AS on_i)
    SELECT ARRAY[o.on_i,
                 coalesce((SELECT min(i) FROM v WHERE val <> 'true' AND i <> o.on_i),
                          (SELECT min(i) FROM v WHERE val <> 'true'), 0)]
    FROM o
$$;

-- Plain DML on feature_flags gets the same checks as the API.
CREATE FUNCTION opsflags_internal.validate_flag_variations()
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
CREATE TRIGGER validate_flag_variations BEFORE INSERT OR UPDATE OF variations, flag_type ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.validate_flag_variations();

-- A config's variations are checked when it is created and when they
-- change, so that switching a flag on or off is never refused because of
-- what an older version allowed.  Segments named must exist.
CREATE FUNCTION opsflags_internal.validate_flag_config()
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
CREATE TRIGGER validate_flag_config BEFORE INSERT OR UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.validate_flag_config();

-------------------------------------------------------------------------------
-- Prerequisites (evaluation step 4)
-------------------------------------------------------------------------------

-- Prerequisite chains are at most this deep; evaluation stops there too.
CREATE FUNCTION opsflags.max_prerequisite_depth()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 8';

-- The most prerequisites one flag may reach, directly or through others:
-- bounds the work of one evaluation (each is evaluated once).
CREATE FUNCTION opsflags.max_prerequisite_count()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 100';

-- Refuse cycles, chains deeper than max_prerequisite_depth(), flags that
-- would reach more than max_prerequisite_count() prerequisites, and
-- variations the prerequisite does not have.
CREATE FUNCTION opsflags_internal.validate_prerequisite()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- recursive estimates are far above the rows these queries see
AS $$
DECLARE
    cycle text;
    depth integer;
    nvar  integer;
    worst_key text;
    worst bigint;
BEGIN
    -- Every query below keeps sets (UNION), not paths: its work grows with
    -- the flags and prerequisites involved, not with the number of paths
    -- through a graph of shared prerequisites.

    -- A cycle: the flag is reachable from its new prerequisite.  Then name
    -- one: walk back from the flag to the prerequisite along one edge each.
    WITH RECURSIVE reach(id, parent) AS (
        SELECT NEW.prerequisite_id, NULL::uuid
        UNION
        SELECT p.prerequisite_id, p.flag_id
        FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
        WHERE r.id <> NEW.flag_id
    ), back(id, path, n) AS (
        SELECT NEW.flag_id, ARRAY[NEW.flag_id], 1
        WHERE EXISTS (SELECT FROM reach WHERE id = NEW.flag_id)
        UNION ALL
        SELECT (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL),
               (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL) || b.path,
               b.n + 1
        FROM back b
        WHERE b.id <> NEW.prerequisite_id AND b.n <= (SELECT count(*) FROM reach)
    )
    SELECT (SELECT string_agg(f.flag_key, ' -> ' ORDER BY o)
            FROM unnest(NEW.flag_id || b.path) WITH ORDINALITY u(id, o) JOIN opsflags.feature_flags f ON f.id = u.id)
    INTO cycle FROM back b WHERE b.id = NEW.prerequisite_id LIMIT 1;
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION 'prerequisite would create a cycle: %', cycle
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Depth of the chains through the new edge: below the flag plus above it.
    WITH RECURSIVE down(id, d) AS (
        SELECT NEW.prerequisite_id, 1
        UNION
        SELECT p.prerequisite_id, down.d + 1 FROM down JOIN opsflags.flag_prerequisites p ON p.flag_id = down.id
        WHERE down.d <= opsflags.max_prerequisite_depth()
    ), up(id, d) AS (
        SELECT NEW.flag_id, 0
        UNION
        SELECT p.flag_id, up.d + 1 FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
        WHERE up.d <= opsflags.max_prerequisite_depth()
    )
    SELECT (SELECT max(d) FROM down) + (SELECT max(d) FROM up) INTO depth;
    IF depth > opsflags.max_prerequisite_depth() THEN
        RAISE EXCEPTION 'prerequisite chain would be % deep', depth
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Chains of prerequisites are at most %s deep.', opsflags.max_prerequisite_depth());
    END IF;

    -- Prerequisites reachable, with the new edge, from the flag and from
    -- every flag that requires it: each counted once.
    WITH RECURSIVE up(id) AS (
        SELECT NEW.flag_id
        UNION
        SELECT p.flag_id FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
    ), reach(root, id) AS (
        SELECT up.id, p.prerequisite_id FROM up JOIN opsflags.flag_prerequisites p ON p.flag_id = up.id
        UNION
        SELECT up.id, NEW.prerequisite_id FROM up
        UNION
        SELECT r.root, p.prerequisite_id FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
    )
    SELECT f.flag_key, n INTO worst_key, worst
    FROM (SELECT r.root, count(*) AS n FROM reach r GROUP BY r.root) c
    JOIN opsflags.feature_flags f ON f.id = c.root
    ORDER BY n DESC, f.flag_key LIMIT 1;
    IF worst > opsflags.max_prerequisite_count() THEN
        RAISE EXCEPTION 'prerequisite would make flag "%" depend on % prerequisites', worst_key, worst
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A flag depends on at most %s prerequisites, directly or through other prerequisites.',
                                  opsflags.max_prerequisite_count());
    END IF;

    IF NEW.variation IS NOT NULL THEN
        SELECT jsonb_array_length(f.variations) INTO nvar FROM opsflags.feature_flags f WHERE f.id = NEW.prerequisite_id;
        IF NEW.variation >= nvar THEN
            RAISE EXCEPTION 'variation % does not exist for the prerequisite flag', NEW.variation
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The flag has %s variations, numbered from 0.', nvar);
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_prerequisite BEFORE INSERT OR UPDATE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags_internal.validate_prerequisite();

CREATE FUNCTION opsflags.add_prerequisite(flag_key text, prerequisite_key text, variation integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, variation)
    VALUES (opsflags.flag_id(flag_key), opsflags.flag_id(prerequisite_key), variation)
    ON CONFLICT (flag_id, prerequisite_id) DO UPDATE SET variation = EXCLUDED.variation;
END
$$;

CREATE FUNCTION opsflags.remove_prerequisite(flag_key text, prerequisite_key text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM opsflags.flag_prerequisites p
    WHERE p.flag_id = opsflags.flag_id(flag_key) AND p.prerequisite_id = opsflags.flag_id(prerequisite_key);
    RETURN FOUND;
END
$$;

-------------------------------------------------------------------------------
-- Evaluation (C)
-------------------------------------------------------------------------------

-- STABLE: one statement sees one state of the flags.  PARALLEL RESTRICTED:
-- the cache lives in the leader backend.
CREATE FUNCTION opsflags.feature_enabled(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS boolean
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_enabled';
COMMENT ON FUNCTION opsflags.feature_enabled(text, text, text) IS
  'Evaluate a feature flag for a user and role in the environment opsflags.environment; never raises, false when in doubt';

CREATE FUNCTION opsflags.feature_value(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_value';
COMMENT ON FUNCTION opsflags.feature_value(text, text, text) IS
  'The variation served to a user: on (or a weighted split) when the flag is on for them, off when not; NULL for an unknown flag';

CREATE FUNCTION opsflags.feature_explain(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_explain';
COMMENT ON FUNCTION opsflags.feature_explain(text, text, text) IS
  'Why feature_enabled answers as it does: enabled, value, reason, bucket, environment, flag_version';

CREATE FUNCTION opsflags.feature_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_feature_guard';
COMMENT ON FUNCTION opsflags.feature_guard() IS
  'Trigger: EXECUTE FUNCTION opsflags.feature_guard(''flag.key'' [, ''environment'']) refuses writes while the flag is off for session_user/current_user in that environment, else in opsflags.guard_environment, else in the server''s opsflags.environment';

-------------------------------------------------------------------------------
-- Administration API
-------------------------------------------------------------------------------

-- The environment an API call acts on: the argument, else opsflags.environment.
-- Raises 42704 for an environment that does not exist.
CREATE FUNCTION opsflags.resolve_environment(environment text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env text := coalesce(environment, current_setting('opsflags.environment', true), 'production');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = env) THEN
        RAISE EXCEPTION 'environment "%" does not exist', env
            USING ERRCODE = 'undefined_object',
                  HINT = 'Environments are rows of opsflags.environments.';
    END IF;
    RETURN env;
END
$$;

-- The id of a flag by key; 22004 for NULL, 42704 for an unknown key.
CREATE FUNCTION opsflags.flag_id(flag_key text)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id uuid;
BEGIN
    IF flag_key IS NULL THEN
        RAISE EXCEPTION 'flag key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT f.id INTO id FROM opsflags.feature_flags f WHERE f.flag_key = flag_id.flag_key;
    IF id IS NULL THEN
        RAISE EXCEPTION 'feature flag "%" does not exist', flag_key USING ERRCODE = 'undefined_object';
    END IF;
    RETURN id;
END
$$;

-- flag_name defaults to the key; every argument is checked before anything
-- is written.
CREATE FUNCTION opsflags.create_flag(
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

-- Every field is checked for its type and range first (22023, naming the
-- field); then the resulting config as a whole.
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

CREATE FUNCTION opsflags.toggle_flag(flag_key text, enabled boolean, environment text DEFAULT NULL)
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

CREATE FUNCTION opsflags.archive_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.feature_flags f SET archived = true
    WHERE f.id = opsflags.flag_id(archive_flag.flag_key) AND NOT f.archived;
END
$$;

-- Archived flags can be brought back, and deleted for good.
CREATE FUNCTION opsflags.restore_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.feature_flags f SET archived = false
    WHERE f.id = opsflags.flag_id(restore_flag.flag_key) AND f.archived;
END
$$;
COMMENT ON FUNCTION opsflags.restore_flag(text) IS
  'Bring an archived flag back: it evaluates by its configs again';

CREATE FUNCTION opsflags.delete_flag(flag_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f          opsflags.feature_flags;
    dependents text;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.id = opsflags.flag_id(delete_flag.flag_key) FOR UPDATE;
    IF NOT f.archived THEN
        RAISE EXCEPTION 'feature flag "%" is not archived', flag_key
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Only archived flags can be deleted.',
                  HINT = 'Archive it first with opsflags.archive_flag().';
    END IF;
    SELECT string_agg(format('"%s"', d.flag_key), ', ' ORDER BY d.flag_key) INTO dependents
    FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags d ON d.id = p.flag_id
    WHERE p.prerequisite_id = f.id;
    IF dependents IS NOT NULL THEN
        RAISE EXCEPTION 'feature flag "%" is a prerequisite of other flags', flag_key
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Flags that name it as a prerequisite: %s.', dependents),
                  HINT = 'Remove those prerequisites with opsflags.remove_prerequisite() first.';
    END IF;
    -- Configs and prerequisites first, each audited and announced while the
    -- flag (and so its key) still exists; then the flag.
    DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
    DELETE FROM opsflags.feature_flag_configs c WHERE c.flag_id = f.id;
    DELETE FROM opsflags.feature_flags ff WHERE ff.id = f.id;
END
$$;
COMMENT ON FUNCTION opsflags.delete_flag(text) IS
  'Delete an archived flag with its configs and prerequisites; refused while other flags name it as a prerequisite';

-- Everything that decides a flag's answers in one environment.
CREATE FUNCTION opsflags_internal.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
        'flag_type', f.flag_type, 'variations', f.variations, 'tags', to_jsonb(f.tags),
        'rollout_group', f.rollout_group, 'variant_algorithm', f.variant_algorithm,
        'archived', f.archived, 'version', f.version,
        'created_at', f.created_at, 'created_by', f.created_by, 'updated_at', f.updated_at,
        'prerequisites', coalesce((
            SELECT jsonb_agg(jsonb_build_object('key', pf.flag_key, 'variation', p.variation,
                                                'value', pf.variations -> p.variation) ORDER BY pf.flag_key)
            FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
            WHERE p.flag_id = f.id), '[]'),
        'environment', environment,
        'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
            'is_enabled', c.is_enabled, 'enabled_for_users', c.enabled_for_users,
            'enabled_for_roles', c.enabled_for_roles, 'segments', c.segments,
            'enabled_percentage', c.enabled_percentage,
            'enable_at', c.enable_at, 'disable_at', c.disable_at,
            'on_variation', c.on_variation, 'off_variation', c.off_variation,
            'variation_weights', c.variation_weights, 'version', c.version,
            'updated_at', c.updated_at, 'updated_by', c.updated_by) END)
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

-- The flag API's earlier names (update_feature_flag, get_feature_flag,
-- get_all_feature_flags), kept for code that calls them: the API names a flag
-- "flag" throughout.
CREATE FUNCTION opsflags.update_feature_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$ SELECT opsflags.update_flag(flag_key, updates, environment) $$;
COMMENT ON FUNCTION opsflags.update_feature_flag(text, jsonb, text) IS 'Former name of update_flag()';

CREATE FUNCTION opsflags.get_feature_flag(flag_key text, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flag(flag_key, environment) $$;
COMMENT ON FUNCTION opsflags.get_feature_flag(text, text) IS 'Former name of get_flag()';

CREATE FUNCTION opsflags.get_all_feature_flags(environment text DEFAULT NULL, include_archived boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT opsflags.get_flags(environment, include_archived) $$;
COMMENT ON FUNCTION opsflags.get_all_feature_flags(text, boolean) IS 'Former name of get_flags()';

-------------------------------------------------------------------------------
-- LaunchDarkly client format: the evaluated flags of an environment as
-- {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}},
-- and the import of such a document.
-------------------------------------------------------------------------------

-- The export evaluates each flag once, for no particular user, without
-- counting it as usage.
CREATE FUNCTION opsflags.flags_for_environment(environment text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env  text := opsflags.resolve_environment(environment);
    prev text := coalesce(current_setting('opsflags.environment', true), 'production');
    doc  jsonb;
BEGIN
    PERFORM set_config('opsflags.environment', env, true);
    SELECT coalesce(jsonb_object_agg(s.flag_key, jsonb_build_object(
               'flagVersion', s.fversion,
               'trackEvents', false,
               'value', s.x -> 'value',
               'variation', CASE WHEN (s.x ->> 'enabled')::boolean THEN s.on_variation ELSE s.off_variation END,
               'version', s.cversion) ORDER BY s.flag_key), '{}')
    INTO doc
    FROM (SELECT f.flag_key, f.version AS fversion, c.version AS cversion, c.on_variation, c.off_variation,
                 opsflags.feature_explain(f.flag_key, NULL::text, NULL::text) AS x
          FROM opsflags.feature_flags f
          JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
          WHERE NOT f.archived) s;
    PERFORM set_config('opsflags.environment', prev, true);
    RETURN doc;
END
$$;
COMMENT ON FUNCTION opsflags.flags_for_environment(text) IS
  'The environment''s flags in LaunchDarkly''s client format: {"key": {"flagVersion", "trackEvents", "value", "variation", "version"}}';

-- A client document says what each flag serves a context without
-- attributes.  A flag that already serves that is left alone (so importing
-- the database's own export changes nothing); otherwise the smallest change
-- that makes it serve the value: the variation of the state it is in (on or
-- off), and the state only where the value needs it (true is served only
-- while on, false only while off).
CREATE FUNCTION opsflags.import_launchdarkly(environment text, document jsonb)
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
COMMENT ON FUNCTION opsflags.import_launchdarkly(text, jsonb) IS
  'Load a LaunchDarkly client-format document into an environment: creates missing flags, changes a flag only where it does not serve the document''s value; idempotent';

-------------------------------------------------------------------------------
-- Privileges: anyone may evaluate; changing and reading flag state is for
-- opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.touch_row(), opsflags_internal.notify_flag_change(),
    opsflags_internal.validate_flag_config(), opsflags_internal.validate_flag_variations(), opsflags_internal.validate_prerequisite(),
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags_internal.is_whole_number(jsonb, numeric, numeric),
    opsflags_internal.check_variation_values(text, text, jsonb), opsflags_internal.default_on_off(jsonb),
    opsflags_internal.check_variations(text, jsonb, integer, integer, jsonb),
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text),
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[]),
    opsflags.update_flag(text, jsonb, text), opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.archive_flag(text), opsflags.restore_flag(text), opsflags.delete_flag(text),
    opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_flag(text, text), opsflags.get_feature_flag(text, text),
    opsflags.get_flags(text, boolean), opsflags.get_all_feature_flags(text, boolean),
    opsflags.flags_for_environment(text), opsflags.import_launchdarkly(text, jsonb)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    opsflags.environments, opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.flag_prerequisites
TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags_internal.is_whole_number(jsonb, numeric, numeric),
    opsflags_internal.check_variation_values(text, text, jsonb), opsflags_internal.default_on_off(jsonb),
    opsflags_internal.check_variations(text, jsonb, integer, integer, jsonb),
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text),
    opsflags.resolve_environment(text), opsflags.flag_id(text),
    opsflags.create_flag(text, text, text, text, jsonb, text[]),
    opsflags.update_flag(text, jsonb, text), opsflags.update_feature_flag(text, jsonb, text),
    opsflags.toggle_flag(text, boolean, text),
    opsflags.archive_flag(text), opsflags.restore_flag(text), opsflags.delete_flag(text),
    opsflags_internal.flag_document(opsflags.feature_flags, opsflags.feature_flag_configs, text),
    opsflags.get_flag(text, text), opsflags.get_feature_flag(text, text),
    opsflags.get_flags(text, boolean), opsflags.get_all_feature_flags(text, boolean),
    opsflags.flags_for_environment(text), opsflags.import_launchdarkly(text, jsonb)
TO opsflags_admin;
