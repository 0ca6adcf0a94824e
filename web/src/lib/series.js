// Query answers grouped by a time bucket → uPlot data, every bucket of the
// range present (buckets without events are 0 for counts, empty for rates).
import { bucketKeys, keyToX } from './time.js';
import { num } from './format.js';
import { metricKind } from './format.js';

const additive = (metric) => metricKind(metric) === 'count' && !metric.startsWith('avg_');

/** Bucket keys of a period: every bucket of [from_ms, to_ms), else the answer's own (sorted). */
function keysOf(bucket, from, to, tz, rows, key) {
  const all = from !== undefined && to !== undefined ? bucketKeys(bucket, from, to, tz) : null;
  if (all) return all;
  return [...new Set(rows.map((r) => String(r[key])))].sort();
}

/**
 * One series per metric over time: {data: [xs, ...ys], keys, prev?: ys of the previous period by index}.
 * `answer` is a /query answer grouped by `key` only (e.g. "$day").
 */
export function timeSeries(answer, key, metrics) {
  const tz = answer.time_zone || 'UTC';
  const bucket = key.replace(/^\$/, '');
  const keys = keysOf(bucket, answer.from_ms, answer.to_ms, tz, answer.results, key);
  const byKey = new Map(answer.results.map((r) => [String(r[key]), r]));
  const ys = metrics.map((m) => keys.map((k) => (byKey.has(k) ? num(byKey.get(k)[m]) : additive(m) ? 0 : null)));
  const out = { keys, xs: keys.map(keyToX), ys, tz };
  if (answer.previous) {
    const pkeys = keysOf(bucket, answer.previous.from_ms, answer.previous.to_ms, tz, answer.previous.results, key);
    const pmap = new Map(answer.previous.results.map((r) => [String(r[key]), r]));
    out.prev = metrics.map((m) =>
      keys.map((_, i) => {
        const k = pkeys[i];
        if (k === undefined) return null;
        return pmap.has(k) ? num(pmap.get(k)[m]) : additive(m) ? 0 : null;
      }),
    );
    out.prevKeys = pkeys;
  }
  return out;
}

/**
 * One series per group over time (first metric), for answers grouped by a
 * bucket and other dimensions: the `top` groups by total.
 */
export function pivotSeries(answer, key, dims, metric, top = 8) {
  const tz = answer.time_zone || 'UTC';
  const bucket = key.replace(/^\$/, '');
  const keys = keysOf(bucket, answer.from_ms, answer.to_ms, tz, answer.results, key);
  const index = new Map(keys.map((k, i) => [k, i]));
  const groups = new Map();
  for (const r of answer.results) {
    const g = dims.map((d) => (r[d] === '' ? '(none)' : String(r[d]))).join(' · ');
    if (!groups.has(g)) groups.set(g, { label: g, total: 0, ys: keys.map(() => (additive(metric) ? 0 : null)) });
    const entry = groups.get(g);
    const i = index.get(String(r[key]));
    const v = num(r[metric]);
    if (i !== undefined) entry.ys[i] = v;
    entry.total += v || 0;
  }
  const chosen = [...groups.values()].sort((a, b) => b.total - a.total).slice(0, top);
  return { keys, xs: keys.map(keyToX), groups: chosen, tz, more: groups.size - chosen.length };
}
