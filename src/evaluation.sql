/*
 * evaluation.sql
 *	  Feature flag evaluation, in C (evaluation.c): feature_enabled,
 *	  feature_value, feature_explain (for a user and role, or a context) and
 *	  the feature_guard trigger; evaluate_all (evaluate_all.c), for admins.
 *	  Anyone may evaluate: the other C functions keep the default EXECUTE
 *	  for PUBLIC.
 */

-------------------------------------------------------------------------------
-- Evaluation (C)
-------------------------------------------------------------------------------

-- STABLE: one statement sees one state of the flags.  PARALLEL RESTRICTED:
-- the cache lives in the leader backend.
CREATE FUNCTION opsflags.feature_enabled(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS boolean
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_enabled';
COMMENT ON FUNCTION opsflags.feature_enabled(text, text, text) IS
  'Evaluate a feature flag for a user and role in the environment opsflags.environment; never raises, false when in doubt';

CREATE FUNCTION opsflags.feature_value(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_value';
COMMENT ON FUNCTION opsflags.feature_value(text, text, text) IS
  'The variation served to a user: on (or a weighted split) when the flag is on for them, off when not; NULL for an unknown flag';

CREATE FUNCTION opsflags.feature_explain(flag_key text, user_id text DEFAULT NULL, user_role text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_explain';
COMMENT ON FUNCTION opsflags.feature_explain(text, text, text) IS
  'Why feature_enabled answers as it does: enabled, value, reason, bucket, environment, flag_version';

-- The same, for a context: a jsonb object describing who is evaluated.  The
-- user is its "key" (or "targetingKey", OpenFeature's, or "userId",
-- Unleash's), the role its "role"; a LaunchDarkly multi-kind context is read
-- from its "user" context.  feature_enabled(flag_key, user, role) is
-- feature_enabled(flag_key, jsonb_build_object('key', user, 'role', role)).
CREATE FUNCTION opsflags.feature_enabled(flag_key text, context jsonb)
RETURNS boolean
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_enabled_context';
COMMENT ON FUNCTION opsflags.feature_enabled(text, jsonb) IS
  'Evaluate a feature flag for a context (key, role, ...) in the environment opsflags.environment; never raises, false when in doubt';

CREATE FUNCTION opsflags.feature_value(flag_key text, context jsonb)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_value_context';
COMMENT ON FUNCTION opsflags.feature_value(text, jsonb) IS
  'The variation served to a context: on (or a weighted split) when the flag is on for it, off when not; NULL for an unknown flag';

CREATE FUNCTION opsflags.feature_explain(flag_key text, context jsonb)
RETURNS jsonb
LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_feature_explain_context';
COMMENT ON FUNCTION opsflags.feature_explain(text, jsonb) IS
  'Why feature_enabled answers as it does for a context: enabled, value, reason, bucket, environment, flag_version';

-- Every flag of an environment (archived ones aside) for one context, as
-- {flag_key: feature_explain(flag_key, context)}: what a client asks for
-- at once.  In C (evaluate_all.c): the context is read once and the flags
-- evaluated from the cache.  Admins only.
CREATE FUNCTION opsflags.evaluate_all(context jsonb, environment text DEFAULT NULL)
RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_evaluate_all';
COMMENT ON FUNCTION opsflags.evaluate_all(jsonb, text) IS
  'Every flag of an environment for one context: {flag_key: feature_explain(flag_key, context)}';
REVOKE ALL ON FUNCTION opsflags.evaluate_all(jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.evaluate_all(jsonb, text) TO opsflags_admin;

CREATE FUNCTION opsflags.feature_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_feature_guard';
COMMENT ON FUNCTION opsflags.feature_guard() IS
  'Trigger: EXECUTE FUNCTION opsflags.feature_guard(''flag.key'' [, ''environment'']) refuses writes while the flag is off for session_user/current_user in that environment, else in opsflags.guard_environment, else in the server''s opsflags.environment';
