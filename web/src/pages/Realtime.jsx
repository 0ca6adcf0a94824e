import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { analytics, api, describeError, query } from '../lib/api.js';
import { useApi, useEventNames, useTick } from '../lib/hooks.js';
import { setQuery, useLocation } from '../lib/router.js';
import { fmtInt, fmtNum, fmtPct, num } from '../lib/format.js';
import { Chart, COLORS } from '../components/Chart.jsx';
import { AsOf, Loaded, Panel, Value } from '../components/ui.jsx';

const WINDOW_MS = 5000;
const KEEP = 360; // 30 minutes of 5-s windows
const CHART_WINDOWS = 60; // the chart: the last 5 minutes
const POLL_LIVE_MS = 10_000; // active users (not in the stream): re-read /live
const POLL_PAGES_MS = 5_000; // pages are not in the stream: /query every window

/** Windows by start, the newest KEEP only. */
function upsert(map, w) {
  const next = new Map(map);
  next.set(w.start_ms, w);
  const newest = Math.max(...next.keys());
  for (const k of next.keys()) if (k <= newest - KEEP * WINDOW_MS) next.delete(k);
  return next;
}

/** Every window start of the last `n` windows ending with the newest known (missing ones are empty). */
function lastWindows(map, n) {
  if (!map.size) return [];
  const newest = Math.max(...map.keys());
  const out = [];
  for (let i = n - 1; i >= 0; i--) {
    const start = newest - i * WINDOW_MS;
    out.push(map.get(start) || { start_ms: start, events: 0, unique_users: 0, active_sessions: 0, by_name: {}, state: 'final' });
  }
  return out;
}

function liveUrl(app, from, to) {
  const q = new URLSearchParams({ windows: String(KEEP) });
  if (from && to) {
    q.set('from_event', from);
    q.set('to_event', to);
  }
  return `${analytics(app)}/live?${q}`;
}

