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
SELECT opsflags.update_feature_flag('orders.writes',
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

-- Misuse.
CREATE TRIGGER orders_bad_guard BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION opsflags.feature_guard();
INSERT INTO orders VALUES (3, 'third');
SELECT opsflags.feature_guard();

DROP TABLE orders;
