/*
 * invalidation.sql
 *	  Per-flag invalidation of the flag cache (C, invalidation.c; the
 *	  trigger that feeds it is in cache.sql): flag_cache_stats().
 */

-- This backend's counters only, nothing about any flag: PUBLIC, so that an
-- application can watch what its own sessions' caches do.
CREATE FUNCTION opsflags.flag_cache_stats()
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_flag_cache_stats';
COMMENT ON FUNCTION opsflags.flag_cache_stats() IS
  'This backend''s flag cache: entries, hits, loads, reloads, invalidated, resets, memory_bytes, per_flag_invalidation';
