//! Tally's ingest gateway: `POST /api/v1/events/batch` → validate → enrich →
//! Kafka, answering 200 only once the broker acknowledged every accepted event.
//!
//! Admission order of a batch: declared size (413) → a write key in the headers,
//! checked before anything is reserved or read (401) → the request head, then the
//! body as it arrives, reserved in the in-flight budget (`overload.rs`: 503/429) →
//! decode → the body's key when the headers had none → per-app rate → events.
//!
//! [`run`] serves the [`app`] router until the shutdown future resolves, then
//! stops intake, waits for in-flight requests and flushes the producer.

pub mod auth;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod error;
pub mod metrics;
pub mod overload;
pub mod segment;
pub mod sink;
pub mod validate;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_common::http::Path;
use tally_common::keys;
use tally_common::{Clock, SystemClock};
use tokio::net::TcpListener;

pub use config::Config;
pub use error::GatewayError;
use metrics::Metrics;
use sink::{EventSink, KafkaSink};
use validate::{prepare, valid_app_id, Api, Rejection, RequestContext};

/// Shared dependencies of every handler.
#[derive(Debug)]
pub struct AppState<S> {
    /// Destination of accepted events.
    pub sink: S,
    /// Write keys.
    pub keys: Arc<keys::KeyCache>,
    /// Geo-IP databases.
    pub geo: enrich::Geo,
    /// User-agent and bot classification.
    pub agents: enrich::Agents,
    /// Rate limits and in-flight caps.
    pub overload: overload::Overload,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Wall clock (server timestamps).
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub config: Config,
}

/// Answer to a batch.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    /// The request was accepted (Segment clients look for this).
    pub success: bool,
    /// Events stored on the broker.
    pub accepted: usize,
    /// Events refused.
    pub rejected: usize,
    /// One entry per refused event.
    pub errors: Vec<Rejection>,
}

