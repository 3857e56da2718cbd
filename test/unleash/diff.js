// diff.js: a differential test of opsflags against the Unleash SDK.  A
// seeded generator (OPSFLAGS_DIFF_SEED replays a run; the seed is printed;
// OPSFLAGS_DIFF_FEATURES and OPSFLAGS_DIFF_CONTEXTS, default 60 and 200, size
// it; OPSFLAGS_DIFF_SHOW=<feature> prints that feature in each form) makes
// Unleash features (every strategy, constraints with every operator,
// inverted and caseInsensitive, segments, dependencies, variants with
// weights, stickiness, payloads and overrides) and contexts (userId,
// sessionId, remoteAddress, properties, currentTime, missing fields).
// opsflags imports them (import_unleash) in an environment of its own, in a
// transaction rolled back at the end, and evaluates every (feature, context)
// pair in one query: feature_enabled and feature_explain.  The SDK
// (unleash-client) evaluates the same pairs twice, once on the generated
// document and once on opsflags' export of it (unleash_features), both
// served from a local stub of /api/client/features: isEnabled against
// feature_enabled, getVariant against feature_explain.  Any difference
// fails.  Nothing is random at evaluation: no "random" stickiness, and
// every context has a userId or a sessionId (the SDK draws a random value
// when a default stickiness finds neither).  Strings are ASCII: the SDK's
// murmurhash3js hashes UTF-16 code units, not UTF-8 bytes.
'use strict';

const http = require('http');
const { Client } = require('pg');
const { InMemStorageProvider, Unleash } = require('unleash-client');

const FEATURES = Number(process.env.OPSFLAGS_DIFF_FEATURES || 60);
const CONTEXTS = Number(process.env.OPSFLAGS_DIFF_CONTEXTS || 200);
const SEED = process.env.OPSFLAGS_DIFF_SEED ? Number(process.env.OPSFLAGS_DIFF_SEED)
                                            : Math.floor(Math.random() * 2 ** 31);
const APP = { appName: 'opsflags-diff', environment: 'default' };

// mulberry32
let state = SEED >>> 0;
function rnd() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const chance = (p) => rnd() < p;
const some = (a, max) => { const n = 1 + int(max); const out = []; for (let i = 0; i < n; i++) out.push(pick(a)); return out; };

const USERS = ['u1', 'u2', 'u3', 'alice', 'bob', 'Carol', '42', '7', 'user-100', 'x'];
const SESSIONS = ['s1', 's2', 's3', 'sess-9', 'abc'];
const IPS = ['10.0.0.1', '10.1.2.3', '192.168.1.20', '127.0.0.1', '172.16.5.4', '8.8.8.8', '::1', '2001:db8::7', 'fe80::1', 'not-an-ip'];
const CIDRS = ['10.0.0.0/8', '192.168.1.0/24', '127.0.0.1', '172.16.0.0/12', '8.8.8.8/32', '::1', '2001:db8::/32', 'fe80::/10', '300.1.1.1', 'bad', ''];
const STRINGS = ['alpha', 'Alpha', 'beta', 'gamma-1', 'delta@example.com', 'EPSILON@Example.COM', 'zeta', 'eta theta', '', ' alpha', 'beta '];
const NUMBERS = ['0', '1', '7', '12', '12.0', '12.5', '-3', '100', '1e3', 'abc', ''];
const VERSIONS = ['1.0.0', '1.2.3', '1.2.3-beta.1', '1.2.3-alpha', '2.0.0', '2.0.0-rc.1', '0.9.12', '1.10.0', 'v1.2.3', '1.2', 'bad'];
const DATES = ['2022-01-01T00:00:00.000Z', '2023-06-15T12:30:00.000Z', '2024-02-29T23:59:59.999Z',
               '2021-12-31T23:00:00.000+02:00', '2030-01-01T00:00:00Z', 'not-a-date'];
const REGEXES = ['^a', 'a$', '^[a-c]+$', 'alpha|beta', '^(?i)alpha$', '\\bbeta\\b', '^\\d+$', '^u\\d$', 'ph', '^[^@]+@[^@]+$',
                 '(?i)EXAMPLE', '(unclosed', '^(a)\\1$', '^(?=a)'];
const FIELDS = ['tenant', 'plan', 'email', 'level', 'version'];
const OPERATORS = ['IN', 'NOT_IN', 'STR_STARTS_WITH', 'STR_ENDS_WITH', 'STR_CONTAINS', 'NUM_EQ', 'NUM_GT', 'NUM_GTE', 'NUM_LT',
                   'NUM_LTE', 'DATE_AFTER', 'DATE_BEFORE', 'SEMVER_EQ', 'SEMVER_GT', 'SEMVER_GTE', 'SEMVER_LT', 'SEMVER_LTE',
                   'REGEX', 'IN_CIDR', 'NOT_AN_OPERATOR'];

