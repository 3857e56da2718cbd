/*
 * usage.sql
 *	  Flag usage: evaluation counts per flag since the server started (C,
 *	  usage.c, shared memory) and the view opsflags.flag_usage.
 */

CREATE FUNCTION opsflags.flag_usage_counts(OUT flag_key text, OUT true_count bigint,
                                           OUT false_count bigint, OUT last_evaluated timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'opsflags_flag_usage_counts';
CREATE VIEW opsflags.flag_usage AS
SELECT f.flag_key,
       coalesce(u.true_count, 0) AS true_count,
       coalesce(u.false_count, 0) AS false_count,
       u.last_evaluated,
       u.last_evaluated IS NULL
         OR u.last_evaluated < now() - make_interval(days =>
              coalesce((opsflags.config_get('flags.stale_after_days', 'all') #>> '{}')::integer, 30)) AS stale,
       f.archived
FROM opsflags.feature_flags f
LEFT JOIN opsflags.flag_usage_counts() u ON u.flag_key = f.flag_key;
COMMENT ON VIEW opsflags.flag_usage IS
  'Evaluations per flag, archived ones included (true, false) and the last one, since the server started; stale: none for config flags.stale_after_days (30) days';
GRANT SELECT ON opsflags.flag_usage TO opsflags_admin;
REVOKE ALL ON FUNCTION opsflags.flag_usage_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsflags.flag_usage_counts() TO opsflags_admin;

-- Counts a client SDK reports for a flag it evaluated itself (the HTTP
-- server's Unleash metrics, http_unleash.sql), added to the flag's usage.
CREATE FUNCTION opsflags_internal.usage_add(flag_key text, true_count bigint, false_count bigint)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsflags_usage_add';
REVOKE ALL ON FUNCTION opsflags_internal.usage_add(text, bigint, bigint) FROM PUBLIC;
