// Number, share, duration and time formatting for people (the raw number is
// always kept in a data-value attribute next to the text, for tests).

/** A JSON number from an answer (ClickHouse may answer nan/inf or null): a finite number or null. */
export function num(value) {
  if (value === null || value === undefined || value === '') return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

const UNITS = [
  [1e9, 'B'],
  [1e6, 'M'],
  [1e3, 'k'],
];

/** 950 → "950", 1234 → "1.2k", 45600 → "45.6k", 1234567 → "1.2M"; non-integers get ≤ 2 decimals. */
export function fmtNum(value) {
  const n = num(value);
  if (n === null) return '–';
  const abs = Math.abs(n);
  for (let i = 0; i < UNITS.length; i++) {
    const [size, unit] = UNITS[i];
    if (abs >= size * 0.9995) {
      let scaled = n / size;
      let text = (Math.abs(scaled) >= 100 ? scaled.toFixed(0) : scaled.toFixed(1)).replace(/\.0$/, '');
      // 999,960 rounds to "1000k": show it in the next unit instead.
      if (Math.abs(Number(text)) >= 1000 && i > 0) {
        scaled = n / UNITS[i - 1][0];
        text = scaled.toFixed(1).replace(/\.0$/, '');
        return text + UNITS[i - 1][1];
      }
      return text + unit;
    }
  }
  if (Number.isInteger(n)) return String(n);
  return String(Number(n.toFixed(abs < 10 ? 2 : 1)));
}

/** A whole number with thousands separators: 12345 → "12,345". */
export function fmtInt(value) {
  const n = num(value);
  if (n === null) return '–';
  return Math.round(n).toLocaleString('en-US');
}

/** A share 0..1: 0.4512 → "45%", 0.045 → "4.5%", null → "–". */
export function fmtPct(value) {
  const n = num(value);
  if (n === null) return '–';
  const p = n * 100;
  if (p !== 0 && Math.abs(p) < 10) return `${Number(p.toFixed(1))}%`;
  return `${Math.round(p)}%`;
}

/** Seconds: 45 → "45s", 90 → "1m 30s", 3900 → "1h 5m". */
export function fmtDuration(seconds) {
  const n = num(seconds);
  if (n === null) return '–';
  let s = Math.round(n);
  if (s < 60) return `${s}s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    s %= 60;
    return s ? `${m}m ${s}s` : `${m}m`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return m ? `${h}h ${m}m` : `${h}h`;
}

/** Milliseconds as a duration ("median time to convert"). */
export const fmtMs = (ms) => (num(ms) === null ? '–' : fmtDuration(num(ms) / 1000));

/** HH:MM:SS (24 h, local time) of an epoch-ms time. */
export function fmtClock(ms) {
  if (!ms) return '–';
  return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
}

/** "2026-11-23 14:05" (local) of an epoch-ms time. */
export function fmtDateTime(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Metric kinds: how a value of that metric is shown. */
export function metricKind(name) {
  if (name === 'bounce_rate' || name === 'rate' || name.startsWith('conversion')) return 'pct';
  if (name === 'session_duration' || name === 'visit_duration') return 'duration';
  if (name.startsWith('avg_')) return 'decimal';
  return 'count';
}

export function fmtMetric(name, value) {
  switch (metricKind(name)) {
    case 'pct':
      return fmtPct(value);
    case 'duration':
      return fmtDuration(value);
    default:
      return fmtNum(value);
  }
}

/**
 * The change of `current` against `previous`: {text, dir: 'up'|'down'|'flat'|'none', good}.
 * Shares change in percentage points; everything else relatively.
 */
export function change(current, previous, { kind = 'count', lowerIsBetter = false } = {}) {
  const c = num(current);
  const p = num(previous);
  if (c === null || p === null) return { text: 'no comparison', dir: 'none', value: null };
  let delta;
  let text;
  let shown;
  if (kind === 'pct') {
    delta = (c - p) * 100;
    const r = Math.round(delta * 10) / 10;
    text = `${r > 0 ? '+' : r < 0 ? '−' : '±'}${Math.abs(r)} pp`;
    shown = r;
  } else {
    if (p === 0) {
      return c === 0 ? { text: '±0%', dir: 'flat', value: 0 } : { text: 'new', dir: 'up', value: null, good: !lowerIsBetter };
    }
    delta = (c - p) / Math.abs(p);
    const r = Math.round(delta * 100);
    text = `${r > 0 ? '+' : r < 0 ? '−' : '±'}${Math.abs(r)}%`;
    shown = r;
  }
  // The arrow follows the number shown: "±0%" is flat even when the change is a hair off zero.
  const dir = shown === 0 ? 'flat' : delta > 0 ? 'up' : 'down';
  const good = dir === 'flat' ? null : (dir === 'up') !== lowerIsBetter;
  return { text, dir, value: kind === 'pct' ? delta / 100 : delta, good };
}
