// api.js: the management API over HTTP (Node's fetch), against the test
// cluster's server (OPSFLAGS_HTTP_PORT) and database (PGHOST...): password
// sign-in (loopback only over plain HTTP), the session cookie and its
// attributes, 401 alike for every failure, 429 with Retry-After after
// repeated failures, CSRF (no header, a wrong one, another site's Origin),
// every endpoint's success and errors (404, 409, 400, 405), a read-only
// role whose writes PostgreSQL refuses (403, nothing written), an admin API
// key acting as its role, the audit rows of API writes naming the role,
// CSV (RFC 4180) that parses, session expiry and sign-out, hostile JSON
// (every answer JSON, 4xx, never 500), a list of 1,000 flags, and no
// password or token in the server log, pg_stat_activity or audit_log.
// Prints TAP; the roles and flags it makes are removed at the end.
'use strict';

const fs = require('fs');
const os = require('os');
const { Client } = require('pg');

const PORT = process.env.OPSFLAGS_HTTP_PORT;
const BASE = `http://127.0.0.1:${PORT}`;
const ADMIN = 'api_test_admin';
const VIEWER = 'api_test_viewer';
const ADMIN_PW = 'admin pw 9f3e-secret';
const VIEWER_PW = 'viewer pw 7c1a-secret';
const P = 'apitest.';
let n = 0;
let failed = 0;
const secrets = [ADMIN_PW, VIEWER_PW];

function ok(cond, what, detail) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
    if (!cond && detail !== undefined) console.log(`# ${JSON.stringify(detail)}`);
}

