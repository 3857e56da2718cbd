-- Configuration: values per environment with 'all' as the fallback.
\set SHOW_CONTEXT never

SELECT opsflags.config_set('app.name', '"shop"', description => 'Display name');
SELECT opsflags.config_set('app.name', '"shop (staging)"', environment => 'staging');
SELECT opsflags.config_set('limits', '{"rps": 100, "burst": [1, 2, 3]}');
SELECT opsflags.config_set('db.password', '"not-shown"', is_sensitive => true);

-- The environment's row, else 'all', else NULL; the default environment is opsflags.environment.
SELECT opsflags.config_get('app.name') AS production,
       opsflags.config_get('app.name', 'staging') AS staging,
       opsflags.config_get('limits') -> 'burst' AS burst,
       opsflags.config_get('no.such.key') IS NULL AS missing;
SET opsflags.environment = 'staging';
SELECT opsflags.config_get('app.name') AS in_staging_session;
RESET opsflags.environment;

-- Listing: an environment plus 'all'; sensitive values are always redacted.
SELECT config_key, environment, config_value, is_sensitive, version, updated_by
FROM opsflags.config_all('staging');
SELECT count(*) AS every_row FROM opsflags.config_all();

-- Replacing a value bumps the version; is_sensitive NULL keeps the setting.
SELECT opsflags.config_set('db.password', '"rotated"', updated_by => 'deploy-bot');
SELECT config_key, config_value, is_sensitive, version, updated_by
FROM opsflags.config_all() WHERE config_key = 'db.password';

-- Sensitivity belongs to the key: an override without is_sensitive is
-- sensitive too, and no single environment of a sensitive key can be public.
SELECT opsflags.config_set('db.password', '"prod-secret"', environment => 'production');
SELECT config_key, environment, config_value, is_sensitive
FROM opsflags.config_all() WHERE config_key = 'db.password';
SELECT opsflags.config_set('db.password', '"dev"', environment => 'development', is_sensitive => false);
UPDATE opsflags.app_config SET is_sensitive = false WHERE config_key = 'db.password' AND environment = 'production';
-- Marking one environment sensitive marks them all; all at once makes the key public again.
SELECT opsflags.config_set('api.url', '"https://staging.example"', environment => 'staging');
SELECT opsflags.config_set('api.url', '"https://example"', environment => 'production', is_sensitive => true);
SELECT environment, config_value, is_sensitive FROM opsflags.config_all() WHERE config_key = 'api.url';
UPDATE opsflags.app_config SET is_sensitive = false WHERE config_key = 'api.url';
SELECT environment, config_value, is_sensitive FROM opsflags.config_all() WHERE config_key = 'api.url';

-- Admins (here: a superuser) read sensitive values.
SELECT opsflags.config_get('db.password', 'all') = '"rotated"' AS admin_reads_secret;

-- Deleting.
SELECT opsflags.config_delete('app.name', 'staging') AS deleted,
       opsflags.config_delete('app.name', 'staging') AS deleted_again;
SELECT opsflags.config_get('app.name', 'staging') AS falls_back_to_all;

-- Bad input: the key is named, the value never.
SELECT opsflags.config_set(NULL, '1');
SELECT opsflags.config_set('bad key', '1');
SELECT opsflags.config_set('k', '1', environment => 'moon');
SELECT opsflags.config_set('k', NULL);
SELECT opsflags.config_set('db.password', '"x"', environment => NULL);
INSERT INTO opsflags.app_config (config_key, config_value) VALUES ('db.password', '"dup"');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

SELECT opsflags.config_delete('app.name'), opsflags.config_delete('limits'), opsflags.config_delete('db.password'),
       opsflags.config_delete('db.password', 'production'), opsflags.config_delete('api.url', 'staging'),
       opsflags.config_delete('api.url', 'production');
