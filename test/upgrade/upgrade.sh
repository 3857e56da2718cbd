#!/usr/bin/env bash
# test/upgrade/upgrade.sh: upgrades (run by scripts/test.sh; prints TAP).
#  1. Released install and upgrade scripts never change: sql/released.sha256
#     lists them; a schema change must ship as a new opsflags--A--B.sql (and,
#     once released, be added to that list).
#  2. Installing the first released version and updating to the current one
#     gives the same objects as a fresh install of the current version
#     (extension members, function definitions, columns, constraints,
#     triggers, indexes), and keeps the data.
#   needs: SOCKDIR PORT
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PSQL=("${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/15/bin}/psql" -X -q -At -h "$SOCKDIR" -p "$PORT" -U postgres)
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
echo "1..4"

(cd "$REPO" && sha256sum --quiet -c sql/released.sha256) >/dev/null 2>&1
ok $? "released scripts unchanged (sql/released.sha256); schema changes ship as new opsflags--A--B.sql"

first=$(head -n 1 "$REPO/sql/released.sha256" | sed -E 's/.*opsflags--([0-9.]+)\.sql$/\1/')
current=$(sed -nE "s/^default_version = '([^']+)'/\1/p" "$REPO/opsflags.control")
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS opsflags_up_fresh" -c "DROP DATABASE IF EXISTS opsflags_up_old" \
    -c "CREATE DATABASE opsflags_up_fresh" -c "CREATE DATABASE opsflags_up_old" >/dev/null 2>&1
"${PSQL[@]}" -d opsflags_up_fresh -c "CREATE EXTENSION opsflags" >/dev/null 2>&1
"${PSQL[@]}" -d opsflags_up_old -c "CREATE EXTENSION opsflags VERSION '$first'" \
    -c "SELECT opsflags.create_flag('up.flag', 'Kept') IS NOT NULL" \
    -c "SELECT opsflags.toggle_flag('up.flag', true)" \
    -c "ALTER EXTENSION opsflags UPDATE" >/dev/null 2>&1
ok $? "CREATE EXTENSION opsflags VERSION '$first', then ALTER EXTENSION opsflags UPDATE (to $current)"

# Everything that makes up the schema, as comparable text.
catalog_sql="
SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE e.extname = 'opsflags' AND d.deptype = 'e'
UNION ALL SELECT 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid))
 FROM pg_proc p WHERE p.pronamespace = 'opsflags'::regnamespace AND p.prokind <> 'a'
UNION ALL SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = 'opsflags'::regnamespace
UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
 FROM pg_constraint WHERE connamespace = 'opsflags'::regnamespace
UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(oid) || ' ' || tgenabled::text
 FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'opsflags'::regnamespace)
UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid)
 FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'opsflags'::regnamespace)
UNION ALL SELECT 'acl ' || c.relname || ' ' || coalesce(c.relacl::text, '') FROM pg_class c WHERE c.relnamespace = 'opsflags'::regnamespace
UNION ALL SELECT 'extconfig ' || x::regclass FROM pg_extension e, unnest(e.extconfig) x WHERE e.extname = 'opsflags'
ORDER BY 1"
fresh=$("${PSQL[@]}" -v ON_ERROR_STOP=1 -d opsflags_up_fresh -c "$catalog_sql" 2>&1)
rc_fresh=$?
old=$("${PSQL[@]}" -v ON_ERROR_STOP=1 -d opsflags_up_old -c "$catalog_sql" 2>&1)
rc_old=$?
[[ $rc_fresh == 0 && $rc_old == 0 && $(wc -l <<<"$fresh") -gt 200 && $fresh == "$old" ]]
rc=$?
ok $rc "the updated database has the same objects as a fresh install ($(wc -l <<<"$fresh") lines compared)"
if ((rc != 0)); then
    diff <(echo "$fresh") <(echo "$old") | head -20 | sed 's/^/# /'
fi

[[ $("${PSQL[@]}" -d opsflags_up_old -c "SELECT opsflags.feature_enabled('up.flag')") == t ]]
ok $? "data of the first version is kept and evaluates after the update"

"${PSQL[@]}" -d postgres -c "DROP DATABASE opsflags_up_fresh" -c "DROP DATABASE opsflags_up_old" >/dev/null 2>&1
tap_done
