//! Raw rows into ClickHouse: the [`RawSink`] trait and its ClickHouse implementation.
//!
//! Exactly-once without insert deduplication (ClickHouse 18.16 has none on a
//! plain MergeTree): every row carries its Kafka partition and offset, and the
//! processor only ever inserts, per Kafka partition and per day (the table's
//! partition key), rows in offset order, one `INSERT` per day. An `INSERT` of
//! fewer than `max_insert_block_size` rows into one table partition is one part,
//! written all or nothing. So for every (Kafka partition, day) the stored rows
//! are a prefix of the log, and `max(kafka_offset)` — the *watermark* — says
//! exactly which replayed messages are already stored.

use clickhouse::Client;
use serde::Deserialize;
use std::future::Future;
use tally_schemas::row::EventRow;

/// Highest stored offset of one Kafka partition for one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// `Date` (days since epoch).
    pub event_date: u16,
    /// Highest Kafka offset stored for that day.
    pub offset: i64,
}

/// Where raw rows go.
pub trait RawSink: Send + Sync + 'static {
    /// Watermarks of `partition` of `topic`, one per day that holds rows.
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<Watermark>, clickhouse::error::Error>> + Send;
    /// Inserts `rows` (all of one day) in one statement.
    fn insert(
        &self,
        rows: &[EventRow],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
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
    event_date: u16,
    max_offset: u64,
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
                "SELECT event_date, max(kafka_offset) AS max_offset FROM events \
                 WHERE kafka_topic = ? AND kafka_partition = ? GROUP BY event_date",
            )
            .bind(topic)
            .bind(partition)
            .fetch_all::<MarkRow>()
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Watermark {
                event_date: row.event_date,
                offset: i64::try_from(row.max_offset).unwrap_or(i64::MAX),
            })
            .collect())
    }

    async fn insert(&self, rows: &[EventRow]) -> Result<(), clickhouse::error::Error> {
        let mut insert = self.client.insert::<EventRow>("events").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    async fn ping(&self) -> Result<(), clickhouse::error::Error> {
        self.client.query("SELECT 1").execute().await
    }
}
