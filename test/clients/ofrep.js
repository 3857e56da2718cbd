// ofrep.js: OpenFeature's own SDKs, unmodified, pointed at opsflags' OFREP
// endpoints: the server SDK with @openfeature/ofrep-provider (one request
// per evaluation) and the web SDK with @openfeature/ofrep-web-provider (one
// bulk request per context, then cached), on flags made here of every
// kind (booleans with rules and a false served by a rule, a string split, a
// number, a JSON object, an off flag without an off variation, a
// percentage rollout).  Each value must be what feature_value says in SQL
// for the same context.  Then the protocol itself: ETag and 304, the ETag
// changing with the context and with the flags, errors as OFREP words them
// (404 FLAG_NOT_FOUND, 400 PARSE_ERROR / INVALID_CONTEXT /
// TARGETING_KEY_MISSING), JSON on every answer, CORS for the allowed origin
// only.  The flags are removed at the end.  Prints TAP from n0 + 1 on;
// exports run().
'use strict';

const server = require('@openfeature/server-sdk');
const web = require('@openfeature/web-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');
const { OFREPWebProvider } = require('@openfeature/ofrep-web-provider');

let BASE;
const P = 'clients.ofrep.';
let n = 0;
let failed = 0;
function ok(cond, what) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
}

const FLAGS = [
    // key, type, variations, config (production)
    ['bool', 'boolean', [true, false], {
        is_enabled: true,
        rules: [{ id: 'de', clauses: [{ attribute: 'country', op: 'in', values: ['DE'] }], serve: { variation: 0 } },
                { id: 'fr', clauses: [{ attribute: 'country', op: 'in', values: ['FR'] }], serve: { variation: 1 } }],
        fallthrough: { off: true } }],
    ['color', 'string', ['red', 'green', 'blue'], { is_enabled: true, on_variation: 1, off_variation: 0, variation_weights: [30, 30, 40] }],
    ['limit', 'number', [10, 100, 1000], {
        is_enabled: true, on_variation: 1, off_variation: 0,
        rules: [{ id: 'pro', clauses: [{ attribute: 'plan', op: 'in', values: ['pro'] }], serve: { variation: 2 } }] }],
    ['layout', 'json', [{ columns: 2 }, { columns: 3, dense: true }], { is_enabled: true, on_variation: 1, off_variation: 0 }],
    ['dark', 'boolean', [true, false], { is_enabled: false, off_variation: null }],
    ['rollout', 'boolean', [true, false], { is_enabled: true, enabled_percentage: 50 }],
];
const CONTEXTS = [
    { targetingKey: 'u1', country: 'DE', plan: 'pro' },
    { targetingKey: 'u2', country: 'FR' },
    { targetingKey: 'u3', plan: 'free' },
    { targetingKey: 'user-42', country: 'US', plan: 'pro' },
    { targetingKey: 'u5' },
];
const DEFAULTS = { boolean: false, string: 'default', number: -1, json: { default: true } };

async function evaluateServer(client, type, key, ctx) {
    if (type === 'boolean') return client.getBooleanDetails(key, DEFAULTS.boolean, ctx);
    if (type === 'string') return client.getStringDetails(key, DEFAULTS.string, ctx);
    if (type === 'number') return client.getNumberDetails(key, DEFAULTS.number, ctx);
    return client.getObjectDetails(key, DEFAULTS.json, ctx);
}
function evaluateWeb(client, type, key) {
    if (type === 'boolean') return client.getBooleanDetails(key, DEFAULTS.boolean);
    if (type === 'string') return client.getStringDetails(key, DEFAULTS.string);
    if (type === 'number') return client.getNumberDetails(key, DEFAULTS.number);
    return client.getObjectDetails(key, DEFAULTS.json);
}

async function post(path, body, headers = {}) {
    const r = await fetch(BASE + path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
                                         headers: { 'Content-Type': 'application/json', ...headers } });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
}