export function Realtime({ app }) {
  const loc = useLocation();
  const from = loc.query.get('from_event') || '';
  const to = loc.query.get('to_event') || '';
  const [windows, setWindows] = useState(() => new Map());
  const [live, setLive] = useState(null); // the last /live answer
  const [liveError, setLiveError] = useState(null);
  const [status, setStatus] = useState('connecting'); // connecting | live | reconnecting
  const [streamAt, setStreamAt] = useState(0);
  const [streamNote, setStreamNote] = useState('');
  const [retryIn, setRetryIn] = useState(0);
  useTick(1000);

  useEffect(() => {
    let closed = false;
    let es = null;
    let attempt = 0;
    let retryTimer = null;
    let pollTimer = null;

    const readLive = async () => {
      try {
        const answer = await api(liveUrl(app, from, to));
        if (closed) return true;
        setLive(answer);
        setLiveError(null);
        // The server's windows are authoritative; keep newer stream windows.
        setWindows((old) => {
          let next = new Map();
          for (const w of answer.windows) next.set(w.start_ms, w);
          for (const [k, w] of old) if (!next.has(k) && k > answer.windows[answer.windows.length - 1]?.start_ms) next = upsert(next, w);
          return next;
        });
        return true;
      } catch (err) {
        if (!closed) setLiveError(err);
        return false;
      }
    };

    const schedule = () => {
      if (closed) return;
      attempt += 1;
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt - 1, 5));
      setStatus('reconnecting');
      setRetryIn(Date.now() + delay);
      retryTimer = setTimeout(connect, delay);
    };

    const connect = async () => {
      if (closed) return;
      // Catch up on what was missed (and on a 401/403) before listening again.
      const ok = await readLive();
      if (closed) return;
      if (!ok) {
        schedule();
        return;
      }
      es = new EventSource(`${analytics(app)}/live/stream`);
      es.addEventListener('open', () => {
        attempt = 0;
        setStatus('live');
        setStreamNote('');
      });
      const onWindow = (e) => {
        let w;
        try {
          w = JSON.parse(e.data);
        } catch {
          return;
        }
        setWindows((old) => upsert(old, w));
        setStreamAt(Date.now());
        setStatus('live');
      };
      es.addEventListener('partial', onWindow);
      es.addEventListener('window', onWindow);
      es.addEventListener('error', (e) => {
        if (e.data) {
          // The server's own `error` event: Redis unreadable for a moment.
          setStreamNote(`The live store did not answer (${e.data}); retrying.`);
          return;
        }
        es.close();
        es = null;
        schedule();
      });
    };

    setWindows(new Map());
    setLive(null);
    setStatus('connecting');
    connect();
    pollTimer = setInterval(readLive, POLL_LIVE_MS);

    return () => {
      closed = true;
      if (es) es.close();
      clearTimeout(retryTimer);
      clearInterval(pollTimer);
    };
  }, [app, from, to]);

  const all = useMemo(() => lastWindows(windows, KEEP), [windows]);
  const recent = all.slice(-CHART_WINDOWS);
  const totals = useMemo(() => {
    const byName = {};
    let events = 0;
    for (const w of all) {
      events += w.events;
      for (const [n, c] of Object.entries(w.by_name || {})) byName[n] = (byName[n] || 0) + c;
    }
    const names = Object.entries(byName).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return { events, names, byName };
  }, [all]);
  const lastMinute = all.slice(-12).reduce((s, w) => s + w.events, 0);
  const open = all.length ? all[all.length - 1] : null;
  const asOf = Math.max(streamAt, live ? live.as_of_ms : 0);

  const conv = from && to ? { from: totals.byName[from] || 0, to: totals.byName[to] || 0 } : null;
  if (conv) conv.rate = conv.from > 0 ? conv.to / conv.from : null;

  const chartData = useMemo(() => [recent.map((w) => w.start_ms / 1000), recent.map((w) => w.events)], [windows]);

  const pages = useApi(
    (signal) => {
      // 5-s aligned, so that every tab open on this app shares the service's answer cache
      const to = Math.ceil(Date.now() / WINDOW_MS) * WINDOW_MS;
      return query(app, { metrics: ['unique_users', 'events'], group_by: ['$url_path'], filters: [{ property: '$name', op: 'eq', value: 'page_view' }], range: { from: to - 30 * 60_000, to }, limit: 10 }, signal);
    },
    `${app}`,
  );
  useEffect(() => {
    const t = setInterval(() => {
      if (!document.hidden) pages.reload();
    }, POLL_PAGES_MS);
    return () => clearInterval(t);
  }, [app]);

  const statusText =
    status === 'live' ? 'Live' : status === 'connecting' ? 'Connecting…' : `Reconnecting${retryIn > Date.now() ? ` in ${Math.ceil((retryIn - Date.now()) / 1000)} s` : '…'}`;

  return (
    <div class="page" data-testid="page-realtime">
      <div class="page-head">
        <h1>Realtime</h1>
        <div class="live-status">
          <span class={`dot ${status}`} aria-hidden="true" />
          <span data-testid="stream-status" data-value={status} role="status">
            {statusText}
          </span>
          <AsOf ms={asOf} testid="asof" />
        </div>
      </div>
      {streamNote ? (
        <p class="panel-note" role="status" data-testid="stream-note">
          {streamNote}
        </p>
      ) : null}
      {liveError && !live ? (
        <div class="state error" role="alert" data-testid="error">
          <p>{describeError(liveError)}</p>
          <p class="muted">Retrying automatically.</p>
        </div>
      ) : null}

      <section class="kpis" data-testid="panel-live-kpis" aria-label="Live numbers">
        <div class="kpi">
          <span class="kpi-label">Visitors, last 5 min</span>
          <Value testid="live-visitors-5m" class="kpi-value" value={live ? live.active_users_5m : null} text={live ? fmtInt(live.active_users_5m) : '…'} />
          <span class="kpi-sub">{live ? <AsOf ms={live.as_of_ms} testid="live-visitors-asof" /> : null}</span>
        </div>
        <div class="kpi">
          <span class="kpi-label">Visitors, last 30 min</span>
          <Value testid="live-visitors-30m" class="kpi-value" value={live ? live.active_users_30m : null} text={live ? fmtInt(live.active_users_30m) : '…'} />
          <span class="kpi-sub">{live ? <AsOf ms={live.as_of_ms} testid="live-visitors-30m-asof" /> : null}</span>
        </div>
        <div class="kpi">
          <span class="kpi-label">Events, last minute</span>
          <Value testid="live-events-1m" class="kpi-value" value={open ? lastMinute : null} text={open ? fmtInt(lastMinute) : '…'} />
          <span class="kpi-sub">
            <AsOf ms={asOf} testid="live-events-asof" />
          </span>
        </div>
        <div class="kpi">
          <span class="kpi-label">Events, last 30 min</span>
          <Value testid="live-events-30m" class="kpi-value" value={open ? totals.events : null} text={open ? fmtInt(totals.events) : '…'} />
          <span class="kpi-sub">this 5-s window: <Value testid="live-open-window" value={open ? open.events : null} text={open ? fmtInt(open.events) : '–'} /></span>
        </div>
      </section>

      <Panel id="live-chart" title="Events per 5 seconds, last 5 minutes" wide actions={<AsOf ms={asOf} testid="live-chart-asof" />}>
        {open ? (
          <Chart
            testid="chart-live"
            label={`Events per 5-second window over the last 5 minutes; ${open.events} in the current window`}
            data={chartData}
            tz={Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'}
            height={200}
            series={[{ label: 'Events', color: COLORS[0], bars: true, kind: 'count' }]}
          />
        ) : (
          <div class="state loading" data-testid="loading">
            <span class="spinner" aria-hidden="true" /> Waiting for the first numbers…
          </div>
        )}
      </Panel>

      <div class="grid2">
        <Panel id="live-events" title="Top events, last 30 minutes" actions={<AsOf ms={asOf} testid="live-events-table-asof" />}>
          {!open ? (
            <div class="state loading" data-testid="loading">
              Loading…
            </div>
          ) : totals.names.length ? (
            <div class="table-scroll">
              <table class="toplist" data-testid="table-live-events">
                <thead>
                  <tr>
                    <th scope="col">Event</th>
                    <th scope="col" class="num">
                      Events
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {totals.names.slice(0, 10).map(([name, count]) => (
                    <tr key={name} data-testid="row-live-events" data-key={name}>
                      <td class="bar-cell">
                        <span class="bar" style={{ width: `${(count / totals.names[0][1]) * 100}%` }} aria-hidden="true" />
                        <span class="row-label">{name}</span>
                      </td>
                      <td class="num">
                        <Value testid="cell-events" value={count} text={fmtNum(count)} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <div class="state empty" data-testid="empty">
              No events in the last 30 minutes.
            </div>
          )}
        </Panel>

        <Panel id="live-pages" title="Top pages, last 30 minutes" actions={pages.at ? <AsOf ms={pages.at} testid="live-pages-asof" /> : null}>
          <Loaded result={pages} isEmpty={(d) => !d.results.length} empty="No page views in the last 30 minutes.">
            {(answer) => (
              <div class="table-scroll">
                <table class="toplist" data-testid="table-live-pages">
                  <thead>
                    <tr>
                      <th scope="col">Page</th>
                      <th scope="col" class="num">
                        Visitors
                      </th>
                      <th scope="col" class="num">
                        Views
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {answer.results.map((r) => (
                      <tr key={r.$url_path} data-testid="row-live-pages" data-key={r.$url_path}>
                        <td class="bar-cell">
                          <span class="bar" style={{ width: `${((num(r.unique_users) || 0) / Math.max(num(answer.results[0].unique_users) || 1, 1)) * 100}%` }} aria-hidden="true" />
                          <span class="row-label">{r.$url_path || '(none)'}</span>
                        </td>
                        <td class="num">
                          <Value testid="cell-unique_users" value={num(r.unique_users)} text={fmtNum(r.unique_users)} />
                        </td>
                        <td class="num">
                          <Value testid="cell-events" value={num(r.events)} text={fmtNum(r.events)} />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Loaded>
        </Panel>

        <ConversionPanel app={app} from={from} to={to} conv={conv} asOf={asOf} />
      </div>
    </div>
  );
}

function ConversionPanel({ app, from, to, conv, asOf }) {
  const names = useEventNames(app);
  const [a, setA] = useState(from);
  const [b, setB] = useState(to);
  const ref = useRef(null);
  useEffect(() => {
    setA(from);
    setB(to);
  }, [from, to]);
  return (
    <Panel id="live-conversion" title="Conversion, last 30 minutes" actions={conv ? <AsOf ms={asOf} testid="live-conversion-asof" /> : null}>
      <form
        class="inline-form"
        ref={ref}
        onSubmit={(e) => {
          e.preventDefault();
          if (a.trim() && b.trim()) setQuery({ from_event: a.trim(), to_event: b.trim() });
          else setQuery({ from_event: null, to_event: null });
        }}
      >
        <datalist id="live-event-names">
          {names.map((n) => (
            <option key={n.value} value={n.value} />
          ))}
        </datalist>
        <div class="field">
          <label for="conv-from">From event</label>
          <input id="conv-from" list="live-event-names" value={a} placeholder="page_view" data-testid="conv-from" onInput={(e) => setA(e.currentTarget.value)} autoComplete="off" />
        </div>
        <div class="field">
          <label for="conv-to">To event</label>
          <input id="conv-to" list="live-event-names" value={b} placeholder="purchase" data-testid="conv-to" onInput={(e) => setB(e.currentTarget.value)} autoComplete="off" />
        </div>
        <button type="submit" class="btn" data-testid="conv-apply">
          Show
        </button>
      </form>
      {conv ? (
        <div class="conversion" data-testid="live-conversion">
          <Value testid="live-conversion-rate" class="big" value={conv.rate} text={fmtPct(conv.rate)} />
          <p>
            <Value testid="live-conversion-to" value={conv.to} text={fmtInt(conv.to)} /> × <code>{to}</code> per <Value testid="live-conversion-from" value={conv.from} text={fmtInt(conv.from)} /> ×{' '}
            <code>{from}</code>
          </p>
          <p class="muted small">Events named “{to}” per event named “{from}” over the last 30 minutes (as /live computes it), updated with every window.</p>
        </div>
      ) : (
        <p class="muted">Pick two events to see how many of the second there are per one of the first.</p>
      )}
    </Panel>
  );
}
