#!/usr/bin/env bash
# unleash-spec.sh: Unleash's client specification against opsflags
# (test/unleash/spec.js), in the database opsflags_tap of the test cluster
# (SOCKDIR, PORT).  Prints TAP; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap exec node spec.js
