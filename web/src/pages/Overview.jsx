import { analytics, api, query } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { setQuery, useLocation } from '../lib/router.js';
import { apiRange, autoBucket, readRange } from '../lib/range.js';
import { filterParam, filterText, readFilters, splitFilters } from '../lib/filters.js';
import { change, fmtDuration, fmtNum, fmtPct, num } from '../lib/format.js';
import { timeSeries } from '../lib/series.js';
import { chartZone } from '../lib/time.js';
import { Chart, COLORS } from '../components/Chart.jsx';
import { Chips } from '../components/filters.jsx';
import { Loaded, Panel, Tabs, Value } from '../components/ui.jsx';
import { Onboarding } from '../components/Snippets.jsx';

const PAGE_VIEW = { property: '$name', op: 'eq', value: 'page_view' };
const DAY = 86_400_000;

/** The KPI cards: id, label, where the number comes from, how it is shown. */
const KPIS = [
  { id: 'visitors', label: 'Unique visitors', from: 'events', field: 'unique_users', kind: 'count' },
  { id: 'visits', label: 'Visits', from: 'sessions', field: 'sessions', kind: 'count' },
  { id: 'pageviews', label: 'Page views', from: 'events', field: 'events', kind: 'count' },
  { id: 'views_per_visit', label: 'Views per visit', from: 'both', kind: 'decimal', chart: false },
  { id: 'bounce_rate', label: 'Bounce rate', from: 'sessions', field: 'bounce_rate', kind: 'pct', lowerIsBetter: true },
  { id: 'visit_duration', label: 'Visit duration', from: 'sessions', field: 'session_duration', kind: 'duration' },
];

const show = (kind, v) => (kind === 'pct' ? fmtPct(v) : kind === 'duration' ? fmtDuration(v) : kind === 'decimal' ? (num(v) === null ? '–' : Number(num(v).toFixed(2)).toString()) : fmtNum(v));