/// The gateway's routes.
pub fn app<S: EventSink>(state: Arc<AppState<S>>) -> Router {
    // Write keys are public and no cookie is ever used: any origin may post, credentials never.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_ENCODING,
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
        .route("/metrics", get(metrics_handler::<S>))
        .with_state(state)
        // Unknown routes, other methods and any plain-text rejection answer JSON too.
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

async fn native_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<BatchResponse>, GatewayError> {
    ingest(&state, peer, (&uri, &headers), body, Api::Native).await
}

async fn segment_batch<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<BatchResponse>, GatewayError> {
    ingest(&state, peer, (&uri, &headers), body, Api::Segment(None)).await
}

async fn segment_single<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(kind): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<BatchResponse>, GatewayError> {
    let Some(kind) = segment::TYPES.iter().copied().find(|t| *t == kind) else {
        return Err(GatewayError::UnknownType(kind));
    };
    ingest(
        &state,
        peer,
        (&uri, &headers),
        body,
        Api::Segment(Some(kind)),
    )
    .await
}

#[derive(serde::Deserialize)]
struct BodyKey {
    #[serde(default, alias = "writeKey")]
    write_key: Option<String>,
}

async fn ingest<S: EventSink>(
    state: &AppState<S>,
    peer: SocketAddr,
    head: (&Uri, &HeaderMap),
    body: axum::body::Body,
    api: Api,
) -> Result<Json<BatchResponse>, GatewayError> {
    let result = handle_batch(state, peer, head, body, api).await;
    let status = match &result {
        Ok(_) => axum::http::StatusCode::OK,
        Err(err) => err.status(),
    };
    state
        .metrics
        .requests
        .with_label_values(&[status.as_str()])
        .inc();
    if let Err(err) = &result {
        tracing::debug!(reason = err.reason(), error = %err, "batch refused");
    }
    result.map(Json)
}

/// Counts and (rate-limited) logs a refusal before admission; `reason` is one of
/// the fixed labels of `tally_gateway_admission_refused_total`.
fn refuse_admission<S>(state: &AppState<S>, reason: &'static str, client: IpAddr) {
    state
        .metrics
        .admission_refused
        .with_label_values(&[reason])
        .inc();
    if let Some(suppressed) = state.metrics.admission_log.admit() {
        let client = enrich::anonymize(client, state.config.ip_mode).unwrap_or_default();
        tracing::warn!(
            reason,
            %client,
            inflight_bytes = state.overload.inflight_bytes(),
            suppressed,
            "request refused before admission"
        );
    }
}

/// The answer to a reservation that would pass a cap (counted and logged).
fn over_cap<S>(state: &AppState<S>, refusal: overload::Refusal, client: IpAddr) -> GatewayError {
    refuse_admission(state, refusal.label(), client);
    match refusal {
        overload::Refusal::Client => GatewayError::ClientOverloaded,
        overload::Refusal::Total | overload::Refusal::Unverified => GatewayError::Overloaded,
    }
}

/// Bodies up to this size are read (and discarded) before a 413 — or a refusal of
/// the header key — is sent, so that a client still sending gets the answer instead
/// of a connection reset. Discarded bytes are never buffered, so hold no budget.
const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Reads and discards a refused request's body (up to [`DRAIN_MAX_BYTES`] and `timeout`).
async fn drain(body: axum::body::Body, declared: usize, timeout: std::time::Duration) {
    use http_body_util::BodyExt;
    if declared > DRAIN_MAX_BYTES {
        return;
    }
    let mut body = body;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len());
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Why a body could not be read.
enum ReadError {
    /// A cap of the in-flight budget would be passed.
    Refused(overload::Refusal),
    /// Anything else (too large, broken connection).
    Gateway(GatewayError),
}

/// Reads a body of at most `limit` bytes, reserving its buffer in `reservation`
/// as it grows — that is, as bytes actually arrive, never from a declared length.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    reservation: &mut overload::Reservation,
) -> Result<Vec<u8>, ReadError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| ReadError::Gateway(GatewayError::MalformedBody(err.to_string())))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buffer.len() + data.len();
        if needed > limit {
            return Err(ReadError::Gateway(GatewayError::PayloadTooLarge(limit)));
        }
        if needed > buffer.capacity() {
            let target = needed.max(buffer.capacity().saturating_mul(2)).min(limit);
            reservation
                .grow(target - buffer.capacity())
                .map_err(ReadError::Refused)?;
            buffer.reserve_exact(target - buffer.len());
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer)
}

