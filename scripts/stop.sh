#!/usr/bin/env bash
# stop.sh (`make stop`): stop the local cluster (.pgdata/) and the memcached
# that `make run` started. Does nothing if they are not running.
# OPSFLAGS_DATADIR and OPSFLAGS_RUNDIR as for `make run`.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATADIR=$(realpath -m -- "${OPSFLAGS_DATADIR:-$REPO/.pgdata}")
RUNDIR=$(realpath -m -- "${OPSFLAGS_RUNDIR:-$REPO/.run}")
stop_cluster "$DATADIR"
stop_memcached "$RUNDIR/memcached.pid"
log "nothing of opsflags runs now (data kept in $DATADIR)"
