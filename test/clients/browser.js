// browser.js: a page in headless Chromium (test/clients/browser/) that shows
// a flag with OpenFeature's web SDK and OFREP web provider, loaded as ES
// modules from test/node_modules through an import map, from an origin other
// than the HTTP server's (http://localhost:<port> against 127.0.0.1), with a
// client API key of staging.  The page first shows what feature_value says
// in SQL for its context; once its provider has opened OFREP's event stream,
// a toggle_flag in SQL reaches it (its ConfigurationChanged event, the DOM's
// text) within 5 s, and so does toggling back; the same page from an origin that
// opsflags.http_cors_origins does not list gets no flag (the browser blocks
// the answers, the SDK fails).  A small static server of this file serves
// the page and takes the page's reports (POST /report: what it rendered);
// this test polls them.  Chromium is started through test/http/chromium.sh
// (chromium_exec) and stopped before the end, on failure too.  Prints TAP.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { Client } = require('pg');

const BASE = process.env.OPSFLAGS_HTTP;
const PAGE_DIR = path.join(__dirname, 'browser');
const MODULES = path.join(__dirname, '..', 'node_modules');
const CHROMIUM_SH = path.join(__dirname, '..', 'http', 'chromium.sh');
const FLAG = 'clients.browser.banner';
const ENV = 'staging';
const CONTEXT = { targetingKey: 'browser-1', country: 'DE', plan: 'pro' };
const KEY_DESCRIPTION = 'browser test';
const CHANGE_LIMIT_MS = 5000;

let n = 0;
let failed = 0;
function ok(cond, what) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
}
const note = (text) => console.log(String(text).split('\n').map((l) => `# ${l}`).join('\n'));

async function until(what, cond, ms) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await cond();
        if (v) return v;
        if (Date.now() > end) { note(`gave up waiting: ${what}`); return null; }
        await new Promise((r) => setTimeout(r, 20));
    }
}

// The page's server: the page, the SDK's modules, /config.json, and /report.
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json' };
function startPageServer(config) {
    const reports = [];
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://page');
        const send = (status, type, body) => {
            res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
            res.end(body);
        };
        if (req.method === 'POST' && url.pathname === '/report') {
            let body = '';
            req.setEncoding('utf8');
            req.on('data', (d) => { body += d; });
            req.on('end', () => {
                try {
                    reports.push({ ...JSON.parse(body), at: Date.now() });
                } catch (e) {
                    reports.push({ event: 'bad report', error: body, at: Date.now() });
                }
                send(204, 'text/plain', '');
            });
            return;
        }
        if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
        if (url.pathname === '/config.json') return send(200, TYPES['.json'], JSON.stringify(config));
        let file = null;
        if (url.pathname === '/' || url.pathname === '/index.html') file = path.join(PAGE_DIR, 'index.html');
        else if (url.pathname === '/page.js') file = path.join(PAGE_DIR, 'page.js');
        else if (url.pathname.startsWith('/node_modules/@openfeature/')) {
            // only the SDK's packages, and nothing outside them
            const f = path.normalize(path.join(MODULES, decodeURIComponent(url.pathname.slice('/node_modules/'.length))));
            if (f.startsWith(path.join(MODULES, '@openfeature') + path.sep)) file = f;
        }
        fs.readFile(file || '/nonexistent', (err, data) => {
            if (err) return send(404, 'text/plain', 'not found\n');
            send(200, TYPES[path.extname(file)] || 'application/octet-stream', data);
        });
    });
    return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, reports }));
    });
}

