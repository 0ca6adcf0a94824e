#!/usr/bin/env node
// Real-browser end-to-end tests of Tally's web dashboard against a running stack
// (query service serving web/dist + the API, ingest gateway), driving the system's
// Chromium through playwright-core (resolved from web/node_modules; nothing is
// downloaded). Every number the page shows is compared with the API's answer to
// the same request, made at the same moment.
//
// Checks: login through the form and every page without console errors (Overview
// KPIs = /query); Realtime shows a new event within 2 s without reload; a click
// filter changes every panel and the URL, Back/Forward restore; a funnel is built,
// compared with /funnel, saved and reopened; the retention grid equals /retention;
// a dashboard with two widgets survives a reload; access: 403 page, viewer without
// Settings, logout ends the session (also for a copy of the cookie), a cross-site
// POST is refused, the 11th bad password gets 429; /sdk.js in a page of another
// origin delivers page views, pushState page views, a custom event and a sendBeacon
// flush exactly once; screenshots of every page. states.mjs adds the empty app,
// the event store down, and the keyboard.
//
// Environment (all required): TALLY_BASE (query service), TALLY_GATEWAY,
// TALLY_APP, TALLY_OTHER_APP (the admin is not a member), TALLY_ADMIN_EMAIL /
// TALLY_ADMIN_PASSWORD (admin of TALLY_APP), TALLY_VIEWER_EMAIL /
// TALLY_VIEWER_PASSWORD (viewer of TALLY_APP), TALLY_THROTTLE_EMAIL (a user whose
// password is never guessed; fresh per run), TALLY_WRITE_KEY, TALLY_READ_KEY (of
// TALLY_APP), TALLY_SHOTS (directory for NN-page.png screenshots). Optional:
// CHROMIUM (default /usr/bin/chromium), TALLY_E2E_ONLY (run tests whose name
// contains it). Output: "ok - name" / "not ok - name" per test, then
// "N passed, N failed"; exit code 1 when any failed.
//
// Side effects on TALLY_APP: events e2e_ping (user e2e-<run>-…), page views of
// /e2e-<run>/a and /b plus e2e_custom and e2e_sentinel (headless Chromium's user
// agent makes these bot events: read them with include_bots); a funnel and a
// dashboard, deleted again by the tests. The throttle test spends 11 failed logins
// from this address (the service allows 30 per address and minute): do not start
// the script more than twice within a minute.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  RUN, analyticsPath, assertNoErrorStates, dataValue, env, login, matchApi, networkLog, pageApi, poll, readApi, recordApi, runAll, serve,
  settle, shot, shown, startBrowser, submitLogin, test, waitOverview, watch,
} from './lib.mjs';
import './states.mjs';
import { registerAccessTests, registerThrottleTest } from './access.mjs';
import { registerTrackerTest } from './tracker.mjs';

const { BASE, GATEWAY, APP } = env;
const Q = analyticsPath();
const PAGE_VIEW = { property: '$name', op: 'eq', value: 'page_view' };

// ------------------------------------------------------------------ comparing the page with the API

const KPI_IDS = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];

/** The KPI cards: {id: {value, previous}} (previous: data-previous of the change, when shown). */
async function readKpis(page) {
  return page.evaluate((ids) => {
    const out = {};
    for (const id of ids) {
      const v = document.querySelector(`[data-testid=kpi-${id}-value]`);
      const c = document.querySelector(`[data-testid=kpi-${id}-change]`);
      out[id] = { value: v ? v.dataset.value : null, previous: c ? c.dataset.previous : null };
    }
    return out;
  }, KPI_IDS);
}

/** What the KPI cards must show for the two KPI answers (Overview.jsx: counts default to 0, views per visit = events ÷ sessions). */
function expectedKpis([ev, ss], shownChanges) {
  const pick = (answer, prev) => (prev ? answer.previous?.results?.[0] : answer.results[0]) || {};
  const one = (prev) => {
    const e = pick(ev, prev);
    const s = pick(ss, prev);
    const count = (v) => (v === null || v === undefined ? 0 : v);
    return {
      visitors: count(e.unique_users),
      visits: count(s.sessions),
      pageviews: count(e.events),
      views_per_visit: s.sessions ? (e.events || 0) / s.sessions : null,
      bounce_rate: s.bounce_rate ?? null,
      visit_duration: s.session_duration ?? null,
    };
  };
  const cur = one(false);
  const prev = one(true);
  const out = {};
  // The change (and its data-previous) is shown only when a change can be computed.
  for (const id of KPI_IDS) out[id] = { value: shown(cur[id]), previous: shownChanges[id] === null ? null : shown(prev[id]) };
  return out;
}

