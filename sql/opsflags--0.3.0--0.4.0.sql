-- opsflags 0.3.0 -> 0.4.0: one SQL name per C function.
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.4.0'" to load this file. \quit

-- invalidate_cache() and invalidate_flag_cache() were two SQL names of one C
-- function.  app_config's triggers keep their names and run
-- invalidate_flag_cache(), as every other table's do; invalidate_cache()
-- goes (a trigger function, which no user can have attached: EXECUTE on it
-- was never granted).
CREATE OR REPLACE TRIGGER invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE ON opsflags.app_config
    FOR EACH ROW EXECUTE FUNCTION opsflags.invalidate_flag_cache();
CREATE OR REPLACE TRIGGER invalidate_cache_truncate
    AFTER TRUNCATE ON opsflags.app_config
    FOR EACH STATEMENT EXECUTE FUNCTION opsflags.invalidate_flag_cache();
-- CREATE OR REPLACE TRIGGER enables a trigger for origin sessions only.
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE opsflags.app_config ENABLE ALWAYS TRIGGER invalidate_cache_truncate;
DROP FUNCTION opsflags.invalidate_cache();
