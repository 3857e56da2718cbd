/*
 * http_auth.sql
 *	  Which environment a request to the HTTP server's client endpoints
 *	  (OFREP, and the client APIs to come) is for, and whether it may be
 *	  answered: from the API key it presents (api_keys.sql), or, where no key
 *	  is required, from an environment it names or the server's own.
 */

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
