#!/usr/bin/env bash
# bench/http.sh: the "opsflags http" worker under wrk on loopback, on a
# throwaway cluster (also run as section 9 of `make bench`).  For /livez,
# /health and /metrics: requests per second and p99 latency of a 10 s wrk
# run (targets: >= 2,000 req/s for /livez, >= 500 req/s for /health, p99 <
# 50 ms).  Then HTTPS beside HTTP (opsflags.http_tls, a self-signed
# certificate made here): /livez and the OFREP bulk evaluation
# (bench/ofrep.lua) kept alive, and /livez on a new connection per request
# (a handshake each), over HTTP and HTTPS in interleaved rounds, medians
# and their ratio.  Then the database's own throughput (pgbench -S, 2
# clients) alone and while wrk hammers /health, interleaved, median of each,
# as a ratio.
#   BENCH_HTTP_SECONDS  length of each wrk and pgbench run (default 10)
#   BENCH_HTTP_ROUNDS   HTTP/HTTPS rounds, and pgbench rounds per variant (default 3)
#   BENCH_HTTP_CLIENTS  wrk connections (default 8)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SECS=${BENCH_HTTP_SECONDS:-10}
ROUNDS=${BENCH_HTTP_ROUNDS:-3}
CLIENTS=${BENCH_HTTP_CLIENTS:-8}
TMP=''
DATADIR=''
MC_PIDFILE=''
WRK_PID=''

cleanup() {
    set +e
    [[ -n $WRK_PID ]] && kill "$WRK_PID" 2>/dev/null && wait "$WRK_PID" 2>/dev/null
    [[ -n $DATADIR ]] && stop_cluster "$DATADIR"
    [[ -n $MC_PIDFILE ]] && stop_memcached "$MC_PIDFILE"
    [[ -n $TMP ]] && rm -rf -- "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${OPSFLAGS_BENCH_BUILT:-} != 1 ]]; then
    ensure_packages curl wrk
    build_install
fi

TMP=$(mktemp -d /tmp/opsflags-bench-http.XXXXXX)
is_root && chown "$SERVER_USER:" "$TMP"
DATADIR=$TMP/data
PORT=$(free_port 56000)
MC_PORT=$(free_port $((PORT + 1)))
HTTP_PORT=$(free_port $((MC_PORT + 1)))
MC_PIDFILE=$TMP/memcached.pid
start_memcached "$MC_PORT" "$MC_PIDFILE"
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'" "opsflags.sample_interval = 0" \
    "opsflags.database = 'postgres'" "opsflags.http_port = $HTTP_PORT" >/dev/null
q() { pg_psql "$TMP" "$PORT" postgres -Atq "$@"; }
q -c "CREATE EXTENSION opsflags" \
  -c "SELECT count(opsflags.create_flag('bench.http.' || i, 'Bench ' || i)) FROM generate_series(1, 50) i" \
  -c "SELECT count(opsflags.feature_enabled('bench.http.' || (i % 50 + 1), 'u' || i)) FROM generate_series(1, 10000) i" \
  -c "SELECT count(opsflags.take_sample('bench')) FROM generate_series(1, 5)" >/dev/null
"$PG_BIN/pgbench" -i -q -s 10 -h "$TMP" -p "$PORT" -U postgres postgres >/dev/null 2>&1
URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/health") == 200 ]] && break
    sleep 0.1
done

echo "== 9. HTTP (opsflags http worker) under wrk: 1 thread, $CLIENTS connections, ${SECS} s per endpoint, loopback"
# to_ms VALUE: wrk's "1.23ms" / "456.00us" / "1.02s" in ms
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
for path in /livez /health /metrics; do
    out=$(wrk -t1 -c"$CLIENTS" -d"${SECS}s" --latency "$URL$path")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr -s ' ' | paste -sd';')
    printf ' %-9s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms%s\n' "$path" "$rps" "$p50" "$p99" "${errs:+   ($errs)}"
done
echo " (targets: /livez >= 2,000 req/s, /health >= 500 req/s, p99 < 50 ms)"

echo
echo "== 9b. HTTPS beside HTTP (opsflags.http_tls): wrk, 1 thread, $CLIENTS connections, ${SECS} s per run, $ROUNDS rounds, loopback"
# the certificate: self-signed, in the data directory, the server's
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext 'subjectAltName=IP:127.0.0.1' \
    -keyout "$DATADIR/bench_tls.key" -out "$DATADIR/bench_tls.crt" >/dev/null 2>&1
