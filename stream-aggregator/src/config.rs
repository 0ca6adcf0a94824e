//! Aggregator settings: defaults in code, overridden by `TALLY_…` variables, validated at boot.

use crate::message::Reenrich;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// Longest time a consumed event waits before its raw row, session and
    /// offset are written (`TALLY_AGGREGATOR_FLUSH_MS`, default 1000): the
    /// ClickHouse batch age.
    pub flush_interval: Duration,
    /// Longest time a consumed event waits before it is counted in the live
    /// windows (`TALLY_AGGREGATOR_LIVE_FLUSH_MS`, default 200): bounds freshness.
    pub live_flush_interval: Duration,
    /// Longest the broker may hold a fetch while it has fewer bytes than
    /// asked (`TALLY_AGGREGATOR_FETCH_WAIT_MS`, default 100; librdkafka's
    /// `fetch.wait.max.ms`, whose own default of 500 was most of the time
    /// from send to the live stream's push: B3 p99 1,040 → 613 ms).
    pub fetch_wait: Duration,
    /// Most events per write batch (`TALLY_AGGREGATOR_BATCH_ROWS`, default 10000).
    pub max_batch_rows: usize,
    /// How long after a window's end the gateway may still receive events for it
    /// (`TALLY_AGGREGATOR_LATENESS_MS`, default 30000). Later events go to
    /// ClickHouse only and count in `tally_aggregator_late_events_total`.
    pub allowed_lateness: Duration,
    /// Repeats of a client event id received within this window of the first
    /// copy are dropped (`TALLY_AGGREGATOR_DEDUP_WINDOW_SECS`, default 900 =
    /// 15 min; 0 = off). Memory ≈ 48 bytes per event received in the window.
    pub dedup_window: Duration,
    /// Test-only fault injection (`TALLY_AGGREGATOR_FAULT`, default `none`):
    /// `ignore-offsets` disables the exactly-once guards so the chaos test's
    /// control run can prove its checker notices double counting. Never set in production.
    pub fault: Fault,
    /// Replays only: the first offset per partition *not* to process
    /// (`TALLY_AGGREGATOR_STOP_AT`, `partition:offset,…`; default none = follow
    /// the topic). Messages at or past it, and every message of a partition not
    /// named, are left unread by this group: a bounded replay's range.
    pub stop_at: Option<BTreeMap<i32, i64>>,
    /// Replays only: derives each event's enrichment again before processing
    /// (new geo-IP data or bot rules reaching history); set in code by
    /// `tally-admin replay`, never from the environment.
    pub reenrich: Option<Arc<dyn Reenrich>>,
}

/// Parses `partition:offset,…` (partitions ≥ 0, offsets ≥ 0, each partition once).
pub fn parse_positions(text: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut positions = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (partition, offset) = item
            .split_once(':')
            .and_then(|(p, o)| Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?)))
            .filter(|(p, o)| *p >= 0 && *o >= 0)
            .ok_or_else(|| format!("{item:?} is not partition:offset"))?;
        if positions.insert(partition, offset).is_some() {
            return Err(format!("partition {partition} named twice"));
        }
    }
    if positions.is_empty() {
        return Err("no partition:offset given".into());
    }
    Ok(positions)
}

/// Deliberate faults for the chaos test's control run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Normal operation.
    #[default]
    None,
    /// Replays are applied again (no watermark or offset checks).
    IgnoreOffsets,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" | "" => Ok(Fault::None),
            "ignore-offsets" => Ok(Fault::IgnoreOffsets),
            other => Err(format!("unknown fault {other:?} (none, ignore-offsets)")),
        }
    }
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
            flush_interval: Duration::from_millis(env_or("TALLY_AGGREGATOR_FLUSH_MS", 1_000u64)?),
            live_flush_interval: Duration::from_millis(env_or(
                "TALLY_AGGREGATOR_LIVE_FLUSH_MS",
                200u64,
            )?),
            fetch_wait: Duration::from_millis(env_or("TALLY_AGGREGATOR_FETCH_WAIT_MS", 100u64)?),
            max_batch_rows: env_or("TALLY_AGGREGATOR_BATCH_ROWS", 10_000usize)?,
            allowed_lateness: Duration::from_millis(env_or(
                "TALLY_AGGREGATOR_LATENESS_MS",
                30_000u64,
            )?),
            dedup_window: Duration::from_secs(env_or(
                "TALLY_AGGREGATOR_DEDUP_WINDOW_SECS",
                900u64,
            )?),
            fault: env_or("TALLY_AGGREGATOR_FAULT", Fault::None)?,
            stop_at: match std::env::var("TALLY_AGGREGATOR_STOP_AT") {
                Ok(text) if !text.trim().is_empty() => Some(parse_positions(&text).map_err(
                    |reason| ConfigError::Invalid {
                        var: "TALLY_AGGREGATOR_STOP_AT".into(),
                        value: text.clone(),
                        reason,
                    },
                )?),
                _ => None,
            },
            reenrich: None,
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
            self.live_flush_interval >= Duration::from_millis(10)
                && self.live_flush_interval <= self.flush_interval,
            "TALLY_AGGREGATOR_LIVE_FLUSH_MS must be within 10..=TALLY_AGGREGATOR_FLUSH_MS",
        )?;
        ensure(
            self.allowed_lateness <= Duration::from_secs(3_600),
            "TALLY_AGGREGATOR_LATENESS_MS must be at most 3600000 (1 h)",
        )?;
        ensure(
            self.live_ttl > self.allowed_lateness + Duration::from_secs(60),
            "TALLY_LIVE_TTL_SECS must exceed the allowed lateness by a minute",
        )?;
        ensure(
            self.dedup_window <= Duration::from_secs(86_400),
            "TALLY_AGGREGATOR_DEDUP_WINDOW_SECS must be at most 86400 (24 h)",
        )?;
        ensure(
            (1..=1_000_000).contains(&self.max_batch_rows),
            "TALLY_AGGREGATOR_BATCH_ROWS must be within 1..=1000000 (one ClickHouse block)",
        )?;
        // Exactly once on a cluster needs rows routed to shards by the
        // aggregator itself (docs/CLUSTER.md): it must know every shard's
        // replicas, never write through `Distributed` tables.
        ensure(
            self.clickhouse.cluster.is_none() || !self.clickhouse.shards.is_empty(),
            "TALLY_CLICKHOUSE_CLUSTER needs TALLY_CLICKHOUSE_SHARDS (every shard's replicas: url,url;url,url in shard_num order)",
        )
    }
}
