#!/usr/bin/env bash
# test/soak/soak.sh: several pgbench scripts at once against the test cluster
# (run by scripts/test.sh; prints TAP): flag flips, evaluations from other
# sessions (alone and several in one transaction), config sets and audited
# application writes.  Zero failed transactions and zero deadlocks; one audit
# row per application write; each flip that changed a flag audited (a flip
# to the state it had is not); no stale read (after a flip has committed,
# every session's next statement sees it: checked for every evaluation
# against the flips recorded before it started); every answer is
# the one of the config version it reports; the memory of each pgbench
# backend does not grow over the run.  SOAK_SECONDS (default 15; the README's
# long soak is 60).
#   needs: SOCKDIR PORT WORKDIR
set -uo pipefail
PG_BIN=${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/15/bin}
P=(-h "$SOCKDIR" -p "$PORT" -U postgres)
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${P[@]}" -d opsflags_soak)
SECS=${SOAK_SECONDS:-15}
# Growth allowed from the first third of the run to the last, per backend:
# bytes in use in its memory contexts (palloc; a leak of 100 bytes per
# audited write shows as about 100 kB in 15 s) and its anonymous resident
# memory (malloc too, but in whole pages).
MEM_CTX_BOUND_KB=${SOAK_MEM_CTX_BOUND_KB:-64}
MEM_RSS_BOUND_KB=${SOAK_MEM_RSS_BOUND_KB:-512}
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
echo "1..9"

"$PG_BIN/psql" -X -q "${P[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS opsflags_soak" -c "CREATE DATABASE opsflags_soak" >/dev/null
"${PSQL[@]}" >/dev/null <<'SQL'
CREATE EXTENSION opsflags;
SELECT count(opsflags.create_flag('soak.' || i, 'Soak ' || i)) FROM generate_series(1, 20) i;
SELECT count(opsflags.update_flag('soak.' || i, '{"is_enabled": true, "enabled_percentage": 50}')) FROM generate_series(1, 20) i;
CREATE TABLE soak_orders (id bigserial PRIMARY KEY, flag boolean, note text);
SELECT opsflags.audit_table('soak_orders');
-- What the soak records (not audited):
-- a flip, by the flipping session's next statement after its COMMIT
-- returned: the config version it committed, whether it changed anything,
-- that statement's start (so later than the commit) and the version that
-- statement itself saw.
CREATE TABLE soak_flips (pid int, flag int, version int, changed boolean,
                         recorded_at timestamptz, seen_version int);
-- an evaluation: what feature_enabled answered and what feature_explain
-- reported (answer, config version) in one statement, and its start.
CREATE UNLOGGED TABLE soak_seen (pid int, flag int, uid int, version int,
                                 explained boolean, enabled boolean, stmt_start timestamptz);
-- a backend's memory now and then: bytes in use in its memory contexts
-- and its RssAnon.
CREATE UNLOGGED TABLE soak_mem (pid int, at timestamptz, ctx_bytes bigint, rss_anon_kb bigint);
SQL

# A flip locks the config row first, so the version read back after the
# toggle is its own (and "changed" says whether it made a new one).
cat >"$WORKDIR/soak_flip.sql" <<'SQL'
\set f random(1, 20)
\set on random(0, 1)
BEGIN;
SELECT c.version AS v0 FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id WHERE f.flag_key = 'soak.' || :f AND c.environment = 'production' FOR UPDATE OF c \gset
SELECT opsflags.toggle_flag('soak.' || :f, :on = 1);
SELECT c.version AS v1 FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id WHERE f.flag_key = 'soak.' || :f AND c.environment = 'production' \gset
COMMIT;
INSERT INTO soak_flips VALUES (pg_backend_pid(), :f, :v1, :v1::int > :v0::int, statement_timestamp(), (opsflags.feature_explain('soak.' || :f, 'flipper') ->> 'flag_version')::int);
SQL
# An evaluation is a statement that reads no table (so only opsflags takes
# in other sessions' commits for it); the next statement records it.
eval_stmt="SELECT e ->> 'flag_version' AS v, e ->> 'enabled' AS ex, fe, statement_timestamp() AS ts FROM (SELECT opsflags.feature_enabled('soak.' || :f, 'user-' || :u) AS fe, opsflags.feature_explain('soak.' || :f, 'user-' || :u) AS e OFFSET 0) x \\gset
INSERT INTO soak_seen VALUES (pg_backend_pid(), :f, :u, :v, :ex, :fe, :ts);"
cat >"$WORKDIR/soak_eval.sql" <<SQL
\\set f random(1, 20)
\\set u random(1, 100000)
$eval_stmt
\\set m random(1, 25)
\\if :m = 1
INSERT INTO soak_mem SELECT pg_backend_pid(), clock_timestamp(), (SELECT sum(used_bytes) FROM pg_backend_memory_contexts), (regexp_match(pg_read_file('/proc/self/status'), 'RssAnon:\\s+(\\d+)'))[1]::bigint;
\\endif
SQL
# Three evaluations of one flag in one READ COMMITTED transaction: each
# statement takes in the flips committed before it started.
cat >"$WORKDIR/soak_eval_tx.sql" <<SQL
\\set f random(1, 20)
\\set u random(1, 100000)
BEGIN;
$eval_stmt
$eval_stmt
$eval_stmt
COMMIT;
SQL
cat >"$WORKDIR/soak_config.sql" <<'SQL'
\set k random(1, 10)
\set v random(1, 1000000)
SELECT opsflags.config_set('soak.key.' || :k, to_jsonb(:v::int));
SQL
cat >"$WORKDIR/soak_write.sql" <<'SQL'
\set f random(1, 20)
INSERT INTO soak_orders (flag, note) VALUES (opsflags.feature_enabled('soak.' || :f, 'writer'), 'soak');
SQL
chmod a+r "$WORKDIR"/soak_*.sql