async fn handle_batch<S: EventSink>(
    state: &AppState<S>,
    peer: SocketAddr,
    (uri, headers): (&Uri, &HeaderMap),
    body: axum::body::Body,
    api: Api,
) -> Result<BatchResponse, GatewayError> {
    let limit = state.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(declared) = declared.filter(|declared| *declared > limit) {
        drain(body, declared, state.config.body_timeout).await;
        return Err(GatewayError::PayloadTooLarge(limit));
    }
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = enrich::client_ip(peer, forwarded, state.config.trusted_proxies);
    // A key in the headers is checked before anything is reserved or read: a
    // client with an unknown key never holds a byte of the in-flight budget.
    let header_app = match auth::header_credential(headers) {
        None => None,
        Some(key) => match state.keys.lookup(&key).await {
            keys::Lookup::App(app) => Some(app),
            keys::Lookup::Unknown => {
                refuse_admission(state, "invalid_write_key", ip);
                drain(body, declared.unwrap_or(limit), state.config.body_timeout).await;
                return Err(GatewayError::InvalidWriteKey);
            }
            keys::Lookup::Unavailable => {
                drain(body, declared.unwrap_or(limit), state.config.body_timeout).await;
                return Err(GatewayError::KeysUnavailable);
            }
        },
    };
    // Without one, the key can only be in the body: such requests share a capped
    // part of the budget, so header-keyed requests always find the rest.
    let pool = if header_app.is_some() {
        overload::Pool::Verified
    } else {
        overload::Pool::Unverified
    };
    let mut reservation = state.overload.reservation(ip, pool);
    reservation
        .grow(overload::head_bytes(uri, headers))
        .map_err(|refusal| over_cap(state, refusal, ip))?;
    // A body announced larger than what is free now is refused at once (nothing reserved).
    if let Some(declared) = declared {
        reservation
            .fits(declared)
            .map_err(|refusal| over_cap(state, refusal, ip))?;
    }
    let read = tokio::time::timeout(
        state.config.body_timeout,
        read_body(body, limit, &mut reservation),
    );
    let bytes = match read.await.map_err(|_| GatewayError::BodyTimeout)? {
        Ok(bytes) => bytes,
        Err(ReadError::Refused(refusal)) => return Err(over_cap(state, refusal, ip)),
        Err(ReadError::Gateway(err)) => return Err(err),
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = if gzipped {
        let inflated = decode::gunzip(&bytes, limit)?;
        reservation
            .grow(inflated.capacity())
            .map_err(|refusal| over_cap(state, refusal, ip))?;
        std::borrow::Cow::Owned(inflated)
    } else {
        std::borrow::Cow::Borrowed(&bytes[..])
    };
    let text = decode::to_text(&bytes)?;
    if let std::borrow::Cow::Owned(repaired) = &text {
        reservation
            .grow(repaired.len())
            .map_err(|refusal| over_cap(state, refusal, ip))?;
    }
    let (claimed_app, body_key, events, sent_at) = match api {
        Api::Native | Api::Segment(None) => {
            let batch = decode::parse_batch(&text)?;
            (batch.app_id, batch.write_key, batch.events, batch.sent_at)
        }
        Api::Segment(Some(_)) => {
            let key: BodyKey = serde_json::from_str(&text)
                .map_err(|err| GatewayError::MalformedBody(err.to_string()))?;
            let message: &serde_json::value::RawValue = serde_json::from_str(&text)
                .map_err(|err| GatewayError::MalformedBody(err.to_string()))?;
            (None, key.write_key, vec![message], None)
        }
    };
    if claimed_app.as_deref().is_some_and(|app| !valid_app_id(app)) {
        return Err(GatewayError::InvalidAppId);
    }
    let app_id = match header_app {
        Some(app) => app,
        None => {
            let key = body_key
                .filter(|key| !key.is_empty())
                .ok_or(GatewayError::MissingWriteKey)?;
            match state.keys.lookup(&key).await {
                keys::Lookup::App(app) => app,
                keys::Lookup::Unknown => return Err(GatewayError::InvalidWriteKey),
                keys::Lookup::Unavailable => return Err(GatewayError::KeysUnavailable),
            }
        }
    };
    if let Some(claimed) = claimed_app.filter(|claimed| *claimed != app_id) {
        return Err(GatewayError::KeyAppMismatch(claimed));
    }
    if events.is_empty() {
        return Err(GatewayError::EmptyBatch);
    }
    if events.len() > state.config.max_batch_events {
        return Err(GatewayError::TooManyEvents(
            events.len(),
            state.config.max_batch_events,
        ));
    }
    if let Err(wait) = state.overload.admit_events(&app_id, events.len()) {
        state
            .metrics
            .rate_limited
            .with_label_values(&[&state.overload.app_label(&app_id)])
            .inc_by(events.len() as u64);
        return Err(GatewayError::RateLimited(wait));
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(enrich::bounded_user_agent);
    let mut enrichment = tally_schemas::Enrichment::default();
    (enrichment.country, enrichment.region, enrichment.city) = state.geo.lookup(ip);
    state
        .agents
        .classify(user_agent.as_deref().unwrap_or_default(), &mut enrichment);
    let context = RequestContext {
        received_at_ms: state.clock.now_ms(),
        ip: enrich::anonymize(ip, state.config.ip_mode),
        user_agent,
        enrichment,
    };
    let prepared = prepare(
        &app_id,
        &events,
        sent_at,
        api,
        &context,
        &state.config.limits,
        &state.agents,
    );
    for rejection in &prepared.rejected {
        state
            .metrics
            .events
            .with_label_values(&["rejected", rejection.reason.code()])
            .inc();
    }
    let letters: Vec<tally_schemas::DeadLetter> = prepared
        .rejected
        .iter()
        .map(|rejection| {
            tally_schemas::DeadLetter::new(
                "gateway",
                rejection.reason.code(),
                &app_id,
                context.received_at_ms,
                rejection.index.to_string(),
                events.get(rejection.index).map_or("", |raw| raw.get()),
            )
        })
        .collect();
    let publish = async {
        if prepared.envelopes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let published = state.sink.publish(&prepared.envelopes).await;
        let outcome = if published.is_ok() { "ok" } else { "error" };
        state
            .metrics
            .produce_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        published
    };
    let dead_letter = async {
        if letters.is_empty() {
            return;
        }
        let result = state.sink.dead_letter(&letters).await;
        if let Err(error) = &result {
            tracing::warn!(%error, app = %app_id, count = letters.len(), "dead letters not stored");
        }
        state
            .metrics
            .dead_letters
            .with_label_values(&[if result.is_ok() { "stored" } else { "failed" }])
            .inc_by(letters.len() as u64);
    };
    let (published, ()) = tokio::join!(publish, dead_letter);
    published.map_err(GatewayError::BrokerUnavailable)?;
    if !prepared.envelopes.is_empty() {
        state
            .metrics
            .events
            .with_label_values(&["accepted", "ok"])
            .inc_by(prepared.envelopes.len() as u64);
    }
    Ok(BatchResponse {
        success: true,
        accepted: prepared.envelopes.len(),
        rejected: prepared.rejected.len(),
        errors: prepared.rejected,
    })
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
    let kafka = state.sink.ready().await.err();
    let keys = (!state.keys.loaded()).then(|| "write keys not loaded yet".to_owned());
    tally_common::http::readiness(&[("kafka", kafka), ("keys", keys)])
}

async fn metrics_handler<S: EventSink>(
    State(state): State<Arc<AppState<S>>>,
) -> axum::response::Response {
    state
        .metrics
        .inflight_bytes
        .set(i64::try_from(state.overload.inflight_bytes()).unwrap_or(i64::MAX));
    tally_common::http::render_metrics(&state.metrics.registry)
}

/// Error starting or serving the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The producer could not be created.
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Serving failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let sink = KafkaSink::new(&config.kafka, config.produce_timeout)?;
    let keys = Arc::new(keys::KeyCache::new(keys::PostgresKeys::new(
        config.postgres.clone(),
        tally_common::postgres::KeyKind::Write,
    )));
    keys::spawn_refresher(keys.clone(), config.key_refresh);
    let (geo, warnings) = enrich::Geo::open(&config.geoip_paths);
    for warning in warnings {
        tracing::warn!(%warning, "geo-IP database unavailable; events get no geo fields from it");
    }
    let state = Arc::new(AppState {
        sink,
        keys,
        geo,
        agents: enrich::Agents::default(),
        overload: overload::Overload::new(
            config.app_rate,
            config.app_burst,
            config.inflight_caps(),
        ),
        metrics: Metrics::new()?,
        clock: Arc::new(SystemClock),
        config,
    });
    tracing::info!(addr = %listener.local_addr()?, topic = %state.config.kafka.topic, "ingest gateway listening");
    let options = tally_common::serve::ServeOptions {
        header_timeout: state.config.header_timeout,
        max_connections: state.config.max_connections,
        ..Default::default()
    };
    tally_common::serve::serve(listener, app(state.clone()), options, shutdown).await?;
    state.sink.flush(Duration::from_secs(10));
    tracing::info!("ingest gateway stopped");
    Ok(())
}
