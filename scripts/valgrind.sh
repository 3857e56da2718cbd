#!/usr/bin/env bash
# valgrind.sh (`make valgrind`): run the test suite once with every server
# process under valgrind's memcheck, and fail on any memory error.
#
# Installs what is missing (valgrind included), builds and installs opsflags
# (the normal build: no sanitizer flags), starts memcached, a listener that
# never answers and a throwaway PostgreSQL 15 cluster on free ports in a
# temporary directory (opsflags preloaded) whose postmaster runs under
#   valgrind --trace-children=yes --leak-check=no --error-exitcode=99
#            --suppressions=scripts/valgrind.supp --log-file=<dir>/%p.log
# so that every backend, background worker and program the server runs gets
# its own log. Then it runs the pg_regress suite (make installcheck) and the
# pgTAP files (test/pgtap/*.sql via pg_prove), stops everything it started, counts
# the errors in every process's log and ends with the line
#   valgrind: N processes checked, N errors; tests: N passed, N failed
# It exits non-zero if any process reported a memory error or any test failed.
# The logs are kept in .run/valgrind/ (the server log in .run/valgrind-postgres.log).
#
# Not run here: test/pgtap/no_preload/*.sql and the shell suites of `make test`
# (upgrade, dump, soak, http, standby, crash): they need clusters of their
# own, wall-clock behaviour or a browser, and would double the (long) run.
# The HTTP worker runs, but only idle (opsflags.http_port = 0).
#
# What valgrind can see: Debian's PostgreSQL is not built with USE_VALGRIND,
# so palloc'd memory is one malloc'd block to valgrind. Reads of
# uninitialised memory, accesses outside any block (stack, malloc, libc),
# bad frees and overlapping copies are reported; a use after pfree() or an
# overrun that stays inside a memory context's block is not.
#
# Environment:
#   OPSFLAGS_VALGRIND_TAP=0        pg_regress only, no pgTAP files
#   OPSFLAGS_VALGRIND_SKIP="a b"   pgTAP files (test/NAME.sql) not to run
#   OPSFLAGS_VALGRIND_ORIGINS=1    add --track-origins=yes (slower; says where
#                                  an uninitialised value came from)
#   OPSFLAGS_VALGRIND_EXIT=0       a process with an error exits normally instead
#                                  of with 99 (a crash for the postmaster): to
#                                  collect every error of a run at once
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# A process with a memory error exits with this code, which the postmaster
# takes for a crash (so the error also shows in the tests' results).
VALGRIND_EXIT=${OPSFLAGS_VALGRIND_EXIT:-99}
[[ $VALGRIND_EXIT =~ ^[0-9]+$ ]] || die "OPSFLAGS_VALGRIND_EXIT must be a number"
SUPP=$REPO/scripts/valgrind.supp
SKIP=${OPSFLAGS_VALGRIND_SKIP-}
# A pgTAP file that sets its own statement_timeout ('<N>s') runs from a copy
# with N times this: valgrind makes everything 20-50 times slower.
TIMEOUT_SCALE=10

PASSED=0
FAILED=0
TMP=''
DATADIR=''
LOGFILE=''
VGDIR=''
MC_PIDFILE=''
HANG_PID=''
STARTED=$SECONDS

# stop_valgrind_cluster DATADIR: fast shutdown, with a timeout that allows
# for valgrind (each process prints its summary as it exits).
stop_valgrind_cluster() {
    local datadir=$1
    [[ -f $datadir/postmaster.pid ]] || return 0
    if cluster_running "$datadir"; then
        log "stopping PostgreSQL under valgrind ($datadir)"
        as_pg "$PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 600 stop
    fi
}

