//! The gateway's routes and their thin handlers: each ingest route names its
//! API flavour and hands the request to [`crate::intake::handle`].
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/events/batch` | Tally's batch API |
//! | `POST /v1/batch`, `POST /v1/{type}` | Segment's tracking API (batch, single message) |
//! | `POST /batch/`, `/e/`, `/capture/`, `/i/v0/e/` (with or without the last `/`) | PostHog capture (`posthog.rs`), answered `{"status": 1, …}` |
//! | `POST /api/event` | Plausible's events API (`plausible.rs`), answered 202 `ok` as Plausible does; a refused event 400 with its reason |
//! | `GET /array/{token}/config`, `/array/{token}/config.js`, `/flags/`, `/decide/` | what PostHog's SDKs fetch at start (`posthog_config.rs`) |
//! | `GET /sdk.js` | the browser tracker |
//! | `GET /livez`, `/readyz`, `/metrics` | health and Prometheus metrics |
//!
//! Ingest routes allow any origin (write keys are public and no cookie is ever
//! used), never with credentials. Every refusal, including unknown routes and
//! methods, answers JSON.

use crate::error::GatewayError;
use crate::intake::{self, BatchResponse, Head};
use crate::posthog_config;
use crate::segment;
use crate::sink::EventSink;
use crate::state::AppState;
use crate::validate::Api;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
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
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(86_400));
    let mut ingest = Router::new()
        .route("/api/v1/events/batch", post(native_batch::<S>))
        .route("/v1/batch", post(segment_batch::<S>))
        .route("/v1/{kind}", post(segment_single::<S>));
    for path in POSTHOG_CAPTURE {
        ingest = ingest
            .route(path, post(posthog_capture::<S>))
            .route(&format!("{path}/"), post(posthog_capture::<S>));
    }
    for path in ["/flags", "/flags/"] {
        ingest = ingest.route(path, get(posthog_flags).post(posthog_flags));
    }
    for path in ["/decide", "/decide/"] {
        ingest = ingest.route(path, get(posthog_decide).post(posthog_decide));
    }
    let ingest = ingest
        .route("/api/event", post(plausible_event::<S>))
        .route("/array/{token}/config", get(posthog_remote_config))
        .route("/array/{token}/config.js", get(posthog_remote_config_js));
    let ingest = ingest.layer(cors);
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

/// PostHog's capture paths (each also with a trailing `/`).
const POSTHOG_CAPTURE: [&str; 4] = ["/batch", "/e", "/capture", "/i/v0/e"];

/// PostHog's answer: its SDKs look only at the status code; `status: 1` is
/// what PostHog's capture sends, Tally's counts follow.
#[derive(Debug, serde::Serialize)]
struct PostHogAnswer {
    status: u8,
    #[serde(flatten)]
    batch: BatchResponse,
}

async fn posthog_capture<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::PostHog);
    match intake::handle(&state, head, body).await {
        Ok(batch) => Json(PostHogAnswer { status: 1, batch }).into_response(),
        Err(refusal) => retried_by_posthog_js(refusal),
    }
}

/// posthog-js retries a failed request only on a 5xx (or no answer), never on
/// a 4xx: a refusal that asks the client to come back later (429: the app's
/// rate, the client's share of the in-flight budget) is sent as 503 with the
/// same reason and `Retry-After`, so no PostHog SDK drops those events
/// (posthog-node retries both).
fn retried_by_posthog_js(refusal: GatewayError) -> Response {
    let later = refusal.status() == StatusCode::TOO_MANY_REQUESTS;
    let mut response = refusal.into_response();
    if later {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// Plausible answers an accepted event `202 ok` (its tracker reads only the
/// status); a refused event is a 400 with Tally's reason, like any refusal.
async fn plausible_event<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::Plausible);
    match intake::handle(&state, head, body).await {
        Ok(batch) if batch.accepted == 1 => (StatusCode::ACCEPTED, "ok").into_response(),
        Ok(batch) => {
            let reason = batch
                .errors
                .first()
                .map_or("malformed_event", |r| r.reason.code());
            let body = serde_json::json!({
                "error": reason,
                "message": "the event was refused",
                "errors": batch.errors,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn posthog_flags() -> Json<serde_json::Value> {
    Json(posthog_config::flags())
}

async fn posthog_decide() -> Json<serde_json::Value> {
    Json(posthog_config::decide())
}

async fn posthog_remote_config(Path(token): Path<String>) -> Json<serde_json::Value> {
    Json(posthog_config::remote_config(&token))
}

async fn posthog_remote_config_js(Path(token): Path<String>) -> impl axum::response::IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        posthog_config::remote_config_js(&token),
    )
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
