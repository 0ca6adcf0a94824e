//! Umami's collect API (`POST /api/send`) → Tally events (pure; the route is
//! `router.rs`'s).
//!
//! A request is one `{"type": "event" | "identify", "payload": {…}}`. The
//! payload's `website` (Umami's website id) is a Tally write key: set the
//! tracker's website id to one. Mapping:
//!
//! | Umami | Tally |
//! |---|---|
//! | `type` `event` without `name` | `page_view` |
//! | `type` `event` with `name` | that name |
//! | `type` `identify` | `identify`: `data` → `traits.*` |
//! | `url` (a path, as the tracker sends it) with `hostname` | `url` (`https://{hostname}{url}`), `path` |
//! | `referrer`, `title`, `language`, `screen`, `hostname`, `tag` | properties of the same names |
//! | `data` (event data) | properties under their own names |
//! | `id` (the distinct id of `umami.identify(id)`) | user id |
//! | visitor | anonymous id: the daily visitor hash of `vendor::visitor_id` (Umami has no client id either) |
//!
//! Dropped: `website` (the key), `cache` (Umami's session token; Tally
//! answers an empty one). No client event id exists and the Node client does
//! not retry: each request is one event.

use crate::vendor::{id_text, object};
use serde::Deserialize;
use serde_json::{Map, Value};
use tally_schemas::event::IncomingEvent;

/// The write key (`payload.website`) of a request, without parsing the rest.
#[derive(Debug, Deserialize, Default)]
pub struct Website {
    /// The payload.
    #[serde(default)]
    pub payload: Option<WebsiteId>,
}

/// `payload.website`.
#[derive(Debug, Deserialize, Default)]
pub struct WebsiteId {
    /// Umami's website id: a Tally write key.
    #[serde(default)]
    pub website: Option<String>,
}

impl Website {
    /// The key, if any.
    pub fn key(self) -> Option<String> {
        self.payload
            .and_then(|payload| payload.website)
            .filter(|key| !key.is_empty())
    }
}

/// One request as sent.
#[derive(Debug, Deserialize, Default)]
pub struct Message {
    /// `event` or `identify`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The event.
    #[serde(default)]
    pub payload: Payload,
}

/// Umami's payload.
#[derive(Debug, Deserialize, Default)]
pub struct Payload {
    /// Event name (absent for a page view).
    #[serde(default)]
    pub name: Option<String>,
    /// Page path (and query).
    #[serde(default)]
    pub url: Option<String>,
    /// Site host.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Event data, or identify data.
    #[serde(default)]
    pub data: Option<Value>,
    /// Distinct id.
    #[serde(default)]
    pub id: Option<Value>,
    /// Every other field (`referrer`, `title`, `language`, `screen`, `tag`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Why an Umami request cannot become a Tally event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// `type` is neither `event` nor `identify`.
    UnknownType,
    /// `data` is not an object.
    BadData,
}

const KEPT: [&str; 5] = ["referrer", "title", "language", "screen", "tag"];

/// Maps one request for the visitor `anonymous_id`.
pub fn to_event(message: Message, anonymous_id: String) -> Result<IncomingEvent, MapError> {
    let payload = message.payload;
    let data = match payload.data {
        None | Some(Value::Null) => Map::new(),
        some => object(some).ok_or(MapError::BadData)?,
    };
    let mut properties = Map::new();
    let mut rest = payload.rest;
    for key in KEPT {
        if let Some(value) = rest.remove(key).filter(|v| !v.is_null() && v != "") {
            properties.insert(key.into(), value);
        }
    }
    let host = payload.hostname.filter(|host| !host.is_empty());
    if let Some(path) = payload.url.filter(|url| !url.is_empty()) {
        let url = match (&host, path.starts_with('/')) {
            (Some(host), true) => format!("https://{host}{path}"),
            _ => path.clone(),
        };
        let bare = path.split(['?', '#']).next().unwrap_or_default();
        if bare.starts_with('/') {
            properties.insert("path".into(), Value::from(bare));
        }
        properties.insert("url".into(), Value::from(url));
    }
    if let Some(host) = host {
        properties.insert("hostname".into(), Value::from(host));
    }
    let name = match message.kind.as_deref().unwrap_or("event") {
        "event" => match payload.name.filter(|name| !name.is_empty()) {
            Some(name) => {
                properties.extend(data);
                name
            }
            None => "page_view".to_owned(),
        },
        "identify" => {
            properties.insert("traits".into(), Value::Object(data));
            "identify".to_owned()
        }
        _ => return Err(MapError::UnknownType),
    };
    Ok(IncomingEvent {
        name: Some(name),
        user_id: id_text(payload.id),
        anonymous_id: Some(anonymous_id),
        timestamp: None,
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
        to_event(serde_json::from_value(value).unwrap(), "v".into())
    }

    #[test]
    fn the_website_is_the_key() {
        let site: Website =
            serde_json::from_str(r#"{"type":"event","payload":{"website":"tw_1"}}"#).unwrap();
        assert_eq!(site.key().as_deref(), Some("tw_1"));
        let none: Website = serde_json::from_str(r#"{"payload":{"website":""}}"#).unwrap();
        assert_eq!(none.key(), None);
    }

    #[test]
    fn page_views_events_and_identify() {
        let page = map(json!({"type": "event", "payload": {"website": "k", "hostname": "shop.example",
            "url": "/pricing?utm_source=news", "referrer": "https://news.example/", "title": "Pricing",
            "language": "en-US", "screen": "1920x1080"}}))
        .unwrap();
        assert_eq!(page.name.as_deref(), Some("page_view"));
        assert_eq!(
            page.properties["url"],
            "https://shop.example/pricing?utm_source=news"
        );
        assert_eq!(page.properties["path"], "/pricing");
        assert_eq!(page.properties["screen"], "1920x1080");
        assert!(!page.properties.contains_key("website"));
        assert_eq!(page.anonymous_id.as_deref(), Some("v"));
        let event = map(json!({"type": "event", "payload": {"website": "k", "name": "signup", "data": {"plan": "pro"}}})).unwrap();
        assert_eq!(
            (event.name.as_deref(), &event.properties["plan"]),
            (Some("signup"), &json!("pro"))
        );
        let identify = map(json!({"type": "identify", "payload": {"website": "k", "id": "u-7", "data": {"plan": "pro"}}})).unwrap();
        assert_eq!(
            (identify.name.as_deref(), identify.user_id.as_deref()),
            (Some("identify"), Some("u-7"))
        );
        assert_eq!(identify.properties["traits"], json!({"plan": "pro"}));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            map(json!({"type": "other", "payload": {}})).err(),
            Some(MapError::UnknownType)
        );
        assert_eq!(
            map(json!({"type": "event", "payload": {"name": "x", "data": [1]}})).err(),
            Some(MapError::BadData)
        );
    }
}
