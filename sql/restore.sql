-- COPY FROM by the owner of an opsflags table (what pg_restore and the
-- scripts of pg_dump and pg_dumpall do) loads rows as they are: constraints
-- and foreign keys apply, triggers do not check, complete, audit or announce
-- them.  Every other write, a COPY by an admin who is not the owner too, is
-- checked, completed and audited as always.
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS audit_before FROM opsflags.audit_log \gset

-- pg_dump orders tables by foreign keys only: a configuration row can come
-- before its environment, a flag config before the segment it targets.
COPY opsflags.app_config (id, config_key, config_value, environment, description, is_sensitive,
                          version, created_at, updated_at, updated_by) FROM stdin;
6d1f5e2a-0000-4000-8000-000000000001	restore.region	"north"	restore-north	\N	f	7	2024-01-01 00:00:00+00	2024-06-01 00:00:00+00	restorer
\.
COPY opsflags.environments (name, description, created_at) FROM stdin;
restore-north	Restored	2024-01-01 00:00:00+00
\.
COPY opsflags.feature_flags (id, flag_key, flag_name, flag_type, variations, version, created_at, created_by, updated_at) FROM stdin;
6d1f5e2a-0000-4000-8000-000000000002	restore.flag	Restored	boolean	[true, false]	4	2024-01-01 00:00:00+00	restorer	2024-06-01 00:00:00+00
\.
COPY opsflags.feature_flag_configs (flag_id, environment, is_enabled, segments, version, updated_at, updated_by) FROM stdin;
6d1f5e2a-0000-4000-8000-000000000002	restore-north	t	["restore.segment"]	9	2024-06-01 00:00:00+00	restorer
\.
COPY opsflags.user_segments (id, segment_key, name, user_ids, created_at, updated_at) FROM stdin;
6d1f5e2a-0000-4000-8000-000000000003	restore.segment	Restored	["u1"]	2024-01-01 00:00:00+00	2024-06-01 00:00:00+00
\.

-- As they were: versions, timestamps and writers kept; no audit row.
SELECT config_key, environment, version, created_at, updated_at, updated_by
FROM opsflags.app_config WHERE config_key = 'restore.region';
SELECT flag_key, version, created_at, updated_at FROM opsflags.feature_flags WHERE flag_key = 'restore.flag';
SELECT environment, is_enabled, segments, version, updated_at, updated_by
FROM opsflags.feature_flag_configs WHERE flag_id = '6d1f5e2a-0000-4000-8000-000000000002';
SELECT count(*) AS new_audit_rows FROM opsflags.audit_log WHERE id > :audit_before;

-- Caches follow the restored rows at once.
SET opsflags.environment = 'restore-north';
SELECT opsflags.feature_enabled('restore.flag', 'u1') AS enabled, opsflags.config_get('restore.region') AS region;
RESET opsflags.environment;

-- Outside such a COPY nothing changes: restoring() is false and the same
-- row as an INSERT is checked.
SELECT opsflags.restoring('opsflags.app_config') AS restoring;
INSERT INTO opsflags.app_config (config_key, config_value, environment) VALUES ('restore.insert', '1', 'nowhere');

-- A COPY by an admin who does not own the table is a change like any other.
CREATE ROLE regress_restore_admin IN ROLE opsflags_admin;
SET ROLE regress_restore_admin;
COPY opsflags.app_config (config_key, config_value, environment) FROM stdin;
restore.bad	1	nowhere
\.
COPY opsflags.app_config (config_key, config_value, environment, version, updated_at, updated_by) FROM stdin;
restore.admin	1	all	7	2024-06-01 00:00:00+00	someone
\.
RESET ROLE;
SELECT config_key, version, updated_at > '2024-06-01' AS updated_now, updated_by
FROM opsflags.app_config WHERE config_key = 'restore.admin';
SELECT action, resource_type, resource_id, role FROM opsflags.audit_log WHERE id > :audit_before ORDER BY id;

DELETE FROM opsflags.app_config WHERE config_key IN ('restore.region', 'restore.admin');
DELETE FROM opsflags.feature_flags WHERE flag_key = 'restore.flag';
DELETE FROM opsflags.user_segments WHERE segment_key = 'restore.segment';
DELETE FROM opsflags.environments WHERE name = 'restore-north';
DROP ROLE regress_restore_admin;
