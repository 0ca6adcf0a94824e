//! Tests of per-event validation: every reason code, flattening, clock skew,
//! future clamping and retention.

use super::*;
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;

fn context() -> RequestContext {
    RequestContext {
        received_at_ms: NOW,
        ip: Some("10.0.0.1".into()),
        user_agent: Some("test".into()),
        enrichment: Enrichment::default(),
        retention_days: 0,
    }
}

fn run(events: Value, sent_at: Option<Value>, api: Api, limits: &Limits) -> Prepared {
    run_in(events, sent_at, api, limits, &context())
}

/// As [`run`], for a request with `context`.
fn run_in(
    events: Value,
    sent_at: Option<Value>,
    api: Api,
    limits: &Limits,
    context: &RequestContext,
) -> Prepared {
    let texts: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let raws: Vec<Box<RawValue>> = texts
        .iter()
        .map(|t| RawValue::from_string(t.clone()).unwrap())
        .collect();
    let refs: Vec<&RawValue> = raws.iter().map(|r| r.as_ref()).collect();
    let sent = sent_at.map(|s| RawValue::from_string(s.to_string()).unwrap());
    prepare(
        "app",
        &refs,
        sent.as_deref(),
        api,
        context,
        limits,
        &Agents::default(),
    )
}

fn reasons(prepared: &Prepared) -> Vec<(usize, &'static str)> {
    prepared
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.code()))
        .collect()
}

#[test]
fn every_reason_code_is_produced_and_good_events_survive() {
    let limits = Limits {
        max_properties: 3,
        max_event_bytes: 400,
        ..Limits::default()
    };
    let events = json!([
        {"name": "ok", "user_id": "u"},
        "not an object",
        {"name": "x", "user_id": "u", "properties": {"pad": "p".repeat(400)}},
        {"user_id": "u"},
        {"name": "x".repeat(201), "user_id": "u"},
        {"name": "n"},
        {"name": "n", "anonymous_id": "a".repeat(201)},
        {"name": "n", "user_id": "u", "timestamp": "not a time"},
        {"name": "n", "user_id": "u", "timestamp": NOW - 731 * 86_400_000i64},
        {"name": "n", "user_id": "u", "properties": {"a": 1, "b": 2, "c": 3, "d": 4}},
        {"name": "n", "user_id": "u", "properties": {"k".repeat(257): 1}},
        {"name": "n", "user_id": "u", "properties": {"a": {"b": {"c": {"d": 1}}}}},
        {"name": "ok2", "anonymous_id": "a", "properties": {"n": 1, "b": true, "s": "x"}}
    ]);
    let prepared = run(events, None, Api::Native, &limits);
    assert_eq!(
        reasons(&prepared),
        vec![
            (1, "malformed_event"),
            (2, "event_too_large"),
            (3, "missing_name"),
            (4, "name_too_long"),
            (5, "missing_identity"),
            (6, "id_too_long"),
            (7, "invalid_timestamp"),
            (8, "timestamp_too_old"),
            (9, "too_many_properties"),
            (10, "property_key_too_long"),
            (11, "property_too_deep"),
        ]
    );
    let long_value = run(
        json!([{"name": "n", "user_id": "u", "properties": {"v": "x".repeat(9_000)}}]),
        None,
        Api::Native,
        &Limits::default(),
    );
    assert_eq!(reasons(&long_value), vec![(0, "property_value_too_long")]);
    let unknown = run(
        json!([{"type": "launch", "userId": "u"}]),
        None,
        Api::Segment(None),
        &Limits::default(),
    );
    assert_eq!(reasons(&unknown), vec![(0, "unknown_type")]);
    let names: Vec<&str> = prepared.envelopes.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["ok", "ok2"]);
}

