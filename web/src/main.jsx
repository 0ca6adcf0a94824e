import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './styles.css';
import { api, describeError } from './lib/api.js';
import { store, useStore } from './lib/store.js';
import { Link, navigate, useLocation } from './lib/router.js';
import { Layout, PAGES } from './components/Layout.jsx';
import { Login } from './pages/Login.jsx';
import { Forbidden } from './pages/Forbidden.jsx';
import { Realtime } from './pages/Realtime.jsx';
import { Overview } from './pages/Overview.jsx';
import { Explore } from './pages/Explore.jsx';
import { Funnels } from './pages/Funnels.jsx';
import { Retention } from './pages/Retention.jsx';
import { Dashboards } from './pages/Dashboards.jsx';
import { Settings } from './pages/Settings.jsx';

const VIEWS = {
  realtime: Realtime,
  overview: Overview,
  explore: Explore,
  funnels: Funnels,
  retention: Retention,
  dashboards: Dashboards,
  settings: Settings,
};

function Splash({ children }) {
  return (
    <main id="main" class="splash" data-testid="splash">
      {children}
    </main>
  );
}

function App() {
  const loc = useLocation();
  const { me, forbidden } = useStore();
  const [bootError, setBootError] = useState(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    setBootError(null);
    // The login page does not need to know (and a signed-out /auth/me is a 401 in the console).
    if (loc.path === '/login' && attempt === 0) {
      if (store.get().me === 'loading') store.setMe(null);
      return undefined;
    }
    api('/api/v1/auth/me')
      .then((m) => live && store.setMe(m))
      .catch((err) => {
        if (!live) return;
        if (err.status === 401) store.setMe(null);
        else setBootError(err);
      });
    return () => {
      live = false;
    };
  }, [attempt]);

  // Signed out anywhere but /login: go there, and come back after.
  useEffect(() => {
    if (me === null && loc.path !== '/login') {
      navigate(`/login?next=${encodeURIComponent(loc.href)}`, { replace: true });
    }
  }, [me, loc.href]);

  const parts = loc.path.split('/').filter(Boolean).map(decodeURIComponent);
  const app = parts[0] === 'app' ? parts[1] : null;
  const page = parts[0] === 'app' ? parts[2] || 'overview' : null;

  useEffect(() => {
    const label = PAGES.find((p) => p.id === page);
    document.title = loc.path === '/login' ? 'Sign in · Tally' : label && app ? `${label.label} · ${app} · Tally` : 'Tally';
  }, [loc.path]);

  // "/" and "/app/x": to the first app's overview.
  useEffect(() => {
    if (me && me !== 'loading' && loc.path === '/' && me.apps.length) {
      navigate(`/app/${encodeURIComponent(me.apps[0].app_id)}/overview`, { replace: true });
    }
    if (me && me !== 'loading' && parts[0] === 'app' && app && !parts[2]) {
      navigate(`/app/${encodeURIComponent(app)}/overview${loc.search}`, { replace: true });
    }
  }, [me, loc.path]);

  if (bootError) {
    return (
      <Splash>
        <div class="card narrow" role="alert" data-testid="boot-error">
          <h1>Tally is not answering</h1>
          <p>{describeError(bootError)}</p>
          <button type="button" class="btn primary" data-testid="retry" onClick={() => setAttempt((n) => n + 1)}>
            Retry
          </button>
        </div>
      </Splash>
    );
  }

  if (loc.path === '/login') {
    return <Login me={me} />;
  }
  if (me === 'loading' || me === null) {
    return (
      <Splash>
        <p class="state loading" data-testid="loading">
          <span class="spinner" aria-hidden="true" /> Loading…
        </p>
      </Splash>
    );
  }
  if (loc.path === '/') {
    if (!me.apps.length) {
      return (
        <Splash>
          <div class="card narrow" data-testid="no-apps">
            <h1>No apps yet</h1>
            <p>
              Your account ({me.user.email}) is not a member of any app. Ask an admin to add you, or create one with{' '}
              <code>tally-admin apps create</code>.
            </p>
          </div>
        </Splash>
      );
    }
    return <Splash>Loading…</Splash>;
  }
  const View = VIEWS[page];
  if (parts[0] !== 'app' || !app || !View || parts.length > 4) {
    return (
      <Splash>
        <div class="card narrow" data-testid="not-found">
          <h1>Page not found</h1>
          <p>
            There is nothing at <code>{loc.path}</code>. <Link href="/">Go to your dashboard</Link>.
          </p>
        </div>
      </Splash>
    );
  }
  const role = (me.apps.find((a) => a.app_id === app) || {}).role;
  const refused = !role || (forbidden && forbidden.app === app && forbidden.path === loc.path) || (page === 'settings' && role !== 'admin');
  return (
    <Layout me={me} app={app} page={page}>
      {refused ? <Forbidden me={me} app={app} admin={page === 'settings' && !!role} /> : <View key={`${app}/${page}`} me={me} app={app} role={role} id={parts[3]} />}
    </Layout>
  );
}

render(<App />, document.getElementById('root'));