/** The list panels of Overview with their default tabs: panel → dimension. */
const LISTS = { pages: '$url_path', sources: '$referrer_host', locations: '$country', devices: '$device_type' };

async function readTable(page, id) {
  return page.$$eval(`[data-testid=row-${id}]`, (rows) =>
    rows.map((r) => ({
      key: r.dataset.key,
      unique_users: r.querySelector('[data-testid=cell-unique_users]')?.dataset.value ?? null,
      events: r.querySelector('[data-testid=cell-events]')?.dataset.value ?? null,
    })),
  );
}

/** Overview's KPIs and four lists compared with /query for the range "7d" and `filters` (fit for events and sessions). */
function overviewItems(page, filters) {
  const kpiBodies = [
    { metrics: ['unique_users', 'events'], filters: [PAGE_VIEW, ...filters], range: '7d', compare: 'previous' },
    { metrics: ['sessions', 'bounce_rate', 'session_duration'], filters, range: '7d', compare: 'previous' },
  ];
  let changes = {};
  const items = [
    {
      name: 'KPIs',
      endpoint: 'query',
      bodies: kpiBodies,
      dom: async () => {
        const k = await readKpis(page);
        changes = Object.fromEntries(KPI_IDS.map((id) => [id, k[id].previous]));
        return k;
      },
      expect: (answers) => expectedKpis(answers, changes),
    },
  ];
  for (const [id, dim] of Object.entries(LISTS)) {
    items.push({
      name: `table-${id}`,
      endpoint: 'query',
      bodies: [{ metrics: ['unique_users', 'events'], group_by: [dim], filters: [PAGE_VIEW, ...filters], range: '7d', limit: 10 }],
      dom: () => readTable(page, id),
      expect: ([a]) => a.results.map((r) => ({ key: String(r[dim] ?? ''), unique_users: shown(r.unique_users), events: shown(r.events) })),
    });
  }
  return items;
}

// ------------------------------------------------------------------ 1. login and every page

