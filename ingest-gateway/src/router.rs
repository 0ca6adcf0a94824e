//! The gateway's routes and their thin handlers: each ingest route names its
//! API flavour, hands the request ([`Ingest`]) to [`crate::intake::handle`]
//! and answers in its API's shape (`answers.rs`).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/events/batch` | Tally's batch API |
//! | `POST /v1/batch`, `POST /v1/{type}` | Segment's tracking API (batch, single message) |
//! | `POST /batch/`, `/e/`, `/capture/`, `/i/v0/e/` (with or without the last `/`) | PostHog capture (`posthog.rs`); an Amplitude upload on `/batch` is Amplitude's |
//! | `GET /array/{token}/config`, `/array/{token}/config.js`, `/flags/`, `/decide/` | what PostHog's SDKs fetch at start (`posthog_config.rs`) |
//! | `POST /api/event` | Plausible's events API (`plausible.rs`) |
//! | `POST /2/httpapi` | Amplitude's HTTP V2 upload (`amplitude.rs`) |
//! | `GET`/`POST /track`, `/import`, `/engage` (± `/`) | Mixpanel ingestion (`mixpanel.rs`), `data` in the query or a form body |
//! | `POST /api/send` | Umami's collect API (`umami.rs`) |
//! | `POST /com.snowplowanalytics.snowplow/tp2`, `GET /i` (also under `/com.snowplowanalytics.snowplow/`) | Snowplow's tracker protocol (`snowplow.rs`) |
//! | `GET /sdk.js` | the browser tracker |
//! | `GET /livez`, `/readyz`, `/metrics` | health and Prometheus metrics |
//!
//! Ingest routes allow any origin, with credentials (write keys are public and
//! the gateway reads no cookie: the request's origin is mirrored). Every refusal, including unknown routes and
//! methods, answers JSON.

use crate::answers;
use crate::error::GatewayError;
use crate::intake::{self, BatchResponse, Head};
use crate::mixpanel::Endpoint as Mixpanel;
use crate::posthog_config;
use crate::segment;
use crate::sink::EventSink;
use crate::snowplow::Endpoint as Snowplow;
use crate::state::AppState;
use crate::validate::Api;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tally_common::http::Path;

/// The gateway's routes.
pub fn app<S: EventSink>(state: Arc<AppState<S>>) -> Router {
    // The request's own origin, with credentials: browser SDKs that send
    // credentialed requests (mixpanel-browser's XHR, Snowplow's tracker) would
    // otherwise have every answer blocked and resend for ever. Safe because
    // the gateway reads no cookie and answers nothing private.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::mirror_request())
        .allow_credentials(true)
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
        .route("/v1/{kind}", post(segment_single::<S>))
        .route("/api/event", post(plausible_event::<S>))
        .route("/2/httpapi", post(amplitude_upload::<S>))
        .route("/api/send", post(umami_send::<S>))
        .route("/array/{token}/config", get(posthog_remote_config))
        .route("/array/{token}/config.js", get(posthog_remote_config_js));
    // Each with and without a trailing `/`, as the vendors' SDKs call them.
    let slashed: [(&str, MethodRouter<Arc<AppState<S>>>); 12] = [
        ("/batch", post(posthog_capture::<S>)),
        ("/e", post(posthog_capture::<S>)),
        ("/capture", post(posthog_capture::<S>)),
        ("/i/v0/e", post(posthog_capture::<S>)),
        ("/flags", get(posthog_flags).post(posthog_flags)),
        ("/decide", get(posthog_decide).post(posthog_decide)),
        ("/track", get(mixpanel_track::<S>).post(mixpanel_track::<S>)),
        (
            "/import",
            get(mixpanel_import::<S>).post(mixpanel_import::<S>),
        ),
        (
            "/engage",
            get(mixpanel_engage::<S>).post(mixpanel_engage::<S>),
        ),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            post(snowplow_post::<S>),
        ),
        (
            "/com.snowplowanalytics.snowplow/i",
            get(snowplow_pixel::<S>),
        ),
        ("/i", get(snowplow_pixel::<S>)),
    ];
    for (path, handler) in slashed {
        ingest = ingest
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
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

/// An ingest request as the intake takes it: the client's socket address,
/// the target, the headers and the (unread) body. The one extractor of every
/// ingest route.
#[derive(Debug)]
pub struct Ingest {
    peer: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
}

impl<S: Send + Sync> FromRequest<S> for Ingest {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied()
        else {
            // Served without `into_make_service_with_connect_info`: a wiring fault.
            let body = serde_json::json!({"error": "internal", "message": "no client address"});
            return Err((StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response());
        };
        Ok(Ingest {
            peer,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl Ingest {
    /// Runs the intake for `api`.
    async fn handle<S: EventSink>(
        self,
        state: &AppState<S>,
        api: Api,
    ) -> Result<BatchResponse, GatewayError> {
        let head = Head::new(state, self.peer, &self.uri, &self.headers, api);
        intake::handle(state, head, self.body).await
    }

    /// Whether the query asks for Mixpanel's verbose answer (`verbose=1`).
    fn verbose(&self) -> bool {
        self.uri.query().is_some_and(|query| {
            url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "verbose" && v == "1")
        })
    }
}

type Answer = Result<Json<BatchResponse>, GatewayError>;

async fn native_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Answer {
    ingest.handle(&state, Api::Native).await.map(Json)
}

async fn segment_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Answer {
    ingest.handle(&state, Api::Segment(None)).await.map(Json)
}

async fn segment_single<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    Path(kind): Path<String>,
    ingest: Ingest,
) -> Answer {
    let Some(kind) = segment::TYPES.iter().copied().find(|t| *t == kind) else {
        let refusal = GatewayError::UnknownType(kind);
        state
            .metrics
            .request_answered(refusal.status(), Some((refusal.reason(), &refusal)));
        return Err(refusal);
    };
    ingest
        .handle(&state, Api::Segment(Some(kind)))
        .await
        .map(Json)
}

async fn posthog_capture<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    let result = ingest.handle(&state, Api::PostHog).await;
    answers::posthog(result, state.clock.now_ms())
}

async fn plausible_event<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    answers::plausible(ingest.handle(&state, Api::Plausible).await)
}

async fn amplitude_upload<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    let result = ingest.handle(&state, Api::Amplitude).await;
    answers::amplitude(result, state.clock.now_ms())
}

async fn umami_send<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    answers::umami(ingest.handle(&state, Api::Umami).await)
}

async fn snowplow_post<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    let result = ingest.handle(&state, Api::Snowplow(Snowplow::Post)).await;
    answers::snowplow(result, Snowplow::Post)
}

async fn snowplow_pixel<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    let result = ingest.handle(&state, Api::Snowplow(Snowplow::Pixel)).await;
    answers::snowplow(result, Snowplow::Pixel)
}

async fn mixpanel<S: EventSink>(
    state: &AppState<S>,
    ingest: Ingest,
    endpoint: Mixpanel,
) -> Response {
    let verbose = ingest.verbose();
    let result = ingest.handle(state, Api::Mixpanel(endpoint)).await;
    answers::mixpanel(result, endpoint, verbose)
}

async fn mixpanel_track<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    mixpanel(&state, ingest, Mixpanel::Track).await
}

async fn mixpanel_import<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    mixpanel(&state, ingest, Mixpanel::Import).await
}

async fn mixpanel_engage<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ingest: Ingest,
) -> Response {
    mixpanel(&state, ingest, Mixpanel::Engage).await
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
