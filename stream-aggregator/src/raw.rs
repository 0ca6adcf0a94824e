//! Raw rows into ClickHouse: the [`RawSink`] trait and its ClickHouse implementation.
//!
//! Exactly-once without insert deduplication (ClickHouse 18.16 has none on a
//! plain MergeTree): every row carries its Kafka partition and offset, and the
//! processor only ever inserts, per Kafka partition and per table partition
//! (retention class and day, migration 0012: a [`slot`]), rows in offset
//! order, one `INSERT` per slot. An `INSERT` of fewer than
//! `max_insert_block_size` rows into one table partition is one part, written
//! all or nothing. So for every (Kafka partition, slot) the stored rows are a
//! prefix of the log, and `max(kafka_offset)` — the *watermark* — says
//! exactly which replayed messages are already stored.
//!
//! On a cluster (`crate::shards`) the same holds per shard: rows go to their
//! visitor's shard, one `INSERT` per (Kafka partition, slot, shard) into that
//! shard's local table on its home replica, and watermarks are kept per shard
//! (the shard is part of the [`slot`]).

use crate::dedup::SeenId;
use crate::shards::Shards;
use clickhouse::error::Error;
use clickhouse::Client;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_schemas::person::{PersonDistinctIdRow, PersonRow};
use tally_schemas::row::{ArrivalRow, EventRow};
use tally_schemas::session::{SessionRow, SESSION_COLUMNS};

/// Stored sessions of one visitor that may overlap `[from_ms, to_ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLookup {
    /// App.
    pub app_id: String,
    /// Visitor.
    pub distinct_id: String,
    /// Earliest end, epoch ms.
    pub from_ms: i64,
    /// Latest start, epoch ms.
    pub to_ms: i64,
}

impl SessionLookup {
    /// Whether `row` is one this lookup finds (the rule the statement applies:
    /// same visitor, ends at or after `from_ms`, starts at or before `to_ms`);
    /// for in-memory stores.
    pub fn finds(&self, row: &SessionRow) -> bool {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.app_id == row.app_id
            && self.distinct_id == row.distinct_id
            && ms(row.end_ms) >= self.from_ms
            && ms(row.start_ms) <= self.to_ms
    }
}

/// Lookups per statement (each adds four bound values).
const LOOKUPS_PER_QUERY: usize = 64;

/// Longest an insert may take (send and finish) before it is abandoned
/// (well within a partition claim's lease, see [`crate::raw_writer`]).
pub const INSERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Inserts `rows` into `table` in one statement (nothing if `rows` is empty).
async fn insert_all<T>(
    client: &Client,
    table: &str,
    rows: &[T],
) -> Result<(), clickhouse::error::Error>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
{
    if rows.is_empty() {
        return Ok(());
    }
    let timeout = Some(INSERT_TIMEOUT);
    let mut insert = client
        .insert::<T>(table)
        .await?
        .with_timeouts(timeout, timeout);
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

/// Highest stored offset of one Kafka partition for one table partition (of one shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Shard (0-based; 0 on one server).
    pub shard: u16,
    /// Retention class of the rows.
    pub retention_days: u16,
    /// `Date` (days since epoch).
    pub event_date: u16,
    /// Highest Kafka offset stored for that class and day.
    pub offset: i64,
}

impl Watermark {
    /// The table partition it is the watermark of.
    pub fn slot(&self) -> u64 {
        slot(self.shard, self.retention_days, self.event_date)
    }
}

/// A table partition of `events` on one shard — (shard, retention class,
/// day) — as one number: what watermarks are kept per. The class sits in
/// bits 16–31, the shard above. A day alone (marks stored before migration
/// 0012, when days were the partitions) reads as class 0 on shard 0, which is
/// the class every older row was given and the only shard of one server.
pub fn slot(shard: u16, class: u16, day: u16) -> u64 {
    (u64::from(shard) << 32) | (u64::from(class) << 16) | u64::from(day)
}

/// The shard of a [`slot`].
pub fn slot_shard(slot: u64) -> u16 {
    u16::try_from(slot >> 32).unwrap_or(u16::MAX)
}

