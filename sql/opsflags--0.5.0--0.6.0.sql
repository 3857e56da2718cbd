-- opsflags 0.5.0 -> 0.6.0: targeting rules on any attribute of a context,
-- named variations, Unleash import and export, per-flag cache invalidation,
-- tenant-scoped audit, the management API of the HTTP server.
-- A fresh install of 0.6.0 (built from src/*.sql) and an updated one are the
-- same (test/upgrade/upgrade.sh).
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.6.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Targeting rules (src/rules.sql): rules, serve and fallthrough of configs,
-- variation names, segment rules, prerequisites that must be off or serve
-- named variants, and the triggers that check them.
-------------------------------------------------------------------------------

ALTER TABLE opsflags.feature_flag_configs
    ADD COLUMN rules jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN serve jsonb,
    ADD COLUMN fallthrough jsonb;
ALTER TABLE opsflags.feature_flags ADD COLUMN variation_names jsonb;
ALTER TABLE opsflags.user_segments ADD COLUMN rules jsonb NOT NULL DEFAULT '[]';
ALTER TABLE opsflags.flag_prerequisites
    ADD COLUMN enabled boolean DEFAULT true,  -- NULL: switched on, whatever it serves
    ADD COLUMN variants jsonb;

-- The compiler in strict mode: raises 22023 naming the flag, environment,
-- rule and clause of the first thing invalid.
CREATE FUNCTION opsflags_internal.check_config_rules(flag_key text, environment text, variations jsonb,
                                                     rules jsonb, serve jsonb, fallthrough jsonb,
                                                     rollout_group text)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_check_config_rules';
CREATE FUNCTION opsflags_internal.check_segment_rules(segment_key text, rules jsonb)
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
                                                         NEW.serve, NEW.fallthrough, f.rollout_group);
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
-- When variations change, every config's rules must still fit them.
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
    IF TG_OP = 'UPDATE' AND NEW.variations IS DISTINCT FROM OLD.variations THEN
        PERFORM opsflags_internal.check_config_rules(NEW.flag_key, c.environment, NEW.variations, c.rules,
                                                     c.serve, c.fallthrough, NEW.rollout_group)
        FROM opsflags.feature_flag_configs c WHERE c.flag_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_variation_names BEFORE INSERT OR UPDATE OF variations, variation_names
    ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.validate_variation_names();

-- A segment's rules (no serve, no segments of their own).
CREATE FUNCTION opsflags_internal.validate_segment_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules THEN
        PERFORM opsflags_internal.check_segment_rules(NEW.segment_key, NEW.rules);
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
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text),
    opsflags_internal.check_segment_rules(text, jsonb),
    opsflags_internal.rule_segment_keys(jsonb),
    opsflags_internal.validate_config_rules(), opsflags_internal.validate_variation_names(),
    opsflags_internal.validate_segment_rules(), opsflags_internal.validate_prerequisite_variants()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text),
    opsflags_internal.check_segment_rules(text, jsonb),
    opsflags_internal.rule_segment_keys(jsonb)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Unleash import and export (src/unleash.sql, src/unleash_import.sql,
-- src/unleash_export.sql): import_unleash, unleash_features and their helpers.
-------------------------------------------------------------------------------

/*
 * unleash.sql
 *	  The Unleash model as rules (docs/rules.md): how Unleash's SDKs read a
 *	  constraint's values, and the clauses, rollout gates and splits that
 *	  constraints, strategies and variants become.  import_unleash
 *	  (unleash_import.sql) and unleash_features (unleash_export.sql) use them;
 *	  evaluation stays native: nothing here evaluates.
 */

-------------------------------------------------------------------------------
-- Values as Unleash's SDKs read them
-------------------------------------------------------------------------------

-- The attribute an Unleash context field is read from: userId is the
-- context's key; a name starting with "/" would be a JSON pointer, so it
-- becomes the pointer to that member.
CREATE FUNCTION opsflags_internal.unleash_attr(name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN name = 'userId' THEN 'key'
                WHEN left(name, 1) = '/' THEN '/' || replace(replace(name, '~', '~0'), '/', '~1')
                ELSE name END
$$;

-- The Unleash context field an attribute reads (the inverse of unleash_attr).
CREATE FUNCTION opsflags_internal.unleash_context_name(attribute text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN attribute = 'key' THEN 'userId'
                WHEN left(attribute, 4) = '/~1' AND position('/' IN substr(attribute, 2)) = 0
                THEN replace(replace(substr(attribute, 2), '~1', '/'), '~0', '~')
                ELSE attribute END
$$;

-- Constraint values as the SDK cleans them: empty ones dropped, the rest
-- trimmed.
CREATE FUNCTION opsflags_internal.unleash_clean(vals jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(btrim(v #>> '{}', E' \t\n\r\f\u000b')) ORDER BY o), '[]')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(vals) = 'array' THEN vals ELSE '[]' END) WITH ORDINALITY a(v, o)
    WHERE jsonb_typeof(v) = 'string' AND v <> '""'
$$;

-- A number as JavaScript's Number() reads a string (decimal forms; "" and
-- blanks are 0); NULL when it is not one.
CREATE FUNCTION opsflags_internal.unleash_number(t text)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s = '' THEN 0
                WHEN s ~ '^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$' THEN s::numeric
           END
    FROM (SELECT btrim(t, E' \t\n\r\f\u000b') AS s) x
$$;

-- A date as an RFC 3339 timestamp in UTC with milliseconds (what the SDK's
-- Date keeps); NULL for text that is not an ISO date with a zone (or a
-- plain date, UTC midnight).
CREATE FUNCTION opsflags_internal.unleash_date(t text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF t !~ '^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$' THEN
        RETURN NULL;
    END IF;
    IF length(t) = 10 THEN
        t := t || 'T00:00:00Z';
    END IF;
    RETURN to_char(date_trunc('milliseconds', t::timestamptz) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR invalid_parameter_value THEN
    RETURN NULL;
END
$$;

-- A version as node-semver reads a constraint's value (trimmed, one leading
-- "v" allowed); NULL when it is not a semantic version.
CREATE FUNCTION opsflags_internal.unleash_semver(t text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s ~ ('^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)'
                          '(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?'
                          '(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$')
                THEN s END
    FROM (SELECT regexp_replace(btrim(t, E' \t\n\r\f\u000b'), '^v', '') AS s) x
$$;

-- An IPv4 or IPv6 address or range that both the SDK and PostgreSQL read.
CREATE FUNCTION opsflags_internal.unleash_is_cidr(t text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF t ~ '^[0-9.]+(/[0-9]+)?$' THEN
        IF t !~ '^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}(/([0-9]|[12][0-9]|3[0-2]))?$' THEN
            RETURN false;
        END IF;
    ELSIF t !~ ':' THEN
        RETURN false;
    END IF;
    PERFORM t::inet;
    RETURN true;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN false;
END
$$;

-- An RE2 pattern (the SDK's engine) as a PostgreSQL one of the same
-- meaning, or NULL when RE2 refuses it or the translation is not sure:
-- look-arounds and back-references (RE2 has none), inline flags other than
-- at the start, \b and \B (PostgreSQL's \y and \Y), named groups.  RE2
-- without (?s) does not match newlines with ".", without (?m) anchors at
-- the text's ends only: PostgreSQL's embedded options p, n, s and w.
-- Patterns over 10000 characters are not translated either.
CREATE FUNCTION opsflags_internal.unleash_regex(pattern text, case_insensitive boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    out     text := '';
    flags   text := CASE WHEN case_insensitive THEN 'i' ELSE '' END;
    n       integer := length(pattern);
    i       integer := 1;
    ch      text;
    inclass boolean := false;
    lead    boolean := true;   -- only "^" and inline flags so far
    m       text[];
    opts    text;
BEGIN
    -- Longer patterns are not translated (the scan below is quadratic).
    IF pattern IS NULL OR length(pattern) > 10000 THEN
        RETURN NULL;
    END IF;
    WHILE i <= n LOOP
        ch := substr(pattern, i, 1);
        IF ch = '\' THEN
            IF i = n THEN
                RETURN NULL;
            END IF;
            ch := substr(pattern, i + 1, 1);
            IF NOT inclass AND ch ~ '[1-9]' THEN
                RETURN NULL;
            ELSIF NOT inclass AND ch = 'b' THEN
                out := out || '\y';
            ELSIF NOT inclass AND ch = 'B' THEN
                out := out || '\Y';
            ELSIF ch ~ '[dDsSwWnrtfv.*+?()\[\]{}|^$\\/-]' OR (NOT inclass AND ch IN ('A', 'z')) THEN
                out := out || CASE ch WHEN 'z' THEN '\Z' ELSE '\' || ch END;
            ELSE
                RETURN NULL;
            END IF;
            i := i + 2;
            lead := false;
            CONTINUE;
        END IF;
        IF inclass THEN
            IF ch = '[' AND substr(pattern, i, 2) = '[:' THEN
                m := regexp_match(substr(pattern, i), '^\[:[a-z]+:\]');
                IF m IS NULL THEN
                    RETURN NULL;
                END IF;
                out := out || m[1];
                i := i + length(m[1]);
                CONTINUE;
            ELSIF ch = ']' THEN
                inclass := false;
            END IF;
            out := out || ch;
            i := i + 1;
            CONTINUE;
        END IF;
        IF ch = '[' THEN
            inclass := true;
            out := out || ch;
            i := i + 1;
            IF substr(pattern, i, 1) = '^' THEN
                out := out || '^';
                i := i + 1;
            END IF;
            IF substr(pattern, i, 1) = ']' THEN
                out := out || '\]';
                i := i + 1;
            END IF;
            lead := false;
            CONTINUE;
        END IF;
        IF ch = '(' AND substr(pattern, i + 1, 1) = '?' THEN
            m := regexp_match(substr(pattern, i), '^\(\?([imsU]*)\)');
            IF m IS NOT NULL AND lead THEN
                flags := flags || m[1];
                i := i + length(m[1]) + 3;
                CONTINUE;
            END IF;
            m := regexp_match(substr(pattern, i), '^\(\?P?<[A-Za-z_][A-Za-z0-9_]*>');
            IF m IS NOT NULL THEN
                out := out || '(';
                i := i + length(m[1]);
                lead := false;
                CONTINUE;
            END IF;
            IF substr(pattern, i, 3) = '(?:' THEN
                out := out || '(?:';
                i := i + 3;
                lead := false;
                CONTINUE;
            END IF;
            RETURN NULL;
        END IF;
        IF NOT (ch = '^' AND lead) THEN
            lead := false;
        END IF;
        out := out || ch;
        i := i + 1;
    END LOOP;
    IF inclass OR flags ~ 'U' THEN
        RETURN NULL;
    END IF;
    opts := CASE WHEN flags ~ 'm' AND flags ~ 's' THEN 'w' WHEN flags ~ 'm' THEN 'n'
                 WHEN flags ~ 's' THEN 's' ELSE 'p' END
            || CASE WHEN flags ~ 'i' THEN 'i' ELSE '' END;
    out := '(?' || opts || ')' || out;
    PERFORM '' ~ out;
    RETURN out;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN NULL;
END
$$;

-------------------------------------------------------------------------------
-- Import: constraints, strategies and variants as rules and serves
-------------------------------------------------------------------------------

-- A clause that always holds (an inverted constraint that cannot hold).
CREATE FUNCTION opsflags_internal.unleash_always(attribute text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('attribute', attribute, 'op', 'in', 'values', '[]'::jsonb, 'negate', true) $$;

-- One constraint (already checked by unleash_check_constraint) as a
-- clause.  What the SDK cannot evaluate (an unknown operator, a value it
-- cannot read) never holds: op "unsupported", keeping the operator; an
-- inverted constraint of a value it cannot read always holds, as in the SDK.
CREATE FUNCTION opsflags_internal.unleash_clause(c jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op     text := c ->> 'operator';
    attr   text := opsflags_internal.unleash_attr(c ->> 'contextName');
    neg    boolean := coalesce((c ->> 'inverted')::boolean, false);
    ci     boolean := coalesce((c ->> 'caseInsensitive')::boolean, false);
    val    text := c ->> 'value';
    vals   jsonb := opsflags_internal.unleash_clean(c -> 'values');
    mapped text;
    x      text;
    cl     jsonb;
BEGIN
    IF op IN ('IN', 'NOT_IN') THEN
        cl := jsonb_build_object('attribute', attr, 'op', lower(op), 'values', vals);
    ELSIF op IN ('STR_STARTS_WITH', 'STR_ENDS_WITH', 'STR_CONTAINS') THEN
        cl := jsonb_build_object('attribute', attr,
                                 'op', CASE op WHEN 'STR_STARTS_WITH' THEN 'starts_with'
                                               WHEN 'STR_ENDS_WITH' THEN 'ends_with' ELSE 'contains' END,
                                 'values', vals);
        IF ci THEN
            cl := cl || '{"case_insensitive": true}';
        END IF;
    ELSIF op IN ('NUM_EQ', 'NUM_GT', 'NUM_GTE', 'NUM_LT', 'NUM_LTE') THEN
        x := opsflags_internal.unleash_number(val)::text;
        IF x IS NOT NULL THEN
            cl := jsonb_build_object('attribute', attr, 'op', lower(substr(op, 5)), 'values', jsonb_build_array(x::numeric));
        END IF;
    ELSIF op IN ('DATE_AFTER', 'DATE_BEFORE') THEN
        -- The SDK compares the context's currentTime, whatever contextName says.
        x := opsflags_internal.unleash_date(val);
        IF x IS NOT NULL THEN
            attr := 'currentTime';
            cl := jsonb_build_object('attribute', attr, 'op', lower(substr(op, 6)), 'values', jsonb_build_array(x));
        END IF;
    ELSIF op IN ('SEMVER_EQ', 'SEMVER_GT', 'SEMVER_GTE', 'SEMVER_LT', 'SEMVER_LTE') THEN
        x := opsflags_internal.unleash_semver(val);
        IF x IS NOT NULL THEN
            cl := jsonb_build_object('attribute', attr, 'op', lower(op), 'values', jsonb_build_array(x));
        END IF;
    ELSIF op = 'REGEX' THEN
        x := opsflags_internal.unleash_regex(val, ci);
        IF x IS NOT NULL THEN
            cl := jsonb_build_object('attribute', attr, 'op', 'matches', 'values', jsonb_build_array(x));
        END IF;
    ELSIF op = 'IN_CIDR' THEN
        cl := jsonb_build_object('attribute', attr, 'op', 'in_cidr',
                                 'values', (SELECT coalesce(jsonb_agg(v ORDER BY o), '[]')
                                            FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)
                                            WHERE opsflags_internal.unleash_is_cidr(v #>> '{}')));
    ELSE
        mapped := 'unknown';
    END IF;
    IF cl IS NULL THEN
        IF neg AND mapped IS NULL THEN
            RETURN opsflags_internal.unleash_always(attr);
        END IF;
        RETURN jsonb_strip_nulls(jsonb_build_object('attribute', attr, 'op', 'unsupported', 'operator', op,
                                 'values', coalesce(c -> 'values', CASE WHEN val IS NULL THEN '[]'::jsonb
                                                                         ELSE jsonb_build_array(val) END)));
    END IF;
    IF neg THEN
        cl := cl || '{"negate": true}';
    END IF;
    RETURN cl;
END
$$;

-- A percentage parameter as the SDK reads it (Number(), compared with a
-- bucket from 1 to 100): a whole number from 0 to 100.
CREATE FUNCTION opsflags_internal.unleash_percentage(p jsonb)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(0, least(100, floor(coalesce(
               CASE jsonb_typeof(p) WHEN 'number' THEN (p #>> '{}')::numeric
                                    WHEN 'string' THEN opsflags_internal.unleash_number(p #>> '{}') END,
               0))))::integer
$$;

-- bucket_by of a variant split for an Unleash stickiness (a field the
-- context lacks, or "", makes the SDK draw a random value).
CREATE FUNCTION opsflags_internal.unleash_variant_bucket_by(stickiness text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN stickiness IS NULL OR stickiness = 'default'
                THEN '["key", "sessionId", "remoteAddress", "$random"]'::jsonb
                WHEN stickiness = '' THEN '["$random"]'::jsonb
                ELSE jsonb_build_array(opsflags_internal.unleash_attr(stickiness), '$random') END
$$;

-- A variant list as a split serve over the flag's variations (names maps a
-- variant name to its variation); NULL when its weights add up to nothing
-- (the SDK then picks no variant).  A group that is empty (never one of a
-- rule) or the default (dflt: the flag's rollout_group, else its key) is
-- left out.
CREATE FUNCTION opsflags_internal.unleash_split(variants jsonb, names jsonb, stickiness text, grp text, dflt text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN coalesce(sum((v ->> 'weight')::numeric), 0) > 0 THEN
        jsonb_strip_nulls(jsonb_build_object(
            'split', jsonb_agg(jsonb_build_object('variation', (names ->> (v ->> 'name'))::integer,
                                                  'weight', (v ->> 'weight')::numeric) ORDER BY o),
            'bucket_by', opsflags_internal.unleash_variant_bucket_by(stickiness),
            'group', CASE WHEN grp <> dflt THEN grp END))
        || CASE WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(variants) v2
                             WHERE jsonb_array_length(coalesce(v2 -> 'overrides', '[]')) > 0)
           THEN jsonb_build_object('overrides',
                    (SELECT jsonb_agg(jsonb_build_object(
                                'attribute', opsflags_internal.unleash_attr(ov ->> 'contextName'),
                                'values', coalesce(ov -> 'values', '[]'),
                                'variation', (names ->> (v3 ->> 'name'))::integer) ORDER BY o3, o4)
                     FROM jsonb_array_elements(variants) WITH ORDINALITY a3(v3, o3),
                          jsonb_array_elements(coalesce(v3 -> 'overrides', '[]')) WITH ORDINALITY a4(ov, o4)))
           ELSE '{}'::jsonb END
    END
    FROM jsonb_array_elements(variants) WITH ORDINALITY a(v, o)
$$;

-- The rules of one strategy (n: its position, from 1): its constraints and
-- segments as clauses and segment keys, its kind as a clause or a rollout
-- gate, its variants as the rule's serve.  known: the segment ids that
-- exist; a strategy naming another never matches (as in the SDK).  dflt:
-- the default group (the flag's rollout_group, else its key).
CREATE FUNCTION opsflags_internal.unleash_strategy_rules(s jsonb, n integer, names jsonb, known jsonb, dflt text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind    text := s ->> 'name';
    params  jsonb := CASE WHEN jsonb_typeof(s -> 'parameters') = 'object' THEN s -> 'parameters' ELSE '{}' END;
    id      text := CASE WHEN s ->> 'id' ~ '^[A-Za-z0-9._:-]{1,90}$' THEN s ->> 'id' ELSE 'strategy-' || n END;
    clauses jsonb := '[]';
    segs    jsonb := '[]';
    rule    jsonb;
    extra   jsonb;
    ips     text[];
    stick   text;
    grp     text;
    variants jsonb := CASE WHEN jsonb_typeof(s -> 'variants') = 'array' THEN s -> 'variants' ELSE '[]' END;
    serve   jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(opsflags_internal.unleash_clause(c) ORDER BY o), '[]') INTO clauses
    FROM jsonb_array_elements(coalesce(nullif(s -> 'constraints', 'null'), '[]')) WITH ORDINALITY a(c, o);
    SELECT coalesce(jsonb_agg('unleash-segment-' || (g #>> '{}') ORDER BY o)
                        FILTER (WHERE known ? (g #>> '{}')), '[]'),
           clauses || coalesce(jsonb_agg(jsonb_build_object('attribute', 'segment', 'op', 'unsupported',
                                                            'operator', 'segment', 'values', jsonb_build_array(g #>> '{}'))
                                         ORDER BY o) FILTER (WHERE NOT known ? (g #>> '{}')), '[]')
    INTO segs, clauses
    FROM jsonb_array_elements(coalesce(nullif(s -> 'segments', 'null'), '[]')) WITH ORDINALITY a(g, o);

    rule := jsonb_build_object('id', id);
    IF kind = 'default' THEN
        NULL;
    ELSIF kind = 'userWithId' THEN
        clauses := jsonb_build_object('attribute', 'key', 'op', 'in',
                       'values', CASE WHEN coalesce(params ->> 'userIds', '') = '' THEN '[]'::jsonb
                                      ELSE to_jsonb(regexp_split_to_array(params ->> 'userIds', '\s*,\s*')) END)
                   || clauses;
    ELSIF kind IN ('gradualRolloutUserId', 'gradualRolloutSessionId', 'gradualRolloutRandom', 'flexibleRollout') THEN
        stick := CASE kind WHEN 'gradualRolloutUserId' THEN 'userId' WHEN 'gradualRolloutSessionId' THEN 'sessionId'
                           WHEN 'gradualRolloutRandom' THEN 'random'
                           ELSE coalesce(nullif(params ->> 'stickiness', ''), 'default') END;
        -- The SDK's group is the groupId, else "" (a random bucket has
        -- none); one that is the default is left to it.
        rule := rule || jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
            'percentage', opsflags_internal.unleash_percentage(
                              CASE WHEN kind = 'flexibleRollout' THEN params -> 'rollout' ELSE params -> 'percentage' END),
            'bucket_by', CASE stick WHEN 'default' THEN '["key", "sessionId", "$random"]'::jsonb
                                    WHEN 'random' THEN '["$random"]'::jsonb
                                    ELSE jsonb_build_array(opsflags_internal.unleash_attr(stick)) END,
            'group', CASE WHEN stick <> 'random' AND coalesce(params ->> 'groupId', '') <> dflt
                          THEN coalesce(params ->> 'groupId', '') END)));
    ELSIF kind = 'remoteAddress' THEN
        -- An IPv4 address or range is matched as a range, anything else as
        -- the exact text (a second rule: either matches).
        ips := CASE WHEN coalesce(params ->> 'IPs', '') = '' THEN '{}'::text[]
                    ELSE regexp_split_to_array(params ->> 'IPs', '\s*,\s*') END;
        clauses := jsonb_build_object('attribute', 'remoteAddress', 'op', 'in_cidr',
                       'values', coalesce((SELECT jsonb_agg(ip ORDER BY o) FROM unnest(ips) WITH ORDINALITY u(ip, o)
                                           WHERE ip ~ '^[0-9./]+$' AND opsflags_internal.unleash_is_cidr(ip)), '[]'))
                   || clauses;
        SELECT jsonb_agg(ip ORDER BY o) INTO extra FROM unnest(ips) WITH ORDINALITY u(ip, o)
        WHERE NOT (ip ~ '^[0-9./]+$' AND opsflags_internal.unleash_is_cidr(ip));
    ELSE
        -- A strategy the SDK does not know (or, as applicationHostname, one
        -- that looks at the host the SDK runs on) never matches.
        clauses := jsonb_build_object('attribute', 'strategy', 'op', 'unsupported', 'operator', kind,
                                      'values', jsonb_build_array(params))
                   || clauses;
    END IF;
    rule := rule || jsonb_build_object('clauses', clauses);
    IF jsonb_array_length(segs) > 0 THEN
        rule := rule || jsonb_build_object('segments', segs);
    END IF;
    IF jsonb_array_length(variants) > 0 THEN
        grp := CASE WHEN NOT params ? 'groupId' THEN 'undefined'
                    WHEN jsonb_typeof(params -> 'groupId') = 'null' THEN 'null'
                    ELSE params ->> 'groupId' END;
        serve := opsflags_internal.unleash_split(variants, names,
                     coalesce(nullif(variants -> 0 ->> 'stickiness', ''), nullif(params ->> 'stickiness', '')), grp, dflt);
        IF serve IS NOT NULL THEN
            rule := rule || jsonb_build_object('serve', serve);
        END IF;
    END IF;
    IF extra IS NULL THEN
        RETURN jsonb_build_array(rule);
    END IF;
    RETURN jsonb_build_array(rule, rule || jsonb_build_object('id', id || '.exact', 'clauses',
        jsonb_set(clauses, '{0}', jsonb_build_object('attribute', 'remoteAddress', 'op', 'in', 'values', extra))));
END
$$;

-- The variants a dependency asks of its parent, as a prerequisite's
-- variants (parent_names: the parent's variation names): NULL when it asks
-- for none, or for "disabled" (what the SDK names "no variant") of a parent
-- that has no variants; else the names the parent has, [] when it has none
-- of them (then the SDK never satisfies the dependency).
CREATE FUNCTION opsflags_internal.unleash_dependency_variants(dep jsonb, parent_names jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN dep ->> 'enabled' = 'false'
                     OR jsonb_array_length(coalesce(nullif(dep -> 'variants', 'null'), '[]')) = 0 THEN NULL
                WHEN dep -> 'variants' ? 'disabled'
                     AND NOT jsonb_path_exists(coalesce(parent_names, '[]'), 'strict $[*] ? (@.type() == "string")') THEN NULL
                ELSE (SELECT coalesce(jsonb_agg(DISTINCT v), '[]') FROM jsonb_array_elements(dep -> 'variants') v
                      WHERE jsonb_typeof(v) = 'string' AND coalesce(parent_names, '[]') @> jsonb_build_array(v)) END
$$;

-- Refuse a constraint the SDK could not even read; what it reads but
-- cannot evaluate becomes a clause that never holds (unleash_clause).
CREATE FUNCTION opsflags_internal.unleash_check_constraint(c jsonb, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(c) IS DISTINCT FROM 'object'
       OR jsonb_typeof(c -> 'contextName') IS DISTINCT FROM 'string' OR c ->> 'contextName' = ''
       OR jsonb_typeof(c -> 'operator') IS DISTINCT FROM 'string'
       OR coalesce(jsonb_typeof(c -> 'values'), 'null') NOT IN ('array', 'null')
       OR coalesce(jsonb_typeof(c -> 'value'), 'null') NOT IN ('string', 'number', 'null')
       OR coalesce(jsonb_typeof(c -> 'inverted'), 'null') NOT IN ('boolean', 'null')
       OR coalesce(jsonb_typeof(c -> 'caseInsensitive'), 'null') NOT IN ('boolean', 'null')
       OR jsonb_path_exists(coalesce(c -> 'values', '[]'), 'strict $[*] ? (@.type() != "string" && @.type() != "null")') THEN
        RAISE EXCEPTION 'malformed % in Unleash document', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A constraint is {"contextName": string, "operator": string, "values": [strings] or "value": string, "inverted": boolean, "caseInsensitive": boolean}.';
    END IF;
END
$$;

-- Refuse a feature the SDK could not read: name, enabled, strategies
-- (parameters, constraints, segments, variants), variants, dependencies.
CREATE FUNCTION opsflags_internal.unleash_check_feature(f jsonb, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s    jsonb;
    sn   bigint;
    c    jsonb;
    cn   bigint;
    v    jsonb;
    vn   bigint;
    sw   text;
    payloads jsonb := '{}';
BEGIN
    IF jsonb_typeof(f) IS DISTINCT FROM 'object' OR jsonb_typeof(f -> 'name') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'malformed % in Unleash document', what
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A feature is an object with a "name".';
    END IF;
    what := format('feature "%s"', f ->> 'name');
    IF NOT opsflags.is_valid_flag_key(f ->> 'name') THEN
        RAISE EXCEPTION 'invalid flag key "%" in Unleash document', f ->> 'name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A flag key is 1 to 100 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit.';
    END IF;
    IF coalesce(jsonb_typeof(f -> 'enabled'), 'null') NOT IN ('boolean', 'null')
       OR coalesce(jsonb_typeof(f -> 'strategies'), 'null') NOT IN ('array', 'null')
       OR coalesce(jsonb_typeof(f -> 'variants'), 'null') NOT IN ('array', 'null')
       OR coalesce(jsonb_typeof(f -> 'dependencies'), 'null') NOT IN ('array', 'null') THEN
        RAISE EXCEPTION 'malformed % in Unleash document', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = '"enabled" is a boolean; "strategies", "variants" and "dependencies" are arrays.';
    END IF;
    FOR s, sn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(f -> 'strategies', 'null'), '[]')) WITH ORDINALITY LOOP
        sw := format('strategy %s of %s', sn, what);
        IF jsonb_typeof(s) IS DISTINCT FROM 'object' OR jsonb_typeof(s -> 'name') IS DISTINCT FROM 'string'
           OR coalesce(jsonb_typeof(s -> 'parameters'), 'null') NOT IN ('object', 'null')
           OR coalesce(jsonb_typeof(s -> 'constraints'), 'null') NOT IN ('array', 'null')
           OR coalesce(jsonb_typeof(s -> 'segments'), 'null') NOT IN ('array', 'null')
           OR coalesce(jsonb_typeof(s -> 'variants'), 'null') NOT IN ('array', 'null')
           OR jsonb_path_exists(coalesce(s -> 'segments', '[]'), 'strict $[*] ? (@.type() != "number")')
           OR jsonb_path_exists(coalesce(nullif(s -> 'parameters', 'null'), '{}'),
                                'strict $.* ? (@.type() != "string" && @.type() != "number" && @.type() != "null")') THEN
            RAISE EXCEPTION 'malformed % in Unleash document', sw
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A strategy is {"name": string, "parameters": {name: string}, "constraints": [...], "segments": [segment ids], "variants": [...]}.';
        END IF;
        FOR c, cn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(s -> 'constraints', 'null'), '[]')) WITH ORDINALITY LOOP
            PERFORM opsflags_internal.unleash_check_constraint(c, format('constraint %s of %s', cn, sw));
        END LOOP;
    END LOOP;
    -- Variants of the feature and of its strategies; a name is one
    -- variation of the flag, so it has one payload.
    FOR v, vn, sw IN
        SELECT x.v, x.o, format('variant %s of %s', x.o, what) FROM jsonb_array_elements(coalesce(nullif(f -> 'variants', 'null'), '[]')) WITH ORDINALITY x(v, o)
        UNION ALL
        SELECT y.v, y.o, format('variant %s of strategy %s of %s', y.o, s2.o, what)
        FROM jsonb_array_elements(coalesce(nullif(f -> 'strategies', 'null'), '[]')) WITH ORDINALITY s2(s, o),
             jsonb_array_elements(coalesce(nullif(s2.s -> 'variants', 'null'), '[]')) WITH ORDINALITY y(v, o)
    LOOP
        IF jsonb_typeof(v) IS DISTINCT FROM 'object' OR jsonb_typeof(v -> 'name') IS DISTINCT FROM 'string'
           OR v ->> 'name' = ''
           OR NOT opsflags_internal.is_whole_number(coalesce(v -> 'weight', '0'), 0, 2147483647)
           OR coalesce(jsonb_typeof(v -> 'stickiness'), 'null') NOT IN ('string', 'null')
           OR coalesce(jsonb_typeof(v -> 'payload'), 'null') NOT IN ('object', 'null')
           OR coalesce(jsonb_typeof(v -> 'overrides'), 'null') NOT IN ('array', 'null')
           OR jsonb_path_exists(coalesce(v -> 'overrides', '[]'),
                                'strict $[*] ? (@.type() != "object" || !exists(@.contextName) || !exists(@.values)
                                               || @.contextName.type() != "string" || @.values.type() != "array")') THEN
            RAISE EXCEPTION 'malformed % in Unleash document', sw
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A variant is {"name": string, "weight": whole number, "stickiness": string, "payload": {"type", "value"}, "overrides": [{"contextName", "values"}]}.';
        END IF;
        IF payloads ? (v ->> 'name') AND payloads -> (v ->> 'name') <> coalesce(v -> 'payload', 'null') THEN
            RAISE EXCEPTION 'variant "%" of % has two payloads', v ->> 'name', what
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A variant name is one variation of the flag: its feature and strategy variants of that name must carry the same payload.';
        END IF;
        payloads := payloads || jsonb_build_object(v ->> 'name', coalesce(v -> 'payload', 'null'));
    END LOOP;
    IF jsonb_path_exists(coalesce(f -> 'dependencies', '[]'),
                         'strict $[*] ? (@.type() != "object" || !exists(@.feature) || @.feature.type() != "string")')
       OR jsonb_path_exists(coalesce(f -> 'dependencies', '[]'),
                            'strict $[*] ? (exists(@.enabled) && @.enabled.type() != "boolean" && @.enabled.type() != "null")')
       OR jsonb_path_exists(coalesce(f -> 'dependencies', '[]'),
                            'strict $[*] ? (exists(@.variants) && @.variants.type() != "array" && @.variants.type() != "null")') THEN
        RAISE EXCEPTION 'malformed dependency of % in Unleash document', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A dependency is {"feature": string, "enabled": boolean, "variants": [variant names]}.';
    END IF;
END
$$;


-------------------------------------------------------------------------------
-- Privileges: the helpers of the Unleash import and export are for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.unleash_attr(text),
    opsflags_internal.unleash_context_name(text),
    opsflags_internal.unleash_clean(jsonb),
    opsflags_internal.unleash_number(text),
    opsflags_internal.unleash_date(text),
    opsflags_internal.unleash_semver(text),
    opsflags_internal.unleash_is_cidr(text),
    opsflags_internal.unleash_regex(text, boolean),
    opsflags_internal.unleash_always(text),
    opsflags_internal.unleash_clause(jsonb),
    opsflags_internal.unleash_percentage(jsonb),
    opsflags_internal.unleash_variant_bucket_by(text),
    opsflags_internal.unleash_split(jsonb, jsonb, text, text, text),
    opsflags_internal.unleash_strategy_rules(jsonb, integer, jsonb, jsonb, text),
    opsflags_internal.unleash_dependency_variants(jsonb, jsonb),
    opsflags_internal.unleash_check_constraint(jsonb, text),
    opsflags_internal.unleash_check_feature(jsonb, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.unleash_attr(text),
    opsflags_internal.unleash_context_name(text),
    opsflags_internal.unleash_clean(jsonb),
    opsflags_internal.unleash_number(text),
    opsflags_internal.unleash_date(text),
    opsflags_internal.unleash_semver(text),
    opsflags_internal.unleash_is_cidr(text),
    opsflags_internal.unleash_regex(text, boolean),
    opsflags_internal.unleash_always(text),
    opsflags_internal.unleash_clause(jsonb),
    opsflags_internal.unleash_percentage(jsonb),
    opsflags_internal.unleash_variant_bucket_by(text),
    opsflags_internal.unleash_split(jsonb, jsonb, text, text, text),
    opsflags_internal.unleash_strategy_rules(jsonb, integer, jsonb, jsonb, text),
    opsflags_internal.unleash_dependency_variants(jsonb, jsonb),
    opsflags_internal.unleash_check_constraint(jsonb, text),
    opsflags_internal.unleash_check_feature(jsonb, text)
TO opsflags_admin;

/*
 * unleash_import.sql
 *	  import_unleash: an Unleash client document (/api/client/features, or
 *	  delta API events) as flags, rules, segments and prerequisites, with
 *	  the mapping of unleash.sql.
 */

-------------------------------------------------------------------------------
-- import_unleash
-------------------------------------------------------------------------------

-- Loads an Unleash client document into an environment.  Everything is
-- checked before anything is written; a flag, config, segment or
-- prerequisite is written only where it differs, so a second import of the
-- same document changes nothing.  The config of each feature becomes
-- exactly the Unleash feature: no user, role or segment targets, no
-- percentage or schedule, variations 0 and 1 (true, false) as on and off.
CREATE FUNCTION opsflags.import_unleash(environment text, document jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env       text := opsflags.resolve_environment(environment);
    feats     jsonb := '{}';
    segs      jsonb := '{}';
    removed   text[] := '{}';
    seg_gone  text[] := '{}';
    e         jsonb;
    en        bigint;
    x         jsonb;
    key       text;
    feat      jsonb;
    strategies jsonb;
    fv        jsonb;
    f         opsflags.feature_flags;
    c         opsflags.feature_flag_configs;
    vars      jsonb;
    vnames    jsonb;
    names     jsonb;
    idx       integer;
    vtype     text;
    rules     jsonb;
    serve     jsonb;
    fall      jsonb;
    enabled   boolean;
    ok        boolean;
    known     jsonb;
    dep       jsonb;
    parent    jsonb;
    pid       uuid;
    want      jsonb;
    chg       boolean;
    s_rules   jsonb;
    created   text[] := '{}';
    changed   text[] := '{}';
    same      text[] := '{}';
    gone      text[] := '{}';
    s_created text[] := '{}';
    s_changed text[] := '{}';
    s_same    text[] := '{}';
    s_gone    text[] := '{}';
BEGIN
    IF document IS NULL OR jsonb_typeof(document) <> 'object'
       OR NOT (jsonb_typeof(document -> 'features') = 'array' OR jsonb_typeof(document -> 'events') = 'array') THEN
        RAISE EXCEPTION 'an Unleash document is a JSON object with "features" or "events"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected the /api/client/features response {"version": 2, "features": [...], "segments": [...]} or a delta {"events": [...]}.';
    END IF;

    -- The state the document describes: features by name, segments by id,
    -- and (delta events) the features it removes.
    IF document ? 'features' THEN
        document := jsonb_build_object('events', jsonb_build_array(jsonb_build_object(
            'type', 'hydration', 'features', document -> 'features', 'segments', coalesce(document -> 'segments', '[]'))));
    END IF;
    FOR e, en IN SELECT * FROM jsonb_array_elements(document -> 'events') WITH ORDINALITY LOOP
        IF jsonb_typeof(e) IS DISTINCT FROM 'object' OR jsonb_typeof(e -> 'type') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'malformed event % in Unleash document', en
                USING ERRCODE = 'invalid_parameter_value', DETAIL = 'An event is an object with a "type".';
        END IF;
        CASE e ->> 'type'
        WHEN 'hydration' THEN
            IF jsonb_typeof(e -> 'features') IS DISTINCT FROM 'array'
               OR coalesce(jsonb_typeof(e -> 'segments'), 'null') NOT IN ('array', 'null') THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A hydration has "features" and "segments" arrays.';
            END IF;
            feats := '{}';
            segs := '{}';
            removed := '{}';
            FOR x, idx IN SELECT * FROM jsonb_array_elements(e -> 'features') WITH ORDINALITY LOOP
                PERFORM opsflags_internal.unleash_check_feature(x, format('feature %s', idx));
                IF feats ? (x ->> 'name') THEN
                    RAISE EXCEPTION 'feature "%" appears twice in Unleash document', x ->> 'name'
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                feats := feats || jsonb_build_object(x ->> 'name', x);
            END LOOP;
            FOR x IN SELECT * FROM jsonb_array_elements(coalesce(nullif(e -> 'segments', 'null'), '[]')) LOOP
                segs := segs || jsonb_build_object(coalesce(x ->> 'id', ''), x);
            END LOOP;
        WHEN 'feature-updated' THEN
            PERFORM opsflags_internal.unleash_check_feature(e -> 'feature', format('feature of event %s', en));
            feats := feats || jsonb_build_object(e -> 'feature' ->> 'name', e -> 'feature');
            removed := array_remove(removed, e -> 'feature' ->> 'name');
        WHEN 'feature-removed' THEN
            IF jsonb_typeof(e -> 'featureName') IS DISTINCT FROM 'string' THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A feature-removed event names a "featureName".';
            END IF;
            feats := feats - (e ->> 'featureName');
            removed := array_remove(removed, e ->> 'featureName') || (e ->> 'featureName');
        WHEN 'segment-updated' THEN
            segs := segs || jsonb_build_object(coalesce(e -> 'segment' ->> 'id', ''), e -> 'segment');
            seg_gone := array_remove(seg_gone, e -> 'segment' ->> 'id');
        WHEN 'segment-removed' THEN
            IF NOT opsflags_internal.is_whole_number(e -> 'segmentId', 0, 1e15) THEN
                RAISE EXCEPTION 'malformed event % in Unleash document', en
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A segment-removed event names a "segmentId".';
            END IF;
            segs := segs - (e ->> 'segmentId');
            seg_gone := array_remove(seg_gone, e ->> 'segmentId') || (e ->> 'segmentId');
        ELSE
            RAISE EXCEPTION 'unknown event type "%" in Unleash document', e ->> 'type'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Known: hydration, feature-updated, feature-removed, segment-updated, segment-removed.';
        END CASE;
    END LOOP;

    -- Check everything before writing anything.
    FOR key, x IN SELECT * FROM jsonb_each(segs) LOOP
        IF jsonb_typeof(x) IS DISTINCT FROM 'object' OR NOT opsflags_internal.is_whole_number(x -> 'id', 0, 1e15)
           OR coalesce(jsonb_typeof(x -> 'name'), 'null') NOT IN ('string', 'null')
           OR coalesce(jsonb_typeof(x -> 'constraints'), 'null') NOT IN ('array', 'null') THEN
            RAISE EXCEPTION 'malformed segment "%" in Unleash document', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A segment is {"id": whole number, "name": string, "constraints": [...]}.';
        END IF;
        FOR e, en IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'constraints', 'null'), '[]')) WITH ORDINALITY LOOP
            PERFORM opsflags_internal.unleash_check_constraint(e, format('constraint %s of segment %s', en, key));
        END LOOP;
    END LOOP;
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF FOUND THEN
            IF f.archived THEN
                RAISE EXCEPTION 'feature flag "%" of the Unleash document is archived', key
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the document.';
            END IF;
            IF f.variations -> 0 IS DISTINCT FROM 'true' OR f.variations -> 1 IS DISTINCT FROM 'false' THEN
                RAISE EXCEPTION 'feature flag "%" of the Unleash document does not have the variations true and false first', key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'An Unleash feature is a flag whose variations are [true, false, variant payloads...].';
            END IF;
        END IF;
    END LOOP;

    -- Segments: opsflags.user_segments "unleash-segment-<id>", one rule of
    -- the segment's constraints.
    FOR key, x IN SELECT k, v FROM jsonb_each(segs) s(k, v) ORDER BY k::numeric LOOP
        s_rules := jsonb_build_array(jsonb_build_object('id', 'constraints', 'clauses',
            (SELECT coalesce(jsonb_agg(opsflags_internal.unleash_clause(cc) ORDER BY o), '[]')
             FROM jsonb_array_elements(coalesce(nullif(x -> 'constraints', 'null'), '[]')) WITH ORDINALITY a(cc, o))));
        key := 'unleash-segment-' || key;
        IF NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key) THEN
            INSERT INTO opsflags.user_segments (segment_key, name, rules)
            VALUES (key, coalesce(x ->> 'name', key), s_rules);
            s_created := s_created || key;
        ELSIF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key
                      AND (u.name, u.user_ids, u.roles, u.rules) IS NOT DISTINCT FROM (coalesce(x ->> 'name', key), '[]'::jsonb, '[]'::jsonb, s_rules)) THEN
            s_same := s_same || key;
        ELSE
            UPDATE opsflags.user_segments u
            SET name = coalesce(x ->> 'name', key), user_ids = '[]', roles = '[]', rules = s_rules, updated_at = now()
            WHERE u.segment_key = key;
            s_changed := s_changed || key;
        END IF;
    END LOOP;
    SELECT coalesce(jsonb_object_agg(substr(u.segment_key, 17), true), '{}') INTO known
    FROM opsflags.user_segments u
    WHERE u.segment_key ~ '^unleash-segment-[0-9]+$' AND substr(u.segment_key, 17) <> ALL (seg_gone);

    -- Features: the flag (variations: true, false, then one per variant
    -- name, its payload as the value) and its config in the environment.
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        feat := feats -> key;
        strategies := feat -> 'strategies';
        chg := false;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        vars := coalesce(f.variations, '[true, false]');
        vnames := coalesce(f.variation_names,
                           (SELECT jsonb_agg(NULL::text) FROM generate_series(1, jsonb_array_length(vars))));
        FOR fv IN
            SELECT v FROM (SELECT x.v, 0 AS s, x.o FROM jsonb_array_elements(coalesce(nullif(feat -> 'variants', 'null'), '[]')) WITH ORDINALITY x(v, o)
                           UNION ALL
                           SELECT y.v, s2.o, y.o
                           FROM jsonb_array_elements(coalesce(nullif(strategies, 'null'), '[]')) WITH ORDINALITY s2(s, o),
                                jsonb_array_elements(coalesce(nullif(s2.s -> 'variants', 'null'), '[]')) WITH ORDINALITY y(v, o)) z
            ORDER BY z.s, z.o
        LOOP
            SELECT o::integer - 1 INTO idx FROM jsonb_array_elements(vnames) WITH ORDINALITY a(n, o)
            WHERE a.n = fv -> 'name';
            IF idx IS NULL THEN
                vars := vars || jsonb_build_array(coalesce(fv -> 'payload', 'null'));
                vnames := vnames || jsonb_build_array(fv -> 'name');
            ELSIF vars -> idx <> coalesce(fv -> 'payload', 'null') THEN
                vars := jsonb_set(vars, ARRAY[idx::text], coalesce(fv -> 'payload', 'null'));
            END IF;
            idx := NULL;
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(vnames) n WHERE n <> 'null') THEN
            vnames := NULL;
        END IF;
        vtype := CASE WHEN jsonb_array_length(vars) > 2 THEN 'json' ELSE coalesce(f.flag_type, 'boolean') END;
        IF f.id IS NULL THEN
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, description, flag_type, variations, variation_names)
            VALUES (key, key, feat ->> 'description', vtype, vars, vnames)
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment)
            SELECT f.id, en2.name FROM opsflags.environments en2 WHERE en2.name <> env;
            created := created || key;
        ELSIF (f.flag_type, f.variations, f.variation_names) IS DISTINCT FROM (vtype, vars, vnames) THEN
            UPDATE opsflags.feature_flags ff SET flag_type = vtype, variations = vars, variation_names = vnames
            WHERE ff.id = f.id RETURNING * INTO f;
            chg := true;
        END IF;
        SELECT coalesce(jsonb_object_agg(n #>> '{}', o - 1) FILTER (WHERE n <> 'null'), '{}') INTO names
        FROM jsonb_array_elements(coalesce(vnames, '[]')) WITH ORDINALITY a(n, o);

        -- A dependency the SDK can never satisfy (a parent missing, or
        -- with dependencies of its own) leaves the feature off.
        ok := true;
        FOR dep IN SELECT * FROM jsonb_array_elements(coalesce(nullif(feat -> 'dependencies', 'null'), '[]')) LOOP
            parent := feats -> (dep ->> 'feature');
            IF parent IS NOT NULL THEN
                ok := ok AND jsonb_array_length(coalesce(nullif(parent -> 'dependencies', 'null'), '[]')) = 0;
            ELSE
                ok := ok AND dep ->> 'feature' <> ALL (removed)
                      AND EXISTS (SELECT 1 FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature' AND NOT p.archived
                                  AND NOT EXISTS (SELECT 1 FROM opsflags.flag_prerequisites pp WHERE pp.flag_id = p.id));
            END IF;
            -- Variants the parent will not have.
            ok := ok AND opsflags_internal.unleash_dependency_variants(dep,
                      coalesce((SELECT p.variation_names FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature'), '[]')
                      || coalesce(jsonb_path_query_array(parent, 'lax $.variants[*].name'), '[]')
                      || coalesce(jsonb_path_query_array(parent, 'lax $.strategies[*].variants[*].name'), '[]'))
                     IS DISTINCT FROM '[]';
        END LOOP;
        enabled := coalesce((feat ->> 'enabled')::boolean, false) AND ok;

        SELECT coalesce(jsonb_agg(r ORDER BY o, ro), '[]') INTO rules
        FROM jsonb_array_elements(coalesce(nullif(strategies, 'null'), '[]')) WITH ORDINALITY a(s, o),
             jsonb_array_elements(opsflags_internal.unleash_strategy_rules(s, o::integer, names, known,
                                                                           coalesce(f.rollout_group, key))) WITH ORDINALITY b(r, ro);
        serve := CASE WHEN jsonb_array_length(coalesce(nullif(feat -> 'variants', 'null'), '[]')) > 0
                      THEN opsflags_internal.unleash_split(feat -> 'variants', names, feat -> 'variants' -> 0 ->> 'stickiness',
                                                           key, coalesce(f.rollout_group, key)) END;
        -- No strategy: on for everyone; strategies (or none readable): on
        -- only where one is.
        fall := CASE WHEN jsonb_typeof(strategies) = 'array' AND jsonb_array_length(strategies) = 0 THEN NULL
                     ELSE '{"off": true}'::jsonb END;

        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation,
                                                       rules, serve, fallthrough)
            VALUES (f.id, env, enabled, 0, 1, rules, serve, fall);
            chg := true;
        ELSIF (c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage, c.enable_at, c.disable_at,
               c.on_variation, c.off_variation, c.variation_weights, c.segments, c.rules, c.serve, c.fallthrough)
              IS DISTINCT FROM
              (enabled, '[]'::jsonb, '[]'::jsonb, 0, NULL::timestamptz, NULL::timestamptz,
               0, 1, NULL::jsonb, '[]'::jsonb, rules, serve, fall) THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = enabled, enabled_for_users = '[]', enabled_for_roles = '[]', enabled_percentage = 0,
                enable_at = NULL, disable_at = NULL, on_variation = 0, off_variation = 1, variation_weights = NULL,
                segments = '[]', rules = import_unleash.rules, serve = import_unleash.serve, fallthrough = fall
            WHERE fc.flag_id = f.id AND fc.environment = env;
            chg := true;
        END IF;
        IF NOT (key = ANY (created)) THEN
            IF chg THEN
                changed := changed || key;
            ELSE
                same := same || key;
            END IF;
        END IF;
    END LOOP;

    -- Prerequisites, once every flag exists: a feature's dependencies (none
    -- for a feature left off above).
    FOR key IN SELECT k FROM jsonb_object_keys(feats) k ORDER BY k LOOP
        feat := feats -> key;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        want := '[]';
        IF c.is_enabled OR NOT coalesce((feat ->> 'enabled')::boolean, false) THEN
            FOR dep IN SELECT * FROM jsonb_array_elements(coalesce(nullif(feat -> 'dependencies', 'null'), '[]')) LOOP
                SELECT p.id INTO pid FROM opsflags.feature_flags p WHERE p.flag_key = dep ->> 'feature';
                CONTINUE WHEN pid IS NULL OR dep ->> 'feature' = ANY (removed)
                              OR jsonb_array_length(coalesce(nullif(feats -> (dep ->> 'feature') -> 'dependencies', 'null'), '[]')) > 0;
                x := opsflags_internal.unleash_dependency_variants(dep,
                         (SELECT p.variation_names FROM opsflags.feature_flags p WHERE p.id = pid));
                CONTINUE WHEN x = '[]';
                want := want || jsonb_build_array(jsonb_build_object(
                    'id', pid, 'enabled', coalesce((dep ->> 'enabled')::boolean, true), 'variants', x));
            END LOOP;
        END IF;
        IF EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(want) w WHERE (w ->> 'id')::uuid = p.prerequisite_id
                                   AND p.variation IS NULL AND p.enabled = (w ->> 'enabled')::boolean
                                   AND p.variants IS NOT DISTINCT FROM nullif(w -> 'variants', 'null')))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(want) w WHERE NOT EXISTS
                      (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id AND p.prerequisite_id = (w ->> 'id')::uuid)) THEN
            DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
            INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled, variants)
            SELECT f.id, (w ->> 'id')::uuid, (w ->> 'enabled')::boolean, nullif(w -> 'variants', 'null')
            FROM jsonb_array_elements(want) w;
            IF key = ANY (same) THEN
                same := array_remove(same, key);
                changed := changed || key;
            END IF;
        END IF;
    END LOOP;

    -- Removed features are off in the environment.
    FOREACH key IN ARRAY removed LOOP
        UPDATE opsflags.feature_flag_configs fc SET is_enabled = false
        FROM opsflags.feature_flags ff
        WHERE ff.flag_key = key AND fc.flag_id = ff.id AND fc.environment = env AND fc.is_enabled;
        IF FOUND THEN
            gone := gone || key;
        END IF;
    END LOOP;
    FOREACH key IN ARRAY seg_gone LOOP
        DELETE FROM opsflags.user_segments u WHERE u.segment_key = 'unleash-segment-' || key;
        IF FOUND THEN
            s_gone := s_gone || ('unleash-segment-' || key);
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created), 'changed', to_jsonb(changed),
                              'unchanged', to_jsonb(same), 'removed', to_jsonb(gone),
                              'segments', jsonb_build_object('created', to_jsonb(s_created), 'changed', to_jsonb(s_changed),
                                                             'unchanged', to_jsonb(s_same), 'removed', to_jsonb(s_gone)));
END
$$;
COMMENT ON FUNCTION opsflags.import_unleash(text, jsonb) IS
  'Load an Unleash client document (/api/client/features, or delta events) into an environment as flags, rules, segments and prerequisites; idempotent';


-------------------------------------------------------------------------------
-- Privileges: the import is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags.import_unleash(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.import_unleash(text, jsonb)
TO opsflags_admin;

/*
 * unleash_export.sql
 *	  unleash_features: an environment's flags as an Unleash client document
 *	  (/api/client/features), so that Unleash SDKs answer as opsflags does.
 */

-------------------------------------------------------------------------------
-- Export: rules and serves as strategies and variants
-------------------------------------------------------------------------------

-- A PostgreSQL pattern as RE2 reads it (the inverse of unleash_regex):
-- {"value", "caseInsensitive"}.  A pattern without embedded options has
-- PostgreSQL's defaults: "." matches newlines, anchors at the text's ends.
CREATE FUNCTION opsflags_internal.unleash_regex_out(pattern text, case_insensitive boolean)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m     text[] := regexp_match(pattern, '^\(\?([a-z]*)\)');
    opts  text := coalesce(m[1], 's');
    body  text := CASE WHEN m IS NULL THEN pattern ELSE substr(pattern, length(m[1]) + 4) END;
    flags text;
BEGIN
    body := regexp_replace(regexp_replace(regexp_replace(body, '(^|[^\\])((\\\\)*)\\y', '\1\2\\b', 'g'),
                                          '(^|[^\\])((\\\\)*)\\Y', '\1\2\\B', 'g'),
                           '(^|[^\\])((\\\\)*)\\Z', '\1\2\\z', 'g');
    flags := CASE WHEN opts ~ 'w' THEN 'ms' WHEN opts ~ '[nm]' THEN 'm' WHEN opts ~ 'p' THEN '' ELSE 's' END
             || CASE WHEN opts ~ 'i' THEN 'i' ELSE '' END;
    RETURN jsonb_build_object('value', CASE WHEN flags = '' THEN body ELSE '(?' || flags || ')' || body END,
                              'caseInsensitive', coalesce(case_insensitive, false));
END
$$;

-- The alternatives one clause is in Unleash: a list of constraint lists,
-- any of which holds when the clause does (an operator of one value with
-- several values is one constraint per value; negated, all of them).
-- Members "segments" of an alternative are strategy segment ids.
CREATE FUNCTION opsflags_internal.unleash_constraints(cl jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op    text := cl ->> 'op';
    neg   boolean := coalesce((cl ->> 'negate')::boolean, false);
    ci    boolean := coalesce((cl ->> 'case_insensitive')::boolean, false);
    name  text := opsflags_internal.unleash_context_name(cl ->> 'attribute');
    vals  jsonb := coalesce(cl -> 'values', '[]');
    uop   text;
    one   jsonb;
BEGIN
    IF op = 'unsupported' THEN
        IF cl ->> 'attribute' = 'segment' AND cl ->> 'operator' = 'segment' THEN
            RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object('segment', (vals ->> 0)::numeric)));
        END IF;
        RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object(
            'contextName', name, 'operator', coalesce(cl ->> 'operator', 'UNSUPPORTED'),
            'values', CASE WHEN jsonb_path_exists(vals, 'strict $[*] ? (@.type() != "string")')
                           THEN '[]'::jsonb ELSE vals END)));
    END IF;
    IF op IN ('in', 'not_in', 'starts_with', 'ends_with', 'contains', 'in_cidr') THEN
        one := jsonb_build_object('contextName', name,
                   'operator', CASE op WHEN 'in' THEN 'IN' WHEN 'not_in' THEN 'NOT_IN' WHEN 'starts_with' THEN 'STR_STARTS_WITH'
                                       WHEN 'ends_with' THEN 'STR_ENDS_WITH' WHEN 'contains' THEN 'STR_CONTAINS' ELSE 'IN_CIDR' END,
                   'values', (SELECT coalesce(jsonb_agg(to_jsonb(v #>> '{}') ORDER BY o), '[]')
                              FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)),
                   'inverted', neg);
        IF op IN ('starts_with', 'ends_with', 'contains') THEN
            one := one || jsonb_build_object('caseInsensitive', ci);
        END IF;
        RETURN jsonb_build_array(jsonb_build_array(one));
    END IF;
    IF op = 'segment_match' THEN
        -- Segments imported from Unleash only.
        RETURN (SELECT coalesce(jsonb_agg(jsonb_build_array(jsonb_build_object('segment', substr(v #>> '{}', 17)::numeric))), '[]')
                FROM jsonb_array_elements(vals) v WHERE v #>> '{}' ~ '^unleash-segment-[0-9]+$');
    END IF;
    uop := CASE op WHEN 'eq' THEN 'NUM_EQ' WHEN 'lt' THEN 'NUM_LT' WHEN 'lte' THEN 'NUM_LTE' WHEN 'gt' THEN 'NUM_GT'
                   WHEN 'gte' THEN 'NUM_GTE' WHEN 'before' THEN 'DATE_BEFORE' WHEN 'after' THEN 'DATE_AFTER'
                   WHEN 'matches' THEN 'REGEX' ELSE upper(op) END;
    SELECT jsonb_agg(CASE WHEN op = 'matches'
                          THEN jsonb_build_object('contextName', name, 'operator', uop, 'inverted', neg)
                               || opsflags_internal.unleash_regex_out(v #>> '{}', ci)
                          ELSE jsonb_build_object('contextName', name, 'operator', uop, 'value', v #>> '{}', 'inverted', neg) END
                     ORDER BY o)
    INTO one FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o);
    IF one IS NULL THEN
        -- No value: never holds, negated always.
        RETURN jsonb_build_array(jsonb_build_array(jsonb_build_object('contextName', name, 'operator', 'IN',
                                                                      'values', '[]'::jsonb, 'inverted', neg)));
    END IF;
    IF neg THEN
        RETURN jsonb_build_array(one);
    END IF;
    RETURN (SELECT jsonb_agg(jsonb_build_array(x)) FROM jsonb_array_elements(one) x);
END
$$;

-- A split or variation serve as Unleash variants: {"variants", "stickiness",
-- "groupId"}; NULL when a variation it serves has no name.
CREATE FUNCTION opsflags_internal.unleash_variants(serve jsonb, vars jsonb, vnames jsonb, default_group text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bb    jsonb := coalesce(serve -> 'bucket_by', '["key"]');
    stick text;
    out   jsonb;
BEGIN
    IF serve ? 'variation' THEN
        serve := jsonb_build_object('split', jsonb_build_array(jsonb_build_object('variation', serve -> 'variation', 'weight', 1000)));
        bb := '["key", "sessionId", "remoteAddress", "$random"]';
    END IF;
    IF NOT serve ? 'split' OR EXISTS (SELECT 1 FROM jsonb_array_elements(serve -> 'split') s
                                      WHERE jsonb_typeof(vnames -> (s ->> 'variation')::integer) IS DISTINCT FROM 'string') THEN
        RETURN NULL;
    END IF;
    stick := CASE WHEN bb = '["key", "sessionId", "remoteAddress", "$random"]' THEN 'default'
                  ELSE opsflags_internal.unleash_context_name(bb ->> 0) END;
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'name', vnames -> (s ->> 'variation')::integer,
               'weight', s -> 'weight',
               'weightType', 'fix',
               'stickiness', stick,
               'payload', nullif(vars -> (s ->> 'variation')::integer, 'null'),
               'overrides', (SELECT jsonb_agg(jsonb_build_object(
                                        'contextName', opsflags_internal.unleash_context_name(ov ->> 'attribute'),
                                        'values', ov -> 'values') ORDER BY oo)
                             FROM jsonb_array_elements(coalesce(serve -> 'overrides', '[]')) WITH ORDINALITY b(ov, oo)
                             WHERE (ov ->> 'variation')::integer = (s ->> 'variation')::integer))) ORDER BY o)
    INTO out FROM jsonb_array_elements(serve -> 'split') WITH ORDINALITY a(s, o);
    RETURN jsonb_build_object('variants', out, 'stickiness', stick, 'groupId', coalesce(serve ->> 'group', default_group));
END
$$;

-- The strategies one rule is (its clauses' alternatives multiplied out);
-- vr: its serve as unleash_variants gives it, or NULL.
CREATE FUNCTION opsflags_internal.unleash_rule_strategies(r jsonb, vr jsonb, default_group text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    alts    jsonb := '[[]]';
    cl      jsonb;
    kind    text := 'default';
    params  jsonb := '{}';
    gate    jsonb := r -> 'rollout';
    bb      jsonb;
    segs    jsonb;
    out     jsonb := '[]';
    a       jsonb;
    n       integer := 0;
    first   boolean := true;
BEGIN
    FOR cl IN SELECT * FROM jsonb_array_elements(coalesce(r -> 'clauses', '[]')) LOOP
        IF first AND cl ->> 'op' = 'unsupported' AND cl ->> 'attribute' = 'strategy' THEN
            kind := cl ->> 'operator';
            params := coalesce(cl -> 'values' -> 0, '{}');
        ELSE
            SELECT jsonb_agg(x || y ORDER BY i, j) INTO alts
            FROM jsonb_array_elements(alts) WITH ORDINALITY p(x, i),
                 jsonb_array_elements(opsflags_internal.unleash_constraints(cl)) WITH ORDINALITY q(y, j);
            IF alts IS NULL OR jsonb_array_length(alts) > 1000 THEN
                RETURN '[]';
            END IF;
        END IF;
        first := false;
    END LOOP;
    IF gate IS NOT NULL THEN
        bb := coalesce(gate -> 'bucket_by', '["key"]');
        kind := 'flexibleRollout';
        params := jsonb_build_object('rollout', (gate ->> 'percentage'),
            'stickiness', CASE WHEN bb = '["key", "sessionId", "$random"]' THEN 'default'
                               WHEN bb = '["$random"]' THEN 'random'
                               ELSE opsflags_internal.unleash_context_name(bb ->> 0) END,
            'groupId', coalesce(gate ->> 'group', default_group));
    END IF;
    segs := (SELECT coalesce(jsonb_agg(substr(s #>> '{}', 17)::numeric ORDER BY o), '[]')
             FROM jsonb_array_elements(coalesce(r -> 'segments', '[]')) WITH ORDINALITY b(s, o)
             WHERE s #>> '{}' ~ '^unleash-segment-[0-9]+$');
    IF vr IS NOT NULL THEN
        -- One groupId buckets both the gate and the variants: a random gate
        -- has no group of its own.
        params := params || jsonb_build_object('groupId', CASE WHEN bb = '["$random"]' THEN vr ->> 'groupId'
                                                               ELSE coalesce(params ->> 'groupId', vr ->> 'groupId') END);
        -- Without a groupId the SDK buckets the rollout in "" and the
        -- variants in "undefined".
        IF params ->> 'groupId' = '' AND vr ->> 'groupId' = 'undefined' THEN
            params := params - 'groupId';
        END IF;
        IF NOT params ? 'stickiness' OR kind <> 'flexibleRollout' THEN
            params := params || jsonb_build_object('stickiness', vr ->> 'stickiness');
        END IF;
    END IF;
    FOR a IN SELECT * FROM jsonb_array_elements(alts) LOOP
        n := n + 1;
        out := out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'id', (r ->> 'id') || CASE WHEN n > 1 THEN '.' || n ELSE '' END,
            'name', kind,
            'parameters', params,
            'constraints', (SELECT coalesce(jsonb_agg(c ORDER BY o), '[]') FROM jsonb_array_elements(a) WITH ORDINALITY e(c, o)
                            WHERE NOT c ? 'segment'),
            'segments', segs || (SELECT coalesce(jsonb_agg(c -> 'segment' ORDER BY o), '[]')
                                 FROM jsonb_array_elements(a) WITH ORDINALITY e(c, o) WHERE c ? 'segment'),
            'variants', vr -> 'variants')));
    END LOOP;
    RETURN out;
END
$$;

-------------------------------------------------------------------------------
-- unleash_features
-------------------------------------------------------------------------------

-- An environment's flags as Unleash's /api/client/features response, so
-- that an Unleash SDK answers as feature_enabled and feature_explain do:
-- user targets as a userWithId strategy, role targets and rules as
-- strategies with constraints, a percentage rollout as flexibleRollout on
-- userId, the serves as variants (named variations only), prerequisites as
-- dependencies, segments imported from Unleash as segments.
CREATE FUNCTION opsflags.unleash_features(environment text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    f        record;
    grp      text;
    st       jsonb;
    vr       jsonb;
    fvr      jsonb;
    tail     jsonb;
    r        jsonb;
    seg      record;
    features jsonb := '[]';
    segments jsonb := '[]';
BEGIN
    FOR f IN SELECT ff.*, c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage,
                    c.on_variation, c.segments AS target_segments, c.rules, c.serve, c.fallthrough
             FROM opsflags.feature_flags ff
             JOIN opsflags.feature_flag_configs c ON c.flag_id = ff.id AND c.environment = env
             WHERE NOT ff.archived ORDER BY ff.flag_key LOOP
        grp := coalesce(f.rollout_group, f.flag_key);
        st := '[]';
        -- What the flag serves when it is on and nothing more specific
        -- says: as feature variants when bucketed by the flag's key (the
        -- group Unleash gives them), else on each strategy.
        fvr := opsflags_internal.unleash_variants(coalesce(f.serve, jsonb_build_object('variation', f.on_variation)),
                                                   f.variations, f.variation_names, grp);
        IF f.serve IS NULL AND f.variations -> f.on_variation = 'true' THEN
            fvr := NULL;
        END IF;
        IF jsonb_array_length(f.enabled_for_users) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'users', 'name', 'userWithId',
                      'parameters', jsonb_build_object('userIds',
                          (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(f.enabled_for_users) WITH ORDINALITY a(u, o)))));
        END IF;
        IF jsonb_array_length(f.enabled_for_roles) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'roles', 'name', 'default', 'parameters', '{}'::jsonb,
                      'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                          'values', f.enabled_for_roles))));
        END IF;
        FOR seg IN SELECT u.* FROM jsonb_array_elements_text(f.target_segments) WITH ORDINALITY a(k, o)
                   JOIN opsflags.user_segments u ON u.segment_key = a.k ORDER BY a.o LOOP
            IF jsonb_array_length(seg.user_ids) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'userWithId',
                          'parameters', jsonb_build_object('userIds',
                              (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(seg.user_ids) WITH ORDINALITY a(u, o)))));
            END IF;
            IF jsonb_array_length(seg.roles) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                              'values', seg.roles))));
            END IF;
            IF seg.segment_key ~ '^unleash-segment-[0-9]+$' THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'segments', jsonb_build_array(substr(seg.segment_key, 17)::numeric)));
            ELSE
                FOR r IN SELECT * FROM jsonb_array_elements(seg.rules) LOOP
                    st := st || opsflags_internal.unleash_rule_strategies(r - 'id', NULL, grp);
                END LOOP;
            END IF;
        END LOOP;
        -- Strategies from the targets above serve what the flag serves.
        IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN
            st := (SELECT coalesce(jsonb_agg(s || jsonb_build_object('variants', fvr -> 'variants',
                                             'parameters', s -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'))
                                             ORDER BY o), '[]')
                   FROM jsonb_array_elements(st) WITH ORDINALITY a(s, o));
        END IF;
        FOR r IN SELECT * FROM jsonb_array_elements(f.rules) LOOP
            CONTINUE WHEN r -> 'serve' ? 'off';
            vr := CASE WHEN r ? 'serve' THEN opsflags_internal.unleash_variants(r -> 'serve', f.variations, f.variation_names, grp)
                       WHEN fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN fvr END;
            st := st || opsflags_internal.unleash_rule_strategies(r, vr, grp);
        END LOOP;
        -- Then the percentage rollout, else the fallthrough.
        tail := NULL;
        IF f.enabled_percentage > 0 THEN
            tail := jsonb_build_object('id', 'rollout', 'name', 'flexibleRollout',
                        'parameters', jsonb_build_object('rollout', f.enabled_percentage::text, 'stickiness', 'userId',
                                                         'groupId', grp));
        ELSIF f.fallthrough IS NULL AND jsonb_array_length(st) > 0 THEN
            tail := jsonb_build_object('id', 'fallthrough', 'name', 'default', 'parameters', '{}'::jsonb);
        ELSIF f.fallthrough IS NOT NULL AND NOT f.fallthrough ? 'off' THEN
            vr := opsflags_internal.unleash_variants(f.fallthrough, f.variations, f.variation_names, grp);
            tail := jsonb_strip_nulls(jsonb_build_object('id', 'fallthrough', 'name', 'default',
                        'parameters', CASE WHEN vr IS NULL THEN '{}'::jsonb
                                           ELSE jsonb_build_object('groupId', vr -> 'groupId', 'stickiness', vr -> 'stickiness') END,
                        'variants', vr -> 'variants'));
        ELSIF f.fallthrough ? 'off' AND jsonb_array_length(st) = 0 THEN
            -- Off for everyone: a strategy that never holds.
            tail := jsonb_build_object('id', 'never', 'name', 'default', 'parameters', '{}'::jsonb,
                        'constraints', jsonb_build_array(jsonb_build_object('contextName', 'userId', 'operator', 'IN',
                                                                            'values', '[]'::jsonb, 'inverted', false)));
        END IF;
        IF tail IS NOT NULL THEN
            IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key AND NOT tail ? 'variants' THEN
                tail := tail || jsonb_build_object('variants', fvr -> 'variants',
                                                   'parameters', tail -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'));
            END IF;
            st := st || jsonb_build_array(tail);
        END IF;
        features := features || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'name', f.flag_key,
            'description', f.description,
            'type', 'release',
            'project', 'default',
            'enabled', f.is_enabled,
            'stale', false,
            'impressionData', false,
            'strategies', st,
            'variants', CASE WHEN fvr ->> 'groupId' = f.flag_key THEN fvr -> 'variants' ELSE '[]'::jsonb END,
            'dependencies', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                        'feature', pf.flag_key, 'enabled', p.enabled,
                                        'variants', coalesce(p.variants,
                                                             CASE WHEN p.variation IS NOT NULL
                                                                  THEN jsonb_build_array(coalesce(pf.variation_names ->> p.variation, 'disabled')) END)))
                                    ORDER BY pf.flag_key)
                             FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                             WHERE p.flag_id = f.id))));
    END LOOP;
    FOR seg IN SELECT * FROM opsflags.user_segments u WHERE u.segment_key ~ '^unleash-segment-[0-9]+$'
               ORDER BY substr(u.segment_key, 17)::numeric LOOP
        segments := segments || jsonb_build_array(jsonb_build_object(
            'id', substr(seg.segment_key, 17)::numeric, 'name', seg.name,
            'constraints', coalesce((SELECT jsonb_agg(x ORDER BY o)
                                     FROM jsonb_array_elements(seg.rules -> 0 -> 'clauses') WITH ORDINALITY a(cl, o),
                                          jsonb_array_elements(opsflags_internal.unleash_constraints(cl) -> 0) x), '[]')));
    END LOOP;
    RETURN jsonb_build_object('version', 2, 'features', features, 'segments', segments);
END
$$;
COMMENT ON FUNCTION opsflags.unleash_features(text) IS
  'The environment''s flags as Unleash''s /api/client/features response {"version": 2, "features", "segments"}';


-------------------------------------------------------------------------------
-- Privileges: the export is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.unleash_regex_out(text, boolean),
    opsflags_internal.unleash_constraints(jsonb),
    opsflags_internal.unleash_variants(jsonb, jsonb, jsonb, text),
    opsflags_internal.unleash_rule_strategies(jsonb, jsonb, text),
    opsflags.unleash_features(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.unleash_regex_out(text, boolean),
    opsflags_internal.unleash_constraints(jsonb),
    opsflags_internal.unleash_variants(jsonb, jsonb, jsonb, text),
    opsflags_internal.unleash_rule_strategies(jsonb, jsonb, text),
    opsflags.unleash_features(text)
TO opsflags_admin;

-------------------------------------------------------------------------------
-- Rules in the flag and segment API: update_flag takes rules, serve,
-- fallthrough and variation_names; create_flag takes variation_names and
-- create_segment/update_segment rules (their signatures change: dropped and
-- created again, with their grants); add_rule and remove_rule; get_flag
-- shows the new columns (flags.sql, variations.sql, segments.sql).
-------------------------------------------------------------------------------

DROP FUNCTION opsflags.create_flag(text, text, text, text, jsonb, text[]);
DROP FUNCTION opsflags.create_segment(text, text, jsonb, jsonb, text);
DROP FUNCTION opsflags.update_segment(text, jsonb, jsonb);
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

CREATE FUNCTION opsflags.create_flag(
    flag_key    text,
    flag_name   text DEFAULT NULL,
    description text DEFAULT NULL,
    flag_type   text DEFAULT 'boolean',
    variations  jsonb DEFAULT NULL,
    tags        text[] DEFAULT '{}',
    variation_names jsonb DEFAULT NULL)
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
    PERFORM opsflags_internal.check_variation_names(flag_key, vars, coalesce(variation_names, 'null'));
    IF EXISTS (SELECT 1 FROM opsflags.feature_flags f WHERE f.flag_key = create_flag.flag_key) THEN
        RAISE EXCEPTION 'feature flag "%" already exists', flag_key
            USING ERRCODE = 'unique_violation',
                  HINT = 'Change it with opsflags.update_flag().';
    END IF;
    onoff := opsflags_internal.default_on_off(vars);
    PERFORM opsflags_internal.check_variations(flag_key, vars, onoff[1], onoff[2], NULL);
    INSERT INTO opsflags.feature_flags AS f (flag_key, flag_name, description, flag_type, variations, tags, variation_names)
    VALUES (flag_key, coalesce(flag_name, flag_key), description, ftype, vars, coalesce(tags, '{}'),
            nullif(variation_names, 'null'))
    RETURNING f.id INTO new_id;
    -- A new flag starts off in every environment.
    INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
    SELECT new_id, e.name, onoff[1], onoff[2] FROM opsflags.environments e;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION opsflags.update_flag(flag_key text, updates jsonb, environment text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flag_fields   constant text[] := '{flag_name,description,tags,rollout_group,variations,variation_names}';
    config_fields constant text[] := '{is_enabled,enabled_for_users,enabled_for_roles,enabled_percentage,enable_at,disable_at,on_variation,off_variation,variation_weights,segments,rules,serve,fallthrough}';
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
        WHEN 'on_variation' THEN
            IF NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'the index of a variation, a whole number from 0', v);
            END IF;
        WHEN 'off_variation' THEN
            IF jsonb_typeof(v) <> 'null' AND NOT opsflags_internal.is_whole_number(v, 0, 2147483647) THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'the index of a variation, a whole number from 0, or null for no value when off', v);
            END IF;
        WHEN 'variation_weights' THEN
            IF jsonb_typeof(v) NOT IN ('array', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an array of non-negative whole numbers, one per variation, or null for no split', v);
            END IF;
        WHEN 'variation_names' THEN
            PERFORM opsflags_internal.check_variation_names(flag_key, vars, v);
        WHEN 'rules' THEN
            -- The rules themselves are checked by the config's trigger
            -- (rules.sql), which names the rule and clause.
            IF jsonb_typeof(v) <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(v) r WHERE jsonb_typeof(r) <> 'object') THEN
                PERFORM opsflags.flag_field_error(flag_key, field, 'a JSON array of rule objects', v);
            END IF;
        WHEN 'serve', 'fallthrough' THEN
            IF jsonb_typeof(v) NOT IN ('object', 'null') THEN
                PERFORM opsflags.flag_field_error(flag_key, field,
                    'an object such as {"variation": 0}, {"split": [...]} or {"off": true}, or null', v);
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
            variations    = CASE WHEN updates ? 'variations' THEN updates->'variations' ELSE ff.variations END,
            variation_names = CASE WHEN updates ? 'variation_names' THEN nullif(updates->'variation_names', 'null') ELSE ff.variation_names END
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
            rules              = CASE WHEN updates ? 'rules' THEN updates->'rules' ELSE fc.rules END,
            serve              = CASE WHEN updates ? 'serve' THEN nullif(updates->'serve', 'null') ELSE fc.serve END,
            fallthrough        = CASE WHEN updates ? 'fallthrough' THEN nullif(updates->'fallthrough', 'null') ELSE fc.fallthrough END,
            updated_by         = opsflags_internal.writer()
        WHERE fc.flag_id = fid AND fc.environment = env;
    END IF;
END
$$;

CREATE FUNCTION opsflags.add_rule(flag_key text, rule jsonb, environment text DEFAULT NULL, at_position integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fid   uuid := opsflags.flag_id(flag_key);
    env   text := opsflags.resolve_environment(environment);
    rules jsonb;
    n     integer;
BEGIN
    IF rule IS NULL THEN
        RAISE EXCEPTION 'rule must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(rule) <> 'object' OR jsonb_typeof(rule -> 'id') IS DISTINCT FROM 'string' THEN
        PERFORM opsflags.flag_field_error(flag_key, 'rules', 'a rule: an object with an "id"', rule);
    END IF;
    SELECT fc.rules INTO rules FROM opsflags.feature_flag_configs fc
    WHERE fc.flag_id = fid AND fc.environment = env FOR UPDATE;
    rules := coalesce(rules, '[]');
    n := jsonb_array_length(rules);
    IF EXISTS (SELECT FROM jsonb_array_elements(rules) r WHERE r -> 'id' = rule -> 'id') THEN
        RAISE EXCEPTION 'rule "%" of feature flag "%" already exists in environment "%"', rule ->> 'id', flag_key, env
            USING ERRCODE = 'unique_violation',
                  HINT = 'Remove it first with opsflags.remove_rule(), or give the new rule another id.';
    END IF;
    IF at_position < 0 OR at_position > n THEN
        RAISE EXCEPTION 'position % is out of range for the % rules of feature flag "%" in environment "%"',
                        at_position, n, flag_key, env
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('A position is from 0 (first) to %s (last), or NULL for last.', n);
    END IF;
    rules := coalesce((SELECT jsonb_agg(r ORDER BY o) FROM (
                SELECT r, (i - 1) * 2 AS o FROM jsonb_array_elements(rules) WITH ORDINALITY e(r, i)
                UNION ALL
                SELECT rule, coalesce(at_position, n) * 2 - 1) x(r, o)), '[]');
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('rules', rules), env);
END
$$;

CREATE FUNCTION opsflags.remove_rule(flag_key text, rule_id text, environment text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fid   uuid := opsflags.flag_id(flag_key);
    env   text := opsflags.resolve_environment(environment);
    rules jsonb;
    kept  jsonb;
BEGIN
    IF rule_id IS NULL THEN
        RAISE EXCEPTION 'rule id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT fc.rules INTO rules FROM opsflags.feature_flag_configs fc
    WHERE fc.flag_id = fid AND fc.environment = env FOR UPDATE;
    kept := coalesce((SELECT jsonb_agg(r ORDER BY i) FROM jsonb_array_elements(rules) WITH ORDINALITY e(r, i)
                      WHERE r ->> 'id' IS DISTINCT FROM rule_id), '[]');
    IF rules IS NULL OR kept = rules THEN
        RETURN false;
    END IF;
    PERFORM opsflags.update_flag(flag_key, jsonb_build_object('rules', kept), env);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION opsflags_internal.flag_document(f opsflags.feature_flags, c opsflags.feature_flag_configs, environment text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
        'flag_type', f.flag_type, 'variations', f.variations, 'variation_names', f.variation_names,
        'tags', to_jsonb(f.tags), 'rollout_group', f.rollout_group, 'variant_algorithm', f.variant_algorithm,
        'archived', f.archived, 'version', f.version,
        'created_at', f.created_at, 'created_by', f.created_by, 'updated_at', f.updated_at,
        'prerequisites', coalesce((
            SELECT jsonb_agg(jsonb_build_object('key', pf.flag_key, 'enabled', p.enabled, 'variation', p.variation,
                                                'value', pf.variations -> p.variation, 'variants', p.variants)
                             ORDER BY pf.flag_key)
            FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
            WHERE p.flag_id = f.id), '[]'),
        'environment', environment,
        'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
            'is_enabled', c.is_enabled, 'enabled_for_users', c.enabled_for_users,
            'enabled_for_roles', c.enabled_for_roles, 'segments', c.segments,
            'enabled_percentage', c.enabled_percentage,
            'enable_at', c.enable_at, 'disable_at', c.disable_at,
            'on_variation', c.on_variation, 'off_variation', c.off_variation,
            'variation_weights', c.variation_weights,
            'rules', c.rules, 'serve', c.serve, 'fallthrough', c.fallthrough, 'version', c.version,
            'updated_at', c.updated_at, 'updated_by', c.updated_by) END);
END
$$;

CREATE FUNCTION opsflags.create_segment(segment_key text, name text, user_ids jsonb DEFAULT '[]',
                                        roles jsonb DEFAULT '[]', description text DEFAULT NULL,
                                        rules jsonb DEFAULT '[]')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    IF segment_key IS NULL THEN
        RAISE EXCEPTION 'segment key must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO opsflags.user_segments AS s (segment_key, name, user_ids, roles, description, rules)
    VALUES (segment_key, coalesce(name, segment_key), coalesce(user_ids, '[]'), coalesce(roles, '[]'), description,
            coalesce(rules, '[]'))
    RETURNING s.id INTO new_id;
    RETURN new_id;
END
$$;

CREATE FUNCTION opsflags.update_segment(segment_key text, user_ids jsonb DEFAULT NULL, roles jsonb DEFAULT NULL,
                                        rules jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE opsflags.user_segments s
    SET user_ids = coalesce(update_segment.user_ids, s.user_ids),
        roles = coalesce(update_segment.roles, s.roles),
        rules = coalesce(update_segment.rules, s.rules),
        updated_at = now()
    WHERE s.segment_key = update_segment.segment_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'segment "%" does not exist', segment_key USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.check_variation_names(text, jsonb, jsonb),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_variation_names(text, jsonb, jsonb),
    opsflags.create_flag(text, text, text, text, jsonb, text[], jsonb),
    opsflags.add_rule(text, jsonb, text, integer), opsflags.remove_rule(text, text, text),
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
TO opsflags_admin;


-- ==== Per-flag cache invalidation (src/invalidation.sql) ====
-- The trigger on the flag tables is unchanged; with shared_preload_libraries
-- its C function now also invalidates per flag.  New: flag_cache_stats().

CREATE FUNCTION opsflags.flag_cache_stats()
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_flag_cache_stats';
COMMENT ON FUNCTION opsflags.flag_cache_stats() IS
  'This backend''s flag cache: entries, hits, loads, reloads, invalidated, resets, memory_bytes, per_flag_invalidation';

-- At this transaction's commit, tell the HTTP server's event streams that
-- what clients are served may have changed (API keys), without invalidating
-- any cache.  Not for PUBLIC: a caller could wake every stream's client.
CREATE FUNCTION opsflags_internal.announce_change()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_announce_change';
REVOKE ALL ON FUNCTION opsflags_internal.announce_change() FROM PUBLIC;


-------------------------------------------------------------------------------
-- evaluate_all in C (evaluate_all.c): the same document, the same grants
-- (CREATE OR REPLACE keeps them); no SET search_path, it runs no SQL of the
-- caller's.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION opsflags.evaluate_all(context jsonb, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_evaluate_all';


-------------------------------------------------------------------------------
-- LaunchDarkly's evaluation in the rule engine (src/rules.sql, docs/rules.md):
-- a flag's and a segment's bucketing and salt; the rule checks take the
-- bucketing (LaunchDarkly splits weigh out of 100000), and run again when
-- it changes; launchdarkly_bucket() (src/hashing.sql).
-------------------------------------------------------------------------------

CREATE FUNCTION opsflags.launchdarkly_bucket(prefix text, value text)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_launchdarkly_bucket';
COMMENT ON FUNCTION opsflags.launchdarkly_bucket(text, text) IS
  'LaunchDarkly bucket in [0, 1): the first 15 hex digits of sha1(prefix || ''.'' || value) / 0xFFFFFFFFFFFFFFF; prefix is flagKey.salt or a seed';

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

DROP FUNCTION opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text);
DROP FUNCTION opsflags_internal.check_segment_rules(text, jsonb);
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

CREATE OR REPLACE FUNCTION opsflags_internal.validate_config_rules()
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

CREATE OR REPLACE FUNCTION opsflags_internal.validate_variation_names()
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

DROP TRIGGER validate_variation_names ON opsflags.feature_flags;
CREATE TRIGGER validate_variation_names BEFORE INSERT OR UPDATE OF variations, variation_names, bucketing
    ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags_internal.validate_variation_names();

CREATE OR REPLACE FUNCTION opsflags_internal.validate_segment_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rules IS DISTINCT FROM OLD.rules OR NEW.bucketing IS DISTINCT FROM OLD.bucketing THEN
        PERFORM opsflags_internal.check_segment_rules(NEW.segment_key, NEW.rules, NEW.bucketing);
    END IF;
    RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text, text),
    opsflags_internal.check_segment_rules(text, jsonb, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.check_config_rules(text, text, jsonb, jsonb, jsonb, jsonb, text, text),
    opsflags_internal.check_segment_rules(text, jsonb, text)
TO opsflags_admin;


-- ==== Boolean variations decide; LaunchDarkly prerequisites and off variations ====
-- A flag may serve any variation on or off: a boolean one decides what
-- feature_enabled says.  A config's off_variation may be NULL (off serves
-- no value), a prerequisite's enabled NULL (switched on in the environment,
-- whatever it serves).

ALTER TABLE opsflags.feature_flag_configs ALTER COLUMN off_variation DROP NOT NULL;
COMMENT ON TABLE opsflags.flag_prerequisites IS
  'A flag is evaluated further only if each prerequisite is on for the context (off, when enabled is false; switched on in the environment, when enabled is NULL) and, when variation is set, serves that variation';

CREATE OR REPLACE FUNCTION opsflags_internal.check_variations(flag_key text, variations jsonb, on_variation integer,
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

-- ==== LaunchDarkly server-side data (src/launchdarkly_data.sql) ====
-- New: import_launchdarkly_data(), launchdarkly_data() and their helpers.

-- LaunchDarkly's operators and the engine's.
CREATE FUNCTION opsflags_internal.ld_operators()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"in": "in", "startsWith": "starts_with", "endsWith": "ends_with", "contains": "contains",
         "matches": "matches", "lessThan": "lt", "lessThanOrEqual": "lte", "greaterThan": "gt",
         "greaterThanOrEqual": "gte", "before": "before", "after": "after", "semVerEqual": "semver_eq",
         "semVerLessThan": "semver_lt", "semVerGreaterThan": "semver_gt", "segmentMatch": "segment_match"}'::jsonb;

-- Raise the import's error for one flag or segment.
CREATE FUNCTION opsflags_internal.ld_error(what text, detail text, code text DEFAULT '22023')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'invalid LaunchDarkly %', what USING ERRCODE = code, DETAIL = detail;
END
$$;

-- Whether the engine takes v as a value of op (a version, a regular
-- expression, a timestamp): LaunchDarkly never matches one it cannot read.
CREATE FUNCTION opsflags_internal.ld_value_ok(op text, v jsonb)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM opsflags_internal.check_segment_rules('ld-check', jsonb_build_array(jsonb_build_object('id', 'v', 'clauses',
        jsonb_build_array(jsonb_build_object('attribute', 'a', 'op', op, 'values', jsonb_build_array(v),
                                             'semantics', 'launchdarkly')))), 'launchdarkly');
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- A clause as the engine's clause.  what names the flag or segment, pos the
-- rule and clause; segment_keys are the LaunchDarkly segments known.
CREATE FUNCTION opsflags_internal.ld_clause(c jsonb, what text, pos text, segment_keys jsonb, in_segment boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op   text;
    vals jsonb;
BEGIN
    IF jsonb_typeof(c) IS DISTINCT FROM 'object' OR jsonb_typeof(c -> 'op') IS DISTINCT FROM 'string'
       OR jsonb_typeof(c -> 'values') IS DISTINCT FROM 'array'
       OR coalesce(jsonb_typeof(c -> 'negate'), 'boolean') <> 'boolean' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause is {"attribute", "op", "values": [...], "negate"}.');
    END IF;
    op := opsflags_internal.ld_operators() ->> (c ->> 'op');
    IF op IS NULL THEN
        PERFORM opsflags_internal.ld_error(what, format('%s: unknown operator "%s".', pos, c ->> 'op'));
    END IF;
    IF coalesce(jsonb_typeof(c -> 'contextKind'), 'string') <> 'string' OR c ->> 'contextKind' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': "contextKind" is a non-empty string.');
    END IF;
    vals := c -> 'values';
    IF op = 'segment_match' THEN
        IF in_segment THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch in a segment''s rule is not supported.', '0A000');
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(vals) v WHERE jsonb_typeof(v) <> 'string' OR NOT segment_keys ? (v #>> '{}')) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch names a segment that is not in the data.');
        END IF;
        RETURN jsonb_build_object('op', op, 'values', vals, 'negate', coalesce((c ->> 'negate')::boolean, false),
                                  'semantics', 'launchdarkly');
    END IF;
    IF jsonb_typeof(c -> 'attribute') IS DISTINCT FROM 'string' OR c ->> 'attribute' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause names an attribute.');
    END IF;
    -- Members of values the operator never holds for are left out, as the
    -- engine refuses them: LaunchDarkly never matches them.
    SELECT coalesce(jsonb_agg(v ORDER BY o), '[]') INTO vals
    FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)
    WHERE CASE WHEN op = 'in' THEN jsonb_typeof(v) IN ('string', 'number', 'boolean')
               WHEN op IN ('lt', 'lte', 'gt', 'gte') THEN jsonb_typeof(v) = 'number'
               WHEN op IN ('before', 'after') THEN jsonb_typeof(v) IN ('string', 'number')
               ELSE jsonb_typeof(v) = 'string' END
      AND (op NOT IN ('matches', 'before', 'after') AND op !~ '^semver_'
           OR opsflags_internal.ld_value_ok(op, v));
    RETURN jsonb_strip_nulls(jsonb_build_object('attribute', c ->> 'attribute', 'op', op, 'values', vals,
                                                'negate', coalesce((c ->> 'negate')::boolean, false),
                                                'semantics', 'launchdarkly', 'context_kind', c -> 'contextKind'));
END
$$;

-- What a variation-or-rollout serves, as a serve object.
CREATE FUNCTION opsflags_internal.ld_serve(vr jsonb, vars jsonb, what text, pos text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i  integer;
    ro jsonb := vr -> 'rollout';
BEGIN
    IF jsonb_typeof(ro) = 'object' THEN
        IF jsonb_typeof(ro -> 'variations') IS DISTINCT FROM 'array' OR jsonb_array_length(ro -> 'variations') = 0
           OR jsonb_path_exists(ro, '$.variations[*] ? (!(@.variation.type() == "number") || !(@.weight.type() == "number"))')
           OR coalesce(jsonb_typeof(ro -> 'bucketBy'), 'string') <> 'string'
           OR coalesce(jsonb_typeof(ro -> 'contextKind'), 'string') <> 'string'
           OR coalesce(jsonb_typeof(ro -> 'seed'), 'null') NOT IN ('number', 'null')
           OR coalesce(ro ->> 'kind', 'rollout') NOT IN ('rollout', 'experiment') THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': a rollout is {"variations": [{"variation", "weight"}], "bucketBy", "contextKind", "seed", "kind"}.');
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(ro -> 'variations') e
                   WHERE NOT opsflags_internal.is_whole_number(e -> 'variation', 0, jsonb_array_length(vars) - 1)) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': a rollout names a variation the flag does not have.');
        END IF;
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'split', (SELECT jsonb_agg(jsonb_build_object('variation', (e ->> 'variation')::integer, 'weight', e -> 'weight')
                                       || CASE WHEN (e ->> 'untracked')::boolean THEN '{"untracked": true}'::jsonb ELSE '{}' END
                                       ORDER BY o)
                      FROM jsonb_array_elements(ro -> 'variations') WITH ORDINALITY a(e, o)),
            'bucket_by', ro -> 'bucketBy', 'context_kind', ro -> 'contextKind', 'seed', nullif(ro -> 'seed', 'null'),
            'kind', CASE WHEN ro ->> 'kind' = 'experiment' THEN 'experiment' END));
    END IF;
    IF NOT opsflags_internal.is_whole_number(vr -> 'variation', 0, jsonb_array_length(vars) - 1) THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': "variation" is not the index of one of the flag''s variations.');
    END IF;
    RETURN jsonb_build_object('variation', (vr ->> 'variation')::integer);
END
$$;

-- Checks a string array member (null or absent is []).
CREATE FUNCTION opsflags_internal.ld_strings(x jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN x IS NULL OR x = 'null' OR opsflags.is_string_array(x);

-------------------------------------------------------------------------------
-- import_launchdarkly_data
-------------------------------------------------------------------------------

-- Loads LaunchDarkly's server-side data into an environment.  Everything
-- is mapped (and so checked) before anything is written; a flag, config,
-- segment or prerequisite is written only where it differs, so a second
-- import changes nothing.
CREATE FUNCTION opsflags.import_launchdarkly_data(environment text, data jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env       text := opsflags.resolve_environment(environment);
    flags     jsonb;
    segs      jsonb;
    key       text;
    x         jsonb;
    r         jsonb;
    t         jsonb;
    rn        bigint;
    cn        bigint;
    what      text;
    vars      jsonb;
    off_i     integer;
    on_i      integer;
    rules     jsonb;
    clauses   jsonb;
    incl      jsonb;
    excl      jsonb;
    rid       text;
    mapped    jsonb := '{}';   -- key -> {"type", "vars", "on", "on_i", "off_i", "rules", "fall", "prereqs"}
    smapped   jsonb := '{}';   -- native segment key -> {"name", "user_ids", "rules"}
    f         opsflags.feature_flags;
    c         opsflags.feature_flag_configs;
    m         jsonb;
    chg       boolean;
    created   text[] := '{}';
    changed   text[] := '{}';
    same      text[] := '{}';
    s_created text[] := '{}';
    s_changed text[] := '{}';
    s_same    text[] := '{}';
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> 'object' OR jsonb_typeof(data -> 'flags') IS DISTINCT FROM 'object'
       OR coalesce(jsonb_typeof(data -> 'segments'), 'object') <> 'object' THEN
        RAISE EXCEPTION 'LaunchDarkly data is a JSON object with "flags" and "segments"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected {"flags": {"key": {...}}, "segments": {"key": {...}}}, as /sdk/latest-all returns it.';
    END IF;
    flags := data -> 'flags';
    segs := coalesce(data -> 'segments', '{}');

    -- Segments.
    FOR key, x IN SELECT k, v FROM jsonb_each(segs) s(k, v) ORDER BY k LOOP
        what := format('segment "%s"', key);
        IF jsonb_typeof(x) <> 'object' OR NOT opsflags.is_valid_flag_key(key)
           OR NOT opsflags_internal.ld_strings(x -> 'included') OR NOT opsflags_internal.ld_strings(x -> 'excluded')
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'includedContexts', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'excludedContexts', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A segment is {"included": [keys], "excluded": [keys], "includedContexts", "excludedContexts", "rules": [...]}, its key letters, digits and . _ -.');
        END IF;
        IF coalesce((x ->> 'unbounded')::boolean, false) THEN
            PERFORM opsflags_internal.ld_error(what, 'Big (unbounded) segments are not supported.', '0A000');
        END IF;
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t IN SELECT v FROM jsonb_array_elements(coalesce(nullif(x -> 'includedContexts', 'null'), '[]')
                                                    || coalesce(nullif(x -> 'excludedContexts', 'null'), '[]')) v LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'contextKind') IS DISTINCT FROM 'string' OR t ->> 'contextKind' = ''
               OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, 'includedContexts and excludedContexts are [{"contextKind", "values": [keys]}].');
            END IF;
        END LOOP;
        IF jsonb_path_exists(x, 'lax $.excludedContexts[*] ? (@.contextKind != "user" && @.values.size() > 0)') THEN
            PERFORM opsflags_internal.ld_error(what, 'excludedContexts of a kind other than "user" are not supported.', '0A000');
        END IF;
        excl := coalesce(nullif(x -> 'excluded', 'null'), '[]')
                || coalesce(jsonb_path_query_array(x, 'lax $.excludedContexts[*].values[*]'), '[]');
        -- Included keys: one rule for the user kind, one per includedContexts entry.
        rules := '[]';
        FOR t, rn IN
            SELECT e, o FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('contextKind', 'user', 'values', coalesce(nullif(x -> 'included', 'null'), '[]')))
                                                  || coalesce(nullif(x -> 'includedContexts', 'null'), '[]')) WITH ORDINALITY a(e, o)
        LOOP
            CONTINUE WHEN jsonb_array_length(coalesce(nullif(t -> 'values', 'null'), '[]')) = 0;
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-included-' || rn, 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                   'semantics', 'launchdarkly', 'context_kind', t -> 'contextKind'))));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"clauses": [...]}.', rn));
            END IF;
            IF coalesce(jsonb_typeof(r -> 'weight'), 'null') NOT IN ('number', 'null')
               OR (jsonb_typeof(r -> 'weight') = 'number' AND NOT opsflags_internal.is_whole_number(r -> 'weight', 0, 100000))
               OR coalesce(jsonb_typeof(r -> 'bucketBy'), 'string') <> 'string'
               OR coalesce(jsonb_typeof(r -> 'rolloutContextKind'), 'string') <> 'string' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: "weight" is a whole number from 0 to 100000, "bucketBy" and "rolloutContextKind" strings.', rn));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, true) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            t := CASE WHEN jsonb_typeof(r -> 'weight') = 'number' THEN jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
                     'weight', r -> 'weight', 'bucket_by', r -> 'bucketBy', 'context_kind', r -> 'rolloutContextKind'))) ELSE '{}' END;
            -- Excluded (user) keys are out whatever a rule says: the rule
            -- holds for a user not excluded, or for a context without a user.
            IF jsonb_array_length(excl) > 0 THEN
                rules := rules
                    || jsonb_build_array(jsonb_build_object('id', 'ld-rule-' || rn, 'clauses', clauses || jsonb_build_array(
                           jsonb_build_object('attribute', 'key', 'op', 'in', 'values', excl, 'negate', true,
                                              'semantics', 'launchdarkly', 'context_kind', 'user'))) || t)
                    || jsonb_build_array(jsonb_build_object('id', 'ld-rule-' || rn || '-nouser', 'clauses', clauses || jsonb_build_array(
                           jsonb_build_object('attribute', 'kind', 'op', 'in', 'values', '["user"]'::jsonb, 'negate', true,
                                              'semantics', 'launchdarkly'))) || t);
            ELSE
                rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-rule-' || rn, 'clauses', clauses) || t);
            END IF;
        END LOOP;
        -- The segment keeps its key: a rule's weight buckets with it.
        IF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key AND u.bucketing <> 'launchdarkly') THEN
            RAISE EXCEPTION 'segment "%" of the LaunchDarkly data exists and is not a LaunchDarkly segment', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Rename or drop that segment, or leave this one out of the data.';
        END IF;
        smapped := smapped || jsonb_build_object(key, jsonb_build_object(
            'name', key, 'salt', x -> 'salt', 'rules', rules));
    END LOOP;

    -- Flags.
    FOR key, x IN SELECT k, v FROM jsonb_each(flags) s(k, v) ORDER BY k LOOP
        what := format('flag "%s"', key);
        IF NOT opsflags.is_valid_flag_key(key) OR jsonb_typeof(x) <> 'object'
           OR jsonb_typeof(x -> 'variations') IS DISTINCT FROM 'array' OR jsonb_array_length(x -> 'variations') = 0
           OR jsonb_typeof(x -> 'on') IS DISTINCT FROM 'boolean'
           OR jsonb_typeof(x -> 'fallthrough') IS DISTINCT FROM 'object'
           OR coalesce(jsonb_typeof(nullif(x -> 'targets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'contextTargets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'prerequisites', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A flag is {"on": boolean, "variations": [...], "offVariation", "fallthrough": {...}, "targets", "contextTargets", "rules", "prerequisites"}, its key a valid flag key.');
        END IF;
        vars := x -> 'variations';
        IF jsonb_array_length(vars) > opsflags.max_variations() THEN
            PERFORM opsflags_internal.ld_error(what, format('At most %s variations.', opsflags.max_variations()));
        END IF;
        IF coalesce(jsonb_typeof(x -> 'offVariation'), 'null') <> 'null'
           AND NOT opsflags_internal.is_whole_number(x -> 'offVariation', 0, jsonb_array_length(vars) - 1) THEN
            PERFORM opsflags_internal.ld_error(what, '"offVariation" is not the index of one of the flag''s variations.');
        END IF;
        off_i := (x ->> 'offVariation')::integer;  -- null: off serves no value
        SELECT coalesce(min(o) - 1, 0) INTO on_i FROM jsonb_array_elements(vars) WITH ORDINALITY a(v, o) WHERE v <> 'false';
        rules := '[]';
        -- Targets: contextTargets in their order (a "user" one stands for
        -- the first targets entry of its variation, whatever its own
        -- values), else targets.
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR coalesce(jsonb_typeof(t -> 'contextKind'), 'string') <> 'string' OR t ->> 'contextKind' = '' THEN
                PERFORM opsflags_internal.ld_error(what, format('Context target %s: a target is {"contextKind", "values": [keys], "variation": i}.', rn));
            END IF;
        END LOOP;
        FOR t, rn IN
            SELECT CASE WHEN coalesce(ct.v ->> 'contextKind', 'user') = 'user' THEN coalesce(tt.v, '{}') ELSE ct.v END, ct.o
            FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY ct(v, o)
            LEFT JOIN LATERAL (SELECT t2.v FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t2(v, o2)
                               WHERE t2.v -> 'variation' = ct.v -> 'variation' ORDER BY t2.o2 LIMIT 1) tt ON true
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) > 0
            UNION ALL
            SELECT t3.v, t3.o FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t3(v, o)
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) = 0
            ORDER BY 2
        LOOP
            IF jsonb_typeof(t) <> 'object' OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, format('Target %s: a target is {"values": [keys], "variation": i}.', rn));
            END IF;
            CONTINUE WHEN jsonb_array_length(coalesce(nullif(t -> 'values', 'null'), '[]')) = 0;
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', 'ld-target-' || rn,
                'clauses', jsonb_build_array(jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                                                'semantics', 'launchdarkly', 'context_kind', coalesce(t ->> 'contextKind', 'user'))),
                'serve', opsflags_internal.ld_serve(t, vars, what, format('Target %s', rn))));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"id", "clauses": [...], "variation" or "rollout"}.', rn));
            END IF;
            rid := CASE WHEN r ->> 'id' ~ '^[A-Za-z0-9._:-]{1,100}$' AND r ->> 'id' !~ '^ld-(target|rule)-' THEN r ->> 'id'
                        ELSE 'ld-rule-' || rn END;
            IF jsonb_path_exists(rules, '$[*] ? (@.id == $id)', jsonb_build_object('id', rid)) THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: id "%s" appears twice.', rn, rid));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, false) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', rid, 'clauses', clauses, 'serve', opsflags_internal.ld_serve(r, vars, what, format('Rule %s', rn))));
        END LOOP;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'prerequisites', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'key') IS DISTINCT FROM 'string' OR t ->> 'key' = key
               OR NOT opsflags_internal.is_whole_number(t -> 'variation', 0, 2147483647) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: a prerequisite is {"key": another flag, "variation": i}.', rn));
            END IF;
            IF flags ? (t ->> 'key') THEN
                IF NOT opsflags_internal.is_whole_number(t -> 'variation', 0, jsonb_array_length(flags -> (t ->> 'key') -> 'variations') - 1) THEN
                    PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" has no variation %s.', rn, t ->> 'key', t -> 'variation'));
                END IF;
            ELSIF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags p WHERE p.flag_key = t ->> 'key' AND NOT p.archived) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" is neither in the data nor in the database.', rn, t ->> 'key'));
            END IF;
        END LOOP;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF FOUND AND f.archived THEN
            RAISE EXCEPTION 'feature flag "%" of the LaunchDarkly data is archived', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the data.';
        END IF;
        mapped := mapped || jsonb_build_object(key, jsonb_build_object(
            'type', CASE WHEN vars = '[true, false]' THEN 'boolean'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "string")') THEN 'string'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "number")') THEN 'number'
                         ELSE 'json' END,
            'vars', vars, 'salt', x -> 'salt', 'on', x -> 'on', 'on_i', on_i, 'off_i', off_i, 'rules', rules,
            'fall', opsflags_internal.ld_serve(x -> 'fallthrough', vars, what, 'Fallthrough'),
            'prereqs', coalesce(nullif(x -> 'prerequisites', 'null'), '[]')));
    END LOOP;

    -- Write segments, then flags and configs, then prerequisites.
    FOR key, m IN SELECT k, v FROM jsonb_each(smapped) s(k, v) ORDER BY k LOOP
        IF NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key) THEN
            INSERT INTO opsflags.user_segments (segment_key, name, bucketing, salt, rules)
            VALUES (key, m ->> 'name', 'launchdarkly', m ->> 'salt', m -> 'rules');
            s_created := s_created || key;
        ELSIF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key
                      AND (u.name, u.user_ids, u.roles, u.bucketing, u.salt, u.rules)
                          IS NOT DISTINCT FROM (m ->> 'name', '[]'::jsonb, '[]'::jsonb, 'launchdarkly', m ->> 'salt', m -> 'rules')) THEN
            s_same := s_same || key;
        ELSE
            -- The bucketing first: the rules are checked against it.
            UPDATE opsflags.user_segments u
            SET name = m ->> 'name', user_ids = '[]', roles = '[]', bucketing = 'launchdarkly', salt = m ->> 'salt',
                rules = m -> 'rules', updated_at = now()
            WHERE u.segment_key = key;
            s_changed := s_changed || key;
        END IF;
    END LOOP;
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        chg := false;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF f.id IS NULL THEN
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, bucketing, salt)
            VALUES (key, key, m ->> 'type', m -> 'vars', 'launchdarkly', m ->> 'salt')
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, en2.name, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer
            FROM opsflags.environments en2 WHERE en2.name <> env;
            created := created || key;
        ELSIF (f.flag_type, f.variations, f.variation_names, f.bucketing, f.salt)
              IS DISTINCT FROM (m ->> 'type', m -> 'vars', NULL::jsonb, 'launchdarkly', m ->> 'salt') THEN
            UPDATE opsflags.feature_flags ff SET flag_type = m ->> 'type', variations = m -> 'vars', variation_names = NULL,
                                                 bucketing = 'launchdarkly', salt = m ->> 'salt'
            WHERE ff.id = f.id RETURNING * INTO f;
            chg := true;
        END IF;
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation,
                                                       rules, serve, fallthrough)
            VALUES (f.id, env, (m ->> 'on')::boolean, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer,
                    m -> 'rules', NULL, m -> 'fall');
            chg := true;
        ELSIF (c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage, c.enable_at, c.disable_at,
               c.on_variation, c.off_variation, c.variation_weights, c.segments, c.rules, c.serve, c.fallthrough)
              IS DISTINCT FROM
              ((m ->> 'on')::boolean, '[]'::jsonb, '[]'::jsonb, 0, NULL::timestamptz, NULL::timestamptz,
               (m ->> 'on_i')::integer, (m ->> 'off_i')::integer, NULL::jsonb, '[]'::jsonb, m -> 'rules', NULL::jsonb, m -> 'fall') THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = (m ->> 'on')::boolean, enabled_for_users = '[]', enabled_for_roles = '[]', enabled_percentage = 0,
                enable_at = NULL, disable_at = NULL, on_variation = (m ->> 'on_i')::integer,
                off_variation = (m ->> 'off_i')::integer, variation_weights = NULL, segments = '[]',
                rules = m -> 'rules', serve = NULL, fallthrough = m -> 'fall'
            WHERE fc.flag_id = f.id AND fc.environment = env;
            chg := true;
        END IF;
        IF NOT (key = ANY (created)) THEN
            IF chg THEN
                changed := changed || key;
            ELSE
                same := same || key;
            END IF;
        END IF;
    END LOOP;
    -- Prerequisites: the prerequisite is switched on (enabled NULL) and
    -- serves the variation, whatever that variation is (LaunchDarkly's rule).
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        x := (SELECT coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'variation', (q ->> 'variation')::integer)), '[]')
              FROM jsonb_array_elements(m -> 'prereqs') q JOIN opsflags.feature_flags p ON p.flag_key = q ->> 'key');
        IF EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE (w ->> 'id')::uuid = p.prerequisite_id
                                   AND p.variation = (w ->> 'variation')::integer AND p.enabled IS NULL AND p.variants IS NULL))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE NOT EXISTS
                      (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id AND p.prerequisite_id = (w ->> 'id')::uuid)) THEN
            DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
            INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled, variation)
            SELECT DISTINCT ON ((w ->> 'id')::uuid) f.id, (w ->> 'id')::uuid, NULL, (w ->> 'variation')::integer
            FROM jsonb_array_elements(x) w;
            IF key = ANY (same) THEN
                same := array_remove(same, key);
                changed := changed || key;
            END IF;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created), 'changed', to_jsonb(changed),
                              'unchanged', to_jsonb(same),
                              'segments', jsonb_build_object('created', to_jsonb(s_created), 'changed', to_jsonb(s_changed),
                                                             'unchanged', to_jsonb(s_same)));
