//! Live windows: consumed events into the 5-second window units in Redis,
//! exactly once (see `crate::live` for the store and its compare-and-set).
//!
//! What goes live is decided from the message alone, so a replay decides the
//! same: bots are left out, and so are *late* events — those the gateway
//! received after their window's end plus the allowed lateness (by the
//! gateway's receive time, not the aggregator's clock, which would differ
//! between the first run and a replay). Each (window shard, partition) unit
//! keeps the last offset applied: messages at or below it are skipped, and a
//! write whose stored offset changed meanwhile is refused as a conflict.

use crate::error::AggregatorError;
use crate::live::{LiveStore, Unit, UnitWrite, ANY_OFFSET};
use crate::message::{debug_assert_offset_order, Message};
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::{shard_of, window_key, window_start, WINDOW_MS};
use tally_schemas::sketch::UniqueSketch;
use tally_schemas::Envelope;

/// Whether an event belongs in the live windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Counted.
    Live,
    /// Sent by a bot.
    Bot,
    /// Received after its window's end plus the allowed lateness.
    Late,
}

/// Decides [`Liveness`] from the event alone (replays decide the same).
pub fn liveness(envelope: &Envelope, allowed_lateness_ms: i64) -> Liveness {
    let window_end = window_start(envelope.timestamp_ms) + WINDOW_MS;
    if envelope.enrichment.is_bot {
        Liveness::Bot
    } else if envelope.received_at_ms > window_end.saturating_add(allowed_lateness_ms) {
        Liveness::Late
    } else {
        Liveness::Live
    }
}

/// How events are written to the windows.
#[derive(Debug, Clone, Copy)]
pub struct Windows<'a> {
    /// Prefix of the Redis keys.
    pub prefix: &'a str,
    /// How long after a window's end an event may be received and still count.
    pub allowed_lateness_ms: i64,
    /// Chaos control run: stored offsets are ignored.
    pub guards_off: bool,
}

/// What one [`Windows::write`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowOutcome {
    /// Events added to live windows.
    pub live_written: usize,
    /// Messages live windows already held.
    pub live_skipped: usize,
    /// Events left out because they came from bots.
    pub bots: usize,
    /// Events left out because they arrived after the allowed lateness.
    pub late: usize,
    /// Event times (epoch ms) of the events made visible.
    pub made_visible: Vec<i64>,
}

impl Windows<'_> {
    /// Adds `batch` (each partition's messages in offset order) to the
    /// windows; `session_of` gives each event's session id.
    pub async fn write<L: LiveStore>(
        &self,
        live: &L,
        batch: &[&Message],
        session_of: &HashMap<(i32, i64), String>,
    ) -> Result<WindowOutcome, AggregatorError> {
        debug_assert_offset_order(batch.iter().copied());
        let mut outcome = WindowOutcome::default();
        let mut groups: BTreeMap<Unit, Vec<&Message>> = BTreeMap::new();
        for message in batch {
            let envelope = &message.envelope;
            match liveness(envelope, self.allowed_lateness_ms) {
                Liveness::Live => {}
                Liveness::Bot => {
                    outcome.bots += 1;
                    continue;
                }
                Liveness::Late => {
                    outcome.late += 1;
                    continue;
                }
            }
            let unit = Unit {
                key: window_key(
                    self.prefix,
                    &envelope.app_id,
                    window_start(envelope.timestamp_ms),
                    shard_of(message.partition),
                ),
                partition: message.partition,
            };
            groups.entry(unit).or_default().push(message);
        }
        let units: Vec<Unit> = groups.keys().cloned().collect();
        let mut states = live.read(&units).await?;
        if self.guards_off {
            for state in &mut states {
                state.offset = -1;
            }
        }
        let mut writes = Vec::new();
        for ((unit, messages), state) in groups.into_iter().zip(states) {
            let mut last = state.offset;
            let mut users = UniqueSketch::new();
            let mut sessions = UniqueSketch::new();
            let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
            let mut total = 0u64;
            for message in messages {
                if message.offset <= last {
                    outcome.live_skipped += 1;
                    continue;
                }
                last = message.offset;
                total += 1;
                *by_name.entry(message.envelope.name.clone()).or_default() += 1;
                users.insert(&message.envelope.distinct_id);
                if let Some(id) = session_of.get(&(message.partition, message.offset)) {
                    sessions.insert(id);
                }
                outcome.made_visible.push(message.envelope.timestamp_ms);
            }
            if total == 0 {
                continue;
            }
            merge_stored(&mut users, state.sketch.as_deref(), &unit.key)?;
            merge_stored(&mut sessions, state.sessions.as_deref(), &unit.key)?;
            outcome.live_written += usize::try_from(total).unwrap_or(usize::MAX);
            writes.push(UnitWrite {
                expected_offset: if self.guards_off {
                    ANY_OFFSET
                } else {
                    state.offset
                },
                unit,
                new_offset: last,
                total,
                by_name,
                sketch: users.to_bytes(),
                sessions: sessions.to_bytes(),
            });
        }
        let conflicts = live.apply(&writes).await?;
        if let Some(unit) = conflicts.first() {
            return Err(AggregatorError::Conflict(unit.key.clone()));
        }
        Ok(outcome)
    }
}

/// Merges a stored sketch into `sketch` (an unreadable one is replaced, with a warning).
fn merge_stored(
    sketch: &mut UniqueSketch,
    stored: Option<&[u8]>,
    key: &str,
) -> Result<(), AggregatorError> {
    match stored.map(UniqueSketch::from_bytes) {
        None => Ok(()),
        Some(Ok(stored)) => Ok(sketch.merge(&stored)?),
        Some(Err(err)) => {
            crate::metrics::unreadable_state("sketch", key, &err);
            Ok(())
        }
    }
}
