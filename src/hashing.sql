/*
 * hashing.sql
 *	  The hashes of evaluation, callable to check a user's bucket:
 *	  rollout_bucket() (percentage rollouts) and variant_bucket() (weighted
 *	  variation splits), both Unleash-compatible murmur3; and
 *	  launchdarkly_bucket() (LaunchDarkly's sha1 bucket).
 */

CREATE FUNCTION opsflags.rollout_bucket(group_id text, stickiness text)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_rollout_bucket';
COMMENT ON FUNCTION opsflags.rollout_bucket(text, text) IS
  'Unleash normalized bucket 1..100: murmur3_x86_32(group_id || '':'' || stickiness, seed 0) % 100 + 1';

CREATE FUNCTION opsflags.variant_bucket(group_id text, user_id text, total_weight integer)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_variant_bucket';
COMMENT ON FUNCTION opsflags.variant_bucket(text, text, integer) IS
  'Unleash variant hash: murmur3_x86_32(group_id || '':'' || user_id, seed 86028157) % total_weight + 1';

CREATE FUNCTION opsflags.launchdarkly_bucket(prefix text, value text)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'opsflags_launchdarkly_bucket';
COMMENT ON FUNCTION opsflags.launchdarkly_bucket(text, text) IS
  'LaunchDarkly bucket in [0, 1): the first 15 hex digits of sha1(prefix || ''.'' || value) / 0xFFFFFFFFFFFFFFF; prefix is flagKey.salt or a seed';
