#!/usr/bin/env bash
# test/standby/standby.sh: a streaming standby of the test cluster, built with
# pg_basebackup (run by scripts/test.sh; prints TAP, exits non-zero on any
# failure).  On the standby: flags, configuration and health answer and
# follow the primary after replay; admin functions fail as read-only; the
# sampler writes nothing and logs no error.  After pg_promote() the sampler
# samples; after a SIGKILL of it (a crash: the server restarts) it is back and
# samples again.
#   needs: PRIMARY_SOCKDIR PRIMARY_PORT WORKDIR (and scripts/common.sh)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result

SB_DATADIR=$WORKDIR/data_standby
SB_SOCKDIR=$WORKDIR/sock_standby
SB_LOGFILE=$WORKDIR/postgres_standby.log
SB_PORT=$(free_port $((PRIMARY_PORT + 7)))
SB_HTTP=$(free_port $((SB_PORT + 1)))
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

cleanup() { stop_cluster "$SB_DATADIR" >/dev/null 2>&1; }
trap cleanup EXIT

p() { pg_psql "$PRIMARY_SOCKDIR" "$PRIMARY_PORT" opsflags_tap -Atq "$@"; }
s() { pg_psql "$SB_SOCKDIR" "$SB_PORT" opsflags_tap -Atq "$@"; }
replayed() {   # the standby has replayed the primary's current WAL position
    local lsn
    lsn=$(p -c "SELECT pg_current_wal_lsn()") || return 1
    [[ $(s -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn") == t ]]
}

echo "1..18"

mkdir -p "$SB_DATADIR"
give_to_server "$SB_DATADIR"
chmod 700 "$SB_DATADIR"
as_pg "$PG_BIN/pg_basebackup" -h "$PRIMARY_SOCKDIR" -p "$PRIMARY_PORT" -U postgres \
    -D "$SB_DATADIR" -R -X stream -c fast >>"$SB_LOGFILE" 2>&1
ok $? "pg_basebackup of the test cluster"
start_cluster "$SB_DATADIR" "$SB_PORT" "$SB_SOCKDIR" "$SB_LOGFILE" "fsync = off" \
    "opsflags.database = 'opsflags_tap'" "opsflags.sample_interval = '200ms'" \
    "opsflags.http_port = $SB_HTTP" >/dev/null
ok $? "the standby starts"

[[ $(s -c "SELECT pg_is_in_recovery()") == t ]]
ok $? "it is in recovery"

standby_idle() { [[ $(s -c "SELECT opsflags.worker_status() ->> 'state'") == 'standby: not sampling' ]]; }
wait_for 30 standby_idle
ok $? "the sampler runs on the standby and does not sample"

# Flags and configuration follow the primary after replay.
p -c "SELECT opsflags.create_flag('tap.sb.flag', 'Standby') IS NOT NULL" \
  -c "SELECT opsflags.toggle_flag('tap.sb.flag', false)" \
  -c "SELECT opsflags.config_set('tap.sb.key', '\"one\"')" >/dev/null
wait_for 30 replayed
[[ $(s -c "SELECT opsflags.feature_enabled('tap.sb.flag', 'u1')") == f ]]
ok $? "feature_enabled answers on the standby"
p -c "SELECT opsflags.toggle_flag('tap.sb.flag', true)" -c "SELECT opsflags.config_set('tap.sb.key', '\"two\"')" >/dev/null
wait_for 30 replayed
[[ $(s -c "SELECT opsflags.feature_enabled('tap.sb.flag', 'u1')") == t &&
   $(s -c "SELECT opsflags.config_get('tap.sb.key')") == '"two"' ]]
ok $? "after replay, the standby's next statement sees the primary's flip and config change"
[[ $(s -c "SELECT opsflags.health_status() ->> 'status'") =~ ^(healthy|degraded|unhealthy)$ ]]
ok $? "health_status answers on the standby"

# HTTP on the standby: ready while replay keeps up, not when it lags more
# than health.thresholds' replication_lag_s (-1 here: any lag is too much).
readyz() { curl -s -w ' %{http_code}' --max-time 10 "http://127.0.0.1:$SB_HTTP/readyz"; }
ready_ok() { [[ $(readyz) == '{"ready": true} 200' ]]; }
wait_for 30 ready_ok
ok $? "/readyz on the standby is 200 while replay keeps up"
m=$(curl -s --max-time 10 "http://127.0.0.1:$SB_HTTP/metrics")
grep -qx 'opsflags_in_recovery 1' <<<"$m" && grep -qE '^opsflags_replication_lag_seconds [0-9.e+-]+$' <<<"$m"
ok $? "/metrics on the standby says it is in recovery and gives the replay lag"
p -c "SELECT opsflags.config_set('health.thresholds', '{\"replication_lag_s\": -1}')" >/dev/null
wait_for 30 replayed
r=$(readyz)
p -c "SELECT opsflags.config_delete('health.thresholds')" >/dev/null
wait_for 30 replayed
[[ $r == '{"ready": false, "reason": "standby replay lags 0.0 s (threshold -1 s)"} 503' ]] && ready_ok
ok $? "/readyz on the standby is 503 when the lag exceeds the threshold, 200 again after (got: $r)"

out=$(s -c "SELECT opsflags.toggle_flag('tap.sb.flag', false)" 2>&1)
[[ $out == *"read-only transaction"* ]]
ok $? "an admin function fails on the standby with a read-only error"

! grep -E "ERROR|FATAL" "$SB_LOGFILE" | grep -v "read-only transaction" | grep -v "toggle_flag" | grep -q .
ok $? "the standby's log has no error besides the refused admin call"

# Promotion: the sampler starts sampling.
s -c "SELECT pg_promote()" >/dev/null
sampling() { [[ $(s -c "SELECT count(*) FROM opsflags.system_health WHERE source = 'sampler' AND recorded_at > now() - interval '1 minute'") -ge 2 ]]; }
wait_for 60 sampling
ok $? "after pg_promote() the sampler samples"

# A crash of the sampler (SIGKILL): the server restarts and so does it.
pid=$(s -c "SELECT (opsflags.worker_status() ->> 'pid')")
as_pg kill -9 "$pid"
back() { [[ $(s -c "SELECT (opsflags.worker_status() ->> 'pid') <> '$pid' AND (opsflags.worker_status() ->> 'samples')::int >= 2") == t ]]; }
wait_for 60 back
ok $? "after a SIGKILL of the sampler it is back and samples again"
[[ $(s -c "SELECT count(*) FROM opsflags.feature_flags WHERE flag_key = 'tap.sb.flag'") == 1 ]]
ok $? "after the crash restart the data is intact"

# A backend killed (SIGKILL) in the middle of a flag change: the server
# restarts, the change is gone, everything else is intact and the
# shared-memory counters start afresh.
s -c "SELECT opsflags.toggle_flag('tap.sb.flag', true)" >/dev/null
s -c "SELECT count(*) FILTER (WHERE opsflags.feature_enabled('tap.sb.flag', 'u' || i)) FROM generate_series(1, 50) i" >/dev/null
used_before=$(s -c "SELECT true_count FROM opsflags.flag_usage WHERE flag_key = 'tap.sb.flag'")
"$PG_BIN/psql" -X -q -h "$SB_SOCKDIR" -p "$SB_PORT" -U postgres -d opsflags_tap \
    -c "SET application_name = 'tap_sb_victim'" -c "BEGIN" \
    -c "SELECT opsflags.toggle_flag('tap.sb.flag', false)" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
victim_shell=$!
victim_pid() { s -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'tap_sb_victim' AND state = 'active' AND query LIKE '%pg_sleep%'" 2>/dev/null | grep -E '^[0-9]+$'; }
wait_for 30 victim_pid
vpid=$(victim_pid)
as_pg kill -9 "$vpid"
wait $victim_shell 2>/dev/null
server_back() { [[ $(s -c "SELECT opsflags.worker_status() ->> 'running'") == true ]]; }
wait_for 60 server_back
[[ $(s -c "SELECT opsflags.feature_enabled('tap.sb.flag', 'u1')") == t ]]
ok $? "after a SIGKILL of a backend in the middle of a flag change, the change is gone"
[[ $(s -c "SELECT count(*) FROM opsflags.feature_flags WHERE flag_key = 'tap.sb.flag'") == 1 &&
   $(s -c "SELECT bool_and(n = (SELECT count(*) FROM opsflags.environments)) FROM (SELECT count(*) n FROM opsflags.feature_flag_configs GROUP BY flag_id) c") == t ]]
ok $? "the data is consistent after recovery (one config per flag and environment)"
used_after=$(s -c "SELECT true_count FROM opsflags.flag_usage WHERE flag_key = 'tap.sb.flag'")
[[ -n $used_before && $used_before -ge 50 && -n $used_after && $used_after -lt 50 ]]
ok $? "shared-memory counters start afresh after the crash restart (usage $used_before before, $used_after after)"

p -c "DELETE FROM opsflags.feature_flags WHERE flag_key = 'tap.sb.flag'" \
  -c "SELECT opsflags.config_delete('tap.sb.key')" >/dev/null
mkdir -p "$REPO/.run" && cp "$SB_LOGFILE" "$REPO/.run/test-postgres-standby.log"
tap_done
