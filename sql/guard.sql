-- feature_guard(): an application table refuses writes while a flag is off.
\set SHOW_CONTEXT never
SELECT opsflags.create_flag('orders.writes', 'Order writes') IS NOT NULL AS created;
CREATE TABLE orders (id int PRIMARY KEY, note text);
CREATE TRIGGER orders_guard BEFORE INSERT OR UPDATE OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('orders.writes');

-- Off: writes are refused (0A000), reads work.
INSERT INTO orders VALUES (1, 'first');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) FROM orders;

-- On: writes go through and return the row.
SELECT opsflags.toggle_flag('orders.writes', true);
INSERT INTO orders VALUES (1, 'first') RETURNING *;
UPDATE orders SET note = 'changed' RETURNING *;

-- The flag is evaluated for session_user and current_user: target a role.
SELECT opsflags.update_flag('orders.writes',
    jsonb_build_object('enabled_for_roles', jsonb_build_array(current_user), 'enabled_percentage', 100));
DELETE FROM orders RETURNING id;

-- Switching it off inside a transaction takes effect at the next statement.
BEGIN;
SELECT opsflags.toggle_flag('orders.writes', false);
INSERT INTO orders VALUES (2, 'second');
ROLLBACK;
INSERT INTO orders VALUES (2, 'second') RETURNING id;

-- Statement-level and TRUNCATE guards.
CREATE TRIGGER orders_truncate_guard BEFORE TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.feature_guard('orders.writes');
SELECT opsflags.toggle_flag('orders.writes', false);
TRUNCATE orders;
SELECT count(*) FROM orders;

-- The guard evaluates in opsflags.guard_environment (empty by default: the
-- server's opsflags.environment, here production), not in the writer's
-- opsflags.environment: SET cannot switch it off.
DROP TRIGGER orders_truncate_guard ON orders;
SHOW opsflags.guard_environment;
SELECT opsflags.toggle_flag('orders.writes', true, 'development');
SET opsflags.environment = 'development';
SELECT opsflags.feature_enabled('orders.writes') AS on_in_development;
INSERT INTO orders VALUES (3, 'third');
RESET opsflags.environment;

-- Only a superuser sets opsflags.guard_environment (say, for a database or
-- role whose applications run in another environment).
CREATE ROLE regress_opsflags_guard_writer;
GRANT INSERT, SELECT ON orders TO regress_opsflags_guard_writer;
SET ROLE regress_opsflags_guard_writer;
SET opsflags.guard_environment = 'development';
SET opsflags.environment = 'development';
INSERT INTO orders VALUES (3, 'third');
RESET opsflags.environment;
RESET ROLE;
SET opsflags.guard_environment = 'development';
INSERT INTO orders VALUES (3, 'third') RETURNING id;
SET opsflags.guard_environment = 'nosuch';
RESET opsflags.guard_environment;

-- A second trigger argument names the guard's environment.
CREATE TABLE drafts (id int);
CREATE TRIGGER drafts_guard BEFORE INSERT ON drafts
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('orders.writes', 'development');
INSERT INTO drafts VALUES (1) RETURNING id;
SELECT opsflags.toggle_flag('orders.writes', false, 'development');
SELECT opsflags.toggle_flag('orders.writes', true, 'production');
INSERT INTO drafts VALUES (2);
-- One that does not exist, or is not an environment name, refuses writes.
CREATE OR REPLACE TRIGGER drafts_guard BEFORE INSERT ON drafts
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('orders.writes', 'nosuch');
INSERT INTO drafts VALUES (3);
CREATE OR REPLACE TRIGGER drafts_guard BEFORE INSERT ON drafts
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('orders.writes', 'No Such');
INSERT INTO drafts VALUES (4);
DROP TABLE drafts;
REVOKE ALL ON orders FROM regress_opsflags_guard_writer;
DROP ROLE regress_opsflags_guard_writer;

-- Misuse.
CREATE TRIGGER orders_bad_guard BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard();
INSERT INTO orders VALUES (3, 'third');
DROP TRIGGER orders_bad_guard ON orders;
CREATE TRIGGER orders_bad_guard BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard('orders.writes', 'production', 'x');
INSERT INTO orders VALUES (3, 'third');
SELECT opsflags.feature_guard();

DROP TABLE orders;
