#!/usr/bin/env bash
# bench/clients.sh: the client endpoints of the "opsflags http" worker under
# wrk on loopback, on a throwaway cluster with 100 flags (each with two
# rules, one a country list, one a 10% rollout, and a 3-way split
# fallthrough on a third of them).  OFREP bulk (every flag for one context
# per request) and OFREP single (one flag), a different context each
# request (bench/ofrep.lua): requests per second, p50 and p99.
#   BENCH_HTTP_SECONDS  length of each wrk run (default 10)
#   BENCH_HTTP_CLIENTS  wrk connections (default 8)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SECS=${BENCH_HTTP_SECONDS:-10}
CLIENTS=${BENCH_HTTP_CLIENTS:-8}
TMP=''
DATADIR=''
MC_PIDFILE=''

cleanup() {
    set +e
    [[ -n $DATADIR ]] && stop_cluster "$DATADIR"
    [[ -n $MC_PIDFILE ]] && stop_memcached "$MC_PIDFILE"
    [[ -n $TMP ]] && rm -rf -- "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${OPSFLAGS_BENCH_BUILT:-} != 1 ]]; then
    ensure_packages curl wrk
    build_install
fi

TMP=$(mktemp -d /tmp/opsflags-bench-clients.XXXXXX)
is_root && chown "$SERVER_USER:" "$TMP"
DATADIR=$TMP/data
PORT=$(free_port 56100)
MC_PORT=$(free_port $((PORT + 1)))
HTTP_PORT=$(free_port $((MC_PORT + 1)))
MC_PIDFILE=$TMP/memcached.pid
start_memcached "$MC_PORT" "$MC_PIDFILE"
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'" "opsflags.sample_interval = 0" \
    "opsflags.database = 'postgres'" "opsflags.http_port = $HTTP_PORT" >/dev/null
q() { pg_psql "$TMP" "$PORT" postgres -Atq "$@"; }
q -c "CREATE EXTENSION opsflags" \
  -c "SELECT count(opsflags.create_flag('bench.c.' || i, 'Bench ' || i, NULL, 'string', '[\"a\", \"b\", \"c\"]')) FROM generate_series(1, 100) i" \
  -c "SELECT count(opsflags.update_flag('bench.c.' || i, jsonb_build_object('is_enabled', true,
        'rules', jsonb_build_array(
          jsonb_build_object('id', 'de', 'clauses', jsonb_build_array(jsonb_build_object('attribute', 'country', 'op', 'in', 'values', jsonb_build_array('DE', 'AT', 'CH'))), 'serve', jsonb_build_object('variation', 1)),
          jsonb_build_object('id', 'pro', 'clauses', jsonb_build_array(jsonb_build_object('attribute', 'plan', 'op', 'in', 'values', jsonb_build_array('pro'))), 'rollout', jsonb_build_object('percentage', 10), 'serve', jsonb_build_object('variation', 2))),
        'fallthrough', CASE WHEN i % 3 = 0 THEN jsonb_build_object('split', jsonb_build_array(jsonb_build_object('variation', 0, 'weight', 50), jsonb_build_object('variation', 1, 'weight', 30), jsonb_build_object('variation', 2, 'weight', 20))) ELSE jsonb_build_object('variation', 0) END))) FROM generate_series(1, 100) i" >/dev/null
URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz") == 200 ]] && break
    sleep 0.1
done
n=$(curl -s -X POST -d '{"context": {"targetingKey": "u1"}}' "$URL/ofrep/v1/evaluate/flags" | grep -o '"key"' | wc -l)

echo "== 11. client endpoints under wrk: 1 thread, $CLIENTS connections, ${SECS} s each, a new context per request, loopback"
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
run() {
    local label=$1 path=$2 out rps p50 p99 errs
    out=$(wrk -t1 -c"$CLIENTS" -d"${SECS}s" --latency -s "$REPO/bench/ofrep.lua" "$URL$path")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr -s ' ' | paste -sd';')
    printf ' %-34s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms%s\n' "$label" "$rps" "$p50" "$p99" "${errs:+   ($errs)}"
}
run "OFREP bulk ($n flags per answer)" /ofrep/v1/evaluate/flags
run "OFREP single flag" /ofrep/v1/evaluate/flags/bench.c.7
