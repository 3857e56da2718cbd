#!/usr/bin/env bash
# bench/run.sh (`make bench`): flag evaluation benchmark on a throwaway
# cluster.  Prints ratios against baselines measured in the same run:
#   1. bench/flags.sql: feature_enabled vs a PL/pgSQL equivalent vs hashtext()
#      over 1,000,000 rows; 10 vs 10,000 flags; 10 vs 100,000 targeted users.
#   1b. bench/rules.sql: targeting rules (10 rules x 3 clauses vs a plain
#      flag, `in` with 10,000 vs 10 values, `matches`, evaluate_all per flag),
#      then bench/unleash.js: the same features in the unleash-client SDK
#      (Node, in-process) vs feature_enabled in SQL.
#   1c. bench/launchdarkly.sql: a 50/50 split bucketed as LaunchDarkly (sha1)
#      vs as Unleash (murmur3); then bench/launchdarkly.js: a 5-rule
#      LaunchDarkly flag imported with import_launchdarkly_data, in
#      @launchdarkly/node-server-sdk (Node, in-process) vs feature_value in SQL.
#   2. pgbench: TPS of SELECT opsflags.feature_enabled(...) vs SELECT 1,
#      interleaved rounds, median of each.
#   3. bench/config_audit.sql: config_get vs a plain SELECT; a 100,000-row
#      INSERT with no trigger vs the C audit trigger vs a PL/pgSQL one.
#   4. bench/health.sql: health_status() latency with memcached up,
#      check_system_health() and one sample on a database with 1,000 tables.
#   5. The sampler's CPU share at a 1 s interval over BENCH_WORKER_SECONDS
#      (default 60), from /proc.
#   6. bench/http.sh: the HTTP worker under wrk (/livez, /health, /metrics),
#      and pgbench with and without /health load (its own cluster).
#   7. bench/flip.sh: the first evaluation of 10,000 flags after another
#      session flips one, vs with no flip (its own cluster).
#   8. bench/clients.sh: the client endpoints (OFREP bulk of 100 flags and
#      single) under wrk, a new context per request (its own cluster).
#   9. bench/console.sh: the management API's flag list and search at 1,000
#      flags, in SQL and over HTTP (its own cluster).
#   BENCH_SECONDS  length of one pgbench run (default 8)
#   BENCH_ROUNDS   pgbench rounds per variant (default 3)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
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

ensure_packages curl wrk
build_install

TMP=$(mktemp -d /tmp/opsflags-bench.XXXXXX)
DATADIR=$TMP/data
PORT=$(free_port 55000)
MC_PORT=$(free_port $((PORT + 1)))
MC_PIDFILE=$TMP/memcached.pid
start_memcached "$MC_PORT" "$MC_PIDFILE"
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'" "opsflags.sample_interval = 0"
pg_psql "$TMP" "$PORT" postgres -q -c "CREATE EXTENSION opsflags"

echo
echo "== machine: $(nproc) cores, $(uname -r), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
pg_psql "$TMP" "$PORT" postgres -q -f "$REPO/bench/flags.sql" 2>&1 \
    | grep -vE '^ *$|^ (created|measure|update_flag) *$|^-+$|^ t *$|^ *$'

echo
pg_psql "$TMP" "$PORT" postgres -q -f "$REPO/bench/rules.sql" 2>&1 \
    | grep -vE '^ *$|^ (created|measure) *(\| created *)*$|^[-+]+$|^ t *(\| t *)*$|^ +[0-9]+ *$'

echo
pg_psql "$TMP" "$PORT" postgres -q -f "$REPO/bench/launchdarkly.sql" 2>&1 \
    | grep -vE '^ *$|^ (created|measure) *(\| created *)*$|^[-+]+$|^ t *(\| t *)*$|^ +[0-9]+ *$'

echo
ensure_node_modules
PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres node "$REPO/bench/unleash.js"
echo
PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres node "$REPO/bench/launchdarkly.js"

echo
echo "== 4. pgbench, 2 clients, -M prepared, ${SECONDS_PER_RUN}s runs, median of $ROUNDS interleaved rounds"
pg_psql "$TMP" "$PORT" postgres -q -c "DELETE FROM opsflags.feature_flags WHERE flag_key = 'bench.flag'" \
    -c "SELECT opsflags.create_flag('bench.flag', 'Benchmark flag') IS NOT NULL" \
    -c "SELECT opsflags.update_flag('bench.flag', '{\"is_enabled\": true, \"enabled_percentage\": 50, \"enabled_for_roles\": [\"admin\"]}')" >/dev/null
