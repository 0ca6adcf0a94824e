#!/usr/bin/env node
// Browser smoke tests of the dashboard against the dev mock (playwright-core
// driving Debian's Chromium; nothing is downloaded). Starts its own mock on a
// free port unless --base is given.
//
//   npm run build && node dev/e2e.mjs [--base http://127.0.0.1:8090] [--only name]
//
// Ends with "N passed, N failed".

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const ONLY = arg('--only', '');

async function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let mock = null;
let BASE = arg('--base', '');
if (!BASE) {
  const port = await freePort();
  mock = spawn(process.execPath, [path.join(here, 'mock.mjs'), '--port', String(port), '--quiet', '--delay', '30', '--live', '0.5'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    mock.stdout.on('data', (d) => String(d).includes('Tally mock on') && resolve());
    mock.on('exit', (code) => reject(new Error(`mock exited ${code}`)));
  });
  BASE = `http://127.0.0.1:${port}`;
}
const control = (what, body = {}) => fetch(`${BASE}/__mock/${what}`, { method: 'POST', body: JSON.stringify(body) });

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-e2e-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 900 },
  acceptDownloads: true,
});

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

/** Console errors other than the HTTP statuses a test provokes on purpose. */
function watch(page, allowed = []) {
  const errors = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (allowed.some((a) => m.text().includes(a))) return;
    errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

async function login(page, email = 'admin@example.com', next = '') {
  await page.goto(`${BASE}/login${next ? `?next=${encodeURIComponent(next)}` : ''}`);
  await page.fill('[data-testid=login-email]', email);
  await page.fill('[data-testid=login-password]', 'tally-demo');
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/app\//);
}

const text = (page, sel) => page.locator(sel).first().innerText();
const value = (page, sel) => page.locator(sel).first().getAttribute('data-value');
const api = (page, p, body) =>
  page.evaluate(
    async ([p, body]) => {
      const r = await fetch(p, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return r.json();
    },
    [p, body],
  );

test('signed out: the app sends to /login and comes back after', async (page) => {
  const errors = watch(page, ['401']);
  await page.goto(`${BASE}/app/my-site/explore?m=unique_users`);
  await page.waitForURL(/\/login\?next=/);
  assert.match(page.url(), /next=%2Fapp%2Fmy-site%2Fexplore%3Fm%3Dunique_users/);
  await page.fill('[data-testid=login-email]', 'admin@example.com');
  await page.fill('[data-testid=login-password]', 'tally-demo');
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/app\/my-site\/explore\?m=unique_users/);
  await page.waitForSelector('[data-testid=table-explore]');
  assert.deepEqual(errors, []);
});

test('login: wrong password (401), then too many attempts (429) with the wait', async (page) => {
  watch(page);
  await page.goto(`${BASE}/login`);
  await page.fill('[data-testid=login-email]', 'nobody@example.com');
  for (let i = 0; i < 5; i++) {
    await page.fill('[data-testid=login-password]', `wrong${i}`);
    await page.click('[data-testid=login-submit]');
    await page.waitForSelector('[data-testid=login-error][data-error=credentials]');
  }
  assert.match(await text(page, '[data-testid=login-error]'), /Wrong e-mail or password/);
  await page.fill('[data-testid=login-password]', 'tally-demo');
  await page.click('[data-testid=login-submit]');
  await page.waitForSelector('[data-testid=login-error][data-error=wait]');
  assert.match(await text(page, '[data-testid=login-error]'), /Try again in \d+ s/);
  assert.equal(await page.locator('[data-testid=login-submit]').isDisabled(), true);
});

test('overview: numbers equal the API answers; a row click filters every panel; Back restores', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/overview?range=30d`);
  await page.waitForSelector('[data-testid=kpi-visitors-value]');
  await page.waitForSelector('[data-testid=table-locations]');
  const answer = await api(page, '/api/v1/analytics/my-site/query', { metrics: ['unique_users', 'events'], filters: [{ property: '$name', op: 'eq', value: 'page_view' }], range: '30d', compare: 'previous' });
  const shown = Number(await value(page, '[data-testid=kpi-visitors-value]'));
  // live traffic may add a visitor between the two reads
  assert.ok(Math.abs(shown - answer.results[0].unique_users) <= 3, `${shown} vs ${answer.results[0].unique_users}`);
  await page.click('[data-testid=row-locations][data-key=DE] [data-testid=row-filter]');
  await page.waitForURL(/f=%24country%7Eeq%7EDE|f=%24country~eq~DE/);
  await page.waitForSelector('[data-testid=chip][data-property="$country"]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=row-locations]').length === 1);
  const de = await api(page, '/api/v1/analytics/my-site/query', { metrics: ['unique_users', 'events'], filters: [{ property: '$name', op: 'eq', value: 'page_view' }, { property: '$country', op: 'eq', value: 'DE' }], range: '30d' });
  await page.waitForFunction((n) => Math.abs(Number(document.querySelector('[data-testid=kpi-visitors-value]')?.dataset.value) - n) <= 3, de.results[0].unique_users);
  await page.goBack();
  await page.waitForFunction(() => !document.querySelector('[data-testid=chip]'));
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=row-locations]').length > 1);
  await page.goForward();
  await page.waitForSelector('[data-testid=chip]');
  await page.click('[data-testid=chip-remove]');
  await page.waitForFunction(() => !document.querySelector('[data-testid=chip]'));
  assert.deepEqual(errors, []);
});

test('overview: a failing panel shows its error and Retry recovers', async (page) => {
  const errors = watch(page, ['503']);
  await login(page);
  await control('fail', { match: '$browser', status: 503, times: 1 });
  await page.goto(`${BASE}/app/my-site/overview?devices=browser`);
  await page.waitForSelector('[data-testid=panel-devices] [data-testid=error]');
  assert.match(await text(page, '[data-testid=panel-devices] [data-testid=error]'), /unavailable/i);
  // the other panels are fine
  await page.waitForSelector('[data-testid=table-pages]');
  await page.click('[data-testid=panel-devices] [data-testid=retry]');
  await page.waitForSelector('[data-testid=table-devices]');
  assert.deepEqual(errors, []);
});

test('realtime: the stream moves the numbers within seconds; reconnects after a failure', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/realtime?from_event=page_view&to_event=click`);
  await page.waitForSelector('[data-testid=stream-status][data-value=live]');
  const first = Number(await value(page, '[data-testid=asof]'));
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=asof]').dataset.value) > t, first, { timeout: 5000 });
  const live = await api(page, '/api/v1/analytics/my-site/live?windows=360&from_event=page_view&to_event=click');
  const v30 = Number(await value(page, '[data-testid=live-visitors-30m]'));
  assert.ok(Math.abs(v30 - live.active_users_30m) <= 5, `${v30} vs ${live.active_users_30m}`);
  await page.waitForSelector('[data-testid=live-conversion-rate]');
  assert.ok(await page.locator('[data-testid=chart-live] canvas').count());
  await control('drop-streams');
  await page.waitForSelector('[data-testid=stream-status][data-value=reconnecting]');
  await page.waitForSelector('[data-testid=stream-status][data-value=live]', { timeout: 10000 });
  const after = Number(await value(page, '[data-testid=asof]'));
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=asof]').dataset.value) > t, after, { timeout: 5000 });
  assert.deepEqual(errors.filter((e) => !/ERR_|event-stream/i.test(e)), []);
});

