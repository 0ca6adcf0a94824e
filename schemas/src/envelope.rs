//! The enriched event as it travels on Kafka, and its versioned wire encoding.
//!
//! Every Kafka message value starts with one *format byte* naming the encoding
//! of the rest. Version 1 ([`FORMAT_JSON_V1`]) is JSON; version 2
//! ([`binary::FORMAT_BIN_V2`]) is a compact binary encoding
//! whose fields older decoders skip when they do not know them. Consumers
//! dispatch on the byte, so old messages stay readable and a producer can
//! switch only after every consumer knows the new byte ([`Format`]). Unknown
//! bytes are a [`DecodeError`], never a panic (the aggregator sends such
//! messages to the dead-letter topic).

pub mod binary;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Format byte of the JSON encoding (version 1 of the envelope).
pub const FORMAT_JSON_V1: u8 = 1;

/// An accepted, enriched event. Field names are part of the wire contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id: the client's event id when given, else a server-made UUIDv7.
    pub event_id: String,
    /// App (tenant) the event belongs to.
    pub app_id: String,
    /// Event name.
    pub name: String,
    /// `user_id` if known, else `anonymous_id`: the identity used for uniques.
    pub distinct_id: String,
    /// Identified user, if the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Anonymous id, if the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Event time in epoch milliseconds (client time, or `received_at` when absent).
    pub timestamp_ms: i64,
    /// When the gateway received the batch, epoch milliseconds.
    pub received_at_ms: i64,
    /// When the client says it sent the batch, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
    /// Client IP as seen by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Flat map of JSON scalars.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// What the gateway derived from the request (absent in older messages).
    #[serde(default, skip_serializing_if = "Enrichment::is_empty")]
    pub enrichment: Enrichment,
    /// Retention class of the app when the gateway accepted the event: 0 (or
    /// absent) = the installation's `TALLY_RETENTION_DAYS`, else the app's
    /// override in days. Rows keep the class they were written with.
    #[serde(default, skip_serializing_if = "is_default_class")]
    pub retention_days: u16,
}

/// The default retention class (0) is not written.
fn is_default_class(days: &u16) -> bool {
    *days == 0
}

/// Server-side enrichment. Empty strings mean "unknown".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enrichment {
    /// ISO country code from geo-IP.
    pub country: String,
    /// Region / state from geo-IP.
    pub region: String,
    /// City from geo-IP.
    pub city: String,
    /// Browser name from the user agent.
    pub browser: String,
    /// Browser version.
    pub browser_version: String,
    /// Operating system.
    pub os: String,
    /// `desktop`, `mobile`, `bot` or `other`.
    pub device_type: String,
    /// The user agent is a known bot (flagged, not dropped).
    pub is_bot: bool,
    /// Host of the `url` property.
    pub url_host: String,
    /// Path of the `url` property (or the `path` property).
    pub url_path: String,
    /// Host of the `referrer` property.
    pub referrer_host: String,
    /// `utm_source` (property or URL query).
    pub utm_source: String,
    /// `utm_medium`.
    pub utm_medium: String,
    /// `utm_campaign`.
    pub utm_campaign: String,
    /// `utm_term`.
    pub utm_term: String,
    /// `utm_content`.
    pub utm_content: String,
}

impl Enrichment {
    /// Nothing was derived.
    pub fn is_empty(&self) -> bool {
        self == &Enrichment::default()
    }
}

/// Why a Kafka message value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value was empty.
    #[error("empty message")]
    Empty,
    /// The first byte names no encoding this build knows.
    #[error("unknown envelope format byte {0}")]
    UnknownFormat(u8),
    /// The body did not parse in the named encoding.
    #[error("malformed JSON envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary (format 2) envelope is malformed.
    #[error("malformed binary envelope: {0}")]
    Binary(String),
}

/// The encoding a producer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Format 1, JSON (readable by every release).
    #[default]
    Json,
    /// Format 2, binary (readable by releases that know format byte 2).
    Binary,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(Format::Json),
            "binary" => Ok(Format::Binary),
            other => Err(format!("expected json or binary, got {other:?}")),
        }
    }
}

