#!/usr/bin/env bash
# test/http/http.sh: the HTTP server of the "opsflags http" worker, against
# the test cluster (run by scripts/test.sh; prints TAP).  Off by default; a
# reload turns it on, moves it and turns it off; every endpoint and status
# code (healthy, memcached down -> degraded 200, database not answering ->
# 503 after the lock timeout, maintenance -> /readyz 503; /livez answered
# while the database worker waits); /metrics through promtool and a strict
# checker; no sensitive value anywhere; slow, idle, oversized, malformed and
# surplus clients; keep-alive and pipelining; the status page in headless
# Chromium (test/http/page.sh).
#   needs: SOCKDIR PORT WORKDIR OPSFLAGS_TEST_MEMCACHED OPSFLAGS_TEST_DOWN
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
# qb BODY SQL: run SQL with :'b' set to BODY (psql interpolates only in scripts)
qb() { q -v b="$1" -f - <<<"$2"; }
H1=$(free_port $((PORT + 20)))
H2=$(free_port $((H1 + 1)))
U=http://127.0.0.1:$H1
LOCK_PID=''

cleanup() {
    [[ -n $LOCK_PID ]] && kill "$LOCK_PID" 2>/dev/null
    q -c "ALTER SYSTEM RESET opsflags.http_port" -c "ALTER SYSTEM RESET opsflags.http_timeout" \
      -c "ALTER SYSTEM RESET opsflags.http_max_connections" \
      -c "ALTER SYSTEM RESET opsflags.memcached_servers" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
}
trap cleanup EXIT

