// Filters: in the URL as repeated `f=<property>~<op>~<value>` (value JSON for
// in/not_in lists, absent for is_set/is_not_set), in requests as the API's
// {"property", "op", "value"}. Which table a filter can apply to follows the
// API: events take any built-in field or property; sessions only their own
// fields; a query with both kinds of metric only the fields both have.

export const OPS = [
  { id: 'eq', label: 'is' },
  { id: 'neq', label: 'is not' },
  { id: 'in', label: 'is one of' },
  { id: 'not_in', label: 'is none of' },
  { id: 'contains', label: 'contains' },
  { id: 'not_contains', label: 'does not contain' },
  { id: 'gt', label: '>' },
  { id: 'gte', label: '≥' },
  { id: 'lt', label: '<' },
  { id: 'lte', label: '≤' },
  { id: 'is_set', label: 'is set' },
  { id: 'is_not_set', label: 'is not set' },
];
export const OP_IDS = OPS.map((o) => o.id);
export const opLabel = (op) => (OPS.find((o) => o.id === op) || { label: op }).label;
export const NO_VALUE = new Set(['is_set', 'is_not_set']);
export const LIST_OPS = new Set(['in', 'not_in']);
export const NUMBER_OPS = new Set(['gt', 'gte', 'lt', 'lte']);
const NUMERIC = /^-?[0-9]{1,15}([.][0-9]{1,15})?([eE][-+]?[0-9]{1,2})?$/;

/** Built-in fields of events (`$` + name). */
export const EVENT_FIELDS = [
  'name', 'country', 'region', 'city', 'browser', 'os', 'device_type', 'url_host', 'url_path',
  'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content',
];
/** Fields of sessions. */
export const SESSION_FIELDS = [
  'country', 'device_type', 'browser', 'os', 'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign',
  'entry_page', 'exit_page',
];
/** Fields events and sessions both have. */
export const COMMON_FIELDS = SESSION_FIELDS.filter((f) => EVENT_FIELDS.includes(f));

export const FIELD_LABELS = {
  name: 'Event', country: 'Country', region: 'Region', city: 'City', browser: 'Browser', os: 'OS',
  device_type: 'Device', url_host: 'Host', url_path: 'Page', referrer_host: 'Source',
  utm_source: 'UTM source', utm_medium: 'UTM medium', utm_campaign: 'UTM campaign', utm_term: 'UTM term',
  utm_content: 'UTM content', entry_page: 'Entry page', exit_page: 'Exit page',
};

/** {kind: 'builtin'|'property', name} of a field name as the API resolves it (bare names: built-in when one exists). */
export function resolveField(property) {
  const p = String(property || '');
  if (p.startsWith('properties.')) return { kind: 'property', name: p.slice(11) };
  const bare = p.replace(/^\$/, '');
  if (EVENT_FIELDS.includes(bare) || SESSION_FIELDS.includes(bare)) return { kind: 'builtin', name: bare };
  return { kind: 'property', name: bare };
}

export function fieldLabel(property) {
  const r = resolveField(property);
  if (r.kind === 'builtin') return FIELD_LABELS[r.name] || r.name;
  return property.startsWith('properties.') ? property : `properties.${r.name}`;
}

/** Whether a filter or dimension on `property` can apply to `table` ('events' | 'sessions' | 'mixed'). */
export function fieldFits(property, table) {
  const r = resolveField(property);
  if (table === 'events') return r.kind === 'property' || EVENT_FIELDS.includes(r.name);
  if (table === 'sessions') return r.kind === 'builtin' && SESSION_FIELDS.includes(r.name);
  return r.kind === 'builtin' && COMMON_FIELDS.includes(r.name);
}

/** Parses one `f` value; null when malformed. */
export function parseFilter(text) {
  const a = text.indexOf('~');
  if (a <= 0) return null;
  const property = text.slice(0, a);
  const rest = text.slice(a + 1);
  const b = rest.indexOf('~');
  const op = b < 0 ? rest : rest.slice(0, b);
  if (!OP_IDS.includes(op)) return null;
  if (NO_VALUE.has(op)) return { property, op };
  if (b < 0) return null;
  const raw = rest.slice(b + 1);
  if (LIST_OPS.has(op)) {
    try {
      const list = JSON.parse(raw);
      if (Array.isArray(list) && list.length) return { property, op, value: list.map(String) };
    } catch {
      /* fall through */
    }
    return { property, op, value: raw.split(',').map((s) => s.trim()).filter(Boolean) };
  }
  return { property, op, value: raw };
}

export function filterParam(f) {
  if (NO_VALUE.has(f.op)) return `${f.property}~${f.op}`;
  if (LIST_OPS.has(f.op)) return `${f.property}~${f.op}~${JSON.stringify((f.value || []).map(String))}`;
  return `${f.property}~${f.op}~${f.value ?? ''}`;
}

export const readFilters = (query, key = 'f') => query.getAll(key).map(parseFilter).filter(Boolean);

/** What is wrong with a filter (null when it can be sent). */
export function filterProblem(f) {
  if (!f.property) return 'Choose a field.';
  if (!/^(properties\.[A-Za-z0-9_.$-]{1,128}|[A-Za-z0-9_.$-]{1,128})$/.test(f.property)) return `“${f.property}” is not a field name.`;
  if (NO_VALUE.has(f.op)) return null;
  if (LIST_OPS.has(f.op)) return f.value && f.value.length ? null : 'Give at least one value (comma-separated).';
  if (NUMBER_OPS.has(f.op)) return NUMERIC.test(String(f.value).trim()) ? null : `${opLabel(f.op)} needs a number.`;
  return null;
}

/** The API filter of a URL filter. */
export function toApiFilter(f) {
  if (NO_VALUE.has(f.op)) return { property: f.property, op: f.op };
  if (LIST_OPS.has(f.op)) return { property: f.property, op: f.op, value: f.value };
  if (NUMBER_OPS.has(f.op)) return { property: f.property, op: f.op, value: String(f.value).trim() };
  return { property: f.property, op: f.op, value: f.value ?? '' };
}

/** A URL filter of an API filter (saved funnels). */
export function fromApiFilter(f) {
  if (NO_VALUE.has(f.op)) return { property: f.property, op: f.op };
  if (f.value === null && (f.op === 'eq' || f.op === 'neq')) return { property: f.property, op: f.op === 'eq' ? 'is_not_set' : 'is_set' };
  if (Array.isArray(f.value)) return { property: f.property, op: f.op, value: f.value.map(String) };
  return { property: f.property, op: f.op, value: String(f.value) };
}

/** A filter as a short sentence: "Country is DE". */
export function filterText(f) {
  const label = fieldLabel(f.property);
  if (NO_VALUE.has(f.op)) return `${label} ${opLabel(f.op)}`;
  const value = LIST_OPS.has(f.op) ? (f.value || []).join(', ') : f.value === '' ? '(empty)' : f.value;
  return `${label} ${opLabel(f.op)} ${value}`;
}

/** Splits filters into those that fit `table` and those that do not. */
export function splitFilters(filters, table) {
  const fit = [];
  const skipped = [];
  for (const f of filters) (fieldFits(f.property, table) ? fit : skipped).push(f);
  return { fit: fit.map(toApiFilter), skipped };
}
