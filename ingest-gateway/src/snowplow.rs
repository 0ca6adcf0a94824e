//! Snowplow tracker protocol → Tally events (pure; the routes and answers are
//! `router.rs`'s and `answers.rs`'s).
//!
//! Requests: `POST /com.snowplowanalytics.snowplow/tp2` with a `payload_data`
//! JSON (`{"schema", "data": [event…]}`), or `GET /i` with one event in the
//! query string ([`query_to_json`]). An event is a map of short fields, values
//! as text. The app id `aid` is a Tally write key (set the tracker's `appId`
//! to one; a key in the headers wins). Mapping:
//!
//! | Snowplow | Tally |
//! |---|---|
//! | `e=pv` | `page_view`: `url`, `page` → `title`, `refr` → `referrer` |
//! | `e=pp` (page ping) | `page_ping`: `pp_mix`, `pp_max`, `pp_miy`, `pp_may` |
//! | `e=se` (structured) | the action `se_ac`; `se_ca` → `category`, `se_la` → `label`, `se_pr` → `property`, `se_va` → `value` (number) |
//! | `e=ue` (self-describing, `ue_pr` JSON or `ue_px` base64) | the schema's name (`iglu:com.acme/viewed_product/jsonschema/1-0-0` → `viewed_product`); its data as properties, the URI as `schema` |
//! | `e=tr`, `e=ti` | `transaction`, `transaction_item`: the `tr_*` / `ti_*` fields without their prefix |
//! | `co` (JSON) / `cx` (base64) contexts | `context.<schema name>.<field>` |
//! | `eid` | event id (the tracker keeps it across retries: deduplicated) |
//! | `ttm`, else `dtm` / `stm` | event time / the send time (clock-skew correction) |
//! | `uid`, `duid` (else `nuid`, `tnuid`) | user id, anonymous id |
//! | `sid`, `vid` | `session_id`, `session_index` |
//! | `tv`, `p`, `tna` | `library.name` / `library.version` (`node-4.8.0` split), `platform`, `namespace` |
//! | `lang`, `res`, `vp`, `tz`, `cs` | `language`, `screen`, `viewport`, `timezone`, `charset` |
//! | `ua` | the user agent enriched |
//!
//! Dropped: `aid` (the key), `ip` (the gateway reads the address), and every
//! field not listed (`cookie`, `cd`, `ds`, `f_*` browser features, `mac`,
//! advertising and network ids beyond the identity above, …).

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};

/// How an event reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST …/tp2`: a `payload_data` body, answered `ok`.
    Post,
    /// `GET /i`: one event in the query string, answered with a 1×1 GIF.
    Pixel,
}

/// A `tp2` body's events (raw) and the first event's `aid`.
#[derive(Debug)]
pub struct Body<'a> {
    /// `aid` of the first event.
    pub key: Option<String>,
    /// The events, each unparsed.
    pub events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct PayloadData<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct AppId {
    #[serde(default)]
    aid: Option<String>,
}

/// Parses a `payload_data` body, or one event object (the pixel's).
pub fn parse_body(text: &str) -> Result<Body<'_>, serde_json::Error> {
    let events = match serde_json::from_str::<PayloadData<'_>>(text) {
        Ok(payload) => payload.data,
        Err(err) if text.contains("\"schema\"") => return Err(err),
        Err(_) => vec![serde_json::from_str(text)?],
    };
    let key = match events.first() {
        Some(first) => {
            serde_json::from_str::<AppId>(first.get())
                .unwrap_or_default()
                .aid
        }
        None => None,
    };
    Ok(Body {
        key: key.filter(|key| !key.is_empty()),
        events,
    })
}

/// The query string of a pixel request as a JSON object of its fields.
pub fn query_to_json(query: &str) -> String {
    let fields: Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), Value::from(value.into_owned())))
        .collect();
    Value::Object(fields).to_string()
}

/// Why a Snowplow event cannot become a Tally event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// `e` missing or unknown, or a structured event without an action.
    UnknownEvent,
    /// Neither a user id nor a domain/network user id.
    MissingIdentity,
    /// `ue_pr`/`ue_px`/`co`/`cx` not decodable JSON.
    BadPayload,
}

