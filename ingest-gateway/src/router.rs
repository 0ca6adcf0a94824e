//! The gateway's routes and their thin handlers: each ingest route names its
//! API flavour and hands the request to [`crate::intake::handle`].
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/events/batch` | Tally's batch API |
//! | `POST /v1/batch`, `POST /v1/{type}` | Segment's tracking API (batch, single message) |
//! | `GET /sdk.js` | the browser tracker |
//! | `GET /livez`, `/readyz`, `/metrics` | health and Prometheus metrics |
//!
//! Ingest routes allow any origin (write keys are public and no cookie is ever
//! used), never with credentials. Every refusal, including unknown routes and
//! methods, answers JSON.

use crate::error::GatewayError;
use crate::intake::{self, BatchResponse, Head};
use crate::segment;
use crate::sink::EventSink;
use crate::state::AppState;
use crate::validate::Api;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tally_common::http::Path;

/// The gateway's routes.
pub fn app<S: EventSink>(state: Arc<AppState<S>>) -> Router {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(86_400));
    let ingest = Router::new()
        .route("/api/v1/events/batch", post(native_batch::<S>))
        .route("/v1/batch", post(segment_batch::<S>))
        .route("/v1/{kind}", post(segment_single::<S>))
        .layer(cors);
    Router::new()
        .merge(ingest)
        .route("/sdk.js", get(sdk_js))
        .route("/livez", get(tally_common::http::livez))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(state)
        // Unknown routes, other methods and any plain-text rejection answer JSON too.
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

type Answer = Result<Json<BatchResponse>, GatewayError>;

async fn native_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let head = Head::new(&state, peer, &uri, &headers, Api::Native);
    intake::handle(&state, head, body).await.map(Json)
}

async fn segment_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let head = Head::new(&state, peer, &uri, &headers, Api::Segment(None));
    intake::handle(&state, head, body).await.map(Json)
}

async fn segment_single<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(kind): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let Some(kind) = segment::TYPES.iter().copied().find(|t| *t == kind) else {
        let refusal = GatewayError::UnknownType(kind);
        state
            .metrics
            .request_answered(refusal.status(), Some((refusal.reason(), &refusal)));
        return Err(refusal);
    };
    let head = Head::new(&state, peer, &uri, &headers, Api::Segment(Some(kind)));
    intake::handle(&state, head, body).await.map(Json)
}

/// The browser tracker, compiled into the binary so the gateway that receives its
/// events is also the one place that serves it.
const SDK_JS: &str = include_str!("../static/sdk.js");

async fn sdk_js() -> impl axum::response::IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        SDK_JS,
    )
}

async fn readyz<S: EventSink>(State(state): State<Arc<AppState<S>>>) -> axum::response::Response {
    let sink = state.sink.ready().await.err();
    let keys = (!state.keys.loaded()).then(|| "write keys not loaded yet".to_owned());
    tally_common::http::readiness(&[("kafka", sink), ("keys", keys)])
}

async fn metrics<S: EventSink>(State(state): State<Arc<AppState<S>>>) -> axum::response::Response {
    state
        .metrics
        .inflight_bytes
        .set(i64::try_from(state.overload.inflight_bytes()).unwrap_or(i64::MAX));
    tally_common::http::render_metrics(&state.metrics.registry)
}
