#!/usr/bin/env bash
# test/upgrade/upgrade.sh: upgrades (run by scripts/test.sh; prints TAP).
#  1. Released install and upgrade scripts never change: sql/released.sha256
#     lists them; a schema change must ship as a new opsflags--A--B.sql (and,
#     once released, be added to that list).
#  2. The current version installs from its full script (built by make from
#     src/*.sql) and is reached by an upgrade script from the last release.
#  3. Installing each released version (the first one's full script, the
#     later ones through the chain) and updating to the current one gives
#     what a fresh install of the current version gives: every object and
#     its definition (function definitions, columns in order with their
#     defaults, constraints, triggers with their WHEN and enabled state,
#     event triggers, indexes, views, privileges of schemas, tables,
#     sequences and functions, row security and its policies, comments,
#     extension membership and pg_extension_config_dump registrations), and
#     keeps the data; an application table audited before the update is
#     still audited after it, and audit_table then gives it a tenant column.
#  4. The layout of the current version: each C function has one SQL name;
#     schema opsflags holds the API, trigger functions (but the two a user
#     attaches) live in opsflags_internal.
#   needs: SOCKDIR PORT
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PSQL=("${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/15/bin}/psql" -X -q -At -h "$SOCKDIR" -p "$PORT" -U postgres)
source "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"

# The released versions, in order: the first full script's, then each
# upgrade script's target.
mapfile -t released < <(sed -nE 's/.*opsflags--([0-9.]+)\.sql$/\1/p; s/.*opsflags--[0-9.]+--([0-9.]+)\.sql$/\1/p' \
                        "$REPO/sql/released.sha256")
current=$(sed -nE "s/^default_version = '([^']+)'/\1/p" "$REPO/opsflags.control")
last=${released[${#released[@]} - 1]}
echo "1..$((4 + 4 * ${#released[@]}))"

(cd "$REPO" && sha256sum --quiet -c sql/released.sha256) >/dev/null 2>&1
ok $? "released scripts unchanged (sql/released.sha256); schema changes ship as new opsflags--A--B.sql"

[[ $current != "$last" && -f $REPO/sql/opsflags--$last--$current.sql && -f $REPO/sql/opsflags--$current.sql ]]
ok $? "the current version $current installs from its full script (sql/opsflags--$current.sql, built from src/*.sql) and updates from $last (sql/opsflags--$last--$current.sql)"

# Everything that makes up the schema, as comparable text.
catalog_sql="
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname IN ('opsflags', 'opsflags_internal')),
ext AS (SELECT oid FROM pg_extension WHERE extname = 'opsflags'),
members AS (SELECT d.classid, d.objid FROM pg_depend d JOIN ext e ON e.oid = d.refobjid
            WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')
SELECT 'extension ' || extname || ' ' || extversion || ' ' || extnamespace::regnamespace || ' ' || extrelocatable
 FROM pg_extension WHERE extname = 'opsflags'
UNION ALL SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0) FROM members m
UNION ALL SELECT 'schema ' || n.nspname || ' ' || pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '(default)')
 FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)
UNION ALL SELECT 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid))
 FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns) AND p.prokind <> 'a'
UNION ALL SELECT 'function acl ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '(default)')
 FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
UNION ALL SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' '
        || coalesce(c.reloptions::text, '') || ' ' || coalesce(c.relacl::text, '(default)')
        || ' rls ' || c.relrowsecurity || ' ' || c.relforcerowsecurity
 FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
UNION ALL SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive
        || ' ' || p.polroles::regrole[]::text || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
        || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
 FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns))
UNION ALL SELECT 'column ' || c.oid::regclass || ' ' || lpad(a.attnum::text, 3, '0') || ' ' || a.attname || ' '
        || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || a.attgenerated::text || ' '
        || a.attidentity::text || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') || ' ' || coalesce(a.attacl::text, '')
 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace IN (SELECT oid FROM ns)
UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
 FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(oid) || ' ' || tgenabled::text
 FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns))
UNION ALL SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regprocedure || ' '
        || evtenabled::text || ' ' || coalesce(evttags::text, '')
 FROM pg_event_trigger WHERE evtfoid IN (SELECT oid FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns))
UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid)
 FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns))
UNION ALL SELECT 'view ' || c.oid::regclass || ' ' || md5(pg_get_viewdef(c.oid))
 FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('v', 'm')
UNION ALL SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
 FROM pg_description d
 WHERE (d.classoid, d.objoid) IN (SELECT classid, objid FROM members)
    OR (d.classoid = 'pg_proc'::regclass AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns)))
    OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)))
    OR (d.classoid = 'pg_constraint'::regclass
        AND d.objoid IN (SELECT oid FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)))
    OR (d.classoid = 'pg_trigger'::regclass
        AND d.objoid IN (SELECT t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                         WHERE c.relnamespace IN (SELECT oid FROM ns)))
