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
    let fetch = || async {
        let answer = http.get(&url).bearer_auth(&key).send().await.ok()?;
        answer.json::<serde_json::Value>().await.ok()
    };
    let reached = |answer: &Option<serde_json::Value>| {
        answer
            .as_ref()
            .and_then(|a| a["total_events"].as_u64())
            .is_some_and(|n| n >= total)
    };
    let live = tally_testkit::poll(Duration::from_secs(30), fetch, reached)
        .await
        .unwrap_or_else(|last| last)
        .unwrap_or_default();
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

/// Gateway, aggregator and query service on a test's own topic, database and
/// Redis prefix.
pub struct Pipeline {
    /// The isolation.
    pub iso: Isolation,
    /// The gateway the SDK sends to.
    pub gateway: services::Running,
    /// The aggregator.
    pub aggregator: services::Running,
    /// The query service (live counts).
    pub query: services::Running,
}

impl Pipeline {
    /// Starts the three services.
    pub async fn start() -> Self {
        let iso = Isolation::new(2).await;
        let gateway = services::gateway(services::gateway_config(&iso)).await;
        let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
        let query = services::query(services::query_config(&iso)).await;
        Pipeline {
            iso,
            gateway,
            aggregator,
            query,
        }
    }

    /// Waits for `expected` rows of `app` and a consumed topic, then asserts
    /// that the rows are exactly `expected`, each with its own event id.
    pub async fn assert_stored_once(&self, app: &str, expected: u64) {
        tally_testkit::eventually("the SDK's rows", Duration::from_secs(60), || async {
            let (rows, _) = tally_testkit::clickhouse_counts(&self.iso, app).await;
            (rows >= expected).then_some(())
        })
        .await;
        // Everything consumed and committed: no duplicate can still show up.
        self.iso.wait_consumed().await;
        assert_eq!(
            tally_testkit::clickhouse_counts(&self.iso, app).await,
            (expected, expected)
        );
    }

    /// (name, user id, anonymous id, rows), sorted.
    pub async fn rows_by_identity(&self, app: &str) -> Vec<(String, String, String, u64)> {
        self.iso
            .clickhouse_client()
            .query(
                "SELECT name, user_id, anonymous_id, count() FROM events WHERE app_id = ? \
                 GROUP BY name, user_id, anonymous_id ORDER BY name, user_id, anonymous_id",
            )
            .bind(app)
            .fetch_all()
            .await
            .unwrap()
    }

    /// The event ids of `app`, sorted.
    pub async fn event_ids(&self, app: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .iso
            .clickhouse_client()
            .query("SELECT event_id FROM events WHERE app_id = ?")
            .bind(app)
            .fetch_all()
            .await
            .unwrap();
        ids.sort();
        ids
    }

    /// Every row of `app` named one of `names` as "name path k=v k=v…" (properties sorted), one per line.
    pub async fn facts(&self, app: &str, names: &[&str]) -> String {
        let rows: Vec<(String, String)> = self
            .iso
            .clickhouse_client()
            .query(
                "SELECT name, concat(url_path, ' ', arrayStringConcat(arraySort(arrayMap( \
                 (k, v) -> concat(k, '=', v), prop_keys, prop_values)), ' ')) FROM events \
                 WHERE app_id = ? ORDER BY name, url_path",
            )
            .bind(app)
            .fetch_all()
            .await
            .unwrap();
        rows.into_iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(name, text)| format!("{name} {text}\n"))
            .collect()
    }

    /// Asserts the live view equals the rows, then stops everything and drops the isolation.
    pub async fn finish(self, app: &str) {
        assert_live_equals_rows(&self.iso, &self.query, app).await;
        self.gateway.stop().await;
        self.aggregator.stop().await;
        self.query.stop().await;
        self.iso.cleanup().await;
    }
}

/// Owned rows of (name, user id, anonymous id, count).
pub fn rows(want: &[(&str, &str, &str, u64)]) -> Vec<(String, String, String, u64)> {
    want.iter()
        .map(|(n, u, a, c)| ((*n).into(), (*u).into(), (*a).into(), *c))
        .collect()
}

/// Asserts that `text` holds every one of `needles`.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

/// The SDK installation under `node_clients_dir()`, checked to hold `module`.
pub fn node_clients(module: &str) -> String {
    let dir = tally_testkit::node_clients_dir();
    assert!(
        dir.join("node_modules").join(module).exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    dir.display().to_string()
}

/// `web/`, checked to hold playwright-core (Chromium's driver).
pub fn web_dir() -> String {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: cd web && npm ci"
    );
    web.display().to_string()
}
