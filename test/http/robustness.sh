#!/usr/bin/env bash
# test/http/robustness.sh: tries hard to break the HTTP server of the
# "opsflags http" worker, against the test cluster (run by scripts/test.sh;
# prints TAP).  The clients are test/http/robustness.pl.
#  - 350-odd generated hostile requests (random bytes, NUL, CR/LF in odd
#    places, heads just under and over 8192 bytes, many headers, bare LF,
#    pipelined garbage, non-ASCII and percent-encoded paths, /flags/ with
#    odd names, absolute-form and * targets, odd methods and versions,
#    continuation lines, duplicate Connection, odd Content-Length, chunked,
#    requests cut short or reset): every response well formed, with a known
#    code, the expected one where it is fixed;
#  - 3,000 connections, some cut short mid-request or mid-response: the
#    worker's sockets, descriptors and memory come back to their idle values;
#  - 20 and 60 clients at once (40 slots): only 200 for the 20, 200 or 503
#    "too many connections" for the 60, every slot free afterwards;
#  - clients that never read a large response, one that floods after its
#    answer and one that pipelines without end: /livez still answers within
#    1 s, and the stalled ones are reset after opsflags.http_timeout;
#  - the worker out of file descriptors: no busy loop, no log flood, every
#    waiting client answered once descriptors free up;
#  - nothing pipelined after a response that closes the connection is run;
#  - throughout: the same worker process, no crash in the server log.
#   needs: SOCKDIR PORT WORKDIR OPSFLAGS_TEST_LOG
#   ROBUST_SEED=N repeats a run's generated requests (the seed is printed)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

q() { pg_psql "$SOCKDIR" "$PORT" opsflags_tap -Atq "$@"; }
H=$(free_port $((PORT + 40)))
U=http://127.0.0.1:$H
PL=$REPO/test/http/robustness.pl
TIMEOUT_S=2
SEED=${ROBUST_SEED:-$((RANDOM * 32768 + RANDOM))}
W=''        # the worker's pid
LIMITS=''   # its open-file limits (soft:hard) while they are lowered
BG=()       # background clients

cleanup() {
    local p
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
    [[ -n $LIMITS ]] && as_pg prlimit --pid "$W" --nofile="$LIMITS" 2>/dev/null
    q -c "DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'robustness.%'" \
      -c "ALTER SYSTEM RESET opsflags.http_port" -c "ALTER SYSTEM RESET opsflags.http_timeout" \
      -c "ALTER SYSTEM RESET opsflags.http_max_connections" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
}
trap cleanup EXIT

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
answers() { [[ $(code "$1") == "$2" ]]; }
worker_pid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'opsflags http'"; }
log_size() { stat -c %s "$OPSFLAGS_TEST_LOG"; }
# new_log OFFSET: the server log from byte OFFSET on
new_log() { tail -c +$(($1 + 1)) "$OPSFLAGS_TEST_LOG"; }
crash_lines() { new_log "$1" | grep -aE 'terminated by signal|PANIC|server process .* exited|background worker "opsflags http".* exited'; }
# the worker's descriptors, and those of them that are sockets
fds() { as_pg ls /proc/"$W"/fd | wc -l; }
sockets() { as_pg find /proc/"$W"/fd -lname 'socket:*' | wc -l; }
sockets_are() { [[ $(sockets) == "$1" ]]; }
rss_anon() { awk '/^RssAnon:/ {print $2}' /proc/"$W"/status; }
cpu_ticks() { awk '{print $14 + $15}' /proc/"$W"/stat; }
# mem_used: bytes used in the worker's memory contexts (its grand total, as
# pg_log_backend_memory_contexts() logs it)
mem_used() {
    local off
    off=$(log_size)
    q -c "SELECT pg_log_backend_memory_contexts($W)" >/dev/null
    wait_for 10 bash -c "tail -c +$((off + 1)) '$OPSFLAGS_TEST_LOG' | grep -aq '\\[$W\\] LOG:  Grand total:'" || { echo -1; return; }
    new_log "$off" | grep -a -m1 "\\[$W\\] LOG:  Grand total:" | sed -E 's/.* ([0-9]+) used$/\1/'
}
# livez_probes N: N GETs of /livez; true when each was 200 within 1 s;
# prints the slowest time
livez_probes() {
    local i r worst=0 bad=0
    for ((i = 0; i < $1; i++)); do
        r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 1 "$U/livez")
        [[ $r == "200 "* ]] || bad=1
        worst=$(awk -v a="$worst" -v b="${r#* }" 'BEGIN {print (b + 0 > a + 0 ? b : a)}')
    done
    echo "$worst"
    return $bad
}
# field KEY FILE: the value of KEY=VALUE on the first line of FILE
field() { head -n 1 "$2" | grep -oE "(^| )$1=[^ ]*" | head -n 1 | cut -d= -f2; }
now() { echo "$EPOCHREALTIME"; }
# raw BYTES: send BYTES (printf %b) on a new connection, print all the
# server says until it closes (at most 10 s)
raw() { timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf "%b" "$1" >&3 && cat <&3' "$H" "$1"; }
# requests_total: the server's answers by status code, "200:N 400:N ..."
requests_total() {
    curl -s --max-time 10 "$U/metrics" |
        sed -nE 's/^opsflags_http_requests_total\{code="([0-9]+)"\} ([0-9]+)$/\1:\2/p' | paste -sd' '
}
# diff_counts BEFORE AFTER: the codes whose count changed, "code:change ..."
# (the /metrics requests themselves left out)
diff_counts() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, ":"); c[kv[1]] = kv[2] }
        n = split(b, y, " "); for (i = 1; i <= n; i++) { split(y[i], kv, ":"); d = kv[2] - c[kv[1]]
            if (kv[1] == 200) d -= 1
            if (d != 0) out = out (out == "" ? "" : " ") kv[1] ":" d }
        print out }'
}
# tell FD: the line a waiting client reads (in a subshell: a client that
# is gone makes it fail, not end this script with SIGPIPE)
tell() { (echo go >&"$1") 2>/dev/null; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }

