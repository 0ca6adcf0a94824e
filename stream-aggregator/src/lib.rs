//! Tally's stream aggregator: consumes the `events` topic and writes, exactly
//! once, 5-second live windows (counts, counts per name, HyperLogLog uniques)
//! into Redis and raw rows into ClickHouse, committing Kafka offsets only after
//! both stores hold a batch. See [`processor`] for the exactly-once argument.
//!
//! [`run`] serves `/livez`, `/readyz` and `/metrics` and consumes until the
//! shutdown future resolves, then stops intake, flushes and commits.

pub mod config;
pub mod consumer;
pub mod dedup;
pub mod error;
pub mod identity;
pub mod identity_store;
pub mod live;
pub mod message;
pub mod metrics;
pub mod processor;
pub mod raw;
pub mod raw_writer;
pub mod sessions;
pub mod shards;
pub mod visitors;
pub mod watchdog;
pub mod windows;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::AggregatorError;
use live::{LiveStore, RedisLive};
use metrics::Metrics;
use processor::Processor;
use raw::{ClickHouseSink, RawSink};

/// Dependencies of the health endpoints.
#[derive(Debug)]
pub struct AppState {
    /// Metrics.
    pub metrics: Metrics,
    /// ClickHouse sink (readiness).
    pub raw: ClickHouseSink,
    /// Redis store (readiness).
    pub live: RedisLive,
    /// Consumer-group health (readiness).
    pub group: Arc<watchdog::GroupHealth>,
}

/// Health and metrics routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(tally_common::http::livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
        // Unknown routes and other methods answer JSON errors too.
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

async fn readyz(State(state): State<Arc<AppState>>) -> axum::response::Response {
    let clickhouse = state.raw.ping().await.err().map(|e| e.to_string());
    let redis = state.live.ping().await.err().map(|e| e.to_string());
    let orphaned = state.group.orphaned();
    let group = (!orphaned.is_empty())
        .then(|| format!("partitions {orphaned:?} have lag and no consumer (rejoining the group)"));
    tally_common::http::readiness(&[
        ("clickhouse", clickhouse),
        ("redis", redis),
        ("consumer_group", group),
    ])
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> axum::response::Response {
    tally_common::http::render_metrics(&state.metrics.registry)
}

/// Connects, then consumes and serves health on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AggregatorError> {
    if config.migrate {
        tally_common::clickhouse::migrate(&config.clickhouse).await?;
    }
    let connection = tally_common::redis_conn::Redis::connect(&config.redis_url).await?;
    let live = RedisLive::new(connection, config.live_ttl.as_secs());
    let raw = match shards::Shards::of(&config.clickhouse) {
        Some(shards) => ClickHouseSink::sharded(config.clickhouse.client(), shards),
        None => ClickHouseSink::new(config.clickhouse.client()),
    };
    let metrics = Metrics::new()?;
    let stop = CancellationToken::new();
    let watch = consumer::RebalanceWatch::new(&metrics);
    let group = watchdog::spawn(&config, watch.clone(), metrics.clone(), stop.clone())?;
    let state = Arc::new(AppState {
        metrics: metrics.clone(),
        raw: raw.clone(),
        live: live.clone(),
        group,
    });
    let consumer = consumer::subscribe(&config, watch)?;
    let processor = Processor::new(
        raw,
        live,
        processor::Settings {
            topic: config.kafka.topic.clone(),
            prefix: config.redis_prefix.clone(),
            allowed_lateness_ms: i64::try_from(config.allowed_lateness.as_millis())
                .unwrap_or(i64::MAX),
            fault: config.fault,
            dedup_window_secs: i64::try_from(config.dedup_window.as_secs()).unwrap_or(i64::MAX),
            visitor_ttl_ms: i64::try_from(config.live_ttl.as_millis()).unwrap_or(i64::MAX),
            clock: Arc::new(tally_common::SystemClock),
        },
    );
    if config.fault != config::Fault::None {
        tracing::warn!(fault = ?config.fault, "FAULT INJECTION ACTIVE: exactly-once guards are off (test-only)");
    }

    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop_on_signal.cancel();
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        topic = %config.kafka.topic,
        group = %config.group_id,
        database = %config.clickhouse.database,
        "stream aggregator started"
    );
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        tally_common::serve::serve(
            listener,
            app(state),
            tally_common::serve::ServeOptions::default(),
            async move { server_stop.cancelled().await },
        )
        .await
    });
    let consumed = consumer::consume(
        consumer,
        processor,
        &config,
        &metrics,
        &tally_common::SystemClock,
        stop.clone(),
    )
    .await;
    stop.cancel();
    if let Ok(Err(err)) = server.await {
        tracing::warn!(error = %err, "health server error");
    }
    tracing::info!("stream aggregator stopped");
    consumed
}
