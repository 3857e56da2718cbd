-- test/launchdarkly.sql: flags_for_environment() exports LaunchDarkly's
-- client format; import_launchdarkly() loads it into an empty database, and
-- exporting there gives the same document (120 generated flags); the import
-- is idempotent; malformed documents are refused with nothing written.
\ir setup.inc

SELECT plan(7);

SELECT dblink_connect('admin', pg_temp.tap_conninfo(db => 'postgres')) \gset
SELECT dblink_exec('admin', 'DROP DATABASE IF EXISTS opsflags_ld WITH (FORCE)') \gset
SELECT dblink_exec('admin', 'CREATE DATABASE opsflags_ld') \gset
SELECT dblink_connect('ld', pg_temp.tap_conninfo(db => 'opsflags_ld')) \gset
SELECT dblink_exec('ld', 'CREATE EXTENSION opsflags') \gset

-- 120 flags of every type, in random states, in staging.
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.ld.%';
CREATE TEMP TABLE gen AS
SELECT i, 'tap.ld.' || i AS key, ('x' || substr(md5('ld' || i), 1, 8))::bit(32)::int AS r FROM generate_series(1, 120) i;
SELECT count(opsflags.create_flag(key, key, NULL,
         (ARRAY['boolean', 'string', 'number', 'json'])[1 + abs(r) % 4],
         CASE abs(r) % 4 WHEN 0 THEN '[true, false]'::jsonb
                         WHEN 1 THEN '["red", "green", "blue"]'
                         WHEN 2 THEN '[1, 2.5, 1e20]'
                         ELSE '[{"a": 1}, [1, 2], null]' END)) FROM gen \gset
SELECT count(opsflags.update_feature_flag(key, jsonb_build_object(
         'is_enabled', abs(r / 3) % 3 <> 0,
         'on_variation', abs(r / 5) % CASE abs(r) % 4 WHEN 0 THEN 2 ELSE 3 END,
         'off_variation', abs(r / 7) % CASE abs(r) % 4 WHEN 0 THEN 2 ELSE 3 END), 'staging')) FROM gen \gset

SELECT opsflags.flags_for_environment('staging') AS doc \gset
SELECT is((SELECT count(*)::int FROM jsonb_object_keys(:'doc'::jsonb) k WHERE k LIKE 'tap.ld.%'), 120,
          'the export has the 120 flags');
SELECT is((SELECT count(*)::int FROM jsonb_each(:'doc'::jsonb) e
           WHERE NOT (e.value ?& ARRAY['flagVersion', 'trackEvents', 'value', 'variation', 'version'])), 0,
          'every flag has flagVersion, trackEvents, value, variation and version');

SELECT v AS report FROM dblink('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc'))
    AS t(v jsonb) \gset
SELECT is(jsonb_array_length(:'report'::jsonb -> 'created'), (SELECT count(*)::int FROM jsonb_object_keys(:'doc'::jsonb)),
          'the import into an empty database creates every flag');
SELECT is((SELECT v FROM dblink('ld', $$SELECT opsflags.flags_for_environment('staging')$$) AS t(v jsonb)),
          :'doc'::jsonb, 'export -> import into an empty database -> export gives the same document');
SELECT is((SELECT v -> 'unchanged' FROM dblink('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc'))
           AS t(v jsonb)) = (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(:'doc'::jsonb) k), true,
          'importing the same document again changes nothing');

-- Malformed documents: refused, nothing written.
SELECT v AS before FROM dblink('ld', $$SELECT (SELECT count(*) FROM opsflags.feature_flags) + (SELECT count(*) FROM opsflags.audit_log)$$) AS t(v bigint) \gset
SELECT is((SELECT count(*)::int FROM unnest(ARRAY[
              '[1, 2]', '"x"', '{"ok.flag": {"value": 1}, "bad key": {"value": 1}}',
              '{"ok.flag": {"value": 1}, "no.value": {"variation": 0}}',
              '{"ok.flag": {"value": 1}, "bad.version": {"value": 1, "version": "one"}}',
              '{"ok.flag": {"value": 1}, "bad.variation": {"value": 1, "variation": -1}}',
              '{"ok.flag": 5}']) d
           WHERE dblink_exec('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', d), false) <> 'ERROR'), 0,
          'malformed documents are refused');
SELECT is((SELECT v FROM dblink('ld', $$SELECT (SELECT count(*) FROM opsflags.feature_flags) + (SELECT count(*) FROM opsflags.audit_log)$$) AS t(v bigint)),
          :before::bigint, 'a refused document writes nothing');

SELECT dblink_disconnect('ld') \gset
SELECT dblink_exec('admin', 'DROP DATABASE opsflags_ld WITH (FORCE)') \gset
SELECT dblink_disconnect('admin') \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.ld.%';
SELECT * FROM finish();
