#!/usr/bin/env node
// A stand-in for the query service, for working on the web app without the
// Rust services: serves web/dist the way the query service will (index.html
// for /, /login and /app/*; /assets/* files) and answers the API the page uses
// with generated but self-consistent data (one in-memory event log that
// every endpoint reads, plus live traffic arriving in real time).
//
//   node dev/mock.mjs [--port 8090] [--dist ./dist]
//
// Users (password "tally-demo"): admin@example.com (admin of my-site and
// empty-app, viewer of shop), viewer@example.com (viewer of my-site).
// The app "secret" exists but neither user is a member (403).
//
// --live N sets how many visitors arrive per second (default 0.1).
// Test hooks: POST /__mock/fail {"match": "<substring of path or body>",
// "status": 503, "times": 1} makes matching requests fail; POST
// /__mock/reset forgets sessions, saved items and failures; POST
// /__mock/drop-streams cuts every open live stream. Only Node's
// standard library is used.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const PORT = Number(arg('--port', process.env.PORT || 8090));
const DIST = path.resolve(arg('--dist', path.join(here, '..', 'dist')));
const GATEWAY = arg('--gateway', 'http://127.0.0.1:8080');
const DELAY = Number(arg('--delay', 120)); // max random latency, ms
const QUIET = args.includes('--quiet');
const LIVE_RATE = Number(arg('--live', 0.1)); // new live sessions per second (my-site)

// ---------------------------------------------------------------- data ----

/** A deterministic PRNG (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(42);
const pick = (list, r = rand) => list[Math.floor(r() * list.length)];
function weighted(pairs, r = rand) {
  const total = pairs.reduce((s, p) => s + p[1], 0);
  let x = r() * total;
  for (const [v, w] of pairs) {
    x -= w;
    if (x <= 0) return v;
  }
  return pairs[pairs.length - 1][0];
}

const COUNTRIES = [
  ['US', 30, ['California', 'New York', 'Texas'], ['San Francisco', 'New York', 'Austin']],
  ['DE', 16, ['Berlin', 'Bavaria'], ['Berlin', 'Munich']],
  ['GB', 12, ['England', 'Scotland'], ['London', 'Edinburgh']],
  ['FR', 9, ['Île-de-France'], ['Paris']],
  ['IN', 10, ['Karnataka', 'Maharashtra'], ['Bengaluru', 'Mumbai']],
  ['BR', 6, ['São Paulo'], ['São Paulo']],
  ['JP', 5, ['Tokyo'], ['Tokyo']],
  ['', 2, [''], ['']],
];
const DEVICES = [
  ['desktop', 58, [['Chrome', 55], ['Firefox', 15], ['Safari', 15], ['Edge', 15]], [['Windows', 50], ['macOS', 35], ['Linux', 15]]],
  ['mobile', 37, [['Chrome', 50], ['Safari', 45], ['Samsung Internet', 5]], [['Android', 55], ['iOS', 45]]],
  ['tablet', 5, [['Safari', 70], ['Chrome', 30]], [['iOS', 70], ['Android', 30]]],
];
const SOURCES = [
  [{ referrer_host: '' }, 34],
  [{ referrer_host: 'www.google.com' }, 30],
  [{ referrer_host: 'news.ycombinator.com' }, 8],
  [{ referrer_host: 't.co' }, 6],
  [{ referrer_host: 'github.com' }, 7],
  [{ referrer_host: 'duckduckgo.com' }, 5],
  [{ referrer_host: 'www.linkedin.com', utm_source: 'linkedin', utm_medium: 'social', utm_campaign: 'launch' }, 4],
  [{ referrer_host: '', utm_source: 'newsletter', utm_medium: 'email', utm_campaign: 'november' }, 6],
];
const PAGES = [
  ['/', 30],
  ['/pricing', 14],
  ['/docs', 12],
  ['/docs/getting-started', 9],
  ['/blog', 8],
  ['/blog/real-time-analytics', 7],
  ['/blog/exactly-once', 5],
  ['/about', 4],
  ['/signup', 6],
  ['/checkout', 5],
];

const BUILTIN = ['name', 'country', 'region', 'city', 'browser', 'os', 'device_type', 'url_host', 'url_path', 'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content'];
const SESSION_FIELDS = ['country', 'device_type', 'browser', 'os', 'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'entry_page', 'exit_page'];
const COMMON = SESSION_FIELDS.filter((f) => BUILTIN.includes(f));
const BUCKETS = ['minute', 'hour', 'day', 'week', 'month'];

/** Per app: events (sorted by time), sessions, and the live visitors. */
const apps = new Map();
function newApp(id, name) {
  const app = { id, name, events: [], sessions: [], nextUser: 1, seen: [], live: [], tz: 'UTC' };
  apps.set(id, app);
  return app;
}

/** A visitor's session: its attributes and the events it will send from `start`. */
function makeSession(app, start, r = rand, returning = 0.35) {
  let uid;
  if (app.seen.length && r() < returning) uid = pick(app.seen, r);
  else {
    uid = `u${String(app.nextUser++).padStart(5, '0')}`;
    app.seen.push(uid);
  }
  const [country, , regions, cities] = weighted(COUNTRIES.map((c) => [c, c[1]]), r);
  const ri = Math.floor(r() * regions.length);
  const [device_type, , browsers, oses] = weighted(DEVICES.map((d) => [d, d[1]]), r);
  const source = weighted(SOURCES, r);
  const bot = r() < 0.02;
  const attrs = {
    uid,
    country,
    region: regions[ri] || '',
    city: cities[ri] || '',
    device_type,
    browser: weighted(browsers, r),
    os: weighted(oses, r),
    referrer_host: source.referrer_host || '',
    utm_source: source.utm_source || '',
    utm_medium: source.utm_medium || '',
    utm_campaign: source.utm_campaign || '',
    utm_term: '',
    utm_content: '',
    is_bot: bot,
  };
  const plan = weighted([['free', 70], ['pro', 22], ['team', 8]], r);
  const steps = [];
  let t = start;
  const views = 1 + Math.floor(r() ** 1.6 * 6);
  let first = true;
  for (let i = 0; i < views; i++) {
    const page = first ? weighted(PAGES.slice(0, 7), r) : weighted(PAGES, r);
    steps.push({ ts: t, name: 'page_view', url_path: page, props: { url: page, plan } });
    if (first && r() < 0.06) steps.push({ ts: t + 2000 + Math.floor(r() * 20000), name: 'signup', url_path: '/signup', props: { plan } });
    if (r() < 0.2) steps.push({ ts: t + 1000 + Math.floor(r() * 15000), name: 'click', url_path: page, props: { button: pick(['cta', 'nav', 'footer'], r), plan } });
    first = false;
    t += 5000 + Math.floor(r() * 110000);
  }
  if (r() < 0.25) {
    const price = pick([9, 19, 29, 49, 99], r);
    steps.push({ ts: t, name: 'add_to_cart', url_path: '/checkout', props: { price: String(price), plan } });
    t += 10000 + Math.floor(r() * 200000);
    if (r() < 0.4) steps.push({ ts: t, name: 'purchase', url_path: '/checkout', props: { price: String(price), plan, coupon: r() < 0.3 ? 'WELCOME' : undefined } });
  }
  steps.sort((a, b) => a.ts - b.ts);
  return { attrs, steps };
}