END
$$;
COMMENT ON FUNCTION opsflags.import_launchdarkly_data(text, jsonb) IS
  'Load LaunchDarkly server-side data {"flags", "segments"} into an environment as flags, rules, segments and prerequisites; idempotent';

-------------------------------------------------------------------------------
-- launchdarkly_data: the export
-------------------------------------------------------------------------------

-- A rule's clause back in LaunchDarkly's form; NULL when it has none (a
-- clause without LaunchDarkly's semantics).
CREATE FUNCTION opsflags_internal.ld_clause_out(c jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN c ->> 'op' = 'segment_match' THEN
            jsonb_build_object('attribute', '', 'op', 'segmentMatch', 'negate', coalesce((c ->> 'negate')::boolean, false),
                'values', c -> 'values')
        WHEN c ->> 'semantics' = 'launchdarkly' AND op.k IS NOT NULL THEN
            jsonb_strip_nulls(jsonb_build_object('attribute', c ->> 'attribute', 'op', op.k, 'values', c -> 'values',
                                                 'negate', coalesce((c ->> 'negate')::boolean, false),
                                                 'contextKind', c -> 'context_kind'))
    END
    FROM (SELECT (SELECT e.key FROM jsonb_each_text(opsflags_internal.ld_operators()) e WHERE e.value = c ->> 'op') AS k) op
$$;

-- A serve back as {"variation"} or {"rollout"}; NULL when it has none.
CREATE FUNCTION opsflags_internal.ld_serve_out(s jsonb, off_variation integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN s ? 'off' AND off_variation IS NOT NULL THEN jsonb_build_object('variation', off_variation)
        WHEN s ? 'variation' THEN jsonb_build_object('variation', s -> 'variation')
        WHEN s ? 'split' THEN jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
            'variations', (SELECT jsonb_agg(jsonb_build_object('variation', e -> 'variation', 'weight', e -> 'weight')
                                            || CASE WHEN (e ->> 'untracked')::boolean THEN '{"untracked": true}'::jsonb ELSE '{}' END
                                            ORDER BY o)
                           FROM jsonb_array_elements(s -> 'split') WITH ORDINALITY a(e, o)),
            'bucketBy', s -> 'bucket_by', 'contextKind', s -> 'context_kind', 'seed', s -> 'seed', 'kind', s -> 'kind')))
    END
