//! Amplitude HTTP V2 and batch uploads → Tally events (pure; the routes and
//! Amplitude's answer shape are `router.rs`'s, the body shape
//! `bodies.rs`'s).
//!
//! A body is `{"api_key", "events": [...], "options"}`; `options` (minimum id
//! length) is not applied — Tally takes ids of any length. An event:
//!
//! | Amplitude | Tally |
//! |---|---|
//! | `event_type` `[Amplitude] Page Viewed` (the browser SDK's) | `page_view`: `[Amplitude] Page Location` → `url`, `[Amplitude] Page Path` → `path`, `[Amplitude] Page Title` → `title` |
//! | `event_type` `$identify` | `identify`: `user_properties` `$set` over `$setOnce` (and plain keys) → `traits.*` |
//! | `event_type` `$groupidentify` | `group`: the first `groups` entry → `group_type`, `group_id`; `group_properties` `$set` → `traits.*` |
//! | other `event_type` | the same name |
//! | `user_id`, `device_id` | user id, anonymous id (at least one) |
//! | `insert_id` | event id (the SDK keeps it across retries: deduplicated) |
//! | `time` (epoch ms) | event time |
//! | `event_properties` | properties under their own names |
//! | `groups` | `groups.<type>` |
//! | `platform`, `os_name`, `os_version`, `device_brand`, `device_manufacturer`, `device_model`, `app_version`, `carrier`, `language`, `session_id`, `version_name` | properties of the same names |
//! | `price`, `quantity`, `revenue`, `productId`, `revenueType` (and the revenue event's `$price`, `$quantity`, `$revenue`, `$productId`, `$revenueType`, `$currency` properties) | `price`, `quantity`, `revenue`, `product_id`, `revenue_type`, `currency` |
//! | `library` (`amplitude-node-ts/1.5.73`) | `library.name`, `library.version` |
//!
//! Dropped: `user_properties` of events other than `$identify` (Tally keeps
//! person properties from identify events), the `$add`/`$append`/`$unset`…
//! operations, client-sent geo (`country`, `region`, `city`, `dma`,
//! `location_lat`/`_lng`: the gateway enriches from the address), `ip`,
//! `idfa`/`idfv`/`adid`/`android_id` (advertising ids), `event_id` (a
//! per-device counter), `plan`, `ingestion_metadata`, `partner_id`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};

/// An upload's key and events, events still raw.
#[derive(Debug)]
pub struct Body<'a> {
    /// `api_key` (the Tally write key).
    pub key: Option<String>,
    /// The events, each unparsed.
    pub events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Upload<'a> {
    #[serde(default)]
    api_key: Option<String>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Parses an upload body (`events` is required).
pub fn parse_body(text: &str) -> Result<Body<'_>, serde_json::Error> {
    let upload: Upload<'_> = serde_json::from_str(text)?;
    Ok(Body {
        key: upload.api_key.filter(|key| !key.is_empty()),
        events: upload.events,
    })
}

#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(default, borrow)]
    events: Option<&'a RawValue>,
    #[serde(default, borrow)]
    batch: Option<&'a RawValue>,
}

/// Whether a body sent to a route Amplitude and PostHog share (`/batch`) is
/// Amplitude's: an object with `events` and without PostHog's `batch`.
pub fn is_upload(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<Shape<'_>>(text)
            .is_ok_and(|shape| shape.events.is_some() && shape.batch.is_none())
}

/// One Amplitude event as sent.
#[derive(Debug, Deserialize, Default)]
pub struct Message {
    /// Event name.
    #[serde(default)]
    pub event_type: Option<String>,
    /// User id (string or number).
    #[serde(default)]
    pub user_id: Option<Value>,
    /// Device id.
    #[serde(default)]
    pub device_id: Option<Value>,
    /// Event time, epoch ms.
    #[serde(default)]
    pub time: Option<TimestampInput>,
    /// Client event id, kept across retries.
    #[serde(default)]
    pub insert_id: Option<String>,
    /// Event properties.
    #[serde(default)]
    pub event_properties: Option<Value>,
    /// User properties (`$set`, `$setOnce`, … or plain keys).
    #[serde(default)]
    pub user_properties: Option<Value>,
    /// Group type → group name(s).
    #[serde(default)]
    pub groups: Option<Value>,
    /// Group properties (`$groupidentify`).
    #[serde(default)]
    pub group_properties: Option<Value>,
    /// `name/version` of the SDK.
    #[serde(default)]
    pub library: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Why an Amplitude event cannot become a Tally event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No `event_type`.
    MissingEventType,
    /// Neither `user_id` nor `device_id`.
    MissingIdentity,
}

