//! One batch request, as a list of named stages:
//!
//! 1. [`authenticate_header`] — a write key in the headers is checked before
//!    anything is reserved or read (401, the body is drained, never buffered);
//!    a body announced larger than the limit is refused first (413);
//! 2. [`receive`] — the request head, then the body as it arrives, reserved in
//!    the in-flight budget (`overload.rs`: 503/429), a gzip body inflated under
//!    the same budget, a vendor's gzip/form/base64 wrapping undone
//!    (`wrapping.rs`, for the APIs whose SDKs send them);
//! 3. [`text`], then [`decode`] (`bodies.rs`) — UTF-8 (lone surrogates
//!    repaired), the body as its API shapes it, each event kept raw;
//! 4. [`authenticate`] — the app: the header key's, or else the body's key's,
//!    or else (Plausible) the app allowing the site domain the body names; an
//!    `app_id` in the body must be that app;
//! 5. [`admit`] — event count limits, then the app's rate (429);
//! 6. [`prepare`] — server-side facts of the request, each event validated and
//!    enriched (`validate.rs`), refused events turned into dead letters;
//! 7. [`publish`] — accepted events to the sink (200 only once every one is
//!    stored), dead letters beside them (their result is only reported).
//!
//! Each stage returns the one error type; [`handle`] counts the answer.

use crate::auth;
pub use crate::bodies::{decode, Decoded};
use crate::body::{self, ReadError};
use crate::decode;
use crate::enrich;
use crate::error::GatewayError;
use crate::overload::{self, Pool, Refusal, Reservation};
use crate::sink::EventSink;
use crate::state::AppState;
use crate::validate::{self, Api, Prepared, Rejection, RequestContext};
use crate::wrapping;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use serde::Serialize;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tally_common::keys::{KeyOwner, Lookup};
use tally_schemas::{DeadLetter, Enrichment};

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
    /// The API the body turned out to be (PostHog's and Amplitude's `/batch`
    /// share a route); its answer shape is the router's.
    #[serde(skip)]
    pub api: Api,
}

/// What is known of a request before its body is read.
#[derive(Debug)]
pub struct Head<'a> {
    /// Which API the request came through.
    pub api: Api,
    /// The client's address (the socket's, or a trusted `X-Forwarded-For` hop).
    pub client: IpAddr,
    /// `Content-Length`, when given.
    pub declared: Option<usize>,
    /// The request target.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl<'a> Head<'a> {
    /// The head of a request from `peer`.
    pub fn new<S>(
        state: &AppState<S>,
        peer: SocketAddr,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        api: Api,
    ) -> Self {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        Head {
            api,
            client: enrich::client_ip(peer, forwarded, state.config.trusted_proxies),
            declared: headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok()),
            uri,
            headers,
        }
    }
}

/// Handles one batch request and counts its answer.
pub async fn handle<S: EventSink>(
    state: &AppState<S>,
    head: Head<'_>,
    body: axum::body::Body,
) -> Result<BatchResponse, GatewayError> {
    let result = stages(state, &head, body).await;
    match &result {
        Ok(_) => state.metrics.request_answered(StatusCode::OK, None),
        Err(err) => state
            .metrics
            .request_answered(err.status(), Some((err.reason(), err))),
    }
    result
}

async fn stages<S: EventSink>(
    state: &AppState<S>,
    head: &Head<'_>,
    body: axum::body::Body,
) -> Result<BatchResponse, GatewayError> {
    let header_app = match authenticate_header(state, head).await {
        Ok(app) => app,
        Err(refusal) => {
            let declared = head.declared.unwrap_or(state.config.max_body_bytes);
            body::drain(body, declared, state.config.body_timeout).await;
            return Err(refusal);
        }
    };
    let (bytes, mut reservation) = receive(state, head, header_app.is_some(), body).await?;
    let text = text(state, head, &bytes, &mut reservation)?;
    let batch = decode(&text, head.api)?;
    let owner = authenticate(state, header_app, &batch).await?;
    admit(state, &owner.app_id, batch.events.len())?;
    let (prepared, letters) = prepare(state, head, &owner, &batch);
    let mut answer = publish(state, &owner.app_id, prepared, letters).await?;
    answer.api = batch.api;
    Ok(answer)
}

/// Stage 1: refuses a body announced larger than the limit, then checks a write
/// key carried by the headers (`None`: the key can only be in the body).
pub async fn authenticate_header<S>(
    state: &AppState<S>,
    head: &Head<'_>,
) -> Result<Option<KeyOwner>, GatewayError> {
    let limit = state.config.max_body_bytes;
    if head.declared.is_some_and(|declared| declared > limit) {
        return Err(GatewayError::PayloadTooLarge(limit));
    }
    let Some(key) = auth::header_credential(head.headers) else {
        return Ok(None);
    };
    match state.keys.lookup(&key).await {
        Lookup::App(app) => Ok(Some(app)),
        Lookup::Unknown => {
            refused_before_admission(state, "invalid_write_key", head.client);
            Err(GatewayError::InvalidWriteKey)
        }
        Lookup::Unavailable => Err(GatewayError::KeysUnavailable),
    }
}

