//! [`KafkaSink`]: produces envelopes to the events topic and refused events to
//! the dead-letter topic. `publish` resolves only when the broker has
//! acknowledged every event given (idempotent producer, `acks=all`), or fails
//! within the produce timeout.
//!
//! Calls into librdkafka that block (creating or destroying a producer, a
//! metadata request, the flush at shutdown) run on the blocking pool, never on
//! the async runtime.

use super::EventSink;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::Duration;
use tally_common::kafka::KafkaConfig;
use tally_schemas::{DeadLetter, Envelope};

/// Produces envelopes to the events topic, keyed by app and user.
///
/// A producer that lived through a broker outage is retired, never reused: after
/// timed-out deliveries an idempotent librdkafka producer resends its old batches
/// and asks the broker to bump its epoch, which a restarted broker may not know
/// how to answer (tansu 0.6 panics in its storage task on either, and then fails
/// every request from every client until it is restarted). So when a publish
/// fails, the sink purges the producer's queues at once (its pending deliveries
/// fail, their requests get 503) and swaps in a fresh producer, which registers a
/// new producer id when the broker is back. Replacement happens at most once per
/// [`RESET_GAP`]; requests in between fail fast on the retired producer.
pub struct KafkaSink {
    producer: std::sync::RwLock<FutureProducer>,
    config: KafkaConfig,
    topic: String,
    timeout: Duration,
    linger: Duration,
    format: tally_schemas::Format,
    last_reset: std::sync::Mutex<Option<std::time::Instant>>,
    /// `tally_gateway_producer_resets_total{result}`, once registered.
    resets: std::sync::OnceLock<prometheus::IntCounterVec>,
}

/// Least time between two replacements.
pub const RESET_GAP: Duration = Duration::from_secs(5);

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer (no connection is made yet): deliveries fail
    /// after `timeout`, a partition's messages are gathered for `linger`,
    /// envelopes are written in `format`.
    pub fn new(
        kafka: &KafkaConfig,
        timeout: Duration,
        linger: Duration,
        format: tally_schemas::Format,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(KafkaSink {
            producer: std::sync::RwLock::new(Self::create(kafka, timeout, linger)?),
            config: kafka.clone(),
            topic: kafka.topic.clone(),
            timeout,
            linger,
            format,
            last_reset: std::sync::Mutex::new(None),
            resets: std::sync::OnceLock::new(),
        })
    }

    /// Adds the producer-reset counter to the gateway's metrics `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        let resets = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tally_gateway_producer_resets_total",
                "Kafka producers retired after a failed publish and replaced, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(resets.clone()))?;
        let _ = self.resets.set(resets);
        Ok(())
    }

    fn reset_done(&self, result: &'static str) {
        if let Some(resets) = self.resets.get() {
            resets.with_label_values(&[result]).inc();
        }
    }

    fn create(
        kafka: &KafkaConfig,
        timeout: Duration,
        linger: Duration,
    ) -> Result<FutureProducer, rdkafka::error::KafkaError> {
        kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger.as_millis().to_string())
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .create()
    }

    fn current(&self) -> Option<FutureProducer> {
        self.producer.read().ok().map(|p| p.clone())
    }

    /// Retires the producer after a failed publish (see the type's doc).
    async fn recover(&self) {
        let fatal = self
            .current()
            .and_then(|producer| producer.client().fatal_error());
        {
            let Ok(mut last) = self.last_reset.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < RESET_GAP) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        tracing::warn!(?fatal, "replacing the Kafka producer");
        let (config, timeout, linger) = (self.config.clone(), self.timeout, self.linger);
        let created =
            tokio::task::spawn_blocking(move || Self::create(&config, timeout, linger)).await;
        match created {
            Ok(Ok(fresh)) => {
                let old = self
                    .producer
                    .write()
                    .ok()
                    .map(|mut slot| std::mem::replace(&mut *slot, fresh));
                // Nothing the old producer holds may reach the broker again: purge its
                // queues now (its pending deliveries fail), then destroy it off the
                // runtime (destroying a librdkafka client blocks).
                if let Some(old) = old {
                    old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
                    tokio::task::spawn_blocking(move || drop(old));
                }
                self.reset_done("replaced");
            }
            Ok(Err(err)) => {
                self.reset_done("failed");
                tracing::error!(error = %err, "could not create a new producer");
            }
            Err(err) => {
                self.reset_done("failed");
                tracing::error!(error = %err, "producer creation task failed");
            }
        }
    }

    fn fetch_metadata(producer: &FutureProducer, topic: &str) -> Result<(), String> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .map_err(|err| err.to_string())?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(format!("topic {topic} not found")),
        }
    }
}

impl EventSink for KafkaSink {
    async fn publish(&self, envelopes: &[Envelope]) -> Result<(), String> {
        let result = self.publish_once(envelopes).await;
        if result.is_err() {
            self.recover().await;
        }
        result
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<(), String> {
        let records = letters
            .iter()
            .map(|letter| (letter.key().to_owned(), letter.encode()));
        self.produce_all(&self.config.dlq_topic, records).await
    }

    async fn ready(&self) -> Result<(), String> {
        let producer = self.current().ok_or("producer unavailable")?;
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || Self::fetch_metadata(&producer, &topic))
            .await
            .map_err(|err| err.to_string())?
    }

    async fn flush(&self, timeout: Duration) {
        let Some(producer) = self.current() else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(error = %err, "producer flush at shutdown incomplete");
        }
    }
}

impl KafkaSink {
    async fn publish_once(&self, envelopes: &[Envelope]) -> Result<(), String> {
        let records = envelopes
            .iter()
            .map(|envelope| (envelope.partition_key(), envelope.encode_as(self.format)));
        self.produce_all(&self.topic, records).await
    }

    /// Enqueues every `(key, payload)` on `topic` and waits for all acknowledgements.
    async fn produce_all(
        &self,
        topic: &str,
        records: impl ExactSizeIterator<Item = (String, Vec<u8>)>,
    ) -> Result<(), String> {
        let producer = self.current().ok_or("producer unavailable")?;
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, payload) in records {
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((err, _)) => return Err(format!("enqueue failed: {err}")),
            }
        }
        // librdkafka fails each delivery after message.timeout.ms; the outer
        // timeout is a backstop so a request can never hang longer.
        let all = futures::future::join_all(deliveries);
        let results = tokio::time::timeout(self.timeout + Duration::from_millis(500), all)
            .await
            .map_err(|_| "broker acknowledgement timed out".to_owned())?;
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Err(err.to_string()),
                Err(_) => return Err("producer dropped the delivery".into()),
            }
        }
        Ok(())
    }
}