echo "1..16"

# 1. On, with a 2 s timeout and room for 40 clients
q -c "ALTER SYSTEM SET opsflags.http_port = $H" -c "ALTER SYSTEM SET opsflags.http_timeout = '${TIMEOUT_S}s'" \
  -c "ALTER SYSTEM SET opsflags.http_max_connections = 40" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 15 answers "$U/livez" 200
ok $? "a reload with opsflags.http_port = $H starts it (opsflags.http_timeout = ${TIMEOUT_S}s, http_max_connections = 40)"
W=$(worker_pid)
LOG0=$(log_size)
for path in / /livez /readyz /health /metrics /api/status /flags/production /nope; do code "$U$path" >/dev/null; done

# 2-3. Generated hostile requests
echo "# seed $SEED (ROBUST_SEED=$SEED repeats these requests)"
perl "$PL" fuzz "$H" "$SEED" "$TIMEOUT_S" 16 >"$WORKDIR/fuzz.out" 2>&1
sed 's/^/# /; s/^# # /# /' "$WORKDIR/fuzz.out" | head -n 40
n=$(field cases "$WORKDIR/fuzz.out")
[[ ${n:-0} -ge 300 && $(field run "$WORKDIR/fuzz.out") == "$n" && $(field bad "$WORKDIR/fuzz.out") == 0 ]]
ok $? "${n:-no} generated hostile requests: every response is well formed HTTP/1.1 with a known code and its Content-Length, as expected where the answer is fixed"
bad=$(crash_lines "$LOG0")
[[ $(worker_pid) == "$W" && -z $bad ]] && answers "$U/livez" 200
ok $? "... after them the worker is the same process ($W), the log shows no crash, /livez is 200${bad:+: $bad}"

# 4. Nothing after a response that closes the connection is answered (the
# server's own count of answers by status code tells)
before=$(requests_total)
r1=$(raw 'GET /nope HTTP/1.1\r\nConnection: close\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n' | tr -d '\r')
r2=$(raw 'BLAH\r\n\r\nGET /nope HTTP/1.1\r\n\r\n' | tr -d '\r')
after=$(requests_total)
echo "# answers by code before: $before; after: $after"
[[ $(grep -c '^HTTP/1.1 ' <<<"$r1") == 1 && $r1 == "HTTP/1.1 404 "* && $(grep -c '^HTTP/1.1 ' <<<"$r2") == 1 && $r2 == "HTTP/1.1 400 "* &&
   $(diff_counts "$before" "$after") == "400:1 404:1" ]]
ok $? "requests pipelined after a Connection: close or a 400 are neither answered nor run (counted: $(diff_counts "$before" "$after"))"

# 5-6. No leaks: 3,000 connections in two halves, some cut short
LISTENING=$(ss -Hltn "( sport = :$H )" | wc -l)
wait_for $((TIMEOUT_S + 10)) sockets_are "$LISTENING"
S0=$(sockets) F0=$(fds) R0=$(rss_anon)
for half in 1 2; do
    perl "$PL" churn "$H" 1500 4 "$SEED$half" >"$WORKDIR/churn$half.out" 2>&1
    sed 's/^/# /; s/^# # /# /' "$WORKDIR/churn$half.out" | head -n 10
    wait_for $((TIMEOUT_S + 10)) sockets_are "$S0"
    eval "S$half=\$(sockets) F$half=\$(fds) R$half=\$(rss_anon) M$half=\$(mem_used)"
