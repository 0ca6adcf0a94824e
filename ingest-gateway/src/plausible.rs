//! Plausible events API (`POST /api/event`) → Tally events (pure; the route
//! is `router.rs`'s, the app lookup by domain `intake::authenticate`'s).
//!
//! One event per request, as Plausible's tracker sends it (short keys,
//! `Content-Type: text/plain`) or as its documented API spells it (long keys):
//!
//! | Plausible | Tally |
//! |---|---|
//! | `n` / `name` `pageview` | `page_view` |
//! | `n` / `name` `engagement` (time on page, sent when the page is hidden) | `engagement`: `e` → `engagement_ms`, `sd` → `scroll_depth` |
//! | other `n` / `name` (`Signup`, `Outbound Link: Click`, …) | the same name |
//! | `d` / `domain` | the app: the first listed domain that an app allows (`tally-admin app domains`) |
//! | `u` / `url` | `url`, and `path` (with the `#fragment` when `h` / `hashMode` is set) |
//! | `r` / `referrer` | `referrer` |
//! | `p` / `props` (or the older tracker's `m` / `meta` JSON text) | properties under their own names |
//! | `$` / `revenue` `{amount, currency}` | `revenue` (number), `currency` |
//! | `i` / `interactive` `false` | `interactive = false` |
//! | `w` (screen width) | `screen_width` |
//!
//! Identity: Plausible sends none; like Plausible, the visitor is a hash of
//! the day (UTC, of the gateway's receipt), the app, the client address (as
//! stored: anonymised per `TALLY_IP_MODE`) and the user agent —
//! [`visitor_id`] — stored as the anonymous id. It reveals nothing the row
//! does not already hold, rotates daily, and is the same on every gateway
//! process. Dropped: `v` (tracker version). No client event id exists (the
//! tracker never retries), so each request is one new event.

use serde::Deserialize;
use serde_json::{Map, Value};
use tally_schemas::event::IncomingEvent;
use tally_schemas::ids::normalize_domain;

/// One Plausible event as sent; short and long key forms both accepted.
#[derive(Debug, Deserialize, Default)]
pub struct Message {
    /// Event name.
    #[serde(default, alias = "n")]
    pub name: Option<String>,
    /// Page URL.
    #[serde(default, alias = "u")]
    pub url: Option<String>,
    /// Site domain(s), comma-separated.
    #[serde(default, alias = "d")]
    pub domain: Option<String>,
    /// Referrer.
    #[serde(default, alias = "r")]
    pub referrer: Option<Value>,
    /// Custom properties.
    #[serde(default, alias = "p")]
    pub props: Option<Value>,
    /// Custom properties as JSON text (older trackers).
    #[serde(default, alias = "m")]
    pub meta: Option<Value>,
    /// Revenue.
    #[serde(default, alias = "$")]
    pub revenue: Option<Value>,
    /// Interactive event (bounce rate).
    #[serde(default, alias = "i")]
    pub interactive: Option<Value>,
    /// Hash-based routing.
    #[serde(default, alias = "h", rename = "hashMode")]
    pub hash_mode: Option<Value>,
    /// Engagement time, ms.
    #[serde(default, rename = "e")]
    pub engagement: Option<Value>,
    /// Scroll depth, percent.
    #[serde(default, rename = "sd")]
    pub scroll_depth: Option<Value>,
    /// Screen width.
    #[serde(default, rename = "w")]
    pub width: Option<Value>,
}

/// Why a Plausible event cannot become a Tally event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No event name.
    MissingName,
    /// `props` / `meta` is neither an object nor JSON text of one.
    BadProps,
}

/// The domains a request names (`d`, comma-separated), normalised
/// (`tally_schemas::ids::normalize_domain`), in order; unusable ones skipped.
pub fn domains(message_domain: Option<&str>) -> Vec<String> {
    message_domain
        .unwrap_or_default()
        .split(',')
        .filter_map(normalize_domain)
        .collect()
}

/// The `d` / `domain` of a raw event, without parsing the rest.
#[derive(Debug, Deserialize, Default)]
pub struct Site {
    /// Site domain(s), comma-separated.
    #[serde(default, alias = "d")]
    pub domain: Option<String>,
}

/// The daily visitor (see the module header): `vendor::visitor_id`.
pub fn visitor_id(app_id: &str, day: i64, ip: Option<&str>, user_agent: Option<&str>) -> String {
    crate::vendor::visitor_id("plausible-visitor", app_id, day, ip, user_agent)
}

fn truthy(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Bool(true)))
        || value.and_then(Value::as_i64) == Some(1)
        || value.and_then(Value::as_str) == Some("true")
}

fn number(value: Option<Value>) -> Option<Value> {
    match value? {
        Value::Number(n) => Some(Value::Number(n)),
        Value::String(text) => text.trim().parse::<f64>().ok().map(Value::from),
        _ => None,
    }
}

