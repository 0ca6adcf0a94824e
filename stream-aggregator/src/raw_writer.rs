//! Raw rows into ClickHouse exactly once, even with two writers of one partition.
//!
//! Every row carries its Kafka partition and offset, and for every (Kafka
//! partition, table partition — retention class and day, a [`slot`]) the rows
//! are inserted in offset order, one `INSERT` per slot: one insert into one
//! table partition is one part, all or nothing, so the
//! stored rows are a prefix of the log and the highest stored offset — the
//! *watermark* — says exactly which messages are already stored (see
//! [`crate::raw`]). That needs no insert deduplication token, so it holds on
//! ClickHouse 18.16 as on current releases.
//!
//! Two processes may hold the same partition for a moment during a rebalance
//! (the group may hand it to a new member before the old one has noticed).
//! So a writer first *claims* the partition in Redis ([`LiveStore::claim_raw`],
//! a lock with a [`CLAIM_TTL_MS`] lease) and uses the watermarks stored with
//! the claim — exact when the last holder released cleanly, otherwise read
//! from ClickHouse — and releases the claim with the new watermarks after the
//! insert. Inserts of one partition are therefore serialized and each starts
//! from the true watermarks: a zombie writer finds its messages already stored
//! and skips them. A process trusts released watermarks only for partitions
//! it has written once itself ([`RowWriter::trusted`]): the first write of a
//! partition in a process reads them from ClickHouse, because the Redis
//! hash outlives the data it describes when Redis stays and ClickHouse and
//! the broker start anew (a new checkout, a rebuilt cluster) — trusted, an
//! old log's watermarks would skip every new message below them. The lease
//! only matters if a holder dies mid-insert; an insert is given
//! [`crate::raw::INSERT_TIMEOUT`], well within the lease.
//!
//! On a cluster a slot also names the shard (`crate::shards`): rows go to
//! their visitor's shard, so the prefix argument holds per (Kafka partition,
//! table partition, shard), and so do the watermarks.
//!
//! Before the rows, their *arrivals* (`arrivals`, one small row per raw row,
//! ordered by Kafka position) are inserted in one statement: readers find the
//! days holding rows that the report refresher has not derived yet there.

use crate::error::AggregatorError;
use crate::live::{raw_marks_key, Claimed, LiveStore};
use crate::message::{debug_assert_offset_order, Message};
use crate::raw::{slot, slot_shard, RawSink};
use std::collections::{BTreeMap, HashMap, HashSet};
use tally_schemas::row::{event_date, ArrivalRow, EventRow};

/// Lease of a partition claim.
pub const CLAIM_TTL_MS: u64 = 15_000;

/// Slot (shard, class and day) → highest stored offset, of one Kafka partition.
type Marks = BTreeMap<u64, i64>;

/// Where and as whom rows are written.
#[derive(Debug, Clone, Copy)]
pub struct RowWriter<'a> {
    /// Topic of the messages.
    pub topic: &'a str,
    /// Prefix of the claim keys in Redis.
    pub prefix: &'a str,
    /// This process's claim token.
    pub token: &'a str,
    /// Chaos control run: ignore the watermarks.
    pub guards_off: bool,
    /// Partitions this process has written: their released watermarks are
    /// of its ClickHouse (the others' are read from ClickHouse).
    pub trusted: &'a HashSet<i32>,
}