function constraint() {
    const operator = pick(OPERATORS);
    const c = { contextName: pick(['userId', 'sessionId', 'remoteAddress', 'appName', 'environment', ...FIELDS]), operator };
    if (chance(0.3)) c.inverted = true;
    if (chance(0.3)) c.caseInsensitive = true;
    if (operator.startsWith('NUM_')) { c.contextName = pick(['level', 'userId']); c.value = pick(NUMBERS); }
    else if (operator.startsWith('DATE_')) { c.contextName = 'currentTime'; c.value = pick(DATES); }
    else if (operator.startsWith('SEMVER_')) { c.contextName = 'version'; c.value = pick(VERSIONS.filter((v) => v !== 'bad' || chance(0.2))); }
    else if (operator === 'REGEX') c.value = pick(REGEXES);
    else if (operator === 'IN_CIDR') { c.contextName = 'remoteAddress'; c.values = some(CIDRS, 3); }
    else if (operator === 'IN' || operator === 'NOT_IN') {
        c.values = some([...USERS, ...SESSIONS, ...STRINGS, 'opsflags-diff', 'default', 'production'], 4);
        if (chance(0.1)) c.values = [];
    } else c.values = some([...STRINGS, 'a', 'e', 'EX', 'com', 'u'], 3);
    return c;
}

const constraints = () => (chance(0.5) ? [] : Array.from({ length: 1 + int(2) }, constraint));

function variants(names, payloadOf) {
    const n = 1 + int(3);
    const stick = chance(0.5) ? 'default' : (chance(0.5) ? 'tenant' : undefined);
    const out = [];
    const used = new Set();
    for (let i = 0; i < n; i++) {
        const name = pick(names);
        if (used.has(name)) continue;
        used.add(name);
        const v = { name, weight: chance(0.1) ? 0 : 1 + int(500), weightType: 'variable' };
        if (stick) v.stickiness = stick;
        if (payloadOf(name) !== undefined) v.payload = payloadOf(name);
        if (chance(0.2)) v.overrides = [{ contextName: pick(['userId', 'tenant']), values: some([...USERS, 't1', 't2'], 2) }];
        out.push(v);
    }
    return out;
}

function strategy(fname, segmentIds, names, payloadOf) {
    const kind = pick(['default', 'userWithId', 'flexibleRollout', 'flexibleRollout', 'gradualRolloutUserId',
                       'gradualRolloutSessionId', 'gradualRolloutRandom', 'remoteAddress', 'applicationHostname', 'myCustom']);
    const s = { name: kind, parameters: {}, constraints: constraints() };
    const pct = () => String(pick([0, 1, 10, 25, 50, 75, 99, 100, int(101)]));
    // A rollout without a groupId (or an empty one) is bucketed in group "";
    // variants without one in group "undefined", as the SDK does.
    const grp = () => pick([fname, 'g1', 'shared', '', undefined]);
    if (kind === 'userWithId') s.parameters.userIds = some(USERS, 4).join(pick([',', ', ', ' ,']));
    if (kind === 'flexibleRollout') {
        s.parameters.rollout = pct();
        s.parameters.stickiness = pick(['default', 'userId', 'sessionId', 'tenant', 'plan']);
        s.parameters.groupId = grp();
    }
    if (kind === 'gradualRolloutUserId' || kind === 'gradualRolloutSessionId') {
        s.parameters.percentage = pct();
        s.parameters.groupId = grp();
    }
    if (['default', 'userWithId', 'remoteAddress'].includes(kind) && chance(0.5)) s.parameters.groupId = grp();
    if (kind === 'gradualRolloutRandom') s.parameters.percentage = pick(['0', '100']);
    if (kind === 'remoteAddress') s.parameters.IPs = some([...CIDRS.filter((x) => x), ...IPS], 3).join(', ');
    if (kind === 'applicationHostname') s.parameters.hostNames = 'nohost.example';
    if (segmentIds.length && chance(0.3)) s.segments = some([...segmentIds, 99], 2).filter((x, i, a) => a.indexOf(x) === i);
    if (chance(0.3)) s.variants = variants(names, payloadOf);
    return s;
}

