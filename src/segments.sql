/*
 * segments.sql
 *	  User segments: named sets of user ids and roles, and of contexts their
 *	  rules match (rules.sql), that a flag config targets
 *	  (feature_flag_configs.segments; evaluation step 7), and their API.  Their cache invalidation, audit and publishing triggers are with
 *	  those capabilities (cache.sql, audit.sql, publish.sql).
 */

CREATE TABLE opsflags.user_segments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    segment_key text NOT NULL
                CONSTRAINT user_segments_segment_key_key UNIQUE
                CONSTRAINT segment_key_format CHECK (opsflags.is_valid_flag_key(segment_key)),
    name        text NOT NULL,
    description text,
    user_ids    jsonb NOT NULL DEFAULT '[]'
                CONSTRAINT user_ids_is_string_array CHECK (opsflags.is_string_array(user_ids)),
    roles       jsonb NOT NULL DEFAULT '[]'
                CONSTRAINT roles_is_string_array CHECK (opsflags.is_string_array(roles)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE opsflags.user_segments IS 'Named sets of user ids and roles that flag configs target';
SELECT pg_catalog.pg_extension_config_dump('opsflags.user_segments', '');

-- rules: a JSON array of rules without serve, checked by the segment's
-- trigger (rules.sql), which names the segment and the rule.
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
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON opsflags.user_segments TO opsflags_admin;
GRANT EXECUTE ON FUNCTION
    opsflags.create_segment(text, text, jsonb, jsonb, text, jsonb), opsflags.update_segment(text, jsonb, jsonb, jsonb)
TO opsflags_admin;
