// unleash.js: Unleash's SDKs, unmodified, pointed at opsflags: the frontend
// SDK (unleash-proxy-client, in Node with its in-memory storage) against
// /api/frontend, by GET and by POST, and the server SDK (unleash-client)
// against /api/client/features, which it evaluates itself.  The features
// are imported from an Unleash document into an environment of their own
// (a gradual rollout, variants with payloads, user ids, a constraint, an
// off feature, a plain one), with an opsflags flag of named string
// variations beside them; for several contexts each SDK's isEnabled and
// getVariant must be what feature_explain says in SQL.  Then keys (none
// where one is required, revoked, another environment's, a client key for
// the server API), ETag and 304, remoteAddress from the request, registration, metrics (added to
// flag_usage), the CORS preflight for the SDKs' headers.  Everything made
// is removed at the end.
// Prints TAP from n0 + 1 on; exports run().
'use strict';

const { UnleashClient, InMemoryStorageProvider } = require('unleash-proxy-client');
const { Unleash, InMemStorageProvider } = require('unleash-client');

const P = 'clients.unleash.';
const ENV = 'clients-unleash';
const DOC = {
    version: 2,
    features: [
        { name: P + 'gradual', enabled: true,
          strategies: [{ name: 'flexibleRollout', parameters: { rollout: '50', stickiness: 'userId', groupId: P + 'gradual' } }] },
        { name: P + 'variants', enabled: true, strategies: [{ name: 'default', parameters: {} }],
          variants: [
              { name: 'blue', weight: 500, weightType: 'variable', stickiness: 'userId', payload: { type: 'string', value: 'b' } },
              { name: 'green', weight: 500, weightType: 'variable', stickiness: 'userId', payload: { type: 'json', value: '{"g": 1}' } }] },
        { name: P + 'users', enabled: true, strategies: [{ name: 'userWithId', parameters: { userIds: 'u1,u3' } }] },
        { name: P + 'country', enabled: true,
          strategies: [{ name: 'default', parameters: {}, constraints: [{ contextName: 'country', operator: 'IN', values: ['DE'] }] }] },
        { name: P + 'off', enabled: false, strategies: [{ name: 'default', parameters: {} }] },
        { name: P + 'plain', enabled: true, strategies: [] },
    ],
};
const NAMES = [...DOC.features.map((f) => f.name), P + 'theme'];
const CONTEXTS = [
    { userId: 'u1', properties: { country: 'DE' } },
    { userId: 'u2', properties: { country: 'FR' } },
    { userId: 'u3' },
    { userId: 'user-42', properties: { country: 'DE', plan: 'pro' } },
    { userId: 'u5', properties: { country: 'FR' } },
    {},
];

