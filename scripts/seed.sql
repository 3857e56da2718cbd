-- The seed examples: three flags with typical states.  Idempotent: a flag
-- that already exists is left as it is.
\set ON_ERROR_STOP 1
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags WHERE flag_key = 'posts.ai_generation') THEN
        PERFORM opsflags.create_flag('posts.ai_generation', 'AI post generation',
            'Generate post drafts with AI', 'boolean', NULL, ARRAY['posts', 'ai']);
        -- On for admins and beta users everywhere; 25% of everyone else in production.
        PERFORM opsflags.update_flag('posts.ai_generation',
            '{"is_enabled": true, "enabled_for_roles": ["admin", "beta"], "enabled_percentage": 25}', e)
        FROM unnest(ARRAY['development', 'staging', 'production']) e;
        PERFORM opsflags.update_flag('posts.ai_generation', '{"enabled_percentage": 100}', 'development');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags WHERE flag_key = 'schedules.bulk_operations') THEN
        PERFORM opsflags.create_flag('schedules.bulk_operations', 'Bulk schedule operations',
            'Edit many schedules at once', 'boolean', NULL, ARRAY['schedules']);
        -- Piloted by two named users in production, open in staging.
        PERFORM opsflags.update_flag('schedules.bulk_operations',
            '{"is_enabled": true, "enabled_for_users": ["u1", "u42"], "enabled_percentage": 1}', 'production');
        PERFORM opsflags.toggle_flag('schedules.bulk_operations', true, 'staging');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM opsflags.feature_flags WHERE flag_key = 'system.maintenance_mode') THEN
        PERFORM opsflags.create_flag('system.maintenance_mode', 'Maintenance mode',
            'Put the system in read-only mode', 'boolean', NULL, ARRAY['system', 'ops']);
    END IF;
END
$$;
