#!/usr/bin/env bash
# test/http/tls.sh: HTTPS (opsflags.http_tls) on the test cluster (run by
# scripts/test.sh; prints TAP).  A self-signed certificate made here goes
# into the data directory as the server's ssl_cert_file and ssl_key_file
# (relative names, mode 600); then, with curl --cacert: /livez, /health,
# /metrics and an OFREP POST answer over HTTPS as they did over HTTP;
# keep-alive and pipelining over TLS; OFREP's event stream over TLS (Node,
# test/http/tls_stream.js); a plain HTTP request to the HTTPS port is 400
# and closed, and HTTPS still answers after it; a client that never
# handshakes is cut after opsflags.http_timeout without holding up others;
# a reload with a broken certificate keeps the previous one; HTTPS asked
# without a loadable certificate serves nothing (not plain HTTP); turning
# opsflags.http_tls off serves plain HTTP again.
#   needs: SOCKDIR PORT WORKDIR
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
H=$(free_port $((PORT + 70)))
S=https://127.0.0.1:$H
P=http://127.0.0.1:$H
CA=$WORKDIR/tls_ca.pem
DATA=$(q -c "SHOW data_directory")
KEY=''

cleanup() {
    q -c "ALTER SYSTEM RESET opsflags.http_port" -c "ALTER SYSTEM RESET opsflags.http_tls" \
      -c "ALTER SYSTEM RESET opsflags.http_timeout" -c "ALTER SYSTEM RESET ssl_cert_file" \
      -c "ALTER SYSTEM RESET ssl_key_file" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    [[ -n $KEY ]] && q -c "DELETE FROM opsflags.api_keys WHERE description = 'tls test'" >/dev/null 2>&1
    rm -f "$DATA/opsflags_test_tls.crt" "$DATA/opsflags_test_tls.key"
}
trap cleanup EXIT

# code URL [curl args]: the status code (000: no answer)
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$CA" "$@"; }
answers() { [[ $(code "$1") == "$2" ]]; }
worker_says() { [[ $(q -c "SELECT query FROM pg_stat_activity WHERE backend_type = 'opsflags http' AND datname = 'opsflags_tap'") == "$1" ]]; }
reload() { q -c "SELECT pg_reload_conf()" >/dev/null; }
# tls_raw BYTES: send BYTES over TLS on a new connection, print all the
# server says until it closes (at most 10 s)
tls_raw() {
    printf '%b' "$1" | timeout 10 openssl s_client -quiet -ign_eof -verify_return_error -CAfile "$CA" \
        -connect "127.0.0.1:$H" 2>/dev/null
}
# health URL: the code of /health, its status and how many components it has
health() {
    local b
    b=$(curl -s --max-time 10 --cacert "$CA" -w '\n%{http_code}' "$1/health")
    echo "${b##*$'\n'} $(q -v b="${b%$'\n'*}" -f - <<<"SELECT (:'b'::jsonb ->> 'status') || ' ' || (SELECT count(*) FROM jsonb_object_keys(:'b'::jsonb -> 'components'))")"
}
# the names of the metrics /metrics has (their values change)
metric_names() { grep '^# TYPE ' | sort; }
# what an OFREP bulk answer says of the flags, without its stream ticket
ofrep_flags() {
    curl -s --max-time 10 --cacert "$CA" -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d '{"context": {"targetingKey": "u1", "country": "DE"}}' "$1/ofrep/v1/evaluate/flags" |
        q -v b="$(cat)" -f - <<<"SELECT (:'b'::jsonb -> 'flags')::text" 2>/dev/null
}

echo "1..14"

# The certificate: self-signed, for 127.0.0.1, in the data directory (mode 600, the server's).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$WORKDIR/tls.key" -out "$CA" >/dev/null 2>&1
install -m 600 "$CA" "$DATA/opsflags_test_tls.crt"
install -m 600 "$WORKDIR/tls.key" "$DATA/opsflags_test_tls.key"
is_root && chown "$SERVER_USER:" "$DATA/opsflags_test_tls.crt" "$DATA/opsflags_test_tls.key"

# Over plain HTTP first, to compare.
q -c "SELECT count(opsflags.create_flag('tls.stream', 'TLS stream', NULL, 'boolean', '[true, false]'))" \
  -c "SELECT count(opsflags.update_flag('tls.stream', '{\"is_enabled\": true, \"on_variation\": 0, \"off_variation\": 1}', 'production'))" >/dev/null
