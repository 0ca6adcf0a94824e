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

use crate::dedup::SeenId;
use clickhouse::Client;
use serde::Deserialize;
use std::future::Future;
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

/// Highest stored offset of one Kafka partition for one table partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Retention class of the rows.
    pub retention_days: u16,
    /// `Date` (days since epoch).
    pub event_date: u16,
    /// Highest Kafka offset stored for that class and day.
    pub offset: i64,
}

impl Watermark {
    /// The table partition it is the watermark of.
    pub fn slot(&self) -> u32 {
        slot(self.retention_days, self.event_date)
    }
}

/// A table partition of `events` — (retention class, day) — as one number,
/// the class in the high 16 bits: what watermarks are kept per. A day alone
/// (marks stored before migration 0012, when days were the partitions) reads
/// as class 0, which is the class every older row was given.
pub fn slot(class: u16, day: u16) -> u32 {
    (u32::from(class) << 16) | u32::from(day)
}

/// Where raw rows go.
pub trait RawSink: Send + Sync + 'static {
    /// Watermarks of `partition` of `topic`, one per (class, day) that holds rows.
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<Watermark>, clickhouse::error::Error>> + Send;
    /// Inserts `rows` (all of one class and day: one table partition) in one statement.
    fn insert(
        &self,
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
    /// Inserts the arrivals of rows about to be inserted (one statement).
    fn insert_arrivals(
        &self,
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

/// [`RawSink`] writing the `events` table.
#[derive(Clone)]
pub struct ClickHouseSink {
    client: Client,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink").finish_non_exhaustive()
    }
}

impl ClickHouseSink {
    /// Uses `client` (already bound to Tally's database).
    pub fn new(client: Client) -> Self {
        ClickHouseSink { client }
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
    async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<Watermark>, clickhouse::error::Error> {
        let rows = self
            .client
            .query(
                "SELECT retention_days, event_date, max(kafka_offset) AS max_offset FROM events \
                 WHERE kafka_topic = ? AND kafka_partition = ? GROUP BY retention_days, event_date",
            )
            .bind(topic)
            .bind(partition)
            .fetch_all::<MarkRow>()
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Watermark {
                retention_days: row.retention_days,
                event_date: row.event_date,
                offset: i64::try_from(row.max_offset).unwrap_or(i64::MAX),
            })
            .collect())
    }

    async fn recent_ids(
        &self,
        topic: &str,
        partition: i32,
        since_secs: i64,
    ) -> Result<Vec<SeenId>, clickhouse::error::Error> {
        let secs = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        // Every table partition (event day) is read: a retry may carry any
        // event time the gateway accepts. The scan reads three narrow columns,
        // like the watermark query that runs at the same moment.
        let rows = self
            .client
            .query(
                "SELECT app_id, distinct_id, event_id, kafka_offset, toUInt32(received_at) AS received \
                 FROM events WHERE kafka_topic = ? AND kafka_partition = ? AND received_at >= toDateTime(?)",
            )
            .bind(topic)
            .bind(partition)
            .bind(secs(since_secs))
            .fetch_all::<IdRow>()
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

    async fn insert(&self, rows: &[EventRow]) -> Result<(), clickhouse::error::Error> {
        insert_all(&self.client, "events", rows).await
    }

    async fn insert_sessions(&self, rows: &[SessionRow]) -> Result<(), clickhouse::error::Error> {
        insert_all(&self.client, "sessions", rows).await
    }

    async fn insert_arrivals(&self, rows: &[ArrivalRow]) -> Result<(), clickhouse::error::Error> {
        insert_all(&self.client, "arrivals", rows).await
    }

    async fn insert_persons(
        &self,
        ids: &[PersonDistinctIdRow],
        persons: &[PersonRow],
    ) -> Result<(), clickhouse::error::Error> {
        insert_all(&self.client, "person_distinct_ids", ids).await?;
        insert_all(&self.client, "persons", persons).await
    }

    async fn sessions_near(
        &self,
        lookups: &[SessionLookup],
    ) -> Result<Vec<SessionRow>, clickhouse::error::Error> {
        let ms = |v: i64| u64::try_from(v.max(0)).unwrap_or(0);
        let mut rows = Vec::new();
        for chunk in lookups.chunks(LOOKUPS_PER_QUERY) {
            let one = "(app_id = ? AND distinct_id = ? AND end_ms >= ? AND start_ms <= ?)";
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions FINAL WHERE ({}) AND dropped = 0",
                vec![one; chunk.len()].join(" OR ")
            );
            let mut query = self.client.query(&sql);
            for lookup in chunk {
                query = query
                    .bind(lookup.app_id.as_str())
                    .bind(lookup.distinct_id.as_str())
                    .bind(ms(lookup.from_ms))
                    .bind(ms(lookup.to_ms));
            }
            rows.extend(query.fetch_all::<SessionRow>().await?);
        }
        Ok(rows)
    }

    async fn ping(&self) -> Result<(), clickhouse::error::Error> {
        self.client.query("SELECT 1").execute().await
    }
}
