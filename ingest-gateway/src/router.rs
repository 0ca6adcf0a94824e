//! The gateway's routes and their thin handlers: each ingest route names its
//! API flavour and hands the request to [`crate::intake::handle`].
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/events/batch` | Tally's batch API |
//! | `POST /v1/batch`, `POST /v1/{type}` | Segment's tracking API (batch, single message) |
//! | `POST /batch/`, `/e/`, `/capture/`, `/i/v0/e/` (with or without the last `/`) | PostHog capture (`posthog.rs`); an Amplitude upload on `/batch` is Amplitude's (`amplitude.rs`) |
//! | `POST /2/httpapi` | Amplitude's HTTP V2 upload (`amplitude.rs`) |
//! | `GET`/`POST /track`, `/import`, `/engage` (± `/`) | Mixpanel ingestion (`mixpanel.rs`), `data` in the query or a form body |
//! | `POST /api/send` | Umami's collect API (`umami.rs`) |
//! | `POST /com.snowplowanalytics.snowplow/tp2`, `GET /i` | Snowplow's tracker protocol (`snowplow.rs`) |
//! | `POST /api/event` | Plausible's events API (`plausible.rs`) |
//!
//! Vendor routes answer in the vendor's shape (`answers.rs`).
//! | `GET /array/{token}/config`, `/array/{token}/config.js`, `/flags/`, `/decide/` | what PostHog's SDKs fetch at start (`posthog_config.rs`) |
//! | `GET /sdk.js` | the browser tracker |
//! | `GET /livez`, `/readyz`, `/metrics` | health and Prometheus metrics |
//!
//! Ingest routes allow any origin (write keys are public and no cookie is ever
//! used), never with credentials. Every refusal, including unknown routes and
//! methods, answers JSON.

use crate::answers;
use crate::error::GatewayError;
use crate::intake::{self, BatchResponse, Head};
use crate::mixpanel;
use crate::posthog_config;
use crate::segment;
use crate::sink::EventSink;
use crate::snowplow;
use crate::state::AppState;
use crate::validate::Api;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;
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
        .route("/2/httpapi", post(amplitude_upload::<S>))
        .route("/api/send", post(umami_send::<S>))
        .route(
            "/com.snowplowanalytics.snowplow/tp2",
            post(snowplow_post::<S>),
        )
        .route("/i", get(snowplow_pixel::<S>))
        .route(
            "/com.snowplowanalytics.snowplow/i",
            get(snowplow_pixel::<S>),
        )
        .route("/track", get(mixpanel_track::<S>).post(mixpanel_track::<S>))
        .route(
            "/track/",
            get(mixpanel_track::<S>).post(mixpanel_track::<S>),
        )
        .route(
            "/import",
            get(mixpanel_import::<S>).post(mixpanel_import::<S>),
        )
        .route(
            "/import/",
            get(mixpanel_import::<S>).post(mixpanel_import::<S>),
        )
        .route(
            "/engage",
            get(mixpanel_engage::<S>).post(mixpanel_engage::<S>),
        )
        .route(
            "/engage/",
            get(mixpanel_engage::<S>).post(mixpanel_engage::<S>),
        )
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

async fn posthog_capture<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::PostHog);
    let result = intake::handle(&state, head, body).await;
    answers::posthog(result, state.clock.now_ms())
}

async fn plausible_event<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::Plausible);
    answers::plausible(intake::handle(&state, head, body).await)
}

async fn amplitude_upload<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::Amplitude);
    let result = intake::handle(&state, head, body).await;
    answers::amplitude(result, state.clock.now_ms())
}

async fn umami_send<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let head = Head::new(&state, peer, &uri, &headers, Api::Umami);
    answers::umami(intake::handle(&state, head, body).await)
}

async fn snowplow_post<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let endpoint = snowplow::Endpoint::Post;
    let head = Head::new(&state, peer, &uri, &headers, Api::Snowplow(endpoint));
    answers::snowplow(intake::handle(&state, head, body).await, endpoint)
}

async fn snowplow_pixel<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let endpoint = snowplow::Endpoint::Pixel;
    let head = Head::new(&state, peer, &uri, &headers, Api::Snowplow(endpoint));
    answers::snowplow(intake::handle(&state, head, body).await, endpoint)
}

async fn mixpanel<S: EventSink>(
    state: Arc<AppState<S>>,
    peer: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
    endpoint: mixpanel::Endpoint,
) -> Response {
    let verbose = uri.query().is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "verbose" && v == "1")
    });
    let head = Head::new(&state, peer, &uri, &headers, Api::Mixpanel(endpoint));
    let result = intake::handle(&state, head, body).await;
    answers::mixpanel(result, endpoint, verbose)
}

async fn mixpanel_track<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    mixpanel(state, peer, uri, headers, body, mixpanel::Endpoint::Track).await
}

async fn mixpanel_import<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    mixpanel(state, peer, uri, headers, body, mixpanel::Endpoint::Import).await
}

async fn mixpanel_engage<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    mixpanel(state, peer, uri, headers, body, mixpanel::Endpoint::Engage).await
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