/** Adds one event (and its session's numbers). */
function record(app, session, step) {
  const a = session.attrs;
  const props = {};
  for (const [k, v] of Object.entries(step.props || {})) if (v !== undefined) props[k] = String(v);
  const e = {
    id: crypto.randomUUID(),
    ts: step.ts,
    name: step.name,
    uid: a.uid,
    sid: session.sid,
    country: a.country,
    region: a.region,
    city: a.city,
    browser: a.browser,
    os: a.os,
    device_type: a.device_type,
    url_host: 'example.com',
    url_path: step.url_path,
    referrer_host: a.referrer_host,
    utm_source: a.utm_source,
    utm_medium: a.utm_medium,
    utm_campaign: a.utm_campaign,
    utm_term: '',
    utm_content: '',
    is_bot: a.is_bot,
    props,
  };
  app.events.push(e);
  const s = session.row;
  s.end = Math.max(s.end, e.ts);
  s.duration_ms = s.end - s.start;
  s.events += 1;
  if (e.name === 'page_view') {
    s.page_views += 1;
    if (!s.entry_page) s.entry_page = e.url_path;
    s.exit_page = e.url_path;
  }
  return e;
}

function startSession(app, start, r) {
  const session = makeSession(app, start, r);
  session.sid = crypto.randomUUID();
  session.row = {
    sid: session.sid,
    uid: session.attrs.uid,
    start,
    end: start,
    duration_ms: 0,
    events: 0,
    page_views: 0,
    entry_page: '',
    exit_page: '',
    ...Object.fromEntries(['referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'country', 'device_type', 'browser', 'os', 'is_bot'].map((k) => [k, session.attrs[k]])),
  };
  app.sessions.push(session.row);
  return session;
}

function history(app, days, perDay, seed) {
  const r = rng(seed);
  const now = Date.now();
  const begin = now - days * 86_400_000;
  for (let d = 0; d < days; d++) {
    const dayStart = begin + d * 86_400_000;
    const weekday = new Date(dayStart).getUTCDay();
    const growth = 0.6 + (0.4 * d) / days;
    const n = Math.round(perDay * growth * (weekday === 0 || weekday === 6 ? 0.65 : 1) * (0.85 + r() * 0.3));
    for (let i = 0; i < n; i++) {
      // more traffic in the (UTC) afternoon
      const hour = weighted(Array.from({ length: 24 }, (_, h) => [h, 1 + Math.sin(((h - 8) / 24) * Math.PI * 2) + 1.2]), r);
      const start = dayStart + hour * 3_600_000 + Math.floor(r() * 3_600_000);
      if (start > now - 120_000) continue;
      const s = startSession(app, start, r);
      for (const step of s.steps) if (step.ts < now - 60_000) record(app, s, step);
    }
  }
  app.events.sort((a, b) => a.ts - b.ts);
}

function seed() {
  apps.clear();
  const site = newApp('my-site', 'My site');
  history(site, 100, 400, 7);
  const shop = newApp('shop', 'Shop');
  history(shop, 40, 40, 11);
  newApp('empty-app', 'Empty app');
  const secret = newApp('secret', 'Secret');
  history(secret, 5, 10, 13);
}
seed();

/** Live traffic: new visitors arrive, their events come when their time comes. */
const liveRand = rng(99);
setInterval(() => {
  const now = Date.now();
  for (const [id, app] of apps) {
    const rate = (id === 'my-site' ? LIVE_RATE : id === 'shop' ? LIVE_RATE / 6 : 0) / 4; // sessions per 250 ms
    if (liveRand() < rate) {
      const s = startSession(app, now, liveRand);
      // compress think time so that live sessions unfold within minutes
      let t = now;
      s.steps = s.steps.map((st, i) => {
        t += i === 0 ? 0 : 1500 + Math.floor(liveRand() * 25000);
        return { ...st, ts: t };
      });
      app.live.push(s);
    }
    for (const s of app.live) {
      while (s.steps.length && s.steps[0].ts <= now) record(app, s, s.steps.shift());
    }
    app.live = app.live.filter((s) => s.steps.length);
  }
}, 250);

// ---------------------------------------------------------- the engine ----

class HttpError extends Error {
  constructor(status, error, message, extra = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.extra = extra;
  }
}
const invalid = (field, why) => new HttpError(400, 'invalid_query', `${field}: ${why}`);

const DAY = 86_400_000;
function parseTime(v, field) {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  if (typeof v === 'string' && /^(19[7-9]\d|[2-9]\d{3})-/.test(v) && !Number.isNaN(Date.parse(v))) return Date.parse(v);
  throw invalid(field, 'expected RFC 3339 or epoch milliseconds');
}
function resolveRange(range, { hourAligned = false } = {}) {
  if (typeof range === 'string') {
    const m = /^0*(\d+)([dh])$/.exec(range);
    if (!m || Number(m[1]) < 1) throw invalid('range', 'like "7d" or "24h"');
    const len = Number(m[1]) * (m[2] === 'd' ? DAY : 3_600_000);
    if (len > 731 * DAY) throw invalid('range', 'at most 731 days');
    const now = Date.now();
    const to = hourAligned ? Math.floor(now / 3_600_000) * 3_600_000 + 3_600_000 : Math.ceil(now / 5000) * 5000;
    return [to - len, to];
  }
  if (range && typeof range === 'object' && range.from !== undefined && range.to !== undefined) {
    const from = parseTime(range.from, 'range.from');
    const to = parseTime(range.to, 'range.to');
    if (from >= to) throw invalid('range', 'from must be before to');
    if (to - from > 731 * DAY) throw invalid('range', 'at most 731 days');
    return [from, to];
  }
  throw invalid('range', 'missing (like "7d" or {"from", "to"})');
}

/** What a field name resolves to: ['builtin', name] | ['property', name]. */
function resolve(name, builtins = BUILTIN) {
  if (typeof name !== 'string' || !name) throw invalid('field', 'a field name');
  if (name.startsWith('properties.')) return ['property', name.slice(11)];
  const bare = name.replace(/^\$/, '');
  if (name.startsWith('$') && !builtins.includes(bare) && !BUCKETS.includes(bare)) throw invalid('field', `unknown built-in field ${name}`);
  if (builtins.includes(bare)) return ['builtin', bare];
  return ['property', bare];
}
const resolvedName = (name, builtins) => {
  const [k, n] = resolve(name, builtins);
  return k === 'builtin' ? `$${n}` : `properties.${n}`;
};

function getter(name, table) {
  const builtins = table === 'events' ? BUILTIN : SESSION_FIELDS;
  const [kind, n] = resolve(name, builtins);
  if (kind === 'property') {
    if (table !== 'events') throw invalid('filters', `sessions have no property ${name}`);
    return (row) => (row.props[n] === undefined ? null : row.props[n]);
  }
  return (row) => (row[n] === undefined || row[n] === null ? '' : String(row[n]));
}

const NUMERIC = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const isNum = (v) => v !== null && v !== undefined && NUMERIC.test(String(v)) && !String(v).endsWith('.');

function matcher(f, table) {
  if (!f || typeof f !== 'object') throw invalid('filters', 'a filter object');
  const get = getter(f.property, table);
  const builtin = resolve(f.property, table === 'events' ? BUILTIN : SESSION_FIELDS)[0] === 'builtin';
  const isSet = (v) => (builtin ? v !== '' : v !== null);
  let { op, value } = f;
  if ((op === 'eq' || op === 'neq') && value === null) op = op === 'eq' ? 'is_not_set' : 'is_set';
  const same = (v, want) => {
    if (v === null) return false;
    if (typeof want === 'number') return isNum(v) && Number(v) === want;
    return String(v) === String(want);
  };
  switch (op) {
    case 'eq':
      return (r) => same(get(r), value);
    case 'neq':
      return (r) => !same(get(r), value);
    case 'in':
    case 'not_in': {
      if (!Array.isArray(value) || !value.length) throw invalid('filters', `${op}: a list of 1 to 1000 values`);
      const numeric = value.every((v) => typeof v === 'number');
      const test = (v) => value.some((w) => (numeric ? isNum(v) && Number(v) === w : v !== null && String(v) === String(w)));
      return op === 'in' ? (r) => test(get(r)) : (r) => !test(get(r));
    }
    case 'contains':
      return (r) => get(r) !== null && String(get(r)).includes(String(value));
    case 'not_contains':
      return (r) => get(r) === null || !String(get(r)).includes(String(value));
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte': {
      if (!isNum(value)) throw invalid('filters', `${op}: a number or a numeric string`);
      const w = Number(value);
      const cmp = { gt: (a) => a > w, gte: (a) => a >= w, lt: (a) => a < w, lte: (a) => a <= w }[op];
      return (r) => isNum(get(r)) && cmp(Number(get(r)));
    }
    case 'is_set':
      return (r) => isSet(get(r));
    case 'is_not_set':
      return (r) => !isSet(get(r));
    default:
      throw invalid('filters', `unknown operator ${op}`);
  }
}

const p2 = (n) => String(n).padStart(2, '0');
function bucketOf(bucket, ms) {
  const d = new Date(ms);
  const date = `${d.getUTCFullYear()}-${p2(d.getUTCMonth() + 1)}-${p2(d.getUTCDate())}`;
  if (bucket === 'minute') return `${date}T${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:00+00:00`;
  if (bucket === 'hour') return `${date}T${p2(d.getUTCHours())}:00:00+00:00`;
  if (bucket === 'day') return date;
  if (bucket === 'month') return `${date.slice(0, 7)}-01`;
  const dow = (d.getUTCDay() + 6) % 7;
  const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - dow));
  return `${m.getUTCFullYear()}-${p2(m.getUTCMonth() + 1)}-${p2(m.getUTCDate())}`;
}

