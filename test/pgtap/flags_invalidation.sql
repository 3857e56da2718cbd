-- test/pgtap/flags_invalidation.sql: per-flag invalidation of the flag cache
-- (opsflags in shared_preload_libraries).  A change to one flag costs
-- another session the reload of that flag (and what depends on it), not of
-- its whole cache: flag_cache_stats() counts what session A reloads.  Then
-- a property: over 150 generated steps of random changes, committed or
-- rolled back, by B or by A itself (in savepoints too), A's cached answers
-- equal a plain SQL reference read from the tables, while A's cache is
-- never emptied whole.  Then memory (a reload frees what the former load
-- held, compiled rules and regular expressions too) and segments with rules
-- (a change reloads the segment and the flags that read it, and only those).
--
-- Session A is this psql session; session B a dblink connection.  Flags and
-- segments live under tap.inv.* and are committed, so the file removes them
-- at the start (leftovers of an interrupted run) and at the end.  A's
-- observations inside a transaction it rolls back go into psql variables
-- (\gset) and are asserted after it.
--
-- Two flags whose ids hash to the same slot reload together (16,384 slots):
-- the "only X" counts below would then be 2, a chance of 1 in 16,384 per
-- pair of flags (ids are random).
\ir setup.inc
SET opsflags.environment = 'production';

DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.inv.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.inv.%';
DELETE FROM opsflags.environments WHERE name = 'tapinv';

SELECT plan(60);

SELECT dblink_connect('b', pg_temp.tap_conninfo(app => 'tap_invalidation_b')) AS x \gset
CREATE FUNCTION pg_temp.b(command text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', command) $$;
CREATE FUNCTION pg_temp.b_perform(expr text) RETURNS text
LANGUAGE sql AS $$ SELECT dblink_exec('b', 'DO $do$BEGIN PERFORM ' || expr || '; END$do$') $$;
SELECT pg_temp.b($$SET opsflags.environment = 'production'$$) AS x \gset

-- A's counters as a row, and the change of each since a snapshot of them.
CREATE FUNCTION pg_temp.delta(before jsonb) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_object_agg(k, (s ->> k)::bigint - (before ->> k)::bigint)
  FROM opsflags.flag_cache_stats() s, unnest(ARRAY['loads', 'reloads', 'resets']) k
$$;

SELECT is(opsflags.flag_cache_stats() ->> 'per_flag_invalidation', 'true',
          'flag_cache_stats(): per-flag invalidation is at work (opsflags is preloaded)');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(opsflags.flag_cache_stats()) k),
          ARRAY['entries', 'hits', 'invalidated', 'loads', 'memory_bytes',
                'per_flag_invalidation', 'reloads', 'resets'],
          'flag_cache_stats(): its members');

SELECT count(*) FROM (SELECT opsflags.create_flag(k, k)
                      FROM unnest(ARRAY['tap.inv.x', 'tap.inv.y', 'tap.inv.z1', 'tap.inv.z2', 'tap.inv.pre',
                                        'tap.inv.dep', 'tap.inv.r', 'tap.inv.m', 'tap.inv.s1',
                                        'tap.inv.s2', 'tap.inv.s3']) k) s \gset
SELECT opsflags.create_segment('tap.inv.seg1', 'one', '["u1"]') IS NOT NULL AS x \gset
SELECT opsflags.create_segment('tap.inv.seg2', 'two', '["u2"]') IS NOT NULL AS x \gset
SELECT opsflags.update_flag('tap.inv.y', '{"is_enabled": true}') AS x \gset
-- Z1 and Z2: on for their segment's members, else for a 1% rollout that
-- leaves out user :zu.
SELECT opsflags.update_flag('tap.inv.z1', '{"is_enabled": true, "enabled_percentage": 1, "segments": ["tap.inv.seg1"]}') AS x \gset
SELECT opsflags.update_flag('tap.inv.z2', '{"is_enabled": true, "enabled_percentage": 1, "segments": ["tap.inv.seg2"]}') AS x \gset
SELECT 'inv-' || g AS zu FROM generate_series(1, 1000) g
WHERE opsflags.rollout_bucket('tap.inv.z1', 'inv-' || g) > 1 AND opsflags.rollout_bucket('tap.inv.z2', 'inv-' || g) > 1
ORDER BY g LIMIT 1 \gset
SELECT opsflags.update_flag('tap.inv.pre', '{"is_enabled": true}') AS x \gset
SELECT opsflags.update_flag('tap.inv.dep', '{"is_enabled": true}') AS x \gset
SELECT opsflags.add_prerequisite('tap.inv.dep', 'tap.inv.pre') AS x \gset

-------------------------------------------------------------------------------
-- 1. B flips X and commits: A's next statement reloads X, and only X
-------------------------------------------------------------------------------
SELECT opsflags.feature_enabled('tap.inv.x'), opsflags.feature_enabled('tap.inv.y') \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.x') AS x0, opsflags.feature_enabled('tap.inv.y') AS y0 \gset
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 0, "resets": 0}',
          '1: A evaluates X and Y again: both served from its cache');

SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.x', true)$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.x') AS x1, opsflags.feature_enabled('tap.inv.y') AS y1 \gset
SELECT is(ARRAY[:'x0', :'x1', :'y0', :'y1']::boolean[], ARRAY[false, true, true, true],
          '1: B switches X on and commits: A''s next statement sees X on, Y unchanged');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 1, "resets": 0}',
          '1: A reloaded X only, and emptied nothing');
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.x') AS x2, opsflags.feature_enabled('tap.inv.y') AS y2 \gset
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 0, "resets": 0}',
          '1: the statement after: X and Y from the cache');

-- Other sessions are told apart from one another: a third session's commit
-- reaches A as B's does.
SELECT dblink_connect('c', pg_temp.tap_conninfo(app => 'tap_invalidation_c')) AS x \gset
SELECT dblink_exec('c', $q$DO $do$BEGIN PERFORM opsflags.toggle_flag('tap.inv.x', false); END$do$$q$) AS x \gset
SELECT dblink_disconnect('c') AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.x'), false, '1: a third session switches X off: A sees it off');

-------------------------------------------------------------------------------
-- 2. B's uncommitted change is not seen; its rollback changes nothing
-------------------------------------------------------------------------------
SELECT pg_temp.b('BEGIN') AS x \gset
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.x', true)$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT is(opsflags.feature_enabled('tap.inv.x'), false, '2: B switches X on, uncommitted: A sees it off');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 0, "resets": 0}',
          '2: and reloads nothing (nothing was committed)');
SELECT pg_temp.b('ROLLBACK') AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT is(opsflags.feature_enabled('tap.inv.x'), false, '2: B rolls back: A still sees X off');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 0, "resets": 0}',
          '2: and reloads nothing');

-------------------------------------------------------------------------------
-- 3. A's own uncommitted change: seen at its next statement, undone by its
-- rollback (of the transaction, of a savepoint)
-------------------------------------------------------------------------------
SELECT opsflags.feature_enabled('tap.inv.x'), opsflags.feature_enabled('tap.inv.y') \gset
BEGIN;
SELECT opsflags.toggle_flag('tap.inv.x', true) AS x \gset
SELECT opsflags.flag_cache_stats() AS s3 \gset
SELECT opsflags.feature_enabled('tap.inv.x') AS own_x, opsflags.feature_enabled('tap.inv.y') AS own_y \gset
SELECT pg_temp.delta(:'s3') AS own_delta \gset
SELECT (SELECT v FROM dblink('b', $$SELECT opsflags.feature_enabled('tap.inv.x')$$) AS t(v boolean)) AS own_b \gset
ROLLBACK;
SELECT is(ARRAY[:'own_x', :'own_y']::boolean[], ARRAY[true, true],
          '3: A switches X on in its transaction: its next statement sees X on (Y unchanged)');
SELECT is(:'own_delta'::jsonb, '{"loads": 0, "reloads": 1, "resets": 0}', '3: A reloaded X only');
SELECT is(:'own_b'::boolean, false, '3: B does not see A''s uncommitted change');
SELECT is(opsflags.feature_enabled('tap.inv.x'), false, '3: after A''s ROLLBACK, A sees X off again');

BEGIN;
SAVEPOINT s1;
SELECT opsflags.toggle_flag('tap.inv.x', true) AS x \gset
SELECT opsflags.feature_enabled('tap.inv.x') AS sp_on \gset
ROLLBACK TO SAVEPOINT s1;
SELECT opsflags.feature_enabled('tap.inv.x') AS sp_back \gset
SELECT opsflags.toggle_flag('tap.inv.y', false) AS x \gset
SELECT opsflags.feature_enabled('tap.inv.y') AS sp_y \gset
COMMIT;
SELECT is(ARRAY[:'sp_on', :'sp_back', :'sp_y']::boolean[], ARRAY[true, false, false],
          '3: in a savepoint A switches X on and sees it; ROLLBACK TO SAVEPOINT: off again; then Y off: seen');
SELECT is(ARRAY[opsflags.feature_enabled('tap.inv.x'), opsflags.feature_enabled('tap.inv.y'),
                (SELECT v FROM dblink('b', $$SELECT opsflags.feature_enabled('tap.inv.y')$$) AS t(v boolean))],
          ARRAY[false, false, false], '3: after COMMIT: X off, Y off, for A and for B');
SELECT opsflags.toggle_flag('tap.inv.y', true) AS x \gset

