#!/usr/bin/env bash
# test/dump/dump.sh: a database using every feature, dumped and restored the
# ways users, backup tools and managed services do it, comes back with the
# same rows in every opsflags table (versions, timestamps and audit rows
# included: a restore is not a change), the same sequence positions, and the
# same feature_enabled and feature_value answers for 10,000 (flag, user)
# pairs in two environments (run by scripts/test.sh; prints TAP):
#   - pg_restore in three steps, data with --disable-triggers;
#   - pg_restore -d newdb in one step (and no NOTIFY while it loads);
#   - pg_dump | psql newdb;
#   - pg_restore -j 2 in three steps (the tables' order needs it);
#   - pg_dumpall | psql into a fresh cluster (roles, role and database
#     settings come along), and into the same cluster after DROP DATABASE.
# API keys come back too, and a key is still accepted; so do tenant admins,
# and a tenant admin reads the same audit rows of its tenant.
#   needs: SOCKDIR PORT WORKDIR (and scripts/common.sh)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
set +e   # each check reports its own result
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
P=(-h "$SOCKDIR" -p "$PORT" -U postgres)
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${P[@]}")
SRC=opsflags_dump_src
DSTS=(opsflags_dump_3step opsflags_dump_1step opsflags_dump_plain opsflags_dump_parallel)
APP_ROLE=opsflags_dump_app
TENANT_ROLE=opsflags_dump_tenant
FR_DATADIR=$WORKDIR/data_dump
FR_SOCKDIR=$WORKDIR/sock_dump
FR_LOGFILE=$WORKDIR/postgres_dump.log
FR_PORT=''

cleanup() {
    [[ -n $FR_PORT ]] && stop_cluster "$FR_DATADIR" >/dev/null 2>&1
    local d drop=()
    for d in "$SRC" "${DSTS[@]}"; do
        drop+=(-c "DROP DATABASE IF EXISTS $d")
    done
    "${PSQL[@]}" -d postgres "${drop[@]}" -c "DROP ROLE IF EXISTS $APP_ROLE" -c "DROP ROLE IF EXISTS $TENANT_ROLE" >/dev/null 2>&1
}
trap cleanup EXIT
echo "1..23"

cleanup
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $SRC" >/dev/null
"${PSQL[@]}" -d "$SRC" >/dev/null <<SQL
CREATE EXTENSION opsflags;
CREATE ROLE $APP_ROLE LOGIN IN ROLE opsflags_admin;
CREATE ROLE $TENANT_ROLE LOGIN;
SELECT opsflags.grant_tenant_admin('$TENANT_ROLE', 'shop-1');
ALTER ROLE $APP_ROLE SET opsflags.environment = 'eu-west';
ALTER DATABASE $SRC SET opsflags.environment = 'staging';
SQL
"${PSQL[@]}" -d "$SRC" >/dev/null <<'SQL'
INSERT INTO opsflags.environments (name, description) VALUES ('eu-west', 'EU');
SELECT opsflags.create_segment('beta', 'Beta', (SELECT jsonb_agg('user-' || i) FROM generate_series(1, 500) i), '["qa"]');
SELECT count(opsflags.create_flag('dump.' || i, 'Flag ' || i, NULL, 'string', '["a", "b", "c"]')) FROM generate_series(1, 200) i;
SELECT count(opsflags.update_flag('dump.' || i, jsonb_build_object(
         'is_enabled', i % 7 <> 0, 'enabled_percentage', (i * 37) % 101,
         'enabled_for_users', CASE WHEN i % 5 = 0 THEN '["user-3"]'::jsonb ELSE '[]' END,
         'segments', CASE WHEN i % 4 = 0 THEN '["beta"]'::jsonb ELSE '[]' END,
         'on_variation', i % 3, 'variation_weights', CASE WHEN i % 6 = 0 THEN '[1, 2, 3]'::jsonb END), e))
