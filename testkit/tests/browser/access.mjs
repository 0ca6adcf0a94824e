// Access tests of the dashboard (no-access page, viewer, logout, cross-site
// POST) and the login throttle, registered by dashboard.mjs where they run:
// the throttle last, since it spends failed logins of this address.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  RUN, analyticsPath, assertNoErrorStates, dataValue, env, login, matchApi, networkLog, pageApi, poll, readApi, recordApi, runAll, serve,
  settle, shot, shown, startBrowser, submitLogin, test, waitOverview, watch,
} from './lib.mjs';

const { BASE, GATEWAY, APP } = env;
const Q = analyticsPath();

export function registerAccessTests() {
  // ------------------------------------------------------------------ 7. access

  test('access: an app the user is not a member of shows the no-access page', async ({ page }) => {
    const problems = watch(page);
    await login(page);
    await page.goto(`${BASE}/app/${env.OTHER_APP}/overview`);
    await page.waitForSelector('[data-testid=forbidden]');
    assert.equal(await page.textContent('[data-testid=forbidden-app]'), env.OTHER_APP);
    assert.equal(await page.locator('[data-testid=page-overview]').count(), 0);
    assert.ok((await page.$$eval('[data-testid=forbidden-app-link]', (as) => as.map((a) => a.getAttribute('href')))).includes(`/app/${APP}/overview`));
    problems.assertNone();
    const r = await pageApi(page, `${analyticsPath(env.OTHER_APP)}/live?windows=1`);
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'not_a_member');
  });

  test('access: a viewer has no Settings tab and gets no access on settings', async ({ page }) => {
    const problems = watch(page);
    await login(page, env.VIEWER_EMAIL, env.VIEWER_PASSWORD);
    await page.waitForSelector('[data-testid=tab-overview]');
    await waitOverview(page);
    assert.equal(await page.locator('[data-testid=tab-settings]').count(), 0);
    assert.equal(await page.locator('[data-testid=tab-dashboards]').count(), 1);
    await page.goto(`${BASE}/app/${APP}/settings`);
    await page.waitForSelector('[data-testid=forbidden]');
    assert.match(await page.textContent('[data-testid=forbidden]'), /are for its admins; you are a viewer/);
    assert.equal(await page.locator('[data-testid=page-settings]').count(), 0);
    problems.assertNone();
    const r = await pageApi(page, `/api/v1/apps/${APP}/keys`);
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'not_an_admin');
  });

  test('access: logout ends the session, also for a copy of the old cookie', async ({ page, context }) => {
    await login(page);
    const cookie = (await context.cookies(BASE)).find((c) => c.name === 'tally_session');
    assert.ok(cookie, 'no tally_session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    const withCopy = (p) => fetch(`${BASE}${p}`, { headers: { cookie: `tally_session=${cookie.value}` } });
    assert.equal((await withCopy('/api/v1/auth/me')).status, 200, 'the copied cookie does not work even before logout');
    assert.equal((await withCopy(`${Q}/live?windows=1`)).status, 200);

    await page.click('[data-testid=logout]');
    await page.waitForURL((u) => u.pathname === '/login');
    await poll(async () => !(await context.cookies(BASE)).some((c) => c.name === 'tally_session'), { timeout: 5000, interval: 50, what: 'the browser to drop the session cookie' });
    assert.equal((await pageApi(page, '/api/v1/auth/me')).status, 401);
    await page.goto(`${BASE}/app/${APP}/overview`);
    await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === `/app/${APP}/overview`);
    await page.waitForSelector('[data-testid=login-email]');
    const me = await withCopy('/api/v1/auth/me');
    assert.equal(me.status, 401, `old cookie after logout: ${me.status}`);
    assert.equal((await withCopy(`${Q}/live?windows=1`)).status, 401);
  });

  test('access: a cross-site POST with the session is not answered with data', async ({ page, context, note }) => {
    await login(page);
    const target = `${BASE}${Q}/query`;
    // A text/plain body (a "simple" request: no preflight) that is a valid /query, as the control proves.
    const text = JSON.stringify({ metrics: ['events'], range: '7d', filters: [{ property: '$name', op: 'neq', value: 'x=' }] });
    const control = await page.evaluate(async ([url, body]) => {
      const r = await fetch(url, { method: 'POST', credentials: 'include', headers: { 'content-type': 'text/plain' }, body });
      return { status: r.status, body: await r.json() };
    }, [target, text]);
    assert.equal(control.status, 200, `same-origin control: ${JSON.stringify(control.body)}`);
    assert.ok(control.body.results[0].events > 0);

    // An HTML form posts "name=value" (text/plain): split the JSON at its "=" so the form sends the same text.
    const cut = text.indexOf('x=') + 1;
    const attr = (s) => s.replace(/&/g, '&amp;').replace(/'/g, '&#39;').replace(/</g, '&lt;');
    const server = await serve({
      '/favicon.ico': () => ({ type: 'image/x-icon', body: '' }),
      '/fetch': () => ({
        body: `<!doctype html><meta charset=utf-8><title>another site</title><script>
          fetch(${JSON.stringify(target)}, {method: 'POST', credentials: 'include', headers: {'content-type': 'text/plain'}, body: ${JSON.stringify(text)}})
            .then((r) => r.text().then((t) => (window.__result = {status: r.status, text: t})))
            .catch((e) => (window.__result = {error: String(e)}));
        </script>`,
      }),
      '/form': () => ({
        body: `<!doctype html><meta charset=utf-8><title>another site</title><form method=POST action="${target}" enctype="text/plain">
          <input type=hidden name='${attr(text.slice(0, cut))}' value='${attr(text.slice(cut + 1))}'><button id=go>go</button></form>`,
      }),
    });
    try {
      const outcomes = [];
      // 127.0.0.1 on another port: another origin of the same *site* (SameSite=Lax lets the cookie go);
      // localhost: another site (the browser withholds the cookie).
      for (const origin of [`http://127.0.0.1:${server.port}`, `http://localhost:${server.port}`]) {
        for (const kind of ['fetch', 'form']) {
          const p = await context.newPage();
          const net = await networkLog(context, p, (u) => u === target);
          await p.goto(`${origin}/${kind}`);
          let body = null;
          if (kind === 'form') {
            await Promise.all([p.waitForURL(target), p.click('#go')]);
            body = JSON.parse(await p.textContent('body'));
          } else {
            const result = await p.waitForFunction(() => window.__result).then((h) => h.jsonValue());
            assert.ok(result.error || result.status !== 200, `the page on ${origin} read an answer: ${JSON.stringify(result)}`);
          }
          const sent = await poll(() => net.find((r) => r.method === 'POST' && r.status), { timeout: 5000, interval: 50, what: `the ${kind} request's status` });
          await p.close();
          const cookie = /(^|;\s*)tally_session=/.test(sent.headers.cookie || '');
          const what = `${kind} from ${origin} (Origin: ${sent.headers.origin}): cookie ${cookie ? 'sent' : `not sent${sent.withheld.length ? `, withheld: ${sent.withheld}` : ''}`}, HTTP ${sent.status}${body ? ` ${body.error}` : ''}`;
          assert.notEqual(sent.status, 200, `answered with data: ${what}`);
          if (cookie) {
            // with the session, only the Origin check can refuse it (the same body from the right origin is a 200)
            assert.equal(sent.status, 403, what);
            if (body) assert.equal(body.error, 'cross_site_request', what);
            outcomes.push(`${what} → refused by the service`);
          } else {
            assert.equal(sent.status, 401, what);
            if (body) assert.equal(body.error, 'missing_read_key', what);
            outcomes.push(`${what} → the browser kept the cookie (SameSite=Lax)`);
          }
        }
      }
      outcomes.forEach(note);
      assert.ok(outcomes.some((o) => o.includes('refused by the service')), "no request carried the cookie: the service's Origin check was never exercised");
    } finally {
      await server.close();
    }
  });

}

