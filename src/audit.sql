/*
 * audit.sql
 *	  The audit trail: opsflags.audit_log (append-only), audit_trigger() (C,
 *	  audit.c) on the extension's own tables and on any application table
 *	  given to audit_table(), the event triggers that keep partitions,
 *	  inheritance children and table rewrites of audited tables covered,
 *	  purge_audit_log(), and tenants: audit_table()'s tenant column, the
 *	  tenant admins (tenant_admins, grant_tenant_admin(),
 *	  revoke_tenant_admin()) and audit_log's row security policy, by which
 *	  a tenant admin reads the rows of its tenants.
 */

CREATE TABLE opsflags.audit_log (
    id               bigserial PRIMARY KEY,
    occurred_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor            text NOT NULL,
    role             text NOT NULL,
    action           text NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text,
    table_name       text,
    old_values       jsonb,
    new_values       jsonb,
    client_addr      inet,
    application_name text,
    txid             bigint NOT NULL,
    tenant           text
);
-- BRIN: rows arrive in time order, and a B-tree here would cost every
-- audited write an index insertion.  Add your own index for lookups by
-- resource if you need them.
CREATE INDEX audit_log_occurred_at_idx ON opsflags.audit_log USING brin (occurred_at);
COMMENT ON TABLE opsflags.audit_log IS
  'Append-only record of every change to flags, configuration, deployments and audited application tables';
