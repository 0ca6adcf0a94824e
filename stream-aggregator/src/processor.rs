//! Applies a batch of consumed messages to both stores, exactly once.
//!
//! The [`Processor`] may be handed the same messages any number of times (a
//! retry after a failed write, a replay after a crash or a rebalance, a
//! re-delivery inside one batch): each message changes ClickHouse and Redis at
//! most once, because
//! * repeats of a client event id (client retries, see [`crate::dedup`]) are
//!   dropped first, by a rule that decides the same on a replay;
//! * raw rows are filtered by the per-(partition, day) watermarks of
//!   [`crate::raw`], kept in memory and re-read from ClickHouse after any error
//!   or rebalance;
//! * live units are filtered by the per-unit offsets of [`crate::live`], read
//!   from Redis on every batch and written by compare-and-set;
//! * sessions are filtered by the per-visitor guard of [`crate::visitors`]
//!   and upserted (replays write identical versions).
//!
//! Order per batch: raw rows → session plan (reads states) → live windows
//! (with each event's session id) → session rows → visitor states.
//!
//! Kafka offsets are committed by the caller only after [`Processor::apply`]
//! succeeded; the commit only decides where a replay starts, never what counts.
//!
//! What goes live is decided from the message alone, so a replay decides the
//! same: bots are left out, and so are *late* events — those the gateway
//! received after their window's end plus the allowed lateness (by the
//! gateway's receive time, not the aggregator's clock, which would differ
//! between the first run and a replay). Late events still get their raw row.

use crate::config::Fault;
use crate::dedup::{Dedup, LOOKBACK_DAYS, SLACK_SECS};
use crate::error::AggregatorError;
use crate::live::{LiveStore, Unit, UnitWrite, ANY_OFFSET};
use crate::raw::RawSink;
use crate::visitors;
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::{shard_of, window_key, window_start, WINDOW_MS};
use tally_schemas::row::{event_date, EventRow};
use tally_schemas::sketch::UniqueSketch;
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

/// What one `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows inserted into ClickHouse.
    pub raw_written: usize,
    /// Messages ClickHouse already held.
    pub raw_skipped: usize,
    /// Events added to live windows.
    pub live_written: usize,
    /// Messages live windows already held.
    pub live_skipped: usize,
    /// Events left out of live windows because they came from bots.
    pub bots: usize,
    /// Events left out of live windows because they arrived after the allowed lateness.
    pub late: usize,
    /// Event times (epoch ms) of the events this call made visible in live windows.
    pub made_visible: Vec<i64>,
    /// Session versions upserted into ClickHouse.
    pub session_versions: usize,
    /// Messages dropped as repeats of an earlier client event id.
    pub repeats: usize,
}

/// How a [`Processor`] writes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Topic the messages come from (stored with each row).
    pub topic: String,
    /// Prefix of the live keys.
    pub prefix: String,
    /// How long after a window's end an event may be received and still count live.
    pub allowed_lateness_ms: i64,
    /// Test-only fault injection (see [`Fault`]).
    pub fault: Fault,
    /// Window for dropping repeated client event ids, seconds (0 = off); see [`crate::dedup`].
    pub dedup_window_secs: i64,
}

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

/// Writes batches to a [`RawSink`] and a [`LiveStore`].
#[derive(Debug)]
pub struct Processor<R, L> {
    raw: R,
    live: L,
    settings: Settings,
    /// partition → day → highest stored offset; absent partition = not loaded.
    marks: HashMap<i32, HashMap<u16, i64>>,
    /// Recent client event ids per partition (client retries).
    dedup: Dedup,
}

impl<R: RawSink, L: LiveStore> Processor<R, L> {
    /// A processor writing to `raw` and `live` as `settings` say.
    pub fn new(raw: R, live: L, settings: Settings) -> Self {
        Processor {
            raw,
            live,
            marks: HashMap::new(),
            dedup: Dedup::new(settings.dedup_window_secs.max(0)),
            settings,
        }
    }

    /// Whether the exactly-once guards are deliberately off (chaos control run).
    fn guards_off(&self) -> bool {
        self.settings.fault == Fault::IgnoreOffsets
    }

    /// Drops cached watermarks (after a failed insert, which may have been stored).
    pub fn forget_watermarks(&mut self) {
        self.marks.clear();
    }

    /// Drops everything cached per partition (after a rebalance another process
    /// may have written): watermarks and recent ids are reloaded from ClickHouse.
    pub fn forget_partitions(&mut self) {
        self.marks.clear();
        self.dedup.forget();
    }

    /// The raw sink.
    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// The live store.
    pub fn live(&self) -> &L {
        &self.live
    }

