//! Tally's query service: live windows from Redis, counts, queries, funnels,
//! retention and reports from ClickHouse, saved items in PostgreSQL (routes in
//! [`router`]), plus `/livez`, `/readyz`, `/metrics`.
//!
//! [`run`] connects the stores into one [`AppState`] and serves [`app`] until
//! the shutdown future resolves, then drains in-flight requests. Start-up
//! failures are [`QueryError::Startup`]; nothing else returns it.

pub mod accounts;
pub mod activity;
pub mod adhoc;
pub mod answer;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod csv;
pub mod deletion;
pub mod derived;
pub mod discovery;
pub mod error;
pub mod fields;
pub mod freshness;
pub mod funnel;
pub mod funnel_order;
pub mod live;
pub mod login_throttle;
pub mod metrics;
pub mod persons;
pub mod pg;
pub mod query;
pub mod range;
pub mod reports;
pub mod retention;
pub mod retention_report;
pub mod router;
pub mod saved;
pub mod serving;
pub mod session;
pub mod session_metrics;
pub mod settings;
pub mod sql;
pub mod stores;
pub mod stream_token;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use tally_common::keys::{spawn_refresher, KeyCache, PostgresKeys};
use tally_common::postgres::KeyKind;
use tally_common::{Clock, SystemClock};
use tokio::net::TcpListener;

pub use config::Config;
pub use error::QueryError;
use metrics::Metrics;
pub use router::{app, OPENAPI, ROUTES};
use stores::{ClickHouseStore, RedisLive};

/// Shared dependencies of every handler.
#[derive(Debug)]
pub struct AppState {
    /// Live windows and stream tokens.
    pub live: RedisLive,
    /// Raw events.
    pub events: ClickHouseStore,
    /// Metrics.
    pub metrics: Metrics,
    /// Wall clock (which windows are "the last N").
    pub clock: Arc<dyn Clock>,
    /// Read keys (PostgreSQL, cached).
    pub keys: Arc<KeyCache>,
    /// Serialized `/live` answers, shared by identical polls.
    pub live_cache: cache::Cache<axum::body::Bytes>,
    /// Saved dashboards and funnels (PostgreSQL).
    pub saved: saved::SavedStore,
    /// Person deletion jobs (PostgreSQL).
    pub deletions: deletion::DeletionStore,
    /// The report refresher's state (PostgreSQL): which days reports answer.
    pub refresh: freshness::RefreshStore,
    /// Serialized `/query` answers, shared by identical queries.
    pub query_cache: cache::Cache<axum::body::Bytes>,
    /// Raw days per app and refresher state, shared by the requests of one
    /// dashboard load ([`freshness::raw_days`]).
    pub raw_days: cache::Cache<freshness::Fresh>,
    /// Apps' time zones (PostgreSQL), for 30 s.
    pub zones: cache::Cache<String>,
    /// Apps' property names that are built-in names too (ClickHouse), for 30 s.
    pub clashing_properties: cache::Cache<Vec<String>>,
    /// Users, sessions, memberships (PostgreSQL).
    pub accounts: Arc<dyn accounts::Accounts>,
    /// Session lookups, for [`session::SESSION_CACHE`].
    pub sessions: cache::Cache<Option<session::SessionUser>>,
    /// Failed logins of the last minute.
    pub login_throttle: login_throttle::LoginThrottle,
    /// Which database and Redis prefix answer (replay switch).
    pub serving: serving::ServingStore,
    /// Limits.
    pub config: Config,
}

/// Connects and serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QueryError> {
    let connection = tally_common::redis_conn::Redis::connect(&config.redis_url).await?;
    let keys = Arc::new(KeyCache::new(PostgresKeys::new(
        config.postgres.clone(),
        KeyKind::Read,
    )));
    if let Err(err) = keys.refresh().await {
        tracing::warn!(error = %err, "read keys not loaded yet; requests get 503 until PostgreSQL answers");
    }
    spawn_refresher(keys.clone(), config.key_refresh);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = Arc::new(AppState {
        keys,
        live_cache: cache::Cache::new(config.live_cache, 10_000, clock.clone()),
        query_cache: cache::Cache::new(config.query_cache, 10_000, clock.clone()),
        raw_days: cache::Cache::new(
            config.query_cache.min(freshness::RAW_DAYS_SHARED),
            10_000,
            clock.clone(),
        ),
        zones: cache::Cache::new(std::time::Duration::from_secs(30), 10_000, clock.clone()),
        clashing_properties: cache::Cache::new(
            std::time::Duration::from_secs(30),
            10_000,
            clock.clone(),
        ),
        saved: saved::SavedStore::new(config.postgres.clone()),
        deletions: deletion::DeletionStore::new(pg::Pg::new(config.postgres.clone())),
        refresh: freshness::RefreshStore::new(pg::Pg::new(config.postgres.clone())),
        accounts: Arc::new(accounts::postgres::PgAccounts::new(config.postgres.clone())),
        sessions: cache::Cache::new(session::SESSION_CACHE, 100_000, clock.clone()),
        login_throttle: login_throttle::LoginThrottle::new(clock.clone()),
        live: RedisLive::new(connection, &config.redis_prefix),
        events: ClickHouseStore::of(&config.clickhouse),
        metrics: Metrics::new().map_err(|e| QueryError::Startup(e.to_string()))?,
        serving: serving::ServingStore::new(
            pg::Pg::new(config.postgres.clone()),
            serving::Served {
                database: config.clickhouse.database.clone(),
                prefix: config.redis_prefix.clone(),
            },
        ),
        clock,
        config,
    });
    state
        .keys
        .register(&state.metrics.registry)
        .map_err(|e| QueryError::Startup(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| QueryError::Startup(e.to_string()))?;
    tracing::info!(%addr, "query service listening");
    tally_common::serve::serve(
        listener,
        app(state),
        tally_common::serve::ServeOptions::default(),
        shutdown,
    )
    .await
    .map_err(|e| QueryError::Startup(e.to_string()))?;
    tracing::info!("query service stopped");
    Ok(())
}
