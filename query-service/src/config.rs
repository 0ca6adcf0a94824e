//! Query-service settings: defaults in code, overridden by `TALLY_…` variables, validated at boot.

use std::net::SocketAddr;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::config::{ensure, env_or, env_string, ConfigError};
use tally_common::postgres::PostgresConfig;

/// Everything the query service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`TALLY_QUERY_ADDR`, default `127.0.0.1:8081`).
    pub addr: SocketAddr,
    /// Redis URL (`TALLY_REDIS_URL`, default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// Prefix of every Redis key (`TALLY_REDIS_PREFIX`, default `tally`); must equal the aggregator's.
    pub redis_prefix: String,
    /// ClickHouse (`TALLY_CLICKHOUSE_*`).
    pub clickhouse: ClickHouseConfig,
    /// Most live windows one request may ask for (`TALLY_QUERY_MAX_WINDOWS`, default 720 = 1 h).
    pub max_windows: usize,
    /// Longest range of a count, in days (`TALLY_QUERY_MAX_RANGE_DAYS`, default 731).
    pub max_range_days: i64,
    /// PostgreSQL holding apps and read keys (`TALLY_POSTGRES_URL`).
    pub postgres: PostgresConfig,
    /// How long identical `/live` requests share one answer
    /// (`TALLY_QUERY_LIVE_CACHE_MS`, default 250; 0 = off). Adds at most this
    /// much staleness; concurrent identical requests always share one read.
    pub live_cache: Duration,
    /// How long identical `/query` requests share one answer
    /// (`TALLY_QUERY_CACHE_SECS`, default 5; 0 = off).
    pub query_cache: Duration,
    /// The aggregator's allowed lateness (`TALLY_AGGREGATOR_LATENESS_MS`, default
    /// 30000): a window is `closing` until then, `final` after.
    pub allowed_lateness_ms: i64,
    /// Most distinct group-by values one `/query` may build in ClickHouse
    /// (`TALLY_QUERY_MAX_GROUPS`, default 100000; checked per aggregation
    /// thread); more → 400 `too_many_groups`. Answers still return at most
    /// `limit` (≤ 10,000) rows, marked `truncated`.
    pub max_groups: u64,
    /// How often the read-key cache is refreshed (`TALLY_QUERY_KEY_REFRESH_SECS`, default 10).
    pub key_refresh: Duration,
    /// Dashboard logins and sessions.
    pub accounts: AccountsConfig,
    /// The built dashboard (`TALLY_WEB_DIR`, default `web/dist`).
    pub web_dir: std::path::PathBuf,
}

/// Dashboard logins and sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountsConfig {
    /// A session's longest life (`TALLY_SESSION_TTL_HOURS`, default 168: a week).
    pub session_ttl: Duration,
    /// A session unused this long ends (`TALLY_SESSION_IDLE_MINUTES`, default 720).
    pub session_idle: Duration,
    /// The cookie's `Secure` flag (`TALLY_COOKIE_SECURE`: `auto` — default: when
    /// the request came over TLS, as a proxy's `X-Forwarded-Proto: https`
    /// says —, `true` or `false`).
    pub cookie_secure: Option<bool>,
    /// Origins besides the service's own that may make state-changing requests
    /// with a session (`TALLY_ALLOWED_ORIGINS`, comma-separated, e.g. the
    /// public `https://tally.example.com` behind a proxy that rewrites `Host`).
    pub allowed_origins: Vec<String>,
    /// Where browsers reach the gateway, for the `/sdk.js` snippet
    /// (`TALLY_PUBLIC_GATEWAY_URL`, default `http://127.0.0.1:8080`).
    pub gateway_url: String,
    /// Failed logins per e-mail address in a minute before 429
    /// (`TALLY_LOGIN_FAILURES_PER_MINUTE`, default 10; per client address: 3×).
    pub login_failures_per_minute: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            session_ttl: Duration::from_secs(168 * 3600),
            session_idle: Duration::from_secs(720 * 60),
            cookie_secure: None,
            allowed_origins: Vec::new(),
            gateway_url: "http://127.0.0.1:8080".into(),
            login_failures_per_minute: 10,
        }
    }
}