KEY=$(q -c "SELECT opsflags.create_api_key('production', 'client', 'tls test')")
q -c "ALTER SYSTEM SET opsflags.http_port = $H" -c "ALTER SYSTEM SET opsflags.http_timeout = '2s'" >/dev/null
reload
wait_for 15 answers "$P/readyz" 200
plain_livez=$(curl -s "$P/livez")
plain_health=$(health "$P")
plain_metrics=$(curl -s "$P/metrics" | metric_names)
plain_ofrep=$(ofrep_flags "$P")
plain_page=$(curl -s "$P/" | sha256sum)

# 1. On with a reload: HTTPS, with the server's certificate
q -c "ALTER SYSTEM SET ssl_cert_file = 'opsflags_test_tls.crt'" -c "ALTER SYSTEM SET ssl_key_file = 'opsflags_test_tls.key'" \
  -c "ALTER SYSTEM SET opsflags.http_tls = on" >/dev/null
reload
wait_for 15 answers "$S/livez" 200
r=$?
wait_for 5 worker_says "listening on 127.0.0.1 port $H with TLS"
r2=$?
[[ $r == 0 && $r2 == 0 ]] && grep -q "opsflags http listening on \"127.0.0.1\" port $H with TLS" "$OPSFLAGS_TEST_LOG"
ok $? "a reload with opsflags.http_tls = on serves HTTPS with ssl_cert_file (curl verifies it against the test CA); the worker and the log say so"

# 2. The same answers as over plain HTTP
tls_livez=$(curl -s --cacert "$CA" "$S/livez")
tls_health=$(health "$S")
tls_metrics=$(curl -s --cacert "$CA" "$S/metrics" | metric_names)
tls_ofrep=$(ofrep_flags "$S")
[[ $tls_livez == ok && $tls_livez == "$plain_livez" && $tls_health == '200 healthy 4' && $tls_health == "$plain_health" &&
   -n $tls_metrics && $tls_metrics == "$plain_metrics" && $tls_ofrep == *tls.stream* && $tls_ofrep == "$plain_ofrep" ]]
ok $? "/livez, /health, /metrics (its metric names) and an OFREP bulk POST answer over HTTPS as over HTTP"

