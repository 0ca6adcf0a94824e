//! The data lifecycle (issue 17, seed 002: raw events two years, aggregates
//! forever): what each table holds on disk, and the retention of raw rows.
//!
//! * [`storage`]: per table of the database, its active parts' rows, bytes on
//!   disk, compressed and uncompressed bytes (their ratio is the compression),
//!   partitions, and the oldest day kept by the tables partitioned by day
//!   (`system.parts`; ClickHouse 18.16 and current).
//! * [`expired`] and [`drop_expired`]: raw rows older than the retention are
//!   removed by dropping whole day partitions (`ALTER TABLE … DROP PARTITION
//!   ID`; ClickHouse 18.16 has no TTL clause, and never a row-by-row delete):
//!   `events` by event day and `sessions` by creation day
//!   ([`RETAINED_TABLES`]). A partition goes when its newest day is older than
//!   `retention_days` before today (UTC). Persons, reports, rollups and the
//!   refresher's sets are kept forever; `arrivals` are pruned by the
//!   refresher. The gateway refuses events older than the same
//!   `TALLY_RETENTION_DAYS`, so no accepted event lands in a dropped day.
//!
//! Statements are text here (the report refresher's golden tests run them on
//! both ClickHouse versions); the report refresher runs [`drop_expired`] on a
//! schedule and exports [`storage`] as metrics, `tally-admin storage` and
//! `tally-admin retention` run them once.

use serde::Deserialize;

/// Tables whose rows expire (each partitioned by a `Date`: `events` by
/// `event_date`, `sessions` by `created_date`), as [`EXPIRED_SQL`] lists them.
pub const RETAINED_TABLES: &[&str] = &["events", "sessions"];

/// Per table of the current database (active parts): `table`, `rows`,
/// `bytes_on_disk`, `compressed`, `uncompressed`, `partitions`, and
/// `oldest_day` (`YYYY-MM-DD`; `1970-01-01`, or `0000-00-00` on 18.16, for
/// tables not partitioned by a date).
pub const STORAGE_SQL: &str =
    "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes_on_disk, \
     sum(data_compressed_bytes) AS compressed, sum(data_uncompressed_bytes) AS uncompressed, \
     uniqExact(partition_id) AS partitions, toString(min(min_date)) AS oldest_day \
     FROM system.parts WHERE database = currentDatabase() AND active = 1 \
     GROUP BY table ORDER BY table";

/// The partitions of [`RETAINED_TABLES`] whose newest day is before a day
/// (bind: `YYYY-MM-DD`): `table`, `partition_id`, `newest_day`.
pub const EXPIRED_SQL: &str = "SELECT table, partition_id, toString(max(max_date)) AS newest_day \
     FROM system.parts WHERE database = currentDatabase() AND active = 1 \
     AND table IN ('events', 'sessions') GROUP BY table, partition_id \
     HAVING max(max_date) < toDate(?) ORDER BY table, partition_id";

/// One table's storage (see [`STORAGE_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct TableStorage {
    /// Table name.
    pub table: String,
    /// Rows in active parts (before merges collapse replaced rows).
    pub rows: u64,
    /// Bytes on disk.
    pub bytes_on_disk: u64,
    /// Compressed bytes of the columns.
    pub compressed: u64,
    /// Uncompressed bytes of the columns.
    pub uncompressed: u64,
    /// Partitions.
    pub partitions: u64,
    /// Oldest day kept (`1970-01-01` or `0000-00-00`: not partitioned by a date).
    pub oldest_day: String,
}

impl TableStorage {
    /// Uncompressed / compressed (0 when empty).
    pub fn ratio(&self) -> f64 {
        if self.compressed == 0 {
            0.0
        } else {
            self.uncompressed as f64 / self.compressed as f64
        }
    }

    /// The oldest day, for tables partitioned by a date (others read as
    /// `1970-01-01`, or `0000-00-00` on ClickHouse 18.16).
    pub fn oldest(&self) -> Option<&str> {
        let dated = !matches!(self.oldest_day.as_str(), "1970-01-01" | "0000-00-00");
        (dated && self.rows > 0).then_some(self.oldest_day.as_str())
    }
}

