// Runs Snowplow's real, unmodified browser tracker (npm @snowplow/browser-tracker,
// bundled as it ships into one script with the dashboard's esbuild: npm has no
// script-tag build of it) in Chromium against the gateway's tp2 route, through
// a relay on another origin (the tracker's requests carry credentials) that
// answers the first stored POST with 503, so the tracker's retry of events
// already stored is exercised.
//
//   node snowplow_browser.mjs NODE_CLIENTS_DIR WEB_DIR GATEWAY_URL WRITE_KEY
//
// Scenario (default settings: POST, one event per request): setUserId, a page
// view, 3 structured events, a self-describing event. After a failed request
// the tracker keeps its queue (in localStorage) until the next event is
// tracked, as it does against Snowplow's collector: so once the forced 503 has
// been answered, a `checkout` event follows, and the queue goes out with it.
// The relay records the `eid`s the gateway acknowledged; the script waits
// until all 6 are and the relay has been idle for 2 s, then prints one JSON
// report.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, webDir, gateway, key] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { relay, UNAVAILABLE } = require('./relay.js');
const { site, launch, problems: watch, sleep } = require('./browser.js');
const esbuild = createRequire(path.join(webDir, 'package.json'))('esbuild');
const SDK_DIR = path.join(dir, 'node_modules/@snowplow/browser-tracker');
const VERSION = JSON.parse(fs.readFileSync(path.join(SDK_DIR, 'package.json'))).version;
const SENT = 6;
const PAGE = '<!doctype html><html><head><title>Pricing</title><script src="/sp.js"></script></head><body><h1>Pricing</h1></body></html>';

/** The tracker's module as one script defining `window.snowplow`. */
async function bundle() {
  const out = await esbuild.build({
    stdin: { contents: "export * from '@snowplow/browser-tracker';", resolveDir: path.join(dir, 'node_modules'), loader: 'js' },
    bundle: true, format: 'iife', globalName: 'snowplow', write: false, logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

(async () => {
  const acked = new Map(); // eid → event type (e) and name
  const tp2 = (req, answer) => req.method === 'POST' && /tp2\/?$/.test(req.url.split('?')[0]) && answer.status === 200;
  const { server: relayServer, seen, url: relayUrl } = await relay(gateway, {
    headers: ['content-type', 'user-agent', 'origin', 'access-control-request-method', 'access-control-request-headers'],
    force: (req, answer) => (tp2(req, answer) ? UNAVAILABLE : null),
    observe: (req, body, answer, bytes, forced) => {
      if (forced || !tp2(req, answer)) return;
      for (const event of JSON.parse(body.toString('utf8')).data || []) acked.set(event.eid, event.e);
    },
  });
  const { server: siteServer, url: siteUrl } = await site({ '/sp.js': ['application/javascript', await bundle()] }, PAGE);
  const browser = await launch(webDir);
  const page = await browser.newPage();
  const problems = watch(page);
  await page.goto(`${siteUrl}/pricing?utm_source=news`);
  await page.evaluate(({ key, relayUrl }) => {
    const sp = window.snowplow;
    sp.newTracker('sp', relayUrl, { appId: key });
    sp.setUserId('spb-user');
    sp.trackPageView();
    for (let i = 0; i < 3; i += 1) sp.trackStructEvent({ category: 'shop', action: 'add-to-basket', label: `sku-${i}`, value: i });
    sp.trackSelfDescribingEvent({ event: { schema: 'iglu:com.acme/viewed_product/jsonschema/1-0-0', data: { sku: 'a-1' } } });
  }, { key, relayUrl });
  const forced = Date.now() + 30_000;
  while ((seen.forced === 0 || seen.inflight > 0 || Date.now() - seen.last < 1000) && Date.now() < forced) await sleep(100);
  await page.evaluate(() => window.snowplow.trackStructEvent({ category: 'shop', action: 'checkout' }));
  const deadline = Date.now() + 60_000;
  while ((acked.size < SENT || seen.inflight > 0 || Date.now() - seen.last < 2000) && Date.now() < deadline) await sleep(100);
  const cookies = await page.context().cookies();
  const duid = (cookies.find((c) => c.name.startsWith('_sp_id')) || { value: '' }).value.split('.')[0];
  await browser.close();
  relayServer.close();
  siteServer.close();
  const types = {};
  for (const e of acked.values()) types[e] = (types[e] || 0) + 1;
  console.log(JSON.stringify({ version: VERSION, duid, problems, eids: [...acked.keys()], relay: { ...seen, types, acked: acked.size } }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