async function run(sql, base, n0) {
    BASE = base;
    n = n0;
    failed = 0;
    await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    for (const [k, type, vars, cfg] of FLAGS) {
        await sql('SELECT opsflags.create_flag($1, $1, NULL, $2, $3)', [P + k, type, JSON.stringify(vars)]);
        await sql("SELECT opsflags.update_flag($1, $2, 'production')", [P + k, JSON.stringify(cfg)]);
    }
    const expected = async (key, ctx) => (await sql(
        "SELECT opsflags.feature_value($1, $2::jsonb) AS v FROM set_config('opsflags.environment', 'production', false)",
        [key, JSON.stringify(ctx)]))[0].v;

    try {
        // The server SDK: a request per evaluation.
        server.OpenFeature.setProvider(new OFREPProvider({ baseUrl: BASE }));
        const sclient = server.OpenFeature.getClient();
        let pairs = 0;
        let same = 0;
        const bad = [];
        for (const ctx of CONTEXTS) {
            for (const [k, type] of FLAGS) {
                const d = await evaluateServer(sclient, type, P + k, ctx);
                const want = await expected(P + k, ctx);
                const wantValue = want === null ? DEFAULTS[type] : want;
                pairs++;
                if (JSON.stringify(d.value) === JSON.stringify(wantValue)) same++;
                else bad.push(`${k} ${JSON.stringify(ctx)}: SDK ${JSON.stringify(d)}, SQL ${JSON.stringify(want)}`);
            }
        }
        ok(pairs === same, `the server SDK with the OFREP provider gets feature_value's value for ${pairs} (flag, context) pairs (${same} same)`);
        bad.slice(0, 5).forEach((b) => console.log(`#   ${b}`));
        const dark = await sclient.getBooleanDetails(P + 'dark', true, CONTEXTS[0]);
        const rule = await sclient.getBooleanDetails(P + 'bool', true, CONTEXTS[1]);
        const missing = await sclient.getBooleanDetails(P + 'nope', true, CONTEXTS[0]);
        // (No value: the answer leaves value out, OFREP's code default; this
        // provider version takes that for an error, and returns the default.)
        ok(dark.value === true && rule.value === false && rule.reason === 'TARGETING_MATCH'
           && missing.value === true && missing.errorCode === 'FLAG_NOT_FOUND',
           `no off variation: the caller's default; false served by a rule: TARGETING_MATCH; an unknown flag: FLAG_NOT_FOUND (${dark.value}, ${rule.reason}, ${missing.errorCode})`);
        await server.OpenFeature.close();

        // The web SDK: one bulk request per context, then evaluated locally.
        let wpairs = 0;
        let wsame = 0;
        const wbad = [];
        for (const ctx of CONTEXTS) {
            await web.OpenFeature.setContext(ctx);
            await web.OpenFeature.setProviderAndWait(new OFREPWebProvider({ baseUrl: BASE, pollInterval: 0 }));
            const wclient = web.OpenFeature.getClient();
            for (const [k, type] of FLAGS) {
                const d = evaluateWeb(wclient, type, P + k);
                const want = await expected(P + k, ctx);
                const wantValue = want === null ? DEFAULTS[type] : want;
                wpairs++;
                if (JSON.stringify(d.value) === JSON.stringify(wantValue)) wsame++;
                else wbad.push(`${k} ${JSON.stringify(ctx)}: SDK ${JSON.stringify(d)}, SQL ${JSON.stringify(want)}`);
            }
            await web.OpenFeature.close();
        }
        ok(wpairs === wsame, `the web SDK with the OFREP web provider gets feature_value's value for ${wpairs} (flag, context) pairs (${wsame} same)`);
        wbad.slice(0, 5).forEach((b) => console.log(`#   ${b}`));

        // ETag and 304.
        const ctx = { context: CONTEXTS[0] };
        const a = await post('/ofrep/v1/evaluate/flags', ctx);
        const etag = a.headers.get('etag');
        const b = await post('/ofrep/v1/evaluate/flags', ctx, { 'If-None-Match': etag });
        const c = await post('/ofrep/v1/evaluate/flags', { context: CONTEXTS[1] }, { 'If-None-Match': etag });
        ok(a.status === 200 && etag && b.status === 304 && b.text === '' && c.status === 200 && c.headers.get('etag') !== etag,
           `bulk: an ETag, 304 when it matches, 200 and another ETag for another context (${a.status} ${b.status} ${c.status})`);
        await sql("SELECT opsflags.update_flag($1, '{\"on_variation\": 2}', 'production')", [P + 'color']);
        const d = await post('/ofrep/v1/evaluate/flags', ctx, { 'If-None-Match': etag });
        ok(d.status === 200 && d.headers.get('etag') !== etag
           && d.json.flags.find((f) => f.key === P + 'color').value === await expected(P + 'color', CONTEXTS[0]),
           `bulk: after a change committed in SQL, 200 with the new value and another ETag (${d.status})`);

        // Errors, in OFREP's words, as JSON.
        const e1 = await post('/ofrep/v1/evaluate/flags/' + P + 'nope', ctx);
        const e2 = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', '{"context": ');
        const e3 = await post('/ofrep/v1/evaluate/flags', { context: 'u1' });
        const e4 = await post('/ofrep/v1/evaluate/flags/' + P + 'rollout', { context: { country: 'DE' } });
        const e5 = await post('/ofrep/v1/evaluate/flags/' + encodeURIComponent(P + 'bool'), ctx);
        const json = [e1, e2, e3, e4, e5].every((e) => (e.headers.get('content-type') || '').startsWith('application/json') && e.json);
        ok(e1.status === 404 && e1.json.errorCode === 'FLAG_NOT_FOUND' && e2.status === 400 && e2.json.errorCode === 'PARSE_ERROR'
           && e3.status === 400 && e3.json.errorCode === 'INVALID_CONTEXT' && e4.status === 400
           && e4.json.errorCode === 'TARGETING_KEY_MISSING' && e5.status === 200 && e5.json.value === true && json,
           `404 FLAG_NOT_FOUND, 400 PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING, a percent-encoded key, all JSON (${[e1, e2, e3, e4, e5].map((e) => e.status)})`);
        const g = await fetch(BASE + '/ofrep/v1/evaluate/flags');
        ok(g.status === 405 && (g.headers.get('allow') || '').includes('POST'), `GET is 405 with Allow: ${g.headers.get('allow')}`);

        // CORS: the allowed origin only.
        const pre = await fetch(BASE + '/ofrep/v1/evaluate/flags', {
            method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST',
                                          'Access-Control-Request-Headers': 'content-type, authorization' } });
        const yes = await post('/ofrep/v1/evaluate/flags', ctx, { Origin: 'http://app.example' });
        const no = await post('/ofrep/v1/evaluate/flags', ctx, { Origin: 'http://evil.example' });
        ok(pre.status === 204 && pre.headers.get('access-control-allow-origin') === 'http://app.example'
           && (pre.headers.get('access-control-allow-methods') || '').includes('POST')
           && pre.headers.get('access-control-allow-headers') === 'content-type, authorization'
           && yes.headers.get('access-control-allow-origin') === 'http://app.example'
           && (yes.headers.get('access-control-expose-headers') || '').includes('ETag')
           && no.status === 200 && no.headers.get('access-control-allow-origin') === null,
           'CORS: the preflight and the answer name the allowed origin and expose ETag; another origin gets no CORS headers');
        // API keys: once production has one, a request needs it.
        const key = (await sql("SELECT opsflags.create_api_key('production', 'client', 'ofrep test') AS k"))[0].k;
        const other = (await sql("SELECT opsflags.create_api_key('staging', 'client', 'ofrep test') AS k"))[0].k;
        const spare = (await sql("SELECT opsflags.create_api_key('production', 'server', 'ofrep test spare') AS k"))[0].k;
        const none = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx);
        const bearer = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${key}` });
        const header = await post('/ofrep/v1/evaluate/flags', ctx, { 'X-API-Key': key });
        const staging = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${other}` });
        const wrong = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${key.slice(0, -1)}x` });
        const flagsNone = await fetch(BASE + '/flags/production');
        const flagsKey = await fetch(BASE + '/flags/production', { headers: { Authorization: `Bearer ${key}` } });
        const flagsOther = await fetch(BASE + '/flags/production', { headers: { Authorization: `Bearer ${other}` } });
        const flagsStaging = await fetch(BASE + '/flags/staging');
        ok(flagsNone.status === 401 && flagsKey.status === 200 && flagsOther.status === 403 && flagsStaging.status === 401,
           `/flags/<environment>: 401 without the key once the environment has one, 200 with it, 403 with another environment's (${[flagsNone, flagsKey, flagsOther, flagsStaging].map((r) => r.status)})`);
        server.OpenFeature.setProvider(new OFREPProvider({ baseUrl: BASE, headers: { Authorization: `Bearer ${key}` } }));
        const viaSdk = await server.OpenFeature.getClient().getBooleanDetails(P + 'bool', false, CONTEXTS[0]);
        // last_used_at: written by the server after it answered with the key
        let used = null;
        for (let i = 0; i < 100 && !used; i++) {
            used = (await sql("SELECT last_used_at FROM opsflags.api_keys_view WHERE description = 'ofrep test' AND environment = 'production'"))[0].last_used_at;
            if (!used) await new Promise((r) => setTimeout(r, 50));
        }
        ok(used !== null, `the key's last_used_at is written after a request with it (${used})`);
                await sql('SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = $1', ['ofrep test']);
        const revoked = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${key}` });
        const byServerKey = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${spare}` });
        // each key has its own minute: the spare's first use is written at once too
        let spareUsed = null;
        for (let i = 0; i < 100 && !spareUsed; i++) {
            spareUsed = (await sql("SELECT last_used_at FROM opsflags.api_keys_view WHERE description = 'ofrep test spare'"))[0].last_used_at;
            if (!spareUsed) await new Promise((r) => setTimeout(r, 50));
        }
        ok(spareUsed !== null, `a second key's first use is written at once, within the first key's minute (${spareUsed})`);
        await sql('SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = $1', ['ofrep test spare']);
        const openAgain = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx);
        const revokedWhenOpen = await post('/ofrep/v1/evaluate/flags/' + P + 'bool', ctx, { Authorization: `Bearer ${spare}` });
        await server.OpenFeature.close();
        ok(none.status === 401 && bearer.status === 200 && bearer.json.value === true && header.status === 200
           && staging.status === 200 && staging.json.metadata.environment === 'staging' && wrong.status === 401
           && viaSdk.value === true && !viaSdk.errorCode && revoked.status === 401 && byServerKey.status === 200
           && openAgain.status === 200 && revokedWhenOpen.status === 401
           && ![none, wrong, revoked].some((r) => r.text.includes(key.slice(20))),
           `API keys: none 401, Bearer and X-API-Key 200 (the SDK with its headers too), a staging key evaluates staging, a wrong secret 401, revoked 401, a server key 200; with no active key left, none is needed but a revoked one is still 401; no answer shows the key (${[none, bearer, header, staging, wrong, revoked, byServerKey, openAgain, revokedWhenOpen].map((r) => r.status)})`);
    } finally {
        await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'ofrep test%'").catch(() => {});
        await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    }
    return { n, failed };
}

module.exports = { run };
