//! HTTP helpers every service mounts: `/livez`, `/readyz`, `/metrics`
//! (Prometheus text), and the JSON error contract.
//!
//! Contract: every error answer (status ≥ 400) of a service is JSON
//! `{"error": "<machine reason>", "message": "..."}` with
//! `Content-Type: application/json`:
//! * handlers answer their own errors that way (each service's error enum);
//! * [`Path`] and [`Query`] wrap axum's extractors and refuse what does not
//!   parse with 400 `invalid_path` / `invalid_query_string` (axum's own
//!   rejections are plain text);
//! * [`json_errors`], layered on a whole router, rewrites whatever error answer
//!   is still not JSON — the router's empty 404 for an unknown route
//!   (`not_found`) and 405 for a known route with another method
//!   (`method_not_allowed`, axum keeps its `Allow` header), and any other
//!   plain-text rejection (reason from the status, message from its text).
//!   Headers such as `Allow`, `Retry-After` and CORS are kept.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::de::DeserializeOwned;

/// Longest plain-text error body [`json_errors`] reads to reuse as the message.
const MAX_TEXT_BODY: usize = 4 * 1024;
/// Longest request path quoted in a message.
const MAX_QUOTED_PATH: usize = 200;

/// An error answer: status, machine-readable reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable reason (`snake_case`).
    pub reason: &'static str,
    /// Explanation.
    pub message: String,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
        }
    }

    /// The JSON body `{"error": reason, "message": message}`.
    pub fn body(&self) -> String {
        json_error_body(self.reason, &self.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response()
    }
}

/// `{"error": reason, "message": message}` as JSON text.
pub fn json_error_body(reason: &str, message: &str) -> String {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), reason.into());
    body.insert("message".into(), message.into());
    serde_json::Value::Object(body).to_string()
}

/// Path parameters, as `axum::extract::Path`, refused as JSON 400
/// `invalid_path` (e.g. a segment that is not UTF-8 once percent-decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            // A route whose pattern does not fit its extractor is our bug (axum says 500).
            Err(rejection) if rejection.status().is_server_error() => Err(ApiError::new(
                rejection.status(),
                "internal_error",
                rejection.body_text(),
            )),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                rejection.body_text(),
            )),
        }
    }
}

/// The query string, as `axum::extract::Query`, refused as JSON 400
/// `invalid_query_string` (a repeated or ill-typed parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query_string",
                    rejection.body_text(),
                )
            })
    }
}

/// The reason of an error status that carried no reason of its own.
pub fn reason_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        431 => "headers_too_large",
        501 => "not_implemented",
        503 => "unavailable",
        code if code >= 500 => "internal_error",
        _ => "bad_request",
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json")
        })
}

fn quoted_path(path: &str) -> &str {
    match path.char_indices().nth(MAX_QUOTED_PATH) {
        Some((at, _)) => &path[..at],
        None => path,
    }
}

/// Middleware (`router.layer(axum::middleware::from_fn(json_errors))`): turns
/// every error answer that is not JSON into the JSON error shape (see the
/// module docs); everything else passes untouched.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = quoted_path(request.uri().path()).to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else {
        match status {
            StatusCode::NOT_FOUND => format!("no route for {method} {path}"),
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("{method} is not allowed on {path} (the Allow header lists what is)")
            }
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    };
    let body = json_error_body(reason_for_status(status), &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// `/livez`: the process is up and serving.
pub async fn livez() -> &'static str {
    "ok"
}

/// Renders a registry in the Prometheus text format.
pub fn render_metrics(registry: &Registry) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(err) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_unavailable",
            err.to_string(),
        )
        .into_response(),
    }
}