-- A deletes a flag and rolls back: the entry it loaded meanwhile ("no such
-- flag") goes with the rollback.
BEGIN;
DELETE FROM opsflags.feature_flags WHERE flag_key = 'tap.inv.y';
SELECT opsflags.feature_enabled('tap.inv.y') AS del_y \gset
ROLLBACK;
SELECT is(ARRAY[:'del_y'::boolean, opsflags.feature_enabled('tap.inv.y')], ARRAY[false, true],
          '3: A deletes Y in its transaction: off; after its ROLLBACK: on again');

-------------------------------------------------------------------------------
-- 4. A segment's change reloads the flags that target it, and only those
-------------------------------------------------------------------------------
SELECT opsflags.feature_enabled('tap.inv.z1', :'zu') AS z1_before, opsflags.feature_enabled('tap.inv.z2', :'zu') AS z2_before,
       opsflags.feature_enabled('tap.inv.y') \gset
SELECT pg_temp.b_perform(format($$opsflags.update_segment('tap.inv.seg1', %L)$$, jsonb_build_array('u1', :'zu'))) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.z1', :'zu') AS z1_after, opsflags.feature_enabled('tap.inv.z2', :'zu') AS z2_after,
       opsflags.feature_enabled('tap.inv.y') \gset
SELECT is(ARRAY[:'z1_before', :'z1_after', :'z2_before', :'z2_after']::boolean[], ARRAY[false, true, false, false],
          '4: B adds a user to seg1: A sees Z1 (targets seg1) on for them; Z2 (targets seg2) unchanged');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 1, "resets": 0}', '4: A reloaded Z1 only');

-- A segment's key changes: the flags that targeted the old key lose it.
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET segment_key = 'tap.inv.seg1.renamed' WHERE segment_key = 'tap.inv.seg1'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.z1', :'zu'), false, '4: B renames seg1: Z1, which targets the old key, is off for that user');
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET segment_key = 'tap.inv.seg1' WHERE segment_key = 'tap.inv.seg1.renamed'$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.z1', :'zu'), true, '4: and back: on again');

-------------------------------------------------------------------------------
-- 5. A flag A evaluated as unknown is created; a key changes
-------------------------------------------------------------------------------
SELECT opsflags.feature_explain('tap.inv.new') ->> 'reason' AS new_before, opsflags.feature_enabled('tap.inv.y') \gset
SELECT pg_temp.b_perform($$opsflags.create_flag('tap.inv.new', 'new')$$) AS x \gset
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.new', true)$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.new') AS new_after, opsflags.feature_enabled('tap.inv.y') \gset
SELECT is(ARRAY[:'new_before', :'new_after'::boolean::text], ARRAY['FLAG_NOT_FOUND', 'true'],
          '5: A evaluated tap.inv.new as unknown; B creates it and switches it on: A sees it on');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 1, "resets": 0}', '5: A reloaded that entry only');

SELECT opsflags.feature_enabled('tap.inv.new.key') AS x \gset
SELECT pg_temp.b($$UPDATE opsflags.feature_flags SET flag_key = 'tap.inv.new.key' WHERE flag_key = 'tap.inv.new'$$) AS x \gset
SELECT is(ARRAY[opsflags.feature_explain('tap.inv.new') ->> 'reason', opsflags.feature_enabled('tap.inv.new.key')::text],
          ARRAY['FLAG_NOT_FOUND', 'true'], '5: B changes its key: the old key is unknown to A, the new one on');

-------------------------------------------------------------------------------
-- 6. Prerequisites: a change to the prerequisite reaches the flag that
-- requires it (through the entry it points at)
-------------------------------------------------------------------------------
SELECT opsflags.feature_enabled('tap.inv.dep') AS dep_before \gset
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.pre', false)$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.dep') AS dep_after \gset
SELECT is(ARRAY[:'dep_before', :'dep_after']::boolean[], ARRAY[true, false],
          '6: B switches the prerequisite off: the dependent flag is off for A');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 1, "resets": 0}', '6: A reloaded the prerequisite only');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.pre', true)$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.dep'), true, '6: and on again');
SELECT pg_temp.b($$DELETE FROM opsflags.flag_prerequisites p USING opsflags.feature_flags f
                   WHERE p.flag_id = f.id AND f.flag_key = 'tap.inv.dep'$$) AS x \gset
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.pre', false)$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.dep'), true, '6: B removes the prerequisite, then switches it off: the flag stays on');

-------------------------------------------------------------------------------
-- 7. Whole-cache resets: an environment, a TRUNCATE; one statement keeps
-- one answer per flag
-------------------------------------------------------------------------------
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT pg_temp.b($$INSERT INTO opsflags.environments (name) VALUES ('tapinv')$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT is(pg_temp.delta(:'s0') ->> 'resets', '1', '7: B creates an environment: A''s next statement empties its cache');
SET opsflags.environment = 'tapinv';
SELECT is(opsflags.feature_enabled('tap.inv.y'), false, '7: the new environment: flags have no config there, off');
SELECT pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.y', true, 'tapinv')$$) AS x \gset
SELECT is(opsflags.feature_enabled('tap.inv.y'), true, '7: B enables Y there: A sees it on');
SET opsflags.environment = 'production';

-- A relcache invalidation of a flag table that leaves its definition alone
-- (VACUUM and ANALYZE send them) empties nothing; DDL that changes it does.
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT pg_temp.b('ALTER TABLE opsflags.feature_flag_configs ALTER COLUMN version SET STATISTICS 200') AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 0, "resets": 0}',
          '7: B sets a column''s statistics target on a flag table: A empties nothing');
