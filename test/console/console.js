// console.js: the web console (/console/) in headless Chromium, driven by
// puppeteer-core, against the HTTP server (OPSFLAGS_HTTP) and its management
// API, with the results checked in SQL (PGHOST, PGPORT, ...).
//   - the page and its files come with the console's own policy (no inline
//     script or style), and nothing the page loads breaks it;
//   - an admin signs in through the form, toggles a flag in production
//     (confirming the dialog), edits its rules (a bad rule is refused by the
//     server and the error shown), and SQL shows both; the flag's history,
//     the evaluation tester, the environment comparison and the audit log
//     are drawn; the audit CSV downloads and parses;
//   - a change made in SQL appears on the open page without a reload;
//   - a read-only role signs in, and every write control it uses is refused
//     by the server (the flag unchanged in SQL, an error shown), and so is
//     each write endpoint asked directly with its CSRF token;
//   - a tenant admin reads only its tenant's audit rows.
// Screenshots of each page go to CONSOLE_SHOTS/console-*.png.  Prints TAP.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');
const { Client } = require('pg');

const BASE = process.env.OPSFLAGS_HTTP;
const SHOTS = process.env.CONSOLE_SHOTS || os.tmpdir();
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const FLAG = 'console.banner';
const OTHER = 'console.checkout';
const ADMIN = { role: 'console_admin', password: 'admin pw for the console test' };
const READER = { role: 'console_reader', password: 'reader pw for the console test' };
const TENANT = { role: 'console_tenant42', password: 'tenant pw for the console test' };
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const WAIT_MS = 10000;

let n = 0;
let failed = 0;
function ok(cond, what) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
    return !!cond;
}
function skip(what, why) {
    n++;
    console.log(`ok ${n} - ${what} # SKIP ${why}`);
}
const note = (text) => console.log(String(text).split('\n').map((l) => `# ${l}`).join('\n'));

async function until(what, cond, ms = WAIT_MS) {
    const end = Date.now() + ms;
    for (;;) {
        let v;
        try { v = await cond(); } catch (e) { v = null; }
        if (v) return v;
        if (Date.now() > end) { note(`gave up waiting: ${what}`); return null; }
        await new Promise((r) => setTimeout(r, 50));
    }
}

// RFC 4180 CSV: rows of fields (quoted fields may hold commas, quotes, newlines).
function parseCsv(text) {
    const rows = [];
    let row = [], f = '', i = 0, quoted = false;
    while (i < text.length) {
        const c = text[i];
        if (quoted) {
            if (c === '"' && text[i + 1] === '"') { f += '"'; i += 2; continue; }
            if (c === '"') { quoted = false; i++; continue; }
            f += c; i++; continue;
        }
        if (c === '"') { quoted = true; i++; continue; }
        if (c === ',') { row.push(f); f = ''; i++; continue; }
        if (c === '\r') { i++; continue; }
        if (c === '\n') { row.push(f); rows.push(row); row = []; f = ''; i++; continue; }
        f += c; i++;
    }
    if (f !== '' || row.length) { row.push(f); rows.push(row); }
    return rows;
}

