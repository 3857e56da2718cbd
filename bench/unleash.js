// bench/unleash.js: opsflags in SQL vs the unleash-client SDK in Node, on the
// same features and contexts, in one run.  Run by bench/run.sh after
// bench/rules.sql (which made the flags bench.plain and bench.rules and the
// 200,000 contexts of bench.ctx).  The features are exported with
// unleash_features() and served to the SDK from a local stub of
// /api/client/features; the SDK then evaluates in-process, the fastest an
// Unleash user has.  Both sides count the contexts the flag is on for, so the
// figures are for the same answers.  Connection: the libpq variables.
'use strict';

const http = require('http');
const path = require('path');

const modules = path.join(__dirname, '..', 'test', 'node_modules');
const { Client } = require(path.join(modules, 'pg'));
const { Unleash } = require(path.join(modules, 'unleash-client'));

const FLAGS = ['bench.plain', 'bench.rules'];
const ROUNDS = 5;

const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
    const db = new Client();
    await db.connect();
    const doc = (await db.query("SELECT opsflags.unleash_features('production') AS d")).rows[0].d;
    doc.features = doc.features.filter((f) => FLAGS.includes(f.name));

    // The contexts as Unleash contexts: the key is userId, the rest properties.
    const rows = (await db.query('SELECT c FROM bench.ctx ORDER BY i')).rows;
    const contexts = rows.map(({ c }) => {
        const properties = {};
        for (const [k, v] of Object.entries(c)) if (k !== 'key') properties[k] = String(v);
        return { userId: c.key, properties };
    });

    const body = JSON.stringify(doc);
    const server = http.createServer((req, res) => {
        if (req.url.startsWith('/api/client/features')) {
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.end(body);
        } else {
            res.writeHead(202);
            res.end();
        }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const unleash = new Unleash({
        url: `http://127.0.0.1:${server.address().port}/api/`,
        appName: 'opsflags-bench',
        disableMetrics: true,
        refreshInterval: 0,
        storageProvider: { set: async () => {}, get: async () => undefined },
    });
    await new Promise((resolve, reject) => {
        unleash.once('synchronized', resolve);
        unleash.once('error', reject);
    });

    console.log(`== unleash-client ${require(path.join(modules, 'unleash-client', 'package.json')).version} `
                + `(Node ${process.version}, in-process) vs opsflags in SQL: ${contexts.length} contexts, median of ${ROUNDS}`);
    console.log(' flag         | SDK us/eval | SQL us/eval | SDK / SQL | on (SDK, SQL)');
    for (const flag of FLAGS) {
        const sdk = [];
        let sdkOn = 0;
        for (let r = 0; r <= ROUNDS; r++) {
            let on = 0;
            const t0 = process.hrtime.bigint();
            for (const ctx of contexts) if (unleash.isEnabled(flag, ctx)) on++;
            const ns = Number(process.hrtime.bigint() - t0);
            if (r > 0) sdk.push(ns / contexts.length / 1000);   // round 0 warms up
            sdkOn = on;
        }
        const sql = [];
        let sqlOn = 0;
        for (let r = 0; r <= ROUNDS; r++) {
            const q = await db.query(
                `SELECT bench.time_ms($$SELECT count(*) FILTER (WHERE c IS NOT NULL) FROM bench.ctx$$) AS base,
                        bench.time_ms(format($$SELECT count(*) FILTER (WHERE opsflags.feature_enabled(%L, c)) FROM bench.ctx$$, $1::text)) AS eval,
                        (SELECT count(*) FILTER (WHERE opsflags.feature_enabled($1, c)) FROM bench.ctx) AS on`, [flag]);
            if (r > 0) sql.push((q.rows[0].eval - q.rows[0].base) * 1000 / contexts.length);
            sqlOn = Number(q.rows[0].on);
        }
        const a = median(sdk), b = median(sql);
        console.log(` ${flag.padEnd(12)} | ${a.toFixed(3).padStart(11)} | ${b.toFixed(3).padStart(11)} | `
                    + `${(a / b).toFixed(2).padStart(9)} | ${sdkOn}, ${sqlOn}${sdkOn === sqlOn ? '' : '  (DIFFER)'}`);
    }
    unleash.destroy();
    server.close();
    await db.end();
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
