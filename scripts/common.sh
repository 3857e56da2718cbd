# common.sh: helpers shared by run.sh, stop.sh and test.sh (sourced, not run):
# package installation, build + install, and starting/stopping a PostgreSQL
# cluster and a memcached that run as an unprivileged user.
# shellcheck shell=bash

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# OPSFLAGS_PG_MAJOR: the PostgreSQL major version to use (15, the default; 17
# and 18 are tested by `make test-matrix`): its Debian packages and directory.
PG_MAJOR=${OPSFLAGS_PG_MAJOR:-15}
[[ $PG_MAJOR =~ ^[0-9]+$ ]] || { echo "opsflags: error: OPSFLAGS_PG_MAJOR must be a major version number, like 15" >&2; exit 1; }
# OPSFLAGS_PG_BIN: another installation of that version (a relocated copy works:
# its pg_config and server find their files relative to this directory).
PG_BIN=${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}   # not /usr/local/bin/pg_ctl, which is something else
PG_CONFIG_BIN=$PG_BIN/pg_config
EXT_NAME=opsflags
SERVER_USER=opsflags                   # the servers run as this user when we are root
SERVER_HOME=/var/lib/opsflags
PACKAGES=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" "postgresql-$PG_MAJOR-pgtap"
          libtap-parser-sourcehandler-pgtap-perl libmemcached-dev libssl-dev openssl memcached make gcc)

log() { printf '==> %s\n' "$*"; }
die() { printf 'opsflags: error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ $EUID -eq 0 ]]; }

# as_root CMD...: run CMD as root, directly or through sudo.
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "this step needs root ($*): run as root or install and configure sudo"
    fi
}

# ensure_packages [EXTRA...]: also the EXTRA packages (a command's own needs).
ensure_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}" "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing missing packages: ${missing[*]}"
    as_root apt-get update \
        || die "apt-get update failed (are you root, or allowed to use sudo?)"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}" \
        || die "could not install: ${missing[*]}"
}

