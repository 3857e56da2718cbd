#!/usr/bin/env bash
# api.sh: the management API (/api/v1, /api/openapi.json) of the test
# cluster's HTTP server, by test/console/api.js (Node's fetch): sign-in,
# sessions, CSRF, admin API keys, every endpoint's answers and errors, a
# read-only role refused by PostgreSQL itself, CSV, hostile JSON, and no
# password or token in the server log, pg_stat_activity or the audit log.
# Turns the server on (on every address, so that a sign-in from a
# non-loopback address can be tried), and off again at the end.  Prints TAP.
#   needs: SOCKDIR PORT OPSFLAGS_TEST_LOG
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
H=$(free_port $((PORT + 70)))
cleanup() {
    q -c "ALTER SYSTEM RESET opsflags.http_port" -c "ALTER SYSTEM RESET opsflags.http_listen" \
      -c "SELECT pg_reload_conf()" >/dev/null 2>&1
}
trap cleanup EXIT
ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$H/readyz") == 200 ]]; }

q -c "ALTER SYSTEM SET opsflags.http_port = $H" -c "ALTER SYSTEM SET opsflags.http_listen = '*'" \
  -c "SELECT pg_reload_conf()" >/dev/null
if ! wait_for 30 ready; then
    echo "not ok 1 - the HTTP server answers from the database on port $H"
    exit 1
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap OPSFLAGS_HTTP_PORT=$H
node api.js
