// B7: time from navigation to every Overview panel rendered, in Debian's
// Chromium driven by playwright-core (from web/node_modules). Run by the bench
// (loadgen/src/bench/overview.rs) with:
//   B7_COLD  a query service whose answer cache is off (every panel's query runs)
//   B7_WARM  a query service whose answer cache is on (primed by one load first)
//   B7_EMAIL, B7_PASSWORD, B7_APP, B7_LOADS (10), B7_DAYS (30)
// The range is the last B7_DAYS whole days (a custom range: its statements
// stay the same from load to load, as a shared link's would; a relative
// "30d" moves every 5 s).
// "Rendered": the six KPI values, the time chart's canvas and the four top-10
// tables are on the page, nothing is loading or refreshing, and no panel shows
// an error or loaded empty (either fails the run: the dataset has page views
// every day). Each load is a new tab of one logged-in
// browser (assets come from its cache, as for a returning user).
// A load not rendered within 60 s is a stall: its reasons are kept and the
// load is done again (twice in a row fails the run).
// Prints one JSON line: {"cold_ms": [...], "warm_ms": [...], "stalls": [...]}.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../web/package.json'));
const { chromium } = require('playwright-core');

const env = (name, fallback) => process.env[name] ?? fallback;
const LOADS = Number(env('B7_LOADS', '10'));
const DAYS = Number(env('B7_DAYS', '30'));
const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const RANGE = `custom&from=${day(-DAYS)}&to=${day(-1)}`;
const APP = env('B7_APP');

const rendered = () => {
  const kpis = ['visitors', 'pageviews', 'visits', 'views_per_visit', 'bounce_rate', 'visit_duration'];
  const errors = document.querySelectorAll('[data-testid=error]');
  if (errors.length) return `error: ${errors[0].textContent}`;
  if (document.querySelector('[data-testid=loading], [aria-busy=true]')) return false;
  // The dataset has page views on every day of the range: a panel loaded
  // empty shows a wrong answer, not a slow one.
  const empty = [...document.querySelectorAll('[data-testid=empty]')].map((e) => e.closest('[data-testid^=panel-]')?.dataset.testid || 'a panel');
  if (empty.length) return `error: ${empty.join(', ')} loaded with no data, on a dataset with page views every day of the range`;
  if (!kpis.every((k) => document.querySelector(`[data-testid=kpi-${k}-value]`))) return false;
  if (!document.querySelector('[data-testid=chart-overview] canvas')) return false;
  return ['pages', 'sources', 'locations', 'devices'].every((t) => document.querySelector(`[data-testid=table-${t}]`));
};

// What keeps a load from counting as rendered, for the error of a load that
// never gets there: the unmet conditions, the URL and the page's headline.
const unmet = () => {
  const kpis = ['visitors', 'pageviews', 'visits', 'views_per_visit', 'bounce_rate', 'visit_duration'];
  const out = [`url ${location.pathname}${location.search}`];
  const loading = document.querySelectorAll('[data-testid=loading], [aria-busy=true]');
  if (loading.length) out.push(`${loading.length} element(s) loading or busy`);
  const missing = kpis.filter((k) => !document.querySelector(`[data-testid=kpi-${k}-value]`));
  if (missing.length) out.push(`no value for ${missing.join(', ')}`);
  if (!document.querySelector('[data-testid=chart-overview] canvas')) out.push('no chart canvas');
  const tables = ['pages', 'sources', 'locations', 'devices'].filter((t) => !document.querySelector(`[data-testid=table-${t}]`));
  if (tables.length) out.push(`no table ${tables.join(', ')}`);
  const empty = [...document.querySelectorAll('[data-testid=empty]')].map((e) => e.closest('[data-testid^=panel-]')?.dataset.testid);
  if (empty.length) out.push(`empty: ${empty.join(', ')}`);
  out.push(`text: ${(document.body?.innerText || '').replace(/\s+/g, ' ').slice(0, 400)}`);
  return out.join('; ');
};

// One load in a new tab: its time in ms, or {stall} (why it was not rendered
// in 60 s: the unmet conditions, the requests still open, console errors,
// failed requests, a crashed renderer). A panel showing an error throws.
async function load(context, base, i) {
  const page = await context.newPage();
  const notes = [];
  const open = new Map();
  page.on('console', (m) => m.type() === 'error' && notes.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => notes.push(`page error: ${e.message}`));
  page.on('crash', () => notes.push('the renderer crashed'));
  page.on('request', (r) => open.set(r, performance.now()));
  page.on('requestfinished', (r) => open.delete(r));
  page.on('requestfailed', (r) => {
    open.delete(r);
    notes.push(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  try {
    const started = performance.now();
    let state;
    try {
      await page.goto(`${base}/app/${encodeURIComponent(APP)}/overview?range=${RANGE}`, { timeout: 60_000 });
      const left = Math.max(60_000 - (performance.now() - started), 1);
      const handle = await page.waitForFunction(rendered, null, { timeout: left, polling: 10 });
      state = await handle.jsonValue();
    } catch (err) {
      const why = await page.evaluate(unmet).catch((e) => `page not readable: ${e.message}`);
      const pending = [...open].map(([r, at]) => `${r.method()} ${r.url()} open ${Math.round(performance.now() - at)} ms`);
      return {
        stall: `load ${i} of ${base} not rendered in 60 s (${err.message.split('\n')[0]}): ${why}; open requests: ${pending.join(', ') || 'none'}; ${notes.join('; ') || 'no console error or failed request'}`,
      };
    }
    if (state !== true) throw new Error(`overview load ${i}: ${state}`);
    return Math.round((performance.now() - started) * 10) / 10;
  } finally {
    await page.close().catch(() => {});
  }
}

// `loads` timed loads. A load that stalls is reported in `stalls` and done
// again in a new tab; a second stall in a row ends the run with both reasons.
async function timeLoads(context, base, loads, stalls) {
  const out = [];
  for (let i = 0; i < loads; i++) {
    let ms = await load(context, base, i);
    if (ms.stall) {
      stalls.push(ms.stall);
      console.error(`B7: ${ms.stall}`);
      ms = await load(context, base, i);
      if (ms.stall) throw new Error(`two stalls in a row:\n${stalls.at(-1)}\n${ms.stall}`);
    }
    out.push(ms);
  }
  return out;
}

async function session(base) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-b7-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
  });
  // Every step has a deadline (a stalled login fails the run instead of hanging it).
  context.setDefaultTimeout(60_000);
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.fill('[data-testid=login-email]', env('B7_EMAIL'));
  await page.fill('[data-testid=login-password]', env('B7_PASSWORD'));
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/app\//, { timeout: 30_000 });
  await page.close();
  return { context, dir };
}

const cold = await session(env('B7_COLD'));
const warm = await session(env('B7_WARM'));
try {
  // One unmeasured load each: browser caches hold the assets, and the warm
  // service's answer cache holds every panel's answer.
  const stalls = [];
  await timeLoads(cold.context, env('B7_COLD'), 1, stalls);
  await timeLoads(warm.context, env('B7_WARM'), 1, stalls);
  const result = {
    cold_ms: await timeLoads(cold.context, env('B7_COLD'), LOADS, stalls),
    warm_ms: await timeLoads(warm.context, env('B7_WARM'), LOADS, stalls),
    stalls,
  };
  console.log(JSON.stringify(result));
} finally {
  for (const s of [cold, warm]) {
    await s.context.close();
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
}
