import { useEffect, useId, useState } from 'preact/hooks';
import { analytics, api, del, post, put } from '../lib/api.js';
import { useApi, useEventNames } from '../lib/hooks.js';
import { Link, navigate, href, useLocation, withQuery } from '../lib/router.js';
import { apiRange, rangeFromApi, readRange } from '../lib/range.js';
import { filterParam, fromApiFilter, parseFilter, toApiFilter } from '../lib/filters.js';
import { fmtDateTime } from '../lib/format.js';
import { FieldList, FilterEditor, editsToFilters, filterToEdit } from '../components/filters.jsx';
import { ConfirmButton, ErrorText, Loaded, Panel } from '../components/ui.jsx';
import { FunnelResult } from '../components/FunnelResult.jsx';
import { AddToDashboard } from '../components/AddToDashboard.jsx';

const WINDOW = /^0*(\d{1,6})([mhd])$/;
const ORDERS = [
  { id: 'relaxed', label: 'Relaxed', hint: 'other events may come between the steps' },
  { id: 'strict', label: 'Strict', hint: 'each step must be the very next event' },
  { id: 'any', label: 'Any order', hint: 'the steps in any order, within the window' },
];

/** Builder state from the URL: steps (event + filters), window, order, breakdown, exclusions (kept as JSON). */
function readFunnel(q) {
  const steps = q.getAll('step').map((event) => ({ event, filters: [] }));
  for (const text of q.getAll('sf')) {
    const i = text.indexOf('~');
    const n = Number(text.slice(0, i));
    const f = parseFilter(text.slice(i + 1));
    if (f && steps[n]) steps[n].filters.push(f);
  }
  let exclusions = null;
  try {
    exclusions = q.get('ex') ? JSON.parse(q.get('ex')) : null;
  } catch {
    exclusions = null;
  }
  return {
    steps,
    window: q.get('window') || '1d',
    order: ORDERS.some((o) => o.id === q.get('order')) ? q.get('order') : 'relaxed',
    breakdown: q.get('breakdown') || '',
    bots: q.get('bots') === '1',
    exclusions,
  };
}

/** The /funnel body of builder state. */
export function funnelBody(f, range) {
  const body = {
    steps: f.steps.map((s) => (s.filters.length ? { event: s.event, filters: s.filters.map(toApiFilter) } : s.event)),
    range: apiRange(range),
  };
  if (f.window && f.window !== '1d') body.window = f.window;
  if (f.order !== 'relaxed') body.order = f.order;
  if (f.breakdown) body.breakdown = f.breakdown;
  if (f.bots) body.include_bots = true;
  if (f.exclusions && f.exclusions.length && f.order === 'relaxed') body.exclusions = f.exclusions;
  return body;
}

/** URL keys of a saved definition. */
function paramsOf(def) {
  const steps = (def.steps || []).map((s) => (typeof s === 'string' ? { event: s, filters: [] } : { event: s.event, filters: (s.filters || []).map(fromApiFilter) }));
  return {
    step: steps.map((s) => s.event),
    sf: steps.flatMap((s, i) => s.filters.map((f) => `${i}~${filterParam(f)}`)),
    window: def.window && def.window !== '1d' ? def.window : null,
    order: def.order && def.order !== 'relaxed' ? def.order : null,
    breakdown: def.breakdown || null,
    bots: def.include_bots ? '1' : null,
    ex: def.exclusions && def.exclusions.length ? JSON.stringify(def.exclusions) : null,
    ...rangeFromApi(def.range),
  };
}

function builderToParams(b) {
  return {
    step: b.steps.map((s) => s.event.trim()),
    sf: b.steps.flatMap((s, i) => s.filters.map((f) => `${i}~${filterParam(f)}`)),
    window: b.window && b.window !== '1d' ? b.window : null,
    order: b.order !== 'relaxed' ? b.order : null,
    breakdown: b.breakdown.trim() || null,
    bots: b.bots ? '1' : null,
  };
}