FROM generate_series(1, 200) i, unnest(ARRAY['production', 'eu-west']) e;
-- Versions above 1 and updated_at later than created_at, which a restore must keep.
SELECT count(opsflags.update_flag('dump.' || i, '{"description": "changed", "enabled_percentage": 50}', 'eu-west'))
FROM generate_series(1, 200, 3) i;
SELECT count(opsflags.add_prerequisite('dump.' || i, 'dump.' || (i + 50))) FROM generate_series(1, 100, 9) i;
SELECT opsflags.archive_flag('dump.199');
SELECT opsflags.config_set('app.name', '"shop"');
SELECT opsflags.config_set('app.name', '"shop v2"');
SELECT opsflags.config_set('region', '"eu"', 'ops', 'eu-west');
SELECT opsflags.config_set('db.password', '"s3cret"', is_sensitive => true);
SELECT opsflags.record_deployment('1.0.0', 'production', 'first', 'ci', NULL, 'abc');
SELECT opsflags.record_rollback(opsflags.record_deployment('1.1.0', 'production'), '1.0.0', 'bad');
SELECT opsflags.record_deployment('2.0.0', 'eu-west');
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 0}');
SELECT opsflags.take_sample('dump'), opsflags.take_sample('dump');
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
SELECT opsflags.audit_table('public.orders');
INSERT INTO public.orders SELECT i, 'o' || i FROM generate_series(1, 20) i;
CREATE TABLE public.visits (id int PRIMARY KEY, shop text);
SELECT opsflags.audit_table('public.visits', 'shop');
INSERT INTO public.visits SELECT i, 'shop-' || i % 3 FROM generate_series(1, 30) i;
SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view
WHERE prefix = split_part(opsflags.create_api_key('production', 'client', 'revoked'), '_', 3);
SQL
rc=$?
# An API key, which must still be accepted after each restore.
API_KEY=$("${PSQL[@]}" -d "$SRC" -c "SELECT opsflags.create_api_key('eu-west', 'server', 'dump')") && [[ -n $API_KEY ]] &&
((rc == 0))
ok $? "a database using flags, variations, segments, prerequisites, config (also of a custom environment), secrets, deployments, samples, alerts, audit and API keys; a role and the database with opsflags.environment set"

# state PSQL-ARGS...: every opsflags table as checksums, the sequences'
# positions (read without moving them), and the answers in two environments.
fingerprint="
SELECT string_agg(t || ' ' || h, E'\n' ORDER BY t) FROM (
  -- The three built-in environments are created by the extension, not dumped.
  SELECT 'environments' t, md5(string_agg(CASE WHEN x.name IN ('development', 'staging', 'production')
                                               THEN x.name ELSE x::text END, '|' ORDER BY x.name)) h
  FROM opsflags.environments x
  UNION ALL SELECT 'feature_flags', md5(string_agg(x::text, '|' ORDER BY x.flag_key)) FROM opsflags.feature_flags x
  UNION ALL SELECT 'feature_flag_configs', md5(string_agg(x::text, '|' ORDER BY x.flag_id, x.environment)) || ' ' || count(*) FROM opsflags.feature_flag_configs x
  UNION ALL SELECT 'user_segments', md5(string_agg(x::text, '|' ORDER BY x.segment_key)) FROM opsflags.user_segments x
  UNION ALL SELECT 'flag_prerequisites', md5(string_agg(x::text, '|' ORDER BY x.flag_id, x.prerequisite_id)) FROM opsflags.flag_prerequisites x
  UNION ALL SELECT 'app_config', md5(string_agg(x::text, '|' ORDER BY x.config_key, x.environment)) || ' ' || count(*) FROM opsflags.app_config x
  UNION ALL SELECT 'deployment_history', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.deployment_history x
  UNION ALL SELECT 'audit_log', md5(string_agg(x::text, '|' ORDER BY x.id)) || ' ' || count(*) FROM opsflags.audit_log x
  UNION ALL SELECT 'alerts', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.alerts x
  UNION ALL SELECT 'system_health', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.system_health x
  UNION ALL SELECT 'public.orders', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM public.orders x
  UNION ALL SELECT 'api_keys', md5(string_agg(x::text, '|' ORDER BY x.id)) || ' ' || count(*) FROM opsflags.api_keys x
  UNION ALL SELECT 'tenant_admins', md5(string_agg(x::text, '|' ORDER BY x.role::text, x.tenant)) || ' ' || count(*) FROM opsflags.tenant_admins x
  UNION ALL SELECT 'public.visits', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM public.visits x
  UNION ALL SELECT 'api_key accepted', string_agg(a.status || ' ' || a.key_environment, ',')
  FROM opsflags_internal.api_key_authorize('$API_KEY', 'eu-west', '{client,server}') a
  UNION ALL SELECT 'sequence ' || s, (SELECT coalesce(last_value::text, 'unused') FROM pg_sequences q
                                      WHERE q.schemaname = 'opsflags' AND q.sequencename = s)
  FROM unnest('{audit_log_id_seq,system_health_id_seq,alerts_id_seq,api_keys_id_seq}'::text[]) s
) s"
answers="SELECT md5(string_agg(opsflags.feature_enabled('dump.' || (i % 200 + 1), 'user-' || i)::text
                   || coalesce(opsflags.feature_value('dump.' || (i % 200 + 1), 'user-' || i)::text, ''), ',' ORDER BY i))
         FROM generate_series(1, 10000) i"
# What the tenant admin reads of the audit log.
tenant_reads="SELECT 'tenant admin reads ' || md5(string_agg(x::text, '|' ORDER BY x.id)) || ' ' || count(*)
              || ' ' || string_agg(DISTINCT x.tenant, ',') FROM opsflags.audit_log x"
