//! Every refusal of a whole request and every rejection of one event: status,
//! machine-readable reason, nothing stored for a refused request, a dead letter
//! for each rejected event; body repairs (lone surrogates, gzip); CORS.

use crate::harness::{events, metric, Gateway};
use ingest_gateway::validate::RejectReason;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tally_common::Clock;

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn every_request_refusal_has_its_status_and_reason_and_stores_nothing() {
    let gateway = Gateway::start().await;
    let key = gateway.key("codes").await;
    let one = r#"[{"name":"x","user_id":"u"}]"#;
    let too_many = serde_json::to_vec(&events(501)).unwrap();
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    type Case = (
        &'static str,
        Vec<u8>,
        Option<&'static str>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "not json",
            b"{not json".to_vec(),
            None,
            400,
            "malformed_body",
        ),
        (
            "wrong shape",
            br#"{"app":"x"}"#.to_vec(),
            None,
            400,
            "malformed_body",
        ),
        (
            "events not a list",
            br#"{"events":{}}"#.to_vec(),
            None,
            400,
            "malformed_body",
        ),
        (
            "bad app id",
            format!(r#"{{"app_id":"a b","events":{one}}}"#).into_bytes(),
            None,
            400,
            "invalid_app_id",
        ),
        (
            "empty batch",
            br#"{"events":[]}"#.to_vec(),
            None,
            400,
            "empty_batch",
        ),
        ("too many events", too_many, None, 400, "too_many_events"),
        (
            "invalid utf-8",
            b"{\"app_id\":\"a\xff\",\"events\":[]}".to_vec(),
            None,
            400,
            "invalid_utf8",
        ),
        (
            "too large",
            vec![b' '; 1024 * 1024 + 1],
            None,
            413,
            "payload_too_large",
        ),
        (
            "another app",
            format!(r#"{{"app_id":"someone-else","events":{one}}}"#).into_bytes(),
            None,
            401,
            "key_app_mismatch",
        ),
        ("gzip bomb", bomb, Some("gzip"), 413, "payload_too_large"),
        (
            "not gzip",
            b"plain".to_vec(),
            Some("gzip"),
            400,
            "invalid_gzip",
        ),
    ];
    let mut expected_400 = 0.0;
    for (what, body, encoding, status, reason) in cases {
        let mut request = gateway
            .post("/api/v1/events/batch")
            .basic_auth(&key, Some(""))
            .header("content-type", "application/json")
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let (got, answer) = Gateway::send(request).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(reason)),
            "{what}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        if status == 400 {
            expected_400 += 1.0;
        }
    }
    assert!(
        gateway.sink.events().is_empty(),
        "a refused request stores nothing"
    );
    assert!(gateway.sink.dead_letters().is_empty());
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, r#"tally_gateway_requests_total{status="400"}"#),
        expected_400
    );
}

/// One event for each rejection reason of the native API (all but `unknown_type`).
fn native_rejects() -> Vec<(RejectReason, Value)> {
    let long = "x".repeat(201);
    let many: serde_json::Map<String, Value> =
        (0..257).map(|i| (format!("p{i}"), json!(i))).collect();
    vec![
        (RejectReason::MalformedEvent, json!(42)),
        (
            RejectReason::EventTooLarge,
            json!({"name": "x", "user_id": "u", "properties": {"big": "y".repeat(40_000)}}),
        ),
        (RejectReason::MissingName, json!({"user_id": "u"})),
        (
            RejectReason::NameTooLong,
            json!({"name": long, "user_id": "u"}),
        ),
        (RejectReason::MissingIdentity, json!({"name": "x"})),
        (
            RejectReason::IdTooLong,
            json!({"name": "x", "user_id": long}),
        ),
        (
            RejectReason::InvalidTimestamp,
            json!({"name": "x", "user_id": "u", "timestamp": "yesterday"}),
        ),
        (
            RejectReason::TimestampTooOld,
            json!({"name": "x", "user_id": "u", "timestamp": "1990-01-01T00:00:00Z"}),
        ),
        (
            RejectReason::TooManyProperties,
            json!({"name": "x", "user_id": "u", "properties": many}),
        ),
        (
            RejectReason::PropertyKeyTooLong,
            json!({"name": "x", "user_id": "u", "properties": {"k".repeat(257): 1}}),
        ),
        (
            RejectReason::PropertyValueTooLong,
            json!({"name": "x", "user_id": "u", "properties": {"v": "v".repeat(8_193)}}),
        ),
        (
            RejectReason::PropertyTooDeep,
            json!({"name": "x", "user_id": "u", "properties": {"a": {"b": {"c": {"d": 1}}}}}),
        ),
    ]
}

