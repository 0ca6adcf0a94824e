// Runs the gateway's /sdk.js in Node with a minimal browser surface (window,
// document, history, localStorage, navigator.sendBeacon) whose network calls are
// real: fetch and sendBeacon post to the gateway under test.
//
//   node harness.js GATEWAY_URL WRITE_KEY
//
// Scenario: load the page (auto page view), fail the first network call (the
// tracker must retry it), send 25 custom events (a batch of 20 goes at once),
// identify, navigate with pushState (a second page view), then hide the page (the
// rest goes by sendBeacon). Prints one JSON line describing what was sent.
"use strict";

const [gateway, key] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function target() {
  const listeners = {};
  return {
    addEventListener(type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    dispatch(type) { (listeners[type] || []).forEach((fn) => fn({ type })); },
  };
}

async function main() {
  const response = await fetch(`${gateway}/sdk.js`);
  const contentType = response.headers.get("content-type");
  if (response.status !== 200 || !/javascript/.test(contentType)) {
    throw new Error(`GET /sdk.js: ${response.status} ${contentType}`);
  }
  const source = await response.text();

  const stats = { fetches: 0, failed: 0, beacons: 0, statuses: [] };
  const realFetch = globalThis.fetch;
  const store = new Map();
  const win = Object.assign(target(), {
    location: { href: "https://shop.example/pricing?utm_source=news", pathname: "/pricing" },
    localStorage: {
      getItem: (k) => (store.has(k) ? store.get(k) : null),
      setItem: (k, v) => store.set(k, String(v)),
      removeItem: (k) => store.delete(k),
    },
    crypto: globalThis.crypto,
  });
  const doc = Object.assign(target(), {
    readyState: "complete",
    visibilityState: "visible",
    referrer: "https://news.example/",
    title: "Pricing",
    currentScript: { src: `${gateway}/sdk.js`, getAttribute: (n) => (n === "data-key" ? key : null) },
  });
  const history = {
    pushState(state, title, url) {
      win.location = { href: `https://shop.example${url}`, pathname: url };
    },
  };
  const pending = [];
  const nav = {
    sendBeacon(url, blob) {
      stats.beacons += 1;
      pending.push(blob.text().then((body) =>
        realFetch(url, { method: "POST", headers: { "content-type": blob.type }, body })
          .then((r) => stats.statuses.push(r.status))));
      return true;
    },
  };
  const trackedFetch = (url, init) => {
    stats.fetches += 1;
    if (stats.fetches === 1) {
      stats.failed += 1;
      return Promise.reject(new TypeError("network down (simulated)"));
    }
    const sent = realFetch(url, init).then((r) => { stats.statuses.push(r.status); return r; });
    pending.push(sent);
    return sent;
  };

  new Function("window", "document", "history", "navigator", "fetch", "Blob", "setTimeout", "clearTimeout", source)(
    win, doc, history, nav, trackedFetch, Blob, setTimeout, clearTimeout);
  win.tally = win.tally || globalThis.tally;
  const tally = win.tally;
  if (!tally) throw new Error("sdk.js did not install window.tally");

  tally.flush(); // the page view, whose first attempt fails and is retried with backoff
  await sleep(1500);
  for (let i = 0; i < 25; i += 1) tally.track("button_clicked", { n: i });
  await sleep(300);
  tally.identify("user-42", { plan: "pro" });
  history.pushState({}, "", "/checkout");
  doc.visibilityState = "hidden";
  doc.dispatch("visibilitychange");
  await sleep(3000); // any retry scheduled by the backoff
  tally.flush();
  await Promise.all(pending);
  await sleep(200);
  await Promise.all(pending);
  console.log(JSON.stringify({ ...stats, anonymous_id: store.get("tally_anonymous_id") }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
