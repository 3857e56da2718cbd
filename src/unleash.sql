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
