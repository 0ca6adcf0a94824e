//! Mixpanel ingestion (`/track`, `/import`, `/engage`) → Tally events (pure;
//! the routes and Mixpanel's answers are `router.rs`'s and `answers.rs`'s; the
//! `data` parameter — query string or form body, base64 or JSON — is undone
//! by `wrapping.rs` before this module sees the JSON).
//!
//! `data` is one object or an array of them. `/track` and `/import` events
//! are `{"event", "properties"}`; `/engage` updates are
//! `{"$token", "$distinct_id", "$set" | "$set_once" | …}`:
//!
//! | Mixpanel | Tally |
//! |---|---|
//! | `event` `$mp_web_page_view` | `page_view` (`$current_url` → `url`, `current_url_path` → `path`) |
//! | `event` `$identify` | `identify`: `$anon_distinct_id` → anonymous id (`$device:` prefix removed) |
//! | `event` `$create_alias` | `alias`: `alias` → `previous_id` |
//! | other `event` | the same name |
//! | `properties.$user_id`, `$device_id` | user id, anonymous id |
//! | `properties.distinct_id` (without those) | user id; anonymous id when it starts `$device:` (prefix removed) |
//! | `properties.$insert_id` | event id (deduplicated) |
//! | `properties.time` (seconds, or ms when ≥ 10¹¹) | event time |
//! | `properties.mp_lib`, `$lib_version` | `library.name`, `library.version` |
//! | `/engage` `$set` over `$set_once` | an `identify` event of `$distinct_id` (and `$device_id` as anonymous id) with `traits.*` |
//! | other properties | under their own names, `$`-prefixed ones included |
//!
//! Dropped: `token` / `$token` (the project token, a Tally write key, checked
//! by the gateway), `ip` / `$ip` (the gateway reads the address), and the
//! `/engage` operations other than `$set` / `$set_once` (`$add`, `$append`,
//! `$union`, `$remove`, `$unset`, `$delete`: an update with only those is
//! refused as `malformed_event`).

use crate::vendor::{id_text, object, rename};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};

/// Which Mixpanel endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/track`: events, answered `1` / `0`.
    Track,
    /// `/import`: events (historical), answered with counts.
    Import,
    /// `/engage`: profile updates, answered `1` / `0`.
    Engage,
}

/// The `data` of a request: its events (raw) and the token of the first.
#[derive(Debug)]
pub struct Body<'a> {
    /// `properties.token` or `$token` of the first event.
    pub key: Option<String>,
    /// The events or profile updates, each unparsed.
    pub events: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Token {
    #[serde(default, rename = "$token")]
    token: Option<String>,
    #[serde(default)]
    properties: Option<TokenProperty>,
}

#[derive(Deserialize, Default)]
struct TokenProperty {
    #[serde(default)]
    token: Option<String>,
}

/// Parses `data` (one object or an array).
pub fn parse_body(text: &str) -> Result<Body<'_>, serde_json::Error> {
    let events: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)?
    } else {
        vec![serde_json::from_str(text)?]
    };
    let key = match events.first() {
        Some(first) => {
            let token: Token = serde_json::from_str(first.get()).unwrap_or_default();
            token.token.or(token.properties.and_then(|p| p.token))
        }
        None => None,
    };
    Ok(Body {
        key: key.filter(|key| !key.is_empty()),
        events,
    })
}

/// One `/track` or `/import` event.
#[derive(Debug, Deserialize, Default)]
pub struct Message {
    /// Event name.
    #[serde(default)]
    pub event: Option<String>,
    /// Properties, identity and time included.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// One `/engage` profile update.
#[derive(Debug, Deserialize, Default)]
pub struct Update {
    /// The person.
    #[serde(default, rename = "$distinct_id")]
    pub distinct_id: Option<Value>,
    /// Properties to set.
    #[serde(default, rename = "$set")]
    pub set: Option<Value>,
    /// Properties to set if unset.
    #[serde(default, rename = "$set_once")]
    pub set_once: Option<Value>,
    /// Update time (ms).
    #[serde(default, rename = "$time")]
    pub time: Option<TimestampInput>,
    /// The browser's device id (mixpanel-browser sends it with every update).
    #[serde(default, rename = "$device_id")]
    pub device_id: Option<Value>,
}

/// An anonymous id as the SDKs write it (`$device:<id>` in `distinct_id` and
/// `$anon_distinct_id`, bare in `$device_id`): always the bare id, so an
/// identify links the same visitor the page views were counted under.
fn device(id: String) -> String {
    match id.strip_prefix("$device:") {
        Some(bare) if !bare.is_empty() => bare.to_owned(),
        _ => id,
    }
}

/// Why a Mixpanel record cannot become a Tally event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No event name.
    MissingEvent,
    /// No distinct id.
    MissingDistinctId,
    /// A profile update with nothing Tally keeps.
    NothingToSet,
}