SELECT pg_temp.b('ALTER TABLE opsflags.feature_flag_configs ALTER COLUMN version SET STATISTICS -1') AS x \gset
SELECT pg_temp.b('ALTER TABLE opsflags.feature_flag_configs RENAME COLUMN updated_by TO tap_inv_renamed') AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT pg_temp.b('ALTER TABLE opsflags.feature_flag_configs RENAME COLUMN tap_inv_renamed TO updated_by') AS x \gset
SELECT is(pg_temp.delta(:'s0') ->> 'resets', '1', '7: B renames a column of a flag table: A''s next statement empties its cache');

CREATE TABLE pg_temp.prereq_copy AS SELECT * FROM opsflags.flag_prerequisites;
BEGIN;
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT opsflags.flag_cache_stats() AS s7 \gset
TRUNCATE opsflags.flag_prerequisites;
SELECT opsflags.feature_enabled('tap.inv.y') AS x \gset
SELECT pg_temp.delta(:'s7') ->> 'resets' AS truncate_resets \gset
ROLLBACK;
SELECT is(:'truncate_resets'::text, '1', '7: A truncates a flag table in its transaction: its next statement empties its cache');
SELECT is((SELECT count(*)::int FROM opsflags.flag_prerequisites), (SELECT count(*)::int FROM pg_temp.prereq_copy),
          '7: (the TRUNCATE was rolled back)');

SELECT opsflags.feature_enabled('tap.inv.x') AS x \gset
SELECT is(ARRAY[opsflags.feature_enabled('tap.inv.x'),
                pg_temp.b_perform($$opsflags.toggle_flag('tap.inv.x', true)$$) IS NOT NULL,
                opsflags.feature_enabled('tap.inv.r'),
                opsflags.feature_enabled('tap.inv.x')],
          ARRAY[false, true, false, false],
          '7: B commits X on in the middle of A''s statement: A keeps X off for the rest of it');
SELECT is(opsflags.feature_enabled('tap.inv.x'), true, '7: A''s next statement sees X on');

-------------------------------------------------------------------------------
-- 8. Property: 150 steps of random changes, each committed or rolled back by
-- B or by A (some in a savepoint); after each, A's cached answers for 12
-- keys and 5 users equal a plain SQL reference, and A's cache is never
-- emptied whole.
-------------------------------------------------------------------------------
SELECT count(*) FROM (SELECT opsflags.create_flag('tap.inv.p.' || i, 'p' || i) FROM generate_series(1, 6) i) s \gset
SELECT count(*) FROM (SELECT opsflags.create_segment('tap.inv.ps.' || i, 's' || i, '[]') FROM generate_series(1, 3) i) s \gset
CREATE TEMP TABLE pairs AS
SELECT k, u
FROM unnest(ARRAY['tap.inv.p.1', 'tap.inv.p.2', 'tap.inv.p.3', 'tap.inv.p.4', 'tap.inv.p.5', 'tap.inv.p.6',
                  'tap.inv.p.1.renamed', 'tap.inv.p.2.renamed', 'tap.inv.p.3.renamed', 'tap.inv.p.4.renamed',
                  'tap.inv.p.5.renamed', 'tap.inv.p.6.renamed']) k,
     unnest(ARRAY['u1', 'u2', 'u3', 'u4', NULL]) u;

-- The reference: the evaluation order of the README, read from the tables
-- (no schedules, roles or weights are generated).
CREATE FUNCTION pg_temp.ref(k text, u text, depth int DEFAULT 0) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f opsflags.feature_flags;
    c opsflags.feature_flag_configs;
    p text;
BEGIN
    SELECT * INTO f FROM opsflags.feature_flags WHERE flag_key = k;
    IF NOT FOUND OR f.archived THEN RETURN false; END IF;
    SELECT * INTO c FROM opsflags.feature_flag_configs WHERE flag_id = f.id AND environment = 'production';
    IF NOT FOUND OR NOT c.is_enabled THEN RETURN false; END IF;
    FOR p IN SELECT pf.flag_key FROM opsflags.flag_prerequisites fp
             JOIN opsflags.feature_flags pf ON pf.id = fp.prerequisite_id WHERE fp.flag_id = f.id LOOP
        IF NOT pg_temp.ref(p, u, depth + 1) THEN RETURN false; END IF;
    END LOOP;
    IF u IS NOT NULL AND c.enabled_for_users ? u THEN RETURN true; END IF;
    IF u IS NOT NULL AND EXISTS (SELECT FROM opsflags.user_segments s
                                 WHERE s.segment_key IN (SELECT jsonb_array_elements_text(c.segments))
                                   AND s.user_ids ? u) THEN
        RETURN true;
    END IF;
    IF c.enabled_percentage > 0 THEN
        RETURN c.enabled_percentage >= 100 OR
               (u IS NOT NULL AND opsflags.rollout_bucket(coalesce(f.rollout_group, f.flag_key), u) <= c.enabled_percentage);
    END IF;
    RETURN true;
END
$$;

