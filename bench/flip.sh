#!/usr/bin/env bash
# bench/flip.sh: what one flag flip costs the other sessions (also run as
# section 10 of `make bench`), on a throwaway cluster with opsflags
# preloaded.  10,000 flags; session A evaluates all of them in one
# statement, again and again; session B (dblink) commits a change between
# some of A's statements.  Per round, interleaved, A's statement is timed:
#   warm     after nothing (the cache serves everything)
#   flip     first statement after B toggled one flag (per-flag invalidation:
#            A reloads that flag only)
#   reset    first statement after B changed an environment, which empties
#            the whole cache, as every flip did before per-flag invalidation
# Prints the medians, the ratios flip / warm (target <= 1.5) and reset /
# warm, and what flag_cache_stats() says A reloaded.
#   BENCH_FLIP_ROUNDS  rounds (default 15)
#   BENCH_FLIP_FLAGS   flags (default 10000)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

ROUNDS=${BENCH_FLIP_ROUNDS:-15}
NFLAGS=${BENCH_FLIP_FLAGS:-10000}
TMP=''
DATADIR=''

cleanup() {
    set +e
    [[ -n $DATADIR ]] && stop_cluster "$DATADIR"
    [[ -n $TMP ]] && rm -rf -- "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${OPSFLAGS_BENCH_BUILT:-} != 1 ]]; then
    build_install
fi

TMP=$(mktemp -d /tmp/opsflags-bench-flip.XXXXXX)
is_root && chown "$SERVER_USER:" "$TMP"
DATADIR=$TMP/data
PORT=$(free_port 57000)
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.sample_interval = 0" >/dev/null
q() { pg_psql "$TMP" "$PORT" postgres -Atq "$@"; }
q -c "CREATE EXTENSION opsflags" -c "CREATE EXTENSION dblink" \
  -c "SELECT count(opsflags.create_flag('bench.flip.' || i, 'Flip ' || i)) FROM generate_series(1, $NFLAGS) i" \
  -c "UPDATE opsflags.feature_flag_configs SET is_enabled = true, enabled_percentage = 50 WHERE environment = 'production'" \
  -c "VACUUM ANALYZE" >/dev/null

# Session A is one psql session running this script; B is its dblink
# connection.  Each timed statement is a statement of its own (the cache
# takes changes in at a statement's first lookup) and times itself:
# clock_timestamp() in its output is read once the aggregate is done.
EVAL="SELECT count(*) FILTER (WHERE opsflags.feature_enabled('bench.flip.' || i, 'user-' || i)) AS n,
             extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 AS ms
      FROM generate_series(1, $NFLAGS) i"
{
    echo "\\set ON_ERROR_STOP 1"
    echo "\\o /dev/null"
    echo "SET client_min_messages = warning; SET jit = off;"
    echo "CREATE TEMP TABLE results (variant text, round int, ms float8, reloads bigint, resets bigint);"
    echo "SELECT dblink_connect('b', 'host=$TMP port=$PORT dbname=postgres user=postgres');"
    echo "$EVAL;"
    echo "$EVAL;"
    for ((r = 1; r <= ROUNDS; r++)); do
        k=$(( (r * 7919) % NFLAGS + 1 ))
        for variant in warm flip reset; do
            case $variant in
                flip) echo "SELECT dblink_exec('b', \$q\$DO \$do\$BEGIN PERFORM opsflags.toggle_flag('bench.flip.$k', NOT (opsflags.get_flag('bench.flip.$k') -> 'config' ->> 'is_enabled')::boolean); END\$do\$\$q\$);" ;;
                reset) echo "SELECT dblink_exec('b', \$\$UPDATE opsflags.environments SET description = description WHERE name = 'production'\$\$);" ;;
            esac
            echo "SELECT opsflags.flag_cache_stats() AS before \\gset"
            echo "$EVAL \\gset"
            echo "INSERT INTO results SELECT '$variant', $r, :ms,
                    (s ->> 'reloads')::bigint - (:'before'::jsonb ->> 'reloads')::bigint,
                    (s ->> 'resets')::bigint - (:'before'::jsonb ->> 'resets')::bigint
                  FROM opsflags.flag_cache_stats() s;"
            # settle: the statement after a change is the one timed above
            echo "$EVAL;"
        done
    done
    cat <<'SQL'
\o
\pset format aligned
\pset footer off
\pset tuples_only off
CREATE TEMP VIEW m AS
SELECT variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
       min(reloads) AS min_reloads, max(reloads) AS max_reloads, sum(resets) AS resets, count(*) AS rounds
FROM results GROUP BY variant;
SELECT variant, round(ms::numeric, 2) AS median_ms, rounds, min_reloads || '..' || max_reloads AS reloads, resets
FROM m ORDER BY ms;
SELECT round(((SELECT ms FROM m WHERE variant = 'flip') / (SELECT ms FROM m WHERE variant = 'warm'))::numeric, 2)
         AS "flip / warm (target <= 1.5)",
       round(((SELECT ms FROM m WHERE variant = 'reset') / (SELECT ms FROM m WHERE variant = 'warm'))::numeric, 2)
         AS "whole reset / warm (every flip before)";
SQL
} >"$TMP/flip.sql"
chmod a+r "$TMP/flip.sql"

echo "== 10. one flag flip in another session: $NFLAGS flags evaluated in one statement, median of $ROUNDS interleaved rounds"
pg_psql "$TMP" "$PORT" postgres -q -f "$TMP/flip.sql"
