import { useEffect, useState } from 'preact/hooks';
import { analytics, api, del, post, put, query } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { Link, navigate } from '../lib/router.js';
import { fmtDateTime, fmtInt, fmtMetric, fmtPct, num } from '../lib/format.js';
import { AsOf, ConfirmButton, ErrorText, Loaded, Value } from '../components/ui.jsx';
import { QueryResult, metricLabel, requestDims, requestMetrics } from '../components/QueryResult.jsx';
import { FunnelResult } from '../components/FunnelResult.jsx';
import { RetentionGrid } from '../components/RetentionGrid.jsx';

const TEMPLATES = {
  query: { metrics: ['events', 'unique_users'], group_by: ['$day'], range: '7d' },
  funnel: { steps: ['page_view', 'purchase'], range: '30d', window: '1d' },
  retention: { start_event: 'page_view', return_event: 'page_view', period: 'week', periods: 8, range: '90d' },
  live: { windows: 60 },
};

export function Dashboards({ app, id }) {
  return id ? <Dashboard key={id} app={app} id={id} /> : <DashboardList app={app} />;
}

function DashboardList({ app }) {
  const list = useApi((signal) => api(`${analytics(app)}/dashboards`, { signal }), app);
  const [name, setName] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const base = `/app/${encodeURIComponent(app)}/dashboards`;
  const create = async (e) => {
    e.preventDefault();
    if (!name.trim()) return setError('Give the dashboard a name.');
    setBusy(true);
    setError(null);
    try {
      const created = await post(`${analytics(app)}/dashboards`, { name: name.trim(), definition: { widgets: [] } });
      navigate(`${base}/${created.id}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <div class="page" data-testid="page-dashboards">
      <div class="page-head">
        <h1>Dashboards</h1>
      </div>
      <section class="panel wide" data-testid="panel-dashboards" aria-labelledby="dash-list-h">
        <h2 id="dash-list-h">Saved dashboards</h2>
        <Loaded result={list} isEmpty={(d) => !d.length} empty="No dashboards yet. Create one below, or use “Add to dashboard” in Explore, Funnels or Retention.">
          {(items) => (
            <ul class="dash-list">
              {items.map((d) => (
                <li key={d.id} data-testid="dashboard-item" data-id={d.id}>
                  <Link href={`${base}/${d.id}`} data-testid="dashboard-link">
                    {d.name}
                  </Link>{' '}
                  <span class="muted small">
                    {((d.definition && d.definition.widgets) || []).length} widgets · updated {fmtDateTime(d.updated_ms)}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </Loaded>
      </section>
      <form class="panel wide inline-form" onSubmit={create} data-testid="dashboard-create">
        <div class="field">
          <label for="dash-name">New dashboard</label>
          <input id="dash-name" value={name} maxLength={200} placeholder="name" data-testid="dashboard-name" onInput={(e) => setName(e.currentTarget.value)} />
        </div>
        <button type="submit" class="btn primary" disabled={busy} data-testid="dashboard-create-submit">
          Create
        </button>
        <ErrorText error={error} />
      </form>
    </div>
  );
}

function Dashboard({ app, id }) {
  const path = `${analytics(app)}/dashboards/${encodeURIComponent(id)}`;
  const loaded = useApi((signal) => api(path, { signal }), `${app}|${id}`);
  const [item, setItem] = useState(null);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState('');
  useEffect(() => {
    if (loaded.data) setItem(loaded.data);
  }, [loaded.data]);

  /** PUTs the dashboard with `widgets` (and `name`); the answer becomes the state. */
  const save = async (widgets, name = item.name) => {
    setSaving(true);
    setError(null);
    setStatus('Saving…');
    try {
      const saved = await put(path, { name, definition: { ...item.definition, widgets } });
      setItem(saved);
      setStatus('Saved');
    } catch (err) {
      setError(err);
      setStatus('');
    } finally {
      setSaving(false);
    }
  };

  if (!item) {
    return (
      <div class="page" data-testid="page-dashboard">
        <Loaded result={loaded}>{() => null}</Loaded>
      </div>
    );
  }
  const widgets = (item.definition && item.definition.widgets) || [];
  const move = (i, d) => {
    const next = [...widgets];
    [next[i], next[i + d]] = [next[i + d], next[i]];
    save(next);
  };
  return (
    <div class="page" data-testid="page-dashboard" data-id={item.id}>
      <div class="page-head">
        <h1 data-testid="dashboard-title">{item.name}</h1>
        <Link href={`/app/${encodeURIComponent(app)}/dashboards`} class="btn small">
          All dashboards
        </Link>
        <RenameForm name={item.name} onRename={(name) => save(widgets, name)} busy={saving} />
        <ConfirmButton
          label="Delete dashboard"
          confirm="Delete"
          testid="dashboard-delete"
          onConfirm={async () => {
            try {
              await del(path);
              navigate(`/app/${encodeURIComponent(app)}/dashboards`);
            } catch (err) {
              setError(err);
            }
          }}
        />
        <span class="ok" role="status" data-testid="dashboard-status">
          {status}
        </span>
      </div>
      <ErrorText error={error} testid="dashboard-error" />
      {widgets.length ? null : (
        <p class="muted" data-testid="dashboard-empty">
          No widgets yet: add one below, or use “Add to dashboard” in Explore, Funnels or Retention.
        </p>
      )}
      <div class="widgets">
        {widgets.map((w, i) => (
          <section class={`panel widget ${w.type === 'query' && requestDims(w.request).length ? 'wide' : ''} ${w.type === 'retention' || w.type === 'funnel' ? 'wide' : ''}`} key={`${i}-${JSON.stringify(w)}`} data-testid="widget" data-index={i} data-type={w.type} aria-labelledby={`w-${i}-h`}>
            <header class="panel-head">
              <h2 id={`w-${i}-h`} data-testid="widget-title">
                {w.title || defaultTitle(w)}
              </h2>
              <div class="panel-actions">
                <button type="button" class="btn small" aria-label={`Move ${w.title || 'widget'} up`} data-testid="widget-up" disabled={i === 0 || saving} onClick={() => move(i, -1)}>
                  ↑
                </button>
                <button type="button" class="btn small" aria-label={`Move ${w.title || 'widget'} down`} data-testid="widget-down" disabled={i === widgets.length - 1 || saving} onClick={() => move(i, 1)}>
                  ↓
                </button>
                <ConfirmButton label="Remove" confirm="Remove widget" testid="widget-remove" busy={saving} onConfirm={() => save(widgets.filter((_, j) => j !== i))} />
              </div>
            </header>
            <Widget app={app} widget={w} index={i} />
          </section>
        ))}
      </div>
      <AddWidget onAdd={(w) => save([...widgets, w])} busy={saving} />
    </div>
  );
}

function defaultTitle(w) {
  const r = w.request || {};
  if (w.type === 'query') return `${requestMetrics(r).map(metricLabel).join(', ')}${requestDims(r).length ? ` by ${requestDims(r).join(', ')}` : ''}`;
  if (w.type === 'funnel') return `Funnel: ${(r.steps || []).map((s) => (typeof s === 'string' ? s : s.event)).join(' → ')}`;
  if (w.type === 'retention') return `Retention: ${r.start_event} → ${r.return_event}`;
  return 'Live';
}

function RenameForm({ name, onRename, busy }) {
  const [open, setOpen] = useState(false);
  const [value, setValue] = useState(name);
  if (!open) {
    return (
      <button
        type="button"
        class="btn small"
        data-testid="dashboard-rename"
        onClick={() => {
          setValue(name);
          setOpen(true);
        }}
      >
        Rename
      </button>
    );
  }
  return (
    <form
      class="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (value.trim()) onRename(value.trim());
        setOpen(false);
      }}
    >
      <label class="sr-only" for="dash-rename">
        Dashboard name
      </label>
      <input id="dash-rename" value={value} maxLength={200} data-testid="dashboard-rename-input" onInput={(e) => setValue(e.currentTarget.value)} ref={(el) => el && !el.dataset.focused && ((el.dataset.focused = '1'), el.focus())} />
      <button type="submit" class="btn small primary" disabled={busy}>
        Save
      </button>
      <button type="button" class="btn small" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}

function AddWidget({ onAdd, busy }) {
  const [type, setType] = useState('query');
  const [title, setTitle] = useState('');
  const [text, setText] = useState(JSON.stringify(TEMPLATES.query, null, 2));
  const [error, setError] = useState(null);
  const submit = (e) => {
    e.preventDefault();
    let request;
    try {
      request = JSON.parse(text);
    } catch (err) {
      return setError(`The request is not valid JSON: ${err.message}`);
    }
    if (!request || typeof request !== 'object' || Array.isArray(request)) return setError('The request is a JSON object.');
    setError(null);
    onAdd({ type, request, ...(title.trim() ? { title: title.trim() } : {}) });
    setTitle('');
  };
  return (
    <form class="panel wide add-widget" onSubmit={submit} data-testid="widget-add-form" aria-labelledby="add-widget-h">
      <h2 id="add-widget-h">Add a widget</h2>
      <div class="group-row">
        <div class="field">
          <label for="w-type">Type</label>
          <select
            id="w-type"
            value={type}
            data-testid="widget-type"
            onChange={(e) => {
              const t = e.currentTarget.value;
              setType(t);
              setText(JSON.stringify(TEMPLATES[t], null, 2));
            }}
          >
            <option value="query">Query (/query body)</option>
            <option value="funnel">Funnel (/funnel body)</option>
            <option value="retention">Retention (/retention body)</option>
            <option value="live">Live (/live parameters)</option>
          </select>
        </div>
        <div class="field">
          <label for="w-title">Title (optional)</label>
          <input id="w-title" value={title} maxLength={200} data-testid="widget-title-input" onInput={(e) => setTitle(e.currentTarget.value)} />
        </div>
      </div>
      <div class="field">
        <label for="w-request">Request (JSON)</label>
        <textarea id="w-request" rows={6} spellcheck={false} value={text} data-testid="widget-request" onInput={(e) => setText(e.currentTarget.value)} />
      </div>
      <ErrorText error={error} testid="widget-add-error" />
      <button type="submit" class="btn primary" disabled={busy} data-testid="widget-add">
        Add widget
      </button>
    </form>
  );
}

/** One widget's answer, by its type. */
function Widget({ app, widget, index }) {
  const key = `${app}|${JSON.stringify(widget.request)}`;
  const base = analytics(app);
  const result = useApi((signal) => {
    const r = widget.request || {};
    if (widget.type === 'query') return query(app, r, signal);
    if (widget.type === 'funnel') return post(`${base}/funnel`, r, signal);
    if (widget.type === 'retention') return post(`${base}/retention`, r, signal);
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(r)) if (v !== null && v !== undefined) q.set(k, String(v));
    return api(`${base}/live?${q}`, { signal });
  }, key);

  useEffect(() => {
    if (widget.type !== 'live') return undefined;
    const t = setInterval(result.reload, 5000);
    return () => clearInterval(t);
  }, [widget.type, key]);

  const testid = `widget-${index}`;
  if (widget.type === 'live') {
    return (
      <Loaded result={result}>
        {(a) => (
          <div class="live-widget">
            <dl class="numbers">
              <div>
                <dt>Visitors, 5 min</dt>
                <dd>
                  <Value testid={`${testid}-active_users_5m`} value={a.active_users_5m} text={fmtInt(a.active_users_5m)} />
                </dd>
              </div>
              <div>
                <dt>Visitors, 30 min</dt>
                <dd>
                  <Value testid={`${testid}-active_users_30m`} value={a.active_users_30m} text={fmtInt(a.active_users_30m)} />
                </dd>
              </div>
              <div>
                <dt>Events ({a.windows.length} × 5 s)</dt>
                <dd>
                  <Value testid={`${testid}-total_events`} value={a.total_events} text={fmtInt(a.total_events)} />
                </dd>
              </div>
              {a.conversion ? (
                <div>
                  <dt>
                    {a.conversion.to_event} per {a.conversion.from_event}
                  </dt>
                  <dd>
                    <Value testid={`${testid}-conversion`} value={a.conversion.rate} text={fmtPct(a.conversion.rate)} />
                  </dd>
                </div>
              ) : null}
            </dl>
            <AsOf ms={a.as_of_ms} testid={`${testid}-asof`} />
          </div>
        )}
      </Loaded>
    );
  }
  if (widget.type === 'query') {
    const dims = requestDims(widget.request || {});
    return (
      <Loaded result={result} isEmpty={(d) => !d.results.length}>
        {(a) =>
          dims.length ? (
            <QueryResult answer={a} request={widget.request} testid={testid} chartHeight={200} collapseTable />
          ) : (
            <dl class="numbers">
              {requestMetrics(widget.request).map((m) => (
                <div key={m}>
                  <dt>{metricLabel(m)}</dt>
                  <dd>
                    <Value testid={`${testid}-${m}`} value={num(a.results[0]?.[m])} text={fmtMetric(m, a.results[0]?.[m])} />
                  </dd>
                </div>
              ))}
            </dl>
          )
        }
      </Loaded>
    );
  }
  if (widget.type === 'funnel') {
    return (
      <Loaded result={result} isEmpty={(d) => (d.funnel ? false : !(d.breakdown || []).length)}>
        {(a) => <FunnelResult answer={a} testid={testid} />}
      </Loaded>
    );
  }
  if (widget.type === 'retention') {
    return (
      <Loaded result={result} isEmpty={(d) => !d.cohorts.length}>
        {(a) => <RetentionGrid answer={a} testid={testid} />}
      </Loaded>
    );
  }
  return <p class="muted">Unknown widget type “{String(widget.type)}”.</p>;
}