-- A random change, as one DO block (run by B through dblink or by A).
CREATE FUNCTION pg_temp.random_change() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    i int := 1 + floor(random() * 6)::int;
    j int := 1 + floor(random() * 6)::int;
    flag text := format('(SELECT id FROM opsflags.feature_flags WHERE flag_key IN (%L, %L))',
                        'tap.inv.p.' || i, 'tap.inv.p.' || i || '.renamed');
    cfg text := format('UPDATE opsflags.feature_flag_configs SET %%s WHERE environment = ''production'' AND flag_id = %s', flag);
    users text := (SELECT coalesce(jsonb_agg(u), '[]')::text FROM unnest(ARRAY['u1', 'u2', 'u3', 'u4']) u WHERE random() < 0.3);
    body text;
BEGIN
    body := CASE floor(random() * 11)::int
        WHEN 0 THEN format(cfg, 'is_enabled = NOT is_enabled')
        WHEN 1 THEN format(cfg, 'is_enabled = NOT is_enabled')
        WHEN 2 THEN format(cfg, format('enabled_for_users = %L', users))
        WHEN 3 THEN format(cfg, format('segments = %L', (SELECT coalesce(jsonb_agg('tap.inv.ps.' || s), '[]')::text
                                                          FROM generate_series(1, 3) s WHERE random() < 0.4)))
        WHEN 4 THEN format(cfg, format('enabled_percentage = %s', (ARRAY[0, 40, 100])[1 + floor(random() * 3)::int]))
        WHEN 5 THEN format('UPDATE opsflags.user_segments SET user_ids = %L WHERE segment_key = %L',
                           users, 'tap.inv.ps.' || (1 + floor(random() * 3)::int))
        WHEN 6 THEN format('UPDATE opsflags.feature_flags SET archived = NOT archived WHERE id = %s', flag)
        WHEN 7 THEN format('UPDATE opsflags.feature_flags SET flag_key = CASE WHEN flag_key LIKE ''%%.renamed'' '
                           'THEN %L ELSE %L END WHERE id = %s', 'tap.inv.p.' || i, 'tap.inv.p.' || i || '.renamed', flag)
        WHEN 8 THEN CASE WHEN j < i THEN
                        format('INSERT INTO opsflags.flag_prerequisites (flag_id, prerequisite_id) SELECT %s, %s '
                               'WHERE %s IS NOT NULL AND %s IS NOT NULL ON CONFLICT DO NOTHING', flag,
                               format('(SELECT id FROM opsflags.feature_flags WHERE flag_key IN (%L, %L))',
                                      'tap.inv.p.' || j, 'tap.inv.p.' || j || '.renamed'),
                               flag, format('(SELECT id FROM opsflags.feature_flags WHERE flag_key IN (%L, %L))',
                                            'tap.inv.p.' || j, 'tap.inv.p.' || j || '.renamed'))
                    ELSE format('DELETE FROM opsflags.flag_prerequisites WHERE flag_id = %s', flag) END
        WHEN 9 THEN format('DELETE FROM opsflags.feature_flags WHERE id = %s', flag)
        ELSE format('IF %s IS NULL THEN PERFORM opsflags.create_flag(%L); %s; END IF', flag, 'tap.inv.p.' || i,
                    format(cfg, 'is_enabled = true'))
    END;
    RETURN format('DO $c$BEGIN %s; END$c$', body);
END
$$;