// A request; the answer with its body parsed (json: null when not JSON).
async function call(method, path, { session, csrf, body, headers = {}, base = BASE } = {}) {
    const h = { ...headers };
    if (session) h.Cookie = `opsflags_session=${session}`;
    if (csrf) h['X-CSRF-Token'] = csrf;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const r = await fetch(base + path, {
        method, headers: h,
        body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
    return { status: r.status, headers: r.headers, text, json };
}

async function signIn(role, password, base) {
    const r = await call('POST', '/api/v1/session', { body: { role, password }, base });
    const cookie = r.headers.get('set-cookie') || '';
    const m = /opsflags_session=([^;]*)/.exec(cookie);
    return { ...r, cookie, token: m ? m[1] : null, csrf: r.json && r.json.csrf_token };
}

// RFC 4180: fields, quoted or not, CRLF between records.
function parseCsv(text) {
    const rows = [];
    let row = [];
    let field = '';
    let i = 0;
    let quoted = false;
    while (i < text.length) {
        const c = text[i];
        if (quoted) {
            if (c === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
            if (c === '"') { quoted = false; i++; continue; }
            field += c; i++; continue;
        }
        if (c === '"' && field === '') { quoted = true; i++; continue; }
        if (c === ',') { row.push(field); field = ''; i++; continue; }
        if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i += 2; continue; }
        if (c === '"' || c === '\n' || c === '\r') throw new Error(`bad CSV at ${i}`);
        field += c; i++;
    }
    if (field !== '' || row.length) throw new Error('CSV does not end with CRLF');
    return rows;
}

function isError(r, status, sqlstate) {
    return r.status === status && r.json && r.json.error && typeof r.json.error.message === 'string'
        && (sqlstate === undefined || r.json.error.sqlstate === sqlstate);
}

async function main() {
    const db = new Client();
    await db.connect();
    const sql = async (q, a) => (await db.query(q, a)).rows;
    const cleanup = async () => {
        await sql(`DELETE FROM opsflags_internal.console_sessions`);
        await sql(`DELETE FROM opsflags_internal.console_signin_failures`);
        await sql(`SELECT opsflags.revoke_api_key(id) FROM opsflags.api_keys WHERE description = 'api.js' AND revoked_at IS NULL`);
        for (const { flag_key: k } of await sql(`SELECT flag_key FROM opsflags.feature_flags WHERE flag_key LIKE $1`, [P + '%'])) {
            await sql(`SELECT opsflags.archive_flag($1)`, [k]);
            await sql(`SELECT opsflags.delete_flag($1)`, [k]);
        }
        await sql(`DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${VIEWER}') THEN
                EXECUTE 'DROP OWNED BY ${VIEWER}'; DROP ROLE ${VIEWER}; END IF;
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${ADMIN}') THEN DROP ROLE ${ADMIN}; END IF;
            END $$`);
    };
    const logStart = fs.existsSync(process.env.OPSFLAGS_TEST_LOG || '') ? fs.statSync(process.env.OPSFLAGS_TEST_LOG).size : 0;
    try {
        await cleanup();
        await sql(`CREATE ROLE ${ADMIN} LOGIN PASSWORD '${ADMIN_PW}' IN ROLE opsflags_admin`);
        await sql(`CREATE ROLE ${VIEWER} LOGIN PASSWORD '${VIEWER_PW}'`);
        await sql(`GRANT SELECT ON opsflags.feature_flags, opsflags.feature_flag_configs, opsflags.flag_prerequisites,
                   opsflags.environments TO ${VIEWER}`);
        await sql(`GRANT EXECUTE ON FUNCTION opsflags.get_flag(text, text), opsflags.resolve_environment(text),
                   opsflags.flag_id(text), opsflags_internal.flag_document(opsflags.feature_flags,
                   opsflags.feature_flag_configs, text) TO ${VIEWER}`);

        // OpenAPI, without authentication
        let r = await call('GET', '/api/openapi.json');
        ok(r.status === 200 && r.json && r.json.openapi === '3.1.0' && r.json.paths['/flags/{key}/toggle'].post,
           'GET /api/openapi.json: an OpenAPI 3.1 document with the endpoints');
        r = await call('GET', '/api/v1/flags');
        ok(isError(r, 401, '28000'), 'without a session or key: 401 JSON', r.text);
        r = await call('GET', '/api/status');
        ok(r.status !== 404 && !(r.json && r.json.error), '/api/status is still its own route');

        // sign-in
        const admin = await signIn(ADMIN, ADMIN_PW);
        secrets.push(admin.token, admin.csrf);
        ok(admin.status === 200 && admin.json.role === ADMIN && /^[A-Za-z0-9_-]{43}$/.test(admin.token)
           && typeof admin.csrf === 'string' && !Number.isNaN(Date.parse(admin.json.expires_at)),
           'sign-in: 200 with role, csrf_token, expires_at and a session cookie', admin.text);
        ok(/HttpOnly/.test(admin.cookie) && /SameSite=Strict/.test(admin.cookie) && /Path=\//.test(admin.cookie)
           && !/Secure/.test(admin.cookie), 'the cookie is HttpOnly, SameSite=Strict, Path=/ (no Secure over plain HTTP)', admin.cookie);
        ok(!admin.text.includes(admin.token), 'the token is only in the cookie, not in the body');
        const wrong = await signIn(ADMIN, 'not the password');
        const nobody = await signIn('api_test_nobody', 'whatever');
        ok(wrong.status === 401 && nobody.status === 401 && wrong.text === nobody.text && !wrong.cookie,
           'a wrong password and an unknown role: the same 401, no cookie', [wrong.text, nobody.text]);
        r = await call('POST', '/api/v1/session', { body: '{"role": 1}' });
        ok(isError(r, 400), 'sign-in with a malformed body: 400', r.text);
        r = await call('GET', '/api/v1/session', { session: admin.token });
        ok(r.status === 200 && r.json.role === ADMIN && r.json.csrf_token === admin.csrf, 'GET /session: the role and its CSRF token', r.text);

        // password sign-in from a non-loopback address over plain HTTP
        const addr = Object.values(os.networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4');
        if (addr) {
            r = await signIn(ADMIN, ADMIN_PW, `http://${addr.address}:${PORT}`);
            ok(isError(r, 403) && !r.cookie, `password sign-in from ${addr.address} over plain HTTP: 403`, r.text);
            r = await call('GET', '/api/v1/session', { session: admin.token, base: `http://${addr.address}:${PORT}` });
            ok(r.status === 200, 'a session is used from any address');
        } else {
            ok(true, '# SKIP no non-loopback address');
            ok(true, '# SKIP no non-loopback address');
        }

        const A = { session: admin.token, csrf: admin.csrf };
        // flags
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'one', name: 'One', description: 'Findable needle', tags: ['red'] } });
        ok(r.status === 201 && r.json.key === P + 'one' && r.json.name === 'One', 'POST /flags: 201 with the flag', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'one' } });
        ok(isError(r, 409, '23505'), 'a duplicate key: 409 (23505)', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: 'bad key!' } });
        ok(isError(r, 400, '22023'), 'an invalid key: 400 (22023)', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'x', tags: 'red' } });
        ok(isError(r, 400, '22023'), 'a field of the wrong type: 400', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'x', colour: 'red' } });
        ok(isError(r, 400, '22023'), 'an unknown field: 400', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'two', tags: ['blue'] } });
        ok(r.status === 201, 'a second flag');
        r = await call('GET', `/api/v1/flags?search=NEEDLE`, A);
        ok(r.status === 200 && r.json.flags.length === 1 && r.json.flags[0].key === P + 'one', 'GET /flags?search= finds by description, any case', r.text);
        r = await call('GET', `/api/v1/flags?tag=blue&environment=staging`, A);
        ok(r.status === 200 && r.json.environment === 'staging' && r.json.flags.map((f) => f.key).join() === P + 'two', 'GET /flags?tag=&environment=', r.text);
        r = await call('GET', `/api/v1/flags/${P}one?environment=staging`, A);
        ok(r.status === 200 && r.json.key === P + 'one' && r.json.environment === 'staging' && r.json.config.is_enabled === false, 'GET /flags/{key}?environment=', r.text);
        r = await call('GET', `/api/v1/flags/${P}nothing`, A);
        ok(isError(r, 404, '42704'), 'an unknown flag: 404 (42704)', r.text);
        r = await call('GET', `/api/v1/flags/${P}one?environment=nowhere`, A);
        ok(isError(r, 404, '42704'), 'an unknown environment: 404', r.text);
        r = await call('PATCH', `/api/v1/flags/${P}one?environment=staging`, { ...A, body: { description: 'Changed', enabled_percentage: 25 } });
        ok(r.status === 200 && r.json.description === 'Changed' && r.json.config.enabled_percentage === 25, 'PATCH /flags/{key}: update_flag', r.text);
        r = await call('PATCH', `/api/v1/flags/${P}one`, { ...A, body: { enabled_percentage: 'lots' } });
        ok(isError(r, 400, '22023'), 'PATCH with a bad value: 400', r.text);
        r = await call('POST', `/api/v1/flags/${P}one/toggle`, { ...A, body: { environment: 'staging', enabled: true } });
        const [cfg] = await sql(`SELECT is_enabled FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
                                 WHERE f.flag_key = $1 AND c.environment = 'staging'`, [P + 'one']);
        ok(r.status === 200 && r.json.config.is_enabled === true && cfg.is_enabled === true, 'POST /flags/{key}/toggle turns it on in SQL', r.text);
        const [by] = await sql(`SELECT f.created_by, c.updated_by FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
                                WHERE f.flag_key = $1 AND c.environment = 'staging'`, [P + 'one']);
        ok(by.created_by === ADMIN && by.updated_by === ADMIN, 'created_by and updated_by name the signed-in role', by);
        r = await call('POST', `/api/v1/flags/${P}one/toggle`, { ...A, body: { enabled: 'yes' } });
        ok(isError(r, 400, '22023'), 'toggle with enabled not a boolean: 400', r.text);
        r = await call('DELETE', `/api/v1/flags/${P}two`, A);
        ok(isError(r, 409, '55000'), 'DELETE of a flag not archived: 409', r.text);
        r = await call('POST', `/api/v1/flags/${P}two/archive`, A);
        ok(r.status === 200 && r.json.archived === true, 'POST /archive', r.text);
        r = await call('POST', `/api/v1/flags/${P}two/restore`, A);
        ok(r.status === 200 && r.json.archived === false, 'POST /restore', r.text);
        await call('POST', `/api/v1/flags/${P}two/archive`, A);
        r = await call('DELETE', `/api/v1/flags/${P}two`, A);
        const gone = await call('GET', `/api/v1/flags/${P}two`, A);
        ok(r.status === 204 && r.text === '' && gone.status === 404, 'DELETE /flags/{key}: 204, then 404', r.text);
        r = await call('PUT', '/api/v1/flags', { ...A, body: {} });
        ok(isError(r, 405, '0A000'), 'a method a resource does not take: 405', r.text);
        r = await call('GET', '/api/v1/nothing', A);
        ok(isError(r, 404, 'P0002'), 'an unknown resource: 404', r.text);
        r = await call('GET', '/api/v1/environments', A);
        ok(r.status === 200 && r.json.environments.some((e) => e.name === 'production'), 'GET /environments', r.text);
        r = await call('GET', '/api/v1/maintenance', A);
        ok(r.status === 200 && r.json.enabled === false, 'GET /maintenance', r.text);
        r = await call('PUT', `/api/v1/config/${P}secret`, { ...A, body: { value: 'hunter2-very-secret', is_sensitive: true } });
        ok(r.status === 200 && r.json.config_value === '[REDACTED]', 'PUT /config/{key} answers a sensitive value redacted', r.text);
        r = await call('GET', '/api/v1/config', A);
        ok(r.status === 200 && !r.text.includes('hunter2') && r.json.config.some((c) => c.config_key === P + 'secret'), 'GET /config never serves a sensitive value', r.text);
        await sql(`SELECT opsflags.config_delete($1, 'all')`, [P + 'secret']);

        r = await call('POST', '/api/v1/deployments', { ...A, body: { version: P + '1.0', environment: 'staging', commit_sha: 'c1' } });
        const dep = r.json;
        ok(r.status === 201 && dep.version === P + '1.0' && dep.deployed_by === ADMIN, 'POST /deployments records one as the role', r.text);
        r = await call('POST', `/api/v1/deployments/${dep.id}/rollback`, { ...A, body: { target_version: P + '0.9', reason: 'test' } });
        ok(r.status === 200 && r.json.status === 'rolled_back', 'POST /deployments/{id}/rollback', r.text);
        r = await call('GET', '/api/v1/deployments?environment=staging', A);
        ok(r.status === 200 && r.json.deployments.some((d) => d.id === dep.id && d.status === 'rolled_back'), 'GET /deployments?environment=', r.text);
        r = await call('PUT', `/api/v1/segments/${P}beta`, { ...A, body: { name: 'Beta', user_ids: ['u1'] } });
        const seg2 = await call('PUT', `/api/v1/segments/${P}beta`, { ...A, body: { roles: ['tester'] } });
        const seg3 = await call('GET', `/api/v1/segments/${P}beta`, A);
        ok(r.status === 201 && seg2.status === 200 && seg3.json.name === 'Beta' && seg3.json.roles[0] === 'tester'
           && seg3.json.user_ids[0] === 'u1', 'PUT /segments/{key} creates (201), then replaces members; GET', [r.text, seg3.text]);
        r = await call('GET', '/api/v1/alerts?resolved=all', A);
        const res = await call('POST', '/api/v1/alerts/999999999/resolve', A);
        ok(r.status === 200 && Array.isArray(r.json.alerts) && isError(res, 404), 'GET /alerts; resolving an unknown alert: 404', [r.text.slice(0, 100), res.text]);
        await sql(`DELETE FROM opsflags.user_segments WHERE segment_key = $1`, [P + 'beta']);
        await sql(`DELETE FROM opsflags.deployment_history WHERE version LIKE $1`, [P + '%']);

        // CSRF and Origin
        r = await call('POST', '/api/v1/flags', { session: admin.token, body: { key: P + 'csrf' } });
        ok(isError(r, 403), 'a write without X-CSRF-Token: 403', r.text);
        r = await call('POST', '/api/v1/flags', { session: admin.token, csrf: 'x'.repeat(43), body: { key: P + 'csrf' } });
        ok(isError(r, 403, '42501'), 'a write with a wrong X-CSRF-Token: 403', r.text);
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'csrf' }, headers: { Origin: 'http://evil.example' } });
        ok(isError(r, 403), 'a write from another site\'s Origin: 403', r.text);
        const [csrfFlags] = await sql(`SELECT count(*)::int AS n FROM opsflags.feature_flags WHERE flag_key = $1`, [P + 'csrf']);
        ok(csrfFlags.n === 0, 'nothing written by refused writes');
        r = await call('POST', '/api/v1/flags', { ...A, body: { key: P + 'csrf' }, headers: { Origin: BASE } });
        ok(r.status === 201, 'a write from this server\'s own Origin with the token: 201', r.text);

        // a read-only role: PostgreSQL refuses its writes
        const viewer = await signIn(VIEWER, VIEWER_PW);
        secrets.push(viewer.token, viewer.csrf);
        const V = { session: viewer.token, csrf: viewer.csrf };
        r = await call('GET', `/api/v1/flags/${P}one`, V);
        ok(r.status === 200 && r.json.key === P + 'one', 'the read-only role reads a flag', r.text);
        r = await call('POST', '/api/v1/flags', { ...V, body: { key: P + 'viewer' } });
        ok(isError(r, 403, '42501'), 'the read-only role creating a flag: 403 (42501)', r.text);
        r = await call('POST', `/api/v1/flags/${P}one/toggle`, { ...V, body: { enabled: false, environment: 'staging' } });
        ok(isError(r, 403, '42501'), 'the read-only role toggling: 403', r.text);
        r = await call('GET', '/api/v1/audit', V);
        ok(isError(r, 403, '42501'), 'the read-only role reading the audit log: 403', r.text);
        const [still] = await sql(`SELECT (SELECT count(*)::int FROM opsflags.feature_flags WHERE flag_key = $1) AS n,
                                  (SELECT c.is_enabled FROM opsflags.feature_flag_configs c JOIN opsflags.feature_flags f ON f.id = c.flag_id
                                   WHERE f.flag_key = $2 AND c.environment = 'staging') AS enabled`, [P + 'viewer', P + 'one']);
        ok(still.n === 0 && still.enabled === true, 'nothing written by the read-only role', still);

        // an admin API key acts as its role
        const [{ key }] = await sql(`SELECT opsflags.create_api_key('production', 'admin', 'api.js', $1) AS key`, [ADMIN]);
        const [{ skey }] = await sql(`SELECT opsflags.create_api_key('production', 'server', 'api.js') AS skey`);
        secrets.push(key);
        r = await call('POST', '/api/v1/flags', { headers: { Authorization: `Bearer ${key}` }, body: { key: P + 'bykey' } });
        ok(r.status === 201, 'an admin key (Bearer) writes without CSRF', r.text);
        r = await call('GET', '/api/v1/session', { headers: { 'X-API-Key': key } });
        ok(r.status === 200 && r.json.role === ADMIN, 'an admin key (X-API-Key) acts as its as_role', r.text);
        r = await call('GET', '/api/v1/flags', { headers: { Authorization: `Bearer ${skey}` } });
        ok(isError(r, 403), 'a server key: 403', r.text);
        r = await call('GET', '/api/v1/flags', { headers: { Authorization: `Bearer ${key.slice(0, -2)}xx` } });
        ok(isError(r, 401), 'a key with a wrong secret: 401', r.text);

        // audit
        r = await call('GET', `/api/v1/audit?resource_type=feature_flag&resource_id=${P}bykey`, A);
        ok(r.status === 200 && r.json.audit.length === 1 && r.json.audit[0].role === ADMIN && r.json.audit[0].action === 'INSERT',
           'the audit row of the key\'s write names its role', r.text);
        r = await call('GET', `/api/v1/audit?resource_type=feature_flag&resource_id=${P}one&limit=50`, A);
        ok(r.status === 200 && r.json.audit.length >= 2 && r.json.audit.every((a) => a.role === ADMIN),
           'the audit rows of the session\'s writes name the signed-in role', r.text);
        const json = await call('GET', `/api/v1/flags/${P}one/audit`, A);
        const csv = await call('GET', `/api/v1/flags/${P}one/audit`, { ...A, headers: { Accept: 'text/csv' } });
        let rows = [];
        try { rows = parseCsv(csv.text); } catch (e) { rows = [e.message]; }
        ok(csv.status === 200 && /^text\/csv/.test(csv.headers.get('content-type')) && rows[0].join() ===
           'id,occurred_at,actor,role,action,resource_type,resource_id,table_name,old_values,new_values,client_addr,application_name,txid,tenant'
           && rows.length === json.json.audit.length + 1
           && rows.slice(1).every((row, i) => row[0] === String(json.json.audit[i].id) && row[3] === ADMIN
                                  && JSON.stringify(JSON.parse(row[9] || 'null')) === JSON.stringify(json.json.audit[i].new_values)),
           'the flag\'s audit as CSV (Accept: text/csv) parses (RFC 4180) to the JSON rows', rows.slice(0, 2));
        r = await call('GET', `/api/v1/audit?format=csv&action=update&limit=5`, A);
        ok(r.status === 200 && /^text\/csv/.test(r.headers.get('content-type')) && parseCsv(r.text).slice(1).every((row) => row[4] === 'UPDATE'),
           '/audit?format=csv&action=', r.text.slice(0, 200));
        r = await call('GET', `/api/v1/audit?limit=nope`, A);
        ok(isError(r, 400), 'a bad audit filter: 400', r.text);

        // hostile JSON: every answer JSON with a 4xx
        const hostile = ['', 'null', '[]', '"x"', '{', '{"key": {"a": [1, {"b": null}]}}', `{"key": "${'k'.repeat(60000)}"}`,
                         '{"key": 12}', '{"key": null}', '{"key": "\\u0000"}', '{"key": "ok", "tags": [1, 2]}',
                         '{"key": "ok", "variations": "nope"}', '{"enabled": 1}', '{"enabled": null}',
                         '{"environment": 5, "enabled": true}', '{"value": 1, "environment": ["x"]}', '{"enabled": "true"}',
                         '{"flag_name": 12345}', '{"rules": "x"}', '{"description": {"x": 1}}',
                         '{"a":'.repeat(500), '\u00ff\u00fe'];
        const targets = [['POST', '/api/v1/flags'], ['PATCH', `/api/v1/flags/${P}one`], ['POST', `/api/v1/flags/${P}one/toggle`],
                         ['PUT', '/api/v1/maintenance'], ['PUT', `/api/v1/config/${P}hostile`], ['POST', '/api/v1/session']];
        const bad = [];
        for (const [m, path] of targets) {
            for (const body of hostile) {
                if (m === 'PATCH' && body === '') continue;   // an empty PATCH changes nothing: 200
                const h = await call(m, path, { ...A, body });
                if (!(h.status >= 400 && h.status < 500 && h.json && h.json.error)) bad.push([m, path, body.slice(0, 40), h.status, h.text.slice(0, 100)]);
            }
        }
        ok(bad.length === 0, `hostile JSON (${hostile.length} bodies x ${targets.length} endpoints): JSON 4xx, never 500`, bad.slice(0, 5));
        const [hostileRows] = await sql(`SELECT (SELECT count(*)::int FROM opsflags.app_config WHERE config_key = $1) AS n`, [P + 'hostile']);
        ok(hostileRows.n === 0, 'nothing written by hostile bodies');

        // 1,000 flags
        await sql(`SELECT opsflags.create_flag($1 || 'bulk-' || i, description => 'bulk flag ' || i, tags => ARRAY['bulk'])
                   FROM generate_series(1, 1000) i`, [P]);
        // (their time is measured by bench/console.sh, not asserted here)
        r = await call('GET', '/api/v1/flags?tag=bulk', A);
        const s = await call('GET', '/api/v1/flags?search=bulk%20flag%20777', A);
        ok(r.status === 200 && r.json.flags.length === 1000 && s.json.flags.length === 1 && s.json.flags[0].key === P + 'bulk-777',
           '1,000 flags listed; a search finds one of them', [r.status, s.text.slice(0, 200)]);
        const one = r.json.flags.find((f) => f.key === P + 'bulk-7');
        ok(one && one.description === 'bulk flag 7' && one.tags[0] === 'bulk' && !('variations' in one) && !('prerequisites' in one)
           && (one.config === null || (!('rules' in one.config) && 'is_enabled' in one.config)),
           'the list gives summaries: no variations, prerequisites or rules', one);
        r = await call('GET', '/api/v1/flags?tag=bulk&summary=false&search=bulk%20flag%207', A);
        const full = r.json && r.json.flags.find((f) => f.key === P + 'bulk-7');
        ok(r.status === 200 && full && Array.isArray(full.variations) && Array.isArray(full.prerequisites),
           'summary=false gives whole documents', r.text.slice(0, 300));
        r = await call('GET', '/api/v1/flags?summary=maybe', A);
        ok(isError(r, 400, '22023'), 'summary neither true nor false: 400 (22023)', r.text);

        // expiry, sign-out, throttling
        const other = await signIn(ADMIN, ADMIN_PW);
        secrets.push(other.token);
        await sql(`UPDATE opsflags_internal.console_sessions SET last_seen_at = now() - interval '1 day'
                   WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, [other.token]);
        r = await call('GET', '/api/v1/session', { session: other.token });
        ok(isError(r, 401), 'an idle session has expired: 401', r.text);
        r = await call('DELETE', '/api/v1/session', { session: admin.token });
        ok(isError(r, 403), 'sign-out without the CSRF token: 403');
        r = await call('DELETE', '/api/v1/session', A);
        ok(r.status === 200 && /opsflags_session=;/.test(r.headers.get('set-cookie') || '') && /Max-Age=0/.test(r.headers.get('set-cookie')),
           'DELETE /session: signed out, the cookie cleared', r.headers.get('set-cookie'));
        r = await call('GET', '/api/v1/flags', A);
        ok(isError(r, 401), 'after sign-out the token is refused: 401', r.text);
        const statuses = [];
        let last;
        for (let i = 0; i < 6; i++) {
            last = await signIn(VIEWER, 'wrong password ' + i);
            statuses.push(last.status);
        }
        ok(statuses.slice(0, 5).every((s) => s === 401) && statuses[5] === 429 && Number(last.headers.get('retry-after')) > 0
           && isError(last, 429), 'five failures, then 429 with Retry-After', [statuses, last.headers.get('retry-after')]);
        const right = await signIn(VIEWER, VIEWER_PW);
        ok(right.status === 429, 'throttled: even the right password gets 429');

        // no secret anywhere
        const activity = (await sql(`SELECT string_agg(coalesce(query, ''), ' ') AS q FROM pg_stat_activity`))[0].q || '';
        const audit = (await sql(`SELECT string_agg(coalesce(old_values::text, '') || coalesce(new_values::text, ''), ' ') AS a
                                  FROM opsflags.audit_log`))[0].a || '';
        let log = '';
        if (process.env.OPSFLAGS_TEST_LOG) {
            const buf = fs.readFileSync(process.env.OPSFLAGS_TEST_LOG);
            log = buf.subarray(logStart).toString();
        }
        const leaks = secrets.filter((x) => x && (activity.includes(x) || audit.includes(x) || log.includes(x)));
        ok(leaks.length === 0 && (log.length > 0 || !process.env.OPSFLAGS_TEST_LOG),
           'no password, session token, CSRF token or key in the server log, pg_stat_activity or audit_log', leaks.length);
    } finally {
        await cleanup().catch((e) => console.log(`# cleanup: ${e.message}`));
        await db.end();
    }
    console.log(`1..${n}`);
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    console.log(`not ok ${n + 1} - ${e.message}`);
    console.log(`1..${n + 1}`);
    process.exitCode = 1;
});
