// The dashboard's states that the happy path never shows, on the real stack:
// an app without events (how to send the first one), the event store down
// (every panel says so and offers Retry: never a blank page), and the
// keyboard (every control labelled, focus visible). Registered by
// dashboard.mjs before its own tests.
//
// Environment besides lib.mjs's: TALLY_EMPTY_APP (an app without events, the
// admin is its admin), TALLY_BROKEN_BASE (a query service on the same
// PostgreSQL whose ClickHouse is unreachable; cookies are per host, so the
// session of TALLY_BASE opens it too).

import assert from 'node:assert/strict';
import { login, settle, shot, test, watch } from './lib.mjs';


const EMPTY_APP = process.env.TALLY_EMPTY_APP;
const BROKEN = (process.env.TALLY_BROKEN_BASE || '').replace(/\/+$/, '');

test('empty app: Overview shows how to send the first event, with the app\'s key snippet', async ({ page, note }) => {
  assert.ok(EMPTY_APP, 'TALLY_EMPTY_APP is required');
  const problems = watch(page);
  await login(page, undefined, undefined, `/app/${EMPTY_APP}/overview`);
  await page.waitForSelector('[data-testid=onboarding]');
  await settle(page, problems);
  const text = await page.locator('[data-testid=onboarding]').innerText();
  assert.match(text, /sdk\.js/, 'the /sdk.js snippet');
  assert.match(text, /curl/, 'the curl snippet');
  assert.equal(await page.locator('[data-testid=kpi-visitors-value]').count(), 0, 'no empty KPI panels instead');
  problems.assertNone('on the empty app');
  note(`shot: ${await shot(page, '13-empty-app')}`);
});

test('ClickHouse unreachable: every Overview panel says so and offers Retry, never a blank page', async ({ page, note }) => {
  assert.ok(BROKEN, 'TALLY_BROKEN_BASE is required');
  // The failing requests are the point here: only they may fail.
  const problems = watch(page, (e) => e.kind === 'console' || (e.kind === 'status' && e.status === 503));
  await login(page);
  const app = process.env.TALLY_APP;
  const failed = [];
  page.on('response', (r) => {
    if (r.url().startsWith(BROKEN) && r.status() >= 500) failed.push(r.status());
  });
  await page.goto(`${BROKEN}/app/${encodeURIComponent(app)}/overview?range=7d`);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=error]').length >= 5, null, { timeout: 30_000 });
  const panels = await page.$$eval('[data-testid=error]', (els) => els.map((e) => ({
    text: e.textContent.trim(),
    retry: !!e.closest('[data-testid^=panel-], section')?.querySelector('[data-testid=retry]'),
  })));
  for (const p of panels) {
    assert.match(p.text, /unavailable|ClickHouse|event store|try again/i, `a clear message: ${p.text}`);
    assert.ok(p.retry, `a Retry button beside: ${p.text}`);
  }
  assert.ok(failed.length > 0 && failed.every((s) => s === 503), `the API answered 503: ${failed}`);
  // The frame stays: the navigation, the range and the user are there.
  assert.ok(await page.locator('[data-testid=tab-overview]').count(), 'the page frame is shown');
  const before = failed.length;
  const retried = page.waitForResponse((r) => r.url().startsWith(BROKEN) && r.status() === 503);
  await page.locator('[data-testid=retry]').first().click();
  await retried;
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=error]').length >= 5);
  assert.ok(failed.length > before, 'Retry asked again');
  problems.assertNone('besides the 503s');
  note(`${panels.length} panels show the error with Retry; ${failed.length} answers 503`);
  note(`shot: ${await shot(page, '14-clickhouse-down')}`);
});

test('keyboard: every control is labelled and focus is visible', async ({ page, note }) => {
  await login(page);
  const problems = watch(page);
  await settle(page, problems);
  const unlabelled = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
      const id = el.id;
      const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
        || (id && document.querySelector(`label[for="${id}"]`)) || el.closest('label')
        || el.textContent.trim() || el.getAttribute('title');
      if (!named) bad.push(el.outerHTML.slice(0, 100));
    }
    return bad;
  });
  assert.deepEqual(unlabelled, [], 'controls without a name');
  let reached = 0;
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const style = getComputedStyle(el);
      return { tag: el.tagName, outline: style.outlineStyle !== 'none' && style.outlineWidth !== '0px', shadow: style.boxShadow !== 'none' };
    });
    if (focus) {
      reached += 1;
      assert.ok(focus.outline || focus.shadow, `focus is visible on ${focus.tag}`);
    }
  }
  assert.ok(reached >= 6, `Tab reached ${reached} controls`);
  note(`Tab reached ${reached} controls, each with a visible focus`);
});
