/*
 * http_launchdarkly.sql
 *	  What the HTTP server's LaunchDarkly client-side endpoints
 *	  (http_launchdarkly.c) ask the database: every flag of an environment
 *	  evaluated for one context, in the format LaunchDarkly's client-side
 *	  SDKs read from /sdk/evalx and from the stream /eval, made from
 *	  evaluate_all.
 */

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
