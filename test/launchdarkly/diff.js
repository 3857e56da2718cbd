// diff.js: a differential test of opsflags against LaunchDarkly's server SDK
// (@launchdarkly/node-server-sdk, offline: TestData with the flags and
// segments as they are, no events, no network).  A seeded generator
// (OPSFLAGS_DIFF_SEED replays a run; the seed is printed;
// OPSFLAGS_DIFF_FLAGS and OPSFLAGS_DIFF_CONTEXTS, default 50 and 220, size
// it) makes server-side data: flags of every value type, on and off, with
// targets, contextTargets (user and org), rules of clauses (every operator
// the import maps, segmentMatch, the kind attribute, negate, contextKind,
// attribute references, values of the wrong type, loose versions), rollouts
// (bucketBy, contextKind, seed, experiments, untracked, weights short of
// 100000) in rules and fallthroughs, prerequisites, and segments with
// included, excluded, includedContexts, excludedContexts (user and org)
// and rules with weights and segmentMatch clauses (nested segments, naming
// only segments generated before, so no cycle); and contexts (user, org,
// multi-kind with and without a user, legacy users with custom attributes,
// missing attributes, arrays, numeric strings and other odd types).
// opsflags imports it (import_launchdarkly_data) in an environment of its
// own, in a transaction rolled back at the end, checks
// that a second import and the import of its export (launchdarkly_data)
// change nothing, and evaluates every (flag, context) pair in one query:
// feature_value, feature_explain's variation and feature_enabled (which must be
// the value served when that is a boolean).  The SDK's variationDetail
// (value and variationIndex) on the generated data and on the export must
// agree with it.
//
// Your own data: OPSFLAGS_DIFF_DATA=<file> (server-side data, as
// /sdk/latest-all returns it) and OPSFLAGS_DIFF_CONTEXTS_FILE=<file> (a JSON
// array of contexts) replace the generated ones; OPSFLAGS_DIFF_DUMP=<file>
// writes the data and contexts of a run.
//
// Flags serve any variation on and off (false in rules, targets and
// rollouts of boolean flags, true as an off variation), may have no
// offVariation (the SDK then answers the caller's default, with no
// variation index; feature_value NULL), and require prerequisites on any
// variation of any earlier flag, chains included (a prerequisite whose own
// prerequisite failed serves its off variation, which may be the one
// required).
'use strict';

const fs = require('fs');
const { Client } = require('pg');
const ld = require('@launchdarkly/node-server-sdk');

const FLAGS = Number(process.env.OPSFLAGS_DIFF_FLAGS || 50);
const CONTEXTS = Number(process.env.OPSFLAGS_DIFF_CONTEXTS || 220);
const SEED = process.env.OPSFLAGS_DIFF_SEED ? Number(process.env.OPSFLAGS_DIFF_SEED)
                                            : Math.floor(Math.random() * 2 ** 31);

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
const some = (a, max) => { const n = 1 + int(max); const out = []; for (let i = 0; i < n; i++) out.push(pick(a)); return [...new Set(out)]; };

const KEYS = ['u1', 'u2', 'u3', 'alice', 'bob', 'Carol', '42', 'user-100', 'x', 'o1'];
const ORGS = ['o1', 'o2', 'acme', 'u1'];
const KINDS = ['user', 'user', 'user', 'org'];
const STRINGS = ['DE', 'de', 'FR', 'US', 'alice@example.com', 'bob@corp.io', 'Carol@Example.COM', 'zeta', 'a', 'example'];
const REGEXES = ['^a', 'com$', '[0-9]', 'DE|FR', '^[a-z]+@', 'xample', '^.$'];
const NUMBERS = [0, 1, 2, 2.5, 7, 10, -3, 100, 1e3];
const VERSIONS = ['1.0.0', '1.2.3', '1.2.3-beta.1', '1.2.3-alpha', '2.0.0', '2.0.0-rc.1', '0.9.12', '1.10.0', '1.2.3+build.5',
                  '1.2', '2', '1.2-beta', 'v1.2.3'];
const DATES = ['2022-01-01T00:00:00Z', '2023-06-15T12:30:00.000Z', '2024-02-29T23:59:59.999Z', '2021-12-31T23:00:00+02:00',
               1672531200000, 1700000000000, 1500000000000];
const SEGMENTS = ['s0', 's1', 's2', 's3'];

