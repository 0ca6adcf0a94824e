// Time buckets as the API answers them, in the answer's time zone:
// minute/hour "2026-11-01T01:00:00-04:00", day "2026-11-23", week (its
// Monday) and month (its first day) as dates. Used to fill the buckets an
// answer leaves out (no events) and to place them on a chart's x axis.

export const BUCKETS = ['minute', 'hour', 'day', 'week', 'month'];

export const isBucket = (name) => BUCKETS.includes(String(name).replace(/^\$/, ''));

const formatters = new Map();
export function partsIn(tz, ms) {
  let f = formatters.get(tz);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      });
    } catch {
      f = partsIn.utc || (partsIn.utc = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }));
    }
    formatters.set(tz, f);
  }
  const out = {};
  for (const p of f.formatToParts(new Date(ms))) if (p.type !== 'literal') out[p.type] = Number(p.value);
  if (out.hour === 24) out.hour = 0;
  return out;
}

const p2 = (n) => String(n).padStart(2, '0');
const dateText = (y, m, d) => `${y}-${p2(m)}-${p2(d)}`;

function offsetText(tz, ms) {
  const p = partsIn(tz, ms);
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  const minutes = Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
  const sign = minutes < 0 ? '-' : '+';
  const a = Math.abs(minutes);
  return `${sign}${p2(Math.floor(a / 60))}:${p2(a % 60)}`;
}

/** The bucket key of instant `ms` in zone `tz`. */
export function bucketKey(bucket, ms, tz) {
  const b = bucket.replace(/^\$/, '');
  const p = partsIn(tz, ms);
  if (b === 'minute' || b === 'hour') {
    const start = ms - (p.second * 1000 + (ms % 1000 + 1000) % 1000) - (b === 'hour' ? p.minute * 60_000 : 0);
    const minute = b === 'hour' ? 0 : p.minute;
    return `${dateText(p.year, p.month, p.day)}T${p2(p.hour)}:${p2(minute)}:00${offsetText(tz, start)}`;
  }
  if (b === 'day') return dateText(p.year, p.month, p.day);
  if (b === 'month') return dateText(p.year, p.month, 1);
  // week: the Monday on or before the local date
  const utc = Date.UTC(p.year, p.month - 1, p.day);
  const dow = (new Date(utc).getUTCDay() + 6) % 7;
  const monday = new Date(utc - dow * 86_400_000);
  return dateText(monday.getUTCFullYear(), monday.getUTCMonth() + 1, monday.getUTCDate());
}

/** Every bucket key of [fromMs, toMs) in zone tz, in order (at most `max`; null when more). */
export function bucketKeys(bucket, fromMs, toMs, tz, max = 20000) {
  const b = bucket.replace(/^\$/, '');
  const step = b === 'minute' ? 60_000 : 900_000;
  const keys = [];
  let last = null;
  let t = fromMs;
  if (b === 'minute') t = Math.floor(fromMs / 60_000) * 60_000;
  for (; t < toMs; t += step) {
    const k = bucketKey(b, Math.max(t, fromMs), tz);
    if (k !== last) {
      keys.push(k);
      last = k;
      if (keys.length > max) return null;
    }
  }
  if (toMs > fromMs) {
    const k = bucketKey(b, toMs - 1, tz);
    if (k !== last) keys.push(k);
  }
  return keys;
}

/** x (epoch seconds) of a bucket key: instants for minute/hour, the date at UTC midnight for dates. */
export function keyToX(key) {
  const text = String(key);
  if (text.length === 10) return Date.parse(`${text}T00:00:00Z`) / 1000;
  return Date.parse(text) / 1000;
}

/** The zone a chart of `bucket` shows its x axis in (dates are placed at UTC midnight). */
export const chartZone = (bucket, tz) => (/minute|hour/.test(bucket) ? tz || 'UTC' : 'UTC');

/** A short label of a bucket key for tables. */
export function keyLabel(key) {
  const text = String(key ?? '');
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(text)) return `${text.slice(0, 10)} ${text.slice(11, 16)}`;
  return text;
}
