//! Stage 3b of the intake: a request body (unwrapped, as text) read as its
//! API shapes it — what it claims (app, key, site domains), its events still
//! raw, its `sent_at` (pure; fuzzed by the `gateway_body` target).
//!
//! | API | body | key |
//! |---|---|---|
//! | native, Segment batch | `{"app_id", "write_key", "events" / "batch", "sent_at"}` | `write_key` / `writeKey` |
//! | Segment single message | one message | `writeKey` |
//! | PostHog | a batch, one event or an array (`posthog.rs`); an object with `events` and no `batch` is Amplitude's | `api_key`, `token`, `properties.token` |
//! | Amplitude | `{"api_key", "events"}` | `api_key` |
//! | Mixpanel | one object or an array | `properties.token`, `$token` |
//! | Snowplow | `payload_data`, or the pixel's one event | `aid` |
//! | Umami | one `{"type", "payload"}` object | `payload.website` |
//! | Plausible | one event | none: its site domains (400 `missing_domain` without one) |

use crate::error::GatewayError;
use crate::validate::{valid_app_id, Api};
use crate::{amplitude, decode, mixpanel, plausible, posthog, snowplow, umami};
use serde_json::value::RawValue;

/// A decoded batch: what it claims and its raw events.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The API whose body this is (the route's, or Amplitude's on `/batch`).
    pub api: Api,
    /// The body's `app_id`, if any.
    pub claimed_app: Option<String>,
    /// The body's write key, if any.
    pub body_key: Option<String>,
    /// Site domains the body names instead of a key (Plausible), normalised, in order.
    pub domains: Vec<String>,
    /// The events, each still raw JSON.
    pub events: Vec<&'a RawValue>,
    /// The batch's `sent_at`, if any.
    pub sent_at: Option<&'a RawValue>,
}

impl<'a> Decoded<'a> {
    /// Events of `api` under a key (or none), nothing else claimed.
    fn keyed(api: Api, body_key: Option<String>, events: Vec<&'a RawValue>) -> Self {
        Decoded {
            api,
            claimed_app: None,
            body_key,
            domains: Vec::new(),
            events,
            sent_at: None,
        }
    }
}

fn malformed(err: serde_json::Error) -> GatewayError {
    GatewayError::MalformedBody(err.to_string())
}

/// The body as one JSON object (an array is refused, though serde would read
/// a struct from one).
fn one_object<'a>(text: &'a str, what: &str) -> Result<&'a RawValue, GatewayError> {
    if !text.trim_start().starts_with('{') {
        return Err(GatewayError::MalformedBody(format!(
            "{what} is one JSON object"
        )));
    }
    serde_json::from_str(text).map_err(malformed)
}

#[derive(serde::Deserialize)]
struct BodyKey {
    #[serde(default, alias = "writeKey")]
    write_key: Option<String>,
}

