//! Kafka (librdkafka) settings shared by producers and consumers, and topic
//! administration (create, describe) used by `tally-admin` and the tests.

use crate::config::{env_string, ConfigError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

/// Broker connection settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers (`TALLY_KAFKA_BROKERS`, default `127.0.0.1:9092`).
    pub brokers: String,
    /// Topic of accepted events (`TALLY_KAFKA_TOPIC`, default `events`).
    pub topic: String,
    /// Dead-letter topic (`TALLY_KAFKA_DLQ_TOPIC`, default `events_dlq`).
    pub dlq_topic: String,
}

impl Default for KafkaConfig {
    /// The documented defaults (what [`KafkaConfig::from_env`] gives without variables).
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "events".into(),
            dlq_topic: "events_dlq".into(),
        }
    }
}

impl KafkaConfig {
    /// Reads the `TALLY_KAFKA_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = KafkaConfig::default();
        let config = KafkaConfig {
            brokers: env_string("TALLY_KAFKA_BROKERS", &default.brokers),
            topic: env_string("TALLY_KAFKA_TOPIC", &default.topic),
            dlq_topic: env_string("TALLY_KAFKA_DLQ_TOPIC", &default.dlq_topic),
        };
        crate::config::ensure(
            !config.topic.is_empty() && config.topic != config.dlq_topic,
            "TALLY_KAFKA_TOPIC must be set and differ from TALLY_KAFKA_DLQ_TOPIC",
        )?;
        Ok(config)
    }

    /// Base librdkafka settings for any client of these brokers.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.max.ms", "2000")
            .set("log_level", "4");
        config
    }
}

/// Whether `error` is the broker being slow or briefly unreachable (a
/// request timed out, a connection failed) rather than a refusal.
pub fn transient(error: &rdkafka::error::KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}

/// A blocking broker request (metadata, watermarks, committed offsets),
/// tried again while it fails [`transient`]ly, for up to 30 s in all: a
/// broker busy under load (tansu 0.6 has been seen to miss a 5 s metadata
/// deadline) delays an admin step instead of failing it. Blocking: call it
/// on the blocking pool.
pub fn patiently<T>(
    mut request: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match request() {
            Err(error) if transient(&error) && std::time::Instant::now() < deadline => {
                tracing::debug!(%error, "broker request retried");
                std::thread::sleep(Duration::from_millis(500));
            }
            answer => return answer,
        }
    }
}

/// Error administering topics.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// librdkafka reported an error.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating a topic failed.
    #[error("creating topic {0}: {1}")]
    Create(String, RDKafkaErrorCode),
    /// A blocking task failed.
    #[error("admin task failed: {0}")]
    Join(String),
}

/// Default retention of the events topics: how far back a replay can start
/// (`TALLY_KAFKA_RETENTION_DAYS`). 30 days of raw messages; ClickHouse keeps
/// the events themselves for `TALLY_RETENTION_DAYS` (730).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Creates `topic` with `partitions` (replication 1) unless it exists, with
/// the default retention ([`DEFAULT_RETENTION_DAYS`]).
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), AdminError> {
    ensure_topic_with(
        brokers,
        topic,
        partitions,
        i64::from(DEFAULT_RETENTION_DAYS) * 86_400_000,
    )
    .await
}

/// Creates `topic` with `partitions` (replication 1) unless it exists; a new
/// topic deletes messages older than `retention_ms` (`cleanup.policy=delete`,
/// `retention.ms`). An existing topic keeps its settings.
pub async fn ensure_topic_with(
    brokers: &str,
    topic: &str,
    partitions: i32,
    retention_ms: i64,
) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let retention = retention_ms.to_string();
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", &retention);
    let results = admin.create_topics(&[new_topic], &options).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(AdminError::Create(name, code)),
        }
    }
    Ok(())
}

/// The `retention.ms` of `topic` as the broker reports it (`None`: unset,
/// unlimited, or the broker does not say).
pub async fn topic_retention_ms(brokers: &str, topic: &str) -> Result<Option<i64>, AdminError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let results = admin
        .describe_configs(&[rdkafka::admin::ResourceSpecifier::Topic(topic)], &options)
        .await?;
    Ok(results
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|entry| entry.name == "retention.ms")
        .and_then(|entry| entry.value)
        .and_then(|value| value.parse::<i64>().ok())
        .filter(|ms| *ms > 0))
}

/// Number of partitions of `topic` (0 when it does not exist).
pub async fn partition_count(brokers: &str, topic: &str) -> Result<usize, AdminError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let metadata = patiently(|| consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    })
    .await
    .map_err(|err| AdminError::Join(err.to_string()))?
}

/// Where a consumer group stands in one partition of its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Kafka partition.
    pub partition: i32,
    /// The group's committed offset (every message below it was processed),
    /// if it committed one.
    pub committed: Option<i64>,
    /// The log end (high watermark: the offset the next message gets).
    pub log_end: i64,
}

/// [`PartitionPosition`] of group `group` in each partition of
/// `config.topic` the broker describes (none for a topic it does not know),
/// read with one client.
pub async fn positions(
    config: &KafkaConfig,
    group: &str,
) -> Result<Vec<PartitionPosition>, AdminError> {
    let (mut client, topic) = (config.client_config(), config.topic.clone());
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client.create()?;
        let timeout = Duration::from_secs(5);
        let metadata = patiently(|| consumer.fetch_metadata(Some(&topic), timeout))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut list = rdkafka::TopicPartitionList::new();
        for p in &partitions {
            list.add_partition(&topic, *p);
        }
        let committed = patiently(|| consumer.committed_offsets(list.clone(), timeout))?;
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let (_, log_end) = patiently(|| consumer.fetch_watermarks(&topic, partition, timeout))?;
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        rdkafka::Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            out.push(PartitionPosition {
                partition,
                committed,
                log_end,
            });
        }
        Ok(out)
    })
    .await
    .map_err(|err| AdminError::Join(err.to_string()))?
}

/// The committed offset of consumer group `group` in each partition of
/// `topic` (partitions without a commit are left out): every message below it
/// was fully processed by the group (the aggregator commits after its stores).
pub async fn committed_offsets(
    config: &KafkaConfig,
    group: &str,
) -> Result<Vec<(i32, i64)>, AdminError> {
    let (mut client, topic) = (
        config.client_config().set("group.id", group).clone(),
        config.topic.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client.set("enable.auto.commit", "false").create()?;
        let timeout = Duration::from_secs(5);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let mut list = rdkafka::TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                list.add_partition(&topic, p.id());
            }
        }
        let committed = consumer.committed_offsets(list, timeout)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await
    .map_err(|err| AdminError::Join(err.to_string()))?
}
