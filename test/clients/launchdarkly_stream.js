// launchdarkly_stream.js: LaunchDarkly's client-side stream (/eval) with
// LaunchDarkly's Node client-side SDK (launchdarkly-node-client-sdk,
// unmodified, streaming on, baseUrl and streamUrl pointed at opsflags), by
// GET and by REPORT: the SDK opens with every flag as SQL evaluates it; a
// toggle committed in SQL reaches both as a change event within a second,
// with the new value for each one's context; a change a patch cannot tell
// (a flag's variations) comes as a put, a flag that goes away as a delete.
// Then the stream itself: its first event is the /sdk/evalx document, a
// change in another environment tells it nothing, a patch's version is
// greater than the put's; a bad key, environment or context is refused
// before the stream opens; a put too large to push is a ping; a stream
// whose key is revoked ends.  The flags
// and keys are removed at the end.  Prints TAP from n0 + 1 on; exports run().
'use strict';

const net = require('net');
const LD = require('launchdarkly-node-client-sdk');

const P = 'clients.ldstream.';
const quiet = LD.basicLogger({ level: 'none' });

function b64url(s) {
    return Buffer.from(s, 'utf8').toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// JSON with object members in key order
function canon(v) {
    if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
    if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
    return JSON.stringify(v);
}

async function until(cond, ms = 5000) {
    const end = Date.now() + ms;
    for (;;) {
        if (await cond()) return true;
        if (Date.now() > end) return false;
        await new Promise((r) => setTimeout(r, 10));
    }
}

// A raw stream on a socket of its own: its status, and its events as they come.
function openRaw(base, method, path, body) {
    const u = new URL(base);
    return new Promise((resolve, reject) => {
        const s = net.connect(Number(u.port), u.hostname, () => {
            s.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n`
                    + (body !== undefined ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : '')
                    + `\r\n${body !== undefined ? body : ''}`);
        });
        const raw = { socket: s, status: 0, head: '', text: '', events: [], ended: false };
        let buf = '';
        let headDone = false;
        s.on('data', (d) => {
            buf += d.toString('utf8');
            if (!headDone) {
                const i = buf.indexOf('\r\n\r\n');
                if (i < 0) return;
                raw.head = buf.slice(0, i);
                raw.status = Number(raw.head.split(' ')[1]);
                buf = buf.slice(i + 4);
                headDone = true;
                resolve(raw);
            }
            raw.text += buf;
            let j;
            while ((j = buf.indexOf('\n\n')) >= 0) {
                const block = buf.slice(0, j);
                buf = buf.slice(j + 2);
                const ev = { event: 'message', data: '' };
                for (const line of block.split('\n')) {
                    if (line.startsWith('event: ')) ev.event = line.slice(7);
                    else if (line.startsWith('data: ')) ev.data += line.slice(6);
                }
                if (!block.startsWith(':')) raw.events.push(ev);
            }
        });
        s.on('end', () => { raw.ended = true; resolve(raw); });
        s.on('close', () => { raw.ended = true; resolve(raw); });
        s.on('error', reject);
    });
}

async function run(sql, base, n0) {
    let n = n0;
    let failed = 0;
    const ok = (cond, what) => {
        n++;
        if (!cond) failed++;
        console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
    };
    const clients = [];
    const raws = [];
    const value = async (key, ctx, env = 'production') => (await sql(
        "SELECT opsflags.feature_explain($1, $2::jsonb) AS x FROM set_config('opsflags.environment', $3, false)",
        [key, JSON.stringify(ctx), env]))[0].x.value;
    const streams = async () => {
        const text = await (await fetch(base + '/metrics')).text();
        const m = text.match(/^opsflags_http_streams (\d+)$/m);
        return m ? Number(m[1]) : -1;
    };
    // (with useReport the Node SDK sends the context as a chunked body, to the stream too)
    async function sdk(id, context, options = {}) {
        const client = LD.initialize(id, context, {
            baseUrl: base, eventsUrl: base, streamUrl: base, streaming: true, sendEvents: false,
            diagnosticOptOut: true, logger: quiet, streamReconnectDelay: 100, ...options });
        clients.push(client);
        try {
            await client.waitForInitialization(10);
            return { client };
        } catch (e) {
            return { client, error: e };
        }
    }
    // The first change event of key on client after now: resolves with the time and value.
    const nextChange = (client, key) => new Promise((resolve) => {
        const on = (current) => { client.off('change:' + key, on); resolve({ at: Date.now(), current }); };
        client.on('change:' + key, on);
        setTimeout(() => { client.off('change:' + key, on); resolve(null); }, 5000);
    });

    await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'ld stream test%'");
    await sql("SELECT opsflags.create_flag($1, $1, NULL, 'boolean', '[true, false]')", [P + 'banner']);
    await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true, \"rules\": [{\"id\": \"fr\", \"clauses\": [{\"attribute\": \"country\", \"op\": \"in\", \"values\": [\"FR\"]}], \"serve\": {\"variation\": 1}}]}', 'production')", [P + 'banner']);
    await sql("SELECT opsflags.create_flag($1, $1, NULL, 'string', '[\"a\", \"b\", \"c\"]')", [P + 'tier']);
    await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true, \"on_variation\": 1, \"off_variation\": 0}', 'production')", [P + 'tier']);
    await sql("SELECT opsflags.create_flag($1, $1, NULL, 'boolean', '[true, false]')", [P + 'gone']);
    await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true}', 'production')", [P + 'gone']);
    const DE = { kind: 'user', key: 'u1', country: 'DE' };
    const FR = { kind: 'multi', user: { key: 'u2', country: 'FR' }, org: { key: 'o1' } };

    try {
        const open0 = await streams();
        const de = await sdk('production', DE);
        const fr = await sdk('production', FR, { useReport: true });
        const both = !de.error && !fr.error;
        const connected = both && await until(async () => (await streams()) === open0 + 2);
        const first = both && de.client.variation(P + 'banner', null) === await value(P + 'banner', DE)
            && fr.client.variation(P + 'banner', null) === await value(P + 'banner', FR)
            && de.client.variation(P + 'tier', null) === 'b' && fr.client.variation(P + 'tier', null) === 'b';
        ok(both && connected && first,
           `the SDK with streaming on, by GET and by REPORT, opens a stream each and has SQL's values (banner ${both ? de.client.variation(P + 'banner', null) : '-'} and ${both ? fr.client.variation(P + 'banner', null) : '-'})${de.error ? ' ' + de.error.message : ''}${fr.error ? ' ' + fr.error.message : ''}`);

        if (both) {
            // A toggle: each client is told its own new value.
            const deBanner = nextChange(de.client, P + 'banner');
            const frTier = nextChange(fr.client, P + 'tier');
            const deTier = nextChange(de.client, P + 'tier');
            await sql("SELECT opsflags.update_flag($1, '{\"on_variation\": 2}', 'production')", [P + 'tier']);
            await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": false}', 'production')", [P + 'banner']);
            const committed = Date.now();
            const [a, b, c] = await Promise.all([deBanner, frTier, deTier]);
            const late = Math.max(...[a, b, c].map((x) => (x ? x.at - committed : Infinity)));
            ok(a && b && c && late < 1000 && a.current === false && b.current === 'c' && c.current === 'c'
               && de.client.variation(P + 'banner', null) === await value(P + 'banner', DE)
               && fr.client.variation(P + 'banner', null) === await value(P + 'banner', FR),
               `changes committed in SQL reach both SDKs as change events within 1 s (the last ${late} ms after COMMIT returned), with each one's value (banner ${a ? a.current : '-'}, tier ${b ? b.current : '-'})`);

            // The flag's variations (its config's version stays): a put.
            const frTier2 = nextChange(fr.client, P + 'tier');
            await sql("SELECT opsflags.update_flag($1, '{\"variations\": [\"a\", \"b\", \"z\"]}', 'production')", [P + 'tier']);
            const d = await frTier2;
            ok(d && d.current === 'z' && fr.client.variation(P + 'tier', null) === 'z',
               `a change to a flag's variations (its config's version unchanged) reaches the SDK (${d ? d.current : 'no event'})`);

            // A flag that goes away.
            const deGone = nextChange(de.client, P + 'gone');
            await sql('SELECT opsflags.archive_flag($1), opsflags.delete_flag($1)', [P + 'gone']);
            const e = await deGone;
            ok(e && e.current === undefined && de.client.variation(P + 'gone', 'default') === 'default',
               `a flag deleted in SQL is deleted in the SDK, which serves the default (${e ? JSON.stringify(e.current) : 'no event'})`);
        }
        for (const c of clients.splice(0)) await c.close().catch(() => {});
        ok(await until(async () => (await streams()) === open0), 'closing the SDKs closes their streams');

        // The stream itself.
        const path = `/eval/production/${b64url(JSON.stringify(DE))}`;
        const raw = await openRaw(base, 'GET', path + '?withReasons=true');
        raws.push(raw);
        await until(async () => raw.events.length >= 1);
        const put = raw.events[0] || {};
        const evalx = await (await fetch(base + `/sdk/evalx/production/contexts/${b64url(JSON.stringify(DE))}?withReasons=true`)).json();
        ok(raw.status === 200 && /content-type: text\/event-stream/i.test(raw.head) && put.event === 'put'
           && canon(JSON.parse(put.data || '{}')) === canon(evalx),
           `GET /eval: 200 text/event-stream, and first a put that is /sdk/evalx's document (${raw.status} ${put.event})`);
        const putBanner = JSON.parse(put.data || '{}')[P + 'banner'] || {};
        await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true}', 'staging')", [P + 'banner']);
        await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true}', 'production')", [P + 'banner']);
        await until(async () => raw.events.length >= 2);
        const patch = raw.events[1] || {};
        const pd = JSON.parse(patch.data || '{}');
        ok(patch.event === 'patch' && pd.key === P + 'banner' && pd.value === true && pd.version > putBanner.version
           && pd.reason && pd.reason.kind === 'FALLTHROUGH' && raw.events.length === 2,
           `a change in another environment tells the stream nothing; one in its own, a patch with the flag's key, a greater version and the reason (${patch.event} ${patch.data})`);

        const report = await openRaw(base, 'REPORT', '/eval/production', JSON.stringify(FR));
        raws.push(report);
        await until(async () => report.events.length >= 1);
        const rput = JSON.parse((report.events[0] || {}).data || '{}');
        const noBody = await openRaw(base, 'REPORT', '/eval/production');
        const unknown = await openRaw(base, 'GET', path.replace('production', 'no-such-env'));
        const badCtx = await openRaw(base, 'GET', '/eval/production/%%%');
        const notObject = await openRaw(base, 'GET', `/eval/production/${b64url('[1]')}`);
        const badKey = await openRaw(base, 'GET', path.replace('production', 'opsf_c_0123456789ab_' + 'x'.repeat(40)));
        await until(async () => [noBody, unknown, badCtx, notObject, badKey].every((r) => r.ended));
        ok(report.status === 200 && rput[P + 'banner'] && rput[P + 'banner'].value === false
           && noBody.status === 400 && unknown.status === 404 && badCtx.status === 400 && notObject.status === 400
           && badKey.status === 401 && [noBody, unknown, badCtx, notObject, badKey].every((r) => r.ended),
           `REPORT /eval with the context; refused before the stream opens: no body 400, an unknown environment 404, a context that is not base64url JSON or not an object 400, a key that is not valid 401 (${[report, noBody, unknown, badCtx, notObject, badKey].map((r) => r.status)})`);

        // Too large to push: a ping, and the SDK fetches /sdk/evalx itself.
        const blob = 'x'.repeat(40000);
        await sql("SELECT opsflags.create_flag($1, $1, NULL, 'json', $2)", [P + 'big', JSON.stringify([{ blob }, {}])]);
        await sql("SELECT opsflags.update_flag($1, '{\"is_enabled\": true, \"on_variation\": 0, \"off_variation\": 1}', 'production')", [P + 'big']);
        const big = await openRaw(base, 'GET', path);
        raws.push(big);
        await until(async () => big.events.length >= 1);
        const bigSdk = await sdk('production', DE);
        const bigValue = bigSdk.error ? null : bigSdk.client.variation(P + 'big', null);
        ok(big.status === 200 && (big.events[0] || {}).event === 'ping' && bigValue && bigValue.blob === blob,
           `a put beyond 32 kB is a ping instead (${(big.events[0] || {}).event}), and the SDK gets the flag from /sdk/evalx`);
        await sql('SELECT opsflags.archive_flag($1), opsflags.delete_flag($1)', [P + 'big']);

        // Keys: a stream of a key that is revoked ends.
        const key = (await sql("SELECT opsflags.create_api_key('production', 'client', 'ld stream test') AS k"))[0].k;
        const byName = await openRaw(base, 'GET', path);
        const byKey = await openRaw(base, 'GET', path.replace('production', key));
        raws.push(byKey);
        await until(async () => byKey.events.length >= 1);
        await sql("SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = 'ld stream test'");
        const revokedAt = Date.now();
        const ended = await until(async () => byKey.ended, 5000);
        const revoked = await sdk(key, DE);
        ok(byName.status === 401 && byKey.status === 200 && (byKey.events[0] || {}).event === 'put' && ended
           && !byKey.text.includes(key) && revoked.error,
           `once the environment has a key its name is refused (401); a key's stream ends when the key is revoked (${ended ? Date.now() - revokedAt : '-'} ms), and the SDK then gets nothing`);
    } finally {
        for (const r of raws) r.socket.destroy();
        for (const c of clients) await c.close().catch(() => {});
        await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'ld stream test%'").catch(() => {});
        await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    }
    return { n, failed };
}

module.exports = { run };
