-- Which rows arrived (issue 16): one small row per raw row, written by the
-- aggregator *before* the raw rows of a batch (an arrival without its row only
-- makes a day look newer than it is). Sorted by Kafka position, so "the days
-- of the app's rows above an offset" is an index range read: the query service
-- answers those days from raw rows and the others from the refresher's
-- reports. The refresher drops a day's partition once every arrival in it is
-- derived. Column order is the RowBinary contract of schemas/src/row.rs.
CREATE TABLE IF NOT EXISTS arrivals
(
    app_id          String,
    kafka_topic     String,
    kafka_partition UInt32,
    kafka_offset    UInt64,
    event_date      Date,
    received_date   Date
)
ENGINE = MergeTree()
PARTITION BY received_date
ORDER BY (app_id, kafka_topic, kafka_partition, kafka_offset);