    /// Writes `batch` (messages of each partition in offset order) to both stores.
    pub async fn apply(&mut self, batch: &[Message]) -> Result<Outcome, AggregatorError> {
        if let Err(err) = self.load_partitions(batch).await {
            self.forget_watermarks();
            return Err(err);
        }
        let mut repeats = 0;
        let batch: Vec<&Message> = batch
            .iter()
            .filter(|m| {
                let repeat = self.dedup.is_repeat(m.partition, m.offset, &m.envelope);
                repeats += usize::from(repeat);
                !repeat
            })
            .collect();
        let batch = &batch[..];
        let raw = self.write_raw(batch).await;
        if raw.is_err() {
            // An insert that failed may still have been stored: re-read before retrying.
            self.forget_watermarks();
        }
        let (raw_written, raw_skipped) = raw?;
        let sessions =
            visitors::plan(&self.live, &self.settings.prefix, batch, self.guards_off()).await?;
        let mut outcome = self.write_live(batch, &sessions.session_of).await?;
        self.raw.insert_sessions(&sessions.rows).await?;
        let conflicts = self.live.write_visitors(&sessions.writes).await?;
        if let Some(key) = conflicts.first() {
            return Err(AggregatorError::Conflict(key.clone()));
        }
        outcome.raw_written = raw_written;
        outcome.raw_skipped = raw_skipped;
        outcome.session_versions = sessions.rows.len();
        outcome.repeats = repeats;
        Ok(outcome)
    }

    /// Loads the watermarks and recent ids of partitions not seen since the last
    /// start, rebalance or failure.
    async fn load_partitions(&mut self, batch: &[Message]) -> Result<(), AggregatorError> {
        let mut earliest: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let received = earliest
                .entry(message.partition)
                .or_insert(message.envelope.received_at_ms);
            *received = (*received).min(message.envelope.received_at_ms);
        }
        for (partition, received_ms) in earliest {
            if !self.marks.contains_key(&partition) {
                let marks = self.raw.watermarks(&self.settings.topic, partition).await?;
                let marks = marks.into_iter().map(|m| (m.event_date, m.offset));
                self.marks.insert(partition, marks.collect());
            }
            if !self.dedup.is_loaded(partition) {
                let received = received_ms.div_euclid(1_000);
                let since = received - self.dedup.window_secs() - SLACK_SECS;
                let since_date = received - (LOOKBACK_DAYS + 1) * 86_400;
                let ids = self
                    .raw
                    .recent_ids(&self.settings.topic, partition, since, since_date)
                    .await?;
                self.dedup.load(partition, ids);
            }
        }
        Ok(())
    }

    async fn write_raw(&mut self, batch: &[&Message]) -> Result<(usize, usize), AggregatorError> {
        // Rows to insert per day, and the highest offset taken per (partition, day).
        let mut days: BTreeMap<u16, Vec<EventRow>> = BTreeMap::new();
        let mut taken: HashMap<(i32, u16), i64> = HashMap::new();
        let mut skipped = 0;
        for message in batch {
            let day = event_date(message.envelope.timestamp_ms);
            let stored = self
                .marks
                .get(&message.partition)
                .and_then(|days| days.get(&day))
                .copied()
                .filter(|_| !self.guards_off())
                .unwrap_or(-1);
            let last = taken.entry((message.partition, day)).or_insert(stored);
            if message.offset <= *last {
                skipped += 1;
                continue;
            }
            *last = message.offset;
            days.entry(day).or_default().push(EventRow::from_envelope(
                &message.envelope,
                &self.settings.topic,
                message.partition,
                message.offset,
            ));
        }
        let mut written = 0;
        for (day, rows) in days {
            self.raw.insert(&rows).await?;
            written += rows.len();
            for ((partition, taken_day), offset) in &taken {
                if *taken_day == day {
                    self.marks
                        .entry(*partition)
                        .or_default()
                        .insert(day, *offset);
                }
            }
        }
        Ok((written, skipped))
    }

    async fn write_live(
        &self,
        batch: &[&Message],
        session_of: &HashMap<(i32, i64), String>,
    ) -> Result<Outcome, AggregatorError> {
        let mut outcome = Outcome::default();
        let mut groups: BTreeMap<Unit, Vec<&Message>> = BTreeMap::new();
        for message in batch {
            let envelope = &message.envelope;
            match liveness(envelope, self.settings.allowed_lateness_ms) {
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
                    &self.settings.prefix,
                    &envelope.app_id,
                    window_start(envelope.timestamp_ms),
                    shard_of(message.partition),
                ),
                partition: message.partition,
            };
            groups.entry(unit).or_default().push(message);
        }
        let units: Vec<Unit> = groups.keys().cloned().collect();
        let mut states = self.live.read(&units).await?;
        if self.guards_off() {
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
                expected_offset: if self.guards_off() {
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
        let conflicts = self.live.apply(&writes).await?;
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
            tracing::warn!(key = %key, error = %err, "replacing unreadable stored sketch");
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
