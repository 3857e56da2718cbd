// spec.js: Unleash's client specification (@unleash/client-specification)
// evaluated by opsflags.  For each specification file: a fresh
// environment, in a transaction rolled back afterwards: import_unleash of
// its state (twice: the second import must change nothing; then the import
// of unleash_features' export must change nothing), then every case in SQL:
// `tests` through feature_enabled(toggleName, context), `variantTests`
// through feature_explain (variant and value as the SDK's variant).  Prints
// TAP, one line per file, then the pass counts per file and in total.
// Connection: the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE: a
// database with opsflags).
'use strict';

const path = require('path');
const { Client } = require('pg');

const SPEC_DIR = path.join(path.dirname(require.resolve('@unleash/client-specification/package.json')),
                           'specifications');

// Cases opsflags does not pass, with the reason (file -> description -> why).
const SKIP = {
    '18-utf8-flag-names.json': {
        '*': 'flag keys are A-Z a-z 0-9 . _ : - (opsflags.is_valid_flag_key); import_unleash refuses other names (22023)',
    },
};

// The SDK's variant from feature_explain: a named variation served while
// on is the variant (its value the payload), anything else "disabled".
function variantOf(x) {
    if (!x) return { name: 'disabled', enabled: false, feature_enabled: false };
    const on = x.enabled === true;
    if (on && typeof x.variant === 'string') {
        const v = { name: x.variant, enabled: true, feature_enabled: true };
        if (x.value !== null && x.value !== undefined) v.payload = x.value;
        return v;
    }
    return { name: 'disabled', enabled: false, feature_enabled: on };
}

function sameVariant(got, want) {
    const w = { name: want.name, enabled: want.enabled, feature_enabled: want.feature_enabled };
    const g = { name: got.name, enabled: got.enabled, feature_enabled: got.feature_enabled };
    if (JSON.stringify(w) !== JSON.stringify(g)) return false;
    return JSON.stringify(want.payload === undefined ? null : want.payload)
        === JSON.stringify(got.payload === undefined ? null : got.payload);
}

async function main() {
    const files = require(path.join(SPEC_DIR, 'index.json'));
    const c = new Client();
    await c.connect();
    let total = 0, passed = 0, skipped = 0, failedFiles = 0, n = 0;
    const lines = [];
    for (const file of files) {
        const spec = require(path.join(SPEC_DIR, file));
        const skips = SKIP[file] || {};
        const env = 'unleash-spec-' + file.slice(0, 2);
        const cases = [
            ...(spec.tests || []).map((t) => ({ kind: 'enabled', t })),
            ...(spec.variantTests || []).map((t) => ({ kind: 'variant', t })),
        ];
        const failures = [];
        let filePassed = 0, fileSkipped = 0;
        let imported = true;
        await c.query('BEGIN');
        try {
            await c.query('SAVEPOINT imported');
            await c.query('INSERT INTO opsflags.environments (name) VALUES ($1)', [env]);
            await c.query("SELECT set_config('opsflags.environment', $1, true)", [env]);
            await c.query('SELECT opsflags.import_unleash($1, $2)', [env, JSON.stringify(spec.state)]);
            const again = (await c.query('SELECT opsflags.import_unleash($1, $2) AS r',
                                         [env, JSON.stringify(spec.state)])).rows[0].r;
            if (again.created.length || again.changed.length || again.segments.created.length
                || again.segments.changed.length) {
                failures.push(`second import changed something: ${JSON.stringify(again)}`);
            }
            // Importing the export changes nothing either.
            const back = (await c.query(
                'SELECT opsflags.import_unleash($1, opsflags.unleash_features($1)) AS r', [env])).rows[0].r;
            if (back.created.length || back.changed.length || back.segments.created.length
                || back.segments.changed.length) {
                const exp = (await c.query('SELECT opsflags.unleash_features($1) AS e', [env])).rows[0].e;
                failures.push(`importing the export changed something: ${JSON.stringify(back)}; export ${JSON.stringify(exp)}`);
            }
        } catch (e) {
            await c.query('ROLLBACK TO SAVEPOINT imported');
            imported = false;
            if (!skips['*']) failures.push(`import failed: ${e.message}`);
        }
        if (imported && cases.length) {
            const rows = (await c.query(
                `SELECT t.i, CASE WHEN t.kind = 'enabled' THEN to_jsonb(opsflags.feature_enabled(t.name, t.ctx))
                                  ELSE opsflags.feature_explain(t.name, t.ctx) END AS r
                 FROM jsonb_to_recordset($1::jsonb) AS t(i integer, kind text, name text, ctx jsonb) ORDER BY t.i`,
                [JSON.stringify(cases.map((k, i) => ({ i, kind: k.kind, name: k.t.toggleName, ctx: k.t.context || {} })))]
            )).rows;
            for (const row of rows) {
                const { kind, t } = cases[row.i];
                const ok = kind === 'enabled' ? row.r === t.expectedResult
                                              : sameVariant(variantOf(row.r), t.expectedResult);
                const why = skips[t.description] || skips['*'];
                if (why) {
                    fileSkipped++;
                } else if (ok) {
                    filePassed++;
                } else {
                    failures.push(`${t.description}: expected ${JSON.stringify(t.expectedResult)}, got `
                                  + JSON.stringify(kind === 'enabled' ? row.r : variantOf(row.r))
                                  + (kind === 'variant' ? ` (feature_explain ${JSON.stringify(row.r)})` : ''));
                }
            }
        } else if (!imported) {
            fileSkipped = skips['*'] ? cases.length : 0;
        }
        await c.query('ROLLBACK');
        n++;
        total += cases.length;
        passed += filePassed;
        skipped += fileSkipped;
        const failedHere = failures.length;
        if (failedHere) failedFiles++;
        console.log(`${failedHere ? 'not ok' : 'ok'} ${n} - ${file}: ${filePassed}/${cases.length} passed`
                    + (fileSkipped ? `, ${fileSkipped} skipped (${skips['*'] || 'listed'})` : ''));
        for (const f of failures) console.log(`#   ${f}`);
        lines.push(`${file}: ${filePassed} passed, ${fileSkipped} skipped, ${failedHere ? cases.length - filePassed - fileSkipped : 0} failed`);
    }
    await c.end();
    console.log(`1..${n}`);
    for (const l of lines) console.log(`# ${l}`);
    console.log(`# unleash-spec: ${passed} of ${total} cases passed, ${skipped} skipped as unsupported, `
                + `${total - passed - skipped} failed`);
    process.exitCode = failedFiles ? 1 : 0;
}

main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
