#!/usr/bin/env bash
# test.sh (`make test`): install what is missing, build (warnings are errors)
# and install opsflags, start a throwaway PostgreSQL cluster and memcached
# on free ports, run the pg_regress suite (make installcheck) and the pgTAP
# tests (test/pgtap/*.sql via pg_prove), then start a second cluster without
# shared_preload_libraries and run test/pgtap/no_preload/*.sql against it, stop
# everything again, and end with the line
#   opsflags: N passed, N failed
# Exits non-zero if anything failed. The tests see these environment variables:
#   OPSFLAGS_TEST_MEMCACHED          host:port of the throwaway memcached
#   OPSFLAGS_TEST_MEMCACHED_PIDFILE  its pid file
#   OPSFLAGS_TEST_HANG               host:port of a listener that accepts and
#                                    never answers (scripts/hang_listener.pl)
#   OPSFLAGS_TEST_DOWN               host:port where nothing listens
#   OPSFLAGS_TEST_LOG                path of the throwaway server's log file
#   OPSFLAGS_TEST_PSQL               the psql binary
# TESTS="name ..." runs only the named tests: pg_regress names (flags),
# pgTAP files (test/pgtap/audit.sql or audit), no-preload files (no_preload/x) and
# shell suites by script name (dump, http, robustness, tls, soak, upgrade, run,
# unleash-spec, unleash-diff, launchdarkly-diff, clients, api, ...).
# OPSFLAGS_PG_MAJOR=N tests against PostgreSQL N (default 15; see common.sh).
# OPSFLAGS_TEST_SQL_ONLY=1 runs only pg_regress and the pgTAP files (with and
# without preload) and, of the shell suites, the HTTPS one (tls: the server's
# OpenSSL code is built against each version's headers): that is what
# `make test-matrix` runs on the other supported versions.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PASSED=0
FAILED=0
TMP=''
DATADIR=''
LOGFILE=''
MC_PIDFILE=''
HANG_PID=''
NP_DATADIR=''
NP_LOGFILE=''

# On any exit: stop what we started, keep the server log, remove the temp dir,
# and print the summary as the very last line.
cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM   # a second signal must not cut the clean-up short
    if [[ -n $NP_DATADIR ]]; then
        stop_cluster "$NP_DATADIR"
    fi
    if [[ -n $DATADIR ]]; then
        stop_cluster "$DATADIR"
    fi
    if [[ -n $MC_PIDFILE ]]; then
        stop_memcached "$MC_PIDFILE"
    fi
    if [[ -n $HANG_PID ]]; then
        stop_hang_listener "$HANG_PID"
    fi
    if ((rc != 0 && FAILED == 0)); then
        FAILED=1   # the harness itself failed before the tests could say so
    fi
    if [[ -n $NP_LOGFILE && -f $NP_LOGFILE ]]; then
        mkdir -p "$REPO/.run"
        cp "$NP_LOGFILE" "$REPO/.run/test-postgres-no-preload.log"
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

