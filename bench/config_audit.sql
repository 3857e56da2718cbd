-- Configuration and audit benchmark (issue: configuration and audit).  Run by
-- bench/run.sh after bench/flags.sql; ratios of runs in this one session,
-- medians of 5 interleaved runs.
\ir common.sql

SELECT opsflags.config_set('bench.setting', '{"rps": 100}') IS NULL AS set;
SELECT opsflags.config_set('bench.setting', '{"rps": 200}', environment => 'production') IS NULL AS set;

\echo '== 5. config_get vs a plain SELECT, 100,000 statements each (one PL/pgSQL loop; median of 5, ms)'
CREATE FUNCTION bench.loop_config_get(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v jsonb; BEGIN
    FOR i IN 1 .. n LOOP v := opsflags.config_get('bench.setting'); END LOOP;
END $$;
-- What an application would write without opsflags: environment row, else 'all'.
CREATE FUNCTION bench.loop_plain_select(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v jsonb; BEGIN
    FOR i IN 1 .. n LOOP
        SELECT config_value INTO v FROM opsflags.app_config
        WHERE config_key = 'bench.setting' AND environment IN ('production', 'all')
        ORDER BY environment = 'all' LIMIT 1;
    END LOOP;
END $$;
SELECT bench.measure(ARRAY['config_get', 'plain SELECT'],
    ARRAY['SELECT bench.loop_config_get(100000)', 'SELECT bench.loop_plain_select(100000)'], 5);
SELECT round((SELECT ms FROM bench.median WHERE variant = 'config_get')::numeric, 1) AS "config_get ms",
       round((SELECT ms FROM bench.median WHERE variant = 'plain SELECT')::numeric, 1) AS "plain SELECT ms",
       round(((SELECT ms FROM bench.median WHERE variant = 'config_get') /
              (SELECT ms FROM bench.median WHERE variant = 'plain SELECT'))::numeric, 2) AS "ratio (target <= 1)";
TRUNCATE bench.results;

\echo '== 6. 100,000-row INSERT into an application table: no trigger vs C audit trigger (without and with a tenant column) vs PL/pgSQL to_jsonb audit trigger (median of 5, ms)'
CREATE TABLE bench.plain (id int PRIMARY KEY, name text, price numeric, tags text[]);
CREATE TABLE bench.c_audited (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.plpgsql_audited (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.c_tenant_audited (LIKE bench.plain INCLUDING ALL);
SELECT opsflags.audit_table('bench.c_audited');
SELECT opsflags.audit_table('bench.c_tenant_audited', 'name');
-- The usual hand-written audit trigger, writing the same columns.
CREATE FUNCTION bench.plpgsql_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO opsflags.audit_log (actor, role, action, resource_type, resource_id, table_name,
                                    old_values, new_values, client_addr, application_name, txid)
    VALUES (session_user, current_user, TG_OP, TG_TABLE_NAME, NEW.id::text,
            TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, NULL, to_jsonb(NEW),
            inet_client_addr(), current_setting('application_name'), txid_current());
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT ON bench.plpgsql_audited
    FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_audit();
SELECT bench.measure(ARRAY['no trigger', 'C audit trigger', 'C audit trigger, tenant column', 'PL/pgSQL audit trigger'],
    ARRAY[
      $q$TRUNCATE bench.plain; INSERT INTO bench.plain SELECT i, 'item ' || i, i / 100.0, ARRAY['a', 'b'] FROM generate_series(1, 100000) i$q$,
      $q$TRUNCATE bench.c_audited; INSERT INTO bench.c_audited SELECT i, 'item ' || i, i / 100.0, ARRAY['a', 'b'] FROM generate_series(1, 100000) i$q$,
      $q$TRUNCATE bench.c_tenant_audited; INSERT INTO bench.c_tenant_audited SELECT i, 'item ' || i % 50, i / 100.0, ARRAY['a', 'b'] FROM generate_series(1, 100000) i$q$,
      $q$TRUNCATE bench.plpgsql_audited; INSERT INTO bench.plpgsql_audited SELECT i, 'item ' || i, i / 100.0, ARRAY['a', 'b'] FROM generate_series(1, 100000) i$q$],
    5);
SELECT variant, round(ms::numeric, 1) AS ms FROM bench.median ORDER BY ms;
SELECT round((((SELECT ms FROM bench.median WHERE variant = 'PL/pgSQL audit trigger') - (SELECT ms FROM bench.median WHERE variant = 'no trigger')) /
             ((SELECT ms FROM bench.median WHERE variant = 'C audit trigger') - (SELECT ms FROM bench.median WHERE variant = 'no trigger')))::numeric, 2)
         AS "PL/pgSQL trigger cost / C trigger cost (target >= 2)",
       round(((SELECT ms FROM bench.median WHERE variant = 'PL/pgSQL audit trigger') /
              (SELECT ms FROM bench.median WHERE variant = 'C audit trigger'))::numeric, 2)
         AS "whole INSERT: PL/pgSQL / C";

SELECT opsflags.unaudit_table('bench.c_audited');
SELECT opsflags.unaudit_table('bench.c_tenant_audited');
SELECT opsflags.config_delete('bench.setting'), opsflags.config_delete('bench.setting', 'production');
DROP SCHEMA bench CASCADE;
SELECT opsflags.purge_audit_log(now() + interval '1 day') >= 0 AS purged;