export function Funnels({ app, id }) {
  const loc = useLocation();
  const range = readRange(loc.query, '30d');
  const state = readFunnel(loc.query);
  const base = `/app/${encodeURIComponent(app)}/funnels`;
  const list = useApi((signal) => api(`${analytics(app)}/funnels`, { signal }), `${app}|${id || ''}|${loc.path}`);
  const saved = useApi((signal) => api(`${analytics(app)}/funnels/${encodeURIComponent(id)}`, { signal }), id ? `${app}|${id}` : null);

  // Opening a saved funnel: its definition becomes the URL's state.
  useEffect(() => {
    if (id && saved.data && String(saved.data.id) === String(id) && !loc.query.getAll('step').length) {
      navigate(href(loc.path, withQuery(paramsOf(saved.data.definition), new URLSearchParams())), { replace: true });
    }
  }, [saved.data, id]);

  const ready = state.steps.length >= 2 && !range.error;
  const body = ready ? funnelBody(state, range) : null;
  const result = useApi((signal) => post(`${analytics(app)}/funnel`, funnelBody(readFunnel(loc.query), range), signal), ready ? JSON.stringify([app, loc.search]) : null);

  return (
    <div class="page funnels" data-testid="page-funnels">
      <div class="page-head">
        <h1>{id && saved.data ? `Funnel: ${saved.data.name}` : 'Funnels'}</h1>
        {id ? (
          <Link href={base} class="btn small" data-testid="funnel-new">
            New funnel
          </Link>
        ) : null}
      </div>
      <div class="split">
        <aside class="panel saved-list" data-testid="panel-saved-funnels" aria-labelledby="saved-funnels-h">
          <h2 id="saved-funnels-h">Saved funnels</h2>
          <Loaded result={list} isEmpty={(d) => !d.length} empty="No saved funnels yet.">
            {(items) => (
              <ul>
                {items.map((f) => (
                  <li key={f.id} data-testid="saved-funnel" data-id={f.id}>
                    <Link href={`${base}/${f.id}`} aria-current={String(f.id) === String(id) ? 'page' : undefined}>
                      {f.name}
                    </Link>
                    <small class="muted">updated {fmtDateTime(f.updated_ms)}</small>
                  </li>
                ))}
              </ul>
            )}
          </Loaded>
        </aside>
        <div class="main-col">
          {id && saved.error ? (
            <Loaded result={saved}>{() => null}</Loaded>
          ) : (
            <Builder key={loc.search} app={app} state={state} />
          )}
          {range.error ? <ErrorText error={range.error} /> : null}
          {ready ? (
            <Panel
              id="funnel-result"
              title="Conversion"
              wide
              actions={
                <>
                  <AddToDashboard app={app} widget={{ type: 'funnel', request: body, title: saved.data ? saved.data.name : '' }} />
                </>
              }
            >
              <Loaded result={result} isEmpty={(d) => (d.funnel ? false : !(d.breakdown || []).length)} empty="Nobody started this funnel in the range.">
                {(answer) => <FunnelResult answer={answer} testid="funnel" />}
              </Loaded>
            </Panel>
          ) : (
            <p class="muted" data-testid="funnel-hint">
              Give at least two steps and press “Show funnel”.
            </p>
          )}
          {ready ? <SaveFunnel app={app} id={id} saved={saved.data} body={body} onSaved={() => {
            list.reload();
            saved.reload();
          }} /> : null}
        </div>
      </div>
    </div>
  );
}

