-- Replays of the events topic into separate targets (issue 17, `tally-admin
-- replay`). One row per target; everything else (database, Redis prefix,
-- consumer group) follows from the name. Positions are `partition:offset,…`;
-- `end_offsets` NULL means the replay follows the topic after catching up.
CREATE TABLE IF NOT EXISTS replays (
    name          TEXT PRIMARY KEY,
    topic         TEXT NOT NULL,
    from_text     TEXT NOT NULL,
    to_text       TEXT,
    start_offsets TEXT NOT NULL,
    end_offsets   TEXT,
    reenrich      TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL DEFAULT 'running',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ,
    done          BIGINT NOT NULL DEFAULT 0,
    rate          DOUBLE PRECISION NOT NULL DEFAULT 0,
    finished_at   TIMESTAMPTZ
);

-- Which ClickHouse database and Redis prefix the query service answers from
-- (`tally-admin replay switch|rollback`), per deployment: `scope` is the
-- database the query service is configured with. No row: its configuration.
-- The previous pair is kept for rollback.
CREATE TABLE IF NOT EXISTS serving (
    scope             TEXT PRIMARY KEY,
    database          TEXT NOT NULL,
    redis_prefix      TEXT NOT NULL,
    previous_database TEXT NOT NULL,
    previous_prefix   TEXT NOT NULL,
    replay            TEXT NOT NULL,
    switched_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
