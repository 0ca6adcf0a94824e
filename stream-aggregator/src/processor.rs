//! Applies a batch of consumed messages to both stores, exactly once.
//!
//! The [`Processor`] may be handed the same messages any number of times (a
//! retry after a failed write, a replay after a crash or a rebalance, a
//! re-delivery inside one batch): each message changes ClickHouse and Redis at
//! most once, because
//! * repeats of a client event id (client retries, see [`crate::dedup`]) are
//!   dropped first, by a rule that decides the same on a replay;
//! * raw rows are filtered by the per-(partition, day) watermarks, read under
//!   a per-partition claim so that even two writers of one partition never
//!   store a row twice (see [`crate::raw_writer`]);
//! * live units are filtered by the per-unit offsets of [`crate::live`], read
//!   from Redis on every batch and written by compare-and-set;
//! * sessions are filtered by the per-visitor guard of [`crate::visitors`]
//!   and upserted (replays write identical versions);
//! * events of a deleted person (a tombstoned distinct id) are dropped
//!   before anything, like repeats;
//! * identity events change the identity state idempotently and their rows
//!   are upserted by version (see [`crate::identity`]): a replay rewrites the
//!   current rows, never a wrong one.
//!
//! Order: live step (repeats decided, sessions applied in memory, live windows
//! with each event's session id), then the full step (raw rows → identity
//! rows → session rows → visitor states); see [`Pending`].
//!
//! Kafka offsets are committed by the caller only after [`Processor::apply_all`]
//! succeeded; the commit only decides where a replay starts, never what counts.
//!
//! What goes live is decided from the message alone, so a replay decides the
//! same: bots are left out, and so are *late* events — those the gateway
//! received after their window's end plus the allowed lateness (by the
//! gateway's receive time, not the aggregator's clock, which would differ
//! between the first run and a replay). Late events still get their raw row.

use crate::config::Fault;
use crate::dedup::{Dedup, SLACK_SECS};
use crate::error::AggregatorError;
use crate::live::LiveStore;
pub use crate::message::Message;
use crate::message::{first_offsets, last_offsets};
use crate::raw::RawSink;
use crate::raw_writer::RowWriter;
use crate::visitors::{Scope, Sessions};
use crate::windows::Windows;
pub use crate::windows::{liveness, Liveness};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tally_common::Clock;
use tally_schemas::person::identity_event;
use tally_schemas::session::SessionRow;

/// Consumed messages not yet in every store, and how far the live step got.
///
/// Two steps with two speeds: [`Processor::apply_live`] makes new messages
/// visible in the live windows (run often: freshness), [`Processor::apply_all`]
/// writes raw rows, sessions and visitor states (run on large batches: bigger
/// ClickHouse inserts), after which the offsets may be committed. A crash
/// between the two is a replay like any other: the live windows' offsets skip
/// what they already hold.
#[derive(Debug, Default)]
pub struct Pending {
    messages: Vec<Message>,
    /// Messages handled by the live step.
    live_done: usize,
    /// Repeat decision of each handled message.
    repeat: Vec<bool>,
    /// Visitor states of the handled messages.
    sessions: Sessions,
    /// The held visitor states must be re-read before use.
    sessions_stale: bool,
}

impl Pending {
    /// Adds a consumed message (each partition's in offset order).
    pub fn push(&mut self, message: Message) {
        debug_assert!(
            self.messages
                .iter()
                .rev()
                .find(|m| m.partition == message.partition)
                .is_none_or(|m| m.offset < message.offset),
            "a partition's messages must be in offset order"
        );
        self.messages.push(message);
    }

    /// Messages pending.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Messages the live step has not handled yet.
    pub fn live_backlog(&self) -> usize {
        self.messages.len() - self.live_done
    }