$$;

-- The environment's flags and segments as LaunchDarkly server-side data:
-- the flags of LaunchDarkly bucketing whose config has no part LaunchDarkly
-- lacks (user or role lists, percentage, schedule, weights, a clause
-- without its semantics), and the segments the import made.
CREATE FUNCTION opsflags.launchdarkly_data(environment text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env    text := opsflags.resolve_environment(environment);
    flags  jsonb := '{}';
    segs   jsonb := '{}';
    fl     record;
    r      jsonb;
    lr     jsonb;
    cl     jsonb;
    tgts   jsonb;
    ctgts  jsonb;
    rules  jsonb;
    fall   jsonb;
    ok     boolean;
    s      record;
    incl   jsonb;
    inclc  jsonb;
    excl   jsonb;
BEGIN
    FOR fl IN
        SELECT f.id, f.flag_key, f.variations, f.salt, c.*
        FROM opsflags.feature_flags f
        JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE NOT f.archived AND f.bucketing = 'launchdarkly'
          AND c.enabled_for_users = '[]' AND c.enabled_for_roles = '[]' AND c.enabled_percentage = 0
          AND c.enable_at IS NULL AND c.disable_at IS NULL AND c.variation_weights IS NULL
          AND c.segments = '[]' AND c.serve IS NULL
          AND NOT EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                          AND (p.enabled IS NOT NULL OR p.variation IS NULL OR p.variants IS NOT NULL))
        ORDER BY f.flag_key
    LOOP
        ok := true;
        tgts := '[]';
        ctgts := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(fl.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            lr := opsflags_internal.ld_serve_out(r -> 'serve', fl.off_variation);
            IF lr IS NULL OR r ? 'rollout' OR jsonb_array_length(coalesce(r -> 'segments', '[]')) > 0 THEN
                ok := false;
                EXIT;
            END IF;
            -- Targets: user ones in targets, every one in contextTargets.
            IF r ->> 'id' ~ '^ld-target-' THEN
                IF r -> 'clauses' -> 0 ->> 'context_kind' = 'user' THEN
                    tgts := tgts || jsonb_build_array(lr || jsonb_build_object('values', r -> 'clauses' -> 0 -> 'values'));
                    ctgts := ctgts || jsonb_build_array(lr || '{"contextKind": "user", "values": []}');
                ELSE
                    ctgts := ctgts || jsonb_build_array(lr || jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                                 'values', r -> 'clauses' -> 0 -> 'values'));
                END IF;
                CONTINUE;
            END IF;
            lr := lr || jsonb_build_object('id', r ->> 'id', 'clauses', '[]'::jsonb, 'trackEvents', false);
            FOR cl IN SELECT opsflags_internal.ld_clause_out(v) FROM jsonb_array_elements(coalesce(r -> 'clauses', '[]')) WITH ORDINALITY a(v, o) ORDER BY o LOOP
                IF cl IS NULL THEN
                    ok := false;
                END IF;
                lr := jsonb_set(lr, '{clauses}', (lr -> 'clauses') || jsonb_build_array(cl));
            END LOOP;
            rules := rules || jsonb_build_array(lr);
        END LOOP;
        IF jsonb_array_length(ctgts) = jsonb_array_length(tgts) THEN
            ctgts := '[]';
        END IF;
        fall := CASE WHEN fl.fallthrough IS NULL THEN jsonb_build_object('variation', fl.on_variation)
                     ELSE opsflags_internal.ld_serve_out(fl.fallthrough, fl.off_variation) END;
        CONTINUE WHEN NOT ok OR fall IS NULL;
        flags := flags || jsonb_build_object(fl.flag_key, jsonb_strip_nulls(jsonb_build_object(
            'key', fl.flag_key, 'version', fl.version, 'on', fl.is_enabled, 'variations', fl.variations,
            'offVariation', fl.off_variation, 'fallthrough', fall, 'targets', tgts, 'contextTargets', ctgts,
            'rules', rules, 'salt', fl.salt, 'trackEvents', false, 'trackEventsFallthrough', false,
            'clientSide', false, 'deleted', false,
            'prerequisites', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', pf.flag_key, 'variation', p.variation) ORDER BY pf.flag_key), '[]')
                              FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                              WHERE p.flag_id = fl.flag_id))));
    END LOOP;
    -- Segments the import made: "ld-included-<n>" rules as included keys,
    -- "ld-rule-<n>" rules (their trailing negated key clause as excluded
    -- keys), not their "-nouser" twins.
    FOR s IN SELECT u.* FROM opsflags.user_segments u
             WHERE u.bucketing = 'launchdarkly' AND u.user_ids = '[]' AND u.roles = '[]'
             ORDER BY u.segment_key LOOP
        incl := '[]';
        inclc := '[]';
        excl := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(s.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            IF r ->> 'id' = 'ld-included-1' THEN
                incl := r -> 'clauses' -> 0 -> 'values';
            ELSIF r ->> 'id' ~ '^ld-included-' THEN
                inclc := inclc || jsonb_build_array(jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                       'values', r -> 'clauses' -> 0 -> 'values'));
            ELSIF r ->> 'id' !~ '-nouser$' THEN
                cl := r -> 'clauses';
                IF s.rules @> jsonb_build_array(jsonb_build_object('id', (r ->> 'id') || '-nouser')) THEN
                    excl := cl -> -1 -> 'values';
                    cl := cl - (-1);
                END IF;
                rules := rules || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                    'id', r ->> 'id',
                    'clauses', (SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause_out(cc) ORDER BY co), '[]')
                                FROM jsonb_array_elements(cl) WITH ORDINALITY b(cc, co)),
                    'weight', r -> 'rollout' -> 'weight', 'bucketBy', r -> 'rollout' -> 'bucket_by',
                    'rolloutContextKind', r -> 'rollout' -> 'context_kind')));
            END IF;
        END LOOP;
        segs := segs || jsonb_build_object(s.segment_key, jsonb_strip_nulls(jsonb_build_object(
            'key', s.segment_key, 'version', 1, 'deleted', false, 'salt', s.salt,
            'included', incl, 'excluded', excl, 'includedContexts', inclc, 'excludedContexts', '[]'::jsonb, 'rules', rules)));
    END LOOP;
    RETURN jsonb_build_object('flags', flags, 'segments', segs);
