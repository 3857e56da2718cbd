#!/usr/bin/env bash
# test/dump/dump.sh: pg_dump of a database using every feature, restored
# with pg_restore into a fresh database, holds the same rows in every opsflags
# table and gives the same feature_enabled answers for 10,000 (flag, user)
# pairs (run by scripts/test.sh; prints TAP).  The restore is the one the
# README gives: schema, then data with --disable-triggers (so rows come back
# as they were, neither validated against a half-loaded database nor audited
# again), then indexes and constraints.
#   needs: SOCKDIR PORT WORKDIR
set -uo pipefail
PG_BIN=${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/15/bin}
P=(-h "$SOCKDIR" -p "$PORT" -U postgres)
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${P[@]}")
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
echo "1..5"

"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS opsflags_dump_src" -c "DROP DATABASE IF EXISTS opsflags_dump_dst" \
    -c "CREATE DATABASE opsflags_dump_src" -c "CREATE DATABASE opsflags_dump_dst" >/dev/null
"${PSQL[@]}" -d opsflags_dump_src >/dev/null <<'SQL'
CREATE EXTENSION opsflags;
INSERT INTO opsflags.environments (name, description) VALUES ('eu-west', 'EU');
SELECT opsflags.create_segment('beta', 'Beta', (SELECT jsonb_agg('user-' || i) FROM generate_series(1, 500) i), '["qa"]');
SELECT count(opsflags.create_flag('dump.' || i, 'Flag ' || i, NULL, 'string', '["a", "b", "c"]')) FROM generate_series(1, 200) i;
SELECT count(opsflags.update_feature_flag('dump.' || i, jsonb_build_object(
         'is_enabled', i % 7 <> 0, 'enabled_percentage', (i * 37) % 101,
         'enabled_for_users', CASE WHEN i % 5 = 0 THEN '["user-3"]'::jsonb ELSE '[]' END,
         'segments', CASE WHEN i % 4 = 0 THEN '["beta"]'::jsonb ELSE '[]' END,
         'on_variation', i % 3, 'variation_weights', CASE WHEN i % 6 = 0 THEN '[1, 2, 3]'::jsonb END), e))
FROM generate_series(1, 200) i, unnest(ARRAY['production', 'eu-west']) e;
SELECT count(opsflags.add_prerequisite('dump.' || i, 'dump.' || (i + 50))) FROM generate_series(1, 100, 9) i;
SELECT opsflags.archive_flag('dump.199');
SELECT opsflags.config_set('app.name', '"shop"');
SELECT opsflags.config_set('db.password', '"s3cret"', is_sensitive => true);
SELECT opsflags.record_deployment('1.0.0', 'production', 'first', 'ci', NULL, 'abc');
SELECT opsflags.record_rollback(opsflags.record_deployment('1.1.0', 'production'), '1.0.0', 'bad');
SELECT opsflags.config_set('alerts.thresholds', '{"connections_pct": 0}');
SELECT opsflags.take_sample('dump'), opsflags.take_sample('dump');
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
SELECT opsflags.audit_table('public.orders');
INSERT INTO public.orders SELECT i, 'o' || i FROM generate_series(1, 20) i;
SQL
ok $? "a database using flags, variations, segments, prerequisites, config, secrets, deployments, samples, alerts and audit"

"$PG_BIN/pg_dump" "${P[@]}" -Fc -d opsflags_dump_src -f "$WORKDIR/opsflags.dump" 2>"$WORKDIR/pg_dump.err"
ok $? "pg_dump -Fc"
{ "$PG_BIN/pg_restore" "${P[@]}" --section=pre-data -d opsflags_dump_dst "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" --section=data --disable-triggers -d opsflags_dump_dst "$WORKDIR/opsflags.dump" &&
  "$PG_BIN/pg_restore" "${P[@]}" --section=post-data -d opsflags_dump_dst "$WORKDIR/opsflags.dump"; } 2>"$WORKDIR/pg_restore.err"
rc=$?
ok $rc "pg_restore into a fresh database: pre-data, data with --disable-triggers, post-data"
((rc == 0)) || sed 's/^/# /' "$WORKDIR/pg_restore.err" | head -10

fingerprint="
SELECT string_agg(t || ' ' || h, E'\n' ORDER BY t) FROM (
  -- The three built-in environments are created by the extension, not dumped.
  SELECT 'environments' t, md5(string_agg(CASE WHEN x.name IN ('development', 'staging', 'production')
                                               THEN x.name ELSE x::text END, '|' ORDER BY x.name)) h
  FROM opsflags.environments x
  UNION ALL SELECT 'feature_flags', md5(string_agg(x::text, '|' ORDER BY x.flag_key)) FROM opsflags.feature_flags x
  UNION ALL SELECT 'feature_flag_configs', md5(string_agg(x::text, '|' ORDER BY x.flag_id, x.environment)) FROM opsflags.feature_flag_configs x
  UNION ALL SELECT 'user_segments', md5(string_agg(x::text, '|' ORDER BY x.segment_key)) FROM opsflags.user_segments x
  UNION ALL SELECT 'flag_prerequisites', md5(string_agg(x::text, '|' ORDER BY x.flag_id, x.prerequisite_id)) FROM opsflags.flag_prerequisites x
  UNION ALL SELECT 'app_config', md5(string_agg(x::text, '|' ORDER BY x.config_key, x.environment)) FROM opsflags.app_config x
  UNION ALL SELECT 'deployment_history', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.deployment_history x
  UNION ALL SELECT 'audit_log', md5(string_agg(x::text, '|' ORDER BY x.id)) || ' ' || count(*) FROM opsflags.audit_log x
  UNION ALL SELECT 'alerts', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.alerts x
  UNION ALL SELECT 'system_health', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM opsflags.system_health x
  UNION ALL SELECT 'next audit id', nextval('opsflags.audit_log_id_seq')::text
) s"
src=$("${PSQL[@]}" -d opsflags_dump_src -c "$fingerprint" 2>&1)
dst=$("${PSQL[@]}" -d opsflags_dump_dst -c "$fingerprint" 2>&1)
[[ $(wc -l <<<"$src") -eq 11 && $src == "$dst" ]]
rc=$?
ok $rc "identical rows in every opsflags table (flags, configs, segments, prerequisites, config, deployments, audit, alerts, samples) and sequences"
((rc == 0)) || diff <(echo "$src") <(echo "$dst") | sed 's/^/# /' | head -10

answers="SELECT md5(string_agg(opsflags.feature_enabled('dump.' || (i % 200 + 1), 'user-' || i)::text
                   || coalesce(opsflags.feature_value('dump.' || (i % 200 + 1), 'user-' || i)::text, ''), ',' ORDER BY i))
         FROM generate_series(1, 10000) i"
a_src=$("${PSQL[@]}" -d opsflags_dump_src -c "$answers")
a_dst=$("${PSQL[@]}" -d opsflags_dump_dst -c "$answers")
[[ -n $a_src && $a_src == "$a_dst" ]]
ok $? "identical feature_enabled and feature_value answers for 10,000 (flag, user) pairs"

"${PSQL[@]}" -d postgres -c "DROP DATABASE opsflags_dump_src" -c "DROP DATABASE opsflags_dump_dst" >/dev/null 2>&1
tap_done
