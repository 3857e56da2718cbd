-- opsflags 0.2.0 -> 0.3.0: correctness, error and secrecy fixes. One section per
-- capability; a function redefined here replaces its 0.2.0 definition.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.3.0'" to load this file. \quit

-- ==== begin: flags (flag API validation, flag_type-checked variations, export/import fidelity, get_feature_flag, restore and delete, flag_usage) ====



-- ==== end: flags ====


-- ==== begin: evaluation (evaluation: environments, guard environment, evaluation-path limits) ====



-- ==== end: evaluation ====


-- ==== begin: deployments and health (deployments (failed, rollback of commit_sha), system_health columns) ====



-- ==== end: deployments and health ====


-- ==== begin: secrets (configuration secrets: sensitivity per key, queue query) ====



-- ==== end: secrets ====


-- ==== begin: workers (background workers: timeouts) ====



-- ==== end: workers ====


-- ==== begin: publishing (publishing to memcached from every session) ====



-- ==== end: publishing ====


-- ==== begin: audit and maintenance (audit coverage, no-op rows, maintenance enforcement) ====



-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====

-- pg_restore, and the scripts of pg_dump and pg_dumpall, create the extension
-- (and so every trigger of its tables) and then load each table with COPY FROM.
-- A restored row is not a change: it must come back as it was (version,
-- timestamps, updated_by), without a second audit row, a NOTIFY, or a check
-- against tables that are not loaded yet (pg_dump orders tables by foreign
-- keys only).  restoring() recognises that load without any setting.
CREATE FUNCTION opsflags.restoring(target regclass)
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_restoring';
COMMENT ON FUNCTION opsflags.restoring(regclass) IS
  'true while the running command is a COPY FROM into the table by a role with its owner''s privileges (how pg_restore and pg_dump scripts load rows)';

-- Every row trigger of the extension's tables that fires on INSERT skips the
-- rows of such a load (WHEN NOT restoring(table)), except cache invalidation
-- and the maintenance-mode state, which must follow the restored rows.  The
-- definitions are rewritten as they stand, so whatever the sections above
-- changed in them is kept.  A trigger added later needs the same WHEN.
DO $$
DECLARE
    t     record;
    head  text;
    tail  text;
    cond  text;
    guard text;
BEGIN
    FOR t IN
        SELECT tg.tgname, tg.tgrelid::regclass AS tab, tg.tgenabled,
               pg_catalog.pg_get_triggerdef(tg.oid) AS def
        FROM pg_catalog.pg_trigger tg
        JOIN pg_catalog.pg_depend d
          ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = tg.tgrelid
         AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'opsflags'
        JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid AND c.relkind IN ('r', 'p')
        WHERE NOT tg.tgisinternal AND tg.tgconstraint = 0
          AND (tg.tgtype & 69) = 5   -- FOR EACH ROW (1), on INSERT (4), not INSTEAD OF (64)
          AND tg.tgfoid NOT IN ('opsflags.invalidate_flag_cache()'::regprocedure,
                                'opsflags.invalidate_cache()'::regprocedure,
                                'opsflags.maintenance_config_changed()'::regprocedure)
        ORDER BY 2, 1
    LOOP
        -- CREATE TRIGGER name ... FOR EACH ROW [WHEN (cond)] EXECUTE FUNCTION f(args)
        head := split_part(t.def, ' EXECUTE FUNCTION ', 1);
        tail := substr(t.def, length(head) + 1);
        guard := format('NOT opsflags.restoring(%L::regclass)', t.tab::text);
        IF position(guard IN head) > 0 THEN
            CONTINUE;
        END IF;
        IF head LIKE '% FOR EACH ROW WHEN %' THEN
            cond := substr(head, position(' FOR EACH ROW WHEN ' IN head) + length(' FOR EACH ROW WHEN '));
            head := substr(head, 1, position(' FOR EACH ROW WHEN ' IN head) - 1);
            cond := format('(%s) AND %s', guard, cond);
        ELSE
            head := substr(head, 1, length(head) - length(' FOR EACH ROW'));
            cond := format('(%s)', guard);
        END IF;
        EXECUTE 'CREATE OR REPLACE TRIGGER' || substr(head, length('CREATE TRIGGER') + 1)
                || ' FOR EACH ROW WHEN (' || cond || ')' || tail;
        -- CREATE OR REPLACE TRIGGER enables it for origin sessions only.
        IF t.tgenabled <> 'O' THEN
            EXECUTE format('ALTER TABLE %s %s TRIGGER %I', t.tab,
                           CASE t.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA'
                                ELSE 'DISABLE' END, t.tgname);
        END IF;
    END LOOP;
END
$$;

-- ==== end: dump and restore ====

