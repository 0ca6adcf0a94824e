//! Live metrics: 5-second tumbling windows by event time and their Redis layout.
//!
//! This module is the contract between the writer (stream-aggregator) and the
//! reader (query-service).
//!
//! Each app's window is split over [`LIVE_SHARDS`] Redis hashes (seed 001's
//! split counters, summed on read), so a hot app's writes spread over several
//! keys — and over several nodes of a Redis Cluster:
//! `{prefix}:w:{app_id}:{window_start_ms}:{shard}`, where Kafka partition P
//! writes shard `P mod LIVE_SHARDS`. Inside a hash each partition owns its own
//! fields, so two aggregator processes never write the same field, and a
//! partition's fields carry the last Kafka offset applied to them (the
//! exactly-once guard):
//!
//! | field               | value                                              |
//! |---------------------|----------------------------------------------------|
//! | `p{P}:off`          | last Kafka offset of partition P applied here       |
//! | `p{P}:n`            | events from partition P in the window               |
//! | `p{P}:e:{name}`     | events named `name` from partition P                |
//! | `p{P}:hll`          | [`UniqueSketch`] of the window's users from P        |
//! | `p{P}:ses`          | [`UniqueSketch`] of the window's session ids from P  |
//!
//! A reader fetches the window's shard hashes, sums the counters and merges the
//! sketches over all partitions. Keys expire (the aggregator sets a TTL on every
//! write, `TALLY_LIVE_TTL_SECS`, default 48 h). Bots and events received after a
//! window's allowed lateness are not counted here (they are in ClickHouse).

use crate::sketch::{SketchError, UniqueSketch};
use std::collections::BTreeMap;

/// Window length in milliseconds.
pub const WINDOW_MS: i64 = 5_000;

/// Start (epoch ms) of the window containing `ts_ms`.
pub fn window_start(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

/// Number of Redis hashes one app-window is split over. Part of the contract:
/// changing it needs writers and readers changed together.
pub const LIVE_SHARDS: i32 = 4;

/// The shard Kafka partition `partition` writes.
pub fn shard_of(partition: i32) -> i32 {
    partition.rem_euclid(LIVE_SHARDS)
}

/// Redis key of one shard of an app's window.
pub fn window_key(prefix: &str, app_id: &str, window_start_ms: i64, shard: i32) -> String {
    format!("{prefix}:w:{app_id}:{window_start_ms}:{shard}")
}

/// Redis keys of every shard of an app's window, in shard order.
pub fn window_keys(prefix: &str, app_id: &str, window_start_ms: i64) -> Vec<String> {
    (0..LIVE_SHARDS)
        .map(|shard| window_key(prefix, app_id, window_start_ms, shard))
        .collect()
}

/// Field holding partition `p`'s last applied offset.
pub fn offset_field(partition: i32) -> String {
    format!("p{partition}:off")
}

/// Field holding partition `p`'s event count.
pub fn total_field(partition: i32) -> String {
    format!("p{partition}:n")
}

/// Field holding partition `p`'s count of events named `name`.
pub fn name_field(partition: i32, name: &str) -> String {
    format!("p{partition}:e:{name}")
}

/// Field holding partition `p`'s sketch.
pub fn sketch_field(partition: i32) -> String {
    format!("p{partition}:hll")
}

/// Field holding partition `p`'s sketch of session ids active in the window.
pub fn sessions_field(partition: i32) -> String {
    format!("p{partition}:ses")
}

/// Redis key of a visitor's session state (written by the aggregator only).
pub fn visitor_key(prefix: &str, app_id: &str, distinct_id: &str) -> String {
    format!("{prefix}:v:{app_id}:{distinct_id}")
}

/// Redis key of the raw-row watermarks of `topic`'s `partition` (the
/// aggregator's per-partition claim; see `stream-aggregator/src/raw_writer.rs`).
/// The topic and partition are its hash tag: the claim's lock
/// ([`raw_lock_key`]) sits in the same Redis Cluster slot, so one script
/// takes both. (Marks under the older, untagged key are not found: the next
/// claim reads the watermarks from ClickHouse, which is always exact.)
pub fn raw_marks_key(prefix: &str, topic: &str, partition: i32) -> String {
    format!("{prefix}:raw:{{{topic}:{partition}}}")
}

/// Redis key of the lock of a raw-row claim (`raw_marks_key` + `:lock`).
pub fn raw_lock_key(marks_key: &str) -> String {
    format!("{marks_key}:lock")
}

/// Redis key of a live-stream token, by the SHA-256 hex of the token (the
/// query service's; see `query-service/src/stream_token.rs`).
pub fn stream_token_key(prefix: &str, token_hash: &str) -> String {
    format!("{prefix}:stream_token:{token_hash}")
}

/// One window as a reader sees it, summed over partitions.
#[derive(Debug, Clone, Default)]
pub struct WindowSnapshot {
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Events in the window.
    pub total: u64,
    /// Events per name.
    pub by_name: BTreeMap<String, u64>,
    /// Users seen in the window (all partitions merged).
    pub users: UniqueSketch,
    /// Sessions active in the window (all partitions merged).
    pub sessions: UniqueSketch,
}

/// Error reading a window hash.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A counter field was not an integer.
    #[error("field {0} is not a counter")]
    BadCounter(String),
    /// A sketch field did not decode.
    #[error("field {field}: {source}")]
    BadSketch {
        /// Field name.
        field: String,
        /// Decoding error.
        source: SketchError,
    },
}