function generate() {
    const segments = [];
    for (let id = 1; id <= 5; id++) segments.push({ id, name: `seg-${id}`, constraints: constraints() });
    const segmentIds = segments.map((s) => s.id);
    const features = [];
    for (let i = 0; i < FEATURES; i++) {
        const name = `f${i}`;
        const names = ['red', 'green', 'blue', `v-${i}`];
        const payloads = {};
        for (const n of names) {
            if (chance(0.7)) payloads[n] = chance(0.5) ? { type: 'string', value: `${n}-${i}` }
                                                       : { type: 'json', value: JSON.stringify({ n, i }) };
        }
        const f = { name, description: `feature ${i}`, type: 'release', project: 'default', enabled: chance(0.85),
                    stale: false, impressionData: false, strategies: [], variants: [] };
        const ns = chance(0.2) ? 0 : 1 + int(3);
        for (let k = 0; k < ns; k++) f.strategies.push(strategy(name, segmentIds, names, (n) => payloads[n]));
        if (chance(0.4)) f.variants = variants(names, (n) => payloads[n]);
        features.push(f);
    }
    // Dependencies one level deep (the SDK never satisfies deeper ones):
    // children among the last third, parents among the first two.
    const parents = features.slice(0, Math.floor(FEATURES * 2 / 3));
    for (const f of features.slice(Math.floor(FEATURES * 2 / 3))) {
        if (!chance(0.6)) continue;
        f.dependencies = [];
        const n = 1 + int(2);
        for (let k = 0; k < n; k++) {
            const p = chance(0.1) ? { name: 'missing.parent' } : pick(parents);
            if (f.dependencies.some((d) => d.feature === p.name)) continue;
            const d = { feature: p.name };
            if (chance(0.3)) d.enabled = chance(0.5);
            // "disabled" names what a parent serves without a variant; opsflags
            // matches it only for a parent that has no variants at all.
            const hasVariants = p.variants && (p.variants.length || p.strategies.some((s) => s.variants && s.variants.length));
            if (d.enabled !== false && chance(0.3)) {
                d.variants = some(['red', 'green', 'blue', ...(hasVariants ? [] : ['disabled'])], 2);
            }
            f.dependencies.push(d);
        }
    }
    return { version: 2, features, segments };
}

function contexts() {
    const out = [];
    for (let i = 0; i < CONTEXTS; i++) {
        const c = {};
        const who = int(3);   // a userId, a sessionId, or both
        if (who !== 1) c.userId = pick(USERS);
        if (who !== 0) c.sessionId = pick(SESSIONS);
        if (chance(0.7)) c.remoteAddress = pick(IPS);
        if (chance(0.6)) c.currentTime = pick(DATES.slice(0, 5));
        const props = { tenant: pick(['t1', 't2', 't3', 'acme', 'globex']) };
        if (chance(0.6)) props.plan = pick(STRINGS.filter((s) => s));
        if (chance(0.6)) props.email = pick(['delta@example.com', 'EPSILON@Example.COM', 'x@y.org', 'noat']);
        if (chance(0.6)) props.level = pick(NUMBERS.filter((s) => s !== '' && s !== '1e3'));
        if (chance(0.6)) props.version = pick(VERSIONS);
        c.properties = props;
        if (chance(0.4)) c.role = pick(['admin', 'ops', 'dev']);
        if (chance(0.1)) c.environment = pick(['production', 'default']);
        if (chance(0.1)) c.appName = 'other-app';
        out.push(c);
    }
    return out;
}

// The SDK's variant, and opsflags' as the SDK would report it.
function sdkVariant(v) {
    const out = { name: v.name, enabled: v.enabled, feature_enabled: v.feature_enabled };
    if (v.payload !== undefined) out.payload = v.payload;
    return out;
}
function sqlVariant(x) {
    if (!x || x.enabled !== true) return { name: 'disabled', enabled: false, feature_enabled: !!(x && x.enabled) };
    if (typeof x.variant !== 'string') return { name: 'disabled', enabled: false, feature_enabled: true };
    const out = { name: x.variant, enabled: true, feature_enabled: true };
    if (x.value !== null && x.value !== undefined) out.payload = x.value;
    return out;
}

async function sdkFor(port, prefix) {
    const unleash = new Unleash({
        url: `http://127.0.0.1:${port}/${prefix}/api/`,
        appName: APP.appName,
        environment: APP.environment,
        refreshInterval: 3600 * 1000,   // one fetch (0 would fetch nothing)
        disableMetrics: true,
        disableAutoStart: false,
        storageProvider: new InMemStorageProvider(),
    });
    unleash.on('error', () => {});
    unleash.on('warn', () => {});
    await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`the SDK (${prefix}) did not synchronise`)), 20000);
        unleash.once('synchronized', () => { clearTimeout(t); resolve(); });
    });
    return unleash;
}