state() {
    "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@" -c "$fingerprint" \
        -c "SET ROLE $TENANT_ROLE" -c "$tenant_reads" -c "RESET ROLE" \
        -c "SET opsflags.environment = 'production'" -c "$answers" \
        -c "SET opsflags.environment = 'eu-west'" -c "$answers" 2>&1
}
src_state=$(state "${P[@]}" -d "$SRC")

# same_state DESCRIPTION PSQL-ARGS...: two checks, rows and answers.
same_state() {
    local what=$1 dst rc
    shift
    dst=$(state "$@")
    [[ $(grep -c . <<<"$src_state") -eq 22 && $(head -n 20 <<<"$src_state") == "$(head -n 20 <<<"$dst")"
       && $(grep -c '^tenant admin reads [0-9a-f]\{32\} 11 shop-1$' <<<"$src_state") -eq 1 ]]
    rc=$?
    ok $rc "$what: identical rows in every opsflags table (versions, timestamps, audit rows, tenant admins) and sequences; the tenant admin reads the same audit rows"
    ((rc == 0)) || diff <(head -n 20 <<<"$src_state") <(head -n 20 <<<"$dst") | sed 's/^/# /' | head -10
    [[ $(tail -n 2 <<<"$src_state" | grep -c '^[0-9a-f]\{32\}$') -eq 2 && $(tail -n 2 <<<"$src_state") == "$(tail -n 2 <<<"$dst")" ]]
    ok $? "$what: identical feature_enabled and feature_value answers for 10,000 (flag, user) pairs in two environments"
}
# only_errors REGEX FILE: every ERROR in FILE (psql's stderr) is REGEX.
only_errors() { ! grep 'ERROR:' "$2" | grep -qvE "ERROR:  $1\$"; }
# report RC FILE: show the first errors of a failed restore.
report() { (($1 == 0)) || grep -m 5 -E 'ERROR|error' "$2" | sed 's/^/# /'; }

"$PG_BIN/pg_dump" "${P[@]}" -Fc -d "$SRC" -f "$WORKDIR/opsflags.dump" 2>"$WORKDIR/pg_dump.err"
ok $? "pg_dump -Fc"

# 1. The three-step restore with --disable-triggers.
"${PSQL[@]}" -d postgres -c "CREATE DATABASE ${DSTS[0]}" >/dev/null
{ "$PG_BIN/pg_restore" "${P[@]}" --section=pre-data -d "${DSTS[0]}" "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" --section=data --disable-triggers -d "${DSTS[0]}" "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" --section=post-data -d "${DSTS[0]}" "$WORKDIR/opsflags.dump"; } 2>"$WORKDIR/restore.err"
rc=$?
ok $rc "pg_restore into a fresh database in three steps: pre-data, data with --disable-triggers, post-data"
report $rc "$WORKDIR/restore.err"
same_state "three steps" "${P[@]}" -d "${DSTS[0]}"

