// What every browser SDK test shares: the site that loads the SDK (served on
// "localhost", so the page is another origin than the relays on 127.0.0.1 and
// CORS is exercised), Debian's Chromium launched as a visitor's browser, and
// the page's problems (page errors, console errors) that a test reports.
"use strict";

const { execFileSync } = require("child_process");
const { createRequire } = require("module");
const http = require("http");
const path = require("path");

/**
 * site(files, html) resolves { server, url }: `files` maps a path to
 * [content type, body]; every other path answers `html`.
 */
function site(files, html) {
  const server = http.createServer((req, res) => {
    const file = files[req.url];
    res.writeHead(200, { "content-type": file ? file[0] : "text/html; charset=utf-8" });
    res.end(file ? file[1] : html);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://localhost:${server.address().port}` }));
  });
}

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

/**
 * Chromium (playwright-core from WEB_DIR's node_modules) as a visitor's
 * browser, not an automated one: its user agent without "Headless" and no
 * navigator.webdriver, for every request, keepalive ones included (SDKs drop
 * what looks automated, and the gateway flags it as a bot).
 */
function launch(webDir) {
  const { chromium } = createRequire(path.join(webDir, "package.json"))("playwright-core");
  const executable = process.env.CHROMIUM || "/usr/bin/chromium";
  const version = (execFileSync(executable, ["--version"]).toString().match(/\d+(\.\d+)+/) || ["130.0.0.0"])[0];
  const visitor = [
    `--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${version} Safari/537.36`,
    "--disable-blink-features=AutomationControlled",
  ];
  return chromium.launch({ executablePath: executable, headless: true, args: [...ARGS, ...visitor] });
}

/**
 * The page's problems as they happen: page errors, and console errors other
 * than those `expected(message)` accepts (the forced 503 shows up as a failed
 * resource load).
 */
function problems(page, expected = (message) => /503/.test(message.text())) {
  const out = [];
  page.on("pageerror", (error) => out.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !expected(message)) out.push(`console error: ${message.text()}`);
  });
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { site, launch, problems, sleep };