# selected NAME...: true when TESTS is empty or names one of NAME.
selected() {
    [[ -z ${TESTS:-} ]] && return 0
    local want name
    for want in $TESTS; do
        want=${want%.sql}; want=${want#test/}
        for name in "$@"; do
            [[ $want == "$name" ]] && return 0
        done
    done
    return 1
}
trap 'exit 130' INT
trap 'exit 143' TERM

SQL_ONLY=${OPSFLAGS_TEST_SQL_ONLY:-0}
SQL_ONLY_SUITES="tls"   # shell suites that run with SQL_ONLY too
if [[ $SQL_ONLY == 1 ]]; then
    # curl: test/secrets.sql asks the HTTP worker; openssl and node: tls
    ensure_packages curl iproute2 openssl $(command -v node >/dev/null || echo nodejs)
else
    # curl and chromium (+ a font, python3 for a mock server) for test/http
    ensure_packages curl chromium fonts-dejavu-core python3 iproute2
fi
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
HANG_PORT=$(free_port $((MC_PORT + 1)))
start_hang_listener "$HANG_PORT" "$TMP/hang_listener.log"
DOWN_PORT=$(free_port $((HANG_PORT + 1)))   # nothing is started on it
start_cluster "$DATADIR" "$PORT" "$SOCKDIR" "$LOGFILE" \
    "fsync = off" "wal_level = logical" \
    "opsflags.database = 'opsflags_tap'" "opsflags.sample_interval = 0" \
    "opsflags.memcached_servers = '127.0.0.1:$MC_PORT'"

export OPSFLAGS_TEST_MEMCACHED=127.0.0.1:$MC_PORT
export OPSFLAGS_TEST_MEMCACHED_PIDFILE=$MC_PIDFILE
export OPSFLAGS_TEST_HANG=127.0.0.1:$HANG_PORT
export OPSFLAGS_TEST_DOWN=127.0.0.1:$DOWN_PORT
export OPSFLAGS_TEST_LOG=$LOGFILE
export OPSFLAGS_TEST_PSQL=$PG_BIN/psql
export OPSFLAGS_PG_BIN=$PG_BIN   # the shell suites' PostgreSQL
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres
unset PGDATABASE PGSERVICE PGPASSWORD

# a. pg_regress (make installcheck) ---------------------------------------
REGRESS_LIST=$(make -s -C "$REPO" --no-print-directory -f - print-regress PG_CONFIG="$PG_CONFIG_BIN" <<'MK'
include Makefile
print-regress:
	@echo $(REGRESS)
MK
)
regress_sel=()
for name in $REGRESS_LIST; do
    selected "$name" && regress_sel+=("$name")
done
log "pg_regress: make installcheck REGRESS='${regress_sel[*]}'"
REGRESS_OUT=$TMP/pg_regress.out
: >"$REGRESS_OUT"
set +e
((${#regress_sel[@]} == 0)) ||
make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG_BIN" REGRESS="${regress_sel[*]}" \
    PGHOST="$SOCKDIR" PGPORT="$PORT" PGUSER=postgres 2>&1 | tee "$REGRESS_OUT"
regress_rc=${PIPESTATUS[0]}
set -e
# pg_regress 15 prints "test NAME ... ok   12 ms" (or "     NAME ... ok" in a
# parallel group), "... FAILED", "... failed (ignored)"; from 16 on it prints
# TAP lines: "ok 1 - NAME   12 ms", "not ok 2 - NAME   12 ms" (a "+" instead
# of the "-" in a parallel group).
regress_ok=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +(ok|failed \(ignored\))( |$)|^ok [0-9]+ +[-+] ' "$REGRESS_OUT" || true)
regress_bad=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED|^not ok [0-9]+ +[-+] ' "$REGRESS_OUT" || true)
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

# b. pgTAP (pg_prove test/pgtap/*.sql) ------------------------------------
shopt -s nullglob
tap_files=()
for f in "$REPO"/test/pgtap/*.sql; do
    b=${f##*/}
    selected "${b%.sql}" && tap_files+=("$f")
done
shopt -u nullglob
if ((${#tap_files[@]} == 0)); then
    echo "pgTAP: no test/pgtap/*.sql file selected; nothing to run"
    # The shell suites below run in the pgTAP database.
    pg_psql "$SOCKDIR" "$PORT" postgres -q -c "CREATE DATABASE opsflags_tap" &&
        pg_psql "$SOCKDIR" "$PORT" opsflags_tap -q -c "CREATE EXTENSION pgtap" \
            -c "CREATE EXTENSION dblink" -c "CREATE EXTENSION $EXT_NAME"
else
    tap_files=("${tap_files[@]#"$REPO"/}")
    log "pgTAP: pg_prove ${tap_files[*]}"
    run_pgtap pgTAP "$SOCKDIR" "$PORT" opsflags_tap "$TMP/pg_prove.out" "pgtap dblink $EXT_NAME" "${tap_files[@]}"
fi

# c. pgTAP without shared_preload_libraries (test/pgtap/no_preload/*.sql) --
# A second cluster in the same temp dir, on its own port, that loads opsflags
# on demand only.
shopt -s nullglob
np_files=()
for f in "$REPO"/test/pgtap/no_preload/*.sql; do
    b=${f##*/}
    selected "no_preload/${b%.sql}" && np_files+=("$f")
done
shopt -u nullglob
if ((${#np_files[@]} == 0)); then
    echo "pgTAP without preload: no test/pgtap/no_preload/*.sql files; nothing to run"
else
    np_files=("${np_files[@]#"$REPO"/}")
    NP_DATADIR=$TMP/data_no_preload
    NP_SOCKDIR=$TMP/sock_no_preload
    NP_LOGFILE=$TMP/postgres_no_preload.log
    NP_PORT=$(free_port $((DOWN_PORT + 1)))
    while [[ $NP_PORT == "$DOWN_PORT" || $NP_PORT == "$PORT" ]]; do
        NP_PORT=$(free_port $((NP_PORT + 1)))
    done
    log "pgTAP without shared_preload_libraries: pg_prove ${np_files[*]}"
    if (OPSFLAGS_NO_PRELOAD=1 start_cluster "$NP_DATADIR" "$NP_PORT" "$NP_SOCKDIR" "$NP_LOGFILE" \
            "fsync = off"); then
        run_pgtap "pgTAP without preload" "$NP_SOCKDIR" "$NP_PORT" opsflags_np \
            "$TMP/pg_prove_no_preload.out" "pgtap $EXT_NAME" "${np_files[@]}"
    else
        echo "pgTAP without preload: could not start the cluster; counting every file as failed"
        echo "pgTAP without preload: 0 passed, ${#np_files[@]} failed"
        FAILED=$((FAILED + ${#np_files[@]}))
    fi
fi


# d-g. Shell suites printing TAP, each counted as one file.
# shell_suite NAME SCRIPT [VAR=VALUE...]: run SCRIPT with the variables set.
shell_suite() {
    local name=$1 script=$2 base
    shift 2
    base=${script##*/}
    [[ $SQL_ONLY != 1 || " $SQL_ONLY_SUITES " == *" ${base%.sh} "* ]] || return 0
    selected "${base%.sh}" || return 0
    log "$name: $script"
    if env "$@" bash "$REPO/$script"; then
        echo "$name: 1 passed, 0 failed"
        PASSED=$((PASSED + 1))
    else
        echo "$name: 0 passed, 1 failed"
        FAILED=$((FAILED + 1))
    fi
}
# released scripts unchanged, update == fresh install
shell_suite upgrades test/upgrade/upgrade.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# pg_dump of every feature, restored
shell_suite "dump and restore" test/dump/dump.sh SOCKDIR="$SOCKDIR" PORT="$PORT" WORKDIR="$TMP"
# pgbench with several scripts at once (SOAK_SECONDS, default 15)
shell_suite soak test/soak/soak.sh SOCKDIR="$SOCKDIR" PORT="$PORT" WORKDIR="$TMP"
# the HTTP server of the "opsflags http" worker, and its status page in Chromium
shell_suite http test/http/http.sh SOCKDIR="$SOCKDIR" PORT="$PORT" WORKDIR="$TMP"
shell_suite "http robustness" test/http/robustness.sh SOCKDIR="$SOCKDIR" PORT="$PORT" WORKDIR="$TMP"
# a streaming standby: replay, read-only admin, sampler, promotion, crashes
shell_suite standby test/standby/standby.sh PRIMARY_SOCKDIR="$SOCKDIR" PRIMARY_PORT="$PORT" WORKDIR="$TMP"
# make run twice in a row, make stop, a failed make run (own directories and ports)
shell_suite "make run" test/run/run.sh PORT="$PORT" WORKDIR="$TMP"
# the README's SQL examples, in order, with the output it shows
shell_suite "README tour" test/readme/tour.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# SIGKILL of the postmaster in the middle of a pgbench run, on a cluster of its own
shell_suite crash test/crash/crash.sh PORT="$PORT" WORKDIR="$TMP"
# Unleash: the client specification's cases, and a differential test against
# the Unleash SDK (Node; packages pinned in test/package-lock.json)
if [[ $SQL_ONLY != 1 ]] && selected unleash-spec unleash-diff launchdarkly-diff clients api console; then
    ensure_node_modules
fi
shell_suite "unleash-spec" test/unleash/unleash-spec.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
shell_suite "unleash-diff" test/unleash/unleash-diff.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# LaunchDarkly: a differential test against its Node server SDK, offline
shell_suite "launchdarkly-diff" test/launchdarkly/launchdarkly-diff.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# The client SDKs (npm) against the HTTP server's client endpoints
shell_suite "clients" test/clients/clients.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# The management API (/api/v1) over HTTP, by Node's fetch
shell_suite "console api" test/console/api.sh SOCKDIR="$SOCKDIR" PORT="$PORT"
# HTTPS (opsflags.http_tls) with a certificate made for the test.
shell_suite "http tls" test/http/tls.sh SOCKDIR="$SOCKDIR" PORT="$PORT" WORKDIR="$TMP"
# The web console in headless Chromium (puppeteer-core), against the management API
shell_suite "console" test/console/console.sh SOCKDIR="$SOCKDIR" PORT="$PORT"

((FAILED == 0))
