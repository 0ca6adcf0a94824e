//! HTTP helpers every service mounts: `/livez` and `/metrics` (Prometheus text).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Registry, TextEncoder};

/// `/livez`: the process is up and serving.
pub async fn livez() -> &'static str {
    "ok"
}

/// Renders a registry in the Prometheus text format.
pub fn render_metrics(registry: &Registry) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// `/readyz` answer from a list of dependency checks (`name`, error if down).
pub fn readiness(checks: &[(&'static str, Option<String>)]) -> Response {
    let failing: Vec<String> = checks
        .iter()
        .filter_map(|(name, err)| err.as_ref().map(|err| format!("{name}: {err}")))
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failing.join("\n")).into_response()
    }
}
