/*
 * restore.sql
 *	  restoring(): tells a restore (pg_restore, pg_dump and pg_dumpall
 *	  scripts) from a change.  Loaded early: row triggers of the other
 *	  capabilities use it in their WHEN clauses.
 *
 * pg_restore, and the scripts of pg_dump and pg_dumpall, create the
 * extension (and so every trigger of its tables) and then load each table
 * with COPY FROM.  A restored row is not a change: it must come back as it
 * was (version, timestamps, updated_by), without a second audit row, a
 * NOTIFY, or a check against tables that are not loaded yet (pg_dump
 * orders tables by foreign keys only).  So every row trigger of the
 * extension's tables that fires on INSERT has WHEN (NOT restoring(table)),
 * except cache invalidation and the maintenance-mode state, which must
 * follow the restored rows.  A trigger added later needs the same WHEN.
 */

CREATE FUNCTION opsflags.restoring(target regclass)
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_restoring';
COMMENT ON FUNCTION opsflags.restoring(regclass) IS
  'true while the running command is a COPY FROM into the table by a role with its owner''s privileges (how pg_restore and pg_dump scripts load rows)';
