import { useState } from 'preact/hooks';
import { api, appAdmin, del, post } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { fmtDateTime } from '../lib/format.js';
import { CodeBlock, ConfirmButton, ErrorText, Loaded, Panel } from '../components/ui.jsx';
import { curlSnippet, sdkSnippet, VendorSnippets } from '../components/Snippets.jsx';

export function Settings({ me, app }) {
  return (
    <div class="page" data-testid="page-settings">
      <div class="page-head">
        <h1>Settings of {app}</h1>
      </div>
      <Keys app={app} gateway={me.gateway_url} />
      <Domains app={app} />
      <Members app={app} me={me} />
    </div>
  );
}

function Keys({ app, gateway }) {
  const keys = useApi((signal) => api(`${appAdmin(app)}/keys`, { signal }), app);
  const [created, setCreated] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  const create = async (kind) => {
    setBusy(true);
    setError(null);
    setCreated(null);
    try {
      const answer = await post(`${appAdmin(app)}/keys`, { kind });
      setCreated(answer);
      keys.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (id) => {
    setError(null);
    try {
      await del(`${appAdmin(app)}/keys/${encodeURIComponent(id)}`);
      if (created && created.id === id) setCreated(null);
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };

  const gw = gateway || '';
  return (
    <Panel
      id="keys"
      title="API keys"
      wide
      actions={
        <>
          <button type="button" class="btn" disabled={busy} data-testid="key-create-write" onClick={() => create('write')}>
            New write key
          </button>
          <button type="button" class="btn" disabled={busy} data-testid="key-create-read" onClick={() => create('read')}>
            New read key
          </button>
        </>
      }
    >
      <p class="muted">
        <strong>Write keys</strong> (<code>tw_…</code>) only send events and may sit in web pages. <strong>Read keys</strong> (<code>tr_…</code>) read every number of this app: keep them secret.
      </p>
      <ErrorText error={error} testid="keys-error" />
      {created ? (
        <div class="new-key card" role="status" data-testid="new-key" data-kind={created.kind}>
          <h3>New {created.kind} key</h3>
          <p>
            <strong>Copy it now:</strong> it is shown only once (Tally keeps only its hash).
          </p>
          <CodeBlock code={created.key} testid="new-key-value" label="The new key" />
          {created.kind === 'write' ? (
            <>
              <h4>Track a site</h4>
              <CodeBlock code={sdkSnippet(gw, created.key)} testid="new-key-sdk" label="Tracker script tag" />
              <h4>Or send an event with curl</h4>
              <CodeBlock code={curlSnippet(gw, app, created.key)} testid="new-key-curl" label="curl command" />
              <h4>Or keep the SDK you already use</h4>
              <VendorSnippets gateway={gw} app={app} writeKey={created.key} />
            </>
          ) : null}
          <button type="button" class="btn small" data-testid="new-key-dismiss" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      ) : null}
      <Loaded result={keys} isEmpty={(d) => !d.keys.length} empty="No keys yet.">
        {(d) => (
          <div class="table-scroll">
            <table class="data" data-testid="table-keys">
              <thead>
                <tr>
                  <th scope="col">Key</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Created</th>
                  <th scope="col">Status</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {d.keys.map((k) => (
                  <tr key={k.id} data-testid="row-key" data-key={k.prefix} data-id={k.id} class={k.revoked ? 'revoked' : ''}>
                    <td>
                      <code>{k.prefix}…</code>
                    </td>
                    <td>{k.kind}</td>
                    <td data-testid="key-created">{k.created_ms ? fmtDateTime(k.created_ms) : '–'}</td>
                    <td data-testid="key-status">{k.revoked ? 'revoked' : 'active'}</td>
                    <td>{k.revoked ? null : <ConfirmButton label="Revoke" confirm={`Revoke ${k.prefix}…`} testid="key-revoke" onConfirm={() => revoke(k.id)} />}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
    </Panel>
  );
}

function Members({ app, me }) {
  const members = useApi((signal) => api(`${appAdmin(app)}/members`, { signal }), app);
  const [form, setForm] = useState({ email: '', role: 'viewer', password: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState('');

  const add = async (e) => {
    e.preventDefault();
    if (!form.email.trim()) return setError('Give an e-mail address.');
    setBusy(true);
    setError(null);
    setStatus('');
    try {
      const body = { email: form.email.trim(), role: form.role };
      if (form.password) body.password = form.password;
      await post(`${appAdmin(app)}/members`, body);
      setStatus(`${body.email} added as ${body.role}.`);
      setForm({ email: '', role: 'viewer', password: '' });
      members.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (email) => {
    setError(null);
    try {
      await del(`${appAdmin(app)}/members/${encodeURIComponent(email)}`);
      members.reload();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <Panel id="members" title="Members" wide>
      <ErrorText error={error} testid="members-error" />
      <Loaded result={members} isEmpty={(d) => !d.members.length} empty="No members.">
        {(d) => (
          <div class="table-scroll">
            <table class="data" data-testid="table-members">
              <thead>
                <tr>
                  <th scope="col">E-mail</th>
                  <th scope="col">Role</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {d.members.map((m) => (
                  <tr key={m.email} data-testid="row-member" data-key={m.email}>
                    <td>
                      {m.email}
                      {m.email === me.user.email ? <span class="muted"> (you)</span> : null}
                    </td>
                    <td data-testid="member-role">{m.role}</td>
                    <td>
                      <ConfirmButton label="Remove" confirm={m.email === me.user.email ? 'Remove yourself' : `Remove ${m.email}`} testid="member-remove" onConfirm={() => remove(m.email)} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
      <form class="inline-form member-form" onSubmit={add} data-testid="member-add-form" aria-label="Add a member">
        <div class="field">
          <label for="m-email">E-mail</label>
          <input id="m-email" type="email" value={form.email} required data-testid="member-email" onInput={(e) => setForm({ ...form, email: e.currentTarget.value })} autoComplete="off" />
        </div>
        <div class="field">
          <label for="m-role">Role</label>
          <select id="m-role" value={form.role} data-testid="member-role-select" onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
            <option value="viewer">viewer — sees the numbers</option>
            <option value="admin">admin — also keys and members</option>
          </select>
        </div>
        <div class="field">
          <label for="m-password">Password (new users only)</label>
          <input id="m-password" type="password" value={form.password} autoComplete="new-password" data-testid="member-password" onInput={(e) => setForm({ ...form, password: e.currentTarget.value })} />
        </div>
        <button type="submit" class="btn primary" disabled={busy} data-testid="member-add">
          Add member
        </button>
        <span class="ok" role="status" data-testid="member-status">
          {status}
        </span>
      </form>
    </Panel>
  );
}

/** What an admin types as a site: a host name, or a URL whose host is taken. */
function hostOf(text) {
  const t = text.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) return t.split('/')[0];
  try {
    return new URL(t).hostname;
  } catch {
    return t;
  }
}

function Domains({ app }) {
  const domains = useApi((signal) => api(`${appAdmin(app)}/domains`, { signal }), app);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState('');

  const add = async (e) => {
    e.preventDefault();
    if (!text.trim()) return setError('Give the site\'s domain, such as shop.example.');
    setBusy(true);
    setError(null);
    setStatus('');
    try {
      const answer = await post(`${appAdmin(app)}/domains`, { domain: hostOf(text) });
      setStatus(`${answer.domain} added: its events count for this app from now on.`);
      setText('');
      domains.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (domain) => {
    setError(null);
    setStatus('');
    try {
      await del(`${appAdmin(app)}/domains/${encodeURIComponent(domain)}`);
      setStatus(`${domain} removed.`);
      domains.reload();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <Panel id="domains" title="Site domains" wide>
      <p class="muted">
        Plausible&apos;s and Umami&apos;s trackers name the site instead of sending a key: events naming one of these domains (with or without <code>www.</code>) are this app&apos;s. A domain belongs to one app.
      </p>
      <ErrorText error={error} testid="domains-error" />
      <Loaded result={domains} isEmpty={(d) => !d.domains.length} empty="No site domains yet.">
        {(d) => (
          <ul class="domain-list" data-testid="list-domains">
            {d.domains.map((domain) => (
              <li key={domain} data-testid="row-domain" data-key={domain}>
                <code>{domain}</code> <ConfirmButton label="Remove" confirm={`Remove ${domain}`} testid="domain-remove" onConfirm={() => remove(domain)} />
              </li>
            ))}
          </ul>
        )}
      </Loaded>
      <form class="inline-form" onSubmit={add} data-testid="domain-add-form" aria-label="Add a site domain">
        <div class="field">
          <label for="d-domain">Domain</label>
          <input id="d-domain" type="text" value={text} placeholder="shop.example" data-testid="domain-input" autoComplete="off" onInput={(e) => setText(e.currentTarget.value)} />
        </div>
        <button type="submit" class="btn primary" disabled={busy} data-testid="domain-add">
          Add domain
        </button>
        <span class="ok" role="status" data-testid="domain-status">
          {status}
        </span>
      </form>
    </Panel>
  );
}
