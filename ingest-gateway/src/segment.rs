//! Segment HTTP tracking API messages → Tally events.
//!
//! Field names are Segment's (`type`, `event`, `name`, `messageId`,
//! `anonymousId`, `userId`, `timestamp`, `sentAt`, `context`, `properties`,
//! `traits`, `groupId`, `previousId`). Mapping:
//!
//! | type | event name | extra properties |
//! |---|---|---|
//! | track | `event` | |
//! | page | `page_view` | `page_name` = `name` |
//! | screen | `screen_view` | `screen_name` = `name` |
//! | identify | `identify` | `traits.*` |
//! | group | `group` | `group_id`, `traits.*` |
//! | alias | `alias` | `previous_id` |
//!
//! From `context`: `page.{url,path,referrer,title,search}` fill the same
//! property names when absent, `campaign.{source,medium,name,term,content}`
//! become `utm_*`, `library.{name,version}` become `library.*`, and
//! `userAgent` is used as the event's user agent (server-side SDKs forward it).

use crate::vendor::id_text;
use serde::Deserialize;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};

/// The message types of the tracking API.
pub const TYPES: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// One Segment message as sent.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Message type (implied by the endpoint for single-message calls).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Track event name.
    #[serde(default)]
    pub event: Option<String>,
    /// Page or screen name.
    #[serde(default)]
    pub name: Option<String>,
    /// Client message id (deduplication key).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Anonymous id (string or number).
    #[serde(default)]
    pub anonymous_id: Option<Value>,
    /// User id (string or number).
    #[serde(default)]
    pub user_id: Option<Value>,
    /// Event time.
    #[serde(default)]
    pub timestamp: Option<TimestampInput>,
    /// Per-message send time.
    #[serde(default)]
    pub sent_at: Option<TimestampInput>,
    /// Context object.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// Properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Traits (identify, group).
    #[serde(default)]
    pub traits: Map<String, Value>,
    /// Group id (group).
    #[serde(default)]
    pub group_id: Option<Value>,
    /// Previous id (alias).
    #[serde(default)]
    pub previous_id: Option<Value>,
}

/// Why a message cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// `type` missing or not one of [`TYPES`].
    UnknownType,
}

/// Maps a message; `implied` is the endpoint's type for `/v1/{type}` calls.
/// Returns the event and the message's own `sentAt` and context user agent.
pub fn to_event(
    message: Message,
    implied: Option<&str>,
) -> Result<(IncomingEvent, Option<TimestampInput>, Option<String>), MapError> {
    let kind = implied
        .map(str::to_owned)
        .or(message.kind)
        .filter(|kind| TYPES.contains(&kind.as_str()))
        .ok_or(MapError::UnknownType)?;
    let mut properties = message.properties;
    let traits = Value::Object(message.traits);
    let name = match kind.as_str() {
        "track" => message.event,
        "page" | "screen" => {
            let field = if kind == "page" {
                "page_name"
            } else {
                "screen_name"
            };
            if let Some(name) = message.name {
                properties.insert(field.into(), Value::String(name));
            }
            Some(
                if kind == "page" {
                    "page_view"
                } else {
                    "screen_view"
                }
                .to_owned(),
            )
        }
        "identify" => {
            properties.insert("traits".into(), traits);
            Some("identify".to_owned())
        }
        "group" => {
            properties.insert("traits".into(), traits);
            if let Some(group) = id_text(message.group_id) {
                properties.insert("group_id".into(), Value::String(group));
            }
            Some("group".to_owned())
        }
        _ => {
            if let Some(previous) = id_text(message.previous_id) {
                properties.insert("previous_id".into(), Value::String(previous));
            }
            Some("alias".to_owned())
        }
    };
    let context = message.context;
    if let Some(Value::Object(page)) = context.get("page") {
        for field in ["url", "path", "referrer", "title", "search"] {
            if let Some(value) = page.get(field) {
                properties.entry(field).or_insert_with(|| value.clone());
            }
        }
    }
    if let Some(Value::Object(campaign)) = context.get("campaign") {
        for (from, to) in [
            ("source", "utm_source"),
            ("medium", "utm_medium"),
            ("name", "utm_campaign"),
            ("term", "utm_term"),
            ("content", "utm_content"),
        ] {
            if let Some(value) = campaign.get(from) {
                properties.entry(to).or_insert_with(|| value.clone());
            }
        }
    }
    if let Some(Value::Object(library)) = context.get("library") {
        for field in ["name", "version"] {
            if let Some(value) = library.get(field) {
                properties.insert(format!("library.{field}"), value.clone());
            }
        }
    }
    let user_agent = context
        .get("userAgent")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let event = IncomingEvent {
        name,
        user_id: id_text(message.user_id),
        anonymous_id: id_text(message.anonymous_id),
        timestamp: message.timestamp,
        event_id: message.message_id,
        properties,
    };
    Ok((event, message.sent_at, user_agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn maps_every_type() {
        let (track, _, _) = to_event(message(json!({"type": "track", "event": "Order Completed", "userId": 42, "messageId": "m1", "properties": {"revenue": 9.5}})), None).unwrap();
        assert_eq!(
            (
                track.name.as_deref(),
                track.user_id.as_deref(),
                track.event_id.as_deref()
            ),
            (Some("Order Completed"), Some("42"), Some("m1"))
        );
        let (page, _, ua) = to_event(message(json!({"name": "Home", "anonymousId": "a1", "context": {"userAgent": "UA/1", "page": {"url": "https://x.test/?q=1", "path": "/"}, "campaign": {"source": "google", "name": "bf"}}})), Some("page")).unwrap();
        assert_eq!(page.name.as_deref(), Some("page_view"));
        assert_eq!(page.properties["page_name"], "Home");
        assert_eq!(page.properties["url"], "https://x.test/?q=1");
        assert_eq!(page.properties["utm_campaign"], "bf");
        assert_eq!(ua.as_deref(), Some("UA/1"));
        let (identify, _, _) = to_event(
            message(json!({"type": "identify", "userId": "u", "traits": {"plan": "pro"}})),
            None,
        )
        .unwrap();
        assert_eq!(identify.properties["traits"]["plan"], "pro");
        let (group, _, _) = to_event(
            message(json!({"type": "group", "userId": "u", "groupId": 7})),
            None,
        )
        .unwrap();
        assert_eq!(group.properties["group_id"], "7");
        let (alias, _, _) = to_event(
            message(json!({"type": "alias", "userId": "u", "previousId": "a"})),
            None,
        )
        .unwrap();
        assert_eq!(
            (alias.name.as_deref(), &alias.properties["previous_id"]),
            (Some("alias"), &json!("a"))
        );
        let (screen, _, _) = to_event(
            message(json!({"type": "screen", "name": "Cart", "userId": "u"})),
            None,
        )
        .unwrap();
        assert_eq!(screen.name.as_deref(), Some("screen_view"));
        assert_eq!(
            to_event(message(json!({"type": "nope"})), None).unwrap_err(),
            MapError::UnknownType
        );
        assert_eq!(
            to_event(message(json!({})), None).unwrap_err(),
            MapError::UnknownType
        );
    }
}
