//! The consume loop: Kafka → batch → [`Processor::apply`] → commit.
//!
//! Messages are buffered; every `live_flush_interval` (200 ms) after the first
//! new message the live step makes them visible in Redis, and at `max_batch_rows`
//! or `flush_interval` (1 s) after the first buffered message the full step
//! writes everything to ClickHouse and Redis, then commits. A failed write is retried with backoff while
//! consumption is paused (memory stays bounded by one batch); offsets are
//! committed only after both stores hold the batch. On shutdown: stop reading,
//! flush the buffer, commit synchronously, leave the group. Other commits are
//! asynchronous (failures counted by [`Metrics::commit_failed`]).

use crate::config::Config;
use crate::error::AggregatorError;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::processor::{Outcome, Pending, Processor};
use crate::{live::LiveStore, raw::RawSink};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_common::Clock;
use tally_schemas::Envelope;
use tokio_util::sync::CancellationToken;

/// Consumer context that notes rebalances and revoked partitions, and
/// publishes librdkafka's per-partition consumer lag.
///
/// Rebalance callbacks run inside `recv()`, never during a flush (which does
/// not poll), and the group hands a revoked partition to another member only
/// after this member has rejoined inside that same poll. So dropping the
/// pending messages of revoked partitions right after `recv()` returns
/// guarantees this process never writes a partition it no longer owns; the new
/// owner replays them from the last commit.
#[derive(Debug, Clone)]
pub struct RebalanceWatch {
    rebalanced: Arc<AtomicBool>,
    revoked: Arc<std::sync::Mutex<Vec<i32>>>,
    metrics: Metrics,
    /// The settled assignment and since when (`None` while rebalancing).
    assignment: Arc<std::sync::Mutex<Option<Settled>>>,
    /// Set by the group watchdog (see [`crate::watchdog`]).
    rejoin: Arc<tokio::sync::Notify>,
}

impl RebalanceWatch {
    /// A watch reporting lag into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        RebalanceWatch {
            rebalanced: Arc::new(AtomicBool::new(false)),
            revoked: Arc::default(),
            metrics: metrics.clone(),
            assignment: Arc::default(),
            rejoin: Arc::default(),
        }
    }

    /// This member's settled assignment and since when (`None` while a
    /// rebalance is in progress or before the first one).
    pub fn assignment(&self) -> Option<Settled> {
        self.assignment.lock().ok().and_then(|a| a.clone())
    }

    /// Asks the consume loop to leave and rejoin the group.
    pub fn request_rejoin(&self) {
        self.rejoin.notify_one();
    }

    fn set_assignment(&self, assignment: Option<BTreeSet<i32>>) {
        if let Ok(mut current) = self.assignment.lock() {
            *current = assignment.map(|set| (set, tokio::time::Instant::now()));
        }
    }

    /// Partitions revoked since the last call.
    fn take_revoked(&self) -> Vec<i32> {
        self.revoked
            .lock()
            .map(|mut revoked| std::mem::take(&mut *revoked))
            .unwrap_or_default()
    }
}

impl ClientContext for RebalanceWatch {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition; lag -1 means unknown.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
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
                tracing::info!(partitions = list.count(), "partitions assigned");
                self.set_assignment(Some(
                    list.elements().iter().map(|e| e.partition()).collect(),
                ));
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = list.count(), "partitions revoked");
                self.set_assignment(None);
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(list.elements().iter().map(|e| e.partition()));
                }
                self.metrics.consumer_lag.reset();
            }
            Rebalance::Error(err) => self.metrics.rebalance_failed(&err.to_string()),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(err) = result {
            self.metrics.commit_failed(&err.to_string());
        }
    }
}

/// A settled assignment and when it was received.
pub type Settled = (BTreeSet<i32>, tokio::time::Instant);

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
        .set("max.poll.interval.ms", "3600000")
        .set("heartbeat.interval.ms", "1000")
        .set("isolation.level", "read_committed")
        // While a store is down consumption pauses; bound what librdkafka prefetches meanwhile.
        .set("queued.max.messages.kbytes", "16384")
        .set("statistics.interval.ms", "5000")
        .set(
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().to_string(),
        )
        .create_with_context(watch)?;
    consumer.subscribe(&[&config.kafka.topic])?;
    Ok(consumer)
}

/// Pending batch: decoded messages and the next offset to commit per partition.
#[derive(Debug, Default)]
struct Batch {
    pending: Pending,
    next_offsets: BTreeMap<i32, i64>,
    /// When the oldest message not yet in every store arrived.
    started: Option<Instant>,
    /// When the oldest message not yet in the live windows arrived.
    live_started: Option<Instant>,
}

