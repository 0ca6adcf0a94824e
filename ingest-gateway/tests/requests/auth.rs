//! Where a write key may come from, what a wrong or revoked one gets, and what an
//! unreachable key store means (503 "retry", never a false 401).

use crate::harness::{events, Gateway};
use serde_json::json;

#[tokio::test]
async fn a_write_key_is_read_from_basic_bearer_or_the_body() {
    let gateway = Gateway::start().await;
    let key = gateway.key("forms").await;
    let batch = events(1);
    let url = "/api/v1/events/batch";
    let forms = [
        (
            "basic",
            gateway.post(url).basic_auth(&key, Some("")).json(&batch),
        ),
        (
            "basic with a password",
            gateway
                .post(url)
                .basic_auth(&key, Some("ignored"))
                .json(&batch),
        ),
        ("bearer", gateway.post(url).bearer_auth(&key).json(&batch)),
        (
            "bearer, other case",
            gateway
                .post(url)
                .header("authorization", format!("BEARER {key}"))
                .json(&batch),
        ),
        (
            "write_key",
            gateway
                .post(url)
                .json(&json!({"write_key": key, "events": batch["events"]})),
        ),
        (
            "writeKey",
            gateway
                .post(url)
                .json(&json!({"writeKey": key, "events": batch["events"]})),
        ),
        (
            "text/plain body (the browser tracker)",
            gateway
                .post(url)
                .header("content-type", "text/plain")
                .body(json!({"write_key": key, "events": batch["events"]}).to_string()),
        ),
        (
            "segment batch",
            gateway
                .post("/v1/batch")
                .basic_auth(&key, Some(""))
                .json(&json!({"batch": [{"type": "track", "event": "x", "userId": "u"}]})),
        ),
    ];
    let count = forms.len();
    for (what, request) in forms {
        let (status, answer) = Gateway::send(request).await;
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (200, Some(1)),
            "{what}: {answer}"
        );
    }
    let stored = gateway.sink.events();
    assert_eq!(stored.len(), count);
    assert!(stored.iter().all(|event| event.app_id == "forms"));
}

#[tokio::test]
async fn missing_wrong_and_foreign_keys_get_401_with_their_reason() {
    let gateway = Gateway::start().await;
    let key = gateway.key("mine").await;
    let url = "/api/v1/events/batch";
    let batch = events(1);
    let cases = [
        (
            "no key",
            gateway.post(url).json(&batch),
            "missing_write_key",
        ),
        (
            "empty basic user",
            gateway.post(url).basic_auth("", Some("pw")).json(&batch),
            "missing_write_key",
        ),
        (
            "empty body key",
            gateway
                .post(url)
                .json(&json!({"write_key": "", "events": batch["events"]})),
            "missing_write_key",
        ),
        (
            "unknown bearer",
            gateway.post(url).bearer_auth("tw_not_a_key").json(&batch),
            "invalid_write_key",
        ),
        (
            "unknown body key",
            gateway
                .post(url)
                .json(&json!({"write_key": "tw_nope", "events": batch["events"]})),
            "invalid_write_key",
        ),
        (
            "another app's id",
            gateway
                .post(url)
                .bearer_auth(&key)
                .json(&json!({"app_id": "theirs", "events": batch["events"]})),
            "key_app_mismatch",
        ),
    ];
    for (what, request, reason) in cases {
        let (status, answer) = Gateway::send(request).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some(reason)),
            "{what}: {answer}"
        );
    }
    // The key's own app id is fine.
    let (status, _) = Gateway::send(
        gateway
            .post(url)
            .bearer_auth(&key)
            .json(&json!({"app_id": "mine", "events": batch["events"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gateway.sink.events().len(), 1);
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_the_next_reload() {
    let gateway = Gateway::start().await;
    let key = gateway.key("revoked").await;
    assert_eq!(gateway.batch(&key, &events(1)).await.0, 200);
    gateway.keys.revoke(&key);
    gateway.state.keys.refresh().await.unwrap();
    let (status, answer) = gateway.batch(&key, &events(1)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_write_key"))
    );
    assert_eq!(gateway.sink.events().len(), 1);
}

#[tokio::test]
async fn an_unreachable_key_store_keeps_known_keys_and_answers_503_for_others() {
    let gateway = Gateway::start().await;
    let key = gateway.key("outage").await;
    gateway.keys.set_reachable(false);
    assert!(gateway.state.keys.refresh().await.is_err());
    assert_eq!(
        gateway.batch(&key, &events(1)).await.0,
        200,
        "known key, from the cache"
    );
    // Maybe created since the store went away: "retry", not "wrong".
    let response = gateway
        .post("/api/v1/events/batch")
        .bearer_auth("tw_maybe_new")
        .json(&events(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "keys_unavailable");
    // Back: a key created during the outage works.
    let late = format!("tw_late_{}", uuid::Uuid::new_v4().simple());
    gateway.keys.add(&late, "outage");
    gateway.keys.set_reachable(true);
    assert_eq!(gateway.batch(&late, &events(1)).await.0, 200);
    assert_eq!(gateway.sink.events().len(), 2);
}
