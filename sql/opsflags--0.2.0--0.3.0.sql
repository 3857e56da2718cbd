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

-- Audit: application tables' triggers reach inheritance children and
-- partitions (also those made later), are ENABLE ALWAYS (so writes under
-- session_replication_role = replica are recorded), and a rewriting ALTER
-- TABLE of an audited table is recorded.

-- The triggers on one table (no-op for what is already there).
CREATE FUNCTION opsflags.audit_attach(target regclass, resource_type text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A partitioned table gets no row trigger: PostgreSQL would clone it
    -- onto each new partition with the privileges of whoever creates the
    -- partition (who need not be allowed to use audit_trigger).  Each
    -- partition gets its own instead (audit_table, audit_new_children).
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = target) = 'p' THEN
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('DROP TRIGGER opsflags_audit ON %s', target);
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, resource_type);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit_statement') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger(%L)', target, resource_type);
    END IF;
    -- ALWAYS: also under session_replication_role = replica.
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target
               AND t.tgname IN ('opsflags_audit', 'opsflags_audit_statement') AND t.tgenabled <> 'A') THEN
        EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit_statement', target);
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit') THEN
            EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER opsflags_audit', target);
        END IF;
    END IF;
END
$$;

-- The table and every inheritance child and partition, at any depth.
CREATE OR REPLACE FUNCTION opsflags.audit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_class c WHERE c.oid = target);
    rel regclass;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        PERFORM opsflags.audit_attach(rel, name);
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.audit_table(regclass) IS
  'Record every change to the table, its inheritance children and its partitions (also later ones) in opsflags.audit_log';

CREATE OR REPLACE FUNCTION opsflags.unaudit_table(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    trig text;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Parents first: dropping a partitioned table's row trigger (made by
    -- an earlier version) drops its partitions' clones, which cannot be
    -- dropped on their own.
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        FOREACH trig IN ARRAY ARRAY['opsflags_audit', 'opsflags_audit_statement'] LOOP
            IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = trig) THEN
                EXECUTE format('DROP TRIGGER %I ON %s', trig, rel);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.unaudit_table(regclass) IS
  'Stop recording changes to the table, its inheritance children and its partitions';

CREATE FUNCTION opsflags.audit_links_tables(pg_ddl_command)
RETURNS boolean
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'opsflags_audit_links_tables';

-- A table made a child or partition of an audited table (CREATE TABLE ...
-- INHERITS / PARTITION OF, ALTER TABLE ... INHERIT / ATTACH PARTITION) is
-- audited like its parent, whoever runs the command.
CREATE FUNCTION opsflags.audit_new_children()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH RECURSIVE
        touched(relid) AS (
            SELECT c.objid FROM pg_event_trigger_ddl_commands() c
            WHERE c.classid = 'pg_class'::regclass AND c.object_type = 'table'
              AND opsflags.audit_links_tables(c.command)),
        down(relid) AS (
            SELECT relid FROM touched
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.relid),
        up(relid, ancestor, depth) AS (
            SELECT d.relid, i.inhparent, 1 FROM down d JOIN pg_inherits i ON i.inhrelid = d.relid
            UNION ALL
            SELECT u.relid, i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.ancestor)
        SELECT DISTINCT ON (u.relid) u.relid::regclass AS relid, t.tgargs
        FROM up u
        JOIN pg_trigger t ON t.tgrelid = u.ancestor AND t.tgname = 'opsflags_audit_statement'
                         AND t.tgfoid = 'opsflags.audit_trigger()'::regprocedure
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger m WHERE m.tgrelid = u.relid AND m.tgname = 'opsflags_audit_statement'
                          AND m.tgenabled = 'A')
        ORDER BY u.relid, u.depth
    LOOP
        -- tgargs: the resource type, NUL-terminated, in the server encoding.
        PERFORM opsflags.audit_attach(r.relid,
            convert_from(substring(r.tgargs FROM 1 FOR position('\x00'::bytea IN r.tgargs) - 1),
                         current_setting('server_encoding')));
    END LOOP;
END
$$;
CREATE EVENT TRIGGER opsflags_audit_new_children ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION opsflags.audit_new_children();
ALTER EVENT TRIGGER opsflags_audit_new_children ENABLE ALWAYS;

CREATE FUNCTION opsflags.audit_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_table_rewrite';
COMMENT ON FUNCTION opsflags.audit_table_rewrite() IS
  'Records an ALTER TABLE that rewrites an audited table as one REWRITE row (reason, column types after)';
CREATE EVENT TRIGGER opsflags_audit_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags.audit_table_rewrite();
ALTER EVENT TRIGGER opsflags_audit_table_rewrite ENABLE ALWAYS;

-- The extension's own audit triggers, and those audit_table made before.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.tgrelid::regclass AS rel, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE t.tgfoid = 'opsflags.audit_trigger()'::regprocedure AND t.tgenabled <> 'A'
               AND t.tgparentid = 0 AND c.relnamespace = 'opsflags'::regnamespace
    LOOP
        EXECUTE format('ALTER TABLE ONLY %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
    END LOOP;
    FOR r IN SELECT DISTINCT t.tgrelid::regclass AS rel FROM pg_trigger t
             WHERE t.tgfoid = 'opsflags.audit_trigger()'::regprocedure AND t.tgname = 'opsflags_audit_statement'
    LOOP
        PERFORM opsflags.audit_table(r.rel);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION opsflags.audit_attach(regclass, text), opsflags.audit_new_children(),
    opsflags.audit_links_tables(pg_ddl_command), opsflags.audit_table_rewrite()
FROM PUBLIC;
-- audit_table runs with its caller's rights (who must be allowed to create
-- triggers on the table).
GRANT EXECUTE ON FUNCTION opsflags.audit_attach(regclass, text) TO opsflags_admin;

-- Maintenance mode: an ALTER TABLE that rewrites a table is a write.
CREATE FUNCTION opsflags.maintenance_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_maintenance_table_rewrite';
COMMENT ON FUNCTION opsflags.maintenance_table_rewrite() IS
  'Refuses an ALTER TABLE that rewrites a table outside schema opsflags while maintenance mode is on';
CREATE EVENT TRIGGER opsflags_maintenance_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags.maintenance_table_rewrite();
ALTER EVENT TRIGGER opsflags_maintenance_table_rewrite ENABLE ALWAYS;
REVOKE ALL ON FUNCTION opsflags.maintenance_table_rewrite() FROM PUBLIC;

-- Alerts: the sampler's functions work for opsflags_admin members (who may
-- call take_sample and resolve_alert) without write access to the tables:
-- evaluate_alert and resolve_alert change opsflags.alerts as its owner.
ALTER FUNCTION opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision)
    SECURITY DEFINER;
ALTER FUNCTION opsflags.resolve_alert(bigint, text) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    opsflags.evaluate_alert(text, boolean, text, text, text, text, double precision, double precision)
TO opsflags_admin;
-- take_sample writes its sample with the caller's rights.
GRANT INSERT ON opsflags.system_health TO opsflags_admin;
GRANT USAGE ON SEQUENCE opsflags.system_health_id_seq TO opsflags_admin;

-- ==== end: audit and maintenance ====


-- ==== begin: dump and restore (one-step pg_restore, pg_dump | psql, pg_dumpall) ====



-- ==== end: dump and restore ====

