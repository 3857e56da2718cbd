-- Tenant-scoped audit: audit_table's tenant column, tenant admins, and who
-- reads which audit rows.
\set SHOW_CONTEXT never
CREATE ROLE regress_tenant_admin_a;            -- tenant admin of shop-a
CREATE ROLE regress_tenant_group_b;            -- tenant admin of shop-b ...
CREATE ROLE regress_tenant_member_b IN ROLE regress_tenant_group_b;   -- ... read through membership
CREATE ROLE regress_tenant_nobody;             -- writes the tables, reads nothing
CREATE ROLE regress_tenant_sysadmin IN ROLE opsflags_admin;

CREATE TABLE orders (id int PRIMARY KEY, shop text, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON orders TO regress_tenant_nobody;

-- The tenant column must be a column of the table.
SELECT opsflags.audit_table('orders', 'no_such_column');
SELECT opsflags.audit_table('orders', 'ctid');
SELECT opsflags.audit_table('orders', '');
SELECT opsflags.audit_table('orders', 'shop');
SELECT tgname, pg_get_triggerdef(oid) ~ $$audit_trigger\('orders', '', '', '', 'shop'\)$$ AS names_shop
FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;

-- INSERT and DELETE: the row's tenant; UPDATE: the new row's, and a row that
-- moves to another tenant is recorded for both (the old tenant first);
-- TRUNCATE: none.  Written by a role with no right on audit_log.
SELECT coalesce(max(id), 0) AS start FROM opsflags.audit_log \gset
SET ROLE regress_tenant_nobody;
INSERT INTO orders VALUES (1, 'shop-a', 10), (2, 'shop-b', 20), (3, NULL, 30);
UPDATE orders SET amount = 11 WHERE id = 1;
UPDATE orders SET shop = 'shop-b' WHERE id = 1;
UPDATE orders SET shop = 'shop-a' WHERE id = 3;
DELETE FROM orders WHERE id = 2;
CREATE TEMP TABLE kept AS SELECT * FROM orders;
TRUNCATE orders;
INSERT INTO orders SELECT * FROM kept;
RESET ROLE;
SELECT action, resource_id, tenant, old_values ->> 'shop' AS old_shop, new_values ->> 'shop' AS new_shop, role
FROM opsflags.audit_log WHERE id > :start ORDER BY id;
DROP TABLE kept;

-- Any type of column; stored as its text.  audit_table again with another
-- column changes it; without one, the table has no tenant any more.
CREATE TABLE visits (id int PRIMARY KEY, shop_no int, region uuid);
SELECT opsflags.audit_table('visits', 'shop_no');
INSERT INTO visits VALUES (1, 42, '6d1f1cc4-6f7d-4b2e-9a54-0a3c8a2f61a7');
SELECT opsflags.audit_table('visits', 'region');
INSERT INTO visits VALUES (2, 43, '0b8e0c8e-7d5e-4c43-8f2a-4b1c8b7d9e10');
SELECT opsflags.audit_table('visits');
INSERT INTO visits VALUES (3, 44, NULL);
SELECT resource_id, tenant FROM opsflags.audit_log WHERE id > :start AND table_name = 'public.visits' ORDER BY id;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'visits'::regclass AND tgname LIKE 'opsflags_audit%';

-- Partitions and inheritance children keep the tenant column, also those
-- made or attached later.
CREATE TABLE sales (id int, shop text, day date) PARTITION BY RANGE (day);
CREATE TABLE sales_2024 PARTITION OF sales FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT opsflags.audit_table('sales', 'shop');
CREATE TABLE sales_2025 PARTITION OF sales FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales_2026 (day date, shop text, id int);   -- columns in another order
ALTER TABLE sales ATTACH PARTITION sales_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE orders_archive (archived date) INHERITS (orders);
INSERT INTO sales VALUES (1, 'shop-a', '2024-05-01'), (2, 'shop-b', '2025-05-01'), (3, 'shop-a', '2026-05-01');
INSERT INTO orders_archive VALUES (9, 'shop-b', 1, '2024-01-01');
SELECT table_name, resource_type, tenant FROM opsflags.audit_log
WHERE id > :start AND table_name IN ('public.sales_2024', 'public.sales_2025', 'public.sales_2026', 'public.orders_archive')
ORDER BY id;

-- A renamed tenant column: writes fail until audit_table names it again.
ALTER TABLE visits RENAME COLUMN shop_no TO shop_number;
SELECT opsflags.audit_table('visits', 'shop_no');
SELECT opsflags.audit_table('visits', 'region');
ALTER TABLE visits RENAME COLUMN region TO area;
INSERT INTO visits VALUES (4, 45, NULL);
SELECT opsflags.audit_table('visits', 'area');
INSERT INTO visits VALUES (4, 45, NULL);
SELECT resource_id, tenant FROM opsflags.audit_log WHERE id > :start AND table_name = 'public.visits' AND resource_id = '4';

-- Tenant admins: admins only; true when granted or revoked, false when
-- there was nothing to do.
SELECT opsflags.grant_tenant_admin(NULL, 'shop-a');
SELECT opsflags.grant_tenant_admin('regress_tenant_admin_a', NULL);
SELECT opsflags.grant_tenant_admin('regress_no_such_role', 'shop-a');
SET ROLE regress_tenant_nobody;
SELECT opsflags.grant_tenant_admin('regress_tenant_nobody', 'shop-a');
SELECT opsflags.revoke_tenant_admin('regress_tenant_admin_a', 'shop-a');
SELECT * FROM opsflags.tenant_admins;
RESET ROLE;
SELECT coalesce(max(id), 0) AS grants_start FROM opsflags.audit_log \gset
SET ROLE regress_tenant_sysadmin;
SELECT opsflags.grant_tenant_admin('regress_tenant_admin_a', 'shop-a') AS granted,
       opsflags.grant_tenant_admin('regress_tenant_admin_a', 'shop-a') AS again;
SELECT opsflags.grant_tenant_admin('regress_tenant_group_b', 'shop-b');
SELECT opsflags.grant_tenant_admin('regress_tenant_admin_a', 'gone') AS granted,
       opsflags.revoke_tenant_admin('regress_tenant_admin_a', 'gone') AS revoked,
       opsflags.revoke_tenant_admin('regress_tenant_admin_a', 'gone') AS again;
SELECT role, tenant, granted_by = session_user AS by_me, readers FROM opsflags.tenant_admins_view ORDER BY role, tenant;
RESET ROLE;
-- ... and audited, under their tenant.
SELECT action, resource_type, resource_id, tenant, actor = session_user AS actor_ok, role
FROM opsflags.audit_log WHERE id > :grants_start ORDER BY id;

-- Who reads what: admins every row; a tenant admin, or a member of one, the
-- rows of its tenants; anyone else nothing.
SET ROLE regress_tenant_admin_a;
SELECT action, table_name, resource_id, tenant FROM opsflags.audit_log ORDER BY id;
SET ROLE regress_tenant_member_b;
SELECT action, table_name, resource_id, tenant FROM opsflags.audit_log ORDER BY id;
SET ROLE regress_tenant_nobody;
SELECT count(*) FROM opsflags.audit_log;
RESET ROLE;
SELECT count(*) AS all_rows FROM opsflags.audit_log \gset
SET ROLE regress_tenant_sysadmin;
SELECT count(*) = :all_rows AS reads_all FROM opsflags.audit_log;
RESET ROLE;
SELECT count(DISTINCT tenant) AS tenants_seen_by_superuser FROM opsflags.audit_log WHERE id > :start;

-- The audit log stays append-only; purging stays for superusers.
SET ROLE regress_tenant_admin_a;
UPDATE opsflags.audit_log SET actor = 'me';
DELETE FROM opsflags.audit_log;
INSERT INTO opsflags.audit_log (actor, role, action, resource_type, txid, tenant) VALUES ('me', 'me', 'X', 'x', 0, 'shop-a');
SELECT opsflags.purge_audit_log(now());
RESET ROLE;

-- A tenant admin cannot be dropped; revoked, it reads nothing again.
DROP ROLE regress_tenant_admin_a;
SELECT opsflags.revoke_tenant_admin('regress_tenant_admin_a', 'shop-a');
SET ROLE regress_tenant_admin_a;
SELECT count(*) FROM opsflags.audit_log;
RESET ROLE;
SELECT opsflags.revoke_tenant_admin('regress_tenant_group_b', 'shop-b');
SET ROLE regress_tenant_member_b;
SELECT count(*) FROM opsflags.audit_log;
RESET ROLE;

DROP TABLE orders_archive, orders, visits, sales;
DROP ROLE regress_tenant_admin_a, regress_tenant_member_b, regress_tenant_group_b,
          regress_tenant_nobody, regress_tenant_sysadmin;
