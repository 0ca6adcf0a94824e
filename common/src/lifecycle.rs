//! The data lifecycle (issue 17, seed 002: raw events two years, aggregates
//! forever): what each table holds on disk, and the retention of raw rows.
//!
//! * [`storage`]: per table of the database, its active parts' rows, bytes on
//!   disk, compressed and uncompressed bytes (their ratio is the compression),
//!   partitions, and the oldest day kept by the tables partitioned by day
//!   (`system.parts`; ClickHouse 18.16 and current).
//! * [`expired`] and [`drop_expired`]: raw rows older than the retention are
//!   removed by dropping whole partitions (`ALTER TABLE … DROP PARTITION
//!   ID`; ClickHouse 18.16 has no TTL clause, and never a row-by-row delete):
//!   `events` by (retention class, event day) and `sessions` by (class,
//!   creation day) ([`RETAINED_TABLES`], migration 0012). A row's class is
//!   its app's retention override in days when the gateway accepted it, or
//!   0 for the installation's `retention_days`. A partition goes when its
//!   newest day is older than its class's days before today (UTC).
//!   Persons, reports, rollups and the refresher's sets are kept forever;
//!   `arrivals` are pruned by the refresher. The gateway refuses events older
//!   than the app's retention (the same days), so no accepted event lands in
//!   a dropped day.
//!
//! On a cluster (`layout`) the reads cover every shard and the drops run on
//! every shard's local tables (`tally_schemas::cluster::Cluster::system_read`
//! and `mutation`); table names are the single-node ones either way.
//!
//! Statements are text here (the report refresher's golden tests run them on
//! both ClickHouse versions); the report refresher runs [`drop_expired`] on a
//! schedule and exports [`storage`] as metrics, `tally-admin storage` and
//! `tally-admin retention` run them once.

use serde::Deserialize;
use tally_schemas::cluster::{logical_table, Cluster};

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
/// (bind: `YYYY-MM-DD`, the cutoff of the shortest retention in force):
/// `table`, `partition_id` (`{class}-{YYYYMMDD}`), `newest_day`.
pub const EXPIRED_SQL: &str = "SELECT table, partition_id, toString(max(max_date)) AS newest_day \
     FROM system.parts WHERE database = currentDatabase() AND active = 1 \
     AND table IN ('events', 'sessions') GROUP BY table, partition_id \
     HAVING max(max_date) < toDate(?) ORDER BY table, partition_id";

/// Longest retention override an app may have, in days (10 years).
pub const MAX_RETENTION_DAYS: u16 = 3_650;

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

/// One partition of a retained table (past the retention once returned by
/// [`expired`]).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Expired {
    /// `events` or `sessions`.
    pub table: String,
    /// ClickHouse's partition id: `{class}-{YYYYMMDD}` (a tuple key of
    /// integers and a date; `YYYYMMDD` alone before migration 0012).
    pub partition_id: String,
    /// Its newest day.
    pub newest_day: String,
}

impl Expired {
    /// The retention class of the partition's rows (0: the installation's
    /// retention), `None` for an id of another shape.
    pub fn class(&self) -> Option<u16> {
        let id = self.partition_id.as_str();
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        match id.split_once('-') {
            Some((class, day)) if digits(class) && digits(day) && day.len() == 8 => {
                class.parse().ok()
            }
            None if digits(id) && id.len() == 8 => Some(0),
            _ => None,
        }
    }

    /// Whether every day of the partition is older than its class keeps
    /// rows (`default_days` for class 0) before the UTC day of `now_ms`.
    pub fn is_past(&self, now_ms: i64, default_days: u32) -> bool {
        self.class().is_some_and(|class| {
            let days = if class == 0 {
                default_days
            } else {
                u32::from(class)
            };
            self.newest_day.as_str() < cutoff_day(now_ms, days).as_str()
        })
    }
}

