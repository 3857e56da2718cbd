-- A few evaluations of the seed flags, shown by `make run`.
\pset footer off
SELECT f.flag_key, c.is_enabled, c.enabled_for_users, c.enabled_for_roles, c.enabled_percentage
FROM opsflags.feature_flags f
JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = current_setting('opsflags.environment')
ORDER BY f.flag_key;

SELECT k AS flag_key, u AS user_id, r AS user_role, opsflags.feature_enabled(k, u, r) AS enabled
FROM (VALUES ('posts.ai_generation', 'u1', 'admin'),
             ('posts.ai_generation', 'u2', 'member'),
             ('posts.ai_generation', 'u8', 'member'),
             ('schedules.bulk_operations', 'u1', 'member'),
             ('schedules.bulk_operations', 'u2', 'member'),
             ('system.maintenance_mode', NULL, NULL)) v(k, u, r);

-- Configuration and health.
SELECT opsflags.config_get('app_version') AS app_version,
       opsflags.health_status() -> 'checks' AS health_checks,
       opsflags.health_status() ->> 'status' AS health;
