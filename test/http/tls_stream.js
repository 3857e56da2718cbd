// tls_stream.js: OFREP's event stream over HTTPS (run by test/http/tls.sh,
// Node's own https, the test CA in NODE_EXTRA_CA_CERTS).  The bulk answer
// names the stream with a ticket; the stream opens over TLS and is told to
// fetch as it opens; a flag change committed in SQL (psql) arrives as an
// event; a TLS client that does not read is dropped (its untaken bytes
// counted with what OpenSSL holds), the one that reads is not; when the
// client leaves, the server sees it (opsflags_http_streams back to 0).
// Exits 0 when all of that holds, saying what it saw.
//   OPSFLAGS_HTTPS  https://127.0.0.1:PORT     PSQL  psql binary (PG* set)
//   FLAG            a boolean flag to toggle in production
//   API_KEY         a client key of production
'use strict';

const https = require('https');
const { execFileSync } = require('child_process');

const BASE = process.env.OPSFLAGS_HTTPS;
const FLAG = process.env.FLAG;

function request(method, path, body) {
    return new Promise((resolve) => {
        const req = https.request(BASE + path, { method, agent: false, headers: { 'Content-Type': 'application/json', Connection: 'close', Authorization: `Bearer ${process.env.API_KEY}` } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { text += d; });
            res.on('end', () => resolve({ status: res.statusCode, body: text }));
        });
        req.on('error', (e) => resolve({ status: 0, body: String(e) }));
        req.end(body);
    });
}
async function until(cond, ms) {
    const end = Date.now() + ms;
    while (!(await cond())) {
        if (Date.now() > end) return false;
        await new Promise((r) => setTimeout(r, 20));
    }
    return true;
}
async function metric(name) {
    const m = (await request('GET', '/metrics')).body.match(new RegExp(`^${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : -1;
}
const streams = () => metric('opsflags_http_streams');
function sql(...qs) {
    execFileSync(process.env.PSQL, ['-X', '-Atq', '-v', 'ON_ERROR_STOP=1', ...qs.flatMap((q) => ['-c', q])],
                 { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function main() {
    const bulk = await request('POST', '/ofrep/v1/evaluate/flags', '{"context": {"targetingKey": "u1"}}');
    let uri = '';
    try { uri = JSON.parse(bulk.body).eventStreams[0].endpoint.requestUri; } catch (e) { uri = ''; }
    if (bulk.status !== 200 || !/^\/ofrep\/v1\/stream\?token=/.test(uri)) {
        console.log(`bulk answer over HTTPS: ${bulk.status}, no stream named (${bulk.body.slice(0, 200)})`);
        return 1;
    }
    let data = '';
    let head = null;
    const req = https.get(BASE + uri, { agent: false }, (res) => {
        head = res;
        res.setEncoding('utf8');
        res.on('data', (d) => { data += d; });
    });
    req.on('error', (e) => { data += `\nerror: ${e}`; });
    const events = () => (data.match(/refetchEvaluation/g) || []).length;
    const opened = await until(async () => events() > 0, 5000);
    const open = await streams();
    const before = events();
    const t0 = Date.now();
    sql(`SELECT opsflags.update_flag('${FLAG}', '{"is_enabled": false}', 'production')`);
    const arrived = await until(async () => events() > before, 5000);
    const took = Date.now() - t0;

    // A second stream whose client does not read: changes pile up, it is dropped.
    let slowHead = null;
    const slow = https.get(BASE + uri, { agent: false }, (res) => { slowHead = res; res.pause(); });
    slow.on('error', () => {});
    await until(async () => slowHead !== null && (await streams()) === 2, 5000);
    const dropped0 = await metric('opsflags_http_streams_dropped_total');
    let commits = 0;
    let dropped = dropped0;
    while (dropped === dropped0 && commits < 100000) {
        sql('SET synchronous_commit = off', `DO $$ BEGIN FOR i IN 1..1000 LOOP
               PERFORM opsflags.update_flag('${FLAG}', jsonb_build_object('is_enabled', i % 2 = 0), 'production');
               COMMIT;
             END LOOP; END $$`);
        commits += 1000;
        dropped = await metric('opsflags_http_streams_dropped_total');
    }
    const reader = await streams();
    const heard = events();
    slow.destroy();
    req.destroy();
    const gone = await until(async () => (await streams()) === 0, 5000);
    const type = head ? head.headers['content-type'] : '';
    console.log(`stream over TLS: status ${head ? head.statusCode : '-'} ${type}, opening event ${opened}, ` +
                `streams open ${open}, change arrived ${arrived} (${took} ms); the client that does not read dropped ` +
                `after ${commits} commits (${dropped - dropped0}), the one that reads kept (${reader} open, ${heard} events); ` +
                `closed when the client left ${gone}`);
    return head && head.statusCode === 200 && type === 'text/event-stream' && opened && open === 1 && arrived &&
        dropped === dropped0 + 1 && reader === 1 && heard > before + 1 && gone ? 0 : 1;
}

main().then((rc) => process.exit(rc), (e) => { console.log(String(e)); process.exit(1); });
