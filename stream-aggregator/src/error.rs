//! The aggregator's one error type. The aggregator serves no business API, so
//! the HTTP mapping only concerns start-up and health: every variant is logged
//! with its reason code, and write errors are retried (consumption pauses).

/// What can go wrong in the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// ClickHouse refused or could not be reached.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Another writer changed a live window since it was read (rebalance or zombie); retried.
    #[error("live window {0} changed concurrently")]
    Conflict(String),
    /// Stored state could not be written (serialization).
    #[error("state: {0}")]
    State(String),
    /// A batch could not be written for this many seconds; the process stops
    /// rather than risk writing partitions the group gave to another member.
    #[error("stores unavailable for {0} s; exiting to replay from the last commit")]
    Stalled(u64),
    /// Another process holds the claim of this partition's raw writes; retried.
    #[error("partition {0} is being written by another process")]
    Busy(i32),
    /// Kafka client error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A stored sketch did not decode.
    #[error("sketch: {0}")]
    Sketch(#[from] tally_schemas::sketch::SketchError),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Socket error serving health endpoints.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl AggregatorError {
    /// Machine-readable reason (bounded set, used as a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            AggregatorError::ClickHouse(_) => "clickhouse",
            AggregatorError::Redis(_) => "redis",
            AggregatorError::Conflict(_) => "conflict",
            AggregatorError::State(_) => "state",
            AggregatorError::Stalled(_) => "stalled",
            AggregatorError::Busy(_) => "busy",
            AggregatorError::Kafka(_) => "kafka",
            AggregatorError::Sketch(_) => "sketch",
            AggregatorError::Metrics(_) => "metrics",
            AggregatorError::Io(_) => "io",
        }
    }
}
