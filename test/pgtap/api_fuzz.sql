-- test/pgtap/api_fuzz.sql: every function of schema opsflags called with hostile
-- arguments (NULLs, empty and 1 MB strings, invalid keys, SQL-looking text,
-- deeply nested and huge JSON, huge arrays, extreme numbers and times):
-- only clean errors, never an internal error (XX000) or a crash (a crash
-- would end this session and fail the file).  Runs in one transaction,
-- rolled back, with a savepoint per call.
\ir setup.inc

BEGIN;
SELECT plan(4);
-- A hang fails the file; slowness on a busy machine does not.
SET LOCAL statement_timeout = '180s';

CREATE TEMP TABLE hostile (type regtype, v text);
INSERT INTO hostile VALUES
  ('text', NULL), ('text', ''), ('text', repeat('x', 1048576)), ('text', 'a'' OR ''1''=''1'),
  ('text', '"; DROP TABLE opsflags.feature_flags; --'), ('text', E'\\x01\\x02'), ('text', 'production'),
  ('text', 'tap.fuzz.flag'), ('text', '用户-ünï'), ('text', repeat('k', 101)),
  ('jsonb', NULL), ('jsonb', '{}'), ('jsonb', '[]'), ('jsonb', 'null'), ('jsonb', '"x"'),
  ('jsonb', repeat('[', 2000) || repeat(']', 2000)),
  ('jsonb', (SELECT jsonb_agg(i)::text FROM generate_series(1, 100000) i)),
  ('jsonb', '{"is_enabled": "yes", "enabled_percentage": 1e300, "enabled_for_users": [1, null, {}]}'),
  ('jsonb', '{"tap.fuzz.flag": {"value": {"deep": [1, 2, 3]}, "variation": 99999999999}}'),
  ('boolean', NULL), ('boolean', 'true'), ('boolean', 'false'),
  ('integer', NULL), ('integer', '0'), ('integer', '-1'), ('integer', '2147483647'),
  ('bigint', NULL), ('bigint', '-9223372036854775808'), ('bigint', '0'),
  ('uuid', NULL), ('uuid', '00000000-0000-0000-0000-000000000000'),
  ('timestamp with time zone', NULL), ('timestamp with time zone', 'infinity'),
  ('timestamp with time zone', '-infinity'), ('timestamp with time zone', '4713-01-01 BC'),
  ('interval', NULL), ('interval', '-1000 years'), ('interval', '0'),
  ('text[]', NULL), ('text[]', '{}'), ('text[]', (SELECT array_agg(i::text)::text FROM generate_series(1, 100000) i)),
  ('regclass', NULL), ('regclass', 'pg_class'), ('regclass', 'opsflags.audit_log');

SELECT opsflags.create_flag('tap.fuzz.flag', 'Fuzz') IS NOT NULL AS x \gset

-- Every (function, argument slot) gets each hostile value of its type, the
-- other arguments a plain value.
CREATE TEMP TABLE calls AS
WITH fns AS (
  SELECT p.oid, p.pronamespace::regnamespace::text AS nsp, p.proname, ARRAY(SELECT t::regtype FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, o) ORDER BY o) AS types, p.pronargs
  FROM pg_proc p
  WHERE p.pronamespace IN ('opsflags'::regnamespace, 'opsflags_internal'::regnamespace) AND p.prokind = 'f'
    AND p.prorettype <> 'trigger'::regtype
    AND p.proname NOT IN ('purge_audit_log', 'set_maintenance_mode', 'take_sample', 'apply_retention')
), slots AS (
  SELECT f.*, s.i FROM fns f, generate_series(1, greatest(f.pronargs, 1)) s(i)
), plain AS (   -- the shortest non-NULL value of each type, for the other arguments
  SELECT DISTINCT ON (type) type, v FROM hostile WHERE v IS NOT NULL ORDER BY type, length(v)
)
SELECT s.proname, s.i, h.v,
       format('SELECT %I.%I(%s)', s.nsp, s.proname,
              coalesce((SELECT string_agg(CASE WHEN j = s.i THEN coalesce(quote_literal(h.v), 'NULL')
                                               ELSE coalesce((SELECT quote_literal(p.v) FROM plain p
                                                              WHERE p.type = s.types[j]), 'NULL') END
                                          || '::' || s.types[j]::text, ', ' ORDER BY j)
                        FROM generate_series(1, s.pronargs) j), '')) AS sql
FROM slots s JOIN hostile h ON s.pronargs = 0 OR h.type = s.types[s.i];

CREATE TEMP TABLE outcomes (sql text, state text, message text);
DO $$
DECLARE c record; st text; msg text;
BEGIN
    FOR c IN SELECT DISTINCT sql FROM calls LOOP
        BEGIN
            EXECUTE c.sql;
            INSERT INTO outcomes VALUES (left(c.sql, 200), '00000', NULL);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            INSERT INTO outcomes VALUES (left(c.sql, 200), st, left(msg, 200));
        END;
    END LOOP;
END $$;

SELECT cmp_ok((SELECT count(*)::int FROM outcomes), '>=', 300, 'at least 300 hostile calls made');
SELECT is((SELECT count(*)::int FROM outcomes WHERE state = '42883'), 0,
          'every generated call reaches its function (the fuzzer itself is right)');
SELECT is((SELECT count(*)::int FROM outcomes WHERE state IN ('XX000', 'XX001', 'XX002')), 0,
          'no call ends in an internal error');
SELECT is((SELECT count(*)::int FROM outcomes WHERE state = '57014'), 0,
          'no call runs into the statement timeout');

SELECT * FROM finish();
ROLLBACK;
