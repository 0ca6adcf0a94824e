-- Pre-computed page-view rollup, refreshed incrementally by a materialized view
-- on every insert into events (each raw row is inserted exactly once, so the
-- rollup counts each page view exactly once). Counts and uniques are aggregate
-- states merged at read time: the numbers equal those computed from raw rows.
-- rollup_coverage records when the rollup started to see inserts; the query
-- service only routes a range to the rollup when it begins a day after that.
-- Valid on ClickHouse 18.16 (no SimpleAggregateFunction there) and current.
CREATE TABLE IF NOT EXISTS rollup_pages_hourly
(
    app_id        String,
    hour          DateTime,
    url_path      String,
    referrer_host String,
    country       String,
    device_type   String,
    browser       String,
    is_bot        UInt8,
    page_views    AggregateFunction(count),
    visitors      AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot);

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_pages_hourly_mv TO rollup_pages_hourly AS
SELECT app_id, toStartOfHour(timestamp) AS hour, url_path, referrer_host, country, device_type, browser, is_bot,
       countState() AS page_views, uniqExactState(distinct_id) AS visitors
FROM events
WHERE name = 'page_view'
GROUP BY app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot;

CREATE TABLE IF NOT EXISTS rollup_coverage
(
    name  String,
    since DateTime
)
ENGINE = TinyLog;

INSERT INTO rollup_coverage (name, since) SELECT 'pages_hourly', now();
