-- Maintenance mode: writes outside schema opsflags are refused (25006).
\set SHOW_CONTEXT never
CREATE TABLE notes (id int, body text);
CREATE ROLE regress_opsflags_writer;
GRANT ALL ON notes TO regress_opsflags_writer;

SELECT opsflags.is_maintenance_mode(), opsflags.maintenance_enforced();
SELECT opsflags.set_maintenance_mode(true, 'ops-oncall');
SELECT opsflags.is_maintenance_mode();
SELECT config_value, updated_by FROM opsflags.config_all() WHERE config_key = 'system.maintenance_mode';

SET ROLE regress_opsflags_writer;
INSERT INTO notes VALUES (1, 'refused');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE notes SET body = 'refused';
DELETE FROM notes;
TRUNCATE notes;
WITH w AS (INSERT INTO notes VALUES (2, 'refused') RETURNING 1) SELECT count(*) FROM w;
-- Reads and temporary tables work.
SELECT count(*) FROM notes;
CREATE TEMP TABLE scratch (x int);
INSERT INTO scratch VALUES (1);
DROP TABLE scratch;
RESET ROLE;

-- Superusers may write.
INSERT INTO notes VALUES (3, 'superuser');

-- Off again: writes work at once.
SELECT opsflags.set_maintenance_mode(false);
SET ROLE regress_opsflags_writer;
INSERT INTO notes VALUES (4, 'after maintenance');
RESET ROLE;
SELECT id, body FROM notes ORDER BY id;

DROP TABLE notes;
DROP ROLE regress_opsflags_writer;
SELECT opsflags.config_delete('system.maintenance_mode');
