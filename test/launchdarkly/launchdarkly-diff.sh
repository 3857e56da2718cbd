#!/usr/bin/env bash
# launchdarkly-diff.sh: generated LaunchDarkly server-side data and contexts
# evaluated by opsflags and by LaunchDarkly's Node server SDK, offline
# (test/launchdarkly/diff.js), in the database opsflags_tap of the test
# cluster (SOCKDIR, PORT).  OPSFLAGS_DIFF_SEED replays a run.  Prints TAP;
# exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=opsflags_tap exec node diff.js
