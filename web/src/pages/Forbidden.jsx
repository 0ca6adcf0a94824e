import { Link } from '../lib/router.js';

/** 403: the user is not a member of this app (or not its admin). */
export function Forbidden({ me, app, admin }) {
  return (
    <div class="card narrow forbidden" data-testid="forbidden" role="alert">
      <h1>No access</h1>
      {admin ? (
        <p>
          Settings of <strong>{app}</strong> are for its admins; you are a viewer.
        </p>
      ) : (
        <p>
          You (<span data-testid="forbidden-email">{me.user.email}</span>) are not a member of <strong data-testid="forbidden-app">{app}</strong>.
        </p>
      )}
      {me.apps.length ? (
        <>
          <p>Your apps:</p>
          <ul class="app-list" data-testid="forbidden-apps">
            {me.apps.map((a) => (
              <li key={a.app_id}>
                <Link href={`/app/${encodeURIComponent(a.app_id)}/overview`} data-testid="forbidden-app-link">
                  {a.name || a.app_id}
                </Link>{' '}
                <span class="muted">({a.role})</span>
              </li>
            ))}
          </ul>
        </>
      ) : (
        <p>You are not a member of any app yet. Ask an admin to add you.</p>
      )}
    </div>
  );
}
