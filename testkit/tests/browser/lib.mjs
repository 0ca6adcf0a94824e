// Helpers of dashboard.mjs: environment, Chromium, a tiny test runner, page
// watchers, "settled" detection, API calls (from the page with its session
// cookie, or from Node with the read key) and a throw-away HTTP server.
// Node's standard library and playwright-core (resolved from web/) only.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = path.resolve(here, '../../../web');
const { chromium } = createRequire(path.join(WEB_DIR, 'package.json'))('playwright-core');

// ---------------------------------------------------------------- environment

const NAMES = [
  'TALLY_BASE', 'TALLY_GATEWAY', 'TALLY_APP', 'TALLY_OTHER_APP', 'TALLY_ADMIN_EMAIL', 'TALLY_ADMIN_PASSWORD',
  'TALLY_VIEWER_EMAIL', 'TALLY_VIEWER_PASSWORD', 'TALLY_THROTTLE_EMAIL', 'TALLY_WRITE_KEY', 'TALLY_READ_KEY', 'TALLY_SHOTS',
];

export function readEnv() {
  const missing = NAMES.filter((n) => !process.env[n]);
  if (missing.length) {
    console.log(`not ok - environment\n  missing: ${missing.join(', ')}\n0 passed, 1 failed`);
    process.exit(1);
  }
  const e = Object.fromEntries(NAMES.map((n) => [n.replace(/^TALLY_/, ''), process.env[n]]));
  e.BASE = e.BASE.replace(/\/+$/, '');
  e.GATEWAY = e.GATEWAY.replace(/\/+$/, '');
  return e;
}
export const env = readEnv();
/** A marker unique to this run (event names, saved items, paths). */
export const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
export const analyticsPath = (app = env.APP) => `/api/v1/analytics/${encodeURIComponent(app)}`;

// ---------------------------------------------------------------- browser

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Chromium with a fresh profile (--user-data-dir, removed by close()); tests open their own contexts in it. */
export async function startBrowser() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-browser-e2e-'));
  const persistent = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
  });
  return {
    browser: persistent.browser(),
    async close() {
      await persistent.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- runner

const tests = [];
/** Registers a test: fn({page, context, browser, note}); note(text) adds to its "ok" line. */
export const test = (name, fn, { timeout = 120_000 } = {}) => tests.push({ name, fn, timeout });

export async function runAll(browser) {
  let passed = 0;
  let failed = 0;
  const only = process.env.TALLY_E2E_ONLY || '';
  for (const t of tests) {
    if (only && !t.name.includes(only)) continue;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const notes = [];
    const started = Date.now();
    let timer;
    try {
      await Promise.race([
        t.fn({ page, context, browser, note: (s) => notes.push(s) }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`test timed out after ${t.timeout} ms`)), t.timeout);
        }),
      ]);
      passed += 1;
      console.log(`ok - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)${notes.length ? `\n  ${notes.join('\n  ')}` : ''}`);
    } catch (err) {
      failed += 1;
      const text = String(err && err.stack ? err.stack : err).split('\n').slice(0, 8).join('\n  ');
      console.log(`not ok - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)\n  ${text}${notes.length ? `\n  ${notes.join('\n  ')}` : ''}`);
      const shot = path.join(env.SHOTS, `fail-${String(passed + failed).padStart(2, '0')}.png`);
      if (!page.isClosed()) await page.screenshot({ path: shot, fullPage: true, timeout: 5000 }).then(() => console.log(`  failure screenshot: ${shot} (${page.url()})`), () => {});
    } finally {
      clearTimeout(timer);
      await context.close().catch(() => {});
    }
  }
  return { passed, failed };
}

// ---------------------------------------------------------------- watching a page

/**
 * Collects what must not happen on a page: console errors, uncaught errors,
 * failed requests (other than aborted ones) and error statuses of the
 * dashboard's origin. `allow(entry)` may excuse one ({kind, text, url, status}).
 * Also counts the requests in flight (for settle()).
 */