const SESSION_METRICS = ['sessions', 'bounce_rate', 'session_duration'];
function metricOf(m) {
  if (typeof m === 'string') {
    if (['events', 'unique_users'].includes(m)) return { name: m, table: 'events', kind: m };
    if (SESSION_METRICS.includes(m)) return { name: m, table: 'sessions', kind: m };
  } else if (m && typeof m === 'object') {
    const keys = Object.keys(m);
    if (keys.length === 1 && (keys[0] === 'sum' || keys[0] === 'avg') && typeof m[keys[0]] === 'string') {
      return { name: `${keys[0]}_${m[keys[0]]}`, table: 'events', kind: keys[0], get: getter(m[keys[0]], 'events') };
    }
  }
  throw invalid('metric', `unknown metric ${JSON.stringify(m)} (events, unique_users, {"sum": p}, {"avg": p}, sessions, bounce_rate, session_duration)`);
}

function aggregate(metric, rows) {
  switch (metric.kind) {
    case 'events':
    case 'sessions':
      return rows.length;
    case 'unique_users':
      return new Set(rows.map((r) => r.uid)).size;
    case 'sum':
    case 'avg': {
      const vals = rows.map(metric.get).filter(isNum).map(Number);
      if (metric.kind === 'sum') return vals.reduce((a, b) => a + b, 0);
      return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
    }
    case 'bounce_rate': {
      const viewed = rows.filter((r) => r.page_views >= 1);
      return viewed.length ? viewed.filter((r) => r.page_views === 1).length / viewed.length : null;
    }
    case 'session_duration':
      return rows.length ? rows.reduce((s, r) => s + r.duration_ms, 0) / rows.length / 1000 : null;
    default:
      return null;
  }
}

const QUERY_KEYS = ['metric', 'metrics', 'filters', 'group_by', 'range', 'segment', 'include_bots', 'limit', 'tz', 'sample', 'compare'];

function runQuery(app, body) {
  if (!body || typeof body !== 'object') throw invalid('body', 'a JSON object');
  for (const k of Object.keys(body)) if (!QUERY_KEYS.includes(k)) throw invalid('body', `unknown field \`${k}\``);
  const list = [...(body.metric !== undefined ? [body.metric] : []), ...(body.metrics || [])].slice(0, 10);
  if (!list.length) throw invalid('metric', 'give metric or metrics');
  const metrics = list.map(metricOf);
  const tables = new Set(metrics.map((m) => m.table));
  const mode = tables.size === 2 ? 'mixed' : [...tables][0];
  const dims = body.group_by === undefined ? [] : Array.isArray(body.group_by) ? body.group_by : [body.group_by];
  if (dims.length > 3) throw invalid('group_by', 'at most 3 dimensions');
  const filters = body.filters || [];
  if (!Array.isArray(filters) || filters.length > 20) throw invalid('filters', 'at most 20 filters');
  const limit = body.limit === undefined ? 100 : body.limit;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10000) throw invalid('limit', '1..=10000');
  if (body.tz !== undefined && body.tz !== 'UTC') {
    try {
      new Intl.DateTimeFormat('en', { timeZone: body.tz });
    } catch {
      throw invalid('tz', `unknown time zone ${body.tz}`);
    }
  }
  const allowed = mode === 'events' ? null : mode === 'sessions' ? SESSION_FIELDS : COMMON;
  const check = (name, what) => {
    const bare = String(name).replace(/^\$/, '');
    if (BUCKETS.includes(bare)) return;
    if (allowed && (String(name).startsWith('properties.') || !allowed.includes(bare))) {
      throw invalid(what, mode === 'mixed' ? `event and session metrics together group and filter by what both have (time buckets and the session's fields): ${name}` : `sessions group and filter by ${JSON.stringify(SESSION_FIELDS)} or a time bucket: ${name}`);
    }
    if (!allowed) resolve(name);
  };
  dims.forEach((d) => check(d, 'group_by'));
  filters.forEach((f) => check(f && f.property, 'filters'));
  const [from, to] = resolveRange(body.range);
  const fields = {};
  const builtins = mode === 'events' ? BUILTIN : SESSION_FIELDS;
  for (const n of [...filters.map((f) => f.property), ...dims, ...list.filter((m) => typeof m === 'object').map((m) => m.sum || m.avg)]) {
    const bare = String(n).replace(/^\$/, '');
    fields[n] = BUCKETS.includes(bare) ? `$${bare}` : mode === 'events' ? resolvedName(n, builtins) : `$${bare}`;
  }

  const period = (lo, hi) => {
    const groups = new Map();
    const add = (table, rows, timeOf) => {
      const tests = filters.map((f) => matcher(f, table));
      let seg = null;
      if (body.segment && body.segment.did) {
        seg = new Set(app.events.filter((e) => e.ts >= lo && e.ts < hi && e.name === body.segment.did).map((e) => e.uid));
      }
      const dimGet = dims.map((d) => {
        const bare = String(d).replace(/^\$/, '');
        if (BUCKETS.includes(bare)) return (r) => bucketOf(bare, timeOf(r));
        return getter(d, table);
      });
      for (const r of rows) {
        const t = timeOf(r);
        if (t < lo || t >= hi) continue;
        if (!body.include_bots && r.is_bot) continue;
        if (seg && !seg.has(r.uid)) continue;
        if (!tests.every((test) => test(r))) continue;
        const values = dimGet.map((g) => g(r) ?? '');
        const key = JSON.stringify(values);
        if (!groups.has(key)) groups.set(key, { values, events: [], sessions: [] });
        groups.get(key)[table].push(r);
      }
    };
    if (tables.has('events')) add('events', app.events, (e) => e.ts);
    if (tables.has('sessions')) add('sessions', app.sessions, (s) => s.start);
    if (!dims.length && !groups.size) groups.set('[]', { values: [], events: [], sessions: [] });
    const rows = [...groups.values()].map((g) => {
      const row = {};
      dims.forEach((d, i) => (row[d] = g.values[i]));
      for (const m of metrics) {
        const v = aggregate(m, g[m.table]);
        row[m.name] = v === null ? null : Number(v.toFixed ? Number(v.toFixed(10)) : v);
      }
      return row;
    });
    const first = metrics[0].name;
    if (dims.length) rows.sort((a, b) => (b[first] ?? -Infinity) - (a[first] ?? -Infinity) || JSON.stringify(dims.map((d) => a[d])).localeCompare(JSON.stringify(dims.map((d) => b[d]))));
    return { results: rows.slice(0, limit), truncated: rows.length > limit };
  };

  const current = period(from, to);
  const answer = { fields, time_zone: body.tz || app.tz, app_id: app.id, from_ms: from, to_ms: to, results: current.results, truncated: current.truncated };
  if (body.compare !== undefined) {
    if (body.compare !== 'previous') throw invalid('compare', '"previous"');
    const prev = period(from - (to - from), from);
    answer.previous = { from_ms: from - (to - from), to_ms: from, results: prev.results, truncated: prev.truncated };
  }
  answer.query_time_ms = Math.floor(Math.random() * 40) + 3;
  return answer;
}