/// One partition past the retention.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Expired {
    /// `events` or `sessions`.
    pub table: String,
    /// ClickHouse's partition id (`YYYYMMDD`).
    pub partition_id: String,
    /// Its newest day.
    pub newest_day: String,
}

/// The statement dropping `partition` (only tables of [`RETAINED_TABLES`] and
/// partition ids of digits: anything else is refused).
pub fn drop_statement(partition: &Expired) -> Option<String> {
    let known = RETAINED_TABLES.contains(&partition.table.as_str());
    let id = &partition.partition_id;
    let digits = !id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_digit());
    (known && digits).then(|| format!("ALTER TABLE {} DROP PARTITION ID '{id}'", partition.table))
}

/// The first day kept: `retention_days` before the UTC day of `now_ms`.
pub fn cutoff_day(now_ms: i64, retention_days: u32) -> String {
    let day_ms = 86_400_000i64;
    let today = now_ms.div_euclid(day_ms);
    tally_schemas::row::utc_day((today - i64::from(retention_days)) * day_ms)
}

/// Every table's storage.
pub async fn storage(
    client: &clickhouse::Client,
) -> Result<Vec<TableStorage>, clickhouse::error::Error> {
    client.query(STORAGE_SQL).fetch_all().await
}

/// The partitions whose days are all before [`cutoff_day`].
pub async fn expired(
    client: &clickhouse::Client,
    now_ms: i64,
    retention_days: u32,
) -> Result<Vec<Expired>, clickhouse::error::Error> {
    client
        .query(EXPIRED_SQL)
        .bind(cutoff_day(now_ms, retention_days))
        .fetch_all()
        .await
}

/// Drops the [`expired`] partitions; returns them.
pub async fn drop_expired(
    client: &clickhouse::Client,
    now_ms: i64,
    retention_days: u32,
) -> Result<Vec<Expired>, clickhouse::error::Error> {
    let partitions = expired(client, now_ms, retention_days).await?;
    for partition in &partitions {
        if let Some(sql) = drop_statement(partition) {
            client.query(&sql).execute().await?;
        }
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_utc_days_before_today() {
        // 2023-11-15T10:00:00Z, 2 days: 2023-11-13 is the first day kept.
        assert_eq!(cutoff_day(1_700_042_400_000, 2), "2023-11-13");
        assert_eq!(cutoff_day(1_700_006_400_000, 0), "2023-11-15");
    }

    #[test]
    fn the_expired_statement_reads_the_retained_tables() {
        let list: Vec<String> = RETAINED_TABLES.iter().map(|t| format!("'{t}'")).collect();
        assert!(EXPIRED_SQL.contains(&format!("table IN ({})", list.join(", "))));
    }

    #[test]
    fn only_retained_tables_and_digit_ids_are_dropped() {
        let part = |table: &str, id: &str| Expired {
            table: table.into(),
            partition_id: id.into(),
            newest_day: "2020-01-01".into(),
        };
        assert_eq!(
            drop_statement(&part("events", "20200101")).as_deref(),
            Some("ALTER TABLE events DROP PARTITION ID '20200101'")
        );
        assert!(drop_statement(&part("persons", "20200101")).is_none());
        assert!(drop_statement(&part("events", "2020'; DROP")).is_none());
        assert!(drop_statement(&part("events", "")).is_none());
    }

    #[test]
    fn ratio_and_oldest_day() {
        let table = TableStorage {
            table: "events".into(),
            rows: 10,
            bytes_on_disk: 120,
            compressed: 100,
            uncompressed: 1_500,
            partitions: 2,
            oldest_day: "2023-11-14".into(),
        };
        assert_eq!(table.ratio(), 15.0);
        assert_eq!(table.oldest(), Some("2023-11-14"));
        let undated = TableStorage {
            oldest_day: "1970-01-01".into(),
            ..table
        };
        assert_eq!(undated.oldest(), None);
        let on_18_16 = TableStorage {
            oldest_day: "0000-00-00".into(),
            ..undated
        };
        assert_eq!(on_18_16.oldest(), None);
    }
}