export function watch(page, allow = () => false) {
  const problems = [];
  const inflight = new Set();
  const add = (entry) => {
    if (!allow(entry)) problems.push(entry);
  };
  page.on('console', (m) => {
    if (m.type() === 'error') add({ kind: 'console', text: m.text(), url: m.location().url || '' });
  });
  page.on('pageerror', (e) => add({ kind: 'pageerror', text: e.message, url: page.url() }));
  page.on('request', (r) => {
    if (r.resourceType() !== 'eventsource' && !r.url().includes('/live/stream')) inflight.add(r);
  });
  // 'response' is dispatched in order with the console messages (no round trip), so a
  // caller can tell what happened before a given moment.
  page.on('response', (res) => {
    if (res.status() >= 400 && res.url().startsWith(env.BASE)) add({ kind: 'status', status: res.status(), text: `${res.request().method()} ${res.url()} → ${res.status()}`, url: res.url() });
  });
  page.on('requestfinished', (r) => inflight.delete(r));
  page.on('requestfailed', (r) => {
    inflight.delete(r);
    const why = r.failure() ? r.failure().errorText : '';
    if (!/ERR_ABORTED/.test(why)) add({ kind: 'requestfailed', text: `${r.method()} ${r.url()} ${why}`, url: r.url() });
  });
  problems.inflight = inflight;
  problems.assertNone = (what = '') => assert.deepEqual(problems.map((p) => `${p.kind}: ${p.text}`), [], `unexpected errors ${what}`);
  return problems;
}

const BUSY = '[data-testid=loading], [aria-busy=true], .refreshing, .skeleton, [data-testid=splash]';

/**
 * Waits until the page has nothing loading: no request in flight (of those
 * watch() counts) and no loading/refreshing marker, twice in a row 100 ms apart.
 */
export async function settle(page, problems, { timeout = 20_000 } = {}) {
  const deadline = Date.now() + timeout;
  let calm = 0;
  for (;;) {
    const busy = problems.inflight.size > 0 || (await page.evaluate((sel) => !!document.querySelector(sel), BUSY));
    calm = busy ? 0 : calm + 1;
    if (calm >= 2) return;
    if (Date.now() > deadline) {
      const pending = [...problems.inflight].map((r) => r.url()).join(', ');
      throw new Error(`page did not settle within ${timeout} ms (in flight: ${pending || 'none'}; busy marker: ${await page.evaluate((sel) => document.querySelector(sel)?.outerHTML.slice(0, 120) || 'none', BUSY)})`);
    }
    await page.waitForTimeout(100);
  }
}

/** No panel, form or boot error on the page. */
export async function assertNoErrorStates(page, where) {
  const errors = await page.$$eval('[data-testid=error], [data-testid=boot-error], [data-testid=not-found], [role=alert].form-error', (els) => els.map((e) => e.textContent.trim().slice(0, 200)));
  assert.deepEqual(errors, [], `error states shown on ${where}`);
}

// ---------------------------------------------------------------- signing in

/** Signs in through the login form (from /login?next=…); resolves once the app page is there. */
export async function login(page, email = env.ADMIN_EMAIL, password = env.ADMIN_PASSWORD, next = `/app/${env.APP}/overview`) {
  await page.goto(`${env.BASE}/login?next=${encodeURIComponent(next)}`);
  await submitLogin(page, email, password);
  await page.waitForURL((u) => u.pathname === next.split('?')[0]);
}

export async function submitLogin(page, email, password) {
  await page.fill('[data-testid=login-email]', email);
  await page.fill('[data-testid=login-password]', password);
  const answer = page.waitForResponse((r) => r.url() === `${env.BASE}/api/v1/auth/login` && r.request().method() === 'POST');
  await page.click('[data-testid=login-submit]');
  const res = await answer;
  if (res.status() !== 200) throw new Error(`login of ${email}: HTTP ${res.status()} ${await res.text()}`);
  return res;
}

