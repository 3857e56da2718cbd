// bench/streams.js: event streams held at once, and how long a change takes
// to reach them all.  BENCH_STREAMS_KIND=ofrep (the default): BENCH_STREAMS
// (default 1,000) streams to GET /ofrep/v1/stream (one ticket, minted in
// SQL); launchdarkly: as many LaunchDarkly streams GET /eval/production/...,
// each for a context of its own (the server evaluates every one again after
// a change, and pushes each its patch).  16 connect at a time, which
// opsflags.http_max_connections must allow; once the server holds them all
// (and, for LaunchDarkly, each has had its put), BENCH_STREAMS_ROUNDS times
// (default 5) it toggles a flag in SQL (one autocommitted statement) and
// measures from sending it to the last stream that received its event
// (refetchEvaluation, or the flag's patch): an upper bound of COMMIT -> last
// stream (the events often arrive before the COMMIT's reply).  Prints each
// round, the median and the worst.  Needs OPSFLAGS_HTTP and the PG*
// variables; the server needs file descriptors for them
// (max_files_per_process about 3x streams).
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const { Client } = require('pg');

const BASE = process.env.OPSFLAGS_HTTP;
const N = Number(process.env.BENCH_STREAMS || 1000);
const ROUNDS = Number(process.env.BENCH_STREAMS_ROUNDS || 5);
const KIND = process.env.BENCH_STREAMS_KIND || 'ofrep';
const FLAG = 'bench.streams.toggle';
const sockets = [];

function get(path) {
    return new Promise((resolve, reject) => {
        http.get(BASE + path, { agent: false }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve(body));
        }).on('error', reject);
    });
}
async function streamsOpen() {
    const m = (await get('/metrics')).match(/^opsflags_http_streams (\d+)$/m);
    return m ? Number(m[1]) : -1;
}

function open(path, onEvent) {
    const u = new URL(BASE);
    return new Promise((resolve, reject) => {
        const s = net.connect(Number(u.port), u.hostname, () => {
            s.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n`);
        });
        let head = true;
        let buf = '';
        s.setEncoding('latin1');
        s.on('data', (d) => {
            buf += d;
            if (head) {
                const i = buf.indexOf('\r\n\r\n');
                if (i < 0) return;
                if (!buf.startsWith('HTTP/1.1 200')) { reject(new Error(`after ${sockets.length} streams: ${buf.replace(/\r\n/g, ' ')}`)); return; }
                head = false;
                buf = buf.slice(i + 4);
                resolve(s);
            }
            let j;
            while ((j = buf.indexOf('\n\n')) >= 0) {
                const ev = buf.slice(0, j);
                buf = buf.slice(j + 2);
                onEvent(ev);
            }
        });
        s.on('error', reject);
    });
}

async function main() {
    const db = new Client();
    await db.connect();
    const sql = async (q, a) => (await db.query(q, a)).rows;
    await sql('SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]);
    await sql("SELECT opsflags.create_flag($1, 'Bench streams')", [FLAG]);
    const token = (await sql("SELECT opsflags_internal.ofrep_stream_token('production') AS t"))[0].t;
    if (!token) throw new Error('the server offers no streams (opsflags.http_max_streams = 0?)');

    let pending = 0;
    let last = 0;
    let puts = 0;
    const got = new Array(N).fill(false);
    const t0 = Date.now();
    const path = (k) => (KIND === 'launchdarkly'
        ? '/eval/production/' + Buffer.from(JSON.stringify({ kind: 'user', key: `u${k}`, plan: k % 2 ? 'pro' : 'free' })).toString('base64url')
        : '/ofrep/v1/stream?token=' + token);
    const told = (ev) => (KIND === 'launchdarkly'
        ? ev.startsWith('event: patch') && ev.includes(FLAG)
        : ev.includes('refetchEvaluation'));
    for (let i = 0; i < N; i += 16) {
        const batch = [];
        for (let k = i; k < Math.min(N, i + 16); k++) {
            batch.push(open(path(k), (ev) => {
                if (ev.startsWith('event: put')) puts++;
                if (told(ev) && !got[k]) { got[k] = true; pending--; last = Date.now(); }
            }));
        }
        sockets.push(...await Promise.all(batch));
    }
    while (await streamsOpen() < N || (KIND === 'launchdarkly' && puts < N)) await new Promise((r) => setTimeout(r, 50));
    console.log(`${N} ${KIND} streams open in ${Date.now() - t0} ms (server: ${await streamsOpen()})`);

    const results = [];
    for (let round = 0; round < ROUNDS; round++) {
        got.fill(false);
        pending = N;
        const sent = Date.now();
        await sql("SELECT opsflags.update_flag($1, jsonb_build_object('is_enabled', $2::boolean), 'production')", [FLAG, round % 2 === 0]);
        const committed = Date.now();
        const deadline = committed + 10000;
        while (pending > 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
        const ms = pending > 0 ? Infinity : last - sent;
        results.push(ms);
        console.log(`round ${round + 1}: UPDATE sent -> last of ${N} streams notified: ${pending > 0 ? `${pending} never notified` : `${ms} ms`} (its COMMIT returned after ${committed - sent} ms)`);
        await new Promise((r) => setTimeout(r, 300));
    }
    // The loop's CPU while nothing happens, and new connections beside the streams.
    const pid = (await sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'opsflags http'"))[0].pid;
    const cpu = () => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
    const c0 = cpu();
    await new Promise((r) => setTimeout(r, 5000));
    const idleTicks = cpu() - c0;
    console.log(`idle with ${N} streams for 5 s: the loop used ${idleTicks * 10} ms of CPU`);
    const livez = async () => {
        const t = process.hrtime.bigint();
        for (let i = 0; i < 1000; i++) await get('/livez');
        return Number(process.hrtime.bigint() - t) / 1e6;
    };
    const withStreams = await livez();
    const sorted = [...results].sort((a, b) => a - b);
    console.log(`UPDATE sent (autocommit) -> last of ${N} streams notified: median ${sorted[Math.floor(sorted.length / 2)]} ms, worst ${sorted[sorted.length - 1]} ms`);
    sockets.forEach((s) => s.destroy());
    while (await streamsOpen() > 0) await new Promise((r) => setTimeout(r, 50));
    const without = await livez();
    console.log(`1,000 GET /livez, each on a new connection: ${withStreams.toFixed(0)} ms with ${N} streams open, ${without.toFixed(0)} ms with none`);
    await sql('SELECT opsflags.archive_flag(flag_key), opsflags.delete_flag(flag_key) FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]);
    await db.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
