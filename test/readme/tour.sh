#!/usr/bin/env bash
# test/readme/tour.sh: the README's SQL examples run top to bottom on a
# database set up as `make run` sets it up (the extension and
# scripts/seed.sql), and print what the README shows (test/readme/tour.py;
# run by scripts/test.sh; prints TAP). Roles the README creates are dropped
# afterwards.
#   needs: SOCKDIR PORT
#   TOUR_WRITE=1: rewrite the README's output blocks from what psql printed
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BIN=${OPSFLAGS_PG_BIN:-/usr/lib/postgresql/15/bin}
P=(-h "$SOCKDIR" -p "$PORT" -U postgres)
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${P[@]}")
DB=opsflags_readme

roles_before=$("${PSQL[@]}" -d postgres -c "SELECT string_agg(quote_ident(rolname), ',') FROM pg_roles")
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
"${PSQL[@]}" -d $DB -c "SET client_min_messages = warning" -c "CREATE EXTENSION opsflags" >/dev/null
"${PSQL[@]}" -d $DB -f "$REPO/scripts/seed.sql" >/dev/null

mode=check
[[ ${TOUR_WRITE:-} == 1 ]] && mode=write
python3 "$REPO/test/readme/tour.py" "$mode" "$REPO/README.md" "$PG_BIN/psql" "${P[@]}" -d $DB
rc=$?

"${PSQL[@]}" -d postgres -c "DROP DATABASE $DB" >/dev/null
"${PSQL[@]}" -d postgres -Atc "SELECT quote_ident(rolname) FROM pg_roles
    WHERE quote_ident(rolname) <> ALL (string_to_array('$roles_before', ','))" |
while read -r role; do
    "${PSQL[@]}" -d postgres -c "DROP ROLE $role" >/dev/null
done
exit $rc