impl AccountsConfig {
    /// Reads the `TALLY_SESSION_…`, `TALLY_COOKIE_SECURE`, `TALLY_ALLOWED_ORIGINS`,
    /// `TALLY_PUBLIC_GATEWAY_URL` and `TALLY_LOGIN_…` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = AccountsConfig::default();
        let secure = env_string("TALLY_COOKIE_SECURE", "auto");
        let cookie_secure = match secure.as_str() {
            "auto" => None,
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                return Err(ConfigError::Invalid {
                    var: "TALLY_COOKIE_SECURE".into(),
                    value: secure,
                    reason: "auto, true or false".into(),
                })
            }
        };
        Ok(AccountsConfig {
            session_ttl: Duration::from_secs(3600 * env_or("TALLY_SESSION_TTL_HOURS", 168u64)?),
            session_idle: Duration::from_secs(60 * env_or("TALLY_SESSION_IDLE_MINUTES", 720u64)?),
            cookie_secure,
            allowed_origins: env_string("TALLY_ALLOWED_ORIGINS", "")
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            gateway_url: env_string("TALLY_PUBLIC_GATEWAY_URL", &defaults.gateway_url),
            login_failures_per_minute: env_or(
                "TALLY_LOGIN_FAILURES_PER_MINUTE",
                defaults.login_failures_per_minute,
            )?,
        })
    }
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config {
            addr: env_or("TALLY_QUERY_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?,
            redis_url: env_string("TALLY_REDIS_URL", "redis://127.0.0.1:6379"),
            redis_prefix: env_string("TALLY_REDIS_PREFIX", "tally"),
            clickhouse: ClickHouseConfig::from_env()?,
            max_windows: env_or("TALLY_QUERY_MAX_WINDOWS", 720)?,
            max_range_days: env_or("TALLY_QUERY_MAX_RANGE_DAYS", 731)?,
            postgres: PostgresConfig::from_env()?,
            key_refresh: Duration::from_secs(env_or("TALLY_QUERY_KEY_REFRESH_SECS", 10u64)?),
            live_cache: Duration::from_millis(env_or("TALLY_QUERY_LIVE_CACHE_MS", 250u64)?),
            allowed_lateness_ms: env_or("TALLY_AGGREGATOR_LATENESS_MS", 30_000i64)?,
            query_cache: Duration::from_secs(env_or("TALLY_QUERY_CACHE_SECS", 5u64)?),
            max_groups: env_or("TALLY_QUERY_MAX_GROUPS", 100_000u64)?,
            accounts: AccountsConfig::from_env()?,
            web_dir: env_string("TALLY_WEB_DIR", "web/dist").into(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1..=17_280).contains(&self.max_windows),
            "TALLY_QUERY_MAX_WINDOWS must be within 1..=17280 (24 h)",
        )?;
        ensure(
            (1..=3_650).contains(&self.max_range_days),
            "TALLY_QUERY_MAX_RANGE_DAYS must be within 1..=3650",
        )?;
        ensure(
            self.live_cache <= Duration::from_secs(5),
            "TALLY_QUERY_LIVE_CACHE_MS must be at most 5000",
        )?;
        ensure(
            self.key_refresh >= Duration::from_secs(1),
            "TALLY_QUERY_KEY_REFRESH_SECS must be at least 1",
        )?;
        ensure(
            (1..=10_000_000).contains(&self.max_groups),
            "TALLY_QUERY_MAX_GROUPS must be within 1..=10000000",
        )?;
        ensure(
            self.accounts.session_idle >= Duration::from_secs(60)
                && self.accounts.session_ttl >= self.accounts.session_idle,
            "TALLY_SESSION_IDLE_MINUTES must be at least 1 and the TTL at least the idle timeout",
        )?;
        ensure(
            self.accounts.login_failures_per_minute >= 1,
            "TALLY_LOGIN_FAILURES_PER_MINUTE must be at least 1",
        )?;
        ensure(
            !self.redis_prefix.is_empty(),
            "TALLY_REDIS_PREFIX must be set",
        )
    }
}
