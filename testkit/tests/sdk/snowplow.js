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

const http = require("http");
const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const snowplow = require(path.join(dir, "node_modules", "@snowplow", "node-tracker"));

function eventIds(req, body) {
  if (req.method === "GET") return [new URL(req.url, "http://x").searchParams.get("eid")];
  return (JSON.parse(body.toString("utf8")).data || []).map((event) => event.eid);
}

function relay() {
  const seen = { requests: 0, forced: 0, paths: {}, statuses: [], acked: new Set() };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      seen.requests += 1;
      const route = `${req.method} ${req.url.split("?")[0]}`;
      seen.paths[route] = (seen.paths[route] || 0) + 1;
      const body = Buffer.concat(chunks);
      try {
        const answer = await fetch(gateway + req.url, {
          method: req.method,
          headers: req.headers["content-type"] ? { "content-type": req.headers["content-type"] } : {},
          body: req.method === "POST" ? body : undefined,
        });
        const bytes = Buffer.from(await answer.arrayBuffer());
        seen.statuses.push(answer.status);
        if (answer.status === 200 && seen.forced === 0 && req.method === "POST") {
          seen.forced += 1;
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: "unavailable", reason: "forced by the test relay" }));
          return;
        }
        if (answer.status === 200) for (const eid of eventIds(req, body)) seen.acked.add(eid);
        res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") || "text/plain" });
        res.end(bytes);
      } catch (error) {
        res.writeHead(502);
        res.end(String(error));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({ server, seen, port: server.address().port }));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

(async () => {
  const { server, seen, port } = await relay();
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
  while (sent.some((eid) => !seen.acked.has(eid)) && Date.now() < deadline) {
    await tracker.flush().catch(() => {});
    await pixel.flush().catch(() => {});
    await sleep(200);
  }
  server.close();
  console.log(JSON.stringify({
    sent,
    missing: sent.filter((eid) => !seen.acked.has(eid)),
    relay: { requests: seen.requests, forced: seen.forced, paths: seen.paths, statuses: seen.statuses },
  }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
