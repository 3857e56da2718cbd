// streams.js: OFREP's event stream with OpenFeature's web provider,
// unmodified (EventSource from the pinned "eventsource" package, Node having
// none): the bulk answer names the stream with a ticket, never the key; a
// change committed in SQL reaches the provider (its configuration-changed
// event, the new value) within a second; a client that does not read is
// dropped; streams take no request slots (more streams than
// opsflags.http_max_connections, and /livez still answers; 503 beyond
// opsflags.http_max_streams); a token that is missing, forged or expired is
// 401; a stream that opens is told to fetch again, unless it comes back with
// the current Last-Event-ID; creating or revoking an API key is told as a change; a stream gets a
// heartbeat.  Prints TAP.
'use strict';

const http = require('http');
const net = require('net');
const { Client } = require('pg');
const web = require('@openfeature/web-sdk');
const { OFREPWebProvider } = require('@openfeature/ofrep-web-provider');
const { EventSource } = require('eventsource');

globalThis.EventSource = EventSource;

const BASE = process.env.OPSFLAGS_HTTP;
const P = 'clients.streams.';
let n = 0;
let failed = 0;
function ok(cond, what) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
}

// One request on a connection of its own (none kept alive: slots are few here).
function get(path) {
    return new Promise((resolve) => {
        const req = http.get(BASE + path, { agent: false, headers: { Connection: 'close' } }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        });
        req.on('error', () => resolve({ status: 0, headers: {}, body: '' }));
    });
}
async function metric(name) {
    const text = (await get('/metrics')).body;
    const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : -1;
}
async function until(what, cond, ms = 10000) {
    const end = Date.now() + ms;
    for (;;) {
        if (await cond()) return true;
        if (Date.now() > end) { console.log(`# gave up waiting: ${what}`); return false; }
        await new Promise((r) => setTimeout(r, 20));
    }
}

