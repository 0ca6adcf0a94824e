//! PostHog capture events → Tally events (pure; the capture routes are
//! `router.rs`'s, the body shapes `bodies.rs`'s).
//!
//! An event as posthog-node and posthog-js send it: `event`, `distinct_id`
//! (top level, or in `properties` as posthog-js puts it), `properties`,
//! `timestamp`, `uuid`, and `$set` / `$set_once` at the top level or in the
//! properties. Mapping:
//!
//! | PostHog event | Tally event | identity and extra properties |
//! |---|---|---|
//! | `$pageview` | `page_view` | `$current_url` → `url`, `$pathname` → `path`, `$referrer` → `referrer`, `title` kept |
//! | `$screen` | `screen_view` | `$screen_name` → `screen_name` |
//! | `$identify` | `identify` | `distinct_id` → user id, `$anon_distinct_id` → anonymous id, `$set` (then `$set_once`) → `traits.*` |
//! | `$set` (posthog-js `setPersonProperties`) | `identify` | identity as sent (no link), `$set` (then `$set_once`) → `traits.*` |
//! | `$create_alias` | `alias` | `distinct_id` → user id, `properties.alias` → `previous_id` |
//! | `$groupidentify` | `group` | `$group_key` → `group_id`, `$group_type` kept, `$group_set` → `traits.*` |
//! | any other | same name | |
//!
//! For every event: `uuid` → event id (PostHog SDKs reuse it on retries, so a
//! retry is deduplicated downstream); `distinct_id` → the user id, or the
//! anonymous id when `$is_identified` is `false` (posthog-js before
//! `identify`) — the stored distinct id is the same text either way;
//! `$lib` / `$lib_version` → `library.name` / `library.version`;
//! `$raw_user_agent` (posthog-js) → the user agent used for enrichment.
//! Dropped: `token` (the project key, checked by the gateway), the moved
//! fields above, and `$set` / `$set_once` of events other than `$identify`
//! and `$set` (Tally keeps person properties from identify events only). Every other
//! property, `$`-prefixed ones included, is kept under its own name.

use crate::vendor::{id_text, object, rename};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};

/// A capture body's events and project key, events still raw.
#[derive(Debug)]
pub struct Body<'a> {
    /// The project API key (`api_key` or `token`, at the top or in the first
    /// event, posthog-js's `properties.token` included).
    pub key: Option<String>,
    /// The events, each unparsed.
    pub events: Vec<&'a RawValue>,
    /// The batch's `sent_at`, if any.
    pub sent_at: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Keys {
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    properties: Option<PropertyKey>,
}

#[derive(Deserialize)]
struct PropertyKey {
    #[serde(default)]
    token: Option<String>,
}

impl Keys {
    fn key(self) -> Option<String> {
        self.api_key
            .or(self.token)
            .or(self.properties.and_then(|p| p.token))
            .filter(|key| !key.is_empty())
    }
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    sent_at: Option<&'a RawValue>,
}

/// Parses a capture body: `{"api_key", "batch": [...]}` (posthog-node's
/// `/batch/`), one event object, or an array of events (posthog-js's `/e/`).
pub fn parse_body(text: &str) -> Result<Body<'_>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        let events: Vec<&RawValue> = serde_json::from_str(text)?;
        let key = match events.first() {
            Some(first) => serde_json::from_str::<Keys>(first.get())?.key(),
            None => None,
        };
        return Ok(Body {
            key,
            events,
            sent_at: None,
        });
    }
    let batch: Batch<'_> = serde_json::from_str(text)?;
    let top = batch.api_key.or(batch.token).filter(|key| !key.is_empty());
    match batch.batch {
        Some(events) => Ok(Body {
            key: top,
            events,
            sent_at: batch.sent_at,
        }),
        None => {
            let event: &RawValue = serde_json::from_str(text)?;
            let key = top.or(serde_json::from_str::<Keys>(text)?.key());
            Ok(Body {
                key,
                events: vec![event],
                sent_at: batch.sent_at,
            })
        }
    }
}

/// One PostHog event as sent.
#[derive(Debug, Deserialize, Default)]
pub struct Message {
    /// Event name (`$pageview`, `$identify`, a custom name…).
    #[serde(default)]
    pub event: Option<String>,
    /// The person's id (string or number); posthog-js puts it in `properties`.
    #[serde(default)]
    pub distinct_id: Option<Value>,
    /// Properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Event time (ISO-8601).
    #[serde(default)]
    pub timestamp: Option<TimestampInput>,
    /// Client event id (a UUID; kept across the SDK's retries).
    #[serde(default)]
    pub uuid: Option<String>,
    /// Person properties to set (identify).
    #[serde(default, rename = "$set")]
    pub set: Option<Map<String, Value>>,
    /// Person properties to set once (identify).
    #[serde(default, rename = "$set_once")]
    pub set_once: Option<Map<String, Value>>,
}

