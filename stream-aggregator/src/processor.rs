//! Applies a batch of consumed messages to both stores, exactly once.
//!
//! The [`Processor`] may be handed the same messages any number of times (a
//! retry after a failed write, a replay after a crash or a rebalance, a
//! re-delivery inside one batch): each message changes ClickHouse and Redis at
//! most once, because
//! * raw rows are filtered by the per-(partition, day) watermarks of
//!   [`crate::raw`], kept in memory and re-read from ClickHouse after any error
//!   or rebalance;
//! * live units are filtered by the per-unit offsets of [`crate::live`], read
//!   from Redis on every batch and written by compare-and-set.
//!
//! Kafka offsets are committed by the caller only after [`Processor::apply`]
//! succeeded; the commit only decides where a replay starts, never what counts.

use crate::error::AggregatorError;
use crate::live::{LiveStore, Unit, UnitWrite};
use crate::raw::RawSink;
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::{window_key, window_start};
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows inserted into ClickHouse.
    pub raw_written: usize,
    /// Messages ClickHouse already held.
    pub raw_skipped: usize,
    /// Events added to live windows.
    pub live_written: usize,
    /// Messages live windows already held.
    pub live_skipped: usize,
}

/// Writes batches to a [`RawSink`] and a [`LiveStore`].
#[derive(Debug)]
pub struct Processor<R, L> {
    raw: R,
    live: L,
    topic: String,
    prefix: String,
    /// partition → day → highest stored offset; absent partition = not loaded.
    marks: HashMap<i32, HashMap<u16, i64>>,
}

impl<R: RawSink, L: LiveStore> Processor<R, L> {
    /// A processor for messages of `topic`, writing live keys under `prefix`.
    pub fn new(raw: R, live: L, topic: &str, prefix: &str) -> Self {
        Processor {
            raw,
            live,
            topic: topic.to_owned(),
            prefix: prefix.to_owned(),
            marks: HashMap::new(),
        }
    }

    /// Drops cached watermarks (after a rebalance another process may have written).
    pub fn forget_watermarks(&mut self) {
        self.marks.clear();
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
        let raw = self.write_raw(batch).await;
        if raw.is_err() {
            // An insert that failed may still have been stored: re-read before retrying.
            self.forget_watermarks();
        }
        let (raw_written, raw_skipped) = raw?;
        let (live_written, live_skipped) = self.write_live(batch).await?;
        Ok(Outcome {
            raw_written,
            raw_skipped,
            live_written,
            live_skipped,
        })
    }

    async fn write_raw(&mut self, batch: &[Message]) -> Result<(usize, usize), AggregatorError> {
        for message in batch {
            if !self.marks.contains_key(&message.partition) {
                let marks = self.raw.watermarks(&self.topic, message.partition).await?;
                self.marks.insert(
                    message.partition,
                    marks
                        .into_iter()
                        .map(|m| (m.event_date, m.offset))
                        .collect(),
                );
            }
        }
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
                .unwrap_or(-1);
            let last = taken.entry((message.partition, day)).or_insert(stored);
            if message.offset <= *last {
                skipped += 1;
                continue;
            }
            *last = message.offset;
            days.entry(day).or_default().push(EventRow::from_envelope(
                &message.envelope,
                &self.topic,
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

    async fn write_live(&self, batch: &[Message]) -> Result<(usize, usize), AggregatorError> {
        let mut groups: BTreeMap<Unit, Vec<&Message>> = BTreeMap::new();
        for message in batch {
            let envelope = &message.envelope;
            let unit = Unit {
                key: window_key(
                    &self.prefix,
                    &envelope.app_id,
                    window_start(envelope.timestamp_ms),
                ),
                partition: message.partition,
            };
            groups.entry(unit).or_default().push(message);
        }
        let units: Vec<Unit> = groups.keys().cloned().collect();
        let states = self.live.read(&units).await?;
        let (mut written, mut skipped) = (0, 0);
        let mut writes = Vec::new();
        for ((unit, messages), state) in groups.into_iter().zip(states) {
            let mut last = state.offset;
            let mut users = UniqueSketch::new();
            let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
            let mut total = 0u64;
            for message in messages {
                if message.offset <= last {
                    skipped += 1;
                    continue;
                }
                last = message.offset;
                total += 1;
                *by_name.entry(message.envelope.name.clone()).or_default() += 1;
                users.insert(&message.envelope.distinct_id);
            }
            if total == 0 {
                continue;
            }
            if let Some(stored) = state.sketch.as_deref() {
                match UniqueSketch::from_bytes(stored) {
                    Ok(stored) => users.merge(&stored)?,
                    Err(err) => {
                        tracing::warn!(key = %unit.key, error = %err, "replacing unreadable stored sketch");
                    }
                }
            }
            written += usize::try_from(total).unwrap_or(usize::MAX);
            writes.push(UnitWrite {
                unit,
                expected_offset: state.offset,
                new_offset: last,
                total,
                by_name,
                sketch: users.to_bytes(),
            });
        }
        let conflicts = self.live.apply(&writes).await?;
        if let Some(unit) = conflicts.first() {
            return Err(AggregatorError::Conflict(unit.key.clone()));
        }
        Ok((written, skipped))
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
