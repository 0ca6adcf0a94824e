-- Row-level refresh (issue 16, P8). Two additions, both valid on ClickHouse
-- 18.16 and current:
--
-- * `arrivals` carries what the refresher derives from a row (its id, name,
--   time and the report keys), so that new and late rows are added to the
--   reports from their arrivals alone (an index range read by Kafka position),
--   whatever day they fall on, instead of recomputing their days from `events`.
--   Rows written before this migration read as empty and are never derived
--   from here (the first run after it is a full rebuild).
-- * `id_hours`: which hours each distinct id has events in, sorted by id, so
--   the hours a changed or deleted person touches are an index read instead
--   of a scan of `events`. A set: duplicates collapse, an entry of a deleted
--   row only makes an hour be recomputed once more. `hour` is
--   `toStartOfHour(timestamp)`, as in `report_pages_hourly`.
ALTER TABLE arrivals
    ADD COLUMN distinct_id String DEFAULT '',
    ADD COLUMN name String DEFAULT '',
    ADD COLUMN timestamp DateTime DEFAULT toDateTime(0),
    ADD COLUMN ts_ms UInt64 DEFAULT 0,
    ADD COLUMN url_path String DEFAULT '',
    ADD COLUMN referrer_host String DEFAULT '',
    ADD COLUMN country String DEFAULT '',
    ADD COLUMN device_type String DEFAULT '',
    ADD COLUMN browser String DEFAULT '',
    ADD COLUMN is_bot UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS id_hours
(
    app_id      String,
    distinct_id String,
    hour        DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, distinct_id, hour);

-- * `key_ids` and `id_keys`: which distinct ids have page views in each key of
--   `report_pages_hourly` — the same set sorted two ways: by id (the keys a
--   changed id is in) and by key (every id of those keys, whose persons are
--   the key's uniques), so an identity change rewrites only the keys of the
--   ids that moved. Sets again (a row written twice is one); fine-grained
--   index on `key_ids`, whose reads are many small ranges.
CREATE TABLE IF NOT EXISTS key_ids
(
    app_id        String,
    hour          DateTime,
    url_path      String,
    referrer_host String,
    country       String,
    device_type   String,
    browser       String,
    is_bot        UInt8,
    distinct_id   String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot, distinct_id)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS id_keys
(
    app_id        String,
    distinct_id   String,
    hour          DateTime,
    url_path      String,
    referrer_host String,
    country       String,
    device_type   String,
    browser       String,
    is_bot        UInt8
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, distinct_id, hour, url_path, referrer_host, country, device_type, browser, is_bot)
SETTINGS index_granularity = 1024;