test('explore: metrics, filter, group-by, bucket → chart, table, CSV; fields suggested', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/explore`);
  await page.check('[data-testid=metric-unique_users]');
  await page.click('[data-testid=filter-add]');
  await page.fill('[data-testid=filter-field]', '$country');
  await page.selectOption('[data-testid=filter-op]', 'in');
  await page.fill('[data-testid=filter-value]', 'DE, FR');
  await page.selectOption('[data-testid=bucket]', 'day');
  await page.fill('[data-testid=group-0]', '$device_type');
  await page.click('[data-testid=explore-run]');
  await page.waitForURL(/bucket=day/);
  await page.waitForSelector('[data-testid=chart-explore] canvas');
  await page.waitForSelector('[data-testid=row-explore]');
  const options = await page.locator('datalist option').evaluateAll((os) => os.map((o) => o.value));
  assert.ok(options.includes('properties.plan'), 'property keys are suggested');
  const href = await page.getAttribute('[data-testid=download-csv]', 'href');
  const csv = await page.evaluate(async (h) => (await fetch(h)).text(), href);
  assert.match(csv.split('\n')[0], /\$day,\$device_type,events,unique_users/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=download-csv]')]);
  assert.equal(download.suggestedFilename(), 'tally-query.csv');
  assert.deepEqual(errors, []);
});

test('funnels: build, reorder, save, reopen from the list', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/funnels`);
  await page.locator('[data-testid=step-event]').nth(0).fill('add_to_cart');
  await page.locator('[data-testid=step-event]').nth(1).fill('page_view');
  await page.locator('[data-testid=step-down]').nth(0).click();
  await page.click('[data-testid=step-add]');
  await page.locator('[data-testid=step-event]').nth(2).fill('purchase');
  await page.click('[data-testid=funnel-run]');
  await page.waitForSelector('[data-testid=funnel-step][data-step="3"]');
  assert.equal(await page.locator('[data-testid=funnel-step]').nth(0).getAttribute('data-key'), 'page_view');
  await page.fill('[data-testid=funnel-name]', 'E2E funnel');
  await page.click('[data-testid=funnel-save]');
  await page.waitForURL(/\/funnels\/\d+\?/);
  await page.waitForSelector('[data-testid=saved-funnel]:has-text("E2E funnel")');
  await page.click('[data-testid=saved-funnel] a:has-text("Checkout")');
  await page.waitForURL(/\/funnels\/100\?step=page_view&step=add_to_cart&step=purchase/);
  await page.waitForSelector('[data-testid=funnel-step][data-step="3"]');
  assert.deepEqual(errors, []);
});

