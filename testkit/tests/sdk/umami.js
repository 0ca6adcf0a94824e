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

const path = require("path");
const [dir, gateway, key] = process.argv.slice(2);
const { Umami } = require(path.join(dir, "node_modules", "@umami", "node"));
const { relay, UNAVAILABLE } = require("./relay.js");

(async () => {
  const { server, seen, url } = await relay(gateway, { force: (req, answer) => (answer.status === 200 ? UNAVAILABLE : null) });
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
