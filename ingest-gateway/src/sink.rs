//! Where accepted events go: the [`EventSink`] trait and its Kafka implementation.
//!
//! `publish` resolves only when the broker has acknowledged *every* event given
//! (idempotent producer, `acks=all`), or fails within the produce timeout. The
//! gateway answers 200 only after `publish` succeeded.

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::future::Future;
use std::time::Duration;
use tally_common::kafka::KafkaConfig;
use tally_schemas::Envelope;

/// A destination for accepted events.
pub trait EventSink: Send + Sync + 'static {
    /// Stores all `envelopes` durably, or fails.
    fn publish(&self, envelopes: &[Envelope]) -> impl Future<Output = Result<(), String>> + Send;
    /// `Ok` when the sink can currently accept events.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Waits (bounded) for in-flight events at shutdown.
    fn flush(&self, timeout: Duration);
}

/// Produces envelopes to the events topic, keyed by app and user.
#[derive(Clone)]
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer (no connection is made yet).
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, rdkafka::error::KafkaError> {
        let timeout_ms = timeout.as_millis().to_string();
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", &timeout_ms)
            .set("queue.buffering.max.kbytes", "262144")
            .create()?;
        Ok(KafkaSink {
            producer,
            topic: kafka.topic.clone(),
            timeout,
        })
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
        let mut deliveries = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let key = envelope.partition_key();
            let payload = envelope.encode();
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            match self.producer.send_result(record) {
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

    async fn ready(&self) -> Result<(), String> {
        let (producer, topic) = (self.producer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || Self::fetch_metadata(&producer, &topic))
            .await
            .map_err(|err| err.to_string())?
    }

    fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            tracing::warn!(error = %err, "producer flush at shutdown incomplete");
        }
    }
}
