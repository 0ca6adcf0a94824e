//! Other vendors' unmodified SDKs against the real gateway, broker, Redis and
//! ClickHouse, each through a relay (`tests/sdk/*.js`, `*.mjs`) that answers a
//! stored request with 503 once:
//!
//! * Plausible's tracker in Chromium (`/api/event`, the app found by its site
//!   domain);
//! * Mixpanel's browser SDK in Chromium (batched `/track`, `/engage`, CORS
//!   with credentials), Amplitude's (`/2/httpapi`, autocapture) and
//!   Snowplow's browser tracker (`tp2` POSTs with credentials);
//! * Amplitude's Node SDK (`/2/httpapi`), Mixpanel's (`/track`, `/engage`),
//!   Umami's Node client (`/api/send`) and Snowplow's Node tracker (`tp2` POST
//!   and the `/i` pixel).
//!
//! Every event must land exactly once — SDK retries deduplicated by the
//! client's own ids — with the names and identities sent, and the live counts
//! must equal the stored rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod sdk;

use sdk::{assert_contains_all, node_clients, rows, rows_by_name, run_node, web_dir, Pipeline};
use serde_json::json;
use std::collections::BTreeMap;
use tally_testkit::{unique, write_key};

/// Distinct anonymous ids and rows with a user id, of `app`.
async fn visitors(pipeline: &Pipeline, app: &str) -> (u64, u64) {
    pipeline
        .iso
        .clickhouse_client()
        .query(
            "SELECT uniqExact(anonymous_id), countIf(user_id != '') FROM events \
             WHERE app_id = ? AND anonymous_id != ''",
        )
        .bind(app)
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plausible_tracker_in_chromium_works_unmodified_and_each_event_counts_once() {
    let (web, dir) = (web_dir(), node_clients("@plausible-analytics/tracker"));
    let pipeline = Pipeline::start().await;
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
            .post(format!("{}/api/event", pipeline.gateway.url()))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{body}");
        let answer: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(answer["error"], reason, "{answer}");
    }

    let args = vec![dir, web, pipeline.gateway.url(), domain.clone()];
    let report = run_node("plausible_browser.mjs", args).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert_eq!(
        report["statuses"],
        json!([202, 202, 202, 202, 202]),
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
    // The event answered 503, like every other, stored exactly once.
    pipeline.assert_stored_once(&app, sent.values().sum()).await;
    assert_eq!(rows_by_name(&pipeline.iso, &app).await, sent, "{report}");
    // One browser, one visitor of the day; no user id.
    assert_eq!(visitors(&pipeline, &app).await, (1, 0));
    let facts = pipeline.facts(&app, &["page_view", "Purchase"]).await;
    assert_contains_all(
        &facts,
        &[
            "/checkout ",
            "/pricing ",
            "currency=EUR",
            "revenue=19.99",
            "plan=pro",
            "sku=a-1",
        ],
    );
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amplitude_node_sdk_works_unmodified_and_its_retries_count_once() {
    let dir = node_clients("@amplitude/analytics-node");
    let pipeline = Pipeline::start().await;
    let app = unique("amplitude");
    let key = write_key(&app).await;
    let report = run_node("amplitude.js", vec![dir, pipeline.gateway.url(), key]).await;
    assert_eq!(report["codes"], json!(vec![200; 13]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert_eq!(report["relay"]["stored"], 13, "{report}");

    // The forced upload was sent again: its events once each, under the SDK's insert_ids.
    pipeline.assert_stored_once(&app, 13).await;
    let mut sent: Vec<String> = serde_json::from_value(report["insert_ids"].clone()).unwrap();
    sent.sort();
    assert_eq!(pipeline.event_ids(&app).await, sent);
    let want = rows(&[
        ("Amplitude Event", "amp-user", "amp-device", 10),
        ("group", "", "amp-device", 1),
        ("identify", "amp-user", "amp-device", 1),
        ("revenue_amount", "amp-user", "", 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let facts = pipeline
        .facts(&app, &["group", "identify", "revenue_amount"])
        .await;
    assert_contains_all(
        &facts,
        &[
            "library.name=amplitude-node-ts",
            "traits.plan=pro",
            "traits.first_seen=2026-12-01",
            "group_id=acme",
            "group_type=org",
            "traits.seats=5",
            "price=9.5",
            "product_id=sku-1",
        ],
    );
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amplitude_browser_sdk_in_chromium_works_unmodified_and_its_retries_count_once() {
    let (web, dir) = (web_dir(), node_clients("@amplitude/analytics-browser"));
    let pipeline = Pipeline::start().await;
    let app = unique("amplitude_browser");
    let key = write_key(&app).await;
    let args = vec![dir, web, pipeline.gateway.url(), key];
    let report = run_node("amplitude_browser.mjs", args).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["missing"], json!([]), "{report}");
    assert_eq!(report["codes"], json!(vec![200; 13]), "{report}");
    // The first upload, stored, was answered 503 and sent again by the SDK.
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    let stored: BTreeMap<String, u64> = report["relay"]["stored"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, n)| {
            let name = match name.as_str() {
                "$identify" => "identify",
                "[Amplitude] Page Viewed" => "page_view",
                other => other,
            };
            (name.to_owned(), n.as_u64().unwrap())
        })
        .collect();
    for (name, at_least) in [
        ("ampb_event", 10),
        ("after_identify", 2),
        ("identify", 1),
        ("page_view", 1),
    ] {
        assert!(
            stored.get(name).copied().unwrap_or(0) >= at_least,
            "{name}: {report}"
        );
    }
    pipeline
        .assert_stored_once(&app, report["relay"]["acked"].as_u64().unwrap())
        .await;
    assert_eq!(rows_by_name(&pipeline.iso, &app).await, stored, "{report}");
    // One visitor throughout: the SDK's device id on every row.
    let device = report["device"].as_str().unwrap();
    for (name, _, anonymous, _) in pipeline.rows_by_identity(&app).await {
        assert_eq!(anonymous, device, "{name}: {report}");
    }
    let facts = pipeline.facts(&app, &["page_view", "identify"]).await;
    assert_contains_all(&facts, &["/pricing ", "traits.plan=pro", "utm_source=news"]);
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixpanel_node_sdk_works_unmodified_and_a_retried_batch_counts_once() {
    let dir = node_clients("mixpanel");
    let pipeline = Pipeline::start().await;
    let app = unique("mixpanel");
    let key = write_key(&app).await;
    let report = run_node(
        "mixpanel.js",
        vec![dir, pipeline.gateway.url(), key.clone()],
    )
    .await;
    // The forced 503 reached the SDK as an error; nothing else failed.
    assert!(report["forced"].is_string(), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    for route in ["GET /track", "POST /track", "GET /engage"] {
        assert!(
            report["relay"]["methods"][route].as_u64().unwrap_or(0) >= 1,
            "{route}: {report}"
        );
    }

    // /import (mixpanel-node sends its secret only over HTTPS): the key as the
    // Basic user, a JSON array; Mixpanel's answers for a clean and a partly
    // refused batch.
    let http = reqwest::Client::new();
    let import = |body: serde_json::Value| {
        http.post(format!("{}/import?strict=1", pipeline.gateway.url()))
            .basic_auth(&key, Some(""))
            .json(&body)
            .send()
    };
    // Now, in seconds as Mixpanel sends it: within the live windows' lateness,
    // so the live view counts it too (older imports reach ClickHouse only).
    let time = tally_testkit::now_ms() / 1000;
    let event = |id: &str| json!({"event": "Imported", "properties": {"distinct_id": "mp-user", "time": time, "$insert_id": id}});
    let clean = import(json!([event("imp-1"), event("imp-2")]))
        .await
        .unwrap();
    assert_eq!(clean.status().as_u16(), 200);
    let clean: serde_json::Value = clean.json().await.unwrap();
    assert_eq!(
        clean,
        json!({"code": 200, "num_records_imported": 2, "status": "OK"})
    );
    let partly = import(json!([event("imp-3"), {"properties": {"distinct_id": "u"}}]))
        .await
        .unwrap();
    assert_eq!(partly.status().as_u16(), 400);
    let partly: serde_json::Value = partly.json().await.unwrap();
    assert_eq!(
        (
            &partly["num_records_imported"],
            &partly["failed_records"][0]["index"]
        ),
        (&json!(1), &json!(1)),
        "{partly}"
    );
    assert_eq!(
        partly["failed_records"][0]["message"], "missing_name",
        "{partly}"
    );

    // 4 single events, the batch of 6 (sent twice), a page view, an identify,
    // a verbose event; 3 imported.
    pipeline.assert_stored_once(&app, 16).await;
    let want = rows(&[
        ("Imported", "mp-user", "", 3),
        ("Mixpanel Batch", "mp-user", "", 6),
        ("Mixpanel Event", "mp-user", "", 4),
        ("Verbose Event", "mp-user", "", 1),
        ("identify", "mp-user", "", 1),
        ("page_view", "", "mp-device", 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let ids = pipeline.event_ids(&app).await;
    for i in 0..6 {
        assert!(
            ids.contains(&format!("mp-batch-{i}")),
            "mp-batch-{i} in {ids:?}"
        );
    }
    let facts = pipeline
        .facts(&app, &["identify", "page_view", "Mixpanel Event"])
        .await;
    assert_contains_all(
        &facts,
        &["library.name=node", "traits.plan=pro", "/pricing "],
    );
    assert!(!facts.contains("203.0.113.9"), "$ip is dropped: {facts}");
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixpanel_browser_sdk_in_chromium_works_unmodified_and_its_retries_count_once() {
    let (web, dir) = (web_dir(), node_clients("mixpanel-browser"));
    let pipeline = Pipeline::start().await;
    let app = unique("mixpanel_browser");
    let key = write_key(&app).await;
    let args = vec![dir, web, pipeline.gateway.url(), key];
    let report = run_node("mixpanel_browser.mjs", args).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    // The first batch, stored, was answered 503 and sent again by the SDK.
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert!(
        report["relay"]["paths"]["POST /track/"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{report}"
    );
    let engaged = report["relay"]["engaged"].as_array().unwrap().len() as u64;
    assert_eq!(report["relay"]["acked"], 14, "{report}");
    assert_eq!(
        engaged, 2,
        "people.set: a $set_once and a $set update: {report}"
    );
    pipeline.assert_stored_once(&app, 14 + engaged).await;
    // One visitor: its device id before and after identify, on the identify
    // itself (the SDK's `$device:` prefix removed) and on the profile updates.
    let device = report["anonymous"]
        .as_str()
        .unwrap()
        .strip_prefix("$device:")
        .unwrap()
        .to_owned();
    let want = rows(&[
        ("after_identify", "mpb-user", &device, 2),
        ("identify", "mpb-user", &device, 3),
        ("mpb_event", "", &device, 10),
        ("page_view", "", &device, 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let facts = pipeline.facts(&app, &["page_view", "identify"]).await;
    assert_contains_all(&facts, &["/pricing ", "traits.plan=pro"]);
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn umami_node_client_works_unmodified_and_each_event_counts_once() {
    let dir = node_clients("@umami/node");
    let pipeline = Pipeline::start().await;
    let app = unique("umami");
    let key = write_key(&app).await;
    let report = run_node("umami.js", vec![dir, pipeline.gateway.url(), key]).await;
    // The first answer was the forced 503 (the event stored); the rest 200.
    assert_eq!(
        report["statuses"],
        json!([503, 200, 200, 200, 200, 200]),
        "{report}"
    );
    assert_eq!(report["relay"]["forced"], 1, "{report}");

    pipeline.assert_stored_once(&app, 6).await;
    let want: BTreeMap<String, u64> = [
        ("checkout", 1),
        ("identify", 1),
        ("page_view", 1),
        ("signup", 3),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_owned(), n))
    .collect();
    assert_eq!(rows_by_name(&pipeline.iso, &app).await, want);
    // One client, one visitor of the day.
    assert_eq!(visitors(&pipeline, &app).await.0, 1);
    let facts = pipeline
        .facts(&app, &["page_view", "identify", "checkout"])
        .await;
    assert_contains_all(
        &facts,
        &[
            "/pricing ",
            "/checkout ",
            "screen=1920x1080",
            "traits.company=Acme",
            "step=2",
        ],
    );
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snowplow_node_tracker_works_unmodified_and_its_retries_count_once() {
    let dir = node_clients("@snowplow/node-tracker");
    let pipeline = Pipeline::start().await;
    let app = unique("snowplow");
    let key = write_key(&app).await;
    let report = run_node("snowplow.js", vec![dir, pipeline.gateway.url(), key]).await;
    assert_eq!(report["missing"], json!([]), "{report}");
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
    let mut sent: Vec<String> = serde_json::from_value(report["sent"].clone()).unwrap();
    assert_eq!(sent.len(), 9, "{report}");

    // The retried batch's events once each, under the tracker's eids.
    pipeline.assert_stored_once(&app, 9).await;
    sent.sort();
    assert_eq!(pipeline.event_ids(&app).await, sent);
    let want = rows(&[
        ("add-to-basket", "sp-user", "sp-device", 6),
        ("page_view", "", "sp-pixel-device", 1),
        ("page_view", "sp-user", "sp-device", 1),
        ("viewed_product", "sp-user", "sp-device", 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let facts = pipeline.facts(&app, &["page_view", "viewed_product"]).await;
    assert_contains_all(
        &facts,
        &[
            "/pricing ",
            "/landing ",
            "context.user.type=tester",
            "library.name=node",
            "sku=a-1",
            "schema=iglu:com.acme/viewed_product/jsonschema/1-0-0",
            "title=Pricing",
            "session_id=sp-session",
        ],
    );
    pipeline.finish(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snowplow_browser_tracker_in_chromium_works_unmodified_and_its_retries_count_once() {
    let (web, dir) = (web_dir(), node_clients("@snowplow/browser-tracker"));
    let pipeline = Pipeline::start().await;
    let app = unique("snowplow_browser");
    let key = write_key(&app).await;
    let args = vec![dir, web, pipeline.gateway.url(), key];
    let report = run_node("snowplow_browser.mjs", args).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    // The first POST, stored, was answered 503 and sent again by the tracker.
    assert_eq!(report["relay"]["forced"], 1, "{report}");
    assert_eq!(report["relay"]["acked"], 6, "{report}");
    pipeline.assert_stored_once(&app, 6).await;
    let mut eids: Vec<String> = serde_json::from_value(report["eids"].clone()).unwrap();
    eids.sort();
    assert_eq!(pipeline.event_ids(&app).await, eids, "{report}");
    // One visitor: the tracker's domain user id (its first-party cookie) as
    // the anonymous id on every event, with the user id it was given.
    let duid = report["duid"].as_str().unwrap();
    assert!(!duid.is_empty(), "{report}");
    let want = rows(&[
        ("add-to-basket", "spb-user", duid, 3),
        ("checkout", "spb-user", duid, 1),
        ("page_view", "spb-user", duid, 1),
        ("viewed_product", "spb-user", duid, 1),
    ]);
    assert_eq!(pipeline.rows_by_identity(&app).await, want, "{report}");
    let facts = pipeline.facts(&app, &["page_view", "viewed_product"]).await;
    assert_contains_all(
        &facts,
        &[
            "/pricing ",
            "sku=a-1",
            "title=Pricing",
            "schema=iglu:com.acme/viewed_product/jsonschema/1-0-0",
        ],
    );
    pipeline.finish(&app).await;
}
