import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { analytics, api } from './api.js';

/**
 * Runs `load(signal)` whenever `key` changes (and on reload()): {data, error,
 * loading, reload, at}. A newer run aborts and supersedes an older one; a
 * `null` key runs nothing.
 */
export function useApi(load, key) {
  const [state, setState] = useState({ data: undefined, error: null, loading: key !== null, at: 0 });
  const run = useRef(0);
  const [nonce, setNonce] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    if (key === null) {
      setState({ data: undefined, error: null, loading: false, at: 0 });
      return undefined;
    }
    const id = ++run.current;
    const ctrl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    Promise.resolve()
      .then(() => loadRef.current(ctrl.signal))
      .then(
        (data) => {
          if (id === run.current) setState({ data, error: null, loading: false, at: Date.now() });
        },
        (error) => {
          if (id !== run.current || (error && error.name === 'AbortError')) return;
          setState((s) => ({ ...s, error, loading: false }));
        },
      );
    return () => ctrl.abort();
  }, [key, nonce]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { ...state, reload };
}

/** Re-renders every `ms` (for "updated 5 s ago" texts and polling). */
export function useTick(ms) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms]);
  return tick;
}

const fieldCache = new Map();

/**
 * Field names for autocomplete (GET /properties?range=7d): built-in fields
 * and `properties.<key>` of the app's most used property keys.
 */
export function useFields(app) {
  const [fields, setFields] = useState(() => fieldCache.get(app) || null);
  useEffect(() => {
    if (!app) return undefined;
    if (fieldCache.has(app)) {
      setFields(fieldCache.get(app));
      return undefined;
    }
    let live = true;
    api(`${analytics(app)}/properties?range=7d`)
      .then((d) => {
        const builtins = (d && d.fields) || [];
        const props = ((d && d.properties) || []).map((p) => ({ key: `properties.${p.key}`, count: p.count }));
        const value = { builtins, properties: props };
        fieldCache.set(app, value);
        if (live) setFields(value);
      })
      .catch(() => {
        /* autocomplete is a nicety: the inputs still take any name */
      });
    return () => {
      live = false;
    };
  }, [app]);
  return fields;
}

const valueCache = new Map();

/** Top values of a field starting with `prefix` (GET /properties/values), debounced. */
export function useValues(app, field, prefix) {
  const [values, setValues] = useState([]);
  useEffect(() => {
    if (!app || !field) {
      setValues([]);
      return undefined;
    }
    const key = `${app}|${field}|${prefix || ''}`;
    if (valueCache.has(key)) {
      setValues(valueCache.get(key));
      return undefined;
    }
    let live = true;
    const t = setTimeout(() => {
      const q = new URLSearchParams({ field, range: '7d' });
      if (prefix) q.set('prefix', prefix);
      api(`${analytics(app)}/properties/values?${q}`)
        .then((d) => {
          const list = ((d && d.values) || []).map((v) => ({ value: String(v.value), count: v.count }));
          valueCache.set(key, list);
          if (live) setValues(list);
        })
        .catch(() => {});
    }, 250);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [app, field, prefix]);
  return values;
}

/** Event names of the app (the values of `$name`), for step and event pickers. */
export function useEventNames(app) {
  return useValues(app, '$name', '');
}

/** Copies text to the clipboard; returns a promise of success. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
