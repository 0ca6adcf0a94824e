-- The report refresher's state (issue 16), per scope (the ClickHouse database
-- it refreshes, so several stacks or tests share one PostgreSQL).
-- One writer per scope: the lease. Its fence grows with every new holder.
CREATE TABLE IF NOT EXISTS refresh_lease (
    scope      TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    fence      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Versions of derived rows: every run takes the next one, so a later run's
-- rows replace an earlier (or a stale holder's) in ClickHouse.
CREATE SEQUENCE IF NOT EXISTS refresh_version;

-- Watermark on insertion: per Kafka partition and event day, the highest raw
-- row offset already derived (the raw writer stores each (partition, day) as a
-- prefix of the log, so every row above it is new).
CREATE TABLE IF NOT EXISTS refresh_marks (
    scope           TEXT NOT NULL,
    kafka_topic     TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    event_date      DATE NOT NULL,
    mark            BIGINT NOT NULL,
    PRIMARY KEY (scope, kafka_topic, kafka_partition, event_date)
);

-- Per app, the highest identity version (person_distinct_ids) already derived.
CREATE TABLE IF NOT EXISTS refresh_identity_marks (
    scope   TEXT NOT NULL,
    app_id  TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (scope, app_id)
);

-- Every finished run: what it did and, for full rebuilds, the drift found.
CREATE TABLE IF NOT EXISTS refresh_runs (
    id          BIGSERIAL PRIMARY KEY,
    scope       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('incremental', 'full')),
    version     BIGINT NOT NULL,
    buckets     BIGINT NOT NULL,
    new_rows    BIGINT NOT NULL,
    drift       BIGINT,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refresh_runs_scope ON refresh_runs (scope, id);

-- A full rebuild asked for by an operator (tally-admin refresh --full).
CREATE TABLE IF NOT EXISTS refresh_requests (
    scope        TEXT PRIMARY KEY,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
