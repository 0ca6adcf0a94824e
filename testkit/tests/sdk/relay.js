// The relay every SDK test puts between the SDK and the gateway: it forwards
// each request (method, the chosen headers, body) and the gateway's answer
// (status, headers, body), counts what it saw, and replaces one answer the
// gateway already stored with the reply `force` returns (asked for every
// answer until it has forced once), so the SDK's handling of a failed
// request — its retry, or none — meets data that is already stored.
"use strict";

const http = require("http");

const HOP_BY_HOP = ["content-length", "content-encoding", "transfer-encoding", "connection"];

/** The usual forced reply. */
const UNAVAILABLE = { status: 503, type: "application/json", body: JSON.stringify({ error: "unavailable", reason: "forced by the test relay" }) };

/**
 * relay(gateway, { headers, force(req, answer, bytes), observe(req, body, answer, bytes, forced) })
 * resolves { server, seen: { requests, forced, paths, statuses, inflight, last }, port, url }.
 */
function relay(gateway, { headers = ["content-type", "content-encoding", "user-agent"], force = () => null, observe = () => {} } = {}) {
  const seen = { requests: 0, forced: 0, paths: {}, statuses: [], inflight: 0, last: Date.now() };
  const server = http.createServer((req, res) => {
    const chunks = [];
    seen.inflight += 1;
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      seen.requests += 1;
      const route = `${req.method} ${req.url.split("?")[0]}`;
      seen.paths[route] = (seen.paths[route] || 0) + 1;
      const body = Buffer.concat(chunks);
      const forwarded = {};
      for (const name of headers) if (req.headers[name]) forwarded[name] = req.headers[name];
      try {
        const answer = await fetch(gateway + req.url, {
          method: req.method,
          headers: forwarded,
          body: ["GET", "HEAD", "OPTIONS"].includes(req.method) ? undefined : body,
        });
        const bytes = Buffer.from(await answer.arrayBuffer());
        seen.statuses.push(answer.status);
        const reply = seen.forced === 0 ? force(req, answer, bytes) : null;
        if (reply) seen.forced += 1;
        observe(req, body, answer, bytes, Boolean(reply));
        // The gateway's headers either way (CORS ones included), but not its length.
        const out = {};
        answer.headers.forEach((value, name) => {
          if (!HOP_BY_HOP.includes(name)) out[name] = value;
        });
        if (reply) {
          res.writeHead(reply.status, { ...out, "content-type": reply.type });
          res.end(reply.body);
          return;
        }
        res.writeHead(answer.status, out);
        res.end(bytes);
      } catch (error) {
        res.writeHead(502);
        res.end(String(error));
      } finally {
        seen.inflight -= 1;
        seen.last = Date.now();
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({ server, seen, port, url: `http://127.0.0.1:${port}` });
    });
  });
}

module.exports = { relay, UNAVAILABLE };