/// Stage 2: the head and the body, reserved in the in-flight budget as bytes
/// arrive; a gzip body is inflated (capped) and its inflated size reserved too.
/// Requests whose key was not verified from the headers draw on the capped
/// unverified share, so header-keyed requests always find the rest. The
/// reservation is given back when the returned guard is dropped.
pub async fn receive<S>(
    state: &AppState<S>,
    head: &Head<'_>,
    verified: bool,
    body: axum::body::Body,
) -> Result<(Vec<u8>, Reservation), GatewayError> {
    let limit = state.config.max_body_bytes;
    let pool = if verified {
        Pool::Verified
    } else {
        Pool::Unverified
    };
    let mut reservation = state.overload.reservation(head.client, pool);
    let refuse = |refusal| over_cap(state, refusal, head.client);
    reservation
        .grow(overload::head_bytes(head.uri, head.headers))
        .map_err(refuse)?;
    // A body announced larger than what is free now is refused at once (nothing reserved).
    if let Some(declared) = head.declared {
        reservation.fits(declared).map_err(refuse)?;
    }
    let read = tokio::time::timeout(
        state.config.body_timeout,
        body::read(body, limit, &mut reservation),
    );
    let bytes = match read.await.map_err(|_| GatewayError::BodyTimeout)? {
        Ok(bytes) => bytes,
        Err(ReadError::Refused(refusal)) => return Err(refuse(refusal)),
        Err(ReadError::Gateway(err)) => return Err(err),
    };
    let gzipped = head
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = if gzipped {
        let inflated = decode::gunzip(&bytes, limit)?;
        reservation.grow(inflated.capacity()).map_err(refuse)?;
        inflated
    } else {
        bytes
    };
    if head.api == Api::Snowplow(crate::snowplow::Endpoint::Pixel) {
        // The pixel's event is its query string.
        let json = crate::snowplow::query_to_json(head.uri.query().unwrap_or_default());
        reservation.grow(json.len()).map_err(refuse)?;
        return Ok((json.into_bytes(), reservation));
    }
    if !head.api.wrapped_bodies() {
        return Ok((bytes, reservation));
    }
    let pointer = bytes.as_ptr();
    let content_type = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let unwrapped = wrapping::unwrap(bytes, head.uri.query(), content_type, limit)?;
    if unwrapped.as_ptr() != pointer {
        reservation.grow(unwrapped.capacity()).map_err(refuse)?;
    }
    Ok((unwrapped, reservation))
}

/// Stage 3a: the body as text; a copy made to repair lone surrogates is reserved too.
pub fn text<'b, S>(
    state: &AppState<S>,
    head: &Head<'_>,
    bytes: &'b [u8],
    reservation: &mut Reservation,
) -> Result<Cow<'b, str>, GatewayError> {
    let text = decode::to_text(bytes)?;
    if let Cow::Owned(repaired) = &text {
        reservation
            .grow(repaired.len())
            .map_err(|refusal| over_cap(state, refusal, head.client))?;
    }
    Ok(text)
}

/// Stage 4: the app the events belong to — the header key's, else the body
/// key's — which any `app_id` in the body must name.
pub async fn authenticate<S>(
    state: &AppState<S>,
    header_app: Option<KeyOwner>,
    batch: &Decoded<'_>,
) -> Result<KeyOwner, GatewayError> {
    let owner = match header_app {
        Some(owner) => owner,
        None if batch.body_key.is_none() && !batch.domains.is_empty() => {
            site_owner(state, &batch.domains).await?
        }
        None => {
            let key = batch
                .body_key
                .as_deref()
                .filter(|key| !key.is_empty())
                .ok_or(GatewayError::MissingWriteKey)?;
            match state.keys.lookup(key).await {
                Lookup::App(app) => app,
                Lookup::Unknown => return Err(GatewayError::InvalidWriteKey),
                Lookup::Unavailable => return Err(GatewayError::KeysUnavailable),
            }
        }
    };
    match &batch.claimed_app {
        Some(claimed) if *claimed != owner.app_id => {
            Err(GatewayError::KeyAppMismatch(claimed.clone()))
        }
        _ => Ok(owner),
    }
}