// A clause: the operators each attribute is tested with.  In a segment's
// rule, segmentMatch names segments generated before it (earlier).
function clause(inSegment, earlier) {
    const nested = inSegment && earlier.length > 0;
    const kind = pick(['str', 'str', 'num', 'ver', 'date', 'key', 'kind', inSegment && !nested ? 'key' : 'seg']);
    const c = { negate: chance(0.25) };
    if (kind === 'kind') return { attribute: 'kind', op: 'in', values: some(['user', 'org', 'device'], 2), negate: chance(0.3) };
    if (kind === 'seg') {
        Object.assign(c, { attribute: '', op: 'segmentMatch', values: some(inSegment ? earlier : SEGMENTS, 2), negate: chance(0.3) });
    } else if (kind === 'key') {
        // key is always there: negate is safe.
        Object.assign(c, { attribute: 'key', op: pick(['in', 'in', 'startsWith', 'matches']) });
        c.values = c.op === 'in' ? some(KEYS, 3) : c.op === 'matches' ? some(['^u', '^[a-z]+$', '0'], 1) : some(['u', 'a', 'C'], 2);
    } else if (kind === 'str') {
        c.attribute = pick(['country', 'email']);
        c.op = pick(['in', 'startsWith', 'endsWith', 'contains', 'matches']);
        c.values = c.op === 'matches' ? some(REGEXES, 2)
            : c.op === 'in' ? some([...STRINGS, 5, true], 3) : some(['D', 'E', 'com', '@', 'a', 'ex', 'Carol'], 2);
        if (c.op === 'in' && chance(0.1)) c.values.push(null, [1]);
    } else if (kind === 'num') {
        c.attribute = 'n';
        c.op = pick(['in', 'lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual']);
        c.values = some(NUMBERS, 2);
        if (chance(0.1)) c.values.push('5');
    } else if (kind === 'ver') {
        c.attribute = 'ver';
        c.op = pick(['semVerEqual', 'semVerLessThan', 'semVerGreaterThan']);
        c.values = some(VERSIONS, 2);
    } else {
        c.attribute = pick(['t', '/meta/t']);
        c.op = pick(['before', 'after']);
        c.values = some(DATES, 2);
    }
    if (c.attribute !== '' && chance(0.6)) c.contextKind = pick(KINDS);
    return c;
}

const bucketBy = () => pick([undefined, 'key', 'country', 'n', 'email', '/meta/t']);

// A segment; its rules' segmentMatch clauses name earlier segments only.
function segment(key, earlier) {
    const s = { key, version: 1, salt: key, deleted: false, included: chance(0.5) ? some(KEYS, 2) : [],
                excluded: chance(0.5) ? some(KEYS, 2) : [], rules: [] };
    if (chance(0.3)) s.includedContexts = [{ contextKind: pick(KINDS), values: some(ORGS, 2) }];
    if (chance(0.5)) {
        s.excludedContexts = [];
        for (let j = 1 + int(2); j > 0; j--) {
            const kind = pick(['user', 'org']);
            s.excludedContexts.push({ contextKind: kind, values: chance(0.1) ? [] : some(kind === 'org' ? ORGS : KEYS, 2) });
        }
    }
    const nr = int(4);
    for (let i = 0; i < nr; i++) {
        const r = { id: `${key}-r${i}`, clauses: Array.from({ length: 1 + int(2) }, () => clause(true, earlier)) };
        if (chance(0.4)) {
            r.weight = pick([0, 100000, int(100001)]);
            const b = bucketBy();
            if (b) r.bucketBy = b;
            if (chance(0.5)) r.rolloutContextKind = pick(KINDS);
        }
        s.rules.push(r);
    }
    return s;
}

