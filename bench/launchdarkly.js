// bench/launchdarkly.js: opsflags in SQL vs LaunchDarkly's Node server SDK
// (@launchdarkly/node-server-sdk) on the same flag and contexts, in one run.
// Run by bench/run.sh after bench/rules.sql (the 200,000 contexts of
// bench.ctx, the timing helper bench.time_ms).  One LaunchDarkly flag, as
// server-side data: a string flag with targets, 5 rules of mixed clause
// operators and a rollout fallthrough, imported with
// import_launchdarkly_data; the same data is given to the SDK offline
// (TestData, no events, no network), which evaluates in-process, the fastest
// a LaunchDarkly user has.  The contexts are user contexts (kind "user") on
// both sides.  Both sides count the contexts served each variation, and every
// context's value is compared, so the figures are for the same answers.
// Connection: the libpq variables.
'use strict';

const fs = require('fs');
const path = require('path');

const modules = path.join(__dirname, '..', 'test', 'node_modules');
const { Client } = require(path.join(modules, 'pg'));
const ld = require(path.join(modules, '@launchdarkly', 'node-server-sdk'));

const FLAG = 'bench.ld.rules';
const ROUNDS = 5;

// Rules 1-3 never match (each runs its first clause for every context), rule
// 4 matches about 8% and rule 5 about 10% of the contexts; the rest fall
// through to a 50/30/20 rollout on the key.
const data = {
    flags: {
        [FLAG]: {
            key: FLAG, version: 1, on: true, salt: 'bench-salt', offVariation: 3,
            variations: ['control', 'treatment-a', 'treatment-b', 'blocked'],
            targets: [{ variation: 3, values: Array.from({ length: 10 }, (_, i) => `vip-${i}`) }],
            contextTargets: [],
            rules: [
                { id: 'r1', variation: 3, trackEvents: false, clauses: [
                    { attribute: 'country', op: 'in', values: ['CA', 'MX', 'AR'], negate: false },
                    { attribute: 'email', op: 'endsWith', values: ['@corp.io'], negate: false }] },
                { id: 'r2', variation: 3, trackEvents: false, clauses: [
                    { attribute: 'email', op: 'startsWith', values: ['admin'], negate: false }] },
                { id: 'r3', variation: 1, trackEvents: false, clauses: [
                    { attribute: 'appVersion', op: 'semVerGreaterThan', values: ['3.0.0'], negate: false }] },
                { id: 'r4', variation: 1, trackEvents: false, clauses: [
                    { attribute: 'age', op: 'greaterThanOrEqual', values: [60], negate: false },
                    { attribute: 'country', op: 'in', values: ['DE', 'FR'], negate: false }] },
                { id: 'r5', variation: 2, trackEvents: false, clauses: [
                    { attribute: 'email', op: 'matches', values: ['^user[0-9]*7@'], negate: false },
                    { attribute: 'plan', op: 'in', values: ['free'], negate: true }] },
            ],
            fallthrough: { rollout: { variations: [
                { variation: 0, weight: 50000 }, { variation: 1, weight: 30000 }, { variation: 2, weight: 20000 }] } },
            prerequisites: [], trackEvents: false, trackEventsFallthrough: false, clientSide: false, deleted: false,
        },
    },
    segments: {},
};

const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
    const db = new Client();
    await db.connect();
    await db.query("SET opsflags.environment = 'production'");
    await db.query('DELETE FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]);
    await db.query("SELECT opsflags.import_launchdarkly_data('production', $1)", [JSON.stringify(data)]);
    await db.query('DROP TABLE IF EXISTS bench.ld_ctx');
    await db.query(`CREATE TABLE bench.ld_ctx AS SELECT i, jsonb_build_object('kind', 'user') || c AS c FROM bench.ctx`);
    await db.query('ANALYZE bench.ld_ctx');
    const rows = (await db.query('SELECT c FROM bench.ld_ctx ORDER BY i')).rows;
    const contexts = rows.map((r) => r.c);

    const td = new ld.integrations.TestData();
    await td.usePreconfiguredFlag(data.flags[FLAG]);
    const client = ld.init('sdk-key-offline', {
        updateProcessor: td.getFactory(), sendEvents: false, diagnosticOptOut: true,
        logger: ld.basicLogger({ level: 'none' }),
    });
    await client.waitForInitialization({ timeout: 10 });

    const version = JSON.parse(fs.readFileSync(path.join(modules, '@launchdarkly', 'node-server-sdk', 'package.json'), 'utf8')).version;
    console.log(`== @launchdarkly/node-server-sdk ${version} (Node ${process.version}, in-process, TestData, no events) `
                + `vs feature_value in SQL: a 5-rule flag imported with import_launchdarkly_data, ${contexts.length} contexts, median of ${ROUNDS}`);

    // Interleaved rounds: the SDK's variation() for every context (awaited,
    // as an application does), then feature_value over the same contexts in
    // SQL, net of reading them.  Round 0 warms both up.
    const sdk = [];
    const sql = [];
    let sdkValues = [];
    for (let r = 0; r <= ROUNDS; r++) {
        const values = new Array(contexts.length);
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < contexts.length; i++) values[i] = await client.variation(FLAG, contexts[i], 'default');
        const ns = Number(process.hrtime.bigint() - t0);
        sdkValues = values;
        const q = await db.query(
            `SELECT bench.time_ms($$SELECT count(*) FILTER (WHERE c IS NOT NULL) FROM bench.ld_ctx$$) AS base,
                    bench.time_ms(format($$SELECT count(*) FILTER (WHERE opsflags.feature_value(%L, c) IS NOT NULL) FROM bench.ld_ctx$$, $1::text)) AS eval`,
            [FLAG]);
        if (r > 0) {
            sdk.push(ns / contexts.length / 1000);
            sql.push((q.rows[0].eval - q.rows[0].base) * 1000 / contexts.length);
        }
    }
    client.close();
    const sqlValues = (await db.query('SELECT opsflags.feature_value($1, c) AS v FROM bench.ld_ctx ORDER BY i', [FLAG])).rows.map((x) => x.v);
    await db.query('DROP TABLE bench.ld_ctx');
    await db.end();

    const counts = (vs) => {
        const m = new Map();
        for (const v of vs) m.set(JSON.stringify(v), (m.get(JSON.stringify(v)) || 0) + 1);
        return m;
    };
    const a = counts(sdkValues), b = counts(sqlValues);
    let differing = 0;
    for (let i = 0; i < contexts.length; i++) if (JSON.stringify(sdkValues[i]) !== JSON.stringify(sqlValues[i])) differing++;
    console.log(' served        |     SDK |     SQL');
    for (const k of [...new Set([...a.keys(), ...b.keys()])].sort()) {
        const x = a.get(k) || 0, y = b.get(k) || 0;
        console.log(` ${k.padEnd(13)} | ${String(x).padStart(7)} | ${String(y).padStart(7)}${x === y ? '' : '  (DIFFER)'}`);
    }
    console.log(` contexts served differently: ${differing}${differing ? '  (DIFFER)' : ''}`);
    const s = median(sdk), q = median(sql);
    console.log(` SDK ${s.toFixed(3)} us/eval, SQL ${q.toFixed(3)} us/eval (net of reading the contexts), SDK / SQL ${(s / q).toFixed(2)}`);
    if (differing) process.exitCode = 1;
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
