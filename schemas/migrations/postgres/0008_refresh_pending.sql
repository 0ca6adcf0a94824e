-- Buckets (app, event day) a refresh run is about to change by adding new
-- rows to report rows in place (issue 16, row-level refresh), written before
-- its first ClickHouse write and removed when the run commits. An addition
-- repeated would count twice, so the buckets of a run that never committed
-- (killed, or its lease lost) are recomputed from raw rows by the next run.
CREATE TABLE IF NOT EXISTS refresh_pending (
    scope      TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    event_date DATE NOT NULL,
    PRIMARY KEY (scope, app_id, event_date)
);