done
echo "# worker $W: sockets $S0 idle, $S1 and $S2 after each half; descriptors $F0, $F1, $F2"
echo "# RssAnon $R0 kB idle, $R1 kB and $R2 kB after each half; memory contexts used $M1 and $M2 bytes after each half"
[[ $(field bad "$WORKDIR/churn1.out") == 0 && $(field bad "$WORKDIR/churn2.out") == 0 &&
   $S1 == "$S0" && $S2 == "$S0" && $F1 == "$F0" && $F2 == "$F0" ]]
ok $? "3,000 connections (whole requests, keep-alive, cut mid-request by FIN or RST, mid-response): answers well formed; sockets and descriptors back to their idle count ($S0 sockets, $F0 descriptors)"
[[ $R2 -le $((R1 + 256)) && $M2 -gt 0 && $M1 -gt 0 && $M2 -le $((M1 + 16384)) ]]
ok $? "... memory does not grow from the first half to the second (RssAnon $R1 -> $R2 kB, at most +256; contexts $M1 -> $M2 bytes, at most +16 kB)"

# 7-9. Many clients at once
perl "$PL" parallel "$H" 20 15 >"$WORKDIR/parallel20.out" 2>&1
sed 's/^/# 20 clients: /; s/^# 20 clients: # /# /' "$WORKDIR/parallel20.out" | head -n 10
a=$(field ok "$WORKDIR/parallel20.out") b=$(field busy "$WORKDIR/parallel20.out")
[[ $a == 300 ]]
ok $? "20 clients at once, 15 requests each over new connections (/livez, /health, /metrics, /api/status, /flags/production): all well formed and, within the 40 slots, all 200 ($a; $b are 503 too many connections)"
perl "$PL" parallel "$H" 60 4 >"$WORKDIR/parallel60.out" 2>&1
sed 's/^/# 60 clients: /; s/^# 60 clients: # /# /' "$WORKDIR/parallel60.out" | head -n 10
a=$(field ok "$WORKDIR/parallel60.out") b=$(field busy "$WORKDIR/parallel60.out")
[[ $((a + b)) == 240 && $a -gt 0 && $b -gt 0 ]]
ok $? "60 clients at once (40 slots): all well formed, $a are 200 and $b 503 too many connections, none unanswered"
wait_for $((TIMEOUT_S + 10)) sockets_are "$S0"
s=$?
[[ $s == 0 ]] && answers "$U/livez" 200 && answers "$U/flags/production" 200
ok $? "afterwards every slot is free again: $(sockets) sockets as when idle, and fresh requests are 200"

# 10-11. Clients that never read: 500 flags make /api/status large; 300
# pipelined GETs of / (23 kB each) are more than the kernel buffers
q -c "INSERT INTO opsflags.feature_flags (flag_key, flag_name) SELECT 'robustness.flag_' || i, 'Robustness flag ' || i || repeat(' and more', 10) FROM generate_series(1, 500) i" \
  -c "INSERT INTO opsflags.feature_flag_configs (flag_id, environment) SELECT id, 'production' FROM opsflags.feature_flags WHERE flag_key LIKE 'robustness.%'" >/dev/null
size=$(curl -s -o /dev/null -w '%{size_download}' "$U/api/status")
rm -f "$WORKDIR/stall1.in" "$WORKDIR/stall2.in"
mkfifo "$WORKDIR/stall1.in" "$WORKDIR/stall2.in"
perl "$PL" stall "$H" /api/status 1 <"$WORKDIR/stall1.in" >"$WORKDIR/stall1.out" 2>&1 &
P1=$!
perl "$PL" stall "$H" / 300 <"$WORKDIR/stall2.in" >"$WORKDIR/stall2.out" 2>&1 &
P2=$!
BG+=("$P1" "$P2")
exec {in1}>"$WORKDIR/stall1.in" {in2}>"$WORKDIR/stall2.in"
wait_for 20 grep -q '^stalled' "$WORKDIR/stall1.out"
wait_for 20 grep -q '^stalled' "$WORKDIR/stall2.out"
t0=$(now)
worst=$(livez_probes 5)
ok $? "while a client that never reads stalls on /api/status ($size bytes) and another on 300 pipelined GET / (7 MB), /livez answers 200 within 1 s (slowest ${worst} s)"
wait_for $((TIMEOUT_S + 10)) sockets_are "$S0"
took=$(since "$t0")
tell "$in1"
tell "$in2"
exec {in1}>&- {in2}>&-
wait "$P1" "$P2"
echo "# /api/status: $(cat "$WORKDIR/stall1.out" | paste -sd' ')"
echo "# / x 300: $(cat "$WORKDIR/stall2.out" | paste -sd' ')"
[[ $(sed -n 2p "$WORKDIR/stall1.out") == *end=reset* && $(sed -n 2p "$WORKDIR/stall2.out") == *end=reset* &&
   $(sed -n 2p "$WORKDIR/stall2.out") != *"responses=300 "* ]] &&
    awk -v t="$took" -v T="$TIMEOUT_S" 'BEGIN {exit !(t >= T - 0.5 && t <= T + 4)}'
