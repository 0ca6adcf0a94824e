//! Refresher settings: defaults in code, overridden by `TALLY_…` variables, validated at boot.

use std::net::SocketAddr;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::config::{ensure, env_or, env_string, ConfigError};
use tally_common::kafka::KafkaConfig;
use tally_common::postgres::PostgresConfig;

/// Everything the refresher needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of `/livez`, `/readyz`, `/metrics` (`TALLY_REFRESHER_ADDR`, default `127.0.0.1:8083`).
    pub addr: SocketAddr,
    /// ClickHouse (`TALLY_CLICKHOUSE_*`); its database is the refresher's scope.
    pub clickhouse: ClickHouseConfig,
    /// PostgreSQL: lease, watermarks, runs (`TALLY_POSTGRES_URL`).
    pub postgres: PostgresConfig,
    /// Broker and topic (`TALLY_KAFKA_*`): the aggregator group's committed
    /// offsets say which rows are stored.
    pub kafka: KafkaConfig,
    /// The aggregator's consumer group (`TALLY_AGGREGATOR_GROUP`, default `tally-aggregator`).
    pub aggregator_group: String,
    /// Apply the migrations at start (`TALLY_CLICKHOUSE_MIGRATE`, default true).
    pub migrate: bool,
    /// Pause between incremental runs (`TALLY_REFRESH_INTERVAL_MS`, default 10000).
    pub interval: Duration,
    /// A full rebuild when the last one is older (`TALLY_REFRESH_FULL_EVERY_HOURS`,
    /// default 168 = weekly; 0 = only when asked by `tally-admin refresh --full`).
    pub full_every: Duration,
    /// Lease of the one writer (`TALLY_REFRESH_LEASE_SECS`, default 60).
    pub lease: Duration,
    /// Raw rows are kept this many days (`TALLY_RETENTION_DAYS`, default 730,
    /// the gateway's "too old" limit too).
    pub retention_days: u32,
    /// How often the data lifecycle runs: expired partitions dropped, storage
    /// measured (`TALLY_LIFECYCLE_EVERY_SECS`, default 3600).
    pub lifecycle_every: Duration,
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config {
            addr: env_or(
                "TALLY_REFRESHER_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8083)),
            )?,
            clickhouse: ClickHouseConfig::from_env()?,
            postgres: PostgresConfig::from_env()?,
            kafka: KafkaConfig::from_env()?,
            aggregator_group: env_string("TALLY_AGGREGATOR_GROUP", "tally-aggregator"),
            migrate: env_or("TALLY_CLICKHOUSE_MIGRATE", true)?,
            interval: Duration::from_millis(env_or("TALLY_REFRESH_INTERVAL_MS", 10_000u64)?),
            full_every: Duration::from_secs(
                env_or("TALLY_REFRESH_FULL_EVERY_HOURS", 168u64)?.saturating_mul(3_600),
            ),
            lease: Duration::from_secs(env_or("TALLY_REFRESH_LEASE_SECS", 60u64)?),
            retention_days: env_or("TALLY_RETENTION_DAYS", 730u32)?,
            lifecycle_every: Duration::from_secs(env_or("TALLY_LIFECYCLE_EVERY_SECS", 3_600u64)?),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (100..=3_600_000).contains(&self.interval.as_millis()),
            "TALLY_REFRESH_INTERVAL_MS must be within 100..=3600000",
        )?;
        ensure(
            (5..=3_600).contains(&self.lease.as_secs()),
            "TALLY_REFRESH_LEASE_SECS must be within 5..=3600",
        )?;
        ensure(
            (1..=36_500).contains(&self.retention_days),
            "TALLY_RETENTION_DAYS must be within 1..=36500",
        )?;
        ensure(
            (1..=86_400).contains(&self.lifecycle_every.as_secs()),
            "TALLY_LIFECYCLE_EVERY_SECS must be within 1..=86400",
        )
    }
}
