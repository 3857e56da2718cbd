/*
 * http_api.sql
 *	  What the HTTP server's management API (http_api.c) asks the database:
 *	  sign-in with a JSON body (api_sign_in), who a request is
 *	  (api_authenticate: a console session or an admin API key), and every
 *	  request's own SQL, api_call(), run as that role, which routes it to
 *	  the same functions psql users call (create_flag, update_flag,
 *	  toggle_flag, config_all, ...), so that PostgreSQL's privileges decide.
 *	  Also the OpenAPI document of /api/openapi.json (api_openapi).
 *
 * api_call() raises the functions' own errors; the server maps their
 * SQLSTATE to an HTTP status (42501 403, 42704 and P0002 404, 23505 409,
 * 22xxx 400, other 23xxx 422) and answers {"error": {"sqlstate",
 * "message"}}.  Its own refusals (an unknown field, a value of the wrong
 * type) are 22023.
 */

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
