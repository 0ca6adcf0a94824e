//! The ClickHouse `events` row (see `migrations/clickhouse/0001_events.sql`).
//!
//! Column order here must equal the table's column order: rows are sent as
//! `RowBinary` without names (ClickHouse 18.16 lacks `RowBinaryWithNamesAndTypes`);
//! the column list is [`crate::columns::EVENT_ROW_COLUMNS`].
//! Properties are stored as parallel key/value arrays (18.16 has no `Map`);
//! non-string scalars are stored in their JSON text form.

use crate::envelope::Envelope;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// One raw event row. Times are UTC.
#[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Tenant; first in the sort key.
    pub app_id: String,
    /// `Date` (days since epoch) of `timestamp`; the partition key.
    pub event_date: u16,
    /// `DateTime` (seconds since epoch) of the event.
    pub timestamp: u32,
    /// Event time in epoch milliseconds (18.16 has no `DateTime64`).
    pub ts_ms: u64,
    /// `DateTime` the gateway received the event.
    pub received_at: u32,
    /// Unique event id.
    pub event_id: String,
    /// Event name.
    pub name: String,
    /// `user_id`, else `anonymous_id`.
    pub distinct_id: String,
    /// Identified user or empty.
    pub user_id: String,
    /// Anonymous id or empty.
    pub anonymous_id: String,
    /// Client IP or empty.
    pub ip: String,
    /// Client user agent or empty.
    pub user_agent: String,
    /// Property names, parallel to `prop_values`.
    pub prop_keys: Vec<String>,
    /// Property values as text.
    pub prop_values: Vec<String>,
    /// Kafka topic the event was read from.
    pub kafka_topic: String,
    /// Kafka partition the event was read from.
    pub kafka_partition: u32,
    /// Kafka offset of the event's message; with the partition, the row's
    /// position in the log (used for exactly-once writes).
    pub kafka_offset: u64,
    /// Enrichment columns (migration 0002), in table order.
    pub country: String,
    /// Region / state.
    pub region: String,
    /// City.
    pub city: String,
    /// Browser.
    pub browser: String,
    /// Browser version.
    pub browser_version: String,
    /// Operating system.
    pub os: String,
    /// `desktop`, `mobile`, `bot`, `other` or empty.
    pub device_type: String,
    /// 1 when the user agent is a known bot.
    pub is_bot: u8,
    /// Host of the page URL.
    pub url_host: String,
    /// Path of the page URL.
    pub url_path: String,
    /// Host of the referrer.
    pub referrer_host: String,
    /// UTM source.
    pub utm_source: String,
    /// UTM medium.
    pub utm_medium: String,
    /// UTM campaign.
    pub utm_campaign: String,
    /// UTM term.
    pub utm_term: String,
    /// UTM content.
    pub utm_content: String,
    /// Retention class (migration 0012): 0 = the installation's retention,
    /// else the app's override in days; with `event_date`, the partition.
    pub retention_days: u16,
}

/// Epoch milliseconds clamped into the range of ClickHouse `DateTime` (u32 seconds).
fn clamp_secs(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

/// Days since epoch of an epoch-millisecond time, clamped into ClickHouse `Date`.
pub fn event_date(ts_ms: i64) -> u16 {
    u16::try_from(ts_ms.div_euclid(DAY_MS).clamp(0, i64::from(u16::MAX))).unwrap_or(u16::MAX)
}

/// The UTC day (`YYYY-MM-DD`) of an epoch-millisecond time: the text of its
/// [`event_date`].
pub fn utc_day(ts_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts_ms.div_euclid(1000))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

/// Text form of a property value as stored in `prop_values`.
pub fn property_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl EventRow {
    /// Builds the row for an envelope read from `topic`/`partition` at `offset`.
    pub fn from_envelope(envelope: &Envelope, topic: &str, partition: i32, offset: i64) -> Self {
        // `null` means "not set": such a property is not stored.
        let (prop_keys, prop_values) = envelope
            .properties
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key.clone(), property_text(value)))
            .unzip();
        let e = &envelope.enrichment;
        EventRow {
            app_id: envelope.app_id.clone(),
            event_date: event_date(envelope.timestamp_ms),
            timestamp: clamp_secs(envelope.timestamp_ms),
            ts_ms: u64::try_from(envelope.timestamp_ms).unwrap_or(0),
            received_at: clamp_secs(envelope.received_at_ms),
            event_id: envelope.event_id.clone(),
            name: envelope.name.clone(),
            distinct_id: envelope.distinct_id.clone(),
            user_id: envelope.user_id.clone().unwrap_or_default(),
            anonymous_id: envelope.anonymous_id.clone().unwrap_or_default(),
            ip: envelope.ip.clone().unwrap_or_default(),
            user_agent: envelope.user_agent.clone().unwrap_or_default(),
            prop_keys,
            prop_values,
            kafka_topic: topic.to_owned(),
            kafka_partition: u32::try_from(partition).unwrap_or(0),
            kafka_offset: u64::try_from(offset).unwrap_or(0),
            country: e.country.clone(),
            region: e.region.clone(),
            city: e.city.clone(),
            browser: e.browser.clone(),
            browser_version: e.browser_version.clone(),
            os: e.os.clone(),
            device_type: e.device_type.clone(),
            is_bot: u8::from(e.is_bot),
            url_host: e.url_host.clone(),
            url_path: e.url_path.clone(),
            referrer_host: e.referrer_host.clone(),
            utm_source: e.utm_source.clone(),
            utm_medium: e.utm_medium.clone(),
            utm_campaign: e.utm_campaign.clone(),
            utm_term: e.utm_term.clone(),
            utm_content: e.utm_content.clone(),
            retention_days: envelope.retention_days,
        }
    }
}

