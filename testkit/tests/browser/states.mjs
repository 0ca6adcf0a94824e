// The dashboard's states that the happy path never shows, on the real stack:
// an app without events (how to send the first one), the event store down
// (every panel says so and offers Retry: never a blank page), and the
// keyboard (every control labelled, focus visible), and contrast (WCAG AA
// for every text of Overview and Realtime). Registered by
// dashboard.mjs before its own tests.
//
// Environment besides lib.mjs's: TALLY_EMPTY_APP (an app without events, the
// admin is its admin), TALLY_BROKEN_BASE (a query service on the same
// PostgreSQL whose ClickHouse is unreachable; cookies are per host, so the
// session of TALLY_BASE opens it too).

import assert from 'node:assert/strict';
import { env, login, settle, shot, test, watch } from './lib.mjs';


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
  const app = env.APP;
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

test('contrast: every text on Overview and Realtime meets WCAG AA against its background', async ({ page, note }) => {
  await login(page);
  const problems = watch(page);
  let checked = 0;
  for (const where of ['overview', 'realtime']) {
    await page.goto(`${env.BASE}/app/${encodeURIComponent(env.APP)}/${where}`);
    await page.waitForSelector('[data-testid^=kpi-], [data-testid^=live-]');
    await settle(page, problems);
    const result = await page.evaluate(() => {
      const rgba = (text) => {
        const m = text.match(/rgba?\(([^)]+)\)/);
        if (!m) return null;
        const [r, g, b, a = 1] = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
        return { r, g, b, a };
      };
      const lum = ({ r, g, b }) => {
        const c = [r, g, b].map((v) => {
          const s = v / 255;
          return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
      };
      // The first opaque background behind an element (white at the root).
      const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
          const bg = rgba(getComputedStyle(e).backgroundColor);
          if (bg && bg.a >= 0.99) return bg;
          if (getComputedStyle(e).backgroundImage !== 'none') return null; // gradients: not judged
        }
        return { r: 255, g: 255, b: 255, a: 1 };
      };
      const bad = [];
      let count = 0;
      for (const el of document.querySelectorAll('body *')) {
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!own || el.closest('canvas, svg, .u-legend')) continue;
        const style = getComputedStyle(el);
        if (style.visibility === 'hidden' || style.display === 'none' || el.getClientRects().length === 0) continue;
        const fg = rgba(style.color);
        const bg = background(el);
        if (!fg || !bg) continue;
        // A translucent text colour is blended over its background.
        const mix = (k) => fg[k] * fg.a + bg[k] * (1 - fg.a);
        const text = { r: mix('r'), g: mix('g'), b: mix('b') };
        const [l1, l2] = [lum(text), lum(bg)].sort((a, b) => b - a);
        const ratio = (l1 + 0.05) / (l2 + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        count += 1;
        if (ratio < (large ? 3 : 4.5)) bad.push(`${ratio.toFixed(2)}: "${el.textContent.trim().slice(0, 40)}" (${style.color} on rgb(${bg.r}, ${bg.g}, ${bg.b}))`);
      }
      return { bad, count };
    });
    assert.deepEqual(result.bad, [], `texts below WCAG AA on ${where}`);
    checked += result.count;
  }
  note(`${checked} texts checked on Overview and Realtime, all at least 4.5:1 (3:1 large)`);
});
