/*
 * errors.sql
 *	  The error counter (C, errors.c): errors_last_hour().
 */

CREATE FUNCTION opsflags.errors_last_hour()
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_errors_last_hour_sql';
COMMENT ON FUNCTION opsflags.errors_last_hour() IS
  'ERROR, FATAL and PANIC reports of the server in the last 60 minutes (NULL without shared_preload_libraries)';
