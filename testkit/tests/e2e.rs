//! One batch of events end to end over real HTTP, the real broker, Redis and
//! ClickHouse, read back through the query service.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tally_testkit::{clickhouse_counts, eventually, now_ms, post_batch, services, Isolation};

const EVENTS: usize = 3_000;
const USERS: usize = 1_000;

fn name_of(i: usize) -> &'static str {
    match i % 10 {
        0..=5 => "page_view",
        6..=8 => "add_to_cart",
        _ => "purchase",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_posted_over_http_are_read_back_exactly() {
    let iso = Isolation::new(4).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = tally_testkit::unique("e2e");
    let app = app.as_str();
    let key = tally_testkit::write_key(app).await;
    let read_key = tally_testkit::read_key(app).await;

    let started = now_ms();
    let mut expected_names: BTreeMap<String, u64> = BTreeMap::new();
    for chunk in 0..EVENTS / 300 {
        let events: Vec<Value> = (chunk * 300..(chunk + 1) * 300)
            .map(|i| {
                *expected_names.entry(name_of(i).into()).or_default() += 1;
                json!({
                    "name": name_of(i),
                    "user_id": format!("user-{}", i % USERS),
                    "timestamp": now_ms(),
                    "properties": {"url": format!("/p/{}", i % 7), "n": i}
                })
            })
            .collect();
        let (status, answer) = post_batch(
            &http,
            &gateway.url(),
            &key,
            &json!({"app_id": app, "events": events}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 300);
        assert_eq!(answer["rejected"], 0);
    }

    let count_url = format!(
        "{}/api/v1/analytics/{app}/count?from={}&to={}",
        query.url(),
        started - 60_000,
        now_ms() + 60_000
    );
    let count = eventually(
        "ClickHouse count through the query service",
        Duration::from_secs(60),
        || async {
            let answer: Value = http
                .get(&count_url)
                .bearer_auth(&read_key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let count = answer["count"].as_u64()?;
            (count >= EVENTS as u64).then_some(count)
        },
    )
    .await;
    assert_eq!(count, EVENTS as u64);

    let live_url = format!("{}/api/v1/analytics/{app}/live?windows=120", query.url());
    let live: Value = eventually("live totals", Duration::from_secs(30), || async {
        let answer: Value = http
            .get(&live_url)
            .bearer_auth(&read_key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (answer["total_events"].as_u64()? >= EVENTS as u64).then_some(answer)
    })
    .await;
    assert_eq!(live["total_events"], EVENTS as u64);
    let by_name: BTreeMap<String, u64> = live["windows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["by_name"].as_object().unwrap().clone())
        .fold(BTreeMap::new(), |mut acc, (name, n)| {
            *acc.entry(name).or_default() += n.as_u64().unwrap();
            acc
        });
    assert_eq!(by_name, expected_names);
    let uniques = live["unique_users"].as_f64().unwrap();
    let error = (uniques - USERS as f64).abs() / USERS as f64;
    assert!(
        error <= 0.02,
        "unique users {uniques} vs {USERS} (error {error:.4})"
    );

    let (rows, ids) = clickhouse_counts(&iso, app).await;
    assert_eq!((rows, ids), (EVENTS as u64, EVENTS as u64));

    // This app's read key opens no other app; no key and the write key open nothing.
    let other_url = format!(
        "{}/api/v1/analytics/other-app/count?from={}",
        query.url(),
        started - 60_000
    );
    for (key, status, reason) in [
        (Some(read_key.as_str()), 403, "key_app_mismatch"),
        (Some(key.as_str()), 401, "invalid_read_key"),
        (None, 401, "missing_read_key"),
    ] {
        let mut request = http.get(&other_url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{reason}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], reason);
    }
    let own = http.get(&count_url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(own.status(), 401, "a write key cannot read");

    for service in [&gateway, &aggregator, &query] {
        let ready = http
            .get(format!("{}/readyz", service.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            ready.status(),
            200,
            "{}",
            ready.text().await.unwrap_or_default()
        );
        let metrics = http
            .get(format!("{}/metrics", service.url()))
            .send()
            .await
            .unwrap();
        assert!(metrics.text().await.unwrap().contains("tally_"));
    }
    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}

/// A topic fed by a gateway writing JSON envelopes (format 1) and one writing
/// binary envelopes (format 2), as during a switch of
/// `TALLY_ENVELOPE_FORMAT`: the aggregator reads both, every event is counted
/// once — also a client's retry of a binary-encoded batch through the JSON
/// gateway — and both formats carry the same facts into the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_and_binary_envelopes_on_one_topic_are_each_counted_once() {
    let iso = Isolation::new(2).await;
    let json_gateway = services::gateway(services::gateway_config(&iso)).await;
    let binary_gateway = services::gateway(ingest_gateway::Config {
        envelope_format: tally_schemas::Format::Binary,
        ..services::gateway_config(&iso)
    })
    .await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = tally_testkit::unique("formats");
    let key = tally_testkit::write_key(&app).await;
    let batch = |from: usize| -> Value {
        let events: Vec<Value> = (from..from + 200)
            .map(|i| {
                json!({"event_id": format!("e-{i}"), "name": name_of(i), "user_id": format!("u-{}", i % 40),
                       "timestamp": now_ms(), "properties": {"url": format!("https://shop.test/p/{}?utm_source=mail", i % 5),
                       "n": i, "price": 9.5, "ok": i % 2 == 0, "none": null}})
            })
            .collect();
        json!({"app_id": app, "events": events})
    };
    for (gateway, from) in [
        (&binary_gateway, 0),
        (&json_gateway, 200),
        (&binary_gateway, 400),
    ] {
        let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch(from)).await;
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (200, Some(200)),
            "{answer}"
        );
    }
    // A client retries the first (binary-encoded) batch through the JSON gateway.
    let (status, _) = post_batch(&http, &json_gateway.url(), &key, &batch(0)).await;
    assert_eq!(status, 200);
    iso.wait_consumed().await;
    let (rows, ids) = eventually("rows of both formats", Duration::from_secs(60), || async {
        let counts = clickhouse_counts(&iso, &app).await;
        (counts.0 >= 600).then_some(counts)
    })
    .await;
    assert_eq!((rows, ids), (600, 600));
    // The topic holds both encodings: 400 + 100 retried events in JSON, 400 in binary.
    let mut formats = BTreeMap::new();
    for value in tally_testkit::broker::read_all(&iso.kafka.brokers, &iso.kafka.topic).await {
        *formats.entry(value.first().copied()).or_insert(0) += 1;
    }
    assert_eq!(formats, BTreeMap::from([(Some(1), 400), (Some(2), 400)]));
    // The same facts from either format: properties, page fields and UTM.
    let facts: Vec<(String, String, String, String, u8)> = iso
        .clickhouse_client()
        .query(
            "SELECT DISTINCT url_path, utm_source, prop_values[indexOf(prop_keys, 'price')], \
             prop_values[indexOf(prop_keys, 'ok')], has(prop_keys, 'none') \
             FROM events WHERE app_id = ? AND event_id IN ('e-10', 'e-210', 'e-410')",
        )
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        facts,
        vec![(
            "/p/0".to_owned(),
            "mail".to_owned(),
            "9.5".to_owned(),
            "true".to_owned(),
            0
        )],
        "rows from the JSON and the binary gateway differ"
    );
    json_gateway.stop().await;
    binary_gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}