async function run(sql, base, n0) {
    let n = n0;
    let failed = 0;
    const ok = (cond, what) => {
        n++;
        if (!cond) failed++;
        console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
    };
    const explain = async (key, ctx, env) => (await sql(
        "SELECT opsflags.feature_explain($1, $2::jsonb) AS x FROM set_config('opsflags.environment', $3, false)",
        [key, JSON.stringify(ctx), env]))[0].x;
    const started = [];
    async function frontend(clientKey, context, usePOSTrequests = false) {
        const c = new UnleashClient({
            url: base + '/api/frontend', clientKey, appName: 'opsflags-test', disableRefresh: true, disableMetrics: true,
            storageProvider: new InMemoryStorageProvider(), context, usePOSTrequests });
        started.push(() => c.stop());
        await c.start();
        return c;
    }
    // unleash-client: synchronized, or its error
    async function server(key) {
        const u = new Unleash({
            url: base + '/api/', appName: 'opsflags-test', disableMetrics: true, refreshInterval: 60000,
            customHeaders: key ? { Authorization: key } : {}, storageProvider: new InMemStorageProvider() });
        started.push(() => u.destroy());
        const r = await new Promise((resolve) => {
            const t = setTimeout(() => resolve({ error: new Error('timeout') }), 10000);
            u.once('synchronized', () => { clearTimeout(t); resolve({}); });
            u.on('error', (e) => { clearTimeout(t); resolve({ error: e }); });
            u.on('warn', () => {});
        });
        return { u, ...r };
    }
    const cleanup = async () => {
        await sql('DELETE FROM opsflags.api_keys WHERE environment = $1', [ENV]);
        await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'unleash test%'");
        await sql('SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1', [P + '%']);
        // (an environment where other flags have configs stays)
        await sql('DELETE FROM opsflags.environments WHERE name = $1', [ENV]).catch(() => {});
    };

    await cleanup();
    await sql("INSERT INTO opsflags.environments (name, description) VALUES ($1, 'clients test') ON CONFLICT DO NOTHING", [ENV]);
    await sql('SELECT opsflags.import_unleash($1, $2)', [ENV, JSON.stringify(DOC)]);
    await sql("SELECT opsflags.create_flag($1, $1, NULL, 'string', '[\"light\", \"dark\"]', '{}', '[\"light\", \"dark\"]')", [P + 'theme']);
    await sql('SELECT opsflags.update_flag($1, $2, $3)', [P + 'theme', JSON.stringify({ is_enabled: true, on_variation: 1, off_variation: 0 }), ENV]);
    await sql("SELECT opsflags.update_flag($1, $2, 'staging')", [P + 'theme', JSON.stringify({ is_enabled: true, on_variation: 0, off_variation: 0 })]);
    const clientKey = (await sql("SELECT opsflags.create_api_key($1, 'client', 'unleash test') AS k", [ENV]))[0].k;
    const serverKey = (await sql("SELECT opsflags.create_api_key($1, 'server', 'unleash test') AS k", [ENV]))[0].k;

    try {
        // The frontend SDK, by GET (the context as query parameters) and POST.
        for (const post of [false, true]) {
            let pairs = 0;
            let same = 0;
            const bad = [];
            for (const ctx of CONTEXTS) {
                const c = await frontend(clientKey, ctx, post);
                const full = c.getContext();
                for (const name of NAMES) {
                    const x = await explain(name, full, ENV);
                    const v = c.getVariant(name);
                    const wantVariant = x.enabled && x.variant ? x.variant : 'disabled';
                    // without a userId, variants stuck to it are random
                    const random = !ctx.userId && name === P + 'variants';
                    pairs++;
                    if (c.isReady() && c.isEnabled(name) === x.enabled
                        && (random || (v.name === wantVariant && v.enabled === (wantVariant !== 'disabled'))))
                        same++;
                    else
                        bad.push(`${name} ${JSON.stringify(full)}: SDK ${c.isEnabled(name)} ${JSON.stringify(v)}, SQL ${JSON.stringify(x)}`);
                }
                c.stop();
            }
            ok(pairs === same, `the frontend SDK (${post ? 'POST' : 'GET'}) gets feature_explain's enabled and variant for ${pairs} (feature, context) pairs (${same} same)`);
            bad.slice(0, 5).forEach((b) => console.log(`#   ${b}`));
        }
        {
            const c1 = await frontend(clientKey, CONTEXTS[0]);
            // users enough for both variants
            const variants = [];
            for (let i = 1; i <= 12; i++) {
                const c = await frontend(clientKey, { userId: `v${i}` });
                variants.push(c.getVariant(P + 'variants'));
                c.stop();
            }
            const seen = new Set(variants.map((v) => v.name));
            const theme = c1.getVariant(P + 'theme');
            const offVariant = c1.getVariant(P + 'off');
            const plain = c1.getVariant(P + 'plain');
            const toggles = c1.getAllToggles();
            ok(variants.every((v) => v.enabled && (v.name === 'blue' || v.name === 'green'))
               && variants.every((v) => JSON.stringify(v.payload) === (v.name === 'blue' ? '{"type":"string","value":"b"}' : '{"type":"json","value":"{\\"g\\": 1}"}'))
               && seen.size === 2
               && theme.name === 'dark' && JSON.stringify(theme.payload) === '{"type":"string","value":"dark"}'
               && offVariant.name === 'disabled' && !offVariant.enabled && plain.name === 'disabled' && !plain.enabled
               && !toggles.some((t) => t.name === P + 'off') && toggles.every((t) => t.enabled && t.impressionData === false),
               `variants: Unleash payloads as imported, a named string variation as a string payload, "disabled" without variants; only enabled toggles (${[...seen]}: ${JSON.stringify([variants[0], theme, plain])})`);
        }

        // The server SDK: the features document, evaluated by the SDK.
        {
            const { u, error } = await server(serverKey);
            let pairs = 0;
            let same = 0;
            const bad = [];
            for (const ctx of CONTEXTS.filter((c) => c.userId)) {
                for (const name of NAMES) {
                    const x = await explain(name, ctx, ENV);
                    const v = u.getVariant(name, ctx);
                    const wantVariant = x.enabled && x.variant ? x.variant : 'disabled';
                    pairs++;
                    if (!error && u.isEnabled(name, ctx) === x.enabled && v.name === wantVariant) same++;
                    else bad.push(`${name} ${JSON.stringify(ctx)}: SDK ${u.isEnabled(name, ctx)} ${JSON.stringify(v)}, SQL ${JSON.stringify(x)}`);
                }
            }
            ok(!error && pairs === same, `the server SDK on /api/client/features gets feature_explain's enabled and variant for ${pairs} (feature, context) pairs (${same} same${error ? ', ' + error.message : ''})`);
            bad.slice(0, 5).forEach((b) => console.log(`#   ${b}`));
            u.destroy();
        }

        // The protocol: ETag and 304, contexts from parameters and bodies, errors.
        const auth = { Authorization: clientKey };
        const q = '?userId=u1&properties%5Bcountry%5D=DE&appName=x';
        const a = await fetch(base + '/api/frontend' + q, { headers: auth });
        const aj = await a.json();
        const etag = a.headers.get('etag');
        const b = await fetch(base + '/api/frontend' + q, { headers: { ...auth, 'If-None-Match': etag } });
        const c = await fetch(base + '/api/frontend?userId=u2', { headers: { ...auth, 'If-None-Match': etag } });
        const feat = await fetch(base + '/api/frontend/features' + q, { headers: { ...auth, Authorization: 'Bearer ' + clientKey } });
        const body = await fetch(base + '/api/frontend', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
                                                           body: JSON.stringify({ context: { userId: 'u1', properties: { country: 'DE' } } }) });
        const bodyJson = await body.json();
        const badBody = await fetch(base + '/api/frontend', { method: 'POST', headers: auth, body: '{"context": ' });
        const badQuery = await fetch(base + '/api/frontend?userId=%FF', { headers: auth });
        const names = (d) => d.toggles.map((t) => t.name).join(',');
        ok(a.status === 200 && etag && b.status === 304 && c.status === 200 && c.headers.get('etag') !== etag
           && aj.toggles.some((t) => t.name === P + 'country') && feat.status === 200 && names(await feat.json()) === names(aj)
           && body.status === 200 && names(bodyJson) === names(aj) && badBody.status === 400 && badQuery.status === 400,
           `frontend: an ETag, 304 when it matches, 200 and another ETag for another context; properties[x] parameters, /features, a POST body alike; a body that is not JSON and a parameter that is not UTF-8 400 (${[a, b, c, feat, body, badBody, badQuery].map((r) => r.status)})`);
        // remoteAddress: the request's own address unless the context has one.
        await sql('SELECT opsflags.create_flag($1, $1)', [P + 'lan']);
        await sql('SELECT opsflags.update_flag($1, $2, $3)', [P + 'lan', JSON.stringify({ is_enabled: true, fallthrough: { off: true },
            rules: [{ id: 'lan', clauses: [{ attribute: 'remoteAddress', op: 'in_cidr', values: ['127.0.0.0/8'] }], serve: { variation: 0 } }] }), ENV]);
        const lan = async (query) => (await (await fetch(base + '/api/frontend' + query, { headers: auth })).json()).toggles.some((t) => t.name === P + 'lan');
        const fromHere = await lan('?userId=u1');
        const sentOther = await lan('?userId=u1&remoteAddress=10.1.2.3');
        const sentLoopback = await lan('?userId=u1&remoteAddress=127.9.9.9');
        await sql('SELECT opsflags.archive_flag($1), opsflags.delete_flag($1)', [P + 'lan']);
        ok(fromHere && !sentOther && sentLoopback,
           `frontend: a context without remoteAddress has the request's address (a rule on 127.0.0.0/8 matches from loopback); one the context sends wins (${fromHere} ${sentOther} ${sentLoopback})`);
        const f1 = await fetch(base + '/api/client/features', { headers: { Authorization: serverKey } });
        const f1j = await f1.json();
        const f2 = await fetch(base + '/api/client/features', { headers: { Authorization: serverKey, 'If-None-Match': f1.headers.get('etag') } });
        const want = (await sql('SELECT opsflags.unleash_features($1) AS d', [ENV]))[0].d;
        const post = (p, h = {}, body = '{"appName": "x", "instanceId": "i", "interval": 1000}') =>
            fetch(base + p, { method: 'POST', headers: { 'Content-Type': 'application/json', ...h }, body });
        const registered = await Promise.all(['/api/client/register', '/api/frontend/client/register'].map((p) => post(p, auth)));
        ok(f1.status === 200 && JSON.stringify(f1j) === JSON.stringify(want) && f2.status === 304
           && registered.every((r) => r.status === 204),
           `client API: unleash_features' document with an ETag, 304; registrations taken (${[f1, f2, ...registered].map((r) => r.status)})`);

        // Metrics: the counts reported are added to flag_usage.
        const usage = async () => Object.fromEntries((await sql(
            'SELECT flag_key, true_count::int AS t, false_count::int AS f FROM opsflags.flag_usage WHERE flag_key LIKE $1', [P + '%']))
            .map((r) => [r.flag_key.slice(P.length), [r.t, r.f]]));
        const metrics = (toggles) => JSON.stringify({ appName: 'x', instanceId: 'i', bucket: { start: new Date().toISOString(), stop: new Date().toISOString(), toggles } });
        const before = await usage();
        const m1 = await post('/api/client/metrics', { Authorization: serverKey },
                              metrics({ [P + 'plain']: { yes: 3, no: 2, variants: {} }, [P + 'nope']: { yes: 1, no: 1 } }));
        const m2 = await post('/api/frontend/client/metrics', auth, metrics({ [P + 'users']: { yes: 1, no: 4 }, [P + 'plain']: { yes: 1 } }));
        const m3 = await post('/api/client/metrics', auth, metrics({ [P + 'plain']: { yes: 100, no: 100 } }));
        const m4 = await post('/api/client/metrics', { Authorization: serverKey }, metrics({ [P + 'plain']: { yes: -1 } }));
        const m5 = await post('/api/client/metrics', { Authorization: serverKey }, '{"bucket": ');
        const after = await usage();
        const moved = (k) => [after[k][0] - before[k][0], after[k][1] - before[k][1]];
        ok(m1.status === 204 && m2.status === 204 && m3.status === 403 && m4.status === 400 && m5.status === 400
           && JSON.stringify(moved('plain')) === '[4,2]' && JSON.stringify(moved('users')) === '[1,4]'
           && JSON.stringify(moved('gradual')) === '[0,0]' && !('nope' in after),
           `metrics: the yes and no counts (server and frontend SDKs) added to flag_usage, unknown toggles ignored; a client key on the client API 403, a negative count or a body that is not JSON 400 (${[m1, m2, m3, m4, m5].map((r) => r.status)}; plain ${moved('plain')}, users ${moved('users')})`);
        {
            // an SDK with metrics on registers and sends them, and is none the worse
            const u = new Unleash({ url: base + '/api/', appName: 'opsflags-test', refreshInterval: 60000, metricsInterval: 100,
                                    customHeaders: { Authorization: serverKey }, storageProvider: new InMemStorageProvider() });
            started.push(() => u.destroy());
            const errors = [];
            u.on('error', (e) => errors.push(e));
            u.on('warn', (e) => errors.push(e));
            const registered = new Promise((resolve) => u.once('registered', () => resolve(true)));
            const sent = new Promise((resolve) => u.once('sent', () => resolve(true)));
            await Promise.race([new Promise((resolve) => u.once('synchronized', resolve)), new Promise((resolve) => setTimeout(resolve, 5000))]);
            u.isEnabled(P + 'plain');
            const r = await Promise.race([Promise.all([registered, sent]), new Promise((resolve) => setTimeout(() => resolve(false), 5000))]);
            u.destroy();
            ok(r && errors.length === 0, `the server SDK registers and sends metrics without an error (${errors.map((e) => e.message)})`);
        }

        // CORS: the preflight allows the frontend SDK's headers.
        const wanted = 'authorization, unleash-appname, unleash-connection-id, unleash-sdk, if-none-match, content-type';
        const pre = await fetch(base + '/api/frontend', {
            method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST',
                                          'Access-Control-Request-Headers': wanted } });
        ok(pre.status === 204 && pre.headers.get('access-control-allow-origin') === 'http://app.example'
           && (pre.headers.get('access-control-allow-methods') || '').includes('POST')
           && pre.headers.get('access-control-allow-headers') === wanted,
           `CORS: the preflight allows the frontend SDK's headers (${pre.status})`);

        // Keys.
        await sql("SELECT opsflags.create_api_key('production', 'client', 'unleash test')");
        const stagingKey = (await sql("SELECT opsflags.create_api_key('staging', 'client', 'unleash test') AS k"))[0].k;
        const none = await frontend('none', CONTEXTS[0]);   // (the SDK always sends one)
        const revokedKey = (await sql("SELECT opsflags.create_api_key($1, 'client', 'unleash test revoked') AS k", [ENV]))[0].k;
        await sql("SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = 'unleash test revoked'");
        const revoked = await frontend(revokedKey, CONTEXTS[0]);
        const staging = await frontend(stagingKey, CONTEXTS[0]);
        const byServerKey = await frontend(serverKey, CONTEXTS[0]);
        const stagingWant = [];
        for (const name of NAMES) if ((await explain(name, staging.getContext(), 'staging')).enabled) stagingWant.push(name);
        const stagingGot = NAMES.filter((name) => staging.isEnabled(name));
        const stagingTheme = staging.getVariant(P + 'theme').name;
        const clientOnServer = await server(clientKey);
        const noneOnServer = await server(null);
        const statuses = [];
        for (const [p, k] of [['/api/frontend', ''], ['/api/frontend', revokedKey], ['/api/client/features', clientKey], ['/api/client/features', ''], ['/api/client/features', revokedKey]])
            statuses.push((await fetch(base + p, { headers: k ? { Authorization: k } : {} })).status);
        await sql('SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE id IN (SELECT id FROM opsflags.api_keys_view WHERE description = $1)', ['unleash test']);
        ok(!none.isReady() && !revoked.isReady() && staging.isReady() && byServerKey.isReady()
           && JSON.stringify(stagingGot) === JSON.stringify(stagingWant) && stagingGot.length === 1 && stagingTheme === 'light'
           && byServerKey.isEnabled(P + 'plain')
           && clientOnServer.error && noneOnServer.error && JSON.stringify(statuses) === '[401,401,403,401,401]',
           `keys: no key ("none") where production has one and a revoked key get nothing; a staging key staging's toggles (${stagingGot}: ${stagingTheme}), a server key the frontend API; the server API refuses a client key (403), none and a revoked one (401) (${statuses})`);
    } finally {
        for (const stop of started) {
            try { stop(); } catch (e) { /* already stopped */ }
        }
        await cleanup().catch((e) => console.log(`# cleanup: ${e.message}`));
    }
    return { n, failed };
}

module.exports = { run };