/// Fields kept as properties under the same (or the given) name.
const KEPT: [(&str, &str); 16] = [
    ("platform", "platform"),
    ("os_name", "os_name"),
    ("os_version", "os_version"),
    ("device_brand", "device_brand"),
    ("device_manufacturer", "device_manufacturer"),
    ("device_model", "device_model"),
    ("app_version", "app_version"),
    ("version_name", "version_name"),
    ("carrier", "carrier"),
    ("language", "language"),
    ("session_id", "session_id"),
    ("price", "price"),
    ("quantity", "quantity"),
    ("revenue", "revenue"),
    ("productId", "product_id"),
    ("revenueType", "revenue_type"),
];

/// The SDKs' revenue event (`revenue_amount`) properties.
const REVENUE_PROPERTIES: [(&str, &str); 6] = [
    ("$price", "price"),
    ("$quantity", "quantity"),
    ("$revenue", "revenue"),
    ("$productId", "product_id"),
    ("$revenueType", "revenue_type"),
    ("$currency", "currency"),
];

/// The browser SDK's page view (autocapture's `pageViews`).
const PAGE_VIEWED: &str = "[Amplitude] Page Viewed";

/// A page view's properties as Tally's page views name them.
/// (Its campaign properties — `referrer`, `utm_source`, … — have Tally's
/// names already.)
const PAGE_PROPERTIES: [(&str, &str); 3] = [
    ("[Amplitude] Page Location", "url"),
    ("[Amplitude] Page Path", "path"),
    ("[Amplitude] Page Title", "title"),
];