function toCsv(answer, body) {
  const rows = answer.results;
  const cols = rows.length ? Object.keys(rows[0]) : [];
  const esc = (v) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.map(esc).join(','), ...rows.map((r) => cols.map((c) => esc(r[c])).join(','))].join('\r\n') + '\r\n';
}

// Live windows, computed from the events (bots left out).
function liveWindows(app, n, now = Date.now()) {
  const W = 5000;
  const current = Math.floor(now / W) * W;
  const first = current - (n - 1) * W;
  const windows = [];
  for (let s = first; s <= current; s += W) windows.push({ start_ms: s, users: new Set(), sessions: new Set(), by_name: {}, events: 0 });
  for (let i = app.events.length - 1; i >= 0; i--) {
    const e = app.events[i];
    if (e.ts < first) break;
    if (e.ts > now || e.is_bot) continue;
    const w = windows[Math.floor((e.ts - first) / W)];
    if (!w) continue;
    w.events += 1;
    w.users.add(e.uid);
    w.sessions.add(e.sid);
    w.by_name[e.name] = (w.by_name[e.name] || 0) + 1;
  }
  return windows;
}
const stateOf = (start, now) => (now < start + 5000 ? 'open' : now < start + 35000 ? 'closing' : 'final');
const windowJson = (w, now) => ({ start_ms: w.start_ms, state: stateOf(w.start_ms, now), events: w.events, unique_users: w.users.size, active_sessions: w.sessions.size, by_name: Object.fromEntries(Object.entries(w.by_name).sort()) });

function live(app, params) {
  const now = Date.now();
  const n = params.get('windows') === null ? 12 : Number(params.get('windows'));
  if (!Number.isInteger(n) || n < 1 || n > 720) throw new HttpError(400, 'invalid_parameter', 'windows: must be an integer within 1..=720');
  const from = params.get('from_event');
  const to = params.get('to_event');
  if ((from === null) !== (to === null)) throw new HttpError(400, 'invalid_parameter', 'to_event: from_event and to_event go together');
  const all = liveWindows(app, Math.max(n, 360), now);
  const union = (ws, key) => {
    const s = new Set();
    for (const w of ws) for (const v of w[key]) s.add(v);
    return s.size;
  };
  const asked = all.slice(-n);
  const windows = asked.map((w) => windowJson(w, now));
  const answer = {
    app_id: app.id,
    window_ms: 5000,
    as_of_ms: now,
    windows,
    total_events: windows.reduce((s, w) => s + w.events, 0),
    unique_users: union(asked, 'users'),
    active_sessions: union(asked, 'sessions'),
    active_users_5m: union(all.slice(-60), 'users'),
    active_users_30m: union(all.slice(-360), 'users'),
  };
  if (from !== null) {
    const count = (name) => windows.reduce((s, w) => s + (w.by_name[name] || 0), 0);
    const a = count(from);
    const b = count(to);
    answer.conversion = { from_event: from, to_event: to, from_events: a, to_events: b, rate: a ? b / a : null };
  }
  return answer;
}

function stepOf(s) {
  if (typeof s === 'string') return { event: s, tests: [] };
  if (s && typeof s.event === 'string') return { event: s.event, tests: (s.filters || []).map((f) => matcher(f, 'events')) };
  throw invalid('steps', 'an event name or {"event", "filters"}');
}
function windowMs(text) {
  const m = /^0*(\d+)([mhd])$/.exec(text || '1d');
  if (!m) throw invalid('window', 'Nm, Nh or Nd, at most 90 days');
  const ms = Number(m[1]) * { m: 60_000, h: 3_600_000, d: DAY }[m[2]];
  if (ms < 60_000 || ms > 90 * DAY) throw invalid('window', 'at most 90 days');
  return ms;
}
const FUNNEL_KEYS = ['steps', 'range', 'window', 'order', 'breakdown', 'include_bots', 'tz', 'exclusions', 'users'];
function validateFunnel(body) {
  if (!body || typeof body !== 'object') throw invalid('body', 'a JSON object');
  for (const k of Object.keys(body)) if (!FUNNEL_KEYS.includes(k)) throw invalid('body', `unknown field \`${k}\``);
  if (!Array.isArray(body.steps) || body.steps.length < 2 || body.steps.length > 8) throw invalid('steps', '2..=8 steps');
  body.steps.forEach(stepOf);
  if (body.order !== undefined && !['relaxed', 'strict', 'any'].includes(body.order)) throw invalid('order', '"relaxed", "strict" or "any"');
  windowMs(body.window);
  if (body.breakdown !== undefined && typeof body.breakdown !== 'string') throw invalid('breakdown', 'a field name');
  resolveRange(body.range);
}

