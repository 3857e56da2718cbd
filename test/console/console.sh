#!/usr/bin/env bash
# console.sh: the web console (/console/) in headless Chromium, driven by
# puppeteer-core (test/console/console.js), against the HTTP server of the
# test cluster (SOCKDIR, PORT): turns the server on, on a free port, and off
# again at the end.  Screenshots go to .run/console-*.png.  Prints TAP.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../http/chromium.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
H=$(free_port $((PORT + 70)))
cleanup() {
    q -c "ALTER SYSTEM RESET opsflags.http_port" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
}
trap cleanup EXIT
ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$H/readyz") == 200 ]]; }

q -c "ALTER SYSTEM SET opsflags.http_port = $H" -c "SELECT pg_reload_conf()" >/dev/null
if ! wait_for 30 ready; then
    echo "not ok 1 - the HTTP server answers from the database on port $H"
    exit 1
fi
if ! ensure_chromium; then
    echo "not ok 1 - headless chromium is installed"
    exit 1
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
mkdir -p "$REPO/.run"
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap \
    OPSFLAGS_HTTP=http://127.0.0.1:$H CONSOLE_SHOTS=$REPO/.run CHROMIUM_BIN=$(command -v "$CHROMIUM")
node console.js
