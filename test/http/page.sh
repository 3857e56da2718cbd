#!/usr/bin/env bash
# test/http/page.sh BASE_URL OUTDIR: the status page at BASE_URL/ in headless
# Chromium (Debian's chromium, installed if missing): the rendered DOM has the
# overall status, the four component cards, the four charts (a drawn series
# when there are samples), the flags, deployments and alerts tables and no
# error banner; a 1280x1600 screenshot is taken (prints TAP).
#   BASE_URL  where the server answers, e.g. http://127.0.0.1:8080 (a path
#             prefix works too: the page fetches api/status relative to itself)
#   OUTDIR    written: status.dom.html (the rendered DOM), status.png (the
#             screenshot), chromium-dom/ and chromium-shot/ (profiles and logs)
#   PAGE_EXPECT_SAMPLES  1 (default): at least one chart draws a series;
#                        0: there are no samples, every chart says "no samples yet"
#   CHROMIUM, CHROMIUM_TIMEOUT (seconds per run, default 60): see chromium.sh
# The page's hostile-input, failing-API and stale-data behaviour is tested
# against a mock by test/http/page_xss.sh.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tap.sh
source "$HERE/../tap.sh"
# shellcheck source=test/http/chromium.sh
source "$HERE/chromium.sh"
if (($# != 2)); then
    echo "usage: $0 BASE_URL OUTDIR" >&2
    exit 2
fi
URL=${1%/}/
OUT=$2
EXPECT_SAMPLES=${PAGE_EXPECT_SAMPLES:-1}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
echo "1..16"

ensure_chromium
ok $? "headless chromium is installed ($("$CHROMIUM" --version 2>/dev/null | head -n 1))"

# 1. the rendered DOM. --virtual-time-budget lets the page's fetch of
# api/status finish (virtual time waits for the network) but stops before the
# 10 s refresh.
start=$SECONDS
chromium_run "$OUT/chromium-dom" --virtual-time-budget=5000 --dump-dom "$URL" >"$OUT/status.dom.html"
rc=$?
DOM=$(dom_flat "$OUT/status.dom.html")
[[ $rc == 0 && $DOM == *"<title>opsflags status</title>"* ]]
ok $? "chromium --dump-dom $URL loads the status page (exit $rc, $((SECONDS - start)) s)"
if ((rc != 0)); then
    grep -v -e dbus -e 'CONSOLE' "$OUT/chromium-dom/chromium.err" | tail -n 5 | sed 's/^/# /'
fi

[[ $DOM == *'<body data-state="ok"'* ]]
ok $? "the page rendered api/status (body data-state=ok)"

# first start tag carrying attribute $1 (e.g. id="component-cache")
tag_with() { grep -oE "<[a-zA-Z]+ [^>]*$1[^>]*>" <<<"$DOM" | head -n 1; }

for c in database cache storage queue; do
    tag=$(tag_with "id=\"component-$c\"")
    grep -qE 'data-status="(healthy|degraded|unhealthy)"' <<<"$tag"
    ok $? "component card #component-$c with data-status healthy|degraded|unhealthy (${tag:-missing})"
done

tag=$(tag_with 'id="overall"')
grep -qE 'data-status="(healthy|degraded|unhealthy)"' <<<"$tag"
ok $? "header shows the overall health status (${tag:-missing})"

# each chart: <figure id="chart-M"> ... <svg ...> ... </figure>
charts_ok=0 drawn=0 empty=0
for m in connections cache_hit_rate errors database_size; do
    chunk=$(grep -oP "id=\"chart-$m\".*?</figure>" <<<"$DOM" | head -n 1)
    if [[ $chunk != *"<svg"* ]]; then
        echo "# chart-$m: no <svg>"
        continue
    fi
    charts_ok=$((charts_ok + 1))
    # a series: <path class="series" d="M x y ..."> or a polyline with points
    if grep -qP '<path [^>]*class="series"[^>]*d="M\s*[0-9.]+[ ,][0-9.]+|<polyline [^>]*points="\s*[0-9.]+[ ,][0-9.]+' <<<"$chunk"; then
        drawn=$((drawn + 1))
    fi
    if [[ $chunk == *">no samples yet<"* ]]; then
        empty=$((empty + 1))
    fi
done
((charts_ok == 4))
ok $? "four charts (#chart-connections, -cache_hit_rate, -errors, -database_size), each an <svg> ($charts_ok found)"
if ((EXPECT_SAMPLES)); then
    ((drawn >= 1))
    ok $? "with samples: at least one chart draws a series with points ($drawn of 4 do)"
else
    ((drawn == 0 && empty == 4))
    ok $? "without samples: every chart says \"no samples yet\" and draws no series ($empty say so, $drawn draw)"
fi

table() { grep -oP "<table [^>]*id=\"$1\".*?</table>" <<<"$DOM" | head -n 1; }
n=$(table flags | grep -o 'data-key="' | wc -l)
((n >= 1))
ok $? "#flags lists the environment's flags ($n rows)"

deps=$(table deployments)
alerts=$(table alerts)
nd=$(grep -o 'data-id="' <<<"$deps" | wc -l)
na=$(grep -o 'data-id="' <<<"$alerts" | wc -l)
{ ((nd > 0)) || [[ $deps == *">no deployments recorded<"* ]]; } &&
    { ((na > 0)) || [[ $alerts == *">no open alerts<"* ]]; }
ok $? "#deployments ($nd rows) and #alerts ($na rows) rendered, or their empty-state line"

tag=$(tag_with 'id="error"')
[[ -n $tag && $tag == *" hidden"* ]]
ok $? "no error banner (#error is hidden: ${tag:-missing})"

uncaught=$(grep -c 'CONSOLE.*Uncaught' "$OUT/chromium-dom/chromium.err" 2>/dev/null)
((uncaught == 0))
ok $? "no uncaught JavaScript error in the console ($uncaught)"
grep 'CONSOLE' "$OUT/chromium-dom/chromium.err" 2>/dev/null | head -n 5 | sed 's/^/# /'

# 2. the screenshot
rm -f "$OUT/status.png"
start=$SECONDS
chromium_run "$OUT/chromium-shot" --virtual-time-budget=5000 --window-size=1280,1600 \
    --screenshot="$OUT/status.png" "$URL" >/dev/null
rc=$?
ok $rc "chromium --screenshot (exit $rc, $((SECONDS - start)) s)"

read -r w h size < <(png_info "$OUT/status.png"; echo)
# a blank 1280x1600 page is ~9 kB; the status page with nothing but an error banner
# is ~55 kB, with the fixture's data ~200 kB
[[ $w == 1280 && $h == 1600 ]] && ((size > 40000))
ok $? "screenshot $OUT/status.png is a 1280x1600 PNG of more than 40 kB (${w:-?}x${h:-?}, ${size:-0} bytes)"

tap_done
