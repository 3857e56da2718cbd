-- test/pgtap/api_bad_input.sql: bad input is refused with its SQLSTATE and writes
-- nothing; feature_enabled never raises.
--
-- After each group of refused calls the whole state of the flag tables
-- (every row of environments, feature_flags and feature_flag_configs) must be
-- what it was before.  Runs in one transaction, rolled back at the end.
\ir setup.inc

BEGIN;
SELECT plan(116);

SET LOCAL opsflags.environment = 'production';

-- Fingerprint of everything the flag API can write.
CREATE FUNCTION pg_temp.flag_state() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT md5(concat_ws('#',
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.environments t),
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.feature_flags t),
    (SELECT string_agg(t::text, '|' ORDER BY t::text) FROM opsflags.feature_flag_configs t)))
$$;

CREATE FUNCTION pg_temp.row_counts() RETURNS int[]
LANGUAGE sql STABLE AS $$
  SELECT ARRAY[(SELECT count(*)::int FROM opsflags.environments),
               (SELECT count(*)::int FROM opsflags.feature_flags),
               (SELECT count(*)::int FROM opsflags.feature_flag_configs)]
$$;

-- The fixture: on, 40% rollout, one listed user, a schedule around now.
SELECT opsflags.create_flag('tap.bad.f', 'bad input fixture') AS x \gset
SELECT opsflags.update_flag('tap.bad.f', jsonb_build_object(
    'is_enabled', true, 'enabled_percentage', 40, 'enabled_for_users', '["u1"]'::jsonb,
    'enabled_for_roles', '["ops"]'::jsonb,
    'enable_at', now() - interval '1 day', 'disable_at', now() + interval '1 day')) AS x \gset

SELECT opsflags.create_flag('tap.bad.e', 'never touched by bad input') AS x \gset
SELECT opsflags.update_flag('tap.bad.e', '{"is_enabled": true, "enabled_percentage": 40, "enabled_for_users": ["u1"]}') AS x \gset

SELECT pg_temp.flag_state() AS state0 \gset
SELECT pg_temp.flag_state() AS state_g \gset
SELECT pg_temp.row_counts() AS counts0 \gset
SELECT opsflags.get_flag('tap.bad.f') AS doc0 \gset

-------------------------------------------------------------------------------
-- create_flag: NULL key 22004, malformed keys 22023, duplicate 23505
-------------------------------------------------------------------------------
SELECT throws_ok($$SELECT opsflags.create_flag(NULL, 'null key')$$, '22004', NULL,
                 'create_flag(NULL, ...) raises 22004');
SELECT throws_ok($$SELECT opsflags.create_flag(NULL, NULL, NULL, NULL, NULL, NULL)$$, '22004', NULL,
                 'create_flag(NULL, NULL, ...) raises 22004');

SELECT throws_ok(format('SELECT opsflags.create_flag(%L, %L)', k, 'malformed'), '22023', NULL,
                 format('create_flag(%s) raises 22023', d))
FROM (VALUES ('', 'empty key'),
             (' ', 'a space'),
             ('tap.bad x', 'key with a space'),
             (' tap.bad.lead', 'leading space'),
             ('tap.bad.trail ', 'trailing space'),
             ('.tap.bad', 'leading "."'),
             ('-tap.bad', 'leading "-"'),
             ('_tap.bad', 'leading "_"'),
             (':tap.bad', 'leading ":"'),
             ('t' || repeat('a', 100), '101 characters'),
             (repeat('b', 1000), '1000 characters'),
             ('tap.bad.ключ', 'Cyrillic letters'),
             ('tap.bad.é', 'an accented letter'),
             ('tap.bad.😀', 'an emoji'),
             ('ｔａｐ', 'full-width letters'),
             ('tap/bad', 'a slash'),
             ('tap.bad*', 'an asterisk'),
             (E'tap.bad\n', 'a trailing newline'),
             (E'tap\tbad', 'a tab'),
             ('tap.bad;drop', 'a semicolon')) AS t(k, d);

SELECT is(pg_temp.row_counts(), :'counts0'::int[], 'create_flag refusals: row counts unchanged');

SELECT throws_ok($$SELECT opsflags.create_flag('tap.bad.f', 'duplicate')$$, '23505', NULL,
                 'create_flag of an existing key raises 23505');
SELECT is(pg_temp.flag_state(), :'state_g', 'create_flag refusals: nothing written');