export function registerThrottleTest() {
  // ------------------------------------------------------------------ 7 (last: it spends failed logins). login throttle

  test('access: 10 wrong passwords say so, the 11th within a minute gets 429 and the wait message', async ({ page, note }) => {
    const statuses = [];
    page.on('response', (r) => {
      if (r.url() === `${BASE}/api/v1/auth/login`) statuses.push(r.status());
    });
    await page.goto(`${BASE}/login`);
    await page.fill('[data-testid=login-email]', env.THROTTLE_EMAIL);
    const started = Date.now();
    let last;
    for (let i = 1; i <= 11; i++) {
      await page.fill('[data-testid=login-password]', `wrong-${RUN}-${i}`);
      const answer = page.waitForResponse((r) => r.url() === `${BASE}/api/v1/auth/login`);
      await page.click('[data-testid=login-submit]');
      last = await answer;
      const kind = i <= 10 ? 'credentials' : 'wait';
      await page.waitForSelector(`[data-testid=login-error][data-error=${kind}]`);
      if (i <= 10) {
        assert.equal(last.status(), 401, `attempt ${i}`);
        assert.equal(await page.textContent('[data-testid=login-error]'), 'Wrong e-mail or password.');
        await page.waitForSelector('[data-testid=login-submit]:not([disabled])');
      }
    }
    assert.ok(Date.now() - started < 60_000, 'the 11 attempts took more than a minute');
    assert.equal(last.status(), 429);
    const body = await last.json();
    assert.equal(body.error, 'too_many_attempts');
    assert.ok(body.retry_after_s > 0, JSON.stringify(body));
    assert.match(await page.textContent('[data-testid=login-error]'), /^Too many attempts\. Try again in \d+ s\.$/);
    assert.equal(await page.locator('[data-testid=login-submit]').isDisabled(), true);
    assert.deepEqual(statuses, [...Array(10).fill(401), 429]);
    note(`statuses ${statuses.join(' ')}; retry_after_s ${body.retry_after_s}; "${await page.textContent('[data-testid=login-error]')}"`);
  });

}