/// A field's text (tracker fields are text; numbers are taken too).
fn text(fields: &mut Map<String, Value>, name: &str) -> Option<String> {
    match fields.remove(name)? {
        Value::String(text) if !text.is_empty() => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A self-describing JSON from its JSON (`plain`) or base64 (`encoded`) field.
fn self_describing(
    fields: &mut Map<String, Value>,
    plain: &str,
    encoded: &str,
) -> Result<Option<Value>, MapError> {
    let json = match (text(fields, plain), text(fields, encoded)) {
        (Some(json), _) => json.into_bytes(),
        (None, Some(b64)) => {
            let unpadded = b64.trim_end_matches('=');
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(unpadded)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
                .map_err(|_| MapError::BadPayload)?
        }
        (None, None) => return Ok(None),
    };
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|_| MapError::BadPayload)
}

/// `iglu:com.acme/viewed_product/jsonschema/1-0-0` → `viewed_product`.
fn schema_name(uri: &str) -> Option<&str> {
    uri.strip_prefix("iglu:")?
        .split('/')
        .nth(1)
        .filter(|name| !name.is_empty())
}

/// Fields kept under a Tally name.
const KEPT: [(&str, &str); 11] = [
    ("p", "platform"),
    ("tna", "namespace"),
    ("lang", "language"),
    ("res", "screen"),
    ("vp", "viewport"),
    ("tz", "timezone"),
    ("cs", "charset"),
    ("sid", "session_id"),
    ("vid", "session_index"),
    ("url", "url"),
    ("refr", "referrer"),
];

/// Maps one event; returns it with its send time (`stm`) and user agent (`ua`).
pub fn to_event(
    raw: Map<String, Value>,
) -> Result<(IncomingEvent, Option<TimestampInput>, Option<String>), MapError> {
    let mut fields = raw;
    let kind = text(&mut fields, "e").ok_or(MapError::UnknownEvent)?;
    let user_id = text(&mut fields, "uid");
    let anonymous_id = text(&mut fields, "duid")
        .or_else(|| text(&mut fields, "nuid"))
        .or_else(|| text(&mut fields, "tnuid"));
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MapError::MissingIdentity);
    }
    let millis = |value: Option<String>| {
        value
            .and_then(|v| v.parse::<i64>().ok())
            .map(TimestampInput::EpochMillis)
    };
    let true_time = millis(text(&mut fields, "ttm"));
    let device_time = millis(text(&mut fields, "dtm"));
    let sent = millis(text(&mut fields, "stm"));
    let event_id = text(&mut fields, "eid");
    let user_agent = text(&mut fields, "ua");
    let mut properties = Map::new();
    for (from, to) in KEPT {
        if let Some(value) = text(&mut fields, from) {
            properties.insert(to.into(), Value::from(value));
        }
    }
    if let Some(tracker) = text(&mut fields, "tv") {
        let (name, version) = tracker.rsplit_once('-').unwrap_or((&tracker, ""));
        properties.insert("library.name".into(), Value::from(name));
        if !version.is_empty() {
            properties.insert("library.version".into(), Value::from(version));
        }
    }
    if let Some(Value::Object(contexts)) = self_describing(&mut fields, "co", "cx")? {
        if let Some(Value::Array(items)) = contexts.get("data") {
            for item in items {
                if let (Some(name), Some(Value::Object(data))) = (
                    item["schema"].as_str().and_then(schema_name),
                    item.get("data"),
                ) {
                    properties.insert(format!("context.{name}"), Value::Object(data.clone()));
                }
            }
        }
    }
    let name = match kind.as_str() {
        "pv" => {
            if let Some(title) = text(&mut fields, "page") {
                properties.insert("title".into(), Value::from(title));
            }
            "page_view".to_owned()
        }
        "pp" => {
            for field in ["pp_mix", "pp_max", "pp_miy", "pp_may"] {
                if let Some(value) = text(&mut fields, field).and_then(|v| v.parse::<f64>().ok()) {
                    properties.insert(field.into(), Value::from(value));
                }
            }
            "page_ping".to_owned()
        }
        "se" => {
            let action = text(&mut fields, "se_ac").ok_or(MapError::UnknownEvent)?;
            for (from, to) in [
                ("se_ca", "category"),
                ("se_la", "label"),
                ("se_pr", "property"),
            ] {
                if let Some(value) = text(&mut fields, from) {
                    properties.insert(to.into(), Value::from(value));
                }
            }
            if let Some(value) = text(&mut fields, "se_va") {
                let number = value.parse::<f64>().map_or(Value::from(value), Value::from);
                properties.insert("value".into(), number);
            }
            action
        }
        "ue" => {
            let event =
                self_describing(&mut fields, "ue_pr", "ue_px")?.ok_or(MapError::BadPayload)?;
            let inner = &event["data"];
            let uri = inner["schema"].as_str().ok_or(MapError::BadPayload)?;
            let name = schema_name(uri).ok_or(MapError::BadPayload)?.to_owned();
            properties.insert("schema".into(), Value::from(uri));
            if let Value::Object(data) = &inner["data"] {
                for (key, value) in data {
                    properties
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
            }
            name
        }
        "tr" | "ti" => {
            let prefix = if kind == "tr" { "tr_" } else { "ti_" };
            let keys: Vec<String> = fields
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            for key in keys {
                if let Some(value) = text(&mut fields, &key) {
                    properties.insert(key[3..].to_owned(), Value::from(value));
                }
            }
            if kind == "tr" {
                "transaction"
            } else {
                "transaction_item"
            }
            .to_owned()
        }
        _ => return Err(MapError::UnknownEvent),
    };
    let event = IncomingEvent {
        name: Some(name),
        user_id,
        anonymous_id,
        timestamp: true_time.or(device_time),
        event_id,
        properties,
    };
    Ok((event, sent, user_agent))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn map(
        value: Value,
    ) -> Result<(IncomingEvent, Option<TimestampInput>, Option<String>), MapError> {
        let Value::Object(fields) = value else {
            panic!("an object")
        };
        to_event(fields)
    }

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn payload_data_pixels_and_the_app_key() {
        let body = parse_body(r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","aid":"tw_1"},{"e":"se"}]}"#).unwrap();
        assert_eq!((body.key.as_deref(), body.events.len()), (Some("tw_1"), 2));
        let pixel = query_to_json("e=pv&aid=tw_2&url=https%3A%2F%2Fs.example%2Fp&duid=d");
        let body = parse_body(&pixel).unwrap();
        assert_eq!((body.key.as_deref(), body.events.len()), (Some("tw_2"), 1));
        assert!(parse_body(r#"{"schema":"x","data":"no"}"#).is_err());
    }

    #[test]
    fn page_views_structured_and_self_describing_events() {
        let context = json!({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"type": "tester"}}]});
        let (page, sent, agent) = map(json!({"e": "pv", "eid": "e-1", "dtm": "1780000000000", "stm": "1780000000500",
            "uid": "u-1", "duid": "d-1", "url": "https://s.example/p", "page": "Pricing", "refr": "https://news.example/",
            "tv": "node-4.8.0", "p": "srv", "aid": "tw_1", "ip": "203.0.113.9", "ua": "Agent/1", "cx": b64(&context)}))
        .unwrap();
        assert_eq!(
            (page.name.as_deref(), page.event_id.as_deref()),
            (Some("page_view"), Some("e-1"))
        );
        assert_eq!(
            (page.user_id.as_deref(), page.anonymous_id.as_deref()),
            (Some("u-1"), Some("d-1"))
        );
        assert_eq!(
            page.timestamp.unwrap().to_epoch_millis(),
            Some(1_780_000_000_000)
        );
        assert_eq!(sent.unwrap().to_epoch_millis(), Some(1_780_000_000_500));
        assert_eq!(agent.as_deref(), Some("Agent/1"));
        let p = &page.properties;
        assert_eq!(
            (&p["title"], &p["referrer"], &p["platform"]),
            (
                &json!("Pricing"),
                &json!("https://news.example/"),
                &json!("srv")
            )
        );
        assert_eq!(
            (&p["library.name"], &p["library.version"]),
            (&json!("node"), &json!("4.8.0"))
        );
        assert_eq!(p["context.user"], json!({"type": "tester"}));
        assert!(!p.contains_key("aid") && !p.contains_key("ip"));

        let (structured, ..) = map(json!({"e": "se", "se_ca": "shop", "se_ac": "add-to-basket", "se_la": "sku-1", "se_va": "2.5", "duid": "d"})).unwrap();
        assert_eq!(structured.name.as_deref(), Some("add-to-basket"));
        assert_eq!(
            (
                &structured.properties["category"],
                &structured.properties["value"]
            ),
            (&json!("shop"), &json!(2.5))
        );

        let unstruct = json!({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": "iglu:com.acme/viewed_product/jsonschema/1-0-0", "data": {"sku": "a-1", "price": 9.5}}});
        let (viewed, ..) = map(json!({"e": "ue", "ue_px": b64(&unstruct), "duid": "d"})).unwrap();
        assert_eq!(viewed.name.as_deref(), Some("viewed_product"));
        assert_eq!(
            (&viewed.properties["sku"], &viewed.properties["price"]),
            (&json!("a-1"), &json!(9.5))
        );
        assert_eq!(
            viewed.properties["schema"],
            "iglu:com.acme/viewed_product/jsonschema/1-0-0"
        );
        let (same, ..) =
            map(json!({"e": "ue", "ue_pr": unstruct.to_string(), "duid": "d"})).unwrap();
        assert_eq!(same.name.as_deref(), Some("viewed_product"));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            map(json!({"duid": "d"})).err(),
            Some(MapError::UnknownEvent)
        );
        assert_eq!(
            map(json!({"e": "zz", "duid": "d"})).err(),
            Some(MapError::UnknownEvent)
        );
        assert_eq!(
            map(json!({"e": "se", "duid": "d"})).err(),
            Some(MapError::UnknownEvent)
        );
        assert_eq!(
            map(json!({"e": "pv"})).err(),
            Some(MapError::MissingIdentity)
        );
        assert_eq!(
            map(json!({"e": "ue", "ue_px": "!!", "duid": "d"})).err(),
            Some(MapError::BadPayload)
        );
        assert_eq!(
            map(json!({"e": "ue", "duid": "d"})).err(),
            Some(MapError::BadPayload)
        );
    }
}