CREATE FUNCTION pg_temp.change(who text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    sql text := pg_temp.random_change();
BEGIN
    IF who = 'b' THEN
        PERFORM dblink_exec('b', sql);
    ELSE
        EXECUTE sql;
    END IF;
END
$$;

-- Counted with sequences, which a rollback does not undo.
CREATE TEMP SEQUENCE checks;
CREATE TEMP SEQUENCE mismatches;
CREATE FUNCTION pg_temp.check(step int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    PERFORM nextval('pg_temp.checks');
    SELECT string_agg(format('%s/%s: cache %s, reference %s', k, coalesce(u, '-'), c, r), '; ') INTO bad
    FROM (SELECT k, u, opsflags.feature_enabled(k, u) AS c, pg_temp.ref(k, u) AS r FROM pg_temp.pairs) x
    WHERE c IS DISTINCT FROM r;
    IF bad IS NOT NULL THEN
        PERFORM nextval('pg_temp.mismatches');
        RAISE WARNING 'step %: %', step, bad;
    END IF;
END
$$;

SELECT setseed(0.4242) AS x \gset
SELECT pg_temp.check(0) AS x \gset
SELECT opsflags.flag_cache_stats() AS s8 \gset
-- Each step is a few top-level statements (\gexec runs each row as one):
-- the cache takes changes in at a statement's first lookup.
\o /dev/null
SELECT sql FROM (
    SELECT step, n, sql
    FROM (SELECT step, floor(random() * 6)::int AS kind FROM generate_series(1, 150) step) s,
         LATERAL (SELECT n, sql FROM unnest(CASE kind
             WHEN 0 THEN ARRAY['SELECT pg_temp.change(''b'')']
             WHEN 1 THEN ARRAY['SELECT pg_temp.change(''b'')']
             WHEN 2 THEN ARRAY['SELECT pg_temp.b(''BEGIN'')', 'SELECT pg_temp.change(''b'')',
                               format('SELECT pg_temp.check(%s)', step), 'SELECT pg_temp.b(''ROLLBACK'')']
             WHEN 3 THEN ARRAY['BEGIN', 'SELECT pg_temp.change(''a'')', format('SELECT pg_temp.check(%s)', step),
                               'SELECT pg_temp.change(''a'')', 'COMMIT']
             WHEN 4 THEN ARRAY['BEGIN', 'SELECT pg_temp.change(''a'')', format('SELECT pg_temp.check(%s)', step),
                               'ROLLBACK']
             ELSE ARRAY['BEGIN', 'SELECT pg_temp.change(''a'')', 'SAVEPOINT s', 'SELECT pg_temp.change(''a'')',
                        format('SELECT pg_temp.check(%s)', step), 'ROLLBACK TO SAVEPOINT s',
                        format('SELECT pg_temp.check(%s)', step), 'COMMIT']
         END || format('SELECT pg_temp.check(%s)', step)) WITH ORDINALITY AS t(sql, n)) x
    ORDER BY step, n) steps \gexec
\o
SELECT pg_temp.delta(:'s8') AS property_delta \gset

SELECT cmp_ok((SELECT last_value FROM pg_temp.checks), '>=', 200::bigint,
              '8: (A compared its answers with the reference at least 200 times over the 150 steps)');
SELECT is((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pg_temp.mismatches), 0::bigint,
          '8: after every step A''s cached answers equal the reference (12 keys x 5 users; mismatches are logged as WARNINGs)');
SELECT is(:'property_delta'::jsonb ->> 'resets', '0', '8: A''s cache was never emptied whole');
SELECT cmp_ok((:'property_delta'::jsonb ->> 'reloads')::int, '>=', 50, '8: A reloaded single entries instead');

-------------------------------------------------------------------------------
-- 9. Memory: a reload frees what the former load of the entry held
-------------------------------------------------------------------------------
-- The cache's context and those of its entries with rules and of its
-- segments (its children; by name: PostgreSQL 18 has no parent column).
CREATE FUNCTION pg_temp.cache_context_bytes() RETURNS bigint
LANGUAGE sql AS $$
  SELECT sum(used_bytes)::bigint FROM pg_backend_memory_contexts
  WHERE name IN ('opsflags flag cache', 'opsflags flag rules', 'opsflags segment')
$$;
-- What the kernel says this backend's heap takes (regular expressions are
-- compiled with malloc, outside memory contexts).
CREATE FUNCTION pg_temp.backend_data_kb() RETURNS bigint
LANGUAGE sql AS $$
  SELECT substring(pg_read_file('/proc/self/status') FROM 'VmData:\s+(\d+) kB')::bigint
$$;
SELECT opsflags.update_flag('tap.inv.r', jsonb_build_object('is_enabled', true, 'enabled_for_users',
                            (SELECT jsonb_agg('member-' || g) FROM generate_series(1, 20000) g))) AS x \gset
SELECT opsflags.feature_enabled('tap.inv.r', 'member-1') AS x \gset
SELECT opsflags.flag_cache_stats() AS s9, pg_temp.cache_context_bytes() AS ctx9 \gset
\o /dev/null
SELECT sql FROM generate_series(2, 9) g,
       unnest(ARRAY[format('SELECT pg_temp.b_perform(%L)',
                           format($$opsflags.update_flag('tap.inv.r', '{"enabled_percentage": %s}')$$, g)),
                    $$SELECT opsflags.feature_enabled('tap.inv.r', 'member-1')$$]) WITH ORDINALITY AS t(sql, n)
ORDER BY g, n \gexec
\o
SELECT is(pg_temp.delta(:'s9'), '{"loads": 0, "reloads": 8, "resets": 0}',
          '9: B changes a flag with 20,000 targeted users 8 times: A reloads it 8 times, emptying nothing');
SELECT cmp_ok(abs((opsflags.flag_cache_stats() ->> 'memory_bytes')::bigint - (:'s9'::jsonb ->> 'memory_bytes')::bigint),
              '<', 4096::bigint, '9: memory_bytes is what one load of it holds, as before');
SELECT cmp_ok(pg_temp.cache_context_bytes() - :ctx9, '<', 262144::bigint,
              '9: the cache''s memory context did not grow (8 loads of it hold over 8 MB)');

-- A flag with 300 rules, each with a matches clause (a regular expression
-- compiled at load) and an in clause of 100 values: its compiled rules live
-- in a context of its own, which a reload deletes, freeing the regular
-- expressions with it.
UPDATE opsflags.feature_flag_configs
SET is_enabled = true, fallthrough = '{"off": true}',
    rules = (SELECT jsonb_agg(jsonb_build_object(
                 'id', 'r' || g,
                 'clauses', jsonb_build_array(
                     jsonb_build_object('attribute', 'email', 'op', 'matches',
                                        'values', jsonb_build_array(format('^user%s-[0-9]{1,9}@(a|b|c)[a-z]{0,20}\.example\.(com|org)$', g))),
                     jsonb_build_object('attribute', 'country', 'op', 'in',
                                        'values', (SELECT jsonb_agg(format('c%s-%s', g, h)) FROM generate_series(1, 100) h))))
                 ORDER BY g)
             FROM generate_series(1, 300) g)
WHERE flag_id = opsflags.flag_id('tap.inv.m') AND environment = 'production';
CREATE FUNCTION pg_temp.m_serves() RETURNS boolean[]
LANGUAGE sql AS $$
  SELECT ARRAY[opsflags.feature_enabled('tap.inv.m', '{"key": "k", "email": "user300-42@bz.example.org", "country": "c300-7"}'::jsonb),
               opsflags.feature_enabled('tap.inv.m', '{"key": "k", "email": "user300-42@d.example.org", "country": "c300-7"}'::jsonb)]
$$;
-- Warm up: the allocator's free lists are filled once.
SELECT pg_temp.m_serves() AS m0 \gset
SELECT pg_temp.b_perform($$opsflags.update_flag('tap.inv.m', '{"enabled_for_roles": ["role-1"]}')$$) AS x \gset
SELECT pg_temp.m_serves() AS m0 \gset
SELECT opsflags.flag_cache_stats() AS s9m, pg_temp.cache_context_bytes() AS ctx9m, pg_temp.backend_data_kb() AS data9m \gset
\o /dev/null
SELECT sql FROM generate_series(2, 21) g,
       unnest(ARRAY[format('SELECT pg_temp.b_perform(%L)',
                           format($$opsflags.update_flag('tap.inv.m', '{"enabled_for_roles": ["role-%s"]}')$$, g)),
                    'SELECT pg_temp.m_serves()']) WITH ORDINALITY AS t(sql, n)
ORDER BY g, n \gexec
\o
SELECT is(ARRAY[:'m0'::boolean[], pg_temp.m_serves()], ARRAY[ARRAY[true, false], ARRAY[true, false]],
          '9: a flag with 300 rules of regular expressions and sets serves as its rules say, before and after 20 reloads');
SELECT is(pg_temp.delta(:'s9m'), '{"loads": 0, "reloads": 20, "resets": 0}',
          '9: B changes it 20 times: A reloads it 20 times, emptying nothing');
SELECT cmp_ok(abs((opsflags.flag_cache_stats() ->> 'memory_bytes')::bigint - (:'s9m'::jsonb ->> 'memory_bytes')::bigint),
              '<', 4096::bigint, '9: memory_bytes (its compiled rules counted) is what one load of it holds, as before');
SELECT cmp_ok(pg_temp.cache_context_bytes() - :ctx9m, '<', 262144::bigint,
              '9: the memory contexts of the cache and its entries did not grow');
SELECT cmp_ok(pg_temp.backend_data_kb() - :data9m, '<', 4096::bigint,
              '9: nor did the backend''s heap (20 leaked loads of its regular expressions would take far more)');

-------------------------------------------------------------------------------
-- 10. A segment's rules change: the flags that read the segment (through a
-- config's segments, a rule's segments, a segment_match clause) answer the
-- new way at A's next statement, and only they are reloaded
-------------------------------------------------------------------------------
SELECT opsflags.create_segment('tap.inv.seg3', 'three', '[]') IS NOT NULL AS x \gset
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}', segments = '["tap.inv.seg3"]'
WHERE flag_id = opsflags.flag_id('tap.inv.s1') AND environment = 'production';
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}',
       rules = '[{"id": "seg", "segments": ["tap.inv.seg3"]}]'
