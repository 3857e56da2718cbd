/*
 * evaluation.sql
 *	  Feature flag evaluation, in C (evaluation.c): feature_enabled,
 *	  feature_value, feature_explain and the feature_guard trigger.  Anyone
 *	  may evaluate: these keep the default EXECUTE for PUBLIC.
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

CREATE FUNCTION opsflags.feature_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_feature_guard';
COMMENT ON FUNCTION opsflags.feature_guard() IS
  'Trigger: EXECUTE FUNCTION opsflags.feature_guard(''flag.key'' [, ''environment'']) refuses writes while the flag is off for session_user/current_user in that environment, else in opsflags.guard_environment, else in the server''s opsflags.environment';
