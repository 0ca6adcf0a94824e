//! Each vendor API's answer to a handled request, so the vendor's SDK reads
//! it as it reads the vendor's own (its retry logic depends on it). Tally's
//! counts and reasons ride along wherever the shape allows.
//!
//! | API | accepted | refused |
//! |---|---|---|
//! | PostHog | 200 `{"status": 1, …counts}` | Tally's status and JSON (`code` added), but 429 sent as 503 |
//! | Plausible | 202 `ok` | 400 with the event's reason; request refusals as Tally's |
//! | Amplitude | 200 `{"code": 200, "events_ingested", "server_upload_time", …counts}` | Tally's status, body `{"code", "error", "reason"}` (+ `missing_field`) |
//! | Mixpanel `/track`, `/engage` | 200 `1` (`verbose=1`: `{"status": 1, "error": null}`); `0` / status 0 when an event was refused | Tally's status, body `0` (verbose: `{"status": 0, "error", "reason"}`) |
//! | Umami | 200 `{"cache": "", …counts}` | Tally's |
//! | Snowplow `…/tp2` | 200 with Tally's counts (the trackers read only the status) | Tally's (the trackers retry 429 and 5xx, not 400/401/403/410/422) |
//! | Snowplow `/i` | 200, a 1×1 transparent GIF | Tally's |
//! | Mixpanel `/import` | 200 `{"code": 200, "num_records_imported", "status": "OK"}`; 400 with `failed_records` when an event was refused | Tally's status, `{"code", "error", "reason", "status"}` |
//!
//! Refused events of an accepted request are dead-lettered and listed in
//! `errors`; the request still succeeds (a retry could not double-count the
//! stored ones).

