#!/usr/bin/env bash
# test/crash/crash.sh: SIGKILL of the postmaster in the middle of a pgbench
# run (flag flips, evaluations, config sets, audited writes) while another
# session holds an uncommitted flag change, maintenance-mode change and
# audited write; on a cluster of its own (run by scripts/test.sh; prints
# TAP).  Once every child of the killed postmaster is gone the server is
# started again: crash recovery ran, the uncommitted changes are gone, the
# data is consistent (one config per flag and environment, every committed
# audited row has its audit row and every audit row its row, each flag
# config and configuration row equal to its last audit image, B-tree
# indexes intact), the sampler is back, and the shared-memory state starts
# afresh (usage counts, error counter, maintenance state read back from the
# table and enforced).
#   needs: PORT (free ports are searched from PORT + 13) WORKDIR (and scripts/common.sh)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

CR_DATADIR=$WORKDIR/data_crash
CR_SOCKDIR=$WORKDIR/sock_crash
CR_LOGFILE=$WORKDIR/postgres_crash.log
CR_PORT=$(free_port $((PORT + 13)))
DB=opsflags_crash
SETTINGS=("fsync = off" "opsflags.database = '$DB'" "opsflags.sample_interval = '500ms'")
PGBENCH_PID=''
VICTIM_PID=''

cleanup() {
    [[ -n $PGBENCH_PID ]] && kill "$PGBENCH_PID" 2>/dev/null && wait "$PGBENCH_PID" 2>/dev/null
    [[ -n $VICTIM_PID ]] && kill "$VICTIM_PID" 2>/dev/null && wait "$VICTIM_PID" 2>/dev/null
    stop_cluster "$CR_DATADIR" >/dev/null 2>&1
    mkdir -p "$REPO/.run" && cp "$CR_LOGFILE" "$REPO/.run/test-postgres-crash.log" 2>/dev/null
}
trap cleanup EXIT

