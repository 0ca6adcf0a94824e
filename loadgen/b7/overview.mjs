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
// an error (which fails the run). Each load is a new tab of one logged-in
// browser (assets come from its cache, as for a returning user).
// Prints one JSON line: {"cold_ms": [...], "warm_ms": [...]}.

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
  if (!kpis.every((k) => document.querySelector(`[data-testid=kpi-${k}-value]`))) return false;
  if (!document.querySelector('[data-testid=chart-overview] canvas')) return false;
  return ['pages', 'sources', 'locations', 'devices'].every((t) => document.querySelector(`[data-testid=table-${t}]`));
};

async function timeLoads(context, base, loads) {
  const out = [];
  for (let i = 0; i < loads; i++) {
    const page = await context.newPage();
    const started = performance.now();
    await page.goto(`${base}/app/${encodeURIComponent(APP)}/overview?range=${RANGE}`);
    const handle = await page.waitForFunction(rendered, null, { timeout: 60_000, polling: 10 });
    const state = await handle.jsonValue();
    if (state !== true) throw new Error(`overview load ${i}: ${state}`);
    out.push(Math.round((performance.now() - started) * 10) / 10);
    await page.close();
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
  await timeLoads(cold.context, env('B7_COLD'), 1);
  await timeLoads(warm.context, env('B7_WARM'), 1);
  const result = {
    cold_ms: await timeLoads(cold.context, env('B7_COLD'), LOADS),
    warm_ms: await timeLoads(warm.context, env('B7_WARM'), LOADS),
  };
  console.log(JSON.stringify(result));
} finally {
  for (const s of [cold, warm]) {
    await s.context.close();
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
}
