-- Saved dashboards and funnels, per app (the query service's CRUD). The
-- definition is JSON text validated by the query service before it is stored.
CREATE TABLE IF NOT EXISTS saved_items (
    id         BIGSERIAL PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('dashboard', 'funnel')),
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    definition TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS saved_items_app ON saved_items (app_id, kind);
