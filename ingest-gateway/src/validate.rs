//! Per-event validation and enrichment (pure: no I/O, the clock reading is passed in).
//!
//! A batch is split into the envelopes to produce and the rejected events, each
//! rejection carrying the event's index and a machine-readable reason. One bad
//! event never fails the rest of its batch.

use serde::Serialize;

use crate::enrich::{page_fields, truncate, Agents, MAX_USER_AGENT_BYTES};
use crate::{amplitude, mixpanel, plausible, posthog, segment, snowplow, umami};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_schemas::event::{IncomingEvent, TimestampInput};
use tally_schemas::{Enrichment, Envelope};

/// Per-event limits (all configurable, see `config.rs`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest event, bytes of its JSON.
    pub max_event_bytes: usize,
    /// Most properties after flattening.
    pub max_properties: usize,
    /// Longest property key (after flattening, dotted).
    pub max_key_len: usize,
    /// Longest property value (text), bytes.
    pub max_value_len: usize,
    /// Deepest nesting of objects in properties (flattened with `.`).
    pub max_depth: usize,
    /// Longest event name, characters.
    pub max_name_len: usize,
    /// Longest id (user, anonymous, event), bytes.
    pub max_id_len: usize,
    /// Events further in the future are clamped to the receive time and flagged.
    pub max_future_ms: i64,
    /// Events older than this are rejected (`TALLY_RETENTION_DAYS`; an
    /// app's override replaces it, see [`Limits::retention_of`]).
    pub retention_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_properties: 256,
            max_key_len: 256,
            max_value_len: 8 * 1024,
            max_depth: 3,
            max_name_len: 200,
            max_id_len: 200,
            max_future_ms: 23 * 3_600_000,
            retention_ms: 730 * 86_400_000,
        }
    }
}

impl Limits {
    /// How old an event of an app with retention class `days` may be: the
    /// app's override, or [`Limits::retention_ms`] (class 0) — the days the
    /// lifecycle keeps its rows.
    pub fn retention_of(&self, days: u16) -> i64 {
        if days == 0 {
            self.retention_ms
        } else {
            i64::from(days) * 86_400_000
        }
    }
}

/// Property set on events whose future timestamp was clamped: the original time (epoch ms).
pub const CLAMPED_PROPERTY: &str = "tally.clamped_timestamp";

/// Server-side facts about the request, added to every event.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// When the gateway received the request, epoch ms.
    pub received_at_ms: i64,
    /// Client IP as stored (anonymised per configuration).
    pub ip: Option<String>,
    /// `User-Agent` header, at most [`MAX_USER_AGENT_BYTES`].
    pub user_agent: Option<String>,
    /// Geo and user-agent fields of the request (page fields are per event).
    pub enrichment: Enrichment,
    /// The app's retention override in days (0: [`Limits::retention_ms`]),
    /// stamped on every event as its retention class.
    pub retention_days: u16,
}

/// Which API the events came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/v1/events/batch`.
    Native,
    /// Segment tracking API; `Some(type)` for `/v1/{type}` single-message calls.
    Segment(Option<&'static str>),
    /// PostHog capture (`/batch/`, `/e/`, `/capture/`, `/i/v0/e/`).
    PostHog,
    /// Plausible's events API (`/api/event`): one event, the app named by its domain.
    Plausible,
    /// Amplitude's HTTP V2 (`/2/httpapi`) and batch (`/batch`) uploads.
    Amplitude,
    /// Mixpanel's `/track`, `/import` and `/engage`.
    Mixpanel(mixpanel::Endpoint),
    /// Umami's `/api/send`.
    Umami,
    /// Snowplow's tracker protocol (`…/tp2`, `/i`).
    Snowplow(snowplow::Endpoint),
}

impl Api {
    /// The API's bodies may come gzipped without `Content-Encoding`, form-encoded
    /// or base64-encoded, or as `data` in the query string (`wrapping.rs`).
    pub fn wrapped_bodies(self) -> bool {
        matches!(self, Api::PostHog | Api::Mixpanel(_))
    }
}

