#!/usr/bin/env bash
# bench/streams.sh: bench/streams.js on a throwaway cluster: 1,000 (or
# BENCH_STREAMS) OFREP event streams held by the "opsflags http" worker, a
# flag toggled in SQL, and the time from COMMIT to the last stream notified;
# then as many LaunchDarkly streams, each for its own context.
# The cluster gets max_files_per_process = 4000 (streams count against
# fd.c's budget for external descriptors, a third of it).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

TMP=''
DATADIR=''
cleanup() {
    set +e
    [[ -n $DATADIR ]] && stop_cluster "$DATADIR"
    [[ -n $TMP ]] && rm -rf -- "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${OPSFLAGS_BENCH_BUILT:-} != 1 ]]; then
    build_install
fi
ensure_node_modules
ulimit -n 8192 2>/dev/null || true

TMP=$(mktemp -d /tmp/opsflags-bench-streams.XXXXXX)
is_root && chown "$SERVER_USER:" "$TMP"
DATADIR=$TMP/data
PORT=$(free_port 56100)
HTTP_PORT=$(free_port $((PORT + 1)))
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.sample_interval = 0" "opsflags.database = 'postgres'" \
    "opsflags.http_port = $HTTP_PORT" "max_files_per_process = 4000" >/dev/null
# again with a soft limit on descriptors that allows them (runuser resets it)
stop_cluster "$DATADIR" >/dev/null
as_pg bash -c 'ulimit -S -n "$(ulimit -H -n)" && exec "$0" -D "$1" -l "$2" -w -t 60 start' \
    "$PG_BIN/pg_ctl" "$DATADIR" "$TMP/postgres.log" >/dev/null
pg_psql "$TMP" "$PORT" postgres -Atq -c "CREATE EXTENSION opsflags" >/dev/null
URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz") == 200 ]] && break
    sleep 0.1
done
pg_psql "$TMP" "$PORT" postgres -Atq -c "SHOW max_files_per_process" | sed "s/^/# max_files_per_process: /"
grep "Max open files" "/proc/$(head -1 "$DATADIR/postmaster.pid")/limits" | sed "s/^/# postmaster: /" || true
echo "== OFREP event streams: ${BENCH_STREAMS:-1000} held, a flag toggled in SQL, COMMIT -> last stream notified"
cd "$REPO/test"
PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres OPSFLAGS_HTTP=$URL NODE_PATH="$REPO/test/node_modules" \
    node "$REPO/bench/streams.js"
echo "== LaunchDarkly streams (/eval): ${BENCH_STREAMS:-1000} held, each for its own context, a flag toggled in SQL, COMMIT -> last stream patched"
PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres OPSFLAGS_HTTP=$URL NODE_PATH="$REPO/test/node_modules" \
    BENCH_STREAMS_KIND=launchdarkly node "$REPO/bench/streams.js"