// ---------------------------------------------------------------- API calls

/** A request made by the page itself (same origin, its session cookie): {status, body}. */
export async function pageApi(page, p, body, method = body === undefined ? 'GET' : 'POST') {
  return page.evaluate(
    async ([p, body, method]) => {
      const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
      if (body !== undefined) {
        init.headers['content-type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      const r = await fetch(p, init);
      const text = await r.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = { raw: text };
      }
      return { status: r.status, body: json };
    },
    [p, body, method],
  );
}

/** POST {BASE}/api/v1/analytics/{APP}/{endpoint} from Node with the read key; the JSON answer (throws unless 200). */
export async function readApi(endpoint, body) {
  const res = await fetch(`${env.BASE}${analyticsPath()}/${endpoint}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${env.READ_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${endpoint}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** Records the JSON bodies the page POSTs to the API and the answers it got: [{path, body, status, answer, done}] (`done`: the answer has been read). */
export function recordApi(page, match = /\/api\/v1\//) {
  const seen = [];
  page.on('requestfinished', async (r) => {
    if (r.method() !== 'POST' || !match.test(r.url())) return;
    const entry = { path: new URL(r.url()).pathname, body: null, status: 0, answer: null };
    try {
      entry.body = JSON.parse(r.postData() || 'null');
    } catch {
      entry.body = r.postData();
    }
    seen.push(entry);
    entry.done = (async () => {
      const res = await r.response().catch(() => null);
      if (res) {
        entry.status = res.status();
        entry.answer = await res.json().catch(() => null);
      }
    })();
  });
  return seen;
}

// ---------------------------------------------------------------- the page against the API

/**
 * Compares what the page shows with the API's answers to the same bodies, asked
 * from the page (same origin, cookie) once the page has settled. The page must
 * itself have sent each body (recorded by recordApi). A difference is excused
 * only as a race, and then both are read again after a reload (at most three
 * times): the page's answer and ours resolved a relative range ("7d") to
 * different 5-s buckets, or rows of an earlier step's events (the realtime
 * test's ping: its visit) were still arriving when the page asked. A real
 * difference persists through the reloads.
 * items: [{endpoint, bodies: [..], dom: async () => value, expect: (answers) => value}].
 */
export async function matchApi(page, problems, rec, items, what, note) {
  for (let attempt = 1; ; attempt++) {
    await settle(page, problems);
    const doms = [];
    for (const it of items) doms.push(await it.dom());
    const answers = [];
    for (const it of items) {
      const got = [];
      for (const body of it.bodies) {
        const r = await pageApi(page, `${analyticsPath()}/${it.endpoint}`, body);
        assert.equal(r.status, 200, `${it.endpoint} ${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
        got.push(r.body);
      }
      answers.push(got);
    }
    const diffs = [];
    let raced = false;
    for (const [i, it] of items.entries()) {
      for (const [j, body] of it.bodies.entries()) {
        const sent = rec.filter((r) => r.path === `${analyticsPath()}/${it.endpoint}` && isDeepStrictEqual(r.body, body)).pop();
        if (sent) await sent.done;
        if (!sent) diffs.push(`the page never sent ${it.endpoint} ${JSON.stringify(body)} (it sent: ${rec.map((r) => JSON.stringify(r.body)).join(' | ')})`);
        else if (sent.answer && (sent.answer.to_ms !== answers[i][j].to_ms || sent.answer.from_ms !== answers[i][j].from_ms)) raced = true;
      }
      const expected = it.expect(answers[i]);
      if (!isDeepStrictEqual(doms[i], expected)) diffs.push(`${it.name || it.endpoint}: page shows ${JSON.stringify(doms[i])}, API answers ${JSON.stringify(expected)}`);
    }
    if (!diffs.length) return { doms, answers };
    if (attempt >= 3) throw new Error(`${what}: the page differs from the API (after ${attempt - 1} reloads):\n${diffs.join('\n')}`);
    note(raced
      ? `${what}: a 5-s range bucket passed between the page's request and ours; reading both again`
      : `${what}: the page's answers and ours differ (rows still arriving?); reading both again:\n${diffs.join('\n')}`);
    rec.length = 0;
    await page.reload();
  }
}

