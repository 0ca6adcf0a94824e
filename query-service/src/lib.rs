//! Tally's query service: live windows from Redis and counts from ClickHouse
//! (see [`api`] for the endpoints), plus `/livez`, `/readyz`, `/metrics`.
//!
//! [`run`] serves [`app`] until the shutdown future resolves, then drains
//! in-flight requests.

pub mod adhoc;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod funnel;
pub mod funnel_order;
pub mod live;
pub mod metrics;
pub mod reports;
pub mod retention;
pub mod saved;
pub mod session_metrics;
pub mod stores;
pub mod stream_token;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tally_common::keys::{spawn_refresher, KeyCache, PostgresKeys};
use tally_common::postgres::KeyKind;
use tally_common::{Clock, SystemClock};
use tokio::net::TcpListener;

pub use config::Config;
pub use error::QueryError;
use metrics::Metrics;
use stores::{ClickHouseStore, EventStore, LiveSource, RedisLive};

/// Shared dependencies of every handler.
#[derive(Debug)]
pub struct AppState<L, E> {
    /// Live windows.
    pub live: L,
    /// Raw events.
    pub events: E,
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
    /// Serialized `/query` answers, shared by identical queries.
    pub query_cache: cache::Cache<axum::body::Bytes>,
    /// Limits.
    pub config: Config,
}

/// Every route as (method, path): the OpenAPI document served at
/// `/openapi.json` (`static/openapi.json`) must list exactly these (unit test),
/// and every one of them answers (`testkit/tests/openapi.rs`).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/analytics/{app_id}/live"),
    ("get", "/api/v1/analytics/{app_id}/live/stream"),
    ("post", "/api/v1/analytics/{app_id}/live/token"),
    ("get", "/api/v1/analytics/{app_id}/count"),
    ("get", "/api/v1/analytics/{app_id}/query"),
    ("post", "/api/v1/analytics/{app_id}/query"),
    ("post", "/api/v1/analytics/{app_id}/funnel"),
    ("post", "/api/v1/analytics/{app_id}/retention"),
    ("get", "/api/v1/analytics/{app_id}/reports/{report}"),
    ("get", "/api/v1/analytics/{app_id}/{kind}"),
    ("post", "/api/v1/analytics/{app_id}/{kind}"),
    ("get", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("put", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("delete", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("get", "/openapi.json"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("../static/openapi.json");

/// The query service's routes.
pub fn app<L: LiveSource, E: EventStore>(state: Arc<AppState<L, E>>) -> Router {
    Router::new()
        .route("/api/v1/analytics/{app_id}/live", get(live::live::<L, E>))
        .route(
            "/api/v1/analytics/{app_id}/live/stream",
            get(live::stream::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/live/token",
            axum::routing::post(stream_token::issue::<L, E>),
        )
        .route("/api/v1/analytics/{app_id}/count", get(api::count::<L, E>))
        .route(
            "/api/v1/analytics/{app_id}/query",
            get(api::query::<L, E>).post(api::query::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/funnel",
            axum::routing::post(api::funnel::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/retention",
            axum::routing::post(api::retention::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/reports/{report}",
            get(reports::report::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/{kind}",
            get(saved::list::<L, E>).post(saved::create::<L, E>),
        )
        .route(
            "/api/v1/analytics/{app_id}/{kind}/{id}",
            get(saved::get::<L, E>)
                .put(saved::replace::<L, E>)
                .delete(saved::delete::<L, E>),
        )
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI,
                )
            }),
        )
        .route("/livez", get(tally_common::http::livez))
        .route("/readyz", get(readyz::<L, E>))
        .route("/metrics", get(metrics_handler::<L, E>))
        .with_state(state)
        // Unknown routes, other methods and any plain-text rejection answer JSON too.
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

async fn readyz<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
) -> axum::response::Response {
    let redis = state.live.ping().await.err();
    let clickhouse = state.events.ping().await.err();
    tally_common::http::readiness(&[("redis", redis), ("clickhouse", clickhouse)])
}

async fn metrics_handler<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
) -> axum::response::Response {
    tally_common::http::render_metrics(&state.metrics.registry)
}

/// Connects and serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QueryError> {
    let redis = redis::Client::open(config.redis_url.as_str())?;
    let connection = redis::aio::ConnectionManager::new(redis).await?;
    let keys = Arc::new(KeyCache::new(PostgresKeys::new(
        config.postgres.clone(),
        KeyKind::Read,
    )));
    if let Err(err) = keys.refresh().await {
        tracing::warn!(error = %err, "read keys not loaded yet; requests get 503 until PostgreSQL answers");
    }
    spawn_refresher(keys.clone(), config.key_refresh);
    let state = Arc::new(AppState {
        keys,
        live_cache: cache::Cache::new(config.live_cache, 10_000),
        query_cache: cache::Cache::new(config.query_cache, 10_000),
        saved: saved::SavedStore::new(config.postgres.clone()),
        live: RedisLive::new(connection, &config.redis_prefix),
        events: ClickHouseStore::new(config.clickhouse.client()),
        metrics: Metrics::new().map_err(|e| QueryError::Startup(e.to_string()))?,
        clock: Arc::new(SystemClock),
        config,
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, served);
    }
}