function flag(i, earlier) {
    const type = pick(['boolean', 'boolean', 'string', 'number', 'json']);
    let variations;
    if (type === 'boolean') variations = [true, false];
    else if (type === 'string') variations = some(['red', 'green', 'blue', 'amber', ''], 4);
    else if (type === 'number') variations = some([0, 1, 2.5, -7, 1000], 4);
    else variations = [{ a: 1 }, [1, 2], 'text', 3, { nested: { b: true } }].slice(0, 2 + int(3));
    const nv = variations.length;
    const off = chance(0.1) ? null : int(nv);
    const v = () => int(nv);
    const vr = () => {
        if (chance(0.5)) return { variation: v() };
        const n = 1 + int(nv);
        let left = 100000;
        const variations = [];
        for (let j = 0; j < n; j++) {
            const w = j === n - 1 ? (chance(0.8) ? left : int(left + 1)) : int(left + 1);
            left -= w;
            variations.push({ variation: int(nv), weight: w, ...(chance(0.2) ? { untracked: true } : {}) });
        }
        const rollout = { variations };
        const b = bucketBy();
        if (b) rollout.bucketBy = b;
        if (chance(0.4)) rollout.contextKind = pick(KINDS);
        if (chance(0.4)) rollout.seed = pick([0, 61, -5, 123456789]);
        if (chance(0.2)) rollout.kind = 'experiment';
        return { rollout };
    };
    const key = `f${i}`;
    const f = { key, version: 1 + int(5), on: chance(0.85), variations, salt: `salt-${key}`,
                fallthrough: vr(), targets: [], contextTargets: [], rules: [], prerequisites: [],
                trackEvents: false, trackEventsFallthrough: false, clientSide: false, deleted: false };
    if (off !== null) f.offVariation = off;
    else if (chance(0.5)) f.offVariation = null;
    const nt = int(3);
    for (let t = 0; t < nt; t++) f.targets.push({ variation: v(), values: some(KEYS, 3) });
    if (f.targets.length && chance(0.4)) {
        // contextTargets in another order: "user" ones without values stand
        // for the targets entry of their variation.
        f.contextTargets = f.targets.map((t) => ({ contextKind: 'user', variation: t.variation, values: chance(0.5) ? [] : some(KEYS, 2) })).reverse();
        if (chance(0.6)) f.contextTargets.splice(int(f.contextTargets.length + 1), 0, { contextKind: 'org', variation: v(), values: some(ORGS, 2) });
    }
    const nr = int(5);
    for (let r = 0; r < nr; r++) {
        const rule = { clauses: Array.from({ length: 1 + int(3) }, () => clause(false)), ...vr(), trackEvents: false };
        if (chance(0.8)) rule.id = `${key}-rule-${r}`;
        f.rules.push(rule);
    }
    // Prerequisites on earlier flags, in chains at most as deep as opsflags
    // allows (8).
    const depth = (p) => 1 + Math.max(0, ...p.prerequisites.map((q) => depth(earlier.find((e) => e.key === q.key))));
    const below = earlier.filter((p) => depth(p) < 7);
    if (below.length && chance(0.35)) {
        for (const p of some(below, 2)) f.prerequisites.push({ key: p.key, variation: int(p.variations.length) });
    }
    return f;
}

function generate() {
    const segments = {};
    SEGMENTS.forEach((s, i) => { segments[s] = segment(s, SEGMENTS.slice(0, i)); });
    const flags = {};
    const list = [];
    for (let i = 0; i < FLAGS; i++) {
        const f = flag(i, list);
        list.push(f);
        flags[f.key] = f;
    }
    // Whatever the seed, each case is reached: a flag off serving true, one
    // on serving false, one off serving no value, a prerequisite on a flag that is off (failed,
    // though it serves the variation required) and one met.
    const fixed = (key, on, variations, off, fall, prerequisites = []) => {
        flags[key] = { key, version: 1, on, variations, salt: key, fallthrough: { variation: fall }, targets: [],
                       contextTargets: [], rules: [], prerequisites, trackEvents: false, trackEventsFallthrough: false,
                       clientSide: false, deleted: false, ...(off === null ? {} : { offVariation: off }) };
    };
    fixed('fixed-true-off', false, [true, false], 0, 1);
    fixed('fixed-no-value', false, ['a', 'b'], null, 0);
    fixed('fixed-on', true, ['x', 'y'], 1, 0);
    fixed('fixed-false-on', true, [true, false], 0, 1);
    fixed('fixed-prerequisite-failed', true, [true, false], 1, 0, [{ key: 'fixed-true-off', variation: 0 }]);
    fixed('fixed-prerequisite-met', true, [true, false], 1, 0, [{ key: 'fixed-on', variation: 0 }]);
    return { flags, segments };
}

function attrs() {
    const a = {};
    if (chance(0.7)) a.country = chance(0.8) ? pick(STRINGS) : pick([5, true, null, { x: 1 }, ['DE', 'FR'], [], ['zeta', 5]]);
    if (chance(0.6)) a.email = pick(STRINGS);
    if (chance(0.7)) a.n = chance(0.8) ? pick(NUMBERS) : pick(['abc', '5', true, null, [1, 100]]);
    if (chance(0.6)) a.ver = chance(0.9) ? pick(VERSIONS) : pick(['bad', 3]);
    if (chance(0.6)) a.t = chance(0.9) ? pick(DATES) : 'not-a-date';
    if (chance(0.3)) a.meta = { t: pick(DATES) };
    return a;
}