#[test]
fn nested_properties_are_flattened_and_arrays_kept_as_text() {
    let prepared = run(
        json!([{"name": "n", "user_id": "u", "properties": {"a": {"b": 1, "c": {"d": "x"}}, "list": [1, "two"]}}]),
        None,
        Api::Native,
        &Limits::default(),
    );
    let properties = &prepared.envelopes[0].properties;
    assert_eq!(properties["a.b"], 1);
    assert_eq!(properties["a.c.d"], "x");
    assert_eq!(properties["list"], r#"[1,"two"]"#);
}

#[test]
fn enriches_with_server_facts_and_fresh_ids() {
    let prepared = run(
        json!([{"name": "a", "user_id": "u"}, {"name": "b", "user_id": "u"}]),
        None,
        Api::Native,
        &Limits::default(),
    );
    let [a, b] = &prepared.envelopes[..] else {
        panic!("two envelopes expected")
    };
    assert_eq!((a.timestamp_ms, a.received_at_ms), (NOW, NOW));
    assert_eq!(a.ip.as_deref(), Some("10.0.0.1"));
    assert_ne!(a.event_id, b.event_id);
    assert!(uuid::Uuid::parse_str(&a.event_id).is_ok());
}

#[test]
fn corrects_clock_skew_clamps_the_future_and_keeps_client_ids() {
    // Client clock is 1 h ahead: the event happened 2 s before sending.
    let hour = 3_600_000;
    let prepared = run(
        json!([{"name": "a", "user_id": "u", "timestamp": NOW + hour - 2_000, "event_id": "client-1"}]),
        Some(json!(NOW + hour)),
        Api::Native,
        &Limits::default(),
    );
    assert_eq!(prepared.envelopes[0].timestamp_ms, NOW - 2_000);
    assert_eq!(prepared.envelopes[0].event_id, "client-1");
    let future = run(
        json!([{"name": "a", "user_id": "u", "timestamp": NOW + 24 * hour}]),
        None,
        Api::Native,
        &Limits::default(),
    );
    assert_eq!(future.envelopes[0].timestamp_ms, NOW);
    assert_eq!(
        future.envelopes[0].properties[CLAMPED_PROPERTY],
        NOW + 24 * hour
    );
    let bad_sent_at = run(
        json!([{"name": "a", "user_id": "u"}]),
        Some(json!("soon")),
        Api::Native,
        &Limits::default(),
    );
    assert_eq!(reasons(&bad_sent_at), vec![(0, "invalid_timestamp")]);
}

#[test]
fn segment_messages_use_their_own_sent_at_and_user_agent() {
    let prepared = run(
        json!([{"type": "track", "event": "Signed Up", "userId": "u", "messageId": "m-1",
                "timestamp": "2027-01-15T08:00:00Z", "sentAt": "2027-01-15T08:00:01Z",
                "context": {"userAgent": "Segment/1"}}]),
        None,
        Api::Segment(None),
        &Limits::default(),
    );
    let envelope = &prepared.envelopes[0];
    assert_eq!(
        (envelope.name.as_str(), envelope.event_id.as_str()),
        ("Signed Up", "m-1")
    );
    assert_eq!(envelope.timestamp_ms, NOW - 1_000);
    assert_eq!(envelope.user_agent.as_deref(), Some("Segment/1"));

    // An agent forwarded in the body is capped like the header's, at a character boundary.
    let long = format!("Mozilla/5.0 {}", "ü".repeat(10_000));
    let prepared = run(
        json!([{"type": "track", "event": "x", "userId": "u", "context": {"userAgent": long}}]),
        None,
        Api::Segment(None),
        &Limits::default(),
    );
    let kept = prepared.envelopes[0].user_agent.as_deref().unwrap();
    assert!(
        kept.len() <= crate::enrich::MAX_USER_AGENT_BYTES,
        "{}",
        kept.len()
    );
    assert!(kept.len() > crate::enrich::MAX_USER_AGENT_BYTES - 2 && long.starts_with(kept));
}

#[test]
fn app_id_form() {
    assert!(valid_app_id("APP-1_x"));
    assert!(!valid_app_id(""));
    assert!(!valid_app_id("a:b"));
    assert!(!valid_app_id(&"a".repeat(65)));
}

#[test]
fn an_apps_retention_override_sets_too_old_and_is_stamped() {
    let day = 86_400_000;
    let events = json!([
        {"name": "a", "user_id": "u", "timestamp": NOW - 5 * day},
        {"name": "b", "user_id": "u", "timestamp": NOW - 40 * day},
    ]);
    let limits = Limits::default();
    let shortened = RequestContext {
        retention_days: 30,
        ..context()
    };
    let prepared = run_in(events.clone(), None, Api::Native, &limits, &shortened);
    assert_eq!(reasons(&prepared), vec![(1, "timestamp_too_old")]);
    assert_eq!(prepared.envelopes.len(), 1);
    assert_eq!(prepared.envelopes[0].retention_days, 30);
    // The installation's retention (730 days) keeps both; class 0 is stamped.
    let prepared = run(events, None, Api::Native, &limits);
    assert!(prepared.rejected.is_empty());
    assert!(prepared.envelopes.iter().all(|e| e.retention_days == 0));
    assert_eq!(limits.retention_of(0), limits.retention_ms);
    assert_eq!(limits.retention_of(2), 2 * day);
}