/// `/readyz` answer from a list of dependency checks (`name`, error if down):
/// `ready`, or 503 `not_ready` naming what is down.
pub fn readiness(checks: &[(&'static str, Option<String>)]) -> Response {
    let failing: Vec<String> = checks
        .iter()
        .filter_map(|(name, err)| err.as_ref().map(|err| format!("{name}: {err}")))
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            failing.join("; "),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    async fn call(router: Router, method: &str, uri: &str) -> (StatusCode, Response) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        (response.status(), response)
    }

    async fn json(response: Response) -> serde_json::Value {
        assert!(is_json(&response), "{:?}", response.headers());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn router() -> Router {
        async fn by_id(Path(id): Path<u32>) -> String {
            id.to_string()
        }
        #[derive(serde::Deserialize)]
        struct Params {
            #[allow(dead_code)]
            n: Option<u32>,
        }
        async fn with_query(Query(_): Query<Params>) -> &'static str {
            "ok"
        }
        async fn plain_refusal() -> (StatusCode, &'static str) {
            (StatusCode::PAYLOAD_TOO_LARGE, "too big")
        }
        Router::new()
            .route("/items/{id}", get(by_id).post(by_id))
            .route("/q", get(with_query))
            .route("/big", post(plain_refusal))
            .layer(axum::middleware::from_fn(json_errors))
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let (status, response) = call(router(), "GET", "/nowhere").await;
        assert_eq!(status, 404);
        let body = json(response).await;
        assert_eq!(body["error"], "not_found");
        assert_eq!(body["message"], "no route for GET /nowhere");

        let (status, response) = call(router(), "DELETE", "/items/1").await;
        assert_eq!(status, 405);
        let allow = response.headers().get(header::ALLOW).cloned();
        assert_eq!(json(response).await["error"], "method_not_allowed");
        let allow = allow.expect("Allow header kept");
        let allow = allow.to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    }

    #[tokio::test]
    async fn extractor_rejections_answer_json_with_a_reason() {
        let (status, response) = call(router(), "GET", "/items/%FF").await;
        assert_eq!(status, 400);
        assert_eq!(json(response).await["error"], "invalid_path");
        let (status, response) = call(router(), "GET", "/items/abc").await;
        assert_eq!(status, 400);
        assert_eq!(json(response).await["error"], "invalid_path");
        let (status, response) = call(router(), "GET", "/q?n=1&n=2").await;
        assert_eq!(status, 400);
        let body = json(response).await;
        assert_eq!(body["error"], "invalid_query_string");
        assert!(body["message"].as_str().unwrap().contains("duplicate"));
        let (status, response) = call(router(), "GET", "/q?n=abc").await;
        assert_eq!(status, 400);
        assert_eq!(json(response).await["error"], "invalid_query_string");
        let (status, _) = call(router(), "GET", "/q?n=7").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn plain_text_errors_become_json_and_json_passes_untouched() {
        let (status, response) = call(router(), "POST", "/big").await;
        assert_eq!(status, 413);
        let body = json(response).await;
        assert_eq!(body["error"], "payload_too_large");
        assert_eq!(body["message"], "too big");
        let (status, response) = call(router(), "GET", "/items/7").await;
        assert_eq!(status, 200);
        assert!(!is_json(&response));
        let refused = ApiError::new(StatusCode::FORBIDDEN, "mine", "no").into_response();
        let router = Router::new()
            .route(
                "/f",
                get(move || async move { ApiError::new(StatusCode::FORBIDDEN, "mine", "no") }),
            )
            .layer(axum::middleware::from_fn(json_errors));
        let (status, response) = call(router, "GET", "/f").await;
        assert_eq!(status, 403);
        assert_eq!(json(response).await, json(refused).await);
    }

    #[tokio::test]
    async fn readiness_names_what_is_down() {
        let response = readiness(&[("redis", Some("refused".into())), ("kafka", None)]);
        assert_eq!(response.status(), 503);
        let body = json(response).await;
        assert_eq!(body["error"], "not_ready");
        assert_eq!(body["message"], "redis: refused");
        assert_eq!(readiness(&[("redis", None)]).status(), 200);
    }
}
