//! Per-event validation and enrichment (pure: no I/O, the clock reading is passed in).
//!
//! A batch is split into the envelopes to produce and the rejected events, each
//! rejection carrying the event's index and a machine-readable reason. One bad
//! event never fails the rest of its batch.

use serde::Serialize;
use serde_json::Value;
use tally_schemas::event::{BatchRequest, IncomingEvent};
use tally_schemas::Envelope;

/// Longest event name accepted.
pub const MAX_NAME_LEN: usize = 200;
/// Longest client event id / identity accepted.
pub const MAX_ID_LEN: usize = 200;

/// Server-side facts about the request, added to every event.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// When the gateway received the request, epoch ms.
    pub received_at_ms: i64,
    /// Client IP.
    pub ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Why one event was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// No `name`, or an empty one.
    MissingName,
    /// `name` longer than [`MAX_NAME_LEN`].
    NameTooLong,
    /// Neither `user_id` nor `anonymous_id`.
    MissingIdentity,
    /// An id longer than [`MAX_ID_LEN`].
    IdTooLong,
    /// `timestamp` or the batch's `sent_at` does not parse.
    InvalidTimestamp,
    /// A property value is an object or array.
    PropertyNotScalar,
}

impl RejectReason {
    /// The reason code as it appears in answers and metrics.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MissingName => "missing_name",
            RejectReason::NameTooLong => "name_too_long",
            RejectReason::MissingIdentity => "missing_identity",
            RejectReason::IdTooLong => "id_too_long",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::PropertyNotScalar => "property_not_scalar",
        }
    }
}

/// One rejected event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the batch.
    pub index: usize,
    /// Why.
    pub reason: RejectReason,
}

/// A validated batch.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Events to produce, in batch order.
    pub envelopes: Vec<Envelope>,
    /// Events refused.
    pub rejected: Vec<Rejection>,
}

