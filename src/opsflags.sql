/*
 * opsflags.sql
 *	  First part of the install script: what every capability shares.  The
 *	  role opsflags_admin, schema opsflags_internal, USAGE on both schemas
 *	  for everyone, and the immutable validators that table constraints use.
 *
 * The full install script opsflags--<version>.sql is these files
 * concatenated (the Makefile lists their order, see OPSFLAGS_SQL).  Every
 * function body refers to objects by schema-qualified names and runs with
 * a pinned search_path, so objects planted in public or pg_temp cannot
 * change what it does.  A change here ships as an upgrade script
 * sql/opsflags--A--B.sql as well.
 */

\echo Use "CREATE EXTENSION opsflags" to load this file. \quit

-- Members may change flags, configuration and deployments and read secrets
-- and the audit log.  A role is global: another database may have made it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'opsflags_admin') THEN
        CREATE ROLE opsflags_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE opsflags_admin IS 'May change opsflags flags, configuration and deployments, and read secrets and the audit log';

GRANT USAGE ON SCHEMA opsflags TO PUBLIC;

-- Schema opsflags holds the API (\df opsflags.* lists it).  Trigger
-- functions and the helpers that API functions call are not an API: they
-- live in opsflags_internal, with the same privileges they would have in
-- opsflags (USAGE for everyone, EXECUTE as each capability grants it).
CREATE SCHEMA opsflags_internal;
COMMENT ON SCHEMA opsflags_internal IS
  'opsflags: trigger functions and helpers of the API; not for direct use, may change in any version';
GRANT USAGE ON SCHEMA opsflags_internal TO PUBLIC;

-- Validators, immutable: used by table constraints and the API alike.
CREATE FUNCTION opsflags.is_valid_flag_key(flag_key text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT flag_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$' $$;
COMMENT ON FUNCTION opsflags.is_valid_flag_key(text) IS
  'true when the text is a well-formed flag key: 1 to 100 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit';

CREATE FUNCTION opsflags.is_string_array(value jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT pg_catalog.jsonb_typeof(value) OPERATOR(pg_catalog.=) 'array'
     AND NOT pg_catalog.jsonb_path_exists(value, 'strict $[*] ? (@.type() != "string")', '{}', true)
$$;
COMMENT ON FUNCTION opsflags.is_string_array(jsonb) IS
  'true when the jsonb value is an array whose elements are all strings';