use crate::error::GatewayError;
use crate::intake::BatchResponse;
use crate::validate::Api;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A refusal answered with `status` and `body` instead of Tally's own,
/// keeping its headers (`Retry-After`).
fn refusal_as(refusal: GatewayError, status: StatusCode, body: Value) -> Response {
    let tally = refusal.into_response();
    let mut response = (status, Json(body)).into_response();
    for (name, value) in tally.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// PostHog's answer (and Amplitude's, for an Amplitude upload on `/batch`).
/// posthog-js retries a failed request only on a 5xx (or no answer), never on
/// a 4xx: a refusal that asks the client to come back later (429: the app's
/// rate, the client's share of the in-flight budget) is sent as 503 with the
/// same reason and `Retry-After`, so no PostHog SDK drops those events
/// (posthog-node retries both). `code` lets an Amplitude SDK on the shared
/// `/batch` route read the refusal.
pub fn posthog(result: Result<BatchResponse, GatewayError>, now_ms: i64) -> Response {
    match result {
        Ok(batch) if batch.api == Api::Amplitude => amplitude(Ok(batch), now_ms),
        Ok(batch) => {
            let mut body = serde_json::to_value(&batch).unwrap_or_default();
            if let Value::Object(map) = &mut body {
                map.insert("status".into(), Value::from(1));
            }
            Json(body).into_response()
        }
        Err(refusal) => {
            let status = match refusal.status() {
                StatusCode::TOO_MANY_REQUESTS => StatusCode::SERVICE_UNAVAILABLE,
                status => status,
            };
            let body = json!({
                "error": refusal.reason(),
                "message": refusal.to_string(),
                "code": refusal.status().as_u16(),
            });
            refusal_as(refusal, status, body)
        }
    }
}

/// Plausible's answer: `202 ok` for the accepted event (its tracker reads only
/// the status); a refused event is a 400 with its reason.
pub fn plausible(result: Result<BatchResponse, GatewayError>) -> Response {
    match result {
        Ok(batch) if batch.accepted == 1 => (StatusCode::ACCEPTED, "ok").into_response(),
        Ok(batch) => {
            let reason = batch
                .errors
                .first()
                .map_or("malformed_event", |r| r.reason.code());
            let body = json!({
                "error": reason,
                "message": "the event was refused",
                "errors": batch.errors,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Amplitude's answer. Its SDKs read the status from the body's `code` (a
/// body without one reads as "unknown", which they retry): 2xx done; 400 with
/// `missing_field` or an `error` starting `Invalid API key` dropped; other
/// 4xx retried; 413 split; 429 and 5xx retried later.
pub fn amplitude(result: Result<BatchResponse, GatewayError>, now_ms: i64) -> Response {
    match result {
        Ok(batch) => Json(json!({
            "code": 200,
            "events_ingested": batch.accepted,
            "server_upload_time": now_ms,
            "accepted": batch.accepted,
            "rejected": batch.rejected,
            "errors": batch.errors,
        }))
        .into_response(),
        Err(refusal) => {
            let status = refusal.status();
            let mut body = json!({
                "code": status.as_u16(),
                "error": refusal.to_string(),
                "reason": refusal.reason(),
            });
            match &refusal {
                GatewayError::MissingWriteKey => {
                    body["error"] = Value::from("Request missing required field");
                    body["missing_field"] = Value::from("api_key");
                }
                GatewayError::InvalidWriteKey => {
                    body["error"] = Value::from(format!("Invalid API key: {refusal}"));
                }
                _ => {}
            }
            refusal_as(refusal, status, body)
        }
    }
}

/// Mixpanel's answer for `endpoint`; `verbose` is the request's `verbose=1`.
pub fn mixpanel(
    result: Result<BatchResponse, GatewayError>,
    endpoint: crate::mixpanel::Endpoint,
    verbose: bool,
) -> Response {
    use crate::mixpanel::Endpoint;
    match (result, endpoint) {
        (Ok(batch), Endpoint::Import) if batch.rejected == 0 => Json(json!({
            "code": 200,
            "num_records_imported": batch.accepted,
            "status": "OK",
        }))
        .into_response(),
        (Ok(batch), Endpoint::Import) => {
            let failed: Vec<Value> = batch
                .errors
                .iter()
                .map(|r| json!({"index": r.index, "field": "event", "message": r.reason.code()}))
                .collect();
            let body = json!({
                "code": 400,
                "error": "some data points in the request failed validation",
                "failed_records": failed,
                "num_records_imported": batch.accepted,
                "status": "Bad Request",
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        (Ok(batch), _) => {
            let refused = batch.errors.first().map(|r| r.reason.code());
            let status = u8::from(refused.is_none());
            if verbose {
                Json(json!({
                    "status": status,
                    "error": refused,
                    "accepted": batch.accepted,
                    "rejected": batch.rejected,
                    "errors": batch.errors,
                }))
                .into_response()
            } else {
                status.to_string().into_response()
            }
        }
        (Err(refusal), endpoint) => {
            let status = refusal.status();
            let body = if endpoint == Endpoint::Import {
                json!({
                    "code": status.as_u16(),
                    "error": refusal.to_string(),
                    "reason": refusal.reason(),
                    "status": status.canonical_reason().unwrap_or("Error"),
                })
            } else if verbose {
                json!({"status": 0, "error": refusal.to_string(), "reason": refusal.reason()})
            } else {
                let mut response = refusal_as(refusal, status, Value::Null);
                *response.body_mut() = axum::body::Body::from("0");
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                return response;
            };
            refusal_as(refusal, status, body)
        }
    }
}

/// Umami's answer: its tracker keeps `cache` (a session token) and sends it
/// back; Tally needs none and answers an empty one.
pub fn umami(result: Result<BatchResponse, GatewayError>) -> Response {
    match result {
        Ok(batch) => Json(json!({
            "cache": "",
            "accepted": batch.accepted,
            "rejected": batch.rejected,
            "errors": batch.errors,
        }))
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// A transparent 1×1 GIF (GIF89a, one-colour palette, transparency extension).
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Snowplow's answer: 200 to a `tp2` POST (Tally's counts as the body: the
/// trackers read only the status), the pixel to `/i`; an event refused one by
/// one is dead-lettered and listed.
pub fn snowplow(
    result: Result<BatchResponse, GatewayError>,
    endpoint: crate::snowplow::Endpoint,
) -> Response {
    match (result, endpoint) {
        (Ok(batch), crate::snowplow::Endpoint::Post) => Json(batch).into_response(),
        (Ok(_), crate::snowplow::Endpoint::Pixel) => (
            [
                (header::CONTENT_TYPE, "image/gif"),
                (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            ],
            PIXEL.as_slice(),
        )
            .into_response(),
        (Err(refusal), _) => refusal.into_response(),
    }
}
