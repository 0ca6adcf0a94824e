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

mod sdk;

use sdk::{assert_contains_all, node_clients, rows, run_node, web_dir, Pipeline};
use std::time::Duration;
use tally_testkit::{
    clickhouse_counts, eventually, node_clients_dir, services, unique, write_key, Isolation,
};

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
    let dir = node_clients("posthog-node");
    let pipeline = Pipeline::start().await;
    let app = unique("posthog");
    let key = write_key(&app).await;
    let report = run_node("posthog.js", vec![dir, pipeline.gateway.url(), key]).await;
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let requests = report["relay"]["requests"].as_u64().unwrap_or(0);
    assert!(requests >= 2, "the forced batch was sent again: {report}");

    // The retried batch's events once each: rows equal distinct SDK uuids.
    pipeline.assert_stored_once(&app, 13).await;
    let want = rows(&[
        ("PostHog Event", "ph-user", "", 10),
        ("alias", "ph-user", "", 1),
        ("identify", "ph-user", "", 1),
        ("page_view", "ph-anon", "", 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    // The SDK's properties, mapped: library, page URL, alias, traits.
    let facts = pipeline
        .facts(&app, &["alias", "identify", "page_view"])
        .await;
    assert_contains_all(
        &facts,
        &[
            "library.name=posthog-node",
            "previous_id=ph-old-device",
            "traits.plan=pro",
            "url=https://shop.example/pricing",
            "path=/pricing",
        ],
    );
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posthog_js_in_chromium_works_unmodified_and_its_retries_count_once() {
    let (web, dir) = (web_dir(), node_clients("posthog-js/dist/array.js"));
    let pipeline = Pipeline::start().await;
    let app = unique("posthog_js");
    let key = write_key(&app).await;
    let args = vec![dir, web, pipeline.gateway.url(), key];
    let report = run_node("posthog_browser.mjs", args).await;
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    assert_eq!(report["compression"], "gzip-js", "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let encodings = &report["relay"]["encodings"];
    for encoding in ["gzip", "json", "form-base64"] {
        let seen = encodings[encoding].as_u64().unwrap_or(0);
        assert!(seen >= 1, "{encoding}: {report}");
    }
    // 1 page view + 10 + identify + 2 + $set + 2 beacons (main); 3 + 2 beacons (plain).
    assert_eq!(report["captured"], 22, "{report}");

    // The retried request's events once each: rows equal distinct SDK uuids.
    pipeline.assert_stored_once(&app, 22).await;
    let a = report["anonymous_id"].as_str().unwrap();
    let want = rows(&[
        ("after_identify", "ph-browser-user", "", 2),
        // Both instances' beacons: the second instance shares the first's
        // persisted identity (same project key), so it is identified too.
        ("beacon_event", "ph-browser-user", "", 4),
        ("identify", "ph-browser-user", "", 1),
        ("identify", "ph-browser-user", a, 1),
        ("page_view", "", a, 1),
        ("ph_browser_event", "", a, 10),
        ("plain_event", "ph-browser-user", "", 3),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let facts = pipeline.facts(&app, &["page_view", "identify"]).await;
    assert_contains_all(
        &facts,
        &[
            "/pricing ",
            "library.name=web",
            "traits.plan=pro",
            "traits.company=acme",
            "traits.first_page=pricing",
            "utm_source",
        ],
    );
    pipeline.finish(&app).await;
}