SELECT pg_catalog.pg_extension_config_dump('opsflags.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('opsflags.audit_log_id_seq', '');

CREATE FUNCTION opsflags.audit_trigger()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_trigger';
COMMENT ON FUNCTION opsflags.audit_trigger() IS
  'Records row changes in opsflags.audit_log (FOR EACH ROW, plus FOR EACH STATEMENT to write them); arguments: resource_type [, id_column [, redact_column, when_column [, tenant_column]]]';

CREATE FUNCTION opsflags_internal.audit_log_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_log_guard';
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON opsflags.audit_log
    FOR EACH ROW EXECUTE FUNCTION opsflags_internal.audit_log_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON opsflags.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags_internal.audit_log_guard();
ALTER TABLE opsflags.audit_log ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE opsflags.audit_log ENABLE ALWAYS TRIGGER append_only_truncate;

CREATE FUNCTION opsflags.purge_audit_log(before timestamptz)
RETURNS bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_purge_audit_log';
COMMENT ON FUNCTION opsflags.purge_audit_log(timestamptz) IS
  'Superusers: delete audit rows older than before; the purge itself is audited';

-- The extension's own tables are audited from install on.  Row triggers
-- buffer the changes; the statement trigger (after them) writes the buffer
-- and records TRUNCATE.  ALWAYS: also under session_replication_role =
-- replica.
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.environments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.environments'))
    EXECUTE FUNCTION opsflags.audit_trigger('environment', 'name');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flags
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flags'))
    EXECUTE FUNCTION opsflags.audit_trigger('feature_flag', 'flag_key');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.feature_flag_configs
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.feature_flag_configs'))
    EXECUTE FUNCTION opsflags.audit_trigger('flag_config');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.flag_prerequisites
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.flag_prerequisites'))
    EXECUTE FUNCTION opsflags.audit_trigger('prerequisite');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.user_segments
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.user_segments'))
    EXECUTE FUNCTION opsflags.audit_trigger('segment', 'segment_key');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.app_config'))
    EXECUTE FUNCTION opsflags.audit_trigger('config', 'config_key', 'config_value', 'is_sensitive');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.deployment_history
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.deployment_history'))
    EXECUTE FUNCTION opsflags.audit_trigger('deployment');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.environments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('environment');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('feature_flag');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.feature_flag_configs
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('flag_config');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.flag_prerequisites
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('prerequisite');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.user_segments
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('segment');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('config');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.deployment_history
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('deployment');
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.deployment_history ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.environments ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.feature_flags ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.feature_flag_configs ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.flag_prerequisites ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.user_segments ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER audit_statement;
ALTER TABLE opsflags.deployment_history ENABLE ALWAYS TRIGGER audit_statement;

-- Application tables: their triggers reach inheritance children and
-- partitions (also those made later), are ENABLE ALWAYS (so writes under
-- session_replication_role = replica are recorded), and a rewriting ALTER
-- TABLE of an audited table is recorded.

-- The arguments of a trigger, from pg_trigger.tgargs (each one
-- NUL-terminated, in the server encoding).
CREATE FUNCTION opsflags_internal.audit_trigger_args(tgargs bytea)
RETURNS text[]
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args text[] := '{}';
    rest bytea := tgargs;
    p    integer;
BEGIN
    LOOP
        p := position('\x00'::bytea IN rest);
        EXIT WHEN p = 0;
        args := args || convert_from(substring(rest FROM 1 FOR p - 1), current_setting('server_encoding'));
        rest := substring(rest FROM p + 1);
    END LOOP;
    RETURN args;
END
$$;

-- The triggers on one table (no-op for what is already there).  Triggers
-- that name another tenant column are made again, keeping their resource
-- type.
CREATE FUNCTION opsflags_internal.audit_attach(target regclass, resource_type text, tenant_column text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rtype    text := resource_type;
    existing text[];
    args     text;
    trig     text;
BEGIN
    SELECT opsflags_internal.audit_trigger_args(t.tgargs) INTO existing FROM pg_trigger t
    WHERE t.tgrelid = target AND t.tgname IN ('opsflags_audit', 'opsflags_audit_statement')
    ORDER BY t.tgname LIMIT 1;
    IF existing[1] IS NOT NULL THEN
        rtype := existing[1];
    END IF;
    FOREACH trig IN ARRAY ARRAY['opsflags_audit', 'opsflags_audit_statement'] LOOP
        SELECT opsflags_internal.audit_trigger_args(t.tgargs) INTO existing FROM pg_trigger t
        WHERE t.tgrelid = target AND t.tgname = trig;
        IF FOUND AND nullif(existing[5], '') IS DISTINCT FROM tenant_column THEN
            EXECUTE format('DROP TRIGGER %I ON %s', trig, target);
        END IF;
    END LOOP;
    -- Without a tenant, the one argument of earlier versions.
    args := CASE WHEN tenant_column IS NULL THEN format('%L', rtype)
                 ELSE format('%L, %L, %L, %L, %L', rtype, '', '', '', tenant_column) END;
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
                       'FOR EACH ROW EXECUTE FUNCTION opsflags.audit_trigger(%s)', target, args);
    END IF;
    -- The statement trigger carries the tenant column too: it is the one a
    -- partitioned table has, which its new partitions copy.
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = 'opsflags_audit_statement') THEN
        EXECUTE format('CREATE TRIGGER opsflags_audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger(%s)', target, args);
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
-- tenant_column: the column holding each row's tenant (NULL: none); a
-- later call with another one (or none) changes it.
CREATE FUNCTION opsflags.audit_table(target regclass, tenant_column name DEFAULT NULL)
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
    IF tenant_column IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = tenant_column
                       AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', tenant_column, name
            USING ERRCODE = 'undefined_column';
    END IF;
    FOR rel IN
        WITH RECURSIVE tree(relid, depth) AS (
            SELECT target::oid, 0
            UNION ALL
            SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT relid FROM tree GROUP BY relid ORDER BY min(depth), relid
    LOOP
        PERFORM opsflags_internal.audit_attach(rel, name, tenant_column::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION opsflags.audit_table(regclass, name) IS
  'Record every change to the table, its inheritance children and its partitions (also later ones) in opsflags.audit_log; tenant_column: the column holding each row''s tenant';

CREATE FUNCTION opsflags.unaudit_table(target regclass)
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

CREATE FUNCTION opsflags_internal.audit_links_tables(pg_ddl_command)
RETURNS boolean
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'opsflags_audit_links_tables';

-- A table made a child or partition of an audited table (CREATE TABLE ...
-- INHERITS / PARTITION OF, ALTER TABLE ... INHERIT / ATTACH PARTITION) is
-- audited like its parent, whoever runs the command.
CREATE FUNCTION opsflags_internal.audit_new_children()
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
              AND opsflags_internal.audit_links_tables(c.command)),
        down(relid) AS (
            SELECT relid FROM touched
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.relid),
        up(relid, ancestor, depth) AS (
            SELECT d.relid, i.inhparent, 1 FROM down d JOIN pg_inherits i ON i.inhrelid = d.relid
            UNION ALL
            SELECT u.relid, i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.ancestor)
        SELECT DISTINCT ON (u.relid) u.relid::regclass AS relid,
               opsflags_internal.audit_trigger_args(t.tgargs) AS args
        FROM up u
        JOIN pg_trigger t ON t.tgrelid = u.ancestor AND t.tgname = 'opsflags_audit_statement'
                         AND t.tgfoid = 'opsflags.audit_trigger()'::regprocedure
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger m WHERE m.tgrelid = u.relid AND m.tgname = 'opsflags_audit_statement'
                          AND m.tgenabled = 'A')
        ORDER BY u.relid, u.depth
    LOOP
        -- The parent's resource type and tenant column.
        PERFORM opsflags_internal.audit_attach(r.relid, r.args[1], nullif(r.args[5], ''));
    END LOOP;
