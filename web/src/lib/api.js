// Same-origin JSON API with the session cookie. Errors are ApiError with the
// server's {"error", "message"}; 401 sends the user to the login page, 403 on
// an app shows the "no access" page (see store.js).
import { store } from './store.js';

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const code = (body && body.error) || (status === 0 ? 'network' : `http_${status}`);
    super((body && body.message) || fallback || code);
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
}

/** A sentence for a person, from any error a request may end with. */
export function describeError(err) {
  if (!err) return '';
  if (!(err instanceof ApiError)) return String(err.message || err);
  if (err.status === 0) return 'Could not reach the server. Check your connection and try again.';
  if (err.status === 429) {
    const wait = err.body.retry_after_s;
    return wait ? `Too many requests — try again in ${wait} s.` : 'Too many requests — try again shortly.';
  }
  if (err.status === 503) return `The service is unavailable right now (${err.code}). ${err.message !== err.code ? err.message : ''}`.trim();
  if (err.status >= 500) return `The server failed (${err.status} ${err.code}). Try again.`;
  if (err.code === 'too_many_groups') return `Too many groups: ${err.message}. Narrow the range, add filters or use fewer dimensions.`;
  if (err.code === 'query_too_expensive') return `The query took too long: ${err.message}. Narrow the range or add filters.`;
  if (err.code === 'ambiguous_field') return `Ambiguous field: ${err.message}`;
  if (err.status === 404) return `Not found: ${err.message}`;
  return err.message && err.message !== err.code ? `${err.message} (${err.code})` : err.code;
}

const APP_PATH = /^\/api\/v1\/(?:analytics|apps)\/([^/?]+)/;

/**
 * fetch(path) with JSON in and out. `body` (any JSON value) makes it a JSON
 * request; `text` returns the body as text.
 */
export async function api(path, { method = 'GET', body, signal, text = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, null, 'network error');
  }
  if (res.status === 204) return null;
  const raw = await res.text();
  let data = null;
  if (raw && !text) {
    try {
      data = JSON.parse(raw);
    } catch {
      if (res.ok) throw new ApiError(res.status, { error: 'bad_answer', message: 'The server answered something that is not JSON.' });
    }
  } else if (!res.ok) {
    try {
      data = JSON.parse(raw);
    } catch {
      /* not JSON */
    }
  }
  if (!res.ok) {
    // A 429 may say how long to wait in its body or in Retry-After.
    if (res.status === 429 && res.headers.get('retry-after') && (!data || data.retry_after_s === undefined)) {
      data = { error: 'too_many_requests', ...(data || {}), retry_after_s: Number(res.headers.get('retry-after')) || undefined };
    }
    const err = new ApiError(res.status, data, res.statusText);
    if (res.status === 401 && !path.startsWith('/api/v1/auth/')) store.unauthenticated();
    // "Not a member" is the no-access page; any other 403 (a refused cross-origin
    // change, say) is an error of the panel that asked.
    if (res.status === 403 && (!data || data.error === 'not_a_member' || data.error === 'not_an_admin' || data.error === 'forbidden' || data.error === 'key_app_mismatch')) {
      const m = APP_PATH.exec(path);
      if (m) store.forbid(decodeURIComponent(m[1]));
    }
    throw err;
  }
  return text ? raw : data;
}

const enc = encodeURIComponent;

/** Paths of the analytics API of one app. */
export const analytics = (app) => `/api/v1/analytics/${enc(app)}`;
export const appAdmin = (app) => `/api/v1/apps/${enc(app)}`;

export const post = (path, body, signal) => api(path, { method: 'POST', body, signal });
export const put = (path, body, signal) => api(path, { method: 'PUT', body, signal });
export const del = (path) => api(path, { method: 'DELETE' });

/** POST /query. */
export const query = (app, body, signal) => post(`${analytics(app)}/query`, body, signal);
