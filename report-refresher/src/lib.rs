//! Tally's report refresher (seed 000's "Wolf", seed 003's incremental
//! refresh): keeps the derived tables (`report_pages_hourly`,
//! `person_day_activity`; ClickHouse migration 0008) equal to a recomputation
//! from the raw rows and the current persons, recomputing only the buckets
//! touched since the last run (new and late rows, identity changes) and,
//! weekly or when asked (`tally-admin refresh --full`), everything, reporting
//! the drift it found. One writer per scope (the ClickHouse database), by a
//! lease in PostgreSQL. See [`refresh`] for the run and its guarantees.
//!
//! [`run`] serves `/livez`, `/readyz` and `/metrics` and refreshes every
//! interval until the shutdown future resolves, then gives the lease up. The
//! lease holder also runs the data lifecycle ([`lifecycle`]: raw partitions
//! past the retention dropped, storage measured).

pub mod changed;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod metrics;
pub mod refresh;
pub mod state;
pub mod statements;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::RefreshError;
use metrics::Metrics;
use refresh::Refresher;

/// Outcome of the last run attempt (readiness).
#[derive(Debug, Default)]
struct Status {
    /// Why the last attempt failed, if it did.
    failure: Option<String>,
}

/// Dependencies of the health endpoints.
#[derive(Debug)]
pub struct AppState {
    metrics: Metrics,
    clickhouse: clickhouse::Client,
    status: Mutex<Status>,
}

/// Health and metrics routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(tally_common::http::livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

/// Ready when ClickHouse answers and the last run committed or stood by
/// (another refresher holds the lease): the service is doing its job.
async fn readyz(State(state): State<Arc<AppState>>) -> axum::response::Response {
    let clickhouse = state
        .clickhouse
        .query("SELECT 1")
        .execute()
        .await
        .err()
        .map(|e| e.to_string());
    let run = state.status.lock().ok().and_then(|s| s.failure.clone());
    tally_common::http::readiness(&[("clickhouse", clickhouse), ("last_run", run)])
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> axum::response::Response {
    tally_common::http::render_metrics(&state.metrics.registry)
}

/// Connects, then refreshes and serves health on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RefreshError> {
    if config.migrate {
        tally_common::clickhouse::migrate(&config.clickhouse).await?;
    }
    let pg = config.postgres.connect().await?;
    tally_common::postgres::migrate(&pg).await?;
    let owner = uuid::Uuid::new_v4().to_string();
    let state = state::PgState::new(pg, &config.clickhouse.database, &owner);
    let mut refresher = Refresher::new(config.clickhouse.client(), state, config.lease)
        .with_kafka(config.kafka.clone(), &config.aggregator_group)
        .with_retention(config.retention_days)
        .with_cluster(&config.clickhouse);
    let metrics = Metrics::new()?;
    let lifecycle_metrics = lifecycle::LifecycleMetrics::new(&metrics.registry)?;
    let mut lifecycle = lifecycle::Lifecycle::new(config.lifecycle_every, config.retention_days);
    let lifecycle_client = config.clickhouse.client();
    let health = Arc::new(AppState {
        metrics: metrics.clone(),
        clickhouse: config.clickhouse.client(),
        status: Mutex::new(Status::default()),
    });
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.cancel();
    });
    tracing::info!(addr = %listener.local_addr()?, scope = %config.clickhouse.database,
        interval_ms = config.interval.as_millis() as u64, owner, "report refresher started");
    let server_stop = stop.clone();
    let server = tokio::spawn(tally_common::serve::serve(
        listener,
        app(health.clone()),
        tally_common::serve::ServeOptions::default(),
        async move { server_stop.cancelled().await },
    ));
    loop {
        let kind = match refresher.due(config.full_every).await {
            Ok(kind) => kind,
            Err(err) => {
                metrics.failed("incremental", &err);
                refresh::Kind::Incremental
            }
        };
        let started = Instant::now();
        let failure = match refresher.run(kind).await {
            Ok(Some(report)) => {
                metrics.committed(&report, started.elapsed().as_secs_f64());
                // The lease holder also runs the data lifecycle, when due.
                lifecycle
                    .maybe_run(
                        &lifecycle_client,
                        config.clickhouse.layout(),
                        &lifecycle_metrics,
                    )
                    .await;
                None
            }
            Ok(None) => {
                metrics.standby(kind.name());
                None
            }
            Err(err) => {
                metrics.failed(kind.name(), &err);
                Some(err.to_string())
            }
        };
        if let Ok(mut status) = health.status.lock() {
            status.failure = failure;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(config.interval) => {}
        }
    }
    if let Err(err) = refresher.state().release().await {
        tracing::warn!(error = %err, "could not give the lease up (it expires by itself)");
    }
    if let Ok(Err(err)) = server.await {
        tracing::warn!(error = %err, "health server error");
    }
    tracing::info!("report refresher stopped");
    Ok(())
}