# 3. Keep-alive and pipelining over TLS
n=$(curl -s --cacert "$CA" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' "$S/livez" "$S/health" "$S/livez" | paste -sd' ')
r=$(tls_raw 'GET /livez HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n' | tr -d '\r')
[[ $n == "1 0 0" && $(grep -o 'HTTP/1.1 [0-9]*' <<<"$r" | paste -sd' ') == "HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 404" && $r == *'{"ready": true}'* ]]
ok $? "over TLS one connection serves several requests (connects: $n), pipelined ones in order"

# 4. A body in pieces and a large answer over TLS
big=$(head -c 30000 /dev/zero | tr '\0' a)
r=$(code -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
    -d "{\"context\": {\"targetingKey\": \"u1\", \"pad\": \"$big\"}}" "$S/ofrep/v1/evaluate/flags")
m=$(curl -s --cacert "$CA" "$S/" | wc -c)
[[ $r == 200 && $m -gt 20000 && $(curl -s --cacert "$CA" "$S/" | sha256sum) == "$plain_page" ]]
ok $? "a 30 kB chunked body is read over TLS (POST: $r), and the ${m}-byte status page (several TLS records) is sent as over HTTP"

# 5. OFREP's event stream over TLS
out=$(cd "$(dirname "${BASH_SOURCE[0]}")" && OPSFLAGS_HTTPS=$S NODE_EXTRA_CA_CERTS=$CA FLAG=tls.stream API_KEY=$KEY \
      PSQL=$PG_BIN/psql PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap \
      timeout 300 node tls_stream.js 2>&1)
r=$?
echo "# $out"
ok $r "OFREP's event stream over TLS: opened with the bulk answer's ticket, a change committed in SQL arrives, a client that does not read is dropped, the client's leaving is seen"

# 6. Plain HTTP to the HTTPS port: 400, closed; HTTPS still answers
r=$(curl -s -i --max-time 10 "$P/livez" | tr -d '\r')
[[ $r == "HTTP/1.1 400"* && $r == *"Connection: close"* && $r == *'this port speaks HTTPS' ]] && answers "$S/livez" 200
ok $? "a plain HTTP request to the HTTPS port is answered 400 \"this port speaks HTTPS\" and closed; /livez over TLS answers after it"

# 7. Garbage instead of a ClientHello: closed, nothing else
r=$(printf 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\n' | timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && cat >&3 && cat <&3' "$H" | head -c 100 | wc -c)
[[ $r -le 7 ]] && answers "$S/livez" 200    # at most a TLS alert
ok $? "bytes that are no TLS get the connection closed (at most an alert: $r bytes), and others are still served"

# 8-9. A client that opens TCP and never handshakes: others are served, it is cut after the timeout (2 s)
exec {silent}<>"/dev/tcp/127.0.0.1/$H"
start=$SECONDS
[[ $(code --max-time 2 "$S/livez") == 200 ]]
ok $? "while a client connects and never handshakes, others are answered over TLS at once"
r=$(timeout 10 cat <&"$silent" | wc -c)
took=$((SECONDS - start))
exec {silent}>&-
[[ $r == 0 && $took -ge 1 && $took -le 6 ]]
ok $? "the client that never handshakes is closed after opsflags.http_timeout (${took} s)"

# 10. A handshake, then half a request: 408 over TLS after the timeout
mkfifo "$WORKDIR/tls_slow.in"
timeout 15 openssl s_client -quiet -CAfile "$CA" -connect "127.0.0.1:$H" <"$WORKDIR/tls_slow.in" >"$WORKDIR/tls_slow.out" 2>/dev/null &
slow_pid=$!
exec {slow}>"$WORKDIR/tls_slow.in"
printf 'GET /livez HTTP/1.1\r\nHost: slow' >&"$slow"
start=$SECONDS
wait_for 10 grep -q 'request not received in time' "$WORKDIR/tls_slow.out"
took=$((SECONDS - start))
exec {slow}>&-
wait "$slow_pid" 2>/dev/null
r=$(tr -d '\r' <"$WORKDIR/tls_slow.out")
[[ $r == "HTTP/1.1 408"* && $took -ge 1 && $took -le 7 ]]
ok $? "a half-sent request over TLS is answered 408 after the timeout (${took} s)"

# 11. A reload with a certificate that does not load keeps the previous one
q -c "ALTER SYSTEM SET ssl_cert_file = 'opsflags_test_missing.crt'" >/dev/null
reload
wait_for 10 grep -q 'opsflags http keeps its previous TLS certificate' "$OPSFLAGS_TEST_LOG"
r=$?
[[ $r == 0 ]] && answers "$S/livez" 200 && grep -q 'could not load the TLS certificate "opsflags_test_missing.crt": No such file or directory' "$OPSFLAGS_TEST_LOG"
ok $? "a reload with a missing certificate says so (No such file or directory) and keeps serving HTTPS with the previous one"

# 12. Off: plain HTTP (the certificate still missing)
q -c "ALTER SYSTEM SET opsflags.http_tls = off" >/dev/null
reload
wait_for 15 answers "$P/livez" 200
r=$?
[[ $r == 0 && $(code "$S/livez") == 000 ]] && worker_says "listening on 127.0.0.1 port $H"
ok $? "turning opsflags.http_tls off serves plain HTTP, and HTTPS no more"

# 13. On without a loadable certificate: nothing served, not even plain HTTP
q -c "ALTER SYSTEM SET opsflags.http_tls = on" >/dev/null
reload
wait_for 15 worker_says "cannot listen on 127.0.0.1 port $H (TLS certificate)"
r=$?
[[ $r == 0 && $(code "$P/livez") == 000 && $(code "$S/livez") == 000 ]] &&
    grep -q "opsflags http does not listen on \"127.0.0.1\" port $H: opsflags.http_tls is on and the certificate did not load" "$OPSFLAGS_TEST_LOG"
ok $? "opsflags.http_tls on without a loadable certificate: a WARNING, and nothing listens (no plain HTTP instead)"

# 14. The certificate back, and a reload: HTTPS again; then off: plain HTTP again
q -c "ALTER SYSTEM SET ssl_cert_file = 'opsflags_test_tls.crt'" >/dev/null
reload
wait_for 15 answers "$S/livez" 200
r=$?
q -c "ALTER SYSTEM SET opsflags.http_tls = off" >/dev/null
reload
wait_for 15 answers "$P/livez" 200
r2=$?
[[ $r == 0 && $r2 == 0 ]]
ok $? "with the certificate back a reload serves HTTPS again, and turning it off plain HTTP"

tap_done
