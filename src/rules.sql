/*
 * rules.sql
 *	  Targeting rules (docs/rules.md): the columns that hold them (a config's
 *	  rules, serve and fallthrough; a flag's variation_names; a segment's
 *	  rules; a prerequisite's enabled and variants) and the triggers that
 *	  check them when written, by the API and plain DML alike, with the
 *	  compiler evaluation uses (rules.c); a flag's and a segment's bucketing
 *	  (Unleash's or LaunchDarkly's) and salt.
 */

ALTER TABLE opsflags.feature_flag_configs
    ADD COLUMN rules jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN serve jsonb,
    ADD COLUMN fallthrough jsonb;
ALTER TABLE opsflags.feature_flags ADD COLUMN variation_names jsonb;
ALTER TABLE opsflags.user_segments ADD COLUMN rules jsonb NOT NULL DEFAULT '[]';
ALTER TABLE opsflags.flag_prerequisites
    ADD COLUMN enabled boolean DEFAULT true,  -- NULL: switched on, whatever it serves
    ADD COLUMN variants jsonb;
-- How splits and rollout gates bucket (docs/rules.md): as Unleash
-- (murmur3) or as LaunchDarkly (sha1 of key, salt and value).
ALTER TABLE opsflags.feature_flags
    ADD COLUMN bucketing text NOT NULL DEFAULT 'unleash'
        CONSTRAINT feature_flags_bucketing_check CHECK (bucketing IN ('unleash', 'launchdarkly')),
    ADD COLUMN salt text;
ALTER TABLE opsflags.user_segments
    ADD COLUMN bucketing text NOT NULL DEFAULT 'unleash'
        CONSTRAINT user_segments_bucketing_check CHECK (bucketing IN ('unleash', 'launchdarkly')),
    ADD COLUMN salt text;

-- The compiler in strict mode: raises 22023 naming the flag, environment,
-- rule and clause of the first thing invalid.
CREATE FUNCTION opsflags_internal.check_config_rules(flag_key text, environment text, variations jsonb,
                                                     rules jsonb, serve jsonb, fallthrough jsonb,
                                                     rollout_group text, bucketing text)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_check_config_rules';
CREATE FUNCTION opsflags_internal.check_segment_rules(segment_key text, rules jsonb, bucketing text)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_check_segment_rules';

-- Segments named by rules (a rule's segments, segment_match values).
CREATE FUNCTION opsflags_internal.rule_segment_keys(rules jsonb)
RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k #>> '{}' FROM jsonb_path_query(rules, 'lax $[*].segments[*] ? (@.type() == "string")') k
    UNION
    SELECT k #>> '{}' FROM jsonb_path_query(rules,
        'lax $[*].clauses[*] ? (@.op == "segment_match").values[*] ? (@.type() == "string")') k
$$;

-- A config's rules, serve and fallthrough, checked when written; the
-- segments the rules name must exist.
CREATE FUNCTION opsflags_internal.validate_config_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f opsflags.feature_flags;
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules OR NEW.serve IS DISTINCT FROM OLD.serve
       OR NEW.fallthrough IS DISTINCT FROM OLD.fallthrough OR NEW.flag_id IS DISTINCT FROM OLD.flag_id THEN
        SELECT * INTO f FROM opsflags.feature_flags WHERE id = NEW.flag_id;
        IF FOUND THEN
            PERFORM opsflags_internal.check_config_rules(f.flag_key, NEW.environment, f.variations, NEW.rules,
                                                         NEW.serve, NEW.fallthrough, f.rollout_group,
                                                         f.bucketing);
        END IF;
        SELECT s INTO missing FROM opsflags_internal.rule_segment_keys(NEW.rules) s
        WHERE NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = s) LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'segment "%" does not exist', missing
                USING ERRCODE = 'undefined_object', HINT = 'Create it with opsflags.create_segment().';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_config_rules BEFORE INSERT OR UPDATE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags_internal.validate_config_rules();

-- variation_names: NULL, or one unique name (string) or null per variation.
-- When variations or bucketing change, every config's rules must still fit
-- them.
CREATE FUNCTION opsflags_internal.validate_variation_names()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.variation_names IS NOT NULL AND (
           jsonb_typeof(NEW.variation_names) <> 'array'
           OR jsonb_typeof(NEW.variations) <> 'array'
           OR jsonb_array_length(NEW.variation_names) <> jsonb_array_length(NEW.variations)
           OR EXISTS (SELECT FROM jsonb_array_elements(NEW.variation_names) n
                      WHERE jsonb_typeof(n) NOT IN ('string', 'null') OR n = '""')
           OR (SELECT count(*) <> count(DISTINCT n) FROM jsonb_array_elements(NEW.variation_names) n
               WHERE jsonb_typeof(n) = 'string')) THEN
        PERFORM opsflags.flag_field_error(NEW.flag_key, 'variation_names',
            'an array of unique non-empty names (strings) or nulls, one per variation', NEW.variation_names);
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.variations IS DISTINCT FROM OLD.variations
                             OR NEW.bucketing IS DISTINCT FROM OLD.bucketing) THEN
        PERFORM opsflags_internal.check_config_rules(NEW.flag_key, c.environment, NEW.variations, c.rules,
                                                     c.serve, c.fallthrough, NEW.rollout_group, NEW.bucketing)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_variation_names BEFORE INSERT OR UPDATE OF variations, variation_names, bucketing
    ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.validate_variation_names();