/// The app of the first of `domains` that an app allows (Settings in the
/// dashboard, or `tally-admin apps domains`); the others are not used (one
/// request, one app).
async fn site_owner<S>(state: &AppState<S>, domains: &[String]) -> Result<KeyOwner, GatewayError> {
    let mut unavailable = false;
    for domain in domains {
        match state.keys.lookup_domain(domain).await {
            Lookup::App(app) => return Ok(app),
            Lookup::Unknown => {}
            Lookup::Unavailable => unavailable = true,
        }
    }
    if unavailable {
        return Err(GatewayError::KeysUnavailable);
    }
    Err(GatewayError::UnknownDomain(domains.join(",")))
}

/// Stage 5: a batch of `events` events of `app_id` is within the batch limits
/// and the app's rate.
pub fn admit<S>(state: &AppState<S>, app_id: &str, events: usize) -> Result<(), GatewayError> {
    if events == 0 {
        return Err(GatewayError::EmptyBatch);
    }
    if events > state.config.max_batch_events {
        return Err(GatewayError::TooManyEvents(
            events,
            state.config.max_batch_events,
        ));
    }
    state.overload.admit_events(app_id, events).map_err(|wait| {
        let label = state.overload.app_label(app_id);
        state.metrics.rate_limited(&label, events);
        GatewayError::RateLimited(wait)
    })
}

/// Stage 6: every event validated and enriched with the request's server-side
/// facts (time, anonymised IP, user agent, geo); refused events become dead letters.
pub fn prepare<S>(
    state: &AppState<S>,
    head: &Head<'_>,
    owner: &KeyOwner,
    batch: &Decoded<'_>,
) -> (Prepared, Vec<DeadLetter>) {
    let app_id = owner.app_id.as_str();
    let user_agent = head
        .headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(enrich::bounded_user_agent);
    let mut enrichment = Enrichment::default();
    (enrichment.country, enrichment.region, enrichment.city) = state.geo.lookup(head.client);
    state
        .agents
        .classify(user_agent.as_deref().unwrap_or_default(), &mut enrichment);
    let context = RequestContext {
        received_at_ms: state.clock.now_ms(),
        ip: enrich::anonymize(head.client, state.config.ip_mode),
        user_agent,
        enrichment,
        retention_days: owner.retention_days,
    };
    let prepared = validate::prepare(
        app_id,
        &batch.events,
        batch.sent_at,
        batch.api,
        &context,
        &state.config.limits,
        &state.agents,
    );
    let letters = prepared
        .rejected
        .iter()
        .map(|rejection| {
            state.metrics.event_rejected(rejection.reason.code());
            DeadLetter::new(
                "gateway",
                rejection.reason.code(),
                app_id,
                context.received_at_ms,
                rejection.index.to_string(),
                batch
                    .events
                    .get(rejection.index)
                    .map_or("", |raw| raw.get()),
            )
        })
        .collect();
    (prepared, letters)
}

/// Stage 7: the accepted events to the sink and the dead letters beside them;
/// answers only once every accepted event is stored (else 503, nothing of the
/// request may be assumed stored).
pub async fn publish<S: EventSink>(
    state: &AppState<S>,
    app_id: &str,
    prepared: Prepared,
    letters: Vec<DeadLetter>,
) -> Result<BatchResponse, GatewayError> {
    let events = async {
        if prepared.envelopes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let published = state.sink.publish(&prepared.envelopes).await;
        state
            .metrics
            .published(&published, started.elapsed().as_secs_f64());
        published
    };
    let dead_letters = async {
        if letters.is_empty() {
            return;
        }
        let stored = state.sink.dead_letter(&letters).await;
        state.metrics.dead_letters(&stored, app_id, letters.len());
    };
    let (published, ()) = tokio::join!(events, dead_letters);
    published.map_err(GatewayError::BrokerUnavailable)?;
    state.metrics.events_accepted(prepared.envelopes.len());
    Ok(BatchResponse {
        success: true,
        accepted: prepared.envelopes.len(),
        rejected: prepared.rejected.len(),
        errors: prepared.rejected,
        api: Api::Native,
    })
}

/// Counts and (rate-limited) logs a refusal before admission.
fn refused_before_admission<S>(state: &AppState<S>, reason: &'static str, client: IpAddr) {
    let client = enrich::anonymize(client, state.config.ip_mode).unwrap_or_default();
    state
        .metrics
        .refused_before_admission(reason, &client, state.overload.inflight_bytes());
}

/// The answer to a reservation that would pass a cap (counted and logged).
fn over_cap<S>(state: &AppState<S>, refusal: Refusal, client: IpAddr) -> GatewayError {
    refused_before_admission(state, refusal.label(), client);
    match refusal {
        Refusal::Client => GatewayError::ClientOverloaded,
        Refusal::Total | Refusal::Unverified => GatewayError::Overloaded,
    }
}