c() { pg_psql "$CR_SOCKDIR" "$CR_PORT" "$DB" -Atq "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
# children_of PID: the pids whose parent is PID (from /proc; a process's name
# may hold spaces, so fields are counted after its closing parenthesis).
children_of() {
    awk -v pp="$1" '{ sub(/^.*\) /, ""); if ($2 == pp) print FILENAME }' /proc/[0-9]*/stat 2>/dev/null |
        sed 's|^/proc/\([0-9]*\)/stat$|\1|'
}
# all_gone PID...: none of them is alive (a zombie counts as gone).
all_gone() {
    local pid state
    for pid in "$@"; do
        state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
        [[ -z $state || $state == Z ]] || return 1
    done
}
# reaped PID: no such process, not even a zombie (a new postmaster refuses
# to start while the pid in postmaster.pid answers kill 0).
reaped() { [[ ! -e /proc/$1 ]]; }

echo "1..15"

start_cluster "$CR_DATADIR" "$CR_PORT" "$CR_SOCKDIR" "$CR_LOGFILE" "${SETTINGS[@]}" >/dev/null
pg_psql "$CR_SOCKDIR" "$CR_PORT" postgres -q -c "CREATE DATABASE $DB" >/dev/null &&
c >/dev/null <<'SQL'
CREATE EXTENSION opsflags;
CREATE EXTENSION amcheck;
SELECT count(opsflags.create_flag('crash.' || i, 'Crash ' || i)) FROM generate_series(1, 10) i;
SELECT count(opsflags.update_flag('crash.' || i, '{"is_enabled": true, "enabled_percentage": 50}')) FROM generate_series(1, 10) i;
SELECT opsflags.create_flag('crash.victim', 'Changed by the session in flight at the crash');
SELECT opsflags.toggle_flag('crash.victim', true);
CREATE TABLE crash_orders (id bigserial PRIMARY KEY, flag boolean, note text);
SELECT opsflags.audit_table('crash_orders');
CREATE ROLE crash_app LOGIN;
GRANT INSERT ON crash_orders TO crash_app;
GRANT USAGE ON SEQUENCE crash_orders_id_seq TO crash_app;
-- Maintenance mode on (pgbench runs as a superuser, which may write).
SELECT opsflags.set_maintenance_mode(true, 'crash test');
SQL
ok $? "a cluster of its own with opsflags preloaded, flags, an audited table, maintenance mode on"

cat >"$WORKDIR/crash_flip.sql" <<'SQL'
\set f random(1, 10)
\set on random(0, 1)
SELECT opsflags.toggle_flag('crash.' || :f, :on = 1);
SQL
cat >"$WORKDIR/crash_eval.sql" <<'SQL'
\set f random(1, 10)
\set u random(1, 100000)
SELECT opsflags.feature_enabled('crash.' || :f, 'user-' || :u), opsflags.feature_value('crash.' || :f, 'user-' || :u);
SQL
cat >"$WORKDIR/crash_config.sql" <<'SQL'
\set k random(1, 5)
\set v random(1, 1000000)
SELECT opsflags.config_set('crash.key.' || :k, to_jsonb(:v::int));
SQL
cat >"$WORKDIR/crash_write.sql" <<'SQL'
\set f random(1, 10)
INSERT INTO crash_orders (flag, note) VALUES (opsflags.feature_enabled('crash.' || :f, 'writer'), 'crash');
SQL
chmod a+r "$WORKDIR"/crash_*.sql

# Some errors for the error counter to count.
for _ in 1 2 3; do c -c "SELECT 1 / 0" >/dev/null 2>&1; done

"$PG_BIN/pgbench" -n -h "$CR_SOCKDIR" -p "$CR_PORT" -U postgres -c 4 -j 2 -T 120 -M prepared \
    -f "$WORKDIR/crash_flip.sql@2" -f "$WORKDIR/crash_eval.sql@10" \
    -f "$WORKDIR/crash_config.sql@2" -f "$WORKDIR/crash_write.sql@3" "$DB" >"$WORKDIR/crash_pgbench.out" 2>&1 &
PGBENCH_PID=$!
busy() {
    [[ $(c -c "SELECT (SELECT count(*) FROM crash_orders) >= 200
                  AND (SELECT count(*) FROM opsflags.audit_log WHERE resource_type = 'flag_config') >= 100
                  AND (SELECT count(*) FROM opsflags.audit_log WHERE resource_type = 'config') >= 50") == t ]]
}
wait_for 60 busy
ok $? "pgbench flips, evaluates, sets configuration and writes"

# A session in the middle of a flag change (and more), uncommitted.
"$PG_BIN/psql" -X -q -h "$CR_SOCKDIR" -p "$CR_PORT" -U postgres -d "$DB" \
    -c "SET application_name = 'crash_victim'" -c "BEGIN" \
    -c "SELECT opsflags.toggle_flag('crash.victim', false)" \
    -c "SELECT opsflags.set_maintenance_mode(false)" \
    -c "INSERT INTO crash_orders (flag, note) VALUES (false, 'victim')" \
    -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
VICTIM_PID=$!
victim_waits() { [[ $(c -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'crash_victim' AND state = 'active' AND query LIKE '%pg_sleep%'") == 1 ]]; }
wait_for 30 victim_waits

sampling() { [[ $(c -c "SELECT (opsflags.worker_status() ->> 'samples')::int >= 1") == t ]]; }
wait_for 60 sampling
IFS='|' read -r usage_before errors_before worker_pid_before samples_before < <(c -c "
    SELECT (SELECT coalesce(sum(true_count + false_count), 0) FROM opsflags.flag_usage_counts()),
           opsflags.errors_last_hour(), opsflags.worker_status() ->> 'pid', opsflags.worker_status() ->> 'samples'")
echo "# before the crash: $usage_before evaluations counted, $errors_before errors in the last hour, sampler pid $worker_pid_before with $samples_before samples"

# SIGKILL of the postmaster, everything still running.
pm=$(head -n 1 "$CR_DATADIR/postmaster.pid")
mapfile -t children < <(children_of "$pm")
t_kill=$(now)
as_pg kill -9 "$pm"
ok $? "SIGKILL of the postmaster (pid $pm, ${#children[@]} children) in the middle of the run"

gone() { all_gone "${children[@]}" && reaped "$pm"; }
wait_for 60 gone
ok $? "every child of the killed postmaster exits ($(since "$t_kill") s)"
wait_for 60 eval '! kill -0 "$PGBENCH_PID" 2>/dev/null' && wait "$PGBENCH_PID" 2>/dev/null
PGBENCH_PID=''
wait_for 60 eval '! kill -0 "$VICTIM_PID" 2>/dev/null' && wait "$VICTIM_PID" 2>/dev/null
VICTIM_PID=''
sed -n 's/^\(number of transactions actually processed\).*/# pgbench, cut off: &/p' "$WORKDIR/crash_pgbench.out"

lines0=$(wc -l <"$CR_LOGFILE")   # the dying processes' last words are above
t_start=$(now)
start_cluster "$CR_DATADIR" "$CR_PORT" "$CR_SOCKDIR" "$CR_LOGFILE" "${SETTINGS[@]}" >/dev/null 2>&1
rc=$?
recovery=$(since "$t_start")
tail -n +"$((lines0 + 1))" "$CR_LOGFILE" >"$WORKDIR/crash_restart.log"
grep -q "automatic recovery in progress" "$WORKDIR/crash_restart.log" &&
    grep -q "redo done at" "$WORKDIR/crash_restart.log" &&
    grep -q "database system is ready to accept connections" "$WORKDIR/crash_restart.log"
ok $((rc || $?)) "the server starts again after crash recovery (ready in $recovery s)"
grep -E "redo (starts|done) at|ready to accept" "$WORKDIR/crash_restart.log" | sed 's/^/# /'

# Shared memory first, before anything here evaluates a flag or fails.
IFS='|' read -r usage_rows usage_after errors_after < <(c -c "
    SELECT count(*), coalesce(sum(true_count + false_count), 0), opsflags.errors_last_hour()
    FROM opsflags.flag_usage_counts()")
logged=$(grep -cE '^[^ ]+ [^ ]+ [^ ]+ \[[0-9]+\] (ERROR|FATAL|PANIC):' "$WORKDIR/crash_restart.log")
[[ -n $usage_before && $usage_before -gt 0 && $usage_rows == 0 && $usage_after == 0 ]]
ok $? "usage counts start afresh ($usage_before evaluations before, $usage_rows flags with counts after)"
[[ -n $errors_before && $errors_before -ge 3 && $errors_after == "$logged" ]]
ok $? "the error counter starts afresh ($errors_before before; $errors_after after, the $logged ERROR/FATAL lines logged since the restart)"

[[ $(c -c "SELECT bool_and(n = (SELECT count(*) FROM opsflags.environments)) AND count(*) = (SELECT count(*) FROM opsflags.feature_flags)
           FROM (SELECT count(*) n FROM opsflags.feature_flag_configs GROUP BY flag_id) c") == t ]]
ok $? "one config per flag and environment"

[[ $(c -c "SELECT c.is_enabled FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
           WHERE f.flag_key = 'crash.victim' AND c.environment = 'production'") == t &&
   $(c -c "SELECT opsflags.feature_enabled('crash.victim', 'u1')") == t &&
   $(c -c "SELECT count(*) FROM crash_orders WHERE note = 'victim'") == 0 ]]
ok $? "the uncommitted flag change and write of the session in flight are gone"

read -r orders unmatched < <(c -F ' ' -c "
    SELECT (SELECT count(*) FROM crash_orders), count(*) FILTER (WHERE o.id IS NULL OR a.id IS NULL OR a.n > 1)
    FROM crash_orders o
    FULL JOIN (SELECT (new_values ->> 'id')::bigint AS id, count(*) AS n FROM opsflags.audit_log
               WHERE table_name = 'public.crash_orders' AND action = 'INSERT' GROUP BY 1) a ON a.id = o.id")
[[ -n $orders && $orders -ge 200 && $unmatched == 0 ]]
ok $? "every committed audited write has exactly one audit row and every audit row its write ($orders rows, $unmatched unmatched)"

read -r flag_bad config_bad < <(c -F ' ' -c "
    SELECT (SELECT count(*) FROM opsflags.feature_flag_configs c
            LEFT JOIN LATERAL (SELECT a.new_values FROM opsflags.audit_log a
                               WHERE a.resource_type = 'flag_config' AND a.new_values ->> 'flag_id' = c.flag_id::text
                                 AND a.new_values ->> 'environment' = c.environment
                               ORDER BY a.id DESC LIMIT 1) l ON true
            WHERE l.new_values IS NULL OR (l.new_values ->> 'version')::int <> c.version
               OR (l.new_values ->> 'is_enabled')::boolean <> c.is_enabled),
           (SELECT count(*) FROM opsflags.app_config c
            LEFT JOIN LATERAL (SELECT a.new_values FROM opsflags.audit_log a
                               WHERE a.resource_type = 'config' AND a.new_values ->> 'id' = c.id::text
                               ORDER BY a.id DESC LIMIT 1) l ON true
            WHERE l.new_values IS NULL OR (l.new_values ->> 'version')::int <> c.version
               OR l.new_values -> 'config_value' <> c.config_value)")
[[ $flag_bad == 0 && $config_bad == 0 ]]
ok $? "every flag config and configuration row equals its last audit image ($flag_bad and $config_bad that do not)"

c -c "SELECT count(bt_index_check(i.oid, true)) FROM pg_class i JOIN pg_am am ON am.oid = i.relam
      WHERE i.relkind = 'i' AND am.amname = 'btree' AND i.relnamespace IN ('opsflags'::regnamespace, 'public'::regnamespace)" >/dev/null
ok $? "the B-tree indexes of opsflags and of the audited table are intact (amcheck)"

sampler_back() {
    [[ $(c -c "SELECT (s ->> 'running')::boolean AND s ->> 'pid' <> '$worker_pid_before' AND (s ->> 'samples')::int >= 2
               FROM opsflags.worker_status() s") == t ]]
}
wait_for 60 sampler_back
ok $? "the sampler is back and samples (new pid $(c -c "SELECT opsflags.worker_status() ->> 'pid'"), its sample count restarted: $(c -c "SELECT opsflags.worker_status() ->> 'samples'"))"

# Maintenance state: read back from the table (on; the session in flight
# never committed turning it off) and enforced; then turned off.
out=$(pg_psql "$CR_SOCKDIR" "$CR_PORT" "$DB" -U crash_app -Atq -c "INSERT INTO crash_orders (note) VALUES ('app')" 2>&1)
[[ $(c -c "SELECT opsflags.is_maintenance_mode() AND opsflags.maintenance_enforced()") == t && $out == *"maintenance mode is on"* ]]
ok $? "maintenance mode is still on after the restart and enforced for an application role"
c -c "SELECT opsflags.set_maintenance_mode(false)" >/dev/null
pg_psql "$CR_SOCKDIR" "$CR_PORT" "$DB" -U crash_app -Atq -c "INSERT INTO crash_orders (note) VALUES ('app')" >/dev/null 2>&1
ok $? "turned off, the application role writes again"

tap_done
