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
SELECT opsflags.get_feature_flag('err.flag', 'moon');
SELECT opsflags.get_feature_flag('no.such.flag') IS NULL AS unknown_is_null;
SET opsflags.environment = 'Not Valid';
:last_state;

SELECT opsflags.update_feature_flag('err.flag', '{"enabled": true}');
:last_state;
SELECT opsflags.update_feature_flag('err.flag', '[1]');
SELECT opsflags.update_feature_flag('err.flag', '{"is_enabled": "yes"}');
:last_state;

-- Constraint violations: the same rules for the API and for plain DML.
\set VERBOSITY terse
SELECT opsflags.create_flag('err.other', 'x', NULL, 'colour');
:last_state;
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_percentage": 101}');
:last_state;
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_percentage": -1}');
SELECT opsflags.update_feature_flag('err.flag',
    '{"enable_at": "2030-01-01T00:00:00Z", "disable_at": "2030-01-01T00:00:00Z"}');
:last_state;
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_for_users": "u1"}');
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_for_users": ["u1", 2]}');
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_for_roles": {"admin": true}}');
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_for_roles": [null]}');
SELECT opsflags.update_feature_flag('err.flag', '{"enabled_for_users": [["nested"]]}');
SELECT opsflags.update_feature_flag('err.flag', '{"rollout_group": ""}');
INSERT INTO opsflags.feature_flags (flag_key, flag_name) VALUES ('white space', 'x');
:last_state;
UPDATE opsflags.feature_flag_configs SET enabled_percentage = 150;
INSERT INTO opsflags.environments (name) VALUES ('all');
\set VERBOSITY default

-- Nothing of the above was written.
SELECT flag_key, version FROM opsflags.feature_flags WHERE flag_key LIKE 'err.%' OR flag_key LIKE '%space%' ORDER BY flag_key;
SELECT environment, is_enabled, enabled_for_users, enabled_for_roles, enabled_percentage,
       enable_at, disable_at, version
FROM opsflags.feature_flag_configs WHERE flag_id = opsflags.flag_id('err.flag') ORDER BY environment;

-- feature_enabled never raises for a well-formed call.
SELECT opsflags.feature_enabled(NULL), opsflags.feature_enabled(''),
       opsflags.feature_enabled(repeat('x', 10000)), opsflags.feature_enabled('no such flag', NULL, NULL);
