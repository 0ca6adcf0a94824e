import { useEffect, useId, useState } from 'preact/hooks';
import { analytics, query } from '../lib/api.js';
import { useApi, useEventNames } from '../lib/hooks.js';
import { navigate, href, useLocation, withQuery } from '../lib/router.js';
import { apiRange, readRange } from '../lib/range.js';
import { fieldFits, filterParam, readFilters, toApiFilter } from '../lib/filters.js';
import { BUCKETS } from '../lib/time.js';
import { Chips, FieldList, FilterEditor, editsToFilters, filterToEdit } from '../components/filters.jsx';
import { ErrorText, Loaded, Panel } from '../components/ui.jsx';
import { QueryResult, isSessionMetric } from '../components/QueryResult.jsx';
import { AddToDashboard } from '../components/AddToDashboard.jsx';

const NAMED = [
  { id: 'events', label: 'Events' },
  { id: 'unique_users', label: 'Unique users' },
  { id: 'sessions', label: 'Sessions' },
  { id: 'bounce_rate', label: 'Bounce rate' },
  { id: 'session_duration', label: 'Session duration' },
];

/** URL metric ("events", "sum:price") → API metric. */
function apiMetric(m) {
  const i = m.indexOf(':');
  if (i > 0 && (m.startsWith('sum:') || m.startsWith('avg:'))) return { [m.slice(0, i)]: m.slice(i + 1) };
  return m;
}

/** The form's state from the URL. */
function readForm(q) {
  const metrics = q.getAll('m').filter(Boolean);
  return {
    metrics: metrics.length ? metrics : ['events'],
    filters: readFilters(q).map(filterToEdit),
    groups: q.getAll('g').filter(Boolean).slice(0, 3),
    bucket: BUCKETS.includes(q.get('bucket')) ? q.get('bucket') : '',
    did: q.get('did') || '',
    limit: q.get('limit') || '100',
    bots: q.get('bots') === '1',
  };
}

/** The /query body of the URL's state. */
export function exploreRequest(q, range) {
  const f = readForm(q);
  const body = { metrics: f.metrics.map(apiMetric) };
  const filters = readFilters(q).map(toApiFilter);
  if (filters.length) body.filters = filters;
  const dims = [...(f.bucket ? [`$${f.bucket}`] : []), ...f.groups].slice(0, 3);
  if (dims.length) body.group_by = dims;
  body.range = apiRange(range);
  if (f.did) body.segment = { did: f.did };
  const limit = Math.round(Number(f.limit));
  if (limit && limit !== 100) body.limit = Math.min(Math.max(limit, 1), 10000);
  if (f.bots) body.include_bots = true;
  return body;
}

/** What the API will refuse about a form (mixing event and session metrics), or null. */
function formProblem(form, filters) {
  const hasSession = form.metrics.some((m) => isSessionMetric(m));
  const hasEvent = form.metrics.some((m) => !isSessionMetric(m));
  const table = hasSession && hasEvent ? 'mixed' : hasSession ? 'sessions' : 'events';
  if (!form.metrics.length) return 'Choose at least one metric.';
  if (form.metrics.length > 10) return 'At most 10 metrics.';
  if ((form.bucket ? 1 : 0) + form.groups.length > 3) return 'At most three group-bys, the time bucket included.';
  if (table === 'events') return null;
  const what = table === 'sessions' ? 'Session metrics' : 'Event and session metrics together';
  const allowed = table === 'sessions' ? 'country, device_type, browser, os, referrer_host, utm_source, utm_medium, utm_campaign, entry_page, exit_page' : 'country, device_type, browser, os, referrer_host, utm_source, utm_medium, utm_campaign';
  for (const g of form.groups) if (!fieldFits(g, table)) return `${what} can only be grouped by ${allowed} (and time) — not “${g}”.`;
  for (const f of filters) if (!fieldFits(f.property, table)) return `${what} can only be filtered by ${allowed} — not “${f.property}”.`;
  return null;
}

