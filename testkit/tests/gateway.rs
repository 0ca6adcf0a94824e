//! Gateway answers for bad input and for an unavailable broker, against real brokers.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally_testkit::broker::{create_topic, PrivateBroker};
use tally_testkit::{post_batch, services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_status_and_a_machine_readable_reason() {
    let iso = Isolation::new(1).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events/batch", gateway.url());

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not json", b"{not json".to_vec(), 400, "malformed_body"),
        (
            "wrong shape",
            br#"{"app":"x"}"#.to_vec(),
            400,
            "malformed_body",
        ),
        (
            "events not a list",
            br#"{"app_id":"a","events":{}}"#.to_vec(),
            400,
            "malformed_body",
        ),
        (
            "bad app id",
            br#"{"app_id":"a b","events":[{"name":"x","user_id":"u"}]}"#.to_vec(),
            400,
            "invalid_app_id",
        ),
        (
            "empty batch",
            br#"{"app_id":"a","events":[]}"#.to_vec(),
            400,
            "empty_batch",
        ),
        (
            "invalid utf-8",
            b"{\"app_id\":\"a\xff\",\"events\":[]}".to_vec(),
            400,
            "malformed_body",
        ),
        (
            "too large",
            vec![b' '; 1024 * 1024 + 1],
            413,
            "payload_too_large",
        ),
    ];
    for (what, body, status, reason) in cases {
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], reason, "{what}: {answer}");
    }
    let too_many: Vec<Value> = (0..501)
        .map(|_| json!({"name": "x", "user_id": "u"}))
        .collect();
    let (status, answer) = post_batch(
        &http,
        &gateway.url(),
        &json!({"app_id": "a", "events": too_many}),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("too_many_events"))
    );

    // Bad events are rejected one by one; good ones in the same batch are accepted.
    let (status, answer) = post_batch(
        &http,
        &gateway.url(),
        &json!({"app_id": "a", "events": [
            {"name": "ok", "user_id": "u"},
            {"user_id": "u"},
            {"name": "x"},
            {"name": "x", "user_id": "u", "properties": {"deep": [1]}}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"], 3);
    assert_eq!(
        answer["errors"],
        json!([
            {"index": 1, "reason": "missing_name"},
            {"index": 2, "reason": "missing_identity"},
            {"index": 3, "reason": "property_not_scalar"}
        ])
    );
    gateway.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_503_within_seconds_never_200() {
    let mut broker = PrivateBroker::start().await;
    let mut iso = Isolation::new(1).await;
    iso.kafka.brokers = broker.brokers.clone();
    create_topic(&broker.brokers, &iso.kafka.topic, 2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let batch = json!({"app_id": "a", "events": [{"name": "x", "user_id": "u"}]});

    let (status, answer) = post_batch(&http, &gateway.url(), &batch).await;
    assert_eq!(status, 200, "{answer}");

    broker.kill();
    let started = Instant::now();
    let response = http
        .post(format!("{}/api/v1/events/batch", gateway.url()))
        .json(&batch)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "broker_unavailable");
    // Bounded by the produce timeout (3 s here), not a hang.
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );

    let ready = http
        .get(format!("{}/readyz", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    gateway.stop().await;
    iso.cleanup().await;
}
