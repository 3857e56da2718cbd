#!/usr/bin/env bash
# clients.sh: the client SDKs, from npm, pointed at the HTTP server of the
# test cluster (SOCKDIR, PORT), run by test/clients/clients.js: ofrep.js
# (OpenFeature's server and web SDKs with their OFREP providers),
# launchdarkly.js and launchdarkly_stream.js (LaunchDarkly's client-side
# SDK, polling and streaming), unleash.js (Unleash's
# frontend and server SDKs); then test/clients/streams.js (the OFREP web
# provider on OFREP's event stream), and test/clients/browser.js (a page with
# that provider in headless Chromium).  Turns the server on, on a free port, with
# CORS for one origin, and off again at the end.  Prints TAP.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../http/chromium.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
H=$(free_port $((PORT + 60)))
cleanup() {
    q -c "ALTER SYSTEM RESET opsflags.http_port" -c "ALTER SYSTEM RESET opsflags.http_cors_origins" \
      -c "SELECT pg_reload_conf()" >/dev/null 2>&1
}
trap cleanup EXIT
# ready: the server answers from the database (it connects once the database exists)
ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$H/readyz") == 200 ]]; }

q -c "ALTER SYSTEM SET opsflags.http_port = $H" -c "ALTER SYSTEM SET opsflags.http_cors_origins = 'http://app.example'" \
  -c "SELECT pg_reload_conf()" >/dev/null
if ! wait_for 30 ready; then
    echo "not ok 1 - the HTTP server answers from the database on port $H"
    exit 1
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap OPSFLAGS_HTTP=http://127.0.0.1:$H
rc=0
node clients.js || rc=1
node streams.js || rc=1
if ensure_chromium; then
    node browser.js || rc=1
else
    echo "not ok 1 - headless chromium is installed (for browser.js)"
    rc=1
fi
exit $rc
