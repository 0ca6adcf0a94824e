//! What the SDK tests (`sdks.rs`, `vendor_sdks.rs`) share: running a script
//! of this directory in Node, and comparing the live view with the rows.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use tally_testkit::{read_key, services, Isolation};

/// Runs `tests/sdk/{script}` with `args` in Node; its stdout is one JSON report.
pub async fn run_node(script: &str, args: Vec<String>) -> serde_json::Value {
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

/// Events per name in ClickHouse.
pub async fn rows_by_name(iso: &Isolation, app: &str) -> BTreeMap<String, u64> {
    let rows: Vec<(String, u64)> = iso
        .clickhouse_client()
        .query("SELECT name, count() FROM events WHERE app_id = ? GROUP BY name")
        .bind(app)
        .fetch_all()
        .await
        .unwrap();
    rows.into_iter().collect()
}

/// The live view (last 10 minutes of windows, from Redis through the query
/// service) must count what ClickHouse holds, name by name.
pub async fn assert_live_equals_rows(iso: &Isolation, query: &services::Running, app: &str) {
    let want = rows_by_name(iso, app).await;
    let total: u64 = want.values().sum();
    let key = read_key(app).await;
    let url = format!("{}/api/v1/analytics/{app}/live?windows=120", query.url());
    let http = reqwest::Client::new();
    // Polled until it reaches the rows (≤ 30 s); compared whatever it shows then.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let live = loop {
        let answer: Option<serde_json::Value> = async {
            http.get(&url)
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        let reached = answer
            .as_ref()
            .and_then(|a| a["total_events"].as_u64())
            .is_some_and(|n| n >= total);
        if reached || std::time::Instant::now() > deadline {
            break answer.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(live["total_events"], total, "{live}");
    let by_name = live["windows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["by_name"].as_object().unwrap().clone())
        .fold(
            BTreeMap::new(),
            |mut acc: BTreeMap<String, u64>, (name, n)| {
                *acc.entry(name).or_default() += n.as_u64().unwrap();
                acc
            },
        );
    assert_eq!(by_name, want);
}