// A raw stream: resolves with the socket and the response head, paused if asked.
function openRaw(path, pause, origin, extra = '') {
    const u = new URL(BASE);
    return new Promise((resolve, reject) => {
        const s = net.connect(Number(u.port), u.hostname, () => {
            s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n${origin ? `Origin: ${origin}\r\n` : ''}${extra}\r\n`);
        });
        let head = '';
        const onData = (d) => {
            head += d.toString('latin1');
            if (head.includes('\r\n\r\n')) {
                s.removeListener('data', onData);
                const at = head.indexOf('\r\n\r\n') + 4;
                const raw = { socket: s, head: head.slice(0, at), body: head.slice(at) };
                if (pause) s.pause();
                else s.on('data', (more) => { raw.body += more.toString('latin1'); });
                resolve(raw);
            }
        };
        s.on('data', onData);
        s.on('error', reject);
    });
}

async function main() {
    const db = new Client();
    await db.connect();
    const sql = async (q, a) => (await db.query(q, a)).rows;
    const raws = [];
    await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    await sql('SELECT opsflags.create_flag($1, $1, NULL, $2, $3)', [P + 'live', 'boolean', '[true, false]']);
    await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true, \"on_variation\": 0, \"off_variation\": 1}', 'production')", [P + 'live']);
    try {
        // The bulk answer names the stream; its URL has a ticket, not a key.
        const bulk = await fetch(BASE + '/ofrep/v1/evaluate/flags', { method: 'POST', body: '{"context": {"targetingKey": "u1"}}',
                                                                       headers: { 'Content-Type': 'application/json' } });
        const doc = await bulk.json();
        const es = (doc.eventStreams || [])[0] || {};
        const uri = (es.endpoint || {}).requestUri || '';
        ok(bulk.status === 200 && es.type === 'sse' && es.inactivityDelaySec === 120
           && /^\/ofrep\/v1\/stream\?token=production\.\d+\.[0-9a-f]{64}$/.test(uri),
           `the bulk answer has eventStreams: [{type: sse, endpoint: {requestUri: ${uri.replace(/[0-9a-f]{64}$/, '<mac>')}}, inactivityDelaySec: 120}]`);

        // The web provider: SSE, then a change committed in SQL.
        await web.OpenFeature.setContext({ targetingKey: 'u1' });
        const provider = new OFREPWebProvider({ baseUrl: BASE, pollInterval: 0 });
        await web.OpenFeature.setProviderAndWait(provider);
        const client = web.OpenFeature.getClient();
        const before = client.getBooleanValue(P + 'live', false);
        const connected = await until('the provider\'s stream', async () => (await metric('opsflags_http_streams')) === 1);
        const changed = new Promise((resolve) => client.addHandler(web.ProviderEvents.ConfigurationChanged, () => resolve(Date.now())));
        const t0 = Date.now();
        await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": false}', 'production')", [P + 'live']);
        const committed = Date.now();
        const seen = await Promise.race([changed, new Promise((r) => setTimeout(() => r(null), 5000))]);
        const after = client.getBooleanValue(P + 'live', true);
        ok(before === true && connected && seen !== null && seen - committed < 1000 && after === false,
           `the web provider gets a change committed in SQL over its stream within 1 s: ${seen === null ? 'never' : seen - committed} ms after COMMIT returned (${seen === null ? '-' : seen - t0} ms after it was sent), value ${before} -> ${after}`);
        await web.OpenFeature.close();
        ok(await until('the provider\'s stream to close', async () => (await metric('opsflags_http_streams')) === 0),
           'closing the provider closes its stream (the server sees the client leave)');

        // Tokens: missing, malformed, forged (another environment, another expiry), expired.
        const good = (await sql("SELECT opsflags_internal.ofrep_stream_token('production') AS t"))[0].t;
        const expired = (await sql("SELECT opsflags_internal.ofrep_stream_token('production', -120) AS t"))[0].t;
        const [env, exp, mac] = good.split('.');
        const tries = [
            ['no token', ''], ['garbage', '?token=abc'], ['another environment', `?token=staging.${exp}.${mac}`],
            ['a later expiry', `?token=${env}.${Number(exp) + 60}.${mac}`], ['an expired one', `?token=${expired}`],
        ];
        const codes = [];
        let allJson = true;
        for (const [, q] of tries) {
            const r = await get('/ofrep/v1/stream' + q);
            codes.push(r.status);
            let details;
            try { details = JSON.parse(r.body).errorDetails; } catch (e) { details = null; }
            allJson = allJson && (r.headers['content-type'] || '').startsWith('application/json') && typeof details === 'string';
        }
        const valid = await openRaw('/ofrep/v1/stream?token=' + good, false, 'http://app.example');
        const validSince = Date.now();
        raws.push(valid.socket);
        ok(codes.every((c) => c === 401) && allJson && /^HTTP\/1\.1 200 /.test(valid.head)
           && /\r\nContent-Type: text\/event-stream\r\n/i.test(valid.head) && /\r\nCache-Control: no-cache\r\n/i.test(valid.head)
           && /\r\nX-Accel-Buffering: no\r\n/i.test(valid.head) && !/Content-Length/i.test(valid.head)
           && /\r\nAccess-Control-Allow-Origin: http:\/\/app\.example\r\n/i.test(valid.head),
           `tokens: ${tries.map(([w], i) => `${w} ${codes[i]}`).join(', ')} (JSON); a valid one opens a stream (text/event-stream, no-cache, X-Accel-Buffering: no, no Content-Length, CORS for the allowed origin)`);

        // A stream is told to fetch again as it opens (a change committed between
        // the bulk answer and the stream's start is not missed), unless it comes
        // back (Last-Event-ID) with nothing changed since.
        {
            const ids = (raw) => [...raw.body.matchAll(/^id: (\d+)\n/mg)].map((m) => Number(m[1]));
            const open0 = await metric('opsflags_http_streams');
            const fresh = await openRaw('/ofrep/v1/stream?token=' + good, false);
            await until('the opening event', async () => ids(fresh).length > 0, 2000);
            const now = ids(fresh)[0];
            const back = await openRaw('/ofrep/v1/stream?token=' + good, false, null, `Last-Event-ID: ${now}\r\n`);
            const away = await openRaw('/ofrep/v1/stream?token=' + good, false, null, `Last-Event-ID: ${now - 1}\r\n`);
            await until('the event of the one that was away', async () => ids(away).length > 0, 2000);
            await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true}', 'production')", [P + 'live']);
            await until('the change', async () => ids(back).length > 0 && ids(fresh).length > 1, 2000);
            [fresh, back, away].forEach((r) => r.socket.destroy());
            const closed = await until('the three to close', async () => (await metric('opsflags_http_streams')) === open0);
            ok(now >= 0 && ids(away)[0] === now && ids(back)[0] > now && ids(fresh)[1] === ids(back)[0] && closed,
               `a stream opening is told to fetch again (id ${now}), and so is one back with an older Last-Event-ID; one back with the current id only hears of the next change (${ids(back)})`);
        }

        // API keys change what a client is served: creating and revoking one is told too.
        const events = () => (valid.body.match(/refetchEvaluation/g) || []).length;
        const e0 = events();
        await sql("SELECT opsflags.create_api_key('staging', 'client', 'streams test')");
        const afterCreate = await until('an event after create_api_key', async () => events() > e0, 2000);
        const e1 = events();
        await sql("SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = 'streams test'");
        const afterRevoke = await until('an event after revoke_api_key', async () => events() > e1, 2000);
        await sql("DELETE FROM opsflags.api_keys WHERE description = 'streams test'");
        ok(afterCreate && afterRevoke && /^id: \d+\nevent: message\ndata: \{"type": "refetchEvaluation"\}\n\n/m.test(valid.body),
           `creating and revoking an API key is told to the streams as a flag change is (id, event: message, data: {"type": "refetchEvaluation"}; ${events()} events)`);

        // More streams than request slots: /livez still answers.
        await sql('ALTER SYSTEM SET opsflags.http_max_connections = 4');
        await sql('SELECT pg_reload_conf()');
        // applied once a fifth connection is turned away (four that send nothing hold the slots)
        const applied = await until('opsflags.http_max_connections = 4', async () => {
            const held = await Promise.all([0, 1, 2, 3].map(() => new Promise((r) => {
                const s = net.connect(Number(new URL(BASE).port), '127.0.0.1', () => r(s));
            })));
            const fifth = (await get('/livez')).status;
            held.forEach((s) => s.destroy());
            return fifth === 503;
        });
        for (let i = 0; i < 7; i++) {
            const s = await openRaw('/ofrep/v1/stream?token=' + good, false);
            raws.push(s.socket);
        }
        const open = await metric('opsflags_http_streams');
        const livez = [];
        for (let i = 0; i < 3; i++) livez.push((await get('/livez')).status);
        ok(applied && open === 8 && livez.every((c) => c === 200),
           `8 streams open with opsflags.http_max_connections = 4, and /livez answers: ${livez.join(' ')} (streams: ${open})`);
        // Beyond opsflags.http_max_streams: 503.
        await sql('ALTER SYSTEM SET opsflags.http_max_streams = 8');
        await sql('SELECT pg_reload_conf()');
        let beyond = null;
        const limited = await until('opsflags.http_max_streams = 8', async () => {
            // (while the setting is not yet applied, this is a ninth stream, closed again)
            const r = await openRaw('/ofrep/v1/stream?token=' + good, false);
            r.socket.destroy();
            beyond = r;
            return /^HTTP\/1\.1 503 /.test(r.head);
        });
        await sql('ALTER SYSTEM RESET opsflags.http_max_streams');
        await sql('ALTER SYSTEM RESET opsflags.http_max_connections');
        await sql('SELECT pg_reload_conf()');
        const still8 = await until('8 streams', async () => (await metric('opsflags_http_streams')) === 8);
        ok(limited && /\r\nContent-Length: 17\r\n/.test(beyond.head) && still8,
           `with opsflags.http_max_streams = 8 and 8 open, another stream is ${beyond.head.split('\r\n')[0]} (too many streams)`);

        // A client that does not read is dropped: changes pile up unsent.
        let slow = null;
        await until('opsflags.http_max_streams reset', async () => {
            slow = await openRaw('/ofrep/v1/stream?token=' + good, true);
            raws.push(slow.socket);
            return /^HTTP\/1\.1 200 /.test(slow.head);
        });
        const dropped0 = await metric('opsflags_http_streams_dropped_total');
        let commits = 0;
        let dropped = dropped0;
        await sql('SET synchronous_commit = off');
        while (dropped === dropped0 && commits < 100000) {
            await sql(`DO $$ BEGIN FOR i IN 1..1000 LOOP
                         PERFORM opsflags.update_flag('${P}live', jsonb_build_object('is_enabled', i % 2 = 0), 'production');
                         COMMIT;
                       END LOOP; END $$`);
            commits += 1000;
            dropped = await metric('opsflags_http_streams_dropped_total');
        }
        const others = await metric('opsflags_http_streams');
        ok(dropped === dropped0 + 1 && others === 8,
           `a client that does not read is dropped (after ${commits} commits), the ${others} that read are not`);

        // Heartbeats: a comment line at least every 20 s, so that proxies keep the stream.
        const pinged = await until('a heartbeat', async () => valid.body.includes('\n\n: ping\n\n') || valid.body.startsWith(': ping\n\n'), 25000);
        ok(pinged, `a stream gets a heartbeat comment (": ping") within 20 s of the last (${((Date.now() - validSince) / 1000).toFixed(1)} s after it opened)`);
    } finally {
        raws.forEach((s) => s.destroy());
        await sql('ALTER SYSTEM RESET opsflags.http_max_connections').catch(() => {});
        await sql('ALTER SYSTEM RESET opsflags.http_max_streams').catch(() => {});
        await sql('SELECT pg_reload_conf()').catch(() => {});
        await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
        await db.end();
    }
    console.log(`1..${n}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    console.log(`not ok ${n + 1} - ${e.message}`);
    process.exitCode = 1;
});