    /// Keeps only the messages of partitions `keep` accepts; the live step runs
    /// again for them (its writes are idempotent) with freshly read states.
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        let mut messages = std::mem::take(&mut self.messages);
        messages.retain(|m| keep(m.partition));
        self.clear();
        self.messages = messages;
    }

    /// Marks the held visitor states stale (after a rebalance another process may
    /// have written them).
    pub fn invalidate(&mut self) {
        self.sessions_stale = true;
    }

    fn fresh(&self) -> Vec<&Message> {
        non_repeats(&self.messages, &self.repeat)
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.repeat.clear();
        self.live_done = 0;
        self.sessions.reset();
        self.sessions_stale = false;
    }
}

/// The messages whose repeat decision (same index in `repeat`) is "no".
fn non_repeats<'a>(messages: &'a [Message], repeat: &[bool]) -> Vec<&'a Message> {
    messages
        .iter()
        .zip(repeat)
        .filter(|(_, repeat)| !**repeat)
        .map(|(m, _)| m)
        .collect()
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
    /// Events dropped because their person was deleted.
    pub deleted_person_events: usize,
    /// Identity events applied (`identify`, `alias`).
    pub identity_events: usize,
    /// Identity rows upserted into ClickHouse (distinct ids and persons).
    pub identity_rows: usize,
    /// Partition claims that expired during an insert.
    pub claims_lost: Vec<String>,
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
    /// How long a visitor's session state lives in Redis after its last write, ms.
    pub visitor_ttl_ms: i64,
    /// The wall clock (bounds the sessions of visitors without a stored state).
    pub clock: Arc<dyn Clock>,
}

/// Latest event time the gateway lets through, after receipt (it clamps later ones).
pub const MAX_FUTURE_MS: i64 = 23 * 3_600_000;

/// Clock difference tolerated between the gateway and the aggregator.
const CLOCK_SKEW_MS: i64 = 3_600_000;

/// Writes batches to a [`RawSink`] and a [`LiveStore`].
#[derive(Debug)]
pub struct Processor<R, L> {
    raw: R,
    live: L,
    settings: Settings,
    /// This process's token for partition claims (see [`crate::raw_writer`]).
    token: String,
    /// Recent client event ids per partition (client retries).
    dedup: Dedup,
    /// Partitions whose raw rows this process has written (see
    /// [`RowWriter::trusted`]).
    written_partitions: HashSet<i32>,
}

impl<R: RawSink, L: LiveStore> Processor<R, L> {
    /// A processor writing to `raw` and `live` as `settings` say.
    pub fn new(raw: R, live: L, settings: Settings) -> Self {
        Processor {
            raw,
            live,
            token: uuid::Uuid::new_v4().to_string(),
            dedup: Dedup::new(settings.dedup_window_secs.max(0)),
            settings,
            written_partitions: HashSet::new(),
        }
    }

    /// Whether the exactly-once guards are deliberately off (chaos control run).
    fn guards_off(&self) -> bool {
        self.settings.fault == Fault::IgnoreOffsets
    }

    /// Drops everything cached per partition (after a rebalance another process
    /// may have written): recent ids are reloaded from ClickHouse.
    pub fn forget_partitions(&mut self) {
        self.dedup.forget();
        self.raw.resync();
    }

    /// The raw sink.
    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// The live store.
    pub fn live(&self) -> &L {
        &self.live
    }

    /// Writes `batch` (messages of each partition in offset order) to every store
    /// in one go: both steps of [`Pending`].
    pub async fn apply(&mut self, batch: &[Message]) -> Result<Outcome, AggregatorError> {
        let mut pending = Pending::default();
        pending.messages.extend_from_slice(batch);
        self.apply_all(&mut pending).await
    }