const regionNames = typeof Intl !== 'undefined' && Intl.DisplayNames ? new Intl.DisplayNames(['en'], { type: 'region' }) : null;
function countryName(code) {
  if (!code || !regionNames || !/^[A-Z]{2}$/.test(code)) return code;
  try {
    const name = regionNames.of(code);
    return name && name !== code ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

/** The list panels and their tabs: each tab a /query grouped by one field. */
const LISTS = {
  pages: {
    title: 'Pages',
    param: 'pages',
    tabs: [
      { id: 'top', label: 'Top pages', col: 'Page', dim: '$url_path', table: 'events' },
      { id: 'entry', label: 'Entry pages', col: 'Entry page', dim: '$entry_page', table: 'sessions' },
      { id: 'exit', label: 'Exit pages', col: 'Exit page', dim: '$exit_page', table: 'sessions' },
    ],
  },
  sources: {
    title: 'Sources',
    param: 'sources',
    tabs: [
      { id: 'referrer', label: 'Referrers', col: 'Referrer', dim: '$referrer_host', table: 'events', none: 'Direct / none' },
      { id: 'utm_source', label: 'UTM source', col: 'UTM source', dim: '$utm_source', table: 'events' },
      { id: 'utm_medium', label: 'UTM medium', col: 'UTM medium', dim: '$utm_medium', table: 'events' },
      { id: 'utm_campaign', label: 'UTM campaign', col: 'UTM campaign', dim: '$utm_campaign', table: 'events' },
    ],
  },
  locations: {
    title: 'Locations',
    param: 'locations',
    tabs: [
      { id: 'country', label: 'Countries', col: 'Country', dim: '$country', table: 'events', label_of: countryName, none: 'Unknown' },
      { id: 'region', label: 'Regions', col: 'Region', dim: '$region', table: 'events', none: 'Unknown' },
      { id: 'city', label: 'Cities', col: 'City', dim: '$city', table: 'events', none: 'Unknown' },
    ],
  },
  devices: {
    title: 'Devices',
    param: 'devices',
    tabs: [
      { id: 'device', label: 'Devices', col: 'Device', dim: '$device_type', table: 'events', none: 'Unknown' },
      { id: 'browser', label: 'Browsers', col: 'Browser', dim: '$browser', table: 'events', none: 'Unknown' },
      { id: 'os', label: 'OS', col: 'OS', dim: '$os', table: 'events', none: 'Unknown' },
    ],
  },
};

function skippedNote(skipped, what) {
  if (!skipped.length) return null;
  return `Not filtered by ${skipped.map(filterText).join(', ')}: ${what} have no such field.`;
}

export function Overview({ me, app, role }) {
  const loc = useLocation();
  const range = readRange(loc.query, '7d');
  const filters = readFilters(loc.query);
  const chartMetric = KPIS.find((k) => k.id === loc.query.get('metric') && k.chart !== false) || KPIS[0];
  const bucket = `$${autoBucket(range)}`;
  const key = JSON.stringify([app, range, filters]);
  const ev = splitFilters(filters, 'events');
  const ss = splitFilters(filters, 'sessions');

  const addFilter = (f) => {
    const rest = filters.filter((x) => x.property !== f.property);
    setQuery({ f: [...rest, f].map(filterParam) });
  };
  const removeFilter = (i) => setQuery({ f: filters.filter((_, j) => j !== i).map(filterParam) });

  const kpiEvents = useApi(
    (signal) => query(app, { metrics: ['unique_users', 'events'], filters: [PAGE_VIEW, ...ev.fit], range: apiRange(range), compare: 'previous' }, signal),
    range.error ? null : key,
  );
  const kpiSessions = useApi(
    (signal) => query(app, { metrics: ['sessions', 'bounce_rate', 'session_duration'], filters: ss.fit, range: apiRange(range), compare: 'previous' }, signal),
    range.error ? null : key,
  );
  const chartTable = chartMetric.from === 'sessions' ? 'sessions' : 'events';
  const chart = useApi(
    (signal) =>
      query(
        app,
        chartTable === 'events'
          ? { metrics: ['unique_users', 'events'], group_by: [bucket], filters: [PAGE_VIEW, ...ev.fit], range: apiRange(range), compare: 'previous', limit: 10000 }
          : { metrics: ['sessions', 'bounce_rate', 'session_duration'], group_by: [bucket], filters: ss.fit, range: apiRange(range), compare: 'previous', limit: 10000 },
        signal,
      ),
    range.error ? null : `${key}|${chartTable}|${bucket}`,
  );

  // An app without any event (in the last two years) gets the how-to instead.
  const noEvents =
    kpiEvents.data && !filters.length && num(kpiEvents.data.results[0]?.events) === 0 && num(kpiEvents.data.previous?.results[0]?.events) === 0;
  const total = useApi((signal) => api(`${analytics(app)}/count?from=${Date.now() - 730 * DAY}`, { signal }), noEvents ? `count|${app}` : null);
  const empty = noEvents && total.data && total.data.count === 0;

  if (range.error) {
    return (
      <div class="page" data-testid="page-overview">
        <p class="form-error" role="alert">
          {range.error}
        </p>
      </div>
    );
  }

  const value = (kpi, period) => {
    const pick = (answer) => {
      if (!answer) return undefined;
      const rows = period === 'previous' ? answer.previous?.results : answer.results;
      return rows ? rows[0] || {} : undefined;
    };
    const e = pick(kpiEvents.data);
    const s = pick(kpiSessions.data);
    if (kpi.from === 'events') return e === undefined ? undefined : num(e[kpi.field]) ?? (kpi.kind === 'count' ? 0 : null);
    if (kpi.from === 'sessions') return s === undefined ? undefined : num(s[kpi.field]) ?? (kpi.kind === 'count' ? 0 : null);
    if (e === undefined || s === undefined) return undefined;
    // Page views and visits filtered differently do not divide into anything meaningful.
    if (ev.skipped.length || ss.skipped.length) return null;
    const visits = num(s.sessions);
    return visits ? (num(e.events) || 0) / visits : null;
  };

  const kpiError = kpiEvents.error || kpiSessions.error;
  const kpiNote = [skippedNote(ss.skipped, 'visits'), ''].filter(Boolean).join(' ');

  return (
    <div class="page" data-testid="page-overview">
      <div class="page-head">
        <h1>Overview</h1>
        <Chips filters={filters} onRemove={removeFilter} onClear={() => setQuery({ f: null })} />
      </div>
      {empty ? (
        <Onboarding app={app} gateway={me.gateway_url} admin={role === 'admin'} />
      ) : (
        <>
          <section class="kpis" data-testid="panel-kpis" aria-label="Key numbers">
            {kpiError ? (
              <div class="kpi-error">
              <Loaded
                result={{
                  ...(kpiEvents.error ? kpiEvents : kpiSessions),
                  reload: () => {
                    if (kpiEvents.error) kpiEvents.reload();
                    if (kpiSessions.error) kpiSessions.reload();
                  },
                }}
              >
                {() => null}
              </Loaded>
              </div>
            ) : (
              KPIS.map((kpi) => {
                const cur = value(kpi, 'current');
                const prev = value(kpi, 'previous');
                const d = cur === undefined ? null : change(cur, prev, { kind: kpi.kind === 'pct' ? 'pct' : 'count', lowerIsBetter: kpi.lowerIsBetter });
                const selectable = kpi.chart !== false;
                const Tag = selectable ? 'button' : 'div';
                return (
                  <Tag
                    key={kpi.id}
                    type={selectable ? 'button' : undefined}
                    class={`kpi ${selectable && chartMetric.id === kpi.id ? 'on' : ''}`}
                    aria-pressed={selectable ? (chartMetric.id === kpi.id ? 'true' : 'false') : undefined}
                    data-testid={`kpi-${kpi.id}`}
                    onClick={selectable ? () => setQuery({ metric: kpi.id === 'visitors' ? null : kpi.id }) : undefined}
                  >
                    <span class="kpi-label">{kpi.label}</span>
                    {cur === undefined ? (
                      <span class="kpi-value skeleton" aria-busy="true">
                        …
                      </span>
                    ) : (
                      <Value testid={`kpi-${kpi.id}-value`} class="kpi-value" value={cur} text={show(kpi.kind, cur)} />
                    )}
                    {d ? (
                      <span
                        class={`kpi-change ${d.dir} ${d.good === true ? 'good' : d.good === false ? 'bad' : ''}`}
                        data-testid={`kpi-${kpi.id}-change`}
                        data-value={d.value ?? ''}
                        data-previous={prev ?? ''}
                        title={`Previous period: ${show(kpi.kind, prev)}`}
                      >
                        <span aria-hidden="true">{d.dir === 'up' ? '▲' : d.dir === 'down' ? '▼' : ''}</span> {d.text}
                        <span class="sr-only"> vs previous period ({show(kpi.kind, prev)})</span>
                      </span>
                    ) : null}
                  </Tag>
                );
              })
            )}
            {kpiNote ? (
              <p class="panel-note kpi-note" data-testid="note-kpis">
                {kpiNote}
              </p>
            ) : null}
          </section>

          <Panel
            id="chart"
            title={`${chartMetric.label} per ${bucket.slice(1)}`}
            wide
            note={chartTable === 'sessions' ? skippedNote(ss.skipped, 'visits') : null}
            actions={<span class="legend-note">solid: this period · dashed: the previous one</span>}
          >
            <Loaded result={chart} minHeight="260px">
              {(answer) => {
                const field = chartMetric.field;
                const s = timeSeries(answer, bucket, [field]);
                const data = [s.xs, s.ys[0], s.prev ? s.prev[0] : s.ys[0].map(() => null)];
                return (
                  <Chart
                    testid="chart-overview"
                    label={`${chartMetric.label} per ${bucket.slice(1)}, this period and the previous one`}
                    data={data}
                    tz={chartZone(bucket, s.tz)}
                    unit={bucket.slice(1)}
                    height={260}
                    series={[
                      { label: chartMetric.label, color: COLORS[0], fill: true, kind: chartMetric.kind },
                      { label: 'Previous period', color: '#6b7280', dash: true, kind: chartMetric.kind },
                    ]}
                  />
                );
              }}
            </Loaded>
          </Panel>

          <div class="grid2">
            {Object.entries(LISTS).map(([id, list]) => (
              <ListPanel key={id} id={id} list={list} app={app} range={range} filters={filters} ev={ev} ss={ss} onPick={addFilter} query={loc.query} />
            ))}
          </div>
        </>
      )}
    </div>
  );
}

function ListPanel({ id, list, app, range, filters, ev, ss, onPick, query: q }) {
  const tab = list.tabs.find((t) => t.id === q.get(list.param)) || list.tabs[0];
  const sessions = tab.table === 'sessions';
  const key = JSON.stringify([app, range, filters, tab.dim]);
  const result = useApi(
    (signal) =>
      query(
        app,
        sessions
          ? { metrics: ['sessions'], group_by: [tab.dim], filters: ss.fit, range: apiRange(range), limit: 10 }
          : { metrics: ['unique_users', 'events'], group_by: [tab.dim], filters: [PAGE_VIEW, ...ev.fit], range: apiRange(range), limit: 10 },
        signal,
      ),
    key,
  );
  const cols = sessions ? [{ field: 'sessions', label: 'Visits' }] : [{ field: 'unique_users', label: 'Visitors' }, { field: 'events', label: 'Views' }];
  const note = sessions ? skippedNote(ss.skipped, 'visits') : skippedNote(ev.skipped, 'page views');
  return (
    <Panel
      id={id}
      title={list.title}
      note={note}
      actions={<Tabs label={`${list.title}: show`} items={list.tabs} value={tab.id} onChange={(v) => setQuery({ [list.param]: v === list.tabs[0].id ? null : v }, { replace: true })} testid={`tabs-${id}`} />}
    >
      <Loaded result={result} isEmpty={(d) => !d.results.length} minHeight="120px">
        {(answer) => {
          const max = Math.max(...answer.results.map((r) => num(r[cols[0].field]) || 0), 1);
          return (
            <div class="table-scroll">
              <table class="toplist" data-testid={`table-${id}`} data-tab={tab.id} data-dim={tab.dim}>
                <thead>
                  <tr>
                    <th scope="col">{tab.col}</th>
                    {cols.map((c) => (
                      <th scope="col" class="num" key={c.field}>
                        {c.label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {answer.results.map((r) => {
                    const raw = r[tab.dim] ?? '';
                    const text = raw === '' ? tab.none || '(none)' : tab.label_of ? tab.label_of(String(raw)) : String(raw);
                    const filter = raw === '' ? { property: tab.dim, op: 'is_not_set' } : { property: tab.dim, op: 'eq', value: String(raw) };
                    const share = ((num(r[cols[0].field]) || 0) / max) * 100;
                    return (
                      <tr key={String(raw)} data-testid={`row-${id}`} data-key={String(raw)}>
                        <td class="bar-cell">
                          <span class="bar" style={{ width: `${share}%` }} aria-hidden="true" />
                          <button type="button" class="row-btn" title={`Filter by ${text}`} data-testid="row-filter" onClick={() => onPick(filter)}>
                            {text}
                          </button>
                        </td>
                        {cols.map((c) => (
                          <td class="num" key={c.field}>
                            <Value testid={`cell-${c.field}`} value={num(r[c.field])} text={fmtNum(r[c.field])} />
                          </td>
                        ))}
                      </tr>
                    );
                  })}
                </tbody>
              </table>
              {answer.truncated ? <p class="muted small">Top 10 shown.</p> : null}
            </div>
          );
        }}
      </Loaded>
    </Panel>
  );
}
