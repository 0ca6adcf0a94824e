-- Per-app retention (issue 17): raw events and sessions carry the retention
-- class of their app (`retention_days`: 0 = the installation's
-- TALLY_RETENTION_DAYS, else the app's override in days, stamped by the
-- gateway) and are partitioned by (class, day), so the lifecycle drops a
-- class's day partitions once they are older than that class keeps them —
-- still whole partitions, never a row-by-row delete.
--
-- ClickHouse cannot change a table's partition key: `events` and `sessions`
-- are rebuilt. The runner (tally-common `clickhouse::migrate`, under the
-- migration lock) does, per table: RENAME table TO table_pre_v12 (inserts
-- fail until the end, and are retried by the aggregator), drop the
-- materialized views reading it, CREATE table_v12 as below, copy every row
-- (class 0), check the counts, RENAME table_v12 TO table, DROP
-- table_pre_v12; then the statements after the rebuilt tables run (the views
-- again). A run that stopped part way resumes from what it finds. Existing
-- rows get class 0. Run it with no aggregator writing (`tally-admin migrate`
-- before the services, as the stack script, compose and helm do).
-- Valid on ClickHouse 18.16 and current.
CREATE TABLE IF NOT EXISTS events_v12
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
    kafka_offset    UInt64,
    country         String DEFAULT '',
    region          String DEFAULT '',
    city            String DEFAULT '',
    browser         String DEFAULT '',
    browser_version String DEFAULT '',
    os              String DEFAULT '',
    device_type     String DEFAULT '',
    is_bot          UInt8 DEFAULT 0,
    url_host        String DEFAULT '',
    url_path        String DEFAULT '',
    referrer_host   String DEFAULT '',
    utm_source      String DEFAULT '',
    utm_medium      String DEFAULT '',
    utm_campaign    String DEFAULT '',
    utm_term        String DEFAULT '',
    utm_content     String DEFAULT '',
    retention_days  UInt16 DEFAULT 0
)
ENGINE = MergeTree()
PARTITION BY (retention_days, event_date)
ORDER BY (app_id, event_date, name, timestamp, event_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS sessions_v12
(
    app_id         String,
    created_date   Date,
    distinct_id    String,
    session_id     String,
    start_ms       UInt64,
    end_ms         UInt64,
    start          DateTime,
    duration_ms    UInt64,
    events         UInt32,
    page_views     UInt32,
    entry_page     String,
    exit_page      String,
    referrer_host  String,
    utm_source     String,
    utm_medium     String,
    utm_campaign   String,
    country        String,
    device_type    String,
    browser        String,
    os             String,
    is_bot         UInt8,
    bounce         UInt8,
    dropped        UInt8,
    version        UInt64,
    entry_ms       UInt64 DEFAULT 0,
    exit_ms        UInt64 DEFAULT 0,
    retention_days UInt16 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY (retention_days, created_date)
ORDER BY (app_id, distinct_id, session_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_pages_hourly_mv TO rollup_pages_hourly AS
SELECT app_id, toStartOfHour(timestamp) AS hour, url_path, referrer_host, country, device_type, browser, is_bot,
       countState() AS page_views, uniqExactState(distinct_id) AS visitors
FROM events
WHERE name = 'page_view'
GROUP BY app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot;

CREATE MATERIALIZED VIEW IF NOT EXISTS property_keys_mv TO property_keys AS
SELECT app_id, arrayJoin(prop_keys) AS key, max(event_date) AS last_seen
FROM events
GROUP BY app_id, key;
