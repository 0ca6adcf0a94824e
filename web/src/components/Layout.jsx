import { useEffect, useState } from 'preact/hooks';
import { Link, navigate, setQuery, withQuery, href, useLocation } from '../lib/router.js';
import { RANGES, readRange, setRangeZone, todayText } from '../lib/range.js';
import { api } from '../lib/api.js';
import { store } from '../lib/store.js';

export const PAGES = [
  { id: 'realtime', label: 'Realtime' },
  { id: 'overview', label: 'Overview', range: true, filters: true },
  { id: 'explore', label: 'Explore', range: true, filters: true },
  { id: 'funnels', label: 'Funnels', range: true },
  { id: 'retention', label: 'Retention', range: true },
  { id: 'dashboards', label: 'Dashboards' },
  { id: 'settings', label: 'Settings', admin: true },
];

/** Default range of each page. */
export const DEFAULT_RANGE = { overview: '7d', explore: '7d', funnels: '30d', retention: '90d' };

/** A tab's link: keeps the range (and filters between Overview and Explore). */
function tabHref(app, page, current, query) {
  const path = `/app/${encodeURIComponent(app)}/${page.id}`;
  if (!page.range) return path;
  const keep = {};
  const cur = PAGES.find((p) => p.id === current);
  if (cur && cur.range) {
    for (const k of ['range', 'from', 'to']) if (query.get(k)) keep[k] = query.get(k);
  }
  if (page.filters && cur && cur.filters) keep.f = query.getAll('f');
  return href(path, withQuery(keep, new URLSearchParams()));
}

export function RangePicker({ page }) {
  const loc = useLocation();
  const range = readRange(loc.query, DEFAULT_RANGE[page] || '7d');
  const [from, setFrom] = useState(range.from || todayText(-6));
  const [to, setTo] = useState(range.to || todayText());
  useEffect(() => {
    if (range.id === 'custom') {
      setFrom(range.from || todayText(-6));
      setTo(range.to || todayText());
    }
  }, [range.from, range.to]);
  const choose = (id) => {
    if (id === 'custom') setQuery({ range: 'custom', from, to });
    else setQuery({ range: id, from: null, to: null });
  };
  return (
    <div class="range-picker" data-testid="range-picker">
      <label class="sr-only" for="range-select">
        Date range
      </label>
      <select id="range-select" data-testid="range-select" value={range.id} onChange={(e) => choose(e.currentTarget.value)}>
        {RANGES.map((r) => (
          <option key={r.id} value={r.id}>
            {r.label}
          </option>
        ))}
      </select>
      {range.id === 'custom' ? (
        <form
          class="range-custom"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ range: 'custom', from, to });
          }}
        >
          <label class="sr-only" for="range-from">
            From
          </label>
          <input id="range-from" type="date" data-testid="range-from" value={from} max={to} onInput={(e) => setFrom(e.currentTarget.value)} />
          <span aria-hidden="true">–</span>
          <label class="sr-only" for="range-to">
            To (inclusive)
          </label>
          <input id="range-to" type="date" data-testid="range-to" value={to} min={from} onInput={(e) => setTo(e.currentTarget.value)} />
          <button type="submit" class="btn small" data-testid="range-apply">
            Apply
          </button>
        </form>
      ) : null}
    </div>
  );
}

export function Layout({ me, app, page, children }) {
  const loc = useLocation();
  const membership = me.apps.find((a) => a.app_id === app) || {};
  const role = membership.role;
  // "Today" and custom dates are days of the app's calendar.
  setRangeZone(membership.time_zone);
  const pageInfo = PAGES.find((p) => p.id === page);
  const logout = async () => {
    try {
      await api('/api/v1/auth/logout', { method: 'POST' });
    } catch {
      /* signed out either way */
    }
    navigate('/login');
    store.setMe(null);
  };
  const known = me.apps.some((a) => a.app_id === app);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <div class="topbar-row">
          <Link class="brand" href="/" aria-label="Tally home">
            <span aria-hidden="true" class="brand-mark">▮▮▯</span> Tally
          </Link>
          <label class="sr-only" for="app-switcher">
            App
          </label>
          <select
            id="app-switcher"
            class="app-switcher"
            data-testid="app-switcher"
            value={app}
            onChange={(e) => navigate(`/app/${encodeURIComponent(e.currentTarget.value)}/${page === 'settings' && (me.apps.find((a) => a.app_id === e.currentTarget.value) || {}).role !== 'admin' ? 'overview' : page}`)}
          >
            {known ? null : <option value={app}>{app}</option>}
            {me.apps.map((a) => (
              <option key={a.app_id} value={a.app_id}>
                {a.name && a.name !== a.app_id ? `${a.name} (${a.app_id})` : a.app_id}
              </option>
            ))}
          </select>
          <div class="user">
            <span class="user-email" data-testid="user-email">
              {me.user.email}
            </span>
            <button type="button" class="btn small" data-testid="logout" onClick={logout}>
              Log out
            </button>
          </div>
        </div>
        <div class="topbar-row second">
          <nav aria-label="Pages" class="nav">
            <ul>
              {PAGES.filter((p) => !p.admin || role === 'admin').map((p) => (
                <li key={p.id}>
                  <Link href={tabHref(app, p, page, loc.query)} class={p.id === page ? 'on' : ''} aria-current={p.id === page ? 'page' : undefined} data-testid={`tab-${p.id}`}>
                    {p.label}
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
          {pageInfo && pageInfo.range ? <RangePicker page={page} /> : null}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