/// Mixpanel's `time`: seconds (with a fraction), or milliseconds from 10¹¹ on.
fn event_time(value: Option<Value>) -> Option<TimestampInput> {
    match value? {
        Value::Number(number) => {
            let time = number.as_f64()?;
            let ms = if time.abs() < 1e11 {
                time * 1000.0
            } else {
                time
            };
            Some(TimestampInput::EpochMillis(ms.round() as i64))
        }
        other => serde_json::from_value(other).ok(),
    }
}

/// Maps one `/track` or `/import` event.
pub fn to_event(message: Message) -> Result<IncomingEvent, MapError> {
    let kind = message
        .event
        .filter(|name| !name.is_empty())
        .ok_or(MapError::MissingEvent)?;
    let mut properties = message.properties;
    for dropped in ["token", "ip", "$ip"] {
        properties.remove(dropped);
    }
    let timestamp = event_time(properties.remove("time"));
    let event_id = id_text(properties.remove("$insert_id"));
    let distinct = id_text(properties.remove("distinct_id"));
    let mut user_id = id_text(properties.remove("$user_id"));
    let mut anonymous_id = id_text(properties.remove("$device_id"));
    if user_id.is_none() && anonymous_id.is_none() {
        match distinct {
            Some(id) => match id.strip_prefix("$device:") {
                Some(device) if !device.is_empty() => anonymous_id = Some(device.to_owned()),
                _ => user_id = Some(id),
            },
            None => return Err(MapError::MissingDistinctId),
        }
    }
    rename(&mut properties, "mp_lib", "library.name");
    rename(&mut properties, "$lib_version", "library.version");
    let name = match kind.as_str() {
        "$mp_web_page_view" => {
            rename(&mut properties, "$current_url", "url");
            rename(&mut properties, "current_url_path", "path");
            "page_view".to_owned()
        }
        "$identify" => {
            if let Some(anonymous) = id_text(properties.remove("$anon_distinct_id")) {
                anonymous_id = Some(device(anonymous));
            }
            "identify".to_owned()
        }
        "$create_alias" => {
            if let Some(alias) = id_text(properties.remove("alias")) {
                properties.insert("previous_id".into(), Value::String(alias));
            }
            "alias".to_owned()
        }
        _ => kind,
    };
    Ok(IncomingEvent {
        name: Some(name),
        user_id,
        anonymous_id,
        timestamp,
        event_id,
        properties,
    })
}

