//! The consume loop: Kafka → batch → [`Processor::apply`] → commit.
//!
//! Messages are buffered until `max_batch_rows` or `flush_interval` after the
//! first buffered message. A failed write is retried with backoff while
//! consumption is paused (memory stays bounded by one batch); offsets are
//! committed only after both stores hold the batch. On shutdown: stop reading,
//! flush the buffer, commit synchronously, leave the group.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::processor::{Message, Processor};
use crate::{live::LiveStore, raw::RawSink};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_common::Clock;
use tally_schemas::Envelope;
use tokio_util::sync::CancellationToken;

/// Consumer context that notes rebalances (cached watermarks must then be
/// re-read) and publishes librdkafka's per-partition consumer lag.
#[derive(Debug, Clone)]
pub struct RebalanceWatch {
    rebalanced: Arc<AtomicBool>,
    lag: prometheus::IntGaugeVec,
}

impl RebalanceWatch {
    /// A watch reporting lag into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        RebalanceWatch {
            rebalanced: Arc::new(AtomicBool::new(false)),
            lag: metrics.consumer_lag.clone(),
        }
    }
}

impl ClientContext for RebalanceWatch {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition; lag -1 means unknown.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.lag
                        .with_label_values(&[&partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceWatch {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalanced.store(true, Ordering::SeqCst);
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = list.count(), "partitions assigned")
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = list.count(), "partitions revoked")
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance error"),
        }
    }
}

/// The aggregator's Kafka consumer.
pub type EventConsumer = StreamConsumer<RebalanceWatch>;

/// Creates the consumer and subscribes to the events topic.
pub fn subscribe(
    config: &Config,
    watch: RebalanceWatch,
) -> Result<EventConsumer, rdkafka::error::KafkaError> {
    let consumer: EventConsumer = config
        .kafka
        .client_config()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("isolation.level", "read_committed")
        // While a store is down consumption pauses; bound what librdkafka prefetches meanwhile.
        .set("queued.max.messages.kbytes", "16384")
        .set("statistics.interval.ms", "5000")
        .create_with_context(watch)?;
    consumer.subscribe(&[&config.kafka.topic])?;
    Ok(consumer)
}

/// Pending batch: decoded messages and the next offset to commit per partition.
#[derive(Debug, Default)]
struct Batch {
    messages: Vec<Message>,
    next_offsets: BTreeMap<i32, i64>,
    started: Option<Instant>,
}

/// Runs until `stop` is cancelled; returns after the final flush and commit.
pub async fn consume<R: RawSink, L: LiveStore>(
    consumer: EventConsumer,
    mut processor: Processor<R, L>,
    config: &Config,
    metrics: &Metrics,
    clock: &dyn Clock,
    stop: CancellationToken,
) {
    let mut writer = Writer {
        consumer: &consumer,
        processor: &mut processor,
        topic: &config.kafka.topic,
        metrics,
        clock,
    };
    let mut batch = Batch::default();
    loop {
        let deadline = batch
            .started
            .map(|started| tokio::time::Instant::from_std(started + config.flush_interval));
        let flush_due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = flush_due => {
                writer.flush(&mut batch, &stop).await;
            }
            received = consumer.recv() => match received {
                Ok(message) => {
                    batch.started.get_or_insert_with(Instant::now);
                    batch.next_offsets.insert(message.partition(), message.offset() + 1);
                    match Envelope::decode(message.payload().unwrap_or_default()) {
                        Ok(envelope) => batch.messages.push(Message {
                            partition: message.partition(),
                            offset: message.offset(),
                            envelope,
                        }),
                        Err(err) => {
                            metrics.undecodable.inc();
                            tracing::warn!(partition = message.partition(), offset = message.offset(), error = %err, "skipping undecodable message");
                        }
                    }
                    if batch.messages.len() >= config.max_batch_rows {
                        writer.flush(&mut batch, &stop).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "kafka receive error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    // Graceful stop: intake has stopped; write what we hold, then commit.
    let final_stop = CancellationToken::new();
    let limit = tokio::time::sleep(Duration::from_secs(20));
    tokio::select! {
        () = writer.flush(&mut batch, &final_stop) => {}
        () = limit => tracing::warn!("final flush timed out; uncommitted events will be replayed"),
    }
}

/// What a flush needs besides the batch.
struct Writer<'a, R, L> {
    consumer: &'a EventConsumer,
    processor: &'a mut Processor<R, L>,
    topic: &'a str,
    metrics: &'a Metrics,
    clock: &'a dyn Clock,
}

impl<R: RawSink, L: LiveStore> Writer<'_, R, L> {
    /// Writes `batch` to both stores (retrying while `stop` is not cancelled), then commits.
    async fn flush(&mut self, batch: &mut Batch, stop: &CancellationToken) {
        let Writer {
            consumer,
            processor,
            topic,
            metrics,
            clock,
        } = self;
        let watch = consumer.context();
        if batch.next_offsets.is_empty() {
            batch.started = None;
            return;
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            if watch.rebalanced.swap(false, Ordering::SeqCst) {
                processor.forget_partitions();
            }
            match processor.apply(&batch.messages).await {
                Ok(outcome) => {
                    let now = clock.now_ms();
                    for event_ms in &outcome.made_visible {
                        metrics
                            .visible_seconds
                            .observe((now - event_ms).max(0) as f64 / 1000.0);
                    }
                    metrics.late_events.inc_by(outcome.late as u64);
                    metrics.bot_events.inc_by(outcome.bots as u64);
                    metrics.duplicates.inc_by(outcome.repeats as u64);
                    metrics.events.inc_by(outcome.raw_written as u64);
                    metrics
                        .replayed
                        .with_label_values(&["clickhouse"])
                        .inc_by(outcome.raw_skipped as u64);
                    metrics
                        .replayed
                        .with_label_values(&["redis"])
                        .inc_by(outcome.live_skipped as u64);
                    break;
                }
                Err(err) => {
                    metrics
                        .flush_errors
                        .with_label_values(&[err.reason()])
                        .inc();
                    tracing::warn!(reason = err.reason(), error = %err, retry_in_ms = backoff.as_millis() as u64, "batch write failed; consumption paused");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_events.observe(batch.messages.len() as f64);
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &batch.next_offsets {
            if let Err(err) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(error = %err, "bad commit offset");
            }
        }
        // Commit failures (e.g. partition revoked meanwhile) are harmless: the stores are
        // idempotent, so a replay from an older offset changes nothing.
        if let Err(err) = consumer.commit(&offsets, CommitMode::Sync) {
            tracing::warn!(error = %err, "offset commit failed; a replay will be deduplicated");
        }
        batch.messages.clear();
        batch.next_offsets.clear();
        batch.started = None;
    }
}