/// Why one event was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The event is not a JSON object of the expected shape.
    MalformedEvent,
    /// The event's JSON is larger than the limit.
    EventTooLarge,
    /// Segment `type` missing or unknown.
    UnknownType,
    /// No `name`, or an empty one.
    MissingName,
    /// `name` longer than the limit.
    NameTooLong,
    /// Neither `user_id` nor `anonymous_id`.
    MissingIdentity,
    /// An id longer than the limit.
    IdTooLong,
    /// `timestamp` or `sent_at` does not parse.
    InvalidTimestamp,
    /// Older than the retention window.
    TimestampTooOld,
    /// More properties than the limit (after flattening).
    TooManyProperties,
    /// A property key longer than the limit.
    PropertyKeyTooLong,
    /// A property value longer than the limit.
    PropertyValueTooLong,
    /// Objects nested deeper than the limit.
    PropertyTooDeep,
}

impl RejectReason {
    /// The reason code as it appears in answers and metrics.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedEvent => "malformed_event",
            RejectReason::EventTooLarge => "event_too_large",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::MissingName => "missing_name",
            RejectReason::NameTooLong => "name_too_long",
            RejectReason::MissingIdentity => "missing_identity",
            RejectReason::IdTooLong => "id_too_long",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampTooOld => "timestamp_too_old",
            RejectReason::TooManyProperties => "too_many_properties",
            RejectReason::PropertyKeyTooLong => "property_key_too_long",
            RejectReason::PropertyValueTooLong => "property_value_too_long",
            RejectReason::PropertyTooDeep => "property_too_deep",
        }
    }

    /// Every reason (for tests and metrics documentation).
    pub const ALL: [RejectReason; 13] = [
        RejectReason::MalformedEvent,
        RejectReason::EventTooLarge,
        RejectReason::UnknownType,
        RejectReason::MissingName,
        RejectReason::NameTooLong,
        RejectReason::MissingIdentity,
        RejectReason::IdTooLong,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampTooOld,
        RejectReason::TooManyProperties,
        RejectReason::PropertyKeyTooLong,
        RejectReason::PropertyValueTooLong,
        RejectReason::PropertyTooDeep,
    ];
}

/// One rejected event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the batch.
    pub index: usize,
    /// Why.
    pub reason: RejectReason,
}

/// A validated batch.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Events to produce, in batch order.
    pub envelopes: Vec<Envelope>,
    /// Events refused.
    pub rejected: Vec<Rejection>,
}

pub use tally_schemas::ids::valid_app_id;

/// Validates and enriches every raw event for `app_id` (already authenticated).
pub fn prepare(
    app_id: &str,
    events: &[&RawValue],
    batch_sent_at: Option<&RawValue>,
    api: Api,
    context: &RequestContext,
    limits: &Limits,
    agents: &Agents,
) -> Prepared {
    let batch_sent_at: Option<Result<i64, RejectReason>> = batch_sent_at
        .filter(|raw| raw.get() != "null")
        .map(|raw| parse_time(raw.get()));
    let mut prepared = Prepared::default();
    for (index, raw) in events.iter().enumerate() {
        match prepare_one(app_id, raw, batch_sent_at, api, context, limits, agents) {
            Ok(envelope) => prepared.envelopes.push(envelope),
            Err(reason) => prepared.rejected.push(Rejection { index, reason }),
        }
    }
    prepared
}

fn parse_time(raw: &str) -> Result<i64, RejectReason> {
    serde_json::from_str::<TimestampInput>(raw)
        .ok()
        .and_then(|ts| ts.to_epoch_millis())
        .ok_or(RejectReason::InvalidTimestamp)
}

