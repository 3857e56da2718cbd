-- test/pgtap/flags_lifecycle.sql: archive_flag, restore_flag and delete_flag as
-- another session sees them: each committed change is audited, announced
-- with NOTIFY opsflags, and evaluated differently by a session that had the
-- flag cached (its cache is invalidated); delete_flag is refused while
-- another flag names the flag as a prerequisite, and for flags that are
-- not archived, with nothing written.
\ir setup.inc

SELECT plan(14);

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.life.%';
SELECT opsflags.create_flag('tap.life.f') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.life.dep') IS NOT NULL AS x \gset
SELECT opsflags.toggle_flag('tap.life.f', true, 'production') IS NULL AS x \gset

-- Session "e" evaluates (and caches) the flag; session "l" listens.
SELECT dblink_connect('e', pg_temp.tap_conninfo()) \gset
SELECT dblink_connect('l', pg_temp.tap_conninfo()) \gset
SELECT dblink_exec('l', 'LISTEN opsflags') \gset
CREATE FUNCTION pg_temp.enabled_elsewhere() RETURNS boolean LANGUAGE sql AS $$
  SELECT v FROM dblink('e', $q$SET opsflags.environment = 'production';
                               SELECT opsflags.feature_enabled('tap.life.f', 'u1')$q$) AS t(v boolean)
$$;
-- The events for the flag, polled until one with the wanted event arrives.
CREATE FUNCTION pg_temp.events_until(wanted text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    got text[] := '{}';
    n   record;
BEGIN
    FOR attempt IN 1..400 LOOP
        FOR n IN SELECT extra::jsonb AS p FROM dblink_get_notify('l') WHERE notify_name = 'opsflags' LOOP
            IF n.p ->> 'key' = 'tap.life.f' THEN
                got := got || (n.p ->> 'event');
            END IF;
        END LOOP;
        EXIT WHEN wanted = ANY (got);
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN got;
END
$$;
SELECT ok(pg_temp.enabled_elsewhere(), '(control: the other session has the flag cached as on)');
SELECT coalesce(max(id), 0) AS audit0 FROM opsflags.audit_log \gset

SELECT opsflags.archive_flag('tap.life.f') IS NULL AS x \gset
SELECT is(pg_temp.enabled_elsewhere(), false, 'archived: the other session evaluates it false at once');
SELECT ok('flag.archived' = ANY (pg_temp.events_until('flag.archived')), 'archived: NOTIFY flag.archived');

SELECT opsflags.restore_flag('tap.life.f') IS NULL AS x \gset
SELECT is(pg_temp.enabled_elsewhere(), true, 'restored: the other session evaluates it by its config again');
SELECT ok('flag.updated' = ANY (pg_temp.events_until('flag.updated')), 'restored: NOTIFY flag.updated');
SELECT is((SELECT array_agg(x.v ORDER BY a.id) FROM opsflags.audit_log a,
                  LATERAL (SELECT (a.old_values ->> 'archived') || '->' || (a.new_values ->> 'archived') AS v) x
           WHERE a.id > :audit0 AND a.resource_type = 'feature_flag' AND a.resource_id = 'tap.life.f'),
          ARRAY['false->true', 'true->false'], 'archive and restore are audited (old and new archived)');

-- Refusals write nothing.
SELECT throws_ok($$SELECT opsflags.delete_flag('tap.life.f')$$, '55000', NULL,
                 'delete_flag of a flag that is not archived raises 55000');
SELECT opsflags.add_prerequisite('tap.life.dep', 'tap.life.f') IS NULL AS x \gset
SELECT opsflags.archive_flag('tap.life.f') IS NULL AS x \gset
SELECT coalesce(max(id), 0) AS audit1 FROM opsflags.audit_log \gset
SELECT throws_ok($$SELECT opsflags.delete_flag('tap.life.f')$$, '2BP01', NULL,
                 'delete_flag of a prerequisite of another flag raises 2BP01');
SELECT is((SELECT count(*)::int FROM opsflags.audit_log WHERE id > :audit1), 0, 'a refused delete writes nothing');

SELECT opsflags.remove_prerequisite('tap.life.dep', 'tap.life.f') IS NOT NULL AS x \gset
SELECT coalesce(max(id), 0) AS audit2 FROM opsflags.audit_log \gset
SELECT opsflags.delete_flag('tap.life.f') IS NULL AS x \gset
SELECT is((SELECT count(*)::int FROM opsflags.feature_flags WHERE flag_key = 'tap.life.f'), 0, 'deleted: the flag is gone');
SELECT is((SELECT count(*)::int FROM opsflags.feature_flag_configs c
           WHERE NOT EXISTS (SELECT 1 FROM opsflags.feature_flags f WHERE f.id = c.flag_id)), 0,
          'deleted: no config is left behind');
SELECT is(pg_temp.enabled_elsewhere(), false, 'deleted: the other session evaluates it false');
SELECT ok('flag.deleted' = ANY (pg_temp.events_until('flag.deleted')), 'deleted: NOTIFY flag.deleted');
SELECT is((SELECT array_agg(DISTINCT a.resource_type || ':' || a.action ORDER BY a.resource_type || ':' || a.action)
           FROM opsflags.audit_log a WHERE a.id > :audit2),
          ARRAY['feature_flag:DELETE', 'flag_config:DELETE'], 'deleted: the flag and its configs are audited');

SELECT dblink_disconnect('e') \gset
SELECT dblink_disconnect('l') \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.life.%';
SELECT * FROM finish();