# scan_logs DIR: count processes and errors in valgrind's per-process logs;
# sets VG_PROCS, VG_ERRORS, VG_INCOMPLETE and prints each error.
scan_logs() {
    local dir=$1 f n cmd
    VG_PROCS=0
    VG_ERRORS=0
    VG_INCOMPLETE=0
    shopt -s nullglob
    for f in "$dir"/*.log; do
        VG_PROCS=$((VG_PROCS + 1))
        n=$(grep -c '^==[0-9]*== VALGRINDERROR-BEGIN' "$f" || true)
        if ! grep -q '^==[0-9]*== ERROR SUMMARY:' "$f"; then
            # killed (SIGKILL) or still running: errors up to then are counted
            VG_INCOMPLETE=$((VG_INCOMPLETE + 1))
        fi
        if ((n > 0)); then
            VG_ERRORS=$((VG_ERRORS + n))
            cmd=$(sed -n 's/^==[0-9]*== Command: //p' "$f" | head -n 1)
            echo "---- $n error(s) in $(basename "$f") ($cmd) ----"
            sed -n '/VALGRINDERROR-BEGIN/,/VALGRINDERROR-END/p' "$f" | head -n 300
        fi
    done
    shopt -u nullglob
}

cleanup() {
    local rc=$? elapsed
    set +e
    trap - EXIT INT TERM
    if [[ -n $DATADIR ]]; then
        stop_valgrind_cluster "$DATADIR"
    fi
    if [[ -n $MC_PIDFILE ]]; then
        stop_memcached "$MC_PIDFILE"
    fi
    if [[ -n $HANG_PID ]]; then
        stop_hang_listener "$HANG_PID"
    fi
    if ((rc != 0 && FAILED == 0)); then
        FAILED=1   # the harness itself failed
    fi
    mkdir -p "$REPO/.run"
    if [[ -n $LOGFILE && -f $LOGFILE ]]; then
        cp "$LOGFILE" "$REPO/.run/valgrind-postgres.log"
    fi
    VG_PROCS=0 VG_ERRORS=0 VG_INCOMPLETE=0
    if [[ -n $VGDIR && -d $VGDIR ]]; then
        scan_logs "$VGDIR"
        rm -rf -- "$REPO/.run/valgrind"
        cp -r "$VGDIR" "$REPO/.run/valgrind"
    fi
    if [[ -n $TMP ]]; then
        rm -rf -- "$TMP"
    fi
    elapsed=$((SECONDS - STARTED))
    echo "valgrind logs: .run/valgrind/ ($VG_INCOMPLETE of them without a summary: process killed); server log: .run/valgrind-postgres.log; $((elapsed / 60)) min $((elapsed % 60)) s"
    echo "valgrind: $VG_PROCS processes checked, $VG_ERRORS errors; tests: $PASSED passed, $FAILED failed"
    if ((VG_PROCS == 0 && rc == 0)); then
        echo "valgrind: no process was checked" >&2
        rc=1
    fi
    if (((VG_ERRORS > 0 || FAILED > 0) && rc == 0)); then
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_packages valgrind
[[ -r $SUPP ]] || die "suppressions file missing: $SUPP"
build_install
ensure_server_user

TMP=$(mktemp -d "${TMPDIR:-/tmp}/opsflags-valgrind.XXXXXX")
chmod 755 "$TMP"
if is_root; then
    chown "$SERVER_USER:" "$TMP"
fi
DATADIR=$TMP/data
SOCKDIR=$TMP/sock
LOGFILE=$TMP/postgres.log
MC_PIDFILE=$TMP/memcached.pid
VGDIR=$TMP/valgrind
give_to_server "$VGDIR"
check_server_can_reach "$VGDIR"
PORT=$(free_port)
MC_PORT=$(free_port $((PORT + 1)))

# pg_ctl runs this instead of postgres (pg_ctl -p); it must exec, so that the
# pid pg_ctl waits for is the postmaster's.
cp "$SUPP" "$TMP/valgrind.supp"
# shellcheck disable=SC2054  # the comma in --error-markers is valgrind's
vg_opts=(--trace-children=yes --leak-check=no "--error-exitcode=$VALGRIND_EXIT"
         --suppressions="$TMP/valgrind.supp" --log-file="$VGDIR/%p.log"
         --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END --gen-suppressions=all
         --error-limit=no --num-callers=40)
if [[ ${OPSFLAGS_VALGRIND_ORIGINS:-} == 1 ]]; then
    vg_opts+=(--track-origins=yes)
fi
{
    echo '#!/bin/sh'
    printf 'exec valgrind'
    printf ' %q' "${vg_opts[@]}" "$PG_BIN/postgres"
    printf ' "$@"\n'
} >"$TMP/postgres-valgrind"
chmod 755 "$TMP/postgres-valgrind"
chmod 644 "$TMP/valgrind.supp"

start_memcached "$MC_PORT" "$MC_PIDFILE"
HANG_PORT=$(free_port $((MC_PORT + 1)))
start_hang_listener "$HANG_PORT" "$TMP/hang_listener.log"
DOWN_PORT=$(free_port $((HANG_PORT + 1)))   # nothing is started on it

# start_cluster does initdb (not under valgrind), writes the same settings as
# `make test` plus a few for valgrind, and starts the server once normally;
# then the server is restarted under valgrind. jit = off: LLVM's generated
# code is not what we check and is very slow under valgrind; huge_pages = off:
# valgrind cannot map huge pages.
start_cluster "$DATADIR" "$PORT" "$SOCKDIR" "$LOGFILE" \
    "fsync = off" "wal_level = logical" \
    "opsflags.database = 'opsflags_tap'" "opsflags.sample_interval = 0" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'" \
    "jit = off" "huge_pages = off"
stop_cluster "$DATADIR"
log "starting PostgreSQL 15 under valgrind (logs: $VGDIR/<pid>.log)"
as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" -l "$LOGFILE" -p "$TMP/postgres-valgrind" -w -t 600 start \
    || { tail -n 30 "$LOGFILE" >&2; die "PostgreSQL did not start under valgrind (log: $LOGFILE)"; }

export OPSFLAGS_TEST_MEMCACHED=127.0.0.1:$MC_PORT
export OPSFLAGS_TEST_MEMCACHED_PIDFILE=$MC_PIDFILE
export OPSFLAGS_TEST_HANG=127.0.0.1:$HANG_PORT
export OPSFLAGS_TEST_DOWN=127.0.0.1:$DOWN_PORT
export OPSFLAGS_TEST_LOG=$LOGFILE
export OPSFLAGS_TEST_PSQL=$PG_BIN/psql
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres
export PGOPTIONS="-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"
unset PGDATABASE PGSERVICE PGPASSWORD

# a. pg_regress (make installcheck) ---------------------------------------
log "pg_regress under valgrind: make installcheck"
REGRESS_OUT=$TMP/pg_regress.out
set +e
make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG_BIN" \
    PGHOST="$SOCKDIR" PGPORT="$PORT" PGUSER=postgres 2>&1 | tee "$REGRESS_OUT"
regress_rc=${PIPESTATUS[0]}
set -e
regress_ok=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +(ok|failed \(ignored\))( |$)' "$REGRESS_OUT" || true)
regress_bad=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED' "$REGRESS_OUT" || true)
if ((regress_rc != 0 && regress_bad == 0)); then
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

# b. pgTAP (pg_prove test/pgtap/*.sql) ------------------------------------
if [[ ${OPSFLAGS_VALGRIND_TAP:-1} == 0 ]]; then
    echo "pgTAP: skipped (OPSFLAGS_VALGRIND_TAP=0)"
    exit 0
fi
shopt -s nullglob
tap_files=()
for f in "$REPO"/test/pgtap/*.sql; do
    name=$(basename "$f" .sql)
    if [[ " $SKIP " == *" $name "* ]]; then
        echo "pgTAP: skipping test/pgtap/$name.sql (OPSFLAGS_VALGRIND_SKIP)"
        continue
    fi
    if grep -qE "statement_timeout *= *'[0-9]+s'" "$f"; then
        mkdir -p "$TMP/tap"
        cp "$REPO/test/pgtap/setup.inc" "$TMP/tap/"
        perl -pe "s/(statement_timeout *= *')(\d+)s'/\$1 . (\$2 * $TIMEOUT_SCALE) . \"s'\"/ge" \
            "$f" >"$TMP/tap/$name.sql"
        echo "pgTAP: test/pgtap/$name.sql runs with its statement_timeout times $TIMEOUT_SCALE"
        tap_files+=("$TMP/tap/$name.sql")
        continue
    fi
    tap_files+=("test/pgtap/$name.sql")
done
shopt -u nullglob
if ((${#tap_files[@]} > 0)); then
    log "pgTAP under valgrind: pg_prove ${tap_files[*]}"
    run_pgtap pgTAP "$SOCKDIR" "$PORT" opsflags_tap "$TMP/pg_prove.out" "pgtap dblink $EXT_NAME" "${tap_files[@]}"
fi
