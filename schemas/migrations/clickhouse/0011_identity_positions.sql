-- Identity rows carry the Kafka position of the identity event that wrote
-- them (issue 16). The refresher and the readers find the identity changes a
-- run has not derived as the rows above the derived offsets of their
-- partitions — complete, because the aggregator commits an offset only after
-- its inserts — instead of as versions above a mark: versions are allocated
-- in Redis before their rows are inserted, so with several aggregator
-- processes a lower version can land after a higher one was already taken
-- as the mark. Rows without a position (written before this migration, or by
-- tools writing ClickHouse directly) keep being followed by version.
-- Valid on ClickHouse 18.16 and current (ALTER TABLE … ADD COLUMN).
ALTER TABLE person_distinct_ids
    ADD COLUMN kafka_topic String DEFAULT '',
    ADD COLUMN kafka_partition UInt32 DEFAULT 0,
    ADD COLUMN kafka_offset UInt64 DEFAULT 0;