# build_install: build the extension (warnings are errors) as the invoking
# user, then install it into PostgreSQL (as root).
build_install() {
    log "building $EXT_NAME"
    make -C "$REPO" -j"$(nproc)" PG_CONFIG="$PG_CONFIG_BIN" WERROR=1 \
        || die "build failed"
    # Staged, then each file renamed into place: a running server keeps the
    # library it mapped (make install would rewrite it in place and crash it).
    log "installing $EXT_NAME"
    local stage
    stage=$(mktemp -d "${TMPDIR:-/tmp}/opsflags-install.XXXXXX")
    make -C "$REPO" install PG_CONFIG="$PG_CONFIG_BIN" WERROR=1 DESTDIR="$stage" >/dev/null \
        || { rm -rf -- "$stage"; die "make install (staged) failed"; }
    as_root bash -c 'cd "$1" && find . -type f | while read -r f; do
            t=/${f#./}
            mkdir -p "$(dirname "$t")" && install -m "$(stat -c %a "$f")" "$f" "$t.opsflags-new" &&
                mv -f "$t.opsflags-new" "$t" || exit 1
        done' _ "$stage" \
        || { rm -rf -- "$stage"; die "installing into PostgreSQL's directories failed (it needs root: run as root or as a user allowed to sudo)"; }
    rm -rf -- "$stage"
}

# npm ci in test/ when its node_modules is missing or older than the lock
# file (only the npm registry is needed).
ensure_node_modules() {
    local dir=$REPO/test
    command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
    if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        log "npm ci in test/"
        (cd "$dir" && npm ci --no-audit --no-fund) || die "npm ci in test/ failed"
    fi
}

# ensure_server_user: when root, make sure the unprivileged server user exists.
ensure_server_user() {
    if ! is_root || id -u "$SERVER_USER" >/dev/null 2>&1; then
        return 0
    fi
    log "creating system user $SERVER_USER"
    useradd --system --shell /bin/bash --home-dir "$SERVER_HOME" --create-home "$SERVER_USER"
}

# as_pg CMD...: run a server-side command as the server user (ourselves unless root).
as_pg() {
    if is_root; then
        (cd / && runuser -u "$SERVER_USER" -- "$@")
    else
        "$@"
    fi
}

# give_to_server PATH...: create missing directories and, when root, hand them to the server user.
give_to_server() {
    mkdir -p "$@"
    if is_root; then
        chown -R "$SERVER_USER:" "$@"
    fi
}

# check_server_can_reach PATH...: fail clearly if the server user cannot get to
# (traverse every parent of) and write each PATH.
check_server_can_reach() {
    local path dir part parts
    for path in "$@"; do
        dir=/
        IFS=/ read -ra parts <<<"${path#/}"
        for part in "${parts[@]}"; do
            [[ -n $part ]] || continue
            dir=${dir%/}/$part
            [[ -e $dir ]] || break
            if [[ -d $dir ]] && ! as_pg test -x "$dir"; then
                die "server user '$(as_pg id -un)' cannot enter $dir (needed for $path); move the checkout somewhere it can reach, or grant it search permission (chmod o+x $dir)"
            fi
        done
        as_pg test -w "$path" \
            || die "server user '$(as_pg id -un)' cannot write $path (owned by $(stat -c %U "$path"))"
    done
}

# port_in_use PORT: true if a server could not listen on 127.0.0.1:PORT the way
# PostgreSQL, memcached and the HTTP worker do (SO_REUSEADDR): something
# listens on PORT, or holds it bound without SO_REUSEADDR.  Connections left in
# TIME_WAIT by a server that just stopped do not count: they keep nobody out.
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
        return 0
    fi
    ! perl -MSocket -e '
        socket(my $s, PF_INET, SOCK_STREAM, 0) or exit 1;
        setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or exit 1;
        bind($s, pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"))) or exit 1;' "$port" 2>/dev/null
}

# port_used_by_others PORT PID...: true if something other than the processes
# PID and their children holds 127.0.0.1:PORT.  Without ss it cannot tell,
# and says no.
port_used_by_others() {
    local port=$1 pid ppid pids
    shift
    port_in_use "$port" || return 1
    command -v ss >/dev/null 2>&1 || return 1
    pids=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
    # In use, and no listener whose process we may see: not ours.
    [[ -n $pids ]] || return 0
    for pid in $pids; do
        ppid=$(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$pid/stat" 2>/dev/null)
        [[ " $* " == *" $pid "* || " $* " == *" $ppid "* ]] || return 0
    done
    return 1
}

# free_port [BASE]: print a free TCP port on 127.0.0.1, trying upward from BASE
# (default: a random port in 20000-39999).
free_port() {
    local port=${1:-$((20000 + RANDOM % 20000))} tries
    for ((tries = 0; tries < 500; tries++, port++)); do
        ((port < 65536)) || port=20000
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free TCP port found on 127.0.0.1"
}

# wait_for_port PORT SECONDS: poll until 127.0.0.1:PORT accepts connections.
wait_for_port() {
    local port=$1 deadline=$((SECONDS + $2))
    until timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# sql_quote STRING: STRING as a single-quoted SQL / postgresql.conf literal.
sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# pick_locale: C.UTF-8 if the system has it, otherwise C.
pick_locale() {
    if locale -a 2>/dev/null | tr '[:upper:]' '[:lower:]' | grep -qx 'c\.utf-\?8'; then
        echo C.UTF-8
    else
        echo C
    fi
}

# cluster_running DATADIR: true if a postmaster runs on DATADIR.
cluster_running() {
    [[ -f $1/postmaster.pid ]] && as_pg "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# start_cluster DATADIR PORT SOCKDIR LOGFILE [SETTING...]: initdb DATADIR if it
# is not a cluster yet, write the harness settings (plus each extra SETTING
# line, e.g. "fsync = off") and start the server. All paths must be absolute.
# OPSFLAGS_NO_PRELOAD=1 leaves shared_preload_libraries empty (only for
# testing this harness without the extension built).
start_cluster() {
    local datadir=$1 port=$2 sockdir=$3 logfile=$4
    shift 4
    local setting locale preload=$EXT_NAME
    if [[ ${OPSFLAGS_NO_PRELOAD:-} == 1 ]]; then
        preload=
    fi
    if ((${#sockdir} + 20 > 107)); then
        die "socket directory path too long for a Unix socket: $sockdir"
    fi
    if port_in_use "$port"; then
        die "port $port on 127.0.0.1 is already in use (set another port)"
    fi

    ensure_server_user
    give_to_server "$datadir" "$sockdir" "$(dirname "$logfile")"
    touch "$logfile"
    if is_root; then
        chown "$SERVER_USER:" "$logfile"
    fi
    check_server_can_reach "$datadir" "$sockdir" "$logfile"

    if [[ ! -s $datadir/PG_VERSION ]]; then
        locale=$(pick_locale)
        log "initdb $datadir (locale $locale)"
        as_pg "$PG_BIN/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 \
            --locale="$locale" >>"$logfile" 2>&1 \
            || { tail -n 30 "$logfile" >&2; die "initdb failed (log: $logfile)"; }
    fi

    # Our settings live in their own file, rewritten on every start, and
    # included once from postgresql.conf (later lines win).
    {
        echo "# written by scripts/common.sh (start_cluster); rewritten on each start"
        echo "port = $port"
        echo "unix_socket_directories = $(sql_quote "$sockdir")"
        echo "listen_addresses = '127.0.0.1'"
        echo "shared_preload_libraries = $(sql_quote "$preload")"
        echo "max_connections = 100"
        for setting in "$@"; do
            echo "$setting"
        done
    } >"$datadir/opsflags_harness.conf"
    if is_root; then
        chown "$SERVER_USER:" "$datadir/opsflags_harness.conf"
    fi
    if ! grep -q "^include_if_exists = 'opsflags_harness.conf'" "$datadir/postgresql.conf"; then
        echo "include_if_exists = 'opsflags_harness.conf'" >>"$datadir/postgresql.conf"
    fi

    log "starting PostgreSQL $PG_MAJOR on port $port (socket dir $sockdir, log $logfile)"
    as_pg "$PG_BIN/pg_ctl" -D "$datadir" -l "$logfile" -w -t 60 start \
        || { tail -n 30 "$logfile" >&2; die "PostgreSQL did not start (log: $logfile)"; }
}

# stop_cluster DATADIR: fast shutdown of the server on DATADIR, if it runs.
stop_cluster() {
    local datadir=$1
    [[ -f $datadir/postmaster.pid ]] || return 0
    if cluster_running "$datadir"; then
        log "stopping PostgreSQL ($datadir)"
        as_pg "$PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 60 stop
    fi
}

# memcached_pid PIDFILE: print the pid from PIDFILE if it is a live memcached.
memcached_pid() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == memcached ]] || return 1
    echo "$pid"
}

# start_memcached PORT PIDFILE: start a memcached daemon on 127.0.0.1:PORT and
# wait until it accepts connections.
start_memcached() {
    local port=$1 pidfile=$2
    local args=(-d -l 127.0.0.1 -p "$port" -P "$pidfile")
    if port_in_use "$port"; then
        die "port $port on 127.0.0.1 is already in use (memcached; set another port)"
    fi
    ensure_server_user
    give_to_server "$(dirname "$pidfile")"
    check_server_can_reach "$(dirname "$pidfile")"
    if is_root; then
        args+=(-u "$SERVER_USER")   # memcached drops to this user itself when root
    fi
    log "starting memcached on 127.0.0.1:$port"
    as_pg memcached "${args[@]}" || die "memcached did not start"
    wait_for_port "$port" 10 || die "memcached is not accepting connections on port $port"
}

# stop_memcached PIDFILE: stop the memcached recorded in PIDFILE, if it runs.
stop_memcached() {
    local pidfile=$1 pid deadline
    if pid=$(memcached_pid "$pidfile"); then
        log "stopping memcached (pid $pid)"
        kill "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# pg_psql SOCKDIR PORT DB [PSQL ARGS...]: run psql against a harness cluster.
pg_psql() {
    local sockdir=$1 port=$2 db=$3
    shift 3
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres -d "$db" "$@"
}

# start_hang_listener PORT LOGFILE: run scripts/hang_listener.pl on
# 127.0.0.1:PORT in the background (as the invoking user) and wait until it
# accepts connections; sets HANG_PID.
start_hang_listener() {
    local port=$1 logfile=$2
    log "starting a listener that never answers on 127.0.0.1:$port"
    perl "$REPO/scripts/hang_listener.pl" "$port" </dev/null >"$logfile" 2>&1 &
    HANG_PID=$!
    wait_for_port "$port" 10 || { cat "$logfile" >&2; die "hang listener is not accepting connections on port $port"; }
}

# stop_hang_listener PID: SIGTERM, then SIGKILL if it is still there after 5 s.
stop_hang_listener() {
    local pid=$1 deadline=$((SECONDS + 5))
    kill "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# prove OUTFILE SOCKDIR PORT DB FILE...: run pg_prove on FILEs (relative to
# the repository) and set PROVE_OK and PROVE_BAD to the number of files that
# passed and failed.
prove() {
    local out=$1 sockdir=$2 port=$3 db=$4 rc
    shift 4
    set +e
    (cd "$REPO" && pg_prove --psql-bin "$PG_BIN/psql" -h "$sockdir" -p "$port" \
        -U postgres -d "$db" "$@") 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    # The "Test Summary Report" lists each failing file as "FILE (Wstat: ...".
    PROVE_BAD=$({ grep -E '^[^ ].*\.sql +\(Wstat:' "$out" || true; } | awk '{print $1}' | sort -u | wc -l)
    if ((rc != 0 && PROVE_BAD == 0)); then
        PROVE_BAD=$#   # pg_prove failed as a whole
    fi
    PROVE_OK=$(($# - PROVE_BAD))
    ((PROVE_OK >= 0)) || PROVE_OK=0
}

# run_pgtap LABEL SOCKDIR PORT DB OUTFILE "EXTENSION..." FILE...: create
# database DB with the extensions, run pg_prove on the FILEs, print
# "LABEL: N passed, N failed" and add the counts to PASSED and FAILED
# (every file counts as failed when the database cannot be set up).
run_pgtap() {
    local label=$1 sockdir=$2 port=$3 db=$4 out=$5 ext ok bad
    local create=()
    for ext in $6; do
        create+=(-c "CREATE EXTENSION $ext")
    done
    shift 6
    if pg_psql "$sockdir" "$port" postgres -q -c "CREATE DATABASE $db" &&
        pg_psql "$sockdir" "$port" "$db" -q "${create[@]}"; then
        prove "$out" "$sockdir" "$port" "$db" "$@"
        ok=$PROVE_OK
        bad=$PROVE_BAD
    else
        echo "$label: could not set up database $db; counting every test file as failed"
        ok=0
        bad=$#
    fi
    echo "$label: $ok passed, $bad failed"
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
}