function runFunnel(app, body) {
  validateFunnel(body);
  const [from, to] = resolveRange(body.range);
  const steps = body.steps.map(stepOf);
  const win = windowMs(body.window);
  const order = body.order || 'relaxed';
  const fits = (e, st) => e.name === st.event && st.tests.every((t) => t(e));
  const byUser = new Map();
  for (const e of app.events) {
    if (e.ts < from || e.ts >= to + win) continue;
    if (!body.include_bots && e.is_bot) continue;
    if (!byUser.has(e.uid)) byUser.set(e.uid, []);
    byUser.get(e.uid).push(e);
  }
  const bdim = body.breakdown ? String(body.breakdown).replace(/^\$/, '') : null;
  const bget = bdim ? (BUCKETS.includes(bdim) ? (e) => bucketOf(bdim, e.ts) : getter(body.breakdown, 'events')) : null;
  const users = []; // {uid, reached, times, b}
  for (const [uid, evs] of byUser) {
    let best = null;
    for (let i = 0; i < evs.length; i++) {
      const start = evs[i];
      const isStart = order === 'any' ? steps.some((s) => fits(start, s)) : fits(start, steps[0]);
      if (!isStart || start.ts < from || start.ts >= to) continue;
      const times = [0];
      if (order === 'any') {
        const done = new Set([steps.findIndex((s) => fits(start, s))]);
        for (let j = i + 1; j < evs.length && evs[j].ts <= start.ts + win; j++) {
          const k = steps.findIndex((s, idx) => !done.has(idx) && fits(evs[j], s));
          if (k >= 0) {
            done.add(k);
            times.push(evs[j].ts - start.ts);
          }
        }
      } else {
        let k = 1;
        for (let j = i + 1; j < evs.length && k < steps.length && evs[j].ts <= start.ts + win; j++) {
          if (fits(evs[j], steps[k])) {
            times.push(evs[j].ts - start.ts);
            k += 1;
          } else if (order === 'strict') break;
        }
      }
      if (!best || times.length > best.times.length) best = { times, start };
      if (best.times.length === steps.length) break;
    }
    if (best) users.push({ uid, reached: best.times.length, times: best.times, b: bget ? bget(best.start) : null });
  }
  const median = (xs) => {
    if (!xs.length) return null;
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const names = steps.map((s) => s.event);
  const funnelOf = (us) => {
    const first = us.length;
    let previous = first;
    return names.map((step, i) => {
      const reached = us.filter((u) => u.reached > i);
      const n = reached.length;
      const out = {
        step,
        users: n,
        conversion_from_previous: i === 0 ? 1 : previous ? n / previous : 0,
        conversion_from_first: first ? n / first : 0,
        drop_off: Math.max(previous - n, 0),
        median_ms_to_convert: n ? median(reached.map((u) => u.times[i])) : null,
      };
      previous = n;
      return out;
    });
  };
  const answer = { fields: {}, time_zone: body.tz || app.tz, app_id: app.id, from_ms: from, to_ms: to, steps: names };
  if (body.users) {
    const step = body.users.step;
    const list = users.filter((u) => u.reached >= step && (!body.users.dropped || u.reached === step)).map((u) => u.uid).sort();
    const offset = body.users.offset || 0;
    const limit = body.users.limit || 100;
    answer.users = { step, dropped: !!body.users.dropped, offset, limit, distinct_ids: list.slice(offset, offset + limit), more: list.length > offset + limit };
  } else if (bget) {
    const groups = new Map();
    for (const u of users) {
      if (!groups.has(u.b)) groups.set(u.b, []);
      groups.get(u.b).push(u);
    }
    answer.breakdown = [...groups.entries()].sort((a, b) => b[1].length - a[1].length).slice(0, 1000).map(([value, us]) => ({ value, funnel: funnelOf(us) }));
    answer.truncated = groups.size > 1000;
    answer.fields[body.breakdown] = BUCKETS.includes(bdim) ? `$${bdim}` : resolvedName(body.breakdown);
  } else {
    answer.funnel = funnelOf(users);
  }
  for (const s of body.steps) if (typeof s === 'object') for (const f of s.filters || []) answer.fields[f.property] = resolvedName(f.property);
  answer.query_time_ms = Math.floor(Math.random() * 60) + 5;
  return answer;
}

const RETENTION_KEYS = ['start_event', 'return_event', 'period', 'periods', 'range', 'include_bots', 'tz', 'filters', 'breakdown', 'cohort'];
function validateRetention(body) {
  if (!body || typeof body !== 'object') throw invalid('body', 'a JSON object');
  for (const k of Object.keys(body)) if (!RETENTION_KEYS.includes(k)) throw invalid('body', `unknown field \`${k}\``);
  if (typeof body.start_event !== 'string' || !body.start_event) throw invalid('start_event', 'an event name');
  if (typeof body.return_event !== 'string' || !body.return_event) throw invalid('return_event', 'an event name');
  if (body.period !== undefined && !['day', 'week', 'month'].includes(body.period)) throw invalid('period', 'day, week or month');
  if (body.periods !== undefined && !(Number.isInteger(body.periods) && body.periods >= 1 && body.periods <= 52)) throw invalid('periods', '1..=52');
  resolveRange(body.range);
}
function runRetention(app, body) {
  validateRetention(body);
  const [from, to] = resolveRange(body.range);
  const period = body.period || 'day';
  const periods = body.periods || 7;
  const tests = (body.filters || []).map((f) => matcher(f, 'events'));
  const bget = body.breakdown ? getter(body.breakdown, 'events') : null;
  const firsts = new Map();
  const everBefore = new Set();
  for (const e of app.events) {
    if (e.name !== body.start_event || (!body.include_bots && e.is_bot)) continue;
    if (!tests.every((t) => t(e))) continue;
    if (e.ts < from) everBefore.add(e.uid);
    else if (e.ts < to && !firsts.has(e.uid)) firsts.set(e.uid, e);
  }
  if (body.cohort === 'first_time') for (const u of everBefore) firsts.delete(u);
  const index = (bucketKey) => {
    const [y, m, d] = bucketKey.split('-').map(Number);
    if (period === 'month') return y * 12 + (m - 1);
    const days = Date.UTC(y, m - 1, d) / DAY;
    return period === 'week' ? Math.round(days / 7) : days;
  };
  const cohorts = new Map();
  for (const [uid, e] of firsts) {
    const c = bucketOf(period, e.ts);
    const b = bget ? bget(e) : undefined;
    const key = JSON.stringify([c, b]);
    if (!cohorts.has(key)) cohorts.set(key, { cohort: c, breakdown: b, users: new Map() });
    cohorts.get(key).users.set(uid, e);
  }
  const returns = new Map();
  for (const e of app.events) {
    if (e.name !== body.return_event || (!body.include_bots && e.is_bot)) continue;
    if (!returns.has(e.uid)) returns.set(e.uid, []);
    returns.get(e.uid).push(e);
  }
  const out = [...cohorts.values()]
    .sort((a, b) => (a.cohort < b.cohort ? -1 : a.cohort > b.cohort ? 1 : String(a.breakdown).localeCompare(String(b.breakdown))))
    .map((c) => {
      const retained = Array.from({ length: periods + 1 }, () => 0);
      const base = index(c.cohort);
      for (const [uid, first] of c.users) {
        const seen = new Set();
        for (const r of returns.get(uid) || []) {
          if (r.ts < first.ts || (r.id === first.id && body.start_event === body.return_event)) continue;
          const k = index(bucketOf(period, r.ts)) - base;
          if (k >= 0 && k <= periods) seen.add(k);
        }
        for (const k of seen) retained[k] += 1;
      }
      const size = c.users.size;
      const row = { cohort: c.cohort, size, retained, rates: retained.map((n) => (size ? n / size : 0)) };
      if (bget) row.breakdown = c.breakdown;
      return row;
    });
  return { time_zone: body.tz || app.tz, app_id: app.id, from_ms: from, to_ms: to, period, periods, cohorts: out, query_time_ms: Math.floor(Math.random() * 50) + 5 };
}

function properties(app, params) {
  const [from, to] = resolveRange(params.get('range') || '7d');
  const counts = new Map();
  for (const e of app.events) {
    if (e.ts < from || e.ts >= to) continue;
    for (const k of Object.keys(e.props)) counts.set(k, (counts.get(k) || 0) + 1);
  }
  return {
    fields: ['$name', ...BUILTIN.filter((b) => b !== 'name')],
    properties: [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 100).map(([key, count]) => ({ key, count })),
  };
}
function propertyValues(app, params) {
  const field = params.get('field');
  if (!field) throw new HttpError(400, 'invalid_parameter', 'field: required');
  const get = getter(field, 'events');
  const [from, to] = resolveRange(params.get('range') || '7d');
  const prefix = params.get('prefix') || '';
  const counts = new Map();
  for (const e of app.events) {
    if (e.ts < from || e.ts >= to) continue;
    const v = get(e);
    if (v === null || v === '' || !String(v).startsWith(prefix)) continue;
    counts.set(v, (counts.get(v) || 0) + 1);
  }
  return { values: [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 100).map(([value, count]) => ({ value, count })) };
}

function report(app, name, params) {
  const [from, to] = resolveRange(params.get('range') || '7d', { hourAligned: true });
  const limit = Number(params.get('limit') || 10);
  const dims = { pages: ['url_path'], sources: ['referrer_host'], countries: ['country'], devices: ['device_type'], browsers: ['browser'], pages_over_time: [params.get('granularity') === 'hour' ? 'hour' : 'day', 'url_path'] }[name];
  if (!dims) throw new HttpError(404, 'not_found', `no report ${name}`);
  const groups = new Map();
  for (const e of app.events) {
    if (e.ts < from || e.ts >= to || e.name !== 'page_view' || (e.is_bot && params.get('include_bots') !== 'true')) continue;
    const values = dims.map((d) => (d === 'hour' || d === 'day' ? bucketOf(d, e.ts) : e[d]));
    const key = JSON.stringify(values);
    if (!groups.has(key)) groups.set(key, { values, n: 0, users: new Set() });
    const g = groups.get(key);
    g.n += 1;
    g.users.add(e.uid);
  }
  const rows = [...groups.values()].sort((a, b) => b.n - a.n).map((g) => ({ ...Object.fromEntries(dims.map((d, i) => [d, g.values[i]])), page_views: g.n, visitors: g.users.size }));
  return { time_zone: app.tz, app_id: app.id, report: name, from_ms: from, to_ms: to, source: 'raw', results: rows.slice(0, limit), truncated: rows.length > limit, query_time_ms: 4 };
}

// ------------------------------------------------------ users, sessions ----

const PASSWORD = 'tally-demo';
let users;
let members; // app → Map(email → role)
let keys; // app → [{id, kind, prefix, created_ms, revoked}]
let domains; // domain → app
let saved; // `${app}/${kind}` → Map(id → Saved)
let sessions; // cookie → email
let failures; // [{match, status, times}]
let attempts; // email → [times of failed logins]
let nextId;
function resetState() {
  users = new Map([
    ['admin@example.com', { id: 1, email: 'admin@example.com', password: PASSWORD }],
    ['viewer@example.com', { id: 2, email: 'viewer@example.com', password: PASSWORD }],
  ]);
  members = new Map([
    ['my-site', new Map([['admin@example.com', 'admin'], ['viewer@example.com', 'viewer']])],
    ['shop', new Map([['admin@example.com', 'viewer']])],
    ['empty-app', new Map([['admin@example.com', 'admin']])],
    ['secret', new Map()],
  ]);
  domains = new Map([['my-site.example', 'my-site']]);
  keys = new Map([
    ['my-site', [
      { id: 1, kind: 'write', prefix: 'tw_Ab3dE', created_ms: Date.now() - 40 * DAY, revoked: false },
      { id: 2, kind: 'read', prefix: 'tr_Q9xYz', created_ms: Date.now() - 40 * DAY, revoked: false },
      { id: 3, kind: 'write', prefix: 'tw_Old01', created_ms: Date.now() - 90 * DAY, revoked: true },
    ]],
    ['shop', []],
    ['empty-app', []],
    ['secret', []],
  ]);
  saved = new Map();
  nextId = 100;
  const now = Date.now();
  const put = (app, kind, name, definition) => {
    const key = `${app}/${kind}`;
    if (!saved.has(key)) saved.set(key, new Map());
    const id = nextId++;
    saved.get(key).set(id, { id, name, definition, created_ms: now - 3 * DAY, updated_ms: now - DAY });
  };
  put('my-site', 'funnels', 'Checkout', { steps: ['page_view', 'add_to_cart', 'purchase'], range: '30d', window: '1d' });
  put('my-site', 'funnels', 'Pro sign-ups', { steps: ['page_view', { event: 'signup', filters: [{ property: 'plan', op: 'eq', value: 'pro' }] }], range: '7d', window: '2h', breakdown: 'country' });
  put('my-site', 'dashboards', 'Team overview', {
    widgets: [
      { type: 'live', title: 'Right now', request: { windows: 60, from_event: 'page_view', to_event: 'add_to_cart' } },
      { type: 'query', title: 'Visitors this week', request: { metrics: ['unique_users', 'events'], filters: [{ property: '$name', op: 'eq', value: 'page_view' }], range: '7d' } },
      { type: 'query', title: 'Events per day by device', request: { metric: 'events', group_by: ['$day', '$device_type'], range: '30d' } },
      { type: 'funnel', title: 'Checkout', request: { steps: ['page_view', 'add_to_cart', 'purchase'], range: '30d' } },
      { type: 'retention', title: 'Weekly retention', request: { start_event: 'page_view', return_event: 'page_view', period: 'week', periods: 6, range: '60d' } },
    ],
  });
  sessions = new Map();
  failures = [];
  attempts = new Map();
}
resetState();

function parseCookies(header) {
  const out = {};
  for (const part of (header || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}
function meOf(email) {
  const apps_ = [];
  for (const [app, m] of members) if (m.has(email)) apps_.push({ app_id: app, name: apps.get(app).name, role: m.get(email) });
  return { user: { id: users.get(email).id, email }, apps: apps_, gateway_url: GATEWAY };
}

// ------------------------------------------------------------- server ----

const send = (res, status, body, headers = {}) => {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(status === 204 ? undefined : text);
};
const errorBody = (error, message, extra = {}) => ({ error, message, ...extra });

const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.woff2': 'font/woff2', '.map': 'application/json' };

function serveFile(res, file, cache) {
  fs.readFile(file, (err, data) => {
    if (err) return send(res, 404, errorBody('not_found', 'no such file'));
    res.writeHead(200, { 'content-type': MIME[path.extname(file)] || 'application/octet-stream', 'cache-control': cache, 'x-content-type-options': 'nosniff' });
    res.end(data);
  });
}

const readBody = async (req) => req.bodyText || '';
function readRaw(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new HttpError(413, 'body_too_large', 'at most 1 MiB'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
const json = (text) => {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'invalid_query', `body: ${e.message}`);
  }
};

function validateSaved(kind, body) {
  if (!body || typeof body !== 'object') throw invalid('body', 'a JSON object');
  for (const k of Object.keys(body)) if (!['name', 'definition'].includes(k)) throw invalid('body', `unknown field \`${k}\``);
  if (typeof body.name !== 'string' || body.name.length < 1 || body.name.length > 200) throw new HttpError(400, 'invalid_query', 'name: 1..=200 characters, without NUL');
  if (JSON.stringify(body.definition ?? null).length > 65536) throw invalid('definition', 'at most 65536 bytes');
  if (kind === 'funnels') return validateFunnel(body.definition);
  const w = body.definition && body.definition.widgets;
  if (!Array.isArray(w) || w.length > 50) throw invalid('definition', '{"widgets": [...]} with at most 50 widgets');
  for (const widget of w) {
    const r = widget && widget.request;
    if (widget.type === 'live') {
      if (!r || typeof r !== 'object' || Array.isArray(r)) throw invalid('definition', 'live: an object of query parameters');
    } else if (widget.type === 'query') {
      if (!r || typeof r !== 'object') throw invalid('definition', 'query: a /query body');
      for (const k of Object.keys(r)) if (!QUERY_KEYS.includes(k)) throw invalid('definition', `unknown field \`${k}\``);
      if (r.range === undefined) throw invalid('definition', 'missing field `range`');
    } else if (widget.type === 'funnel') validateFunnel(r);
    else if (widget.type === 'retention') validateRetention(r);
    else throw invalid('definition', 'widget type: live, query, funnel or retention');
  }
}

async function api(req, res, url) {
  const method = req.method;
  const p = url.pathname;
  const cookies = parseCookies(req.headers.cookie);
  const email = sessions.get(cookies.tally_session) || null;

  // The server refuses cross-origin state changes.
  if (method !== 'GET' && method !== 'HEAD' && req.headers.origin) {
    const own = `http://${req.headers.host}`;
    if (req.headers.origin !== own) throw new HttpError(403, 'cross_origin', `requests from ${req.headers.origin} may not change anything`);
  }

  if (p === '/api/v1/auth/login' && method === 'POST') {
    const body = json(await readBody(req)) || {};
    const who = String(body.email || '').toLowerCase();
    const recent = (attempts.get(who) || []).filter((t) => t > Date.now() - 60_000);
    if (recent.length >= 5) {
      const wait = Math.ceil((recent[0] + 60_000 - Date.now()) / 1000);
      throw new HttpError(429, 'too_many_attempts', 'too many failed sign-ins; wait', { retry_after_s: wait });
    }
    const user = users.get(who);
    if (!user || user.password !== body.password) {
      attempts.set(who, [...recent, Date.now()]);
      throw new HttpError(401, 'invalid_credentials', 'wrong e-mail or password');
    }
    attempts.delete(who);
    const token = crypto.randomBytes(24).toString('base64url');
    sessions.set(token, who);
    return send(res, 200, meOf(who), { 'set-cookie': `tally_session=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=604800` });
  }
  if (p === '/api/v1/auth/me' && method === 'GET') {
    if (!email) throw new HttpError(401, 'unauthenticated', 'sign in first');
    return send(res, 200, meOf(email));
  }
  if (p === '/api/v1/auth/logout' && method === 'POST') {
    sessions.delete(cookies.tally_session);
    return send(res, 204, undefined, { 'set-cookie': 'tally_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0' });
  }

  let m = /^\/api\/v1\/(analytics|apps)\/([^/]+)(\/.*)?$/.exec(p);
  if (!m) throw new HttpError(404, 'not_found', `no route ${p}`);
  const [, area, appIdRaw, restRaw] = m;
  const appId = decodeURIComponent(appIdRaw);
  const rest = restRaw || '';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(appId)) throw new HttpError(400, 'invalid_app_id', 'app ids are 1 to 64 of A-Z a-z 0-9 _ -');
  if (!email) throw new HttpError(401, 'unauthenticated', 'sign in first');
  const app = apps.get(appId);
  const role = app && members.get(appId).get(email);
  if (!role) throw new HttpError(403, 'forbidden', `you are not a member of ${appId}`);

  if (area === 'apps') {
    if (role !== 'admin') throw new HttpError(403, 'forbidden', 'admins only');
    if (rest === '/keys' && method === 'GET') return send(res, 200, { keys: keys.get(appId) });
    if (rest === '/keys' && method === 'POST') {
      const body = json(await readBody(req)) || {};
      if (!['write', 'read'].includes(body.kind)) throw new HttpError(400, 'invalid_parameter', 'kind: write or read');
      const secret = `${body.kind === 'write' ? 'tw_' : 'tr_'}${crypto.randomBytes(18).toString('base64url')}`;
      const id = nextId++;
      keys.get(appId).push({ id, kind: body.kind, prefix: secret.slice(0, 8), created_ms: Date.now(), revoked: false });
      return send(res, 201, { id, kind: body.kind, key: secret });
    }
    m = /^\/keys\/(\d+)$/.exec(rest);
    if (m && method === 'DELETE') {
      const k = keys.get(appId).find((x) => x.id === Number(m[1]));
      if (!k) throw new HttpError(404, 'not_found', 'no such key');
      k.revoked = true;
      return send(res, 204);
    }
    if (rest === '/domains' && method === 'GET') return send(res, 200, { domains: [...domains].filter(([, a]) => a === appId).map(([d]) => d).sort() });
    if (rest === '/domains' && method === 'POST') {
      const body = json(await readBody(req)) || {};
      const d = String(body.domain || '').trim().toLowerCase().replace(/\.$/, '').replace(/^www\./, '');
      if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(d)) throw new HttpError(400, 'invalid_parameter', 'invalid parameter domain: a host name such as shop.example');
      if (domains.has(d) && domains.get(d) !== appId) throw new HttpError(409, 'domain_taken', `${d} is already a site domain of another app; remove it there first`);
      domains.set(d, appId);
      return send(res, 201, { domain: d });
    }
    m = /^\/domains\/(.+)$/.exec(rest);
    if (m && method === 'DELETE') {
      const d = decodeURIComponent(m[1]).toLowerCase();
      if (domains.get(d) !== appId) throw new HttpError(404, 'not_found', 'not found');
      domains.delete(d);
      return send(res, 204);
    }
    if (rest === '/members' && method === 'GET') return send(res, 200, { members: [...members.get(appId)].map(([e, r]) => ({ email: e, role: r })) });
    if (rest === '/members' && method === 'POST') {
      const body = json(await readBody(req)) || {};
      const who = String(body.email || '').trim().toLowerCase();
      if (!/^[^@\s]+@[^@\s]+$/.test(who)) throw new HttpError(400, 'invalid_parameter', 'email: an e-mail address');
      if (!['admin', 'viewer'].includes(body.role)) throw new HttpError(400, 'invalid_parameter', 'role: admin or viewer');
      if (!users.has(who)) {
        if (!body.password) throw new HttpError(400, 'unknown_user', `${who} has no account: give a password to create it`);
        users.set(who, { id: users.size + 1, email: who, password: body.password });
      }
      members.get(appId).set(who, body.role);
      return send(res, 201, { email: who, role: body.role });
    }
    m = /^\/members\/(.+)$/.exec(rest);
    if (m && method === 'DELETE') {
      const who = decodeURIComponent(m[1]).toLowerCase();
      if (!members.get(appId).delete(who)) throw new HttpError(404, 'not_found', 'no such member');
      return send(res, 204);
    }
    throw new HttpError(404, 'not_found', `no route ${p}`);
  }

  // analytics
  if (rest === '/live' && method === 'GET') return send(res, 200, live(app, url.searchParams), { 'x-tally-cache': 'miss' });
  if (rest === '/live/stream' && method === 'GET') return stream(req, res, app);
  if (rest === '/count' && method === 'GET') {
    const to = url.searchParams.get('to') ? parseTime(url.searchParams.get('to'), 'to') : Date.now();
    const from = url.searchParams.get('from') ? parseTime(url.searchParams.get('from'), 'from') : to - DAY;
    if (from >= to) throw new HttpError(400, 'invalid_parameter', 'from: must be before `to`');
    return send(res, 200, { app_id: app.id, from_ms: from, to_ms: to, count: app.events.filter((e) => e.ts >= from && e.ts < to).length, query_time_ms: 2 });
  }
  if (rest === '/query') {
    if (method === 'GET' && url.searchParams.get('format') === 'csv') {
      const body = json(url.searchParams.get('q') || '');
      const answer = runQuery(app, body);
      res.writeHead(200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="tally-query.csv"', 'cache-control': 'no-store' });
      return res.end(toCsv(answer, body));
    }
    if (method === 'POST' || method === 'GET') return send(res, 200, runQuery(app, json(await readBody(req))));
  }
  if (rest === '/funnel' && method === 'POST') return send(res, 200, runFunnel(app, json(await readBody(req))));
  if (rest === '/retention' && method === 'POST') return send(res, 200, runRetention(app, json(await readBody(req))));
  if (rest === '/properties' && method === 'GET') return send(res, 200, properties(app, url.searchParams));
  if (rest === '/properties/values' && method === 'GET') return send(res, 200, propertyValues(app, url.searchParams));
  m = /^\/reports\/([a-z_]+)$/.exec(rest);
  if (m && method === 'GET') return send(res, 200, report(app, m[1], url.searchParams));
  m = /^\/(dashboards|funnels)(?:\/([^/]+))?$/.exec(rest);
  if (m) {
    const [, kind, idText] = m;
    const key = `${appId}/${kind}`;
    if (!saved.has(key)) saved.set(key, new Map());
    const items = saved.get(key);
    if (!idText) {
      if (method === 'GET') return send(res, 200, [...items.values()].sort((a, b) => a.id - b.id));
      if (method === 'POST') {
        const body = json(await readBody(req));
        validateSaved(kind, body);
        const now = Date.now();
        const item = { id: nextId++, name: body.name, definition: body.definition, created_ms: now, updated_ms: now };
        items.set(item.id, item);
        return send(res, 201, item);
      }
    } else {
      const id = Number(idText);
      const item = /^\d+$/.test(idText) ? items.get(id) : null;
      if (!item) throw new HttpError(404, 'not_found', 'no such item');
      if (method === 'GET') return send(res, 200, item);
      if (method === 'PUT') {
        const body = json(await readBody(req));
        validateSaved(kind, body);
        Object.assign(item, { name: body.name, definition: body.definition, updated_ms: Date.now() });
        return send(res, 200, item);
      }
      if (method === 'DELETE') {
        items.delete(id);
        return send(res, 204);
      }
    }
    throw new HttpError(405, 'method_not_allowed', `${method} is not allowed here`);
  }
  throw new HttpError(404, 'not_found', `no route ${p}`);
}

/** Open streams (for /__mock/drop-streams). */
const streams = new Set();

/** SSE: `partial` (the open window) every second, `window` when one closes. */
function stream(req, res, app) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'access-control-allow-origin': '*' });
  res.write(': hello\n\n');
  let open = null;
  const tick = () => {
    const now = Date.now();
    const current = Math.floor(now / 5000) * 5000;
    const [previous, partial] = liveWindows(app, 2, now);
    if (open !== null && open !== current) res.write(`event: window\ndata: ${JSON.stringify(windowJson(previous, now))}\n\n`);
    res.write(`event: partial\ndata: ${JSON.stringify(windowJson(partial, now))}\n\n`);
    open = current;
  };
  const timer = setInterval(tick, 1000);
  const drop = () => res.destroy();
  streams.add(drop);
  req.on('close', () => {
    clearInterval(timer);
    streams.delete(drop);
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host || 'localhost'}`);
  const started = Date.now();
  res.on('finish', () => {
    if (!QUIET) console.log(`${req.method} ${url.pathname}${url.search.length > 80 ? `${url.search.slice(0, 80)}…` : url.search} ${res.statusCode} ${Date.now() - started}ms`);
  });
  try {
    if (url.pathname.startsWith('/__mock/')) {
      const body = json(await readRaw(req)) || {};
      if (url.pathname === '/__mock/fail') failures.push({ match: String(body.match || ''), status: body.status || 503, times: body.times || 1 });
      else if (url.pathname === '/__mock/reset') {
        resetState();
      } else if (url.pathname === '/__mock/drop-streams') {
        for (const drop of [...streams]) drop();
      } else throw new HttpError(404, 'not_found', 'no such mock control');
      return send(res, 204);
    }
    if (url.pathname.startsWith('/api/')) {
      if (DELAY && !url.pathname.endsWith('/stream')) await new Promise((r) => setTimeout(r, Math.random() * DELAY));
      // The whole body first (at most 1 MiB): handlers and injected failures read it.
      req.bodyText = req.method === 'GET' || req.method === 'HEAD' ? '' : await readRaw(req);
      const fail = failures.find((f) => f.times > 0 && (url.pathname + url.search + req.bodyText).includes(f.match));
      if (fail && !url.pathname.startsWith('/api/v1/auth/')) {
        fail.times -= 1;
        return send(res, fail.status, errorBody(fail.status === 503 ? 'store_unavailable' : 'internal', 'injected failure (mock)'));
      }
      return await api(req, res, url);
    }
    // The SPA: files under /assets, index.html for the app's paths.
    if (url.pathname.startsWith('/assets/')) {
      const file = path.join(DIST, path.normalize(url.pathname).replace(/^(\.\.[/\\])+/, ''));
      if (!file.startsWith(path.join(DIST, 'assets'))) return send(res, 404, errorBody('not_found', 'no such file'));
      return serveFile(res, file, 'public, max-age=31536000, immutable');
    }
    if (url.pathname === '/' || url.pathname === '/login' || url.pathname === '/app' || url.pathname.startsWith('/app/')) {
      return serveFile(res, path.join(DIST, 'index.html'), 'no-cache');
    }
    return send(res, 404, errorBody('not_found', `no route ${url.pathname}`));
  } catch (err) {
    if (err instanceof HttpError) return send(res, err.status, errorBody(err.error, err.message, err.extra));
    console.error(err);
    return send(res, 500, errorBody('internal', String(err && err.message)));
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`Tally mock on http://127.0.0.1:${PORT} (dist: ${DIST}); sign in as admin@example.com / ${PASSWORD}`);
});
