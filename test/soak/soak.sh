#!/usr/bin/env bash
# test/soak/soak.sh: several pgbench scripts at once against the test cluster
# (run by scripts/test.sh; prints TAP): flag flips, evaluations from other
# sessions, config sets and audited application writes.  Zero failed
# transactions and zero deadlocks; one audit row per application write;
# each flip audited.  SOAK_SECONDS (default 15; the README's long soak is 60).
#   needs: SOCKDIR PORT WORKDIR
set -uo pipefail
PG_BIN=/usr/lib/postgresql/15/bin
P=(-h "$SOCKDIR" -p "$PORT" -U postgres)
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${P[@]}" -d opsflags_soak)
SECS=${SOAK_SECONDS:-15}
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
echo "1..5"

"$PG_BIN/psql" -X -q "${P[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS opsflags_soak" -c "CREATE DATABASE opsflags_soak" >/dev/null
"${PSQL[@]}" >/dev/null <<'SQL'
CREATE EXTENSION opsflags;
SELECT count(opsflags.create_flag('soak.' || i, 'Soak ' || i)) FROM generate_series(1, 20) i;
SELECT count(opsflags.update_feature_flag('soak.' || i, '{"is_enabled": true, "enabled_percentage": 50}')) FROM generate_series(1, 20) i;
CREATE TABLE soak_orders (id bigserial PRIMARY KEY, flag boolean, note text);
SELECT opsflags.audit_table('soak_orders');
SQL

cat >"$WORKDIR/soak_flip.sql" <<'SQL'
\set f random(1, 20)
\set on random(0, 1)
SELECT opsflags.toggle_flag('soak.' || :f, :on = 1);
SQL
cat >"$WORKDIR/soak_eval.sql" <<'SQL'
\set f random(1, 20)
\set u random(1, 100000)
SELECT opsflags.feature_enabled('soak.' || :f, 'user-' || :u), opsflags.feature_value('soak.' || :f, 'user-' || :u);
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
    -f "$WORKDIR/soak_flip.sql@2" -f "$WORKDIR/soak_eval.sql@10" \
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
# pgbench does not count the transactions still running at the deadline (at
# most one per client), though they commit.
[[ -n $flips && $flips -gt 0 && $audited -ge $flips && $audited -le $((flips + 6)) ]]
ok $? "one audit row per committed flip ($flips counted by pgbench, $audited audit rows)"

"$PG_BIN/psql" -X -q "${P[@]}" -d postgres -c "DROP DATABASE opsflags_soak WITH (FORCE)" >/dev/null 2>&1
tap_done