// Headless Chromium on URL, kept running until stop(): chromium_exec makes
// the child timeout(1) itself, which passes a TERM on to the browser's
// process group (and stops it anyway after CHROMIUM_TIMEOUT seconds).
const launched = [];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'opsflags-browser.'));   // the browsers' profiles and logs
function launch(dir, url) {
    const child = spawn('bash', ['-c', 'source "$1"; shift; chromium_exec "$@"', 'bash', CHROMIUM_SH, dir, url],
                        { stdio: 'ignore', env: { ...process.env, CHROMIUM_TIMEOUT: process.env.CHROMIUM_TIMEOUT || '120' } });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const b = { child, exited, dir, running: true };
    launched.push(b);
    return b;
}
// stopped by a signal: no browser is left to its timeout
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        launched.filter((b) => b.running).forEach((b) => b.child.kill('SIGTERM'));
        fs.rmSync(work, { recursive: true, force: true });
        process.exit(sig === 'SIGINT' ? 130 : 143);
    });
}
async function stop(b) {
    if (!b || !b.running) return;
    b.running = false;
    b.child.kill('SIGTERM');
    const done = await Promise.race([b.exited, new Promise((r) => setTimeout(() => r(null), 15000))]);
    if (done === null) {
        b.child.kill('SIGKILL');
        await b.exited;
    }
    // the browser's own children leave just after it
    b.left = await until(`chromium's processes to exit (${b.dir})`, async () => processesOf(b.dir).length === 0, 10000) ? [] : processesOf(b.dir);
    for (const pid of b.left) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch (e) { /* gone */ }
    }
}
// processes whose command line names DIR (a browser's profile lives there)
function processesOf(dir) {
    const found = [];
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
            if (fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(dir)) found.push(pid);
        } catch (e) { /* gone */ }
    }
    return found;
}
function chromiumLog(b) {
    try {
        return fs.readFileSync(path.join(b.dir, 'chromium.err'), 'utf8');
    } catch (e) {
        return '';
    }
}
function showLog(b) {
    const lines = chromiumLog(b).split('\n').filter((l) => l && !/dbus|bus\.cc/i.test(l));
    note(`last lines of ${b.dir}/chromium.err:\n${lines.slice(-15).join('\n')}`);
}

async function streamsOpen() {
    const text = await (await fetch(BASE + '/metrics')).text();
    const m = text.match(/^opsflags_http_streams (\d+)$/m);
    return m ? Number(m[1]) : -1;
}

// A preflight as the browser sends it for the provider's bulk request.
async function preflight(origin) {
    const r = await fetch(BASE + '/ofrep/v1/evaluate/flags', {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
    });
    return { status: r.status, allow: r.headers.get('access-control-allow-origin') };
}

