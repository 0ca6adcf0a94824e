//! Client retries: the same client event id arriving again as a new Kafka
//! message (the SDK resent a batch whose answer it lost) is dropped before it
//! reaches any store, and counted in `tally_aggregator_duplicates_total`.
//!
//! The rule, decided from the messages alone so that a replay decides the same:
//! a message is a *repeat* when an earlier message (lower offset) carried the
//! same `(app_id, distinct_id, event_id)` — same app, same visitor, same
//! client event id — and the gateway received it at most `window` earlier
//! (whole seconds, as stored in ClickHouse's `received_at`), whatever the
//! event's own time (a backfill or an offline phone flushing its queue twice
//! is deduplicated like any retry). A retry travels on the same Kafka
//! partition as its original because the message key is app + visitor, so the
//! decision is per partition and needs no coordination between processes.
//! The same event id sent for two different visitors is two events (an SDK
//! never retries a message under another identity; dropping one would lose an
//! acknowledged event).
//!
//! Memory: one entry (~48 bytes) per distinct id received within the window
//! (plus [`SLACK_SECS`]), per owned partition. After a restart or rebalance a
//! partition's recent ids are reloaded from ClickHouse, where every message
//! that was not a repeat has its row (written before the offsets are committed).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use tally_schemas::Envelope;

/// Margin kept beyond the window (receive times are not strictly ordered by offset).
pub const SLACK_SECS: i64 = 120;

/// An id already stored (as reloaded from ClickHouse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenId {
    /// App.
    pub app_id: String,
    /// Visitor (`user_id`, else `anonymous_id`).
    pub distinct_id: String,
    /// Client event id.
    pub event_id: String,
    /// Offset of the stored message.
    pub offset: i64,
    /// When the gateway received it, epoch seconds.
    pub received_secs: i64,
}

#[derive(Debug, Default)]
struct PartitionIds {
    seen: HashMap<u128, (i64, i64)>,
    order: VecDeque<(i64, u128)>,
    newest_secs: i64,
}

/// Recent ids per partition.
#[derive(Debug)]
pub struct Dedup {
    window_secs: i64,
    partitions: HashMap<i32, PartitionIds>,
}

