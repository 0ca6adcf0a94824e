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

const http = require("http");
const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const { PostHog } = require(path.join(dir, "node_modules", "posthog-node"));

// The relay: forwards every request; the first capture answer becomes a 503.
function relay() {
  const seen = { requests: 0, forced: 0, statuses: [] };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      seen.requests += 1;
      const headers = {};
      for (const name of ["content-type", "content-encoding", "user-agent"]) {
        if (req.headers[name]) headers[name] = req.headers[name];
      }
      try {
        const answer = await fetch(gateway + req.url, {
          method: req.method,
          headers,
          body: req.method === "GET" ? undefined : Buffer.concat(chunks),
        });
        const text = await answer.text();
        seen.statuses.push(answer.status);
        if (seen.forced === 0 && answer.status === 200 && req.url.startsWith("/batch")) {
          seen.forced += 1;
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: "unavailable", reason: "forced by the test relay" }));
          return;
        }
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(text);
      } catch (error) {
        res.writeHead(502);
        res.end(String(error));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({ server, seen, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

(async () => {
  const { server, seen, url } = await relay();
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