END
$$;
CREATE EVENT TRIGGER opsflags_audit_new_children ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION opsflags_internal.audit_new_children();
ALTER EVENT TRIGGER opsflags_audit_new_children ENABLE ALWAYS;

CREATE FUNCTION opsflags_internal.audit_table_rewrite()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsflags_audit_table_rewrite';
COMMENT ON FUNCTION opsflags_internal.audit_table_rewrite() IS
  'Records an ALTER TABLE that rewrites an audited table as one REWRITE row (reason, column types after)';
CREATE EVENT TRIGGER opsflags_audit_table_rewrite ON table_rewrite
    EXECUTE FUNCTION opsflags_internal.audit_table_rewrite();
ALTER EVENT TRIGGER opsflags_audit_table_rewrite ENABLE ALWAYS;

-- Tenants.  An audited table may name a tenant column (audit_table); its
-- audit rows record the row's tenant.  A tenant admin of tenant T (a role
-- in tenant_admins, or any member of one) reads the audit rows of T, and
-- only those; admins read every row (audit_log's policy below).

CREATE TABLE opsflags.tenant_admins (
    -- The role's OID (a name is what a dump holds): a renamed role stays
    -- tenant admin.  Its SELECT right on audit_log keeps it from being
    -- dropped while it is one.
    role       regrole NOT NULL,
    tenant     text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (role, tenant)
);
COMMENT ON TABLE opsflags.tenant_admins IS
  'Roles that read the audit rows of a tenant (and so do their members); changed by grant_tenant_admin and revoke_tenant_admin';
SELECT pg_catalog.pg_extension_config_dump('opsflags.tenant_admins', '');

-- Grants and revokes are audited, with their tenant: a tenant's admins see
-- who else administers it.
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON opsflags.tenant_admins
    FOR EACH ROW WHEN (NOT opsflags.restoring('opsflags.tenant_admins'))
    EXECUTE FUNCTION opsflags.audit_trigger('tenant_admin', '', '', '', 'tenant');
CREATE TRIGGER audit_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsflags.tenant_admins
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.audit_trigger('tenant_admin', '', '', '', 'tenant');
ALTER TABLE opsflags.tenant_admins ENABLE ALWAYS TRIGGER audit;
ALTER TABLE opsflags.tenant_admins ENABLE ALWAYS TRIGGER audit_statement;

-- Tenant admins with the roles that read each tenant's rows through the
-- grant: the role and every role that is a member of it (superusers, who
-- read everything anyway, left out).
CREATE VIEW opsflags.tenant_admins_view AS
SELECT t.role::text AS role, t.tenant, t.granted_at, t.granted_by,
       ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
             WHERE pg_catalog.pg_has_role(r.oid, t.role::oid, 'MEMBER') AND NOT r.rolsuper
             ORDER BY r.rolname) AS readers
FROM opsflags.tenant_admins t;
COMMENT ON VIEW opsflags.tenant_admins_view IS
  'Tenant admins; readers: the roles that read the tenant''s audit rows through the grant (the role and its members)';

-- The roles the tenant admins' SELECT right on audit_log is not granted to
-- or revoked from: opsflags_admin and the table's owner have theirs.
CREATE FUNCTION opsflags_internal.tenant_admin_own_right(r regrole)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r::oid IN ((SELECT oid FROM pg_roles WHERE rolname = 'opsflags_admin'),
                      (SELECT c.relowner FROM pg_class c WHERE c.oid = 'opsflags.audit_log'::regclass))
$$;

