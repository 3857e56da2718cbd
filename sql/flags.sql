-- The flag API, as a DBA uses it from psql.
\set SHOW_CONTEXT never

-- Environments that exist after install.
SELECT name, description FROM opsflags.environments ORDER BY name;

-- Create a flag: it starts off in every environment.
SELECT opsflags.create_flag('posts.ai_generation', 'AI post generation',
                            'Generate post drafts with AI', 'boolean', NULL,
                            ARRAY['posts', 'ai']) IS NOT NULL AS created;
SELECT f.flag_key, c.environment, c.is_enabled, c.enabled_percentage, c.version
FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id
ORDER BY c.environment;

-- Off until toggled, in the session's environment (opsflags.environment).
SHOW opsflags.environment;
SELECT opsflags.feature_enabled('posts.ai_generation', 'u1', 'admin');
SELECT opsflags.toggle_flag('posts.ai_generation', true);
SELECT opsflags.feature_enabled('posts.ai_generation', 'u1', 'admin');

-- Other environments are untouched.
SET opsflags.environment = 'staging';
SELECT opsflags.feature_enabled('posts.ai_generation', 'u1', 'admin');
RESET opsflags.environment;

-- Targeting and a percentage rollout, in one update.
SELECT opsflags.update_flag('posts.ai_generation',
    '{"enabled_for_users": ["u1", "u2"], "enabled_for_roles": ["admin"], "enabled_percentage": 25}');
SELECT u AS user_id, r AS user_role, opsflags.feature_enabled('posts.ai_generation', u, r)
FROM (VALUES ('u1', NULL), ('u9', 'admin'), ('u9', 'member'), (NULL, 'member')) v(u, r);