deadlocks0=$("${PSQL[@]}" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
audit0=$("${PSQL[@]}" -c "SELECT coalesce(max(id), 0) FROM opsflags.audit_log")
"$PG_BIN/pgbench" -n "${P[@]}" -c 6 -j 2 -T "$SECS" -M prepared \
    -f "$WORKDIR/soak_flip.sql@2" -f "$WORKDIR/soak_eval.sql@8" -f "$WORKDIR/soak_eval_tx.sql@2" \
    -f "$WORKDIR/soak_config.sql@2" -f "$WORKDIR/soak_write.sql@3" opsflags_soak >"$WORKDIR/soak.out" 2>&1
rc=$?
ok $rc "pgbench ran $SECS s with flips, evaluations, config sets and audited writes at once"
sed -n 's/^\(number of transactions actually processed\|number of failed transactions\|tps = [0-9.]*\).*/# &/p' "$WORKDIR/soak.out"

grep -qE '^number of failed transactions: 0 ' "$WORKDIR/soak.out" && ! grep -qE 'aborted|error' "$WORKDIR/soak.out"
ok $? "zero failed transactions"

"${PSQL[@]}" -c "SELECT pg_stat_clear_snapshot()" >/dev/null
deadlocks1=$("${PSQL[@]}" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
[[ $deadlocks1 == "$deadlocks0" ]]
ok $? "no deadlocks"

[[ $("${PSQL[@]}" -c "SELECT (SELECT count(*) FROM soak_orders) = (SELECT count(*) FROM opsflags.audit_log WHERE table_name = 'public.soak_orders' AND action = 'INSERT') AND (SELECT count(*) FROM soak_orders) > 0") == t ]]
ok $? "one audit row per application write"

flips=$(awk '/^SQL script 1:/ {f = 1} f && / transactions \(/ {print $2; exit}' "$WORKDIR/soak.out")
audited=$("${PSQL[@]}" -c "SELECT count(*) FROM opsflags.audit_log WHERE resource_type = 'flag_config' AND action = 'UPDATE' AND id > $audit0")
unchanged=$("${PSQL[@]}" -c "SELECT count(*) FROM opsflags.audit_log WHERE resource_type = 'flag_config' AND action = 'UPDATE' AND id > $audit0 AND old_values = new_values")
# pgbench does not count the transactions still running at the deadline (at
# most one per client), though they commit.  A flip to the state the flag
# already had changes no row and is not recorded; test 9 checks that every
# flip that changed a flag is.
[[ -n $flips && $flips -gt 0 && $audited -gt 0 && $audited -le $((flips + 6)) && $unchanged == 0 ]]
ok $? "at most one audit row per committed flip, none for a flip that changed nothing ($flips counted by pgbench, $audited audit rows, $unchanged unchanged)"

# No stale read.  A flip's recorded_at is the start of the flipping session's
# statement after COMMIT returned, and COMMIT returns only once the
# invalidation has been sent; so every statement that started after
# recorded_at (in any session, in or out of a transaction) must see that
# version or a later one.  Checked for every evaluation against the newest
# version recorded before it; "flips checked" are those followed by an
# evaluation of the flag from another session before the flag's next flip.
"${PSQL[@]}" -c "CREATE INDEX ON soak_flips (flag, recorded_at)" -c "ANALYZE soak_flips" -c "ANALYZE soak_seen" >/dev/null
IFS='|' read -r evals checked stale own_stale flips_changed flips_checked < <("${PSQL[@]}" <<'SQL'
WITH need AS (
    SELECT s.*, (SELECT max(f.version) FROM soak_flips f
                 WHERE f.flag = s.flag AND f.changed AND f.recorded_at < s.stmt_start) AS required
    FROM soak_seen s),
flips AS (
    SELECT f.*, lead(f.recorded_at, 1, 'infinity') OVER (PARTITION BY f.flag ORDER BY f.recorded_at) AS next_at
    FROM soak_flips f WHERE f.changed)
SELECT (SELECT count(*) FROM need),
       (SELECT count(*) FROM need WHERE required IS NOT NULL),
       (SELECT count(*) FROM need WHERE version < required),
       (SELECT count(*) FROM soak_flips WHERE changed AND seen_version < version),
       (SELECT count(*) FROM flips),
       (SELECT count(*) FROM flips f WHERE EXISTS (
            SELECT 1 FROM soak_seen s WHERE s.flag = f.flag AND s.pid <> f.pid
               AND s.stmt_start > f.recorded_at AND s.stmt_start < f.next_at));
SQL
)
echo "# $evals evaluations recorded, $checked of them after a recorded flip of their flag; $flips_changed flips changed a flag, $flips_checked of them evaluated by another session before the next flip"
[[ -n $evals && $checked -gt 0 && $flips_checked -gt 0 && $stale == 0 && $own_stale == 0 ]]
ok $? "no stale read: every statement started after a flip committed saw it ($stale stale in other sessions, $own_stale in the flipping session)"

# Every answer is the one of the config version it reports: feature_enabled
# and feature_explain agree, the version is one that committed (in the audit
# log, which has the state of each) and the answer follows its state and the
# user's rollout bucket (50%).
bad=$("${PSQL[@]}" <<'SQL'
WITH versions AS (
    SELECT DISTINCT substr(f.flag_key, 6)::int AS flag, (a.new_values ->> 'version')::int AS version,
           (a.new_values ->> 'is_enabled')::boolean AS state
    FROM opsflags.audit_log a JOIN opsflags.feature_flags f ON f.id = (a.new_values ->> 'flag_id')::uuid
    WHERE a.resource_type = 'flag_config' AND a.new_values ->> 'environment' = 'production')
SELECT count(*) FROM soak_seen s LEFT JOIN versions v ON v.flag = s.flag AND v.version = s.version
WHERE v.state IS NULL OR s.enabled IS DISTINCT FROM s.explained
   OR s.explained IS DISTINCT FROM (v.state AND opsflags.rollout_bucket('soak.' || s.flag, 'user-' || s.uid) <= 50);
SQL
)
[[ $bad == 0 ]]
ok $? "every answer is that of the committed config version it reports ($bad that are not)"

# Memory of each pgbench backend: the last third of the run against the first.
mem=$("${PSQL[@]}" -F ' ' <<'SQL'
WITH r AS (SELECT min(at) t0, max(at) t1 FROM soak_mem),
s AS (SELECT m.*, CASE WHEN m.at < r.t0 + (r.t1 - r.t0) / 3 THEN 1
                       WHEN m.at >= r.t1 - (r.t1 - r.t0) / 3 THEN 3 END AS part
      FROM soak_mem m, r)
SELECT pid, count(*),
       max(ctx_bytes) FILTER (WHERE part = 1) / 1024, max(ctx_bytes) FILTER (WHERE part = 3) / 1024,
       max(rss_anon_kb) FILTER (WHERE part = 1), max(rss_anon_kb) FILTER (WHERE part = 3)
FROM s GROUP BY pid ORDER BY pid;
SQL
)
mem_ok=0
nbackends=0
while read -r pid n ctx1 ctx3 rss1 rss3; do
    [[ -n $pid ]] || continue
    nbackends=$((nbackends + 1))
    echo "# backend $pid: $n samples; in use in memory contexts ${ctx1} kB -> ${ctx3} kB, RssAnon ${rss1} kB -> ${rss3} kB (max of the first third -> of the last)"
    if [[ -z $ctx1 || -z $ctx3 || -z $rss1 || -z $rss3 ]] ||
        ((ctx3 - ctx1 > MEM_CTX_BOUND_KB || rss3 - rss1 > MEM_RSS_BOUND_KB)); then
        mem_ok=1
    fi
done <<<"$mem"
((nbackends == 6)) || mem_ok=1
ok $mem_ok "memory of each of the $nbackends backends stable (last third at most $MEM_CTX_BOUND_KB kB in memory contexts and $MEM_RSS_BOUND_KB kB RssAnon above the first)"

# The recorded figures themselves are sound: every committed flip of the run
# that changed a flag was recorded (pgbench may stop a client between COMMIT
# and the record, at most one per client).
recorded=$("${PSQL[@]}" -c "SELECT count(*) FROM soak_flips WHERE changed")
changed=$("${PSQL[@]}" -c "SELECT count(*) FROM opsflags.audit_log WHERE resource_type = 'flag_config' AND action = 'UPDATE' AND id > $audit0 AND old_values ->> 'version' <> new_values ->> 'version'")
[[ -n $recorded && $recorded -gt 0 && $recorded -le $changed && $recorded -ge $((changed - 6)) ]]
ok $? "every flip that changed a flag was recorded ($recorded recorded, $changed audited)"

"$PG_BIN/psql" -X -q "${P[@]}" -d postgres -c "DROP DATABASE opsflags_soak WITH (FORCE)" >/dev/null 2>&1
tap_done
