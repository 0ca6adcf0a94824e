#!/usr/bin/env node
// Lists every package of package-lock.json with its version and licence (read
// from the installed package.json) and fails when one is not MIT, ISC, BSD or
// Apache-2.0. Run after `npm ci`:  node dev/licenses.mjs [--markdown]

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const ALLOWED = /^(MIT|ISC|0BSD|BSD-2-Clause|BSD-3-Clause|Apache-2\.0)$/;
const markdown = process.argv.includes('--markdown');

const rows = [];
let bad = 0;
for (const [key, meta] of Object.entries(lock.packages)) {
  if (!key) continue;
  const name = key.replace(/^.*node_modules\//, '');
  const file = path.join(root, key, 'package.json');
  let license = meta.license;
  let installed = fs.existsSync(file);
  if (installed) {
    const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
    license = pkg.license || (pkg.licenses && pkg.licenses.map((l) => l.type || l).join(' OR ')) || license;
  }
  const parts = String(license || 'UNKNOWN').replace(/[()]/g, '').split(/\s+OR\s+/);
  const ok = parts.some((p) => ALLOWED.test(p.trim()));
  if (!ok) bad += 1;
  const kind = meta.dev ? 'dev' : 'runtime';
  rows.push({ name, version: meta.version, license, kind, installed, ok, optional: !!meta.optional });
}
rows.sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'runtime' ? -1 : 1));
if (markdown) {
  console.log('| package | version | licence | used |');
  console.log('|---|---|---|---|');
  for (const r of rows) if (r.installed) console.log(`| ${r.name} | ${r.version} | ${r.license} | ${r.kind}${r.optional ? ' (optional, this platform)' : ''} |`);
  const skipped = rows.filter((r) => !r.installed);
  if (skipped.length) console.log(`\n${skipped.length} optional platform packages of other systems (not installed here) carry the same licences as their parents: ${[...new Set(skipped.map((r) => r.license))].join(', ')}.`);
} else {
  for (const r of rows) console.log(`${r.ok ? '  ' : '✗ '}${r.name}@${r.version}  ${r.license}  ${r.kind}${r.installed ? '' : ' (not installed on this platform)'}`);
}
if (bad) {
  console.error(`${bad} package(s) with a licence outside MIT/ISC/BSD/Apache-2.0`);
  process.exitCode = 1;
}