printf '%s\n' '\set uid random(1, 1000000)' \
    "SELECT opsflags.feature_enabled('bench.flag', 'user-' || :uid, 'member');" >"$TMP/flag.sql"
printf '%s\n' '\set uid random(1, 1000000)' "SELECT 1, 'user-' || :uid;" >"$TMP/select1.sql"
chmod a+r "$TMP"/*.sql

tps() {
    "$PG_BIN/pgbench" -n -h "$TMP" -p "$PORT" -U postgres -c 2 -j 2 -M prepared \
        -T "$SECONDS_PER_RUN" -f "$1" postgres 2>/dev/null \
        | awk '/^tps = / {print $3}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$TMP/tps_select1"
: >"$TMP/tps_flag"
for ((r = 1; r <= ROUNDS; r++)); do
    tps "$TMP/select1.sql" >>"$TMP/tps_select1"
    tps "$TMP/flag.sql" >>"$TMP/tps_flag"
done
s1=$(median <"$TMP/tps_select1")
fl=$(median <"$TMP/tps_flag")
printf ' SELECT 1 (same parameter):   %10.0f tps  (runs: %s)\n' "$s1" "$(tr '\n' ' ' <"$TMP/tps_select1")"
printf ' SELECT feature_enabled(...): %10.0f tps  (runs: %s)\n' "$fl" "$(tr '\n' ' ' <"$TMP/tps_flag")"
awk -v a="$fl" -v b="$s1" 'BEGIN {printf " feature_enabled / SELECT 1: %.1f%% (target >= 95%%)\n", 100 * a / b}'

echo
pg_psql "$TMP" "$PORT" postgres -q -f "$REPO/bench/config_audit.sql" 2>&1 \
    | grep -vE '^ *$|^ (set|measure|audit_table|unaudit_table|purged|config_delete) *\|?|^-+$|^ [tf] *(\| [tf] *)?$'

echo
pg_psql "$TMP" "$PORT" postgres -q -f "$REPO/bench/health.sql" 2>&1 | grep -vE '^ *$|^-+$'

echo
WORKER_SECONDS=${BENCH_WORKER_SECONDS:-60}
echo "== 8. the sampler's CPU at a 1 s interval over ${WORKER_SECONDS} s (database with 1,000 tables)"
pg_psql "$TMP" "$PORT" postgres -q -c "CREATE SCHEMA bench_cpu" \
    -c "DO \$\$ BEGIN FOR i IN 1 .. 1000 LOOP EXECUTE format('CREATE TABLE bench_cpu.t%s (id int PRIMARY KEY)', i); END LOOP; END \$\$" \
    -c "ALTER SYSTEM SET opsflags.sample_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
    wpid=$(pg_psql "$TMP" "$PORT" postgres -Atq -c "SELECT opsflags.worker_status() ->> 'pid'")
    [[ -n $wpid ]] && break
    sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
s0=$(pg_psql "$TMP" "$PORT" postgres -Atq -c "SELECT opsflags.worker_status() ->> 'samples'")
t0=$(ticks "$wpid")
sleep "$WORKER_SECONDS"
t1=$(ticks "$wpid")
s1=$(pg_psql "$TMP" "$PORT" postgres -Atq -c "SELECT opsflags.worker_status() ->> 'samples'")
awk -v t0="$t0" -v t1="$t1" -v hz="$hz" -v secs="$WORKER_SECONDS" -v n=$((s1 - s0)) 'BEGIN {
    cpu = (t1 - t0) / hz
    printf " %d samples, %.2f s of CPU in %d s: %.2f%% of one core, %.1f ms per sample\n", n, cpu, secs, 100 * cpu / secs, n ? 1000 * cpu / n : 0 }'
pg_psql "$TMP" "$PORT" postgres -q -c "SET client_min_messages = warning" -c "ALTER SYSTEM SET opsflags.sample_interval = 0" -c "SELECT pg_reload_conf()" \
    -c "DROP SCHEMA bench_cpu CASCADE" >/dev/null

echo
OPSFLAGS_BENCH_BUILT=1 bash "$REPO/bench/http.sh"

echo
OPSFLAGS_BENCH_BUILT=1 bash "$REPO/bench/flip.sh"

echo
OPSFLAGS_BENCH_BUILT=1 bash "$REPO/bench/clients.sh"

echo
OPSFLAGS_BENCH_BUILT=1 bash "$REPO/bench/console.sh"
