-- test/pgtap/audit_tenants.sql: tenant-scoped audit.
--
-- 1. Properties, on 150 generated rounds.  Each round writes random rows of
--    two tables audited with a tenant column (public.tap_ten_items, tenant
--    text, and the partitioned public.tap_ten_parts, tenant int, whose
--    partitions are made as rounds go), as the superuser or as a role with
--    no right on audit_log: inserts, updates that keep or move the tenant
--    (NULL included) and deletes; grants and revokes tenant admins to
--    random roles and groups; and adds or removes role memberships (groups
--    nested in groups).  After each round, for every test role, the audit
--    rows of this run it can SELECT (or 42501) equal a plain SQL reference
--    computed as superuser: every row for a member of opsflags_admin; for
--    a role that is, or is a member of (pg_auth_members, followed
--    recursively), a role of tenant_admins, the rows of those tenants;
--    42501 for any other.  Every audit row of the two tables carries the
--    tenant of its row image (a row moving tenant: one row per tenant, the
--    old one first), and every grant and revoke is audited under its
--    tenant.
-- 2. Two sessions (dblink): a grant or revoke that another session has not
--    committed changes nothing for a tenant admin's session; committed, it
--    does at its next statement.  Two grants at once: the second waits for
--    the first and then succeeds.
--
-- Tables tap_ten_*, roles tap_ten_* are removed at the start (leftovers)
-- and at the end.  Audit rows of earlier runs are told apart by id.
\ir setup.inc

CREATE FUNCTION pg_temp.drop_roles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    PERFORM opsflags.revoke_tenant_admin(t.role, t.tenant)
    FROM opsflags.tenant_admins t WHERE t.role::text LIKE 'tap\_ten\_%';
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'tap\_ten\_%' ORDER BY rolname LOOP
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
DROP TABLE IF EXISTS public.tap_ten_items, public.tap_ten_parts CASCADE;
SELECT pg_temp.drop_roles() AS x \gset

SELECT plan(12);

SELECT coalesce(max(id), 0) AS audit_start FROM opsflags.audit_log \gset

-- Readers: six roles, three groups (tap_ten_g3 in tap_ten_g1), one admin.
CREATE ROLE tap_ten_r1 LOGIN;
CREATE ROLE tap_ten_r2;
CREATE ROLE tap_ten_r3;
CREATE ROLE tap_ten_r4;
CREATE ROLE tap_ten_r5;
CREATE ROLE tap_ten_r6;
CREATE ROLE tap_ten_g1;
CREATE ROLE tap_ten_g2;
CREATE ROLE tap_ten_g3 IN ROLE tap_ten_g1;
CREATE ROLE tap_ten_admin IN ROLE opsflags_admin;
CREATE ROLE tap_ten_writer;   -- writes the audited tables, reads nothing

CREATE TABLE public.tap_ten_items (id int PRIMARY KEY, tenant text, v int);
CREATE TABLE public.tap_ten_parts (id int, tenant int, v int) PARTITION BY LIST ((id % 4));
CREATE TABLE public.tap_ten_parts_0 PARTITION OF public.tap_ten_parts FOR VALUES IN (0);
SELECT opsflags.audit_table('public.tap_ten_items', 'tenant') AS x \gset
SELECT opsflags.audit_table('public.tap_ten_parts', 'tenant') AS x \gset
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tap_ten_items, public.tap_ten_parts TO tap_ten_writer;

CREATE TEMP TABLE readers (name text PRIMARY KEY);
INSERT INTO readers VALUES ('tap_ten_r1'), ('tap_ten_r2'), ('tap_ten_r3'), ('tap_ten_r4'), ('tap_ten_r5'),
                           ('tap_ten_r6'), ('tap_ten_g1'), ('tap_ten_g2'), ('tap_ten_g3'), ('tap_ten_admin'),
                           ('tap_ten_writer');
CREATE TEMP TABLE checks (round int, reader text, want text, got text);
CREATE TEMP TABLE round_log (round int, what text, changed boolean);
-- This run's audit rows the checks look at: those of the two tables and of
-- this file's tenant admins (other files may write audit rows meanwhile).
CREATE FUNCTION pg_temp.mine(l opsflags.audit_log) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT l.table_name LIKE 'public.tap\_ten\_%'
      OR (l.resource_type = 'tenant_admin' AND l.resource_id LIKE 'tap\_ten\_%')
$$;