// Flags made in opsflags itself (not imported), for the export: plain on
// and off, user and role targets, percentage rollouts, a segment target,
// rules (several values of a one-value operator, negated, case-insensitive,
// a PostgreSQL pattern, a gate), named variations served by a rule's split
// and by the config, a fallthrough serve, a prerequisite.  Only the SDK on
// the export knows them.
const NATIVE_SQL = `
SELECT opsflags.create_flag(k) FROM unnest(ARRAY['n.on', 'n.off', 'n.targets', 'n.pct', 'n.pct.grp', 'n.users.pct',
                                                  'n.segment', 'n.rules', 'n.prereq']) k;
SELECT opsflags.create_flag('n.json', flag_type => 'json',
                            variations => '[true, false, {"type": "string", "value": "A"}, {"type": "string", "value": "B"}]');
UPDATE opsflags.feature_flags SET variation_names = '[null, null, "a", "b"]' WHERE flag_key = 'n.json';
UPDATE opsflags.feature_flags SET rollout_group = 'grp' WHERE flag_key = 'n.pct.grp';
SELECT opsflags.create_segment('n.seg', 'Native', '["bob", "x"]', '["ops"]');
UPDATE opsflags.user_segments SET rules = '[{"id": "alpha", "clauses": [{"attribute": "plan", "op": "in", "values": ["alpha", "zeta"]}]}]'
WHERE segment_key = 'n.seg';
UPDATE opsflags.feature_flag_configs c SET is_enabled = f.flag_key <> 'n.off',
       enabled_for_users = CASE f.flag_key WHEN 'n.targets' THEN '["u1", "alice"]' WHEN 'n.users.pct' THEN '["u2"]' ELSE '[]' END::jsonb,
       enabled_for_roles = CASE f.flag_key WHEN 'n.targets' THEN '["admin"]' ELSE '[]' END::jsonb,
       enabled_percentage = CASE f.flag_key WHEN 'n.pct' THEN 30 WHEN 'n.pct.grp' THEN 60 WHEN 'n.users.pct' THEN 50 ELSE 0 END,
       segments = CASE f.flag_key WHEN 'n.segment' THEN '["n.seg"]' ELSE '[]' END::jsonb
FROM opsflags.feature_flags f WHERE f.id = c.flag_id AND c.environment = $1 AND f.flag_key LIKE 'n.%';
UPDATE opsflags.feature_flag_configs c SET
    rules = '[{"id": "lvl", "clauses": [{"attribute": "level", "op": "gt", "values": [50, 10]},
                                        {"attribute": "version", "op": "semver_lt", "values": ["1.2.3", "2.0.0-rc.1"], "negate": true}]},
              {"id": "mail", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"], "case_insensitive": true}],
               "rollout": {"percentage": 50, "bucket_by": ["key"]}},
              {"id": "re", "clauses": [{"attribute": "plan", "op": "matches", "values": ["^a.p", "^et"]}]}]',
    fallthrough = '{"off": true}'
FROM opsflags.feature_flags f WHERE f.id = c.flag_id AND c.environment = $1 AND f.flag_key = 'n.rules';
UPDATE opsflags.feature_flag_configs c SET
    rules = '[{"id": "split", "clauses": [{"attribute": "tenant", "op": "in", "values": ["t1", "t2"]}],
               "serve": {"split": [{"variation": 2, "weight": 30}, {"variation": 3, "weight": 70}], "bucket_by": ["tenant", "$random"], "group": "g"}},
              {"id": "dead", "clauses": [{"attribute": "tenant", "op": "in", "values": ["acme"]}], "serve": {"variation": 3}}]',
    serve = '{"variation": 2}', is_enabled = true
FROM opsflags.feature_flags f WHERE f.id = c.flag_id AND c.environment = $1 AND f.flag_key = 'n.json';
SELECT opsflags.add_prerequisite('n.prereq', 'n.targets');
`;
const NATIVE = ['n.on', 'n.off', 'n.targets', 'n.pct', 'n.pct.grp', 'n.users.pct', 'n.segment', 'n.rules', 'n.prereq', 'n.json'];

