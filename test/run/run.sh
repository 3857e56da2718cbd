#!/usr/bin/env bash
# test/run/run.sh: `make run` is safe to run again at once, `make stop` stops
# everything, and a failed `make run` leaves nothing half-started (run by
# scripts/test.sh; prints TAP).
#  - port_in_use counts a listener, not the TIME_WAIT connections that a
#    server which closed them first leaves on its port: memcached starts
#    there at once;
#  - `make run` twice in a row, with such a TIME_WAIT on the memcached port in
#    between, both succeed and serve (PostgreSQL, memcached, /health);
#  - `make run` refuses a port that another program holds before it stops
#    the running servers, which go on serving;
#  - `make stop` leaves nothing listening and no process behind;
#  - a `make run` that fails after starting memcached stops it again.
# Its own directories and free ports: the checkout's .pgdata is not touched.
#   needs: PORT WORKDIR (and scripts/common.sh)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

T_PORT=$(free_port $((PORT + 23)))
MR_PORT=$(free_port $((T_PORT + 1)))
MR_MC=$(free_port $((MR_PORT + 1)))
MR_HTTP=$(free_port $((MR_MC + 1)))
MR_ENV=(OPSFLAGS_PORT="$MR_PORT" OPSFLAGS_MEMCACHED_PORT="$MR_MC" OPSFLAGS_HTTP_PORT="$MR_HTTP"
        OPSFLAGS_DATADIR="$WORKDIR/mr_data" OPSFLAGS_RUNDIR="$WORKDIR/mr_run")
T_PIDFILE=$WORKDIR/run_test_memcached.pid
SERVER_PID=''

cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null
    stop_memcached "$T_PIDFILE" >/dev/null 2>&1
    env "${MR_ENV[@]}" make -s -C "$REPO" stop >/dev/null 2>&1
}
trap cleanup EXIT
echo "1..10"

listening() { [[ -n $(ss -Hltn "sport = :$1") ]]; }
time_wait() { [[ -n $(ss -Htn state time-wait "sport = :$1") ]]; }
# server_closes_first PORT [TEXT]: connect, send TEXT, read until the server
# closes, then close: the server's side stays in TIME_WAIT on PORT.
server_closes_first() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    [[ -n ${2:-} ]] && printf '%s' "$2" >&3
    timeout 5 cat <&3 >/dev/null
    exec 3<&-
}

# 1-3. A server that accepts one connection and closes it.
perl -MSocket -e '
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!";
    bind($s, pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"))) or die "bind: $!";
    listen($s, 5) or die "listen: $!";
    accept(my $c, $s) or die "accept: $!";
    close($c);' "$T_PORT" &
SERVER_PID=$!
wait_for 10 listening "$T_PORT"
port_in_use "$T_PORT"
ok $? "port_in_use: a port with a listener is in use"
server_closes_first "$T_PORT"
wait "$SERVER_PID"
SERVER_PID=''
time_wait "$T_PORT" && ! listening "$T_PORT" && ! port_in_use "$T_PORT"
ok $? "port_in_use: a port whose server has gone, with its connection in TIME_WAIT, is free"
(start_memcached "$T_PORT" "$T_PIDFILE") >/dev/null 2>&1 && memcached_pid "$T_PIDFILE" >/dev/null
ok $? "memcached starts on that port at once"
stop_memcached "$T_PIDFILE" >/dev/null 2>&1

# serving: PostgreSQL with opsflags, its memcached, and /health answer.
serving() {
    [[ $(pg_psql "$WORKDIR/mr_run" "$MR_PORT" postgres -Atq \
        -c "SELECT opsflags.feature_enabled('posts.ai_generation', 'u1', 'admin')") == t ]] &&
        [[ $(printf 'version\r\nquit\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$MR_MC; cat >&3; cat <&3") == VERSION* ]] &&
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MR_HTTP/health") == 200 ]]
}

# 4-7. make run, TIME_WAIT on the memcached port, make run again.
env "${MR_ENV[@]}" make -s -C "$REPO" run >"$WORKDIR/make_run_1.log" 2>&1
rc=$?
ok $rc "make run (ports $MR_PORT, $MR_MC, $MR_HTTP)"
((rc == 0)) || tail -n 5 "$WORKDIR/make_run_1.log" | sed 's/^/# /'
serving
ok $? "PostgreSQL with opsflags, memcached and /health answer"
server_closes_first "$MR_MC" $'quit\r\n'
time_wait "$MR_MC"
tw=$?
first_pid=$(head -n 1 "$WORKDIR/mr_data/postmaster.pid" 2>/dev/null)
env "${MR_ENV[@]}" make -s -C "$REPO" run >"$WORKDIR/make_run_2.log" 2>&1
rc=$?
((tw == 0)) || echo "# no connection was left in TIME_WAIT on memcached's port"
ok $((rc || tw)) "make run again at once, with a connection in TIME_WAIT on memcached's port"
((rc == 0)) || tail -n 5 "$WORKDIR/make_run_2.log" | sed 's/^/# /'
[[ -n $first_pid && $(head -n 1 "$WORKDIR/mr_data/postmaster.pid" 2>/dev/null) != "$first_pid" ]] && serving
ok $? "a new PostgreSQL, memcached and /health answer again"

# 8. make run with a port that another program holds refuses before it
# stops anything: the running servers keep serving.
perl -MSocket -e '
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!";
    bind($s, pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"))) or die "bind: $!";
    listen($s, 5) or die "listen: $!";
    sleep 60;' "$T_PORT" &
SERVER_PID=$!
wait_for 10 listening "$T_PORT"
env "${MR_ENV[@]}" OPSFLAGS_MEMCACHED_PORT="$T_PORT" make -s -C "$REPO" run >"$WORKDIR/make_run_busy.log" 2>&1
rc=$?
kill "$SERVER_PID" 2>/dev/null
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=''
((rc != 0)) && grep -q "port $T_PORT on 127.0.0.1 is used by something else" "$WORKDIR/make_run_busy.log" &&
    ! grep -q "stopping" "$WORKDIR/make_run_busy.log" && serving
ok $? "make run with a port another program listens on refuses, and the running servers go on serving"

# 9. make stop: nothing of it is left.
mc=$(memcached_pid "$WORKDIR/mr_run/memcached.pid")
env "${MR_ENV[@]}" make -s -C "$REPO" stop >/dev/null 2>&1 &&
    ! listening "$MR_PORT" && ! listening "$MR_MC" && ! listening "$MR_HTTP" &&
    [[ -n $mc && ! -e /proc/$mc && ! -e $WORKDIR/mr_data/postmaster.pid ]]
ok $? "make stop: no PostgreSQL, memcached or HTTP server left"

# 10. A make run that fails after memcached has started (its data directory
# cannot be created) stops memcached again.
touch "$WORKDIR/mr_not_a_dir"
env "${MR_ENV[@]}" OPSFLAGS_DATADIR="$WORKDIR/mr_not_a_dir" make -s -C "$REPO" run >"$WORKDIR/make_run_3.log" 2>&1
rc=$?
grep -q "starting memcached" "$WORKDIR/make_run_3.log" && ((rc != 0)) && ! listening "$MR_MC" &&
    ! memcached_pid "$WORKDIR/mr_run/memcached.pid" >/dev/null
ok $? "a make run that fails after starting memcached stops it and fails"

tap_done
