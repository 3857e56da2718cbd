-- test/pgtap/flags_launchdarkly.sql: flags_for_environment() exports LaunchDarkly's
-- client format and import_launchdarkly() loads it.  160 generated flags of
-- every type and shape (on/off variations, targeting, rollouts, weighted
-- splits, segments, prerequisites, schedules in and out of their window):
-- importing the database's own export changes nothing (every flag
-- unchanged, no write, no audit row, no NOTIFY); importing it into an empty
-- database and exporting there gives the same document; an import of other
-- values makes each flag serve them; feature_enabled and feature_value
-- never disagree on whether a flag is on; malformed documents are refused
-- with nothing written.
\ir setup.inc

SELECT plan(20);

SELECT dblink_connect('admin', pg_temp.tap_conninfo(db => 'postgres')) \gset
SELECT dblink_exec('admin', 'DROP DATABASE IF EXISTS opsflags_ld WITH (FORCE)') \gset
SELECT dblink_exec('admin', 'CREATE DATABASE opsflags_ld') \gset
SELECT dblink_connect('ld', pg_temp.tap_conninfo(db => 'opsflags_ld')) \gset
SELECT dblink_exec('ld', 'CREATE EXTENSION opsflags') \gset

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.ld.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.ld.%';
SELECT opsflags.create_segment('tap.ld.seg', 'LD segment', '["u3", "u7"]', '["qa"]') IS NOT NULL AS x \gset

-- 160 flags: type from r, shape from r / 19.
CREATE TEMP TABLE gen AS
SELECT i, 'tap.ld.' || i AS key, r, abs(r) % 4 AS kind, abs(r / 19) % 8 AS shape
FROM (SELECT i, ('x' || substr(md5('ld' || i), 1, 8))::bit(32)::int AS r FROM generate_series(1, 160) i) s;
-- Flags 1 and 2 are the prerequisites of shape 7; they keep another shape.
UPDATE gen SET shape = 0 WHERE i IN (1, 2) AND shape = 7;
SELECT count(opsflags.create_flag(key, key, NULL,
         (ARRAY['boolean', 'string', 'number', 'json'])[1 + kind],
         CASE kind WHEN 0 THEN CASE WHEN abs(r / 3) % 2 = 0 THEN '[true, false]'::jsonb ELSE '[false, true]' END
                   WHEN 1 THEN '["red", "green", "blue"]'
                   WHEN 2 THEN '[1, 2.5, 1e20]'
                   ELSE '[{"a": 1}, [1, 2], null]' END)) FROM gen \gset
SELECT count(opsflags.update_flag(key,
         jsonb_build_object('is_enabled', abs(r / 3) % 3 <> 0)
         || CASE WHEN kind = 0 THEN '{}'::jsonb
                 ELSE jsonb_build_object('on_variation', abs(r / 5) % 3,
                                         'off_variation', (abs(r / 5) + 1 + abs(r / 7) % 2) % 3) END
         || CASE shape
              WHEN 1 THEN jsonb_build_object('enabled_percentage', (ARRAY[1, 25, 50, 99, 100])[1 + abs(r / 23) % 5],
                                             'enabled_for_users', '["u1", "u42"]'::jsonb)
              WHEN 2 THEN CASE WHEN kind = 0 THEN '{"enabled_for_roles": ["admin"], "enabled_for_users": ["u7"]}'::jsonb
                               ELSE jsonb_build_object('variation_weights',
                                        jsonb_build_array(abs(r / 29) % 50, 1 + abs(r / 31) % 30, abs(r / 37) % 20)) END
              WHEN 3 THEN '{"segments": ["tap.ld.seg"]}'::jsonb
              WHEN 4 THEN jsonb_build_object('enable_at', now() - interval '1 day', 'disable_at', now() + interval '1 day')
              WHEN 5 THEN jsonb_build_object('enable_at', now() + interval '1 day')
              WHEN 6 THEN jsonb_build_object('disable_at', now() - interval '1 day')
              ELSE '{}'::jsonb END,
         'staging')) FROM gen \gset
SELECT count(opsflags.add_prerequisite(key, CASE WHEN i % 2 = 0 THEN 'tap.ld.1' ELSE 'tap.ld.2' END))
FROM gen WHERE shape = 7 \gset
SELECT opsflags.create_flag('tap.ld.sentinel', 'sentinel') IS NOT NULL AS x \gset