/// The batch of `text` as `api` shapes it.
pub fn decode(text: &str, api: Api) -> Result<Decoded<'_>, GatewayError> {
    let decoded = match api {
        Api::Native | Api::Segment(None) => {
            let batch = decode::parse_batch(text)?;
            Decoded {
                claimed_app: batch.app_id,
                sent_at: batch.sent_at,
                ..Decoded::keyed(api, batch.write_key, batch.events)
            }
        }
        Api::Segment(Some(_)) => {
            let key: BodyKey = serde_json::from_str(text).map_err(malformed)?;
            let message: &RawValue = serde_json::from_str(text).map_err(malformed)?;
            Decoded::keyed(api, key.write_key, vec![message])
        }
        Api::PostHog if amplitude::is_upload(text) => return decode(text, Api::Amplitude),
        Api::PostHog => {
            let body = posthog::parse_body(text).map_err(malformed)?;
            Decoded {
                sent_at: body.sent_at,
                ..Decoded::keyed(api, body.key, body.events)
            }
        }
        Api::Amplitude => {
            let body = amplitude::parse_body(text).map_err(malformed)?;
            Decoded::keyed(api, body.key, body.events)
        }
        Api::Mixpanel(_) => {
            let body = mixpanel::parse_body(text).map_err(malformed)?;
            Decoded::keyed(api, body.key, body.events)
        }
        Api::Snowplow(_) => {
            let body = snowplow::parse_body(text).map_err(malformed)?;
            Decoded::keyed(api, body.key, body.events)
        }
        Api::Umami => {
            let event = one_object(text, "an Umami request")?;
            let site: umami::Website = serde_json::from_str(text).map_err(malformed)?;
            Decoded::keyed(api, site.key(), vec![event])
        }
        Api::Plausible => {
            let event = one_object(text, "a Plausible event")?;
            let site: plausible::Site = serde_json::from_str(text).map_err(malformed)?;
            let domains = plausible::domains(site.domain.as_deref());
            if domains.is_empty() {
                return Err(GatewayError::MissingDomain);
            }
            Decoded {
                domains,
                ..Decoded::keyed(api, None, vec![event])
            }
        }
    };
    if decoded
        .claimed_app
        .as_deref()
        .is_some_and(|app| !valid_app_id(app))
    {
        return Err(GatewayError::InvalidAppId);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn each_api_finds_its_key_and_events() {
        let cases: [(Api, &str, Option<&str>, usize); 8] = [
            (
                Api::Native,
                r#"{"write_key":"k1","events":[{},{}]}"#,
                Some("k1"),
                2,
            ),
            (
                Api::Segment(None),
                r#"{"writeKey":"k2","batch":[{}]}"#,
                Some("k2"),
                1,
            ),
            (
                Api::Segment(Some("track")),
                r#"{"writeKey":"k3","event":"x"}"#,
                Some("k3"),
                1,
            ),
            (
                Api::PostHog,
                r#"{"api_key":"k4","batch":[{},{},{}]}"#,
                Some("k4"),
                3,
            ),
            (
                Api::Amplitude,
                r#"{"api_key":"k5","events":[{}]}"#,
                Some("k5"),
                1,
            ),
            (
                Api::Mixpanel(mixpanel::Endpoint::Track),
                r#"[{"properties":{"token":"k6"}},{}]"#,
                Some("k6"),
                2,
            ),
            (
                Api::Snowplow(snowplow::Endpoint::Post),
                r#"{"schema":"s","data":[{"aid":"k7"}]}"#,
                Some("k7"),
                1,
            ),
            (
                Api::Umami,
                r#"{"type":"event","payload":{"website":"k8"}}"#,
                Some("k8"),
                1,
            ),
        ];
        for (api, text, key, events) in cases {
            let decoded = decode(text, api).unwrap();
            assert_eq!(
                (decoded.body_key.as_deref(), decoded.events.len()),
                (key, events),
                "{api:?}"
            );
        }
    }

    #[test]
    fn an_amplitude_upload_on_posthogs_batch_route_is_amplitudes() {
        let decoded = decode(r#"{"api_key":"k","events":[{}]}"#, Api::PostHog).unwrap();
        assert_eq!(decoded.api, Api::Amplitude);
        let posthog = decode(r#"{"api_key":"k","batch":[{}]}"#, Api::PostHog).unwrap();
        assert_eq!(posthog.api, Api::PostHog);
    }

    #[test]
    fn single_object_apis_refuse_arrays_and_plausible_needs_a_domain() {
        for api in [Api::Umami, Api::Plausible] {
            assert!(
                matches!(decode("[{}]", api), Err(GatewayError::MalformedBody(_))),
                "{api:?}"
            );
        }
        assert!(matches!(
            decode(r#"{"n":"x"}"#, Api::Plausible),
            Err(GatewayError::MissingDomain)
        ));
        let site = decode(r#"{"n":"x","d":"www.Shop.example"}"#, Api::Plausible).unwrap();
        assert_eq!(site.domains, ["shop.example"]);
    }
}
