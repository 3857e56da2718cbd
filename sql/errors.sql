-- Every error the flag API raises, with its SQLSTATE; nothing is written.
\set SHOW_CONTEXT never
\set VERBOSITY default
SELECT opsflags.create_flag('err.flag', 'Errors') IS NOT NULL AS created;

-- Shows the SQLSTATE of the last error.
\set ECHO_HIDDEN off
\set last_state 'SELECT :''LAST_ERROR_SQLSTATE'' AS sqlstate'

SELECT opsflags.create_flag(NULL, 'x');
:last_state;
SELECT opsflags.create_flag('bad key', 'x');
:last_state;
SELECT opsflags.create_flag('.leading-dot', 'x');
SELECT opsflags.create_flag(repeat('k', 101), 'x');
SELECT opsflags.create_flag('err.flag', 'Again');
:last_state;

SELECT opsflags.toggle_flag('no.such.flag', true);
:last_state;
SELECT opsflags.toggle_flag('err.flag', true, 'moon');
:last_state;
SELECT opsflags.toggle_flag('err.flag', NULL);
SELECT opsflags.archive_flag('no.such.flag');
SELECT opsflags.get_flag('err.flag', 'moon');
SELECT opsflags.get_flag('no.such.flag') IS NULL AS unknown_is_null;
SET opsflags.environment = 'Not Valid';
:last_state;

SELECT opsflags.update_flag('err.flag', '{"enabled": true}');
:last_state;
SELECT opsflags.update_flag('err.flag', '[1]');
SELECT opsflags.update_flag('err.flag', '{"is_enabled": "yes"}');
:last_state;

-- Bad fields: each API function checks its arguments first and names the
-- field and what it accepts (22023), without the table's row or constraint.
SELECT opsflags.create_flag('err.other', 'x', NULL, 'colour');
:last_state;
SELECT opsflags.create_flag('err.other', 'x', NULL, 'bool');
SELECT opsflags.create_flag('err.other', '', NULL);
SELECT opsflags.create_flag('err.other', 'x', NULL, 'boolean', NULL, ARRAY['ok', NULL]);
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": 101}');
:last_state;
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": 150}');
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": -1}');
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": 1.5}');
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": "50"}');
SELECT opsflags.update_flag('err.flag',
    '{"enable_at": "2030-01-01T00:00:00Z", "disable_at": "2030-01-01T00:00:00Z"}');
:last_state;
SELECT opsflags.update_flag('err.flag', '{"enable_at": "next tuesday"}');
SELECT opsflags.update_flag('err.flag', '{"disable_at": 1700000000}');
SELECT opsflags.update_flag('err.flag', '{"enabled_for_users": "u1"}');
:last_state;
SELECT opsflags.update_flag('err.flag', '{"enabled_for_users": ["u1", 2]}');
SELECT opsflags.update_flag('err.flag', '{"enabled_for_roles": {"admin": true}}');
SELECT opsflags.update_flag('err.flag', '{"enabled_for_roles": [null]}');
SELECT opsflags.update_flag('err.flag', '{"enabled_for_users": [["nested"]]}');
SELECT opsflags.update_flag('err.flag', '{"segments": "beta"}');
SELECT opsflags.update_flag('err.flag', '{"rollout_group": ""}');
SELECT opsflags.update_flag('err.flag', '{"flag_name": null}');
SELECT opsflags.update_flag('err.flag', '{"description": 7}');
SELECT opsflags.update_flag('err.flag', '{"tags": ["ops", 1]}');
SELECT opsflags.update_flag('err.flag', '{"tags": "ops"}');
SELECT opsflags.update_flag('err.flag', '{"on_variation": 1e300}');
SELECT opsflags.update_flag('err.flag', '{"variation_weights": "50/50"}');
-- The message names the field and nothing else: no row, a short context.
\set SHOW_CONTEXT errors
SELECT opsflags.update_flag('err.flag', '{"enabled_percentage": 150}');
\set SHOW_CONTEXT never

-- Plain DML by an admin: the table's constraints (23514) and triggers.
\set VERBOSITY terse
INSERT INTO opsflags.feature_flags (flag_key, flag_name) VALUES ('white space', 'x');
:last_state;
UPDATE opsflags.feature_flag_configs SET enabled_percentage = 150;
UPDATE opsflags.feature_flag_configs SET enabled_for_users = '"u1"';
UPDATE opsflags.feature_flag_configs SET enable_at = '2030-01-01', disable_at = '2030-01-01';
INSERT INTO opsflags.environments (name) VALUES ('all');
UPDATE opsflags.feature_flags SET flag_type = 'colour' WHERE flag_key = 'err.flag';
:last_state;
UPDATE opsflags.feature_flags SET flag_type = 'string' WHERE flag_key = 'err.flag';
INSERT INTO opsflags.feature_flags (flag_key, flag_name, flag_type, variations) VALUES ('err.num', 'x', 'number', '[1, "a"]');
\set VERBOSITY default

-- Nothing of the above was written.
SELECT flag_key, version FROM opsflags.feature_flags WHERE flag_key LIKE 'err.%' OR flag_key LIKE '%space%' ORDER BY flag_key;
SELECT environment, is_enabled, enabled_for_users, enabled_for_roles, enabled_percentage,
       enable_at, disable_at, version
FROM opsflags.feature_flag_configs WHERE flag_id = opsflags.flag_id('err.flag') ORDER BY environment;

-- feature_enabled never raises for a well-formed call.
SELECT opsflags.feature_enabled(NULL), opsflags.feature_enabled(''),
       opsflags.feature_enabled(repeat('x', 10000)), opsflags.feature_enabled('no such flag', NULL, NULL);