SELECT jsonb_object_agg(key, value) AS doc FROM jsonb_each(opsflags.flags_for_environment('staging'))
WHERE key LIKE 'tap.ld.%' AND key <> 'tap.ld.sentinel' \gset
SELECT is((SELECT count(*)::int FROM jsonb_object_keys(:'doc'::jsonb)), 160, 'the export has the 160 flags');
SELECT is((SELECT count(*)::int FROM jsonb_each(:'doc'::jsonb) e
           WHERE NOT (e.value ?& ARRAY['flagVersion', 'trackEvents', 'value', 'variation', 'version'])), 0,
          'every flag has flagVersion, trackEvents, value, variation and version');
SELECT is((SELECT count(DISTINCT shape)::int * 10 + count(DISTINCT kind)::int FROM gen), 84,
          '(the generated flags have all 8 shapes and all 4 types)');

-------------------------------------------------------------------------------
-- Importing the database's own export into it changes nothing
-------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS audit_before FROM opsflags.audit_log \gset
SELECT dblink_connect('l', pg_temp.tap_conninfo()) \gset
SELECT dblink_exec('l', 'LISTEN opsflags') \gset
SELECT dblink_connect('i', pg_temp.tap_conninfo()) \gset
SELECT v AS report FROM dblink('i', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc'))
    AS t(v jsonb) \gset
SELECT is(:'report'::jsonb - 'unchanged', '{"environment": "staging", "created": [], "changed": []}'::jsonb,
          'own export imported: nothing created, nothing changed');
SELECT is(:'report'::jsonb -> 'unchanged', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(:'doc'::jsonb) k),
          'own export imported: every flag unchanged');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :audit_before), 0,
          'own export imported: no audit row');
SELECT is((SELECT jsonb_object_agg(key, value) FROM jsonb_each(opsflags.flags_for_environment('staging'))
           WHERE key LIKE 'tap.ld.%' AND key <> 'tap.ld.sentinel'), :'doc'::jsonb,
          'own export imported: the export is the same (no version moved)');

-- A change after the import is announced; nothing before it was.
SELECT x FROM dblink('i', $$SELECT opsflags.toggle_flag('tap.ld.sentinel', true, 'staging')::text$$) AS t(x text) \gset
CREATE FUNCTION pg_temp.notes_until_sentinel() RETURNS jsonb[] LANGUAGE plpgsql AS $$
DECLARE
    got jsonb[] := '{}';
    n   record;
BEGIN
    FOR attempt IN 1..400 LOOP
        FOR n IN SELECT extra::jsonb AS p FROM dblink_get_notify('l') WHERE notify_name = 'opsflags' LOOP
            got := got || n.p;
        END LOOP;
        EXIT WHEN EXISTS (SELECT 1 FROM unnest(got) g WHERE g ->> 'key' = 'tap.ld.sentinel');
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN got;
END
$$;
SELECT pg_temp.notes_until_sentinel() AS notes \gset
SELECT ok((SELECT bool_or(g ->> 'key' = 'tap.ld.sentinel') FROM unnest(:'notes'::jsonb[]) g),
          '(control: the listener receives the change after the import)');
SELECT is((SELECT count(*)::int FROM unnest(:'notes'::jsonb[]) g WHERE g ->> 'key' <> 'tap.ld.sentinel'), 0,
          'own export imported: no NOTIFY');

-------------------------------------------------------------------------------
-- feature_enabled and feature_value agree on whether a flag is on
-------------------------------------------------------------------------------
SET opsflags.environment = 'staging';
CREATE TEMP VIEW agreement AS
SELECT g.key, g.kind, u, ro, opsflags.feature_enabled(g.key, u, ro) AS enabled,
       opsflags.feature_value(g.key, u, ro) AS value
FROM gen g,
     (VALUES ('u1', NULL), ('u3', NULL), ('u7', 'admin'), ('u42', NULL), (NULL, NULL), (NULL, 'qa'),
             ('user-9', 'member'), ('user-10', NULL)) v(u, ro);
SELECT cmp_ok((SELECT count(*)::int FROM agreement WHERE kind = 0), '>=', 100,
              '(at least 100 generated boolean-flag cases)');
SELECT is((SELECT count(*)::int FROM agreement WHERE kind = 0 AND value IS DISTINCT FROM to_jsonb(enabled)), 0,
          'a boolean flag''s feature_value is feature_enabled, for every case');
SELECT is((SELECT count(*)::int FROM agreement
           WHERE jsonb_typeof(value) = 'boolean' AND value <> to_jsonb(enabled)), 0,
          'no flag serves true while off or false while on, for every case');
RESET opsflags.environment;

-------------------------------------------------------------------------------
-- Into an empty database, and back
-------------------------------------------------------------------------------
SELECT v AS report FROM dblink('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc'))
    AS t(v jsonb) \gset
SELECT is(jsonb_array_length(:'report'::jsonb -> 'created'), 160,
          'the import into an empty database creates every flag');
