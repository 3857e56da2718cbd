-- The queries the HTTP server's database worker runs (src/http_*.sql), as
-- it calls them: /readyz's reason, /metrics' rows, /api/status's document.
-- The C side only formats these answers (test/http/http.sh serves them).

-- /readyz: ready on a primary outside maintenance mode; why not otherwise.
SELECT opsflags_internal.http_readiness() IS NULL AS ready;
SELECT opsflags.set_maintenance_mode(true, 'http-test');
SELECT opsflags_internal.http_readiness() AS reason;
SELECT opsflags.set_maintenance_mode(false, 'http-test');
SELECT opsflags_internal.http_readiness() IS NULL AS ready;

-- /metrics: the families that follow from the health document, maintenance
-- and recovery; the others (connections, size, usage...) are there.
SELECT family, value, label1, value1, label2, value2
FROM opsflags_internal.http_metrics('{"status": "degraded", "components":
      {"cache": {"status": "degraded", "latency_ms": 12.5}, "database": {"status": "healthy", "latency_ms": 1}}}')
WHERE family IN (1, 2, 3, 5, 12, 13)
ORDER BY 1, 4, 6;
SELECT family, count(*) AS samples
FROM opsflags_internal.http_metrics('{"status": "healthy", "components": {}}')
WHERE family IN (4, 6, 7, 8, 11)
GROUP BY family ORDER BY family;
-- No standby: no replay lag.
SELECT count(*) AS lag_rows FROM opsflags_internal.http_metrics('{}') WHERE family = 14;

-- /api/status: its parts; a deployment's version and commit are left out
-- while config app_version and commit_sha are sensitive.
SELECT jsonb_object_keys(opsflags_internal.http_status('{"status": "healthy"}')) AS key ORDER BY 1;
SELECT opsflags_internal.http_status('{"status": "healthy"}') -> 'health' AS health;
SELECT opsflags.record_deployment('9.9.9-http', 'production', commit_sha => 'abc1234') AS dep \gset
SELECT d -> 'version' AS version, d -> 'commit_sha' AS commit_sha, d -> 'status' AS status
FROM jsonb_array_elements(opsflags_internal.http_status('{}') -> 'deployments') d
WHERE d ->> 'id' = :'dep';
SELECT opsflags.config_set('app_version', '"9.9.9-http"', is_sensitive => true);
SELECT opsflags.config_set('commit_sha', '"abc1234"', is_sensitive => true);
SELECT d -> 'version' AS version, d -> 'commit_sha' AS commit_sha, d -> 'status' AS status
FROM jsonb_array_elements(opsflags_internal.http_status('{}') -> 'deployments') d
WHERE d ->> 'id' = :'dep';
SELECT opsflags.config_delete('app_version');
SELECT opsflags.config_delete('commit_sha');

-- Only the server (superuser) runs them.
SET ROLE opsflags_admin;
SELECT opsflags_internal.http_status('{}');
RESET ROLE;
