-- Sessions (30-minute inactivity gap per app and visitor), written by the
-- aggregator as upserts: every change of a session re-inserts its whole row with
-- a higher `version` (the Kafka offset of the last event applied to it), and a
-- replay re-inserts identical rows. ReplacingMergeTree keeps the highest version
-- per (app_id, distinct_id, session_id); readers use FINAL (or argMax on version)
-- and skip `dropped` rows (sessions merged into an earlier one by a late event).
-- Partitioned by the day the session was first seen, which never changes, so all
-- versions of a session meet in one partition. Valid on ClickHouse 18.16 and current.
CREATE TABLE IF NOT EXISTS sessions
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
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY created_date
ORDER BY (app_id, distinct_id, session_id)
SETTINGS index_granularity = 8192;
