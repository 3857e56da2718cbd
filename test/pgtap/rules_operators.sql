-- test/pgtap/rules_operators.sql: every clause operator of a targeting rule
-- evaluates as docs/rules.md says, on generated cases checked against the
-- plain SQL reference of rules_reference.inc: in/not_in (hash sets, lists of
-- 5,000 members), starts_with/ends_with/contains, matches (PostgreSQL's ~
-- and ~*), the numeric, date, semantic version and in_cidr (inet <<=)
-- operators and unsupported (an operator an import did not know), with
-- negate and case_insensitive drawn at random, and
-- attributes that are missing, null, under properties, behind a JSON
-- pointer or in a multi-kind context.
--
-- Each case is a flag of its own whose only rule has the case's clause and
-- whose fallthrough is off: the flag is enabled exactly when the clause
-- holds.  One transaction, rolled back; cases come from random() after
-- setseed (change the seed to draw others).
\ir setup.inc
\ir rules_reference.inc

BEGIN;
SELECT plan(18);
SET LOCAL opsflags.environment = 'production';
SELECT setseed(0.4711) AS x \gset

-- A random element of an array; a JSON array of lo..hi random elements.
CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT a[1 + floor(random() * array_length(a, 1))::int] $$;
CREATE FUNCTION pg_temp.picks(a text[], lo int, hi int) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  SELECT jsonb_agg(pg_temp.pick(a)::jsonb) FROM generate_series(1, lo + floor(random() * (hi - lo + 1))::int)
$$;
-- A random string of 0..len characters of an alphabet.
CREATE FUNCTION pg_temp.rstr(alphabet text, lo int, hi int) RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT string_agg(substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1), '')
  FROM generate_series(1, lo + floor(random() * (hi - lo + 1))::int)
