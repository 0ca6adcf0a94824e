//! Segment-compatible intake end to end: a Segment-style `/v1/batch` payload and
//! single `/v1/track` and `/v1/page` calls, authenticated the way Segment's SDKs
//! do (write key as Basic username), read back from ClickHouse.

use serde_json::{json, Value};
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, now_ms, services, unique, write_key, Isolation,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segment_payloads_are_ingested_and_counted() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = unique("seg");
    let key = write_key(&app).await;
    let now = now_ms();
    let iso_time = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };

    let batch = json!({
        "batch": [
            {"type": "identify", "userId": "u-1", "messageId": format!("{app}-1"), "traits": {"plan": "pro", "address": {"city": "Lyon"}}, "timestamp": iso_time(now)},
            {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": format!("{app}-2"),
             "properties": {"revenue": 42.5, "products": [{"sku": "a"}]}, "timestamp": iso_time(now)},
            {"type": "page", "name": "Pricing", "anonymousId": "anon-9", "messageId": format!("{app}-3"),
             "context": {"page": {"url": "https://shop.example/pricing?utm_source=x", "path": "/pricing"}, "userAgent": "Mozilla/5.0 Test"}},
            {"type": "group", "userId": "u-1", "groupId": 77, "messageId": format!("{app}-4")},
            {"type": "alias", "userId": "u-1", "previousId": "anon-9", "messageId": format!("{app}-5")},
            {"type": "screen", "name": "Home", "userId": "u-2", "messageId": format!("{app}-6")},
            {"type": "rocket", "userId": "u-2"}
        ],
        "sentAt": iso_time(now),
        "context": {"library": {"name": "analytics-node", "version": "2.0"}}
    });
    let response = http
        .post(format!("{}/v1/batch", gateway.url()))
        .basic_auth(&key, Some(""))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["success"].as_bool(), answer["accepted"].as_u64()),
        (Some(true), Some(6)),
        "{answer}"
    );
    assert_eq!(
        answer["errors"],
        json!([{"index": 6, "reason": "unknown_type"}])
    );

    for (path, body) in [
        (
            "track",
            json!({"event": "Signed Up", "userId": "u-3", "messageId": format!("{app}-7"), "writeKey": key}),
        ),
        (
            "page",
            json!({"name": "Docs", "anonymousId": "anon-3", "messageId": format!("{app}-8")}),
        ),
    ] {
        let response = http
            .post(format!("{}/v1/{path}", gateway.url()))
            .basic_auth(&key, Some(""))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let unknown = http
        .post(format!("{}/v1/launch", gateway.url()))
        .basic_auth(&key, Some(""))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    eventually("segment rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= 8).then_some(())
    })
    .await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (8, 8));
    let rows: Vec<(String, String, String)> = iso
        .clickhouse_client()
        .query("SELECT event_id, name, arrayStringConcat(arrayMap((k, v) -> concat(k, '=', v), prop_keys, prop_values), '&') FROM events WHERE app_id = ? ORDER BY event_id")
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let by_id = |n: u32| rows.iter().find(|r| r.0 == format!("{app}-{n}")).unwrap();
    assert_eq!(by_id(1).1, "identify");
    assert!(
        by_id(1).2.contains("traits.address.city=Lyon"),
        "{:?}",
        by_id(1)
    );
    assert_eq!(by_id(2).1, "Order Completed");
    assert!(
        by_id(2).2.contains("revenue=42.5") && by_id(2).2.contains(r#"products=[{"sku":"a"}]"#),
        "{:?}",
        by_id(2)
    );
    assert_eq!(by_id(3).1, "page_view");
    assert!(
        by_id(3).2.contains("page_name=Pricing") && by_id(3).2.contains("path=/pricing"),
        "{:?}",
        by_id(3)
    );
    assert!(by_id(4).2.contains("group_id=77"));
    assert!(by_id(5).2.contains("previous_id=anon-9"));
    assert_eq!(by_id(6).1, "screen_view");
    assert_eq!(by_id(7).1, "Signed Up");
    assert_eq!(by_id(8).1, "page_view");

    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}
