//! The `events_dlq` record: an event some stage refused, kept for inspection and
//! replay rather than silently dropped.
//!
//! The gateway writes one per rejected event of an authenticated batch (requests
//! refused as a whole — bad key, unreadable body — are answered, not stored: an
//! unauthenticated sender must not be able to fill the topic). The aggregator
//! writes one per message it cannot decode. The record is JSON so operators can
//! read it with any Kafka tool; `payload` is the event as received, cut to
//! [`MAX_PAYLOAD_BYTES`] at a character boundary.

use serde::{Deserialize, Serialize};

/// Longest `payload` kept; longer ones are cut and flagged `truncated`.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Which stage refused it: `gateway` or `aggregator`.
    pub stage: String,
    /// Machine-readable reason (the gateway's rejection code, or the decoder's).
    pub reason: String,
    /// Authenticated app (empty when the stage could not tell).
    pub app_id: String,
    /// When it was refused, Unix milliseconds.
    pub at_ms: i64,
    /// Position in its batch (gateway), or Kafka coordinates (aggregator).
    pub origin: String,
    /// The event as received (UTF-8; invalid bytes replaced).
    pub payload: String,
    /// Whether `payload` was cut.
    pub truncated: bool,
}

impl DeadLetter {
    /// A record whose payload is cut to [`MAX_PAYLOAD_BYTES`] if needed.
    pub fn new(
        stage: &str,
        reason: &str,
        app_id: &str,
        at_ms: i64,
        origin: String,
        payload: &str,
    ) -> Self {
        let mut end = payload.len().min(MAX_PAYLOAD_BYTES);
        while !payload.is_char_boundary(end) {
            end -= 1;
        }
        DeadLetter {
            stage: stage.to_owned(),
            reason: reason.to_owned(),
            app_id: app_id.to_owned(),
            at_ms,
            origin,
            payload: payload[..end].to_owned(),
            truncated: end < payload.len(),
        }
    }

    /// Kafka key: the app, so one app's refusals stay in order.
    pub fn key(&self) -> &str {
        &self.app_id
    }

    /// JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record written by [`DeadLetter::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_payloads_are_cut_on_a_char_boundary() {
        let payload = format!("{}é{}", "a".repeat(MAX_PAYLOAD_BYTES - 1), "b".repeat(10));
        let letter = DeadLetter::new("gateway", "event_too_large", "app", 1, "0".into(), &payload);
        assert!(letter.truncated);
        assert_eq!(letter.payload.len(), MAX_PAYLOAD_BYTES - 1);
        let round = DeadLetter::decode(&letter.encode()).unwrap();
        assert_eq!(round, letter);
    }

    #[test]
    fn short_payloads_are_kept_whole() {
        let letter = DeadLetter::new(
            "gateway",
            "missing_name",
            "app",
            1,
            "3".into(),
            r#"{"x":1}"#,
        );
        assert!(!letter.truncated);
        assert_eq!(letter.payload, r#"{"x":1}"#);
    }
}
