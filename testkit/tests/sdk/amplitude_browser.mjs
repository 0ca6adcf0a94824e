// Runs Amplitude's real, unmodified browser SDK (npm @amplitude/analytics-browser,
// its script bundle lib/scripts/amplitude-min.js) in Chromium against the
// gateway's HTTP V2 route, through a relay on another origin that answers the
// first stored upload with 503, so the SDK's retry of an already-stored
// upload is exercised.
//
//   node amplitude_browser.mjs NODE_CLIENTS_DIR WEB_DIR GATEWAY_URL WRITE_KEY
//
// Scenario (default settings, autocapture included, but a short flush
// interval and no remote configuration): 10 events, setUserId, an identify,
// 2 more events; the SDK's own page view and session events come along. The
// machine has no internet: requests to anywhere but this machine (Amplitude's
// CDN and diagnostics) are refused and listed. The relay records each upload
// the gateway acknowledged by insert_id; the script waits until every event
// the page tracked is acknowledged and the relay has been idle for 2 s, then
// prints one JSON report.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, webDir, gateway, key] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { relay } = require('./relay.js');
const { site, launch, problems: watch, sleep } = require('./browser.js');
const SDK_DIR = path.join(dir, 'node_modules/@amplitude/analytics-browser');
const BUNDLE = fs.readFileSync(path.join(SDK_DIR, 'lib/scripts/amplitude-min.js'));
const VERSION = JSON.parse(fs.readFileSync(path.join(SDK_DIR, 'package.json'))).version;
const LOCAL = /^(https?:\/\/(localhost|127\.0\.0\.1)[:/]|data:|about:)/;
const PAGE = '<!doctype html><html><head><title>Pricing</title><script src="/amplitude-min.js"></script></head><body><h1>Pricing</h1></body></html>';

(async () => {
  const acked = new Map(); // insert_id → event_type
  const upload = (req, answer) => req.method === 'POST' && answer.status === 200;
  const { server: relayServer, seen, url: relayUrl } = await relay(gateway, {
    headers: ['content-type', 'user-agent', 'origin', 'access-control-request-method', 'access-control-request-headers'],
    // Amplitude reads `code` from the body.
    force: (req, answer) => (upload(req, answer) ? { status: 503, type: 'application/json', body: JSON.stringify({ code: 503, error: 'forced by the test relay' }) } : null),
    observe: (req, body, answer, bytes, forced) => {
      if (forced || !upload(req, answer)) return;
      for (const event of JSON.parse(body.toString('utf8')).events || []) acked.set(event.insert_id, event.event_type);
    },
  });
  const { server: siteServer, url: siteUrl } = await site({ '/amplitude-min.js': ['application/javascript', BUNDLE] }, PAGE);
  const browser = await launch(webDir);
  const page = await browser.newPage();
  const refused = new Set();
  await page.route((url) => !LOCAL.test(url.href), (route) => {
    refused.add(new URL(route.request().url()).host);
    return route.abort('internetdisconnected');
  });
  // The forced 503 and the refused internet show up as failed loads; nothing else may.
  const problems = watch(page, (message) => /503|ERR_INTERNET_DISCONNECTED/.test(message.text()) || !LOCAL.test(message.location().url || ''));
  await page.goto(`${siteUrl}/pricing?utm_source=news`);
  const tracked = await page.evaluate(async ({ key, relayUrl }) => {
    const amplitude = window.amplitude;
    await amplitude.init(key, { serverUrl: `${relayUrl}/2/httpapi`, flushIntervalMillis: 200, fetchRemoteConfig: false }).promise;
    const pending = [];
    for (let i = 0; i < 10; i += 1) pending.push(amplitude.track('ampb_event', { i, sdk: 'analytics-browser' }).promise);
    amplitude.setUserId('ampb-user');
    pending.push(amplitude.identify(new amplitude.Identify().set('plan', 'pro')).promise);
    pending.push(amplitude.track('after_identify', { step: 1 }).promise);
    pending.push(amplitude.track('after_identify', { step: 2 }).promise);
    const results = await Promise.all(pending);
    return {
      device: amplitude.getDeviceId(),
      codes: results.map((r) => r.code),
      insert_ids: results.map((r) => r.event.insert_id),
    };
  }, { key, relayUrl });
  const deadline = Date.now() + 60_000;
  const missing = () => tracked.insert_ids.filter((id) => !acked.has(id));
  while ((missing().length || seen.inflight > 0 || Date.now() - seen.last < 2000) && Date.now() < deadline) await sleep(100);
  await browser.close();
  relayServer.close();
  siteServer.close();
  const stored = {};
  for (const name of acked.values()) stored[name] = (stored[name] || 0) + 1;
  console.log(JSON.stringify({
    version: VERSION, ...tracked, missing: missing(), problems, refused: [...refused].sort(),
    relay: { ...seen, stored, acked: acked.size },
  }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