SELECT is((SELECT v FROM dblink('ld', $$SELECT opsflags.flags_for_environment('staging')$$) AS t(v jsonb)),
          :'doc'::jsonb, 'export -> import into an empty database -> export gives the same document');
SELECT is((SELECT v -> 'unchanged' FROM dblink('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc'))
           AS t(v jsonb)), (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(:'doc'::jsonb) k),
          'importing the same document again changes nothing');

-------------------------------------------------------------------------------
-- A document with other values: each flag (without prerequisites) serves
-- its value afterwards, and the two functions still agree
-------------------------------------------------------------------------------
SELECT jsonb_object_agg(g.key, jsonb_build_object('value', f.variations -> n.idx, 'variation', n.idx)) AS doc2
FROM gen g JOIN opsflags.feature_flags f ON f.flag_key = g.key,
     LATERAL (SELECT ((:'doc'::jsonb -> g.key ->> 'variation')::int + 1 + abs(g.r / 41) % 2)
                     % jsonb_array_length(f.variations) AS idx) n
WHERE g.shape <> 7 \gset
SELECT v AS report FROM dblink('i', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', :'doc2'))
    AS t(v jsonb) \gset
SELECT is((SELECT count(*)::int FROM jsonb_array_elements_text(:'report'::jsonb -> 'changed')),
          (SELECT count(*)::int FROM jsonb_each(:'doc2'::jsonb) d
           WHERE d.value -> 'value' IS DISTINCT FROM :'doc'::jsonb -> d.key -> 'value'),
          'other values: exactly the flags whose value differs are changed');
SELECT is((SELECT count(*)::int FROM jsonb_each(:'doc2'::jsonb) d
           WHERE opsflags.flags_for_environment('staging') -> d.key -> 'value' IS DISTINCT FROM d.value -> 'value'), 0,
          'other values: every flag serves its value afterwards');
SET opsflags.environment = 'staging';
SELECT is((SELECT count(*)::int FROM agreement
           WHERE jsonb_typeof(value) = 'boolean' AND value <> to_jsonb(enabled)), 0,
          'other values: still no flag serving true while off or false while on');
RESET opsflags.environment;

-------------------------------------------------------------------------------
-- Malformed documents: refused, nothing written
-------------------------------------------------------------------------------
SELECT dblink_exec('ld', $$DO 'BEGIN PERFORM opsflags.create_flag(''tap.ld.archived''); PERFORM opsflags.archive_flag(''tap.ld.archived''); END'$$) \gset
SELECT v AS before FROM dblink('ld', $$SELECT (SELECT count(*) FROM opsflags.feature_flags) + (SELECT count(*) FROM opsflags.audit_log)$$) AS t(v bigint) \gset
SELECT is((SELECT count(*)::int FROM unnest(ARRAY[
              '[1, 2]', '"x"', '{"ok.flag": {"value": 1}, "bad key": {"value": 1}}',
              '{"ok.flag": {"value": 1}, "no.value": {"variation": 0}}',
              '{"ok.flag": {"value": 1}, "bad.version": {"value": 1, "version": "one"}}',
              '{"ok.flag": {"value": 1}, "bad.variation": {"value": 1, "variation": -1}}',
              '{"ok.flag": {"value": 1}, "half.variation": {"value": 1, "variation": 0.5}}',
              '{"ok.flag": {"value": 1}, "huge.variation": {"value": 1, "variation": 5000000}}',
              '{"ok.flag": {"value": 1}, "tap.ld.archived": {"value": true}}',
              format('{"ok.flag": {"value": 1}, "%s": {"value": "not a number"}}',
                     (SELECT key FROM gen WHERE kind = 2 LIMIT 1)),
              format('{"ok.flag": {"value": 1}, "%s": {"value": 1}}',
                     (SELECT key FROM gen WHERE kind = 0 LIMIT 1)),
              '{"ok.flag": 5}']) d
           WHERE dblink_exec('ld', format('SELECT opsflags.import_launchdarkly(%L, %L)', 'staging', d), false) <> 'ERROR'), 0,
          'malformed documents are refused (shape, key, version, variation, archived flag, value of another type)');
SELECT is((SELECT v FROM dblink('ld', $$SELECT (SELECT count(*) FROM opsflags.feature_flags) + (SELECT count(*) FROM opsflags.audit_log)$$) AS t(v bigint)),
          :before::bigint, 'a refused document writes nothing');

SELECT dblink_disconnect('i') \gset
SELECT dblink_disconnect('l') \gset
SELECT dblink_disconnect('ld') \gset
SELECT dblink_exec('admin', 'DROP DATABASE opsflags_ld WITH (FORCE)') \gset
SELECT dblink_disconnect('admin') \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.ld.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.ld.%';
SELECT * FROM finish();
