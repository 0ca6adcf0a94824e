// Renders an SVG file to a PNG of the same size in Debian's Chromium, driven
// by playwright-core from web/node_modules (as loadgen/b7/overview.mjs).
// Run by the bench (loadgen/src/bench/plot.rs): node svg-png.mjs IN.svg OUT.png
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../web/package.json'));
const { chromium } = require('playwright-core');

const [input, output] = process.argv.slice(2);
const svg = fs.readFileSync(input, 'utf8');
const width = Number(/width="(\d+)"/.exec(svg)?.[1] ?? 1200);
const height = Number(/height="(\d+)"/.exec(svg)?.[1] ?? 800);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width, height } });
  await page.setContent(`<html><body style="margin:0">${svg}</body></html>`);
  await page.screenshot({ path: output, clip: { x: 0, y: 0, width, height } });
} finally {
  await browser.close();
}
