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

-- An UPDATE that changes nothing is not recorded; one that changes the text
-- of a value (here numeric scale) is.
SELECT coalesce(max(id), 0) AS noop_start FROM opsflags.audit_log \gset
INSERT INTO items VALUES (5, 'cup', 3.00);
UPDATE items SET price = price, name = name;
UPDATE items SET price = 3.000;
UPDATE items SET price = 3.000 WHERE id = 5;
SELECT action, old_values ->> 'price' AS old_price, new_values ->> 'price' AS new_price
FROM opsflags.audit_log WHERE id > :noop_start AND table_name = 'public.items' ORDER BY id;

-- session_replication_role = replica does not switch auditing off.
SET session_replication_role = replica;
INSERT INTO items VALUES (6, 'as replica', 1);
DELETE FROM items WHERE id = 6;
RESET session_replication_role;
SELECT action, resource_id FROM opsflags.audit_log
WHERE id > :noop_start AND table_name = 'public.items' AND resource_id = '6' ORDER BY id;

-- Inheritance children and partitions are audited with their parent, also
-- those made (or attached) later; resource_type is the audited table's name,
-- table_name the table written.
CREATE TABLE items_archive (archived_at date) INHERITS (items);
CREATE TABLE items_old () INHERITS (items_archive);
CREATE TABLE events (id int, kind text) PARTITION BY LIST (kind);
CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a');
SELECT opsflags.audit_table('events');
CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b');
CREATE TABLE events_c (id int, kind text);
ALTER TABLE events ATTACH PARTITION events_c FOR VALUES IN ('c');
SELECT coalesce(max(id), 0) AS child_start FROM opsflags.audit_log \gset
INSERT INTO items_archive VALUES (7, 'archived', 1, '2024-01-01');
INSERT INTO items_old VALUES (8, 'old', 1, '2020-01-01');
UPDATE items SET name = upper(name) WHERE id IN (7, 8);
INSERT INTO events VALUES (1, 'a'), (2, 'b'), (3, 'c');
UPDATE events_b SET id = 20;
TRUNCATE events_c;
SELECT action, resource_type, table_name, resource_id, new_values ->> 'name' AS name
FROM opsflags.audit_log WHERE id > :child_start ORDER BY id;
SELECT c.relname, count(*) FILTER (WHERE t.tgenabled = 'A') AS always, count(*) AS triggers
FROM pg_class c JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname LIKE 'opsflags_audit%'
WHERE c.relname ~ '^(items|events)' GROUP BY c.relname ORDER BY c.relname;

-- An ALTER TABLE that rewrites an audited table leaves one REWRITE row per
-- table rewritten (the rows' values are not recorded one by one).
SELECT coalesce(max(id), 0) AS rewrite_start FROM opsflags.audit_log \gset
ALTER TABLE items ALTER COLUMN price TYPE numeric(10, 1) USING price * 10;
ALTER TABLE items ALTER COLUMN name TYPE varchar;   -- no rewrite: not recorded
SELECT action, resource_type, table_name, resource_id, old_values, new_values
FROM opsflags.audit_log WHERE id > :rewrite_start ORDER BY id;

SELECT opsflags.unaudit_table('events');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'opsflags_audit%'
  AND tgrelid IN ('events'::regclass, 'events_a'::regclass, 'events_b'::regclass, 'events_c'::regclass);
DROP TABLE events;
DROP TABLE items_old, items_archive;

SELECT opsflags.unaudit_table('items');
INSERT INTO items VALUES (3, 'not audited', 1);
SELECT count(*) AS audited_after_unaudit FROM opsflags.audit_log WHERE table_name = 'public.items' AND resource_id = '3';
DROP TABLE items;
SELECT opsflags.archive_flag('audit.flag');
SELECT opsflags.config_delete('api.token');
