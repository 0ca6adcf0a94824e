// Sends events with the real, unmodified PostHog Node SDK (posthog-node),
// pointed at the gateway through a small HTTP relay that answers the SDK's
// first capture request with 503 *after* the gateway stored it, so the SDK's
// retry of an already-stored batch is exercised.
//
//   node posthog.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// The SDK sends 10 custom events, an identify, an alias and a $pageview with
// its own batching (gzip bodies), uuids, timestamps and project key (the
// Tally write key). Prints what the SDK and the relay saw, as JSON.
"use strict";

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const { PostHog } = require(path.join(dir, "node_modules", "posthog-node"));
const { relay, UNAVAILABLE } = require("./relay.js");

(async () => {
  // The first batch the gateway stored is answered 503.
  const { server, seen, url } = await relay(gateway, {
    force: (req, answer) => (answer.status === 200 && req.url.startsWith("/batch") ? UNAVAILABLE : null),
  });
  const errors = [];
  const client = new PostHog(key, {
    host: url,
    flushAt: 5,
    flushInterval: 200,
    fetchRetryCount: 3,
    fetchRetryDelay: 100,
  });
  client.on("error", (error) => errors.push(String(error && (error.message || error))));
  for (let i = 0; i < 10; i += 1) {
    client.capture({ distinctId: "ph-user", event: "PostHog Event", properties: { i, sdk: "posthog-node" } });
  }
  client.identify({ distinctId: "ph-user", properties: { plan: "pro", email: "ph@example.com" } });
  client.alias({ distinctId: "ph-user", alias: "ph-old-device" });
  client.capture({
    distinctId: "ph-anon",
    event: "$pageview",
    properties: { $current_url: "https://shop.example/pricing", $pathname: "/pricing" },
  });
  await client.shutdown(20000);
  server.close();
  console.log(JSON.stringify({ errors, relay: seen }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