function Builder({ app, state }) {
  const loc = useLocation();
  const [steps, setSteps] = useState(() =>
    state.steps.length ? state.steps.map((s) => ({ event: s.event, filters: s.filters.map(filterToEdit) })) : [{ event: '', filters: [] }, { event: '', filters: [] }],
  );
  const [opts, setOpts] = useState({ window: state.window, order: state.order, breakdown: state.breakdown, bots: state.bots });
  const [error, setError] = useState(null);
  const events = useEventNames(app);
  const eventList = useId();
  const fieldList = useId();

  const setStep = (i, patch) => setSteps(steps.map((s, j) => (j === i ? { ...s, ...patch } : s)));
  const move = (i, d) => {
    const next = [...steps];
    [next[i], next[i + d]] = [next[i + d], next[i]];
    setSteps(next);
  };

  const submit = (e) => {
    e.preventDefault();
    const out = [];
    for (const [i, s] of steps.entries()) {
      if (!s.event.trim()) return setError(`Step ${i + 1} needs an event name.`);
      const parsed = editsToFilters(s.filters);
      if (parsed.error) return setError(`Step ${i + 1}: ${parsed.error}`);
      out.push({ event: s.event.trim(), filters: parsed.filters });
    }
    if (out.length < 2) return setError('A funnel has at least two steps.');
    if (!WINDOW.test(opts.window.trim())) return setError('The window is a number and m, h or d, e.g. 30m, 12h or 7d (at most 90d).');
    setError(null);
    const params = builderToParams({ ...opts, steps: out });
    navigate(href(loc.path, withQuery(params, loc.query)), { keepScroll: true });
  };

  return (
    <form class="panel wide builder" onSubmit={submit} data-testid="funnel-builder" aria-label="Funnel steps">
      <datalist id={eventList}>
        {events.map((v) => (
          <option key={v.value} value={v.value} />
        ))}
      </datalist>
      <FieldList app={app} id={fieldList} />
      <ol class="steps">
        {steps.map((s, i) => (
          <li key={i} class="step" data-testid="builder-step">
            <div class="step-row">
              <label for={`step-${i}`}>Step {i + 1}</label>
              <input
                id={`step-${i}`}
                list={eventList}
                value={s.event}
                placeholder="event name, e.g. page_view"
                data-testid="step-event"
                autoComplete="off"
                onInput={(e) => setStep(i, { event: e.currentTarget.value })}
              />
              <button type="button" class="btn small" aria-label={`Move step ${i + 1} up`} data-testid="step-up" disabled={i === 0} onClick={() => move(i, -1)}>
                ↑
              </button>
              <button type="button" class="btn small" aria-label={`Move step ${i + 1} down`} data-testid="step-down" disabled={i === steps.length - 1} onClick={() => move(i, 1)}>
                ↓
              </button>
              <button type="button" class="btn small" aria-label={`Remove step ${i + 1}`} data-testid="step-remove" disabled={steps.length <= 2} onClick={() => setSteps(steps.filter((_, j) => j !== i))}>
                Remove
              </button>
            </div>
            <FilterEditor app={app} filters={s.filters} onChange={(filters) => setStep(i, { filters })} max={10} testid="step-filters" addLabel={`Filter step ${i + 1}`} />
          </li>
        ))}
      </ol>
      {steps.length < 8 ? (
        <button type="button" class="btn small" data-testid="step-add" onClick={() => setSteps([...steps, { event: '', filters: [] }])}>
          + Add step
        </button>
      ) : null}
      <div class="group-row">
        <div class="field">
          <label for="f-window">Window</label>
          <input id="f-window" value={opts.window} data-testid="funnel-window" placeholder="1d" aria-describedby="f-window-hint" onInput={(e) => setOpts({ ...opts, window: e.currentTarget.value })} />
          <small class="hint" id="f-window-hint">
            30m, 12h, 7d… (≤ 90d)
          </small>
        </div>
        <div class="field">
          <label for="f-order">Order</label>
          <select id="f-order" value={opts.order} data-testid="funnel-order" aria-describedby="f-order-hint" onChange={(e) => setOpts({ ...opts, order: e.currentTarget.value })}>
            {ORDERS.map((o) => (
              <option key={o.id} value={o.id}>
                {o.label}
              </option>
            ))}
          </select>
          <small class="hint" id="f-order-hint">
            {(ORDERS.find((o) => o.id === opts.order) || ORDERS[0]).hint}
          </small>
        </div>
        <div class="field">
          <label for="f-breakdown">Breakdown</label>
          <input id="f-breakdown" list={fieldList} value={opts.breakdown} placeholder="none" data-testid="funnel-breakdown" aria-describedby="f-breakdown-hint" autoComplete="off" onInput={(e) => setOpts({ ...opts, breakdown: e.currentTarget.value })} />
          <small class="hint" id="f-breakdown-hint">
            a field (country…) or day, week…
          </small>
        </div>
        <label class="check">
          <input type="checkbox" checked={opts.bots} onChange={(e) => setOpts({ ...opts, bots: e.currentTarget.checked })} /> Include bots
        </label>
      </div>
      {state.exclusions && state.exclusions.length ? (
        <p class="muted small" data-testid="funnel-exclusions">
          This funnel has {state.exclusions.length} exclusion{state.exclusions.length > 1 ? 's' : ''} ({state.exclusions.map((x) => x.event).join(', ')}); they are kept but not edited here.
        </p>
      ) : null}
      <ErrorText error={error} testid="funnel-error" />
      <div class="row-buttons">
        <button type="submit" class="btn primary" data-testid="funnel-run">
          Show funnel
        </button>
      </div>
    </form>
  );
}

function SaveFunnel({ app, id, saved, body, onSaved }) {
  const [name, setName] = useState(saved ? saved.name : '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState('');
  useEffect(() => setName(saved ? saved.name : ''), [saved && saved.id]);
  const base = `/app/${encodeURIComponent(app)}/funnels`;
  const loc = useLocation();

  const save = async (asNew) => {
    if (!name.trim()) return setError('Give the funnel a name.');
    setBusy(true);
    setError(null);
    try {
      const payload = { name: name.trim(), definition: body };
      if (id && !asNew) {
        await put(`${analytics(app)}/funnels/${encodeURIComponent(id)}`, payload);
        setStatus('Saved.');
        onSaved();
      } else {
        const created = await post(`${analytics(app)}/funnels`, payload);
        setStatus('Saved.');
        navigate(`${base}/${created.id}${loc.search}`, { replace: !id });
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    setBusy(true);
    try {
      await del(`${analytics(app)}/funnels/${encodeURIComponent(id)}`);
      navigate(base);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <form
      class="panel wide save-row"
      data-testid="funnel-save-form"
      onSubmit={(e) => {
        e.preventDefault();
        save(false);
      }}
    >
      <div class="field">
        <label for="funnel-name">Name</label>
        <input id="funnel-name" value={name} maxLength={200} data-testid="funnel-name" onInput={(e) => setName(e.currentTarget.value)} placeholder="e.g. Checkout" />
      </div>
      <div class="row-buttons">
        <button type="submit" class="btn primary" disabled={busy} data-testid="funnel-save">
          {id ? 'Save changes' : 'Save funnel'}
        </button>
        {id ? (
          <button type="button" class="btn" disabled={busy} data-testid="funnel-save-new" onClick={() => save(true)}>
            Save as new
          </button>
        ) : null}
        {id ? <ConfirmButton label="Delete" confirm="Delete funnel" testid="funnel-delete" onConfirm={remove} busy={busy} /> : null}
        <span role="status" class="ok" data-testid="funnel-save-status">
          {status}
        </span>
      </div>
      <ErrorText error={error} testid="funnel-save-error" />
    </form>
  );
}