// ---------------------------------------------------------------- waiting

/** Calls fn() until it returns a truthy value (returned), at most `timeout` ms; `interval` between calls. */
export async function poll(fn, { timeout = 30_000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** data-value of the first element matching `sel` ('' when empty, null when absent). */
export const dataValue = (page, sel) => page.locator(sel).first().getAttribute('data-value', { timeout: 5000 });

/** The expected data-value text of an API number (the page writes String(n), '' for null). */
export const shown = (v) => (v === null || v === undefined ? '' : String(v));

// ---------------------------------------------------------------- a throw-away web server

/** Serves `routes` ({'/path': (req, url) => ({type, body}) }) on 127.0.0.1:random; {port, close()}. */
export async function serve(routes) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const route = routes[url.pathname] || Object.entries(routes).find(([k]) => k.endsWith('*') && url.pathname.startsWith(k.slice(0, -1)))?.[1];
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const { type = 'text/html; charset=utf-8', body } = route(req, url);
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * What Chromium's network stack itself did for requests whose URL passes `match`
 * (through the DevTools protocol: the headers really sent — Cookie, Origin —,
 * the cookies it withheld and why, the HTTP status even of a response CORS hides
 * from the page, the body of a sendBeacon). Returns a live array of
 * {id, url, method, type, headers, withheld, status, failed, postData()}.
 */
export async function networkLog(context, page, match) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const byId = new Map();
  const list = [];
  const entry = (id) => {
    if (!byId.has(id)) byId.set(id, { id, url: null, headers: {}, withheld: [], status: null, failed: null });
    return byId.get(id);
  };
  const lower = (h) => Object.fromEntries(Object.entries(h || {}).map(([k, v]) => [k.toLowerCase(), v]));
  cdp.on('Network.requestWillBeSent', (e) => {
    if (!match(e.request.url)) return;
    const x = entry(e.requestId);
    Object.assign(x, { url: e.request.url, method: e.request.method, type: e.type });
    x.headers = { ...lower(e.request.headers), ...x.headers };
    x.postData = () => cdp.send('Network.getRequestPostData', { requestId: e.requestId }).then((d) => d.postData, () => null);
    list.push(x);
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    const x = entry(e.requestId);
    x.headers = { ...x.headers, ...lower(e.headers) };
    x.withheld = (e.associatedCookies || []).filter((c) => c.blockedReasons.length).map((c) => `${c.cookie.name} (${c.blockedReasons.join(', ')})`);
  });
  cdp.on('Network.responseReceivedExtraInfo', (e) => {
    entry(e.requestId).status = e.statusCode;
  });
  cdp.on('Network.responseReceived', (e) => {
    entry(e.requestId).status = e.response.status;
  });
  cdp.on('Network.loadingFailed', (e) => {
    entry(e.requestId).failed = `${e.errorText}${e.corsErrorStatus ? ` ${e.corsErrorStatus.corsError}` : ''}`;
  });
  return list;
}

/** Waits until Overview shows its KPIs, its four top-10 tables and its chart. */
export async function waitOverview(page) {
  await page.waitForSelector('[data-testid=page-overview]');
  await page.waitForSelector('[data-testid=kpi-visitors-value]');
  for (const id of ['pages', 'sources', 'locations', 'devices']) await page.waitForSelector(`[data-testid=table-${id}]`);
  await page.waitForSelector('[data-testid=chart-overview] canvas');
}

/** Full-page PNG into TALLY_SHOTS; returns the file's path. */
export async function shot(page, name) {
  fs.mkdirSync(env.SHOTS, { recursive: true });
  const file = path.join(env.SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