function contexts() {
    const out = [];
    for (let i = 0; i < CONTEXTS; i++) {
        const user = { key: pick(KEYS), ...attrs() };
        const org = { key: pick(ORGS), ...attrs() };
        const r = rnd();
        if (r < 0.2) out.push({ kind: 'multi', user, org });
        else if (r < 0.3) out.push({ kind: 'org', ...org });
        else if (r < 0.35) out.push({ kind: 'multi', org, device: { key: 'd1' } });
        else if (r < 0.45) {
            // A legacy user: built-in attributes at the top, others in custom.
            const { key, country, email, ...custom } = user;
            out.push({ key, ...(country === undefined ? {} : { country }), ...(email === undefined ? {} : { email }), custom });
        } else out.push({ kind: 'user', ...user });
    }
    return out;
}

async function sdkFor(data) {
    const td = new ld.integrations.TestData();
    for (const s of Object.values(data.segments)) await td.usePreconfiguredSegment(s);
    for (const f of Object.values(data.flags)) await td.usePreconfiguredFlag(f);
    const client = ld.init('sdk-key-offline', {
        updateProcessor: td.getFactory(), sendEvents: false, diagnosticOptOut: true,
        logger: ld.basicLogger({ level: 'none' }),
    });
    await client.waitForInitialization({ timeout: 10 });
    return client;
}

