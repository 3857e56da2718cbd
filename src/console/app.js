// opsflags console: the script of /console/ (src/http_console.c).  Plain
// JavaScript, no framework, no build step.  A page per location hash
// (#/signin, #/flags, #/flag/<key>, #/audit, #/operations), each drawn from
// the management API (/api/v1/...) with the session cookie; every write
// sends the session's CSRF token (X-CSRF-Token).  What the server says is
// shown as text (textContent), never parsed as markup.  The page that is
// shown asks again every 5 s with If-None-Match, so changes made elsewhere
// appear without a reload; a form being edited is not redrawn under the
// user (a notice says the flag changed).
'use strict';

(function () {
    const POLL_MS = 5000;
    const state = { role: null, csrf: null, environments: [], etags: {}, bodies: {}, timer: null, view: null };

    // ---------- DOM helpers ----------

    function h(tag, attrs, ...children) {
        const el = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (v === null || v === undefined || v === false) continue;
            if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
            else if (k === 'text') el.textContent = v;
            else el.setAttribute(k, v === true ? '' : String(v));
        }
        for (const c of children.flat(Infinity)) {
            if (c === null || c === undefined || c === false) continue;
            el.append(c instanceof Node ? c : document.createTextNode(String(c)));
        }
        return el;
    }
    const $ = (sel, root) => (root || document).querySelector(sel);
    let uid = 0;
    const nextId = (p) => `${p}-${++uid}`;

    // A labelled control: the label's for names the control's id.
    function field(labelText, control, hint) {
        if (!control.id) control.id = nextId('f');
        const parts = [h('label', { for: control.id, text: labelText }), control];
        if (hint) {
            const hid = nextId('hint');
            control.setAttribute('aria-describedby', hid);
            parts.push(h('div', { id: hid, class: 'muted', text: hint }));
        }
        return h('div', {}, parts);
    }

    function message(box, kind, text) {
        box.replaceChildren();
        if (text) box.append(h('div', { class: kind, role: kind === 'error' ? 'alert' : 'status', text }));
    }

    function notice(text) { $('#notice').textContent = text || ''; }

    const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '');
    const json = (v) => JSON.stringify(v, null, 2);

    // ---------- the API ----------

    class ApiError extends Error {
        constructor(status, sqlstate, msg) {
            super(msg);
            this.status = status;
            this.sqlstate = sqlstate;
        }
        toString() {
            return `${this.message}${this.sqlstate ? ` (SQLSTATE ${this.sqlstate})` : ''} [HTTP ${this.status}]`;
        }
    }

    // method, path (with its query), body (undefined: none); etagKey: send
    // If-None-Match with what that key last got, and answer null on 304.
    async function api(method, path, body, etagKey) {
        const headers = { Accept: 'application/json' };
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
        if (etagKey && state.etags[etagKey]) headers['If-None-Match'] = state.etags[etagKey];
        let res;
        try {
            res = await fetch(path, {
                method, headers, credentials: 'same-origin', cache: 'no-store',
                body: body === undefined ? undefined : JSON.stringify(body),
            });
        } catch (e) {
            throw new ApiError(0, null, `the server did not answer: ${e.message}`);
        }
        if (res.status === 304) return null;
        const text = await res.text();
        let data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
            const err = data && data.error ? data.error : {};
            const msg = err.message || (data && data.message) || text || res.statusText;
            if (res.status === 401 && !path.startsWith('/api/v1/session')) {
                state.role = state.csrf = null;
                showSignedIn();
                location.hash = '#/signin';
            }
            throw new ApiError(res.status, err.sqlstate || null, msg);
        }
        if (etagKey) {
            // an answer without an ETag that is the same as the last: nothing to redraw
            const tag = res.headers.get('ETag');
            if (tag) state.etags[etagKey] = tag; else delete state.etags[etagKey];
            if (!tag && state.bodies[etagKey] === text) return null;
            state.bodies[etagKey] = text;
        }
        return data === null ? {} : data;
    }

    const q = (params) => {
        const s = new URLSearchParams();
        for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
        const t = s.toString();
        return t ? `?${t}` : '';
    };
    const enc = encodeURIComponent;
    // A list the API may answer bare or wrapped ({flags: [...]}, {items: [...]}).
    const list = (data, name) => (Array.isArray(data) ? data : (data && (data[name] || data.items || data.rows)) || []);

    // ---------- the confirmation dialog ----------

    // Resolves true when confirmed; focus goes back to what had it.
    function confirmDialog(title, text, okLabel) {
        const dlg = $('#confirm');
        const back = document.activeElement;
        $('#confirm-title').textContent = title;
        $('#confirm-text').textContent = text;
        $('#confirm-ok').textContent = okLabel || 'Confirm';
        dlg.returnValue = '';
        return new Promise((resolve) => {
            dlg.addEventListener('close', () => {
                resolve(dlg.returnValue === 'ok');
                if (back && back.isConnected) back.focus();
            }, { once: true });
            dlg.showModal();
            $('#confirm-cancel').focus();
        });
    }

    const isProduction = (env) => {
        const e = state.environments.find((x) => x.name === env);
        return env === 'production' || !!(e && (e.is_production || e.production));
    };

    // ---------- session ----------

    function showSignedIn() {
        const inside = !!state.role;
        $('#nav').hidden = !inside;
        $('#who').hidden = !inside;
        $('#who-role').textContent = state.role || '';
    }

    function takeSession(s) {
        state.role = s.role;
        state.csrf = s.csrf_token;
        showSignedIn();
    }

    async function loadEnvironments() {
        try {
            state.environments = list(await api('GET', '/api/v1/environments'), 'environments')
                .map((e) => (typeof e === 'string' ? { name: e } : e));
        } catch (e) {
            state.environments = [];
        }
    }

    const currentEnv = (params) => params.get('environment') || localStorage.getItem('opsflags.environment')
        || (state.environments.find((e) => e.name === 'production') ? 'production'
            : (state.environments[0] && state.environments[0].name) || 'production');

    function envPicker(selected, onChange, label) {
        const sel = h('select', { name: 'environment' },
            state.environments.map((e) => h('option', { value: e.name, selected: e.name === selected, text: e.name })));
        if (!state.environments.some((e) => e.name === selected)) sel.append(h('option', { value: selected, selected: true, text: selected }));
        sel.addEventListener('change', () => onChange(sel.value));
        return field(label || 'Environment', sel);
    }

    // ---------- views ----------

    function viewSignIn() {
        const box = h('div');
        const role = h('input', { type: 'text', name: 'role', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
        const pw = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
        const form = h('form', { class: 'signin', id: 'signin-form', 'aria-labelledby': 'signin-title' },
            h('h1', { id: 'signin-title', text: 'Sign in' }),
            h('p', { class: 'muted', text: 'With your PostgreSQL role name and password.' }),
            field('Role', role), field('Password', pw), box,
            h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'signin-submit', text: 'Sign in' })));
        form.addEventListener('submit', async (ev) => {
            ev.preventDefault();
            message(box, 'error', '');
            try {
                takeSession(await api('POST', '/api/v1/session', { role: role.value, password: pw.value }));
                pw.value = '';
                await loadEnvironments();
                location.hash = '#/flags';
            } catch (e) {
                pw.value = '';
                message(box, 'error', e.status === 429 ? 'Too many failed attempts: try again later.'
                    : e.status === 401 ? 'Role or password not accepted.' : String(e));
                pw.focus();
            }
        });
        return { node: form, focus: role };
    }

    function viewFlags(params) {
        const env = currentEnv(params);
        const search = params.get('search') || '';
        const tag = params.get('tag') || '';
        const archived = params.get('archived') === 'all';
        const errBox = h('div');
        const tbody = h('tbody');
        const pollKey = nextId('flags');
        const go = (p) => { location.hash = `#/flags${q(Object.assign({ environment: env, search, tag, archived: archived ? 'all' : '' }, p))}`; };
        const searchInput = h('input', { type: 'search', name: 'search', value: search });
        const tagInput = h('input', { type: 'text', name: 'tag', value: tag });
        const archivedBox = h('input', { type: 'checkbox', name: 'archived', checked: archived });
        const filters = h('form', { class: 'row', id: 'flag-filters', role: 'search' },
            envPicker(env, (v) => { localStorage.setItem('opsflags.environment', v); go({ environment: v }); }),
            field('Search', searchInput), field('Tag', tagInput),
            h('div', {}, h('label', { class: 'inline' }, archivedBox, 'Archived too')),
            h('div', {}, h('button', { type: 'submit', text: 'Filter' })));
        filters.addEventListener('submit', (ev) => {
            ev.preventDefault();
            go({ search: searchInput.value, tag: tagInput.value, archived: archivedBox.checked ? 'all' : '' });
        });
        const create = newFlagForm(env);
        const node = h('div', {},
            h('h1', { text: `Flags in ${env}` }), filters, errBox,
            h('table', { id: 'flags-table' },
                h('caption', { class: 'muted', text: isProduction(env) ? 'Production: toggles ask for confirmation.' : '' }),
                h('thead', {}, h('tr', {}, ['Flag', 'Name', 'Tags', 'State', 'Updated', ''].map((t) => h('th', { scope: 'col', text: t })))),
                tbody),
            create);

        function row(f) {
            const c = f.config || {};
            const on = !!c.is_enabled;
            const btn = h('button', {
                type: 'button', class: on ? 'secondary toggle' : 'toggle', 'data-flag': f.key,
                'aria-label': `${on ? 'Turn off' : 'Turn on'} ${f.key} in ${env}`, text: on ? 'Turn off' : 'Turn on',
            });
            btn.addEventListener('click', () => toggle(f.key, env, !on, errBox, refresh));
            return h('tr', { 'data-flag': f.key },
                h('td', {}, h('a', { href: `#/flag/${enc(f.key)}${q({ environment: env })}`, class: 'mono', text: f.key })),
                h('td', { text: f.name || '' }),
                h('td', { text: (f.tags || []).join(', ') }),
                h('td', {}, h('span', { class: `pill ${on ? 'on' : 'off'}`, text: f.archived ? 'archived' : on ? 'on' : 'off' })),
                h('td', { text: fmtTime((c && c.updated_at) || f.updated_at) }),
                h('td', {}, f.archived || !f.config ? '' : btn));
        }
        async function refresh() {
            try {
                const data = await api('GET', `/api/v1/flags${q({ environment: env, search, tag, archived: archived ? 'all' : '' })}`, undefined, pollKey);
                if (data === null) return;
                const flags = list(data, 'flags');
                const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.flag : null;
                tbody.replaceChildren(...(flags.length ? flags.map(row)
                    : [h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No flags match.' }))]));
                if (focusKey) { const b = tbody.querySelector(`button[data-flag="${CSS.escape(focusKey)}"]`); if (b) b.focus(); }
            } catch (e) {
                message(errBox, 'error', String(e));
            }
        }
        return { node, focus: searchInput, refresh, poll: refresh };
    }

    function newFlagForm(env) {
        const key = h('input', { type: 'text', name: 'key', required: true, spellcheck: 'false' });
        const name = h('input', { type: 'text', name: 'name' });
        const tags = h('input', { type: 'text', name: 'tags' });
        const box = h('div');
        const form = h('form', { id: 'create-flag' },
            h('div', { class: 'row' }, field('Key', key), field('Name', name), field('Tags (comma separated)', tags),
                h('div', {}, h('button', { type: 'submit', text: 'Create flag' }))), box);
        form.addEventListener('submit', async (ev) => {
            ev.preventDefault();
            try {
                const body = { key: key.value, name: name.value || undefined };
                const t = tags.value.split(',').map((s) => s.trim()).filter(Boolean);
                if (t.length) body.tags = t;
                await api('POST', '/api/v1/flags', body);
                location.hash = `#/flag/${enc(key.value)}${q({ environment: env })}`;
            } catch (e) {
                message(box, 'error', String(e));
            }
        });
        return h('section', { class: 'card', 'aria-labelledby': 'create-title' }, h('h2', { id: 'create-title', text: 'New flag' }), form);
    }

    async function toggle(key, env, enabled, box, after) {
        if (isProduction(env) && !(await confirmDialog(`${enabled ? 'Turn on' : 'Turn off'} ${key} in ${env}?`,
            `This changes what production serves now: ${key} will be ${enabled ? 'on' : 'off'} in ${env}.`,
            enabled ? 'Turn on' : 'Turn off'))) return;
        try {
            await api('POST', `/api/v1/flags/${enc(key)}/toggle`, { environment: env, enabled });
            message(box, 'ok', `${key} is now ${enabled ? 'on' : 'off'} in ${env}.`);
        } catch (e) {
            message(box, 'error', `${key} was not changed: ${e}`);
        }
        if (after) await after();
    }

    // The config fields that one environment's copy of a flag has.
    const CONFIG_FIELDS = ['is_enabled', 'enabled_for_users', 'enabled_for_roles', 'segments', 'enabled_percentage',
        'enable_at', 'disable_at', 'on_variation', 'off_variation', 'variation_weights', 'rules', 'serve', 'fallthrough'];

    function parseJson(text, what) {
        if (text.trim() === '') return null;
        try { return JSON.parse(text); } catch (e) { throw new ApiError(0, null, `${what} is not valid JSON: ${e.message}`); }
    }
    const lines = (text) => text.split('\n').map((s) => s.trim()).filter(Boolean);
    const toLocal = (t) => {
        if (!t) return '';
        const d = new Date(t);
        const p = (n) => String(n).padStart(2, '0');
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
    };
    const fromLocal = (v) => (v ? new Date(v).toISOString() : null);

    function viewFlag(params, key) {
        const env = currentEnv(params);
        const node = h('div');
        const errBox = h('div');
        let flag = null;
        let dirty = false;
        let saved = null;		// the form whose save the redraw is to confirm
        const pollKey = nextId('flag');
        const markDirty = () => { dirty = true; };
        const patch = async (updates, box) => {
            try {
                await api('PATCH', `/api/v1/flags/${enc(key)}${q({ environment: env })}`, updates);
                message(box, 'ok', 'Saved.');
                saved = box.id;
                dirty = false;
                await refresh(true);
                return true;
            } catch (e) {
                message(box, 'error', String(e));
                return false;
            }
        };
        function section(id, title, ...body) {
            return h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title`, text: title }), body);
        }
        function saveForm(id, build, ...controls) {
            const box = h('div', { id: `${id}-message` });
            const form = h('form', { id }, controls, box, h('div', { class: 'actions' }, h('button', { type: 'submit', text: 'Save' })));
            form.addEventListener('submit', async (ev) => {
                ev.preventDefault();
                let updates;
                try { updates = build(); } catch (e) { message(box, 'error', String(e.message || e)); return; }
                await patch(updates, box);
            });
            return form;
        }

        function draw() {
            const f = flag;
            const c = f.config || {};
            const on = !!c.is_enabled;
            const headBox = h('div');
            const toggleBtn = h('button', { type: 'button', id: 'flag-toggle', class: on ? 'secondary' : '', text: on ? `Turn off in ${env}` : `Turn on in ${env}` });
            toggleBtn.addEventListener('click', () => toggle(key, env, !on, headBox, () => refresh(true)));
            const archBtn = h('button', { type: 'button', id: 'flag-archive', class: 'secondary', text: f.archived ? 'Restore' : 'Archive' });
            archBtn.addEventListener('click', async () => {
                if (!(await confirmDialog(f.archived ? `Restore ${key}?` : `Archive ${key}?`,
                    f.archived ? 'It is served again as its configs say.' : 'It then evaluates false in every environment.',
                    f.archived ? 'Restore' : 'Archive'))) return;
                try {
                    await api('POST', `/api/v1/flags/${enc(key)}/${f.archived ? 'restore' : 'archive'}`, {});
                    message(headBox, 'ok', f.archived ? 'Restored.' : 'Archived.');
                } catch (e) { message(headBox, 'error', String(e)); }
                refresh(true);
            });
            const delBtn = h('button', { type: 'button', id: 'flag-delete', class: 'danger', text: 'Delete' });
            delBtn.addEventListener('click', async () => {
                if (!(await confirmDialog(`Delete ${key}?`, 'The flag and its configs in every environment are removed.', 'Delete'))) return;
                try {
                    await api('DELETE', `/api/v1/flags/${enc(key)}`);
                    location.hash = `#/flags${q({ environment: env })}`;
                } catch (e) { message(headBox, 'error', String(e)); }
            });

            const head = h('div', {},
                h('h1', {}, h('span', { class: 'mono', text: key }), ' ',
                    h('span', { class: `pill ${f.archived ? 'warn' : on ? 'on' : 'off'}`, id: 'flag-state', text: f.archived ? 'archived' : on ? 'on' : 'off' })),
                h('div', { class: 'row' },
                    envPicker(env, (v) => { location.hash = `#/flag/${enc(key)}${q({ environment: v })}`; }),
                    h('div', {}, h('div', { class: 'muted', text: `${f.name || ''}${f.description ? ` — ${f.description}` : ''}` }),
                        h('div', { class: 'muted', text: `type ${f.flag_type || 'boolean'}; config version ${c.version || '-'}; updated ${fmtTime(c.updated_at)} by ${c.updated_by || '?'}` })),
                    h('div', {}, f.config && !f.archived ? toggleBtn : '', ' ', archBtn, ' ', f.archived ? delBtn : '')),
                headBox, errBox);

            // targeting
            const users = h('textarea', { rows: 3, name: 'enabled_for_users' }); users.value = (c.enabled_for_users || []).join('\n');
            const roles = h('textarea', { rows: 3, name: 'enabled_for_roles' }); roles.value = (c.enabled_for_roles || []).join('\n');
            const segs = h('textarea', { rows: 2, name: 'segments' }); segs.value = (c.segments || []).join('\n');
            const targeting = section('targeting', 'Targeting', saveForm('targeting-form', () => ({
                enabled_for_users: lines(users.value), enabled_for_roles: lines(roles.value), segments: lines(segs.value),
            }), h('div', { class: 'grid2' }, field('Users (one per line)', users), field('Roles (one per line)', roles)),
            field('Segments (one key per line)', segs)));

            // rules
            const rules = h('textarea', { rows: 10, name: 'rules', spellcheck: 'false' }); rules.value = json(c.rules || []);
            const fallthrough = h('textarea', { rows: 2, name: 'fallthrough', spellcheck: 'false' }); fallthrough.value = c.fallthrough == null ? '' : json(c.fallthrough);
            const rulesSection = section('rules', 'Targeting rules', saveForm('rules-form', () => {
                const u = { rules: parseJson(rules.value, 'Rules') || [] };
                u.fallthrough = parseJson(fallthrough.value, 'Fallthrough');
                return u;
            }, field('Rules (JSON array, evaluated in order; the server checks them)', rules),
            field('Fallthrough (JSON; empty: serve as before)', fallthrough)));

            // rollout and schedule
            const pct = h('input', { type: 'number', min: 0, max: 100, step: 'any', name: 'enabled_percentage', value: c.enabled_percentage ?? 0 });
            const enableAt = h('input', { type: 'datetime-local', name: 'enable_at', value: toLocal(c.enable_at) });
            const disableAt = h('input', { type: 'datetime-local', name: 'disable_at', value: toLocal(c.disable_at) });
            const rollout = section('rollout', 'Rollout and schedule', saveForm('rollout-form', () => ({
                enabled_percentage: Number(pct.value), enable_at: fromLocal(enableAt.value), disable_at: fromLocal(disableAt.value),
            }), h('div', { class: 'row' }, field('Percentage of users', pct), field('Enable at (local time)', enableAt), field('Disable at (local time)', disableAt))));

            // variations
            const vars = h('textarea', { rows: 4, name: 'variations', spellcheck: 'false' }); vars.value = f.variations == null ? '' : json(f.variations);
            const onVar = h('input', { type: 'number', min: 0, name: 'on_variation', value: c.on_variation ?? '' });
            const offVar = h('input', { type: 'number', min: 0, name: 'off_variation', value: c.off_variation ?? '' });
            const weights = h('textarea', { rows: 2, name: 'variation_weights', spellcheck: 'false' }); weights.value = c.variation_weights == null ? '' : json(c.variation_weights);
            const variations = section('variations', 'Variations', saveForm('variations-form', () => ({
                variations: parseJson(vars.value, 'Variations'),
                on_variation: onVar.value === '' ? null : Number(onVar.value),
                off_variation: offVar.value === '' ? null : Number(offVar.value),
                variation_weights: parseJson(weights.value, 'Weights'),
            }), field('Variations (JSON array; for every environment)', vars),
            h('div', { class: 'row' }, field('On variation (index)', onVar), field('Off variation (index)', offVar)),
            field('Variation weights (JSON array; empty: none)', weights)));

            // prerequisites, read-only
            const prereqs = section('prerequisites', 'Prerequisites',
                (f.prerequisites || []).length
                    ? h('table', {}, h('thead', {}, h('tr', {}, ['Flag', 'Must be', 'Variation'].map((t) => h('th', { scope: 'col', text: t })))),
                        h('tbody', {}, f.prerequisites.map((p) => h('tr', {},
                            h('td', {}, h('a', { class: 'mono', href: `#/flag/${enc(p.key)}${q({ environment: env })}`, text: p.key })),
                            h('td', { text: p.enabled === false ? 'off' : 'on' }),
                            h('td', { class: 'mono', text: p.variation == null ? '' : `${p.variation} (${json(p.value)})` })))))
                    : h('p', { class: 'muted', text: 'None. (Prerequisites are changed in SQL: add_prerequisite.)' }));

            node.replaceChildren(head, targeting, rulesSection, rollout, variations, prereqs,
                evaluationTester(key, env), compareSection(key, env, f), historySection(key));
            if (saved && document.getElementById(saved)) message(document.getElementById(saved), 'ok', 'Saved.');
            saved = null;
        }

        async function refresh(force) {
            try {
                const data = await api('GET', `/api/v1/flags/${enc(key)}${q({ environment: env })}`, undefined, force ? undefined : pollKey);
                if (data === null) return;
                const f = data.flag || data;
                if (flag && dirty && (f.version !== flag.version || (f.config || {}).version !== (flag.config || {}).version)) {
                    notice(`${key} was changed elsewhere; save or reload to see it.`);
                    return;
                }
                const first = !flag;
                flag = f;
                if (first || !dirty) {
                    const active = document.activeElement && document.activeElement.id;
                    draw();
                    notice('');
                    if (active && document.getElementById(active)) document.getElementById(active).focus();
                }
            } catch (e) {
                if (!flag) node.replaceChildren(h('h1', { class: 'mono', text: key }), errBox);
                message(errBox, 'error', String(e));
            }
        }
        // anything typed on the page (a form, the tester's context) is kept from the poll's redraw
        node.addEventListener('input', markDirty);
        return { node, refresh: () => refresh(true), poll: () => refresh(false), focusSelector: 'h1' };
    }

    function evaluationTester(key, env) {
        const ctx = h('textarea', { rows: 4, name: 'context', id: 'eval-context', spellcheck: 'false' });
        ctx.value = json({ key: 'user-1', role: 'member' });
        const out = h('div', { id: 'eval-result', 'aria-live': 'polite' });
        const form = h('form', { id: 'eval-form' }, field('Context (JSON: key, role, attributes)', ctx),
            h('div', { class: 'actions' }, h('button', { type: 'submit', text: 'Evaluate' })), out);
        form.addEventListener('submit', async (ev) => {
            ev.preventDefault();
            try {
                const context = parseJson(ctx.value, 'Context') || {};
                const r = await api('POST', `/api/v1/flags/${enc(key)}/evaluate${q({ environment: env })}`, { context });
                const x = r.result || r;
                out.replaceChildren(h('dl', { class: 'diff' },
                    h('dt', { text: 'Value' }), h('dd', { class: 'mono', text: json(x.value) }),
                    h('dt', { text: 'Enabled' }), h('dd', { text: String(x.enabled) }),
                    h('dt', { text: 'Reason' }), h('dd', { class: 'mono', text: `${x.reason || ''}${x.rule ? ` (rule ${x.rule})` : ''}${x.bucket ? ` bucket ${x.bucket}` : ''}` }),
                    h('dt', { text: 'Everything' }), h('dd', {}, h('pre', { class: 'mono', text: json(x) }))));
            } catch (e) {
                message(out, 'error', e.status === 404 || e.status === 405 ? `The server has no evaluation endpoint: ${e}` : String(e));
            }
        });
        return h('section', { class: 'card', id: 'evaluate', 'aria-labelledby': 'evaluate-title' },
            h('h2', { id: 'evaluate-title', text: `Evaluation tester (${env})` }), form);
    }

    function compareSection(key, env, flag) {
        const others = state.environments.map((e) => e.name).filter((n) => n !== env);
        const out = h('div', { id: 'compare-result' });
        const box = h('div');
        let other = others[0] || '';
        let otherFlag = null;
        const sel = h('select', { id: 'compare-env' }, others.map((n) => h('option', { value: n, text: n })));
        const copyTo = h('button', { type: 'button', id: 'copy-to', class: 'secondary', text: 'Copy this config there' });
        const copyFrom = h('button', { type: 'button', id: 'copy-from', class: 'secondary', text: 'Copy that config here' });
        async function load() {
            other = sel.value;
            try {
                const d = await api('GET', `/api/v1/flags/${enc(key)}${q({ environment: other })}`);
                otherFlag = d.flag || d;
                const a = flag.config || {}, b = otherFlag.config || {};
                out.replaceChildren(h('table', {},
                    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Field' }), h('th', { scope: 'col', text: env }), h('th', { scope: 'col', text: other }))),
                    h('tbody', {}, CONFIG_FIELDS.map((k) => {
                        const same = JSON.stringify(a[k] ?? null) === JSON.stringify(b[k] ?? null);
                        return h('tr', {}, h('th', { scope: 'row', class: 'mono', text: k }),
                            h('td', { class: `mono${same ? '' : ' differs'}`, text: json(a[k] ?? null) }),
                            h('td', { class: `mono${same ? '' : ' differs'}`, text: json(b[k] ?? null) }));
                    }))));
            } catch (e) { message(out, 'error', String(e)); }
        }
        async function copy(from, to, cfg) {
            if (!(await confirmDialog(`Copy ${key} from ${from} to ${to}?`,
                `${to}'s config of ${key} (on/off, targeting, rules, rollout, schedule, variations) becomes ${from}'s.${isProduction(to) ? ' This changes production.' : ''}`, 'Copy'))) return;
            const updates = {};
            for (const k of CONFIG_FIELDS) if (k in cfg) updates[k] = cfg[k];
            try {
                await api('PATCH', `/api/v1/flags/${enc(key)}${q({ environment: to })}`, updates);
                message(box, 'ok', `Copied from ${from} to ${to}.`);
            } catch (e) { message(box, 'error', String(e)); }
            load();
        }
        sel.addEventListener('change', load);
        copyTo.addEventListener('click', () => copy(env, other, flag.config || {}));
        copyFrom.addEventListener('click', () => otherFlag && copy(other, env, otherFlag.config || {}));
        if (others.length) setTimeout(load, 0);
        return h('section', { class: 'card', id: 'compare', 'aria-labelledby': 'compare-title' },
            h('h2', { id: 'compare-title', text: 'Compare with another environment' }),
            others.length ? [h('div', { class: 'row' }, field('Other environment', sel), h('div', {}, copyTo, ' ', copyFrom)), box, out]
                : h('p', { class: 'muted', text: 'No other environment.' }));
    }

    // Old and new values of an audit row: the fields that changed, each old
    // (struck out) and new; a row with one side only (an insert, a delete) as
    // that side, on one line.
    const compact = (v) => JSON.stringify(v === undefined ? null : v);
    function diffNode(oldV, newV) {
        if (!oldV || !newV) {
            const v = oldV || newV;
            if (!v) return h('span', { class: 'muted', text: '' });
            return h('div', { class: 'mono one-side' }, oldV ? h('del', { text: compact(v) }) : h('ins', { text: compact(v) }));
        }
        const keys = [...new Set([...Object.keys(oldV), ...Object.keys(newV)])]
            .filter((k) => compact(oldV[k]) !== compact(newV[k]) && !['updated_at', 'version'].includes(k));
        if (!keys.length) return h('span', { class: 'muted', text: 'no field changed' });
        return h('dl', { class: 'diff' }, keys.map((k) => [
            h('dt', { class: 'mono', text: k }),
            h('dd', { class: 'mono' },
                k in oldV ? h('del', { text: compact(oldV[k]) }) : '', k in oldV && k in newV ? ' → ' : '',
                k in newV ? h('ins', { text: compact(newV[k]) }) : ''),
        ]));
    }

    function historySection(key) {
        const out = h('div', { id: 'history-rows' }, h('p', { class: 'muted', text: 'Loading…' }));
        api('GET', `/api/v1/flags/${enc(key)}/audit`).then((d) => {
            const rows = list(d, 'audit');
            out.replaceChildren(rows.length ? auditTable(rows) : h('p', { class: 'muted', text: 'No audit rows.' }));
        }).catch((e) => message(out, 'error', String(e)));
        return h('section', { class: 'card', id: 'history', 'aria-labelledby': 'history-title' },
            h('h2', { id: 'history-title', text: 'History' }), out);
    }

    function auditTable(rows) {
        return h('table', { class: 'audit' },
            h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'What', 'Change'].map((t) => h('th', { scope: 'col', text: t })))),
            h('tbody', {}, rows.map((r) => h('tr', { 'data-id': r.id },
                h('td', { text: fmtTime(r.occurred_at) }),
                h('td', { text: `${r.role || r.actor || ''}${r.actor && r.role && r.role !== r.actor ? ` (session of ${r.actor})` : ''}` }),
                h('td', { class: 'mono', text: r.action }),
                h('td', { class: 'mono', text: `${r.resource_type || ''} ${r.resource_id || ''}${r.tenant ? ` [${r.tenant}]` : ''}` }),
                h('td', {}, diffNode(r.old_values, r.new_values))))));
    }

    const AUDIT_FILTERS = [['since', 'Since', 'datetime-local'], ['until', 'Until', 'datetime-local'], ['actor', 'Actor', 'text'],
        ['role', 'Role', 'text'], ['action', 'Action', 'text'], ['resource_type', 'Resource type', 'text'],
        ['resource_id', 'Resource id', 'text'], ['limit', 'Rows (at most)', 'number']];

    function viewAudit(params) {
        const out = h('div', { id: 'audit-rows' });
        const pollKey = nextId('audit');
        const inputs = {};
        const form = h('form', { class: 'row', id: 'audit-filters', role: 'search' },
            AUDIT_FILTERS.map(([n, label, type]) => {
                inputs[n] = h('input', { type, name: n, value: params.get(n) || '' });
                return field(label, inputs[n]);
            }), h('div', {}, h('button', { type: 'submit', text: 'Filter' })));
        const filterParams = () => {
            const p = {};
            for (const [n, , type] of AUDIT_FILTERS) {
                const v = params.get(n);
                if (v) p[n] = type === 'datetime-local' ? fromLocal(v) : v;
            }
            return p;
        };
        const csv = h('a', { id: 'audit-csv', href: `/api/v1/audit${q(Object.assign(filterParams(), { format: 'csv' }))}`, download: 'opsflags-audit.csv', text: 'Download CSV' });
        form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            const p = {};
            for (const n of Object.keys(inputs)) p[n] = inputs[n].value;
            location.hash = `#/audit${q(p)}`;
        });
        async function refresh() {
            try {
                const d = await api('GET', `/api/v1/audit${q(filterParams())}`, undefined, pollKey);
                if (d === null) return;
                const rows = list(d, 'audit');
                out.replaceChildren(rows.length ? auditTable(rows) : h('p', { class: 'muted', text: 'No audit rows match.' }));
            } catch (e) { message(out, 'error', String(e)); }
        }
        return { node: h('div', {}, h('h1', { text: 'Audit log' }), form, h('p', {}, csv), out), refresh, poll: refresh, focus: inputs.since };
    }

    // Operations: whatever of maintenance, deployments, configuration and
    // alerts the server's API has (a 404 says it has not).
    function viewOperations() {
        const parts = {
            maintenance: h('div'), deployments: h('div'), config: h('div'), alerts: h('div'),
        };
        const node = h('div', {}, h('h1', { text: 'Operations' }),
            h('section', { class: 'card', id: 'maintenance', 'aria-labelledby': 'mt-title' }, h('h2', { id: 'mt-title', text: 'Maintenance mode' }), parts.maintenance),
            h('section', { class: 'card', id: 'deployments', 'aria-labelledby': 'dp-title' }, h('h2', { id: 'dp-title', text: 'Deployments' }), parts.deployments),
            h('section', { class: 'card', id: 'config', 'aria-labelledby': 'cf-title' }, h('h2', { id: 'cf-title', text: 'Configuration' }), parts.config),
            h('section', { class: 'card', id: 'alerts', 'aria-labelledby': 'al-title' }, h('h2', { id: 'al-title', text: 'Alerts' }), parts.alerts));
        const tags = { maintenance: nextId('mt'), deployments: nextId('dp'), config: nextId('cf'), alerts: nextId('al') };
        const missing = (box, e) => message(box, e.status === 404 ? 'muted' : 'error', e.status === 404 ? 'Not available from this server’s API.' : String(e));

        async function maintenance() {
            const d = await api('GET', '/api/v1/maintenance', undefined, tags.maintenance);
            if (d === null) return;
            const on = !!d.enabled;
            const box = h('div');
            const btn = h('button', { type: 'button', id: 'maintenance-toggle', class: on ? 'secondary' : 'danger', text: on ? 'End maintenance' : 'Start maintenance' });
            btn.addEventListener('click', async () => {
                if (!(await confirmDialog(on ? 'End maintenance mode?' : 'Start maintenance mode?',
                    on ? 'Writes are allowed again.' : 'Every session\'s writes to tables outside opsflags then fail (SQLSTATE 25006) until it is ended.', on ? 'End' : 'Start'))) return;
                try {
                    await api('PUT', '/api/v1/maintenance', { enabled: !on });
                } catch (e) {
                    message(box, 'error', `Maintenance mode was not changed: ${e}`);
                    return;
                }
                delete state.bodies[tags.maintenance];
                try { await maintenance(); } catch (e) { message(parts.maintenance, 'error', String(e)); }
            });
            parts.maintenance.replaceChildren(h('p', {}, 'Maintenance mode is ', h('strong', { id: 'maintenance-state', text: on ? 'on' : 'off' }),
                d.enforced ? '' : ' (this server does not enforce it: opsflags is not in shared_preload_libraries)'), btn, box);
        }
        async function deployments() {
            const d = await api('GET', '/api/v1/deployments', undefined, tags.deployments);
            if (d === null) return;
            const rows = list(d, 'deployments');
            const box = h('div');
            // a rollback: which deployment, back to which version (one the environment had), why
            const live = rows.filter((r) => r.status === 'success');
            const which = h('select', { name: 'deployment' }, live.map((r) => h('option', { value: r.id, text: `${r.version} in ${r.environment} (${fmtTime(r.deployed_at)})` })));
            const target = h('select', { name: 'target_version' });
            const reason = h('input', { type: 'text', name: 'reason' });
            const targets = () => {
                const cur = rows.find((r) => r.id === which.value);
                const seen = new Set();
                target.replaceChildren(...rows.filter((r) => cur && r.environment === cur.environment && r.id !== cur.id
                    && r.status !== 'failed' && !seen.has(r.version) && seen.add(r.version))
                    .map((r) => h('option', { value: r.version, text: r.version })));
            };
            which.addEventListener('change', targets);
            targets();
            const form = h('form', { id: 'rollback-form', class: 'row' }, field('Deployment', which), field('Back to version', target),
                field('Reason', reason), h('div', {}, h('button', { type: 'submit', class: 'danger', text: 'Roll back' })));
            form.addEventListener('submit', async (ev) => {
                ev.preventDefault();
                const cur = rows.find((r) => r.id === which.value);
                if (!cur || !target.value) { message(box, 'error', 'Choose a deployment and an earlier version.'); return; }
                if (!(await confirmDialog(`Roll ${cur.environment} back to ${target.value}?`,
                    `The deployment of ${cur.version} is marked rolled back and ${cur.environment}'s app_version becomes ${target.value}.`, 'Roll back'))) return;
                try {
                    await api('POST', `/api/v1/deployments/${enc(cur.id)}/rollback`, { target_version: target.value, reason: reason.value || undefined });
                } catch (e) { message(box, 'error', `Not rolled back: ${e}`); return; }
                delete state.bodies[tags.deployments];
                await deployments();
                message(parts.deployments.querySelector('.deploy-msg'), 'ok', `${cur.environment} rolled back to ${target.value}.`);
            });
            parts.deployments.replaceChildren(rows.length ? h('table', { id: 'deployments-table' },
                h('thead', {}, h('tr', {}, ['Version', 'Environment', 'Status', 'Deployed', 'By', 'Commit', 'Rolled back to'].map((t) => h('th', { scope: 'col', text: t })))),
                h('tbody', {}, rows.map((r) => h('tr', { 'data-id': r.id }, h('td', { class: 'mono', text: r.version }), h('td', { text: r.environment }),
                    h('td', {}, h('span', { class: `pill ${r.status === 'success' ? 'on' : 'warn'}`, text: r.status })),
                    h('td', { text: fmtTime(r.deployed_at) }), h('td', { text: r.deployed_by || '' }), h('td', { class: 'mono', text: r.commit_sha || '' }),
                    h('td', { text: r.rollback_to ? `${r.rollback_to}${r.rollback_reason ? ` (${r.rollback_reason})` : ''}` : '' })))))
                : h('p', { class: 'muted', text: 'No deployments.' }), live.length ? form : '', h('div', { class: 'deploy-msg' }), box);
        }
        async function config() {
            const d = await api('GET', '/api/v1/config', undefined, tags.config);
            if (d === null) return;
            const rows = list(d, 'config');
            parts.config.replaceChildren(h('table', {},
                h('thead', {}, h('tr', {}, ['Key', 'Value', 'Environment'].map((t) => h('th', { scope: 'col', text: t })))),
                h('tbody', {}, rows.map((r) => h('tr', {}, h('td', { class: 'mono', text: r.config_key }),
                    h('td', { class: 'mono', text: r.is_sensitive ? '••••••• (secret, not shown)' : json(r.config_value) }),
                    h('td', { text: r.environment || '' }))))));
        }
        async function alerts() {
            const d = await api('GET', '/api/v1/alerts', undefined, tags.alerts);
            if (d === null) return;
            const rows = list(d, 'alerts');
            const box = h('div');
            parts.alerts.replaceChildren(rows.length ? h('table', { id: 'alerts-table' },
                h('thead', {}, h('tr', {}, ['Raised', 'Severity', 'Component', 'Alert', ''].map((t) => h('th', { scope: 'col', text: t })))),
                h('tbody', {}, rows.map((r) => {
                    const b = h('button', { type: 'button', class: 'secondary', 'data-alert': r.id, text: 'Resolve', 'aria-label': `Resolve ${r.title}` });
                    b.addEventListener('click', async () => {
                        try {
                            await api('POST', `/api/v1/alerts/${enc(r.id)}/resolve`, {});
                        } catch (e) { message(box, 'error', `Not resolved: ${e}`); return; }
                        delete state.bodies[tags.alerts];
                        await alerts();
                    });
                    return h('tr', { 'data-id': r.id }, h('td', { text: fmtTime(r.created_at) }),
                        h('td', {}, h('span', { class: `pill ${r.severity === 'info' ? '' : 'warn'}`, text: r.severity })),
                        h('td', { text: r.component || '' }), h('td', {}, h('strong', { text: r.title || r.type || '' }), ' ', r.message || ''),
                        h('td', {}, b));
                }))) : h('p', { class: 'muted', text: 'No open alerts.' }), box);
        }
        const all = { maintenance, deployments, config, alerts };
        async function refresh() {
            await Promise.all(Object.entries(all).map(([k, fn]) => fn().catch((e) => missing(parts[k], e))));
        }
        return { node, refresh, poll: refresh, focusSelector: 'h1' };
    }

    // ---------- routing ----------

    async function route() {
        clearInterval(state.timer);
        notice('');
        state.etags = {};
        state.bodies = {};
        const hash = location.hash.replace(/^#/, '') || '/flags';
        const [path, query] = hash.split('?');
        const params = new URLSearchParams(query || '');
        if (!state.role && path !== '/signin') { location.hash = '#/signin'; return; }
        let view;
        const parts = path.split('/').filter(Boolean);
        if (parts[0] === 'signin') view = viewSignIn();
        else if (parts[0] === 'flag' && parts[1]) view = viewFlag(params, decodeURIComponent(parts[1]));
        else if (parts[0] === 'audit') view = viewAudit(params);
        else if (parts[0] === 'operations') view = viewOperations();
        else view = viewFlags(params);
        state.view = view;
        for (const a of document.querySelectorAll('#nav a')) {
            if (a.dataset.nav === (parts[0] === 'flag' ? 'flags' : parts[0])) a.setAttribute('aria-current', 'page');
            else a.removeAttribute('aria-current');
        }
        const main = $('#main');
        main.replaceChildren(view.node);
        if (view.refresh) await view.refresh();
        const target = view.focus || (view.focusSelector && main.querySelector(view.focusSelector)) || main;
        if (target === main || !target.matches('input,select,textarea,button,a')) target.setAttribute('tabindex', '-1');
        target.focus();
        if (view.poll) {
            state.timer = setInterval(() => {
                if (state.view === view && !document.hidden && !$('#confirm').open) view.poll();
            }, POLL_MS);
        }
        document.body.dataset.view = parts[0] || 'flags';
        document.body.dataset.ready = String(Date.now());
    }

    async function start() {
        $('#sign-out').addEventListener('click', async () => {
            try { await api('DELETE', '/api/v1/session'); } catch (e) { /* gone already */ }
            state.role = state.csrf = null;
            showSignedIn();
            location.hash = '#/signin';
        });
        try {
            takeSession(await api('GET', '/api/v1/session'));
            await loadEnvironments();
        } catch (e) {
            state.role = null;
        }
        window.addEventListener('hashchange', route);
        await route();
    }

    document.addEventListener('DOMContentLoaded', start);
}());
