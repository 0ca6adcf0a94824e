// Sends events with the real, unmodified Mixpanel Node SDK (`mixpanel`),
// pointed at the gateway through a relay that answers the SDK's first batch
// (POST /track, form-encoded base64 `data`) with 503 *after* the gateway
// stored it. The SDK does not retry by itself; like an app following
// Mixpanel's advice it sends the batch again, with the same `$insert_id`s —
// which must count once.
//
//   node mixpanel.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// Sends: 4 single events (GET /track, base64 `data` in the query), a batch of
// 6 events with $insert_id (sent twice), a page view of an anonymous device,
// a profile update (GET /engage: $set → identify), and one event through a
// second, verbose client. Prints the callbacks' errors and the relay's view.
"use strict";

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const Mixpanel = require(path.join(dir, "node_modules", "mixpanel"));
const { relay } = require("./relay.js");

const call = (fn) => new Promise((resolve) => fn((error) => resolve(error ? String(error.message || error) : null)));

(async () => {
  // The first batch (POST) the gateway stored is answered 503, body `0`.
  const { server, seen, port } = await relay(gateway, {
    headers: ["content-type"],
    force: (req, answer, bytes) =>
      req.method === "POST" && answer.status === 200 && bytes.toString() === "1" ? { status: 503, type: "text/plain", body: "0" } : null,
  });
  const options = { host: "127.0.0.1", port, protocol: "http", keepAlive: false };
  const mixpanel = Mixpanel.init(key, options);
  const verbose = Mixpanel.init(key, { ...options, verbose: true });
  const errors = [];
  for (let i = 0; i < 4; i += 1) {
    errors.push(await call((cb) => mixpanel.track("Mixpanel Event", { distinct_id: "mp-user", i }, cb)));
  }
  const now = Math.floor(Date.now() / 1000);
  const batch = () => Array.from({ length: 6 }, (_, i) => ({
    event: "Mixpanel Batch",
    properties: { distinct_id: "mp-user", time: now - i, $insert_id: `mp-batch-${i}`, n: i },
  }));
  const forced = await call((cb) => mixpanel.track_batch(batch(), (errs) => cb(errs && errs.length ? errs[0] : null)));
  // The app's retry of the failed batch, same $insert_ids.
  errors.push(await call((cb) => mixpanel.track_batch(batch(), (errs) => cb(errs && errs.length ? errs[0] : null))));
  errors.push(await call((cb) => mixpanel.track("$mp_web_page_view", {
    distinct_id: "$device:mp-device", $device_id: "mp-device",
    $current_url: "https://shop.example/pricing", current_url_path: "/pricing",
  }, cb)));
  errors.push(await call((cb) => mixpanel.people.set("mp-user", { plan: "pro", $ip: "203.0.113.9" }, cb)));
  errors.push(await call((cb) => verbose.track("Verbose Event", { distinct_id: "mp-user" }, cb)));
  server.close();
  console.log(JSON.stringify({ forced, errors: errors.filter(Boolean), relay: { ...seen, methods: seen.paths } }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