/// Whether `app_id` has the allowed form `[A-Za-z0-9_-]{1,64}`.
pub fn valid_app_id(app_id: &str) -> bool {
    (1..=64).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Validates and enriches every event of `batch` for `app_id` (already authenticated).
pub fn prepare(app_id: &str, batch: BatchRequest, context: &RequestContext) -> Prepared {
    let sent_at = batch.sent_at.as_ref().map(|sent| sent.to_epoch_millis());
    let mut prepared = Prepared::default();
    for (index, event) in batch.events.into_iter().enumerate() {
        match enrich(app_id, event, sent_at, context) {
            Ok(envelope) => prepared.envelopes.push(envelope),
            Err(reason) => prepared.rejected.push(Rejection { index, reason }),
        }
    }
    prepared
}

fn enrich(
    app_id: &str,
    event: IncomingEvent,
    sent_at: Option<Option<i64>>,
    context: &RequestContext,
) -> Result<Envelope, RejectReason> {
    let name = match event.name.as_deref() {
        None | Some("") => return Err(RejectReason::MissingName),
        Some(name) if name.chars().count() > MAX_NAME_LEN => return Err(RejectReason::NameTooLong),
        Some(name) => name.to_owned(),
    };
    let distinct_id = event
        .distinct_id()
        .ok_or(RejectReason::MissingIdentity)?
        .to_owned();
    let ids = [Some(&distinct_id), event.event_id.as_ref()];
    if ids.into_iter().flatten().any(|id| id.len() > MAX_ID_LEN) {
        return Err(RejectReason::IdTooLong);
    }
    if event
        .properties
        .values()
        .any(|value| matches!(value, Value::Object(_) | Value::Array(_)))
    {
        return Err(RejectReason::PropertyNotScalar);
    }
    let client_ts = match &event.timestamp {
        Some(ts) => Some(ts.to_epoch_millis().ok_or(RejectReason::InvalidTimestamp)?),
        None => None,
    };
    let sent_at_ms = match sent_at {
        Some(parsed) => Some(parsed.ok_or(RejectReason::InvalidTimestamp)?),
        None => None,
    };
    let received = context.received_at_ms;
    // Clock-skew correction: the client's clock is trusted for intervals, not for absolute time.
    let timestamp_ms = match (client_ts, sent_at_ms) {
        (Some(ts), Some(sent)) => received.saturating_sub(sent.saturating_sub(ts)),
        (Some(ts), None) => ts,
        (None, _) => received,
    };
    let event_id = event
        .event_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    Ok(Envelope {
        event_id,
        app_id: app_id.to_owned(),
        name,
        distinct_id,
        user_id: event.user_id.filter(|id| !id.is_empty()),
        anonymous_id: event.anonymous_id.filter(|id| !id.is_empty()),
        timestamp_ms,
        received_at_ms: received,
        sent_at_ms,
        ip: context.ip.clone(),
        user_agent: context.user_agent.clone(),
        properties: event.properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> RequestContext {
        RequestContext {
            received_at_ms: 1_000_000,
            ip: Some("10.0.0.1".into()),
            user_agent: Some("test".into()),
        }
    }

    fn batch(events: serde_json::Value, sent_at: Option<i64>) -> BatchRequest {
        serde_json::from_value(json!({ "app_id": "app", "sent_at": sent_at, "events": events }))
            .unwrap()
    }

    #[test]
    fn rejects_each_bad_event_with_its_reason_and_keeps_the_rest() {
        let events = json!([
            {"name": "ok", "user_id": "u"},
            {"user_id": "u"},
            {"name": "", "user_id": "u"},
            {"name": "x".repeat(MAX_NAME_LEN + 1), "user_id": "u"},
            {"name": "n"},
            {"name": "n", "user_id": "u", "timestamp": "not a time"},
            {"name": "n", "user_id": "u", "properties": {"nested": {"a": 1}}},
            {"name": "n", "anonymous_id": "a", "event_id": "e".repeat(MAX_ID_LEN + 1)},
            {"name": "ok2", "anonymous_id": "a", "properties": {"n": 1, "b": true, "s": "x", "z": null}}
        ]);
        let prepared = prepare("app", batch(events, None), &context());
        let reasons: Vec<(usize, &str)> = prepared
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.code()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, "missing_name"),
                (2, "missing_name"),
                (3, "name_too_long"),
                (4, "missing_identity"),
                (5, "invalid_timestamp"),
                (6, "property_not_scalar"),
                (7, "id_too_long"),
            ]
        );
        let names: Vec<&str> = prepared.envelopes.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["ok", "ok2"]);
        assert_eq!(prepared.envelopes[1].distinct_id, "a");
    }

    #[test]
    fn enriches_with_server_facts_and_fresh_ids() {
        let prepared = prepare(
            "app",
            batch(
                json!([{"name": "a", "user_id": "u"}, {"name": "b", "user_id": "u"}]),
                None,
            ),
            &context(),
        );
        let [a, b] = &prepared.envelopes[..] else {
            panic!("two envelopes expected")
        };
        assert_eq!(a.timestamp_ms, 1_000_000);
        assert_eq!(a.received_at_ms, 1_000_000);
        assert_eq!(a.ip.as_deref(), Some("10.0.0.1"));
        assert_ne!(a.event_id, b.event_id);
        assert!(uuid::Uuid::parse_str(&a.event_id).is_ok());
    }

    #[test]
    fn corrects_clock_skew_with_sent_at_and_keeps_client_event_id() {
        // Client clock is 1 h ahead: event happened 2 s before sending.
        let hour = 3_600_000;
        let events = json!([{"name": "a", "user_id": "u", "timestamp": 1_000_000 + hour - 2_000, "event_id": "client-1"}]);
        let prepared = prepare("app", batch(events, Some(1_000_000 + hour)), &context());
        assert_eq!(prepared.envelopes[0].timestamp_ms, 1_000_000 - 2_000);
        assert_eq!(prepared.envelopes[0].event_id, "client-1");
    }

    #[test]
    fn app_id_form() {
        assert!(valid_app_id("APP-1_x"));
        assert!(!valid_app_id(""));
        assert!(!valid_app_id("a:b"));
        assert!(!valid_app_id(&"a".repeat(65)));
    }
}