-- The document an admin reads back (volatile fields removed).
SELECT jsonb_pretty(opsflags.get_flag('posts.ai_generation')
       #- '{id}' #- '{created_at}' #- '{updated_at}' #- '{config,updated_at}');

-- Per-environment reads.
SELECT opsflags.get_flag('posts.ai_generation', 'staging') -> 'config' ->> 'is_enabled' AS staging_enabled;

-- Flag-level fields.
SELECT opsflags.update_flag('posts.ai_generation',
    '{"flag_name": "AI generation", "description": null, "tags": ["ai"], "rollout_group": "ai"}');
SELECT flag_name, description, tags, rollout_group, version FROM opsflags.feature_flags;

-- A listing of all flags.
SELECT opsflags.create_flag('schedules.bulk_operations', 'Bulk schedule operations') IS NOT NULL AS created;
SELECT f ->> 'key' AS key, f -> 'config' ->> 'is_enabled' AS enabled
FROM jsonb_array_elements(opsflags.get_flags()) f;

-- Archived flags evaluate false and leave the listing (unless asked for).
SELECT opsflags.archive_flag('schedules.bulk_operations');
SELECT opsflags.feature_enabled('schedules.bulk_operations');
SELECT jsonb_array_length(opsflags.get_flags()) AS listed,
       jsonb_array_length(opsflags.get_flags(include_archived => true)) AS with_archived;

-- Plain DML by an admin follows the same rules and bumps the version.
UPDATE opsflags.feature_flag_configs SET enabled_percentage = 100
WHERE flag_id = (SELECT id FROM opsflags.feature_flags WHERE flag_key = 'posts.ai_generation')
  AND environment = 'production';
SELECT opsflags.feature_enabled('posts.ai_generation', 'u9', 'member');
SELECT c.version, c.updated_by FROM opsflags.feature_flag_configs c
JOIN opsflags.feature_flags f ON f.id = c.flag_id
WHERE f.flag_key = 'posts.ai_generation' AND c.environment = 'production';

-- A new environment.
INSERT INTO opsflags.environments (name, description) VALUES ('eu-west', 'EU region');
SELECT opsflags.toggle_flag('posts.ai_generation', true, 'eu-west');
SET opsflags.environment = 'eu-west';
SELECT opsflags.feature_enabled('posts.ai_generation', 'u9');
RESET opsflags.environment;

-- The name defaults to the key.
SELECT opsflags.create_flag('orders.writes') IS NOT NULL AS created;
SELECT flag_name FROM opsflags.feature_flags WHERE flag_key = 'orders.writes';

-- Importing the database's own export changes nothing: a 1% rollout, a
-- flag that is off, a weighted split and targeting all stay as they are
-- (no write, no audit row).
SELECT opsflags.create_flag('ops.rollout', 'Rollout') IS NOT NULL AS created;
SELECT opsflags.update_flag('ops.rollout',
    '{"is_enabled": true, "enabled_for_users": ["u1", "u42"], "enabled_percentage": 1}');
SELECT opsflags.create_flag('ops.theme', 'Theme', NULL, 'string', '["light", "dark", "contrast"]') IS NOT NULL AS created;
SELECT opsflags.update_flag('ops.theme', '{"is_enabled": true, "variation_weights": [50, 30, 20]}');
SELECT max(id) AS audit_before FROM opsflags.audit_log \gset
SELECT opsflags.flags_for_environment('production') AS export \gset
SELECT jsonb_pretty(opsflags.import_launchdarkly('production', opsflags.flags_for_environment('production')));
SELECT count(*) AS audit_rows FROM opsflags.audit_log WHERE id > :audit_before;
SELECT opsflags.flags_for_environment('production') = :'export' AS same_export;

-- Everything that decides an answer: variations, on/off variation, weights,
-- segments and prerequisites.
SELECT opsflags.create_segment('flags.beta', 'Beta', '["u7"]') IS NOT NULL AS created;
SELECT opsflags.update_flag('ops.theme', '{"segments": ["flags.beta"]}');
SELECT opsflags.add_prerequisite('ops.theme', 'orders.writes');
SELECT jsonb_pretty(opsflags.get_flag('ops.theme') - '{id,created_at,updated_at,created_by,description,tags}'::text[]
                    #- '{config,updated_at}' #- '{config,updated_by}');

-- flag_usage lists every flag, archived ones too; archived flags can be
-- restored, and deleted.
SELECT flag_key, archived FROM opsflags.flag_usage ORDER BY flag_key;
SELECT opsflags.toggle_flag('schedules.bulk_operations', true);
SELECT opsflags.feature_enabled('schedules.bulk_operations') AS archived_enabled;
SELECT opsflags.restore_flag('schedules.bulk_operations');
SELECT flag_key, archived FROM opsflags.feature_flags WHERE flag_key = 'schedules.bulk_operations';
SELECT opsflags.feature_enabled('schedules.bulk_operations') AS restored_enabled;
SELECT opsflags.delete_flag('orders.writes');
SELECT opsflags.archive_flag('orders.writes');
SELECT opsflags.delete_flag('orders.writes');
SELECT opsflags.remove_prerequisite('ops.theme', 'orders.writes');
SELECT opsflags.delete_flag('orders.writes');
SELECT count(*) AS left_over FROM opsflags.feature_flags WHERE flag_key = 'orders.writes';
SELECT opsflags.feature_explain('orders.writes') ->> 'reason' AS deleted_reason;
SELECT resource_type, action, count(*) FROM opsflags.audit_log
WHERE id > :audit_before AND action = 'DELETE' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT opsflags.delete_flag('orders.writes');
SELECT opsflags.restore_flag('no.such.flag');
-- Clean up for the tests that follow.
SELECT opsflags.archive_flag(k), opsflags.delete_flag(k) FROM unnest(ARRAY['ops.rollout', 'ops.theme']) k;
DELETE FROM opsflags.user_segments WHERE segment_key = 'flags.beta';

-- Tables registered for pg_dump.
SELECT c.relname, x.cond
FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(oid, cond)
JOIN pg_class c ON c.oid = x.oid
WHERE e.extname = 'opsflags' ORDER BY 1;

-- The flag API's former names (update_feature_flag, get_feature_flag,
-- get_all_feature_flags) still work: each is the function it became.
SELECT opsflags.create_flag('flags.former_names') IS NOT NULL AS created;
SELECT opsflags.update_feature_flag('flags.former_names', '{"enabled_percentage": 40}', 'production');
SELECT c.enabled_percentage FROM opsflags.feature_flag_configs c
WHERE c.flag_id = opsflags.flag_id('flags.former_names') AND c.environment = 'production';
SELECT opsflags.get_feature_flag('flags.former_names', 'production') = opsflags.get_flag('flags.former_names', 'production') AS same_flag,
       opsflags.get_all_feature_flags('production', true) = opsflags.get_flags('production', true) AS same_flags;
SELECT opsflags.update_feature_flag('no.such.flag', '{}');
SELECT opsflags.archive_flag('flags.former_names'), opsflags.delete_flag('flags.former_names');
