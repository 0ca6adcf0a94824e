//! Client SDKs against the real gateway, broker and ClickHouse:
//!
//! * our browser tracker served at `/sdk.js`, run in Node (`tests/sdk/harness.js`):
//!   automatic and history page views, custom events in batches of 20, identify, a
//!   failed first send that must be retried, and a `sendBeacon` flush on page hide;
//! * the unmodified Segment and RudderStack Node SDKs (`tests/sdk/clients.js`,
//!   installed by `scripts/stack`) pointed at the gateway;
//! * the unmodified PostHog Node SDK (`tests/sdk/posthog.js`) through a relay
//!   that answers its first, already stored, batch with 503 — the SDK's retry
//!   must not count twice;
//! * the unmodified posthog-js in Chromium (`tests/sdk/posthog_browser.mjs`):
//!   remote config from the gateway, gzip, plain JSON and form-encoded base64
//!   bodies, sendBeacon, CORS from another origin, the same forced 503.
//!
//! Every event must land exactly once, with the names and identities sent, and
//! the live counts must equal the stored rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, node_clients_dir, read_key, services, unique, write_key,
    Isolation,
};

/// Events per name in ClickHouse.
async fn rows_by_name(iso: &Isolation, app: &str) -> BTreeMap<String, u64> {
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
async fn assert_live_equals_rows(iso: &Isolation, query: &services::Running, app: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posthog_node_sdk_works_unmodified_and_its_retries_count_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("posthog");
    let key = write_key(&app).await;
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/posthog-node").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let report = run_node(
        "posthog.js",
        vec![dir.display().to_string(), gateway.url(), key],
    )
    .await;
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let requests = report["relay"]["requests"].as_u64().unwrap_or(0);
    assert!(requests >= 2, "the forced batch was sent again: {report}");

    let expected = 13;
    eventually("PostHog rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    // The retried batch's events once each: rows equal distinct SDK uuids.
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    let rows: Vec<(String, String, u64)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, user_id, count() FROM events WHERE app_id = ? \
             GROUP BY name, user_id ORDER BY name, user_id",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let want: Vec<(String, String, u64)> = [
        ("PostHog Event", "ph-user", 10),
        ("alias", "ph-user", 1),
        ("identify", "ph-user", 1),
        ("page_view", "ph-anon", 1),
    ]
    .into_iter()
    .map(|(n, u, c)| (n.into(), u.into(), c))
    .collect();
    assert_eq!(rows, want);
    // The SDK's properties, mapped: library, page URL, alias, traits.
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, arrayStringConcat(arraySort(arrayMap((k, v) -> concat(k, '=', v), \
             prop_keys, prop_values)), ' ') FROM events WHERE app_id = ? AND name != 'PostHog Event' \
             ORDER BY name",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "library.name=posthog-node",
        "previous_id=ph-old-device",
        "traits.plan=pro",
        "url=https://shop.example/pricing",
        "path=/pricing",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }

    assert_live_equals_rows(&iso, &query, &app).await;

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posthog_js_in_chromium_works_unmodified_and_its_retries_count_once() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: cd web && npm ci"
    );
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/posthog-js/dist/array.js").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("posthog_js");
    let key = write_key(&app).await;

    let report = run_node(
        "posthog_browser.mjs",
        vec![
            dir.display().to_string(),
            web.display().to_string(),
            gateway.url(),
            key,
        ],
    )
    .await;
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    assert_eq!(report["compression"], "gzip-js", "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let encodings = &report["relay"]["encodings"];
    for encoding in ["gzip", "json", "form-base64"] {
        assert!(
            encodings[encoding].as_u64().unwrap_or(0) >= 1,
            "{encoding}: {report}"
        );
    }
    // 1 page view + 10 + identify + 2 + 2 beacons (main); 3 + 2 beacons (plain).
    let expected = 21;
    assert_eq!(report["captured"], expected, "{report}");

    eventually("posthog-js rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    // The retried request's events once each: rows equal distinct SDK uuids.
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    let anonymous = report["anonymous_id"].as_str().unwrap().to_owned();
    let rows: Vec<(String, String, String, u64)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, user_id, anonymous_id, count() FROM events WHERE app_id = ? \
             AND anonymous_id IN (?, '') GROUP BY name, user_id, anonymous_id \
             ORDER BY name, user_id, anonymous_id",
        )
        .bind(&app)
        .bind(&anonymous)
        .fetch_all()
        .await
        .unwrap();
    let a = anonymous.as_str();
    let want: Vec<(String, String, String, u64)> = [
        ("after_identify", "ph-browser-user", "", 2),
        // Both instances' beacons: the second instance shares the first's
        // persisted identity (same project key), so it is identified too.
        ("beacon_event", "ph-browser-user", "", 4),
        ("identify", "ph-browser-user", a, 1),
        ("page_view", "", a, 1),
        ("ph_browser_event", "", a, 10),
        ("plain_event", "ph-browser-user", "", 3),
    ]
    .into_iter()
    .map(|(n, u, an, c)| (n.into(), u.into(), an.into(), c))
    .collect();
    assert_eq!(rows, want, "{report}");
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, concat(url_path, ' ', browser, ' ', \
             arrayStringConcat(arraySort(arrayMap((k, v) -> concat(k, '=', v), \
             prop_keys, prop_values)), ' ')) FROM events WHERE app_id = ? \
             AND name IN ('page_view', 'identify') ORDER BY name",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "/pricing ",
        "library.name=web",
        "traits.plan=pro",
        "utm_source",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert_live_equals_rows(&iso, &query, &app).await;

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plausible_tracker_in_chromium_works_unmodified_and_each_event_counts_once() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: cd web && npm ci"
    );
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/@plausible-analytics/tracker/plausible.js")
            .exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("plausible");
    let domain = format!("{}.example", app.replace('_', "-"));
    // Allowed as www.…: the tracker's bare domain must find it.
    let stored = tally_testkit::allow_domain(&app, &format!("WWW.{domain}")).await;
    assert_eq!(stored, domain);

    // A domain no app allows, and none at all, are refused with their reasons.
    let http = reqwest::Client::new();
    for (body, status, reason) in [
        (
            r#"{"n":"pageview","u":"https://x.example/","d":"nobody-here.example"}"#,
            401,
            "unknown_domain",
        ),
        (
            r#"{"n":"pageview","u":"https://x.example/"}"#,
            400,
            "missing_domain",
        ),
    ] {
        let answer = http
            .post(format!("{}/api/event", gateway.url()))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{body}");
        let json: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(json["error"], reason, "{json}");
    }

    let report = run_node(
        "plausible_browser.mjs",
        vec![
            dir.display().to_string(),
            web.display().to_string(),
            gateway.url(),
            domain.clone(),
        ],
    )
    .await;
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert_eq!(
        report["statuses"],
        serde_json::json!([202, 202, 202, 202, 202]),
        "{report}"
    );
    let sent: BTreeMap<String, u64> = report["relay"]["stored"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, n)| {
            let name = if name == "pageview" {
                "page_view"
            } else {
                name
            };
            (name.to_owned(), n.as_u64().unwrap())
        })
        .collect();
    for (name, at_least) in [
        ("page_view", 2),
        ("Signup", 3),
        ("Purchase", 1),
        ("Outbound Link: Click", 1),
        ("engagement", 1),
    ] {
        assert!(
            sent.get(name).copied().unwrap_or(0) >= at_least,
            "{name}: {report}"
        );
    }
    let expected: u64 = sent.values().sum();

    eventually("Plausible rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    // The event answered 503 once, like every other, stored exactly once.
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    assert_eq!(rows_by_name(&iso, &app).await, sent, "{report}");
    // One browser, one visitor of the day; no user id.
    let (visitors, identified): (u64, u64) = iso
        .clickhouse_client()
        .query(
            "SELECT uniqExact(anonymous_id), countIf(user_id != '') FROM events \
             WHERE app_id = ? AND anonymous_id != ''",
        )
        .bind(&app)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((visitors, identified), (1, 0));
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, concat(url_path, ' ', arrayStringConcat(arraySort(arrayMap( \
             (k, v) -> concat(k, '=', v), prop_keys, prop_values)), ' ')) FROM events \
             WHERE app_id = ? AND name IN ('page_view', 'Purchase') ORDER BY name, url_path",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "/checkout ",
        "/pricing ",
        "currency=EUR",
        "revenue=19.99",
        "plan=pro",
        "sku=a-1",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert_live_equals_rows(&iso, &query, &app).await;

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}