$$;
CREATE FUNCTION pg_temp.jstr(alphabet text, lo int, hi int) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$ SELECT to_jsonb(coalesce(pg_temp.rstr(alphabet, lo, hi), '')) $$;
-- values: one in ten with white space around it (the engine trims values)
CREATE FUNCTION pg_temp.jstrs(alphabet text, lo int, hi int, n_lo int, n_hi int) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  SELECT jsonb_agg(CASE WHEN random() < 0.1 THEN to_jsonb(' ' || (v #>> '{}') || E'\t') ELSE v END)
  FROM (SELECT pg_temp.jstr(alphabet, lo, hi) AS v
        FROM generate_series(1, n_lo + floor(random() * (n_hi - n_lo + 1))::int)) s
$$;
-- An instant in one of the forms the date operators take: RFC 3339 in UTC,
-- at +02:00, without an offset (UTC), to the minute, a date alone (the
-- instant's day, a nearby instant), or milliseconds since 1970.
CREATE FUNCTION pg_temp.time_json(ts timestamptz, form int) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE form
      WHEN 1 THEN to_jsonb(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
      WHEN 2 THEN to_jsonb(to_char(ts AT TIME ZONE 'UTC' + interval '2 hours', 'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+02:00')
      WHEN 3 THEN to_jsonb(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'))
      WHEN 4 THEN to_jsonb(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'))
      WHEN 5 THEN to_jsonb(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD'))
      ELSE to_jsonb((extract(epoch FROM ts) * 1000)::bigint) END
$$;
CREATE FUNCTION pg_temp.rtime() RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
  SELECT timestamptz '2026-01-01 00:00:00+00' + floor(random() * 6)::int * interval '12 hours'
         + (floor(random() * 3)::int - 1) * interval '1 millisecond'
$$;
CREATE FUNCTION pg_temp.rversion() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT floor(random() * 3)::int || '.' || floor(random() * 3)::int || '.' || floor(random() * 2)::int
         || pg_temp.pick(ARRAY['', '', '', '-alpha', '-alpha.1', '-alpha.beta', '-beta', '-beta.2', '-beta.11', '-rc.1', '-1', '-0.3.7'])
         || pg_temp.pick(ARRAY['', '', '', '+build.5', '+001'])
$$;
CREATE FUNCTION pg_temp.raddr() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN random() < 0.8 THEN '10.0.' || floor(random() * 3)::int || '.' || floor(random() * 256)::int
              ELSE '2001:db8::' || to_hex(floor(random() * 256)::int) END
$$;
CREATE FUNCTION pg_temp.rrange() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN random() < 0.25 THEN a::text
              ELSE network(set_masklen(a, CASE WHEN family(a) = 4 THEN pg_temp.pick(ARRAY['8', '16', '23', '24', '30', '32'])::int
                                               ELSE pg_temp.pick(ARRAY['64', '120', '125', '128'])::int END))::text END
  FROM (SELECT pg_temp.raddr()::inet AS a) s
$$;

-- The cases: family, operator, attribute, values, negate, case_insensitive,
-- the context's value (NULL: the attribute is absent) and where the
-- context holds it.
CREATE TEMP TABLE cases (
    i serial PRIMARY KEY, family text, op text, attr text, vals jsonb,
    negate boolean DEFAULT random() < 0.3, ci boolean DEFAULT random() < 0.4,
    x jsonb, place text DEFAULT pg_temp.pick(ARRAY['top', 'top', 'properties', 'pointer', 'multi']),
    ctx jsonb, clause jsonb);

-- in / not_in: scalars of every type, numbers that are equal but written
-- differently, strings that are numbers, case.
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'in', pg_temp.pick(ARRAY['in', 'not_in']), 'tier',
       pg_temp.picks(ARRAY['"a"', '"b"', '"A"', '"é"', '"É"', '1', '1.0', '2', '-3.5', '"1"', '"2"', 'true', 'false', '""',
                           '" b "', '" "'], 1, 6),
       CASE WHEN random() < 0.1 THEN NULL
            ELSE pg_temp.pick(ARRAY['"a"', '"b"', '"B"', '"c"', '"é"', '"É"', '1', '1.00', '2', '-3.50', '"1"', '"1.0"',
                                    'true', 'false', '""', 'null', '{"o": 1}', '["a"]'])::jsonb END
FROM generate_series(1, 220);
-- in / not_in on lists of 5,000 members.
INSERT INTO cases (family, op, attr, vals, x, ci)
SELECT 'in (5,000 members)', pg_temp.pick(ARRAY['in', 'not_in']), 'account',
       (SELECT jsonb_agg(CASE WHEN g % 5 = 0 THEN to_jsonb(g) ELSE to_jsonb('acct-' || g) END) FROM generate_series(1, 5000) g),
       CASE WHEN random() < 0.5 THEN to_jsonb('acct-' || floor(random() * 10000)::int)
            WHEN random() < 0.5 THEN to_jsonb('ACCT-' || floor(random() * 10000)::int)
            ELSE to_jsonb(floor(random() * 10000)::int) END,
       random() < 0.5
FROM generate_series(1, 100);
-- starts_with / ends_with / contains
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'strings', op, 'email', pg_temp.jstrs('aAbB-é', CASE WHEN random() < 0.05 THEN 0 ELSE 1 END, 3, 1, 3),
       CASE WHEN random() < 0.05 THEN NULL WHEN random() < 0.08 THEN '12' ELSE pg_temp.jstr('aAbB-é', 0, 6) END
FROM generate_series(1, 110), unnest(ARRAY['starts_with', 'ends_with', 'contains']) op;
-- matches: PostgreSQL's regular expressions, ~ or ~* (case_insensitive)
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'matches', 'matches', 'name',
       pg_temp.picks(ARRAY['"^a"', '"b$"', '"a.b"', '"[AB]+"', '"^$"', '"A|c"', '"(ab){2}"', '"[0-9]+"', '"^x*$"', '"B"',
                           '"a[^b]"', '"^(a|b)+$"', '"\\d"', '"^[[:upper:]]"'], 1, 2),
       CASE WHEN random() < 0.05 THEN NULL WHEN random() < 0.05 THEN '7' ELSE pg_temp.jstr('aAbBc01', 0, 6) END
FROM generate_series(1, 130);
-- eq / lt / lte / gt / gte: numbers, strings that are numbers, others
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'numbers', pg_temp.pick(ARRAY['eq', 'lt', 'lte', 'gt', 'gte']), 'age',
       pg_temp.picks(ARRAY['-2', '-1.5', '0', '0.5', '1', '1.5', '2', '3', '100', '"2"', '" 31 "'], 1, 3),
       CASE WHEN r < 0.55 THEN pg_temp.pick(ARRAY['-2', '-1.50', '0', '0.5', '1', '1.0', '1.5', '2', '3', '100'])::jsonb
            WHEN r < 0.85 THEN to_jsonb(pg_temp.pick(ARRAY['-2', '0', '0.5', '1', '1.50', '3', '100', ' 2 ', '0x1f', '1e2', '.5',
                                                            'Infinity', '-Infinity', '+1']))
            WHEN r < 0.95 THEN pg_temp.pick(ARRAY['"abc"', '"1x"', '""', 'true', '[1]'])::jsonb
            END
FROM (SELECT random() AS r FROM generate_series(1, 160)) s;
-- before / after: instants 12 hours and 1 ms apart, in every form
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'dates', pg_temp.pick(ARRAY['before', 'after']), 'signupDate',
       (SELECT jsonb_agg(pg_temp.time_json(pg_temp.rtime(), 1 + floor(random() * 6)::int))
        FROM generate_series(1, 1 + floor(random() * 2)::int + 0 * i) WHERE i > 0),
       CASE WHEN r < 0.9 THEN pg_temp.time_json(pg_temp.rtime(), 1 + floor(random() * 6)::int)
            WHEN r < 0.95 THEN pg_temp.pick(ARRAY['"yesterday"', '"2026-13-01T00:00:00Z"', 'true'])::jsonb END
FROM (SELECT i, random() AS r FROM generate_series(1, 150) i) s;
-- currentTime: the context's, else the statement's time
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'dates', pg_temp.pick(ARRAY['before', 'after']), 'currentTime',
       pg_temp.picks(ARRAY['"2000-01-01T00:00:00Z"', '"2999-01-01T00:00:00Z"', '946684800000'], 1, 2),
       CASE WHEN random() < 0.6 THEN NULL ELSE pg_temp.time_json(pg_temp.rtime(), 1) END
FROM generate_series(1, 40);
-- semantic versions
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'semver', pg_temp.pick(ARRAY['semver_eq', 'semver_lt', 'semver_lte', 'semver_gt', 'semver_gte']), 'appVersion',
       (SELECT jsonb_agg(pg_temp.rversion()) FROM generate_series(1, 1 + floor(random() * 2)::int + 0 * i) WHERE i > 0),
       CASE WHEN r < 0.85 THEN to_jsonb(pg_temp.rversion())
            WHEN r < 0.97 THEN to_jsonb(pg_temp.pick(ARRAY['1.2', 'v1.2.3', '1.2.3.4', 'abc', '1.2.x', '', '01.2.3', '1.2.3-']))
            END
FROM (SELECT i, random() AS r FROM generate_series(1, 170) i) s;
-- in_cidr: addresses and ranges, IPv4 and IPv6
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'in_cidr', 'in_cidr', 'ip',
       (SELECT jsonb_agg(pg_temp.rrange()) FROM generate_series(1, 1 + floor(random() * 3)::int + 0 * i) WHERE i > 0),
       CASE WHEN r < 0.9 THEN to_jsonb(pg_temp.raddr())
            WHEN r < 0.97 THEN pg_temp.pick(ARRAY['"10.0.0.256"', '"abc"', '""', '10'])::jsonb END
FROM (SELECT i, random() AS r FROM generate_series(1, 150) i) s;

-- The contexts: the value at the top, under properties, behind a JSON
-- pointer or in the user of a multi-kind context; absent when x is NULL.
UPDATE cases SET ctx = CASE place
        WHEN 'top' THEN jsonb_build_object('key', 'u' || i) || coalesce(jsonb_build_object(attr, x), '{}')
        WHEN 'properties' THEN jsonb_build_object('key', 'u' || i, 'properties',
                                                  coalesce(jsonb_build_object(attr, x), '{}') || '{"other": 1}')
        WHEN 'pointer' THEN jsonb_build_object('key', 'u' || i, 'd', jsonb_build_object('e/f', coalesce(jsonb_build_object(attr, x), '{}')))
        ELSE jsonb_build_object('kind', 'multi', 'user', jsonb_build_object('key', 'u' || i) || coalesce(jsonb_build_object(attr, x), '{}'),
                                'org', jsonb_build_object('key', 'o' || i, attr, x)) END,
    attr = CASE WHEN place = 'pointer' THEN '/d/e~1f/' || replace(replace(attr, '~', '~0'), '/', '~1') ELSE attr END
WHERE attr <> 'currentTime';
UPDATE cases SET ctx = jsonb_build_object('key', 'u' || i) || coalesce(jsonb_build_object(attr, x), '{}')
WHERE attr = 'currentTime';

-- Missing attributes: contexts from a pool, clauses on attributes they may
-- or may not carry (absent, null, under properties, in a JSON pointer, a
-- multi-kind context without a user).
INSERT INTO cases (family, op, attr, vals, ctx, ci)
SELECT 'missing attributes', c[1], pg_temp.pick(ARRAY['country', 'plan', '/plan/tier', '/a~1b/c~0d', 'key', 'email']), c[2]::jsonb,
       pg_temp.pick(ARRAY['{}', '{"key": "u1"}', '{"targetingKey": "u2", "country": "DE"}',
                          '{"userId": "u3", "properties": {"country": "FR", "email": "Y@EXAMPLE.COM"}}',
                          '{"key": "u4", "country": null, "email": null}', '{"plan": {"tier": "pro"}}',
                          '{"plan": {"tier": null}}', '{"plan": "pro"}', '{"a/b": {"c~d": "DE"}}',
                          '{"kind": "multi", "user": {"key": "u6", "country": "DE"}, "org": {"key": "o1", "country": "FR"}}',
                          '{"kind": "multi", "org": {"key": "o1", "country": "DE", "plan": "pro"}}',
                          '{"key": "u7", "email": "x@example.com", "plan": {"tier": "free"}}'])::jsonb,
       random() < 0.5
FROM (SELECT pg_temp.pick(ARRAY['in|["DE", "pro", "u1", "u2", "u3"]', 'not_in|["DE", "pro"]', 'ends_with|["@example.com"]',
                                'starts_with|["D", "u"]', 'contains|["r"]', 'matches|["^u[0-9]", "^p"]']) AS s
      FROM generate_series(1, 150)) g,
     LATERAL (SELECT string_to_array(g.s, '|') AS c) l;

-- unsupported: an operator an import did not know never holds, negated or not.
INSERT INTO cases (family, op, attr, vals, x)
SELECT 'unsupported', 'unsupported', 'tier', pg_temp.picks(ARRAY['"a"', '"b"', '1'], 0, 2),
       CASE WHEN random() < 0.7 THEN pg_temp.pick(ARRAY['"a"', '"b"', '1'])::jsonb END
FROM generate_series(1, 40);

-- The rule of each case's flag.
UPDATE cases SET clause = jsonb_build_object('attribute', attr, 'op', op, 'values', coalesce(vals, '[]'))
    || CASE WHEN op = 'unsupported' THEN '{"operator": "someFutureOperator"}' ELSE '{}' END::jsonb
    || CASE WHEN negate OR random() < 0.5 THEN jsonb_build_object('negate', negate) ELSE '{}' END
    || CASE WHEN ci OR random() < 0.5 THEN jsonb_build_object('case_insensitive', ci) ELSE '{}' END;
SELECT count(opsflags.create_flag('tap.rop.' || i)) AS x FROM cases \gset
UPDATE opsflags.feature_flag_configs fc
SET is_enabled = true, fallthrough = '{"off": true}',
    rules = jsonb_build_array(jsonb_build_object('id', 'r' || c.i, 'clauses', jsonb_build_array(c.clause)))
FROM cases c WHERE fc.flag_id = opsflags.flag_id('tap.rop.' || c.i) AND fc.environment = 'production';

CREATE TEMP TABLE results AS
SELECT c.*, pg_temp.ref_clause(c.clause, c.ctx) AS want,
       opsflags.feature_enabled('tap.rop.' || c.i, c.ctx) AS got,
       opsflags.feature_explain('tap.rop.' || c.i, c.ctx) AS explain
FROM cases c;

SELECT diag(format('%s: clause %s, context %s: enabled %s, reference %s', family, left(clause::text, 300), ctx, got, want))
FROM (SELECT *, row_number() OVER (PARTITION BY family ORDER BY i) AS n FROM results WHERE got IS DISTINCT FROM want) s
WHERE n <= 5 ORDER BY i;

-- Every family has 100 cases or more with both outcomes well represented
-- (a family whose clauses always held, or never, would prove nothing).
SELECT is((SELECT array_agg(family ORDER BY family) FROM (
               SELECT family FROM results WHERE family <> 'unsupported' GROUP BY family
               HAVING count(*) < 100 OR count(*) FILTER (WHERE want) < 0.15 * count(*)
                      OR count(*) FILTER (WHERE NOT want) < 0.15 * count(*)) s),
          NULL, 'every operator family: 100 cases or more, each outcome in 15 % of them or more');
SELECT cmp_ok((SELECT count(*)::int FROM results WHERE negate), '>=', 100, 'at least 100 negated clauses');
SELECT cmp_ok((SELECT count(*)::int FROM results WHERE pg_temp.ref_attr(ctx, attr) IS NULL), '>=', 100,
              'at least 100 clauses on a missing attribute');

SELECT is((SELECT count(*)::int FROM results WHERE family = f AND got IS DISTINCT FROM want), 0,
          format('%s: feature_enabled = the reference on %s cases', f, (SELECT count(*) FROM results WHERE family = f)))
FROM unnest(ARRAY['in', 'in (5,000 members)', 'strings', 'matches', 'numbers', 'dates', 'semver', 'in_cidr',
                  'missing attributes']) f;
SELECT is((SELECT count(*)::int FROM results WHERE family = 'unsupported' AND got IS DISTINCT FROM false), 0,
          format('unsupported: never holds, on %s cases (%s negated)', (SELECT count(*) FROM results WHERE family = 'unsupported'),
                 (SELECT count(*) FROM results WHERE family = 'unsupported' AND negate)));
SELECT is((SELECT count(*)::int FROM results WHERE negate AND got IS DISTINCT FROM want), 0,
          'negate: feature_enabled = the reference on every negated clause');
SELECT is((SELECT count(*)::int FROM results WHERE ci AND got IS DISTINCT FROM want), 0,
          'case_insensitive: feature_enabled = the reference on every case-insensitive clause');
SELECT is((SELECT count(*)::int FROM results WHERE pg_temp.ref_attr(ctx, attr) IS NULL AND got IS DISTINCT FROM want), 0,
          'missing attributes: feature_enabled = the reference (a negated clause on a missing attribute holds)');
SELECT is((SELECT count(*)::int FROM results
           WHERE explain ->> 'reason' IS DISTINCT FROM CASE WHEN want THEN 'RULE_MATCH' ELSE 'NO_MATCH' END
              OR explain ->> 'rule' IS DISTINCT FROM CASE WHEN want THEN 'r' || i END
              OR (explain -> 'enabled')::boolean IS DISTINCT FROM want), 0,
          'feature_explain: RULE_MATCH naming the rule when the clause holds, else NO_MATCH with no rule');
SELECT is((SELECT count(*)::int FROM results WHERE opsflags.feature_value('tap.rop.' || i, ctx) IS DISTINCT FROM to_jsonb(want)), 0,
          'feature_value agrees with feature_enabled');

SELECT * FROM finish();
ROLLBACK;