#[tokio::test]
async fn every_event_rejection_is_answered_by_index_and_dead_lettered() {
    let gateway = Gateway::start().await;
    let key = gateway.key("rejects").await;
    let rejects = native_rejects();
    // Good events around the bad ones: one bad event never fails its batch.
    let mut batch = vec![json!({"name": "first", "user_id": "u"})];
    batch.extend(rejects.iter().map(|(_, event)| event.clone()));
    batch.push(json!({"name": "last", "user_id": "u"}));
    let (status, answer) = gateway.batch(&key, &json!({"events": batch})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(12))
    );
    let expected: Vec<Value> = rejects
        .iter()
        .enumerate()
        .map(|(i, (reason, _))| json!({"index": i + 1, "reason": reason.code()}))
        .collect();
    assert_eq!(answer["errors"], Value::Array(expected));
    let names: Vec<String> = gateway.sink.events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["first", "last"]);

    // Segment's API adds the last reason: a message of an unknown type.
    let (status, answer) = Gateway::send(
        gateway
            .post("/v1/batch")
            .basic_auth(&key, Some(""))
            .json(&json!({"batch": [{"type": "bogus", "userId": "u"}]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["errors"],
        json!([{"index": 0, "reason": "unknown_type"}])
    );

    // Every reason was produced, each kept as a dead letter with its app, index and payload.
    let letters = gateway.sink.dead_letters();
    let seen: BTreeSet<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    let all: BTreeSet<&str> = RejectReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(seen, all);
    assert!(letters
        .iter()
        .all(|l| l.stage == "gateway" && l.app_id == "rejects"));
    let missing_name = letters.iter().find(|l| l.reason == "missing_name").unwrap();
    assert_eq!(
        (missing_name.origin.as_str(), missing_name.payload.as_str()),
        ("3", r#"{"user_id":"u"}"#)
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tally_gateway_events_total{outcome="rejected",reason="missing_name"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"tally_gateway_dead_letters_total{result="stored"}"#
        ),
        13.0
    );
}

#[tokio::test]
async fn lone_surrogates_are_repaired_and_gzip_bodies_inflated() {
    let gateway = Gateway::start().await;
    let key = gateway.key("repairs").await;
    let lone = br#"{"events":[{"name":"x\ud800","user_id":"u"}]}"#.to_vec();
    for (what, body, gzipped) in [("plain", lone.clone(), false), ("gzip", gzip(&lone), true)] {
        let mut request = gateway
            .post("/api/v1/events/batch")
            .basic_auth(&key, Some(""))
            .body(body);
        if gzipped {
            request = request.header("content-encoding", "GZIP");
        }
        let (status, answer) = Gateway::send(request).await;
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (200, Some(1)),
            "{what}: {answer}"
        );
    }
    let names: Vec<String> = gateway.sink.events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["x\u{fffd}", "x\u{fffd}"]);
}

#[tokio::test]
async fn accepted_events_carry_the_key_s_app_and_the_server_s_facts() {
    let gateway = Gateway::start().await;
    let key = gateway.key("facts").await;
    let before = tally_common::SystemClock.now_ms();
    let (status, _) = Gateway::send(
        gateway
            .post("/api/v1/events/batch")
            .basic_auth(&key, Some(""))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            )
            .json(&json!({"events": [{"name": "x", "user_id": "u", "event_id": "e-1"}]})),
    )
    .await;
    assert_eq!(status, 200);
    let stored = gateway.sink.events();
    let event = &stored[0];
    assert_eq!(
        (event.app_id.as_str(), event.event_id.as_str()),
        ("facts", "e-1")
    );
    assert_eq!(
        event.ip.as_deref(),
        Some("127.0.0.0"),
        "truncated to /24 by default"
    );
    assert!(event
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("Firefox")));
    let after = tally_common::SystemClock.now_ms();
    assert!((before..=after).contains(&event.received_at_ms));
    assert_eq!(
        event.timestamp_ms, event.received_at_ms,
        "no client time: the server's"
    );
}

#[tokio::test]
async fn segment_single_messages_and_unknown_types() {
    let gateway = Gateway::start().await;
    let key = gateway.key("segment").await;
    let (status, answer) = Gateway::send(
        gateway
            .post("/v1/track")
            .json(&json!({"writeKey": key, "event": "Signed Up", "userId": "u"})),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = Gateway::send(
        gateway
            .post("/v1/nonsense")
            .basic_auth(&key, Some(""))
            .json(&json!({"event": "x", "userId": "u"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("unknown_type"))
    );
    let names: Vec<String> = gateway.sink.events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["Signed Up"]);
}

#[tokio::test]
async fn cors_lets_any_origin_post_with_or_without_credentials() {
    let gateway = Gateway::start().await;
    let preflight = gateway
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/events/batch", gateway.url),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let headers = preflight.headers();
    // The origin itself (a credentialed request may not be answered `*`).
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["vary"].to_str().unwrap().contains("origin"),
        "{headers:?}"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    // The answer itself carries them too (a refusal as well), so the browser
    // lets the SDK read it.
    let answer = gateway
        .http
        .post(format!("{}/api/v1/events/batch", gateway.url))
        .header("origin", "https://shop.example")
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error());
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(answer.headers()["access-control-allow-credentials"], "true");
}