/// Maps one `/engage` update to an `identify` event.
pub fn update_to_event(update: Update) -> Result<IncomingEvent, MapError> {
    let user_id = id_text(update.distinct_id).ok_or(MapError::MissingDistinctId)?;
    let mut traits = object(update.set_once).unwrap_or_default();
    let set = object(update.set);
    if set.is_none() && traits.is_empty() {
        return Err(MapError::NothingToSet);
    }
    traits.extend(set.unwrap_or_default());
    for dropped in ["$ip", "ip", "$token"] {
        traits.remove(dropped);
    }
    let mut properties = Map::new();
    properties.insert("traits".into(), Value::Object(traits));
    Ok(IncomingEvent {
        name: Some("identify".into()),
        user_id: Some(user_id),
        anonymous_id: id_text(update.device_id).map(device),
        timestamp: update.time,
        event_id: None,
        properties,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Result<IncomingEvent, MapError> {
        to_event(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn one_event_or_an_array_and_the_first_token() {
        let one =
            parse_body(r#"{"event":"a","properties":{"token":"tw_1","distinct_id":"u"}}"#).unwrap();
        assert_eq!((one.key.as_deref(), one.events.len()), (Some("tw_1"), 1));
        let many =
            parse_body(r#"[{"event":"a","properties":{"token":"tw_2"}},{"event":"b"}]"#).unwrap();
        assert_eq!((many.key.as_deref(), many.events.len()), (Some("tw_2"), 2));
        let engage = parse_body(r#"{"$token":"tw_3","$distinct_id":"u","$set":{"a":1}}"#).unwrap();
        assert_eq!(engage.key.as_deref(), Some("tw_3"));
        assert!(parse_body("not json").is_err());
    }

    #[test]
    fn a_node_track_keeps_identity_time_and_insert_id() {
        let event = map(json!({"event": "Played", "properties": {"distinct_id": "u-1", "time": 1_780_000_000,
            "$insert_id": "ins-1", "token": "tw_x", "mp_lib": "node", "$lib_version": "0.24.0", "ip": "1.2.3.4",
            "song": "x"}}))
        .unwrap();
        assert_eq!(event.name.as_deref(), Some("Played"));
        assert_eq!(event.user_id.as_deref(), Some("u-1"));
        assert_eq!(event.event_id.as_deref(), Some("ins-1"));
        assert_eq!(
            event.timestamp.unwrap().to_epoch_millis(),
            Some(1_780_000_000_000)
        );
        let p = &event.properties;
        assert_eq!(
            (&p["library.name"], &p["library.version"], &p["song"]),
            (&json!("node"), &json!("0.24.0"), &json!("x"))
        );
        for dropped in ["token", "ip", "time", "distinct_id", "$insert_id"] {
            assert!(!p.contains_key(dropped), "{dropped}");
        }
        let ms = map(json!({"event": "a", "properties": {"distinct_id": "u", "time": 1_780_000_000_123_i64}})).unwrap();
        assert_eq!(
            ms.timestamp.unwrap().to_epoch_millis(),
            Some(1_780_000_000_123)
        );
    }

    #[test]
    fn browser_identities_page_views_identify_and_alias() {
        let anonymous = map(
            json!({"event": "$mp_web_page_view", "properties": {"distinct_id": "$device:d-1",
            "$device_id": "d-1", "$current_url": "https://s.example/p", "current_url_path": "/p"}}),
        )
        .unwrap();
        assert_eq!(anonymous.name.as_deref(), Some("page_view"));
        assert_eq!(
            (anonymous.user_id, anonymous.anonymous_id.as_deref()),
            (None, Some("d-1"))
        );
        assert_eq!(anonymous.properties["url"], "https://s.example/p");
        let prefixed =
            map(json!({"event": "a", "properties": {"distinct_id": "$device:d-2"}})).unwrap();
        assert_eq!(prefixed.anonymous_id.as_deref(), Some("d-2"));
        // mixpanel-browser's identify names the visitor as `$device:<id>`.
        let browser = map(
            json!({"event": "$identify", "properties": {"distinct_id": "u",
            "$anon_distinct_id": "$device:d-3", "$device_id": "d-3", "$user_id": "u"}}),
        )
        .unwrap();
        assert_eq!(browser.anonymous_id.as_deref(), Some("d-3"));
        let identify = map(json!({"event": "$identify", "properties": {"distinct_id": "u", "$anon_distinct_id": "d-1"}})).unwrap();
        assert_eq!(
            (
                identify.name.as_deref(),
                identify.user_id.as_deref(),
                identify.anonymous_id.as_deref()
            ),
            (Some("identify"), Some("u"), Some("d-1"))
        );
        let alias = map(
            json!({"event": "$create_alias", "properties": {"distinct_id": "u", "alias": "old"}}),
        )
        .unwrap();
        assert_eq!(alias.properties["previous_id"], "old");
    }

    #[test]
    fn engage_sets_become_identify_events() {
        let update: Update = serde_json::from_value(json!({"$token": "t", "$distinct_id": "u",
            "$set_once": {"first": "a", "plan": "free"}, "$set": {"plan": "pro", "$ip": "1.2.3.4"}})).unwrap();
        let event = update_to_event(update).unwrap();
        assert_eq!(
            (event.name.as_deref(), event.user_id.as_deref()),
            (Some("identify"), Some("u"))
        );
        assert_eq!(
            event.properties["traits"],
            json!({"first": "a", "plan": "pro"})
        );
        let browser: Update = serde_json::from_value(
            json!({"$distinct_id": "u", "$device_id": "d-9", "$set": {"plan": "pro"}}),
        )
        .unwrap();
        let event = update_to_event(browser).unwrap();
        assert_eq!(event.anonymous_id.as_deref(), Some("d-9"));
        let add: Update =
            serde_json::from_value(json!({"$distinct_id": "u", "$add": {"n": 1}})).unwrap();
        assert_eq!(update_to_event(add).err(), Some(MapError::NothingToSet));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            map(json!({"properties": {"distinct_id": "u"}})).err(),
            Some(MapError::MissingEvent)
        );
        assert_eq!(
            map(json!({"event": "a", "properties": {}})).err(),
            Some(MapError::MissingDistinctId)
        );
        assert_eq!(
            map(json!({"event": "a", "properties": {"distinct_id": ""}})).err(),
            Some(MapError::MissingDistinctId)
        );
    }
}