async function main() {
    console.log(`# seed ${SEED} (OPSFLAGS_DIFF_SEED=${SEED} replays this run)`);
    const doc = generate();
    const ctxs = contexts();
    const env = 'unleash-diff';
    const db = new Client();
    await db.connect();
    let exported;
    let results;
    await db.query('BEGIN');
    try {
        await db.query('INSERT INTO opsflags.environments (name) VALUES ($1)', [env]);
        await db.query("SELECT set_config('opsflags.environment', $1, true)", [env]);
        await db.query('SELECT opsflags.import_unleash($1, $2)', [env, JSON.stringify(doc)]);
        for (const stmt of NATIVE_SQL.split(';').map((x) => x.trim()).filter((x) => x)) {
            await db.query(stmt, stmt.includes('$1') ? [env] : []);
        }
        exported = (await db.query('SELECT opsflags.unleash_features($1) AS e', [env])).rows[0].e;
        if (process.env.OPSFLAGS_DIFF_SHOW) {
            // OPSFLAGS_DIFF_SHOW=<feature>: what it is in each form.
            const name = process.env.OPSFLAGS_DIFF_SHOW;
            console.log(`# generated: ${JSON.stringify(doc.features.find((f) => f.name === name))}`);
            console.log(`# opsflags: ${JSON.stringify((await db.query(
                `SELECT f.variations, f.variation_names, c.is_enabled, c.rules, c.serve, c.fallthrough
                 FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id
                 WHERE f.flag_key = $1 AND c.environment = $2`, [name, env])).rows[0])}`);
            console.log(`# exported: ${JSON.stringify(exported.features.find((f) => f.name === name))}`);
        }
        const pairs = [];
        for (const f of [...doc.features.map((x) => x.name), ...NATIVE]) {
            ctxs.forEach((c, ci) => pairs.push({ f, ci, ctx: { ...APP, ...c } }));
        }
        const t0 = Date.now();
        results = (await db.query(
            `SELECT opsflags.feature_enabled(p.f, p.ctx) AS e, opsflags.feature_explain(p.f, p.ctx) AS x
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY a(j, o),
                  LATERAL (SELECT a.j ->> 'f' AS f, a.j -> 'ctx' AS ctx) p ORDER BY a.o`,
            [JSON.stringify(pairs.map((p) => ({ f: p.f, ctx: p.ctx })))])).rows;
        console.log(`# ${pairs.length} pairs evaluated in SQL in ${Date.now() - t0} ms`);
    } finally {
        await db.query('ROLLBACK');
        await db.end();
    }

    const server = http.createServer((req, res) => {
        const body = req.url.startsWith('/generated/') ? doc : req.url.startsWith('/exported/') ? exported : null;
        if (!body || !req.url.includes('/client/features')) { res.writeHead(404); res.end(); return; }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    const sdks = { generated: await sdkFor(port, 'generated'), exported: await sdkFor(port, 'exported') };

    let n = 0;
    let failed = 0;
    for (const [which, sdk] of Object.entries(sdks)) {
        let diffs = 0;
        let pairs = 0;
        let k = 0;
        const shown = [];
        for (const f of [...doc.features, ...NATIVE.map((name) => ({ name, native: true }))]) {
            for (const c of ctxs) {
                const r = results[k++];
                if (f.native && which === 'generated') continue;
                const en = sdk.isEnabled(f.name, c);
                const v = sdkVariant(sdk.getVariant(f.name, c));
                const sv = sqlVariant(r.x);
                pairs++;
                if (en !== r.e || JSON.stringify(v) !== JSON.stringify(sv)) {
                    diffs++;
                    if (shown.length < 10) {
                        shown.push(`${f.name} for ${JSON.stringify(c)}: SDK ${en} ${JSON.stringify(v)}, opsflags ${r.e} `
                                   + `${JSON.stringify(sv)} (feature_explain ${JSON.stringify(r.x)})`);
                        if (shown.length <= 3 && !f.native) {
                            shown.push(`  feature ${JSON.stringify(doc.features.find((x) => x.name === f.name))}`);
                        }
                    }
                }
            }
        }
        n++;
        if (diffs) failed++;
        console.log(`${diffs ? 'not ok' : 'ok'} ${n} - SDK on the ${which} document: ${pairs} (feature, context) pairs, `
                    + `${diffs} differences`);
        for (const s of shown) console.log(`#   ${s}`);
    }
    for (const sdk of Object.values(sdks)) sdk.destroy();
    server.close();
    console.log(`1..${n}`);
    console.log(`# unleash-diff: seed ${SEED}, ${doc.features.length} features (and ${NATIVE.length} made in opsflags, `
                + `for the export) x ${ctxs.length} contexts, `
                + `${failed ? 'differences found' : 'no differences'}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
