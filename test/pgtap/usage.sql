-- test/pgtap/usage.sql: opsflags.flag_usage counts every evaluation (true and
-- false) once its transaction ends, records the last one, and lists flags
-- not evaluated for flags.stale_after_days as stale.
\ir setup.inc

SELECT plan(6);

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.use.%';
SELECT opsflags.create_flag('tap.use.on', 'On') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.use.half', 'Half') IS NOT NULL AS x \gset
SELECT opsflags.create_flag('tap.use.never', 'Never') IS NOT NULL AS x \gset
SELECT opsflags.toggle_flag('tap.use.on', true) IS NULL AS x \gset
SELECT opsflags.update_flag('tap.use.half', '{"is_enabled": true, "enabled_percentage": 50}') IS NULL AS x \gset

SELECT coalesce((SELECT true_count FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on'), 0) AS on_before \gset
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.use.on', 'u' || i)) AS x FROM generate_series(1, 1234) i \gset
SELECT count(opsflags.feature_value('tap.use.on', 'u' || i)) AS x FROM generate_series(1, 66) i \gset
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.use.half', 'u' || i)) AS half_true FROM generate_series(1, 1000) i \gset

SELECT is((SELECT true_count - :on_before FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on'), 1300::bigint,
          'every evaluation (feature_enabled and feature_value) is counted once');
SELECT is((SELECT array[true_count, false_count] FROM opsflags.flag_usage WHERE flag_key = 'tap.use.half'),
          array[:half_true::bigint, 1000 - :half_true::bigint], 'true and false counts match what was served');
SELECT ok((SELECT last_evaluated >= :'t0'::timestamptz AND NOT stale FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on'),
          'last_evaluated is recent and the flag is not stale');
SELECT ok((SELECT stale AND last_evaluated IS NULL FROM opsflags.flag_usage WHERE flag_key = 'tap.use.never'),
          'a flag never evaluated is a stale candidate');

-- Counts are shared at transaction end: another session sees them then.
BEGIN;
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.use.on', 'v' || i)) AS x FROM generate_series(1, 10) i \gset
SELECT true_count AS mid FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on' \gset
COMMIT;
SELECT is((SELECT true_count FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on'), :mid::bigint + 10,
          'counts of a transaction are shared when it ends');

SET opsflags.track_usage = off;
SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.use.on', 'w' || i)) AS x FROM generate_series(1, 10) i \gset
RESET opsflags.track_usage;
SELECT is((SELECT true_count FROM opsflags.flag_usage WHERE flag_key = 'tap.use.on'), :mid::bigint + 10,
          'with opsflags.track_usage off nothing is counted');

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.use.%';
SELECT * FROM finish();
