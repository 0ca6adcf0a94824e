//! Small rules every vendor mapping shares (pure leaf: `segment.rs`,
//! `posthog.rs`, `amplitude.rs`, `mixpanel.rs`, `plausible.rs`, `umami.rs`,
//! `snowplow.rs` use it).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The daily visitor of trackers that send no identity (Plausible, Umami): a
/// hash (16 hex digits) of `scheme`, the app, the day (UTC, of the gateway's
/// receipt), the client address as stored (anonymised per `TALLY_IP_MODE`)
/// and the user agent. It reveals nothing the row does not already hold,
/// rotates daily, and is the same on every gateway process.
pub fn visitor_id(
    scheme: &str,
    app_id: &str,
    day: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> String {
    let mut hash = Sha256::new();
    for part in [
        scheme,
        app_id,
        &day.to_string(),
        ip.unwrap_or_default(),
        user_agent.unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// An id as text: a non-empty string, or a number written out; anything
/// else (empty, `null`, an object…) is no id.
pub fn id_text(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Moves property `from` to `to` unless `to` is already set.
pub fn rename(properties: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = properties.remove(from) {
        properties.entry(to).or_insert(value);
    }
}

/// The object inside `value`, if it is one.
pub fn object(value: Option<Value>) -> Option<Map<String, Value>> {
    match value? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_non_empty_strings_or_numbers() {
        assert_eq!(id_text(Some(json!("u-1"))).as_deref(), Some("u-1"));
        assert_eq!(id_text(Some(json!(42))).as_deref(), Some("42"));
        for none in [json!(""), json!(null), json!({}), json!([1]), json!(true)] {
            assert_eq!(id_text(Some(none.clone())), None, "{none}");
        }
    }

    #[test]
    fn the_visitor_rotates_daily_and_depends_on_every_part() {
        let base = visitor_id("s", "app", 20_000, Some("192.0.2.0"), Some("UA"));
        assert_eq!(base.len(), 16);
        assert_eq!(
            base,
            visitor_id("s", "app", 20_000, Some("192.0.2.0"), Some("UA"))
        );
        for other in [
            visitor_id("t", "app", 20_000, Some("192.0.2.0"), Some("UA")),
            visitor_id("s", "app2", 20_000, Some("192.0.2.0"), Some("UA")),
            visitor_id("s", "app", 20_001, Some("192.0.2.0"), Some("UA")),
            visitor_id("s", "app", 20_000, Some("192.0.2.1"), Some("UA")),
            visitor_id("s", "app", 20_000, Some("192.0.2.0"), Some("UA2")),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn rename_keeps_an_existing_target() {
        let mut map = Map::new();
        map.insert("a".into(), json!(1));
        map.insert("b".into(), json!(2));
        rename(&mut map, "a", "b");
        assert_eq!(Value::Object(map), json!({"b": 2}));
    }
}
