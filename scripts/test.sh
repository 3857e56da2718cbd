#!/usr/bin/env bash
# test.sh (`make test`): install what is missing, build (warnings are errors)
# and install opsflags, start a throwaway PostgreSQL 15 cluster and memcached
# on free ports, run the pg_regress suite (make installcheck) and the pgTAP
# tests (test/*.sql via pg_prove), stop everything again, and end with the line
#   opsflags: N passed, N failed
# Exits non-zero if anything failed. The tests see these environment variables:
#   OPSFLAGS_TEST_MEMCACHED  host:port of the throwaway memcached
#   OPSFLAGS_TEST_LOG        path of the throwaway server's log file
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PASSED=0
FAILED=0
TMP=''
DATADIR=''
LOGFILE=''
MC_PIDFILE=''

# On any exit: stop what we started, keep the server log, remove the temp dir,
# and print the summary as the very last line.
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $DATADIR ]]; then
        stop_cluster "$DATADIR"
    fi
    if [[ -n $MC_PIDFILE ]]; then
        stop_memcached "$MC_PIDFILE"
    fi
    if ((rc != 0 && FAILED == 0)); then
        FAILED=1   # the harness itself failed before the tests could say so
    fi
    if [[ -n $LOGFILE && -f $LOGFILE ]]; then
        mkdir -p "$REPO/.run"
        cp "$LOGFILE" "$REPO/.run/test-postgres.log"
        if ((FAILED > 0)); then
            echo "---- last 50 lines of the server log (all of it: .run/test-postgres.log) ----"
            tail -n 50 "$LOGFILE"
            echo "---- end of server log ----"
        fi
    fi
    if [[ -n $TMP ]]; then
        rm -rf -- "$TMP"
    fi
    echo "opsflags: $PASSED passed, $FAILED failed"
    if ((FAILED > 0 && rc == 0)); then
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_packages
build_install
ensure_server_user

# Throwaway cluster + memcached, everything under one temp dir.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/opsflags-test.XXXXXX")
if is_root; then
    chown "$SERVER_USER:" "$TMP"
fi
DATADIR=$TMP/data
SOCKDIR=$TMP/sock
LOGFILE=$TMP/postgres.log
MC_PIDFILE=$TMP/memcached.pid
PORT=$(free_port)
MC_PORT=$(free_port $((PORT + 1)))

start_memcached "$MC_PORT" "$MC_PIDFILE"
start_cluster "$DATADIR" "$PORT" "$SOCKDIR" "$LOGFILE" \
    "fsync = off" "wal_level = logical" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'"

export OPSFLAGS_TEST_MEMCACHED=127.0.0.1:$MC_PORT
export OPSFLAGS_TEST_LOG=$LOGFILE
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres
unset PGDATABASE PGSERVICE PGPASSWORD

# a. pg_regress (make installcheck) ---------------------------------------
log "pg_regress: make installcheck"
REGRESS_OUT=$TMP/pg_regress.out
set +e
make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG_BIN" \
    PGHOST="$SOCKDIR" PGPORT="$PORT" PGUSER=postgres 2>&1 | tee "$REGRESS_OUT"
regress_rc=${PIPESTATUS[0]}
set -e
# pg_regress 15 prints "test NAME ... ok   12 ms" (or "     NAME ... ok" in a
# parallel group), "... FAILED", "... failed (ignored)".
regress_ok=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +(ok|failed \(ignored\))( |$)' "$REGRESS_OUT" || true)
regress_bad=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED' "$REGRESS_OUT" || true)
if ((regress_rc != 0 && regress_bad == 0)); then
    echo "pg_regress failed without a per-test result (see above); counting it as one failure"
    regress_bad=1
fi
if ((regress_rc != 0)) && [[ -f $REPO/regression.diffs ]]; then
    echo "---- regression.diffs (first 200 lines) ----"
    head -n 200 "$REPO/regression.diffs"
    echo "---- end of regression.diffs ----"
fi
echo "pg_regress: $regress_ok passed, $regress_bad failed"
PASSED=$((PASSED + regress_ok))
FAILED=$((FAILED + regress_bad))

# b. pgTAP (pg_prove test/*.sql) ------------------------------------------
shopt -s nullglob
tap_files=("$REPO"/test/*.sql)
shopt -u nullglob
if ((${#tap_files[@]} == 0)); then
    echo "pgTAP: no test/*.sql files yet; nothing to run"
else
    tap_files=("${tap_files[@]#"$REPO"/}")
    log "pgTAP: pg_prove ${tap_files[*]}"
    TAP_OUT=$TMP/pg_prove.out
    if pg_psql "$SOCKDIR" "$PORT" postgres -q -c "CREATE DATABASE opsflags_tap" &&
        pg_psql "$SOCKDIR" "$PORT" opsflags_tap -q \
            -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION dblink" \
            -c "CREATE EXTENSION $EXT_NAME"; then
        set +e
        (cd "$REPO" && pg_prove --psql-bin "$PG_BIN/psql" -h "$SOCKDIR" -p "$PORT" \
            -U postgres -d opsflags_tap "${tap_files[@]}") 2>&1 | tee "$TAP_OUT"
        tap_rc=${PIPESTATUS[0]}
        set -e
        # The "Test Summary Report" lists each failing file as "FILE (Wstat: ...".
        tap_bad=$({ grep -E '^[^ ].*\.sql +\(Wstat:' "$TAP_OUT" || true; } | awk '{print $1}' | sort -u | wc -l)
        if ((tap_rc != 0 && tap_bad == 0)); then
            tap_bad=${#tap_files[@]}   # pg_prove failed as a whole
        fi
        tap_ok=$((${#tap_files[@]} - tap_bad))
        ((tap_ok >= 0)) || tap_ok=0
    else
        echo "pgTAP: could not set up database opsflags_tap; counting every test file as failed"
        tap_ok=0
        tap_bad=${#tap_files[@]}
    fi
    echo "pgTAP: $tap_ok passed, $tap_bad failed"
    PASSED=$((PASSED + tap_ok))
    FAILED=$((FAILED + tap_bad))
fi

((FAILED == 0))
