#!/usr/bin/env bash
# unleash-diff.sh: generated Unleash features and contexts evaluated by
# opsflags and by the Unleash SDK (test/unleash/diff.js), in the database
# opsflags_tap of the test cluster (SOCKDIR, PORT).  OPSFLAGS_DIFF_SEED
# replays a run.  Prints TAP; exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap exec node diff.js