impl Batch {
    /// Buffers one consumed message (undecodable ones are counted and skipped,
    /// their offsets still committed).
    /// A replay's range ([`Config::stop_at`]) leaves messages past its end unread;
    /// a replay's [`Config::reenrich`] rewrites each event's enrichment.
    fn take(&mut self, message: &BorrowedMessage<'_>, metrics: &Metrics, config: &Config) {
        if let Some(stop_at) = &config.stop_at {
            if stop_at
                .get(&message.partition())
                .is_none_or(|end| message.offset() >= *end)
            {
                return;
            }
        }
        self.started.get_or_insert_with(Instant::now);
        self.next_offsets
            .insert(message.partition(), message.offset() + 1);
        match Envelope::decode(message.payload().unwrap_or_default()) {
            Ok(mut envelope) => {
                if let Some(reenrich) = &config.reenrich {
                    reenrich.reenrich(&mut envelope);
                }
                self.live_started.get_or_insert_with(Instant::now);
                self.pending.push(Message {
                    partition: message.partition(),
                    offset: message.offset(),
                    envelope,
                });
            }
            Err(err) => {
                metrics.undecodable.inc();
                tracing::warn!(partition = message.partition(), offset = message.offset(), error = %err, "skipping undecodable message");
            }
        }
    }

    /// Forgets the messages of `partitions` (revoked: their new owner replays them).
    fn drop_partitions(&mut self, partitions: &[i32]) {
        let before = self.pending.len();
        self.pending.retain_partitions(|p| !partitions.contains(&p));
        self.next_offsets.retain(|p, _| !partitions.contains(p));
        tracing::info!(
            dropped = before - self.pending.len(),
            "pending messages of revoked partitions left to their new owner"
        );
        if self.next_offsets.is_empty() {
            self.started = None;
        }
        if self.pending.live_backlog() > 0 {
            self.live_started.get_or_insert_with(Instant::now);
        }
    }
}

/// Which of the processor's two steps a flush runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// New messages into the live windows.
    Live,
    /// Everything into every store, then commit.
    All,
}