/// One row of `arrivals` (migrations 0009, 0010): where a raw row sits in
/// the log, and what the report refresher derives from it.
#[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrivalRow {
    /// Tenant.
    pub app_id: String,
    /// Topic.
    pub kafka_topic: String,
    /// Kafka partition.
    pub kafka_partition: u32,
    /// Kafka offset.
    pub kafka_offset: u64,
    /// The row's `event_date`.
    pub event_date: u16,
    /// `Date` the gateway received it (the table partition).
    pub received_date: u16,
    /// What the report refresher derives from the row (migration 0010).
    pub distinct_id: String,
    /// Event name.
    pub name: String,
    /// Event time, epoch seconds.
    pub timestamp: u32,
    /// Event time, epoch milliseconds.
    pub ts_ms: u64,
    /// Page path.
    pub url_path: String,
    /// Referrer host.
    pub referrer_host: String,
    /// Country.
    pub country: String,
    /// Device type.
    pub device_type: String,
    /// Browser.
    pub browser: String,
    /// Bot flag.
    pub is_bot: u8,
}

impl ArrivalRow {
    /// The arrival of `row`.
    pub fn of(row: &EventRow) -> Self {
        ArrivalRow {
            app_id: row.app_id.clone(),
            kafka_topic: row.kafka_topic.clone(),
            kafka_partition: row.kafka_partition,
            kafka_offset: row.kafka_offset,
            event_date: row.event_date,
            received_date: u16::try_from(row.received_at / 86_400).unwrap_or(u16::MAX),
            distinct_id: row.distinct_id.clone(),
            name: row.name.clone(),
            timestamp: row.timestamp,
            ts_ms: row.ts_ms,
            url_path: row.url_path.clone(),
            referrer_host: row.referrer_host.clone(),
            country: row.country.clone(),
            device_type: row.device_type.clone(),
            browser: row.browser.clone(),
            is_bot: row.is_bot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn maps_envelope_fields_and_properties() {
        let mut properties = Map::new();
        properties.insert("url".into(), Value::from("/home"));
        properties.insert("n".into(), Value::from(3));
        properties.insert("ok".into(), Value::from(true));
        properties.insert("gone".into(), Value::Null);
        let envelope = Envelope {
            event_id: "e1".into(),
            app_id: "a".into(),
            name: "page_view".into(),
            distinct_id: "u".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp_ms: 86_400_000 * 3 + 1_500,
            received_at_ms: 86_400_000 * 3 + 2_000,
            sent_at_ms: None,
            ip: None,
            user_agent: None,
            properties,
            enrichment: crate::Enrichment::default(),
            retention_days: 0,
        };
        let row = EventRow::from_envelope(&envelope, "events", 2, 41);
        assert_eq!(row.event_date, 3);
        assert_eq!(row.timestamp, 86_400 * 3 + 1);
        assert_eq!(row.ts_ms, 86_400_000 * 3 + 1_500);
        assert_eq!(row.prop_keys, vec!["n", "ok", "url"], "null means not set");
        assert_eq!(row.prop_values, vec!["3", "true", "/home"]);
        assert_eq!((row.kafka_partition, row.kafka_offset), (2, 41));
    }

    #[test]
    fn clamps_out_of_range_times() {
        assert_eq!(clamp_secs(-5), 0);
        assert_eq!(clamp_secs(i64::MAX), u32::MAX);
        assert_eq!(event_date(-1), 0);
    }
}