export function Explore({ app }) {
  const loc = useLocation();
  const range = readRange(loc.query, '7d');
  const [form, setForm] = useState(() => readForm(loc.query));
  const [error, setError] = useState(null);
  const [agg, setAgg] = useState({ kind: 'sum', property: '' });
  const groupList = useId();
  const eventList = useId();
  const events = useEventNames(app);

  // Back/Forward (and links) reset the form to the URL's state.
  useEffect(() => {
    setForm(readForm(loc.query));
    setError(null);
  }, [loc.search]);

  const ran = true; // the URL's query (events over 7 days by default) runs at once
  const body = exploreRequest(loc.query, range);
  const urlProblem = formProblem(readForm(loc.query), readFilters(loc.query));
  const key = ran && !range.error && !urlProblem ? JSON.stringify([app, loc.search]) : null;
  const result = useApi((signal) => query(app, exploreRequest(loc.query, range), signal), key);

  const sessionsUsed = form.metrics.some((m) => isSessionMetric(m));
  const set = (patch) => setForm((f) => ({ ...f, ...patch }));
  const toggle = (id) => set({ metrics: form.metrics.includes(id) ? form.metrics.filter((m) => m !== id) : [...form.metrics, id] });

  const run = (e) => {
    e.preventDefault();
    const parsed = editsToFilters(form.filters);
    if (parsed.error) return setError(parsed.error);
    const groups = form.groups.map((g) => g.trim()).filter(Boolean);
    const problem = formProblem({ ...form, groups }, parsed.filters);
    if (problem) return setError(problem);
    setError(null);
    const q = withQuery(
      {
        m: form.metrics,
        f: parsed.filters.map(filterParam),
        g: groups,
        bucket: form.bucket || null,
        did: form.did.trim() || null,
        limit: form.limit && form.limit !== '100' ? form.limit : null,
        bots: form.bots ? '1' : null,
      },
      loc.query,
    );
    navigate(href(loc.path, q), { keepScroll: true });
  };

  const csv = `${analytics(app)}/query?${new URLSearchParams({ q: JSON.stringify(body), format: 'csv' })}`;
  const urlFilters = readFilters(loc.query);

  return (
    <div class="page" data-testid="page-explore">
      <div class="page-head">
        <h1>Explore</h1>
        <Chips
          filters={urlFilters}
          onRemove={(i) => navigate(href(loc.path, withQuery({ f: urlFilters.filter((_, j) => j !== i).map(filterParam) })), { keepScroll: true })}
        />
      </div>
      <form class="panel wide explore-form" onSubmit={run} data-testid="explore-form" aria-label="Query">
        <fieldset>
          <legend>Metrics</legend>
          <div class="checks">
            {NAMED.map((m) => (
              <label key={m.id} class="check">
                <input type="checkbox" checked={form.metrics.includes(m.id)} data-testid={`metric-${m.id}`} onChange={() => toggle(m.id)} /> {m.label}
              </label>
            ))}
          </div>
          <div class="agg-row">
            <label class="sr-only" for="agg-kind">
              Aggregate
            </label>
            <select id="agg-kind" value={agg.kind} data-testid="agg-kind" onChange={(e) => setAgg({ ...agg, kind: e.currentTarget.value })}>
              <option value="sum">Sum of</option>
              <option value="avg">Average of</option>
            </select>
            <label class="sr-only" for="agg-prop">
              Property to aggregate
            </label>
            <input id="agg-prop" list={groupList} placeholder="properties.price" value={agg.property} data-testid="agg-property" autoComplete="off" onInput={(e) => setAgg({ ...agg, property: e.currentTarget.value.trim() })} />
            <button
              type="button"
              class="btn small"
              data-testid="agg-add"
              onClick={() => {
                if (!agg.property) return;
                const id = `${agg.kind}:${agg.property}`;
                if (!form.metrics.includes(id)) set({ metrics: [...form.metrics, id] });
                setAgg({ ...agg, property: '' });
              }}
            >
              Add metric
            </button>
          </div>
          <ul class="chips">
            {form.metrics
              .filter((m) => m.includes(':'))
              .map((m) => (
                <li class="chip" key={m} data-testid="metric-chip">
                  <span>{m.startsWith('sum:') ? `Sum of ${m.slice(4)}` : `Average of ${m.slice(4)}`}</span>
                  <button type="button" class="chip-x" aria-label={`Remove metric ${m}`} onClick={() => set({ metrics: form.metrics.filter((x) => x !== m) })}>
                    ×
                  </button>
                </li>
              ))}
          </ul>
        </fieldset>

        <fieldset>
          <legend>Filters</legend>
          <FilterEditor app={app} filters={form.filters} onChange={(filters) => set({ filters })} sessions={sessionsUsed} />
        </fieldset>

        <fieldset>
          <legend>Group by</legend>
          <FieldList app={app} id={groupList} sessions={sessionsUsed} />
          <div class="group-row">
            <div class="field">
              <label for="bucket">Time bucket</label>
              <select id="bucket" value={form.bucket} data-testid="bucket" onChange={(e) => set({ bucket: e.currentTarget.value })}>
                <option value="">none</option>
                {BUCKETS.map((b) => (
                  <option key={b} value={b}>
                    {b}
                  </option>
                ))}
              </select>
            </div>
            {[0, 1, 2].map((i) => (
              <div class="field" key={i}>
                <label for={`group-${i}`}>Dimension {i + 1}</label>
                <input
                  id={`group-${i}`}
                  list={groupList}
                  value={form.groups[i] || ''}
                  data-testid={`group-${i}`}
                  placeholder={i === 0 ? 'e.g. country' : ''}
                  autoComplete="off"
                  disabled={i > form.groups.filter(Boolean).length}
                  onInput={(e) => {
                    const groups = [...form.groups];
                    groups[i] = e.currentTarget.value.trim();
                    set({ groups: groups.filter((g, j) => g || j < i) });
                  }}
                />
              </div>
            ))}
          </div>
        </fieldset>

        <fieldset>
          <legend>Options</legend>
          <div class="group-row">
            <div class="field">
              <label for="did">Only users who did</label>
              <input id="did" list={eventList} value={form.did} placeholder="event name (optional)" data-testid="segment" autoComplete="off" onInput={(e) => set({ did: e.currentTarget.value })} />
              <datalist id={eventList}>
                {events.map((v) => (
                  <option key={v.value} value={v.value} />
                ))}
              </datalist>
            </div>
            <div class="field">
              <label for="limit">Row limit</label>
              <input id="limit" type="number" min="1" max="10000" value={form.limit} data-testid="limit" onInput={(e) => set({ limit: e.currentTarget.value })} />
            </div>
            <label class="check">
              <input type="checkbox" checked={form.bots} data-testid="bots" onChange={(e) => set({ bots: e.currentTarget.checked })} /> Include bots
            </label>
          </div>
        </fieldset>
        <ErrorText error={error} testid="explore-error" />
        <div class="row-buttons">
          <button type="submit" class="btn primary" data-testid="explore-run">
            Run query
          </button>
        </div>
      </form>

      {range.error ? <ErrorText error={range.error} /> : null}
      {urlProblem && ran ? <ErrorText error={urlProblem} /> : null}
      {ran && key ? (
        <Panel
          id="explore-result"
          title="Result"
          wide
          actions={
            <>
              <a class="btn" href={csv} download="tally-query.csv" data-testid="download-csv">
                Download CSV
              </a>
              <AddToDashboard app={app} widget={{ type: 'query', request: body, title: '' }} />
            </>
          }
        >
          <Loaded result={result} isEmpty={(d) => !d.results.length} empty="No rows: nothing matched in this range.">
            {(answer) => <QueryResult answer={answer} request={body} testid="explore" />}
          </Loaded>
        </Panel>
      ) : null}
    </div>
  );
}
