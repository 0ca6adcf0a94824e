//! Aggregator settings: defaults in code, overridden by `TALLY_…` variables, validated at boot.

use std::net::SocketAddr;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::config::{ensure, env_or, env_string, ConfigError};
use tally_common::kafka::KafkaConfig;

/// Everything the aggregator needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of `/livez`, `/readyz`, `/metrics` (`TALLY_AGGREGATOR_ADDR`, default `127.0.0.1:8082`).
    pub addr: SocketAddr,
    /// Broker and topic (`TALLY_KAFKA_*`).
    pub kafka: KafkaConfig,
    /// Consumer group (`TALLY_AGGREGATOR_GROUP`, default `tally-aggregator`).
    pub group_id: String,
    /// Redis URL (`TALLY_REDIS_URL`, default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// Prefix of every Redis key (`TALLY_REDIS_PREFIX`, default `tally`).
    pub redis_prefix: String,
    /// Lifetime of live window keys (`TALLY_LIVE_TTL_SECS`, default 172800 = 48 h).
    pub live_ttl: Duration,
    /// ClickHouse (`TALLY_CLICKHOUSE_*`).
    pub clickhouse: ClickHouseConfig,
    /// Apply ClickHouse migrations at start (`TALLY_CLICKHOUSE_MIGRATE`, default true).
    pub migrate: bool,
    /// Longest time a consumed event waits before being written
    /// (`TALLY_AGGREGATOR_FLUSH_MS`, default 500): bounds live freshness.
    pub flush_interval: Duration,
    /// Most events per write batch (`TALLY_AGGREGATOR_BATCH_ROWS`, default 10000).
    pub max_batch_rows: usize,
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config {
            addr: env_or(
                "TALLY_AGGREGATOR_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8082)),
            )?,
            kafka: KafkaConfig::from_env()?,
            group_id: env_string("TALLY_AGGREGATOR_GROUP", "tally-aggregator"),
            redis_url: env_string("TALLY_REDIS_URL", "redis://127.0.0.1:6379"),
            redis_prefix: env_string("TALLY_REDIS_PREFIX", "tally"),
            live_ttl: Duration::from_secs(env_or("TALLY_LIVE_TTL_SECS", 172_800u64)?),
            clickhouse: ClickHouseConfig::from_env()?,
            migrate: env_or("TALLY_CLICKHOUSE_MIGRATE", true)?,
            flush_interval: Duration::from_millis(env_or("TALLY_AGGREGATOR_FLUSH_MS", 500u64)?),
            max_batch_rows: env_or("TALLY_AGGREGATOR_BATCH_ROWS", 10_000usize)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            !self.group_id.is_empty(),
            "TALLY_AGGREGATOR_GROUP must be set",
        )?;
        ensure(
            !self.redis_prefix.is_empty() && !self.redis_prefix.contains(char::is_whitespace),
            "TALLY_REDIS_PREFIX must be a non-empty word",
        )?;
        ensure(
            self.live_ttl >= Duration::from_secs(60),
            "TALLY_LIVE_TTL_SECS must be at least 60",
        )?;
        ensure(
            (10..=10_000).contains(&self.flush_interval.as_millis()),
            "TALLY_AGGREGATOR_FLUSH_MS must be within 10..=10000",
        )?;
        ensure(
            (1..=1_000_000).contains(&self.max_batch_rows),
            "TALLY_AGGREGATOR_BATCH_ROWS must be within 1..=1000000 (one ClickHouse block)",
        )
    }
}
