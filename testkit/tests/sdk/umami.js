// Sends events with Umami's real, unmodified Node client (@umami/node),
// pointed at the gateway's /api/send through a relay that answers the first
// stored event with 503 (the client does not retry: the event must still
// count once).
//
//   node umami.js NODE_CLIENTS_DIR GATEWAY_URL WRITE_KEY
//
// Sends a page view (an object payload without a name), 3 named events with
// data, a named event as an object payload, and an identify. Prints the
// answers' statuses and the relay's view, as JSON.
"use strict";

const http = require("http");
const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const { Umami } = require(path.join(dir, "node_modules", "@umami", "node"));

function relay() {
  const seen = { requests: 0, forced: 0, statuses: [] };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      seen.requests += 1;
      try {
        const answer = await fetch(gateway + req.url, {
          method: req.method,
          headers: { "content-type": req.headers["content-type"], "user-agent": req.headers["user-agent"] },
          body: Buffer.concat(chunks),
        });
        const text = await answer.text();
        seen.statuses.push(answer.status);
        if (seen.forced === 0 && answer.status === 200) {
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
  const umami = new Umami({ websiteId: key, hostUrl: url });
  const statuses = [];
  const page = { hostname: "shop.example", url: "/pricing?utm_source=news", title: "Pricing", referrer: "https://news.example/", language: "en-US", screen: "1920x1080" };
  statuses.push((await umami.track(page)).status);
  for (let i = 0; i < 3; i += 1) statuses.push((await umami.track("signup", { plan: "pro", i })).status);
  statuses.push((await umami.track({ ...page, url: "/checkout", name: "checkout", data: { step: 2 } })).status);
  statuses.push((await umami.identify({ plan: "pro", company: "Acme" })).status);
  server.close();
  console.log(JSON.stringify({ statuses, relay: seen }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
