//! The consumed message: the vocabulary every step of the aggregator shares.
//!
//! Contract, relied on by the raw writer (watermarks), the live windows (unit
//! offsets), the visitors (guards) and the dedup rule: within a batch, the
//! messages of one Kafka partition are in offset order (strictly increasing).
//! Batches of different partitions may interleave. [`debug_assert_offset_order`]
//! checks it in debug builds wherever a batch enters a step.

use std::collections::BTreeMap;
use tally_schemas::Envelope;

/// One consumed, decoded message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The event.
    pub envelope: Envelope,
}

/// Derives an event's enrichment again from what the topic carries (its
/// anonymised IP, user agent and properties): how a replay brings a corrected
/// classification (a new geo-IP database, a new bot rule) to history.
pub trait Reenrich: Send + Sync + std::fmt::Debug {
    /// Rewrites `envelope.enrichment` in place.
    fn reenrich(&self, envelope: &mut Envelope);
}

/// Whether each partition's messages are in strictly increasing offset order.
pub fn in_offset_order<'a>(messages: impl IntoIterator<Item = &'a Message>) -> bool {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    messages.into_iter().all(|m| {
        let previous = last.insert(m.partition, m.offset);
        previous.is_none_or(|p| p < m.offset)
    })
}

/// Checks the offset-order contract (debug builds only).
pub fn debug_assert_offset_order<'a>(messages: impl IntoIterator<Item = &'a Message>) {
    debug_assert!(
        in_offset_order(messages),
        "a partition's messages must be in offset order"
    );
}

/// Lowest offset of each partition among `messages`.
pub fn first_offsets<'a>(messages: impl IntoIterator<Item = &'a Message>) -> BTreeMap<i32, i64> {
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for message in messages {
        let offset = first.entry(message.partition).or_insert(message.offset);
        *offset = (*offset).min(message.offset);
    }
    first
}

/// Highest offset of each partition among `messages`.
pub fn last_offsets<'a>(messages: impl IntoIterator<Item = &'a Message>) -> BTreeMap<i32, i64> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for message in messages {
        let offset = last.entry(message.partition).or_insert(message.offset);
        *offset = (*offset).max(message.offset);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> Message {
        Message {
            partition,
            offset,
            envelope: serde_json::from_value(serde_json::json!({
                "event_id": "e", "app_id": "a", "name": "n", "distinct_id": "v",
                "timestamp_ms": 0, "received_at_ms": 0,
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn offset_order_is_per_partition() {
        assert!(in_offset_order(&[at(0, 1), at(1, 0), at(0, 2), at(1, 5)]));
        assert!(!in_offset_order(&[at(0, 2), at(1, 0), at(0, 2)]));
        assert!(!in_offset_order(&[at(0, 3), at(0, 1)]));
        let all = [at(0, 4), at(1, 9), at(0, 7)];
        assert_eq!(first_offsets(&all), [(0, 4), (1, 9)].into());
        assert_eq!(last_offsets(&all), [(0, 7), (1, 9)].into());
    }
}