# 2. One step: pg_restore -d newdb backup.dump (exit status 0: no error at
# all), with a session listening on channel opsflags in that database: the
# restore sends no event (a NOTIFY sent afterwards shows the listener works).
"${PSQL[@]}" -d postgres -c "CREATE DATABASE ${DSTS[1]}" >/dev/null
rm -f "$WORKDIR/listen.fifo" && mkfifo "$WORKDIR/listen.fifo"
"$PG_BIN/psql" -X -q "${P[@]}" -d "${DSTS[1]}" <"$WORKDIR/listen.fifo" >"$WORKDIR/listen.out" 2>&1 &
listener=$!
exec 4>"$WORKDIR/listen.fifo"
echo "LISTEN opsflags;" >&4
listening() {
    [[ $("${PSQL[@]}" -d postgres -c "SELECT count(*) FROM pg_stat_activity
        WHERE datname = '${DSTS[1]}' AND state = 'idle' AND query = 'LISTEN opsflags;'") == 1 ]]
}
wait_for 30 listening
"$PG_BIN/pg_restore" "${P[@]}" -d "${DSTS[1]}" "$WORKDIR/opsflags.dump" 2>"$WORKDIR/restore.err"
rc=$?
ok $rc "pg_restore -d newdb backup.dump in one step, without an error"
report $rc "$WORKDIR/restore.err"
same_state "pg_restore in one step" "${P[@]}" -d "${DSTS[1]}"
"${PSQL[@]}" -d "${DSTS[1]}" -c "NOTIFY opsflags, 'after the restore'"
printf 'SELECT 1;\n\\q\n' >&4
exec 4>&-
wait "$listener"
[[ $(grep -c 'Asynchronous notification "opsflags"' "$WORKDIR/listen.out") -eq 1 ]] &&
    grep -q 'payload "after the restore"' "$WORKDIR/listen.out"
rc=$?
ok $rc "pg_restore in one step: no NOTIFY opsflags while the rows load"
((rc == 0)) || grep -m 3 'Asynchronous' "$WORKDIR/listen.out" | sed 's/^/# /'

# 3. pg_dump db | psql newdb, stopping at the first error.
"${PSQL[@]}" -d postgres -c "CREATE DATABASE ${DSTS[2]}" >/dev/null
"$PG_BIN/pg_dump" "${P[@]}" -d "$SRC" |
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "${P[@]}" -d "${DSTS[2]}" >/dev/null 2>"$WORKDIR/restore.err"
rc=$?
ok $rc "pg_dump db | psql newdb, without an error"
report $rc "$WORKDIR/restore.err"
same_state "pg_dump | psql" "${P[@]}" -d "${DSTS[2]}"

# 4. A parallel restore (-j) does not keep pg_dump's order of the
# extension's tables, which reference each other: its data section goes
# with --disable-triggers.
"${PSQL[@]}" -d postgres -c "CREATE DATABASE ${DSTS[3]}" >/dev/null
{ "$PG_BIN/pg_restore" "${P[@]}" --section=pre-data -d "${DSTS[3]}" "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" -j 2 --section=data --disable-triggers -d "${DSTS[3]}" "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" -j 2 --section=post-data -d "${DSTS[3]}" "$WORKDIR/opsflags.dump"; } 2>"$WORKDIR/restore.err"
rc=$?
ok $rc "pg_restore -j 2 in three steps, data with --disable-triggers"
report $rc "$WORKDIR/restore.err"
same_state "pg_restore -j 2" "${P[@]}" -d "${DSTS[3]}"

# 5. pg_dumpall | psql, of this database only (the test cluster has others),
# into a fresh cluster: the only error is PostgreSQL's own for the role that
# runs the script, which exists there already.
exclude=()
while read -r db; do
    exclude+=("--exclude-database=$db")
done < <("${PSQL[@]}" -d postgres -c "SELECT datname FROM pg_database WHERE datname NOT IN ('$SRC', 'template0')")
"$PG_BIN/pg_dumpall" "${P[@]}" "${exclude[@]}" -f "$WORKDIR/dumpall.sql" 2>"$WORKDIR/pg_dumpall.err"
ok $? "pg_dumpall"
FR_PORT=$(free_port $((PORT + 17)))
: >"$WORKDIR/restore.err"
rm -rf -- "$FR_DATADIR"
start_cluster "$FR_DATADIR" "$FR_PORT" "$FR_SOCKDIR" "$FR_LOGFILE" "fsync = off" "opsflags.sample_interval = 0" \
    "opsflags.http_port = 0" >/dev/null 2>&1 &&
    "$PG_BIN/psql" -X -q -h "$FR_SOCKDIR" -p "$FR_PORT" -U postgres -d postgres -f "$WORKDIR/dumpall.sql" \
        >/dev/null 2>"$WORKDIR/restore.err" &&
    only_errors 'role "postgres" already exists' "$WORKDIR/restore.err"
rc=$?
ok $rc "pg_dumpall | psql into a fresh cluster, without an error other than 'role \"postgres\" already exists'"
report $rc "$WORKDIR/restore.err"
same_state "pg_dumpall into a fresh cluster" -h "$FR_SOCKDIR" -p "$FR_PORT" -U postgres -d "$SRC"
settings=$("$PG_BIN/psql" -X -q -At -h "$FR_SOCKDIR" -p "$FR_PORT" -U postgres -d "$SRC" \
    -c "SELECT current_setting('opsflags.environment')" \
    -c "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = '$APP_ROLE'" \
    -c "SELECT pg_has_role('$APP_ROLE', 'opsflags_admin', 'MEMBER')" 2>&1)
[[ $settings == $'staging\n{opsflags.environment=eu-west}\nt' ]]
ok $? "pg_dumpall into a fresh cluster: the database's and the role's opsflags.environment, the role in opsflags_admin"
stop_cluster "$FR_DATADIR" >/dev/null 2>&1
FR_PORT=''

# 6. The same script into this cluster after DROP DATABASE: the roles exist,
# and PostgreSQL reports each one (only that).
"${PSQL[@]}" -d postgres -c "DROP DATABASE $SRC" >/dev/null &&
    "$PG_BIN/psql" -X -q "${P[@]}" -d postgres -f "$WORKDIR/dumpall.sql" >/dev/null 2>"$WORKDIR/restore.err" &&
    only_errors 'role "[^"]*" already exists' "$WORKDIR/restore.err"
rc=$?
ok $rc "pg_dumpall | psql into the same cluster after DROP DATABASE, without an error other than 'role ... already exists'"
report $rc "$WORKDIR/restore.err"
same_state "pg_dumpall after DROP DATABASE" "${P[@]}" -d "$SRC"

tap_done