/// The statement dropping `partition` (only tables of [`RETAINED_TABLES`] and
/// partition ids of a known shape: anything else is refused).
pub fn drop_statement(partition: &Expired) -> Option<String> {
    let known = RETAINED_TABLES.contains(&partition.table.as_str());
    let id = &partition.partition_id;
    (known && partition.class().is_some())
        .then(|| format!("ALTER TABLE {} DROP PARTITION ID '{id}'", partition.table))
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
    layout: Option<Cluster<'_>>,
) -> Result<Vec<TableStorage>, clickhouse::error::Error> {
    let sql = layout.map_or(STORAGE_SQL.to_owned(), |l| l.system_read(STORAGE_SQL));
    let mut tables: Vec<TableStorage> = client.query(&sql).fetch_all().await?;
    for table in &mut tables {
        table.table = logical_table(&table.table).to_owned();
    }
    Ok(tables)
}

/// The partitions whose days are all older than their class keeps them
/// (`retention_days` for class 0; see [`Expired::is_past`]).
pub async fn expired(
    client: &clickhouse::Client,
    layout: Option<Cluster<'_>>,
    now_ms: i64,
    retention_days: u32,
) -> Result<Vec<Expired>, clickhouse::error::Error> {
    // Every class keeps at least a day: read the partitions before yesterday,
    // then keep those past their own class.
    let sql = layout.map_or(EXPIRED_SQL.to_owned(), |l| l.system_read(EXPIRED_SQL));
    let partitions: Vec<Expired> = client
        .query(&sql)
        .bind(cutoff_day(now_ms, 1))
        .fetch_all()
        .await?;
    // On a cluster `cluster(…)` aggregates two-level: one row per partition.
    Ok(partitions
        .into_iter()
        .map(|mut partition| {
            partition.table = logical_table(&partition.table).to_owned();
            partition
        })
        .filter(|partition| partition.is_past(now_ms, retention_days))
        .collect())
}

/// Drops the [`expired`] partitions; returns them.
pub async fn drop_expired(
    client: &clickhouse::Client,
    layout: Option<Cluster<'_>>,
    now_ms: i64,
    retention_days: u32,
) -> Result<Vec<Expired>, clickhouse::error::Error> {
    let partitions = expired(client, layout, now_ms, retention_days).await?;
    for partition in &partitions {
        if let Some(sql) = drop_statement(partition) {
            let sql = layout.map_or(sql.clone(), |l| l.mutation(&sql));
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
            drop_statement(&part("events", "0-20200101")).as_deref(),
            Some("ALTER TABLE events DROP PARTITION ID '0-20200101'")
        );
        assert_eq!(
            drop_statement(&part("sessions", "90-20200101")).as_deref(),
            Some("ALTER TABLE sessions DROP PARTITION ID '90-20200101'")
        );
        assert!(drop_statement(&part("events", "20200101")).is_some());
        assert!(drop_statement(&part("persons", "0-20200101")).is_none());
        assert!(drop_statement(&part("events", "2020'; DROP")).is_none());
        assert!(drop_statement(&part("events", "0-2020'; DROP")).is_none());
        assert!(drop_statement(&part("events", "-20200101")).is_none());
        assert!(drop_statement(&part("events", "")).is_none());
    }

    #[test]
    fn each_class_keeps_its_own_days() {
        // 2023-11-15T10:00:00Z.
        let now = 1_700_042_400_000;
        let part = |id: &str, newest: &str| Expired {
            table: "events".into(),
            partition_id: id.into(),
            newest_day: newest.into(),
        };
        // Class 0 follows the installation's 10 days: 2023-11-05 is kept.
        assert!(!part("0-20231105", "2023-11-05").is_past(now, 10));
        assert!(part("0-20231104", "2023-11-04").is_past(now, 10));
        // Class 3 keeps 3 days whatever the default: 2023-11-12 is kept.
        assert!(!part("3-20231112", "2023-11-12").is_past(now, 10));
        assert!(part("3-20231111", "2023-11-11").is_past(now, 10));
        // A class longer than the default keeps more.
        assert!(!part("30-20231101", "2023-11-01").is_past(now, 10));
        // Ids from before migration 0012 are class 0; other shapes never go.
        assert!(part("20231101", "2023-11-01").is_past(now, 10));
        assert!(!part("x-20231101", "2023-11-01").is_past(now, 10));
        assert_eq!(part("12-20231101", "").class(), Some(12));
        assert_eq!(part("12-2023110", "").class(), None);
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
