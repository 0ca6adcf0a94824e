import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { describeError } from '../lib/api.js';
import { copyText } from '../lib/hooks.js';
import { fmtClock } from '../lib/format.js';

/** A panel: a titled section with its own loading, empty and error states. */
export function Panel({ id, title, actions, children, class: cls = '', wide = false, note }) {
  const headingId = `h-${id}`;
  return (
    <section class={`panel ${wide ? 'wide' : ''} ${cls}`} data-testid={`panel-${id}`} aria-labelledby={headingId}>
      <header class="panel-head">
        <h2 id={headingId}>{title}</h2>
        {actions ? <div class="panel-actions">{actions}</div> : null}
      </header>
      {note ? <p class="panel-note" data-testid={`note-${id}`}>{note}</p> : null}
      {children}
    </section>
  );
}

/**
 * Shows the state of a `useApi` result: loading (first load), error (with a
 * Retry button), empty (`isEmpty(data)`), else `children(data)`. A reload
 * keeps the old data on screen, marked as refreshing.
 */
export function Loaded({ result, isEmpty, empty = 'No data for this range.', children, minHeight }) {
  const { data, error, loading, reload } = result;
  if (error) {
    return (
      <div class="state error" role="alert" data-testid="error" style={minHeight ? { minHeight } : undefined}>
        <p>{describeError(error)}</p>
        <button type="button" class="btn" data-testid="retry" onClick={reload}>
          Retry
        </button>
      </div>
    );
  }
  if (data === undefined) {
    return (
      <div class="state loading" data-testid="loading" aria-busy="true" style={minHeight ? { minHeight } : undefined}>
        <span class="spinner" aria-hidden="true" /> Loading…
      </div>
    );
  }
  if (isEmpty && isEmpty(data)) {
    return (
      <div class="state empty" data-testid="empty" style={minHeight ? { minHeight } : undefined}>
        {empty}
      </div>
    );
  }
  return (
    <div class={loading ? 'refreshing' : ''} aria-busy={loading ? 'true' : 'false'}>
      {children(data)}
    </div>
  );
}

/** A number with its raw value for tests: <span data-testid data-value>. */
export function Value({ testid, value, text, class: cls = '' }) {
  return (
    <span class={`value ${cls}`} data-testid={testid} data-value={value === null || value === undefined ? '' : String(value)}>
      {text}
    </span>
  );
}

/** "as of 14:05:09" for live numbers. */
export function AsOf({ ms, testid = 'asof', label = 'as of' }) {
  return (
    <span class="asof" data-testid={testid} data-value={ms || ''}>
      {label} <time dateTime={ms ? new Date(ms).toISOString() : ''}>{fmtClock(ms)}</time>
    </span>
  );
}

export function CopyButton({ text, label = 'Copy', testid = 'copy' }) {
  const [done, setDone] = useState('');
  return (
    <button
      type="button"
      class="btn small"
      data-testid={testid}
      onClick={async () => {
        const ok = await copyText(text);
        setDone(ok ? 'Copied' : 'Copy failed');
        setTimeout(() => setDone(''), 2000);
      }}
    >
      {done || label}
      <span class="sr-only" aria-live="polite">
        {done}
      </span>
    </button>
  );
}

export function CodeBlock({ code, testid, label }) {
  return (
    <div class="code" data-testid={testid}>
      <pre tabIndex={0} aria-label={label}>
        <code>{code}</code>
      </pre>
      <CopyButton text={code} testid={testid ? `${testid}-copy` : 'copy'} />
    </div>
  );
}

/** A labelled form control: <label for> + the control (children gets the id). */
export function Field({ label, children, hint, class: cls = '' }) {
  const id = useId();
  return (
    <div class={`field ${cls}`}>
      <label for={id}>{label}</label>
      {children(id)}
      {hint ? <small class="hint">{hint}</small> : null}
    </div>
  );
}

/** A two-step button: the first click asks, the second does it. */
export function ConfirmButton({ label, confirm = 'Confirm', onConfirm, testid, busy, class: cls = 'btn danger small' }) {
  const [asking, setAsking] = useState(false);
  const yes = useRef(null);
  const first = useRef(null);
  const wasAsking = useRef(false);
  // Keyboard users land on the question, and back on the button after it.
  useEffect(() => {
    if (asking && yes.current) yes.current.focus();
    else if (!asking && wasAsking.current && first.current) first.current.focus();
    wasAsking.current = asking;
  }, [asking]);
  if (!asking) {
    return (
      <button type="button" class={cls} data-testid={testid} onClick={() => setAsking(true)} disabled={busy} ref={first}>
        {label}
      </button>
    );
  }
  return (
    <span class="confirm" role="group" aria-label={`${label}: are you sure?`}>
      <button
        type="button"
        class="btn danger small"
        data-testid={testid ? `${testid}-confirm` : undefined}
        onClick={() => {
          wasAsking.current = false;
          setAsking(false);
          onConfirm();
        }}
        ref={yes}
      >
        {confirm}
      </button>
      <button type="button" class="btn small" data-testid={testid ? `${testid}-cancel` : undefined} onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export function ErrorText({ error, testid = 'form-error' }) {
  if (!error) return null;
  return (
    <p class="form-error" role="alert" data-testid={testid}>
      {typeof error === 'string' ? error : describeError(error)}
    </p>
  );
}

/** Tabs whose choice lives in the URL (links, so Back works). */
export function Tabs({ label, items, value, onChange, testid }) {
  return (
    <div class="tabs" role="group" aria-label={label} data-testid={testid}>
      {items.map((it) => (
        <button
          type="button"
          key={it.id}
          class={`tab ${it.id === value ? 'on' : ''}`}
          aria-pressed={it.id === value ? 'true' : 'false'}
          data-testid={`${testid}-${it.id}`}
          onClick={() => onChange(it.id)}
        >
          {it.label}
        </button>
      ))}
    </div>
  );
}
