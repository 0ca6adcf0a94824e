-- Apps (tenants) and their API keys. Keys are stored as SHA-256 hashes: write keys
-- are public (they ship in web pages) but read keys are secrets.
CREATE TABLE IF NOT EXISTS apps (
    app_id     TEXT PRIMARY KEY CHECK (app_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   TEXT PRIMARY KEY,
    key_prefix TEXT NOT NULL,
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('write', 'read')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS api_keys_app ON api_keys (app_id);