WHERE flag_id = opsflags.flag_id('tap.inv.s2') AND environment = 'production';
UPDATE opsflags.feature_flag_configs SET is_enabled = true, fallthrough = '{"off": true}',
       rules = '[{"id": "match", "clauses": [{"op": "segment_match", "values": ["tap.inv.seg3"]}]}]'
WHERE flag_id = opsflags.flag_id('tap.inv.s3') AND environment = 'production';
-- The three flags for a context in Germany, and Y.
CREATE FUNCTION pg_temp.s_serves() RETURNS boolean[]
LANGUAGE sql AS $$
  SELECT ARRAY[opsflags.feature_enabled('tap.inv.s1', '{"key": "k10", "country": "DE"}'::jsonb),
               opsflags.feature_enabled('tap.inv.s2', '{"key": "k10", "country": "DE"}'::jsonb),
               opsflags.feature_enabled('tap.inv.s3', '{"key": "k10", "country": "DE"}'::jsonb),
               opsflags.feature_enabled('tap.inv.y')]
$$;
SELECT pg_temp.s_serves() AS s10_before, opsflags.feature_enabled('tap.inv.x') \gset

SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]' WHERE segment_key = 'tap.inv.seg3'$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT pg_temp.s_serves() AS s10_de, opsflags.feature_enabled('tap.inv.x') \gset
SELECT is(ARRAY[:'s10_before'::boolean[], :'s10_de'::boolean[]], ARRAY[ARRAY[false, false, false, true], ARRAY[true, true, true, true]],
          '10: B gives seg3 a rule for Germany: A''s next statement has the three flags that read seg3 on for a German context');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 3, "resets": 0}',
          '10: A reloaded those three only (not Y, not X)');

-- Again: the segment entry the first reload brought back is reloaded too.
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "fr", "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]' WHERE segment_key = 'tap.inv.seg3'$$) AS x \gset
SELECT opsflags.flag_cache_stats() AS s0 \gset
SELECT is(pg_temp.s_serves(), ARRAY[false, false, false, true],
          '10: B changes the rule to France: all three off again for the German context');
