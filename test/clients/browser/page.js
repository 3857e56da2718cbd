// page.js: the page's script.  Reads where the flags are from /config.json
// (the HTTP server's URL, a client API key, the flag and the context), shows
// the flag's value in <output id="flag"> ("on" or "off") and shows it again
// on each ConfigurationChanged event.  Each rendering, and an error of the
// provider, is posted to /report for the test to read.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const out = document.getElementById('flag');
let seq = 0;

function report(doc) {
    return fetch('/report', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                              body: JSON.stringify({ seq: ++seq, origin: location.origin, ...doc }) });
}

async function main() {
    const config = await (await fetch('/config.json')).json();
    const client = OpenFeature.getClient();
    const render = (event) => {
        const d = client.getBooleanDetails(config.flag, false);
        out.textContent = d.value ? 'on' : 'off';
        report({ event, value: d.value, reason: d.reason, errorCode: d.errorCode ?? null,
                 text: document.getElementById('flag').textContent });
    };
    client.addHandler(ProviderEvents.Error, (e) => report({ event: 'error', error: String(e?.message) }));
    client.addHandler(ProviderEvents.ConfigurationChanged, () => render('changed'));
    await OpenFeature.setContext(config.context);
    try {
        await OpenFeature.setProviderAndWait(new OFREPWebProvider({
            baseUrl: config.baseUrl,
            headers: [['Authorization', `Bearer ${config.apiKey}`]],
        }));
    } catch (e) {
        out.textContent = 'unavailable';
        await report({ event: 'failed', error: String(e?.message ?? e), text: out.textContent });
        return;
    }
    render('ready');
}

main().catch((e) => report({ event: 'failed', error: String(e?.stack ?? e) }));
