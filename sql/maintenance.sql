-- Maintenance mode: writes outside schema opsflags are refused (25006).
\set SHOW_CONTEXT never
CREATE TABLE notes (id int, body text);
CREATE ROLE regress_opsflags_writer;
GRANT ALL ON notes TO regress_opsflags_writer;
CREATE TABLE notes_owned (id int, body varchar(20));
INSERT INTO notes_owned VALUES (1, 'kept');
CREATE MATERIALIZED VIEW notes_view AS SELECT count(*) AS n FROM notes_owned;
ALTER TABLE notes_owned OWNER TO regress_opsflags_writer;
ALTER MATERIALIZED VIEW notes_view OWNER TO regress_opsflags_writer;

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
-- Rewriting its own table, refreshing its own materialized view, two-phase
-- commit: refused too.
ALTER TABLE notes_owned ALTER COLUMN id TYPE bigint;
ALTER TABLE notes_owned ALTER COLUMN body TYPE varchar(50) USING upper(body);
ALTER TABLE notes_owned ADD COLUMN stamp timestamptz DEFAULT clock_timestamp();
REFRESH MATERIALIZED VIEW notes_view;
BEGIN;
SELECT count(*) FROM notes;
PREPARE TRANSACTION 'regress_opsflags_p1';
ROLLBACK;
COMMIT PREPARED 'regress_opsflags_p1';
-- ROLLBACK PREPARED is not refused (it frees what a prepared transaction holds).
ROLLBACK PREPARED 'regress_opsflags_p1';
-- DDL that does not rewrite works.
ALTER TABLE notes_owned ADD COLUMN note text;
ALTER TABLE notes_owned ALTER COLUMN body TYPE varchar(200);
-- Reads and temporary tables work.
SELECT count(*) FROM notes;
CREATE TEMP TABLE scratch (x int);
INSERT INTO scratch VALUES (1);
DROP TABLE scratch;
RESET ROLE;

-- Superusers may write.
INSERT INTO notes VALUES (3, 'superuser');
ALTER TABLE notes_owned ALTER COLUMN id TYPE bigint;
REFRESH MATERIALIZED VIEW notes_view;

-- Off again: writes work at once.
SELECT opsflags.set_maintenance_mode(false);
SET ROLE regress_opsflags_writer;
INSERT INTO notes VALUES (4, 'after maintenance');
RESET ROLE;
SELECT id, body FROM notes ORDER BY id;

SELECT id, body, note FROM notes_owned;
DROP TABLE notes;
DROP MATERIALIZED VIEW notes_view;
DROP TABLE notes_owned;
DROP ROLE regress_opsflags_writer;
SELECT opsflags.config_delete('system.maintenance_mode');