test('dashboards: create, add from Explore, reorder, remove (PUT)', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/dashboards`);
  await page.fill('[data-testid=dashboard-name]', 'E2E board');
  await page.click('[data-testid=dashboard-create-submit]');
  await page.waitForSelector('[data-testid=dashboard-empty]');
  const boardUrl = page.url();
  await page.goto(`${BASE}/app/my-site/explore?m=events&bucket=day`);
  await page.click('[data-testid=add-to-dashboard]');
  await page.selectOption('[data-testid=add-to-dashboard-target]', { label: 'E2E board' });
  await page.fill('[data-testid=add-to-dashboard-title]', 'Events per day');
  await page.click('[data-testid=add-to-dashboard-save]');
  await page.waitForSelector('[data-testid=add-to-dashboard-done]');
  await page.goto(boardUrl);
  await page.waitForSelector('[data-testid=widget] [data-testid=chart-widget-0] canvas');
  await page.selectOption('[data-testid=widget-type]', 'live');
  await page.click('[data-testid=widget-add]');
  await page.waitForSelector('[data-testid=widget][data-index="1"][data-type=live]');
  await page.click('[data-testid=widget][data-index="1"] [data-testid=widget-up]');
  await page.waitForSelector('[data-testid=widget][data-index="0"][data-type=live]');
  await page.click('[data-testid=widget][data-index="1"] [data-testid=widget-remove]');
  await page.click('[data-testid=widget][data-index="1"] [data-testid=widget-remove-confirm]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=widget]').length === 1);
  const id = boardUrl.split('/').pop();
  const saved = await api(page, `/api/v1/analytics/my-site/dashboards/${id}`);
  assert.deepEqual(saved.definition.widgets.map((w) => w.type), ['live']);
  assert.deepEqual(errors, []);
});

test('settings: a new write key is shown once with the snippet; revoke asks first; members', async (page) => {
  const errors = watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/settings`);
  await page.click('[data-testid=key-create-write]');
  await page.waitForSelector('[data-testid=new-key][data-kind=write]');
  const key = await text(page, '[data-testid=new-key-value] code');
  assert.match(key, /^tw_/);
  assert.ok((await text(page, '[data-testid=new-key-sdk] code')).includes(`<script src="http://127.0.0.1:8080/sdk.js" data-key="${key}" defer></script>`));
  const row = page.locator(`[data-testid=row-key][data-key="${key.slice(0, 8)}"]`);
  await row.locator('[data-testid=key-revoke]').click();
  await row.locator('[data-testid=key-revoke-confirm]').click();
  await page.waitForSelector(`[data-testid=row-key][data-key="${key.slice(0, 8)}"] [data-testid=key-status]:has-text("revoked")`);
  await page.fill('[data-testid=member-email]', 'new@example.com');
  await page.fill('[data-testid=member-password]', 'secret-pass');
  await page.click('[data-testid=member-add]');
  await page.waitForSelector('[data-testid=row-member][data-key="new@example.com"]');
  await page.locator('[data-testid=row-member][data-key="new@example.com"] [data-testid=member-remove]').click();
  await page.locator('[data-testid=row-member][data-key="new@example.com"] [data-testid=member-remove-confirm]').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid=row-member][data-key="new@example.com"]'));
  assert.deepEqual(errors, []);
});

