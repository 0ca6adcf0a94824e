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
