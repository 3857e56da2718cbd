// launchdarkly.js: LaunchDarkly's Node client-side SDK
// (launchdarkly-node-client-sdk, unmodified: streaming and events off,
// baseUrl pointed at opsflags) against opsflags' /sdk/evalx endpoints, on
// flags made here of every kind (a boolean with rules, one of them serving
// false, a string split, a number with a rule, a JSON object, an off flag
// without an off variation, a percentage rollout), for single-kind,
// multi-kind and legacy user contexts, by GET and by REPORT: each value
// and variation index must be what feature_explain says in SQL for the
// same context, and the reasons LaunchDarkly's.  Then the client-side ID
// (an environment's name where it needs no key, else an API key: another
// environment's key evaluates that environment, none, a revoked or an
// admin key gets nothing), ETag and 304, goals and events, and the CORS
// preflight for the SDK's headers.  The flags and keys are removed at the
// end.  Prints TAP from n0 + 1 on; exports run().
'use strict';

const LD = require('launchdarkly-node-client-sdk');

const P = 'clients.ld.';
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
    { kind: 'user', key: 'u1', country: 'DE', plan: 'pro' },
    { kind: 'user', key: 'u2', country: 'FR' },
    { kind: 'multi', user: { key: 'u3', plan: 'pro' }, org: { key: 'o1', country: 'DE' } },
    { kind: 'multi', user: { key: 'user-42', country: 'DE' }, device: { key: 'd1' } },
    { key: 'u5', country: 'FR', plan: 'free' },            // a legacy user
    { key: 'u6', custom: { plan: 'pro' } },                 // a legacy user with custom attributes
];
const DEFAULTS = { boolean: 'default', string: 'default', number: -1, json: { default: true } };
const quiet = LD.basicLogger({ level: 'none' });

// JSON with object members in key order (jsonb's order is not the SDK's)
function canon(v) {
    if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
    if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
    return JSON.stringify(v);
}