/// Why an event cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No `event`, or an empty one.
    MissingEvent,
    /// No `distinct_id` anywhere.
    MissingDistinctId,
}

/// Maps one event; returns it with its user agent (posthog-js's
/// `$raw_user_agent`), if any.
pub fn to_event(message: Message) -> Result<(IncomingEvent, Option<String>), MapError> {
    let kind = message
        .event
        .filter(|name| !name.is_empty())
        .ok_or(MapError::MissingEvent)?;
    let mut properties = message.properties;
    properties.remove("token");
    let distinct_id = id_text(message.distinct_id)
        .or_else(|| id_text(properties.remove("distinct_id")))
        .ok_or(MapError::MissingDistinctId)?;
    properties.remove("distinct_id");
    let set = message.set.or_else(|| object(properties.remove("$set")));
    let set_once = message
        .set_once
        .or_else(|| object(properties.remove("$set_once")));
    properties.remove("$set");
    properties.remove("$set_once");
    let user_agent = properties
        .remove("$raw_user_agent")
        .and_then(|agent| agent.as_str().map(str::to_owned));
    rename(&mut properties, "$lib", "library.name");
    rename(&mut properties, "$lib_version", "library.version");
    let anonymous = properties.get("$is_identified") == Some(&Value::Bool(false));
    let (mut user_id, mut anonymous_id) = if anonymous {
        (None, Some(distinct_id))
    } else {
        (Some(distinct_id), None)
    };
    let name = match kind.as_str() {
        "$pageview" => {
            rename(&mut properties, "$current_url", "url");
            rename(&mut properties, "$pathname", "path");
            rename(&mut properties, "$referrer", "referrer");
            "page_view".to_owned()
        }
        "$screen" => {
            rename(&mut properties, "$screen_name", "screen_name");
            "screen_view".to_owned()
        }
        "$identify" => {
            user_id = user_id.or(anonymous_id.take());
            anonymous_id = id_text(properties.remove("$anon_distinct_id"));
            let mut traits = set_once.unwrap_or_default();
            traits.extend(set.unwrap_or_default());
            properties.insert("traits".into(), Value::Object(traits));
            "identify".to_owned()
        }
        "$set" => {
            // posthog-js's setPersonProperties(): the distinct id's person
            // properties, nothing else (the identity stays as sent).
            let mut traits = set_once.unwrap_or_default();
            traits.extend(set.unwrap_or_default());
            properties.insert("traits".into(), Value::Object(traits));
            "identify".to_owned()
        }
        "$create_alias" => {
            user_id = user_id.or(anonymous_id.take());
            if let Some(alias) = id_text(properties.remove("alias")) {
                properties.insert("previous_id".into(), Value::String(alias));
            }
            "alias".to_owned()
        }
        "$groupidentify" => {
            rename(&mut properties, "$group_key", "group_id");
            if let Some(traits) = object(properties.remove("$group_set")) {
                properties.insert("traits".into(), Value::Object(traits));
            }
            "group".to_owned()
        }
        _ => kind,
    };
    let event = IncomingEvent {
        name: Some(name),
        user_id,
        anonymous_id,
        timestamp: message.timestamp,
        event_id: message.uuid,
        properties,
    };
    Ok((event, user_agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Result<(IncomingEvent, Option<String>), MapError> {
        to_event(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn the_three_body_shapes_give_their_events_and_key() {
        let node = parse_body(r#"{"api_key":"phc_1","batch":[{"event":"a"},{"event":"b"}],"sent_at":"2026-12-06T10:00:00Z"}"#).unwrap();
        assert_eq!((node.key.as_deref(), node.events.len()), (Some("phc_1"), 2));
        assert_eq!(
            node.sent_at.map(RawValue::get),
            Some("\"2026-12-06T10:00:00Z\"")
        );
        let single = parse_body(r#"{"event":"a","properties":{"token":"phc_2"}}"#).unwrap();
        assert_eq!(
            (single.key.as_deref(), single.events.len()),
            (Some("phc_2"), 1)
        );
        let array =
            parse_body(r#" [{"event":"a","properties":{"token":"phc_3"}},{"event":"b"}]"#).unwrap();
        assert_eq!(
            (array.key.as_deref(), array.events.len()),
            (Some("phc_3"), 2)
        );
        assert_eq!(parse_body("[]").unwrap().key, None);
        assert!(parse_body(r#"{"api_key":"k","batch":{}}"#).is_err());
        assert!(parse_body("nope").is_err());
        assert_eq!(
            parse_body(r#"{"api_key":"","event":"a"}"#).unwrap().key,
            None
        );
    }

    #[test]
    fn a_node_capture_keeps_its_uuid_name_and_properties() {
        let (event, agent) = map(json!({
            "event": "order placed", "distinct_id": 42, "uuid": "0190-a",
            "timestamp": "2026-12-06T10:00:00.000Z",
            "properties": {"amount": 9.5, "$lib": "posthog-node", "$lib_version": "5.74.0", "$geoip_disable": true}
        }))
        .unwrap();
        assert_eq!(event.name.as_deref(), Some("order placed"));
        assert_eq!(event.user_id.as_deref(), Some("42"));
        assert_eq!(event.anonymous_id, None);
        assert_eq!(event.event_id.as_deref(), Some("0190-a"));
        assert_eq!(
            event.timestamp.and_then(|t| t.to_epoch_millis()),
            Some(1_796_551_200_000)
        );
        assert_eq!(
            Value::Object(event.properties),
            json!({"amount": 9.5, "library.name": "posthog-node", "library.version": "5.74.0", "$geoip_disable": true})
        );
        assert_eq!(agent, None);
    }

    #[test]
    fn a_browser_pageview_maps_its_page_fields_and_anonymous_id() {
        let (event, agent) = map(json!({
            "event": "$pageview", "uuid": "u1",
            "properties": {"distinct_id": "anon-1", "token": "phc_x", "$is_identified": false,
                "$current_url": "https://a.example/p?q=1", "$pathname": "/p", "$referrer": "$direct",
                "$raw_user_agent": "Mozilla/5.0", "title": "P"}
        }))
        .unwrap();
        assert_eq!(event.name.as_deref(), Some("page_view"));
        assert_eq!(
            (event.user_id, event.anonymous_id.as_deref()),
            (None, Some("anon-1"))
        );
        assert_eq!(
            Value::Object(event.properties),
            json!({"$is_identified": false, "url": "https://a.example/p?q=1", "path": "/p", "referrer": "$direct", "title": "P"})
        );
        assert_eq!(agent.as_deref(), Some("Mozilla/5.0"));
    }

    #[test]
    fn identify_alias_and_group_become_tally_identity_events() {
        let (identify, _) = map(json!({
            "event": "$identify", "distinct_id": "user-7",
            "properties": {"$anon_distinct_id": "anon-1", "$set": {"plan": "pro"}, "$set_once": {"plan": "free", "first": "x"}}
        }))
        .unwrap();
        assert_eq!(identify.name.as_deref(), Some("identify"));
        assert_eq!(
            (
                identify.user_id.as_deref(),
                identify.anonymous_id.as_deref()
            ),
            (Some("user-7"), Some("anon-1"))
        );
        assert_eq!(
            identify.properties["traits"],
            json!({"plan": "pro", "first": "x"}),
            "$set wins over $set_once"
        );
        let (alias, _) = map(json!({"event": "$create_alias", "distinct_id": "user-7", "properties": {"alias": "old-device"}})).unwrap();
        assert_eq!(
            (alias.name.as_deref(), alias.user_id.as_deref()),
            (Some("alias"), Some("user-7"))
        );
        assert_eq!(alias.properties["previous_id"], "old-device");
        let (group, _) = map(json!({"event": "$groupidentify", "distinct_id": "user-7",
            "properties": {"$group_type": "company", "$group_key": "acme", "$group_set": {"size": 5}}}))
        .unwrap();
        assert_eq!(group.name.as_deref(), Some("group"));
        assert_eq!(
            Value::Object(group.properties),
            json!({"$group_type": "company", "group_id": "acme", "traits": {"size": 5}})
        );
    }

    #[test]
    fn set_person_properties_becomes_an_identify_of_the_same_visitor() {
        let (event, _) = map(json!({"event": "$set", "distinct_id": "anon-2",
            "properties": {"$is_identified": false, "$set": {"plan": "pro"}, "$set_once": {"plan": "free", "first": "x"}}}))
        .unwrap();
        assert_eq!(event.name.as_deref(), Some("identify"));
        assert_eq!(
            (event.user_id.as_deref(), event.anonymous_id.as_deref()),
            (None, Some("anon-2"))
        );
        assert_eq!(
            event.properties["traits"],
            json!({"plan": "pro", "first": "x"})
        );
    }

    #[test]
    fn set_on_other_events_is_dropped_and_missing_fields_are_refused() {
        let (event, _) = map(json!({"event": "x", "distinct_id": "d", "$set": {"a": 1}, "properties": {"$set_once": {"b": 2}, "c": 3}})).unwrap();
        assert_eq!(Value::Object(event.properties), json!({"c": 3}));
        assert_eq!(
            map(json!({"distinct_id": "d"})).unwrap_err(),
            MapError::MissingEvent
        );
        assert_eq!(
            map(json!({"event": "", "distinct_id": "d"})).unwrap_err(),
            MapError::MissingEvent
        );
        assert_eq!(
            map(json!({"event": "x", "properties": {"distinct_id": ""}})).unwrap_err(),
            MapError::MissingDistinctId
        );
        assert_eq!(
            map(json!({"event": "x", "distinct_id": {"a": 1}})).unwrap_err(),
            MapError::MissingDistinctId
        );
    }
}
