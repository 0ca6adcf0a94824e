//! The event model SDKs send (seed 002): a batch of named events for one app,
//! each identified by a user id or an anonymous id, with a timestamp and a flat
//! map of JSON scalar properties.
//!
//! Parsing here is deliberately lenient (unknown fields are ignored, every field
//! is optional at the type level) so that the gateway can reject *individual*
//! events with a precise reason instead of failing a whole batch on one bad event.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Body of `POST /api/v1/events/batch`.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchRequest {
    /// The app every event of the batch belongs to (optional: the write key names it).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Write key, when not sent as HTTP Basic username or Bearer token.
    #[serde(default, alias = "writeKey")]
    pub write_key: Option<String>,
    /// When the client sent the batch (ISO-8601 or epoch milliseconds); used to
    /// correct client clock skew.
    #[serde(default)]
    pub sent_at: Option<TimestampInput>,
    /// The events; each is validated separately.
    pub events: Vec<IncomingEvent>,
}

/// One event as an SDK sends it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct IncomingEvent {
    /// Event name, e.g. `page_view`.
    #[serde(default)]
    pub name: Option<String>,
    /// Identified user, if known.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Anonymous visitor id (used when `user_id` is absent).
    #[serde(default)]
    pub anonymous_id: Option<String>,
    /// Client-side time of the event (ISO-8601 or epoch milliseconds).
    #[serde(default)]
    pub timestamp: Option<TimestampInput>,
    /// Client-chosen id used to drop duplicates of retried sends.
    #[serde(default, alias = "message_id")]
    pub event_id: Option<String>,
    /// Flat map of JSON scalars.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// A timestamp as clients send it: an RFC 3339 / ISO-8601 string or epoch milliseconds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TimestampInput {
    /// Milliseconds since the Unix epoch.
    EpochMillis(i64),
    /// RFC 3339, e.g. `2026-11-23T10:00:00.123Z`.
    Text(String),
    /// Any other JSON value (a boolean, a fraction, an object…): present but
    /// unusable, so the event is refused as `invalid_timestamp`, not as malformed.
    Invalid(serde::de::IgnoredAny),
}

impl TimestampInput {
    /// Milliseconds since the Unix epoch, or `None` when the text does not parse.
    pub fn to_epoch_millis(&self) -> Option<i64> {
        match self {
            TimestampInput::EpochMillis(ms) => Some(*ms),
            TimestampInput::Invalid(_) => None,
            TimestampInput::Text(text) => {
                let parsed = time::OffsetDateTime::parse(
                    text,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
            }
        }
    }
}

impl IncomingEvent {
    /// The identity used for uniques and ordering: `user_id`, else `anonymous_id`.
    /// Empty strings count as absent.
    pub fn distinct_id(&self) -> Option<&str> {
        [self.user_id.as_deref(), self.anonymous_id.as_deref()]
            .into_iter()
            .flatten()
            .find(|id| !id.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_timestamp_forms() {
        let ms = TimestampInput::EpochMillis(1_700_000_000_123);
        assert_eq!(ms.to_epoch_millis(), Some(1_700_000_000_123));
        let text = TimestampInput::Text("2023-11-14T22:13:20.123Z".into());
        assert_eq!(text.to_epoch_millis(), Some(1_700_000_000_123));
        assert_eq!(
            TimestampInput::Text("yesterday".into()).to_epoch_millis(),
            None
        );
    }

    #[test]
    fn distinct_id_prefers_user_then_anonymous() {
        let mut event = IncomingEvent {
            anonymous_id: Some("anon".into()),
            ..Default::default()
        };
        assert_eq!(event.distinct_id(), Some("anon"));
        event.user_id = Some(String::new());
        assert_eq!(event.distinct_id(), Some("anon"));
        event.user_id = Some("u1".into());
        assert_eq!(event.distinct_id(), Some("u1"));
        event.anonymous_id = None;
        event.user_id = None;
        assert_eq!(event.distinct_id(), None);
    }

    #[test]
    fn batch_json_shape_from_seed_002() {
        let body = r#"{"app_id":"APP-1","events":[{"name":"page_view","properties":{"url":"/home"},"user_id":"U1","timestamp":1700000000000}]}"#;
        let batch: BatchRequest = serde_json::from_str(body).unwrap();
        assert_eq!(batch.app_id.as_deref(), Some("APP-1"));
        assert_eq!(batch.events[0].name.as_deref(), Some("page_view"));
        assert_eq!(batch.events[0].properties["url"], "/home");
    }
}