function b64url(s) {
    return Buffer.from(s, 'utf8').toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
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
    // An SDK client for id and context; its flags once initialized, else the error.
    // (With useReport the Node SDK sends the context as a chunked body.)
    async function sdk(id, context, options = {}) {
        const client = LD.initialize(id, context, {
            baseUrl: base, eventsUrl: base, streamUrl: base, streaming: false, sendEvents: false,
            diagnosticOptOut: true, evaluationReasons: true, logger: quiet, ...options });
        clients.push(client);
        try {
            await client.waitForInitialization(10);
            return { client };
        } catch (e) {
            return { client, error: e };
        }
    }
    const explain = async (key, ctx, env = 'production') => (await sql(
        "SELECT opsflags.feature_explain($1, $2::jsonb) AS x FROM set_config('opsflags.environment', $3, false)",
        [key, JSON.stringify(ctx), env]))[0].x;

    await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'ld test%'");
    for (const [k, type, vars, cfg] of FLAGS) {
        await sql('SELECT opsflags.create_flag($1, $1, NULL, $2, $3)', [P + k, type, JSON.stringify(vars)]);
        await sql("SELECT opsflags.update_flag($1, $2, 'production')", [P + k, JSON.stringify(cfg)]);
    }
    // staging serves other values: everything on, the last variation
    for (const [k, , vars] of FLAGS)
        await sql("SELECT opsflags.update_flag($1, $2, 'staging')", [P + k, JSON.stringify({ is_enabled: true, on_variation: vars.length - 1 })]);

    // Compare an SDK client's answers with feature_explain for every flag.
    async function compare(client, ctx, env, bad) {
        let same = 0;
        for (const [k, type] of FLAGS) {
            const d = client.variationDetail(P + k, DEFAULTS[type]);
            const x = await explain(P + k, ctx, env);
            const wantValue = x.variation === null ? DEFAULTS[type] : x.value;
            const wantIndex = x.variation === null ? null : x.variation;
            if (JSON.stringify(d.value) === JSON.stringify(wantValue) && (d.variationIndex ?? null) === wantIndex) same++;
            else bad.push(`${env} ${k} ${JSON.stringify(ctx)}: SDK ${JSON.stringify(d)}, SQL ${JSON.stringify(x)}`);
        }
        return same;
    }

    try {
        // GET (the context base64url in the path) and REPORT (in the body).
        for (const useReport of [false, true]) {
            let pairs = 0;
            let same = 0;
            const bad = [];
            for (const ctx of CONTEXTS) {
                const { client, error } = await sdk('production', ctx, { useReport });
                if (error) {
                    bad.push(`${JSON.stringify(ctx)}: ${error.message}`);
                    pairs += FLAGS.length;
                    continue;
                }
                pairs += FLAGS.length;
                same += await compare(client, ctx, 'production', bad);
            }
            ok(pairs === same, `the LaunchDarkly client SDK (${useReport ? 'REPORT' : 'GET'}) gets feature_explain's value and variation index for ${pairs} (flag, context) pairs: single-kind, multi-kind and legacy user contexts (${same} same)`);
            bad.slice(0, 5).forEach((b) => console.log(`#   ${b}`));
        }

        // Reasons, as LaunchDarkly's.
        {
            const { client } = await sdk('production', CONTEXTS[0]);
            const r = (k) => client.variationDetail(P + k, null).reason || {};
            const { client: c2 } = await sdk('production', CONTEXTS[1]);
            const fr = c2.variationDetail(P + 'bool', 'default');
            const dark = client.variationDetail(P + 'dark', 'default');
            ok(r('bool').kind === 'RULE_MATCH' && r('bool').ruleIndex === 0 && r('bool').ruleId === 'de'
               && fr.value === false && fr.reason.kind === 'RULE_MATCH' && fr.reason.ruleIndex === 1
               && r('limit').kind === 'RULE_MATCH' && r('color').kind === 'FALLTHROUGH'
               && dark.value === 'default' && dark.variationIndex == null && dark.reason.kind === 'OFF',
               `reasons: RULE_MATCH with ruleIndex and ruleId (false served by a rule too), FALLTHROUGH, OFF with no value: the default (${JSON.stringify([r('bool'), fr.reason, r('color'), dark])})`);
        }

        // The protocol: ETag and 304, withReasons, the answer's shape.
        const path = `/sdk/evalx/production/contexts/${b64url(JSON.stringify(CONTEXTS[0]))}`;
        const a = await fetch(base + path);
        const aj = await a.json();
        const etag = a.headers.get('etag');
        const b = await fetch(base + path, { headers: { 'If-None-Match': etag } });
        const c = await fetch(base + `/sdk/evalx/production/contexts/${b64url(JSON.stringify(CONTEXTS[1]))}`, { headers: { 'If-None-Match': etag } });
        const withReasons = await (await fetch(base + path + '?withReasons=true')).json();
        const bool = aj[P + 'bool'];
        ok(a.status === 200 && etag && b.status === 304 && c.status === 200 && c.headers.get('etag') !== etag
           && bool.value === true && bool.variation === 0 && bool.trackEvents === false && Number.isInteger(bool.version)
           && bool.flagVersion === bool.version && !('reason' in bool) && !('variation' in aj[P + 'dark'])
           && aj[P + 'dark'].value === null && withReasons[P + 'bool'].reason.kind === 'RULE_MATCH',
           `evalx: an ETag, 304 when it matches, 200 and another ETag for another context; {value, variation, version, flagVersion, trackEvents}, reasons only withReasons=true, no variation when no value (${a.status} ${b.status} ${c.status})`);
        const report = await fetch(base + '/sdk/evalx/production/context', { method: 'REPORT', body: JSON.stringify(CONTEXTS[0]),
                                                                               headers: { 'Content-Type': 'application/json' } });
        const user = await fetch(base + `/sdk/evalx/production/users/${b64url(JSON.stringify(CONTEXTS[4]))}`);
        const badCtx = await fetch(base + '/sdk/evalx/production/contexts/%%%');
        const notJson = await fetch(base + '/sdk/evalx/production/context', { method: 'REPORT', body: '{"key": ' });
        const unknown = await fetch(base + path.replace('production', 'no-such-env'));
        const short = await fetch(base + '/sdk/evalx/production');
        ok(report.status === 200 && (await report.json())[P + 'bool'].value === true && user.status === 200
           && badCtx.status === 400 && notJson.status === 400 && unknown.status === 404 && short.status === 404,
           `evalx: REPORT with the context, the user form, a context that is not base64url JSON 400, a body that is not JSON 400, an unknown environment 404, no context 404 (${[report, user, badCtx, notJson, unknown, short].map((r) => r.status)})`);
        const goals = await fetch(base + '/sdk/goals/production');
        const bulk = await fetch(base + '/events/bulk/production', { method: 'POST', body: '[{"kind": "identify"}]', headers: { 'Content-Type': 'application/json' } });
        const diag = await fetch(base + '/events/diagnostic/production', { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } });
        ok(goals.status === 200 && JSON.stringify(await goals.json()) === '[]' && bulk.status === 204 && diag.status === 204,
           `goals [], bulk and diagnostic events taken (${goals.status} ${bulk.status} ${diag.status})`);
        // An SDK with events on posts them, and is none the worse.
        {
            const { client, error } = await sdk('production', CONTEXTS[0], { sendEvents: true, diagnosticOptOut: false });
            client.variation(P + 'bool', false);
            let flushed = true;
            await client.flush().catch(() => { flushed = false; });
            ok(!error && flushed, 'an SDK with events on flushes them to /events/bulk');
        }

        // CORS: the preflight allows LaunchDarkly's headers and REPORT.
        const wanted = 'x-launchdarkly-user-agent, x-launchdarkly-wrapper, x-launchdarkly-tags, content-type';
        const pre = await fetch(base + '/sdk/evalx/production/context', {
            method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'REPORT',
                                          'Access-Control-Request-Headers': wanted } });
        const preGet = await fetch(base + path, {
            method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'GET',
                                          'Access-Control-Request-Headers': 'x-launchdarkly-user-agent' } });
        const yes = await fetch(base + path, { headers: { Origin: 'http://app.example' } });
        ok(pre.status === 204 && pre.headers.get('access-control-allow-origin') === 'http://app.example'
           && (pre.headers.get('access-control-allow-methods') || '').includes('REPORT')
           && pre.headers.get('access-control-allow-headers') === wanted
           && preGet.status === 204 && preGet.headers.get('access-control-allow-headers') === 'x-launchdarkly-user-agent'
           && yes.headers.get('access-control-allow-origin') === 'http://app.example'
           && (yes.headers.get('access-control-expose-headers') || '').includes('ETag'),
           `CORS: the preflight allows REPORT and the SDK's X-LaunchDarkly-* headers; answers name the origin and expose ETag (${pre.status} ${pre.headers.get('access-control-allow-methods')})`);

        // Keys: once production has one, the client-side ID must be a key.
        const key = (await sql("SELECT opsflags.create_api_key('production', 'client', 'ld test') AS k"))[0].k;
        const other = (await sql("SELECT opsflags.create_api_key('staging', 'client', 'ld test') AS k"))[0].k;
        const admin = (await sql("SELECT opsflags.create_api_key('production', 'admin', 'ld test admin', as_role => 'opsflags_admin') AS k"))[0].k;
        const byName = await sdk('production', CONTEXTS[0]);
        const byKey = await sdk(key, CONTEXTS[0]);
        const byKeyReport = await sdk(key, CONTEXTS[2], { useReport: true });
        const byOther = await sdk(other, CONTEXTS[0]);
        const byAdmin = await sdk(admin, CONTEXTS[0]);
        const badKey = await sdk(key.slice(0, -1) + (key.endsWith('x') ? 'y' : 'x'), CONTEXTS[0]);
        const stagingByName = await sdk('staging', CONTEXTS[0]);
        const adminStatus = (await fetch(base + path.replace('production', admin))).status;
        await sql("SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys_view WHERE description = 'ld test' AND environment = 'production'");
        const revoked = await sdk(key, CONTEXTS[0]);
        const revokedStatus = (await fetch(base + path.replace('production', key))).status;
        const bad = [];
        let same = 0;
        if (!byKey.error) same += await compare(byKey.client, CONTEXTS[0], 'production', bad);
        if (!byKeyReport.error) same += await compare(byKeyReport.client, CONTEXTS[2], 'production', bad);
        if (!byOther.error) same += await compare(byOther.client, CONTEXTS[0], 'staging', bad);
        // staging has a key now too: its name no longer serves
        const stagingValues = FLAGS.map(([k]) => byOther.error ? null : byOther.client.variation(P + k, null));
        ok(byName.error && !byKey.error && !byKeyReport.error && !byOther.error && same === 3 * FLAGS.length
           && byAdmin.error && adminStatus === 403 && badKey.error && revoked.error && revokedStatus === 401
           && stagingByName.error
           && canon(stagingValues) === canon(FLAGS.map(([, , vars]) => vars[vars.length - 1])),
           `keys: the environment's name no longer serves once it has a key; its client key serves it (GET and REPORT), a staging key staging's values; an admin key 403, a wrong secret and a revoked key nothing (${same} same; admin ${adminStatus}, revoked ${revokedStatus})`);
        bad.slice(0, 5).forEach((x) => console.log(`#   ${x}`));
    } finally {
        for (const c of clients) await c.close().catch(() => {});
        await sql("DELETE FROM opsflags.api_keys WHERE description LIKE 'ld test%'").catch(() => {});
        await sql(`SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%']);
    }
    return { n, failed };
}

module.exports = { run };
