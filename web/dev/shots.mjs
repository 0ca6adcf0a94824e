#!/usr/bin/env node
// Visits every page in headless Chromium (playwright-core, no browser
// download: CHROMIUM=/usr/bin/chromium by default) against a running mock or
// query service, saves screenshots and fails on console errors.
//
//   node dev/mock.mjs &        # or a real query service serving dist/
//   node dev/shots.mjs [--base http://127.0.0.1:8090] [--out /tmp/web-shots]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const BASE = arg('--base', 'http://127.0.0.1:8090');
const OUT = arg('--out', '/tmp/web-shots');
const ONLY = arg('--only', '');
const EMAIL = arg('--email', 'admin@example.com');
const PASSWORD = arg('--password', 'tally-demo');
fs.mkdirSync(OUT, { recursive: true });

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-shots-'));
// A fresh profile each run (playwright-core passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 900 },
});

const problems = [];
async function session(width, height) {
  await context.clearCookies();
  const page = await context.newPage();
  await page.setViewportSize({ width, height });
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`[${width}] ${page.url()}: console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`[${width}] ${page.url()}: page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const failure = req.failure() ? req.failure().errorText : '';
    if (!/ERR_ABORTED/.test(failure)) problems.push(`[${width}] request failed: ${req.url()} ${failure}`);
  });
  return { page };
}

async function login(page) {
  await page.goto(`${BASE}/login`);
  await page.fill('[data-testid=login-email]', EMAIL);
  await page.fill('[data-testid=login-password]', PASSWORD);
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/app\//);
}

const settle = async (page, ms = 1500) => {
  await page.waitForLoadState('networkidle').catch(() => {});
  await page.waitForTimeout(ms);
};

const PAGES = [
  ['overview', '/app/my-site/overview'],
  ['overview-filtered', '/app/my-site/overview?range=30d&f=%24country~eq~DE&metric=visits'],
  ['overview-24h', '/app/my-site/overview?range=24h&pages=entry&devices=browser'],
  ['realtime', '/app/my-site/realtime?from_event=page_view&to_event=add_to_cart', 4000],
  ['explore', '/app/my-site/explore?m=events&m=unique_users&bucket=day&range=30d'],
  ['explore-grouped', '/app/my-site/explore?m=events&g=%24device_type&bucket=day&range=7d'],
  ['explore-table', '/app/my-site/explore?m=events&m=sum%3Aprice&g=%24country&g=properties.plan&f=%24name~in~%5B%22purchase%22%2C%22add_to_cart%22%5D'],
  ['funnels', '/app/my-site/funnels?step=page_view&step=add_to_cart&step=purchase&range=30d'],
  ['funnel-saved', '/app/my-site/funnels/100'],
  ['funnel-breakdown', '/app/my-site/funnels?step=page_view&step=add_to_cart&breakdown=%24device_type&range=30d'],
  ['retention', '/app/my-site/retention?start=page_view&return=page_view&period=week&periods=8&range=90d'],
  ['dashboards', '/app/my-site/dashboards'],
  ['dashboard', '/app/my-site/dashboards/102', 3000],
  ['settings', '/app/my-site/settings'],
  ['overview-today', '/app/my-site/overview?range=today&metric=bounce_rate'],
  ['overview-custom', '/app/my-site/overview?range=custom&from=2026-10-01&to=2026-10-20&f=%24url_path~eq~%2Fpricing'],
  ['explore-sessions', '/app/my-site/explore?m=sessions&m=bounce_rate&m=session_duration&g=%24entry_page&bucket=week&range=90d'],
  ['explore-mixed-bad', '/app/my-site/explore?m=events&m=sessions&g=%24url_path'],
  ['funnel-filters', '/app/my-site/funnels?step=page_view&step=signup&sf=1~plan~eq~pro&sf=0~%24country~in~%5B%22US%22%2C%22DE%22%5D&range=30d&order=strict'],
  ['retention-breakdown', '/app/my-site/retention?start=signup&return=purchase&period=day&periods=10&breakdown=%24device_type&range=30d'],
  ['shop', '/app/shop/overview'],
  ['empty-app', '/app/empty-app/overview'],
  ['forbidden', '/app/secret/overview'],
];

for (const [width, height, suffix] of [
  [1280, 900, ''],
  [375, 812, '-375'],
]) {
  const { page } = await session(width, height);
  if (!ONLY || ONLY === 'login') {
    await page.goto(`${BASE}/login?next=%2Fapp%2Fmy-site%2Fexplore`);
    await settle(page, 300);
    await page.screenshot({ path: `${OUT}/login${suffix}.png`, fullPage: true });
  }
  await login(page);
  for (const [name, url, wait] of PAGES) {
    if (ONLY && !name.startsWith(ONLY)) continue;
    await page.goto(`${BASE}${url}`);
    await settle(page, wait || 1500);
    await page.screenshot({ path: `${OUT}/${name}${suffix}.png`, fullPage: true });
    // wide pages must not scroll sideways (tables scroll inside their panels)
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 1) problems.push(`[${width}] ${name}: page is ${overflow}px wider than the viewport`);
  }
  await page.close();
}

await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
if (problems.length) {
  console.log(problems.join('\n'));
  process.exitCode = 1;
}
console.log(`screenshots in ${OUT}`);
