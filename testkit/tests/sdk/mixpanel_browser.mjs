// Runs Mixpanel's real, unmodified browser SDK (npm mixpanel-browser, its UMD
// bundle) in Chromium against the gateway, through a relay on another origin
// (CORS with credentials: the SDK's XHR sets withCredentials) that answers the
// first stored `/track` batch with 503, so the SDK's batch retry of events
// already stored is exercised.
//
//   node mixpanel_browser.mjs NODE_CLIENTS_DIR WEB_DIR GATEWAY_URL WRITE_KEY
//
// Scenario (default settings but a short flush interval): init with
// track_pageview (a page view), 10 events, identify (the SDK's `$identify`),
// people.set (an `/engage` update), 2 more events. The relay decodes every
// body it forwards (form `data=`, base64 or JSON) and records what the gateway
// acknowledged: track events by `$insert_id`, engage updates by count. The
// script waits until every tracked event is acknowledged and the relay has
// been idle for 2 s, then prints one JSON report.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, webDir, gateway, key] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { relay, UNAVAILABLE } = require('./relay.js');
const { site, launch, problems: watch, sleep } = require('./browser.js');
const SDK_DIR = path.join(dir, 'node_modules/mixpanel-browser');
const BUNDLE = fs.readFileSync(path.join(SDK_DIR, 'dist/mixpanel.umd.js'));
const VERSION = JSON.parse(fs.readFileSync(path.join(SDK_DIR, 'package.json'))).version;
const TRACKED = 14; // page view, 10 events, $identify, 2 events
const PAGE = '<!doctype html><html><head><title>Pricing</title><script src="/mixpanel.umd.js"></script></head><body><h1>Pricing</h1></body></html>';

/** The records of a Mixpanel request: `data` from a form body or the query, base64 or JSON. */
function records(req, body) {
  const text = body.toString('utf8');
  const query = new URL(req.url, 'http://relay').searchParams;
  const data = (text && new URLSearchParams(text).get('data')) || query.get('data') || '';
  const json = /^\s*[[{]/.test(data) ? data : Buffer.from(data, 'base64').toString('utf8');
  const parsed = JSON.parse(json);
  return Array.isArray(parsed) ? parsed : [parsed];
}

(async () => {
  const acked = new Map(); // $insert_id → event name
  const engaged = [];
  const track = (req, answer) => req.method === 'POST' && /^\/track\/?$/.test(req.url.split('?')[0]) && answer.status === 200;
  const { server: relayServer, seen, url: relayUrl } = await relay(gateway, {
    headers: ['content-type', 'user-agent', 'origin', 'access-control-request-method', 'access-control-request-headers'],
    force: (req, answer) => (track(req, answer) ? UNAVAILABLE : null),
    observe: (req, body, answer, bytes, forced) => {
      if (forced || answer.status !== 200 || req.method === 'OPTIONS') return;
      const route = req.url.split('?')[0].replace(/\/$/, '');
      if (route === '/track') for (const r of records(req, body)) acked.set(r.properties.$insert_id, r.event);
      if (route === '/engage') for (const r of records(req, body)) engaged.push(Object.keys(r).filter((k) => k.startsWith('$') && k !== '$token').sort().join(','));
    },
  });
  const { server: siteServer, url: siteUrl } = await site({ '/mixpanel.umd.js': ['application/javascript', BUNDLE] }, PAGE);
  const browser = await launch(webDir);
  const page = await browser.newPage();
  const problems = watch(page);
  await page.goto(`${siteUrl}/pricing?utm_source=news`);
  const anonymous = await page.evaluate(async ({ key, relayUrl }) => {
    const mp = await new Promise((resolve) => {
      window.mixpanel.init(key, { api_host: relayUrl, track_pageview: true, batch_flush_interval_ms: 300, loaded: resolve });
    });
    for (let i = 0; i < 10; i += 1) mp.track('mpb_event', { i, sdk: 'mixpanel-browser' });
    const before = mp.get_distinct_id();
    mp.identify('mpb-user');
    mp.people.set({ plan: 'pro' });
    mp.track('after_identify', { step: 1 });
    mp.track('after_identify', { step: 2 });
    return before;
  }, { key, relayUrl });
  const deadline = Date.now() + 90_000;
  while ((acked.size < TRACKED || seen.inflight > 0 || Date.now() - seen.last < 2000) && Date.now() < deadline) await sleep(100);
  await browser.close();
  relayServer.close();
  siteServer.close();
  const stored = {};
  for (const name of acked.values()) stored[name] = (stored[name] || 0) + 1;
  console.log(JSON.stringify({ version: VERSION, anonymous, problems, relay: { ...seen, stored, engaged, acked: acked.size } }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
