#!/usr/bin/env bash
# test/http/page.sh BASE_URL OUTDIR: the status page at BASE_URL/ in headless
# Chromium (Debian's chromium, installed if missing): the rendered DOM has the
# overall status, the four component cards, the four charts (a drawn series
# when there are samples), the flags, deployments and alerts tables and no
# error banner; each sample api/status serves is drawn (a marker on each
# while there are few); each flag row says what a request without a user is
# served and why, and a flag switched on that is not served says so; a
# 1280x1600 screenshot is taken (prints TAP).
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
echo "1..19"

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

# what the page was given: api/status, fetched again (nothing changes it
# between the two fetches in the test cluster)
curl -s --max-time 10 "${URL}api/status" >"$OUT/status.json"
facts=$(python3 - "$OUT/status.json" "$OUT/status.dom.html" <<'PY'
import html.parser, json, re, sys
d = json.load(open(sys.argv[1]))
dom = open(sys.argv[2], encoding='utf-8').read()
# charts: samples with a number vs. drawn points and markers
for m in ('connections', 'cache_hit_rate', 'errors', 'database_size'):
    n = sum(1 for s in d.get('samples', []) if isinstance(s.get(m), (int, float)) and not isinstance(s.get(m), bool))
    tag = re.search(r'<figure[^>]*id="chart-%s"[^>]*>' % m, dom)
    pts = re.search(r'data-points="(\d+)"', tag.group(0)) if tag else None
    fig = re.search(r'id="chart-%s"(.*?)</figure>' % m, dom, re.S)
    marks = len(re.findall(r'class="point"', fig.group(1))) if fig else 0
    print('chart', m, n, pts.group(1) if pts else 0, marks)
# flags: api/status's served/reason vs. the row
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.cur = {}, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'tr':
            self.cur = a.get('data-key')
            if self.cur is not None:
                self.rows[self.cur] = [a.get('data-state'), a.get('data-served'), '']
    def handle_endtag(self, tag):
        if tag in ('tr', 'tbody'):
            self.cur = None
    def handle_data(self, t):
        if self.cur is not None:
            self.rows[self.cur][2] += t + ' '
p = P()
p.feed(dom)
for f in d.get('flags', []):
    row = p.rows.get(f['key'], [None, None, ''])
    want = 'partial' if f.get('enabled') is True and (f.get('served') is False or f.get('value') is False) \
        else 'on' if f.get('enabled') is True else 'off'
    ok = ('served' in f and 'reason' in f and row[0] == want and row[1] == json.dumps(f.get('served'))
          and (f.get('reason') or '') in row[2] and (want != 'partial' or 'on, serves off' in row[2]))
    print('flag', f['key'], want, f.get('reason'), 'ok' if ok else 'bad:%s' % row)
PY
)
sed 's/^/# /' <<<"$facts"
grep '^chart' <<<"$facts" | awk '$3 != $4 || ($3 <= 60 && $5 != $3) { bad = 1 } END { exit bad }' &&
    [[ $(grep -c '^chart' <<<"$facts") == 4 ]]
ok $? "each chart draws every sample api/status serves, a marker on each while there are 60 or fewer"
nf=$(grep -c '^flag' <<<"$facts")
((nf >= 1)) && ! grep -q '^flag .* bad' <<<"$facts"
ok $? "each of the $nf flag rows shows what a request without a user is served and the reason api/status gives"
grep -q '^flag [^ ]* partial ' <<<"$facts"
ok $? "a flag switched on that a request without a user does not get is shown as \"on, serves off\" with its reason"

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
