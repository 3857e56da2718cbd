// bench/unleash_proxy.js PORT UNLEASH_URL: Unleash's own frontend API server
// (@unleash/proxy, npm, pinned in test/package.json) on PORT, fed by
// UNLEASH_URL/client/features (opsflags' Unleash client API serving the same
// flags), with the client key "bench-secret".  It evaluates the toggles
// itself, with unleash-client, as a real Unleash deployment does.
'use strict';

const path = require('path');
const { createApp } = require(path.join(__dirname, '../test/node_modules/@unleash/proxy'));

const [port, unleashUrl] = process.argv.slice(2);
const app = createApp({
    unleashUrl, unleashApiToken: 'production', clientKeys: ['bench-secret'],
    refreshInterval: 60000, metricsInterval: 600000, logLevel: 'error',
});
app.listen(Number(port), '127.0.0.1');