async function main() {
    console.log(`# seed ${SEED} (OPSFLAGS_DIFF_SEED=${SEED} replays this run)`);
    const data = process.env.OPSFLAGS_DIFF_DATA ? JSON.parse(fs.readFileSync(process.env.OPSFLAGS_DIFF_DATA, 'utf8')) : generate();
    data.segments = data.segments || {};
    const ctxs = process.env.OPSFLAGS_DIFF_CONTEXTS_FILE
        ? JSON.parse(fs.readFileSync(process.env.OPSFLAGS_DIFF_CONTEXTS_FILE, 'utf8')) : contexts();
    if (process.env.OPSFLAGS_DIFF_DUMP) {
        // OPSFLAGS_DIFF_DUMP=<file>: the data and contexts, to replay by hand.
        fs.writeFileSync(process.env.OPSFLAGS_DIFF_DUMP, JSON.stringify({ data, contexts: ctxs }));
    }
    const nflags = Object.keys(data.flags).length;
    const nsegs = Object.keys(data.segments).length;
    const env = 'launchdarkly-diff';
    const db = new Client();
    await db.connect();
    let n = 0;
    let failed = 0;
    const tap = (ok, what) => { n++; if (!ok) failed++; console.log(`${ok ? 'ok' : 'not ok'} ${n} - ${what}`); };
    let exported;
    let results;
    await db.query('BEGIN');
    try {
        await db.query('INSERT INTO opsflags.environments (name) VALUES ($1)', [env]);
        await db.query("SELECT set_config('opsflags.environment', $1, true)", [env]);
        const first = (await db.query('SELECT opsflags.import_launchdarkly_data($1, $2) AS r', [env, JSON.stringify(data)])).rows[0].r;
        tap(first.created.length + first.changed.length + first.unchanged.length === nflags
            && first.segments.created.length + first.segments.changed.length + first.segments.unchanged.length === nsegs,
            `import: ${nflags} flags and ${nsegs} segments`);
        const again = (await db.query('SELECT opsflags.import_launchdarkly_data($1, $2) AS r', [env, JSON.stringify(data)])).rows[0].r;
        tap(again.unchanged.length === nflags && again.changed.length === 0 && again.created.length === 0
            && again.segments.unchanged.length === nsegs,
            `a second import changes nothing: ${JSON.stringify(again)}`.slice(0, 300));
        exported = (await db.query('SELECT opsflags.launchdarkly_data($1) AS e', [env])).rows[0].e;
        const back = (await db.query('SELECT opsflags.import_launchdarkly_data($1, $2) AS r', [env, JSON.stringify(exported)])).rows[0].r;
        tap(back.unchanged.length === nflags && back.changed.length === 0 && back.segments.changed.length === 0,
            `importing the export changes nothing: ${JSON.stringify(back)}`.slice(0, 300));
        if (process.env.OPSFLAGS_DIFF_SHOW) {
            const name = process.env.OPSFLAGS_DIFF_SHOW;
            console.log(`# generated: ${JSON.stringify(data.flags[name])}`);
            console.log(`# opsflags: ${JSON.stringify((await db.query(
                `SELECT f.variations, c.is_enabled, c.off_variation, c.rules, c.fallthrough
                 FROM opsflags.feature_flags f JOIN opsflags.feature_flag_configs c ON c.flag_id = f.id
                 WHERE f.flag_key = $1 AND c.environment = $2`, [name, env])).rows[0])}`);
            console.log(`# exported: ${JSON.stringify(exported.flags[name])}`);
        }
        const pairs = [];
        for (const f of Object.keys(data.flags)) ctxs.forEach((ctx) => pairs.push({ f, ctx }));
        const t0 = Date.now();
        results = (await db.query(
            `SELECT opsflags.feature_value(a.j ->> 'f', a.j -> 'ctx') AS v, opsflags.feature_explain(a.j ->> 'f', a.j -> 'ctx') AS x,
                    opsflags.feature_enabled(a.j ->> 'f', a.j -> 'ctx') AS e
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY a(j, o) ORDER BY a.o`,
            [JSON.stringify(pairs)])).rows;
        console.log(`# ${pairs.length} pairs evaluated in SQL in ${Date.now() - t0} ms`);
    } finally {
        await db.query('ROLLBACK');
        await db.end();
    }

    // What the pairs exercised: the generator must reach each case.
    const seen = { 'false served while on': 0, 'true served while off': 0, 'no value': 0,
                   'a prerequisite failed': 0, 'a prerequisite met': 0, 'a rule matched': 0 };
    {
        let k = 0;
        for (const f of Object.keys(data.flags)) {
            for (let c = 0; c < ctxs.length; c++) {
                const r = results[k++];
                const off = r.x.reason === 'OFF' || r.x.reason === 'PREREQUISITE_FAILED';
                if (r.v === false && !off) seen['false served while on']++;
                if (r.v === true && off) seen['true served while off']++;
                if (r.v === null) seen['no value']++;
                if (r.x.reason === 'PREREQUISITE_FAILED') seen['a prerequisite failed']++;
                if (!off && r.x.reason !== 'FLAG_NOT_FOUND' && (data.flags[f].prerequisites || []).length) seen['a prerequisite met']++;
                if (r.x.reason === 'RULE_MATCH') seen['a rule matched']++;
            }
        }
    }
    console.log(`# pairs where ${Object.entries(seen).map(([w, n]) => `${w}: ${n}`).join(', ')}`);
    if (!process.env.OPSFLAGS_DIFF_DATA) {
        const missing = Object.keys(seen).filter((w) => seen[w] === 0);
        tap(missing.length === 0, `the generated data reaches every case${missing.length ? ` (not: ${missing.join(', ')})` : ''}`);
    }

    for (const [which, doc] of [['generated', data], ['exported', exported]]) {
        const sdk = await sdkFor(doc);
        let diffs = 0;
        let pairs = 0;
        let k = 0;
        const shown = [];
        for (const f of Object.keys(data.flags)) {
            for (const c of ctxs) {
                const r = results[k++];
                const d = await sdk.variationDetail(f, c, 'default-value');
                pairs++;
                const sqlIndex = r.x.variation === undefined ? null : r.x.variation;
                const sdkIndex = d.variationIndex === undefined ? null : d.variationIndex;
                // No variation: the SDK answers the caller's default, SQL NULL.
                const sdkValue = sdkIndex === null && d.value === 'default-value' ? null : d.value;
                // feature_enabled is feature_explain's, and a boolean served.
                const enabledOk = r.e === r.x.enabled && (typeof r.v !== 'boolean' || r.e === r.v);
                if (JSON.stringify(sdkValue) !== JSON.stringify(r.v) || sdkIndex !== sqlIndex || !enabledOk) {
                    diffs++;
                    if (shown.length < 10) {
                        shown.push(`${f} for ${JSON.stringify(c)}: SDK ${JSON.stringify(d)}, opsflags ${JSON.stringify(r.v)} `
                                   + `(feature_explain ${JSON.stringify(r.x)})`);
                        if (shown.length <= 3) shown.push(`  flag ${JSON.stringify(doc.flags[f])}`);
                    }
                }
            }
        }
        sdk.close();
        tap(diffs === 0, `SDK on the ${which} data: ${pairs} (flag, context) pairs, ${diffs} differences`);
        for (const s of shown) console.log(`#   ${s}`);
    }
    console.log(`1..${n}`);
    console.log(`# launchdarkly-diff: seed ${SEED}, ${nflags} flags, ${nsegs} segments x ${ctxs.length} contexts, `
                + `${failed ? 'differences found' : 'no differences'}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
