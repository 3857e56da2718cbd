/*
 * variations.sql
 *	  A flag's variations and what serves them: the checks run when a flag or
 *	  a config is written, by the API (flags.sql) and plain DML alike, and
 *	  the limits they enforce (max_variations, the weight total evaluation's
 *	  arithmetic allows).  flag_field_error is the flag API's error for one
 *	  bad field.
 */

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

-- Names of variations (variation_names): null, or an array as long as the
-- variations of unique strings and nulls.  The flag's trigger (rules.sql)
-- checks the same for plain DML; the API says which field is wrong.
CREATE FUNCTION opsflags_internal.check_variation_names(flag_key text, variations jsonb, names jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF names IS NULL OR jsonb_typeof(names) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(names) <> 'array'
       OR EXISTS (SELECT FROM jsonb_array_elements(names) n WHERE jsonb_typeof(n) NOT IN ('string', 'null') OR n = '""')
       OR jsonb_array_length(names) <> jsonb_array_length(variations) THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variation_names',
            format('an array of %s non-empty names (strings, or null for no name), one per variation, or null',
                   jsonb_array_length(variations)), names);
    END IF;
    IF EXISTS (SELECT FROM jsonb_array_elements(names) n WHERE jsonb_typeof(n) = 'string'
               GROUP BY n HAVING count(*) > 1) THEN
        PERFORM opsflags.flag_field_error(flag_key, 'variation_names', 'names that differ from each other', names);
    END IF;
END
$$;

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

-- Variation indexes and weights must fit the flag's variations and the
-- weight total evaluation's 32-bit arithmetic.  Any variation may be served
-- on or off: a boolean one served decides what feature_enabled says, so it
-- and feature_value always agree.  Checked on configs and, when variations
-- change, on every config of the flag.
CREATE FUNCTION opsflags_internal.check_variations(flag_key text, variations jsonb, on_variation integer,
                                                     off_variation integer, weights jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := jsonb_array_length(variations);
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
    IF weights IS NOT NULL THEN
        IF jsonb_typeof(weights) <> 'array' OR jsonb_array_length(weights) <> n
           OR jsonb_path_exists(weights, 'strict $[*] ? (@.type() != "number" || @ < 0 || @.floor() != @)', '{}', true)
           OR (SELECT sum(w::numeric) FROM jsonb_array_elements_text(weights) w) NOT BETWEEN 1 AND 2147483647 THEN
            RAISE EXCEPTION 'invalid variation weights for flag "%"', flag_key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Weights are an array of %s non-negative integers, one per variation, with a total from 1 to 2147483647.', n);
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
-- Privileges: the checks are for opsflags_admin (the API calls them).
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.validate_flag_config(), opsflags_internal.validate_flag_variations(),
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags_internal.is_whole_number(jsonb, numeric, numeric),
    opsflags_internal.check_variation_values(text, text, jsonb), opsflags_internal.default_on_off(jsonb),
    opsflags_internal.check_variations(text, jsonb, integer, integer, jsonb),
    opsflags_internal.check_variation_names(text, jsonb, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.max_variations(), opsflags.flag_field_error(text, text, text, jsonb),
    opsflags_internal.is_whole_number(jsonb, numeric, numeric),
    opsflags_internal.check_variation_values(text, text, jsonb), opsflags_internal.default_on_off(jsonb),
    opsflags_internal.check_variations(text, jsonb, integer, integer, jsonb),
    opsflags_internal.check_variation_names(text, jsonb, jsonb)
TO opsflags_admin;
