/*
 * http_ofrep.sql
 *	  What the HTTP server's OFREP endpoints (http_ofrep.c) ask the
 *	  database: the OpenFeature Remote Evaluation Protocol's answers for one
 *	  flag and for every flag of an environment, made from feature_explain
 *	  and evaluate_all.
 */

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

-- A ticket to the event stream of an environment (http_ofrep_stream.c),
-- valid for lifetime seconds (rounded up to the next minute): for the bulk
-- answer's eventStreams; NULL when the server offers no streams.
CREATE FUNCTION opsflags_internal.ofrep_stream_token(environment text, lifetime integer DEFAULT 600)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsflags_ofrep_stream_token';

-- One flag's evaluation as OFREP says it: {key, value, reason, variant,
-- metadata}, the value left out when the flag serves none (the caller's
-- default), or a failure {key, errorCode, errorDetails}.  keyed: the
-- context has a targeting key (a rollout that needs one says so).
CREATE FUNCTION opsflags_internal.ofrep_item(flag_key text, x jsonb, keyed boolean)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x ->> 'reason' IN ('FLAG_NOT_FOUND', 'ARCHIVED') THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'FLAG_NOT_FOUND',
                           'errorDetails', format('flag "%s" was not found', flag_key))
    WHEN x ->> 'reason' = 'ERROR' THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'GENERAL',
                           'errorDetails', format('flag "%s" could not be evaluated', flag_key))
    WHEN NOT keyed AND x ->> 'reason' = 'ROLLOUT_OUT' AND x -> 'bucket' = 'null' THEN
        jsonb_build_object('key', flag_key, 'errorCode', 'TARGETING_KEY_MISSING',
                           'errorDetails', format('flag "%s" is rolled out by percentage, which needs a targetingKey', flag_key))
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
-- body is the request's body as sent; if_none_match the request's header.  Returns the HTTP status, the bulk answer's ETag (a
-- hash of the answer itself, so it changes when the flags or the context
-- change what is served) and the document.  A bulk answer also names the
-- event stream that tells of changes (eventStreams, outside the ETag: its
-- URL carries a ticket for the environment, never the key).
CREATE FUNCTION opsflags_internal.ofrep_answer(presented text, flag_key text, body text, if_none_match text)
RETURNS TABLE (status integer, etag text, document text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    env   text;
    auth  integer;
    req   jsonb;
    ctx   jsonb;
    keyed boolean;
    x     jsonb;
    doc   jsonb;
    tag   text;
    token text;
BEGIN
    SELECT e.status, e.environment INTO auth, env
    FROM opsflags_internal.http_environment(presented, '{client,server}', current_setting('opsflags.environment')) e;
    IF auth <> 200 THEN
        RETURN QUERY SELECT auth, NULL::text,
            (jsonb_build_object('errorDetails', CASE auth WHEN 401 THEN 'a valid API key is required'
                                                          ELSE 'this API key may not do that' END))::text;
        RETURN;
    END IF;
    BEGIN
        req := coalesce(nullif(body, ''), '{}')::jsonb;
    EXCEPTION WHEN others THEN
        RETURN QUERY SELECT 400, NULL::text,
            (jsonb_strip_nulls(jsonb_build_object('key', flag_key, 'errorCode', 'PARSE_ERROR',
                                                  'errorDetails', 'the request body is not JSON')))::text;
        RETURN;
    END;
    ctx := CASE WHEN jsonb_typeof(req) = 'object' THEN coalesce(nullif(req -> 'context', 'null'), '{}') END;
    IF jsonb_typeof(ctx) IS DISTINCT FROM 'object' THEN
        RETURN QUERY SELECT 400, NULL::text,
            (jsonb_strip_nulls(jsonb_build_object('key', flag_key, 'errorCode', 'INVALID_CONTEXT',
                                                  'errorDetails', 'the request body is {"context": {...}}')))::text;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM opsflags.environments e WHERE e.name = env) THEN
        RETURN QUERY SELECT 500, NULL::text,
            (jsonb_build_object('errorDetails', format('environment "%s" does not exist', env)))::text;
        RETURN;
    END IF;
    keyed := coalesce(ctx ->> 'targetingKey', ctx ->> 'key', ctx ->> 'userId') IS NOT NULL;

    IF flag_key IS NOT NULL THEN
        PERFORM set_config('opsflags.environment', env, true);
        x := opsflags_internal.ofrep_item(flag_key, opsflags.feature_explain(flag_key, ctx), keyed);
        RETURN QUERY SELECT CASE x ->> 'errorCode' WHEN 'FLAG_NOT_FOUND' THEN 404
                                                   WHEN 'TARGETING_KEY_MISSING' THEN 400
                                                   WHEN 'GENERAL' THEN 500 ELSE 200 END,
                            NULL::text, x::text;
        RETURN;
    END IF;

    SELECT jsonb_build_object('flags', coalesce(jsonb_agg(opsflags_internal.ofrep_item(e.key, e.value, keyed) ORDER BY e.key), '[]'),
                              'metadata', jsonb_build_object('environment', env))
    INTO doc
    FROM jsonb_each(opsflags.evaluate_all(ctx, env)) e;
    tag := '"' || encode(sha256(convert_to(doc::text, 'UTF8')), 'base64') || '"';
    IF if_none_match IS NOT NULL AND (if_none_match = tag OR if_none_match = 'W/' || tag OR if_none_match = '*') THEN
        RETURN QUERY SELECT 304, tag, ''::text;
        RETURN;
    END IF;
    token := opsflags_internal.ofrep_stream_token(env);
    IF token IS NOT NULL THEN
        doc := doc || jsonb_build_object('eventStreams', jsonb_build_array(jsonb_build_object(
            'type', 'sse',
            'endpoint', jsonb_build_object('requestUri', '/ofrep/v1/stream?token=' || token),
            'inactivityDelaySec', 120)));
    END IF;
    RETURN QUERY SELECT 200, tag, doc::text;
END
$$;

REVOKE ALL ON FUNCTION
    opsflags_internal.ofrep_stream_token(text, integer), opsflags_internal.ofrep_reason(jsonb), opsflags_internal.ofrep_item(text, jsonb, boolean),
    opsflags_internal.ofrep_answer(text, text, text, text)
FROM PUBLIC;
