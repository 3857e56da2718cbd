-- Any role may evaluate flags; changing or reading flag state is for admins.
\set SHOW_CONTEXT never
CREATE ROLE regress_opsflags_app;
SELECT opsflags.create_flag('priv.flag', 'Privileges') IS NOT NULL AS created;
SELECT opsflags.toggle_flag('priv.flag', true);

-- A hostile text = text planted in a schema searched before pg_catalog: the
-- first evaluation of this session (which prepares the flag query) must not
-- pick it up.
CREATE FUNCTION public.never_equal(text, text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.never_equal);
SET search_path = public, pg_catalog;
SELECT 'a' = 'a' AS planted_operator_works;

SET ROLE regress_opsflags_app;
-- Evaluation needs no rights on the tables: it reads them as their owner.
SELECT opsflags.feature_enabled('priv.flag', 'u1') AS app_evaluates_with_hostile_path,
       opsflags.rollout_bucket('priv.flag', 'u1') BETWEEN 1 AND 100 AS app_buckets;
RESET ROLE;
RESET search_path;
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.never_equal(text, text);

SET ROLE regress_opsflags_app;
-- Everything else is refused.
SELECT count(*) FROM opsflags.feature_flags;
SELECT opsflags.toggle_flag('priv.flag', false);
SELECT opsflags.get_flag('priv.flag');
UPDATE opsflags.feature_flag_configs SET is_enabled = false;
RESET ROLE;

SELECT opsflags.feature_enabled('priv.flag', 'u1') AS still_on;
DROP ROLE regress_opsflags_app;
