//! Other vendors' unmodified SDKs against the real gateway, broker, Redis and
//! ClickHouse, each through a relay (`tests/sdk/*.js`, `*.mjs`) that answers a
//! stored request with 503 once:
//!
//! * Plausible's tracker in Chromium (`/api/event`, the app found by its site
//!   domain);
//! * Amplitude's Node SDK (`/2/httpapi`), Mixpanel's (`/track`, `/engage`),
//!   Umami's Node client (`/api/send`) and Snowplow's Node tracker (`tp2` POST
//!   and the `/i` pixel).
//!
//! Every event must land exactly once — SDK retries deduplicated by the
//! client's own ids — with the names and identities sent, and the live counts
//! must equal the stored rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod sdk;

use sdk::{assert_live_equals_rows, rows_by_name, run_node};
use std::collections::BTreeMap;
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, node_clients_dir, services, unique, write_key, Isolation,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amplitude_node_sdk_works_unmodified_and_its_retries_count_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("amplitude");
    let key = write_key(&app).await;
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/@amplitude/analytics-node").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let report = run_node(
        "amplitude.js",
        vec![dir.display().to_string(), gateway.url(), key],
    )
    .await;
    let expected = 13;
    assert_eq!(
        report["codes"],
        serde_json::json!(vec![200; 13]),
        "{report}"
    );
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert_eq!(report["relay"]["stored"], expected, "{report}");

    eventually("Amplitude rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    // The forced upload was sent again: its events once each, under the SDK's insert_ids.
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    let mut ids: Vec<String> = iso
        .clickhouse_client()
        .query("SELECT toString(event_id) FROM events WHERE app_id = ?")
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    ids.sort();
    let mut sent: Vec<String> = report["insert_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    assert_eq!(ids, sent);
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
        ("Amplitude Event", "amp-user", "amp-device", 10),
        ("group", "", "amp-device", 1),
        ("identify", "amp-user", "amp-device", 1),
        ("revenue_amount", "amp-user", "", 1),
    ]
    .into_iter()
    .map(|(n, u, a, c)| (n.into(), u.into(), a.into(), c))
    .collect();
    assert_eq!(rows, want, "{report}");
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, arrayStringConcat(arraySort(arrayMap((k, v) -> concat(k, '=', v), \
             prop_keys, prop_values)), ' ') FROM events WHERE app_id = ? \
             AND name != 'Amplitude Event' ORDER BY name",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "library.name=amplitude-node-ts",
        "traits.plan=pro",
        "traits.first_seen=2026-12-01",
        "group_id=acme",
        "group_type=org",
        "traits.seats=5",
        "price=9.5",
        "product_id=sku-1",
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
async fn mixpanel_node_sdk_works_unmodified_and_a_retried_batch_counts_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("mixpanel");
    let key = write_key(&app).await;
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/mixpanel").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let report = run_node(
        "mixpanel.js",
        vec![dir.display().to_string(), gateway.url(), key],
    )
    .await;
    // The forced 503 reached the SDK as an error; nothing else failed.
    assert!(report["forced"].is_string(), "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let methods = &report["relay"]["methods"];
    for route in ["GET /track", "POST /track", "GET /engage"] {
        assert!(
            methods[route].as_u64().unwrap_or(0) >= 1,
            "{route}: {report}"
        );
    }

    // 4 single events, the batch of 6 (sent twice), a page view, an identify, a verbose event.
    let expected = 13;
    eventually("Mixpanel rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
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
        ("Mixpanel Batch", "mp-user", "", 6),
        ("Mixpanel Event", "mp-user", "", 4),
        ("Verbose Event", "mp-user", "", 1),
        ("identify", "mp-user", "", 1),
        ("page_view", "", "mp-device", 1),
    ]
    .into_iter()
    .map(|(n, u, a, c)| (n.into(), u.into(), a.into(), c))
    .collect();
    assert_eq!(rows, want, "{report}");
    let batch_ids: Vec<String> = iso
        .clickhouse_client()
        .query(
            "SELECT event_id FROM events WHERE app_id = ? AND name = 'Mixpanel Batch' \
             ORDER BY event_id",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let want_ids: Vec<String> = (0..6).map(|i| format!("mp-batch-{i}")).collect();
    assert_eq!(batch_ids, want_ids);
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, concat(url_path, ' ', arrayStringConcat(arraySort(arrayMap( \
             (k, v) -> concat(k, '=', v), prop_keys, prop_values)), ' ')) FROM events \
             WHERE app_id = ? AND name IN ('identify', 'page_view', 'Mixpanel Event') ORDER BY name",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in ["library.name=node", "traits.plan=pro", "/pricing "] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!text.contains("203.0.113.9"), "$ip is dropped: {text}");
    assert_live_equals_rows(&iso, &query, &app).await;

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn umami_node_client_works_unmodified_and_each_event_counts_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("umami");
    let key = write_key(&app).await;
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/@umami/node").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let report = run_node(
        "umami.js",
        vec![dir.display().to_string(), gateway.url(), key],
    )
    .await;
    // The first answer was the forced 503 (the event stored); the rest 200.
    assert_eq!(
        report["statuses"],
        serde_json::json!([503, 200, 200, 200, 200, 200]),
        "{report}"
    );
    assert_eq!(report["relay"]["forced"], 1, "{report}");

    let expected = 6;
    eventually("Umami rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (expected, expected));
    let want: BTreeMap<String, u64> = [
        ("checkout", 1),
        ("identify", 1),
        ("page_view", 1),
        ("signup", 3),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_owned(), n))
    .collect();
    assert_eq!(rows_by_name(&iso, &app).await, want);
    // One client, one visitor of the day.
    let visitors: u64 = iso
        .clickhouse_client()
        .query("SELECT uniqExact(anonymous_id) FROM events WHERE app_id = ? AND anonymous_id != ''")
        .bind(&app)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(visitors, 1);
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, concat(url_path, ' ', arrayStringConcat(arraySort(arrayMap( \
             (k, v) -> concat(k, '=', v), prop_keys, prop_values)), ' ')) FROM events \
             WHERE app_id = ? AND name IN ('page_view', 'identify', 'checkout') ORDER BY name",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "/pricing ",
        "/checkout ",
        "screen=1920x1080",
        "traits.company=Acme",
        "step=2",
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
async fn snowplow_node_tracker_works_unmodified_and_its_retries_count_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("snowplow");
    let key = write_key(&app).await;
    let dir = node_clients_dir();
    assert!(
        dir.join("node_modules/@snowplow/node-tracker").exists(),
        "run scripts/stack up: it installs the SDKs into {}",
        dir.display()
    );
    let report = run_node(
        "snowplow.js",
        vec![dir.display().to_string(), gateway.url(), key],
    )
    .await;
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let paths = &report["relay"]["paths"];
    assert!(
        paths["POST /com.snowplowanalytics.snowplow/tp2"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{report}"
    );
    assert!(paths["GET /i"].as_u64().unwrap_or(0) >= 1, "{report}");
    let expected = 9;
    assert_eq!(
        report["sent"].as_array().map(Vec::len),
        Some(expected),
        "{report}"
    );

    eventually("Snowplow rows", Duration::from_secs(60), || async {
        let (rows, _) = clickhouse_counts(&iso, &app).await;
        (rows >= expected as u64).then_some(())
    })
    .await;
    iso.wait_consumed().await;
    // The retried batch's events once each, under the tracker's eids.
    assert_eq!(
        clickhouse_counts(&iso, &app).await,
        (expected as u64, expected as u64)
    );
    let mut ids: Vec<String> = iso
        .clickhouse_client()
        .query("SELECT event_id FROM events WHERE app_id = ?")
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    ids.sort();
    let mut sent: Vec<String> = report["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|eid| eid.as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    assert_eq!(ids, sent);
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
        ("add-to-basket", "sp-user", "sp-device", 6),
        ("page_view", "", "sp-pixel-device", 1),
        ("page_view", "sp-user", "sp-device", 1),
        ("viewed_product", "sp-user", "sp-device", 1),
    ]
    .into_iter()
    .map(|(n, u, a, c)| (n.into(), u.into(), a.into(), c))
    .collect();
    assert_eq!(rows, want, "{report}");
    let facts: Vec<(String, String)> = iso
        .clickhouse_client()
        .query(
            "SELECT name, concat(url_path, ' ', arrayStringConcat(arraySort(arrayMap( \
             (k, v) -> concat(k, '=', v), prop_keys, prop_values)), ' ')) FROM events \
             WHERE app_id = ? AND name != 'add-to-basket' ORDER BY name, url_path",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let text = format!("{facts:?}");
    for needle in [
        "/pricing ",
        "/landing ",
        "context.user.type=tester",
        "library.name=node",
        "sku=a-1",
        "schema=iglu:com.acme/viewed_product/jsonschema/1-0-0",
        "title=Pricing",
        "session_id=sp-session",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert_live_equals_rows(&iso, &query, &app).await;

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}