test('login through the form; every page renders without console errors; Overview KPIs equal /query', async ({ page, note }) => {
  let signedIn = false;
  // The only error allowed: the signed-out 401 of /auth/me before the login.
  const problems = watch(page, (p) => !signedIn && /\/api\/v1\/auth\/me$/.test(p.url) && (p.status === 401 || /\b401\b/.test(p.text)));
  const rec = recordApi(page);
  await page.goto(`${BASE}/app/${APP}/realtime`);
  await page.waitForURL((u) => u.pathname === '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), `/app/${APP}/realtime`);
  await submitLogin(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD);
  signedIn = true;
  await page.waitForURL((u) => u.pathname === `/app/${APP}/realtime`);
  assert.equal(await page.textContent('[data-testid=user-email]'), env.ADMIN_EMAIL);

  const ready = {
    realtime: async () => {
      await page.waitForSelector('[data-testid=stream-status][data-value=live]');
      await page.waitForSelector('[data-testid=chart-live] canvas');
    },
    overview: () => waitOverview(page),
    explore: () => page.waitForSelector('[data-testid=table-explore], [data-testid=page-explore] [data-testid=empty]'),
    funnels: () => page.waitForSelector('[data-testid=funnel-builder]'),
    retention: () => page.waitForSelector('[data-testid=retention-form]'),
    dashboards: () => page.waitForSelector('[data-testid=panel-dashboards]'),
    settings: async () => {
      await page.waitForSelector('[data-testid=table-keys]');
      await page.waitForSelector('[data-testid=table-members]');
    },
  };
  for (const [id, wait] of Object.entries(ready)) {
    if (new URL(page.url()).pathname !== `/app/${APP}/${id}`) await page.click(`[data-testid=tab-${id}]`);
    await page.waitForURL((u) => u.pathname === `/app/${APP}/${id}`);
    await page.waitForSelector(`[data-testid=page-${id}]`);
    await wait();
    await settle(page, problems);
    await assertNoErrorStates(page, id);
    problems.assertNone(`on ${id}`);
  }

  await page.click('[data-testid=tab-overview]');
  await waitOverview(page);
  const { doms } = await matchApi(page, problems, rec, overviewItems(page, []).slice(0, 1), 'Overview KPIs', note);
  note(`KPIs: ${KPI_IDS.map((id) => `${id}=${doms[0][id].value}`).join(' ')}`);
  const me = await pageApi(page, '/api/v1/auth/me');
  assert.equal(me.status, 200);
  problems.assertNone('at the end');
});

// ------------------------------------------------------------------ 2. realtime

test('realtime: a newly sent event shows within 2 s without reload', async ({ page, note }) => {
  const problems = watch(page);
  await login(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD, `/app/${APP}/realtime`);
  await page.waitForSelector('[data-testid=stream-status][data-value=live]');
  await page.waitForFunction(() => document.querySelector('[data-testid=live-events-30m]')?.dataset.value !== '');
  // the stream delivers: "as of" moves with a pushed window
  const asof = Number(await dataValue(page, '[data-testid=asof]'));
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=asof]').dataset.value) > t, asof, { timeout: 5000 });

  // In the page: note the moment the 30-min events number (and the e2e_ping row) first go up.
  const before = await page.evaluate(() => {
    const total = () => Number(document.querySelector('[data-testid=live-events-30m]').dataset.value);
    const ping = () => Number(document.querySelector('[data-testid=row-live-events][data-key=e2e_ping] [data-testid=cell-events]')?.dataset.value || 0);
    const start = { total: total(), ping: ping() };
    window.__seen = { total: null, ping: null };
    const check = () => {
      const now = Date.now();
      if (window.__seen.total === null && total() >= start.total + 1) window.__seen.total = now;
      if (window.__seen.ping === null && ping() >= start.ping + 1) window.__seen.ping = now;
    };
    new MutationObserver(check).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    return start;
  });
  const user = `e2e-${RUN}-${Math.random().toString(36).slice(2, 8)}`;
  const res = await fetch(`${GATEWAY}/api/v1/events/batch`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${env.WRITE_KEY}:`).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ name: 'e2e_ping', user_id: user, properties: {} }] }),
  });
  const acked = Date.now();
  const answer = await res.text();
  assert.equal(res.status, 200, `gateway: ${answer}`);
  assert.equal(JSON.parse(answer).accepted, 1, answer);
  // wait longer than 2 s so that a slow update is measured, then judge
  const seen = await page
    .waitForFunction(() => window.__seen.total !== null && window.__seen.ping !== null && window.__seen, null, { timeout: 10_000 })
    .then((h) => h.jsonValue())
    .catch(() => page.evaluate(() => window.__seen));
  const after = await page.evaluate(() => ({
    total: Number(document.querySelector('[data-testid=live-events-30m]').dataset.value),
    ping: Number(document.querySelector('[data-testid=row-live-events][data-key=e2e_ping] [data-testid=cell-events]')?.dataset.value || 0),
  }));
  // the later of the two: the ping row is certainly our event; the total may move with other traffic
  const latency = seen.total === null || seen.ping === null ? null : Math.max(seen.total, seen.ping) - acked;
  note(`latency: ${latency === null ? 'not seen within 10 s' : `${latency} ms`} after the gateway's 200 (events, last 30 min: ${before.total} → ${after.total}; e2e_ping row: ${before.ping} → ${after.ping})`);
  assert.ok(seen.total !== null, `events, last 30 min did not go up within 10 s (${before.total} → ${after.total})`);
  assert.ok(seen.ping !== null, `the e2e_ping row did not go up (${before.ping} → ${after.ping})`);
  assert.ok(latency <= 2000, `shown ${latency} ms after the gateway's 200 (limit 2000 ms)`);
  problems.assertNone();
});

// ------------------------------------------------------------------ 3. click filter, Back, Forward

test('overview: a click filter changes every panel and the URL; Back restores, Forward re-applies', async ({ page, note }) => {
  const problems = watch(page);
  const rec = recordApi(page);
  await login(page);
  await waitOverview(page);
  const plain = await matchApi(page, problems, rec, overviewItems(page, []), 'unfiltered Overview', note);
  const devices = plain.doms[4];
  assert.ok(devices.length >= 2, `the devices table needs two devices to show a filter (has ${JSON.stringify(devices)})`);
  const device = devices.find((r) => r.key !== '').key;
  const F = { property: '$device_type', op: 'eq', value: device };

  const plainUrl = page.url();
  await page.click(`[data-testid=row-devices][data-key="${device}"] [data-testid=row-filter]`);
  await page.waitForURL((u) => u.searchParams.getAll('f').includes(`$device_type~eq~${device}`));
  await page.waitForSelector(`[data-testid=chip][data-property="$device_type"][data-op=eq][data-value="${device}"]`);
  const filtered = await matchApi(page, problems, rec, overviewItems(page, [F]), `Overview filtered by ${device}`, note);
  // every panel asked again, with the filter (no request had it before the click): KPIs (2), the chart, the four lists
  const asked = rec.filter((r) => r.body && (r.body.filters || []).some((f) => isDeepStrictEqual(f, F)));
  const kinds = new Set(asked.map((r) => (r.body.group_by ? r.body.group_by[0] : r.body.metrics[0])));
  for (const k of ['unique_users', 'sessions', '$day', ...Object.values(LISTS)]) assert.ok(kinds.has(k), `no request with the filter for ${k} (sent: ${[...kinds]})`);
  // the filter's effect: one device left; KPI and other tables changed
  assert.deepEqual(filtered.doms[4].map((r) => r.key), [device]);
  // the other devices have page views, so the filtered page views are fewer
  assert.ok(Number(filtered.doms[0].pageviews.value) < Number(plain.doms[0].pageviews.value), `page views ${plain.doms[0].pageviews.value} → ${filtered.doms[0].pageviews.value}`);
  const changed = Object.keys(LISTS).filter((id, i) => !isDeepStrictEqual(filtered.doms[i + 1], plain.doms[i + 1]));
  assert.ok(changed.length >= 2, `only these tables changed: ${changed}`);
  const filteredUrl = page.url();
  note(`filter ${device}: visitors ${plain.doms[0].visitors.value} → ${filtered.doms[0].visitors.value}, page views ${plain.doms[0].pageviews.value} → ${filtered.doms[0].pageviews.value}; tables changed: ${changed.join(', ')}`);

  await page.goBack();
  await page.waitForURL((u) => u.pathname === `/app/${APP}/overview` && !u.searchParams.getAll('f').length);
  await page.waitForSelector('[data-testid=chip]', { state: 'detached' });
  assert.equal(page.url(), plainUrl);
  const back = await matchApi(page, problems, rec, overviewItems(page, []), 'Overview after Back', note);
  assert.ok(back.doms[4].length >= 2, 'Back: all devices again');

  await page.goForward();
  await page.waitForURL((u) => u.searchParams.getAll('f').includes(`$device_type~eq~${device}`));
  await page.waitForSelector(`[data-testid=chip][data-value="${device}"]`);
  assert.equal(page.url(), filteredUrl);
  const fwd = await matchApi(page, problems, rec, overviewItems(page, [F]), 'Overview after Forward', note);
  assert.deepEqual(fwd.doms[4].map((r) => r.key), [device]);
  problems.assertNone();
});

// ------------------------------------------------------------------ 4. funnel

async function readFunnel(page) {
  return page.$$eval('[data-testid=funnel] [data-testid=funnel-step]', (steps) =>
    steps.map((s) => {
      const v = (id) => s.querySelector(`[data-testid=${id}]`).dataset.value;
      return { step: s.dataset.key, users: v('step-users'), prev: v('step-conv-prev'), first: v('step-conv-first'), drop: v('step-dropoff'), median: v('step-median') };
    }),
  );
}
const expectedFunnel = ([a]) =>
  a.funnel.map((s) => ({ step: s.step, users: shown(s.users), prev: shown(s.conversion_from_previous), first: shown(s.conversion_from_first), drop: shown(s.drop_off), median: shown(s.median_ms_to_convert) }));

test('funnels: build page_view → add_to_cart → purchase, equal /funnel, save, reopen, same numbers', async ({ page, note }) => {
  const problems = watch(page);
  const rec = recordApi(page);
  await login(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD, `/app/${APP}/funnels`);
  await page.waitForSelector('[data-testid=funnel-builder]');
  await page.locator('[data-testid=step-event]').nth(0).fill('page_view');
  await page.locator('[data-testid=step-event]').nth(1).fill('add_to_cart');
  await page.click('[data-testid=step-add]');
  await page.locator('[data-testid=step-event]').nth(2).fill('purchase');
  await page.click('[data-testid=funnel-run]');
  await page.waitForSelector('[data-testid=funnel-step][data-step="3"]');
  const body = { steps: ['page_view', 'add_to_cart', 'purchase'], range: '30d' };
  const item = { endpoint: 'funnel', bodies: [body], dom: () => readFunnel(page), expect: expectedFunnel };
  const first = (await matchApi(page, problems, rec, [item], 'funnel', note)).doms[0];
  assert.ok(Number(first[0].users) > 0, 'nobody started the funnel');
  note(`users per step: ${first.map((s) => `${s.step} ${s.users}`).join(' → ')}`);

  const name = `E2E funnel ${RUN}`;
  await page.fill('[data-testid=funnel-name]', name);
  await page.click('[data-testid=funnel-save]');
  await page.waitForURL((u) => /\/funnels\/\d+$/.test(u.pathname));
  const id = new URL(page.url()).pathname.split('/').pop();
  await page.waitForSelector(`[data-testid=saved-funnel][data-id="${id}"]:has-text("${name}")`);
  const saved = await pageApi(page, `${Q}/funnels/${id}`);
  assert.equal(saved.status, 200);
  assert.equal(saved.body.name, name);
  assert.deepEqual(saved.body.definition, body);

  await page.click('[data-testid=tab-overview]');
  await page.waitForSelector('[data-testid=page-overview]');
  await page.click('[data-testid=tab-funnels]');
  await page.waitForURL((u) => u.pathname === `/app/${APP}/funnels`);
  rec.length = 0;
  await page.click(`[data-testid=saved-funnel][data-id="${id}"] a`);
  await page.waitForURL((u) => u.pathname.endsWith(`/funnels/${id}`) && u.searchParams.getAll('step').join() === 'page_view,add_to_cart,purchase');
  await page.waitForSelector('[data-testid=funnel-step][data-step="3"]');
  await page.waitForSelector(`h1:has-text("Funnel: ${name}")`);
  const reopened = (await matchApi(page, problems, rec, [item], 'reopened funnel', note)).doms[0];
  assert.deepEqual(reopened, first, 'the reopened funnel shows other numbers');

  // clean up through the page: delete asks first
  await page.click('[data-testid=funnel-delete]');
  await page.click('[data-testid=funnel-delete-confirm]');
  await page.waitForURL((u) => u.pathname === `/app/${APP}/funnels`);
  await page.waitForSelector(`[data-testid=saved-funnel][data-id="${id}"]`, { state: 'detached' });
  await settle(page, problems);
  problems.assertNone();
  assert.equal((await pageApi(page, `${Q}/funnels/${id}`)).status, 404); // (a 404 in the console from here on)
});

// ------------------------------------------------------------------ 5. retention

/** Start of period k after a cohort date, and today in a zone (as RetentionGrid.jsx decides "not begun"). */
function periodStart(cohort, period, k) {
  const [y, m, d] = cohort.slice(0, 10).split('-').map(Number);
  const t = period === 'month' ? new Date(Date.UTC(y, m - 1 + k, 1)) : new Date(Date.UTC(y, m - 1, d + k * (period === 'week' ? 7 : 1)));
  return t.toISOString().slice(0, 10);
}
const todayIn = (tz) => new Intl.DateTimeFormat('en-CA', { timeZone: tz || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());

test('retention: weekly page_view → page_view over 30 days, every cell equals /retention', async ({ page, note }) => {
  const problems = watch(page);
  const rec = recordApi(page);
  await login(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD, `/app/${APP}/retention`);
  await page.waitForSelector('[data-testid=retention-form]');
  await page.selectOption('[data-testid=range-select]', '30d');
  await page.waitForURL((u) => u.searchParams.get('range') === '30d');
  await page.fill('[data-testid=ret-start]', 'page_view');
  await page.fill('[data-testid=ret-return]', 'page_view');
  await page.selectOption('[data-testid=ret-period]', 'week');
  await page.fill('[data-testid=ret-periods]', '4');
  await page.click('[data-testid=retention-run]');
  await page.waitForURL((u) => u.searchParams.get('start') === 'page_view' && u.searchParams.get('periods') === '4');
  await page.waitForSelector('[data-testid=table-retention]');
  const body = { start_event: 'page_view', return_event: 'page_view', period: 'week', periods: 4, range: '30d' };
  const readGrid = () =>
    page.$$eval('[data-testid=table-retention] tbody tr', (rows) =>
      rows.map((r) => ({
        key: r.dataset.testid === 'retention-average' ? 'average' : r.dataset.key,
        size: r.querySelector('[data-testid=ret-size]').dataset.value,
        cells: [...r.querySelectorAll('[data-testid=ret-cell]')].map((c) => ({ k: c.dataset.period, value: c.dataset.value, count: c.dataset.count, blank: c.textContent.trim() === '' })),
      })),
    );
  const expectGrid = ([a]) => {
    const today = todayIn(a.time_zone);
    const n = a.periods + 1;
    const later = (c, k) => periodStart(String(c.cohort), a.period, k) > today;
    const average = Array.from({ length: n }, (_, k) => {
      const begun = a.cohorts.filter((c) => !later(c, k));
      const size = begun.reduce((s, c) => s + c.size, 0);
      const kept = begun.reduce((s, c) => s + (c.retained[k] || 0), 0);
      return { k: String(k), value: size ? shown(kept / size) : '', count: size ? shown(kept) : '', blank: !size };
    });
    return [
      { key: 'average', size: shown(a.cohorts.reduce((s, c) => s + c.size, 0)), cells: average },
      ...a.cohorts.map((c) => ({
        key: String(c.cohort),
        size: shown(c.size),
        cells: Array.from({ length: n }, (_, k) => ({ k: String(k), value: shown(c.rates[k]), count: shown(c.retained[k]), blank: later(c, k) })),
      })),
    ];
  };
  const { doms } = await matchApi(page, problems, rec, [{ endpoint: 'retention', bodies: [body], dom: readGrid, expect: expectGrid }], 'retention grid', note);
  const cells = doms[0].slice(1).reduce((s, r) => s + r.cells.length, 0);
  assert.ok(doms[0].length > 1, 'no cohort shown');
  note(`${doms[0].length - 1} cohorts, ${cells} cells (+ the average row) equal /retention`);
  problems.assertNone();
});

// ------------------------------------------------------------------ 6. dashboards

test('dashboards: create, add a query and a live widget through the page, both survive a reload', async ({ page, note }) => {
  const problems = watch(page);
  await login(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD, `/app/${APP}/dashboards`);
  await page.waitForSelector('[data-testid=panel-dashboards]');
  const name = `E2E board ${RUN}`;
  await page.fill('[data-testid=dashboard-name]', name);
  await page.click('[data-testid=dashboard-create-submit]');
  await page.waitForURL((u) => /\/dashboards\/\d+$/.test(u.pathname));
  await page.waitForSelector('[data-testid=dashboard-empty]');
  const id = new URL(page.url()).pathname.split('/').pop();

  const queryRequest = { metrics: ['events', 'unique_users'], filters: [PAGE_VIEW], range: '30d' };
  await page.selectOption('[data-testid=widget-type]', 'query');
  await page.fill('[data-testid=widget-title-input]', 'E2E page views');
  await page.fill('[data-testid=widget-request]', JSON.stringify(queryRequest));
  await page.click('[data-testid=widget-add]');
  await page.waitForSelector('[data-testid=widget][data-index="0"][data-type=query] [data-testid=widget-0-events]');
  await page.waitForSelector('[data-testid=dashboard-status]:has-text("Saved")');
  await page.selectOption('[data-testid=widget-type]', 'live');
  assert.deepEqual(JSON.parse(await page.inputValue('[data-testid=widget-request]')), { windows: 60 });
  await page.fill('[data-testid=widget-title-input]', 'E2E live');
  await page.click('[data-testid=widget-add]');
  await page.waitForSelector('[data-testid=widget][data-index="1"][data-type=live] [data-testid=widget-1-total_events]');

  await page.reload();
  await page.waitForSelector('[data-testid=widget][data-index="0"][data-type=query] [data-testid=widget-0-events]');
  await page.waitForSelector('[data-testid=widget][data-index="1"][data-type=live] [data-testid=widget-1-total_events]');
  assert.deepEqual(await page.$$eval('[data-testid=widget-title]', (els) => els.map((e) => e.textContent.trim())), ['E2E page views', 'E2E live']);
  assert.equal(await page.textContent('[data-testid=dashboard-title]'), name);
  const saved = await pageApi(page, `${Q}/dashboards/${id}`);
  assert.equal(saved.status, 200);
  assert.deepEqual(saved.body.definition.widgets, [
    { type: 'query', request: queryRequest, title: 'E2E page views' },
    { type: 'live', request: { windows: 60 }, title: 'E2E live' },
  ]);
  // the query widget's number is the API's
  await settle(page, problems);
  const answer = await pageApi(page, `${Q}/query`, queryRequest);
  assert.equal(await dataValue(page, '[data-testid=widget-0-events]'), shown(answer.body.results[0].events));
  note(`dashboard ${id}: widgets query (events ${answer.body.results[0].events}) and live`);

  await page.click('[data-testid=dashboard-delete]');
  await page.click('[data-testid=dashboard-delete-confirm]');
  await page.waitForURL((u) => u.pathname === `/app/${APP}/dashboards`);
  await page.waitForSelector('[data-testid=panel-dashboards]');
  assert.equal(await page.locator(`[data-testid=dashboard-item][data-id="${id}"]`).count(), 0);
  await settle(page, problems);
  problems.assertNone();
  assert.equal((await pageApi(page, `${Q}/dashboards/${id}`)).status, 404); // (a 404 in the console from here on)
});

// ------------------------------------------------------------------ 7. access (access.mjs)

registerAccessTests();

// ------------------------------------------------------------------ 8. the browser tracker (tracker.mjs)

registerTrackerTest();

// ------------------------------------------------------------------ 9. screenshots

test('screenshots of every page (1280 px) and Overview at 375 px', async ({ page, note }) => {
  const problems = watch(page);
  const written = [];
  const take = async (name, what) => {
    await settle(page, problems);
    written.push(`${await shot(page, name)} — ${what}`);
  };
  await page.goto(`${BASE}/login`);
  await page.waitForSelector('[data-testid=login-email]');
  await take('01-login', 'the login form');
  await submitLogin(page, env.ADMIN_EMAIL, env.ADMIN_PASSWORD);
  await page.waitForURL((u) => u.pathname.startsWith('/app/'));
  const app = `/app/${APP}`;
  await page.goto(`${BASE}${app}/overview`);
  await waitOverview(page);
  await take('02-overview', 'Overview, last 7 days');
  const device = await page.getAttribute('[data-testid=row-devices] >> nth=0', 'data-key');
  await page.click(`[data-testid=row-devices][data-key="${device}"] [data-testid=row-filter]`);
  await page.waitForSelector('[data-testid=chip]');
  await take('03-overview-filtered', `Overview filtered by device ${device}`);
  await page.goto(`${BASE}${app}/realtime?from_event=page_view&to_event=add_to_cart`);
  await page.waitForSelector('[data-testid=stream-status][data-value=live]');
  await page.waitForSelector('[data-testid=chart-live] canvas');
  await take('04-realtime', 'Realtime with the page_view → add_to_cart conversion');
  await page.goto(`${BASE}${app}/explore?m=events&m=unique_users&bucket=day&g=%24device_type&range=30d`);
  await page.waitForSelector('[data-testid=chart-explore] canvas');
  await take('05-explore', 'Explore: events and users per day by device, 30 days');
  await page.goto(`${BASE}${app}/funnels?step=page_view&step=add_to_cart&step=purchase`);
  await page.waitForSelector('[data-testid=funnel-step][data-step="3"]');
  await take('06-funnels', 'Funnel page_view → add_to_cart → purchase, 30 days');
  await page.goto(`${BASE}${app}/retention?start=page_view&return=page_view&period=week&periods=4&range=30d`);
  await page.waitForSelector('[data-testid=table-retention]');
  await take('07-retention', 'Weekly retention page_view → page_view, 30 days');
  // a dashboard of its own, removed afterwards
  const board = await pageApi(page, `${Q}/dashboards`, {
    name: `E2E screenshot ${RUN}`,
    definition: {
      widgets: [
        { type: 'query', request: { metrics: ['events', 'unique_users'], group_by: ['$day'], range: '14d' }, title: 'Events per day' },
        { type: 'live', request: { windows: 60 }, title: 'Live' },
        { type: 'funnel', request: { steps: ['page_view', 'add_to_cart', 'purchase'], range: '30d' }, title: 'Checkout' },
      ],
    },
  });
  assert.equal(board.status, 201, JSON.stringify(board.body));
  try {
    await page.goto(`${BASE}${app}/dashboards`);
    await page.waitForSelector(`[data-testid=dashboard-item][data-id="${board.body.id}"]`);
    await take('08-dashboards', 'the list of dashboards');
    await page.click(`[data-testid=dashboard-item][data-id="${board.body.id}"] [data-testid=dashboard-link]`);
    await page.waitForSelector('[data-testid=chart-widget-0] canvas');
    await page.waitForSelector('[data-testid=widget-1-total_events]');
    await take('09-dashboard', 'a dashboard with a chart, a live and a funnel widget');
  } finally {
    assert.equal((await pageApi(page, `${Q}/dashboards/${board.body.id}`, undefined, 'DELETE')).status, 204);
  }
  await page.goto(`${BASE}${app}/settings`);
  await page.waitForSelector('[data-testid=table-keys]');
  // Every key shows when it was made (a date, not a dash).
  for (const created of await page.$$eval('[data-testid=key-created]', (cells) => cells.map((c) => c.textContent))) {
    assert.match(created, /\d/, `a key's creation time: ${created}`);
  }
  await take('10-settings', 'Settings: keys and members');
  // A new write key comes with the set-up of every SDK the gateway speaks.
  await page.click('[data-testid=key-create-write]');
  const key = (await page.textContent('[data-testid=new-key-value] code')).trim();
  assert.match(key, /^tw_/);
  for (const [sdk, needle] of [['posthog', `posthog.init('${key}'`], ['amplitude', '/2/httpapi'], ['plausible', 'Site domains']]) {
    await page.selectOption('[data-testid=vendor-sdk]', sdk);
    const snippet = await page.textContent(`[data-testid=vendor-snippet-${sdk}] code`);
    assert.ok(snippet.includes(needle), `${sdk} snippet: ${snippet}`);
  }
  await take('10b-settings-new-key', 'Settings: a new write key with the set-up of other SDKs');
  await page.click('[data-testid=new-key-dismiss]');
  // Site domains: a pasted URL is stored as its host, listed, and removed again.
  const site = `${APP.toLowerCase().replace(/[^a-z0-9-]/g, '-')}.example`;
  await page.fill('[data-testid=domain-input]', `https://www.${site}/pricing`);
  await page.click('[data-testid=domain-add]');
  await page.waitForSelector(`[data-testid=row-domain][data-key="${site}"]`);
  assert.match(await page.textContent('[data-testid=domain-status]'), new RegExp(`${site.replace(/\./g, '\\.')} added`));
  await take('10c-settings-domains', 'Settings: a site domain for Plausible and Umami trackers');
  await page.click(`[data-testid=row-domain][data-key="${site}"] [data-testid=domain-remove]`);
  await page.click(`[data-testid=row-domain][data-key="${site}"] [data-testid=domain-remove-confirm]`);
  await page.waitForSelector(`[data-testid=row-domain][data-key="${site}"]`, { state: 'detached' });
  await page.goto(`${BASE}/app/${env.OTHER_APP}/overview`);
  await page.waitForSelector('[data-testid=forbidden]');
  await take('11-forbidden', `the no-access (403) page for ${env.OTHER_APP}`);
  await page.setViewportSize({ width: 375, height: 812 });
  await page.goto(`${BASE}${app}/overview`);
  await waitOverview(page);
  await take('12-overview-375', 'Overview at 375 px');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `at 375 px the page is ${overflow} px wider than the viewport`);
  for (const line of written) {
    const file = line.split(' — ')[0];
    const head = fs.readFileSync(file).subarray(0, 8);
    assert.ok(head.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), `${file} is not a PNG`);
    note(`${line} (${Math.round(fs.statSync(file).size / 1024)} KB)`);
  }
  problems.assertNone();
});

// ------------------------------------------------------------------ 7 (last: it spends failed logins). login throttle (access.mjs)

registerThrottleTest();

// ------------------------------------------------------------------ run

const started = Date.now();
fs.mkdirSync(env.SHOTS, { recursive: true });
let chromium;
try {
  chromium = await startBrowser();
} catch (err) {
  console.log(`not ok - start Chromium\n  ${String(err.message).split('\n').slice(0, 4).join('\n  ')}\n0 passed, 1 failed`);
  process.exit(1);
}
let result;
try {
  result = await runAll(chromium.browser);
} finally {
  await chromium.close();
}
console.log(`# total run time ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${result.passed} passed, ${result.failed} failed`);
process.exitCode = result.failed ? 1 : 0;
