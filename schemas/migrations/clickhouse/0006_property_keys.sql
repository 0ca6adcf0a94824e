-- The property names each app has sent, kept by a materialized view on every
-- insert into events. The query service reads it to tell a user property from
-- a built-in field of the same name: a bare name that is both (say a property
-- `region` beside the geo-IP `region`) is refused with a hint to write
-- `$region` or `properties.region`. It is also the list a dashboard offers.
-- Valid on ClickHouse 18.16 and current.
CREATE TABLE IF NOT EXISTS property_keys
(
    app_id    String,
    key       String,
    last_seen Date
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY (app_id, key);

CREATE MATERIALIZED VIEW IF NOT EXISTS property_keys_mv TO property_keys AS
SELECT app_id, arrayJoin(prop_keys) AS key, max(event_date) AS last_seen
FROM events
GROUP BY app_id, key;

INSERT INTO property_keys (app_id, key, last_seen)
SELECT app_id, arrayJoin(prop_keys) AS key, max(event_date) AS last_seen
FROM events
GROUP BY app_id, key;
