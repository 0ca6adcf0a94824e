// Date ranges in the URL (range=7d, or range=custom&from=YYYY-MM-DD&to=YYYY-MM-DD)
// and as API `range` values ("7d" or {from, to} in epoch ms).

export const RANGES = [
  { id: 'today', label: 'Today' },
  { id: '24h', label: 'Last 24 hours' },
  { id: '7d', label: 'Last 7 days' },
  { id: '30d', label: 'Last 30 days' },
  { id: '90d', label: 'Last 90 days' },
  { id: 'custom', label: 'Custom…' },
];

import { partsIn } from './time.js';

const DAY = 86_400_000;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

// The calendar of "today" and custom dates: the app's time zone (from
// /auth/me, set by the layout), else the browser's.
let zone = null;
export function setRangeZone(tz) {
  zone = tz || null;
}

/** Midnight of a YYYY-MM-DD date in the app's zone, epoch ms. */
function localMidnight(text) {
  const [y, m, d] = text.split('-').map(Number);
  if (!zone) return new Date(y, m - 1, d).getTime();
  // Walk from the UTC midnight by the zone's offset there (twice: the offset
  // may differ at the corrected instant around a clock change).
  const wanted = Date.UTC(y, m - 1, d);
  let t = wanted;
  for (let i = 0; i < 2; i++) {
    const p = partsIn(zone, t);
    t += wanted - Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  }
  return t;
}

/** The midnight that ends a YYYY-MM-DD date (23, 24 or 25 hours after its start). */
function endOfDay(text) {
  const [y, m, d] = text.split('-').map(Number);
  const next = new Date(Date.UTC(y, m - 1, d + 1));
  const p2 = (n) => String(n).padStart(2, '0');
  return localMidnight(`${next.getUTCFullYear()}-${p2(next.getUTCMonth() + 1)}-${p2(next.getUTCDate())}`);
}

export function todayText(offsetDays = 0) {
  const p2 = (n) => String(n).padStart(2, '0');
  if (zone) {
    const p = partsIn(zone, Date.now());
    const day = new Date(Date.UTC(p.year, p.month - 1, p.day + offsetDays));
    return `${day.getUTCFullYear()}-${p2(day.getUTCMonth() + 1)}-${p2(day.getUTCDate())}`;
  }
  const d = new Date();
  d.setDate(d.getDate() + offsetDays);
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;
}

/** The range of a query string: {id, from?, to?, error?}. */
export function readRange(query, fallback = '7d') {
  const id = query.get('range') || fallback;
  if (id === 'custom') {
    const from = query.get('from') || '';
    const to = query.get('to') || '';
    if (!DATE.test(from) || !DATE.test(to)) return { id, from, to, error: 'Pick both dates of the custom range.' };
    if (localMidnight(to) < localMidnight(from)) return { id, from, to, error: 'The custom range ends before it starts.' };
    if (localMidnight(to) - localMidnight(from) > 730 * DAY) return { id, from, to, error: 'A range is at most 731 days.' };
    return { id, from, to };
  }
  if (RANGES.some((r) => r.id === id) || /^\d{1,3}[dh]$/.test(id)) return { id };
  return { id: fallback };
}

/** Query-string keys of a range (for links that keep it). */
export function rangeParams(range) {
  if (range.id === 'custom') return { range: 'custom', from: range.from, to: range.to };
  return { range: range.id, from: null, to: null };
}

/** The API `range` of a URL range: "7d", "24h", or {from, to} (epoch ms; today: local midnight to the next minute). */
export function apiRange(range) {
  if (range.id === 'today') {
    const now = Date.now();
    const from = localMidnight(todayText());
    return { from, to: Math.max(Math.ceil(now / 60_000) * 60_000, from + 60_000) };
  }
  if (range.id === 'custom') {
    return { from: localMidnight(range.from), to: endOfDay(range.to) };
  }
  return range.id;
}

/** Length of a range in ms (approximate for today). */
export function rangeMs(range) {
  if (range.id === 'today') return Math.max(Date.now() - localMidnight(todayText()), 60_000);
  if (range.id === 'custom') return endOfDay(range.to) - localMidnight(range.from);
  const m = /^(\d+)([dh])$/.exec(range.id);
  return m ? Number(m[1]) * (m[2] === 'd' ? DAY : 3_600_000) : 7 * DAY;
}

/** Hour buckets for ranges of at most two days, else days. */
export const autoBucket = (range) => (rangeMs(range) <= 2 * DAY ? 'hour' : 'day');

export function rangeLabel(range) {
  if (range.id === 'custom') return `${range.from} – ${range.to}`;
  const found = RANGES.find((r) => r.id === range.id);
  return found ? found.label : `Last ${range.id}`;
}

/** A range from an API `range` value (a saved funnel's, say) as URL keys. */
export function rangeFromApi(value) {
  if (typeof value === 'string') return { range: value };
  if (value && value.from !== undefined && value.to !== undefined) {
    const toText = (ms) => {
      const d = new Date(typeof ms === 'number' || /^\d+$/.test(ms) ? Number(ms) : Date.parse(ms));
      const p = (n) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
    };
    const to = new Date(typeof value.to === 'number' || /^\d+$/.test(value.to) ? Number(value.to) : Date.parse(value.to));
    to.setMilliseconds(to.getMilliseconds() - 1);
    return { range: 'custom', from: toText(value.from), to: toText(to.getTime()) };
  }
  return { range: '7d' };
}
