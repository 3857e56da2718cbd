/*
 * prerequisites.sql
 *	  Flag prerequisites (evaluation step 4): the limits on chains, the
 *	  trigger that keeps opsflags.flag_prerequisites (flags.sql) free of
 *	  cycles and within those limits, and add_prerequisite/remove_prerequisite.
 */

-------------------------------------------------------------------------------
-- Prerequisites (evaluation step 4)
-------------------------------------------------------------------------------

-- Prerequisite chains are at most this deep; evaluation stops there too.
CREATE FUNCTION opsflags.max_prerequisite_depth()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 8';

-- The most prerequisites one flag may reach, directly or through others:
-- bounds the work of one evaluation (each is evaluated once).
CREATE FUNCTION opsflags.max_prerequisite_count()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 100';

-- Refuse cycles, chains deeper than max_prerequisite_depth(), flags that
-- would reach more than max_prerequisite_count() prerequisites, and
-- variations the prerequisite does not have.
CREATE FUNCTION opsflags_internal.validate_prerequisite()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- recursive estimates are far above the rows these queries see
AS $$
DECLARE
    cycle text;
    depth integer;
    nvar  integer;
    worst_key text;
    worst bigint;
BEGIN
    -- Every query below keeps sets (UNION), not paths: its work grows with
    -- the flags and prerequisites involved, not with the number of paths
    -- through a graph of shared prerequisites.

    -- A cycle: the flag is reachable from its new prerequisite.  Then name
    -- one: walk back from the flag to the prerequisite along one edge each.
    WITH RECURSIVE reach(id, parent) AS (
        SELECT NEW.prerequisite_id, NULL::uuid
        UNION
        SELECT p.prerequisite_id, p.flag_id
        FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
        WHERE r.id <> NEW.flag_id
    ), back(id, path, n) AS (
        SELECT NEW.flag_id, ARRAY[NEW.flag_id], 1
        WHERE EXISTS (SELECT FROM reach WHERE id = NEW.flag_id)
        UNION ALL
        SELECT (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL),
               (SELECT min(r.parent::text)::uuid FROM reach r WHERE r.id = b.id AND r.parent IS NOT NULL) || b.path,
               b.n + 1
        FROM back b
        WHERE b.id <> NEW.prerequisite_id AND b.n <= (SELECT count(*) FROM reach)
    )
    SELECT (SELECT string_agg(f.flag_key, ' -> ' ORDER BY o)
            FROM unnest(NEW.flag_id || b.path) WITH ORDINALITY u(id, o) JOIN opsflags.feature_flags f ON f.id = u.id)
    INTO cycle FROM back b WHERE b.id = NEW.prerequisite_id LIMIT 1;
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION 'prerequisite would create a cycle: %', cycle
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Depth of the chains through the new edge: below the flag plus above it.
    WITH RECURSIVE down(id, d) AS (
        SELECT NEW.prerequisite_id, 1
        UNION
        SELECT p.prerequisite_id, down.d + 1 FROM down JOIN opsflags.flag_prerequisites p ON p.flag_id = down.id
        WHERE down.d <= opsflags.max_prerequisite_depth()
    ), up(id, d) AS (
        SELECT NEW.flag_id, 0
        UNION
        SELECT p.flag_id, up.d + 1 FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
        WHERE up.d <= opsflags.max_prerequisite_depth()
    )
    SELECT (SELECT max(d) FROM down) + (SELECT max(d) FROM up) INTO depth;
    IF depth > opsflags.max_prerequisite_depth() THEN
        RAISE EXCEPTION 'prerequisite chain would be % deep', depth
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Chains of prerequisites are at most %s deep.', opsflags.max_prerequisite_depth());
    END IF;

    -- Prerequisites reachable, with the new edge, from the flag and from
    -- every flag that requires it: each counted once.
    WITH RECURSIVE up(id) AS (
        SELECT NEW.flag_id
        UNION
        SELECT p.flag_id FROM up JOIN opsflags.flag_prerequisites p ON p.prerequisite_id = up.id
    ), reach(root, id) AS (
        SELECT up.id, p.prerequisite_id FROM up JOIN opsflags.flag_prerequisites p ON p.flag_id = up.id
        UNION
        SELECT up.id, NEW.prerequisite_id FROM up
        UNION
        SELECT r.root, p.prerequisite_id FROM reach r JOIN opsflags.flag_prerequisites p ON p.flag_id = r.id
    )
    SELECT f.flag_key, n INTO worst_key, worst
    FROM (SELECT r.root, count(*) AS n FROM reach r GROUP BY r.root) c
    JOIN opsflags.feature_flags f ON f.id = c.root
    ORDER BY n DESC, f.flag_key LIMIT 1;
    IF worst > opsflags.max_prerequisite_count() THEN
        RAISE EXCEPTION 'prerequisite would make flag "%" depend on % prerequisites', worst_key, worst
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A flag depends on at most %s prerequisites, directly or through other prerequisites.',
                                  opsflags.max_prerequisite_count());
    END IF;

    IF NEW.variation IS NOT NULL THEN
        SELECT jsonb_array_length(f.variations) INTO nvar FROM opsflags.feature_flags f WHERE f.id = NEW.prerequisite_id;
        IF NEW.variation >= nvar THEN
            RAISE EXCEPTION 'variation % does not exist for the prerequisite flag', NEW.variation
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The flag has %s variations, numbered from 0.', nvar);
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER validate_prerequisite BEFORE INSERT OR UPDATE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags_internal.validate_prerequisite();

CREATE FUNCTION opsflags.add_prerequisite(flag_key text, prerequisite_key text, variation integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id, variation)
    VALUES (opsflags.flag_id(flag_key), opsflags.flag_id(prerequisite_key), variation)
    ON CONFLICT (flag_id, prerequisite_id) DO UPDATE SET variation = EXCLUDED.variation;
END
$$;

CREATE FUNCTION opsflags.remove_prerequisite(flag_key text, prerequisite_key text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM opsflags.flag_prerequisites p
    WHERE p.flag_id = opsflags.flag_id(flag_key) AND p.prerequisite_id = opsflags.flag_id(prerequisite_key);
    RETURN FOUND;
END
$$;

-------------------------------------------------------------------------------
-- Privileges: changing prerequisites is for opsflags_admin.
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    opsflags_internal.validate_prerequisite(),
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    opsflags.add_prerequisite(text, text, integer), opsflags.remove_prerequisite(text, text)
TO opsflags_admin;
