-- test/pgtap/flags_context.sql: evaluation for a context (a jsonb object)
-- answers exactly as the (flag_key, user, role) form, on 400 generated
-- (flag, user, role) cases over 40 generated flags, whichever way the
-- context names the user (key, targetingKey, userId, a LaunchDarkly
-- multi-kind context) and whatever other attributes it carries; and
-- evaluate_all is feature_explain of every flag.  One transaction, rolled
-- back; cases derive from md5 of a seed string.
\ir setup.inc

BEGIN;
SELECT plan(5);

SET LOCAL opsflags.environment = 'production';

CREATE FUNCTION pg_temp.rnd(tag text, i bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT
AS $$
  -- the seed: change 'opsflags-context-1' to draw other cases
  SELECT ('x' || substr(md5(tag || '/' || i || '/opsflags-context-1'), 1, 8))::bit(32)::bigint
         / 4294967296.0::double precision
$$;
CREATE FUNCTION pg_temp.irnd(tag text, i bigint, lo int, hi int)
RETURNS int LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT lo + floor(pg_temp.rnd(tag, i) * (hi - lo + 1))::int $$;

-- 40 flags: on or off, targeted users and roles, a rollout of 0..100 %,
-- sometimes a rollout group.
SELECT count(opsflags.create_flag('ctx.flag' || i)) FROM generate_series(1, 40) i \gset
SELECT count(opsflags.update_flag('ctx.flag' || i, jsonb_build_object(
    'is_enabled', pg_temp.rnd('on', i) < 0.8,
    'enabled_for_users', (SELECT coalesce(jsonb_agg('u' || pg_temp.irnd('tu', i * 10 + j, 1, 30)), '[]')
                          FROM generate_series(1, pg_temp.irnd('ntu', i, 0, 4)) j),
    'enabled_for_roles', CASE WHEN pg_temp.rnd('tr', i) < 0.3 THEN '["admin"]'::jsonb ELSE '[]' END,
    'enabled_percentage', pg_temp.irnd('pct', i, 0, 100))))
FROM generate_series(1, 40) i \gset
UPDATE opsflags.feature_flags SET rollout_group = 'grp' || (hashtext(flag_key) & 3)
WHERE flag_key LIKE 'ctx.flag%' AND hashtext(flag_key) % 2 = 0;

-- 400 cases: a flag, a user (or none), a role (or none), a way of saying it
CREATE TEMP TABLE cases AS
SELECT i, 'ctx.flag' || pg_temp.irnd('f', i, 1, 40) AS k,
       CASE WHEN pg_temp.rnd('nu', i) < 0.1 THEN NULL ELSE 'u' || pg_temp.irnd('u', i, 1, 40) END AS u,
       (ARRAY['admin', 'member', NULL])[pg_temp.irnd('r', i, 1, 3)] AS r,
       pg_temp.irnd('form', i, 1, 4) AS form
FROM generate_series(1, 400) i;
ALTER TABLE cases ADD COLUMN ctx jsonb;
UPDATE cases SET ctx = CASE form
    WHEN 1 THEN jsonb_build_object('key', u, 'role', r)
    WHEN 2 THEN jsonb_build_object('targetingKey', u, 'role', r, 'country', 'DE')
    WHEN 3 THEN jsonb_build_object('userId', u, 'role', r, 'appVersion', '2.1.0', 'plan', '{"tier": "pro"}'::jsonb)
    ELSE jsonb_build_object('kind', 'multi', 'user', jsonb_build_object('key', u, 'role', r),
                            'org', jsonb_build_object('key', 'acme')) END;
-- jsonb_build_object keeps null members: a null key or role is no key or role
SELECT is((SELECT count(DISTINCT form) FROM cases), 4::bigint, 'the cases use every way of naming the user');

SELECT is((SELECT count(*) FROM cases
           WHERE opsflags.feature_enabled(k, ctx) IS DISTINCT FROM opsflags.feature_enabled(k, u, r)), 0::bigint,
          'feature_enabled(flag, context) = feature_enabled(flag, user, role) on 400 cases');
SELECT is((SELECT count(*) FROM cases
           WHERE opsflags.feature_value(k, ctx) IS DISTINCT FROM opsflags.feature_value(k, u, r)), 0::bigint,
          'feature_value(flag, context) = feature_value(flag, user, role)');
SELECT is((SELECT count(*) FROM cases
           WHERE opsflags.feature_explain(k, ctx) IS DISTINCT FROM opsflags.feature_explain(k, u, r)), 0::bigint,
          'feature_explain(flag, context) = feature_explain(flag, user, role): same reason, bucket, value');
SELECT is((SELECT count(*) FROM (SELECT DISTINCT u, r FROM cases) c,
                  LATERAL (SELECT opsflags.evaluate_all(jsonb_build_object('key', c.u, 'role', c.r), 'production') AS doc) a,
                  generate_series(1, 40) i
           WHERE a.doc -> ('ctx.flag' || i) IS DISTINCT FROM opsflags.feature_explain('ctx.flag' || i, c.u, c.r)), 0::bigint,
          'evaluate_all(context, environment) holds feature_explain of every flag, for every user and role drawn');

SELECT * FROM finish();
ROLLBACK;
