// Sends events with Snowplow's real, unmodified Node tracker
// (@snowplow/node-tracker), its app id a Tally write key, through a relay
// that answers the first stored POST (…/tp2) with 503; the tracker keeps the
// failed events and sends them again (same `eid`s), which must count once.
//
//   node snowplow.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// A POST tracker (base64 self-describing JSON and contexts, buffers of 4)
// sends a page view with a context, 6 structured events and a self-describing
// event; a GET tracker sends one page view through the pixel (/i). Prints the
// `eid`s the gateway acknowledged and what the relay saw, as JSON.
"use strict";

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const snowplow = require(path.join(dir, "node_modules", "@snowplow", "node-tracker"));
const { relay, UNAVAILABLE } = require("./relay.js");

function eventIds(req, body) {
  if (req.method === "GET") return [new URL(req.url, "http://x").searchParams.get("eid")];
  return (JSON.parse(body.toString("utf8")).data || []).map((event) => event.eid);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

(async () => {
  // The first POST the gateway stored is answered 503; the eids acknowledged are kept.
  const acked = new Set();
  const { server, seen, port } = await relay(gateway, {
    headers: ["content-type"],
    force: (req, answer) => (answer.status === 200 && req.method === "POST" ? UNAVAILABLE : null),
    observe: (req, body, answer, bytes, forced) => {
      if (answer.status === 200 && !forced) for (const eid of eventIds(req, body)) acked.add(eid);
    },
  });
  const sent = [];
  const emitter = { endpoint: "127.0.0.1", port, protocol: "http", bufferSize: 4 };
  const tracker = snowplow.newTracker({ namespace: "tally", appId: key, encodeBase64: true }, emitter);
  tracker.setUserId("sp-user");
  tracker.setDomainUserId("sp-device");
  tracker.setSessionId("sp-session");
  tracker.setSessionIndex(1);
  const track = (t, event, context) => {
    const payload = t.track(event, context);
    if (payload && payload.eid) sent.push(payload.eid);
  };
  const context = [{ schema: "iglu:com.acme/user/jsonschema/1-0-0", data: { type: "tester" } }];
  track(tracker, snowplow.buildPageView({ pageUrl: "https://shop.example/pricing", pageTitle: "Pricing", referrer: "https://news.example/" }), context);
  for (let i = 0; i < 6; i += 1) {
    track(tracker, snowplow.buildStructEvent({ category: "shop", action: "add-to-basket", label: `sku-${i}`, value: i }));
  }
  track(tracker, snowplow.buildSelfDescribingEvent({
    event: { schema: "iglu:com.acme/viewed_product/jsonschema/1-0-0", data: { sku: "a-1", price: 9.5 } },
  }));
  const pixel = snowplow.newTracker({ namespace: "tally-get", appId: key, encodeBase64: true }, { ...emitter, eventMethod: "get", bufferSize: 1 });
  pixel.setDomainUserId("sp-pixel-device");
  track(pixel, snowplow.buildPageView({ pageUrl: "https://shop.example/landing", pageTitle: "Landing" }));
  // Flush until every event is acknowledged (the forced batch is retried from the tracker's store).
  const deadline = Date.now() + 30000;
  while (sent.some((eid) => !acked.has(eid)) && Date.now() < deadline) {
    await tracker.flush().catch(() => {});
    await pixel.flush().catch(() => {});
    await sleep(200);
  }
  server.close();
  console.log(JSON.stringify({
    sent,
    missing: sent.filter((eid) => !acked.has(eid)),
    relay: { requests: seen.requests, forced: seen.forced, paths: seen.paths, statuses: seen.statuses },
  }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