async function main() {
    const db = new Client();
    await db.connect();
    const sql = async (q, a) => (await db.query(q, a)).rows;
    const setCors = async (origins) => {
        await sql((await sql('SELECT format($1, $2::text) AS q', ['ALTER SYSTEM SET opsflags.http_cors_origins = %L', origins]))[0].q);
        await sql('SELECT pg_reload_conf()');
    };
    let page = null;
    let cors0 = null;
    try {
        await sql('SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]);
        await sql('DELETE FROM opsflags.api_keys WHERE description = $1', [KEY_DESCRIPTION]);
        await sql("SELECT opsflags.create_flag($1, 'New banner', NULL, 'boolean', '[true, false]')", [FLAG]);
        await sql(`SELECT opsflags.update_flag($1, '{"is_enabled": false, "on_variation": 0, "off_variation": 1}', $2)`, [FLAG, ENV]);
        const apiKey = (await sql("SELECT opsflags.create_api_key($1, 'client', $2) AS k", [ENV, KEY_DESCRIPTION]))[0].k;
        await sql('SELECT set_config($1, $2, false)', ['opsflags.environment', ENV]);
        const inSql = async () => (await sql('SELECT opsflags.feature_value($1, $2::jsonb) AS v', [FLAG, JSON.stringify(CONTEXT)]))[0].v;

        page = await startPageServer({ baseUrl: BASE, apiKey, flag: FLAG, context: CONTEXT });
        const allowed = `http://localhost:${page.port}`;
        const other = `http://127.0.0.1:${page.port}`;

        // CORS for the page's origin, next to what is set already.
        cors0 = (await sql('SELECT current_setting($1) AS v', ['opsflags.http_cors_origins']))[0].v;
        const cors = cors0 ? `${cors0},${allowed}` : allowed;
        await setCors(cors);
        const applied = await until('opsflags.http_cors_origins to be applied', async () => (await preflight(allowed)).allow === allowed, 10000);
        const denied = await preflight(other);
        ok(applied && denied.allow === null,
           `with opsflags.http_cors_origins = '${cors}', a preflight from ${allowed} is allowed, one from ${other} is ${denied.status} without Access-Control-Allow-Origin`);

        // 1. The page shows the flag as SQL does, and opens its event stream.
        // (The streams of streams.js are gone first, so that the page's is the one.)
        await until('no event stream open', async () => (await streamsOpen()) === 0, 10000);
        const streams0 = await streamsOpen();
        const before = await inSql();
        const t0 = Date.now();
        const b1 = launch(path.join(work, 'allowed'), `${allowed}/`);
        const mine = (pred) => page.reports.filter((r) => r.origin === allowed && pred(r));
        const first = await until('the page\'s first rendering', async () => page.reports.find((r) => r.origin === allowed), 60000);
        ok(first !== null && first.event === 'ready' && first.value === before && first.text === (before ? 'on' : 'off') && first.errorCode === null,
           `the page at ${allowed}/ shows the flag as feature_value says in SQL for its context: ${JSON.stringify(before)}, <output id="flag">${first ? first.text : '-'}</output> (${first ? `${first.event}, reason ${first.reason}${first.errorCode ? `, error ${first.errorCode}: ${first.error || ''}` : ''}, ${first.at - t0} ms after chromium was started` : 'no report'})`);
        if (!first || first.event !== 'ready') showLog(b1);
        // A change committed before the stream is open is not told to it: wait for it.
        const streaming = await until('the page\'s event stream', async () => (await streamsOpen()) === streams0 + 1, 10000);
        ok(streaming !== null, `the page's provider opens its event stream (opsflags_http_streams ${streams0} -> ${await streamsOpen()})`);

        // 2. Toggled in SQL: the page shows the new value, and again when toggled back.
        for (const on of [true, false]) {
            const seen = page.reports.length;
            const sent = Date.now();
            await sql('SELECT opsflags.toggle_flag($1, $2, $3)', [FLAG, on, ENV]);
            const committed = Date.now();
            const now = await inSql();
            const shown = await until(`the page to show ${on}`, async () => mine((r) => r.event === 'changed' && r.value === now)
                .find((r) => page.reports.indexOf(r) >= seen), 10000);
            const ms = shown ? shown.at - committed : null;
            ok(first !== null && now === on && shown !== undefined && shown !== null && shown.text === (on ? 'on' : 'off') && ms <= CHANGE_LIMIT_MS,
               `toggle_flag(${on}) in SQL, feature_value ${JSON.stringify(now)}: the page shows it on its ConfigurationChanged event within ${CHANGE_LIMIT_MS / 1000} s (<output id="flag">${shown ? shown.text : '-'}</output>)`);
            note(shown ? `toggle_flag(${on}): shown ${ms} ms after COMMIT returned (${shown.at - sent} ms after it was sent)` : `toggle_flag(${on}): never shown`);
            if (!shown) showLog(b1);
        }
        const errors1 = mine((r) => r.event === 'error' || r.event === 'failed');
        await stop(b1);
        const left1 = b1.left;
        ok(errors1.length === 0 && left1.length === 0,
           `the page reported no error (${page.reports.filter((r) => r.origin === allowed).length} reports), and chromium is stopped, no process of it left${left1.length ? ` (left: ${left1.join(' ')})` : ''}`);

        // 3. The same page from an origin that is not allowed: no flag.
        const b2 = launch(path.join(work, 'other'), `${other}/`);
        const failure = await until('the page from the other origin to report', async () => page.reports.find((r) => r.origin === other && r.event !== 'error'), 60000);
        const blocked = await until('chromium to log the CORS block', async () => /blocked by CORS policy/.test(chromiumLog(b2)), 5000);
        const values2 = page.reports.filter((r) => r.origin === other && 'value' in r);
        ok(failure !== null && failure.event === 'failed' && failure.text === 'unavailable' && values2.length === 0 && blocked !== null,
           `the page at ${other}/ (not in opsflags.http_cors_origins) gets no flag: ${failure ? `${failure.event}: ${failure.error}` : 'no report'}; <output id="flag">${failure ? failure.text : '-'}</output>; chromium: blocked by CORS policy`);
        if (!failure || failure.event !== 'failed' || !blocked) showLog(b2);
        await stop(b2);
        ok(b2.left.length === 0, `the second chromium is stopped, no process of it left${b2.left.length ? ` (left: ${b2.left.join(' ')})` : ''}`);
    } finally {
        for (const b of launched) await stop(b);
        if (page) page.server.close();
        if (cors0 !== null) await setCors(cors0).catch(() => {});
        await sql('SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]).catch(() => {});
        await sql('SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = $1 AND active', [KEY_DESCRIPTION]).catch(() => {});
        await sql('DELETE FROM opsflags.api_keys WHERE description = $1', [KEY_DESCRIPTION]).catch(() => {});
        await db.end().catch(() => {});
        fs.rmSync(work, { recursive: true, force: true });
    }
    console.log(`1..${n}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    console.log(`not ok ${n + 1} - ${e.message}`);
    console.log(`1..${n + 1}`);
    process.exitCode = 1;
});
