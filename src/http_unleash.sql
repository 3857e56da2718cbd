/*
 * http_unleash.sql
 *	  What the HTTP server's Unleash endpoints (http_unleash.c) ask the
 *	  database: the frontend API's toggles for one context (written in C
 *	  from the flag cache, as the Unleash browser and mobile SDKs read them)
 *	  and the
 *	  client API's features document (unleash_features, for the server
 *	  SDKs, which evaluate locally).
 */

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
