/*
 * invalidation.sql
 *	  Per-flag invalidation of the flag cache (C, invalidation.c; the
 *	  trigger that feeds it is in cache.sql): flag_cache_stats(), and
 *	  announce_change() for the HTTP server's event streams.
 */

-- This backend's counters only, nothing about any flag: PUBLIC, so that an
-- application can watch what its own sessions' caches do.
CREATE FUNCTION opsflags.flag_cache_stats()
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'opsflags_flag_cache_stats';
COMMENT ON FUNCTION opsflags.flag_cache_stats() IS
  'This backend''s flag cache: entries, hits, loads, reloads, invalidated, resets, memory_bytes, per_flag_invalidation';

-- At this transaction's commit, tell the HTTP server's event streams that
-- what clients are served may have changed (API keys), without invalidating
-- any cache.  Not for PUBLIC: a caller could wake every stream's client.
CREATE FUNCTION opsflags_internal.announce_change()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_announce_change';
REVOKE ALL ON FUNCTION opsflags_internal.announce_change() FROM PUBLIC;
