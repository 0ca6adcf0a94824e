import { useState } from 'preact/hooks';
import { analytics, api, post, put } from '../lib/api.js';
import { Link } from '../lib/router.js';
import { ErrorText } from './ui.jsx';

/** "Add to dashboard": appends a widget to a saved dashboard (GET, then PUT) or saves a new one. */
export function AddToDashboard({ app, widget, disabled }) {
  const [open, setOpen] = useState(false);
  const [list, setList] = useState(null);
  const [target, setTarget] = useState('');
  const [name, setName] = useState('');
  const [title, setTitle] = useState(widget.title || '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);

  const start = async () => {
    setOpen(true);
    setDone(null);
    setError(null);
    setTitle(widget.title || '');
    try {
      const items = await api(`${analytics(app)}/dashboards`);
      setList(items);
      setTarget(items.length ? String(items[0].id) : 'new');
    } catch (err) {
      setError(err);
      setList([]);
      setTarget('new');
    }
  };

  const add = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const w = { type: widget.type, request: widget.request, ...(title.trim() ? { title: title.trim() } : {}) };
    try {
      let saved;
      if (target === 'new') {
        saved = await post(`${analytics(app)}/dashboards`, { name: name.trim() || 'New dashboard', definition: { widgets: [w] } });
      } else {
        const current = await api(`${analytics(app)}/dashboards/${target}`);
        const widgets = [...((current.definition && current.definition.widgets) || []), w];
        saved = await put(`${analytics(app)}/dashboards/${target}`, { name: current.name, definition: { ...current.definition, widgets } });
      }
      setDone(saved);
      setOpen(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (!open) {
    return (
      <span class="add-dash">
        <button type="button" class="btn" data-testid="add-to-dashboard" onClick={start} disabled={disabled}>
          Add to dashboard
        </button>
        {done ? (
          <span class="ok" role="status" data-testid="add-to-dashboard-done">
            Added to{' '}
            <Link href={`/app/${encodeURIComponent(app)}/dashboards/${done.id}`} data-testid="add-to-dashboard-link">
              {done.name}
            </Link>
          </span>
        ) : null}
      </span>
    );
  }
  return (
    <form class="add-dash-form card" onSubmit={add} data-testid="add-to-dashboard-form">
      <div class="field">
        <label for="atd-target">Dashboard</label>
        <select id="atd-target" value={target} data-testid="add-to-dashboard-target" onChange={(e) => setTarget(e.currentTarget.value)} disabled={!list}>
          {(list || []).map((d) => (
            <option key={d.id} value={String(d.id)}>
              {d.name}
            </option>
          ))}
          <option value="new">New dashboard…</option>
        </select>
      </div>
      {target === 'new' ? (
        <div class="field">
          <label for="atd-name">New dashboard's name</label>
          <input id="atd-name" value={name} required maxLength={200} data-testid="add-to-dashboard-name" onInput={(e) => setName(e.currentTarget.value)} />
        </div>
      ) : null}
      <div class="field">
        <label for="atd-title">Widget title (optional)</label>
        <input id="atd-title" value={title} maxLength={200} data-testid="add-to-dashboard-title" onInput={(e) => setTitle(e.currentTarget.value)} />
      </div>
      <ErrorText error={error} />
      <div class="row-buttons">
        <button type="submit" class="btn primary" disabled={busy || !list} data-testid="add-to-dashboard-save">
          {busy ? 'Adding…' : 'Add'}
        </button>
        <button type="button" class="btn" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
