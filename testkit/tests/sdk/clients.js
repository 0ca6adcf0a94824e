// Sends events with the real, unmodified Segment (@segment/analytics-node) and
// RudderStack (@rudderstack/rudder-sdk-node) Node SDKs, pointed at the gateway.
//
//   node clients.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// Each SDK sends 10 track calls, 1 identify and 1 page, with its own batching,
// message ids, timestamps and Basic authentication. Prints what each SDK reported.
"use strict";

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const load = (name) => require(path.join(dir, "node_modules", name));

async function segment() {
  const { Analytics } = load("@segment/analytics-node");
  const errors = [];
  const statuses = [];
  const client = new Analytics({ writeKey: key, host: gateway, flushAt: 5, flushInterval: 200, maxRetries: 3 });
  client.on("error", (error) => errors.push(String(error && (error.reason || error.message || error.code))));
  client.on("http_request", (request) => statuses.push(request.url));
  for (let i = 0; i < 10; i += 1) {
    client.track({ userId: "seg-user", event: "Segment Event", properties: { i, sdk: "segment" } });
  }
  client.identify({ userId: "seg-user", traits: { plan: "pro", email: "seg@example.com" } });
  client.page({ anonymousId: "seg-anon", name: "Pricing", properties: { url: "https://shop.example/pricing" } });
  await client.closeAndFlush({ timeout: 20000 });
  return { errors, requests: statuses.length };
}

async function rudderstack() {
  const Analytics = load("@rudderstack/rudder-sdk-node");
  const errors = [];
  const client = new Analytics(key, {
    dataPlaneUrl: gateway, flushAt: 100, flushInterval: 60000, logLevel: "error",
    errorHandler: (error) => errors.push(String(error && error.message)),
  });
  for (let i = 0; i < 10; i += 1) {
    client.track({ userId: "rs-user", event: "Rudder Event", properties: { i, sdk: "rudderstack" } });
  }
  client.identify({ userId: "rs-user", traits: { plan: "free" } });
  client.page({ anonymousId: "rs-anon", name: "Docs", properties: { url: "https://shop.example/docs" } });
  await client.flush();
  return { errors };
}

(async () => {
  const result = { segment: await segment(), rudderstack: await rudderstack() };
  console.log(JSON.stringify(result));
  process.exit(0); // the SDKs keep timers alive
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