-- The cycle that segment key would be part of with these rules (a rule's
-- segments and segment_match values name segments), as "a -> b -> a", or
-- NULL.  Other segments' rules are those of others (key -> rules), else
-- the table's.  Breadth first: the shortest such cycle.  Unless at READ
-- COMMITTED, the rows read are locked (FOR SHARE): one that a concurrent
-- transaction changed since this transaction's snapshot raises a
-- serialization failure instead of being read as it was.
CREATE FUNCTION opsflags_internal.segment_cycle(key text, rules jsonb, others jsonb DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent   jsonb := '{}';   -- segment reached -> the segment naming it
    frontier text[];
    nxt      text[];
    path     text[];
    n        text;
    p        text;
    snapshot boolean := current_setting('transaction_isolation') <> 'read committed';
BEGIN
    frontier := ARRAY(SELECT k FROM opsflags_internal.rule_segment_keys(rules) k ORDER BY k);
    IF key = ANY (frontier) THEN
        RETURN key || ' -> ' || key;
    END IF;
    SELECT coalesce(jsonb_object_agg(k, key), '{}') INTO parent FROM unnest(frontier) k;
    WHILE cardinality(frontier) > 0 LOOP
        IF snapshot THEN
            PERFORM FROM opsflags.user_segments u WHERE u.segment_key = ANY (frontier) ORDER BY u.segment_key FOR SHARE;
        END IF;
        nxt := '{}';
        FOR n, p IN
            SELECT DISTINCT ON (x.n) x.n, x.src
            FROM (SELECT f.src, k AS n
                  FROM unnest(frontier) f(src)
                  CROSS JOIN LATERAL opsflags_internal.rule_segment_keys(
                      CASE WHEN others ? f.src THEN others -> f.src
                           ELSE (SELECT u.rules FROM opsflags.user_segments u WHERE u.segment_key = f.src) END) k) x
            ORDER BY x.n, x.src
        LOOP
            IF n = key THEN
                path := ARRAY[key];
                WHILE p <> key LOOP
                    path := p || path;
                    p := parent ->> p;
                END LOOP;
                RETURN array_to_string(key || path, ' -> ');
            END IF;
            CONTINUE WHEN parent ? n;
            parent := parent || jsonb_build_object(n, p);
            nxt := nxt || n;
        END LOOP;
        frontier := nxt;
    END LOOP;
    RETURN NULL;
END
$$;

-- A segment's rules (no serve); the segments they name must exist and not
-- name it back (a cycle).  Two transactions that would make a cycle
-- together are serialized by a transaction-level advisory lock, taken
-- before the check reads the other segments' rules (with a fresh snapshot
-- at READ COMMITTED; else segment_cycle's row locks fail the second).
CREATE FUNCTION opsflags_internal.validate_segment_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
    cycle   text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules OR NEW.bucketing IS DISTINCT FROM OLD.bucketing
       OR NEW.segment_key IS DISTINCT FROM OLD.segment_key THEN
        PERFORM opsflags_internal.check_segment_rules(NEW.segment_key, NEW.rules, NEW.bucketing);
        IF EXISTS (SELECT FROM opsflags_internal.rule_segment_keys(NEW.rules)) THEN
            PERFORM pg_advisory_xact_lock(-7351042361698734336);   -- opsflags: segment rules
            SELECT s INTO missing FROM opsflags_internal.rule_segment_keys(NEW.rules) s
            WHERE s IS DISTINCT FROM NEW.segment_key
              AND NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = s)
            ORDER BY s LIMIT 1;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'segment "%" does not exist', missing
                    USING ERRCODE = 'undefined_object', HINT = 'Create it with opsflags.create_segment().';
            END IF;
            cycle := opsflags_internal.segment_cycle(NEW.segment_key, NEW.rules);
            IF cycle IS NOT NULL THEN
                RAISE EXCEPTION 'segment rules would form a cycle: %', cycle
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The rules of segment "%s" name segments whose rules name it.', NEW.segment_key);
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_segment_rules BEFORE INSERT OR UPDATE ON opsflags.user_segments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.user_segments'))
    EXECUTE FUNCTION opsflags_internal.validate_segment_rules();

-- A prerequisite's variants: a non-empty array of names of the
-- prerequisite's variations.
CREATE FUNCTION opsflags_internal.validate_prerequisite_variants()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
BEGIN
    IF NEW.variants IS NOT NULL THEN
        IF jsonb_typeof(NEW.variants) <> 'array' OR jsonb_array_length(NEW.variants) = 0
           OR NOT opsflags.is_string_array(NEW.variants) THEN
            RAISE EXCEPTION 'invalid variants for a prerequisite'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Variants are a non-empty array of names of the prerequisite''s variations.';
        END IF;
        SELECT v INTO missing FROM jsonb_array_elements(NEW.variants) v
        WHERE NOT EXISTS (SELECT FROM opsflags.feature_flags f
                          WHERE f.id = NEW.prerequisite_id AND coalesce(f.variation_names, '[]') @> jsonb_build_array(v))
        LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'variant % does not exist for the prerequisite flag', missing
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Variants name variations of the prerequisite (its variation_names).';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_prerequisite_variants BEFORE INSERT OR UPDATE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags_internal.validate_prerequisite_variants();

REVOKE ALL ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text, text),
    opsflags_internal.check_segment_rules(text, jsonb, text),
    opsflags_internal.rule_segment_keys(jsonb), opsflags_internal.segment_cycle(text, jsonb, jsonb),
    opsflags_internal.validate_config_rules(), opsflags_internal.validate_variation_names(),
    opsflags_internal.validate_segment_rules(), opsflags_internal.validate_prerequisite_variants()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text, text),
    opsflags_internal.check_segment_rules(text, jsonb, text),
    opsflags_internal.rule_segment_keys(jsonb), opsflags_internal.segment_cycle(text, jsonb, jsonb)
TO opsflags_admin;