SELECT is(pg_temp.delta(:'s0'), '{"loads": 0, "reloads": 3, "resets": 0}', '10: again those three reloaded only');

-- A segment first read by one flag, then changed, then read by another
-- flag before the first is looked up again: both answer the new way.
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]' WHERE segment_key = 'tap.inv.seg3'$$) AS x \gset
SELECT opsflags.feature_enabled('tap.inv.s3', '{"key": "k10", "country": "DE"}'::jsonb) AS s3_de \gset
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[]' WHERE segment_key = 'tap.inv.seg3'$$) AS x \gset
SELECT is(ARRAY[:'s3_de'::boolean, opsflags.feature_enabled('tap.inv.s2', '{"key": "k10", "country": "DE"}'::jsonb),
                opsflags.feature_enabled('tap.inv.s3', '{"key": "k10", "country": "DE"}'::jsonb)],
          ARRAY[true, false, false], '10: seg3 in a rule, then without rules: S2 and S3 off at A''s next statement');

-- B changes seg3 in the middle of A's statement, between A's use of S3
-- (whose load brought seg3 in) and A's reload of S2, which finds seg3 in
-- the cache, unmarked as yet, and reads it as it was: A's next statement
-- reloads S2 (and seg3) even though S2's load came after B's commit.
CREATE FUNCTION pg_temp.mid_statement() RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
  s3 boolean := opsflags.feature_enabled('tap.inv.s3', '{"key": "k10", "country": "DE"}'::jsonb);
BEGIN
  PERFORM pg_temp.b($q$UPDATE opsflags.user_segments SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]' WHERE segment_key = 'tap.inv.seg3'$q$);
  RETURN ARRAY[s3, opsflags.feature_enabled('tap.inv.s2', '{"key": "k10", "country": "DE"}'::jsonb)];
END
$$;
SELECT pg_temp.b_perform($$opsflags.update_flag('tap.inv.s2', '{"enabled_for_roles": ["r10"]}')$$) AS x \gset
SELECT pg_temp.mid_statement() AS s10_mid \gset
SELECT is(ARRAY[:'s10_mid'::boolean[], ARRAY[opsflags.feature_enabled('tap.inv.s2', '{"key": "k10", "country": "DE"}'::jsonb),
                                              opsflags.feature_enabled('tap.inv.s3', '{"key": "k10", "country": "DE"}'::jsonb)]],
          ARRAY[ARRAY[false, false], ARRAY[true, true]],
          '10: B gives seg3 the rule in the middle of A''s statement, before A reloads S2: A''s next statement has S2 and S3 on');
SELECT pg_temp.b($$UPDATE opsflags.user_segments SET rules = '[]' WHERE segment_key = 'tap.inv.seg3'$$) AS x \gset

-- A's own change to the segment, in its transaction: seen at its next
-- statement, gone with its rollback.
BEGIN;
UPDATE opsflags.user_segments SET rules = '[{"id": "de", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]' WHERE segment_key = 'tap.inv.seg3';
SELECT pg_temp.s_serves() AS s10_own \gset
ROLLBACK;
SELECT is(ARRAY[:'s10_own'::boolean[], pg_temp.s_serves()], ARRAY[ARRAY[true, true, true, true], ARRAY[false, false, false, true]],
          '10: A gives seg3 the rule itself: its next statement sees it; after its ROLLBACK the flags are off again');

-------------------------------------------------------------------------------
-- evaluate_all's list of keys follows flags coming and going
-------------------------------------------------------------------------------
SELECT ok(NOT opsflags.evaluate_all('{"key": "u1"}') ? 'tap.inv.new1',
          'evaluate_all: before B creates tap.inv.new1, A''s answer has no such key');
SELECT pg_temp.b_perform($$opsflags.create_flag('tap.inv.new1', 'New 1')$$) AS x \gset
SELECT ok(opsflags.evaluate_all('{"key": "u1"}') ? 'tap.inv.new1',
          'evaluate_all: B created tap.inv.new1 and committed: A''s next statement lists it');
BEGIN;
SELECT opsflags.archive_flag('tap.inv.new1') AS x \gset
SELECT opsflags.evaluate_all('{"key": "u1"}') ? 'tap.inv.new1' AS new1_own_archived \gset
ROLLBACK;
SELECT is(ARRAY[:'new1_own_archived'::boolean, opsflags.evaluate_all('{"key": "u1"}') ? 'tap.inv.new1'], ARRAY[false, true],
          'evaluate_all: A archives tap.inv.new1 itself: its next statement leaves it out; after its ROLLBACK it is back');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------
SELECT dblink_disconnect('b') AS x \gset
DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'tap.inv.%';
DELETE FROM opsflags.user_segments WHERE segment_key LIKE 'tap.inv.%';
DELETE FROM opsflags.feature_flag_configs WHERE environment = 'tapinv';
DELETE FROM opsflags.environments WHERE name = 'tapinv';

SELECT * FROM finish();
