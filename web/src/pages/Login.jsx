import { useEffect, useRef, useState } from 'preact/hooks';
import { api, describeError } from '../lib/api.js';
import { store } from '../lib/store.js';
import { navigate, useLocation } from '../lib/router.js';

/** Where to go after signing in: a path of this site only (never another origin). */
export function safeNext(next) {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/';
  return next;
}

export function Login({ me }) {
  const loc = useLocation();
  const next = safeNext(loc.query.get('next'));
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [waitUntil, setWaitUntil] = useState(0);
  const [now, setNow] = useState(Date.now());
  const emailRef = useRef(null);
  useEffect(() => emailRef.current && emailRef.current.focus(), []);

  // Already signed in (a bookmarked /login): go on.
  useEffect(() => {
    if (me && me !== 'loading') navigate(next, { replace: true });
  }, [me]);

  useEffect(() => {
    if (!waitUntil) return undefined;
    const t = setInterval(() => {
      setNow(Date.now());
      if (Date.now() >= waitUntil) {
        setWaitUntil(0);
        setError(null);
      }
    }, 1000);
    return () => clearInterval(t);
  }, [waitUntil]);

  const submit = async (e) => {
    e.preventDefault();
    if (busy || waitUntil) return;
    setBusy(true);
    setError(null);
    try {
      const answer = await api('/api/v1/auth/login', { method: 'POST', body: { email: email.trim(), password } });
      store.setMe(answer);
      navigate(next, { replace: true });
    } catch (err) {
      setPassword('');
      if (err.status === 401) setError({ kind: 'credentials', text: 'Wrong e-mail or password.' });
      else if (err.status === 429) {
        const s = Number(err.body.retry_after_s) || 60;
        setWaitUntil(Date.now() + s * 1000);
        setNow(Date.now());
        setError({ kind: 'wait', text: '' });
      } else setError({ kind: 'other', text: describeError(err) });
    } finally {
      setBusy(false);
    }
  };

  const left = waitUntil ? Math.max(0, Math.ceil((waitUntil - now) / 1000)) : 0;
  return (
    <main id="main" class="login" data-testid="login-page">
      <form class="card narrow login-card" onSubmit={submit} noValidate={false}>
        <h1>
          <span aria-hidden="true" class="brand-mark">▮▮▯</span> Sign in to Tally
        </h1>
        <div class="field">
          <label for="login-email">E-mail</label>
          <input id="login-email" type="email" autoComplete="username" required value={email} data-testid="login-email" onInput={(e) => setEmail(e.currentTarget.value)} ref={emailRef} />
        </div>
        <div class="field">
          <label for="login-password">Password</label>
          <input id="login-password" type="password" autoComplete="current-password" required value={password} data-testid="login-password" onInput={(e) => setPassword(e.currentTarget.value)} />
        </div>
        {error ? (
          <p class="form-error" role="alert" data-testid="login-error" data-error={error.kind}>
            {error.kind === 'wait' ? `Too many attempts. Try again in ${left} s.` : error.text}
          </p>
        ) : null}
        <button type="submit" class="btn primary wide" data-testid="login-submit" disabled={busy || left > 0}>
          {busy ? 'Signing in…' : left > 0 ? `Wait ${left} s` : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
