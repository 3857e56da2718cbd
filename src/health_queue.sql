/*
 * health_queue.sql
 *	  queue_depth(), in C (health_queue.c): health.queue_query run as
 *	  health_status() runs it, for the sampler (worker.sql).
 */

-- health.queue_query, as health_status() and the sampler run it.
CREATE FUNCTION opsflags.queue_depth(log_failure boolean DEFAULT false,
                                     OUT pending bigint, OUT failed bigint, OUT error text)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_queue_depth';
COMMENT ON FUNCTION opsflags.queue_depth(boolean) IS
  'health.queue_query''s pending and failed counts, or its error (never a sensitive query''s); log_failure: a WARNING once per change of the error';

REVOKE ALL ON FUNCTION opsflags.queue_depth(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.queue_depth(boolean) TO opsflags_admin;