END
$$;
COMMENT ON FUNCTION opsflags.launchdarkly_data(text) IS
  'The environment''s flags and segments as LaunchDarkly server-side data {"flags", "segments"}, which import_launchdarkly_data reads back unchanged';

-- The import and export, and their helpers, are for opsflags_admin.
REVOKE ALL ON FUNCTION
    opsflags.import_launchdarkly_data(text, jsonb), opsflags.launchdarkly_data(text),
    opsflags_internal.ld_operators(), opsflags_internal.ld_error(text, text, text), opsflags_internal.ld_value_ok(text, jsonb),
    opsflags_internal.ld_clause(jsonb, text, text, jsonb, boolean),
    opsflags_internal.ld_serve(jsonb, jsonb, text, text), opsflags_internal.ld_strings(jsonb),
    opsflags_internal.ld_clause_out(jsonb), opsflags_internal.ld_serve_out(jsonb, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.import_launchdarkly_data(text, jsonb), opsflags.launchdarkly_data(text),
    opsflags_internal.ld_operators(), opsflags_internal.ld_error(text, text, text), opsflags_internal.ld_value_ok(text, jsonb),
    opsflags_internal.ld_clause(jsonb, text, text, jsonb, boolean),
    opsflags_internal.ld_serve(jsonb, jsonb, text, text), opsflags_internal.ld_strings(jsonb),
    opsflags_internal.ld_clause_out(jsonb), opsflags_internal.ld_serve_out(jsonb, integer)
TO opsflags_admin;

-- ==== Segments: exclude rules, nested segments (src/rules.sql, src/launchdarkly_data.sql, src/unleash_export.sql) ====
-- A segment's rules may exclude and name other segments (no cycle); the
-- LaunchDarkly import maps excluded keys and segmentMatch onto them; the
-- Unleash export writes a segment's rules up to the first that excludes.

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

CREATE OR REPLACE FUNCTION opsflags_internal.validate_segment_rules()
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

REVOKE ALL ON FUNCTION opsflags_internal.segment_cycle(text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags_internal.segment_cycle(text, jsonb, jsonb) TO opsflags_admin;

CREATE OR REPLACE FUNCTION opsflags_internal.ld_clause(c jsonb, what text, pos text, segment_keys jsonb, in_segment boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op   text;
    vals jsonb;
BEGIN
    IF jsonb_typeof(c) IS DISTINCT FROM 'object' OR jsonb_typeof(c -> 'op') IS DISTINCT FROM 'string'
       OR jsonb_typeof(c -> 'values') IS DISTINCT FROM 'array'
       OR coalesce(jsonb_typeof(c -> 'negate'), 'boolean') <> 'boolean' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause is {"attribute", "op", "values": [...], "negate"}.');
    END IF;
    op := opsflags_internal.ld_operators() ->> (c ->> 'op');
    IF op IS NULL THEN
        PERFORM opsflags_internal.ld_error(what, format('%s: unknown operator "%s".', pos, c ->> 'op'));
    END IF;
    IF coalesce(jsonb_typeof(c -> 'contextKind'), 'string') <> 'string' OR c ->> 'contextKind' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': "contextKind" is a non-empty string.');
    END IF;
    vals := c -> 'values';
    IF op = 'segment_match' THEN
        -- A segment's rule may name a segment of the database too.
        IF in_segment AND EXISTS (SELECT 1 FROM jsonb_array_elements(vals) v WHERE jsonb_typeof(v) <> 'string'
                                  OR NOT (segment_keys ? (v #>> '{}')
                                          OR EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = v #>> '{}'))) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch names a segment that is neither in the data nor in the database.', '42704');
        END IF;
        IF NOT in_segment AND EXISTS (SELECT 1 FROM jsonb_array_elements(vals) v WHERE jsonb_typeof(v) <> 'string' OR NOT segment_keys ? (v #>> '{}')) THEN
            PERFORM opsflags_internal.ld_error(what, pos || ': segmentMatch names a segment that is not in the data.');
        END IF;
        RETURN jsonb_build_object('op', op, 'values', vals, 'negate', coalesce((c ->> 'negate')::boolean, false),
                                  'semantics', 'launchdarkly');
    END IF;
    IF jsonb_typeof(c -> 'attribute') IS DISTINCT FROM 'string' OR c ->> 'attribute' = '' THEN
        PERFORM opsflags_internal.ld_error(what, pos || ': a clause names an attribute.');
    END IF;
    -- Members of values the operator never holds for are left out, as the
    -- engine refuses them: LaunchDarkly never matches them.
    SELECT coalesce(jsonb_agg(v ORDER BY o), '[]') INTO vals
    FROM jsonb_array_elements(vals) WITH ORDINALITY a(v, o)
    WHERE CASE WHEN op = 'in' THEN jsonb_typeof(v) IN ('string', 'number', 'boolean')
               WHEN op IN ('lt', 'lte', 'gt', 'gte') THEN jsonb_typeof(v) = 'number'
               WHEN op IN ('before', 'after') THEN jsonb_typeof(v) IN ('string', 'number')
               ELSE jsonb_typeof(v) = 'string' END
      AND (op NOT IN ('matches', 'before', 'after') AND op !~ '^semver_'
           OR opsflags_internal.ld_value_ok(op, v));
    RETURN jsonb_strip_nulls(jsonb_build_object('attribute', c ->> 'attribute', 'op', op, 'values', vals,
                                                'negate', coalesce((c ->> 'negate')::boolean, false),
                                                'semantics', 'launchdarkly', 'context_kind', c -> 'contextKind'));
END
$$;

CREATE OR REPLACE FUNCTION opsflags.import_launchdarkly_data(environment text, data jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env       text := opsflags.resolve_environment(environment);
    flags     jsonb;
    segs      jsonb;
    key       text;
    x         jsonb;
    r         jsonb;
    t         jsonb;
    rn        bigint;
    cn        bigint;
    what      text;
    vars      jsonb;
    off_i     integer;
    on_i      integer;
    rules     jsonb;
    clauses   jsonb;
    incl      jsonb;
    rid       text;
    todo      text[];
    batch     text[];
    sorder    text[] := '{}';
    mapped    jsonb := '{}';   -- key -> {"type", "vars", "on", "on_i", "off_i", "rules", "fall", "prereqs"}
    smapped   jsonb := '{}';   -- native segment key -> {"name", "user_ids", "rules"}
    f         opsflags.feature_flags;
    c         opsflags.feature_flag_configs;
    m         jsonb;
    chg       boolean;
    created   text[] := '{}';
    changed   text[] := '{}';
    same      text[] := '{}';
    s_created text[] := '{}';
    s_changed text[] := '{}';
    s_same    text[] := '{}';
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> 'object' OR jsonb_typeof(data -> 'flags') IS DISTINCT FROM 'object'
       OR coalesce(jsonb_typeof(data -> 'segments'), 'object') <> 'object' THEN
        RAISE EXCEPTION 'LaunchDarkly data is a JSON object with "flags" and "segments"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Expected {"flags": {"key": {...}}, "segments": {"key": {...}}}, as /sdk/latest-all returns it.';
    END IF;
    flags := data -> 'flags';
    segs := coalesce(data -> 'segments', '{}');

    -- Segments.
    FOR key, x IN SELECT k, v FROM jsonb_each(segs) s(k, v) ORDER BY k LOOP
        what := format('segment "%s"', key);
        IF jsonb_typeof(x) <> 'object' OR NOT opsflags.is_valid_flag_key(key)
           OR NOT opsflags_internal.ld_strings(x -> 'included') OR NOT opsflags_internal.ld_strings(x -> 'excluded')
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'includedContexts', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'excludedContexts', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A segment is {"included": [keys], "excluded": [keys], "includedContexts", "excludedContexts", "rules": [...]}, its key letters, digits and . _ -.');
        END IF;
        IF coalesce((x ->> 'unbounded')::boolean, false) THEN
            PERFORM opsflags_internal.ld_error(what, 'Big (unbounded) segments are not supported.', '0A000');
        END IF;
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t IN SELECT v FROM jsonb_array_elements(coalesce(nullif(x -> 'includedContexts', 'null'), '[]')
                                                    || coalesce(nullif(x -> 'excludedContexts', 'null'), '[]')) v LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'contextKind') IS DISTINCT FROM 'string' OR t ->> 'contextKind' = ''
               OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, 'includedContexts and excludedContexts are [{"contextKind", "values": [keys]}].');
            END IF;
        END LOOP;
        -- Included keys: one rule for the user kind ("ld-included-1"), one per
        -- includedContexts entry that has keys (numbered from 2).
        rules := '[]';
        FOR t, rn IN
            SELECT e, CASE WHEN o = 1 THEN 1 ELSE 1 + row_number() OVER (PARTITION BY o = 1 ORDER BY o) END AS n
            FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('contextKind', 'user', 'values', coalesce(nullif(x -> 'included', 'null'), '[]')))
                                      || coalesce(nullif(x -> 'includedContexts', 'null'), '[]')) WITH ORDINALITY a(e, o)
            WHERE jsonb_array_length(coalesce(nullif(e -> 'values', 'null'), '[]')) > 0
            ORDER BY n
        LOOP
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-included-' || rn, 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                   'semantics', 'launchdarkly', 'context_kind', t -> 'contextKind'))));
        END LOOP;
        -- Excluded keys, likewise: rules that put the context out.
        FOR t, rn IN
            SELECT e, CASE WHEN o = 1 THEN 1 ELSE 1 + row_number() OVER (PARTITION BY o = 1 ORDER BY o) END AS n
            FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('contextKind', 'user', 'values', coalesce(nullif(x -> 'excluded', 'null'), '[]')))
                                      || coalesce(nullif(x -> 'excludedContexts', 'null'), '[]')) WITH ORDINALITY a(e, o)
            WHERE jsonb_array_length(coalesce(nullif(e -> 'values', 'null'), '[]')) > 0
            ORDER BY n
        LOOP
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-excluded-' || rn, 'clauses', jsonb_build_array(
                jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                   'semantics', 'launchdarkly', 'context_kind', t -> 'contextKind')), 'exclude', true));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"clauses": [...]}.', rn));
            END IF;
            IF coalesce(jsonb_typeof(r -> 'weight'), 'null') NOT IN ('number', 'null')
               OR (jsonb_typeof(r -> 'weight') = 'number' AND NOT opsflags_internal.is_whole_number(r -> 'weight', 0, 100000))
               OR coalesce(jsonb_typeof(r -> 'bucketBy'), 'string') <> 'string'
               OR coalesce(jsonb_typeof(r -> 'rolloutContextKind'), 'string') <> 'string' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: "weight" is a whole number from 0 to 100000, "bucketBy" and "rolloutContextKind" strings.', rn));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, true) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            t := CASE WHEN jsonb_typeof(r -> 'weight') = 'number' THEN jsonb_build_object('rollout', jsonb_strip_nulls(jsonb_build_object(
                     'weight', r -> 'weight', 'bucket_by', r -> 'bucketBy', 'context_kind', r -> 'rolloutContextKind'))) ELSE '{}' END;
            rules := rules || jsonb_build_array(jsonb_build_object('id', 'ld-rule-' || rn, 'clauses', clauses) || t);
        END LOOP;
        -- The segment keeps its key: a rule's weight buckets with it.
        IF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key AND u.bucketing <> 'launchdarkly') THEN
            RAISE EXCEPTION 'segment "%" of the LaunchDarkly data exists and is not a LaunchDarkly segment', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Rename or drop that segment, or leave this one out of the data.';
        END IF;
        smapped := smapped || jsonb_build_object(key, jsonb_build_object(
            'name', key, 'salt', x -> 'salt', 'rules', rules));
    END LOOP;
    -- Nested segments: no cycle (with the database's other segments).
    FOR key, m IN SELECT k, v FROM jsonb_each(smapped) s(k, v) ORDER BY k LOOP
        what := opsflags_internal.segment_cycle(key, m -> 'rules',
                    (SELECT jsonb_object_agg(k, v -> 'rules') FROM jsonb_each(smapped) s(k, v)));
        IF what IS NOT NULL THEN
            PERFORM opsflags_internal.ld_error(format('segment "%s"', key), format('Its rules would form a cycle: %s.', what));
        END IF;
    END LOOP;
    -- The order segments are written in: each after the segments it names.
    todo := ARRAY(SELECT k FROM jsonb_object_keys(smapped) k ORDER BY k);
    WHILE cardinality(todo) > 0 LOOP
        batch := ARRAY(SELECT k FROM unnest(todo) k
                       WHERE NOT EXISTS (SELECT 1 FROM opsflags_internal.rule_segment_keys(smapped -> k -> 'rules') n
                                         WHERE n = ANY (todo))
                       ORDER BY k);
        sorder := sorder || batch;
        todo := ARRAY(SELECT k FROM unnest(todo) k WHERE NOT k = ANY (batch) ORDER BY k);
    END LOOP;

    -- Flags.
    FOR key, x IN SELECT k, v FROM jsonb_each(flags) s(k, v) ORDER BY k LOOP
        what := format('flag "%s"', key);
        IF NOT opsflags.is_valid_flag_key(key) OR jsonb_typeof(x) <> 'object'
           OR jsonb_typeof(x -> 'variations') IS DISTINCT FROM 'array' OR jsonb_array_length(x -> 'variations') = 0
           OR jsonb_typeof(x -> 'on') IS DISTINCT FROM 'boolean'
           OR jsonb_typeof(x -> 'fallthrough') IS DISTINCT FROM 'object'
           OR coalesce(jsonb_typeof(nullif(x -> 'targets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'contextTargets', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'rules', 'null')), 'array') <> 'array'
           OR coalesce(jsonb_typeof(nullif(x -> 'prerequisites', 'null')), 'array') <> 'array' THEN
            PERFORM opsflags_internal.ld_error(what,
                'A flag is {"on": boolean, "variations": [...], "offVariation", "fallthrough": {...}, "targets", "contextTargets", "rules", "prerequisites"}, its key a valid flag key.');
        END IF;
        vars := x -> 'variations';
        IF jsonb_array_length(vars) > opsflags.max_variations() THEN
            PERFORM opsflags_internal.ld_error(what, format('At most %s variations.', opsflags.max_variations()));
        END IF;
        IF coalesce(jsonb_typeof(x -> 'offVariation'), 'null') <> 'null'
           AND NOT opsflags_internal.is_whole_number(x -> 'offVariation', 0, jsonb_array_length(vars) - 1) THEN
            PERFORM opsflags_internal.ld_error(what, '"offVariation" is not the index of one of the flag''s variations.');
        END IF;
        off_i := (x ->> 'offVariation')::integer;  -- null: off serves no value
        SELECT coalesce(min(o) - 1, 0) INTO on_i FROM jsonb_array_elements(vars) WITH ORDINALITY a(v, o) WHERE v <> 'false';
        rules := '[]';
        -- Targets: contextTargets in their order (a "user" one stands for
        -- the first targets entry of its variation, whatever its own
        -- values), else targets.
        IF coalesce(jsonb_typeof(x -> 'salt'), 'null') NOT IN ('string', 'null') THEN
            PERFORM opsflags_internal.ld_error(what, '"salt" is a string.');
        END IF;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR coalesce(jsonb_typeof(t -> 'contextKind'), 'string') <> 'string' OR t ->> 'contextKind' = '' THEN
                PERFORM opsflags_internal.ld_error(what, format('Context target %s: a target is {"contextKind", "values": [keys], "variation": i}.', rn));
            END IF;
        END LOOP;
        FOR t, rn IN
            SELECT CASE WHEN coalesce(ct.v ->> 'contextKind', 'user') = 'user' THEN coalesce(tt.v, '{}') ELSE ct.v END, ct.o
            FROM jsonb_array_elements(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) WITH ORDINALITY ct(v, o)
            LEFT JOIN LATERAL (SELECT t2.v FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t2(v, o2)
                               WHERE t2.v -> 'variation' = ct.v -> 'variation' ORDER BY t2.o2 LIMIT 1) tt ON true
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) > 0
            UNION ALL
            SELECT t3.v, t3.o FROM jsonb_array_elements(coalesce(nullif(x -> 'targets', 'null'), '[]')) WITH ORDINALITY t3(v, o)
            WHERE jsonb_array_length(coalesce(nullif(x -> 'contextTargets', 'null'), '[]')) = 0
            ORDER BY 2
        LOOP
            IF jsonb_typeof(t) <> 'object' OR NOT opsflags_internal.ld_strings(t -> 'values') THEN
                PERFORM opsflags_internal.ld_error(what, format('Target %s: a target is {"values": [keys], "variation": i}.', rn));
            END IF;
            CONTINUE WHEN jsonb_array_length(coalesce(nullif(t -> 'values', 'null'), '[]')) = 0;
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', 'ld-target-' || rn,
                'clauses', jsonb_build_array(jsonb_build_object('attribute', 'key', 'op', 'in', 'values', t -> 'values', 'negate', false,
                                                                'semantics', 'launchdarkly', 'context_kind', coalesce(t ->> 'contextKind', 'user'))),
                'serve', opsflags_internal.ld_serve(t, vars, what, format('Target %s', rn))));
        END LOOP;
        FOR r, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'rules', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'clauses') IS DISTINCT FROM 'array' THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: a rule is {"id", "clauses": [...], "variation" or "rollout"}.', rn));
            END IF;
            rid := CASE WHEN r ->> 'id' ~ '^[A-Za-z0-9._:-]{1,100}$' AND r ->> 'id' !~ '^ld-(target|rule)-' THEN r ->> 'id'
                        ELSE 'ld-rule-' || rn END;
            IF jsonb_path_exists(rules, '$[*] ? (@.id == $id)', jsonb_build_object('id', rid)) THEN
                PERFORM opsflags_internal.ld_error(what, format('Rule %s: id "%s" appears twice.', rn, rid));
            END IF;
            SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause(cl, what, format('Rule %s, clause %s', rn, o), segs, false) ORDER BY o), '[]')
            INTO clauses FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY a(cl, o);
            rules := rules || jsonb_build_array(jsonb_build_object(
                'id', rid, 'clauses', clauses, 'serve', opsflags_internal.ld_serve(r, vars, what, format('Rule %s', rn))));
        END LOOP;
        FOR t, rn IN SELECT * FROM jsonb_array_elements(coalesce(nullif(x -> 'prerequisites', 'null'), '[]')) WITH ORDINALITY LOOP
            IF jsonb_typeof(t) <> 'object' OR jsonb_typeof(t -> 'key') IS DISTINCT FROM 'string' OR t ->> 'key' = key
               OR NOT opsflags_internal.is_whole_number(t -> 'variation', 0, 2147483647) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: a prerequisite is {"key": another flag, "variation": i}.', rn));
            END IF;
            IF flags ? (t ->> 'key') THEN
                IF NOT opsflags_internal.is_whole_number(t -> 'variation', 0, jsonb_array_length(flags -> (t ->> 'key') -> 'variations') - 1) THEN
                    PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" has no variation %s.', rn, t ->> 'key', t -> 'variation'));
                END IF;
            ELSIF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags p WHERE p.flag_key = t ->> 'key' AND NOT p.archived) THEN
                PERFORM opsflags_internal.ld_error(what, format('Prerequisite %s: flag "%s" is neither in the data nor in the database.', rn, t ->> 'key'));
            END IF;
        END LOOP;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF FOUND AND f.archived THEN
            RAISE EXCEPTION 'feature flag "%" of the LaunchDarkly data is archived', key
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Restore it with opsflags.restore_flag(), or leave it out of the data.';
        END IF;
        mapped := mapped || jsonb_build_object(key, jsonb_build_object(
            'type', CASE WHEN vars = '[true, false]' THEN 'boolean'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "string")') THEN 'string'
                         WHEN NOT jsonb_path_exists(vars, '$[*] ? (@.type() != "number")') THEN 'number'
                         ELSE 'json' END,
            'vars', vars, 'salt', x -> 'salt', 'on', x -> 'on', 'on_i', on_i, 'off_i', off_i, 'rules', rules,
            'fall', opsflags_internal.ld_serve(x -> 'fallthrough', vars, what, 'Fallthrough'),
            'prereqs', coalesce(nullif(x -> 'prerequisites', 'null'), '[]')));
    END LOOP;

    -- Write segments, then flags and configs, then prerequisites.
    FOR key, m IN SELECT k, smapped -> k FROM unnest(sorder) WITH ORDINALITY a(k, o) ORDER BY o LOOP
        IF NOT EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key) THEN
            INSERT INTO opsflags.user_segments (segment_key, name, bucketing, salt, rules)
            VALUES (key, m ->> 'name', 'launchdarkly', m ->> 'salt', m -> 'rules');
            s_created := s_created || key;
        ELSIF EXISTS (SELECT 1 FROM opsflags.user_segments u WHERE u.segment_key = key
                      AND (u.name, u.user_ids, u.roles, u.bucketing, u.salt, u.rules)
                          IS NOT DISTINCT FROM (m ->> 'name', '[]'::jsonb, '[]'::jsonb, 'launchdarkly', m ->> 'salt', m -> 'rules')) THEN
            s_same := s_same || key;
        ELSE
            -- The bucketing first: the rules are checked against it.
            UPDATE opsflags.user_segments u
            SET name = m ->> 'name', user_ids = '[]', roles = '[]', bucketing = 'launchdarkly', salt = m ->> 'salt',
                rules = m -> 'rules', updated_at = now()
            WHERE u.segment_key = key;
            s_changed := s_changed || key;
        END IF;
    END LOOP;
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        chg := false;
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        IF f.id IS NULL THEN
            INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations, bucketing, salt)
            VALUES (key, key, m ->> 'type', m -> 'vars', 'launchdarkly', m ->> 'salt')
            RETURNING * INTO f;
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, on_variation, off_variation)
            SELECT f.id, en2.name, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer
            FROM opsflags.environments en2 WHERE en2.name <> env;
            created := created || key;
        ELSIF (f.flag_type, f.variations, f.variation_names, f.bucketing, f.salt)
              IS DISTINCT FROM (m ->> 'type', m -> 'vars', NULL::jsonb, 'launchdarkly', m ->> 'salt') THEN
            UPDATE opsflags.feature_flags ff SET flag_type = m ->> 'type', variations = m -> 'vars', variation_names = NULL,
                                                 bucketing = 'launchdarkly', salt = m ->> 'salt'
            WHERE ff.id = f.id RETURNING * INTO f;
            chg := true;
        END IF;
        SELECT * INTO c FROM opsflags.feature_flag_configs fc WHERE fc.flag_id = f.id AND fc.environment = env;
        IF c.flag_id IS NULL THEN
            INSERT INTO opsflags.feature_flag_configs (flag_id, environment, is_enabled, on_variation, off_variation,
                                                       rules, serve, fallthrough)
            VALUES (f.id, env, (m ->> 'on')::boolean, (m ->> 'on_i')::integer, (m ->> 'off_i')::integer,
                    m -> 'rules', NULL, m -> 'fall');
            chg := true;
        ELSIF (c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage, c.enable_at, c.disable_at,
               c.on_variation, c.off_variation, c.variation_weights, c.segments, c.rules, c.serve, c.fallthrough)
              IS DISTINCT FROM
              ((m ->> 'on')::boolean, '[]'::jsonb, '[]'::jsonb, 0, NULL::timestamptz, NULL::timestamptz,
               (m ->> 'on_i')::integer, (m ->> 'off_i')::integer, NULL::jsonb, '[]'::jsonb, m -> 'rules', NULL::jsonb, m -> 'fall') THEN
            UPDATE opsflags.feature_flag_configs fc
            SET is_enabled = (m ->> 'on')::boolean, enabled_for_users = '[]', enabled_for_roles = '[]', enabled_percentage = 0,
                enable_at = NULL, disable_at = NULL, on_variation = (m ->> 'on_i')::integer,
                off_variation = (m ->> 'off_i')::integer, variation_weights = NULL, segments = '[]',
                rules = m -> 'rules', serve = NULL, fallthrough = m -> 'fall'
            WHERE fc.flag_id = f.id AND fc.environment = env;
            chg := true;
        END IF;
        IF NOT (key = ANY (created)) THEN
            IF chg THEN
                changed := changed || key;
            ELSE
                same := same || key;
            END IF;
        END IF;
    END LOOP;
    -- Prerequisites: the prerequisite is switched on (enabled NULL) and
    -- serves the variation, whatever that variation is (LaunchDarkly's rule).
    FOR key, m IN SELECT k, v FROM jsonb_each(mapped) s(k, v) ORDER BY k LOOP
        SELECT * INTO f FROM opsflags.feature_flags ff WHERE ff.flag_key = key;
        x := (SELECT coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'variation', (q ->> 'variation')::integer)), '[]')
              FROM jsonb_array_elements(m -> 'prereqs') q JOIN opsflags.feature_flags p ON p.flag_key = q ->> 'key');
        IF EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE (w ->> 'id')::uuid = p.prerequisite_id
                                   AND p.variation = (w ->> 'variation')::integer AND p.enabled IS NULL AND p.variants IS NULL))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(x) w WHERE NOT EXISTS
                      (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id AND p.prerequisite_id = (w ->> 'id')::uuid)) THEN
            DELETE FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id;
            INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, enabled, variation)
            SELECT DISTINCT ON ((w ->> 'id')::uuid) f.id, (w ->> 'id')::uuid, NULL, (w ->> 'variation')::integer
            FROM jsonb_array_elements(x) w;
            IF key = ANY (same) THEN
                same := array_remove(same, key);
                changed := changed || key;
            END IF;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('environment', env, 'created', to_jsonb(created), 'changed', to_jsonb(changed),
                              'unchanged', to_jsonb(same),
                              'segments', jsonb_build_object('created', to_jsonb(ARRAY(SELECT unnest(s_created) ORDER BY 1)),
                                                             'changed', to_jsonb(ARRAY(SELECT unnest(s_changed) ORDER BY 1)),
                                                             'unchanged', to_jsonb(ARRAY(SELECT unnest(s_same) ORDER BY 1))));
