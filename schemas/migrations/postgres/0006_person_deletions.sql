-- Person deletions (GDPR/CCPA; issue 16): one job per request. The query
-- service tombstones the person's ids in Redis, records the job with the ids
-- and the days they had events, and issues the ClickHouse mutations; the
-- report refresher re-derives those days once no row of the person remains
-- (re-issuing the mutations if rows arrived meanwhile) and marks it done.
CREATE TABLE IF NOT EXISTS person_deletions (
    id           BIGSERIAL PRIMARY KEY,
    scope        TEXT NOT NULL,
    app_id       TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    distinct_ids TEXT[] NOT NULL,
    days         TEXT[] NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('deleting', 'done')),
    requested_by TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS person_deletions_open ON person_deletions (scope, status);