-------------------------------------------------------------------------------
-- Unknown environment (42704) and unknown flag (42704)
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok($$SELECT opsflags.toggle_flag('tap.bad.f', false, 'nosuchenv')$$, '42704', NULL,
                 'toggle_flag in an unknown environment raises 42704');
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.f', '{"is_enabled": false}', 'nosuchenv')$$, '42704', NULL,
                 'update_flag in an unknown environment raises 42704');
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.f', '{"enabled_percentage": 5}', 'all')$$, '42704', NULL,
                 'update_flag in environment "all" (not an environment) raises 42704');
SELECT throws_ok($$SELECT opsflags.get_flag('tap.bad.f', 'nosuchenv')$$, '42704', NULL,
                 'get_flag in an unknown environment raises 42704');
-- SET refuses an unknown environment: reach one by deleting it after SET.
INSERT INTO opsflags.environments (name) VALUES ('nosuchenv');
SET LOCAL opsflags.environment = 'nosuchenv';
DELETE FROM opsflags.environments WHERE name = 'nosuchenv';
SELECT throws_ok($$SELECT opsflags.toggle_flag('tap.bad.f', false)$$, '42704', NULL,
                 'toggle_flag with opsflags.environment naming an unknown environment raises 42704');
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.f', '{"is_enabled": false}')$$, '42704', NULL,
                 'update_flag with opsflags.environment naming an unknown environment raises 42704');
SELECT is(opsflags.feature_enabled('tap.bad.f', 'u1'), false,
          'feature_enabled in an unknown environment: false, no error');
SET LOCAL opsflags.environment = 'production';

SELECT throws_ok($$SELECT opsflags.toggle_flag('tap.bad.nope', true)$$, '42704', NULL,
                 'toggle_flag of an unknown flag raises 42704');
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.nope', '{"is_enabled": true}')$$, '42704', NULL,
                 'update_flag of an unknown flag raises 42704');
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.nope', '{"is_enabled": true}', 'nosuchenv')$$, '42704', NULL,
                 'update_flag of an unknown flag in an unknown environment raises 42704');
SELECT throws_ok($$SELECT opsflags.archive_flag('tap.bad.nope')$$, '42704', NULL,
                 'archive_flag of an unknown flag raises 42704');
SELECT throws_ok($$SELECT opsflags.toggle_flag('TAP.BAD.F', true)$$, '42704', NULL,
                 'toggle_flag of a differently-cased key raises 42704 (keys are case-sensitive)');
SELECT is(pg_temp.flag_state(), :'state_g', 'unknown environment / flag: nothing written');

-------------------------------------------------------------------------------
-- enabled_percentage outside 0..100: 22023 through the API, 23514 for plain DML
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object('enabled_percentage', p)), '22023', NULL,
                 format('update_flag enabled_percentage %s raises 22023', p))
FROM unnest(ARRAY[101, -1, 1000, -100, 1.5]) p;
SELECT throws_ok($$SELECT opsflags.update_flag('tap.bad.f', '{"enabled_percentage": 101, "is_enabled": false}')$$,
                 '22023', NULL, 'update_flag with a good field and percentage 101 raises 22023');
SELECT throws_ok(format($q$UPDATE opsflags.feature_flag_configs c SET enabled_percentage = %s
                           FROM opsflags.feature_flags f
                           WHERE c.flag_id = f.id AND f.flag_key = 'tap.bad.f'$q$, p), '23514', NULL,
                 format('plain UPDATE enabled_percentage = %s raises 23514', p))
FROM unnest(ARRAY[101, -1]) p;
SELECT throws_ok($$INSERT INTO opsflags.feature_flag_configs (flag_id, environment, enabled_percentage)
                   SELECT id, 'staging', 150 FROM opsflags.feature_flags WHERE flag_key = 'tap.bad.f'
                   ON CONFLICT (flag_id, environment) DO UPDATE SET enabled_percentage = 150$$, '23514', NULL,
                 'plain INSERT .. ON CONFLICT UPDATE enabled_percentage = 150 raises 23514');
SELECT is(pg_temp.flag_state(), :'state_g', 'percentage refusals: nothing written');

-------------------------------------------------------------------------------
-- enable_at >= disable_at: 22023 through the API, 23514 for plain DML
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object('enable_at', '2030-01-01 00:00:00+00', 'disable_at', '2030-01-01 00:00:00+00')),
                 '22023', NULL, 'update_flag enable_at = disable_at raises 22023');
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object('enable_at', '2030-01-02 00:00:00+00', 'disable_at', '2030-01-01 00:00:00+00')),
                 '22023', NULL, 'update_flag enable_at > disable_at raises 22023');
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object('enable_at', now() + interval '2 days')),
                 '22023', NULL, 'update_flag enable_at alone, after the existing disable_at, raises 22023');
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object('disable_at', now() - interval '2 days')),
                 '22023', NULL, 'update_flag disable_at alone, before the existing enable_at, raises 22023');
