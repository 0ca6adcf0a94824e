//! Aggregator telemetry (labels bounded: reason codes and fixed names). Each
//! notable event has one function that both logs it (structured fields) and
//! counts it, so no failure is only logged. [`unreadable_state`] is a free
//! function because the pure steps that meet an unreadable stored value hold
//! no `Metrics`; it counts into the counter the process's `Metrics` registered.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

/// `tally_aggregator_unreadable_state_total{kind}`, set by [`Metrics::new`].
static UNREADABLE: std::sync::OnceLock<IntCounterVec> = std::sync::OnceLock::new();

/// A stored value (`kind`: `visitor` state, `sketch`) could not be read and was
/// replaced (a visitor starts afresh; a sketch is rebuilt from this batch).
pub fn unreadable_state(kind: &'static str, key: &str, error: &dyn std::fmt::Display) {
    if let Some(counter) = UNREADABLE.get() {
        counter.with_label_values(&[kind]).inc();
    }
    tracing::warn!(kind, key, %error, "replacing an unreadable stored value");
}

/// `tally_aggregator_replica_selections_total{shard,outcome}`, set by [`Metrics::new`].
static REPLICAS: std::sync::OnceLock<IntCounterVec> = std::sync::OnceLock::new();

/// A cluster replica proved itself synced and became its shard's home
/// (`crate::shards`); `shard` is 1-based.
pub fn replica_selected(shard: usize, url: &str) {
    if let Some(counter) = REPLICAS.get() {
        counter
            .with_label_values(&[&shard.to_string(), "selected"])
            .inc();
    }
    tracing::info!(shard, url, "cluster replica selected as the shard's home");
}

/// A cluster replica could not become its shard's home (down, not synced,
/// or not the shard it was configured as).
pub fn replica_unusable(shard: usize, url: &str, error: &dyn std::fmt::Display) {
    if let Some(counter) = REPLICAS.get() {
        counter
            .with_label_values(&[&shard.to_string(), "unusable"])
            .inc();
    }
    tracing::warn!(shard, url, %error, "cluster replica not usable as the shard's home");
}