/// Where raw rows go.
pub trait RawSink: Send + Sync + 'static {
    /// The shard of a visitor's rows (0 on one server).
    fn shard_of(&self, _app_id: &str, _distinct_id: &str) -> u16 {
        0
    }
    /// Another process may have written since the last read (a rebalance, a
    /// failed write): reads must see its rows again (on a cluster: re-sync).
    fn resync(&self) {}
    /// Watermarks of `partition` of `topic`, one per (shard, class, day) that holds rows.
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<Watermark>, clickhouse::error::Error>> + Send;
    /// Inserts `rows` (all of one shard, class and day: one table partition)
    /// in one statement.
    fn insert(
        &self,
        shard: u16,
        rows: &[EventRow],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
    /// Ids of `partition` received since `since_secs` (epoch seconds), whatever
    /// their event time (see [`crate::dedup`]).
    fn recent_ids(
        &self,
        topic: &str,
        partition: i32,
        since_secs: i64,
    ) -> impl Future<Output = Result<Vec<SeenId>, clickhouse::error::Error>> + Send;
    /// Inserts session versions (upserts into the `sessions` ReplacingMergeTree).
    fn insert_sessions(
        &self,
        rows: &[SessionRow],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
    /// Inserts the arrivals of rows about to be inserted into `shard` (one statement).
    fn insert_arrivals(
        &self,
        shard: u16,
        rows: &[ArrivalRow],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
    /// Inserts identity rows (upserts into the `person_distinct_ids` and
    /// `persons` ReplacingMergeTrees; a repeated row is harmless).
    fn insert_persons(
        &self,
        ids: &[PersonDistinctIdRow],
        persons: &[PersonRow],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
    /// The latest version of every session (not dropped) that one of
    /// `lookups` may overlap (see [`crate::visitors`]).
    fn sessions_near(
        &self,
        lookups: &[SessionLookup],
    ) -> impl Future<Output = Result<Vec<SessionRow>, clickhouse::error::Error>> + Send;
    /// `Ok` when ClickHouse answers.
    fn ping(&self) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
}

/// [`RawSink`] writing the `events` table — on a cluster, each shard's
/// `events_local` on its home replica.
#[derive(Clone)]
pub struct ClickHouseSink {
    /// The configured server (on a cluster: any node; `Distributed` inserts
    /// of the idempotent identity rows).
    client: Client,
    shards: Option<Arc<Shards>>,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl ClickHouseSink {
    /// Uses `client` (already bound to Tally's database) on one server.
    pub fn new(client: Client) -> Self {
        ClickHouseSink {
            client,
            shards: None,
        }
    }

    /// Writes `shards` directly; `client` for the rest.
    pub fn sharded(client: Client, shards: Shards) -> Self {
        ClickHouseSink {
            client,
            shards: Some(Arc::new(shards)),
        }
    }

    /// Runs `read` (client, table, shard) on every shard's home (`table`
    /// suffixed `_local` on a cluster), after proving it synced: rows another
    /// process wrote are seen. One server is shard 0.
    async fn read_all<T, F, Fut>(&self, table: &str, read: F) -> Result<Vec<T>, Error>
    where
        F: Fn(Client, String, u16) -> Fut,
        Fut: Future<Output = Result<Vec<T>, Error>>,
    {
        let Some(shards) = &self.shards else {
            return read(self.client.clone(), table.to_owned(), 0).await;
        };
        shards.invalidate();
        let mut all = Vec::new();
        for shard in 0..shards.count() {
            let shard = u16::try_from(shard).unwrap_or(u16::MAX);
            let local = format!("{table}_local");
            all.extend(
                shards
                    .on(shard, |client| read(client, local, shard))
                    .await?,
            );
        }
        Ok(all)
    }

    /// `items` by the shard of their visitor (order kept within a shard);
    /// on one server all of them, borrowed, as shard 0.
    fn by_shard<'a, T: Clone>(
        &self,
        items: &'a [T],
        visitor: impl Fn(&T) -> (&str, &str),
    ) -> Vec<(u16, Cow<'a, [T]>)> {
        if self.shards.is_none() {
            return vec![(0, Cow::Borrowed(items))];
        }
        let mut groups: BTreeMap<u16, Vec<T>> = BTreeMap::new();
        for item in items {
            let (app_id, distinct_id) = visitor(item);
            groups
                .entry(self.shard_of(app_id, distinct_id))
                .or_default()
                .push(item.clone());
        }
        groups
            .into_iter()
            .map(|(shard, group)| (shard, Cow::Owned(group)))
            .collect()
    }

    /// Inserts `rows` into `table` of `shard` (its `_local` table on its home).
    async fn insert_into<T>(&self, shard: u16, table: &str, rows: &[T]) -> Result<(), Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
    {
        match &self.shards {
            None => insert_all(&self.client, table, rows).await,
            Some(shards) => {
                let local = format!("{table}_local");
                shards
                    .on(shard, |client| async move {
                        insert_all(&client, &local, rows).await
                    })
                    .await
            }
        }
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MarkRow {
    retention_days: u16,
    event_date: u16,
    max_offset: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct IdRow {
    app_id: String,
    distinct_id: String,
    event_id: String,
    kafka_offset: u64,
    received: u32,
}

impl RawSink for ClickHouseSink {
    fn shard_of(&self, app_id: &str, distinct_id: &str) -> u16 {
        self.shards
            .as_ref()
            .map_or(0, |shards| shards.shard_of(app_id, distinct_id))
    }

    fn resync(&self) {
        if let Some(shards) = &self.shards {
            shards.invalidate();
        }
    }

    async fn watermarks(&self, topic: &str, partition: i32) -> Result<Vec<Watermark>, Error> {
        // One shard at a time, so each row is known to come from its shard.
        self.read_all("events", |client, table, shard| async move {
            let sql = format!(
                "SELECT retention_days, event_date, max(kafka_offset) AS max_offset FROM {table} \
                 WHERE kafka_topic = ? AND kafka_partition = ? GROUP BY retention_days, event_date"
            );
            let rows = client
                .query(&sql)
                .bind(topic)
                .bind(partition)
                .fetch_all::<MarkRow>()
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| Watermark {
                    shard,
                    retention_days: row.retention_days,
                    event_date: row.event_date,
                    offset: i64::try_from(row.max_offset).unwrap_or(i64::MAX),
                })
                .collect())
        })
        .await
    }

    async fn recent_ids(
        &self,
        topic: &str,
        partition: i32,
        since_secs: i64,
    ) -> Result<Vec<SeenId>, Error> {
        let since = u32::try_from(since_secs.max(0)).unwrap_or(u32::MAX);
        // Every table partition (event day) is read: a retry may carry any
        // event time the gateway accepts. The scan reads three narrow columns,
        // like the watermark query that runs at the same moment.
        let rows = self
            .read_all("events", |client, table, _| async move {
                let sql = format!(
                    "SELECT app_id, distinct_id, event_id, kafka_offset, toUInt32(received_at) AS received \
                     FROM {table} WHERE kafka_topic = ? AND kafka_partition = ? AND received_at >= toDateTime(?)"
                );
                client
                    .query(&sql)
                    .bind(topic)
                    .bind(partition)
                    .bind(since)
                    .fetch_all::<IdRow>()
                    .await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| SeenId {
                app_id: row.app_id,
                distinct_id: row.distinct_id,
                event_id: row.event_id,
                offset: i64::try_from(row.kafka_offset).unwrap_or(i64::MAX),
                received_secs: i64::from(row.received),
            })
            .collect())
    }

    async fn insert(&self, shard: u16, rows: &[EventRow]) -> Result<(), Error> {
        self.insert_into(shard, "events", rows).await
    }

    async fn insert_sessions(&self, rows: &[SessionRow]) -> Result<(), Error> {
        for (shard, rows) in self.by_shard(rows, |row| (&row.app_id, &row.distinct_id)) {
            self.insert_into(shard, "sessions", &rows).await?;
        }
        Ok(())
    }

    async fn insert_arrivals(&self, shard: u16, rows: &[ArrivalRow]) -> Result<(), Error> {
        self.insert_into(shard, "arrivals", rows).await
    }

    async fn insert_persons(
        &self,
        ids: &[PersonDistinctIdRow],
        persons: &[PersonRow],
    ) -> Result<(), Error> {
        // Upserts: a repeated row is harmless, so a synchronous `Distributed`
        // insert (placed by visitor and by person) suits a cluster as is.
        insert_all(&self.client, "person_distinct_ids", ids).await?;
        insert_all(&self.client, "persons", persons).await
    }

    async fn sessions_near(&self, lookups: &[SessionLookup]) -> Result<Vec<SessionRow>, Error> {
        let mut rows = Vec::new();
        for (shard, lookups) in self.by_shard(lookups, |l| (&l.app_id, &l.distinct_id)) {
            for chunk in lookups.chunks(LOOKUPS_PER_QUERY) {
                let read = |client: Client, table: &'static str| sessions_of(client, table, chunk);
                rows.extend(match &self.shards {
                    None => read(self.client.clone(), "sessions").await?,
                    Some(shards) => {
                        shards
                            .on(shard, |client| read(client, "sessions_local"))
                            .await?
                    }
                });
            }
        }
        Ok(rows)
    }

    async fn ping(&self) -> Result<(), Error> {
        match &self.shards {
            None => self.client.query("SELECT 1").execute().await,
            Some(shards) => shards.ping().await,
        }
    }
}

/// The latest version of every session one of `lookups` may overlap, from `table`.
async fn sessions_of(
    client: Client,
    table: &str,
    lookups: &[SessionLookup],
) -> Result<Vec<SessionRow>, Error> {
    let ms = |v: i64| u64::try_from(v.max(0)).unwrap_or(0);
    let one = "(app_id = ? AND distinct_id = ? AND end_ms >= ? AND start_ms <= ?)";
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM {table} FINAL WHERE ({}) AND dropped = 0",
        vec![one; lookups.len()].join(" OR ")
    );
    let mut query = client.query(&sql);
    for lookup in lookups {
        query = query
            .bind(lookup.app_id.as_str())
            .bind(lookup.distinct_id.as_str())
            .bind(ms(lookup.from_ms))
            .bind(ms(lookup.to_ms));
    }
    query.fetch_all::<SessionRow>().await
}
