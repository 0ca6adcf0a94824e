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

/// Creates `topic` with `partitions` (replication 1) unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(AdminError::Create(name, code)),
        }
    }
    Ok(())
}

/// Number of partitions of `topic` (0 when it does not exist).
pub async fn partition_count(brokers: &str, topic: &str) -> Result<usize, AdminError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
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