    /// The live step: decides repeats, applies sessions in memory and writes the
    /// live windows of the messages pushed since the last live step. May be
    /// retried after an error.
    pub async fn apply_live(&mut self, pending: &mut Pending) -> Result<Outcome, AggregatorError> {
        let start = pending.live_done;
        if start == pending.messages.len() {
            return Ok(Outcome::default());
        }
        self.load_partitions(&pending.messages[start..]).await?;
        self.refresh_sessions(pending).await?;
        let new = &pending.messages[start..];
        let mut repeat: Vec<bool> = new
            .iter()
            .map(|m| self.dedup.is_repeat(m.partition, m.offset, &m.envelope))
            .collect();
        // Events of a deleted person are dropped like repeats: never stored,
        // never counted (a replay cannot bring the person back).
        let ids: Vec<(&str, &str)> = new
            .iter()
            .map(|m| (m.envelope.app_id.as_str(), m.envelope.distinct_id.as_str()))
            .collect();
        let deleted = self.live.tombstoned(&self.settings.prefix, &ids).await?;
        let mut dropped_deleted = 0;
        for (repeat, deleted) in repeat.iter_mut().zip(&deleted) {
            if *deleted && !*repeat {
                *repeat = true;
                dropped_deleted += 1;
            }
        }
        let fresh = non_repeats(new, &repeat);
        let first_pending = first_offsets(&pending.messages);
        let applied = pending
            .sessions
            .apply((&self.live, &self.raw), &self.scope(&first_pending), &fresh)
            .await;
        if applied.is_err() {
            // A state read here may be stale (another writer stored it since:
            // reviving a cold session found another guard), or only partly
            // loaded: the retry reads every held state afresh. Without this a
            // retry kept the stale guard and met the same conflict for ever,
            // with consumption paused (seen after a rebalance: one member
            // stopped consuming its partitions).
            pending.sessions_stale = true;
        }
        applied?;
        let windows = Windows {
            prefix: &self.settings.prefix,
            allowed_lateness_ms: self.settings.allowed_lateness_ms,
            guards_off: self.guards_off(),
        };
        let written = windows
            .write(&self.live, &fresh, &pending.sessions.session_of)
            .await?;
        let mut outcome = Outcome {
            live_written: written.live_written,
            live_skipped: written.live_skipped,
            bots: written.bots,
            late: written.late,
            made_visible: written.made_visible,
            ..Outcome::default()
        };
        outcome.repeats = repeat.iter().filter(|r| **r).count() - dropped_deleted;
        outcome.deleted_person_events = dropped_deleted;
        pending.repeat.extend(repeat);
        pending.live_done = pending.messages.len();
        Ok(outcome)
    }

    /// The full step: the live step for what is left, then the raw rows, the
    /// session rows and the visitor states. Afterwards every pending message is
    /// in every store, so its offset may be committed; `pending` is emptied.
    pub async fn apply_all(&mut self, pending: &mut Pending) -> Result<Outcome, AggregatorError> {
        let mut outcome = self.apply_live(pending).await?;
        self.refresh_sessions(pending).await?;
        let fresh = pending.fresh();
        let writer = RowWriter {
            topic: &self.settings.topic,
            prefix: &self.settings.prefix,
            token: &self.token,
            guards_off: self.guards_off(),
            trusted: &self.written_partitions,
        };
        let written = writer.write(&self.raw, &self.live, &fresh).await?;
        self.written_partitions
            .extend(fresh.iter().map(|m| m.partition));
        (outcome.raw_written, outcome.raw_skipped) = (written.written, written.skipped);
        outcome.claims_lost.clone_from(&written.claims_lost);
        (outcome.identity_events, outcome.identity_rows) = self.write_identities(&fresh).await?;
        // A visitor's old sessions may only go cold once no crashed attempt's
        // row can be newer than the state stored now: when this batch reaches
        // as far as anything stored before (see `crate::visitors`).
        let reached = last_offsets(&pending.messages);
        let settled = |partition: i32| {
            written
                .prior
                .get(&partition)
                .is_none_or(|prior| reached.get(&partition).is_some_and(|last| last >= prior))
        };
        let rows = pending.sessions.rows();
        let stored = self
            .write_sessions(&rows, &pending.sessions, &settled)
            .await;
        if stored.is_err() {
            // Another writer may have stored newer states: read them afresh.
            pending.sessions_stale = true;
            self.raw.resync();
        }
        stored?;
        outcome.session_versions = rows.len();
        pending.clear();
        Ok(outcome)
    }

