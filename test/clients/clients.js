// clients.js: the client SDKs' suites, one after the other, as one TAP
// stream: ofrep.js (OpenFeature), launchdarkly.js (LaunchDarkly's client
// SDK), launchdarkly_stream.js (its stream), unleash.js (Unleash's frontend
// and server SDKs).  Each gets the
// database (PGHOST...) and the HTTP server (OPSFLAGS_HTTP); a suite that
// throws is one failed test, and the next suite still runs.
'use strict';

const { Client } = require('pg');

const SUITES = ['./ofrep', './launchdarkly', './launchdarkly_stream', './unleash'];

async function main() {
    const db = new Client();
    await db.connect();
    const sql = async (q, a) => (await db.query(q, a)).rows;
    let n = 0;
    let failed = 0;
    try {
        for (const name of SUITES) {
            console.log(`# ${name.slice(2)}`);
            try {
                const r = await require(name).run(sql, process.env.OPSFLAGS_HTTP, n);
                n = r.n;
                failed += r.failed;
            } catch (e) {
                console.error(e);
                n++;
                failed++;
                console.log(`not ok ${n} - ${name.slice(2)}: ${e.message}`);
            }
        }
    } finally {
        await db.end();
    }
    console.log(`1..${n}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    console.log('not ok 1 - ' + e.message);
    process.exitCode = 1;
});