impl RowWriter<'_> {
    /// Inserts the rows of `batch` (each partition's messages in offset order)
    /// that ClickHouse does not hold yet; returns (written, already stored).
    pub async fn write<R: RawSink, L: LiveStore>(
        &self,
        raw: &R,
        live: &L,
        batch: &[&Message],
    ) -> Result<Written, AggregatorError> {
        debug_assert_offset_order(batch.iter().copied());
        let mut partitions: Vec<i32> = batch.iter().map(|m| m.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            return Ok(Written::default());
        }
        let keys: Vec<String> = partitions
            .iter()
            .map(|p| raw_marks_key(self.prefix, self.topic, *p))
            .collect();
        let claims = live.claim_raw(&keys, self.token, CLAIM_TTL_MS).await?;
        if let Some(busy) = claims.iter().position(|c| *c == Claimed::Busy) {
            // Give back what we got, unchanged, and retry later.
            let back: Vec<(String, Option<Vec<u8>>)> = keys
                .iter()
                .zip(&claims)
                .filter_map(|(key, claim)| match claim {
                    Claimed::Busy => None,
                    Claimed::Clean(marks) => Some((key.clone(), Some(marks.clone()))),
                    Claimed::Unknown => Some((key.clone(), None)),
                })
                .collect();
            live.release_raw(&back, self.token).await?;
            return Err(AggregatorError::Busy(partitions[busy]));
        }
        let result = self.insert(raw, batch, &partitions, &claims).await;
        let releases: Vec<(String, Option<Vec<u8>>)> = match &result {
            Ok((marks, _)) => keys
                .iter()
                .zip(&partitions)
                .map(|(key, p)| {
                    let json = serde_json::to_vec(&marks.get(p).cloned().unwrap_or_default());
                    (key.clone(), json.ok())
                })
                .collect(),
            Err(_) => keys.iter().map(|key| (key.clone(), None)).collect(),
        };
        let lost = live.release_raw(&releases, self.token).await?;
        let (_, mut written) = result?;
        written.claims_lost = lost;
        Ok(written)
    }

    async fn insert<R: RawSink>(
        &self,
        raw: &R,
        batch: &[&Message],
        partitions: &[i32],
        claims: &[Claimed],
    ) -> Result<(HashMap<i32, Marks>, Written), AggregatorError> {
        let mut marks: HashMap<i32, Marks> = HashMap::new();
        for (partition, claim) in partitions.iter().zip(claims) {
            let stored = match claim {
                Claimed::Clean(json) if self.trusted.contains(partition) => {
                    serde_json::from_slice::<Marks>(json).ok()
                }
                _ => None,
            };
            let stored = match stored {
                Some(stored) => stored,
                None => raw
                    .watermarks(self.topic, *partition)
                    .await?
                    .into_iter()
                    .map(|m| (m.slot(), m.offset))
                    .collect(),
            };
            marks.insert(*partition, stored);
        }
        let prior = marks
            .iter()
            .map(|(p, days)| (*p, days.values().copied().max().unwrap_or(-1)))
            .collect();
        // Rows to insert per slot; `marks` advances as rows are taken.
        let mut slots: BTreeMap<u64, Vec<EventRow>> = BTreeMap::new();
        let mut skipped = 0;
        let mut after = marks.clone();
        for message in batch {
            let envelope = &message.envelope;
            let shard = raw.shard_of(&envelope.app_id, &envelope.distinct_id);
            let at = slot(
                shard,
                envelope.retention_days,
                event_date(envelope.timestamp_ms),
            );
            let last = after
                .entry(message.partition)
                .or_default()
                .entry(at)
                .or_insert(-1);
            if message.offset <= *last && !self.guards_off {
                skipped += 1;
                continue;
            }
            *last = message.offset;
            slots.entry(at).or_default().push(EventRow::from_envelope(
                &message.envelope,
                self.topic,
                message.partition,
                message.offset,
            ));
        }
        // Arrivals first: a row visible in `events` always has its arrival,
        // which is what lets a reader find the days not derived yet.
        // (Per shard: a shard's rows are only ever preceded by its own arrivals.)
        let mut arrivals: BTreeMap<u16, Vec<ArrivalRow>> = BTreeMap::new();
        for (at, rows) in &slots {
            let shard = arrivals.entry(slot_shard(*at)).or_default();
            shard.extend(rows.iter().map(ArrivalRow::of));
        }
        for (shard, rows) in &arrivals {
            raw.insert_arrivals(*shard, rows).await?;
        }
        let mut written = 0;
        for (at, rows) in slots {
            raw.insert(slot_shard(at), &rows).await?;
            written += rows.len();
            for (partition, marked) in &after {
                if let Some(offset) = marked.get(&at) {
                    marks.entry(*partition).or_default().insert(at, *offset);
                }
            }
        }
        Ok((
            marks,
            Written {
                written,
                skipped,
                prior,
                claims_lost: Vec::new(),
            },
        ))
    }
}

/// What [`RowWriter::write`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows inserted.
    pub written: usize,
    /// Messages already stored.
    pub skipped: usize,
    /// Highest offset stored per partition before this write (-1: none): a
    /// crashed attempt may have got that far.
    pub prior: BTreeMap<i32, i64>,
    /// Claims that expired during the insert (another writer may have
    /// stored the same rows; see [`crate::metrics::Metrics::claims_lost`]).
    pub claims_lost: Vec<String>,
}