ok $? "the server resets both after opsflags.http_timeout (${took} s): each saw a part of its answer, then the reset"
q -c "DELETE FROM opsflags.feature_flags WHERE flag_key LIKE 'robustness.%'" >/dev/null

# 12-13. One client floods bytes after its 400, another pipelines /livez without end
perl "$PL" flood "$H" linger 3 >"$WORKDIR/flood1.out" 2>&1 &
P1=$!
perl "$PL" flood "$H" pipeline 3 >"$WORKDIR/flood2.out" 2>&1 &
P2=$!
BG+=("$P1" "$P2")
wait_for 10 grep -q '^flooding' "$WORKDIR/flood1.out"
wait_for 10 grep -q '^flooding' "$WORKDIR/flood2.out"
worst=$(livez_probes 5)
r=$?
wait "$P1" "$P2"
f1=$(sed -n 2p "$WORKDIR/flood1.out") f2=$(sed -n 2p "$WORKDIR/flood2.out")
echo "# flooding after a 400: $f1"
echo "# pipelining: $f2"
[[ $r == 0 && $f2 =~ responses=([0-9]+) && ${BASH_REMATCH[1]} -gt 0 ]]
ok $? "while one client floods bytes after its 400 and another pipelines requests without end, /livez answers 200 within 1 s (slowest ${worst} s)"
[[ $f1 =~ after=([0-9.]+)s && $f1 != *end=done* ]] && awk -v t="${BASH_REMATCH[1]}" 'BEGIN {exit !(t < 2.8)}'
ok $? "... the flooding client is cut off after its second of lingering"

# 14-15. Out of file descriptors: the worker's limit lowered to 10 above what it has open
read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' /proc/"$W"/limits)
wait_for $((TIMEOUT_S + 10)) sockets_are "$S0"
n=$(fds)
if as_pg prlimit --pid "$W" --nofile=$((n + 10)):"$hard" 2>/dev/null; then
    LIMITS=$soft:$hard
    off=$(log_size)
    rm -f "$WORKDIR/hold.in"
    mkfifo "$WORKDIR/hold.in"
    perl "$PL" hold "$H" 30 <"$WORKDIR/hold.in" >"$WORKDIR/hold.out" 2>&1 &
    P1=$!
    BG+=("$P1")
    exec {inh}>"$WORKDIR/hold.in"
    wait_for 20 grep -q '^held' "$WORKDIR/hold.out"
    fds_are() { [[ $(fds) -ge $((n + 10)) ]]; }
    wait_for 10 fds_are
    full=$?
    c0=$(cpu_ticks)
    sleep 1   # a second of being out of descriptors (measured, not waited for)
    ticks=$(($(cpu_ticks) - c0))
    warnings=$(new_log "$off" | grep -ac 'could not accept a connection')
    echo "# out of descriptors ($(fds) open, limit $((n + 10))): $ticks ticks of CPU in 1 s, $warnings warnings in the log"
    [[ $full == 0 && $ticks -le 20 && $warnings -le 1 ]]
    ok $? "with its descriptors used up and 20 clients waiting, the worker does not spin ($ticks/100 s of CPU in 1 s) or flood the log ($warnings warnings)"
    tell "$inh"
    exec {inh}>&-
    wait "$P1"
    sed '1d; s/^/# /; s/^# # /# /' "$WORKDIR/hold.out" | head -n 10
    as_pg prlimit --pid "$W" --nofile="$LIMITS"
    LIMITS=''
    [[ $(sed -n 2p "$WORKDIR/hold.out") == "answered=30 of 30 "* ]] && answers "$U/livez" 200
    ok $? "... every waiting client is answered as descriptors free up, and with the limit restored /livez is 200"
else
    echo "ok $((tap_n + 1)) # SKIP prlimit cannot lower the worker's open-file limit here"
    echo "ok $((tap_n + 2)) # SKIP prlimit cannot lower the worker's open-file limit here"
    tap_n=$((tap_n + 2))
fi

# 16. Throughout: the same worker, no crash
bad=$(crash_lines "$LOG0")
[[ $(worker_pid) == "$W" && -z $bad ]] && answers "$U/livez" 200
ok $? "throughout, the worker is the same process ($W), the server log shows no crash or restart, /livez is 200${bad:+: $bad}"

tap_done