fn prepare_one(
    app_id: &str,
    raw: &RawValue,
    batch_sent_at: Option<Result<i64, RejectReason>>,
    api: Api,
    context: &RequestContext,
    limits: &Limits,
    agents: &Agents,
) -> Result<Envelope, RejectReason> {
    if raw.get().len() > limits.max_event_bytes {
        return Err(RejectReason::EventTooLarge);
    }
    let (event, own_sent_at, user_agent) = match api {
        Api::Native => {
            let event: IncomingEvent =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            (event, None, None)
        }
        Api::Segment(implied) => {
            let message: segment::Message =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            segment::to_event(message, implied).map_err(|_| RejectReason::UnknownType)?
        }
        Api::Mixpanel(endpoint) => {
            let mapped = if endpoint == mixpanel::Endpoint::Engage {
                let update: mixpanel::Update =
                    serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
                mixpanel::update_to_event(update)
            } else {
                let message: mixpanel::Message =
                    serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
                mixpanel::to_event(message)
            };
            let event = mapped.map_err(|err| match err {
                mixpanel::MapError::MissingEvent => RejectReason::MissingName,
                mixpanel::MapError::MissingDistinctId => RejectReason::MissingIdentity,
                mixpanel::MapError::NothingToSet => RejectReason::MalformedEvent,
            })?;
            (event, None, None)
        }
        Api::Umami => {
            let message: umami::Message =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            let visitor = crate::vendor::visitor_id(
                "umami-visitor",
                app_id,
                context.received_at_ms.div_euclid(86_400_000),
                context.ip.as_deref(),
                context.user_agent.as_deref(),
            );
            let event = umami::to_event(message, visitor).map_err(|err| match err {
                umami::MapError::UnknownType => RejectReason::UnknownType,
                umami::MapError::BadData => RejectReason::MalformedEvent,
            })?;
            (event, None, None)
        }
        Api::Snowplow(_) => {
            let fields: Map<String, Value> =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            let (event, sent, user_agent) =
                snowplow::to_event(fields).map_err(|err| match err {
                    snowplow::MapError::UnknownEvent => RejectReason::UnknownType,
                    snowplow::MapError::MissingIdentity => RejectReason::MissingIdentity,
                    snowplow::MapError::BadPayload => RejectReason::MalformedEvent,
                })?;
            (event, sent, user_agent)
        }
        Api::Amplitude => {
            let message: amplitude::Message =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            let event = amplitude::to_event(message).map_err(|err| match err {
                amplitude::MapError::MissingEventType => RejectReason::MissingName,
                amplitude::MapError::MissingIdentity => RejectReason::MissingIdentity,
            })?;
            (event, None, None)
        }
        Api::Plausible => {
            let message: plausible::Message =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            let day = context.received_at_ms.div_euclid(86_400_000);
            let visitor = plausible::visitor_id(
                app_id,
                day,
                context.ip.as_deref(),
                context.user_agent.as_deref(),
            );
            let event = plausible::to_event(message, visitor).map_err(|err| match err {
                plausible::MapError::MissingName => RejectReason::MissingName,
                plausible::MapError::BadProps => RejectReason::MalformedEvent,
            })?;
            (event, None, None)
        }
        Api::PostHog => {
            let message: posthog::Message =
                serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEvent)?;
            let (event, user_agent) = posthog::to_event(message).map_err(|err| match err {
                posthog::MapError::MissingEvent => RejectReason::MissingName,
                posthog::MapError::MissingDistinctId => RejectReason::MissingIdentity,
            })?;
            (event, None, user_agent)
        }
    };
    let sent_at = match own_sent_at {
        Some(ts) => Some(ts.to_epoch_millis().ok_or(RejectReason::InvalidTimestamp)),
        None => batch_sent_at,
    }
    .transpose()?;
    validate_event(app_id, event, sent_at, user_agent, context, limits, agents)
}

/// Flattens nested objects into dotted keys (arrays become JSON text) and
/// enforces the property limits.
pub fn flatten(
    properties: Map<String, Value>,
    limits: &Limits,
) -> Result<Map<String, Value>, RejectReason> {
    fn walk(
        prefix: &str,
        map: Map<String, Value>,
        depth: usize,
        limits: &Limits,
        out: &mut Map<String, Value>,
    ) -> Result<(), RejectReason> {
        for (key, value) in map {
            let key = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            if key.len() > limits.max_key_len {
                return Err(RejectReason::PropertyKeyTooLong);
            }
            let value = match value {
                Value::Object(inner) => {
                    if depth + 1 >= limits.max_depth {
                        return Err(RejectReason::PropertyTooDeep);
                    }
                    walk(&key, inner, depth + 1, limits, out)?;
                    continue;
                }
                Value::Array(items) => Value::String(Value::Array(items).to_string()),
                other => other,
            };
            if value
                .as_str()
                .is_some_and(|text| text.len() > limits.max_value_len)
            {
                return Err(RejectReason::PropertyValueTooLong);
            }
            out.insert(key, value);
            if out.len() > limits.max_properties {
                return Err(RejectReason::TooManyProperties);
            }
        }
        Ok(())
    }
    let mut out = Map::new();
    walk("", properties, 0, limits, &mut out)?;
    Ok(out)
}

