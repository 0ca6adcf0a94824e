//! The data lifecycle on a schedule (issue 17): every `lifecycle_every`, the
//! refresher holding the lease drops the raw partitions past the retention
//! ([`tally_common::lifecycle::drop_expired`]) and measures every table's
//! storage into metrics. Failures are counted and retried at the next
//! interval; they never stop refreshing.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::time::{Duration, Instant};
use tally_common::lifecycle::{self, TableStorage};
use tally_common::Clock;

/// Storage and retention metrics (label `table`: the database's tables, a
/// fixed set given by the migrations).
#[derive(Debug, Clone)]
pub struct LifecycleMetrics {
    /// `tally_storage_rows{table}`.
    rows: IntGaugeVec,
    /// `tally_storage_bytes_on_disk{table}`.
    bytes: IntGaugeVec,
    /// `tally_storage_uncompressed_bytes{table}`.
    uncompressed: IntGaugeVec,
    /// `tally_storage_partitions{table}`.
    partitions: IntGaugeVec,
    /// `tally_storage_oldest_day_seconds{table}` (tables partitioned by day).
    oldest: IntGaugeVec,
    /// `tally_retention_dropped_partitions_total{table}`.
    dropped: IntCounterVec,
    /// `tally_lifecycle_failures_total{step}` (`retention`, `storage`).
    failures: IntCounterVec,
}

impl LifecycleMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["table"])?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let counter = |name: &str, help: &str, label: &str| {
            let counter = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        Ok(LifecycleMetrics {
            rows: gauge("tally_storage_rows", "Rows in the table's active parts")?,
            bytes: gauge("tally_storage_bytes_on_disk", "Bytes on disk of the table")?,
            uncompressed: gauge(
                "tally_storage_uncompressed_bytes",
                "Uncompressed bytes of the table's columns (ratio to compressed = compression)",
            )?,
            partitions: gauge("tally_storage_partitions", "Partitions of the table")?,
            oldest: gauge(
                "tally_storage_oldest_day_seconds",
                "Oldest day kept by a table partitioned by day (epoch seconds)",
            )?,
            dropped: counter(
                "tally_retention_dropped_partitions_total",
                "Day partitions dropped past the retention",
                "table",
            )?,
            failures: counter(
                "tally_lifecycle_failures_total",
                "Lifecycle steps that failed (retried next interval)",
                "step",
            )?,
        })
    }

    /// The storage of every table was measured.
    pub fn measured(&self, tables: &[TableStorage]) {
        let set = |gauge: &IntGaugeVec, table: &str, value: u64| {
            gauge
                .with_label_values(&[table])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        for t in tables {
            set(&self.rows, &t.table, t.rows);
            set(&self.bytes, &t.table, t.bytes_on_disk);
            set(&self.uncompressed, &t.table, t.uncompressed);
            set(&self.partitions, &t.table, t.partitions);
            if let Some(day) = t.oldest().and_then(day_seconds) {
                self.oldest.with_label_values(&[&t.table]).set(day);
            }
        }
        tracing::debug!(tables = tables.len(), "storage measured");
    }

    /// A partition past the retention was dropped.
    pub fn dropped(&self, partition: &lifecycle::Expired) {
        self.dropped.with_label_values(&[&partition.table]).inc();
        tracing::info!(table = %partition.table, partition = %partition.partition_id,
            newest_day = %partition.newest_day, "dropped a day partition past the retention");
    }

    /// A lifecycle step failed.
    pub fn failed(&self, step: &'static str, error: &clickhouse::error::Error) {
        self.failures.with_label_values(&[step]).inc();
        tracing::warn!(step, error = %error, "lifecycle step failed (retried next interval)");
    }
}

/// Epoch seconds of a `YYYY-MM-DD` day.
fn day_seconds(day: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// When the lifecycle last ran, and its settings.
#[derive(Debug)]
pub struct Lifecycle {
    every: Duration,
    retention_days: u32,
    last: Option<Instant>,
}

impl Lifecycle {
    /// Runs every `every`, keeping raw rows `retention_days` days.
    pub fn new(every: Duration, retention_days: u32) -> Self {
        Lifecycle {
            every,
            retention_days,
            last: None,
        }
    }

    /// Runs the lifecycle when it is due (call only while holding the lease).
    pub async fn maybe_run(
        &mut self,
        client: &clickhouse::Client,
        layout: Option<tally_schemas::cluster::Cluster<'_>>,
        metrics: &LifecycleMetrics,
    ) {
        if self.last.is_some_and(|last| last.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let now_ms = tally_common::SystemClock.now_ms();
        match lifecycle::drop_expired(client, layout, now_ms, self.retention_days).await {
            Ok(dropped) => dropped.iter().for_each(|p| metrics.dropped(p)),
            Err(err) => metrics.failed("retention", &err),
        }
        match lifecycle::storage(client, layout).await {
            Ok(tables) => metrics.measured(&tables),
            Err(err) => metrics.failed("storage", &err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::day_seconds;

    #[test]
    fn days_are_utc_midnights() {
        assert_eq!(day_seconds("2023-11-15"), Some(1_700_006_400));
        assert_eq!(day_seconds("15/11/2023"), None);
    }
}