/// The aggregator's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// `tally_aggregator_events_total`: events consumed and written.
    pub events: IntCounter,
    /// `tally_aggregator_replayed_total{store}`: events skipped because the store already held them.
    pub replayed: IntCounterVec,
    /// `tally_aggregator_undecodable_total`: messages that were not a known envelope.
    pub undecodable: IntCounter,
    /// `tally_aggregator_flush_errors_total{reason}`.
    pub flush_errors: IntCounterVec,
    /// `tally_aggregator_flush_seconds`: time to write one batch to both stores.
    pub flush_seconds: Histogram,
    /// `tally_aggregator_batch_events`: events per flushed batch.
    pub batch_events: Histogram,
    /// `tally_aggregator_late_events_total`: events received after their window's
    /// allowed lateness (stored in ClickHouse, not counted live).
    pub late_events: IntCounter,
    /// `tally_aggregator_bot_events_total`: bot events (stored, not counted live).
    pub bot_events: IntCounter,
    /// `tally_aggregator_duplicates_total`: messages dropped because an earlier
    /// message carried the same client event id (client retries).
    pub duplicates: IntCounter,
    /// Identity events applied.
    pub identity_events: IntCounter,
    /// Events dropped because their person was deleted.
    pub deleted_person_events: IntCounter,
    /// Identity rows upserted.
    pub identity_rows: IntCounter,
    /// `tally_aggregator_visible_seconds`: event time → visible in live windows.
    pub visible_seconds: Histogram,
    /// `tally_aggregator_consumer_lag{partition}`: messages behind the log end (librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// Partitions with lag and no consumer, as the group watchdog saw them.
    pub orphaned: prometheus::IntGauge,
    /// Group rejoins by reason.
    pub rejoins: IntCounterVec,
    /// Failed reads of the group's positions by the watchdog.
    pub watchdog_errors: IntCounter,
    /// Failed offset commits.
    pub commit_errors: IntCounter,
    /// Failed receives from the broker.
    pub receive_errors: IntCounter,
    /// Partition claims that expired during an insert.
    pub claims_lost_total: IntCounter,
    /// Errors the consumer group reported during a rebalance.
    pub rebalance_errors: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let events = IntCounter::new("tally_aggregator_events_total", "Events written")?;
        let replayed = IntCounterVec::new(
            Opts::new(
                "tally_aggregator_replayed_total",
                "Events skipped because a store already held them (replay after crash or rebalance)",
            ),
            &["store"],
        )?;
        let undecodable = IntCounter::new(
            "tally_aggregator_undecodable_total",
            "Messages that did not decode as an envelope",
        )?;
        let flush_errors = IntCounterVec::new(
            Opts::new(
                "tally_aggregator_flush_errors_total",
                "Failed batch writes by reason",
            ),
            &["reason"],
        )?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new("tally_aggregator_flush_seconds", "Batch write time")
                .buckets(exponential_buckets(0.001, 2.0, 14)?),
        )?;
        let batch_events = Histogram::with_opts(
            HistogramOpts::new("tally_aggregator_batch_events", "Events per batch")
                .buckets(exponential_buckets(1.0, 4.0, 10)?),
        )?;
        let late_events = IntCounter::new(
            "tally_aggregator_late_events_total",
            "Events received after their window's allowed lateness (ClickHouse only)",
        )?;
        let bot_events = IntCounter::new(
            "tally_aggregator_bot_events_total",
            "Bot events (ClickHouse only, not in live windows)",
        )?;
        let deleted_person_events = IntCounter::new(
            "tally_aggregator_deleted_person_events_total",
            "Events dropped because their person was deleted (tombstoned distinct id)",
        )?;
        let identity_events = IntCounter::new(
            "tally_aggregator_identity_events_total",
            "Identity events (identify, alias) applied to the identity state",
        )?;
        let identity_rows = IntCounter::new(
            "tally_aggregator_identity_rows_total",
            "Person and distinct-id rows upserted into ClickHouse",
        )?;
        let duplicates = IntCounter::new(
            "tally_aggregator_duplicates_total",
            "Messages dropped as a repeat of an earlier client event id",
        )?;
        let visible_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tally_aggregator_visible_seconds",
                "Event time to visible in the live windows",
            )
            .buckets(exponential_buckets(0.05, 2.0, 14)?),
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "tally_aggregator_consumer_lag",
                "Messages between the committed position and the log end, per partition",
            ),
            &["partition"],
        )?;
        let orphaned = prometheus::IntGauge::new(
            "tally_aggregator_orphaned_partitions",
            "Partitions with lag whose committed offset stands still and that no member owns \
             (alert when > 0 for a minute)",
        )?;
        let rejoins = IntCounterVec::new(
            Opts::new(
                "tally_aggregator_group_rejoins_total",
                "Times this member left and rejoined its consumer group, by reason",
            ),
            &["reason"],
        )?;
        let watchdog_errors = IntCounter::new(
            "tally_aggregator_watchdog_errors_total",
            "Failed reads of the group's offsets by the group watchdog",
        )?;
        let commit_errors = IntCounter::new(
            "tally_aggregator_commit_errors_total",
            "Failed offset commits (harmless: a replay is deduplicated; persistent ones mean replays grow)",
        )?;
        let receive_errors = IntCounter::new(
            "tally_aggregator_receive_errors_total",
            "Errors receiving from the broker",
        )?;
        let claims_lost_total = IntCounter::new(
            "tally_aggregator_claims_lost_total",
            "Partition claims that expired during an insert (another writer may have stored the same rows)",
        )?;
        let rebalance_errors = IntCounter::new(
            "tally_aggregator_rebalance_errors_total",
            "Errors reported by the consumer group during a rebalance",
        )?;
        let created = IntCounterVec::new(
            Opts::new(
                "tally_aggregator_unreadable_state_total",
                "Stored values that could not be read and were replaced, by kind",
            ),
            &["kind"],
        )?;
        // One counter per process, shared by every registry made here (tests make several).
        let unreadable = UNREADABLE.get_or_init(|| created).clone();
        let selections = IntCounterVec::new(
            Opts::new(
                "tally_aggregator_replica_selections_total",
                "Cluster replicas selected as (or found unusable for) their shard's home",
            ),
            &["shard", "outcome"],
        )?;
        let replicas = REPLICAS.get_or_init(|| selections).clone();
        for metric in [
            Box::new(unreadable) as Box<dyn prometheus::core::Collector>,
            Box::new(replicas),
            Box::new(rebalance_errors.clone()),
            Box::new(commit_errors.clone()),
            Box::new(receive_errors.clone()),
            Box::new(claims_lost_total.clone()),
            Box::new(orphaned.clone()),
            Box::new(rejoins.clone()),
            Box::new(watchdog_errors.clone()),
            Box::new(late_events.clone()),
            Box::new(bot_events.clone()),
            Box::new(duplicates.clone()),
            Box::new(identity_events.clone()),
            Box::new(deleted_person_events.clone()),
            Box::new(identity_rows.clone()),
            Box::new(visible_seconds.clone()),
            Box::new(consumer_lag.clone()),
        ] {
            registry.register(metric)?;
        }
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        registry.register(Box::new(undecodable.clone()))?;
        registry.register(Box::new(flush_errors.clone()))?;
        registry.register(Box::new(flush_seconds.clone()))?;
        registry.register(Box::new(batch_events.clone()))?;
        Ok(Metrics {
            registry,
            events,
            replayed,
            undecodable,
            flush_errors,
            flush_seconds,
            batch_events,
            late_events,
            bot_events,
            duplicates,
            identity_events,
            identity_rows,
            deleted_person_events,
            visible_seconds,
            consumer_lag,
            orphaned,
            rejoins,
            watchdog_errors,
            commit_errors,
            receive_errors,
            claims_lost_total,
            rebalance_errors,
        })
    }

    /// The consumer group reported an error during a rebalance.
    pub fn rebalance_failed(&self, error: &str) {
        self.rebalance_errors.inc();
        tracing::warn!(error, "rebalance error");
    }

    /// The group watchdog's finding: partitions with lag and no consumer.
    pub fn orphaned_partitions(&self, partitions: &[i32]) {
        let before = self.orphaned.get();
        let now = i64::try_from(partitions.len()).unwrap_or(i64::MAX);
        self.orphaned.set(now);
        if now > 0 {
            tracing::warn!(
                partitions = ?partitions,
                "partitions have lag but no consumer: nothing is consumed from them; rejoining the group"
            );
        } else if before > 0 {
            tracing::info!("every partition with lag has a consumer again");
        }
    }

    /// This member left and rejoined its consumer group.
    pub fn rejoined(&self, reason: &'static str) {
        self.rejoins.with_label_values(&[reason]).inc();
        tracing::warn!(reason, "left and rejoined the consumer group");
    }

    /// An offset commit failed (a later replay is deduplicated).
    pub fn commit_failed(&self, error: &str) {
        self.commit_errors.inc();
        tracing::warn!(error, "offset commit failed; a replay will be deduplicated");
    }

    /// Receiving from the broker failed.
    pub fn receive_failed(&self, error: &str) {
        self.receive_errors.inc();
        tracing::warn!(error, "kafka receive error");
    }

    /// Partition claims expired while their insert ran.
    pub fn claims_lost(&self, keys: &[String]) {
        self.claims_lost_total.inc_by(keys.len() as u64);
        tracing::error!(keys = ?keys, "a partition claim expired during an insert; another writer may have stored the same rows");
    }

    /// The watchdog could not read the group's positions.
    pub fn watchdog_read_failed(&self, error: &str) {
        self.watchdog_errors.inc();
        tracing::warn!(error, "group watchdog could not read offsets");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_stored_value_is_counted_in_the_registry() {
        let metrics = Metrics::new().unwrap();
        let count = |metrics: &Metrics| {
            metrics
                .registry
                .gather()
                .iter()
                .find(|family| family.name() == "tally_aggregator_unreadable_state_total")
                .map_or(0.0, |family| {
                    family
                        .get_metric()
                        .iter()
                        .filter(|m| m.get_label()[0].value() == "visitor")
                        .map(|m| m.get_counter().get_value())
                        .sum()
                })
        };
        let before = count(&metrics);
        unreadable_state("visitor", "tally:v:app:u", &"not json");
        assert_eq!(count(&metrics), before + 1.0);
    }
}
