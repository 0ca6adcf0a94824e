-- Site domains per app (issue 20): Plausible's and Umami's trackers name a
-- site, not a key; the gateway maps the domain (lower-case, without `www.`)
-- to the app that allows it. A domain belongs to at most one app.
CREATE TABLE IF NOT EXISTS app_domains (
    domain     TEXT PRIMARY KEY CHECK (domain <> '' AND domain = lower(domain)),
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS app_domains_app ON app_domains (app_id);