END
$$;

CREATE OR REPLACE FUNCTION opsflags.launchdarkly_data(environment text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env    text := opsflags.resolve_environment(environment);
    flags  jsonb := '{}';
    segs   jsonb := '{}';
    fl     record;
    r      jsonb;
    lr     jsonb;
    cl     jsonb;
    tgts   jsonb;
    ctgts  jsonb;
    rules  jsonb;
    fall   jsonb;
    ok     boolean;
    s      record;
    incl   jsonb;
    inclc  jsonb;
    excl   jsonb;
    exclc  jsonb;
BEGIN
    FOR fl IN
        SELECT f.id, f.flag_key, f.variations, f.salt, c.*
        FROM opsflags.feature_flags f
        JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE NOT f.archived AND f.bucketing = 'launchdarkly'
          AND c.enabled_for_users = '[]' AND c.enabled_for_roles = '[]' AND c.enabled_percentage = 0
          AND c.enable_at IS NULL AND c.disable_at IS NULL AND c.variation_weights IS NULL
          AND c.segments = '[]' AND c.serve IS NULL
          AND NOT EXISTS (SELECT 1 FROM opsflags.flag_prerequisites p WHERE p.flag_id = f.id
                          AND (p.enabled IS NOT NULL OR p.variation IS NULL OR p.variants IS NOT NULL))
        ORDER BY f.flag_key
    LOOP
        ok := true;
        tgts := '[]';
        ctgts := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(fl.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            lr := opsflags_internal.ld_serve_out(r -> 'serve', fl.off_variation);
            IF lr IS NULL OR r ? 'rollout' OR jsonb_array_length(coalesce(r -> 'segments', '[]')) > 0 THEN
                ok := false;
                EXIT;
            END IF;
            -- Targets: user ones in targets, every one in contextTargets.
            IF r ->> 'id' ~ '^ld-target-' THEN
                IF r -> 'clauses' -> 0 ->> 'context_kind' = 'user' THEN
                    tgts := tgts || jsonb_build_array(lr || jsonb_build_object('values', r -> 'clauses' -> 0 -> 'values'));
                    ctgts := ctgts || jsonb_build_array(lr || '{"contextKind": "user", "values": []}');
                ELSE
                    ctgts := ctgts || jsonb_build_array(lr || jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                                 'values', r -> 'clauses' -> 0 -> 'values'));
                END IF;
                CONTINUE;
            END IF;
            lr := lr || jsonb_build_object('id', r ->> 'id', 'clauses', '[]'::jsonb, 'trackEvents', false);
            FOR cl IN SELECT opsflags_internal.ld_clause_out(v) FROM jsonb_array_elements(coalesce(r -> 'clauses', '[]')) WITH ORDINALITY a(v, o) ORDER BY o LOOP
                IF cl IS NULL THEN
                    ok := false;
                END IF;
                lr := jsonb_set(lr, '{clauses}', (lr -> 'clauses') || jsonb_build_array(cl));
            END LOOP;
            rules := rules || jsonb_build_array(lr);
        END LOOP;
        IF jsonb_array_length(ctgts) = jsonb_array_length(tgts) THEN
            ctgts := '[]';
        END IF;
        fall := CASE WHEN fl.fallthrough IS NULL THEN jsonb_build_object('variation', fl.on_variation)
                     ELSE opsflags_internal.ld_serve_out(fl.fallthrough, fl.off_variation) END;
        CONTINUE WHEN NOT ok OR fall IS NULL;
        flags := flags || jsonb_build_object(fl.flag_key, jsonb_strip_nulls(jsonb_build_object(
            'key', fl.flag_key, 'version', fl.version, 'on', fl.is_enabled, 'variations', fl.variations,
            'offVariation', fl.off_variation, 'fallthrough', fall, 'targets', tgts, 'contextTargets', ctgts,
            'rules', rules, 'salt', fl.salt, 'trackEvents', false, 'trackEventsFallthrough', false,
            'clientSide', false, 'deleted', false,
            'prerequisites', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', pf.flag_key, 'variation', p.variation) ORDER BY pf.flag_key), '[]')
                              FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                              WHERE p.flag_id = fl.flag_id))));
    END LOOP;
    -- Segments the import made: "ld-included-<n>" rules as included keys,
    -- "ld-excluded-<n>" ones as excluded keys, the others as rules.
    FOR s IN SELECT u.* FROM opsflags.user_segments u
             WHERE u.bucketing = 'launchdarkly' AND u.user_ids = '[]' AND u.roles = '[]'
             ORDER BY u.segment_key LOOP
        incl := '[]';
        inclc := '[]';
        excl := '[]';
        exclc := '[]';
        rules := '[]';
        FOR r IN SELECT v FROM jsonb_array_elements(s.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
            IF r ->> 'id' = 'ld-included-1' THEN
                incl := r -> 'clauses' -> 0 -> 'values';
            ELSIF r ->> 'id' ~ '^ld-included-' THEN
                inclc := inclc || jsonb_build_array(jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                       'values', r -> 'clauses' -> 0 -> 'values'));
            ELSIF r ->> 'id' = 'ld-excluded-1' THEN
                excl := r -> 'clauses' -> 0 -> 'values';
            ELSIF r ->> 'id' ~ '^ld-excluded-' THEN
                exclc := exclc || jsonb_build_array(jsonb_build_object('contextKind', r -> 'clauses' -> 0 -> 'context_kind',
                                                                       'values', r -> 'clauses' -> 0 -> 'values'));
            ELSE
                rules := rules || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                    'id', r ->> 'id',
                    'clauses', (SELECT coalesce(jsonb_agg(opsflags_internal.ld_clause_out(cc) ORDER BY co), '[]')
                                FROM jsonb_array_elements(r -> 'clauses') WITH ORDINALITY b(cc, co)),
                    'weight', r -> 'rollout' -> 'weight', 'bucketBy', r -> 'rollout' -> 'bucket_by',
                    'rolloutContextKind', r -> 'rollout' -> 'context_kind')));
            END IF;
        END LOOP;
        segs := segs || jsonb_build_object(s.segment_key, jsonb_strip_nulls(jsonb_build_object(
            'key', s.segment_key, 'version', 1, 'deleted', false, 'salt', s.salt,
            'included', incl, 'excluded', excl, 'includedContexts', inclc, 'excludedContexts', exclc, 'rules', rules)));
    END LOOP;
    RETURN jsonb_build_object('flags', flags, 'segments', segs);
END
$$;

CREATE OR REPLACE FUNCTION opsflags.unleash_features(environment text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(environment);
    f        record;
    grp      text;
    st       jsonb;
    vr       jsonb;
    fvr      jsonb;
    tail     jsonb;
    r        jsonb;
    seg      record;
    features jsonb := '[]';
    segments jsonb := '[]';
BEGIN
    FOR f IN SELECT ff.*, c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage,
                    c.on_variation, c.segments AS target_segments, c.rules, c.serve, c.fallthrough
             FROM opsflags.feature_flags ff
             JOIN opsflags.feature_flag_configs c ON c.flag_id = ff.id AND c.environment = env
             WHERE NOT ff.archived ORDER BY ff.flag_key LOOP
        grp := coalesce(f.rollout_group, f.flag_key);
        st := '[]';
        -- What the flag serves when it is on and nothing more specific
        -- says: as feature variants when bucketed by the flag's key (the
        -- group Unleash gives them), else on each strategy.
        fvr := opsflags_internal.unleash_variants(coalesce(f.serve, jsonb_build_object('variation', f.on_variation)),
                                                   f.variations, f.variation_names, grp);
        IF f.serve IS NULL AND f.variations -> f.on_variation = 'true' THEN
            fvr := NULL;
        END IF;
        IF jsonb_array_length(f.enabled_for_users) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'users', 'name', 'userWithId',
                      'parameters', jsonb_build_object('userIds',
                          (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(f.enabled_for_users) WITH ORDINALITY a(u, o)))));
        END IF;
        IF jsonb_array_length(f.enabled_for_roles) > 0 THEN
            st := st || jsonb_build_array(jsonb_build_object('id', 'roles', 'name', 'default', 'parameters', '{}'::jsonb,
                      'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                          'values', f.enabled_for_roles))));
        END IF;
        FOR seg IN SELECT u.* FROM jsonb_array_elements_text(f.target_segments) WITH ORDINALITY a(k, o)
                   JOIN opsflags.user_segments u ON u.segment_key = a.k ORDER BY a.o LOOP
            IF jsonb_array_length(seg.user_ids) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'userWithId',
                          'parameters', jsonb_build_object('userIds',
                              (SELECT string_agg(u, ',' ORDER BY o) FROM jsonb_array_elements_text(seg.user_ids) WITH ORDINALITY a(u, o)))));
            END IF;
            IF jsonb_array_length(seg.roles) > 0 THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'constraints', jsonb_build_array(jsonb_build_object('contextName', 'role', 'operator', 'IN',
                                                                              'values', seg.roles))));
            END IF;
            IF seg.segment_key ~ '^unleash-segment-[0-9]+$' THEN
                st := st || jsonb_build_array(jsonb_build_object('name', 'default', 'parameters', '{}'::jsonb,
                          'segments', jsonb_build_array(substr(seg.segment_key, 17)::numeric)));
            ELSE
                -- Its rules up to the first that excludes (Unleash's
                -- strategies only include).
                FOR r IN SELECT v FROM jsonb_array_elements(seg.rules) WITH ORDINALITY a(v, o) ORDER BY o LOOP
                    EXIT WHEN coalesce((r ->> 'exclude')::boolean, false);
                    st := st || opsflags_internal.unleash_rule_strategies(r - 'id' - 'exclude', NULL, grp);
                END LOOP;
            END IF;
        END LOOP;
        -- Strategies from the targets above serve what the flag serves.
        IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN
            st := (SELECT coalesce(jsonb_agg(s || jsonb_build_object('variants', fvr -> 'variants',
                                             'parameters', s -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'))
                                             ORDER BY o), '[]')
                   FROM jsonb_array_elements(st) WITH ORDINALITY a(s, o));
        END IF;
        FOR r IN SELECT * FROM jsonb_array_elements(f.rules) LOOP
            CONTINUE WHEN r -> 'serve' ? 'off';
            vr := CASE WHEN r ? 'serve' THEN opsflags_internal.unleash_variants(r -> 'serve', f.variations, f.variation_names, grp)
                       WHEN fvr ->> 'groupId' IS DISTINCT FROM f.flag_key THEN fvr END;
            st := st || opsflags_internal.unleash_rule_strategies(r, vr, grp);
        END LOOP;
        -- Then the percentage rollout, else the fallthrough.
        tail := NULL;
        IF f.enabled_percentage > 0 THEN
            tail := jsonb_build_object('id', 'rollout', 'name', 'flexibleRollout',
                        'parameters', jsonb_build_object('rollout', f.enabled_percentage::text, 'stickiness', 'userId',
                                                         'groupId', grp));
        ELSIF f.fallthrough IS NULL AND jsonb_array_length(st) > 0 THEN
            tail := jsonb_build_object('id', 'fallthrough', 'name', 'default', 'parameters', '{}'::jsonb);
        ELSIF f.fallthrough IS NOT NULL AND NOT f.fallthrough ? 'off' THEN
            vr := opsflags_internal.unleash_variants(f.fallthrough, f.variations, f.variation_names, grp);
            tail := jsonb_strip_nulls(jsonb_build_object('id', 'fallthrough', 'name', 'default',
                        'parameters', CASE WHEN vr IS NULL THEN '{}'::jsonb
                                           ELSE jsonb_build_object('groupId', vr -> 'groupId', 'stickiness', vr -> 'stickiness') END,
                        'variants', vr -> 'variants'));
        ELSIF f.fallthrough ? 'off' AND jsonb_array_length(st) = 0 THEN
            -- Off for everyone: a strategy that never holds.
            tail := jsonb_build_object('id', 'never', 'name', 'default', 'parameters', '{}'::jsonb,
                        'constraints', jsonb_build_array(jsonb_build_object('contextName', 'userId', 'operator', 'IN',
                                                                            'values', '[]'::jsonb, 'inverted', false)));
        END IF;
        IF tail IS NOT NULL THEN
            IF fvr IS NOT NULL AND fvr ->> 'groupId' IS DISTINCT FROM f.flag_key AND NOT tail ? 'variants' THEN
                tail := tail || jsonb_build_object('variants', fvr -> 'variants',
                                                   'parameters', tail -> 'parameters' || jsonb_build_object('groupId', fvr -> 'groupId'));
            END IF;
            st := st || jsonb_build_array(tail);
        END IF;
        features := features || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'name', f.flag_key,
            'description', f.description,
            'type', 'release',
            'project', 'default',
            'enabled', f.is_enabled,
            'stale', false,
            'impressionData', false,
            'strategies', st,
            'variants', CASE WHEN fvr ->> 'groupId' = f.flag_key THEN fvr -> 'variants' ELSE '[]'::jsonb END,
            'dependencies', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                        'feature', pf.flag_key, 'enabled', p.enabled,
                                        'variants', coalesce(p.variants,
                                                             CASE WHEN p.variation IS NOT NULL
                                                                  THEN jsonb_build_array(coalesce(pf.variation_names ->> p.variation, 'disabled')) END)))
                                    ORDER BY pf.flag_key)
                             FROM opsflags.flag_prerequisites p JOIN opsflags.feature_flags pf ON pf.id = p.prerequisite_id
                             WHERE p.flag_id = f.id))));
    END LOOP;
    FOR seg IN SELECT * FROM opsflags.user_segments u WHERE u.segment_key ~ '^unleash-segment-[0-9]+$'
               ORDER BY substr(u.segment_key, 17)::numeric LOOP
        segments := segments || jsonb_build_array(jsonb_build_object(
            'id', substr(seg.segment_key, 17)::numeric, 'name', seg.name,
            'constraints', coalesce((SELECT jsonb_agg(x ORDER BY o)
                                     FROM jsonb_array_elements(seg.rules -> 0 -> 'clauses') WITH ORDINALITY a(cl, o),
                                          jsonb_array_elements(opsflags_internal.unleash_constraints(cl) -> 0) x), '[]')));
    END LOOP;
    RETURN jsonb_build_object('version', 2, 'features', features, 'segments', segments);
END
$$;

-------------------------------------------------------------------------------
-- API keys of the HTTP server (src/api_keys.sql): the table api_keys, the
-- view api_keys_view, create_api_key and revoke_api_key, and what the HTTP
-- server's database worker calls (api_key_authorize, api_key_touch).  Keys,
-- secrets and hashes are never logged, audited, notified or put in errors.
-------------------------------------------------------------------------------

