#!/usr/bin/env bash
# matrix.sh (`make test-matrix`): build opsflags and run its pg_regress and
# pgTAP suites and its HTTPS suite (scripts/test.sh with
# OPSFLAGS_TEST_SQL_ONLY=1) on the other
# supported PostgreSQL versions, each in a Debian chroot made with debootstrap:
#   PostgreSQL 17 in Debian 13 (trixie), PostgreSQL 18 in Debian unstable (sid)
# (`make test` covers PostgreSQL 15 on the host). Prints one summary line per
# version and exits non-zero if any version failed.
#
# Needs root (or sudo), network access to the Debian mirror, about 2 GB of
# disk per version under the chroot directory. The chroots are kept and reused
# by the next run (delete the directory, or set OPSFLAGS_MATRIX_REFRESH=1, to
# start again). Settings:
#   OPSFLAGS_MATRIX         "MAJOR:SUITE ..." (default "17:trixie 18:sid")
#   OPSFLAGS_MATRIX_DIR     where the chroots live (default /var/cache/opsflags-matrix)
#   OPSFLAGS_MATRIX_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   OPSFLAGS_MATRIX_TIMEOUT seconds allowed per version (default 2400)
#   TESTS                   passed on to test.sh (run a subset)
# Each version's output is kept in .run/matrix-MAJOR.log, its server logs and
# regression.diffs in .run/matrix-MAJOR/.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MATRIX=${OPSFLAGS_MATRIX:-"17:trixie 18:sid"}
CHROOTS=${OPSFLAGS_MATRIX_DIR:-/var/cache/opsflags-matrix}
MIRROR=${OPSFLAGS_MATRIX_MIRROR:-http://deb.debian.org/debian}
TIMEOUT=${OPSFLAGS_MATRIX_TIMEOUT:-2400}
BUILD_DIR=/build/opsflags   # the copy of the repository, inside the chroot
READY=.opsflags-matrix-ready   # written once a chroot is complete

if ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "make test-matrix needs root (debootstrap, chroot): run it as root or install sudo"
    exec sudo --preserve-env=OPSFLAGS_MATRIX,OPSFLAGS_MATRIX_DIR,OPSFLAGS_MATRIX_MIRROR,OPSFLAGS_MATRIX_TIMEOUT,OPSFLAGS_MATRIX_REFRESH,TESTS \
        "$REPO/scripts/matrix.sh" "$@"
fi

# mounted_under DIR: true if anything is mounted at or below DIR (in our mount
# namespace): then it must not be deleted.
mounted_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# make_chroot SUITE DIR: a minimal SUITE system in DIR, unless DIR already
# holds a complete one. Built in DIR.partial and renamed when done, so an
# interrupted run leaves nothing that looks usable.
make_chroot() {
    local suite=$1 dir=$2 partial=$2.partial
    if [[ -f $dir/$READY && ${OPSFLAGS_MATRIX_REFRESH:-0} != 1 ]] && chroot "$dir" /bin/true; then
        log "reusing the $suite chroot in $dir"
        return 0
    fi
    local d
    for d in "$dir" "$partial"; do
        if [[ -e $d ]]; then
            ! mounted_under "$d" || die "something is mounted under $d: unmount it first"
            rm -rf -- "$d"
        fi
    done
    log "creating a Debian $suite chroot in $dir (debootstrap from $MIRROR)"
    mkdir -p "$CHROOTS"
    # (in a mount namespace of its own: the /proc and /sys it mounts in the
    # chroot cannot outlive it, even if it is interrupted)
    unshare --mount --propagation private \
        debootstrap --variant=minbase "$suite" "$partial" "$MIRROR" >"$partial.log" 2>&1 \
        || { tail -n 30 "$partial.log" >&2; die "debootstrap $suite failed (log: $partial.log)"; }
    rm -f "$partial.log"
    # Packages must not start services in the chroot (the tests start their
    # own servers), and PostgreSQL's packages must not create a cluster.
    printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
    chmod 755 "$partial/usr/sbin/policy-rc.d"
    mkdir -p "$partial/etc/postgresql-common"
    echo 'create_main_cluster = false' >"$partial/etc/postgresql-common/createcluster.conf"
    # A mirror that is a dated snapshot serves Release files past their
    # Valid-Until date (sid's expires within a week); signatures are still checked.
    echo 'Acquire::Check-Valid-Until "false";' >"$partial/etc/apt/apt.conf.d/99opsflags-matrix"
    echo 'APT::Install-Recommends "false";' >>"$partial/etc/apt/apt.conf.d/99opsflags-matrix"
    echo 'APT::Keep-Downloaded-Packages "false";' >>"$partial/etc/apt/apt.conf.d/99opsflags-matrix"
    touch "$partial/$READY"
    mv "$partial" "$dir"
}

# copy_repo DIR: the working tree (tracked and untracked files, not what
# .gitignore excludes, such as objects built for another version) to
# DIR$BUILD_DIR.
copy_repo() {
    local target=$1$BUILD_DIR
    rm -rf -- "$target"
    mkdir -p "$target"
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -C "$target" -xf -
    else
        tar -C "$REPO" --exclude=.git --exclude=.pgdata --exclude=.run --exclude=results \
            --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=src/status_page.h \
            -cf - . | tar -C "$target" -xf -
    fi
}

# in_chroot DIR CMD...: run CMD in the chroot DIR with /proc, /dev and a fresh
# /dev/shm mounted, in a mount namespace of its own: the mounts are private to
# it and gone when its last process ends, whatever happens. They are unmounted
# once CMD has exited; a SIGTERM is passed on to CMD (in a session of its own,
# so that it gets one SIGTERM and can clean up with /proc still there).
in_chroot() {
    local dir=$1
    shift
    unshare --mount --propagation private bash -c '
        dir=$1
        shift
        trap "umount -R \"\$dir/dev\" 2>/dev/null; umount \"\$dir/proc\" 2>/dev/null" EXIT
        mount -t proc proc "$dir/proc" &&
            mount --bind /dev "$dir/dev" &&
            mount -t tmpfs -o mode=1777,size=1g shm "$dir/dev/shm" || exit 1
        setsid -w chroot "$dir" "$@" &
        child=$!
        trap "trap \"\" TERM; kill -TERM $child 2>/dev/null" TERM   # once
        while :; do
            wait "$child"
            rc=$?
            kill -0 "$child" 2>/dev/null || break
        done
        exit "$rc"' _ "$dir" "$@"
}

# run_version MAJOR SUITE: set up the chroot and run the suites in it.
run_version() {
    local major=$1 suite=$2 dir=$CHROOTS/$suite
    make_chroot "$suite" "$dir"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    copy_repo "$dir"
    log "PostgreSQL $major ($suite): scripts/test.sh (pg_regress and pgTAP) in $dir"
    # test.sh installs what is missing (postgresql-$major and the rest) itself;
    # the servers it starts run as an unprivileged user of the chroot.
    # timeout runs it in a process group of its own, which interrupt() stops.
    timeout --kill-after=60 "$TIMEOUT" bash -c 'in_chroot "$@"' _ \
        "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb OPSFLAGS_PG_MAJOR="$major" OPSFLAGS_TEST_SQL_ONLY=1 \
        TESTS="${TESTS:-}" bash "$BUILD_DIR/scripts/test.sh" &
    echo $! >"$RUNNING"
    wait $!
}

# interrupt STATUS: on SIGINT or SIGTERM, stop the version under test (its
# test.sh stops its servers) and wait for it, then exit with STATUS.
interrupt() {
    local pid deadline=$((SECONDS + 90))
    trap '' INT TERM
    pid=$(cat "$RUNNING" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -TERM -- "-$pid" 2>/dev/null; then
        log "interrupted: stopping the tests (process group $pid)"
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
    fi
    exit "$1"
}

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap \
        || die "could not install debootstrap"
fi
# in_chroot runs under timeout, in a new bash.
export -f in_chroot

mkdir -p "$REPO/.run"
RUNNING=$(mktemp "${TMPDIR:-/tmp}/opsflags-matrix.XXXXXX")   # pid of the running timeout
RC_FILE=$(mktemp "${TMPDIR:-/tmp}/opsflags-matrix.XXXXXX")   # run_version's exit status
trap 'interrupt 130' INT
trap 'interrupt 143' TERM
trap 'rm -f -- "$RUNNING" "$RC_FILE"' EXIT
summary=()
failed=0
for entry in $MATRIX; do
    major=${entry%%:*}
    suite=${entry#*:}
    [[ $major =~ ^[0-9]+$ && -n $suite && $suite != "$entry" ]] \
        || die "OPSFLAGS_MATRIX: '$entry' is not MAJOR:SUITE"
    out=$REPO/.run/matrix-$major.log
    start=$SECONDS
    # In the background, so that a signal reaches interrupt() at once (bash
    # runs traps between commands, and wait is one).
    : >"$RC_FILE"
    (trap 'echo $? >"$RC_FILE"' EXIT; run_version "$major" "$suite") 2>&1 | tee "$out" &
    wait $! || true
    rc=$(cat "$RC_FILE")
    rc=${rc:-1}
    # Keep the server logs and the diffs of a failed pg_regress run.
    rm -rf -- "$REPO/.run/matrix-$major"
    mkdir -p "$REPO/.run/matrix-$major"
    for f in "$CHROOTS/$suite$BUILD_DIR"/.run/test-postgres*.log "$CHROOTS/$suite$BUILD_DIR"/regression.{diffs,out}; do
        if [[ -f $f ]]; then
            cp "$f" "$REPO/.run/matrix-$major/"
        fi
    done
    result=$(grep -E '^opsflags: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
    if ((rc == 124 || rc == 137)); then
        result="timed out after ${TIMEOUT}s${result:+ ($result)}"
    elif [[ -z $result ]]; then
        result="did not run (exit status $rc)"
    fi
    if ((rc != 0)); then
        failed=$((failed + 1))
        result="FAILED: $result"
    fi
    summary+=("$(printf 'PostgreSQL %s (Debian %s): %s [%dm%02ds, log: .run/matrix-%s.log]' \
        "$major" "$suite" "$result" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$major")")
done

echo "==> test-matrix summary"
printf '%s\n' "${summary[@]}"
if ((failed > 0)); then
    echo "test-matrix: $failed of $(wc -w <<<"$MATRIX") versions failed"
    exit 1
fi
echo "test-matrix: all $(wc -w <<<"$MATRIX") versions passed"
