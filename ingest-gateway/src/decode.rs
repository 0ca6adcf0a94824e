//! Request body decoding, before any per-event validation (pure; fuzzed by
//! property tests).
//!
//! 1. `Content-Encoding: gzip` bodies are inflated with a cap on the inflated
//!    size (a gzip bomb is refused as soon as it passes the cap, never buffered).
//! 2. Invalid UTF-8 refuses the request (400 `invalid_utf8`).
//! 3. Lone UTF-16 surrogate escapes (`"\ud800"`), which JSON parsers reject,
//!    are replaced by `\ufffd` (same length) instead of failing the batch.
//! 4. The envelope (`app_id`, `write_key`, `sent_at`, the event list) is parsed;
//!    events stay raw JSON so that each is parsed — and rejected — on its own.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Inflated body larger than the cap.
    #[error("body larger than {0} bytes once decompressed")]
    TooLarge(usize),
    /// Not valid gzip.
    #[error("invalid gzip body")]
    BadGzip,
    /// Not UTF-8.
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    /// A base64 payload that is not base64 (`wrapping.rs`).
    #[error("invalid base64 payload")]
    BadBase64,
    /// A `compression` scheme the gateway does not know (`wrapping.rs`).
    #[error("unsupported compression {0:?}: send gzip, base64 or plain JSON")]
    UnsupportedCompression(String),
    /// Not JSON of the expected shape.
    #[error("{0}")]
    Malformed(String),
}

/// Inflates a gzip body, refusing more than `limit` inflated bytes.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::BadGzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(out)
}

fn hex4(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..4)?).ok()?;
    u16::from_str_radix(text, 16).ok()
}

/// Replaces unpaired `\uD800`–`\uDFFF` escapes inside JSON strings by `\uFFFD`.
pub fn repair_surrogates(json: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let (mut i, mut in_string) = (0, false);
    while i < json.len() {
        match json[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if json.get(i + 1) == Some(&b'u') {
                    if let Some(unit) = hex4(&json[(i + 2).min(json.len())..]) {
                        let paired = (0xD800..0xDC00).contains(&unit)
                            && json.get(i + 6) == Some(&b'\\')
                            && json.get(i + 7) == Some(&b'u')
                            && hex4(&json[(i + 8).min(json.len())..])
                                .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                        if paired {
                            i += 12;
                            continue;
                        }
                        if (0xD800..0xE000).contains(&unit) {
                            let buffer = out.get_or_insert_with(|| json.to_vec());
                            buffer[i + 2..i + 6].copy_from_slice(b"fffd");
                        }
                        i += 6;
                        continue;
                    }
                }
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        Some(repaired) => Cow::Owned(repaired),
        None => Cow::Borrowed(json),
    }
}

/// Native batch envelope with raw events.
#[derive(Debug, Deserialize)]
pub struct RawBatch<'a> {
    /// Optional app id (must match the key's).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Write key in the body.
    #[serde(default, alias = "writeKey")]
    pub write_key: Option<String>,
    /// Client send time (raw: parsed with the events).
    #[serde(default, borrow, alias = "sentAt")]
    pub sent_at: Option<&'a RawValue>,
    /// Events, unparsed.
    #[serde(borrow, alias = "batch")]
    pub events: Vec<&'a RawValue>,
}

/// Checks UTF-8, repairs surrogates; returns the text to parse.
pub fn to_text(body: &[u8]) -> Result<Cow<'_, str>, DecodeError> {
    std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(match repair_surrogates(body) {
        // Replacing an ASCII escape by another keeps the text valid UTF-8.
        Cow::Borrowed(bytes) => {
            Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?)
        }
        Cow::Owned(bytes) => {
            Cow::Owned(String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?)
        }
    })
}

/// Parses the batch envelope of a repaired body.
pub fn parse_batch(text: &str) -> Result<RawBatch<'_>, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_round_trip_and_bomb_refused() {
        assert_eq!(
            gunzip(&gzip(b"{\"events\":[]}"), 100).unwrap(),
            b"{\"events\":[]}"
        );
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        assert_eq!(
            gunzip(&bomb, 1024 * 1024),
            Err(DecodeError::TooLarge(1024 * 1024))
        );
        assert_eq!(gunzip(b"not gzip", 100), Err(DecodeError::BadGzip));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let body = br#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\\ud800","d":"\udc00"}"#;
        let repaired = repair_surrogates(body);
        assert_eq!(
            &*repaired,
            br#"{"a":"x\ufffdy","b":"\ud83d\ude00","c":"\\ud800","d":"\ufffd"}"#
        );
        let value: serde_json::Value = serde_json::from_slice(&repaired).unwrap();
        assert_eq!(value["a"], "x\u{fffd}y");
        assert_eq!(value["b"], "😀");
        assert!(matches!(repair_surrogates(b"{\"ok\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn envelope_keeps_events_raw() {
        let batch = parse_batch(r#"{"app_id":"a","events":[{"name":1},{"name":"x"}]}"#).unwrap();
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[0].get(), r#"{"name":1}"#);
        assert!(parse_batch(r#"{"events":{}}"#).is_err());
        assert_eq!(to_text(b"\"\xff\"").unwrap_err(), DecodeError::InvalidUtf8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Decoder fuzzing: arbitrary bytes never panic, and repair never changes the length.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(repair_surrogates(&bytes).len(), bytes.len());
            if let Ok(text) = to_text(&bytes) {
                let _ = parse_batch(&text);
            }
            let _ = gunzip(&bytes, 4096);
        }

        /// Any batch decodes to its events: names of any text survive, a lone
        /// surrogate escape becomes U+FFFD (also after an escaped backslash or a
        /// control-character escape), gzip is transparent.
        #[test]
        fn batches_decode_to_their_events(
            names in proptest::collection::vec(any::<String>(), 0..8),
            lone in proptest::collection::vec(any::<bool>(), 8),
            gzipped in any::<bool>(),
        ) {
            let mut body = String::from(r#"{"app_id":"a","events":["#);
            let mut expected = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let mut quoted = serde_json::to_string(name).unwrap();
                let mut want = name.clone();
                if lone[i] {
                    quoted.insert_str(quoted.len() - 1, "\\udc00");
                    want.push('\u{fffd}');
                }
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!(r#"{{"name":{quoted}}}"#));
                expected.push(want);
            }
            body.push_str("]}");
            let bytes = if gzipped {
                gunzip(&gzip(body.as_bytes()), body.len()).unwrap()
            } else {
                body.clone().into_bytes()
            };
            let text = to_text(&bytes).unwrap();
            prop_assert_eq!(text.len(), body.len());
            let batch = parse_batch(&text).unwrap();
            prop_assert_eq!(batch.app_id.as_deref(), Some("a"));
            let got: Vec<String> = batch
                .events
                .iter()
                .map(|raw| {
                    let event: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
                    event["name"].as_str().unwrap().to_owned()
                })
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