chmod 600 "$DATADIR/bench_tls.key" "$DATADIR/bench_tls.crt"
is_root && chown "$SERVER_USER:" "$DATADIR/bench_tls.key" "$DATADIR/bench_tls.crt"
q -c "ALTER SYSTEM SET ssl_cert_file = 'bench_tls.crt'" -c "ALTER SYSTEM SET ssl_key_file = 'bench_tls.key'" >/dev/null
# tls on|off: switch and wait for the server to answer so
tls() {
    local url=$URL
    [[ $1 == on ]] && url=https://127.0.0.1:$HTTP_PORT
    q -c "ALTER SYSTEM SET opsflags.http_tls = $1" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 1 100); do
        [[ $(curl -sk -o /dev/null -w '%{http_code}' "$url/readyz") == 200 ]] && return 0
        sleep 0.1
    done
    echo "the server did not answer with opsflags.http_tls = $1" >&2
    return 1
}
# measure URL [wrk args]: "req/s p50 p99 errors" of one wrk run
measure() {
    local url=$1 out errs
    shift
    out=$(wrk -t1 -c"$CLIENTS" -d"${SECS}s" --latency "$@" "$url")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr -s ' ' | paste -sd';')
    printf '%s %s %s %s' "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" \
        "$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")" "$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")" "${errs:+($errs)}"
}
# median of the numbers on stdin
med() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
S=https://127.0.0.1:$HTTP_PORT
: >"$TMP/tls_runs"
# rounds interleaved (HTTP, then HTTPS), so that neither has the warmer machine
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in off on; do
        base=$URL
        [[ $mode == on ]] && base=$S
        tls "$mode"
        echo "$mode livez $(measure "$base/livez")" >>"$TMP/tls_runs"
        echo "$mode ofrep $(measure "$base/ofrep/v1/evaluate/flags" -s "$REPO/bench/ofrep.lua")" >>"$TMP/tls_runs"
        echo "$mode close $(measure "$base/livez" -H 'Connection: close')" >>"$TMP/tls_runs"
    done
done
tls off
for k in livez ofrep close; do
    case $k in
        livez) label='/livez (keep-alive)' ;;
        ofrep) label='OFREP bulk POST (keep-alive, 50 flags)' ;;
        close) label='/livez (a connection per request)' ;;
    esac
    prps=$(awk -v k=$k '$1 == "off" && $2 == k {print $3}' "$TMP/tls_runs" | med)
    pp99=$(awk -v k=$k '$1 == "off" && $2 == k {print $5}' "$TMP/tls_runs" | med)
    srps=$(awk -v k=$k '$1 == "on" && $2 == k {print $3}' "$TMP/tls_runs" | med)
    sp99=$(awk -v k=$k '$1 == "on" && $2 == k {print $5}' "$TMP/tls_runs" | med)
    errs=$(awk -v k=$k '$2 == k && NF > 5' "$TMP/tls_runs" | wc -l)
    printf ' %-40s HTTP %7.0f req/s p99 %6.2f ms | HTTPS %7.0f req/s p99 %6.2f ms | HTTPS/HTTP %5.1f%%%s\n' \
        "$label" "$prps" "$pp99" "$srps" "$sp99" "$(awk -v s="$srps" -v p="$prps" 'BEGIN {printf "%.1f", 100 * s / p}')" \
        "$( ((errs > 0)) && echo "   ($errs runs with errors: see $TMP/tls_runs)")"
done
echo " (medians of $ROUNDS interleaved rounds; HTTPS: TLS 1.3, RSA 2048 self-signed certificate, OpenSSL $(openssl version | awk '{print $2}'))"

echo
echo "== 10. the database's throughput with and without /health load: pgbench -S, 2 clients, ${SECS} s, median of $ROUNDS interleaved rounds"
tps() {
    "$PG_BIN/pgbench" -n -S -h "$TMP" -p "$PORT" -U postgres -c 2 -j 2 -M prepared -T "$SECS" postgres 2>/dev/null \
        | awk '/^tps = / {print $3}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
: >"$TMP/alone"
: >"$TMP/loaded"
: >"$TMP/wrk_rps"
for ((r = 1; r <= ROUNDS; r++)); do
    tps >>"$TMP/alone"
    wrk -t1 -c"$CLIENTS" -d"$((SECS + 2))s" "$URL/health" >"$TMP/wrk.out" 2>&1 &
    WRK_PID=$!
    tps >>"$TMP/loaded"
    wait "$WRK_PID"
    WRK_PID=''
    awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.out" >>"$TMP/wrk_rps"
done
a=$(median <"$TMP/alone")
l=$(median <"$TMP/loaded")
printf ' pgbench -S alone:            %8.0f tps  (runs: %s)\n' "$a" "$(tr '\n' ' ' <"$TMP/alone")"
printf ' pgbench -S with /health load: %7.0f tps  (runs: %s; /health served %s req/s)\n' "$l" \
    "$(tr '\n' ' ' <"$TMP/loaded")" "$(median <"$TMP/wrk_rps")"
awk -v a="$a" -v l="$l" 'BEGIN {printf " with load / alone: %.1f%% (2 cores shared by pgbench, its backends, wrk and the worker)\n", 100 * l / a}'