impl WindowSnapshot {
    /// Sums a window hash (as returned by `HGETALL`) over partitions.
    pub fn from_fields(
        start_ms: i64,
        fields: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Self, SnapshotError> {
        let mut snapshot = WindowSnapshot {
            start_ms,
            ..Default::default()
        };
        for (field, value) in fields {
            let Some((_partition, rest)) = field.split_once(':') else {
                continue;
            };
            let counter = || {
                std::str::from_utf8(&value)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| SnapshotError::BadCounter(field.clone()))
            };
            if rest == "n" {
                snapshot.total += counter()?;
            } else if let Some(name) = rest.strip_prefix("e:") {
                *snapshot.by_name.entry(name.to_owned()).or_default() += counter()?;
            } else if rest == "hll" || rest == "ses" {
                let bad = |source| SnapshotError::BadSketch {
                    field: field.clone(),
                    source,
                };
                let sketch = UniqueSketch::from_bytes(&value).map_err(bad)?;
                let target = if rest == "hll" {
                    &mut snapshot.users
                } else {
                    &mut snapshot.sessions
                };
                target.merge(&sketch).map_err(bad)?;
            }
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_layout() {
        assert_eq!(window_key("t", "app", 5_000, 2), "t:w:app:5000:2");
        assert_eq!(visitor_key("t", "app", "u1"), "t:v:app:u1");
        assert_eq!(raw_marks_key("t", "events", 3), "t:raw:{events:3}");
        assert_eq!(raw_lock_key("t:raw:events:3"), "t:raw:events:3:lock");
        assert_eq!(stream_token_key("t", "ab12"), "t:stream_token:ab12");
    }

    proptest! {
        #[test]
        fn window_contains_its_timestamp(ts in -1_000_000_000_000i64..4_000_000_000_000) {
            let start = window_start(ts);
            prop_assert!(start <= ts && ts < start + WINDOW_MS);
            prop_assert_eq!(start % WINDOW_MS, 0);
            prop_assert_eq!(window_start(start), start);
        }
    }

    #[test]
    fn sums_partitions_and_merges_sketches() {
        let mut a = UniqueSketch::new();
        a.insert("u1");
        a.insert("u2");
        let mut b = UniqueSketch::new();
        b.insert("u2");
        b.insert("u3");
        let fields = vec![
            (total_field(0), b"3".to_vec()),
            (total_field(1), b"2".to_vec()),
            (name_field(0, "page_view"), b"3".to_vec()),
            (name_field(1, "page_view"), b"1".to_vec()),
            (name_field(1, "a:b"), b"1".to_vec()),
            (offset_field(0), b"17".to_vec()),
            (sketch_field(0), a.to_bytes()),
            (sketch_field(1), b.to_bytes()),
        ];
        let mut snapshot = WindowSnapshot::from_fields(5_000, fields).unwrap();
        assert_eq!(snapshot.total, 5);
        assert_eq!(snapshot.by_name["page_view"], 4);
        assert_eq!(snapshot.by_name["a:b"], 1);
        assert_eq!(snapshot.users.estimate(), 3);
    }

    #[test]
    fn rejects_corrupt_fields() {
        let bad = vec![(total_field(0), b"x".to_vec())];
        assert!(WindowSnapshot::from_fields(0, bad).is_err());
        let bad = vec![(sketch_field(0), b"\x09".to_vec())];
        assert!(WindowSnapshot::from_fields(0, bad).is_err());
    }
}
