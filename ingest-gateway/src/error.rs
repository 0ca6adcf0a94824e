//! The gateway's one error type and its explicit mapping to HTTP answers.
//! Every error body is JSON: `{"error": "<machine-readable reason>", "message": "..."}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not a JSON batch of the expected shape.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// `app_id` is missing or not of the allowed form.
    #[error("invalid app_id: must match [A-Za-z0-9_-]{{1,64}}")]
    InvalidAppId,
    /// The batch holds no events.
    #[error("the batch holds no events")]
    EmptyBatch,
    /// The batch holds more events than allowed.
    #[error("the batch holds {0} events; at most {1} are accepted")]
    TooManyEvents(usize, usize),
    /// The body is not UTF-8.
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    /// `Content-Encoding: gzip` but not gzip.
    #[error("body is not valid gzip")]
    InvalidGzip,
    /// A base64 payload (form `data`, `compression=base64`) that is not base64.
    #[error("payload is not valid base64")]
    InvalidBase64,
    /// A `compression` query parameter naming an unknown scheme.
    #[error("unsupported compression {0:?}: send gzip, base64 or plain JSON")]
    UnsupportedCompression(String),
    /// Unknown Segment message type in the path.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The body exceeds the size limit.
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No write key in the request.
    #[error("no write key: send it as the HTTP Basic username, a Bearer token or `write_key`")]
    MissingWriteKey,
    /// A Plausible event without a usable site domain.
    #[error("no site domain: `d` (or `domain`) names the site, e.g. shop.example")]
    MissingDomain,
    /// No app allows the site domain(s) the request names.
    #[error("no app allows the site domain {0:?}: add it with `tally-admin apps domains APP_ID add DOMAIN`")]
    UnknownDomain(String),
    /// The write key is unknown or revoked.
    #[error("unknown or revoked write key")]
    InvalidWriteKey,
    /// The body names another app than the key's.
    #[error("the write key does not belong to app {0:?}")]
    KeyAppMismatch(String),
    /// Keys could not be loaded yet (PostgreSQL unreachable since start).
    #[error("write keys unavailable")]
    KeysUnavailable,
    /// The app is over its rate; retry after the given time.
    #[error("rate limit exceeded for this app")]
    RateLimited(std::time::Duration),
    /// Too many request bytes in flight.
    #[error("gateway overloaded")]
    Overloaded,
    /// This client address has its share of the in-flight budget in use.
    #[error("too many request bytes in flight from this client address")]
    ClientOverloaded,
    /// The body did not arrive in time.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The broker did not acknowledge in time; nothing of the request may be assumed stored.
    #[error("event broker unavailable: {0}")]
    BrokerUnavailable(String),
}

impl GatewayError {
    /// Machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::MalformedBody(_) => "malformed_body",
            GatewayError::InvalidAppId => "invalid_app_id",
            GatewayError::EmptyBatch => "empty_batch",
            GatewayError::InvalidUtf8 => "invalid_utf8",
            GatewayError::InvalidGzip => "invalid_gzip",
            GatewayError::InvalidBase64 => "invalid_base64",
            GatewayError::UnsupportedCompression(_) => "unsupported_compression",
            GatewayError::UnknownType(_) => "unknown_type",
            GatewayError::TooManyEvents(..) => "too_many_events",
            GatewayError::PayloadTooLarge(_) => "payload_too_large",
            GatewayError::BrokerUnavailable(_) => "broker_unavailable",
            GatewayError::MissingWriteKey => "missing_write_key",
            GatewayError::InvalidWriteKey => "invalid_write_key",
            GatewayError::UnknownDomain(_) => "unknown_domain",
            GatewayError::MissingDomain => "missing_domain",
            GatewayError::KeyAppMismatch(_) => "key_app_mismatch",
            GatewayError::KeysUnavailable => "keys_unavailable",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::Overloaded => "overloaded",
            GatewayError::ClientOverloaded => "client_overloaded",
            GatewayError::BodyTimeout => "body_timeout",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MalformedBody(_)
            | GatewayError::InvalidAppId
            | GatewayError::EmptyBatch
            | GatewayError::InvalidUtf8
            | GatewayError::InvalidGzip
            | GatewayError::InvalidBase64
            | GatewayError::MissingDomain
            | GatewayError::UnsupportedCompression(_)
            | GatewayError::TooManyEvents(..) => StatusCode::BAD_REQUEST,
            GatewayError::UnknownType(_) => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::MissingWriteKey
            | GatewayError::InvalidWriteKey
            | GatewayError::UnknownDomain(_)
            | GatewayError::KeyAppMismatch(_) => StatusCode::UNAUTHORIZED,
            GatewayError::RateLimited(_) | GatewayError::ClientOverloaded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BrokerUnavailable(_)
            | GatewayError::KeysUnavailable
            | GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<crate::decode::DecodeError> for GatewayError {
    fn from(err: crate::decode::DecodeError) -> Self {
        use crate::decode::DecodeError;
        match err {
            DecodeError::TooLarge(limit) => GatewayError::PayloadTooLarge(limit),
            DecodeError::BadGzip => GatewayError::InvalidGzip,
            DecodeError::InvalidUtf8 => GatewayError::InvalidUtf8,
            DecodeError::BadBase64 => GatewayError::InvalidBase64,
            DecodeError::UnsupportedCompression(scheme) => {
                GatewayError::UnsupportedCompression(scheme)
            }
            DecodeError::Malformed(text) => GatewayError::MalformedBody(text),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.reason(), "message": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        let retry_after = match &self {
            GatewayError::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            GatewayError::Overloaded | GatewayError::ClientOverloaded => Some(1),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Some(5),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}
