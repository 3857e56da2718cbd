#!/usr/bin/env bash
# run.sh (`make run`): install what is missing, build and install opsflags,
# then (re)start a persistent local PostgreSQL cluster (data in .pgdata/)
# and a memcached, create the extension, load scripts/seed.sql, run
# scripts/demo.sql, and print how to connect. Safe to run again: it rebuilds,
# reinstalls and restarts so the new shared library is loaded.
#   OPSFLAGS_PORT            PostgreSQL port (default 5499)
#   OPSFLAGS_MEMCACHED_PORT  memcached port (default 11299)
#   OPSFLAGS_HTTP_PORT       port of the HTTP server: /health, /metrics, the
#                            status page (default 8499; 0 turns it off)
#   OPSFLAGS_RESET=1         throw away .pgdata and start from an empty cluster
#   OPSFLAGS_DATADIR         the cluster's directory (default .pgdata)
#   OPSFLAGS_RUNDIR          socket directory, logs, memcached's pid file (default .run)
# A port that another program holds is refused before the running servers are
# stopped; if a later step fails, it stops what it started: nothing is left
# half-started.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${OPSFLAGS_PORT:-5499}
MC_PORT=${OPSFLAGS_MEMCACHED_PORT:-11299}
HTTP_PORT=${OPSFLAGS_HTTP_PORT:-8499}
DATADIR=$(realpath -m -- "${OPSFLAGS_DATADIR:-$REPO/.pgdata}")
RUNDIR=$(realpath -m -- "${OPSFLAGS_RUNDIR:-$REPO/.run}")
LOGFILE=$RUNDIR/postgres.log
MC_PIDFILE=$RUNDIR/memcached.pid

STARTED=0
stop_on_failure() {
    local rc=$?
    if ((rc != 0 && STARTED)); then
        set +e
        log "make run failed: stopping what it started"
        stop_cluster "$DATADIR"
        stop_memcached "$MC_PIDFILE"
    fi
    exit "$rc"
}
trap stop_on_failure EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_packages curl
build_install

# check_ports TEST: die naming the first port for which TEST PORT [PID...] is true.
check_ports() {
    local test=$1
    shift
    if "$test" "$PORT" "$@"; then
        die "port $PORT on 127.0.0.1 is used by something else; pick another with OPSFLAGS_PORT=..."
    fi
    if [[ $HTTP_PORT != 0 ]] && "$test" "$HTTP_PORT" "$@"; then
        die "port $HTTP_PORT on 127.0.0.1 is used by something else; pick another with OPSFLAGS_HTTP_PORT=... (0: no HTTP server)"
    fi
    if "$test" "$MC_PORT" "$@"; then
        die "port $MC_PORT on 127.0.0.1 is used by something else; pick another with OPSFLAGS_MEMCACHED_PORT=..."
    fi
}

# A port held by another program: refuse before stopping the previous run's
# servers (which may hold the ports themselves), so that they keep running.
ours=()
if [[ -f $DATADIR/postmaster.pid ]]; then
    ours+=("$(head -n 1 "$DATADIR/postmaster.pid")")
fi
if pid=$(memcached_pid "$MC_PIDFILE"); then
    ours+=("$pid")
fi
check_ports port_used_by_others "${ours[@]}"

# Restart everything so that the freshly installed library is the one loaded.
stop_cluster "$DATADIR"
stop_memcached "$MC_PIDFILE"
if [[ ${OPSFLAGS_RESET:-} == 1 && -d $DATADIR ]]; then
    log "OPSFLAGS_RESET=1: removing $DATADIR"
    rm -rf -- "$DATADIR"
fi
check_ports port_in_use

STARTED=1
start_memcached "$MC_PORT" "$MC_PIDFILE"
start_cluster "$DATADIR" "$PORT" "$RUNDIR" "$LOGFILE" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'" "opsflags.http_port = $HTTP_PORT"

psql_db() { pg_psql "$RUNDIR" "$PORT" postgres "$@"; }

log "CREATE EXTENSION IF NOT EXISTS $EXT_NAME (database postgres)"
psql_db -q -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION IF NOT EXISTS $EXT_NAME"

if [[ -f $REPO/scripts/seed.sql ]]; then
    log "loading scripts/seed.sql"
    psql_db -q -f "$REPO/scripts/seed.sql"
else
    log "note: scripts/seed.sql does not exist yet; no seed data loaded"
fi

if [[ -f $REPO/scripts/demo.sql ]]; then
    log "running scripts/demo.sql"
    psql_db -f "$REPO/scripts/demo.sql"
else
    log "note: scripts/demo.sql does not exist yet; no demo shown"
fi

http_line="HTTP server off (OPSFLAGS_HTTP_PORT=0)."
if [[ $HTTP_PORT != 0 ]]; then
    for _ in $(seq 1 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/health") == 200 ]] && break
        sleep 0.1
    done
    log "curl http://127.0.0.1:$HTTP_PORT/health"
    curl -s "http://127.0.0.1:$HTTP_PORT/health" || true
    echo
    http_line="Status page: http://127.0.0.1:$HTTP_PORT/  (also /health, /readyz, /livez, /metrics, /flags/production)."
fi

cat <<EOF

opsflags is running: PostgreSQL $PG_MAJOR on port $PORT (log: $LOGFILE),
memcached on 127.0.0.1:$MC_PORT.
$http_line

Connect with:
  $PG_BIN/psql -h $(printf '%q' "$RUNDIR") -p $PORT -U postgres postgres

Stop with:
  make stop
EOF
