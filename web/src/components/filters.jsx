import { useId } from 'preact/hooks';
import { useFields, useValues } from '../lib/hooks.js';
import { OPS, NO_VALUE, LIST_OPS, filterText, filterProblem, SESSION_FIELDS } from '../lib/filters.js';

/** Active filters as removable chips. */
export function Chips({ filters, onRemove, onClear, testid = 'chips' }) {
  if (!filters.length) return null;
  return (
    <ul class="chips" data-testid={testid} aria-label="Active filters">
      {filters.map((f, i) => {
        const text = filterText(f);
        return (
          <li class="chip" key={`${i}-${text}`} data-testid="chip" data-property={f.property} data-op={f.op} data-value={Array.isArray(f.value) ? JSON.stringify(f.value) : f.value ?? ''}>
            <span>{text}</span>
            <button type="button" class="chip-x" data-testid="chip-remove" aria-label={`Remove filter: ${text}`} onClick={() => onRemove(i)}>
              ×
            </button>
          </li>
        );
      })}
      {onClear && filters.length > 1 ? (
        <li>
          <button type="button" class="btn link small" data-testid="chips-clear" onClick={onClear}>
            Clear all
          </button>
        </li>
      ) : null}
    </ul>
  );
}

/** A <datalist> of the app's field names (built-ins, properties; sessions' own fields when asked). */
export function FieldList({ app, id, sessions = false }) {
  const fields = useFields(app);
  const names = new Set();
  if (fields) {
    for (const f of fields.builtins) names.add(f);
    for (const p of fields.properties) names.add(p.key);
  }
  if (sessions) SESSION_FIELDS.forEach((f) => names.add(f));
  return (
    <datalist id={id}>
      {[...names].map((n) => (
        <option key={n} value={n} />
      ))}
    </datalist>
  );
}

/** An <input> with value suggestions of `field` (GET /properties/values). */
export function ValueInput({ app, field, value, onInput, id, label, testid, placeholder }) {
  const listId = useId();
  const last = String(value || '').split(',').pop().trim();
  const values = useValues(app, field && !/entry_page|exit_page/.test(field) ? field : null, last);
  return (
    <>
      <input id={id} type="text" value={value} list={listId} aria-label={label} data-testid={testid} placeholder={placeholder} autoComplete="off" onInput={(e) => onInput(e.currentTarget.value)} />
      <datalist id={listId}>
        {values.map((v) => (
          <option key={v.value} value={v.value}>
            {`${v.count} events`}
          </option>
        ))}
      </datalist>
    </>
  );
}

/**
 * Editable filter rows (field, operator, value) — the twelve operators of
 * the API. `filters` is the editing state: {property, op, value: string}
 * with lists as comma-separated text.
 */
export function FilterEditor({ app, filters, onChange, testid = 'filter-editor', max = 20, sessions = false, addLabel = 'Add filter' }) {
  const listId = useId();
  const set = (i, patch) => onChange(filters.map((f, j) => (j === i ? { ...f, ...patch } : f)));
  return (
    <div class="filter-editor" data-testid={testid}>
      <FieldList app={app} id={listId} sessions={sessions} />
      {filters.map((f, i) => {
        const problem = f.property || f.value ? filterProblem(editToFilter(f)) : null;
        return (
          <div class="filter-row" key={i} data-testid="filter-row">
            <input
              type="text"
              list={listId}
              value={f.property}
              aria-label={`Filter ${i + 1} field`}
              data-testid="filter-field"
              placeholder="field, e.g. country or properties.plan"
              autoComplete="off"
              onInput={(e) => set(i, { property: e.currentTarget.value.trim() })}
            />
            <select aria-label={`Filter ${i + 1} operator`} data-testid="filter-op" value={f.op} onChange={(e) => set(i, { op: e.currentTarget.value })}>
              {OPS.map((o) => (
                <option key={o.id} value={o.id}>
                  {o.label}
                </option>
              ))}
            </select>
            {NO_VALUE.has(f.op) ? (
              <span class="filter-novalue" />
            ) : (
              <ValueInput
                app={app}
                field={f.property}
                value={f.value}
                label={`Filter ${i + 1} value${LIST_OPS.has(f.op) ? 's (comma-separated)' : ''}`}
                testid="filter-value"
                placeholder={LIST_OPS.has(f.op) ? 'a, b, c' : 'value'}
                onInput={(value) => set(i, { value })}
              />
            )}
            <button type="button" class="btn small" aria-label={`Remove filter ${i + 1}`} data-testid="filter-remove" onClick={() => onChange(filters.filter((_, j) => j !== i))}>
              Remove
            </button>
            {problem ? (
              <small class="filter-problem" role="alert">
                {problem}
              </small>
            ) : null}
          </div>
        );
      })}
      {filters.length < max ? (
        <button type="button" class="btn small" data-testid="filter-add" onClick={() => onChange([...filters, { property: '', op: 'eq', value: '' }])}>
          + {addLabel}
        </button>
      ) : null}
    </div>
  );
}

/** Editing state of a URL/API filter. */
export function filterToEdit(f) {
  return { property: f.property, op: f.op, value: Array.isArray(f.value) ? f.value.join(', ') : f.value ?? '' };
}

/** The URL filter of an editing row. */
export function editToFilter(e) {
  if (NO_VALUE.has(e.op)) return { property: e.property, op: e.op };
  if (LIST_OPS.has(e.op)) return { property: e.property, op: e.op, value: String(e.value || '').split(',').map((s) => s.trim()).filter(Boolean) };
  return { property: e.property, op: e.op, value: e.value ?? '' };
}

/** Complete editing rows as URL filters, or {error}. */
export function editsToFilters(edits) {
  const out = [];
  for (const e of edits) {
    if (!e.property && !e.value) continue;
    const f = editToFilter(e);
    const problem = filterProblem(f);
    if (problem) return { error: `Filter “${e.property || '?'}”: ${problem}` };
    out.push(f);
  }
  return { filters: out };
}
