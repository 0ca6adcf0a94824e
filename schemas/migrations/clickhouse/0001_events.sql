-- Raw events. Partitioned by day, sorted by app first (seeds 002/004).
-- Column order is the RowBinary contract of schemas/src/row.rs.
-- Runs on ClickHouse 18.16 and current ClickHouse (no Map, no TTL, no DateTime64).
CREATE TABLE IF NOT EXISTS events
(
    app_id          String,
    event_date      Date,
    timestamp       DateTime,
    ts_ms           UInt64,
    received_at     DateTime,
    event_id        String,
    name            String,
    distinct_id     String,
    user_id         String,
    anonymous_id    String,
    ip              String,
    user_agent      String,
    prop_keys       Array(String),
    prop_values     Array(String),
    kafka_topic     String,
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = MergeTree()
PARTITION BY event_date
ORDER BY (app_id, event_date, name, timestamp, event_id)
SETTINGS index_granularity = 8192;
