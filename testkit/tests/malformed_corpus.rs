//! The malformed-request corpus, against the real gateway and broker.
//!
//! 1. Hand-written cases in `tests/corpus/{native,segment,posthog}/`, one request body per
//!    file named `{status}-{reason}--{what}.{json|gz|gzraw|form}` (`.gz`: sent with
//!    `Content-Encoding: gzip`; `.gzraw`: gzip without that header, as
//!    posthog-js sends it; `.form`: sent as `application/x-www-form-urlencoded`;
//!    `native/` goes to `/api/v1/events/batch`,
//!    `segment/` to `/v1/batch`, `posthog/` to PostHog's `/batch/`, `plausible/`
//!    to Plausible's `/api/event` (an accepted event answers `202 ok`),
//!    `amplitude/` to `/2/httpapi`, `mixpanel/` to `/track?verbose=1`, `umami/`
//!    to `/api/send`, `snowplow/` to `…/tp2`). A `200-{reason}` file holds one event that must
//!    be refused with that reason; `200-ok` one that must be accepted.
//! 2. Generated cases: every prefix of a valid batch, and seeded random byte
//!    mutations (flip, insert, delete, duplicate) of valid native, Segment and
//!    PostHog batches (JSON, and form-encoded base64 as posthog-js's beacons).
//!
//! Every answer must be 200/400/404/413 with a JSON body carrying a reason or the
//! counts; never 5xx, never a hang. Afterwards the broker must hold exactly the
//! events the gateway said it accepted, and the dead-letter topic exactly those it
//! said it rejected: bad input never loses or invents accepted data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::Path;
use tally_testkit::broker::{event_ids, payloads};
use tally_testkit::{services, unique, write_key, Isolation};

struct Outcome {
    status: u16,
    answer: Value,
}

async fn send(http: &reqwest::Client, url: &str, key: &str, body: Vec<u8>, gzip: bool) -> Outcome {
    send_as(http, url, key, body, gzip, "application/json").await
}

async fn send_as(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: Vec<u8>,
    gzip: bool,
    content_type: &str,
) -> Outcome {
    let mut request = http
        .post(url)
        .basic_auth(key, Some(""))
        .header("content-type", content_type)
        .body(body);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status == 202 {
        // Plausible's answer to an accepted event: `202 ok`, nothing else.
        assert_eq!(text, "ok", "a 202 answers `ok`");
        let answer = serde_json::json!({"accepted": 1, "rejected": 0, "errors": []});
        return Outcome { status, answer };
    }
    let answer = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("answer with status {status} is not JSON: {text:?}"));
    Outcome { status, answer }
}

/// Counts of accepted and rejected events across all answers.
#[derive(Default)]
struct Totals {
    requests: usize,
    accepted: u64,
    rejected: u64,
}

impl Totals {
    fn record(&mut self, what: &str, outcome: &Outcome) {
        self.requests += 1;
        let a = &outcome.answer;
        match outcome.status {
            200 | 202 => {
                self.accepted += a["accepted"].as_u64().unwrap();
                self.rejected += a["rejected"].as_u64().unwrap();
                assert_eq!(
                    a["errors"].as_array().map(Vec::len),
                    a["rejected"].as_u64().map(|n| n as usize),
                    "{what}: {a}"
                );
            }
            400 | 404 | 413 => {
                assert!(
                    a["error"].as_str().is_some_and(|r| !r.is_empty()),
                    "{what}: {a}"
                );
                // Plausible's refused event: a 400 that still sent a dead letter.
                self.rejected += a["errors"].as_array().map_or(0, Vec::len) as u64;
            }
            other => panic!("{what}: unexpected status {other}: {a}"),
        }
    }
}