/// The path of `url` (with its fragment in hash mode).
fn path_of(url: &str, hash_mode: bool) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let mut path = parsed.path().to_owned();
    if hash_mode {
        if let Some(fragment) = parsed.fragment() {
            path.push('#');
            path.push_str(fragment);
        }
    }
    Some(path)
}

/// The Tally event of `message` for the visitor `anonymous_id`.
pub fn to_event(message: Message, anonymous_id: String) -> Result<IncomingEvent, MapError> {
    let kind = message
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or(MapError::MissingName)?;
    let mut properties = match message.props.or(message.meta) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(MapError::BadProps),
        },
        Some(_) => return Err(MapError::BadProps),
    };
    let hash_mode = truthy(message.hash_mode.as_ref());
    if let Some(url) = message.url.filter(|url| !url.is_empty()) {
        if let Some(path) = path_of(&url, hash_mode) {
            properties.insert("path".into(), Value::String(path));
        }
        properties.insert("url".into(), Value::String(url));
    }
    if let Some(Value::String(referrer)) = message.referrer {
        if !referrer.is_empty() {
            properties.insert("referrer".into(), Value::String(referrer));
        }
    }
    if let Some(Value::Object(mut revenue)) = message.revenue {
        if let Some(amount) = number(revenue.remove("amount")) {
            properties.insert("revenue".into(), amount);
        }
        if let Some(currency) = revenue.remove("currency") {
            properties.insert("currency".into(), currency);
        }
    }
    if message.interactive == Some(Value::Bool(false)) {
        properties.insert("interactive".into(), Value::Bool(false));
    }
    if let Some(width) = number(message.width) {
        properties.insert("screen_width".into(), width);
    }
    let name = match kind.as_str() {
        "pageview" => "page_view".to_owned(),
        "engagement" => {
            if let Some(ms) = number(message.engagement) {
                properties.insert("engagement_ms".into(), ms);
            }
            if let Some(depth) = number(message.scroll_depth) {
                properties.insert("scroll_depth".into(), depth);
            }
            kind
        }
        _ => kind,
    };
    Ok(IncomingEvent {
        name: Some(name),
        user_id: None,
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
    fn the_trackers_short_keys_and_the_apis_long_keys_mean_the_same() {
        let short = map(
            json!({"n": "pageview", "u": "https://shop.example/p?q=1#x", "d": "shop.example",
            "r": "https://news.example/", "p": {"plan": "pro"}, "v": 36}),
        )
        .unwrap();
        let long = map(json!({"name": "pageview", "url": "https://shop.example/p?q=1#x", "domain": "shop.example",
            "referrer": "https://news.example/", "props": {"plan": "pro"}}))
        .unwrap();
        assert_eq!(format!("{short:?}"), format!("{long:?}"));
        assert_eq!(short.name.as_deref(), Some("page_view"));
        assert_eq!(short.properties["path"], "/p");
        assert_eq!(short.properties["referrer"], "https://news.example/");
        assert_eq!(short.properties["plan"], "pro");
        assert!(!short.properties.contains_key("v"));
    }

    #[test]
    fn revenue_engagement_hash_mode_and_old_meta() {
        let event = map(
            json!({"n": "Purchase", "u": "https://s.example/#/cart", "h": 1,
            "$": {"amount": "19.99", "currency": "EUR"}, "i": false, "m": "{\"sku\":\"a-1\"}"}),
        )
        .unwrap();
        assert_eq!(event.properties["revenue"], 19.99);
        assert_eq!(event.properties["currency"], "EUR");
        assert_eq!(event.properties["path"], "/#/cart");
        assert_eq!(event.properties["interactive"], false);
        assert_eq!(event.properties["sku"], "a-1");
        let engagement =
            map(json!({"n": "engagement", "u": "https://s.example/", "e": 5120, "sd": 80}))
                .unwrap();
        assert_eq!(engagement.name.as_deref(), Some("engagement"));
        assert_eq!(engagement.properties["engagement_ms"], 5120);
        assert_eq!(engagement.properties["scroll_depth"], 80);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            map(json!({"u": "https://s.example/"})).err(),
            Some(MapError::MissingName)
        );
        assert_eq!(map(json!({"n": " "})).err(), Some(MapError::MissingName));
        assert_eq!(
            map(json!({"n": "x", "p": [1]})).err(),
            Some(MapError::BadProps)
        );
        assert_eq!(
            map(json!({"n": "x", "m": "not json"})).err(),
            Some(MapError::BadProps)
        );
    }

    #[test]
    fn domains_are_normalised_and_split() {
        assert_eq!(
            domains(Some(" WWW.Shop.example , b.example.,bad/")),
            ["shop.example", "b.example"]
        );
        assert!(domains(None).is_empty());
    }
}
