// Runs Plausible's real, unmodified tracker (npm @plausible-analytics/tracker,
// an ES module) in Chromium against the gateway's `/api/event`, through a
// relay on another origin that answers the first stored event with 503 (the
// tracker does not retry: the event must still be counted once).
//
//   node plausible_browser.mjs NODE_CLIENTS_DIR WEB_DIR GATEWAY_URL DOMAIN
//
// Scenario: init with the site's domain and a custom property (automatic page
// view), 3 `Signup` events, a `Purchase` with revenue, a non-interactive
// `Outbound Link: Click`, an SPA navigation with history.pushState (a second
// page view, and the tracker's engagement event for the first page), then the
// page is left (engagement for the second). The relay parses every event it
// forwards and records the gateway's answers; the script waits until the relay
// has been idle for 2 s, then prints one JSON report.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, webDir, gateway, domain] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { relay, UNAVAILABLE } = require('./relay.js');
const { site, launch, problems: watch, sleep } = require('./browser.js');
const TRACKER_DIR = path.join(dir, 'node_modules/@plausible-analytics/tracker');
const TRACKER = fs.readFileSync(path.join(TRACKER_DIR, 'plausible.js'));
const VERSION = JSON.parse(fs.readFileSync(path.join(TRACKER_DIR, 'package.json'))).version;

/** The site's page: the tracker as an ES module, sending to the relay. */
function html(relayUrl) {
  return `<!doctype html><html><head><title>Pricing</title></head><body><h1>Pricing</h1>
<script type="module">
import { init, track } from '/plausible.js';
window.results = [];
window.trackWith = (name, options = {}) => new Promise((resolve) => {
  track(name, { ...options, callback: (result) => { window.results.push({ name, result }); resolve(result); } });
});
init({ domain: ${JSON.stringify(domain)}, endpoint: ${JSON.stringify(`${relayUrl}/api/event`)},
  captureOnLocalhost: true, customProperties: { plan: 'pro' } });
window.ready = true;
</script></body></html>`;
}

(async () => {
  // The first event the gateway stored (202) is answered 503; stored events counted by name.
  const stored = {};
  const { server: relayServer, seen, url: relayUrl } = await relay(gateway, {
    headers: ['content-type', 'user-agent', 'origin'],
    force: (req, answer) => (req.method === 'POST' && answer.status === 202 ? UNAVAILABLE : null),
    observe: (req, body, answer) => {
      if (req.method !== 'POST' || answer.status !== 202) return;
      const { n } = JSON.parse(body.toString('utf8'));
      stored[n] = (stored[n] || 0) + 1;
    },
  });
  const { server: siteServer, url: siteUrl } = await site({ '/plausible.js': ['application/javascript', TRACKER] }, html(relayUrl));
  const browser = await launch(webDir);
  const page = await browser.newPage();
  const problems = watch(page);
  await page.goto(`${siteUrl}/pricing?utm_source=news`);
  await page.waitForFunction(() => window.ready === true);
  const statuses = await page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 3; i += 1) out.push(await window.trackWith('Signup', { props: { method: 'email', i: String(i) } }));
    out.push(await window.trackWith('Purchase', { props: { sku: 'a-1' }, revenue: { amount: 19.99, currency: 'EUR' } }));
    out.push(await window.trackWith('Outbound Link: Click', { props: { url: 'https://other.example/' }, interactive: false }));
    history.pushState({}, '', '/checkout');
    return out.map((result) => (result && result.status) || null);
  });
  // Leave the page: the tracker sends its engagement event (keepalive fetch).
  await page.goto('about:blank');
  const deadline = Date.now() + 30_000;
  while ((seen.inflight > 0 || Date.now() - seen.last < 2000) && Date.now() < deadline) await sleep(100);
  await browser.close();
  relayServer.close();
  siteServer.close();
  console.log(JSON.stringify({ version: VERSION, statuses, problems, relay: { ...seen, stored } }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