test('viewer: no Settings tab, settings and other apps say "no access"', async (page) => {
  const errors = watch(page);
  await login(page, 'viewer@example.com');
  await page.waitForSelector('[data-testid=tab-overview]');
  assert.equal(await page.locator('[data-testid=tab-settings]').count(), 0);
  await page.goto(`${BASE}/app/my-site/settings`);
  await page.waitForSelector('[data-testid=forbidden]');
  await page.goto(`${BASE}/app/shop/overview`);
  await page.waitForSelector('[data-testid=forbidden]');
  await page.click('[data-testid=forbidden-app-link]');
  await page.waitForURL(/\/app\/my-site\/overview/);
  assert.deepEqual(errors, []);
});

test('a session that ends (401 mid-use) returns to login, then to the page', async (page) => {
  watch(page);
  await login(page);
  await page.goto(`${BASE}/app/my-site/retention?start=page_view&return=page_view`);
  await page.waitForSelector('[data-testid=table-retention]');
  await control('reset'); // forgets every session
  await page.selectOption('[data-testid=ret-period]', 'day');
  await page.click('[data-testid=retention-run]');
  await page.waitForURL(/\/login\?next=/);
  await page.fill('[data-testid=login-email]', 'admin@example.com');
  await page.fill('[data-testid=login-password]', 'tally-demo');
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/retention\?.*period=day/);
  await page.waitForSelector('[data-testid=table-retention]');
});

test('keyboard: every control is reachable and focus is visible', async (page) => {
  await login(page);
  await page.goto(`${BASE}/app/my-site/overview`);
  await page.waitForSelector('[data-testid=table-pages]');
  const unlabeled = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('input, select, textarea, button')) {
      const id = el.id;
      const named = el.getAttribute('aria-label') || (id && document.querySelector(`label[for="${id}"]`)) || el.closest('label') || (el.tagName === 'BUTTON' && el.textContent.trim());
      if (!named) bad.push(el.outerHTML.slice(0, 80));
    }
    return bad;
  });
  assert.deepEqual(unlabeled, []);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none');
});

let passed = 0;
let failed = 0;
for (const t of tests) {
  if (ONLY && !t.name.includes(ONLY)) continue;
  await context.clearCookies();
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  try {
    await t.fn(page);
    passed += 1;
    console.log(`ok - ${t.name}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok - ${t.name}\n  ${String(err && err.stack ? err.stack : err).split('\n').slice(0, 4).join('\n  ')}`);
    await page.screenshot({ path: path.join(os.tmpdir(), `e2e-fail-${passed + failed}.png`), fullPage: true }).catch(() => {});
  } finally {
    await page.close();
  }
}
await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
if (mock) mock.kill();
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
