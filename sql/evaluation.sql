-- Evaluation order and bucketing.
\set SHOW_CONTEXT never

-- The Unleash normalized hash: same buckets as the Unleash SDKs.
SELECT opsflags.rollout_bucket('gr1', '123') AS gr1_123, opsflags.rollout_bucket('AB12A', '122') AS ab12a_122;
SELECT opsflags.rollout_bucket('', ''), opsflags.rollout_bucket('ünïcødé', '用户');
SELECT opsflags.rollout_bucket(NULL, 'x') IS NULL AS strict;

CREATE FUNCTION set_flag(updates jsonb) RETURNS void LANGUAGE sql
AS $$ SELECT opsflags.update_flag('eval.flag', updates) $$;
SELECT opsflags.create_flag('eval.flag', 'Evaluation order') IS NOT NULL AS created;

-- 1. unknown key, NULL key, no config in the environment, archived: false.
SELECT opsflags.feature_enabled('no.such.flag'), opsflags.feature_enabled(NULL), opsflags.feature_enabled('');
DELETE FROM opsflags.feature_flag_configs
WHERE flag_id = opsflags.flag_id('eval.flag') AND environment = 'staging';
SET opsflags.environment = 'staging';
SELECT opsflags.feature_enabled('eval.flag', 'u1', 'admin') AS no_config;
RESET opsflags.environment;

-- 2. is_enabled false wins over any targeting.
SELECT set_flag('{"is_enabled": false, "enabled_for_users": ["u1"], "enabled_for_roles": ["admin"]}');
SELECT opsflags.feature_enabled('eval.flag', 'u1', 'admin') AS disabled;

-- 3. the schedule: before enable_at or at/after disable_at, false.
SELECT set_flag('{"is_enabled": true, "enable_at": "2999-01-01T00:00:00Z"}');
SELECT opsflags.feature_enabled('eval.flag', 'u1', 'admin') AS before_enable_at;
SELECT set_flag('{"enable_at": "2000-01-01T00:00:00Z", "disable_at": "2001-01-01T00:00:00Z"}');
SELECT opsflags.feature_enabled('eval.flag', 'u1', 'admin') AS after_disable_at;
SELECT set_flag('{"enable_at": "2000-01-01T00:00:00Z", "disable_at": "2999-01-01T00:00:00Z"}');
SELECT opsflags.feature_enabled('eval.flag', 'u1', 'admin') AS inside_window;

-- 5, 6. targeted users and roles are on whatever the rollout says.
SELECT set_flag('{"enabled_percentage": 1}');
SELECT u, r, opsflags.feature_enabled('eval.flag', u, r)
FROM (VALUES ('u1', NULL), ('nobody', 'admin'), ('nobody', 'guest'), (NULL, NULL)) v(u, r);

-- 8. percentage rollout: bucket(coalesce(rollout_group, flag_key), user) <= percentage.
SELECT set_flag('{"enabled_for_users": [], "enabled_for_roles": [], "enabled_percentage": 50}');
SELECT u, opsflags.rollout_bucket('eval.flag', u) AS bucket, opsflags.feature_enabled('eval.flag', u)
FROM unnest(ARRAY['alice', 'bob', 'carol', 'dave', 'erin']) u;
-- without a user id a partial rollout is off; at 100 it is on for everyone.
SELECT opsflags.feature_enabled('eval.flag', NULL, 'admin') AS anonymous_at_50;
SELECT set_flag('{"enabled_percentage": 100}');
SELECT opsflags.feature_enabled('eval.flag', NULL, NULL) AS anonymous_at_100;

-- rollout_group makes flags share buckets.
SELECT set_flag('{"rollout_group": "checkout", "enabled_percentage": 50}');
SELECT u, opsflags.rollout_bucket('checkout', u) AS bucket, opsflags.feature_enabled('eval.flag', u)
FROM unnest(ARRAY['alice', 'bob', 'carol', 'dave', 'erin']) u;

-- 9. percentage 0 and no targeting match: is_enabled decides.
SELECT set_flag('{"enabled_percentage": 0}');
SELECT opsflags.feature_enabled('eval.flag', 'anyone', 'anything') AS plain_on;

-- A share of 10,000 users in a 30% rollout.
SELECT set_flag('{"enabled_percentage": 30}');
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('eval.flag', 'user-' || i)) AS enabled_of_10000
FROM generate_series(1, 10000) i;

-- Per row in a view.
CREATE TABLE posts (id int, author text);
INSERT INTO posts SELECT i, 'user-' || i FROM generate_series(1, 5) i;
CREATE VIEW posts_with_ai AS
SELECT id, author, opsflags.feature_enabled('eval.flag', author) AS ai_enabled FROM posts;
SELECT * FROM posts_with_ai ORDER BY id;

-- Inside a transaction, the session's own change is seen by its next statement
-- and a rollback restores the committed state.
BEGIN;
SELECT opsflags.toggle_flag('eval.flag', false);
SELECT opsflags.feature_enabled('eval.flag', 'user-2') AS inside_transaction;
ROLLBACK;
SELECT opsflags.feature_enabled('eval.flag', 'user-2') AS after_rollback;

DROP VIEW posts_with_ai;
DROP TABLE posts;

