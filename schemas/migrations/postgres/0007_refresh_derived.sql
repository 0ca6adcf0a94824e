-- Per Kafka partition, the offset at or below which every raw row is derived
-- by the report refresher (issue 16): the aggregator group's committed offset
-- read at the start of a committed run, less one. Readers answer from the
-- reports every day without an arrival above it, and from raw rows the others.
CREATE TABLE IF NOT EXISTS refresh_derived (
    scope           TEXT NOT NULL,
    kafka_topic     TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    derived         BIGINT NOT NULL,
    run_started_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, kafka_topic, kafka_partition)
);