SELECT throws_ok($$UPDATE opsflags.feature_flag_configs c SET enable_at = c.disable_at
                   FROM opsflags.feature_flags f
                   WHERE c.flag_id = f.id AND f.flag_key = 'tap.bad.f'
                     AND c.environment = 'production'$$, '23514', NULL,
                 'plain UPDATE enable_at = disable_at raises 23514');
SELECT is(pg_temp.flag_state(), :'state_g', 'schedule refusals: nothing written');

-------------------------------------------------------------------------------
-- enabled_for_users / enabled_for_roles not a JSON array of strings: 22023
-- through the API, 23514 for plain DML
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f',
                        jsonb_build_object(field, v::jsonb)), '22023', NULL,
                 format('update_flag %s = %s (%s) raises 22023', field, v, d))
FROM unnest(ARRAY['enabled_for_users', 'enabled_for_roles']) field,
     (VALUES ('{"u1": true}', 'an object'),
             ('42', 'a number'),
             ('"u1"', 'a string'),
             ('null', 'JSON null'),
             ('["u1", 2]', 'an array with a number'),
             ('["u1", null]', 'an array with null'),
             ('[["u1"]]', 'an array with an array'),
             ('[{"id": "u1"}]', 'an array with an object')) AS t(v, d);
SELECT throws_ok($$UPDATE opsflags.feature_flag_configs c SET enabled_for_users = '{"u1": 1}'
                   FROM opsflags.feature_flags f WHERE c.flag_id = f.id AND f.flag_key = 'tap.bad.f'$$,
                 '23514', NULL, 'plain UPDATE enabled_for_users = an object raises 23514');
SELECT throws_ok($$UPDATE opsflags.feature_flag_configs c SET enabled_for_roles = '["ops", 7]'
                   FROM opsflags.feature_flags f WHERE c.flag_id = f.id AND f.flag_key = 'tap.bad.f'$$,
                 '23514', NULL, 'plain UPDATE enabled_for_roles = an array with a number raises 23514');
SELECT throws_ok($$UPDATE opsflags.feature_flag_configs c SET enabled_for_users = '[["u1"]]'
                   FROM opsflags.feature_flags f WHERE c.flag_id = f.id AND f.flag_key = 'tap.bad.f'$$,
                 '23514', NULL, 'plain UPDATE enabled_for_users = an array with an array raises 23514');
SELECT is(pg_temp.flag_state(), :'state_g', 'targeting refusals: nothing written');

-------------------------------------------------------------------------------
-- update_flag: unknown field or not an object: 22023
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok(format('SELECT opsflags.update_flag(%L, %L)', 'tap.bad.f', u), '22023', NULL,
                 format('update_flag(%s) raises 22023 (%s)', u, d))
FROM (VALUES ('{"is_enabeld": false}', 'misspelt field'),
             ('{"is_enabled": false, "bogus": 1}', 'a good field and an unknown one'),
             ('{"enabled_percentage": 0, "rollout_group": "g", "colour": "red"}', 'good fields and an unknown one'),
             ('{"id": "00000000-0000-0000-0000-000000000000"}', 'id is not updatable'),
             ('{"flag_key": "tap.bad.g"}', 'flag_key is not updatable'),
             ('{"version": 7}', 'version is not updatable'),
             ('{"IS_ENABLED": false}', 'field names are case-sensitive'),
             ('[]', 'not an object: array'),
             ('"is_enabled"', 'not an object: string')) AS t(u, d);
SELECT is(pg_temp.flag_state(), :'state_g', 'unknown-field refusals: nothing written');

-------------------------------------------------------------------------------
-- Plain INSERT / UPDATE of a malformed key into opsflags.feature_flags: 23514
-------------------------------------------------------------------------------
SELECT pg_temp.flag_state() AS state_g \gset
SELECT throws_ok(format('INSERT INTO opsflags.feature_flags (flag_key, flag_name) VALUES (%L, %L)', k, 'x'),
                 '23514', NULL, format('plain INSERT of key %s raises 23514', d))
FROM (VALUES ('tap.bad key', '"tap.bad key" (space)'),
             ('', '"" (empty)'),
             ('.tap.bad', '".tap.bad" (leading ".")'),
             ('t' || repeat('a', 100), 'of 101 characters'),
             ('tap.bad.ü', '"tap.bad.ü" (non-ASCII)')) AS t(k, d);
