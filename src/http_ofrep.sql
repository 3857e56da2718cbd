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