async function main() {
    const db = new Client();
    await db.connect();
    const one = async (sql, args) => (await db.query(sql, args)).rows[0];
    const config = async (env) => (await one(
        `SELECT c.is_enabled, c.rules, c.enabled_percentage, c.version FROM opsflags.feature_flag_configs c
         JOIN opsflags.feature_flags f ON f.id = c.flag_id WHERE f.flag_key = $1 AND c.environment = $2`, [FLAG, env]));

    // Roles and flags (a fresh cluster; a second run starts from the same state).
    await db.query(`DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'console_admin') THEN CREATE ROLE console_admin LOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'console_reader') THEN CREATE ROLE console_reader LOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'console_tenant42') THEN CREATE ROLE console_tenant42 LOGIN; END IF;
        END $$`);
    for (const r of [ADMIN, READER, TENANT]) {
        await db.query(`ALTER ROLE ${r.role} PASSWORD '${r.password}'`);
    }
    await db.query('GRANT opsflags_admin TO console_admin');
    await db.query(`SELECT opsflags.console_sign_out_all(r) FROM unnest(ARRAY['console_admin', 'console_reader', 'console_tenant42']::regrole[]) r`);
    await db.query('DELETE FROM opsflags_internal.console_signin_failures');
    for (const k of [FLAG, OTHER]) {
        const f = await one('SELECT opsflags.get_flag($1) AS f', [k]);
        if (f.f) {
            await db.query('SELECT opsflags.archive_flag($1)', [k]);
            await db.query('SELECT opsflags.delete_flag($1)', [k]);
        }
    }
    await db.query(`SELECT opsflags.create_flag($1, 'Banner', 'The console test''s flag', tags => '{web,console}')`, [FLAG]);
    await db.query(`SELECT opsflags.create_flag($1, 'Checkout', NULL, tags => '{payments}')`, [OTHER]);
    await db.query(`SELECT opsflags.update_flag($1, '{"enabled_for_users": ["alice"], "enabled_percentage": 10}', 'staging')`, [FLAG]);
    // tenant-scoped audit rows: two tenants
    await db.query('DROP TABLE IF EXISTS console_orders');
    await db.query('CREATE TABLE console_orders (id int PRIMARY KEY, shop text, total numeric)');
    await db.query(`SELECT opsflags.audit_table('console_orders', tenant_column => 'shop')`);
    await db.query(`INSERT INTO console_orders VALUES (1, '42', 9.90), (2, '7', 5.00), (3, '42', 1.00)`);
    await db.query(`SELECT opsflags.grant_tenant_admin('console_tenant42', '42')`);
    // a secret in the configuration
    await db.query(`SELECT opsflags.config_set('console.secret', '"s3cr3t-console-value"', 'postgres', 'all', 'the console test''s secret', true)`);
    // two deployments of production (the second to be rolled back) and an open alert
    await db.query(`SELECT opsflags.record_deployment('console-1.0', 'production', 'first')`);
    await db.query(`SELECT opsflags.record_deployment('console-1.1', 'production', 'second')`);
    const alertId = (await one(`INSERT INTO opsflags.alerts (type, severity, title, message, component)
        VALUES ('console_test', 'warning', 'Console test alert', 'raised by the console test', 'console') RETURNING id`)).id;
    const deployment = async () => one(`SELECT id, status, rollback_to FROM opsflags.deployment_history
        WHERE environment = 'production' AND version = 'console-1.1' ORDER BY deployed_at DESC LIMIT 1`);
    const alertResolved = async () => (await one('SELECT resolved FROM opsflags.alerts WHERE id = $1', [alertId])).resolved;

    // ---------- the page and its files ----------
    for (const [p, type] of [['/console/', 'text/html'], ['/console/app.js', 'text/javascript'], ['/console/app.css', 'text/css']]) {
        const res = await fetch(BASE + p);
        await res.text();
        ok(res.status === 200 && (res.headers.get('content-type') || '').startsWith(type)
            && res.headers.get('content-security-policy') === CSP,
        `${p}: 200 ${type} with the console's policy (got ${res.status}, ${res.headers.get('content-security-policy')})`);
    }
    const status = await (await fetch(`${BASE}/`)).text();
    ok(/href="console\/"/.test(status), 'the status page links to the console');

    const browser = await puppeteer.launch({
        executablePath: CHROMIUM, headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions',
            '--disable-background-networking', '--disable-component-update', '--disable-sync', '--mute-audio'],
        userDataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'console-chromium-')),
    });
    const violations = [];
    const pageErrors = [];
    try {
        const page = await browser.newPage();
        await page.setViewport({ width: 1280, height: 900 });
        page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) violations.push(m.text()); });
        page.on('pageerror', (e) => pageErrors.push(String(e)));
        const shot = async (name, fullPage = false) => {
            await page.screenshot({ path: path.join(SHOTS, `console-${name}.png`), fullPage });
        };
        const text = (sel) => page.$eval(sel, (e) => e.textContent).catch(() => '');
        const visible = (sel) => page.waitForSelector(sel, { visible: true, timeout: WAIT_MS }).then(() => true, () => false);
        // what the page's own fetch gets, with its cookie and (when csrf) its token
        const call = (method, url, body, csrf = true) => page.evaluate(async (m, u, b, c) => {
            // the session's CSRF token, as the page gets it after a reload
            let token = null;
            if (c) {
                const s = await fetch('/api/v1/session', { credentials: 'same-origin' });
                if (s.ok) token = (await s.json()).csrf_token;
            }
            const r = await fetch(u, {
                method: m, credentials: 'same-origin',
                headers: Object.assign({ 'Content-Type': 'application/json' }, token ? { 'X-CSRF-Token': token } : {}),
                body: b === null ? undefined : JSON.stringify(b),
            });
            return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
        }, method, url, body, csrf);
        async function signIn(who) {
            await page.goto(`${BASE}/console/#/signin`, { waitUntil: 'load' });
            await visible('#signin-form');
            await page.$eval('#signin-form input[name=role]', (e) => { e.value = ''; });
            await page.type('#signin-form input[name=role]', who.role);
            await page.type('#signin-form input[name=password]', who.password);
            await page.keyboard.press('Enter');
            return until(`signed in as ${who.role}`, async () => (await text('#who-role')) === who.role
                && (await page.$('#flags-table')) !== null);
        }
        async function signOut() {
            await page.click('#sign-out');
            return until('signed out', async () => (await page.$('#signin-form')) !== null);
        }

        // ---------- sign-in ----------
        await page.goto(`${BASE}/console/`, { waitUntil: 'load' });
        ok(await visible('#signin-form'), 'without a session the console shows the sign-in form');
        ok(await page.evaluate(() => document.activeElement && document.activeElement.name === 'role'),
            'the role field has the focus');
        await shot('signin');
        await page.type('#signin-form input[name=role]', ADMIN.role);
        await page.type('#signin-form input[name=password]', 'not the password');
        await page.click('#signin-submit');
        ok(await until('the refusal', async () => /not accepted/.test(await text('#signin-form [role=alert]'))),
            'a wrong password is refused and said so');
        ok(await signIn(ADMIN), 'the admin signs in through the form and sees the flags');
        const cookies = await page.cookies();
        const sc = cookies.find((c) => c.name === 'opsflags_session');
        ok(sc && sc.httpOnly && sc.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');

        // ---------- the flags of production, toggle with confirmation ----------
        await page.goto(`${BASE}/console/#/flags?environment=production`, { waitUntil: 'load' });
        if (!ok(await visible(`#flags-table tr[data-flag="${FLAG}"]`), 'the flags of production are listed')) note(await text('#main'));
        await page.type('#flag-filters input[name=tag]', 'web');
        await page.click('#flag-filters button[type=submit]');
        ok(await until('the tag filter', async () => (await page.$$('#flags-table tbody tr[data-flag]')).length === 1
            && (await page.$(`#flags-table tr[data-flag="${FLAG}"]`)) !== null), 'the tag filter leaves the one flag tagged web');
        await shot('flags');
        await page.click(`#flags-table button.toggle[data-flag="${FLAG}"]`);
        ok(await page.$eval('#confirm', (d) => d.open).catch(() => false), 'a toggle in production opens the confirmation dialog');
        ok(await page.evaluate(() => document.activeElement && document.activeElement.id === 'confirm-cancel'),
            'the dialog takes the focus (on Cancel)');
        await shot('confirm');
        await page.keyboard.press('Escape');
        await until('dialog closed', () => page.$eval('#confirm', (d) => !d.open));
        ok(!(await config('production')).is_enabled, 'Escape cancels: the flag is still off in SQL');
        ok(await page.evaluate((k) => document.activeElement && document.activeElement.dataset.flag === k, FLAG),
            'the focus is back on the toggle');
        // by keyboard: Enter on the toggle, Tab to the dialog's confirm button, Enter
        await page.keyboard.press('Enter');
        ok(await page.$eval('#confirm', (d) => d.open).catch(() => false), 'Enter on the focused toggle opens the dialog again');
        await page.keyboard.press('Tab');
        ok(await page.evaluate(() => document.activeElement && document.activeElement.id === 'confirm-ok'),
            'Tab moves to the confirm button');
        await page.keyboard.press('Enter');
        ok(await until('toggled in SQL', async () => (await config('production')).is_enabled),
            'confirmed: the flag is on in production in SQL');
        ok(await until('the row says on', async () => (await text(`#flags-table tr[data-flag="${FLAG}"] .pill`)) === 'on'),
            'the list shows it on');

        // a change made in SQL shows without a reload (the page polls)
        await db.query(`SELECT opsflags.toggle_flag($1, false, 'production')`, [FLAG]);
        ok(await until('the poll', async () => (await text(`#flags-table tr[data-flag="${FLAG}"] .pill`)) === 'off', 12000),
            'a toggle made in SQL appears on the open page without a reload');
        await db.query(`SELECT opsflags.toggle_flag($1, true, 'production')`, [FLAG]);

        // ---------- the flag's page: rules ----------
        await page.goto(`${BASE}/console/#/flag/${encodeURIComponent(FLAG)}?environment=production`, { waitUntil: 'load' });
        ok(await visible('#rules-form textarea[name=rules]'), "the flag's page shows its rules editor");
        const setRules = async (value) => {
            await page.$eval('#rules-form textarea[name=rules]', (e, v) => { e.value = v; e.dispatchEvent(new Event('input', { bubbles: true })); }, value);
            await page.click('#rules-form button[type=submit]');
        };
        await setRules('[{"id": "eu", ');
        ok(await until('JSON error', async () => /not valid JSON/.test(await text('#rules-form [role=alert]'))),
            'rules that are not JSON are refused on the page');
        await setRules('[{"id": "eu", "clauses": [{"attribute": "country", "op": "no_such_op", "values": ["DE"]}]}]');
        const bad = await until('server error', async () => {
            const t = await text('#rules-form [role=alert]');
            return /22023/.test(t) && t;
        });
        ok(bad, `a bad rule is refused by the server, its error shown (${bad || await text('#rules-form')})`);
        ok(JSON.stringify((await config('production')).rules || []) === '[]', 'the refused rule was not written');
        await setRules('[{"id": "eu", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "FR"]}]}]');
        ok(await until('saved', async () => /Saved/.test(await text('#rules-form .ok'))), 'a good rule is saved');
        const rules = (await config('production')).rules;
        ok(Array.isArray(rules) && rules.length === 1 && rules[0].id === 'eu' && rules[0].clauses[0].values[1] === 'FR',
            `the rule is in SQL (${JSON.stringify(rules)})`);

        // rollout percentage
        // (as typing would: an input event, so the 5 s poll does not redraw the form under the test)
        await page.$eval('#rollout-form input[name=enabled_percentage]', (e) => { e.value = '25'; e.dispatchEvent(new Event('input', { bubbles: true })); });
        await page.click('#rollout-form button[type=submit]');
        ok(await until('percentage', async () => Number((await config('production')).enabled_percentage) === 25),
            'the rollout percentage is saved (25 in SQL)');

        // evaluation tester
        // (the save above redraws the page once more when its answer comes: a
        // context typed before that is gone, so type it again until it holds)
        let ev = '';
        await until('evaluation', async () => {
            await page.$eval('#eval-result', (e) => { e.textContent = ''; });
            await page.$eval('#eval-context', (e) => { e.value = '{"key": "u1", "country": "DE"}'; e.dispatchEvent(new Event('input', { bubbles: true })); });
            await page.click('#eval-form button[type=submit]');
            await until('a result', async () => (await text('#eval-result')).trim(), 3000);
            ev = (await text('#eval-result')).trim();
            // the form was not redrawn between typing and the answer
            return ev !== '' && (await page.$eval('#eval-context', (e) => e.value)) === '{"key": "u1", "country": "DE"}';
        });
        const expected = (await one(`SELECT opsflags.feature_explain($1, '{"key": "u1", "country": "DE"}'::jsonb) ->> 'reason' AS r
            FROM (SELECT set_config('opsflags.environment', 'production', true)) s`, [FLAG])).r;
        ok(ev && ev.includes('RULE_MATCH') && expected === 'RULE_MATCH',
            `the evaluation tester says what feature_explain says (${expected}): ${ev}`);

        // compare with staging, history
        ok(await until('compare', async () => (await page.$$('#compare-result td.differs')).length > 0),
            'the comparison with another environment marks the fields that differ');
        ok(await until('history', async () => (await page.$$('#history-rows tbody tr')).length >= 3
            && (await page.$$eval('#history-rows dt', (dts) => dts.map((d) => d.textContent))).includes('is_enabled')
            && (await page.$$eval('#history-rows ins', (e) => e.map((x) => x.textContent).join(' '))).includes('"FR"')),
        "the flag's history shows its audit rows as the fields that changed, old and new (the rule added)");
        await shot('flag', true);

        // copy staging's config to development, confirmed
        await page.select('#compare-env', 'staging');
        await until('compare staging', async () => /alice/.test(await text('#compare-result')));
        // copy from staging here? No: copy this (production) to development.
        await page.select('#compare-env', 'development');
        await until('compare development', async () => (await page.$$('#compare-result td.differs')).length > 0);
        await page.click('#copy-to');
        await page.click('#confirm-ok');
        ok(await until('copied', async () => {
            const d = await config('development');
            return d && d.is_enabled && Number(d.enabled_percentage) === 25 && (d.rules || []).length === 1;
        }), 'the config is copied to another environment (SQL shows it there)');

        // ---------- the audit log and its CSV ----------
        await page.goto(`${BASE}/console/#/audit`, { waitUntil: 'load' });
        ok(await until('audit rows', async () => (await page.$$('#audit-rows tbody tr')).length > 0), 'the audit log lists rows');
        await shot('audit');
        const href = await page.$eval('#audit-csv', (a) => a.href);
        const csv = await page.evaluate(async (u) => {
            const r = await fetch(u, { credentials: 'same-origin' });
            return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), body: await r.text() };
        }, href);
        const rows = csv.status === 200 ? parseCsv(csv.body) : [];
        ok(csv.status === 200 && /text\/csv/.test(csv.type || '') && rows.length > 1 && rows[0].includes('action')
            && rows.slice(1).every((r) => r.length === rows[0].length),
        `the CSV link downloads the audit log as CSV that parses (${csv.status}, ${csv.type}, ${rows.length} rows)`);
        const ai = rows.length ? rows[0].indexOf('resource_id') : -1;
        ok(ai >= 0 && rows.some((r) => r[ai] && r[ai].includes(FLAG)), "the CSV has the flag's audit rows");

        // operations (whatever the API has): the maintenance switch, confirmed
        const maint = async () => (await one('SELECT opsflags.is_maintenance_mode() AS m')).m;
        await page.goto(`${BASE}/console/#/operations`, { waitUntil: 'load' });
        ok(await until('maintenance', async () => (await text('#maintenance-state')) === 'off'), 'the operations page shows maintenance mode off');
        await shot('operations');
        ok(await until('config', async () => /console\.secret/.test(await text('#config'))), 'the configuration is listed');
        const configText = await text('#config');
        ok(/secret, not shown/.test(configText) && !(await page.content()).includes('s3cr3t'),
            'the secret is shown as such, its value nowhere in the page');
        await page.click('#maintenance-toggle');
        await page.click('#confirm-ok');
        ok(await until('maintenance on', maint), 'the maintenance switch, confirmed, turns maintenance mode on in SQL');
        ok(await until('maintenance shown', async () => (await text('#maintenance-state')) === 'on'), 'and the page says so');
        await page.click('#maintenance-toggle');
        await page.click('#confirm-ok');
        ok(await until('maintenance off', async () => !(await maint())), 'and off again');
        // a rollback of the latest deployment to the one before, confirmed
        const dep = await deployment();
        if (await visible('#rollback-form')) {
            await page.select('#rollback-form select[name=deployment]', dep.id);
            await page.select('#rollback-form select[name=target_version]', 'console-1.0');
            await page.type('#rollback-form input[name=reason]', 'console test');
            await page.click('#rollback-form button[type=submit]');
            await page.click('#confirm-ok');
            ok(await until('rolled back', async () => (await deployment()).status === 'rolled_back'),
                'the deployment is rolled back from the page (SQL: rolled_back)');
            ok((await deployment()).rollback_to === 'console-1.0', 'to the version chosen');
        } else {
            ok(false, `the operations page offers a rollback (${await text('#deployments')})`);
        }
        // the open alert, resolved
        if (await visible(`#alerts-table button[data-alert="${alertId}"]`)) {
            await page.click(`#alerts-table button[data-alert="${alertId}"]`);
            ok(await until('resolved', alertResolved), 'the alert is resolved from the page (SQL: resolved)');
        } else {
            ok(false, `the operations page lists the open alert (${await text('#alerts')})`);
        }
        await db.query('UPDATE opsflags.alerts SET resolved = false, resolved_at = NULL, resolved_by = NULL WHERE id = $1', [alertId]);
        await db.query(`SELECT opsflags.record_deployment('console-1.2', 'production', 'third')`);

        // a write without the CSRF token is refused
        const noCsrf = await call('POST', `/api/v1/flags/${encodeURIComponent(FLAG)}/toggle`, { environment: 'production', enabled: false }, false);
        ok(noCsrf.status === 403 && (await config('production')).is_enabled, `a write without X-CSRF-Token is refused (${noCsrf.status})`);
        ok(await signOut(), 'sign out returns to the sign-in form');
        const after = await call('GET', '/api/v1/session', null, false);
        ok(after.status === 401, `the session is gone after signing out (${after.status})`);

        // ---------- a read-only role ----------
        ok(await signIn(READER), 'the read-only role signs in');
        const before = await config('production');
        await page.goto(`${BASE}/console/#/flags?environment=production`, { waitUntil: 'load' });
        const listed = await visible(`#flags-table tr[data-flag="${FLAG}"]`);
        const listErr = await text('#main [role=alert]');
        if (listed) {
            await page.click(`#flags-table button.toggle[data-flag="${FLAG}"]`);
            await page.click('#confirm-ok');
            const e = await until('refusal', async () => /42501|permission|denied|forbidden/i.test(await text('#main [role=alert]')) && await text('#main [role=alert]'));
            ok(e, `the reader's toggle is refused by the server, the error shown (${e})`);
        } else {
            ok(/42501|permission|denied|forbidden/i.test(listErr), `the reader is refused the flags, the error shown (${listErr})`);
        }
        ok((await config('production')).is_enabled === before.is_enabled, 'the flag is unchanged in SQL after the toggle');
        await page.goto(`${BASE}/console/#/flag/${encodeURIComponent(FLAG)}?environment=production`, { waitUntil: 'load' });
        if (await visible('#rules-form textarea[name=rules]')) {
            await setRules('[]');
            const e = await until('refusal', async () => /42501|permission|denied|forbidden/i.test(await text('#rules-form [role=alert]')) && await text('#rules-form [role=alert]'));
            ok(e, `the reader's rule edit is refused by the server, the error shown (${e})`);
        } else {
            ok(true, 'the reader cannot open the flag page (refused when it reads)');
        }
        // the new-flag form
        await page.goto(`${BASE}/console/#/flags?environment=production`, { waitUntil: 'load' });
        await visible('#create-flag input[name=key]');
        await page.type('#create-flag input[name=key]', 'console.by_reader');
        await page.click('#create-flag button[type=submit]');
        const ce = await until('refusal', async () => /42501/.test(await text('#create-flag [role=alert]')) && await text('#create-flag [role=alert]'));
        ok(ce, `the reader's new flag is refused by the server, the error shown (${ce})`);
        // the maintenance switch
        await page.goto(`${BASE}/console/#/operations`, { waitUntil: 'load' });
        if (await visible('#maintenance-toggle')) {
            await page.click('#maintenance-toggle');
            await page.click('#confirm-ok');
            const me = await until('refusal', async () => /42501/.test(await text('#maintenance [role=alert]')) && await text('#maintenance [role=alert]'));
            ok(me, `the reader's maintenance switch is refused by the server, the error shown (${me})`);
            ok(!(await maint()), 'maintenance mode is still off in SQL');
        } else {
            ok(/42501/.test(await text('#maintenance')), `the reader is refused maintenance mode (${await text('#maintenance')})`);
        }
        // every write endpoint, asked directly with the reader's CSRF token
        const k = encodeURIComponent(FLAG);
        const writes = [
            ['POST', `/api/v1/flags/${k}/toggle`, { environment: 'production', enabled: false }],
            ['PATCH', `/api/v1/flags/${k}?environment=production`, { rules: [], enabled_percentage: 0 }],
            ['POST', '/api/v1/flags', { key: 'console.by_reader' }],
            ['POST', `/api/v1/flags/${k}/archive`, {}],
            ['POST', `/api/v1/flags/${k}/restore`, {}],
            ['DELETE', `/api/v1/flags/${k}`, null],
            ['PUT', '/api/v1/maintenance', { enabled: true }],
            ['PUT', '/api/v1/config/console.key', { value: 1 }],
            ['POST', `/api/v1/deployments/${(await one(`SELECT id FROM opsflags.deployment_history WHERE version = 'console-1.2'`)).id}/rollback`, { target_version: 'console-1.0' }],
            ['POST', `/api/v1/alerts/${alertId}/resolve`, {}],
        ];
        for (const [m, u, b] of writes) {
            const r = await call(m, u, b);
            let sqlstate = null;
            try { sqlstate = JSON.parse(r.body).error.sqlstate; } catch (e) { /* none */ }
            ok(r.status === 403 && sqlstate === '42501', `the reader's ${m} ${u} is refused: 403 42501 (got ${r.status} ${sqlstate})`);
        }
        const now = await config('production');
        const created = await one('SELECT count(*)::int AS n FROM opsflags.feature_flags WHERE flag_key = $1', ['console.by_reader']);
        const archived = await one('SELECT archived FROM opsflags.feature_flags WHERE flag_key = $1', [FLAG]);
        const cfg = await one(`SELECT count(*)::int AS n FROM opsflags.config_all() WHERE config_key = 'console.key'`);
        ok(now.version === before.version && now.is_enabled === before.is_enabled && created.n === 0 && archived && !archived.archived
            && cfg.n === 0 && !(await maint()) && !(await alertResolved())
            && (await one(`SELECT status FROM opsflags.deployment_history WHERE version = 'console-1.2'`)).status === 'success',
        'after all of them the flag is unchanged in SQL, no flag or configuration was created, maintenance is off, the alert open, the deployment live');
        await shot('reader');
        ok(await signOut(), 'the reader signs out');

        // ---------- a tenant admin ----------
        ok(await signIn(TENANT), 'the tenant admin signs in');
        await page.goto(`${BASE}/console/#/audit`, { waitUntil: 'load' });
        await until('audit rows', async () => (await page.$$('#audit-rows tbody tr')).length > 0 || (await text('#audit-rows')).length > 0);
        const tRes = await call('GET', '/api/v1/audit', null, false);
        let tRows = [];
        try { const d = JSON.parse(tRes.body); tRows = Array.isArray(d) ? d : (d.audit || d.items || d.rows || []); } catch (e) { /* none */ }
        const tenants = new Set(tRows.map((r) => r.tenant));
        ok(tRes.status === 200 && tRows.length >= 2 && tenants.size === 1 && tenants.has('42'),
            `the tenant admin reads only tenant 42's audit rows (${tRes.status}, ${tRows.length} rows, tenants ${[...tenants].join(',')})`);
        const domRows = await page.$$eval('#audit-rows tbody tr', (trs) => trs.map((t) => t.textContent));
        ok(domRows.length === tRows.length && domRows.every((t) => t.includes('[42]')),
            `the audit page shows them, and nothing of tenant 7 (${domRows.length} rows)`);
        await shot('tenant-audit');
        await signOut();
    } finally {
        await browser.close();
        await db.end();
    }
    ok(violations.length === 0, `no Content-Security-Policy violation (${violations.join(' | ')})`);
    ok(pageErrors.length === 0, `no script error on the page (${pageErrors.join(' | ')})`);
}

main().catch((e) => {
    ok(false, `the console test ran to its end: ${e.stack || e}`);
}).finally(() => {
    console.log(`1..${n}`);
    process.exit(failed ? 1 : 0);
});