SELECT throws_ok($$UPDATE opsflags.feature_flags SET flag_key = 'tap.bad f' WHERE flag_key = 'tap.bad.f'$$,
                 '23514', NULL, 'plain UPDATE of a key to a malformed one raises 23514');
SELECT is(pg_temp.flag_state(), :'state_g', 'plain DML refusals: nothing written');
SELECT is(pg_temp.flag_state(), :'state0', 'after all refusals: nothing written at all');
SELECT is(pg_temp.row_counts(), :'counts0'::int[], 'after all refusals: row counts unchanged');
SELECT is(opsflags.get_flag('tap.bad.f'), :'doc0'::jsonb, 'after all refusals: get_flag unchanged');

-------------------------------------------------------------------------------
-- feature_enabled never raises
-------------------------------------------------------------------------------
SELECT is(opsflags.feature_enabled('tap.bad.e', 'u1'), true, 'control: tap.bad.e is on for listed user u1');
SELECT is(opsflags.feature_enabled(NULL), false, 'feature_enabled(NULL) is false');
SELECT is(opsflags.feature_enabled(NULL, 'u1', 'ops'), false, 'feature_enabled(NULL, user, role) is false');
SELECT is(opsflags.feature_enabled(NULL::text, NULL::text, NULL::text), false, 'feature_enabled(NULL, NULL, NULL) is false');
SELECT is(opsflags.feature_enabled(''), false, 'feature_enabled('''') is false');
SELECT is(opsflags.feature_enabled('', 'u1', 'ops'), false, 'feature_enabled('''', user, role) is false');
SELECT is(opsflags.feature_enabled(repeat('x', 1000), 'u1'), false, 'feature_enabled(1000-character key) is false');
SELECT is(opsflags.feature_enabled('tap.bad.e' || repeat('x', 991), 'u1'), false,
          'feature_enabled(1000-character key extending a real one) is false');
SELECT is(opsflags.feature_enabled(repeat('é', 1000), 'u1'), false, 'feature_enabled(1000 two-byte characters) is false');
SELECT is(opsflags.feature_enabled('t' || repeat('a', 100), 'u1'), false, 'feature_enabled(101-character key) is false');
SELECT is(opsflags.feature_enabled('tap.bad.nope', 'u1', 'ops'), false, 'feature_enabled(unknown key) is false');
SELECT is(opsflags.feature_enabled('tap.bad f', 'u1', 'ops'), false, 'feature_enabled(malformed key) is false');
SELECT is(opsflags.feature_enabled('TAP.BAD.F', 'u1', 'ops'), false, 'feature_enabled(differently-cased key) is false');
SELECT is(opsflags.feature_enabled('tap.bad.e ', 'u1', 'ops'), false, 'feature_enabled(key with a trailing space) is false');
SELECT is(opsflags.feature_enabled(E'tap.bad.e\n', 'u1', 'ops'), false, 'feature_enabled(key with a trailing newline) is false');
SELECT is(opsflags.feature_enabled('tap.bad.e', repeat('u', 10000), repeat('r', 10000)),
          opsflags.rollout_bucket('tap.bad.e', repeat('u', 10000)) <= 40,
          'feature_enabled with a 10,000-character user and role: evaluated by the rollout, no error');
SELECT is(opsflags.feature_enabled('tap.bad.e', '', ''),
          opsflags.rollout_bucket('tap.bad.e', '') <= 40,
          'feature_enabled with empty user and role: evaluated by the rollout, no error');
SELECT is((SELECT count(*)::int FROM generate_series(1, 2000) g
           WHERE opsflags.feature_enabled('tap.bad.rnd.' || md5(g::text) || repeat('z', g % 120))), 0,
          'feature_enabled over 2,000 unknown keys of varying length (some too long) is false for all');
SELECT is(opsflags.feature_enabled('tap.bad.e', 'u1'), true, 'control: still on for u1 after all that');

-------------------------------------------------------------------------------
-- Controls: well-formed edge keys are accepted
-------------------------------------------------------------------------------
SELECT lives_ok($$SELECT opsflags.create_flag('T' || repeat('a', 99), '100 characters')$$,
                'create_flag accepts a 100-character key');
SELECT lives_ok($$SELECT opsflags.create_flag('0tap.bad_x:y-z.', 'all allowed characters')$$,
                'create_flag accepts every allowed character (. _ : -)');
SELECT is(pg_temp.row_counts(), ARRAY[(:'counts0'::int[])[1], (:'counts0'::int[])[2] + 2,
                                      (:'counts0'::int[])[3] + 2 * (:'counts0'::int[])[1]],
          'the two accepted flags: two flags, one config per environment each');

SELECT * FROM finish();
ROLLBACK;
