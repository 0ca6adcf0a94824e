-- Times of a session's entry and exit page views, so that the aggregator can
-- rebuild a session it no longer holds in Redis from its row (a late event of
-- any age joins or merges the session it belongs to; see
-- stream-aggregator/src/visitors.rs). Appended so that older rows read as 0.
-- Valid on ClickHouse 18.16 and current.
ALTER TABLE sessions
    ADD COLUMN entry_ms UInt64 DEFAULT 0,
    ADD COLUMN exit_ms UInt64 DEFAULT 0;
