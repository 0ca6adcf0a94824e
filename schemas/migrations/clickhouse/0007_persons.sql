-- Persons (issue 16): which person each distinct id belongs to, and each
-- person's traits. Both are replace-on-write tables written by the aggregator:
-- every change is a new row with a higher `version` (a per-app counter kept
-- with the identity state in Redis), so the highest version per key is the
-- current state — read with argMax(…, version) or FINAL, both valid on
-- ClickHouse 18.16 and current. A distinct id without a row is its own person.
-- Column order is the RowBinary contract of schemas/src/person.rs.
CREATE TABLE IF NOT EXISTS person_distinct_ids
(
    app_id      String,
    distinct_id String,
    person_id   String,
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app_id, distinct_id);

CREATE TABLE IF NOT EXISTS persons
(
    app_id      String,
    person_id   String,
    prop_keys   Array(String),
    prop_values Array(String),
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app_id, person_id);
