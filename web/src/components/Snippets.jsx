import { useState } from 'preact/hooks';
import { CodeBlock } from './ui.jsx';
import { Link } from '../lib/router.js';

export const sdkSnippet = (gateway, key) => `<script src="${gateway}/sdk.js" data-key="${key}" defer></script>`;

export const curlSnippet = (gateway, app, key) =>
  `curl -s -XPOST ${gateway}/api/v1/events/batch -u "${key}:" \\
  -H 'content-type: application/json' -d '{
  "app_id": "${app}",
  "events": [
    {"name": "page_view", "user_id": "U1", "properties": {"url": "/home"}}
  ]}'
# → {"accepted":1,"rejected":0,"errors":[]}`;

/** How to send the first event: the sdk.js tag and a curl call. */
export function Onboarding({ app, gateway, admin }) {
  const gw = gateway || window.location.origin.replace(/:\d+$/, ':8080');
  return (
    <section class="panel wide onboarding" data-testid="onboarding" aria-labelledby="onb-h">
      <h2 id="onb-h">No events yet — send your first one</h2>
      <p>
        <strong>{app}</strong> has not received any event. Put the tracker on your site (it sends a <code>page_view</code> on every page load), or send an event from
        anywhere with curl. Both need a <em>write key</em> of this app
        {admin ? (
          <>
            {' '}
            — create one under <Link href={`/app/${encodeURIComponent(app)}/settings`}>Settings</Link>.
          </>
        ) : (
          ' — ask an admin of this app for one.'
        )}
      </p>
      <h3>In your pages</h3>
      <CodeBlock code={sdkSnippet(gw, 'tw_YOUR_WRITE_KEY')} testid="snippet-sdk" label="Tracker script tag" />
      <h3>With curl</h3>
      <CodeBlock code={curlSnippet(gw, app, 'tw_YOUR_WRITE_KEY')} testid="snippet-curl" label="curl command" />
      <p class="muted">Events show up on the Realtime page within a second, and here once the range includes them.</p>
    </section>
  );
}

/** Other vendors' SDKs pointed at the gateway, the write key as their key (README: "… compatibility"). */
export const VENDOR_SNIPPETS = [
  ['posthog', 'PostHog (posthog-js)', (gw, key) => `posthog.init('${key}', { api_host: '${gw}' })`],
  ['segment', 'Segment (analytics-node)', (gw, key) => `const analytics = new Analytics({ writeKey: '${key}', host: '${gw}' })`],
  ['amplitude', 'Amplitude (analytics-node, analytics-browser)', (gw, key) => `amplitude.init('${key}', { serverUrl: '${gw}/2/httpapi' })`],
  ['mixpanel', 'Mixpanel (mixpanel-browser)', (gw, key) => `mixpanel.init('${key}', { api_host: '${gw}' })`],
  ['umami', 'Umami (tracker script)', (gw, key) => `<script defer src="/umami/script.js" data-website-id="${key}" data-host-url="${gw}"></script>`],
  ['snowplow', 'Snowplow (browser tracker)', (gw, key) => `newTracker('sp', '${gw}', { appId: '${key}' })`],
  [
    'plausible',
    'Plausible (@plausible-analytics/tracker)',
    (gw, _key, app) =>
      `// Plausible sends no key: add the site's domain to ${app} first\n// (Settings → Site domains, or: tally-admin apps domains ${app} add your-site.example)\ninit({ domain: 'your-site.example', endpoint: '${gw}/api/event' })`,
  ],
];

/** The snippet of one vendor SDK at a time, chosen from a list. */
export function VendorSnippets({ gateway, app, writeKey }) {
  const [choice, setChoice] = useState(VENDOR_SNIPPETS[0][0]);
  const [, label, snippet] = VENDOR_SNIPPETS.find(([id]) => id === choice) || VENDOR_SNIPPETS[0];
  const id = `vendor-sdk-${app}`;
  return (
    <div class="vendor-snippets" data-testid="vendor-snippets">
      <label for={id}>SDK</label>{' '}
      <select id={id} value={choice} data-testid="vendor-sdk" onChange={(e) => setChoice(e.currentTarget.value)}>
        {VENDOR_SNIPPETS.map(([value, text]) => (
          <option value={value}>{text}</option>
        ))}
      </select>
      <CodeBlock code={snippet(gateway, writeKey, app)} testid={`vendor-snippet-${choice}`} label={`${label} set-up`} />
    </div>
  );
}