CREATE TABLE opsflags.api_keys (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    -- As the other per-environment tables (feature_flag_configs,
    -- deployment_history): a renamed environment takes its keys along, and
    -- an environment with keys, revoked ones included, cannot be deleted.
    environment  text NOT NULL REFERENCES opsflags.environments (name) ON UPDATE CASCADE,
    kind         text NOT NULL
                 CONSTRAINT api_key_kind_known CHECK (kind IN ('client', 'server', 'admin')),
    description  text,
    -- The role the management API acts as with an admin key; a name, as
    -- roles are global and may be dropped.
    as_role      text CONSTRAINT as_role_for_admin_keys_only CHECK ((kind = 'admin') = (as_role IS NOT NULL)),
    prefix       text NOT NULL
                 CONSTRAINT api_keys_prefix_key UNIQUE
                 CONSTRAINT api_key_prefix_format CHECK (prefix ~ '^[0-9a-f]{12}$'),
    secret_hash  bytea NOT NULL CONSTRAINT secret_hash_is_sha256 CHECK (length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT session_user,
    revoked_at   timestamptz,
    revoked_by   text,
    last_used_at timestamptz,
    CONSTRAINT revoked_at_and_by CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX api_keys_active_environment_idx ON opsflags.api_keys (environment) WHERE revoked_at IS NULL;
COMMENT ON TABLE opsflags.api_keys IS
  'API keys of the HTTP server (sha256 of the secret only); read it through opsflags.api_keys_view';
SELECT pg_catalog.pg_extension_config_dump('opsflags.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.api_keys_id_seq', '');

CREATE VIEW opsflags.api_keys_view AS
SELECT k.id, k.environment, k.kind, k.description, k.as_role, k.prefix, k.created_at, k.created_by,
       k.revoked_at, k.revoked_by, k.last_used_at, k.revoked_at IS NULL AS active
FROM opsflags.api_keys k;
COMMENT ON VIEW opsflags.api_keys_view IS
  'API keys without their secret hash; active: not revoked';

-- C helpers (api_keys.c).
CREATE FUNCTION opsflags_internal.api_key_random(nbytes integer)
RETURNS bytea
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsflags_api_key_random';
CREATE FUNCTION opsflags_internal.base64url(data bytea)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_api_key_base64url';
CREATE FUNCTION opsflags_internal.api_key_hash_matches(a bytea, b bytea)
RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_api_key_hash_matches';
COMMENT ON FUNCTION opsflags_internal.api_key_hash_matches(bytea, bytea) IS
  'a = b in time that depends on the lengths only';
CREATE FUNCTION opsflags_internal.api_key_require_keys()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_api_key_require_keys';
CREATE FUNCTION opsflags_internal.api_key_caller()
RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_api_key_caller';
CREATE FUNCTION opsflags_internal.api_key_check_role(role_name text)
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsflags_api_key_check_role';

-- An audit row written here, not by audit_trigger on the table: it would
-- record whole rows, the secret hash included.
CREATE FUNCTION opsflags_internal.api_key_audit(action text, k opsflags.api_keys)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO opsflags.audit_log (actor, role, action, resource_type, resource_id, table_name,
                                    old_values, new_values, client_addr, application_name, txid)
    VALUES (session_user, opsflags_internal.api_key_caller(), action, 'api_key', k.id::text,
            'opsflags.api_keys', NULL,
            pg_catalog.to_jsonb(k) OPERATOR(pg_catalog.-) 'secret_hash'::text,
            pg_catalog.inet_client_addr(), pg_catalog.current_setting('application_name'),
            pg_catalog.txid_current());
    -- clients of the environment may now be refused (or no longer asked for a key)
    SELECT opsflags_internal.announce_change();
    SELECT pg_catalog.pg_notify('opsflags', pg_catalog.json_build_object(
        'event', 'api_key.' || pg_catalog.lower(action) || 'd', 'id', k.id, 'environment', k.environment)::text);
$$;

-- SECURITY DEFINER: opsflags_admin members create keys without access to
-- the table.  An admin key may act only as a role the session's role (not
-- this function's owner) is a member of.
CREATE FUNCTION opsflags.create_api_key(environment text, kind text, description text DEFAULT NULL,
                                        as_role text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text;
    secret    text;
    k         opsflags.api_keys;
BEGIN
    IF environment IS NULL THEN
        RAISE EXCEPTION 'API key environment must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kind IS NULL THEN
        RAISE EXCEPTION 'API key kind must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kind NOT IN ('client', 'server', 'admin') THEN
        RAISE EXCEPTION 'unknown API key kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are client, server and admin.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM opsflags.environments e WHERE e.name = create_api_key.environment) THEN
        RAISE EXCEPTION 'environment "%" does not exist', environment
            USING ERRCODE = 'undefined_object',
                  HINT = 'Environments are rows of opsflags.environments.';
    END IF;
    IF kind = 'admin' AND as_role IS NULL THEN
        RAISE EXCEPTION 'an admin API key needs the role it acts as'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass as_role: the management API acts as that role.';
    ELSIF kind <> 'admin' AND as_role IS NOT NULL THEN
        RAISE EXCEPTION 'only admin API keys act as a role'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A %s key acts as nobody; as_role must be null.', kind);
    END IF;
    IF as_role IS NOT NULL THEN
        role_name := opsflags_internal.api_key_check_role(as_role);
    END IF;
    secret := opsflags_internal.base64url(opsflags_internal.api_key_random(32));
    -- 48 random bits: a prefix already taken is drawn again.
    FOR attempt IN 1 .. 10 LOOP
        BEGIN
            INSERT INTO opsflags.api_keys (environment, kind, description, as_role, prefix, secret_hash, created_by)
            VALUES (create_api_key.environment, create_api_key.kind, create_api_key.description, role_name,
                    encode(opsflags_internal.api_key_random(6), 'hex'),
                    sha256(convert_to(secret, 'UTF8')), session_user)
            RETURNING * INTO k;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            IF attempt = 10 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    PERFORM opsflags_internal.api_key_audit('CREATE', k);
    RETURN 'opsf_' || left(k.kind, 1) || '_' || k.prefix || '_' || secret;
END
$$;
COMMENT ON FUNCTION opsflags.create_api_key(text, text, text, text) IS
  'New API key of the HTTP server for an environment, kind client, server or admin (acting as as_role); returns the whole key, shown this once';

CREATE FUNCTION opsflags.revoke_api_key(id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k opsflags.api_keys;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'API key id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO k FROM opsflags.api_keys a WHERE a.id = revoke_api_key.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API key % does not exist', id USING ERRCODE = 'undefined_object';
    END IF;
    IF k.revoked_at IS NOT NULL THEN
        RETURN false;
    END IF;
    UPDATE opsflags.api_keys a SET revoked_at = clock_timestamp(), revoked_by = session_user
    WHERE a.id = revoke_api_key.id
    RETURNING * INTO k;
    PERFORM opsflags_internal.api_key_audit('REVOKE', k);
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags.revoke_api_key(bigint) IS
  'Revoke an API key at once (false: it was already revoked)';

-- For the HTTP server's database worker (a superuser), per request.  The
-- status of the presented key for a request to an environment's endpoint
-- that accepts keys of the given kinds: client endpoints '{client,server}',
-- server endpoints '{server}', the management API '{admin}'.
--   200  presented is an active key of one of kinds for environment
--        (key_id, as_role for an admin key, key_environment); or no key is
--        required (key_id NULL; a presented key is then not looked at
--        further).
--   401  a key is required and presented is NULL, malformed, unknown,
--        revoked, or its secret is wrong;
--   403  presented is an active key, but of another environment or of a
--        kind not in kinds (key_id and key_environment say which).
-- A key is required when opsflags.http_require_keys is on, when the
-- environment has an active key, and always for the management API (kinds
-- containing admin).  Read-only, so that it runs in the worker's read-only
-- transactions: the worker remembers the ids of the keys it accepted and
-- passes them to api_key_touch() from time to time.
CREATE FUNCTION opsflags_internal.api_key_authorize(presented text, environment text, kinds text[])
RETURNS TABLE (status integer, key_id bigint, as_role text, key_environment text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m        text[] := regexp_match(presented, '^opsf_([csa])_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$');
    k        opsflags.api_keys;
    valid    boolean := false;
    required boolean;
BEGIN
    IF m IS NOT NULL THEN
        SELECT * INTO k FROM opsflags.api_keys a WHERE a.prefix = m[2];
        valid := FOUND AND k.revoked_at IS NULL AND left(k.kind, 1) = m[1]
                 AND opsflags_internal.api_key_hash_matches(k.secret_hash, sha256(convert_to(m[3], 'UTF8')));
    END IF;
    IF valid AND k.environment = api_key_authorize.environment AND k.kind = ANY (kinds) THEN
        RETURN QUERY SELECT 200, k.id, k.as_role, k.environment;
        RETURN;
    END IF;
    required := opsflags_internal.api_key_require_keys()
                OR 'admin' = ANY (coalesce(kinds, '{}'))
                OR EXISTS (SELECT 1 FROM opsflags.api_keys a
                           WHERE a.environment = api_key_authorize.environment AND a.revoked_at IS NULL);
    IF NOT required THEN
        RETURN QUERY SELECT 200, NULL::bigint, NULL::text, NULL::text;
    ELSIF valid THEN
        RETURN QUERY SELECT 403, k.id, NULL::text, k.environment;
    ELSE
        RETURN QUERY SELECT 401, NULL::bigint, NULL::text, NULL::text;
    END IF;
END
$$;
COMMENT ON FUNCTION opsflags_internal.api_key_authorize(text, text, text[]) IS
  'HTTP server: 200, 401 or 403 for a presented API key at an environment''s endpoint accepting the given kinds';

-- For the HTTP server's database worker, in a read-write transaction, now
-- and then: last_used_at of the keys it accepted, written at most once a
-- minute per key.  Returns the number of keys updated.
CREATE FUNCTION opsflags_internal.api_key_touch(ids bigint[])
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH touched AS (
        UPDATE opsflags.api_keys a SET last_used_at = now()
        WHERE a.id = ANY (ids)
          AND (a.last_used_at IS NULL OR a.last_used_at <= now() - interval '1 minute')
        RETURNING 1)
    SELECT count(*)::integer FROM touched
$$;
COMMENT ON FUNCTION opsflags_internal.api_key_touch(bigint[]) IS
  'HTTP server: record that the keys were used (at most once a minute per key)';

REVOKE ALL ON FUNCTION
    opsflags_internal.api_key_random(integer), opsflags_internal.base64url(bytea),
    opsflags_internal.api_key_hash_matches(bytea, bytea), opsflags_internal.api_key_require_keys(),
    opsflags_internal.api_key_caller(), opsflags_internal.api_key_check_role(text),
    opsflags_internal.api_key_audit(text, opsflags.api_keys),
    opsflags.create_api_key(text, text, text, text), opsflags.revoke_api_key(bigint),
    opsflags_internal.api_key_authorize(text, text, text[]), opsflags_internal.api_key_touch(bigint[])
FROM PUBLIC;
GRANT SELECT ON opsflags.api_keys_view TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.create_api_key(text, text, text, text), opsflags.revoke_api_key(bigint)
TO opsflags_admin;

-- ==== Client endpoints: the environment of a request (src/http_auth.sql) ====

-- The environment of a request: status 200 and the environment (with the
-- key's id when a key was used), else 401 (no usable key) or 403 (a key
-- that may not do this).  presented: what the request presented (an API
-- key, or, where keys are not required, an environment's name; NULL:
-- nothing); kinds: the key kinds the endpoint takes; fallback: the
-- environment of a request that presents no key.  A valid key always
-- chooses its own environment; an invalid or revoked one is always 401.
CREATE FUNCTION opsflags_internal.http_environment(presented text, kinds text[], fallback text)
RETURNS TABLE (status integer, environment text, key_id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m   text[] := regexp_match(presented, '^opsf_[csa]_([0-9a-f]{12})_');
    env text := fallback;
    r   record;
BEGIN
    IF m IS NOT NULL THEN
        env := coalesce((SELECT a.environment FROM opsflags.api_keys a WHERE a.prefix = m[1] AND a.revoked_at IS NULL),
                        fallback);
    ELSIF presented IS NOT NULL AND EXISTS (SELECT FROM opsflags.environments e WHERE e.name = presented) THEN
        env := presented;
        presented := NULL;
    END IF;
    SELECT * INTO r FROM opsflags_internal.api_key_authorize(presented, env, kinds);
    -- A key that is not (or no longer) valid is refused even where none is
    -- required: its holder expects it to count.
    IF m IS NOT NULL AND r.status = 200 AND r.key_id IS NULL THEN
        r.status := 401;
    END IF;
    RETURN QUERY SELECT r.status, CASE WHEN r.status = 200 THEN env END, r.key_id;
END
$$;

REVOKE ALL ON FUNCTION opsflags_internal.http_environment(text, text[], text) FROM PUBLIC;

-- ==== OFREP (src/http_ofrep.sql) ====
-- New: what the HTTP server's OFREP endpoints ask the database.

-- feature_explain's reason as an OpenFeature reason.
CREATE FUNCTION opsflags_internal.ofrep_reason(x jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x ->> 'reason' IN ('OFF', 'SCHEDULE', 'PREREQUISITE_FAILED') THEN 'DISABLED'
    WHEN x ->> 'reason' IN ('TARGET_USER', 'TARGET_ROLE', 'SEGMENT_MATCH', 'RULE_MATCH') THEN 'TARGETING_MATCH'
    WHEN x ->> 'reason' IN ('ROLLOUT_IN', 'ROLLOUT_OUT') THEN 'SPLIT'
    WHEN x ->> 'reason' IN ('FALLTHROUGH', 'NO_MATCH') THEN 'STATIC'
    ELSE 'UNKNOWN' END;

-- The OFREP bulk answer, every flag of an environment for a context, as
-- text (in C beside evaluate_all, which it follows; items as ofrep_item()
-- below makes them).
CREATE FUNCTION opsflags_internal.ofrep_bulk(context jsonb, environment text, keyed boolean)
RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_ofrep_bulk';

-- One flag's OFREP answer and its status (in C, as ofrep_item() makes it).
CREATE FUNCTION opsflags_internal.ofrep_one(context jsonb, environment text, flag_key text, keyed boolean,
                                            OUT status integer, OUT document text)
RETURNS record
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_ofrep_one';

-- A ticket to the event stream of an environment (http_ofrep_stream.c),
-- valid for lifetime seconds (rounded up to the next minute): for the bulk
-- answer's eventStreams; NULL when the server offers no streams.
CREATE FUNCTION opsflags_internal.ofrep_stream_token(environment text, lifetime integer DEFAULT 600)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsflags_ofrep_stream_token';

-- One flag's evaluation as OFREP says it (the reference the C functions
-- follow, and what the tests compare them with): {key, value, reason, variant,
-- metadata}, the value left out when the flag serves none (the caller's
-- default), or a failure {key, errorCode, errorDetails}.  keyed: the
-- context has a targeting key (a rollout that needs one says so).
CREATE FUNCTION opsflags_internal.ofrep_item(flag_key text, x jsonb, keyed boolean)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x ->> 'reason' IN ('FLAG_NOT_FOUND', 'ARCHIVED') THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'FLAG_NOT_FOUND',
                           'errorDetails', 'flag was not found')
    WHEN x ->> 'reason' = 'ERROR' THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'GENERAL',
                           'errorDetails', 'flag could not be evaluated')
    WHEN NOT keyed AND x ->> 'reason' = 'ROLLOUT_OUT' AND x -> 'bucket' = 'null' THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'TARGETING_KEY_MISSING',
                           'errorDetails', 'rolled out by percentage, which needs a targetingKey')
    ELSE
        jsonb_build_object('key', flag_key, 'reason', opsflags_internal.ofrep_reason(x))
        || CASE WHEN x -> 'variation' = 'null' THEN '{}'::jsonb ELSE jsonb_build_object('value', x -> 'value') END
        || CASE WHEN x ->> 'variant' IS NOT NULL THEN jsonb_build_object('variant', x -> 'variant')
                WHEN x -> 'variation' <> 'null' THEN jsonb_build_object('variant', x ->> 'variation')
                ELSE '{}'::jsonb END
        || jsonb_build_object('metadata', jsonb_strip_nulls(jsonb_build_object('flagVersion', x -> 'flag_version',
                                                                               'environment', x -> 'environment')))
    END;

-- The answer to an OFREP request: presented is the API key it presents (the
-- environment is the key's; without one, where no key is required, the
-- server's opsflags.environment); flag_key NULL is the bulk evaluation.
-- body is the request's body as sent; if_none_match the request's header.
-- key_id: the API key used, if any (its last_used_at is written later).  Returns the HTTP status, the bulk answer's ETag (a
-- hash of the answer itself, so it changes when the flags or the context
-- change what is served) and the document.  A bulk answer also names the
-- event stream that tells of changes (eventStreams, outside the ETag: its
-- URL carries a ticket for the environment, never the key).
CREATE FUNCTION opsflags_internal.ofrep_answer(presented text, flag_key text, body text, if_none_match text)
RETURNS TABLE (status integer, etag text, document text, key_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env   text;
    auth  integer;
    kid   bigint;
    req   jsonb;
    ctx   jsonb;
    keyed boolean;
    doc   text;
    tag   text;
    token text;
BEGIN
    SELECT e.status, e.environment, e.key_id INTO auth, env, kid
    FROM opsflags_internal.http_environment(presented, '{client,server}', current_setting('opsflags.environment')) e;
    IF auth <> 200 THEN
        RETURN QUERY SELECT auth, NULL::text,
            (jsonb_build_object('errorDetails', CASE auth WHEN 401 THEN 'a valid API key is required'
                                                          ELSE 'this API key may not do that' END))::text, kid;
        RETURN;
    END IF;
    BEGIN
        req := coalesce(nullif(body, ''), '{}')::jsonb;
    EXCEPTION WHEN others THEN
        RETURN QUERY SELECT 400, NULL::text,
            (jsonb_strip_nulls(jsonb_build_object('key', flag_key, 'errorCode', 'PARSE_ERROR',
                                                  'errorDetails', 'the request body is not JSON')))::text, kid;
        RETURN;
    END;
    ctx := CASE WHEN jsonb_typeof(req) = 'object' THEN coalesce(nullif(req -> 'context', 'null'), '{}') END;
    IF jsonb_typeof(ctx) IS DISTINCT FROM 'object' THEN
        RETURN QUERY SELECT 400, NULL::text,
            (jsonb_strip_nulls(jsonb_build_object('key', flag_key, 'errorCode', 'INVALID_CONTEXT',
                                                  'errorDetails', 'the request body is {"context": {...}}')))::text, kid;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = env) THEN
        RETURN QUERY SELECT 500, NULL::text,
            (jsonb_build_object('errorDetails', format('environment "%s" does not exist', env)))::text, kid;
        RETURN;
    END IF;
    keyed := coalesce(ctx ->> 'targetingKey', ctx ->> 'key', ctx ->> 'userId') IS NOT NULL;

    IF flag_key IS NOT NULL THEN
        RETURN QUERY SELECT o.status, NULL::text, o.document, kid FROM opsflags_internal.ofrep_one(ctx, env, flag_key, keyed) o;
        RETURN;
    END IF;

    doc := opsflags_internal.ofrep_bulk(ctx, env, keyed);
    tag := '"' || encode(sha256(convert_to(doc, 'UTF8')), 'base64') || '"';
    IF if_none_match IS NOT NULL AND (if_none_match = tag OR if_none_match = 'W/' || tag OR if_none_match = '*') THEN
        RETURN QUERY SELECT 304, tag, ''::text, kid;
        RETURN;
    END IF;
    token := opsflags_internal.ofrep_stream_token(env);
    IF token IS NOT NULL THEN
        -- spliced into the object's text, which is not parsed again
        doc := left(doc, -1) || ', "eventStreams": '
               || jsonb_build_array(jsonb_build_object(
                      'type', 'sse',
                      'endpoint', jsonb_build_object('requestUri', '/ofrep/v1/stream?token=' || token),
                      'inactivityDelaySec', 120))::text || '}';
    END IF;
    RETURN QUERY SELECT 200, tag, doc, kid;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.ofrep_stream_token(text, integer),
    opsflags_internal.ofrep_bulk(jsonb, text, boolean), opsflags_internal.ofrep_one(jsonb, text, text, boolean),
    opsflags_internal.ofrep_reason(jsonb), opsflags_internal.ofrep_item(text, jsonb, boolean),
    opsflags_internal.ofrep_answer(text, text, text, text)
FROM PUBLIC;

-- ==== Usage reported by client SDKs (src/usage.sql) ====

-- Counts a client SDK reports for a flag it evaluated itself (the HTTP
-- server's Unleash metrics, http_unleash.sql), added to the flag's usage.
CREATE FUNCTION opsflags_internal.usage_add(flag_key text, true_count bigint, false_count bigint)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsflags_usage_add';
REVOKE ALL ON FUNCTION opsflags_internal.usage_add(text, bigint, bigint) FROM PUBLIC;

-- ==== LaunchDarkly client-side endpoints (src/http_launchdarkly.sql) ====

-- feature_explain's reason as a LaunchDarkly reason object.  rules: the
-- config's rules (for the index of the rule that served).  Rules imported
-- from LaunchDarkly's targets (ld-target-<n>) are TARGET_MATCH, and the
-- index of the others counts them out, as LaunchDarkly numbers its rules.
CREATE FUNCTION opsflags_internal.launchdarkly_reason(x jsonb, rules jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x ->> 'reason' IN ('OFF', 'SCHEDULE') THEN '{"kind": "OFF"}'
    WHEN x ->> 'reason' = 'PREREQUISITE_FAILED' THEN '{"kind": "PREREQUISITE_FAILED"}'
    WHEN x ->> 'reason' IN ('TARGET_USER', 'TARGET_ROLE', 'SEGMENT_MATCH') OR x ->> 'rule' LIKE 'ld-target-%'
        THEN '{"kind": "TARGET_MATCH"}'
    WHEN x ->> 'reason' = 'RULE_MATCH' THEN
        jsonb_build_object('kind', 'RULE_MATCH',
                           'ruleIndex', (SELECT count(*) FROM jsonb_array_elements(rules) WITH ORDINALITY r(v, o)
                                         WHERE o < (SELECT min(o2) FROM jsonb_array_elements(rules) WITH ORDINALITY r2(v2, o2)
                                                    WHERE r2.v2 ->> 'id' = x ->> 'rule')
                                           AND coalesce(r.v ->> 'id', '') NOT LIKE 'ld-target-%'),
                           'ruleId', x -> 'rule')
    WHEN x ->> 'reason' IN ('ROLLOUT_IN', 'ROLLOUT_OUT', 'FALLTHROUGH', 'NO_MATCH') THEN '{"kind": "FALLTHROUGH"}'
    ELSE '{"kind": "ERROR", "errorKind": "EXCEPTION"}' END
    || CASE WHEN x -> 'in_experiment' = 'true' THEN '{"inExperiment": true}'::jsonb ELSE '{}'::jsonb END;

-- What a request to /sdk/evalx or /eval asks about: presented is the
-- client-side ID of the path (an API key of kind client or server, or,
-- where the environment requires none, the environment's name); context the
-- context as sent, base64url (encoded) or JSON.  status 200 with the
-- environment and the context, or the HTTP status and a JSON message; and
-- the API key used (key_id, if any: its last_used_at is written later).
CREATE FUNCTION opsflags_internal.launchdarkly_request(presented text, context text, encoded boolean,
                                                       OUT status integer, OUT message text,
                                                       OUT environment text, OUT ctx jsonb,
                                                       OUT key_id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT e.status, e.environment, e.key_id INTO status, environment, key_id
    FROM opsflags_internal.http_environment(presented, '{client,server}', NULL) e;
    IF status <> 200 THEN
        message := jsonb_build_object('message', CASE status WHEN 401 THEN 'a valid API key is required'
                                                 ELSE 'this API key may not do that' END)::text;
        RETURN;
    END IF;
    IF environment IS NULL OR NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = environment) THEN
        status := 404;
        message := '{"message": "no environment has that client-side ID"}';
        RETURN;
    END IF;
    BEGIN
        IF encoded THEN
            context := convert_from(decode(translate(context, '-_', '+/')
                                           || repeat('=', (4 - length(context) % 4) % 4), 'base64'), 'UTF8');
        END IF;
        ctx := context::jsonb;
    EXCEPTION WHEN others THEN
        ctx := NULL;
    END;
    IF jsonb_typeof(ctx) IS DISTINCT FROM 'object' THEN
        status := 400;
        message := '{"message": "the context is not a JSON object"}';
        ctx := NULL;
    END IF;
END
$$;

-- Every flag of an environment for a context, as LaunchDarkly's client-side
-- SDKs read them: flag_key, and {"value", "variation", "version",
-- "flagVersion", "trackEvents", "reason"}, variation left out when the flag
-- serves no value, reason only with with_reasons.  version is the version
-- of the flag's config in the environment.
CREATE FUNCTION opsflags_internal.launchdarkly_flags(ctx jsonb, environment text, with_reasons boolean)
RETURNS TABLE (flag_key text, version integer, entry jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT e.key, (e.value ->> 'flag_version')::integer,
           jsonb_build_object('value', e.value -> 'value',
                              'version', e.value -> 'flag_version',
                              'flagVersion', e.value -> 'flag_version',
                              'trackEvents', false)
           || CASE WHEN e.value -> 'variation' = 'null' THEN '{}'::jsonb
                   ELSE jsonb_build_object('variation', e.value -> 'variation') END
           || CASE WHEN with_reasons
                   THEN jsonb_build_object('reason', opsflags_internal.launchdarkly_reason(e.value, c.rules))
                   ELSE '{}'::jsonb END
    FROM jsonb_each(opsflags.evaluate_all(ctx, environment)) e
    LEFT JOIN opsflags.feature_flags f ON f.flag_key = e.key
    LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = launchdarkly_flags.environment;
END;

-- The answer to /sdk/evalx (launchdarkly_request's arguments, and
-- with_reasons): the HTTP status, the ETag (a hash of the answer) and the
-- document {"<flag>": <launchdarkly_flags' entry>}, and the API key used.
CREATE FUNCTION opsflags_internal.launchdarkly_answer(presented text, context text, encoded boolean,
                                                      with_reasons boolean, if_none_match text)
RETURNS TABLE (status integer, etag text, document text, key_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r   record;
    doc jsonb;
    tag text;
BEGIN
    r := opsflags_internal.launchdarkly_request(presented, context, encoded);
    IF r.status <> 200 THEN
        RETURN QUERY SELECT r.status, NULL::text, r.message, r.key_id;
        RETURN;
    END IF;
    SELECT coalesce(jsonb_object_agg(f.flag_key, f.entry), '{}') INTO doc
    FROM opsflags_internal.launchdarkly_flags(r.ctx, r.environment, with_reasons) f;
    tag := '"' || encode(sha256(convert_to(doc::text, 'UTF8')), 'base64') || '"';
    IF if_none_match IS NOT NULL AND (if_none_match = tag OR if_none_match = 'W/' || tag OR if_none_match = '*') THEN
        RETURN QUERY SELECT 304, tag, ''::text, r.key_id;
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, tag, doc::text, r.key_id;
END
$$;

-- What the stream /eval pushes: launchdarkly_flags' rows as lines "key TAB
-- version TAB entry", in flag key order, in C (evaluate_all.c) from the
-- flag cache; launchdarkly_flags() is its plain SQL reference (the tests
-- compare them).
CREATE FUNCTION opsflags_internal.launchdarkly_lines(ctx jsonb, environment text, with_reasons boolean)
RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_launchdarkly_lines';

REVOKE ALL ON FUNCTION
    opsflags_internal.launchdarkly_reason(jsonb, jsonb),
    opsflags_internal.launchdarkly_request(text, text, boolean),
    opsflags_internal.launchdarkly_flags(jsonb, text, boolean),
    opsflags_internal.launchdarkly_answer(text, text, boolean, boolean, text),
    opsflags_internal.launchdarkly_lines(jsonb, text, boolean)
FROM PUBLIC;

-- ==== Unleash endpoints (src/http_unleash.sql) ====

-- A percent-encoded query string component ('+' a space); NULL when it
-- does not decode to UTF-8 (NULL for NULL).  Any role may call it: the
-- management API, run as the signed-in role, decodes its paths with it
-- (api_decode).
CREATE FUNCTION opsflags_internal.url_decode(s text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF s IS NULL OR strpos(s, '%') = 0 THEN
        RETURN replace(s, '+', ' ');
    END IF;
    RETURN (SELECT convert_from(coalesce(string_agg(CASE WHEN m[1] IS NOT NULL THEN decode(substr(m[1], 2), 'hex')
                                                         ELSE convert_to(m[2], 'UTF8') END, ''::bytea ORDER BY o),
                                         ''::bytea), 'UTF8')
            FROM regexp_matches(replace(s, '+', ' '), '(%[0-9A-Fa-f]{2})|([^%]+|%)', 'g') WITH ORDINALITY r(m, o));
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN NULL;
END
$$;

-- The Unleash context of a frontend API GET: its query parameters
-- (userId=...&properties[plan]=pro), the properties as an object; NULL
-- when a parameter does not decode.  In C (http_unleash.c), and the plain
-- SQL reference it follows (the tests compare them).
CREATE FUNCTION opsflags_internal.unleash_query_context(query text)
RETURNS jsonb
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_unleash_query_context';
CREATE FUNCTION opsflags_internal.unleash_query_context_reference(query text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (
    WITH p AS (
        SELECT opsflags_internal.url_decode(split_part(kv, '=', 1)) AS k,
               opsflags_internal.url_decode(substr(kv, length(split_part(kv, '=', 1)) + 2)) AS v, o
        FROM regexp_split_to_table(coalesce(query, ''), '&') WITH ORDINALITY t(kv, o)
        WHERE kv <> '')
    SELECT CASE WHEN bool_or(k IS NULL OR v IS NULL) THEN NULL ELSE
        coalesce(jsonb_object_agg(k, v ORDER BY o) FILTER (WHERE k !~ '^properties\[.*\]$'), '{}')
        || CASE WHEN bool_or(k ~ '^properties\[.*\]$') THEN
               jsonb_build_object('properties',
                   jsonb_object_agg(substring(k FROM '^properties\[(.*)\]$'), v ORDER BY o)
                       FILTER (WHERE k ~ '^properties\[.*\]$'))
           ELSE '{}' END END
    FROM p);

-- The variant of an enabled toggle, as the frontend API says it: the
-- variation's name (feature_explain's variant) with its value as the
-- payload ({"type", "value"}: a value imported from Unleash is its payload
-- as it was, others are given a type), else "disabled".
CREATE FUNCTION opsflags_internal.unleash_frontend_variant(x jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x ->> 'variant' IS NULL THEN '{"name": "disabled", "enabled": false, "feature_enabled": true}'::jsonb
    ELSE jsonb_build_object('name', x ->> 'variant', 'enabled', true, 'feature_enabled', true)
         || CASE
            WHEN jsonb_typeof(x -> 'value') = 'object' AND jsonb_typeof(x -> 'value' -> 'type') = 'string'
                 AND jsonb_typeof(x -> 'value' -> 'value') = 'string'
                THEN jsonb_build_object('payload', x -> 'value')
            WHEN jsonb_typeof(x -> 'value') = 'string'
                THEN jsonb_build_object('payload', jsonb_build_object('type', 'string', 'value', x ->> 'value'))
            WHEN jsonb_typeof(x -> 'value') = 'number'
                THEN jsonb_build_object('payload', jsonb_build_object('type', 'number', 'value', x ->> 'value'))
            WHEN jsonb_typeof(x -> 'value') IN ('object', 'array', 'boolean')
                THEN jsonb_build_object('payload', jsonb_build_object('type', 'json', 'value', x ->> 'value'))
            ELSE '{}'::jsonb END
    END;

-- The frontend API's toggles in C (evaluate_all.c), and the plain SQL
-- reference it follows (the tests compare them).
CREATE FUNCTION opsflags_internal.unleash_toggles(context jsonb, environment text)
RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_unleash_toggles';
CREATE FUNCTION opsflags_internal.unleash_frontend_toggles(context jsonb, environment text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('toggles', coalesce(jsonb_agg(jsonb_build_object(
               'name', e.key,
               'enabled', true,
               'impressionData', false,
               'variant', opsflags_internal.unleash_frontend_variant(e.value)) ORDER BY e.key), '[]'))
    FROM jsonb_each(opsflags.evaluate_all(context, environment)) e
    WHERE e.value -> 'enabled' = 'true'
$$;

-- An ETag for a document, and whether If-None-Match names it.
CREATE FUNCTION opsflags_internal.http_etag(doc jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '"' || encode(sha256(convert_to(doc::text, 'UTF8')), 'base64') || '"';

-- The answer to the frontend API (/api/frontend): presented is the API key
-- (kinds client and server; without one, where none is required, the
-- server's opsflags.environment); the context is the query's parameters
-- (query, a GET) or the body's {"context": {...}} (a POST; a body that is
-- the context itself is taken too); a context without remoteAddress gets
-- client_addr's, the address the request came from, as Unleash's own
-- frontend API does.  Returns the HTTP status, the ETag,
-- {"toggles": [{"name", "enabled", "impressionData", "variant"}]} (the
-- enabled toggles only) and the API key used (key_id, if any).
CREATE FUNCTION opsflags_internal.unleash_frontend_answer(presented text, query text, body text, if_none_match text,
                                                          client_addr text DEFAULT NULL)
RETURNS TABLE (status integer, etag text, document text, key_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kid  bigint;
    env  text;
    auth integer;
    req  jsonb;
    ctx  jsonb;
    doc  text;
    tag  text;
BEGIN
    SELECT e.status, e.environment, e.key_id INTO auth, env, kid
    FROM opsflags_internal.http_environment(presented, '{client,server}', current_setting('opsflags.environment')) e;
    IF auth <> 200 THEN
        RETURN QUERY SELECT auth, NULL::text,
            (jsonb_build_object('message', CASE auth WHEN 401 THEN 'a valid API key is required'
                                                     ELSE 'this API key may not do that' END))::text, kid;
        RETURN;
    END IF;
    IF body IS NOT NULL THEN
        BEGIN
            req := coalesce(nullif(body, ''), '{}')::jsonb;
        EXCEPTION WHEN others THEN
            req := NULL;
        END;
        ctx := CASE WHEN jsonb_typeof(req -> 'context') = 'object' THEN req -> 'context'
                    WHEN jsonb_typeof(req) = 'object' AND NOT req ? 'context' THEN req END;
    ELSE
        ctx := opsflags_internal.unleash_query_context(query);
    END IF;
    IF ctx IS NULL THEN
        RETURN QUERY SELECT 400, NULL::text, '{"message": "the context is {\"context\": {...}} or query parameters"}'::text, kid;
        RETURN;
    END IF;
    IF client_addr IS NOT NULL AND NOT ctx ? 'remoteAddress' THEN
        ctx := ctx || jsonb_build_object('remoteAddress', client_addr);
    END IF;
    IF NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = env) THEN
        RETURN QUERY SELECT 500, NULL::text,
            (jsonb_build_object('message', format('environment "%s" does not exist', env)))::text, kid;
        RETURN;
    END IF;

    -- In C from the flag cache (evaluate_all.c); unleash_frontend_toggles()
    -- below is its plain SQL reference.
    doc := opsflags_internal.unleash_toggles(ctx, env);
    tag := '"' || encode(sha256(convert_to(doc, 'UTF8')), 'base64') || '"';
    IF if_none_match IS NOT NULL AND (if_none_match = tag OR if_none_match = 'W/' || tag OR if_none_match = '*') THEN
        RETURN QUERY SELECT 304, tag, ''::text, kid;
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, tag, doc, kid;
END
$$;

-- The answer to the client API (/api/client/features): the
-- unleash_features document of the key's environment (kind server; without
-- one, where none is required, the server's opsflags.environment), with its
-- ETag and the API key used (key_id, if any).
CREATE FUNCTION opsflags_internal.unleash_client_answer(presented text, if_none_match text)
RETURNS TABLE (status integer, etag text, document text, key_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kid  bigint;
    env  text;
    auth integer;
    doc  jsonb;
    tag  text;
BEGIN
    SELECT e.status, e.environment, e.key_id INTO auth, env, kid
    FROM opsflags_internal.http_environment(presented, '{server}', current_setting('opsflags.environment')) e;
    IF auth <> 200 THEN
        RETURN QUERY SELECT auth, NULL::text,
            (jsonb_build_object('message', CASE auth WHEN 401 THEN 'a valid API key is required'
                                                     ELSE 'this API key may not do that' END))::text, kid;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = env) THEN
        RETURN QUERY SELECT 500, NULL::text,
            (jsonb_build_object('message', format('environment "%s" does not exist', env)))::text, kid;
        RETURN;
    END IF;
    doc := opsflags.unleash_features(env);
    tag := opsflags_internal.http_etag(doc);
    IF if_none_match IS NOT NULL AND (if_none_match = tag OR if_none_match = 'W/' || tag OR if_none_match = '*') THEN
        RETURN QUERY SELECT 304, tag, ''::text, kid;
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, tag, doc::text, kid;
END
$$;

-- The answer to the metrics an SDK reports (/api/client/metrics with kinds
-- {server}, /api/frontend/client/metrics with {client,server}): each
-- toggle's yes and no counts of its bucket, {"bucket": {"toggles": {"<name>":
-- {"yes", "no"}}}}, added to the usage of the flag of that name (flag_usage;
-- names that are no flag are ignored).  Returns the HTTP status (204 when
-- counted), a document for the others and the API key used (key_id, if any:
-- its last_used_at is written later).
CREATE FUNCTION opsflags_internal.unleash_metrics_answer(presented text, kinds text[], body text)
RETURNS TABLE (status integer, document text, key_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kid     bigint;
    auth    integer;
    toggles jsonb;
BEGIN
    SELECT e.status, e.key_id INTO auth, kid
    FROM opsflags_internal.http_environment(presented, kinds, current_setting('opsflags.environment')) e;
    IF auth <> 200 THEN
        RETURN QUERY SELECT auth,
            (jsonb_build_object('message', CASE auth WHEN 401 THEN 'a valid API key is required'
                                                     ELSE 'this API key may not do that' END))::text, kid;
        RETURN;
    END IF;
    BEGIN
        toggles := body::jsonb -> 'bucket' -> 'toggles';
    EXCEPTION WHEN others THEN
        toggles := NULL;
    END;
    IF jsonb_typeof(toggles) IS DISTINCT FROM 'object'
       OR EXISTS (SELECT FROM jsonb_each(toggles) t, LATERAL (VALUES (t.value -> 'yes'), (t.value -> 'no')) c(n)
                  WHERE jsonb_typeof(t.value) IS DISTINCT FROM 'object'
                     OR (c.n IS NOT NULL AND (jsonb_typeof(c.n) IS DISTINCT FROM 'number'
                                              OR c.n::text !~ '^[0-9]{1,15}$'))) THEN
        RETURN QUERY SELECT 400, '{"message": "metrics are {\"bucket\": {\"toggles\": {\"<name>\": {\"yes\": n, \"no\": n}}}}"}'::text, kid;
        RETURN;
    END IF;
    PERFORM opsflags_internal.usage_add(t.key, coalesce((t.value ->> 'yes')::bigint, 0), coalesce((t.value ->> 'no')::bigint, 0))
    FROM jsonb_each(toggles) t
    WHERE EXISTS (SELECT FROM opsflags.feature_flags f WHERE f.flag_key = t.key);
    RETURN QUERY SELECT 204, ''::text, kid;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.unleash_metrics_answer(text, text[], text),
    opsflags_internal.unleash_query_context(text),
    opsflags_internal.unleash_query_context_reference(text),
    opsflags_internal.unleash_frontend_variant(jsonb), opsflags_internal.http_etag(jsonb),
    opsflags_internal.unleash_toggles(jsonb, text), opsflags_internal.unleash_frontend_toggles(jsonb, text),
    opsflags_internal.unleash_frontend_answer(text, text, text, text, text),
    opsflags_internal.unleash_client_answer(text, text)
FROM PUBLIC;

-- ==== Console sign-in and sessions (src/console_auth.sql) ====

CREATE TABLE opsflags_internal.console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL
                 CONSTRAINT console_sessions_token_hash_key UNIQUE
                 CONSTRAINT token_hash_is_sha256 CHECK (length(token_hash) = 32),
    -- An OID: a renamed role keeps its sessions, a dropped one loses them.
    role_oid     oid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    client_addr  inet,
    user_agent   text
);
CREATE INDEX console_sessions_role_idx ON opsflags_internal.console_sessions (role_oid);
COMMENT ON TABLE opsflags_internal.console_sessions IS
  'Web console sessions (sha256 of the token only); read it through opsflags.console_sessions_view';

-- One row per role name ('role') and per client address ('address') with
-- failed sign-ins in the current window.
CREATE TABLE opsflags_internal.console_signin_failures (
    kind         text NOT NULL CONSTRAINT console_signin_failure_kind CHECK (kind IN ('role', 'address')),
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    failures     integer NOT NULL CONSTRAINT failures_not_negative CHECK (failures >= 0),
    PRIMARY KEY (kind, key)
);
COMMENT ON TABLE opsflags_internal.console_signin_failures IS
  'Failed web console sign-ins per role name and per client address, for throttling';

-- C helpers (console_auth.c).
CREATE FUNCTION opsflags_internal.console_password_check(role_name text, password text, client text)
RETURNS oid
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_console_password_check';
COMMENT ON FUNCTION opsflags_internal.console_password_check(text, text, text) IS
  'The role''s OID when it may sign in with the password (as at a password login), else NULL, logged';
CREATE FUNCTION opsflags_internal.console_log_throttled(role_name text, client text)
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_console_log_throttled';
CREATE FUNCTION opsflags_internal.console_csrf_mac(token text)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_console_csrf_mac';
CREATE FUNCTION opsflags_internal.console_idle_timeout()
RETURNS integer
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_console_idle_timeout';
CREATE FUNCTION opsflags_internal.console_max_age()
RETURNS integer
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_console_max_age';
CREATE FUNCTION opsflags_internal.console_check_sign_out(role_oid oid)
RETURNS void
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsflags_console_check_sign_out';

-- When a session ends, by the settings as they are now.
CREATE FUNCTION opsflags_internal.console_session_expires_at(created_at timestamptz, last_seen_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(last_seen_at + make_interval(secs => opsflags_internal.console_idle_timeout()),
                 created_at + make_interval(secs => opsflags_internal.console_max_age()))
$$;

-- A session's CSRF token.
CREATE FUNCTION opsflags_internal.console_csrf_token(token text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT opsflags_internal.base64url(opsflags_internal.console_csrf_mac(token)) $$;

-- An audit row written here: action SIGN_IN or SIGN_OUT, resource
-- console_session <id>, the session without its hash.
CREATE FUNCTION opsflags_internal.console_session_audit(action text, s opsflags_internal.console_sessions,
                                                        actor text, acting_role text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO opsflags.audit_log (actor, role, action, resource_type, resource_id, table_name,
                                    old_values, new_values, client_addr, application_name, txid)
    VALUES (actor, acting_role, action, 'console_session', s.id::text, 'opsflags_internal.console_sessions',
            NULL,
            pg_catalog.jsonb_build_object('id', s.id, 'role', pg_catalog.pg_get_userbyid(s.role_oid),
                                          'created_at', s.created_at, 'last_seen_at', s.last_seen_at,
                                          'client_addr', s.client_addr, 'user_agent', s.user_agent),
            s.client_addr, pg_catalog.current_setting('application_name'), pg_catalog.txid_current());
$$;

-- The sessions console_session_check accepts.
CREATE VIEW opsflags.console_sessions_view AS
SELECT s.id, r.rolname::text AS role, s.created_at, s.last_seen_at,
       opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) AS expires_at,
       s.client_addr, s.user_agent
FROM opsflags_internal.console_sessions s
JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.role_oid AND r.rolcanlogin
WHERE opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) OPERATOR(pg_catalog.>) pg_catalog.now();
COMMENT ON VIEW opsflags.console_sessions_view IS
  'Web console sessions that are valid (not expired, of a role with LOGIN), without their token';

-- For the HTTP server's database worker (a superuser), in a read-write
-- transaction that it commits whatever the status: a failure is counted
-- there.  status:
--   200  signed in: token (shown this once), csrf_token, role, expires_at,
--        session_id;
--   401  role_name cannot sign in with password (no such role, no LOGIN,
--        no password, past VALID UNTIL, wrong password: all alike);
--   429  too many failed attempts for the role name or the address: the
--        password was not looked at.
-- role_name is matched exactly (no case folding, no quotes).  Expired
-- sessions, sessions of dropped roles and past failure windows are removed
-- here, a hundred at a time.  Without client_addr, only the role name's
-- failures are counted.
CREATE FUNCTION opsflags_internal.console_sign_in(role_name text, password text, client_addr inet,
                                                  user_agent text DEFAULT NULL)
RETURNS TABLE (status integer, token text, csrf_token text, role text, expires_at timestamptz,
               session_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_role_failures    constant integer := 5;
    max_address_failures constant integer := 20;
    failure_window       constant interval := '15 minutes';
    role_key     text := CASE WHEN octet_length(role_name) BETWEEN 1 AND 63 THEN role_name END;
    address_key  text := host(client_addr);
    n_role       integer := 0;
    n_address    integer := 0;
    roleid       oid;
    tok          text;
    s            opsflags_internal.console_sessions;
BEGIN
    -- Forget what has expired, a little at a time, skipping rows in use.
    DELETE FROM opsflags_internal.console_signin_failures f
    WHERE f.ctid = ANY (ARRAY(SELECT o.ctid FROM opsflags_internal.console_signin_failures o
                              WHERE o.window_start <= now() - failure_window
                              LIMIT 100 FOR UPDATE SKIP LOCKED));
    DELETE FROM opsflags_internal.console_sessions c
    WHERE c.ctid = ANY (ARRAY(SELECT o.ctid FROM opsflags_internal.console_sessions o
                              WHERE opsflags_internal.console_session_expires_at(o.created_at, o.last_seen_at) <= now()
                                 OR NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = o.role_oid)
                              LIMIT 100 FOR UPDATE SKIP LOCKED));

    -- Lock the counters (role name first, then address, always in this
    -- order) until commit: attempts for the same name or address take
    -- turns, so that each sees the failures of those before it.
    IF role_key IS NOT NULL THEN
        INSERT INTO opsflags_internal.console_signin_failures AS f (kind, key, window_start, failures)
        VALUES ('role', role_key, now(), 0)
        ON CONFLICT (kind, key) DO UPDATE
            SET failures = CASE WHEN f.window_start <= now() - failure_window THEN 0 ELSE f.failures END
        RETURNING f.failures INTO n_role;
    END IF;
    IF address_key IS NOT NULL THEN
        INSERT INTO opsflags_internal.console_signin_failures AS f (kind, key, window_start, failures)
        VALUES ('address', address_key, now(), 0)
        ON CONFLICT (kind, key) DO UPDATE
            SET failures = CASE WHEN f.window_start <= now() - failure_window THEN 0 ELSE f.failures END
        RETURNING f.failures INTO n_address;
    END IF;

    IF n_role >= max_role_failures OR n_address >= max_address_failures THEN
        PERFORM opsflags_internal.console_log_throttled(role_name, host(client_addr));
        RETURN QUERY SELECT 429, NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;

    roleid := opsflags_internal.console_password_check(role_name, password, host(client_addr));

    IF roleid IS NULL THEN
        -- A first failure opens a window.
        UPDATE opsflags_internal.console_signin_failures f
        SET failures = f.failures + 1,
            window_start = CASE WHEN f.failures = 0 THEN now() ELSE f.window_start END
        WHERE (f.kind = 'role' AND f.key = role_key) OR (f.kind = 'address' AND f.key = address_key);
        RETURN QUERY SELECT 401, NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;

    DELETE FROM opsflags_internal.console_signin_failures f
    WHERE (f.kind = 'role' AND f.key = role_key) OR (f.kind = 'address' AND f.key = address_key AND f.failures = 0);
    tok := opsflags_internal.base64url(opsflags_internal.api_key_random(32));
    INSERT INTO opsflags_internal.console_sessions (token_hash, role_oid, client_addr, user_agent)
    VALUES (sha256(convert_to(tok, 'UTF8')), roleid, console_sign_in.client_addr, left(console_sign_in.user_agent, 512))
    RETURNING * INTO s;
    PERFORM opsflags_internal.console_session_audit('SIGN_IN', s, role_name, role_name);
    RETURN QUERY SELECT 200, tok, opsflags_internal.console_csrf_token(tok), role_name,
                        opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at), s.id;
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_sign_in(text, text, inet, text) IS
  'HTTP server: sign in to the console as a role with its password; 200 with a new session''s token, 401 or 429';

-- For the HTTP server's database worker, per request, in a read-write
-- transaction.  status:
--   200  token is a live session's: role, session_id, expires_at;
--   401  token is malformed, unknown, signed out or expired, or its role no
--        longer exists or has lost LOGIN;
--   403  a live session, but csrf (when given) is not its CSRF token.
-- last_seen_at is written at most once a minute (more often with an idle
-- timeout under two minutes), so that most checks only read.
CREATE FUNCTION opsflags_internal.console_session_check(token text, csrf text DEFAULT NULL)
RETURNS TABLE (status integer, role text, session_id bigint, expires_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h     bytea;
    s     opsflags_internal.console_sessions;
    rname text;
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{43}$' THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    h := sha256(convert_to(token, 'UTF8'));
    SELECT * INTO s FROM opsflags_internal.console_sessions c WHERE c.token_hash = h;
    IF FOUND AND opsflags_internal.api_key_hash_matches(s.token_hash, h)
       AND opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at) > now() THEN
        SELECT a.rolname INTO rname FROM pg_catalog.pg_roles a WHERE a.oid = s.role_oid AND a.rolcanlogin;
    END IF;
    IF rname IS NULL THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    IF csrf IS NOT NULL
       AND NOT opsflags_internal.api_key_hash_matches(convert_to(csrf, 'UTF8'),
                                                      convert_to(opsflags_internal.console_csrf_token(token), 'UTF8')) THEN
        RETURN QUERY SELECT 403, NULL::text, s.id, NULL::timestamptz;
        RETURN;
    END IF;
    IF s.last_seen_at <= now() - least(interval '1 minute',
                                       make_interval(secs => opsflags_internal.console_idle_timeout()) / 2) THEN
        -- the condition again: a concurrent check may have written it
        UPDATE opsflags_internal.console_sessions c SET last_seen_at = now()
        WHERE c.id = s.id AND c.last_seen_at < now();
        -- signed out meanwhile (the update waited for that to commit)
        IF NOT FOUND AND NOT EXISTS (SELECT FROM opsflags_internal.console_sessions c WHERE c.id = s.id) THEN
            RETURN QUERY SELECT 401, NULL::text, NULL::bigint, NULL::timestamptz;
            RETURN;
        END IF;
        s.last_seen_at := greatest(s.last_seen_at, now());
    END IF;
    RETURN QUERY SELECT 200, rname, s.id,
                        opsflags_internal.console_session_expires_at(s.created_at, s.last_seen_at);
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_session_check(text, text) IS
  'HTTP server: the role of a console session token (200), 401, or 403 when the CSRF token given is wrong';

-- For the HTTP server's database worker: end the session of token (expired
-- or not).  false: no session has this token.
CREATE FUNCTION opsflags_internal.console_sign_out(token text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h     bytea;
    s     opsflags_internal.console_sessions;
    rname text;
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{43}$' THEN
        RETURN false;
    END IF;
    h := sha256(convert_to(token, 'UTF8'));
    DELETE FROM opsflags_internal.console_sessions c WHERE c.token_hash = h RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    rname := pg_get_userbyid(s.role_oid);
    PERFORM opsflags_internal.console_session_audit('SIGN_OUT', s, rname, rname);
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags_internal.console_sign_out(text) IS
  'HTTP server: end the console session of a token (false: no such session)';

-- SECURITY DEFINER: admins, and every role for its own sessions, without
-- access to the table.
CREATE FUNCTION opsflags.console_sign_out_all(role regrole)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    s opsflags_internal.console_sessions;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM opsflags_internal.console_check_sign_out(role::oid);
    FOR s IN DELETE FROM opsflags_internal.console_sessions c WHERE c.role_oid = role::oid RETURNING * LOOP
        PERFORM opsflags_internal.console_session_audit('SIGN_OUT', s, session_user, opsflags_internal.api_key_caller());
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION opsflags.console_sign_out_all(regrole) IS
  'End every web console session of a role at once (admins, and the role itself); returns how many';

REVOKE ALL ON FUNCTION
    opsflags_internal.console_password_check(text, text, text),
    opsflags_internal.console_log_throttled(text, text), opsflags_internal.console_csrf_mac(text),
    opsflags_internal.console_idle_timeout(), opsflags_internal.console_max_age(),
    opsflags_internal.console_check_sign_out(oid),
    opsflags_internal.console_session_expires_at(timestamptz, timestamptz),
    opsflags_internal.console_csrf_token(text),
    opsflags_internal.console_session_audit(text, opsflags_internal.console_sessions, text, text),
    opsflags_internal.console_sign_in(text, text, inet, text),
    opsflags_internal.console_session_check(text, text), opsflags_internal.console_sign_out(text)
FROM PUBLIC;
-- What the view calls (nothing secret).
GRANT EXECUTE ON FUNCTION
    opsflags_internal.console_idle_timeout(), opsflags_internal.console_max_age(),
    opsflags_internal.console_session_expires_at(timestamptz, timestamptz)
TO opsflags_admin;
GRANT SELECT ON opsflags.console_sessions_view TO opsflags_admin;


-- ==== Tenant-scoped audit (src/audit.sql) ====
-- audit_log.tenant; audit_table(target, tenant_column) (the trigger's fifth
-- argument, kept by new partitions and children); tenant_admins,
-- grant_tenant_admin, revoke_tenant_admin, tenant_admins_view; row security
-- on audit_log: admins read every row, a tenant admin its tenants' rows.

ALTER TABLE opsflags.audit_log ADD COLUMN tenant text;
COMMENT ON FUNCTION opsflags.audit_trigger() IS
  'Records row changes in opsflags.audit_log (FOR EACH ROW, plus FOR EACH STATEMENT to write them); arguments: resource_type [, id_column [, redact_column, when_column [, tenant_column]]]';;

DROP FUNCTION opsflags.audit_table(regclass);
DROP FUNCTION opsflags_internal.audit_attach(regclass, text);

-- The arguments of a trigger, from pg_trigger.tgargs (each one
-- NUL-terminated, in the server encoding).
CREATE FUNCTION opsflags_internal.audit_trigger_args(tgargs bytea)
RETURNS text[]
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args text[] := '{}';
    rest bytea := tgargs;
    p    integer;
BEGIN
    LOOP
        p := position('\x00'::bytea IN rest);
        EXIT WHEN p = 0;
        args := args || convert_from(substring(rest FROM 1 FOR p - 1), current_setting('server_encoding'));
        rest := substring(rest FROM p + 1);
    END LOOP;
    RETURN args;
END
$$;

-- The triggers on one table (no-op for what is already there).  Triggers
-- that name another tenant column are made again, keeping their resource
-- type.
CREATE FUNCTION opsflags_internal.audit_attach(target regclass, resource_type text, tenant_column text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rtype    text := resource_type;
    existing text[];
    args     text;
    trig     text;
BEGIN
    SELECT opsflags_internal.audit_trigger_args(t.tgargs) INTO existing FROM pg_trigger t
    WHERE t.tgrelid = target AND t.tgname IN ('opsflags_audit', 'opsflags_audit_statement')
    ORDER BY t.tgname LIMIT 1;
    IF existing[1] IS NOT NULL THEN
        rtype := existing[1];
    END IF;
    FOREACH trig IN ARRAY ARRAY['opsflags_audit', 'opsflags_audit_statement'] LOOP
        SELECT opsflags_internal.audit_trigger_args(t.tgargs) INTO existing FROM pg_trigger t
        WHERE t.tgrelid = target AND t.tgname = trig;
        IF FOUND AND nullif(existing[5], '') IS DISTINCT FROM tenant_column THEN
            EXECUTE format('DROP TRIGGER %I ON %s', trig, target);
        END IF;
    END LOOP;
    -- Without a tenant, the one argument of earlier versions.
    args := CASE WHEN tenant_column IS NULL THEN format('%L', rtype)
                 ELSE format('%L, %L, %L, %L, %L', rtype, '', '', '', tenant_column) END;
    -- A partitioned table gets no row trigger: PostgreSQL would clone it
    -- onto each new partition with the privileges of whoever creates the
    -- partition (who need not be allowed to use audit_trigger).  Each
    -- partition gets its own instead (audit_table, audit_new_children).
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = target) = 'p' THEN
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('DROP TRIGGER opsflags_audit ON %s', target);
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger(%s)', target, args);
    END IF;
    -- The statement trigger carries the tenant column too: it is the one a
    -- partitioned table has, which its new partitions copy.
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit_statement') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger(%s)', target, args);
    END IF;
    -- ALWAYS: also under session_replication_role = replica.
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target
               AND t.tgname IN ('opsflags_audit', 'opsflags_audit_statement') AND t.tgenabled <> 'A') THEN
        EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit_statement', target);
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit', target);
        END IF;
    END IF;
END
$$;

-- The table and every inheritance child and partition, at any depth.
-- tenant_column: the column holding each row's tenant (NULL: none); a
-- later call with another one (or none) changes it.
CREATE FUNCTION opsflags.audit_table(target regclass, tenant_column name DEFAULT NULL)
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
    IF tenant_column IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = tenant_column
                       AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', tenant_column, name
            USING ERRCODE = 'undefined_column';
    END IF;
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        PERFORM opsflags_internal.audit_attach(rel, name, tenant_column::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.audit_table(regclass, name) IS
  'Record every change to the table, its inheritance children and its partitions (also later ones) in opsflags.audit_log; tenant_column: the column holding each row''s tenant';

-- A table made a child or partition of an audited table (CREATE TABLE ...
-- INHERITS / PARTITION OF, ALTER TABLE ... INHERIT / ATTACH PARTITION) is
-- audited like its parent, whoever runs the command.
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
        SELECT DISTINCT ON (u.relid) u.relid::regclass AS relid,
               opsflags_internal.audit_trigger_args(t.tgargs) AS args
        FROM up u
        JOIN pg_trigger t ON t.tgrelid = u.ancestor AND t.tgname = 'opsflags_audit_statement'
                         AND t.tgfoid = 'opsflags.audit_trigger()'::regprocedure
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger m WHERE m.tgrelid = u.relid AND m.tgname = 'opsflags_audit_statement'
                          AND m.tgenabled = 'A')
        ORDER BY u.relid, u.depth
    LOOP
        -- The parent's resource type and tenant column.
        PERFORM opsflags_internal.audit_attach(r.relid, r.args[1], nullif(r.args[5], ''));
    END LOOP;
END
$$;
-- Tenants.  An audited table may name a tenant column (audit_table); its
-- audit rows record the row's tenant.  A tenant admin of tenant T (a role
-- in tenant_admins, or any member of one) reads the audit rows of T, and
-- only those; admins read every row (audit_log's policy below).

CREATE TABLE opsflags.tenant_admins (
    -- The role's OID (a name is what a dump holds): a renamed role stays
    -- tenant admin.  Its SELECT right on audit_log keeps it from being
    -- dropped while it is one.
    role       regrole NOT NULL,
    tenant     text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (role, tenant)
);
COMMENT ON TABLE opsflags.tenant_admins IS
  'Roles that read the audit rows of a tenant (and so do their members); changed by grant_tenant_admin and revoke_tenant_admin';
SELECT pg_catalog.pg_extension_config_dump('opsflags.tenant_admins', '');

-- Grants and revokes are audited, with their tenant: a tenant's admins see
-- who else administers it.
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.tenant_admins
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.tenant_admins'))
    EXECUTE FUNCTION opsflags.audit_trigger('tenant_admin', '', '', '', 'tenant');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.tenant_admins
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('tenant_admin', '', '', '', 'tenant');
ALTER TABLE opsflags.tenant_admins ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.tenant_admins ENABLE ALWAYS TRIGGER audit_statement;

-- Tenant admins with the roles that read each tenant's rows through the
-- grant: the role and every role that is a member of it (superusers, who
-- read everything anyway, left out).
CREATE VIEW opsflags.tenant_admins_view AS
SELECT t.role::text AS role, t.tenant, t.granted_at, t.granted_by,
       ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
             WHERE pg_catalog.pg_has_role(r.oid, t.role::oid, 'MEMBER') AND NOT r.rolsuper
             ORDER BY r.rolname) AS readers
FROM opsflags.tenant_admins t;
COMMENT ON VIEW opsflags.tenant_admins_view IS
  'Tenant admins; readers: the roles that read the tenant''s audit rows through the grant (the role and its members)';

-- The roles the tenant admins' SELECT right on audit_log is not granted to
-- or revoked from: opsflags_admin and the table's owner have theirs.
CREATE FUNCTION opsflags_internal.tenant_admin_own_right(r regrole)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r::oid IN ((SELECT oid FROM pg_roles WHERE rolname = 'opsflags_admin'),
                      (SELECT c.relowner FROM pg_class c WHERE c.oid = 'opsflags.audit_log'::regclass))
$$;

-- SECURITY DEFINER: they write tenant_admins and grant SELECT on audit_log
-- as their owner.  The lock serializes them: two GRANTs on one table at
-- once would fail.
CREATE FUNCTION opsflags.grant_tenant_admin(role regrole, tenant text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOCK TABLE opsflags.tenant_admins IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO opsflags.tenant_admins AS t (role, tenant, granted_by)
    VALUES (grant_tenant_admin.role, grant_tenant_admin.tenant, session_user)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT opsflags_internal.tenant_admin_own_right(role) THEN
        EXECUTE format('GRANT SELECT ON opsflags.audit_log TO %s', role);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags.grant_tenant_admin(regrole, text) IS
  'Let the role (and its members) read the audit rows of the tenant; false: it already could';

CREATE FUNCTION opsflags.revoke_tenant_admin(role regrole, tenant text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOCK TABLE opsflags.tenant_admins IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM opsflags.tenant_admins t
    WHERE t.role = revoke_tenant_admin.role AND t.tenant = revoke_tenant_admin.tenant;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM opsflags.tenant_admins t WHERE t.role = revoke_tenant_admin.role)
       AND NOT opsflags_internal.tenant_admin_own_right(role) THEN
        EXECUTE format('REVOKE SELECT ON opsflags.audit_log FROM %s', role);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags.revoke_tenant_admin(regrole, text) IS
  'Stop the role (and its members) reading the audit rows of the tenant; false: it was no tenant admin of it';

-- Who reads which audit rows, asked once per query by audit_log's policy.
CREATE FUNCTION opsflags_internal.audit_reads_all()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_audit_reads_all';
COMMENT ON FUNCTION opsflags_internal.audit_reads_all() IS
  'Does the current role read every audit row (superuser, owner, opsflags_admin)?';
CREATE FUNCTION opsflags_internal.audit_reader_tenants()
RETURNS text[]
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_audit_reader_tenants';
COMMENT ON FUNCTION opsflags_internal.audit_reader_tenants() IS
  'The tenants whose audit rows the current role reads (as a tenant admin or a member of one)';

-- Admins read every row, a tenant admin the rows of its tenants; nobody
-- else has SELECT.  No other policy: INSERT, UPDATE and DELETE are refused
-- to all but the owner (audit_trigger writes the heap directly, and the
-- guard triggers keep the owner from changing rows).  The owner and
-- superusers bypass row security.  The sub-selects make the two functions
-- run once per query, not once per row.
ALTER TABLE opsflags.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_read ON opsflags.audit_log FOR SELECT
    USING ((SELECT opsflags_internal.audit_reads_all())
           OR tenant = ANY ((SELECT opsflags_internal.audit_reader_tenants())::text[]));

REVOKE ALL ON FUNCTION
    opsflags.audit_table(regclass, name),
    opsflags_internal.audit_attach(regclass, text, text), opsflags_internal.audit_trigger_args(bytea),
    opsflags_internal.tenant_admin_own_right(regrole),
    opsflags.grant_tenant_admin(regrole, text), opsflags.revoke_tenant_admin(regrole, text)
FROM PUBLIC;
GRANT SELECT ON opsflags.tenant_admins, opsflags.tenant_admins_view TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags_internal.audit_reads_all(), opsflags_internal.audit_reader_tenants()
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.audit_table(regclass, name),
    opsflags_internal.audit_attach(regclass, text, text), opsflags_internal.audit_trigger_args(bytea),
    opsflags.grant_tenant_admin(regrole, text), opsflags.revoke_tenant_admin(regrole, text)
TO opsflags_admin;


-- ==== The management API (src/http_api.sql) ====
-- What the HTTP server's /api/v1 asks the database: api_sign_in,
-- api_authenticate, api_call (run as the requesting role) and its helpers,
-- api_openapi.

-- The API's error document, as the server writes its own.
CREATE FUNCTION opsflags_internal.api_error(sqlstate text, message text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN '{"error": {"sqlstate": ' || to_json(sqlstate)::text || ', "message": ' || to_json(message)::text || '}}';

-- A percent-encoded part of a URL, decoded as url_decode() decodes it
-- (http_unleash.sql); 22023 for bytes that are not UTF-8.
CREATE FUNCTION opsflags_internal.api_decode(s text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text := opsflags_internal.url_decode(s);
BEGIN
    IF d IS NULL AND s IS NOT NULL THEN
        RAISE EXCEPTION 'the URL is not UTF-8 once decoded' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN d;
END
$$;

-- The value of a query string parameter (the first), decoded; NULL: absent or empty.
CREATE FUNCTION opsflags_internal.api_param(query text, name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(opsflags_internal.api_decode(substr(p, length(name) + 2)), '')
    FROM unnest(string_to_array(query, '&')) WITH ORDINALITY q(p, o)
    WHERE p LIKE name || '=%' OR p = name
    ORDER BY o LIMIT 1
$$;

-- A request body: a JSON object (22023 otherwise; '{}' without a body).
CREATE FUNCTION opsflags_internal.api_body(body text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b jsonb;
BEGIN
    IF body IS NULL OR btrim(body, E' \t\r\n') = '' THEN
        RETURN '{}';
    END IF;
    BEGIN
        b := body::jsonb;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'the body is not valid JSON' USING ERRCODE = 'invalid_text_representation';
    END;
    IF jsonb_typeof(b) <> 'object' THEN
        RAISE EXCEPTION 'the body must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN b;
END
$$;

-- 22023 for a field of b not in allowed.
CREATE FUNCTION opsflags_internal.api_fields(b jsonb, allowed text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f text := (SELECT k FROM jsonb_object_keys(b) k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1);
BEGIN
    IF f IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field "%"', left(f, 100)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('The fields are %s.', array_to_string(allowed, ', '));
    END IF;
END
$$;

-- A field of a body as a string, a boolean or an array of strings: NULL
-- when absent or null (22004 when required), 22023 for another type.
CREATE FUNCTION opsflags_internal.api_text(b jsonb, field text, required boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(jsonb_typeof(b -> field), 'null') = 'null' THEN
        IF required THEN
            RAISE EXCEPTION 'field "%" is required', field USING ERRCODE = 'null_value_not_allowed';
        END IF;
        RETURN NULL;
    ELSIF jsonb_typeof(b -> field) <> 'string' THEN
        RAISE EXCEPTION 'field "%" must be a string', field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN b ->> field;
END
$$;

CREATE FUNCTION opsflags_internal.api_bool(b jsonb, field text, required boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(jsonb_typeof(b -> field), 'null') = 'null' THEN
        IF required THEN
            RAISE EXCEPTION 'field "%" is required', field USING ERRCODE = 'null_value_not_allowed';
        END IF;
        RETURN NULL;
    ELSIF jsonb_typeof(b -> field) <> 'boolean' THEN
        RAISE EXCEPTION 'field "%" must be true or false', field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (b -> field)::boolean;
END
$$;

CREATE FUNCTION opsflags_internal.api_strings(b jsonb, field text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(jsonb_typeof(b -> field), 'null') = 'null' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(b -> field) <> 'array'
          OR EXISTS (SELECT FROM jsonb_array_elements(b -> field) e WHERE jsonb_typeof(e) <> 'string') THEN
        RAISE EXCEPTION 'field "%" must be an array of strings', field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ARRAY(SELECT jsonb_array_elements_text(b -> field));
END
$$;

-- A field of a CSV line (RFC 4180): quoted when it holds a quote, a comma
-- or a line break.
CREATE FUNCTION opsflags_internal.api_csv_field(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN v IS NULL THEN ''
            WHEN v ~ '[",\r\n]' THEN '"' || replace(v, '"', '""') || '"'
            ELSE v END;

-- POST /api/v1/session: sign in with {"role", "password"}; for the HTTP
-- server's database worker (a superuser), in a read-write transaction that
-- it commits whatever the status (failures are counted).  status 200 with
-- the session's token (for the cookie only) and {"role", "csrf_token",
-- "expires_at"}; 400 (malformed body), 401 (every reason alike), 429 with
-- retry_after (seconds).
CREATE FUNCTION opsflags_internal.api_sign_in(body text, client_addr text, user_agent text,
                                              OUT status integer, OUT token text, OUT document text,
                                              OUT retry_after integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b    jsonb;
    addr inet;
    r    record;
BEGIN
    BEGIN
        b := body::jsonb;
    EXCEPTION WHEN others THEN
        b := NULL;
    END;
    IF jsonb_typeof(b) IS DISTINCT FROM 'object' OR jsonb_typeof(b -> 'role') IS DISTINCT FROM 'string'
       OR jsonb_typeof(b -> 'password') IS DISTINCT FROM 'string' THEN
        status := 400;
        document := opsflags_internal.api_error('22023', 'the body must be a JSON object with strings "role" and "password"');
        RETURN;
    END IF;
    BEGIN
        addr := client_addr::inet;
    EXCEPTION WHEN others THEN
        addr := NULL;
    END;
    SELECT * INTO r FROM opsflags_internal.console_sign_in(b ->> 'role', b ->> 'password', addr, user_agent);
    status := r.status;
    IF status = 200 THEN
        token := r.token;
        document := jsonb_build_object('role', r.role, 'csrf_token', r.csrf_token, 'expires_at', r.expires_at)::text;
    ELSIF status = 429 THEN
        -- the end of the window that refused it (console_sign_in's 15 minutes)
        retry_after := greatest(1, ceil(extract(epoch FROM
                           (SELECT max(f.window_start) FROM opsflags_internal.console_signin_failures f
                            WHERE (f.kind = 'role' AND f.key = b ->> 'role' AND f.failures >= 5)
                               OR (f.kind = 'address' AND f.key = host(addr) AND f.failures >= 20))
                           + interval '15 minutes' - now()))::integer);
        document := opsflags_internal.api_error('53400', 'too many failed sign-ins: try again later');
    ELSE
        status := 401;
        document := opsflags_internal.api_error('28P01', 'the role name or the password is wrong');
    END IF;
END
$$;

-- Who a request to /api/v1 is, for the HTTP server's database worker, in
-- a read-write transaction (a session's last_seen_at is written): a
-- console session (token; csrf: the X-CSRF-Token of a write, NULL for a
-- read), else an admin API key, which acts as its as_role.  status 200
-- with the role's OID, the key's id and {"role", "csrf_token",
-- "expires_at"}; 401 or 403 with an error document.
CREATE FUNCTION opsflags_internal.api_authenticate(token text, csrf text, api_key text)
RETURNS TABLE (status integer, role_oid oid, key_id bigint, document text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text[] := regexp_match(api_key, '^opsf_a_([0-9a-f]{12})_');
    r record;
BEGIN
    IF api_key IS NOT NULL THEN
        SELECT * INTO r FROM opsflags_internal.api_key_authorize(
            api_key, (SELECT a.environment FROM opsflags.api_keys a WHERE a.prefix = m[1]), '{admin}');
        IF r.status = 200 AND r.key_id IS NOT NULL THEN
            RETURN QUERY SELECT 200, g.oid, r.key_id,
                                jsonb_build_object('role', r.as_role, 'csrf_token', NULL, 'expires_at', NULL)::text
                         FROM pg_catalog.pg_roles g WHERE g.rolname = r.as_role;
            IF FOUND THEN
                RETURN;
            END IF;
        ELSIF r.status = 403 THEN
            RETURN QUERY SELECT 403, NULL::oid, NULL::bigint,
                                opsflags_internal.api_error('42501', 'only admin API keys may use the management API');
            RETURN;
        END IF;
        RETURN QUERY SELECT 401, NULL::oid, NULL::bigint,
                            opsflags_internal.api_error('28000', 'the API key is not a valid admin key');
        RETURN;
    END IF;
    SELECT * INTO r FROM opsflags_internal.console_session_check(token, csrf);
    IF r.status = 200 THEN
        RETURN QUERY SELECT 200, g.oid, NULL::bigint,
                            jsonb_build_object('role', r.role, 'csrf_token', opsflags_internal.console_csrf_token(token),
                                               'expires_at', r.expires_at)::text
                     FROM pg_catalog.pg_roles g WHERE g.rolname = r.role;
        IF FOUND THEN
            RETURN;
        END IF;
    ELSIF r.status = 403 THEN
        RETURN QUERY SELECT 403, NULL::oid, NULL::bigint,
                            opsflags_internal.api_error('42501', 'the X-CSRF-Token header is not this session''s');
        RETURN;
    END IF;
    RETURN QUERY SELECT 401, NULL::oid, NULL::bigint,
                        opsflags_internal.api_error('28000', 'the session has ended: sign in again');
END
$$;

-- The audit rows of a request: filters from the query string, newest
-- first, as JSON {"audit": [...]} or CSV.
CREATE FUNCTION opsflags_internal.api_audit(query text, csv boolean, flag_key text DEFAULT NULL)
RETURNS TABLE (status integer, content_type text, document text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lim     integer;
    since   timestamptz;
    until   timestamptz;
    fid     text;
    rows    jsonb;
    columns constant text[] := '{id,occurred_at,actor,role,action,resource_type,resource_id,table_name,old_values,new_values,client_addr,application_name,txid,tenant}';
BEGIN
    BEGIN
        lim := coalesce(opsflags_internal.api_param(query, 'limit')::integer, 100);
        since := opsflags_internal.api_param(query, 'since')::timestamptz;
        until := opsflags_internal.api_param(query, 'until')::timestamptz;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'limit must be an integer, since and until timestamps' USING ERRCODE = 'invalid_parameter_value';
    END;
    IF lim NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF flag_key IS NOT NULL THEN
        fid := (SELECT f.id::text FROM opsflags.feature_flags f WHERE f.flag_key = api_audit.flag_key);
    END IF;
    SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.id DESC), '[]') INTO rows
    FROM (SELECT l.* FROM opsflags.audit_log l
          WHERE (flag_key IS NULL
                 OR (l.resource_type = 'feature_flag' AND l.resource_id = flag_key)
                 OR (l.resource_type IN ('flag_config', 'prerequisite')
                     AND coalesce(l.new_values, l.old_values) ->> 'flag_id' = fid))
            AND l.resource_type = coalesce(opsflags_internal.api_param(query, 'resource_type'), l.resource_type)
            AND l.resource_id IS NOT DISTINCT FROM coalesce(opsflags_internal.api_param(query, 'resource_id'), l.resource_id)
            AND l.actor = coalesce(opsflags_internal.api_param(query, 'actor'), l.actor)
            AND l.role = coalesce(opsflags_internal.api_param(query, 'role'), l.role)
            AND l.action = coalesce(upper(opsflags_internal.api_param(query, 'action')), l.action)
            AND l.occurred_at >= coalesce(since, '-infinity')
            AND l.occurred_at < coalesce(until, 'infinity')
          ORDER BY l.id DESC LIMIT lim) a;
    IF csv OR opsflags_internal.api_param(query, 'format') = 'csv' THEN
        RETURN QUERY SELECT 200, 'text/csv; charset=utf-8',
            array_to_string(columns, ',') || E'\r\n' ||
            coalesce((SELECT string_agg((SELECT string_agg(opsflags_internal.api_csv_field(r ->> c), ',' ORDER BY o)
                                         FROM unnest(columns) WITH ORDINALITY u(c, o)), E'\r\n' ORDER BY i) || E'\r\n'
                      FROM jsonb_array_elements(rows) WITH ORDINALITY e(r, i)), '');
    ELSE
        RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('audit', rows)::text;
    END IF;
END
$$;

-- The flags of an environment, filtered: search (in key, name and
-- description, any case), tag, archived (false: the default; true: only
-- archived flags; all); summary (true: the default; false: whole documents).
CREATE FUNCTION opsflags_internal.api_flags(query text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env      text := opsflags.resolve_environment(opsflags_internal.api_param(query, 'environment'));
    search   text := lower(opsflags_internal.api_param(query, 'search'));
    tag      text := opsflags_internal.api_param(query, 'tag');
    which    text := coalesce(opsflags_internal.api_param(query, 'archived'), 'false');
    summary  text := coalesce(opsflags_internal.api_param(query, 'summary'), 'true');
BEGIN
    IF which NOT IN ('true', 'false', 'all') THEN
        RAISE EXCEPTION 'archived must be true, false or all' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF summary NOT IN ('true', 'false') THEN
        RAISE EXCEPTION 'summary must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A summary leaves out targets, rules, variations and prerequisites:
    -- what a list shows, a tenth of the bytes and of the time at 1,000 flags.
    RETURN jsonb_build_object('environment', env, 'flags', coalesce((
        SELECT jsonb_agg(CASE WHEN summary = 'false' THEN opsflags_internal.flag_document(f, c, env)
                         ELSE jsonb_build_object(
                             'id', f.id, 'key', f.flag_key, 'name', f.flag_name, 'description', f.description,
                             'flag_type', f.flag_type, 'tags', to_jsonb(f.tags), 'archived', f.archived,
                             'version', f.version, 'updated_at', f.updated_at, 'environment', env,
                             'config', CASE WHEN c.flag_id IS NULL THEN NULL ELSE jsonb_build_object(
                                 'is_enabled', c.is_enabled, 'enabled_percentage', c.enabled_percentage,
                                 'enable_at', c.enable_at, 'disable_at', c.disable_at, 'version', c.version,
                                 'updated_at', c.updated_at, 'updated_by', c.updated_by) END) END
                         ORDER BY f.flag_key)
        FROM opsflags.feature_flags f
        LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = env
        WHERE (which = 'all' OR f.archived = (which = 'true'))
          AND (tag IS NULL OR tag = ANY (f.tags))
          AND (search IS NULL
               OR strpos(lower(f.flag_key), search) > 0 OR strpos(lower(f.flag_name), search) > 0
               OR strpos(lower(coalesce(f.description, '')), search) > 0)), '[]'));
END
$$;

-- A flag's document, 42704 when there is none.
CREATE FUNCTION opsflags_internal.api_flag(flag_key text, environment text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb := opsflags.get_flag(flag_key, environment);
BEGIN
    IF doc IS NULL THEN
        RAISE EXCEPTION 'feature flag "%" does not exist', flag_key USING ERRCODE = 'undefined_object';
    END IF;
    RETURN doc::text;
END
$$;

-- A request to /api/v1/<path>, run as the requesting role (SECURITY
-- INVOKER): method GET (HEAD too), POST, PUT, PATCH or DELETE; query the
-- query string, not decoded; body the request's body; csv: the client
-- accepts text/csv.  status, content_type (NULL: JSON) and the document
-- (NULL: no body), or an error of the functions it calls.
CREATE FUNCTION opsflags_internal.api_call(method text, path text, query text, body text, csv boolean DEFAULT false)
RETURNS TABLE (status integer, content_type text, document text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seg   text[] := ARRAY(SELECT opsflags_internal.api_decode(s) FROM unnest(string_to_array(rtrim(path, '/'), '/')) s);
    n     integer := coalesce(array_length(seg, 1), 0);
    env   text := opsflags_internal.api_param(query, 'environment');
    b     jsonb;
    k     text;
    rows  jsonb;
BEGIN
    IF method NOT IN ('GET', 'HEAD') THEN
        b := opsflags_internal.api_body(body);
        -- created_by and updated_by name the signed-in role, not the server's
        PERFORM set_config('opsflags.updated_by', current_user, true);
    END IF;

    IF seg[1] = 'flags' AND n = 1 THEN
        IF method = 'GET' THEN
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flags(query)::text;
            RETURN;
        ELSIF method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{key,name,description,flag_type,variations,tags,variation_names}');
            k := opsflags_internal.api_text(b, 'key', true);
            PERFORM opsflags.create_flag(k, opsflags_internal.api_text(b, 'name'),
                                         opsflags_internal.api_text(b, 'description'),
                                         coalesce(opsflags_internal.api_text(b, 'flag_type'), 'boolean'),
                                         nullif(b -> 'variations', 'null'),
                                         coalesce(opsflags_internal.api_strings(b, 'tags'), '{}'),
                                         nullif(b -> 'variation_names', 'null'));
            RETURN QUERY SELECT 201, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        END IF;
    ELSIF seg[1] = 'flags' AND n = 2 THEN
        k := seg[2];
        IF method = 'GET' THEN
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        ELSIF method = 'PATCH' THEN
            PERFORM opsflags.update_flag(k, b, env);
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        ELSIF method = 'DELETE' THEN
            PERFORM opsflags.delete_flag(k);
            RETURN QUERY SELECT 204, NULL::text, NULL::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'flags' AND n = 3 THEN
        k := seg[2];
        IF seg[3] = 'toggle' AND method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{environment,enabled}');
            env := coalesce(opsflags_internal.api_text(b, 'environment'), env);
            PERFORM opsflags.toggle_flag(k, opsflags_internal.api_bool(b, 'enabled', true), env);
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        ELSIF seg[3] = 'archive' AND method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{}');
            PERFORM opsflags.archive_flag(k);
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        ELSIF seg[3] = 'restore' AND method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{}');
            PERFORM opsflags.restore_flag(k);
            RETURN QUERY SELECT 200, NULL::text, opsflags_internal.api_flag(k, env);
            RETURN;
        ELSIF seg[3] = 'audit' AND method = 'GET' THEN
            PERFORM opsflags.flag_id(k);
            RETURN QUERY SELECT * FROM opsflags_internal.api_audit(query, csv, k);
            RETURN;
        ELSIF seg[3] = 'evaluate' AND method = 'POST' THEN
            -- what the flag serves a context in the environment, and why
            PERFORM opsflags_internal.api_fields(b, '{context,environment}');
            IF b ? 'context' AND jsonb_typeof(b -> 'context') IS DISTINCT FROM 'object' THEN
                RAISE EXCEPTION 'the context must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
            END IF;
            env := coalesce(opsflags_internal.api_text(b, 'environment'), env);
            PERFORM opsflags.flag_id(k);
            IF env IS NOT NULL THEN
                IF NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = env) THEN
                    RAISE EXCEPTION 'environment "%" does not exist', env USING ERRCODE = 'undefined_object';
                END IF;
                PERFORM set_config('opsflags.environment', env, true);
            END IF;
            RETURN QUERY SELECT 200, NULL::text, opsflags.feature_explain(k, coalesce(b -> 'context', '{}'))::text;
            RETURN;
        ELSIF seg[3] NOT IN ('toggle', 'archive', 'restore', 'audit', 'evaluate') THEN
            RAISE EXCEPTION 'no such resource' USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF seg[1] = 'environments' AND n = 1 THEN
        IF method = 'GET' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.name), '[]') INTO rows FROM opsflags.environments e;
            RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('environments', rows)::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'audit' AND n = 1 THEN
        IF method = 'GET' THEN
            RETURN QUERY SELECT * FROM opsflags_internal.api_audit(query, csv);
            RETURN;
        END IF;
    ELSIF seg[1] = 'maintenance' AND n = 1 THEN
        IF method = 'PUT' THEN
            PERFORM opsflags_internal.api_fields(b, '{enabled}');
            PERFORM opsflags.set_maintenance_mode(opsflags_internal.api_bool(b, 'enabled', true), current_user);
        END IF;
        IF method IN ('GET', 'PUT') THEN
            RETURN QUERY SELECT 200, NULL::text,
                jsonb_build_object('enabled', opsflags.is_maintenance_mode(),
                                   'enforced', opsflags.maintenance_enforced())::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'config' AND n = 1 THEN
        IF method = 'GET' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') INTO rows FROM opsflags.config_all(env) c;
            RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('config', rows)::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'config' AND n = 2 THEN
        k := seg[2];
        IF method = 'PUT' THEN
            PERFORM opsflags_internal.api_fields(b, '{value,environment,description,is_sensitive}');
            IF NOT b ? 'value' THEN
                RAISE EXCEPTION 'field "value" is required' USING ERRCODE = 'null_value_not_allowed';
            END IF;
            env := coalesce(opsflags_internal.api_text(b, 'environment'), env, 'all');
            PERFORM opsflags.config_set(k, b -> 'value', current_user, env,
                                        opsflags_internal.api_text(b, 'description'),
                                        opsflags_internal.api_bool(b, 'is_sensitive'));
            SELECT to_jsonb(c) INTO rows FROM opsflags.config_all(env) c
            WHERE c.config_key = k AND c.environment = env;
            RETURN QUERY SELECT 200, NULL::text, rows::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'deployments' AND n = 1 THEN
        IF method = 'GET' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') INTO rows FROM opsflags.get_deployment_history(env) d;
            RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('deployments', rows)::text;
            RETURN;
        ELSIF method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{version,environment,changelog,migration_notes,commit_sha,status}');
            k := opsflags.record_deployment(opsflags_internal.api_text(b, 'version', true),
                                            opsflags_internal.api_text(b, 'environment', true),
                                            opsflags_internal.api_text(b, 'changelog'), current_user,
                                            opsflags_internal.api_text(b, 'migration_notes'),
                                            opsflags_internal.api_text(b, 'commit_sha'),
                                            coalesce(opsflags_internal.api_text(b, 'status'), 'success'));
            SELECT to_jsonb(d) INTO rows FROM opsflags.deployment_history d WHERE d.id = k::uuid;
            RETURN QUERY SELECT 201, NULL::text, rows::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'deployments' AND n = 3 AND seg[3] = 'rollback' THEN
        IF method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{target_version,reason}');
            PERFORM opsflags.record_rollback(seg[2]::uuid, opsflags_internal.api_text(b, 'target_version', true),
                                             opsflags_internal.api_text(b, 'reason'));
            SELECT to_jsonb(d) INTO rows FROM opsflags.deployment_history d WHERE d.id = seg[2]::uuid;
            RETURN QUERY SELECT 200, NULL::text, rows::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'alerts' AND n = 1 THEN
        IF method = 'GET' THEN
            k := coalesce(opsflags_internal.api_param(query, 'resolved'), 'false');
            IF k NOT IN ('true', 'false', 'all') THEN
                RAISE EXCEPTION 'resolved must be true, false or all' USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.id DESC), '[]') INTO rows
            FROM opsflags.alerts a WHERE k = 'all' OR a.resolved = (k = 'true');
            RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('alerts', rows)::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'alerts' AND n = 3 AND seg[3] = 'resolve' THEN
        IF method = 'POST' THEN
            PERFORM opsflags_internal.api_fields(b, '{}');
            PERFORM opsflags.resolve_alert(seg[2]::bigint, current_user);
            SELECT to_jsonb(a) INTO rows FROM opsflags.alerts a WHERE a.id = seg[2]::bigint;
            RETURN QUERY SELECT 200, NULL::text, rows::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'segments' AND n = 1 THEN
        IF method = 'GET' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.segment_key), '[]') INTO rows FROM opsflags.user_segments g;
            RETURN QUERY SELECT 200, NULL::text, jsonb_build_object('segments', rows)::text;
            RETURN;
        END IF;
    ELSIF seg[1] = 'segments' AND n = 2 THEN
        k := seg[2];
        IF method = 'GET' THEN
            SELECT to_jsonb(g) INTO rows FROM opsflags.user_segments g WHERE g.segment_key = k;
        ELSIF method = 'PUT' THEN
            -- created with every field; an existing one has its members and rules replaced
            PERFORM opsflags_internal.api_fields(b, '{name,description,user_ids,roles,rules}');
            IF NOT EXISTS (SELECT FROM opsflags.user_segments g WHERE g.segment_key = k) THEN
                PERFORM opsflags.create_segment(k, opsflags_internal.api_text(b, 'name'),
                                                coalesce(nullif(b -> 'user_ids', 'null'), '[]'),
                                                coalesce(nullif(b -> 'roles', 'null'), '[]'),
                                                opsflags_internal.api_text(b, 'description'),
                                                coalesce(nullif(b -> 'rules', 'null'), '[]'));
                status := 201;
            ELSIF b ?| '{name,description}' THEN
                RAISE EXCEPTION 'the name and description of segment "%" are set when it is created', k
                    USING ERRCODE = 'invalid_parameter_value';
            ELSE
                PERFORM opsflags.update_segment(k, nullif(b -> 'user_ids', 'null'), nullif(b -> 'roles', 'null'),
                                                nullif(b -> 'rules', 'null'));
            END IF;
            SELECT to_jsonb(g) INTO rows FROM opsflags.user_segments g WHERE g.segment_key = k;
        END IF;
        IF method IN ('GET', 'PUT') THEN
            IF rows IS NULL THEN
                RAISE EXCEPTION 'segment "%" does not exist', k USING ERRCODE = 'undefined_object';
            END IF;
            RETURN QUERY SELECT coalesce(status, 200), NULL::text, rows::text;
            RETURN;
        END IF;
    ELSE
        RAISE EXCEPTION 'no such resource' USING ERRCODE = 'no_data_found';
    END IF;
    RAISE EXCEPTION 'method % is not allowed here', method USING ERRCODE = 'feature_not_supported';
END
$$;

-- GET /api/openapi.json: what the management API serves.
CREATE FUNCTION opsflags_internal.api_openapi()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
  'openapi', '3.1.0',
  'info', jsonb_build_object('title', 'opsflags management API', 'version', '0.6.0',
          'description', 'Requests act as a PostgreSQL role: a console session (cookie opsflags_session; writes also send X-CSRF-Token) or an admin API key (Authorization: Bearer or X-API-Key). Errors are {"error": {"sqlstate", "message"}}.'),
  'servers', jsonb_build_array(jsonb_build_object('url', '/api/v1')),
  'components', jsonb_build_object(
     'securitySchemes', jsonb_build_object(
        'session', jsonb_build_object('type', 'apiKey', 'in', 'cookie', 'name', 'opsflags_session'),
        'apiKey', jsonb_build_object('type', 'http', 'scheme', 'bearer')),
     'schemas', jsonb_build_object(
        'Error', jsonb_build_object('type', 'object', 'required', jsonb_build_array('error'),
                 'properties', jsonb_build_object('error', jsonb_build_object('type', 'object',
                     'properties', jsonb_build_object('sqlstate', jsonb_build_object('type', 'string'),
                                                      'message', jsonb_build_object('type', 'string'))))),
        'Session', jsonb_build_object('type', 'object', 'properties', jsonb_build_object(
                 'role', jsonb_build_object('type', 'string'),
                 'csrf_token', jsonb_build_object('type', jsonb_build_array('string', 'null')),
                 'expires_at', jsonb_build_object('type', jsonb_build_array('string', 'null'), 'format', 'date-time'))),
        'Flag', jsonb_build_object('type', 'object', 'description', 'opsflags.get_flag()''s document'),
        'NewFlag', jsonb_build_object('type', 'object', 'required', jsonb_build_array('key'),
                 'additionalProperties', false, 'properties', jsonb_build_object(
                 'key', jsonb_build_object('type', 'string'), 'name', jsonb_build_object('type', 'string'),
                 'description', jsonb_build_object('type', 'string'),
                 'flag_type', jsonb_build_object('enum', jsonb_build_array('boolean', 'string', 'number', 'json')),
                 'variations', jsonb_build_object('type', 'array'),
                 'tags', jsonb_build_object('type', 'array', 'items', jsonb_build_object('type', 'string')),
                 'variation_names', jsonb_build_object('type', 'object'))))),
  'security', jsonb_build_array(jsonb_build_object('session', '[]'::jsonb), jsonb_build_object('apiKey', '[]'::jsonb)),
  'paths', (
    SELECT jsonb_object_agg(p, ops)
    FROM (SELECT p, jsonb_object_agg(lower(m), jsonb_build_object('summary', s,
                        'parameters', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', x, 'in',
                                                   CASE WHEN x = 'key' THEN 'path' ELSE 'query' END,
                                                   'required', x = 'key', 'schema', jsonb_build_object('type', 'string'))), '[]')
                                       FROM unnest(params) x),
                        'responses', jsonb_build_object(
                            code, jsonb_build_object('description', 'success'),
                            'default', jsonb_build_object('description', 'an error',
                                'content', jsonb_build_object('application/json', jsonb_build_object(
                                    'schema', jsonb_build_object('$ref', '#/components/schemas/Error')))))))
                        AS ops
          FROM (VALUES
            ('/session', 'POST', 'Sign in as a role with {"role", "password"} (TLS or loopback only); sets cookie opsflags_session', '{}'::text[], '200'),
            ('/session', 'GET', 'The session: {"role", "csrf_token", "expires_at"}', '{}', '200'),
            ('/session', 'DELETE', 'Sign out; clears the cookie', '{}', '200'),
            ('/flags', 'GET', 'Flags of an environment: {"environment", "flags"}, each a summary (no targets, rules, variations or prerequisites) unless summary=false', '{environment,search,tag,archived,summary}', '200'),
            ('/flags', 'POST', 'Create a flag (create_flag): NewFlag', '{environment}', '201'),
            ('/flags/{key}', 'GET', 'A flag (get_flag)', '{key,environment}', '200'),
            ('/flags/{key}', 'PATCH', 'Change a flag''s fields (update_flag)', '{key,environment}', '200'),
            ('/flags/{key}', 'DELETE', 'Delete an archived flag (delete_flag)', '{key}', '204'),
            ('/flags/{key}/toggle', 'POST', 'Turn a flag on or off: {"environment", "enabled"} (toggle_flag)', '{key,environment}', '200'),
            ('/flags/{key}/evaluate', 'POST', 'What the flag serves a context, and why: {"context", "environment"} (feature_explain)', '{key,environment}', '200'),
            ('/flags/{key}/archive', 'POST', 'Archive a flag (archive_flag)', '{key}', '200'),
            ('/flags/{key}/restore', 'POST', 'Restore an archived flag (restore_flag)', '{key}', '200'),
            ('/flags/{key}/audit', 'GET', 'The audit rows of a flag (JSON, or CSV with Accept: text/csv or format=csv)', '{key,limit,since,until,format}', '200'),
            ('/environments', 'GET', 'The environments', '{}', '200'),
            ('/audit', 'GET', 'Audit rows the role may read, newest first (JSON, or CSV with Accept: text/csv or format=csv)', '{resource_type,resource_id,actor,role,action,since,until,limit,format}', '200'),
            ('/maintenance', 'GET', 'Maintenance mode: {"enabled", "enforced"}', '{}', '200'),
            ('/maintenance', 'PUT', 'Turn maintenance mode on or off: {"enabled"} (set_maintenance_mode)', '{}', '200'),
            ('/config', 'GET', 'Configuration (config_all; sensitive values redacted)', '{environment}', '200'),
            ('/config/{key}', 'PUT', 'Set a configuration value: {"value", "environment", "description", "is_sensitive"} (config_set)', '{key}', '200'),
            ('/deployments', 'GET', 'Deployments, newest first (get_deployment_history)', '{environment}', '200'),
            ('/deployments', 'POST', 'Record a deployment: {"version", "environment", "changelog", "migration_notes", "commit_sha", "status"} (record_deployment)', '{}', '201'),
            ('/deployments/{key}/rollback', 'POST', 'Roll a deployment back: {"target_version", "reason"} (record_rollback)', '{key}', '200'),
            ('/alerts', 'GET', 'Alerts, newest first', '{resolved}', '200'),
            ('/alerts/{key}/resolve', 'POST', 'Resolve an alert (resolve_alert)', '{key}', '200'),
            ('/segments', 'GET', 'Segments', '{}', '200'),
            ('/segments/{key}', 'GET', 'A segment', '{key}', '200'),
            ('/segments/{key}', 'PUT', 'Create a segment with {"name", "description", "user_ids", "roles", "rules"} (create_segment, 201), or replace the members and rules of one (update_segment)', '{key}', '200')
          ) v(p, m, s, params, code)
          GROUP BY p) q)
)
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.api_sign_in(text, text, text),
    opsflags_internal.api_authenticate(text, text, text)
FROM PUBLIC;

-------------------------------------------------------------------------------
-- Who flag writes are recorded as
-------------------------------------------------------------------------------

-- Who a write is recorded as in created_by and updated_by: opsflags.updated_by
-- when set (the HTTP server's management API sets it to the signed-in role
-- for its transaction), else the session user.
CREATE FUNCTION opsflags_internal.writer()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(nullif(current_setting('opsflags.updated_by', true), ''), session_user);

ALTER TABLE opsflags.feature_flags ALTER COLUMN created_by SET DEFAULT opsflags_internal.writer();
ALTER TABLE opsflags.feature_flag_configs ALTER COLUMN updated_by SET DEFAULT opsflags_internal.writer();

CREATE OR REPLACE FUNCTION opsflags_internal.touch_row()
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
            NEW.updated_by := opsflags_internal.writer();
        END IF;
    END IF;
    RETURN NEW;
END
$$;