fn object(value: Option<Value>) -> Map<String, Value> {
    match value {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `$set` over `$setOnce`, over plain (non-`$`) keys.
fn traits(properties: Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = properties
        .iter()
        .filter(|(key, _)| !key.starts_with('$'))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut properties = properties;
    out.extend(object(properties.remove("$setOnce")));
    out.extend(object(properties.remove("$set")));
    out
}

/// Maps one event.
pub fn to_event(message: Message) -> Result<IncomingEvent, MapError> {
    let kind = message
        .event_type
        .filter(|name| !name.is_empty())
        .ok_or(MapError::MissingEventType)?;
    let user_id = crate::vendor::id_text(message.user_id);
    let anonymous_id = crate::vendor::id_text(message.device_id);
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MapError::MissingIdentity);
    }
    let mut properties = object(message.event_properties);
    for (from, to) in REVENUE_PROPERTIES {
        crate::vendor::rename(&mut properties, from, to);
    }
    let mut rest = message.rest;
    for (from, to) in KEPT {
        if let Some(value) = rest.remove(from).filter(|value| !value.is_null()) {
            properties.entry(to).or_insert(value);
        }
    }
    if let Some(library) = message.library {
        let (name, version) = library.split_once('/').unwrap_or((&library, ""));
        properties.insert("library.name".into(), Value::from(name));
        if !version.is_empty() {
            properties.insert("library.version".into(), Value::from(version));
        }
    }
    let groups = object(message.groups);
    let name = match kind.as_str() {
        PAGE_VIEWED => {
            for (from, to) in PAGE_PROPERTIES {
                crate::vendor::rename(&mut properties, from, to);
            }
            "page_view".to_owned()
        }
        "$identify" => {
            let traits = traits(object(message.user_properties));
            properties.insert("traits".into(), Value::Object(traits));
            "identify".to_owned()
        }
        "$groupidentify" => {
            if let Some((kind, id)) = groups.iter().next() {
                properties.insert("group_type".into(), Value::from(kind.as_str()));
                if let Some(id) = crate::vendor::id_text(Some(id.clone())) {
                    properties.insert("group_id".into(), Value::from(id));
                }
            }
            let traits = traits(object(message.group_properties));
            properties.insert("traits".into(), Value::Object(traits));
            "group".to_owned()
        }
        _ => {
            if !groups.is_empty() {
                properties.insert("groups".into(), Value::Object(groups));
            }
            kind
        }
    };
    Ok(IncomingEvent {
        name: Some(name),
        user_id,
        anonymous_id,
        timestamp: message.time,
        event_id: message.insert_id.filter(|id| !id.is_empty()),
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
    fn an_upload_and_its_shape() {
        let text = r#"{"api_key":"tw_1","events":[{"event_type":"a","user_id":"u"}],"options":{"min_id_length":1}}"#;
        let body = parse_body(text).unwrap();
        assert_eq!(body.key.as_deref(), Some("tw_1"));
        assert_eq!(body.events.len(), 1);
        assert!(is_upload(text));
        assert!(!is_upload(r#"{"api_key":"k","batch":[]}"#));
        assert!(!is_upload(r#"{"api_key":"k","events":[],"batch":[]}"#));
        assert!(!is_upload(r#"[{"event":"x"}]"#));
        assert!(parse_body(r#"{"api_key":"k"}"#).is_err());
    }

    #[test]
    fn a_node_event_keeps_its_ids_time_and_context() {
        let event = map(json!({
            "event_type": "Checkout", "user_id": "u-1", "device_id": "d-1", "time": 1_780_000_000_000_i64,
            "insert_id": "a2f0c1de-0000-4000-8000-000000000001", "event_properties": {"cart": {"items": 2}},
            "user_properties": {"$set": {"plan": "pro"}}, "platform": "Node.js", "os_name": "linux",
            "price": 9.5, "quantity": 2, "productId": "sku-1", "library": "amplitude-node-ts/1.5.73",
            "event_id": 7, "ip": "$remote", "country": "Nowhere", "groups": {"org": "acme"}
        }))
        .unwrap();
        assert_eq!(event.name.as_deref(), Some("Checkout"));
        assert_eq!(event.user_id.as_deref(), Some("u-1"));
        assert_eq!(event.anonymous_id.as_deref(), Some("d-1"));
        assert_eq!(
            event.event_id.as_deref(),
            Some("a2f0c1de-0000-4000-8000-000000000001")
        );
        assert_eq!(
            event.timestamp.unwrap().to_epoch_millis(),
            Some(1_780_000_000_000)
        );
        let p = &event.properties;
        assert_eq!(p["cart"], json!({"items": 2}));
        assert_eq!(
            (&p["platform"], &p["os_name"]),
            (&json!("Node.js"), &json!("linux"))
        );
        assert_eq!(
            (&p["price"], &p["quantity"], &p["product_id"]),
            (&json!(9.5), &json!(2), &json!("sku-1"))
        );
        assert_eq!(
            (&p["library.name"], &p["library.version"]),
            (&json!("amplitude-node-ts"), &json!("1.5.73"))
        );
        assert_eq!(p["groups"], json!({"org": "acme"}));
        for dropped in [
            "event_id",
            "ip",
            "country",
            "plan",
            "$set",
            "user_properties",
        ] {
            assert!(!p.contains_key(dropped), "{dropped}");
        }
    }

    #[test]
    fn identify_and_group_identify() {
        let page = map(json!({"event_type": "[Amplitude] Page Viewed", "device_id": "d",
            "event_properties": {"[Amplitude] Page Location": "https://s.example/p?utm_source=n",
            "[Amplitude] Page Path": "/p", "[Amplitude] Page Title": "P", "[Amplitude] Page Counter": 1}}))
        .unwrap();
        assert_eq!(page.name.as_deref(), Some("page_view"));
        assert_eq!(
            (
                &page.properties["url"],
                &page.properties["path"],
                &page.properties["title"]
            ),
            (
                &json!("https://s.example/p?utm_source=n"),
                &json!("/p"),
                &json!("P")
            )
        );
        assert_eq!(page.properties["[Amplitude] Page Counter"], 1);
        let identify = map(json!({"event_type": "$identify", "user_id": "u",
            "user_properties": {"$setOnce": {"first": "a", "plan": "free"}, "$set": {"plan": "pro"}, "$add": {"n": 1}}}))
        .unwrap();
        assert_eq!(identify.name.as_deref(), Some("identify"));
        assert_eq!(
            identify.properties["traits"],
            json!({"first": "a", "plan": "pro"})
        );
        let group = map(json!({"event_type": "$groupidentify", "device_id": "d",
            "groups": {"org": "acme"}, "group_properties": {"$set": {"seats": 5}}}))
        .unwrap();
        assert_eq!(group.name.as_deref(), Some("group"));
        assert_eq!(group.properties["group_type"], "org");
        assert_eq!(group.properties["group_id"], "acme");
        assert_eq!(group.properties["traits"], json!({"seats": 5}));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            map(json!({"user_id": "u"})).err(),
            Some(MapError::MissingEventType)
        );
        assert_eq!(
            map(json!({"event_type": "a"})).err(),
            Some(MapError::MissingIdentity)
        );
        assert_eq!(
            map(json!({"event_type": "a", "user_id": ""})).err(),
            Some(MapError::MissingIdentity)
        );
        assert_eq!(
            map(json!({"event_type": "", "user_id": "u"})).err(),
            Some(MapError::MissingEventType)
        );
    }
}
