// Runs the real, unmodified posthog-js (its snippet bundle, dist/array.js) in
// Chromium against the gateway, through a relay on another origin (so CORS is
// exercised) that answers the first stored capture request with 503, so the
// SDK's retry of an already-stored batch is exercised.
//
//   node posthog_browser.mjs NODE_CLIENTS_DIR WEB_DIR GATEWAY_URL WRITE_KEY
//
// Two instances on one page, as a site may run them:
//   * "main" (default settings: the gateway's remote config offers gzip-js, so
//     its batches are gzipped): a $pageview (captured as an SPA router does), 10 custom events,
//     identify, 2 more events, setPersonProperties (a `$set` event), and 2
//     events sent with sendBeacon (gzip too);
//   * "plain" (disable_compression: true): 3 events as plain JSON and 2 by
//     sendBeacon, which posthog-js then sends form-encoded base64.
// The relay decodes every capture body it forwards (gzip, form, base64, JSON)
// and records the uuids the gateway acknowledged. The script waits until every
// uuid the page captured is acknowledged, then prints one JSON report.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';

const [dir, webDir, gateway, key] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { relay, UNAVAILABLE } = require('./relay.js');
const { site, launch, problems: watch, sleep } = require('./browser.js');
const CAPTURE = /^\/(e|i\/v0\/e|batch|capture)\/?$/;
const ARRAY_JS = fs.readFileSync(path.join(dir, 'node_modules/posthog-js/dist/array.js'));
const VERSION = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules/posthog-js/package.json'))).version;
const PAGE = '<!doctype html><html><head><title>Pricing</title><script src="/array.js"></script></head><body><h1>Pricing</h1></body></html>';

/** The events of a capture body, whatever its wrapping. */
function captureEvents(headers, body) {
  let bytes = body;
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = zlib.gunzipSync(bytes);
  let text = bytes.toString('utf8');
  const form = /x-www-form-urlencoded/.test(headers['content-type'] || '') || text.startsWith('data=');
  const encodings = [];
  if (body !== bytes) encodings.push('gzip');
  if (form) {
    const data = new URLSearchParams(text).get('data') || '';
    if (/^\s*[[{]/.test(data)) {
      text = data;
      encodings.push('form-json');
    } else {
      text = Buffer.from(data, 'base64').toString('utf8');
      encodings.push('form-base64');
    }
  }
  if (!encodings.length) encodings.push('json');
  const parsed = JSON.parse(text);
  const events = Array.isArray(parsed) ? parsed : parsed.batch || [parsed];
  return { events, encoding: encodings.join('+') };
}

(async () => {
  // The first capture fetch the gateway stored is answered 503 (never a beacon:
  // beacons are not retried); every capture body is decoded and its uuids kept.
  const encodings = {};
  const acked = new Map();
  const capture = (req, answer) => req.method === 'POST' && CAPTURE.test(req.url.split('?')[0]) && answer.status === 200;
  const { server: relayServer, seen, url: relayUrl } = await relay(gateway, {
    headers: ['content-type', 'content-encoding', 'user-agent', 'origin', 'access-control-request-method', 'access-control-request-headers'],
    force: (req, answer) => (capture(req, answer) && req.headers['sec-fetch-mode'] === 'cors' ? UNAVAILABLE : null),
    observe: (req, body, answer, bytes, forced) => {
      if (!capture(req, answer)) return;
      const { events, encoding } = captureEvents(req.headers, body);
      encodings[encoding] = (encodings[encoding] || 0) + 1;
      if (!forced) for (const event of events) acked.set(event.uuid, event.event);
    },
  });
  const { server: siteServer, url: siteUrl } = await site({ '/array.js': ['application/javascript', ARRAY_JS] }, PAGE);
  const browser = await launch(webDir);
  const page = await browser.newPage();
  const problems = watch(page, (message) => /status of 503/.test(message.text()));
  page.on('requestfailed', (request) => {
    // A beacon's request may be reported failed though it was sent; the relay's acknowledgements decide.
    if (request.resourceType() !== 'ping') problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  await page.goto(`${siteUrl}/pricing?utm_source=news`);
  const captured = await page.evaluate(async ({ key, relayUrl }) => {
    const uuids = [];
    const before_send = (event) => { if (event) uuids.push(event.uuid); return event; };
    const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    const main = await new Promise((resolve) => {
      window.posthog.init(key, {
        api_host: relayUrl, autocapture: false, capture_pageview: false, capture_pageleave: false, before_send, loaded: resolve,
      });
    });
    // The remote config (and with it the compression choice) arrives asynchronously.
    for (let i = 0; i < 100 && main.compression === undefined; i += 1) await wait(50);
    // A single-page app's page view, as its router captures it.
    main.capture('$pageview');
    for (let i = 0; i < 10; i += 1) main.capture('ph_browser_event', { i, sdk: 'posthog-js' });
    const anonymous = main.get_distinct_id();
    main.identify('ph-browser-user', { plan: 'pro' });
    main.capture('after_identify', { step: 1 });
    main.capture('after_identify', { step: 2 });
    main.setPersonProperties({ company: 'acme' }, { first_page: 'pricing' });
    main.capture('beacon_event', { via: 'gzip' }, { transport: 'sendBeacon' });
    main.capture('beacon_event', { via: 'gzip' }, { transport: 'sendBeacon' });
    const plain = await new Promise((resolve) => {
      window.posthog.init(key, {
        api_host: relayUrl, autocapture: false, capture_pageview: false, capture_pageleave: false,
        disable_compression: true, before_send, loaded: resolve,
      }, 'plain');
    });
    for (let i = 0; i < 3; i += 1) plain.capture('plain_event', { i });
    plain.capture('beacon_event', { via: 'base64' }, { transport: 'sendBeacon' });
    plain.capture('beacon_event', { via: 'base64' }, { transport: 'sendBeacon' });
    return { uuids, compression: main.compression ?? null, anonymous };
  }, { key, relayUrl });

  // Every captured uuid acknowledged by the gateway (the forced one after posthog-js's retry).
  const deadline = Date.now() + 60_000;
  const missing = () => captured.uuids.filter((uuid) => !acked.has(uuid));
  while (missing().length && Date.now() < deadline) await sleep(200);
  await browser.close();
  relayServer.close();
  siteServer.close();
  const names = {};
  for (const name of acked.values()) names[name] = (names[name] || 0) + 1;
  console.log(JSON.stringify({
    version: VERSION,
    captured: captured.uuids.length,
    missing: missing(),
    compression: captured.compression,
    anonymous_id: captured.anonymous,
    acked: acked.size,
    names,
    problems,
    relay: { requests: seen.requests, forced: seen.forced, paths: seen.paths, encodings },
  }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