/// Checks one decoded event against the limits (name, identity, ids, properties,
/// timestamps) and builds its envelope: the client's clock corrected by `sent_at`,
/// a future time clamped, the request's enrichment (or that of an agent the SDK
/// forwarded) and the page fields added.
fn validate_event(
    app_id: &str,
    event: IncomingEvent,
    sent_at_ms: Option<i64>,
    user_agent: Option<String>,
    context: &RequestContext,
    limits: &Limits,
    agents: &Agents,
) -> Result<Envelope, RejectReason> {
    let name = match event.name.as_deref() {
        None | Some("") => return Err(RejectReason::MissingName),
        Some(name) if name.chars().count() > limits.max_name_len => {
            return Err(RejectReason::NameTooLong)
        }
        Some(name) => name.to_owned(),
    };
    let distinct_id = event
        .distinct_id()
        .ok_or(RejectReason::MissingIdentity)?
        .to_owned();
    let ids = [
        Some(&distinct_id),
        event.event_id.as_ref(),
        event.user_id.as_ref(),
        event.anonymous_id.as_ref(),
    ];
    if ids
        .into_iter()
        .flatten()
        .any(|id| id.len() > limits.max_id_len)
    {
        return Err(RejectReason::IdTooLong);
    }
    let mut properties = flatten(event.properties, limits)?;
    let client_ts = match &event.timestamp {
        Some(ts) => Some(ts.to_epoch_millis().ok_or(RejectReason::InvalidTimestamp)?),
        None => None,
    };
    let received = context.received_at_ms;
    // Clock-skew correction: the client's clock is trusted for intervals, not for absolute time.
    let mut timestamp_ms = match (client_ts, sent_at_ms) {
        (Some(ts), Some(sent)) => received.saturating_sub(sent.saturating_sub(ts)),
        (Some(ts), None) => ts,
        (None, _) => received,
    };
    if timestamp_ms > received.saturating_add(limits.max_future_ms) {
        properties.insert(CLAMPED_PROPERTY.into(), Value::from(timestamp_ms));
        timestamp_ms = received;
    }
    if timestamp_ms < received.saturating_sub(limits.retention_of(context.retention_days)) {
        return Err(RejectReason::TimestampTooOld);
    }
    let event_id = event
        .event_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // An agent forwarded in the body gets the same cap as the header's (see `enrich.rs`).
    let user_agent = user_agent.map(|mut agent| {
        let kept = truncate(&agent, MAX_USER_AGENT_BYTES).len();
        agent.truncate(kept);
        agent
    });
    let mut enrichment = context.enrichment.clone();
    if let Some(agent) = user_agent
        .as_deref()
        .filter(|ua| Some(*ua) != context.user_agent.as_deref())
    {
        // A server-side SDK forwarding the end user's agent: classify that one.
        let geo = (
            enrichment.country.clone(),
            enrichment.region.clone(),
            enrichment.city.clone(),
        );
        enrichment = Enrichment {
            country: geo.0,
            region: geo.1,
            city: geo.2,
            ..Enrichment::default()
        };
        agents.classify(agent, &mut enrichment);
    }
    page_fields(&properties, &mut enrichment);
    Ok(Envelope {
        event_id,
        app_id: app_id.to_owned(),
        name,
        distinct_id,
        user_id: event.user_id.filter(|id| !id.is_empty()),
        anonymous_id: event.anonymous_id.filter(|id| !id.is_empty()),
        timestamp_ms,
        received_at_ms: received,
        sent_at_ms,
        ip: context.ip.clone(),
        user_agent: user_agent.or_else(|| context.user_agent.clone()),
        properties,
        enrichment,
        retention_days: context.retention_days,
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
