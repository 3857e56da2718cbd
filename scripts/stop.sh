#!/usr/bin/env bash
# stop.sh (`make stop`): stop the local cluster (.pgdata/) and the memcached
# that `make run` started. Does nothing if they are not running.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop_cluster "$REPO/.pgdata"
stop_memcached "$REPO/.run/memcached.pid"
log "nothing of opsflags runs now (data kept in $REPO/.pgdata)"
