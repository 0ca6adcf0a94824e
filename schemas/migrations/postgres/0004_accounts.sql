-- Dashboard users (seed 002: accounts live in PostgreSQL). E-mails are stored
-- lower-cased; passwords only as argon2id PHC strings.
CREATE TABLE IF NOT EXISTS users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who may see which app, and manage it (admin: keys and members).
CREATE TABLE IF NOT EXISTS memberships (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'admin')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, app_id)
);
CREATE INDEX IF NOT EXISTS memberships_app ON memberships (app_id);

-- Login sessions: only the SHA-256 of the cookie's token is stored. A session
-- ends at expires_at, after an idle timeout since last_seen_at, or at logout
-- (revoked_at).
CREATE TABLE IF NOT EXISTS sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);

-- Keys get a number, so that an admin can name one to revoke in the dashboard.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS id BIGSERIAL;