    /// Applies the identity events among `fresh` and upserts their rows;
    /// returns (events, rows).
    async fn write_identities(
        &self,
        fresh: &[&Message],
    ) -> Result<(usize, usize), AggregatorError> {
        let (positions, events): (Vec<_>, Vec<_>) = fresh
            .iter()
            .filter_map(|m| {
                let partition = u32::try_from(m.partition).unwrap_or(0);
                let offset = u64::try_from(m.offset).unwrap_or(0);
                Some(((partition, offset), identity_event(&m.envelope)?))
            })
            .unzip();
        if events.is_empty() {
            return Ok((0, 0));
        }
        let changes = self
            .live
            .apply_identity(&self.settings.prefix, &events)
            .await?;
        let (mut ids, mut persons) = (Vec::new(), Vec::new());
        let topic = self.settings.topic.as_str();
        for ((event, change), (partition, offset)) in events.iter().zip(changes).zip(positions) {
            let position = (topic, partition, offset);
            change.into_rows((&event.app_id, position), &mut ids, &mut persons);
        }
        self.raw.insert_persons(&ids, &persons).await?;
        Ok((events.len(), ids.len() + persons.len()))
    }

    async fn write_sessions(
        &self,
        rows: &[SessionRow],
        sessions: &Sessions,
        settled: &(dyn Fn(i32) -> bool + Sync),
    ) -> Result<(), AggregatorError> {
        self.raw.insert_sessions(rows).await?;
        let writes = sessions.writes(self.guards_off(), settled)?;
        let conflicts = self.live.write_visitors(&writes).await?;
        match conflicts.first() {
            Some(key) => Err(AggregatorError::Conflict(key.clone())),
            None => Ok(()),
        }
    }

    /// After a failed session write or a rebalance the held visitor states may be
    /// stale: re-read them and apply the handled messages again.
    async fn refresh_sessions(&self, pending: &mut Pending) -> Result<(), AggregatorError> {
        if !pending.sessions_stale {
            return Ok(());
        }
        pending.sessions.clear();
        let handled = non_repeats(&pending.messages[..pending.live_done], &pending.repeat);
        let first_pending = first_offsets(&pending.messages);
        pending
            .sessions
            .apply(
                (&self.live, &self.raw),
                &self.scope(&first_pending),
                &handled,
            )
            .await?;
        pending.sessions_stale = false;
        Ok(())
    }

    /// What session decisions need besides the stores.
    fn scope<'a>(&'a self, first_pending: &'a BTreeMap<i32, i64>) -> Scope<'a> {
        let now = self.settings.clock.now_ms();
        Scope {
            prefix: &self.settings.prefix,
            guards_off: self.guards_off(),
            absent_cold_until: now
                .saturating_sub(self.settings.visitor_ttl_ms)
                .saturating_add(MAX_FUTURE_MS + CLOCK_SKEW_MS),
            first_pending,
        }
    }

    /// Loads the recent ids of partitions not seen since the last start or rebalance.
    async fn load_partitions(&mut self, batch: &[Message]) -> Result<(), AggregatorError> {
        let mut earliest: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let received = earliest
                .entry(message.partition)
                .or_insert(message.envelope.received_at_ms);
            *received = (*received).min(message.envelope.received_at_ms);
        }
        for (partition, received_ms) in earliest {
            if !self.dedup.is_loaded(partition) {
                let received = received_ms.div_euclid(1_000);
                let since = received - self.dedup.window_secs() - SLACK_SECS;
                let ids = self
                    .raw
                    .recent_ids(&self.settings.topic, partition, since)
                    .await?;
                self.dedup.load(partition, ids);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