-- SECURITY DEFINER: they write tenant_admins and grant SELECT on audit_log
-- as their owner.  The lock serializes them: two GRANTs on one table at
-- once would fail.
CREATE FUNCTION opsflags.grant_tenant_admin(role regrole, tenant text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOCK TABLE opsflags.tenant_admins IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO opsflags.tenant_admins AS t (role, tenant, granted_by)
    VALUES (grant_tenant_admin.role, grant_tenant_admin.tenant, session_user)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT opsflags_internal.tenant_admin_own_right(role) THEN
        EXECUTE format('GRANT SELECT ON opsflags.audit_log TO %s', role);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags.grant_tenant_admin(regrole, text) IS
  'Let the role (and its members) read the audit rows of the tenant; false: it already could';

CREATE FUNCTION opsflags.revoke_tenant_admin(role regrole, tenant text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOCK TABLE opsflags.tenant_admins IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM opsflags.tenant_admins t
    WHERE t.role = revoke_tenant_admin.role AND t.tenant = revoke_tenant_admin.tenant;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM opsflags.tenant_admins t WHERE t.role = revoke_tenant_admin.role)
       AND NOT opsflags_internal.tenant_admin_own_right(role) THEN
        EXECUTE format('REVOKE SELECT ON opsflags.audit_log FROM %s', role);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION opsflags.revoke_tenant_admin(regrole, text) IS
  'Stop the role (and its members) reading the audit rows of the tenant; false: it was no tenant admin of it';

-- Who reads which audit rows, asked once per query by audit_log's policy.
CREATE FUNCTION opsflags_internal.audit_reads_all()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_audit_reads_all';
COMMENT ON FUNCTION opsflags_internal.audit_reads_all() IS
  'Does the current role read every audit row (superuser, owner, opsflags_admin)?';
CREATE FUNCTION opsflags_internal.audit_reader_tenants()
RETURNS text[]
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'opsflags_audit_reader_tenants';
COMMENT ON FUNCTION opsflags_internal.audit_reader_tenants() IS
  'The tenants whose audit rows the current role reads (as a tenant admin or a member of one)';

-- Admins read every row, a tenant admin the rows of its tenants; nobody
-- else has SELECT.  No other policy: INSERT, UPDATE and DELETE are refused
-- to all but the owner (audit_trigger writes the heap directly, and the
-- guard triggers keep the owner from changing rows).  The owner and
-- superusers bypass row security.  The sub-selects make the two functions
-- run once per query, not once per row.
ALTER TABLE opsflags.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_read ON opsflags.audit_log FOR SELECT
    USING ((SELECT opsflags_internal.audit_reads_all())
           OR tenant = ANY ((SELECT opsflags_internal.audit_reader_tenants())::text[]));

REVOKE ALL ON FUNCTION
    opsflags.audit_trigger(), opsflags_internal.audit_log_guard(),
    opsflags.purge_audit_log(timestamptz),
    opsflags.audit_table(regclass, name), opsflags.unaudit_table(regclass),
    opsflags_internal.audit_attach(regclass, text, text), opsflags_internal.audit_trigger_args(bytea),
    opsflags_internal.audit_new_children(),
    opsflags_internal.audit_links_tables(pg_ddl_command), opsflags_internal.audit_table_rewrite(),
    opsflags_internal.tenant_admin_own_right(regrole),
    opsflags.grant_tenant_admin(regrole, text), opsflags.revoke_tenant_admin(regrole, text)
FROM PUBLIC;
GRANT SELECT ON opsflags.audit_log, opsflags.tenant_admins, opsflags.tenant_admins_view TO opsflags_admin;
-- The policy runs them as the reader; each tells a role about itself only.
GRANT EXECUTE ON FUNCTION
    opsflags_internal.audit_reads_all(), opsflags_internal.audit_reader_tenants()
TO PUBLIC;
-- audit_table runs with its caller's rights (who must be allowed to create
-- triggers on the table).
GRANT EXECUTE ON FUNCTION
    opsflags.audit_trigger(),
    opsflags.audit_table(regclass, name), opsflags.unaudit_table(regclass),
    opsflags_internal.audit_attach(regclass, text, text), opsflags_internal.audit_trigger_args(bytea),
    opsflags.grant_tenant_admin(regrole, text), opsflags.revoke_tenant_admin(regrole, text)
TO opsflags_admin;
