//! Late and repeated delivery through the real pipeline (gateway, broker,
//! aggregator, Redis, ClickHouse 18.16): retries of events of any age are
//! stored once, the same id of two visitors is two events, and sessions days
//! apart delivered newest first — across a restart and after the visitor's
//! Redis state expired — are the sessions of in-order delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, metric, now_ms, post_batch, services, Isolation,
};

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

async fn send(gateway: &str, key: &str, app: &str, events: &[Value]) {
    let http = reqwest::Client::new();
    let body = json!({"app_id": app, "events": events});
    let (status, answer) = post_batch(&http, gateway, key, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], events.len(), "{answer}");
}

async fn wait_rows(iso: &Isolation, app: &str, rows: u64) {
    eventually("rows", Duration::from_secs(30), || async {
        (clickhouse_counts(iso, app).await.0 >= rows).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_of_events_of_any_age_are_stored_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let app = tally_testkit::unique("old-retries");
    let key = tally_testkit::write_key(&app).await;
    let now = now_ms();
    // 8 days (beyond the old 7-day exemption), 100 and 700 days old.
    let batch: Vec<Value> = (0..60)
        .map(|i| {
            let days = [8, 100, 700][i % 3];
            json!({"event_id": format!("old-{i}"), "name": "backfill", "user_id": format!("u{}", i % 7),
                   "timestamp": now - days * DAY - i as i64 * 1_000})
        })
        .collect();
    send(&gateway.url(), &key, &app, &batch).await;
    wait_rows(&iso, &app, 60).await;
    send(&gateway.url(), &key, &app, &batch).await;
    eventually("retry dropped", Duration::from_secs(30), || async {
        let dropped = metric(&aggregator.url(), "tally_aggregator_duplicates_total").await;
        (dropped >= 60.0).then_some(())
    })
    .await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (60, 60));

    // After a restart the ids come back from ClickHouse, whatever the event day.
    aggregator.stop().await;
    send(&gateway.url(), &key, &app, &batch).await;
    let restarted = services::aggregator(services::aggregator_config(&iso)).await;
    eventually("third copy dropped", Duration::from_secs(30), || async {
        let dropped = metric(&restarted.url(), "tally_aggregator_duplicates_total").await;
        (dropped >= 60.0).then_some(())
    })
    .await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (60, 60));

    // The same id sent for two visitors is two events (the documented rule),
    // whichever partition each visitor is on; a retry of either is dropped.
    let twins: Vec<Value> = (0..10)
        .flat_map(|i| {
            ["ann", "bob"].map(|user| {
                json!({"event_id": format!("twin-{i}"), "name": "e", "user_id": format!("{user}-{i}"),
                       "timestamp": now - i * 1_000})
            })
        })
        .collect();
    send(&gateway.url(), &key, &app, &twins).await;
    wait_rows(&iso, &app, 80).await;
    send(&gateway.url(), &key, &app, &twins).await;
    eventually("twin retries dropped", Duration::from_secs(30), || async {
        let dropped = metric(&restarted.url(), "tally_aggregator_duplicates_total").await;
        (dropped >= 80.0).then_some(())
    })
    .await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (80, 70));

    restarted.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}

/// (start_ms, end_ms, events) of a visitor's sessions, oldest first.
async fn sessions(iso: &Isolation, app: &str, visitor: &str) -> Vec<(u64, u64, u32)> {
    iso.clickhouse_client()
        .query(
            "SELECT start_ms, end_ms, events FROM sessions FINAL \
             WHERE app_id = ? AND distinct_id = ? AND dropped = 0 ORDER BY start_ms",
        )
        .bind(app)
        .bind(visitor)
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_days_apart_delivered_newest_first_are_whole() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let mut aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let app = tally_testkit::unique("late-sessions");
    let key = tally_testkit::write_key(&app).await;
    let now = now_ms();
    // Three 3-event sessions on days -5, -3 and -1 (events 20 min apart).
    let session = |days: i64, from: i64| -> Vec<Value> {
        (from..3)
            .map(|k| {
                json!({"event_id": format!("d{days}-{k}"), "name": "page_view", "user_id": "phone",
                       "timestamp": now - days * DAY + k * 20 * MIN,
                       "properties": {"url": format!("/d{days}/{k}")}})
            })
            .collect()
    };
    let mut sent = 0;
    // Newest first, each session in its own batch (and its own flush).
    for days in [1, 3] {
        let events = session(days, 0);
        sent += events.len() as u64;
        send(&gateway.url(), &key, &app, &events).await;
        wait_rows(&iso, &app, sent).await;
    }
    // Day -5: its first event alone, then the aggregator restarts, then the rest.
    send(&gateway.url(), &key, &app, &session(5, 0)[..1]).await;
    sent += 1;
    wait_rows(&iso, &app, sent).await;
    aggregator.stop().await;
    aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    send(&gateway.url(), &key, &app, &session(5, 1)).await;
    sent += 2;
    wait_rows(&iso, &app, sent).await;

    let want: Vec<(u64, u64, u32)> = [5, 3, 1]
        .iter()
        .map(|days| {
            let start = (now - days * DAY) as u64;
            (start, start + 40 * MIN as u64, 3)
        })
        .collect();
    let got = eventually("three whole sessions", Duration::from_secs(30), || async {
        let got = sessions(&iso, &app, "phone").await;
        (got == want).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 3);

    // The visitor's Redis state expires (idle longer than its TTL); a late
    // event between the day -3 session's 2nd and 3rd event still joins it.
    let state_key = tally_schemas::live::visitor_key(&iso.redis_prefix, &app, "phone");
    let mut redis = redis::Client::open(iso.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let removed: i64 = redis::cmd("DEL")
        .arg(&state_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the visitor's state was at {state_key}");
    let late = json!({"event_id": "late", "name": "click", "user_id": "phone",
                      "timestamp": now - 3 * DAY + 30 * MIN});
    send(&gateway.url(), &key, &app, &[late]).await;
    wait_rows(&iso, &app, sent + 1).await;
    let mut want = want;
    want[1].2 = 4;
    eventually(
        "the late event joined its session",
        Duration::from_secs(30),
        || async { (sessions(&iso, &app, "phone").await == want).then_some(()) },
    )
    .await;

    aggregator.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}