fn valid_bodies() -> [(&'static str, Vec<u8>); 9] {
    let posthog = br#"{"batch":[{"event":"order","distinct_id":"u","uuid":"0190c1a2-0000-7000-8000-00000000000a","properties":{"revenue":9.5,"$lib":"posthog-node"}},{"event":"$identify","distinct_id":"u","properties":{"$anon_distinct_id":"a","$set":{"email":"e@x"}}},{"event":"$pageview","distinct_id":"u","properties":{"$current_url":"https://x.example/"}}],"sent_at":"2026-11-23T10:00:00Z"}"#;
    let beacon = {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(posthog);
        format!(
            "data={}",
            encoded
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    };
    [
        (
            "/api/v1/events/batch",
            br#"{"sent_at":1700000000000,"events":[{"name":"signup","user_id":"u-1","properties":{"plan":"pro","n":3,"tags":["a","b"]}},{"name":"page_view","anonymous_id":"a-9","properties":{"url":"https://x.example/p?utm_source=s"}},{"name":"x\ud800y","user_id":"u-2"}]}"#.to_vec(),
        ),
        (
            "/v1/batch",
            br#"{"batch":[{"type":"track","event":"Order","userId":"u","properties":{"revenue":9.5}},{"type":"identify","anonymousId":"a","traits":{"email":"e@x"}},{"type":"page","name":"Home","userId":"u","context":{"page":{"url":"https://x.example/"}}}],"sentAt":"2026-11-23T10:00:00Z"}"#.to_vec(),
        ),
        ("/batch/", posthog.to_vec()),
        ("/e/?compression=base64", beacon.into_bytes()),
        (
            "/api/event",
            br#"{"n":"Purchase","u":"https://shop.example/cart#x","d":"shop.example","r":"https://news.example/","p":{"sku":"a-1"},"$":{"amount":19.99,"currency":"EUR"},"h":1}"#.to_vec(),
        ),
        (
            "/2/httpapi",
            br#"{"api_key":"ignored-the-header-key-wins","events":[{"event_type":"Checkout","user_id":"u","insert_id":"amp-1","time":1780000000000,"event_properties":{"cart":{"items":2}}},{"event_type":"$identify","device_id":"d","user_properties":{"$set":{"plan":"pro"}}},{"event_type":"revenue_amount","user_id":"u","event_properties":{"$price":9.5,"$quantity":2}}]}"#.to_vec(),
        ),
        (
            "/track?verbose=1",
            br#"[{"event":"Played","properties":{"distinct_id":"u","time":1780000000,"$insert_id":"mp-1","song":"x"}},{"event":"$mp_web_page_view","properties":{"distinct_id":"$device:d","$current_url":"https://x.example/p"}},{"event":"$identify","properties":{"distinct_id":"u","$anon_distinct_id":"d"}}]"#.to_vec(),
        ),
        (
            "/api/send",
            br#"{"type":"event","payload":{"website":"k","hostname":"shop.example","url":"/p?x=1","name":"signup","data":{"plan":"pro"},"screen":"1920x1080"}}"#.to_vec(),
        ),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","eid":"sp-1","url":"https://x.example/p","page":"P","duid":"d","dtm":"1780000000000","stm":"1780000000100","tv":"node-4.8.0"},{"e":"se","se_ca":"shop","se_ac":"add","se_va":"2.5","uid":"u"},{"e":"ue","ue_pr":"{\"schema\":\"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0\",\"data\":{\"schema\":\"iglu:com.acme/viewed/jsonschema/1-0-0\",\"data\":{\"sku\":\"a\"}}}","duid":"d"}]}"#.to_vec(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_cleanly_and_never_corrupt_accepted_data() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let key = write_key(&unique("corpus")).await;
    let mut totals = Totals::default();

    // 1. The hand-written corpus.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files = 0;
    for (dir, route) in [
        ("native", "/api/v1/events/batch"),
        ("segment", "/v1/batch"),
        ("posthog", "/batch/"),
        ("plausible", "/api/event"),
        ("amplitude", "/2/httpapi"),
        ("mixpanel", "/track?verbose=1"),
        ("umami", "/api/send"),
        ("snowplow", "/com.snowplowanalytics.snowplow/tp2"),
    ] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let (expect, _) = name.split_once("--").expect("{status}-{reason}--{what}");
            let (status, reason) = expect.split_once('-').unwrap();
            let status: u16 = status.parse().unwrap();
            let gzip = name.ends_with(".gz");
            let content_type = if name.ends_with(".form") {
                "application/x-www-form-urlencoded"
            } else if name.ends_with(".gzraw") {
                "text/plain"
            } else {
                "application/json"
            };
            let body = std::fs::read(&path).unwrap();
            let url = format!("{}{route}", gateway.url());
            let outcome = send_as(&http, &url, &key, body, gzip, content_type).await;
            let a = &outcome.answer;
            assert_eq!(outcome.status, status, "{dir}/{name}: {a}");
            match (status, reason) {
                (200 | 202, "ok") => assert_eq!(a["accepted"], 1, "{dir}/{name}: {a}"),
                (200, reason) => {
                    assert_eq!(
                        (&a["accepted"], &a["rejected"]),
                        (&0.into(), &1.into()),
                        "{dir}/{name}: {a}"
                    );
                    assert_eq!(a["errors"][0]["reason"], reason, "{dir}/{name}: {a}");
                }
                // Amplitude's and Mixpanel's `error` is a message; the reason is `reason`.
                (_, reason) => assert_eq!(
                    a.get("reason").unwrap_or(&a["error"]),
                    reason,
                    "{dir}/{name}: {a}"
                ),
            }
            totals.record(&name, &outcome);
            files += 1;
        }
    }
    assert!(files >= 60, "corpus has {files} files");

    // 2. Prefixes and seeded mutations of valid batches.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a11);
    for (route, valid) in valid_bodies() {
        let url = format!("{}{route}", gateway.url());
        let whole = send(&http, &url, &key, valid.clone(), false).await;
        let (status, events) = match route {
            "/api/event" => (202, 1),
            "/api/send" => (200, 1),
            _ => (200, 3),
        };
        assert_eq!(
            (whole.status, &whole.answer["accepted"]),
            (status, &events.into()),
            "{}",
            whole.answer
        );
        totals.record("valid", &whole);
        for cut in (0..valid.len()).step_by(3) {
            let outcome = send(&http, &url, &key, valid[..cut].to_vec(), false).await;
            totals.record(&format!("{route} prefix {cut}"), &outcome);
        }
        for round in 0..300 {
            let mut body = valid.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..body.len());
                match rng.random_range(0..4) {
                    0 => body[at] ^= 1 << rng.random_range(0..8),
                    1 => body.insert(at, rng.random()),
                    2 => {
                        body.remove(at);
                    }
                    _ => {
                        let end = (at + rng.random_range(1..20)).min(body.len());
                        let copy = body[at..end].to_vec();
                        body.splice(at..at, copy);
                    }
                }
            }
            let outcome = send(&http, &url, &key, body, false).await;
            totals.record(&format!("{route} mutation {round}"), &outcome);
        }
    }
    assert!(http
        .get(format!("{}/readyz", gateway.url()))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    // The broker holds exactly what was acknowledged; the DLQ exactly what was refused.
    let ids = event_ids(
        &iso.kafka.brokers,
        &iso.kafka.topic,
        totals.accepted as usize,
    )
    .await;
    assert_eq!(
        ids.len() as u64,
        totals.accepted,
        "events on the topic vs acknowledged"
    );
    let letters = payloads(
        &iso.kafka.brokers,
        &iso.kafka.dlq_topic,
        totals.rejected as usize,
    )
    .await;
    assert_eq!(
        letters.len() as u64,
        totals.rejected,
        "dead letters vs rejected"
    );
    println!(
        "corpus: {files} files, {} requests, {} events accepted, {} rejected",
        totals.requests, totals.accepted, totals.rejected
    );

    gateway.stop().await;
    iso.cleanup().await;
}
