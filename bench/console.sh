#!/usr/bin/env bash
# bench/console.sh: the console's list and search at 1,000 flags, on a
# throwaway cluster.  1,000 flags (tags, a description, two rules each),
# and a role signed in with a password.  Server side: the management API's
# own SQL (opsflags_internal.api_call, what the HTTP server's database
# worker runs for GET /api/v1/flags; summaries, and whole documents with
# summary=false) as that role, against a baseline in
# the same session: the same flag and config rows turned into JSON by the
# built-in to_jsonb(), what a hand-written endpoint would serve.
# Then over HTTP on loopback with the session cookie (curl's total time:
# the loop, the queue to the database worker, the SQL, the answer), list
# and a search that finds one flag.  Median and p95 of BENCH_CONSOLE_RUNS
# (default 50) each.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

RUNS=${BENCH_CONSOLE_RUNS:-50}
TMP=''
DATADIR=''

cleanup() {
    set +e
    [[ -n $DATADIR ]] && stop_cluster "$DATADIR"
    [[ -n $TMP ]] && rm -rf -- "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${OPSFLAGS_BENCH_BUILT:-} != 1 ]]; then
    ensure_packages curl
    build_install
fi

TMP=$(mktemp -d /tmp/opsflags-bench-console.XXXXXX)
is_root && chown "$SERVER_USER:" "$TMP"
DATADIR=$TMP/data
PORT=$(free_port 56300)
HTTP_PORT=$(free_port $((PORT + 1)))
start_cluster "$DATADIR" "$PORT" "$TMP" "$TMP/postgres.log" "fsync = off" \
    "opsflags.sample_interval = 0" "opsflags.database = 'postgres'" "opsflags.http_port = $HTTP_PORT" >/dev/null
q() { pg_psql "$TMP" "$PORT" postgres -Atq "$@"; }
PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
q -c "SET log_min_messages = error" -c "SET log_statement = none" -c "CREATE EXTENSION opsflags" \
  -c "CREATE ROLE bench_console LOGIN PASSWORD '$PASSWORD' IN ROLE opsflags_admin" \
  -c "SELECT count(opsflags.create_flag('bench.console.' || i, 'Console flag ' || i,
        CASE WHEN i = 777 THEN 'the needle' ELSE 'Description of flag ' || i END, 'boolean', NULL,
        ARRAY['team-' || (i % 10), CASE WHEN i % 2 = 0 THEN 'web' ELSE 'api' END]))
      FROM generate_series(1, 1000) i" \
  -c "SELECT count(opsflags.update_flag('bench.console.' || i, jsonb_build_object('is_enabled', i % 3 = 0,
        'enabled_for_users', jsonb_build_array('u' || i), 'enabled_percentage', i % 100,
        'rules', jsonb_build_array(
          jsonb_build_object('id', 'de', 'clauses', jsonb_build_array(jsonb_build_object('attribute', 'country', 'op', 'in', 'values', jsonb_build_array('DE', 'AT', 'CH'))), 'serve', jsonb_build_object('variation', 0)),
          jsonb_build_object('id', 'pro', 'clauses', jsonb_build_array(jsonb_build_object('attribute', 'plan', 'op', 'in', 'values', jsonb_build_array('pro'))), 'rollout', jsonb_build_object('percentage', 10), 'serve', jsonb_build_object('variation', 0)))),
        'production')) FROM generate_series(1, 1000) i" >/dev/null

echo "== 12. the console at 1,000 flags (production), $RUNS runs each: median and p95, ms"
q <<SQL
CREATE TABLE public.bench_t (what text, ms float8);
GRANT INSERT ON public.bench_t TO bench_console;
SET ROLE bench_console;
DO \$\$
DECLARE
    t0 timestamptz;
    n  integer;
BEGIN
    FOR i IN 1 .. $RUNS LOOP
        t0 := clock_timestamp();
        PERFORM * FROM opsflags_internal.api_call('GET', 'flags', 'environment=production', NULL);
        INSERT INTO public.bench_t VALUES ('1 SQL: api_call list (1,000 flags)', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        PERFORM * FROM opsflags_internal.api_call('GET', 'flags', 'environment=production&summary=false', NULL);
        INSERT INTO public.bench_t VALUES ('1b SQL: api_call list, summary=false', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        PERFORM * FROM opsflags_internal.api_call('GET', 'flags', 'environment=production&search=NEEDLE', NULL);
        INSERT INTO public.bench_t VALUES ('2 SQL: api_call search (1 found)', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        PERFORM jsonb_agg(to_jsonb(f) || jsonb_build_object('config', to_jsonb(c)) ORDER BY f.flag_key)
        FROM opsflags.feature_flags f
        LEFT JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id AND c.environment = 'production'
        WHERE NOT f.archived;
        INSERT INTO public.bench_t VALUES ('3 SQL baseline: the rows as JSON (to_jsonb)', 1000 * extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    SELECT jsonb_array_length(opsflags.get_flags('production')) INTO n;
    IF n <> 1000 THEN
        RAISE EXCEPTION 'expected 1000 flags, found %', n;
    END IF;
END
\$\$;
RESET ROLE;
SQL

URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/livez") == 200 ]] && break
    sleep 0.1
done
cookie=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    --data "{\"role\": \"bench_console\", \"password\": \"$PASSWORD\"}" "$URL/api/v1/session" \
    | sed -n 's/^[Ss]et-[Cc]ookie: *\(opsflags_session=[^;]*\).*/\1/p')
[[ -n $cookie ]] || die "sign-in failed"
n=$(curl -s -H "Cookie: $cookie" "$URL/api/v1/flags?environment=production" | grep -o '"key"' | wc -l)
[[ $n == 1000 ]] || die "GET /api/v1/flags listed $n flags, not 1000"
for i in $(seq 1 "$RUNS"); do
    printf '4 HTTP: GET /api/v1/flags (%s flags, %s bytes)\t%s\n' "$n" \
        "$(curl -s -o /dev/null -w '%{size_download}' -H "Cookie: $cookie" "$URL/api/v1/flags?environment=production")" \
        "$(curl -s -o /dev/null -w '%{time_total}' -H "Cookie: $cookie" "$URL/api/v1/flags?environment=production" | awk '{print $1 * 1000}')"
    printf '5 HTTP: GET /api/v1/flags?search=NEEDLE\t%s\n' \
        "$(curl -s -o /dev/null -w '%{time_total}' -H "Cookie: $cookie" "$URL/api/v1/flags?environment=production&search=NEEDLE" | awk '{print $1 * 1000}')"
done >"$TMP/http.tsv"
curl -s -o /dev/null -X DELETE -H "Cookie: $cookie" "$URL/api/v1/session" || true

q -c "\\copy public.bench_t FROM '$TMP/http.tsv'" \
  -c "SELECT format(' %-52s median %7s   p95 %7s', regexp_replace(what, '^[0-9a-z]+ ', ''),
                    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
                    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2))
      FROM public.bench_t GROUP BY what ORDER BY what" \
  -c "SELECT format(' api_call list / baseline (medians): %sx',
                    round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE what LIKE '1 %')
                         / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE what LIKE '3 %'))::numeric, 1))
      FROM public.bench_t"
