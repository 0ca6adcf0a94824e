// A tiny router over the History API: the URL is the page's state.
import { useEffect, useState } from 'preact/hooks';
import { jsx } from 'preact/jsx-runtime';

const listeners = new Set();

function snapshot() {
  return {
    path: window.location.pathname,
    search: window.location.search,
    query: new URLSearchParams(window.location.search),
    href: window.location.pathname + window.location.search,
  };
}

let current = snapshot();

function emit() {
  current = snapshot();
  for (const listener of listeners) listener(current);
}

window.addEventListener('popstate', emit);

/** Goes to `to` (a path with its query string); `replace` keeps the history entry. */
export function navigate(to, { replace = false, keepScroll = false } = {}) {
  const here = window.location.pathname + window.location.search;
  if (to === here) return;
  const samePath = to.split('?')[0] === window.location.pathname;
  window.history[replace ? 'replaceState' : 'pushState'](null, '', to);
  emit();
  if (!replace && !samePath && !keepScroll) window.scrollTo(0, 0);
}

/** The current location; re-renders the caller when it changes. */
export function useLocation() {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    listeners.add(setLoc);
    if (current.href !== loc.href) setLoc(current);
    return () => listeners.delete(setLoc);
  }, []);
  return loc;
}

/** The current location without subscribing. */
export function location() {
  return current;
}

/**
 * A copy of the current query string with `changes` applied: a value of
 * null/undefined/'' removes the key, an array sets repeated keys.
 */
export function withQuery(changes, base = current.query) {
  const q = new URLSearchParams(base);
  for (const [key, value] of Object.entries(changes)) {
    q.delete(key);
    if (Array.isArray(value)) value.forEach((v) => q.append(key, v));
    else if (value !== null && value !== undefined && value !== '') q.set(key, String(value));
  }
  return q;
}

/** Path plus a query string (no `?` when empty). */
export function href(path, query) {
  const text = query ? query.toString() : '';
  return text ? `${path}?${text}` : path;
}

/** Sets query keys of the current page (a new history entry unless `replace`). */
export function setQuery(changes, options = {}) {
  navigate(href(current.path, withQuery(changes)), { keepScroll: true, ...options });
}

/** An `<a>` that navigates in-app (modifier clicks open new tabs as usual). */
export function Link(props) {
  const { href: to, onClick, ...rest } = props;
  const click = (e) => {
    if (onClick) onClick(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return jsx('a', { href: to, onClick: click, ...rest });
}
