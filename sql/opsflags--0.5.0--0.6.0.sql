-- opsflags 0.5.0 -> 0.6.0: targeting rules on any attribute of a context,
-- named variations, Unleash import and export, per-flag cache invalidation.
-- A fresh install of 0.6.0 (built from src/*.sql) and an updated one are the
-- same (test/upgrade/upgrade.sh).
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.6.0'" to load this file. \quit

-- ==== Per-flag cache invalidation (src/invalidation.sql) ====
-- The trigger on the flag tables is unchanged; with shared_preload_libraries
-- its C function now also invalidates per flag.  New: flag_cache_stats().

CREATE FUNCTION opsflags.flag_cache_stats()
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_flag_cache_stats';
COMMENT ON FUNCTION opsflags.flag_cache_stats() IS
  'This backend''s flag cache: entries, hits, loads, reloads, invalidated, resets, memory_bytes, per_flag_invalidation';