fn due(at: Option<Instant>, after: Duration) -> impl std::future::Future<Output = ()> {
    let deadline = at.map(|at| tokio::time::Instant::from_std(at + after));
    async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Runs until `stop` is cancelled; returns after the final flush and commit.
pub async fn consume<R: RawSink, L: LiveStore>(
    consumer: EventConsumer,
    mut processor: Processor<R, L>,
    config: &Config,
    metrics: &Metrics,
    clock: &dyn Clock,
    stop: CancellationToken,
) -> Result<(), AggregatorError> {
    let mut writer = Writer {
        consumer: &consumer,
        processor: &mut processor,
        topic: &config.kafka.topic,
        metrics,
        clock,
        final_commit: false,
    };
    let mut batch = Batch::default();
    let rejoin = consumer.context().rejoin.clone();
    loop {
        let full_due = due(batch.started, config.flush_interval);
        let live_due = due(batch.live_started, config.live_flush_interval);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = rejoin.notified() => {
                // Store and commit what we hold, then leave and join afresh.
                writer.flush(&mut batch, Step::All, &stop).await?;
                consumer.unsubscribe();
                consumer.subscribe(&[&config.kafka.topic])?;
                metrics.rejoined("orphaned_partitions");
            }
            () = full_due => writer.flush(&mut batch, Step::All, &stop).await?,
            () = live_due => writer.flush(&mut batch, Step::Live, &stop).await?,
            received = consumer.recv() => {
                let revoked = consumer.context().take_revoked();
                if !revoked.is_empty() {
                    batch.drop_partitions(&revoked);
                }
                match received {
                    Ok(message) => batch.take(&message, metrics, config),
                    Err(err) => {
                        metrics.receive_failed(&err.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if batch.pending.len() >= config.max_batch_rows {
                    writer.flush(&mut batch, Step::All, &stop).await?;
                }
            }
        }
    }
    // Graceful stop: intake has stopped; write what we hold, then commit.
    let final_stop = CancellationToken::new();
    writer.final_commit = true;
    let limit = tokio::time::sleep(Duration::from_secs(20));
    tokio::select! {
        flushed = writer.flush(&mut batch, Step::All, &final_stop) => flushed,
        () = limit => {
            tracing::warn!("final flush timed out; uncommitted events will be replayed");
            Ok(())
        }
    }
}

/// Longest a flush may keep retrying. Consumption is paused meanwhile, and a
/// member that does not poll for `max.poll.interval.ms` (set to 1 h) is put
/// out of its group; rather than write later as a zombie, the process exits
/// (its supervisor restarts it and it replays from the last commit).
const MAX_PAUSE: Duration = Duration::from_secs(50 * 60);

/// Whether the current runtime may block a worker (`block_in_place`).
fn multi_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// What a flush needs besides the batch.
struct Writer<'a, R, L> {
    consumer: &'a EventConsumer,
    processor: &'a mut Processor<R, L>,
    topic: &'a str,
    metrics: &'a Metrics,
    clock: &'a dyn Clock,
    /// The next commit is the last one (shutdown): synchronous.
    final_commit: bool,
}

impl<R: RawSink, L: LiveStore> Writer<'_, R, L> {
    /// Runs `step` on `batch`, retrying with backoff while `stop` is not cancelled
    /// (consumption is paused meanwhile); after [`Step::All`] commits the offsets.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        step: Step,
        stop: &CancellationToken,
    ) -> Result<(), AggregatorError> {
        if step == Step::Live {
            batch.live_started = None;
        } else if batch.next_offsets.is_empty() {
            batch.started = None;
            return Ok(());
        }
        let started = Instant::now();
        let events = batch.pending.len();
        let mut backoff = Duration::from_millis(100);
        loop {
            if self
                .consumer
                .context()
                .rebalanced
                .swap(false, Ordering::SeqCst)
            {
                self.processor.forget_partitions();
                batch.pending.invalidate();
            }
            let result = match step {
                Step::Live => self.processor.apply_live(&mut batch.pending).await,
                Step::All => self.processor.apply_all(&mut batch.pending).await,
            };
            match result {
                Ok(outcome) => {
                    self.record(&outcome);
                    break;
                }
                Err(err) => {
                    self.metrics
                        .flush_errors
                        .with_label_values(&[err.reason()])
                        .inc();
                    tracing::warn!(reason = err.reason(), error = %err, retry_in_ms = backoff.as_millis() as u64, "batch write failed; consumption paused");
                    if started.elapsed() > MAX_PAUSE {
                        return Err(AggregatorError::Stalled(started.elapsed().as_secs()));
                    }
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if step == Step::Live {
            return Ok(());
        }
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_events.observe(events as f64);
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &batch.next_offsets {
            if let Err(err) =
                offsets.add_partition_offset(self.topic, *partition, Offset::Offset(*next))
            {
                self.metrics.commit_failed(&err.to_string());
            }
        }
        // Commit failures (e.g. partition revoked meanwhile) are harmless: the stores are
        // idempotent, so a replay from an older offset changes nothing. Commits are
        // asynchronous (the result arrives in `commit_callback`), except the last
        // one on shutdown, which must reach the broker before the process leaves.
        let mode = if self.final_commit {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        let committed = if self.final_commit && multi_threaded() {
            tokio::task::block_in_place(|| self.consumer.commit(&offsets, mode))
        } else {
            self.consumer.commit(&offsets, mode)
        };
        if let Err(err) = committed {
            self.metrics.commit_failed(&err.to_string());
        }
        batch.next_offsets.clear();
        batch.started = None;
        batch.live_started = None;
        Ok(())
    }

    fn record(&self, outcome: &Outcome) {
        let metrics = self.metrics;
        let now = self.clock.now_ms();
        for event_ms in &outcome.made_visible {
            metrics
                .visible_seconds
                .observe((now - event_ms).max(0) as f64 / 1000.0);
        }
        metrics.late_events.inc_by(outcome.late as u64);
        metrics.bot_events.inc_by(outcome.bots as u64);
        metrics.duplicates.inc_by(outcome.repeats as u64);
        metrics
            .deleted_person_events
            .inc_by(outcome.deleted_person_events as u64);
        metrics
            .identity_events
            .inc_by(outcome.identity_events as u64);
        metrics.identity_rows.inc_by(outcome.identity_rows as u64);
        if !outcome.claims_lost.is_empty() {
            metrics.claims_lost(&outcome.claims_lost);
        }
        metrics.events.inc_by(outcome.raw_written as u64);
        metrics
            .replayed
            .with_label_values(&["clickhouse"])
            .inc_by(outcome.raw_skipped as u64);
        metrics
            .replayed
            .with_label_values(&["redis"])
            .inc_by(outcome.live_skipped as u64);
    }
}
