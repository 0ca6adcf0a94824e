// The browser tracker (/sdk.js) on a page of another origin: page views on
// load and on pushState, a custom event and a sendBeacon flush arrive exactly
// once. Registered by dashboard.mjs.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  RUN, analyticsPath, assertNoErrorStates, dataValue, env, login, matchApi, networkLog, pageApi, poll, readApi, recordApi, runAll, serve,
  settle, shot, shown, startBrowser, submitLogin, test, waitOverview, watch,
} from './lib.mjs';

const { BASE, GATEWAY, APP } = env;
const Q = analyticsPath();

export function registerTrackerTest() {
  // ------------------------------------------------------------------ 8. the browser tracker

  test('sdk.js: page view on load and on pushState, a custom event, a sendBeacon flush — each arrives exactly once', async ({ page, context, note }) => {
    const t0 = Date.now();
    const pa = `/e2e-${RUN}/a`;
    const pb = `/e2e-${RUN}/b`;
    const server = await serve({
      '/favicon.ico': () => ({ type: 'image/x-icon', body: '' }),
      [`/e2e-${RUN}/*`]: () => ({
        body: `<!doctype html><meta charset=utf-8><title>sdk e2e ${RUN}</title><script src="${GATEWAY}/sdk.js" data-key="${env.WRITE_KEY}" defer></script><p>tracker test ${RUN}</p>`,
      }),
    });
    // what the tracker sent, as Chromium saw it (a sendBeacon is a request of type Ping)
    const net = await networkLog(context, page, (u) => u === `${GATEWAY}/api/v1/events/batch`);
    const batches = async () => {
      const posts = net.filter((r) => r.method === 'POST');
      return Promise.all(posts.map(async (r) => ({ type: r.type, status: r.status, body: JSON.parse((await r.postData()) || '{}') })));
    };
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    try {
      await page.goto(`http://127.0.0.1:${server.port}${pa}?run=${RUN}`);
      await page.waitForFunction(() => window.tally && window.tally.__loaded);
      await page.evaluate(([pb, run]) => {
        history.pushState({}, '', `${pb}?run=${run}`);
        window.tally.track('e2e_custom', { run });
      }, [pb, RUN]);
      // The page is hidden: the tracker's visibilitychange listener flushes with sendBeacon.
      await page.evaluate(() => {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
        document.dispatchEvent(new Event('visibilitychange'));
      });
      await poll(() => net.some((r) => r.method === 'POST' && r.status), { timeout: 5000, interval: 50, what: 'the beacon' });
      let sent = await batches();
      assert.equal(sent.length, 1, `batches sent: ${JSON.stringify(sent.map((b) => b.type))}`);
      const beacon = sent[0];
      assert.equal(beacon.type, 'Ping', `the flush on hide went as ${beacon.type}, not sendBeacon`);
      assert.equal(beacon.status, 200);
      assert.equal(beacon.body.write_key, env.WRITE_KEY);
      const events = beacon.body.events;
      assert.deepEqual(events.map((e) => [e.name, e.properties.path ?? e.properties.run]), [['page_view', pa], ['page_view', pb], ['e2e_custom', RUN]]);
      assert.equal(new Set(events.map((e) => e.event_id)).size, 3, 'event ids are not unique');
      assert.equal(new Set(events.map((e) => e.anonymous_id)).size, 1);

      // A new "to" each time (no answer shared with the previous call); include_bots: headless Chromium's
      // user agent ("HeadlessChrome") is flagged as a bot, and bots are left out by default.
      const range = () => ({ from: t0 - 10 * 60_000, to: Date.now() + 10 * 60_000 });
      const ask = (group_by, filters) => readApi('query', { metrics: ['events', 'unique_users'], group_by, filters, range: range(), include_bots: true });
      const pages = () => ask(['$name', '$url_path'], [{ property: '$url_path', op: 'in', value: [pa, pb] }]);
      const custom = () => ask(['$name'], [{ property: 'properties.run', op: 'eq', value: RUN }]);
      const count = (answer, name, p) => answer.results.filter((r) => r.$name === name && (p === undefined || r.$url_path === p)).reduce((s, r) => s + r.events, 0);
      await poll(async () => {
        const [a, b] = await Promise.all([pages(), custom()]);
        return count(a, 'page_view', pa) && count(a, 'page_view', pb) && count(b, 'e2e_custom');
      }, { timeout: 60_000, interval: 500, what: 'the three events in /query' });
      const arrived = Date.now() - t0;

      // A sentinel from the same tracker, later: once it is there, anything sent before it is too.
      await page.evaluate((run) => {
        delete document.visibilityState;
        delete document.hidden;
        window.tally.track('e2e_sentinel', { run });
        window.tally.flush();
      }, RUN);
      await poll(() => net.filter((r) => r.method === 'POST' && r.status).length === 2, { timeout: 10_000, interval: 50, what: 'the sentinel batch' });
      sent = await batches();
      assert.equal(sent[1].type, 'Fetch');
      assert.equal(sent[1].status, 200);
      assert.deepEqual(sent[1].body.events.map((e) => [e.name, e.anonymous_id]), [['e2e_sentinel', events[0].anonymous_id]]);
      await poll(async () => count(await custom(), 'e2e_sentinel'), { timeout: 60_000, interval: 500, what: 'the sentinel in /query' });
      const [a, b] = await Promise.all([pages(), custom()]);
      assert.deepEqual(
        { [pa]: count(a, 'page_view', pa), [pb]: count(a, 'page_view', pb), e2e_custom: count(b, 'e2e_custom'), e2e_sentinel: count(b, 'e2e_sentinel'), others: [...a.results, ...b.results].filter((r) => !['page_view', 'e2e_custom', 'e2e_sentinel'].includes(r.$name)) },
        { [pa]: 1, [pb]: 1, e2e_custom: 1, e2e_sentinel: 1, others: [] },
      );
      assert.ok([...a.results, ...b.results].every((r) => r.unique_users === 1), 'not one visitor');
      assert.deepEqual(pageErrors, []);
      note(`run ${RUN}: page views ${pa}, ${pb} and e2e_custom went in one sendBeacon; in /query after ${arrived} ms; each exactly once after the sentinel`);
    } finally {
      await server.close();
    }
  }, { timeout: 180_000 });

}
