-- The audit trail: flags, configuration and any application table.
\set SHOW_CONTEXT never
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
SELECT opsflags.audit_table('items');
SELECT opsflags.audit_table('items');   -- idempotent

INSERT INTO items VALUES (1, 'pen', 1.50);
UPDATE items SET price = 2.00 WHERE id = 1;
DELETE FROM items WHERE id = 1;
BEGIN; INSERT INTO items VALUES (2, 'rolled back', 0); ROLLBACK;
TRUNCATE items;

SELECT action, resource_type, resource_id, table_name, old_values, new_values,
       actor = session_user AS actor_ok, role = current_user AS role_ok,
       application_name = current_setting('application_name') AS app_ok
FROM opsflags.audit_log WHERE table_name = 'public.items' ORDER BY id;

-- Flags and configuration are audited from install on; secrets are redacted.
SELECT opsflags.create_flag('audit.flag', 'Audited') IS NOT NULL AS created;
SELECT opsflags.toggle_flag('audit.flag', true);
SELECT opsflags.config_set('api.token', '"tok-123"', is_sensitive => true);
SELECT action, resource_type,
       CASE WHEN resource_type = 'flag_config' THEN 'audit.flag,' || split_part(resource_id, ',', 2)
            ELSE resource_id END AS resource,
       new_values ->> 'is_enabled' AS is_enabled, new_values ->> 'config_value' AS config_value
FROM opsflags.audit_log
WHERE resource_id IN ('audit.flag', 'api.token')
   OR resource_id LIKE (SELECT id::text FROM opsflags.feature_flags WHERE flag_key = 'audit.flag') || ',%'
ORDER BY id;

-- Append-only, for superusers too.
UPDATE opsflags.audit_log SET actor = 'someone else';
DELETE FROM opsflags.audit_log;
TRUNCATE opsflags.audit_log;
SET session_replication_role = replica;
DELETE FROM opsflags.audit_log;
RESET session_replication_role;

-- Only purge_audit_log removes rows, and it is audited itself.
SELECT opsflags.purge_audit_log(NULL);
SELECT opsflags.purge_audit_log(now() - interval '1 day') AS purged_nothing;
SELECT action, resource_type, new_values ? 'deleted' AS records_count
FROM opsflags.audit_log WHERE action = 'PURGE';

SELECT opsflags.unaudit_table('items');
INSERT INTO items VALUES (3, 'not audited', 1);
SELECT count(*) AS audited_after_unaudit FROM opsflags.audit_log WHERE table_name = 'public.items' AND resource_id = '3';
DROP TABLE items;
SELECT opsflags.archive_flag('audit.flag');
SELECT opsflags.config_delete('api.token');