-- The reference: what reader may SELECT of the rows after since, computed
-- from pg_auth_members and tenant_admins.
CREATE FUNCTION pg_temp.reference(reader text, since bigint) RETURNS text
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE up(r) AS (
      SELECT oid FROM pg_roles WHERE rolname = reader
      UNION
      SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.r),
  ta AS (SELECT t.tenant FROM opsflags.tenant_admins t WHERE t.role::oid IN (SELECT r FROM up)),
  adm AS (SELECT EXISTS (SELECT 1 FROM up JOIN pg_roles p ON p.oid = up.r WHERE p.rolname = 'opsflags_admin') AS a)
  SELECT CASE WHEN NOT (SELECT a FROM adm) AND NOT EXISTS (SELECT 1 FROM ta) THEN 'ERROR 42501'
              ELSE (SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}')::text FROM opsflags.audit_log l
                    WHERE l.id > since AND pg_temp.mine(l)
                      AND ((SELECT a FROM adm) OR l.tenant IN (SELECT tenant FROM ta))) END
$$;

-- What reader gets, as that role.
CREATE FUNCTION pg_temp.as_reader(reader text, since bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    got text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', reader);
    BEGIN
        EXECUTE 'SELECT coalesce(array_agg(l.id ORDER BY l.id), ''{}'')::text FROM opsflags.audit_log l '
                'WHERE l.id > $1 AND pg_temp.mine(l)'
            INTO got USING since;
    EXCEPTION WHEN insufficient_privilege THEN
        got := 'ERROR 42501';
    END;
    RESET ROLE;
    RETURN got;
END
$$;

-- The generated rounds.
CREATE FUNCTION pg_temp.rounds(n int, since bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tenants text[] := ARRAY['acme', 'globex', 'initech', 'umbrella', 'hooli', NULL];
    grantees text[] := ARRAY['tap_ten_r1', 'tap_ten_r2', 'tap_ten_r3', 'tap_ten_r4', 'tap_ten_r5', 'tap_ten_r6',
                             'tap_ten_g1', 'tap_ten_g2', 'tap_ten_g3'];
    members text[] := ARRAY['tap_ten_r1', 'tap_ten_r2', 'tap_ten_r3', 'tap_ten_r4', 'tap_ten_r5', 'tap_ten_r6'];
    groups text[] := ARRAY['tap_ten_g1', 'tap_ten_g2', 'tap_ten_g3'];
    next_id int := 1;
    parts int := 1;
    pid int;
    changed boolean;
    t text;
    g text;
    m text;
    r record;
BEGIN
    FOR round IN 1 .. n LOOP
        -- Writes, as the superuser or as tap_ten_writer.
        IF random() < 0.5 THEN
            SET LOCAL ROLE tap_ten_writer;
        END IF;
        FOR k IN 1 .. 1 + floor(random() * 4)::int LOOP
            t := tenants[1 + floor(random() * 6)::int];
            CASE floor(random() * 5)::int
                WHEN 0, 1 THEN
                    INSERT INTO public.tap_ten_items VALUES (next_id, t, round * 10 + k);
                    next_id := next_id + 1;
                WHEN 2 THEN
                    UPDATE public.tap_ten_items i SET tenant = t, v = round * 10 + k
                    WHERE i.id = (SELECT min(x.id) FROM public.tap_ten_items x WHERE x.id >= floor(random() * next_id));
                WHEN 3 THEN
                    DELETE FROM public.tap_ten_items i
                    WHERE i.id = (SELECT min(x.id) FROM public.tap_ten_items x WHERE x.id >= floor(random() * next_id));
                ELSE
                    -- The tenant of tap_ten_parts is an int: 0 .. 5, or NULL.
                    pid := floor(random() * 20)::int * 4 + floor(random() * parts)::int;
                    IF EXISTS (SELECT 1 FROM public.tap_ten_parts p WHERE p.id = pid) THEN
                        UPDATE public.tap_ten_parts p SET tenant = nullif(floor(random() * 7)::int, 6), v = round * 10 + k
                        WHERE p.id = pid;
                    ELSE
                        INSERT INTO public.tap_ten_parts VALUES (pid, nullif(floor(random() * 7)::int, 6), round * 10 + k);
                    END IF;
            END CASE;
        END LOOP;
        RESET ROLE;
        -- Partitions made later: the tenant column follows.
        IF round IN (20, 50, 80) THEN
            EXECUTE format('CREATE TABLE public.tap_ten_parts_%s PARTITION OF public.tap_ten_parts FOR VALUES IN (%s)',
                           parts, parts);
            parts := parts + 1;
        END IF;
        -- Tenant admins: grant or revoke (tenants of both tables).
        IF random() < 0.7 THEN
            g := grantees[1 + floor(random() * 9)::int];
            t := CASE WHEN random() < 0.3 THEN floor(random() * 6)::text   -- a tenant of tap_ten_parts
                      ELSE tenants[1 + floor(random() * 5)::int] END;
            IF random() < 0.65 THEN
                changed := opsflags.grant_tenant_admin(g::regrole, t);
                INSERT INTO round_log VALUES (round, 'grant ' || g || ' ' || t, changed);
            ELSE
                -- Mostly one that exists, sometimes one that does not.
                SELECT ta.role::text AS role, ta.tenant INTO r FROM opsflags.tenant_admins ta
                WHERE ta.role::text LIKE 'tap\_ten\_%' AND random() < 0.8 ORDER BY random() LIMIT 1;
                IF NOT FOUND THEN
                    SELECT g AS role, t AS tenant INTO r;
                END IF;
                changed := opsflags.revoke_tenant_admin(r.role::regrole, r.tenant);
                INSERT INTO round_log VALUES (round, 'revoke ' || r.role || ' ' || r.tenant, changed);
            END IF;
        END IF;
        -- Memberships.
        IF random() < 0.3 THEN
            m := members[1 + floor(random() * 6)::int];
            g := groups[1 + floor(random() * 3)::int];
            IF EXISTS (SELECT 1 FROM pg_auth_members a WHERE a.member = m::regrole::oid AND a.roleid = g::regrole::oid) THEN
                EXECUTE format('REVOKE %I FROM %I', g, m);
                INSERT INTO round_log VALUES (round, 'revoke membership ' || g || ' from ' || m);
            ELSE
                EXECUTE format('GRANT %I TO %I', g, m);
                INSERT INTO round_log VALUES (round, 'grant membership ' || g || ' to ' || m);
            END IF;
        END IF;
        -- Every reader against the reference.
        INSERT INTO checks
        SELECT round, rd.name, pg_temp.reference(rd.name, since), pg_temp.as_reader(rd.name, since)
        FROM readers rd;
    END LOOP;
END
$$;

SELECT setseed(0.4242) AS x \gset
BEGIN;
SELECT pg_temp.rounds(150, :audit_start) AS x \gset
COMMIT;
SELECT max(id) AS rounds_end FROM opsflags.audit_log \gset

-------------------------------------------------------------------------------
-- 1. Properties
-------------------------------------------------------------------------------
SELECT cmp_ok((SELECT count(DISTINCT round)::int FROM checks), '>=', 100,
              '(150 generated rounds of writes, tenant admin grants and revokes and memberships, every reader checked after each)');
SELECT ok((SELECT count(*) FROM round_log WHERE what LIKE 'grant tap%') >= 30
          AND (SELECT count(*) FROM round_log WHERE what LIKE 'revoke tap%') >= 10
          AND (SELECT count(*) FROM round_log WHERE what LIKE '% membership %') >= 20
          AND (SELECT count(*) FROM checks WHERE want = 'ERROR 42501') >= 100
          AND (SELECT count(*) FROM checks WHERE want LIKE '{%' AND reader <> 'tap_ten_admin' AND want <> '{}') >= 300
          AND (SELECT count(*) FROM opsflags.audit_log l WHERE l.id > :audit_start AND l.tenant IS NULL
               AND l.table_name LIKE 'public.tap\_ten\_%') >= 10,
          '(the rounds hold grants, revokes, membership changes, readers refused, tenant admins reading rows, and rows without tenant)');
-- A mismatch shown as the rows missing and the rows too many.
CREATE FUNCTION pg_temp.delta(want text, got text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN want LIKE '{%' AND got LIKE '{%'
              THEN format('missing %s, too many %s',
                          (SELECT array_agg(x) FROM unnest(want::bigint[]) x WHERE x <> ALL (got::bigint[])),
                          (SELECT array_agg(x) FROM unnest(got::bigint[]) x WHERE x <> ALL (want::bigint[])))
              ELSE format('want %s, got %s', left(want, 40), left(got, 40)) END
$$;
SELECT is((SELECT array_agg(format('round %s %s: %s', round, reader, pg_temp.delta(want, got)) ORDER BY round, reader)
           FROM (SELECT * FROM checks WHERE want IS DISTINCT FROM got ORDER BY round, reader LIMIT 5) c),
          NULL,
          'every reader after every round SELECTs exactly the reference''s rows: all for opsflags_admin, its tenants'' for a tenant admin or a member of one (nested groups too), 42501 for the others');
SELECT ok((SELECT bool_and(got = want) FROM checks WHERE reader IN ('tap_ten_r1', 'tap_ten_g3'))
          AND (SELECT count(*) FROM checks WHERE reader = 'tap_ten_r1' AND want LIKE '{%') > 0
          AND (SELECT count(*) FROM checks WHERE reader = 'tap_ten_writer' AND want <> 'ERROR 42501') = 0,
          'a role writing the audited tables reads none of it; roles reach tenants through groups');

-- Each audit row of the two tables carries the tenant of its image.
CREATE TEMP VIEW ten_rows AS
SELECT l.id, l.action, l.tenant, l.old_values ->> 'tenant' AS old_t, l.new_values ->> 'tenant' AS new_t,
       l.old_values, l.new_values, l.table_name
FROM opsflags.audit_log l
WHERE l.id > :audit_start AND (l.table_name = 'public.tap_ten_items' OR l.table_name LIKE 'public.tap\_ten\_parts\_%');
SELECT is((SELECT count(*)::int FROM ten_rows
           WHERE NOT CASE action WHEN 'INSERT' THEN tenant IS NOT DISTINCT FROM new_t
                                 WHEN 'DELETE' THEN tenant IS NOT DISTINCT FROM old_t
                                 ELSE tenant IS NOT DISTINCT FROM new_t OR tenant IS NOT DISTINCT FROM old_t END),
          0, 'INSERT rows carry the new row''s tenant, DELETE rows the old one''s, UPDATE rows one of the two');
SELECT is((SELECT array_agg(id) FROM (
             SELECT min(id) AS id FROM ten_rows WHERE action = 'UPDATE'
             GROUP BY table_name, old_values, new_values
             HAVING array_agg(tenant ORDER BY id)::text IS DISTINCT FROM
                    CASE WHEN min(old_t) IS NOT DISTINCT FROM min(new_t) THEN ARRAY[min(new_t)]
                         ELSE ARRAY[min(old_t), min(new_t)] END::text) x),
          NULL,
          'an UPDATE keeping the tenant is one row with it; one moving the row is two, the old tenant''s then the new one''s');
SELECT cmp_ok((SELECT count(DISTINCT (table_name, old_values, new_values))::int FROM ten_rows
               WHERE action = 'UPDATE' AND old_t IS DISTINCT FROM new_t), '>=', 20,
              '(over 20 updates moved a row to another tenant)');
SELECT is((SELECT array_agg(DISTINCT table_name ORDER BY table_name) FROM ten_rows WHERE table_name LIKE '%parts%' AND tenant IS NOT NULL),
          ARRAY['public.tap_ten_parts_0', 'public.tap_ten_parts_1', 'public.tap_ten_parts_2', 'public.tap_ten_parts_3'],
          'partitions made after audit_table record the tenant too (an int column, as text)');
SELECT is((SELECT array_agg(l.action || ' ' || l.resource_id || ' ' || coalesce(l.tenant, '-') ORDER BY l.id)
           FROM opsflags.audit_log l
           WHERE l.id > :audit_start AND l.id <= :rounds_end AND l.resource_type = 'tenant_admin'
             AND l.resource_id LIKE 'tap\_ten\_%'),
          (SELECT array_agg(CASE WHEN g.what LIKE 'grant %' THEN 'INSERT ' ELSE 'DELETE ' END
                            || split_part(g.what, ' ', 2) || ',' || split_part(g.what, ' ', 3) || ' ' || split_part(g.what, ' ', 3)
                            ORDER BY g.ctid)
           FROM round_log g WHERE g.changed),
          'every grant and revoke that changed something (true) is audited, under its tenant; the others (false) are not');
SELECT ok((SELECT count(*) FROM round_log WHERE changed IS false AND what LIKE 'grant %') > 0
          AND (SELECT count(*) FROM round_log WHERE changed IS false AND what LIKE 'revoke %') > 0,
          '(some grants were repeated and some revokes named no tenant admin)');

-------------------------------------------------------------------------------
-- 2. Two sessions
-------------------------------------------------------------------------------
CREATE ROLE tap_ten_s LOGIN;
CREATE ROLE tap_ten_s2;
SELECT opsflags.grant_tenant_admin('tap_ten_s', 'seen') AS x \gset
INSERT INTO public.tap_ten_items VALUES (100001, 'seen', 1), (100002, 'later', 1);

CREATE FUNCTION pg_temp.s_sees() RETURNS text LANGUAGE sql AS $$
  SELECT x FROM dblink('s', $q$SELECT coalesce(string_agg(DISTINCT tenant, ',' ORDER BY tenant), '')
                              FROM opsflags.audit_log WHERE table_name = 'public.tap_ten_items' AND resource_id LIKE '10000_'$q$)
    AS t(x text)
$$;
CREATE FUNCTION pg_temp.wait_until_blocked(pid int) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        IF EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = wait_until_blocked.pid AND a.wait_event_type = 'Lock') THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN false;
END
$$;

SELECT dblink_connect('s', pg_temp.tap_conninfo(usr => 'tap_ten_s', app => 'tap_ten_s')) AS x \gset
SELECT dblink_connect('a', pg_temp.tap_conninfo(app => 'tap_ten_a')) AS x \gset
SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_ten_b')) AS x \gset
CREATE TEMP TABLE seen (step text, tenants text);
INSERT INTO seen VALUES ('before', pg_temp.s_sees());
SELECT dblink_exec('a', 'BEGIN') AS x \gset
SELECT x FROM dblink('a', $$SELECT opsflags.grant_tenant_admin('tap_ten_s', 'later')::text$$) AS t(x text) \gset
INSERT INTO seen VALUES ('grant not committed', pg_temp.s_sees());
SELECT dblink_exec('a', 'COMMIT') AS x \gset
INSERT INTO seen VALUES ('grant committed', pg_temp.s_sees());
SELECT dblink_exec('a', 'BEGIN') AS x \gset
SELECT x FROM dblink('a', $$SELECT opsflags.revoke_tenant_admin('tap_ten_s', 'later')::text$$) AS t(x text) \gset
INSERT INTO seen VALUES ('revoke not committed', pg_temp.s_sees());
SELECT dblink_exec('a', 'ROLLBACK') AS x \gset
INSERT INTO seen VALUES ('revoke rolled back', pg_temp.s_sees());
SELECT x FROM dblink('a', $$SELECT opsflags.revoke_tenant_admin('tap_ten_s', 'later')::text$$) AS t(x text) \gset
INSERT INTO seen VALUES ('revoke committed', pg_temp.s_sees());
SELECT is((SELECT array_agg(step || ': ' || tenants ORDER BY ctid) FROM seen),
          ARRAY['before: seen', 'grant not committed: seen', 'grant committed: later,seen',
                'revoke not committed: later,seen', 'revoke rolled back: later,seen', 'revoke committed: seen'],
          'a tenant admin''s session sees a grant or revoke of another session once it is committed, not before (nor a rolled-back one)');

-- Two grants at once (both change audit_log's privileges): the second waits
-- for the first, then succeeds.
SELECT dblink_exec('a', 'BEGIN') AS x \gset
SELECT x FROM dblink('a', $$SELECT opsflags.grant_tenant_admin('tap_ten_s', 'x1')::text$$) AS t(x text) \gset
SELECT pid AS b_pid FROM dblink('b', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT dblink_send_query('b', $$SELECT opsflags.grant_tenant_admin('tap_ten_s2', 'x2')::text$$) AS x \gset
SELECT pg_temp.wait_until_blocked(:b_pid) AS b_waited \gset
SELECT dblink_exec('a', 'COMMIT') AS x \gset
SELECT x AS b_result FROM dblink_get_result('b') AS t(x text) \gset
SELECT count(*) AS x FROM dblink_get_result('b') AS t(x text) \gset
SELECT is(ARRAY[:'b_waited', :'b_result',
                (SELECT string_agg(role::text || ' ' || tenant, ', ' ORDER BY tenant) FROM opsflags.tenant_admins
                 WHERE tenant IN ('x1', 'x2'))],
          ARRAY['t', 'true', 'tap_ten_s x1, tap_ten_s2 x2'],
          'two sessions granting at once: the second waits for the first to commit, then grants');
SELECT dblink_disconnect('s') AS x \gset
SELECT dblink_disconnect('a') AS x \gset
SELECT dblink_disconnect('b') AS x \gset

SELECT * FROM finish();
DROP TABLE public.tap_ten_items, public.tap_ten_parts;
SELECT pg_temp.drop_roles() IS NULL AS x \gset
