#!/usr/bin/env bash
# test/http/page_xss.sh OUTDIR: src/status_page.html in headless Chromium
# against a mock api/status (no database, no C server; prints TAP):
#   /xss/    strings full of <img src=x onerror=...>, <script>, <svg onload>,
#            quote breakouts and non-numbers where numbers belong: everything
#            renders as text, no element is injected, no payload runs, and
#            samples without a usable time or number draw no series (the
#            charts say "no data in these samples")
#   /down/   api/status answers 503: the #error banner shows, nothing rendered
#   /empty/  no samples, flags, deployments or alerts: each chart says "no
#            samples yet", each table its empty-state line
#   /stale/  api/status answers once with test/http/status_fixture.json, then
#            500: after the 10 s refresh the banner shows and the data stays
#   /few/    the first samples (four, a minute apart, one without a cache hit
#            rate): each chart draws one line through all of them with a
#            marker on each
#   /fixture/ test/http/status_fixture.json: a flag switched on that a
#            request without a user does not get says so and why (rollout,
#            schedule), a switched-off one says off; a failed deployment
# Each case is served under its own path prefix, so the page's relative
# fetch of api/status is exercised too. Also checks that the page file is
# self-contained (no external URL, src, href, url() or @import; its one link,
# to the console on the same server, aside) and < 26 kB.
# Needs python3 (the mock server and the DOM checks) and chromium (installed
# if missing, see chromium.sh). OUTDIR gets the DOM dumps and chromium logs.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PAGE=$HERE/../../src/status_page.html
FIXTURE=$HERE/status_fixture.json
# shellcheck source=test/tap.sh
source "$HERE/../tap.sh"
# shellcheck source=test/http/chromium.sh
source "$HERE/chromium.sh"
if (($# != 1)); then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
echo "1..15"

size=$(stat -c %s "$PAGE")
# the only URL in the page is the SVG namespace, the only link the console's
links=$(grep -c 'href=' "$PAGE")
ext=$(grep -v '<a id="console-link" href="console/">Console</a>' "$PAGE" |
      grep -Eio '(src|href|action)[[:space:]]*=|url[[:space:]]*\(|@import|@font-face|(https?|ftp):[^ "'\'']*|//[a-z0-9.-]+\.[a-z]{2,}' |
      grep -vx 'http://www.w3.org/2000/svg' | sort -u | tr '\n' ' ')
[[ -z $ext ]] && ((links == 1 && size < 26624))
ok $? "src/status_page.html is self-contained, links only to the console, and is under 26 kB ($size bytes, $links links${ext:+; references: $ext})"

ensure_chromium
ok $? "headless chromium is installed"

# --- the mock: GET /CASE/ is the page, GET /CASE/api/status the next
# response of that case's list (the last one repeats).
cat >"$OUT/xss.json" <<'JSON'
{
  "generated_at": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','gen')>",
  "environment": "<script>document.documentElement.setAttribute('data-pwned','env')</script>prod",
  "in_recovery": true,
  "maintenance": "<b>yes</b>",
  "health": {
    "status": "\"><img src=x onerror=document.documentElement.setAttribute('data-pwned','status')>",
    "timestamp": "<i>now</i>",
    "version": "<svg onload=document.documentElement.setAttribute('data-pwned','version')>",
    "commit_sha": "<iframe src=javascript:parent.document.documentElement.setAttribute('data-pwned','sha')>",
    "components": {
      "database": {"status": "healthy", "latencyMs": "<b>1</b>", "message": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','db')>"},
      "cache": {"status": "degraded\" onmouseover=\"alert(1)", "latencyMs": 1e400, "message": "</div><script>document.documentElement.setAttribute('data-pwned','cache')</script>"},
      "storage": {"status": "unhealthy", "latencyMs": null, "message": null},
      "queue": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','queue')>",
      "<img src=x onerror=document.documentElement.setAttribute('data-pwned','name')>": {"status": "healthy", "latencyMs": 1, "message": "x"}
    },
    "checks": {"database": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','check')>"}
  },
  "samples": [
    {"t": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','t')>", "connections": 3, "cache_hit_rate": 0.9, "errors": 0, "database_size": 1},
    {"t": "2026-11-22T05:55:00+00:00", "connections": "<b>3</b>", "cache_hit_rate": "0.9", "errors": true, "database_size": [1]},
    "<img src=x onerror=document.documentElement.setAttribute('data-pwned','sample')>"
  ],
  "flags": [
    {"key": "\"><img src=x onerror=document.documentElement.setAttribute('data-pwned','key')>", "name": "<script>document.documentElement.setAttribute('data-pwned','name')</script>",
     "enabled": "<b>true</b>", "percentage": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','pct')>",
     "served": "<b>no</b>", "reason": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','reason')>",
     "enable_at": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','at')>",
     "value": {"html": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','value')>"}, "version": "<b>3</b>", "updated_at": "<u>x</u>"},
    {"key": "long.value", "name": "long", "enabled": true, "percentage": 5, "served": false, "reason": "SCHEDULE",
     "enable_at": "<script>document.documentElement.setAttribute('data-pwned','enable_at')</script>", "disable_at": "<b>x</b>", "value": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','long')> padding padding padding padding padding padding padding padding padding padding padding", "version": 1, "updated_at": null}
  ],
  "deployments": [
    {"id": "\"><img src=x onerror=document.documentElement.setAttribute('data-pwned','depid')>", "version": "<script>document.documentElement.setAttribute('data-pwned','depver')</script>",
     "status": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','depstatus')>", "deployed_at": "<b>today</b>",
     "deployed_by": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','by')>", "commit_sha": "\"><img src=x onerror=document.documentElement.setAttribute('data-pwned','commit')>"}
  ],
  "alerts": [
    {"id": "<b>7</b>", "type": "x", "severity": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','sev')>",
     "title": "<script>document.documentElement.setAttribute('data-pwned','title')</script>", "message": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','msg')>",
     "component": "<svg><script>document.documentElement.setAttribute('data-pwned','comp')</script></svg>", "created_at": "<img src=x onerror=document.documentElement.setAttribute('data-pwned','created')>"}
  ]
}
JSON

cat >"$OUT/empty.json" <<'JSON'
{"generated_at": "2026-11-22T06:00:00+00:00", "environment": "staging", "in_recovery": false, "maintenance": true,
 "health": {"status": "healthy", "timestamp": "2026-11-22T06:00:00+00:00", "version": "0.2.0", "commit_sha": null,
            "components": {"database": {"status": "healthy", "latencyMs": 0.3, "message": "ok"},
                           "cache": {"status": "healthy", "latencyMs": 0, "message": "not configured"},
                           "storage": {"status": "healthy", "latencyMs": 0.1, "message": "ok"},
                           "queue": {"status": "healthy", "latencyMs": 0, "message": "not configured"}},
            "checks": {"database": "ok", "cache": "ok", "storage": "ok", "queue": "ok"}},
 "samples": [], "flags": [], "deployments": [], "alerts": []}
JSON

cat >"$OUT/few.json" <<'JSON'
{"generated_at": "2026-11-22T06:03:10+00:00", "environment": "production", "in_recovery": false, "maintenance": false,
 "health": {"status": "healthy", "components": {}, "checks": {}},
 "samples": [
   {"t": "2026-11-22T06:00:00.5+00:00", "connections": 3, "active": 1, "cache_hit_rate": 0.91, "errors": 0, "database_size": 8000000},
   {"t": "2026-11-22T06:01:00.5+00:00", "connections": 5, "active": 2, "cache_hit_rate": 0.95, "errors": 1, "database_size": 8100000},
   {"t": "2026-11-22T06:01:30+00:00", "connections": 4, "active": 1, "cache_hit_rate": null, "errors": 1, "database_size": 8150000},
   {"t": "2026-11-22T06:02:00.5+00:00", "connections": 4, "active": 1, "cache_hit_rate": 0.97, "errors": 2, "database_size": 8200000}],
 "flags": [], "deployments": [], "alerts": []}
JSON

rm -f "$OUT/mock.port"
python3 - "$PAGE" "$OUT/mock.port" \
    xss:200:"$OUT/xss.json" empty:200:"$OUT/empty.json" down:503: stale:200:"$FIXTURE" stale:500: \
    few:200:"$OUT/few.json" fixture:200:"$FIXTURE" >"$OUT/mock.log" 2>&1 <<'PY' &
import http.server, os, sys
page = open(sys.argv[1], 'rb').read()
cases, hits = {}, {}
for spec in sys.argv[3:]:
    name, code, path = spec.split(':', 2)
    cases.setdefault(name, []).append((int(code), open(path, 'rb').read() if path else b'{"error": "mock"}'))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split('?')[0]
        for name, seq in cases.items():
            if path == '/%s/' % name:
                return self.reply(200, 'text/html; charset=utf-8', page)
            if path == '/%s/api/status' % name:
                i = hits.get(name, 0)
                hits[name] = i + 1
                code, body = seq[min(i, len(seq) - 1)]
                return self.reply(code, 'application/json', body)
        self.reply(404, 'text/plain', b'not found')

    def reply(self, code, ctype, body):
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
with open(sys.argv[2] + '.tmp', 'w') as f:
    f.write(str(srv.server_address[1]))
os.rename(sys.argv[2] + '.tmp', sys.argv[2])
srv.serve_forever()
PY
MOCK_PID=$!
trap 'kill "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null' EXIT
wait_for 10 test -s "$OUT/mock.port"
ok $? "mock api/status server started"
BASE=http://127.0.0.1:$(cat "$OUT/mock.port" 2>/dev/null)

# inspect DOMFILE: facts about the rendered DOM, one "name value" per line
inspect() {
    python3 - "$1" <<'PY'
import html.parser, re, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.onattrs, self.pwned, self.text, self.ids = {}, 0, 0, [], {}
    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for k, v in attrs:
            if k.startswith('on'):
                self.onattrs += 1
            if k == 'data-pwned':
                self.pwned += 1
            if k == 'id':
                self.ids[v] = dict(attrs)
    def handle_data(self, d):
        self.text.append(d)
p = P()
dom = open(sys.argv[1], encoding='utf-8', errors='replace').read()
p.feed(dom)
text = ''.join(p.text)
t = p.tags
print('rendered', int('data-state="ok"' in dom))
# the page itself has exactly one <script>, four <svg> (charts) and no img, iframe, b, i, u
print('injected', sum(t.get(x, 0) for x in ('img', 'iframe', 'b', 'i', 'u', 'object', 'embed'))
      + max(t.get('script', 0) - 1, 0) + max(t.get('svg', 0) - 4, 0))
print('onattrs', p.onattrs)
print('pwned', p.pwned)
print('astext', int("<img src=x onerror=document.documentElement.setAttribute('data-pwned','db')>" in text
                    and "<script>document.documentElement.setAttribute('data-pwned','title')</script>" in text
                    and '"><img src=x onerror' in text))
print('nodata', sum(1 for m in ('connections', 'cache_hit_rate', 'errors', 'database_size')
                    if re.search(r'id="chart-%s"(?:(?!</figure>).)*>no data in these samples<' % m, dom, re.S)))
print('nosamples', sum(1 for m in ('connections', 'cache_hit_rate', 'errors', 'database_size')
                       if re.search(r'id="chart-%s"(?:(?!</figure>).)*>no samples yet<' % m, dom, re.S)))
print('series', len(re.findall(r'class="series"', dom)))
print('components', sum(1 for c in ('database', 'cache', 'storage', 'queue') if 'component-' + c in p.ids))
e = p.ids.get('error')
print('banner', 1 if e is not None and 'hidden' not in e else 0)
print('bannertext', re.sub(r'\s+', ' ', re.search(r'id="error"[^>]*>([^<]*)<', dom).group(1)) if 'id="error"' in dom else '')
PY
}
fact() { sed -n "s/^$1 //p" <<<"$FACTS"; }

# --- /xss/
chromium_run "$OUT/chromium-xss" --virtual-time-budget=5000 --dump-dom "$BASE/xss/" >"$OUT/xss.dom.html"
FACTS=$(inspect "$OUT/xss.dom.html")
[[ $(fact rendered) == 1 && $(fact components) == 4 ]]
ok $? "hostile api/status: the page still renders (data-state=ok, the four component cards)"
[[ $(fact injected) == 0 && $(fact onattrs) == 0 ]]
ok $? "hostile api/status: no element injected, no on* attribute ($(fact injected) extra elements, $(fact onattrs) on* attributes)"
[[ $(fact pwned) == 0 ]] && ! grep -q 'CONSOLE.*Uncaught' "$OUT/chromium-xss/chromium.err"
ok $? "hostile api/status: no payload ran (no data-pwned attribute, no uncaught error)"
[[ $(fact astext) == 1 ]]
ok $? "hostile api/status: the markup is shown as text"
[[ $(fact nodata) == 4 && $(fact series) == 0 ]]
ok $? "samples without a usable time or number: no series, every chart says \"no data in these samples\" ($(fact nodata) of 4, $(fact series) series)"

# --- /empty/
chromium_run "$OUT/chromium-empty" --virtual-time-budget=5000 --dump-dom "$BASE/empty/" >"$OUT/empty.dom.html"
FACTS=$(inspect "$OUT/empty.dom.html")
[[ $(fact rendered) == 1 && $(fact nosamples) == 4 && $(fact series) == 0 ]] &&
    grep -q '>no open alerts<' "$OUT/empty.dom.html" && grep -q '>no flags<' "$OUT/empty.dom.html" &&
    grep -q '>no deployments recorded<' "$OUT/empty.dom.html" && grep -q 'id="badge-maintenance"' "$OUT/empty.dom.html"
ok $? "empty lists: \"no samples yet\" in $(fact nosamples) of 4 charts, \"no open alerts\", \"no flags\", \"no deployments recorded\", maintenance badge"

# --- /down/
chromium_run "$OUT/chromium-down" --virtual-time-budget=5000 --dump-dom "$BASE/down/" >"$OUT/down.dom.html"
FACTS=$(inspect "$OUT/down.dom.html")
[[ $(fact banner) == 1 && $(fact bannertext) == *"HTTP 503"* && $(fact components) == 0 ]] &&
    grep -q '<body data-state="error"' "$OUT/down.dom.html"
ok $? "api/status 503: #error banner visible ($(fact bannertext)), data-state=error"

# --- /stale/: the first answer renders; the refresh 10 s later gets a 500.
# The virtual-time budget runs past that refresh without waiting 10 real seconds.
chromium_run "$OUT/chromium-stale" --virtual-time-budget=15000 --dump-dom "$BASE/stale/" >"$OUT/stale.dom.html"
FACTS=$(inspect "$OUT/stale.dom.html")
[[ $(fact banner) == 1 && $(fact bannertext) == *"HTTP 500"* ]]
ok $? "refresh answered 500: #error banner visible ($(fact bannertext))"
[[ $(fact components) == 4 && $(fact series) == 4 ]] && grep -q 'data-key="posts.ai_generation"' "$OUT/stale.dom.html"
ok $? "refresh answered 500: the last data stays on the page (4 cards, $(fact series) series, the flags)"

# --- /few/: per chart points/lines/markers: one line (one M) through every
# sample that has the value, a marker on each
chromium_run "$OUT/chromium-few" --virtual-time-budget=5000 --dump-dom "$BASE/few/" >"$OUT/few.dom.html"
few=$(python3 - "$OUT/few.dom.html" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding='utf-8').read()
for m in ('connections', 'cache_hit_rate', 'errors', 'database_size'):
    tag = re.search(r'<figure[^>]*id="chart-%s"[^>]*>' % m, dom)
    pts = re.search(r'data-points="(\d+)"', tag.group(0)) if tag else None
    fig = re.search(r'id="chart-%s"(.*?)</figure>' % m, dom, re.S)
    fig = fig.group(1) if fig else ''
    series = ' '.join(re.findall(r'<path [^>]*class="series"[^>]*d="([^"]*)"', fig))
    print('%s=%s/%s/%s' % (m, pts.group(1) if pts else 0, series.count('M'), len(re.findall(r'class="point"', fig))), end=' ')
PY
)
[[ $few == "connections=4/1/4 cache_hit_rate=3/1/3 errors=4/1/4 database_size=4/1/4 " ]]
ok $? "the first samples: each chart draws one line through every sample, a marker on each (chart=points/lines/markers: $few)"

# --- /fixture/: the flags table says what a request without a user gets
chromium_run "$OUT/chromium-fixture" --virtual-time-budget=5000 --dump-dom "$BASE/fixture/" >"$OUT/fixture.dom.html"
flags=$(python3 - "$OUT/fixture.dom.html" <<'PY'
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.cur, self.pills = {}, None, {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'tr':
            self.cur = a.get('data-key')
            if self.cur is not None:
                self.rows[self.cur] = [a.get('data-state', '-'), '']
        elif tag == 'span' and self.cur is not None and 'pill' in (a.get('class') or '') and self.cur not in self.pills:
            self.pills[self.cur] = a.get('data-status', '-')
    def handle_endtag(self, tag):
        if tag in ('tr', 'tbody'):
            self.cur = None
    def handle_data(self, d):
        if self.cur is not None:
            self.rows[self.cur][1] += d + ' '
p = P()
p.feed(open(sys.argv[1], encoding='utf-8').read())
for k, (st, text) in sorted(p.rows.items()):
    print('%s|%s|%s|%s' % (k, st, p.pills.get(k, '-'), ' '.join(text.split())))
PY
)
sed 's/^/# /' <<<"$flags"
grep -q '^posts.ai_generation|partial|partial|.*on, serves off.*50% rollout by user id: a request without a user is out.*ROLLOUT_OUT' <<<"$flags" &&
    grep -q '^orders.writes|partial|partial|.*on, serves off.*scheduled: on from 2099-01-01 00:00:00 UTC.*SCHEDULE' <<<"$flags" &&
    grep -q '^ui.banner|off|off|.*switched off in this environment' <<<"$flags" &&
    grep -q '^checkout.new_flow|on|on|.*in the 100% rollout' <<<"$flags" &&
    grep -q '^search.engine|on|on|.*"opensearch"' <<<"$flags" &&
    grep -q 'class="pill s-failed" data-status="failed"' "$OUT/fixture.dom.html"
ok $? "a flag switched on that a request without a user does not get shows \"on, serves off\" and why (rollout, schedule); off and on flags as such; a failed deployment"

kill "$MOCK_PID" 2>/dev/null
wait "$MOCK_PID" 2>/dev/null
trap - EXIT
alive=0
kill -0 "$MOCK_PID" 2>/dev/null && alive=1
ok $alive "mock server stopped"

tap_done
