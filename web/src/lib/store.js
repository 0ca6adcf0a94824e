// Session state shared by every page: who is signed in (GET /auth/me) and
// whether the server refused the current page's app (403).
import { useEffect, useState } from 'preact/hooks';
import { location, navigate } from './router.js';

const listeners = new Set();
const state = {
  /** 'loading' until /auth/me answered; null when signed out; else {user, apps, gateway_url}. */
  me: 'loading',
  /** {app, path}: the server answered 403 for this app on this page. */
  forbidden: null,
};

function emit() {
  for (const listener of listeners) listener({ ...state });
}

export const store = {
  get: () => state,
  setMe(me) {
    state.me = me;
    emit();
  },
  /** A 401: forget the session and go to the login page, remembering where we were. */
  unauthenticated() {
    const here = location();
    state.me = null;
    emit();
    if (here.path !== '/login') {
      navigate(`/login?next=${encodeURIComponent(here.href)}`, { replace: true });
    }
  },
  forbid(app) {
    state.forbidden = { app, path: location().path };
    emit();
  },
};

export function useStore() {
  const [snap, setSnap] = useState({ ...state });
  useEffect(() => {
    listeners.add(setSnap);
    setSnap({ ...state });
    return () => listeners.delete(setSnap);
  }, []);
  return snap;
}

/** The signed-in user's role in `app` ('admin' | 'viewer'), or null. */
export function roleIn(me, app) {
  if (!me || me === 'loading') return null;
  const found = (me.apps || []).find((a) => a.app_id === app);
  return found ? found.role : null;
}