fn key(app_id: &str, distinct_id: &str, event_id: &str) -> u128 {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        app_id.hash(&mut hasher);
        distinct_id.hash(&mut hasher);
        event_id.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

impl Dedup {
    /// Deduplicates within `window_secs` (0 turns deduplication off).
    pub fn new(window_secs: i64) -> Self {
        Dedup {
            window_secs,
            partitions: HashMap::new(),
        }
    }

    /// Whether deduplication is on.
    pub fn enabled(&self) -> bool {
        self.window_secs > 0
    }

    /// The window, seconds.
    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// Whether `partition`'s recent ids are loaded.
    pub fn is_loaded(&self, partition: i32) -> bool {
        !self.enabled() || self.partitions.contains_key(&partition)
    }

    /// Installs `partition`'s recent ids (after a start or rebalance).
    pub fn load(&mut self, partition: i32, ids: Vec<SeenId>) {
        let mut ids = ids;
        ids.sort_by_key(|id| (id.received_secs, id.offset));
        let state = self.partitions.entry(partition).or_default();
        for id in ids {
            state.remember(
                key(&id.app_id, &id.distinct_id, &id.event_id),
                id.offset,
                id.received_secs,
            );
        }
    }

    /// Forgets every partition (they are reloaded before their next message).
    pub fn forget(&mut self) {
        self.partitions.clear();
    }

    /// Whether the message at `partition`/`offset` repeats an earlier one; if
    /// not, it is remembered.
    pub fn is_repeat(&mut self, partition: i32, offset: i64, envelope: &Envelope) -> bool {
        if !self.enabled() {
            return false;
        }
        let window = self.window_secs;
        let received = envelope.received_at_ms.div_euclid(1_000);
        let state = self.partitions.entry(partition).or_default();
        let id = key(&envelope.app_id, &envelope.distinct_id, &envelope.event_id);
        if let Some(&(first_offset, first_received)) = state.seen.get(&id) {
            if first_offset < offset && received - first_received <= window {
                return true;
            }
            if first_offset == offset {
                return false; // the same message again (a replay)
            }
        }
        state.remember(id, offset, received);
        state.evict(window);
        false
    }

    /// Ids held (all partitions).
    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.seen.len()).sum()
    }

    /// Whether no ids are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartitionIds {
    /// Records a message that is not a repeat: the newest copy of an id is the
    /// one a later message is compared with.
    fn remember(&mut self, id: u128, offset: i64, received_secs: i64) {
        self.seen.insert(id, (offset, received_secs));
        self.order.push_back((received_secs, id));
        self.newest_secs = self.newest_secs.max(received_secs);
    }

    fn evict(&mut self, window: i64) {
        let horizon = self.newest_secs - window - SLACK_SECS;
        while let Some(&(received, id)) = self.order.front() {
            if received >= horizon {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&id).is_some_and(|(_, r)| *r == received) {
                self.seen.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(app: &str, id: &str, received_secs: i64) -> Envelope {
        message_of(app, "v", id, received_secs)
    }

    fn message_of(app: &str, visitor: &str, id: &str, received_secs: i64) -> Envelope {
        serde_json::from_value(serde_json::json!({
            "event_id": id, "app_id": app, "name": "e", "distinct_id": visitor,
            "timestamp_ms": received_secs * 1_000, "received_at_ms": received_secs * 1_000 + 250,
        }))
        .unwrap()
    }

    #[test]
    fn a_retry_within_the_window_is_a_repeat_and_later_ones_are_not() {
        let mut dedup = Dedup::new(600);
        assert!(!dedup.is_repeat(0, 1, &message("a", "x", 1_000)));
        assert!(dedup.is_repeat(0, 2, &message("a", "x", 1_100)));
        assert!(
            !dedup.is_repeat(0, 3, &message("b", "x", 1_100)),
            "other app"
        );
        assert!(
            !dedup.is_repeat(0, 1, &message("a", "x", 1_000)),
            "replay of the original"
        );
        assert!(
            dedup.is_repeat(0, 2, &message("a", "x", 1_100)),
            "replay of the repeat"
        );
        assert!(
            !dedup.is_repeat(0, 9, &message("a", "x", 1_601)),
            "outside the window"
        );
    }

    #[test]
    fn reloaded_ids_decide_like_the_first_run() {
        let mut first = Dedup::new(600);
        let stream: Vec<(i64, Envelope)> = (0..200)
            .map(|i| (i, message("a", &format!("id{}", i % 70), 1_000 + i * 7)))
            .collect();
        let decisions: Vec<bool> = stream
            .iter()
            .map(|(offset, e)| first.is_repeat(0, *offset, e))
            .collect();
        // Crash after offset 120: the stored rows are the non-repeats up to there.
        let stored: Vec<SeenId> = stream[..=120]
            .iter()
            .zip(&decisions)
            .filter(|(_, repeat)| !**repeat)
            .map(|((offset, e), _)| SeenId {
                app_id: e.app_id.clone(),
                distinct_id: e.distinct_id.clone(),
                event_id: e.event_id.clone(),
                offset: *offset,
                received_secs: e.received_at_ms / 1_000,
            })
            .collect();
        let mut second = Dedup::new(600);
        second.load(0, stored);
        let replayed: Vec<bool> = stream[100..]
            .iter()
            .map(|(offset, e)| second.is_repeat(0, *offset, e))
            .collect();
        assert_eq!(replayed, decisions[100..].to_vec());
        assert!(decisions.iter().filter(|d| **d).count() > 50);
    }

    #[test]
    fn a_zero_window_turns_deduplication_off() {
        let mut off = Dedup::new(0);
        assert!(!off.is_repeat(0, 1, &message("a", "x", 10)));
        assert!(!off.is_repeat(0, 2, &message("a", "x", 10)));
    }

    #[test]
    fn a_retry_of_an_old_event_is_a_repeat_whatever_its_age() {
        let mut on = Dedup::new(600);
        for (offset, days) in [(1, 8), (3, 400), (5, 729)] {
            let mut old = message("a", &format!("old{days}"), 100_000_000);
            old.timestamp_ms -= days * 86_400_000;
            assert!(
                !on.is_repeat(0, offset, &old),
                "first copy, {days} days old"
            );
            assert!(on.is_repeat(0, offset + 1, &old), "retry, {days} days old");
        }
    }

    #[test]
    fn the_same_id_of_two_visitors_is_two_events() {
        let mut dedup = Dedup::new(600);
        assert!(!dedup.is_repeat(0, 1, &message_of("a", "u1", "x", 1_000)));
        assert!(!dedup.is_repeat(0, 2, &message_of("a", "u2", "x", 1_000)));
        assert!(dedup.is_repeat(0, 3, &message_of("a", "u2", "x", 1_001)));
        // Reloaded after a restart, the rule is the same.
        let mut reloaded = Dedup::new(600);
        let seen = |visitor: &str, offset| SeenId {
            app_id: "a".into(),
            distinct_id: visitor.into(),
            event_id: "x".into(),
            offset,
            received_secs: 1_000,
        };
        reloaded.load(0, vec![seen("u1", 1), seen("u2", 2)]);
        assert!(!reloaded.is_repeat(0, 2, &message_of("a", "u2", "x", 1_000)));
        assert!(reloaded.is_repeat(0, 3, &message_of("a", "u2", "x", 1_001)));
        assert!(!reloaded.is_repeat(0, 4, &message_of("a", "u3", "x", 1_001)));
    }
}