# code URL [curl args]: the status code (000: no connection)
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
answers() { [[ $(code "$1") == "$2" ]]; }
worker_says() { [[ $(q -c "SELECT query FROM pg_stat_activity WHERE backend_type = 'opsflags http' AND datname = 'opsflags_tap'") == "$1" ]]; }
# raw PORT BYTES: send BYTES on a new connection, print all the server says
# until it closes (at most 10 s)
raw() { timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf "%b" "$1" >&3 && cat <&3' "$1" "$2"; }

echo "1..40"

# 1-2. Off by default; a reload turns it on.
wait_for 10 worker_says "off (opsflags.http_port = 0)"
ok $? "the worker runs, connected to opsflags.database, and says it is off while opsflags.http_port = 0"
q -c "ALTER SYSTEM SET opsflags.http_port = $H1" -c "ALTER SYSTEM SET opsflags.http_timeout = '2s'" \
  -c "ALTER SYSTEM SET opsflags.http_max_connections = 3" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 15 answers "$U/livez" 200
ok $? "a reload with opsflags.http_port = $H1 starts it: GET /livez is 200"

# 3. /livez and HEAD
r=$(curl -s -i "$U/livez" | tr -d '\r')
h=$(curl -s -I "$U/livez" | tr -d '\r')
[[ $r == *$'\n\nok' && $h == *"Content-Length: 3"* && $(curl -s -X HEAD --max-time 5 "$U/livez" | wc -c) == 0 ]]
ok $? "/livez says ok; HEAD has the length and no body"

# 4. /health is health_status()
body=$(curl -s "$U/health")
[[ $(code "$U/health") == 200 && $(qb "$body" "SELECT (:'b'::jsonb ->> 'status') = 'healthy' AND (SELECT count(*) FROM jsonb_object_keys(:'b'::jsonb -> 'components')) = 4 AND :'b'::jsonb - 'timestamp' - 'components' = opsflags.health_status() - 'timestamp' - 'components'") == t ]]
ok $? "/health is 200 with the health_status() document (healthy, four components)"
[[ $(code "$U/api/health") == 200 ]]
ok $? "/api/health is the same endpoint"

# 5. HEAD on each endpoint: same code, no body
bad=''
for path in / /livez /readyz /health /metrics /api/status /flags/production /flags/nope /nope; do
    g=$(code "$U$path"); hd=$(code -I "$U$path"); n=$(curl -s -X HEAD --max-time 10 "$U$path" | wc -c)
    [[ $g == "$hd" && $n == 0 ]] || bad+=" $path($g/$hd/$n)"
done
[[ -z $bad ]]
ok $? "HEAD gives GET's status and no body on every endpoint${bad:+:$bad}"

# 6-7. /readyz follows maintenance mode
r=$(curl -s -w ' %{http_code}' "$U/readyz")
[[ $r == '{"ready": true} 200' ]]
ok $? "/readyz is 200 {\"ready\": true} on a primary outside maintenance${r:+ (got: $r)}"
q -c "SELECT opsflags.set_maintenance_mode(true, 'http test')" >/dev/null
r=$(curl -s -w ' %{http_code}' "$U/readyz")
q -c "SELECT opsflags.set_maintenance_mode(false, 'http test')" >/dev/null
[[ $r == '{"ready": false, "reason": "maintenance mode is on"} 503' && $(code "$U/readyz") == 200 ]]
ok $? "/readyz is 503 in maintenance mode and 200 again after it (got: $r)"

# 8-12. /metrics
q -c "SELECT count(opsflags.create_flag('http.metric', 'HTTP metric'))" \
  -c "SELECT count(opsflags.feature_enabled('http.metric', 'u' || i)) FROM generate_series(1, 7) i" >/dev/null
curl -s -D "$WORKDIR/metrics.head" -o "$WORKDIR/metrics.txt" "$U/metrics"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$WORKDIR/metrics.head"
ok $? "/metrics is text/plain; version=0.0.4"
PROMTOOL=''
tooldir=$REPO/.run/tools
if [[ ! -x $tooldir/usr/bin/promtool ]]; then
    mkdir -p "$tooldir"
    (cd "$tooldir" && apt-get download prometheus >/dev/null 2>&1 && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb)
fi
[[ -x $tooldir/usr/bin/promtool ]] && PROMTOOL=$tooldir/usr/bin/promtool
if [[ -n $PROMTOOL ]]; then
    "$PROMTOOL" check metrics <"$WORKDIR/metrics.txt"
    ok $? "promtool check metrics accepts it"
else
    echo "# promtool unavailable (apt-get download prometheus failed): the strict checker alone decides"
    perl "$REPO/test/http/check_metrics.pl" <"$WORKDIR/metrics.txt"
    ok $? "the strict checker accepts it (promtool unavailable)"
fi
perl "$REPO/test/http/check_metrics.pl" <"$WORKDIR/metrics.txt"
ok $? "test/http/check_metrics.pl accepts it"
mc=$(q -c "SHOW max_connections")
grep -qx 'opsflags_up 1' "$WORKDIR/metrics.txt" &&
    grep -qx 'opsflags_health_status{status="healthy"} 1' "$WORKDIR/metrics.txt" &&
    grep -qx "opsflags_max_connections $mc" "$WORKDIR/metrics.txt" &&
    grep -qE '^opsflags_component_latency_seconds\{component="database"\} [0-9.e-]+$' "$WORKDIR/metrics.txt" &&
    grep -qE '^opsflags_database_size_bytes\{database="opsflags_tap"\} [1-9][0-9]*$' "$WORKDIR/metrics.txt" &&
    grep -qE '^opsflags_errors_last_hour [0-9]+$' "$WORKDIR/metrics.txt" &&
    grep -qE '^opsflags_alerts_open\{severity="critical"\} [0-9]+$' "$WORKDIR/metrics.txt" &&
    grep -qx 'opsflags_maintenance_mode 0' "$WORKDIR/metrics.txt" &&
    grep -qx 'opsflags_in_recovery 0' "$WORKDIR/metrics.txt" &&
    grep -qE '^opsflags_connections\{state="active"\} [0-9]+$' "$WORKDIR/metrics.txt"
ok $? "/metrics has up, health, component latency, connections, size, errors, alerts, maintenance, recovery"
want=$(q -c "SELECT true_count + false_count FROM opsflags.flag_usage_counts() WHERE flag_key = 'http.metric'")
got=$(awk '/^opsflags_flag_evaluations_total\{flag="http.metric",/ {s += $2} END {print s + 0}' "$WORKDIR/metrics.txt")
[[ $want -ge 7 && $got == "$want" ]]
ok $? "per-flag evaluation counts match flag_usage_counts() ($got of $want; the server's own evaluations are not counted)"

# 13-14. /flags/<environment>
body=$(curl -s "$U/flags/production")
[[ $(qb "$body" "SELECT :'b'::jsonb = opsflags.flags_for_environment('production') AND :'b'::jsonb ? 'http.metric'") == t ]]
ok $? "/flags/production is flags_for_environment('production')"
[[ $(code "$U/flags/nope") == 404 && $(code "$U/flags/..%2Fetc") == 404 && $(code "$U/flags/") == 404 && $(code "$U/nope") == 404 ]]
ok $? "unknown environments, odd names and unknown paths are 404"

# 15. /api/status: the status page's data
body=$(curl -s "$U/api/status")
[[ $(qb "$body" "SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'b'::jsonb) k) = '{alerts,deployments,environment,flags,generated_at,health,in_recovery,maintenance,samples}' AND :'b'::jsonb ->> 'environment' = 'production' AND jsonb_typeof(:'b'::jsonb -> 'samples') = 'array'") == t ]]
ok $? "/api/status has health, samples, flags, deployments and alerts of the environment"

# 16. No secret anywhere
# (health_status() shows app_version and commit_sha: sensitive ones only to
# admins, and the server calls it as an ordinary role would)
q -c "SELECT opsflags.config_set('http.secret_token', '\"s3cr3t-http-7781\"'::jsonb, is_sensitive => true)" \
  -c "SELECT opsflags.config_set('app_version', '\"s3cr3t-version-7781\"'::jsonb, is_sensitive => true)" \
  -c "SELECT opsflags.config_set('commit_sha', '\"s3cr3t-sha-7781\"'::jsonb, is_sensitive => true)" \
  -c "SELECT opsflags.take_sample('test')" >/dev/null
[[ $(q -c "SELECT opsflags.health_status() ->> 'commit_sha'") == s3cr3t-sha-7781 ]]   # an admin sees it
admin_sees=$?
found=''
for path in / /livez /readyz /health /metrics /api/status /flags/production /flags/staging /flags/development; do
    curl -s "$U$path" | grep -q 's3cr3t-' && found+=" $path"
done
q -c "SELECT opsflags.config_delete('app_version')" -c "SELECT opsflags.config_delete('commit_sha')" >/dev/null
[[ $admin_sees == 0 && -z $found ]] && ! grep -q 's3cr3t-' "$OPSFLAGS_TEST_LOG"
ok $? "sensitive config values (a token, app_version, commit_sha) appear on no endpoint and not in the log${found:+ (found on$found)}"

# 17. Methods, versions, bodies, malformed
r=$(curl -s -i -X POST "$U/health" | tr -d '\r')
[[ $r == "HTTP/1.1 405"* && $r == *"Allow: GET, HEAD"* ]] &&
    [[ $(raw "$H1" 'GET /livez HTTP/2.0\r\n\r\n') == "HTTP/1.1 505"* ]] &&
    [[ $(raw "$H1" 'BLAH\r\n\r\n') == "HTTP/1.1 400"* ]] &&
    [[ $(raw "$H1" 'GET livez HTTP/1.1\r\n\r\n') == "HTTP/1.1 400"* ]] &&
    [[ $(raw "$H1" 'GET /livez HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello') == "HTTP/1.1 200"* ]] &&
    [[ $(raw "$H1" 'GET /livez HTTP/1.1\r\nContent-Length: 65537\r\n\r\nhello') == "HTTP/1.1 413"* ]] &&
    [[ $(raw "$H1" 'GET /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n') == "HTTP/1.1 200"* ]] &&
    [[ $(raw "$H1" 'GET /livez HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n') == "HTTP/1.1 411"* ]]
ok $? "POST to a GET route is 405 with Allow; HTTP/2.0 is 505; malformed request lines are 400; a body is read, over 64 kB 413, chunked read, another transfer coding 411"

# 18. Oversized request head
big=$(head -c 9000 /dev/zero | tr '\0' a)
r=$(raw "$H1" "GET /livez HTTP/1.1\\r\\nX-Big: $big\\r\\n\\r\\n")
[[ $r == "HTTP/1.1 431"* && $r == *"Connection: close"* ]]
ok $? "a request head over 8 kB is 431 and the connection is closed"

# 19. Keep-alive and pipelining
n=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' "$U/livez" "$U/health" "$U/livez" | paste -sd' ')
r=$(raw "$H1" 'GET /livez HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n' | tr -d '\r')
[[ $n == "1 0 0" && $(grep -o 'HTTP/1.1 [0-9]*' <<<"$r" | paste -sd' ') == "HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 404" && $r == *'{"ready": true}'* && $r == *"HTTP/1.1 404"* ]]
ok $? "one connection serves several requests (connects: $n), pipelined ones in order"
r=$(raw "$H1" 'GET /livez HTTP/1.0\r\n\r\n' | tr -d '\r')
[[ $r == *"Connection: close"* && $r == *$'\n\nok' ]]
ok $? "HTTP/1.0 without keep-alive: answered, then closed"

# 20-22. Slow and idle clients cost a slot for opsflags.http_timeout (2 s), never the loop
exec {slow}<>"/dev/tcp/127.0.0.1/$H1"
printf 'GET /livez HTTP/1.1\r\nHost: slow' >&"$slow"
start=$SECONDS
[[ $(code --max-time 1 "$U/livez") == 200 ]]
ok $? "while a client sends half a request, others are answered at once"
r=$(timeout 10 cat <&"$slow" | tr -d '\r')
took=$((SECONDS - start))
exec {slow}>&-
[[ $r == "HTTP/1.1 408"* && $took -ge 1 && $took -le 6 ]]
ok $? "the half-sent request is answered 408 and closed after the timeout (${took} s)"
exec {idle}<>"/dev/tcp/127.0.0.1/$H1"
start=$SECONDS
r=$(timeout 10 cat <&"$idle")
took=$((SECONDS - start))
exec {idle}>&-
[[ -z $r && $took -ge 1 && $took -le 6 ]]
ok $? "a connection that sends nothing is closed without a word after the timeout (${took} s)"

# 25-26. At most opsflags.http_max_connections (3) clients.  Idle keep-alive
# clients give way: a newcomer takes the slot of the one idle longest.
# Clients in the middle of a request keep theirs.
# answered FD: a keep-alive GET /livez on FD, read to the end of its answer
answered() {
    local line
    printf 'GET /livez HTTP/1.1\r\nHost: t\r\n\r\n' >&"$1"
    while IFS= read -r -t 2 line <&"$1"; do [[ $line == ok ]] && return 0; done
    return 1
}
exec {c1}<>"/dev/tcp/127.0.0.1/$H1" {c2}<>"/dev/tcp/127.0.0.1/$H1" {c3}<>"/dev/tcp/127.0.0.1/$H1"
answered "$c1" && answered "$c2" && answered "$c3"
served=$?
r=$(curl -s -w ' %{http_code}' --max-time 1 "$U/livez")
timeout 1 cat <&"$c1" >/dev/null      # EOF at once: closed by the server
closed=$?
timeout 0.2 cat <&"$c2" >/dev/null    # still open: cat times out (124)
open2=$?
exec {c1}>&- {c2}>&- {c3}>&-
[[ $served == 0 && $r == "ok"*" 200" && $closed == 0 && $open2 == 124 ]]
ok $? "three idle keep-alive clients at the limit: a fourth is answered 200, the one idle longest is closed, the others stay (got: $served, ${r//$'\n'/}, $closed, $open2)"
exec {c1}<>"/dev/tcp/127.0.0.1/$H1" {c2}<>"/dev/tcp/127.0.0.1/$H1" {c3}<>"/dev/tcp/127.0.0.1/$H1"
printf 'GET /livez HTTP/1.1\r\nHost: a' >&"$c1"
printf 'GET /livez HTTP/1.1\r\nHost: b' >&"$c2"
printf 'GET /livez HTTP/1.1\r\nHost: c' >&"$c3"
wait_for 5 bash -c "[[ \$(ss -Htn state established '( sport = :$H1 )' | awk '\$1 == 0' | wc -l) == 3 ]]"
r=$(curl -s -w ' %{http_code}' --max-time 1 "$U/livez")
exec {c1}>&- {c2}>&- {c3}>&-
wait_for 5 answers "$U/livez" 200
ok2=$?
[[ $r == "too many connections"*" 503" && $ok2 == 0 ]]
ok $? "three clients each in the middle of a request: a fourth gets 503 too many connections; once they leave, 200 (got: ${r//$'\n'/})"

# 27-28. memcached down: degraded, still 200
q -c "ALTER SYSTEM SET opsflags.memcached_servers = '$OPSFLAGS_TEST_DOWN'" -c "SELECT pg_reload_conf()" >/dev/null
degraded() { [[ $(curl -s -w ' %{http_code}' "$U/health") == *'"status": "degraded"'*' 200' ]]; }
wait_for 15 degraded
ok $? "memcached down: /health is 200 with status degraded"
grep -qx 'opsflags_component_status{component="cache",status="degraded"} 1' <(curl -s "$U/metrics")
ok $? "memcached down: /metrics says the cache component is degraded"
q -c "ALTER SYSTEM SET opsflags.memcached_servers = '$OPSFLAGS_TEST_MEMCACHED'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 15 bash -c "[[ \$(curl -s '$U/health') == *'\"status\": \"healthy\"'* ]]"

# 29-34. A lock held on what the endpoints read: the database worker waits
# at most a quarter of opsflags.http_timeout for it; the loop, and /livez,
# never wait for the database.
# lock TABLE: hold an ACCESS EXCLUSIVE lock on TABLE until unlock
lock() {
    PGAPPNAME=http_lock_holder pg_psql "$SOCKDIR" "$PORT" opsflags_tap -q -c "BEGIN" \
        -c "LOCK TABLE $1 IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
    LOCK_PID=$!
    wait_for 15 bash -c "[[ \$(PGAPPNAME=probe $PG_BIN/psql -X -Atq -h '$SOCKDIR' -p '$PORT' -U postgres -d opsflags_tap -c \"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'http_lock_holder' AND l.relation = '$1'::regclass AND l.granted\") == 1 ]]"
}
unlock() {
    q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'http_lock_holder'" >/dev/null
    wait "$LOCK_PID" 2>/dev/null
    LOCK_PID=''
}
sql_worker_waits_on_lock() { [[ $(q -c "SELECT wait_event_type FROM pg_stat_activity WHERE backend_type = 'opsflags http sql'") == Lock ]]; }
lock pg_catalog.pg_extension
r=$(curl -s -w ' %{http_code}' "$U/health")
[[ $r == *'"status": "unhealthy"'* && $r == *'"database": {"status": "unhealthy", "message": "canceling statement due to lock timeout"'*' 503' ]]
ok $? "pg_extension locked: /health is 503, the database component unhealthy after the lock timeout"
unlock
lock opsflags.alerts
grep -qx 'opsflags_up 0' <(curl -s "$U/metrics")
ok1=$?
r=$(curl -s -w ' %{http_code}' "$U/api/status")
[[ $ok1 == 0 && $r == '{"status": "unhealthy", "error": "canceling statement due to lock timeout"} 503' ]]
ok $? "opsflags.alerts locked: /metrics still answers, with opsflags_up 0; /api/status is 503 with the reason"
[[ $(code --max-time 1 "$U/livez") == 200 ]]
ok $? "... /livez, which needs no SQL, is 200"
# With an 8 s timeout the worker waits 2 s for the lock: /livez is answered
# while it does, and before the /health asked first.
q -c "ALTER SYSTEM SET opsflags.http_timeout = '8s'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 10 bash -c "[[ \$(q -c 'SHOW opsflags.http_timeout') == 8s ]]"
curl -s -o "$WORKDIR/locked_health" -w '%{http_code}' "$U/api/status" >"$WORKDIR/locked_health.code" &
health_pid=$!
wait_for 10 sql_worker_waits_on_lock
waiting=$?
r=$(curl -s -w ' %{http_code}' --max-time 1 "$U/livez")
[[ -s $WORKDIR/locked_health.code ]] && first=health || first=livez
wait "$health_pid"
[[ $waiting == 0 && $r == "ok"*" 200" && $first == livez && $(cat "$WORKDIR/locked_health.code") == 503 ]]
ok $? "while the database worker waits for a lock, /livez is answered at once, before the request that waits (${r//$'\n'/}; first: $first)"
q -c "ALTER SYSTEM SET opsflags.http_timeout = '2s'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 10 bash -c "[[ \$(q -c 'SHOW opsflags.http_timeout') == 2s ]]"
unlock
wait_for 15 answers "$U/api/status" 200
ok $? "once the lock is gone, /api/status is 200 again"
sql_pid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'opsflags http sql'"; }
old=$(sql_pid)
q -c "SELECT pg_terminate_backend($old)" >/dev/null
wait_for 10 bash -c "[[ -z \$(PGAPPNAME=probe $PG_BIN/psql -X -Atq -h '$SOCKDIR' -p '$PORT' -U postgres -d opsflags_tap -c \"SELECT 1 FROM pg_stat_activity WHERE pid = $old\") ]]"
wait_for 15 answers "$U/health" 200
r=$?
new=$(sql_pid)
[[ -n $old && $r == 0 && -n $new && $new != "$old" ]]
ok $? "the database worker terminated ($old): the next requests start another ($new) and are 200"

# 35-37. The status page: self-contained, in headless Chromium
curl -s -D "$WORKDIR/page.head" -o "$WORKDIR/page.html" "$U/"
grep -qi "^Content-Security-Policy: default-src 'none'" "$WORKDIR/page.head" &&
    ! grep -qiE '(src|href)=["'"'"']?(https?:)?//' "$WORKDIR/page.html"
ok $? "/ is one HTML page with a strict Content-Security-Policy and no external resources"
q -c "SELECT count(opsflags.take_sample('test')) FROM generate_series(1, 3)" \
  -c "INSERT INTO opsflags.system_health (recorded_at, status, source, total_connections, active_connections, cache_hit_rate, errors_last_hour, database_size_bytes)
      SELECT now() - i * interval '30 minutes', 'healthy', 'test', 10 + i % 7, i % 3, 0.95 + (i % 5) / 100.0, i % 4, 8000000 + 1000 * (48 - i)
      FROM generate_series(1, 47) i" \
  -c "SELECT opsflags.record_deployment('9.9.9-http', 'production')" \
  -c "SELECT opsflags.create_flag('page.half_rollout', 'Half rollout') IS NOT NULL" \
  -c "SELECT opsflags.update_flag('page.half_rollout', '{\"is_enabled\": true, \"enabled_percentage\": 50}')" >/dev/null
bash "$REPO/test/http/page.sh" "$U" "$WORKDIR/page" | sed 's/^/    /'
ok "${PIPESTATUS[0]}" "headless Chromium renders the components, charts, flags, deployments and alerts (screenshot: .run/status-page.png)"
mkdir -p "$REPO/.run" && cp "$WORKDIR/page/status.png" "$REPO/.run/status-page.png" 2>/dev/null
bash "$REPO/test/http/page_xss.sh" "$WORKDIR/page_xss" | sed 's/^/    /'
ok "${PIPESTATUS[0]}" "the page renders hostile strings as text, empty lists, a 503 and a failed refresh (mock api/status)"

# 38-40. A reload moves it to another port, then turns it off
q -c "ALTER SYSTEM SET opsflags.http_port = $H2" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 15 answers "http://127.0.0.1:$H2/livez" 200
ok $? "a reload with opsflags.http_port = $H2 moves it there"
[[ $(code "$U/livez") == 000 ]]
ok $? "... and port $H1 is closed"
q -c "ALTER SYSTEM RESET opsflags.http_port" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 15 worker_says "off (opsflags.http_port = 0)"
r=$?
[[ $r == 0 && $(code "http://127.0.0.1:$H2/livez") == 000 ]]
ok $? "opsflags.http_port = 0 turns it off again"

tap_done
