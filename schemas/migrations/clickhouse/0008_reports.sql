-- Derived tables kept by the report refresher (issue 16). Each is
-- replace-on-write: a run recomputes whole (app, day) buckets and writes them
-- with its version (a PostgreSQL sequence, so a later run always wins), and a
-- key that vanished from a recomputed bucket gets a row with zero counts. Read
-- with FINAL and a non-zero count. Uniques are persons (the identity mapping
-- at the time of the run), kept as uniqExact states so that reports merge
-- across hours, days and with raw rows newer than the watermark.
-- Valid on ClickHouse 18.16 and current.
CREATE TABLE IF NOT EXISTS report_pages_hourly
(
    app_id        String,
    hour          DateTime,
    url_path      String,
    referrer_host String,
    country       String,
    device_type   String,
    browser       String,
    is_bot        UInt8,
    page_views    UInt64,
    visitors      AggregateFunction(uniqExact, String),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot);

-- Per person and day: events, first and last event time (bots left out).
CREATE TABLE IF NOT EXISTS person_day_activity
(
    app_id    String,
    day       Date,
    person_id String,
    events    UInt64,
    first_ms  UInt64,
    last_ms   UInt64,
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (app_id, day, person_id);
