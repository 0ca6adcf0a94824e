import { Chart } from './Chart.jsx';
import { Value } from './ui.jsx';
import { fmtDuration, fmtPct, metricKind, num } from '../lib/format.js';
import { isBucket, chartZone, keyLabel } from '../lib/time.js';
import { pivotSeries, timeSeries } from '../lib/series.js';

const SESSION_METRICS = ['sessions', 'bounce_rate', 'session_duration'];
export const isSessionMetric = (m) => typeof m === 'string' && SESSION_METRICS.includes(m);

/** The answer's column name of a request metric: events, sum_price, avg_properties.x … */
export function metricName(m) {
  if (typeof m === 'string') return m;
  if (m && m.sum !== undefined) return `sum_${m.sum}`;
  if (m && m.avg !== undefined) return `avg_${m.avg}`;
  return String(m);
}

export const METRIC_LABELS = {
  events: 'Events',
  unique_users: 'Unique users',
  sessions: 'Sessions',
  bounce_rate: 'Bounce rate',
  session_duration: 'Session duration',
};
export function metricLabel(name) {
  if (METRIC_LABELS[name]) return METRIC_LABELS[name];
  if (name.startsWith('sum_')) return `Sum of ${name.slice(4)}`;
  if (name.startsWith('avg_')) return `Average of ${name.slice(4)}`;
  return name;
}

/** The request's metrics (metric, then metrics) as the answer names them. */
export function requestMetrics(req) {
  const list = [...(req.metric !== undefined ? [req.metric] : []), ...(req.metrics || [])].slice(0, 10);
  return list.map(metricName);
}

export function requestDims(req) {
  const g = req.group_by;
  if (!g) return [];
  return Array.isArray(g) ? g : [g];
}

const MAX_ROWS_SHOWN = 1000;

/** A metric in a data table: whole numbers in full (12,345), shares and durations as elsewhere. */
export function fmtExact(name, value) {
  const kind = metricKind(name);
  if (kind === 'pct') return fmtPct(value);
  if (kind === 'duration') return fmtDuration(value);
  const n = num(value);
  if (n === null) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

/** A /query answer as a chart (when grouped by a time bucket) and a table. */
export function QueryResult({ answer, request, testid = 'query', chartHeight = 260, collapseTable = false }) {
  const metrics = requestMetrics(request);
  const dims = requestDims(request);
  const bucket = dims.find(isBucket);
  const others = dims.filter((d) => d !== bucket);
  let chart = null;
  if (bucket && answer.results.length) {
    if (!others.length) {
      const s = timeSeries(answer, bucket, metrics);
      const kinds = metrics.map(metricKind);
      const rightKind = kinds.find((k) => k !== kinds[0]);
      chart = (
        <Chart
          testid={`chart-${testid}`}
          label={`${metrics.map(metricLabel).join(', ')} per ${bucket.replace('$', '')}`}
          data={[s.xs, ...s.ys]}
          tz={chartZone(bucket, s.tz)}
          unit={bucket.replace('$', '')}
          height={chartHeight}
          series={metrics.map((m, i) => ({ label: metricLabel(m), kind: kinds[i] === 'decimal' ? 'count' : kinds[i], axis: rightKind && kinds[i] === rightKind ? 1 : 0 }))}
        />
      );
    } else {
      const p = pivotSeries(answer, bucket, others, metrics[0]);
      chart = (
        <>
          <Chart
            testid={`chart-${testid}`}
            label={`${metricLabel(metrics[0])} per ${bucket.replace('$', '')} by ${others.join(', ')}`}
            data={[p.xs, ...p.groups.map((g) => g.ys)]}
            tz={chartZone(bucket, p.tz)}
            unit={bucket.replace('$', '')}
            height={chartHeight}
            series={p.groups.map((g) => ({ label: g.label, kind: metricKind(metrics[0]) }))}
          />
          {p.more > 0 ? <p class="muted small">The chart shows the {p.groups.length} largest groups by {metricLabel(metrics[0]).toLowerCase()}; the table has all.</p> : null}
        </>
      );
    }
  }
  // Bucketed answers read best in time order (the API orders by the first metric).
  const sorted = bucket ? [...answer.results].sort((a, b) => (String(a[bucket]) < String(b[bucket]) ? -1 : String(a[bucket]) > String(b[bucket]) ? 1 : 0)) : answer.results;
  const rows = sorted.slice(0, MAX_ROWS_SHOWN);
  const table = (
        <div class="table-scroll">
          <table class="data" data-testid={`table-${testid}`}>
            <thead>
              <tr>
                {dims.map((d) => (
                  <th scope="col" key={d}>
                    {d}
                  </th>
                ))}
                {metrics.map((m) => (
                  <th scope="col" class="num" key={m}>
                    {metricLabel(m)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r, i) => (
                <tr key={i} data-testid={`row-${testid}`} data-key={dims.map((d) => String(r[d] ?? '')).join('|')}>
                  {dims.map((d) => (
                    <td key={d} data-testid={`cell-${d}`} data-value={String(r[d] ?? '')}>
                      {r[d] === '' || r[d] === null || r[d] === undefined ? <span class="muted">(none)</span> : isBucket(d) ? keyLabel(r[d]) : String(r[d])}
                    </td>
                  ))}
                  {metrics.map((m) => (
                    <td class="num" key={m}>
                      <Value testid={`cell-${m}`} value={num(r[m])} text={fmtExact(m, r[m])} />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
  );
  return (
    <div class="query-result">
      {chart}
      {collapseTable && chart ? (
        <details class="table-details">
          <summary>Table</summary>
          {table}
        </details>
      ) : (
        table
      )}
      <p class="muted small result-meta" data-testid={`meta-${testid}`}>
        {answer.results.length} row{answer.results.length === 1 ? '' : 's'}
        {answer.results.length > MAX_ROWS_SHOWN ? ` (first ${MAX_ROWS_SHOWN} shown)` : ''}
        {answer.truncated ? ' · cut at the limit' : ''}
        {answer.sampled ? ` · sampled (${answer.sampled * 100}% of users)` : ''}
        {answer.time_zone ? ` · ${answer.time_zone}` : ''}
        {answer.query_time_ms !== undefined ? ` · ${answer.query_time_ms} ms` : ''}
        {answer.fields && Object.keys(answer.fields).length ? ` · fields: ${Object.entries(answer.fields).map(([k, v]) => `${k} → ${v}`).join(', ')}` : ''}
      </p>
    </div>
  );
}
