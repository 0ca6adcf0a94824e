//! Client SDKs against the real gateway, broker and ClickHouse:
//!
//! * our browser tracker served at `/sdk.js`, run in Node (`tests/sdk/harness.js`):
//!   automatic and history page views, custom events in batches of 20, identify, a
//!   failed first send that must be retried, and a `sendBeacon` flush on page hide;
//! * the unmodified Segment and RudderStack Node SDKs (`tests/sdk/clients.js`,
//!   installed by `scripts/stack`) pointed at the gateway.
//!
//! Every event must land exactly once, with the names and identities sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::process::Command;
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, node_clients_dir, services, unique, write_key, Isolation,
};

/// Runs `tests/sdk/{script}` with `args` in Node; its stdout is one JSON report.
async fn run_node(script: &str, args: Vec<String>) -> serde_json::Value {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(path)
            .args(args)
            .output()
            .expect("node is installed by scripts/stack")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_tracker_delivers_every_event_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let app = unique("sdk");
    let key = write_key(&app).await;

    let stats = run_node("harness.js", vec![gateway.url(), key]).await;
    // One failed attempt, then at least: the retried page view, the batch of 20,
    // and the beacon with the rest. Every request that reached the gateway was
    // accepted (how the tail splits between fetches and the beacon depends on timing).
    assert_eq!(stats["failed"], 1, "{stats}");
    assert_eq!(stats["beacons"], 1, "{stats}");
    let statuses = stats["statuses"].as_array().unwrap();
    assert!(
        statuses.len() >= 3 && statuses.iter().all(|s| s == 200),
        "{stats}"
    );
    let anonymous_id = stats["anonymous_id"].as_str().unwrap().to_owned();

    let expected = 28; // 2 page views + 25 clicks + 1 identify
    eventually("tracker rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    // Everything consumed and committed: no duplicate can still show up.
    iso.wait_consumed().await;
    assert_eq!(clickhouse_counts(&iso, &app).await.0, expected);

    let rows: Vec<(String, String, String, String, u64)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, user_id, anonymous_id, url_path, count() FROM events WHERE app_id = ? \
             GROUP BY name, user_id, anonymous_id, url_path ORDER BY name, url_path",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let a = anonymous_id.as_str();
    let want: Vec<(String, String, String, String, u64)> = [
        ("button_clicked", "", a, "", 25),
        ("identify", "user-42", a, "", 1),
        ("page_view", "user-42", a, "/checkout", 1),
        ("page_view", "", a, "/pricing", 1),
    ]
    .into_iter()
    .map(|(n, u, an, p, c)| (n.into(), u.into(), an.into(), p.into(), c))
    .collect();
    assert_eq!(rows, want);

    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segment_and_rudderstack_sdks_work_unmodified() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let app = unique("sdks");
    let key = write_key(&app).await;

    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/@segment/analytics-node").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let dir = dir.display().to_string();
    let report = run_node("clients.js", vec![dir, gateway.url(), key]).await;
    assert_eq!(
        report["segment"]["errors"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        report["rudderstack"]["errors"],
        serde_json::json!([]),
        "{report}"
    );

    let expected = 24;
    eventually("SDK rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    // Everything consumed and committed: no duplicate can still show up.
    iso.wait_consumed().await;
    // Rows and distinct message ids: the SDKs' own ids, each once.
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    let rows: Vec<(String, String, String, u64)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, user_id, anonymous_id, count() FROM events WHERE app_id = ? \
             GROUP BY name, user_id, anonymous_id ORDER BY name, user_id, anonymous_id",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let want: Vec<(String, String, String, u64)> = [
        ("Rudder Event", "rs-user", 10),
        ("Segment Event", "seg-user", 10),
        ("identify", "rs-user", 1),
        ("identify", "seg-user", 1),
    ]
    .into_iter()
    .map(|(n, u, c)| (n.into(), u.into(), String::new(), c))
    .chain([
        ("page_view".into(), String::new(), "rs-anon".into(), 1),
        ("page_view".into(), String::new(), "seg-anon".into(), 1),
    ])
    .collect();
    assert_eq!(rows, want);

    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}
