import { useId, useState } from 'preact/hooks';
import { analytics, post } from '../lib/api.js';
import { useApi, useEventNames } from '../lib/hooks.js';
import { navigate, href, useLocation, withQuery } from '../lib/router.js';
import { apiRange, readRange } from '../lib/range.js';
import { filterParam, readFilters, toApiFilter } from '../lib/filters.js';
import { FieldList, FilterEditor, editsToFilters, filterToEdit } from '../components/filters.jsx';
import { ErrorText, Loaded, Panel } from '../components/ui.jsx';
import { RetentionGrid } from '../components/RetentionGrid.jsx';
import { AddToDashboard } from '../components/AddToDashboard.jsx';

const PERIODS = ['day', 'week', 'month'];

function readRetention(q) {
  const period = PERIODS.includes(q.get('period')) ? q.get('period') : 'week';
  const periods = Math.min(Math.max(Math.round(Number(q.get('periods')) || 8), 1), 52);
  return {
    start: q.get('start') || '',
    ret: q.get('return') || '',
    period,
    periods,
    filters: readFilters(q),
    breakdown: q.get('breakdown') || '',
    cohort: q.get('cohort') === 'first_time' ? 'first_time' : 'in_range',
  };
}

export function retentionBody(s, range) {
  const body = { start_event: s.start, return_event: s.ret, period: s.period, periods: s.periods, range: apiRange(range) };
  if (s.filters.length) body.filters = s.filters.map(toApiFilter);
  if (s.breakdown) body.breakdown = s.breakdown;
  if (s.cohort !== 'in_range') body.cohort = s.cohort;
  return body;
}

export function Retention({ app }) {
  const loc = useLocation();
  const range = readRange(loc.query, '90d');
  const state = readRetention(loc.query);
  const ready = state.start && state.ret && !range.error;
  const body = ready ? retentionBody(state, range) : null;
  const result = useApi((signal) => post(`${analytics(app)}/retention`, retentionBody(readRetention(loc.query), range), signal), ready ? JSON.stringify([app, loc.search]) : null);
  return (
    <div class="page" data-testid="page-retention">
      <div class="page-head">
        <h1>Retention</h1>
      </div>
      <RetentionForm key={loc.search} app={app} state={state} />
      {range.error ? <ErrorText error={range.error} /> : null}
      {ready ? (
        <Panel
          id="retention-result"
          title={`Returning users by ${state.period}`}
          wide
          actions={<AddToDashboard app={app} widget={{ type: 'retention', request: body, title: `${state.start} → ${state.ret}` }} />}
        >
          <Loaded result={result} isEmpty={(d) => !d.cohorts.length} empty="No user did the start event in this range.">
            {(answer) => <RetentionGrid answer={answer} />}
          </Loaded>
        </Panel>
      ) : (
        <p class="muted" data-testid="retention-hint">
          Choose a start event and a return event, then press “Show retention”.
        </p>
      )}
    </div>
  );
}

function RetentionForm({ app, state }) {
  const loc = useLocation();
  const [form, setForm] = useState({ ...state, filters: state.filters.map(filterToEdit) });
  const [error, setError] = useState(null);
  const events = useEventNames(app);
  const eventList = useId();
  const fieldList = useId();
  const set = (patch) => setForm({ ...form, ...patch });
  const submit = (e) => {
    e.preventDefault();
    if (!form.start.trim() || !form.ret.trim()) return setError('Give both events.');
    const parsed = editsToFilters(form.filters);
    if (parsed.error) return setError(parsed.error);
    const n = Math.round(Number(form.periods));
    if (!(n >= 1 && n <= 52)) return setError('Periods: 1 to 52.');
    setError(null);
    const q = withQuery(
      {
        start: form.start.trim(),
        return: form.ret.trim(),
        period: form.period,
        periods: String(n),
        f: parsed.filters.map(filterParam),
        breakdown: form.breakdown.trim() || null,
        cohort: form.cohort === 'first_time' ? 'first_time' : null,
      },
      loc.query,
    );
    navigate(href(loc.path, q), { keepScroll: true });
  };
  return (
    <form class="panel wide" onSubmit={submit} data-testid="retention-form" aria-label="Retention question">
      <datalist id={eventList}>
        {events.map((v) => (
          <option key={v.value} value={v.value} />
        ))}
      </datalist>
      <FieldList app={app} id={fieldList} />
      <div class="group-row">
        <div class="field">
          <label for="ret-start">Start event</label>
          <input id="ret-start" list={eventList} value={form.start} placeholder="signup" data-testid="ret-start" autoComplete="off" onInput={(e) => set({ start: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="ret-return">Return event</label>
          <input id="ret-return" list={eventList} value={form.ret} placeholder="page_view" data-testid="ret-return" autoComplete="off" onInput={(e) => set({ ret: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="ret-period">Period</label>
          <select id="ret-period" value={form.period} data-testid="ret-period" onChange={(e) => set({ period: e.currentTarget.value })}>
            {PERIODS.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="ret-periods">Periods</label>
          <input id="ret-periods" type="number" min="1" max="52" value={form.periods} data-testid="ret-periods" onInput={(e) => set({ periods: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="ret-breakdown">Breakdown</label>
          <input id="ret-breakdown" list={fieldList} value={form.breakdown} placeholder="none, or country…" data-testid="ret-breakdown" autoComplete="off" onInput={(e) => set({ breakdown: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="ret-cohort" title="all in range: each user's first start in the range; new users only: users whose first start ever is in the range">
            Users
          </label>
          <select id="ret-cohort" value={form.cohort} data-testid="ret-cohort" onChange={(e) => set({ cohort: e.currentTarget.value })}>
            <option value="in_range">all in range</option>
            <option value="first_time">new users only</option>
          </select>
        </div>
      </div>
      <fieldset>
        <legend>Only starts where</legend>
        <FilterEditor app={app} filters={form.filters} onChange={(filters) => set({ filters })} testid="ret-filters" addLabel="Add condition" />
      </fieldset>
      <ErrorText error={error} testid="retention-error" />
      <div class="row-buttons">
        <button type="submit" class="btn primary" data-testid="retention-run">
          Show retention
        </button>
      </div>
    </form>
  );
}