impl Envelope {
    /// Encodes with the current default format ([`FORMAT_JSON_V1`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(FORMAT_JSON_V1);
        // Serializing a struct of strings, integers and a JSON map cannot fail.
        serde_json::to_writer(&mut out, self).unwrap_or_default();
        out
    }

    /// Encodes in `format`.
    pub fn encode_as(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => self.encode(),
            Format::Binary => binary::encode(self),
        }
    }

    /// Decodes any format this build knows.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&format, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match format {
            FORMAT_JSON_V1 => Ok(serde_json::from_slice(body)?),
            binary::FORMAT_BIN_V2 => binary::decode(body),
            other => Err(DecodeError::UnknownFormat(other)),
        }
    }

    /// Kafka message key: keeps one user's events of one app on one partition, in order.
    pub fn partition_key(&self) -> String {
        format!("{}\u{1f}{}", self.app_id, self.distinct_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        let mut properties = Map::new();
        properties.insert("url".into(), Value::from("/home"));
        properties.insert("price".into(), Value::from(9.5));
        Envelope {
            event_id: "0193a1b2-0000-7000-8000-000000000001".into(),
            app_id: "APP-1".into(),
            name: "page_view".into(),
            distinct_id: "U1".into(),
            user_id: Some("U1".into()),
            anonymous_id: None,
            timestamp_ms: 1_700_000_000_000,
            received_at_ms: 1_700_000_000_050,
            sent_at_ms: Some(1_700_000_000_040),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("curl/8".into()),
            properties,
            enrichment: Enrichment {
                country: "FR".into(),
                is_bot: true,
                ..Enrichment::default()
            },
            retention_days: 90,
        }
    }

    #[test]
    fn round_trips_and_starts_with_format_byte() {
        let envelope = sample();
        let bytes = envelope.encode();
        assert_eq!(bytes[0], FORMAT_JSON_V1);
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
    }

    /// Found by the `gateway_body` fuzz target: a 90-digit integer property, parsed
    /// from the client's JSON as a float, came back one ULP off after encode/decode
    /// unless serde_json parses floats exactly (`float_roundtrip`).
    #[test]
    fn float_properties_round_trip_exactly() {
        let mut envelope = sample();
        let long = "8".to_owned() + &"7".repeat(89);
        for text in [
            long.as_str(),
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            "123456789012345678901234567890",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            envelope.properties.insert("v".into(), value.clone());
            let back = Envelope::decode(&envelope.encode()).unwrap();
            assert_eq!(back.properties["v"], value, "{text}");
        }
    }

    #[test]
    fn reads_messages_written_before_enrichment_existed() {
        let old = br#"{"event_id":"e","app_id":"a","name":"n","distinct_id":"u","timestamp_ms":1,"received_at_ms":2}"#;
        let mut bytes = vec![FORMAT_JSON_V1];
        bytes.extend_from_slice(old);
        let envelope = Envelope::decode(&bytes).unwrap();
        assert!(envelope.enrichment.is_empty());
    }

    #[test]
    fn the_binary_format_is_smaller_and_needs_its_required_fields() {
        let envelope = sample();
        let (json, binary) = (envelope.encode(), envelope.encode_as(Format::Binary));
        assert!(
            binary.len() * 10 < json.len() * 7,
            "{} vs {}",
            binary.len(),
            json.len()
        );
        // Only the format byte and a length of 0: no required field.
        assert!(matches!(
            Envelope::decode(&[binary::FORMAT_BIN_V2, 0]),
            Err(DecodeError::Binary(_))
        ));
        assert_eq!("binary".parse::<Format>(), Ok(Format::Binary));
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn rejects_unknown_format_and_garbage() {
        assert!(matches!(Envelope::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Envelope::decode(&[9, b'{']),
            Err(DecodeError::UnknownFormat(9))
        ));
        assert!(matches!(
            Envelope::decode(&[FORMAT_JSON_V1, b'{']),
            Err(DecodeError::Json(_))
        ));
    }

    /// A JSON scalar as the gateway stores properties (non-finite floats have
    /// no JSON form: `Value::from` makes them null).
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ]
    }

    fn enrichment() -> impl Strategy<Value = Enrichment> {
        (
            proptest::collection::vec(any::<String>(), 15),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(texts, is_bot, empty)| {
                if empty {
                    return Enrichment::default();
                }
                let mut t = texts.into_iter();
                let mut next = || t.next().unwrap_or_default();
                Enrichment {
                    country: next(),
                    region: next(),
                    city: next(),
                    browser: next(),
                    browser_version: next(),
                    os: next(),
                    device_type: next(),
                    is_bot,
                    url_host: next(),
                    url_path: next(),
                    referrer_host: next(),
                    utm_source: next(),
                    utm_medium: next(),
                    utm_campaign: next(),
                    utm_term: next(),
                    utm_content: next(),
                }
            })
    }

    /// Any envelope: every field, optional ones present or not, any text.
    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            proptest::collection::vec(any::<String>(), 4),
            proptest::collection::vec(proptest::option::of(any::<String>()), 4),
            (
                any::<i64>(),
                any::<i64>(),
                proptest::option::of(any::<i64>()),
            ),
            proptest::collection::btree_map(any::<String>(), scalar(), 0..6),
            enrichment(),
        )
            .prop_map(|(texts, optional, times, properties, enrichment)| {
                let [event_id, app_id, name, distinct_id]: [String; 4] =
                    texts.try_into().unwrap_or_default();
                let [user_id, anonymous_id, ip, user_agent]: [Option<String>; 4] =
                    optional.try_into().unwrap_or_default();
                let (timestamp_ms, received_at_ms, sent_at_ms) = times;
                Envelope {
                    event_id,
                    app_id,
                    name,
                    distinct_id,
                    user_id,
                    anonymous_id,
                    timestamp_ms,
                    received_at_ms,
                    sent_at_ms,
                    ip,
                    user_agent,
                    properties: properties.into_iter().collect(),
                    enrichment,
                    retention_days: 0,
                }
            })
    }

    /// How an encoding is damaged: cut short, or one byte replaced.
    #[derive(Debug, Clone)]
    enum Damage {
        Truncate(usize),
        Replace(usize, u8),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            any::<usize>().prop_map(Damage::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Replace(at, byte)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any envelope survives encode → decode unchanged, and a damaged
        /// encoding never decodes to something else by accident: a truncated
        /// one is refused (the JSON object is unfinished), and whatever a
        /// mutated one decodes to is itself an envelope that round-trips.
        #[test]
        fn any_envelope_round_trips_and_damaged_encodings_fail_or_decode_consistently(
            envelope in envelope(),
            damage in damage(),
            binary in any::<bool>(),
        ) {
            let format = if binary { Format::Binary } else { Format::Json };
            let bytes = envelope.encode_as(format);
            prop_assert_eq!(bytes[0], if binary { binary::FORMAT_BIN_V2 } else { FORMAT_JSON_V1 });
            prop_assert_eq!(&Envelope::decode(&bytes).unwrap(), &envelope);
            match damage {
                Damage::Truncate(len) => {
                    let short = &bytes[..len % bytes.len()];
                    prop_assert!(Envelope::decode(short).is_err(), "{:?}", short);
                }
                Damage::Replace(at, byte) => {
                    let mut mutated = bytes.clone();
                    mutated[at % bytes.len()] = byte;
                    if let Ok(decoded) = Envelope::decode(&mutated) {
                        prop_assert_eq!(Envelope::decode(&decoded.encode_as(format)).unwrap(), decoded);
                    }
                }
            }
        }

        /// A newer producer's fields (any number this build does not know,
        /// any wire type) are skipped: the envelope this build knows is read.
        #[test]
        fn unknown_binary_fields_are_skipped(
            envelope in envelope(),
            number in 15u64..1_000,
            wire in 0u64..3,
            payload in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let known = envelope.encode_as(Format::Binary);
            // Re-frame the body with one extra field at the end.
            let mut reader_len = 1;
            while known[reader_len] & 0x80 != 0 { reader_len += 1; }
            let mut body = known[reader_len + 1..].to_vec();
            let push_varint = |out: &mut Vec<u8>, mut v: u64| {
                while v >= 0x80 { out.push((v as u8) | 0x80); v >>= 7; }
                out.push(v as u8);
            };
            push_varint(&mut body, number << 3 | wire);
            match wire {
                0 => push_varint(&mut body, payload.len() as u64 * 1_000_003),
                1 => body.extend_from_slice(&[7; 8]),
                _ => { push_varint(&mut body, payload.len() as u64); body.extend_from_slice(&payload); }
            }
            let mut framed = vec![binary::FORMAT_BIN_V2];
            push_varint(&mut framed, body.len() as u64);
            framed.extend_from_slice(&body);
            prop_assert_eq!(Envelope::decode(&framed).unwrap(), envelope);
        }

        #[test]
        fn round_trip_any_identity(app in "\\PC{1,20}", user in "\\PC{1,40}", ts in 0i64..4_000_000_000_000) {
            let mut envelope = sample();
            envelope.app_id = app;
            envelope.distinct_id = user;
            envelope.timestamp_ms = ts;
            prop_assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    }
}