UNION ALL SELECT 'role ' || r.rolname || ' ' || r.rolcanlogin || ': ' || coalesce(shobj_description(r.oid, 'pg_authid'), '')
 FROM pg_roles r WHERE r.rolname = 'opsflags_admin'
UNION ALL SELECT 'extconfig ' || x.rel::regclass || ' ' || coalesce(x.cond, '')
 FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(rel, cond) WHERE e.extname = 'opsflags'
ORDER BY 1"

"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS opsflags_up_fresh" -c "CREATE DATABASE opsflags_up_fresh" >/dev/null 2>&1
"${PSQL[@]}" -v ON_ERROR_STOP=1 -d opsflags_up_fresh -c "CREATE EXTENSION opsflags" >/dev/null 2>&1
rc=$?
fresh=$("${PSQL[@]}" -v ON_ERROR_STOP=1 -d opsflags_up_fresh -c "$catalog_sql" 2>&1)
rc_fresh=$?
[[ $rc == 0 && $rc_fresh == 0 && $(grep '^extension ' <<<"$fresh") == "extension opsflags $current opsflags false" ]]
ok $? "CREATE EXTENSION opsflags installs $current"

for version in "${released[@]}"; do
    db=opsflags_up_${version//./_}
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
    data=(-c "SELECT opsflags.create_flag('up.flag', 'Kept') IS NOT NULL" -c "SELECT opsflags.toggle_flag('up.flag', true)")
    if [[ $version != "${released[0]}" ]]; then
        data+=(-c "SELECT opsflags.config_set('up.key', '\"kept\"')"
               -c "CREATE TABLE up_orders (id int PRIMARY KEY, shop text)" -c "SELECT opsflags.audit_table('up_orders')")
    fi
    "${PSQL[@]}" -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION opsflags VERSION '$version'" "${data[@]}" \
        -c "ALTER EXTENSION opsflags UPDATE" >/dev/null 2>&1
    ok $? "CREATE EXTENSION opsflags VERSION '$version', then ALTER EXTENSION opsflags UPDATE (to $current)"

    old=$("${PSQL[@]}" -v ON_ERROR_STOP=1 -d "$db" -c "$catalog_sql" 2>&1)
    rc_old=$?
    [[ $rc_fresh == 0 && $rc_old == 0 && $(wc -l <<<"$fresh") -gt 600 && $fresh == "$old" ]]
    rc=$?
    ok $rc "updated from $version, the database has what a fresh install has ($(wc -l <<<"$fresh") lines compared)"
    if ((rc != 0)); then
        diff <(echo "$fresh") <(echo "$old") | head -20 | sed 's/^/# /'
    fi

    want=t
    check="SELECT opsflags.feature_enabled('up.flag')"
    if [[ $version != "${released[0]}" ]]; then
        want='t|"kept"'
        check="SELECT opsflags.feature_enabled('up.flag'), opsflags.config_get('up.key', 'all')"
    fi
    [[ $("${PSQL[@]}" -d "$db" -c "$check" 2>&1) == "$want" ]]
    ok $? "data written under $version is kept and evaluates after the update"

    if [[ $version != "${released[0]}" ]]; then
        got=$("${PSQL[@]}" -v ON_ERROR_STOP=1 -d "$db" -c "INSERT INTO up_orders VALUES (1, 's1')" \
              -c "SELECT opsflags.audit_table('up_orders', 'shop')" -c "INSERT INTO up_orders VALUES (2, 's2')" \
              -c "SELECT string_agg(action || ' ' || resource_id || ' ' || coalesce(tenant, '-'), ', ' ORDER BY id)
                  FROM opsflags.audit_log WHERE table_name = 'public.up_orders'" 2>&1 | tail -n 1)
        [[ $got == "INSERT 1 -, INSERT 2 s2" ]]
        ok $? "a table audited under $version is still audited after the update; audit_table then gives it a tenant column (got: $got)"
    fi
    "${PSQL[@]}" -d postgres -c "DROP DATABASE $db" >/dev/null 2>&1
done

dups=$("${PSQL[@]}" -d opsflags_up_fresh -c "
SELECT p.prosrc || ': ' || string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
FROM pg_proc p WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
  AND p.pronamespace IN ('opsflags'::regnamespace, 'opsflags_internal'::regnamespace)
GROUP BY p.prosrc HAVING count(*) > 1" 2>&1)
[[ -z $dups ]]
ok $? "each C function of opsflags has one SQL name${dups:+ (not: $dups)}"

misplaced=$("${PSQL[@]}" -d opsflags_up_fresh -c "
SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
FROM pg_proc p WHERE p.pronamespace = 'opsflags'::regnamespace
  AND p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
  AND p.proname NOT IN ('feature_guard', 'audit_trigger')" 2>&1)
[[ -z $misplaced ]]
ok $? "schema opsflags holds no trigger functions but the two users attach (feature_guard, audit_trigger); the others are in opsflags_internal${misplaced:+ (not: $misplaced)}"

"${PSQL[@]}" -d postgres -c "DROP DATABASE opsflags_up_fresh" >/dev/null 2>&1
tap_done
