// Sends events with the real, unmodified Amplitude Node SDK
// (@amplitude/analytics-node), pointed at the gateway's HTTP V2 route through
// a relay that answers the SDK's first upload with 503 *after* the gateway
// stored it, so the SDK's retry of an already-stored upload is exercised.
//
//   node amplitude.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// The SDK sends 10 custom events (batches of 4), a revenue event, an identify
// and a group identify, with its own insert_ids, times and library. Prints
// what the SDK reported for each event and what the relay saw, as JSON.
"use strict";

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const amplitude = require(path.join(dir, "node_modules", "@amplitude", "analytics-node"));
const { relay } = require("./relay.js");

(async () => {
  // The first upload the gateway stored is answered 503 (Amplitude reads `code`).
  const inserted = new Set();
  const { server, seen, url } = await relay(gateway, {
    headers: ["content-type"],
    force: (req, answer) => (answer.status === 200 ? { status: 503, type: "application/json", body: JSON.stringify({ code: 503, error: "forced by the test relay" }) } : null),
    observe: (req, body, answer) => {
      if (answer.status === 200) for (const event of JSON.parse(body.toString("utf8")).events || []) inserted.add(event.insert_id);
    },
  });
  await amplitude.init(key, {
    serverUrl: `${url}/2/httpapi`,
    flushQueueSize: 4,
    flushIntervalMillis: 200,
    logLevel: amplitude.Types.LogLevel.None,
  }).promise;
  const pending = [];
  for (let i = 0; i < 10; i += 1) {
    pending.push(amplitude.track("Amplitude Event", { i, sdk: "analytics-node" }, { user_id: "amp-user", device_id: "amp-device" }).promise);
  }
  const revenue = new amplitude.Revenue().setProductId("sku-1").setPrice(9.5).setQuantity(2);
  pending.push(amplitude.revenue(revenue, { user_id: "amp-user" }).promise);
  const identity = new amplitude.Identify().set("plan", "pro").setOnce("first_seen", "2026-12-01");
  pending.push(amplitude.identify(identity, { user_id: "amp-user", device_id: "amp-device" }).promise);
  const group = new amplitude.Identify().set("seats", 5);
  pending.push(amplitude.groupIdentify("org", "acme", group, { device_id: "amp-device" }).promise);
  // No explicit flush(): it sends without retries. The SDK's own timer flushes
  // (every 200 ms, or at 4 events) with retries, as in a running service.
  const results = await Promise.all(pending);
  server.close();
  console.log(JSON.stringify({
    codes: results.map((r) => r.code),
    messages: [...new Set(results.map((r) => r.message))],
    names: results.map((r) => r.event.event_type),
    insert_ids: results.map((r) => r.event.insert_id),
    relay: { requests: seen.requests, forced: seen.forced, statuses: seen.statuses, stored: inserted.size },
  }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
