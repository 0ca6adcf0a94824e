//! Stopping the aggregator mid-stream — once as a crash (task dropped wherever
//! it is: no flush, no commit) and once gracefully — neither loses nor double
//! counts an acknowledged event, in ClickHouse or in the live windows. After the
//! crash the group's offsets are rewound to 0 (a crash between the writes and
//! the commit), so the replay path is always exercised.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tally_testkit::{clickhouse_counts, eventually, now_ms, post_batch, services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregator_restarts_mid_stream_lose_and_double_nothing() {
    let iso = Isolation::new(4).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let app_name = tally_testkit::unique("restart");
    let app: &'static str = Box::leak(app_name.into_boxed_str());
    let key = tally_testkit::write_key(app).await;
    let read_key = tally_testkit::read_key(app).await;

    // Steady traffic in the background; remember every acknowledged event id.
    let sender = {
        let (url, key) = (gateway.url(), key.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acked = BTreeSet::new();
            for batch in 0..80 {
                let ids: Vec<String> = (0..50).map(|i| format!("ev-{batch}-{i}")).collect();
                let events: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| json!({"name": "tick", "event_id": id, "user_id": format!("u{}", (batch * 50 + i) % 400), "timestamp": now_ms()}))
                    .collect();
                let (status, answer) =
                    post_batch(&http, &url, &key, &json!({"app_id": app, "events": events})).await;
                assert_eq!(status, 200, "{answer}");
                acked.extend(ids);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acked
        })
    };

    let first = services::aggregator(services::aggregator_config(&iso)).await;
    wait_for_rows(&iso, app, 200).await;
    first.abort().await; // crash: whatever was buffered or in flight is lost from memory
                         // Worst case of a crash: the stores hold the batches but no offset was committed.
                         // The next aggregator must replay everything stored so far without counting it again.
    tally_testkit::broker::rewind_group(&iso.kafka.brokers, &iso.group_id, &iso.kafka.topic).await;

    let second = services::aggregator(services::aggregator_config(&iso)).await;
    let (rows_so_far, _) = clickhouse_counts(&iso, app).await;
    wait_for_rows(&iso, app, rows_so_far + 200).await;
    second.stop().await; // graceful: flush and commit

    let third = services::aggregator(services::aggregator_config(&iso)).await;
    let acked = sender.await.expect("sender task");
    assert_eq!(acked.len(), 4_000);
    let total = acked.len() as u64;

    wait_for_rows(&iso, app, total).await;
    // Everything consumed and committed: no duplicate can still show up.
    iso.wait_consumed().await;
    let (rows, distinct) = clickhouse_counts(&iso, app).await;
    assert_eq!(rows, total, "rows in ClickHouse");
    assert_eq!(distinct, total, "distinct event ids in ClickHouse");
    let stored: BTreeSet<String> = iso
        .clickhouse_client()
        .query("SELECT event_id FROM events WHERE app_id = ?")
        .bind(app)
        .fetch_all::<String>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored, acked, "stored ids equal acknowledged ids");

    // Live windows: the same exact total, through the real query service.
    let query = services::query(services::query_config(&iso)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/analytics/{app}/live?windows=240", query.url());
    let live: Value = eventually("live total", Duration::from_secs(30), || async {
        let answer: Value = http
            .get(&url)
            .bearer_auth(&read_key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (answer["total_events"].as_u64()? >= total).then_some(answer)
    })
    .await;
    assert_eq!(live["total_events"], total);

    third.stop().await;
    query.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}

async fn wait_for_rows(iso: &Isolation, app: &str, at_least: u64) {
    eventually("rows in ClickHouse", Duration::from_secs(90), || async {
        let (rows, _) = clickhouse_counts(iso, app).await;
        (rows >= at_least).then_some(())
    })
    .await;
}