-- An unknown environment: SET refuses it (42704), for every role, and the
-- session keeps its environment.
SET opsflags.environment = 'nosuch';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, current_setting('opsflags.environment') AS environment;
CREATE ROLE regress_opsflags_env_user;
SET ROLE regress_opsflags_env_user;
SELECT set_config('opsflags.environment', 'nosuch', false);
RESET ROLE;
DROP ROLE regress_opsflags_env_user;
-- ALTER ROLE/DATABASE SET may target another database: a NOTICE only.
ALTER ROLE CURRENT_USER SET opsflags.environment = 'nosuch';
ALTER ROLE CURRENT_USER RESET opsflags.environment;
-- An environment deleted after SET (or set where it cannot be checked, as in
-- postgresql.conf): every flag is off, with one WARNING per session, and
-- feature_explain says why.
INSERT INTO opsflags.environments (name) VALUES ('eval-gone');
SET opsflags.environment = 'eval-gone';
DELETE FROM opsflags.environments WHERE name = 'eval-gone';
SELECT opsflags.feature_enabled('eval.flag', 'user-' || i) AS enabled FROM generate_series(1, 3) i;
SELECT opsflags.feature_explain('eval.flag', 'user-1');
SELECT opsflags.feature_explain('no.such.flag') ->> 'reason' AS reason;
RESET opsflags.environment;
SELECT opsflags.feature_explain('eval.flag', 'user-1') ->> 'reason' AS reason_in_production;

-- Variation weights are summed in 64 bits: whatever is stored, evaluation
-- never fails and warns once per flag and cache load, not once per row.
-- (Stored here past the write-time checks, as replication could.)
SELECT opsflags.create_flag('eval.split', 'Split', NULL, 'string', '["a", "b", "c"]') IS NOT NULL AS created;
SELECT opsflags.update_flag('eval.split', '{"is_enabled": true, "on_variation": 0}');
CREATE FUNCTION set_weights(w jsonb) RETURNS void LANGUAGE sql AS $$
    SET session_replication_role = replica;
    UPDATE opsflags.feature_flag_configs SET variation_weights = w
    WHERE flag_id = opsflags.flag_id('eval.split') AND environment = 'production';
    RESET session_replication_role;
$$;
SELECT set_weights('[10000000000, 1, 1]');
SELECT opsflags.feature_value('eval.split', 'user-' || i) AS value FROM generate_series(1, 4) i;
SELECT set_weights('[1, 2147483647, 2147483647]');
SELECT opsflags.feature_value('eval.split', 'user-' || i) AS value FROM generate_series(1, 4) i;
SELECT set_weights('[1, -1, 5]');
SELECT opsflags.feature_explain('eval.split', 'user-1') ->> 'value' AS value;
-- A total up to 2147483647 splits by the variant hash.
SELECT set_weights('[1073741824, 1073741823, 0]');
SELECT count(*) FILTER (WHERE opsflags.feature_value('eval.split', 'user-' || i)
                              IS DISTINCT FROM (CASE WHEN opsflags.variant_bucket('eval.split', 'user-' || i, 2147483647) <= 1073741824
                                                     THEN '"a"' ELSE '"b"' END)::jsonb) AS mismatches
FROM generate_series(1, 1000) i;
DROP FUNCTION set_weights(jsonb);
DROP FUNCTION set_flag(jsonb);

-- A context: a jsonb object.  The user is its "key" (or "targetingKey", or
-- "userId"), the role its "role"; (key, user, role) is the same call.
SELECT opsflags.create_flag('eval.ctx') IS NOT NULL AS created;
SELECT opsflags.update_flag('eval.ctx', '{"is_enabled": true, "enabled_percentage": 1, "enabled_for_users": ["u7"], "enabled_for_roles": ["admin"]}');
SELECT c AS context, opsflags.feature_explain('eval.ctx', c) ->> 'reason' AS reason, opsflags.feature_enabled('eval.ctx', c) AS enabled
FROM (VALUES ('{"key": "u7"}'::jsonb), ('{"targetingKey": "u7"}'), ('{"userId": "u7"}'),
             ('{"key": "u8", "role": "admin"}'), ('{"key": "u8", "role": "member"}'),
             ('{"kind": "multi", "user": {"key": "u7"}, "org": {"key": "acme"}}'),
             ('{"kind": "multi", "org": {"key": "u7"}}'), ('{"kind": "user", "key": "u7"}'),
             ('{"key": 7}'), ('{"key": ["u7"]}'), ('[]'), ('"u7"'), ('{}'), (NULL)) v(c);
SELECT opsflags.feature_enabled(NULL, '{"key": "u7"}'::jsonb) AS null_key,
       opsflags.feature_value('eval.ctx', '{"key": "u7"}'::jsonb) AS value,
       opsflags.feature_value('no.such.flag', '{"key": "u7"}'::jsonb) AS unknown_value;
SELECT opsflags.feature_explain('eval.ctx', '{"userId": "u7", "country": "DE"}'::jsonb) - 'environment' AS explain;
-- The same answers as the (key, user, role) form, for every way of asking.
SELECT count(*) AS calls,
       count(*) FILTER (WHERE opsflags.feature_enabled('eval.ctx', jsonb_build_object('key', u, 'role', r))
                              = opsflags.feature_enabled('eval.ctx', u, r)
                          AND opsflags.feature_explain('eval.ctx', jsonb_build_object('key', u, 'role', r))
                              = opsflags.feature_explain('eval.ctx', u, r)) AS same
FROM unnest(ARRAY['u1', 'u7', NULL]) u, unnest(ARRAY['admin', 'member', NULL]) r;
-- evaluate_all: every flag of an environment for one context (admins).
SELECT e.key, e.value ->> 'enabled' AS enabled, e.value ->> 'reason' AS reason
FROM jsonb_each(opsflags.evaluate_all('{"key": "u7"}', 'production')) e
WHERE e.key LIKE 'eval.ctx%';
SELECT opsflags.evaluate_all('{"key": "u7"}', 'staging') -> 'eval.ctx' ->> 'reason' AS staging_reason,
       current_setting('opsflags.environment') AS environment_after;
SELECT opsflags.evaluate_all('{}', 'nosuch');
SELECT opsflags.archive_flag('eval.ctx'), opsflags.delete_flag('eval.ctx');
