-- test/pgtap/api_fuzz_encoding.sql: invalid UTF-8 where the encoding allows it.  A
-- SQL_ASCII database takes any byte in text, so there every public
-- function that takes text is called (through dblink) with byte strings
-- that are not UTF-8: lone continuation bytes, overlong forms, surrogates,
-- truncated sequences, 0xFF, mixed with quotes and backslashes.  Only clean
-- errors (never an internal one, never a lost connection), and the rules
-- work on raw bytes: a user id of invalid bytes that is targeted is on,
-- its neighbours are not, and its rollout bucket is stable.
\ir setup.inc

SELECT plan(7);

SELECT dblink_connect('admin', pg_temp.tap_conninfo(db => 'postgres')) \gset
SELECT dblink_exec('admin', 'DROP DATABASE IF EXISTS opsflags_fuzz_ascii WITH (FORCE)') \gset
SELECT dblink_exec('admin', 'CREATE DATABASE opsflags_fuzz_ascii ENCODING ''SQL_ASCII'' '
                            'LC_COLLATE ''C'' LC_CTYPE ''C'' TEMPLATE template0') \gset
SELECT dblink_connect('ascii', pg_temp.tap_conninfo(db => 'opsflags_fuzz_ascii')) \gset
SELECT dblink_exec('ascii', 'CREATE EXTENSION opsflags') \gset
SELECT count(*) FROM dblink('ascii', $$SELECT opsflags.create_flag('fuzz.enc', 'Encoding')::text$$) AS t(x text) \gset

-- The byte strings, as E'' literals for the SQL_ASCII side (this database is
-- UTF-8 and could not hold them): 8 fixed hostile sequences and 100
-- generated ones of random bytes 0x80-0xFF mixed with ASCII.
CREATE TEMP TABLE bad (lit text);
INSERT INTO bad
SELECT format('E''%s''', s) FROM (VALUES
  ('\x80'), ('\xff\xfe'), ('\xc0\xaf'), ('\xed\xa0\x80'), ('\xe2\x82'), ('abc\xf4\x90\x80\x80'),
  ('\x27\xff\x5c'), ('u\xc3')) v(s)
UNION ALL
SELECT format('E''%s''', string_agg(CASE WHEN random() < 0.6
                                         THEN '\x' || to_hex(128 + (random() * 127)::int)
                                         ELSE chr(97 + (random() * 25)::int) END, ''))
FROM generate_series(1, 100) g, generate_series(1, 1 + (g % 12)) b
GROUP BY g;

-- Each function that takes text, with a bad string in each text slot.
CREATE TEMP TABLE calls (sql text);
INSERT INTO calls
SELECT format(t, b.lit) FROM bad b, (VALUES
  ('SELECT opsflags.feature_enabled(%s)::text'),
  ('SELECT opsflags.feature_enabled(''fuzz.enc'', %s)::text'),
  ('SELECT opsflags.feature_enabled(''fuzz.enc'', ''u'', %s)::text'),
  ('SELECT opsflags.feature_value(''fuzz.enc'', %s)::text'),
  ('SELECT opsflags.feature_explain(''fuzz.enc'', %s)::text'),
  ('SELECT opsflags.rollout_bucket(''fuzz.enc'', %s)::text'),
  ('SELECT opsflags.config_get(%s)::text'),
  ('SELECT opsflags.config_set(''fuzz.key'', to_jsonb(%s::text))::text'),
  ('SELECT opsflags.create_flag(%s, ''x'')::text'),
  ('SELECT opsflags.get_flag(''fuzz.enc'', %s)::text'),
  ('SELECT opsflags.record_deployment(%s, ''staging'')::text'),
  ('SELECT opsflags.update_flag(''fuzz.enc'', jsonb_build_object(''enabled_for_users'', jsonb_build_array(%s::text)))::text')
) f(t);

CREATE TEMP TABLE outcomes (sql text, state text);
DO $$
DECLARE c record; st text;
BEGIN
    FOR c IN SELECT sql FROM calls LOOP
        BEGIN
            PERFORM * FROM dblink('ascii', c.sql) AS t(r text);
            INSERT INTO outcomes VALUES (c.sql, '00000');
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
            INSERT INTO outcomes VALUES (c.sql, st);
        END;
    END LOOP;
END $$;

SELECT cmp_ok((SELECT count(*)::int FROM outcomes), '>=', 1000,
              'at least 1,000 calls with invalid UTF-8 in a SQL_ASCII database');
SELECT is((SELECT count(*)::int FROM outcomes WHERE state IN ('42601', '42883', '42804')), 0,
          'every generated call is well formed and reaches its function (the fuzzer itself is right)');
SELECT is((SELECT count(*)::int FROM outcomes WHERE state IN ('XX000', 'XX001', 'XX002') OR state LIKE '08%'), 0,
          'no internal error and no lost connection');
SELECT is((SELECT r FROM dblink('ascii', 'SELECT 1::text') AS t(r text)), '1',
          'the session is alive after all of them');

-- Targeting compares bytes: the flag on, for one invalid-UTF-8 user only.
SELECT count(*) FROM dblink('ascii', $$SELECT opsflags.update_flag('fuzz.enc',
    jsonb_build_object('is_enabled', true, 'enabled_percentage', 0,
                       'enabled_for_users', jsonb_build_array(E'\xff\xfe'::text)))::text$$) AS t(x text) \gset
SELECT is((SELECT array_agg(r ORDER BY n) FROM dblink('ascii', $$
    SELECT n, opsflags.feature_explain('fuzz.enc', u) ->> 'reason'
    FROM (VALUES (1, E'\xff\xfe'), (2, E'\xff\xfd'), (3, E'\xff'), (4, E'\xff\xfe\x80')) v(n, u)$$)
    AS t(n int, r text)), ARRAY['TARGET_USER', 'FALLTHROUGH', 'FALLTHROUGH', 'FALLTHROUGH'],
    'a targeted user id of invalid bytes matches its target; ids that differ by a byte do not');
SELECT is((SELECT count(DISTINCT r)::int FROM dblink('ascii', $$
    SELECT opsflags.rollout_bucket('fuzz.enc', E'\xc0\xaf\xff')::text FROM generate_series(1, 20)$$) AS t(r text)),
    1, 'the rollout bucket of an invalid-UTF-8 id is the same every time');
SELECT ok((SELECT bool_and(r::int BETWEEN 1 AND 100) FROM dblink('ascii', $$
    SELECT opsflags.rollout_bucket('fuzz.enc', E'\\x' || to_hex(128 + i) || 'z')::text
    FROM generate_series(0, 99) i$$) AS t(r text)),
    'rollout buckets of 100 invalid-UTF-8 ids are between 1 and 100');

SELECT dblink_disconnect('ascii') \gset
SELECT dblink_exec('admin', 'DROP DATABASE opsflags_fuzz_ascii WITH (FORCE)') \gset
SELECT dblink_disconnect('admin') \gset

SELECT * FROM finish();
