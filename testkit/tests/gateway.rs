//! The gateway against the real broker and PostgreSQL: dead letters on the real
//! topic, keys created, refused and revoked in PostgreSQL, a PostgreSQL outage,
//! the broker going away (503, nothing acknowledged lost) and coming back.
//! Request-level behaviour (every reason code, auth forms, limits, CORS) is
//! tested without either in `ingest-gateway/tests/requests/`.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally_testkit::broker::PrivateBroker;
use tally_testkit::{eventually, post_batch, services, unique, write_key, Isolation};

/// Rejected events are kept on the real dead-letter topic with their reason, app,
/// index and time, while the good ones of the same batch are accepted. (Every
/// reason code and request refusal is tested without a broker in
/// `ingest-gateway/tests/requests/`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_reach_the_dead_letter_topic() {
    let iso = Isolation::new(1).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = unique("bad");
    let key = write_key(&app).await;

    let (status, answer) = post_batch(
        &http,
        &gateway.url(),
        &key,
        &json!({"app_id": app, "events": [
            {"name": "ok", "user_id": "u"},
            {"user_id": "u"},
            {"name": "x"},
            {"name": "x", "user_id": "u", "properties": {"a": {"b": {"c": {"d": 1}}}}},
            {"name": "list", "user_id": "u", "properties": {"list": [1, 2]}}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 3);
    assert_eq!(
        answer["errors"],
        json!([
            {"index": 1, "reason": "missing_name"},
            {"index": 2, "reason": "missing_identity"},
            {"index": 3, "reason": "property_too_deep"}
        ])
    );
    let letters: Vec<tally_schemas::DeadLetter> =
        tally_testkit::broker::payloads(&iso.kafka.brokers, &iso.kafka.dlq_topic, 3)
            .await
            .iter()
            .map(|payload| tally_schemas::DeadLetter::decode(payload).unwrap())
            .collect();
    let summary: Vec<(&str, &str, &str, &str)> = letters
        .iter()
        .map(|l| {
            (
                l.stage.as_str(),
                l.app_id.as_str(),
                l.origin.as_str(),
                l.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("gateway", app.as_str(), "1", "missing_name"),
            ("gateway", app.as_str(), "2", "missing_identity"),
            ("gateway", app.as_str(), "3", "property_too_deep"),
        ]
    );
    assert_eq!(letters[0].payload, r#"{"user_id":"u"}"#);
    assert!(letters
        .iter()
        .all(|l| (l.at_ms - tally_testkit::now_ms()).abs() < 60_000 && !l.truncated));
    // The accepted ones are on the events topic.
    let accepted = tally_testkit::broker::payloads(&iso.kafka.brokers, &iso.kafka.topic, 2).await;
    assert_eq!(accepted.len(), 2);
    gateway.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_authenticate_and_revocation_takes_effect() {
    let iso = Isolation::new(1).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events/batch", gateway.url());
    let app = unique("auth");
    let key = write_key(&app).await;
    let batch = json!({"events": [{"name": "x", "user_id": "u"}]});

    let send = |request: reqwest::RequestBuilder| async move {
        let response = request
            .json(&json!({"events": [{"name": "x", "user_id": "u"}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (status, answer) = send(http.post(&url)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("missing_write_key"))
    );
    let (status, answer) = send(http.post(&url).bearer_auth("tw_not_a_key")).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_write_key"))
    );
    // A key created a moment ago works at once, by Basic, Bearer or body.
    let (status, _) = send(http.post(&url).basic_auth(&key, Some(""))).await;
    assert_eq!(status, 200);
    let (status, _) = send(http.post(&url).bearer_auth(&key)).await;
    assert_eq!(status, 200);
    let (status, answer) = post_batch(
        &http,
        &gateway.url(),
        "",
        &json!({"write_key": key, "events": batch["events"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A read key is not a write key.
    let read = tally_common::postgres::provision(
        &tally_testkit::postgres(),
        &app,
        tally_common::postgres::KeyKind::Read,
    )
    .await
    .unwrap();
    let (status, answer) = send(http.post(&url).bearer_auth(&read)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_write_key"))
    );

    // Revoked keys stop working within the refresh interval (1 s in tests).
    let client = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::revoke_keys(&client, &key[..8])
        .await
        .unwrap();
    eventually("revocation", Duration::from_secs(10), || {
        let request = http.post(&url).basic_auth(&key, Some(""));
        async move { (send(request).await.0 == 401).then_some(()) }
    })
    .await;
    gateway.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_503_within_seconds_and_keeps_what_was_acknowledged() {
    let mut broker = PrivateBroker::start_durable().await;
    let iso = Isolation::on_broker(2, &broker.brokers).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let key = write_key(&unique("down")).await;
    let batch = |id: &str| json!({"events": [{"name": "x", "user_id": "u", "event_id": id}]});

    let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch("before")).await;
    assert_eq!(status, 200, "{answer}");

    broker.kill();
    let started = Instant::now();
    let response = http
        .post(format!("{}/api/v1/events/batch", gateway.url()))
        .basic_auth(&key, Some(""))
        .json(&batch("during"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "broker_unavailable");
    // Bounded by the produce timeout (3 s here), not a hang.
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let ready = http
        .get(format!("{}/readyz", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    // Durability: what was acknowledged before the outage is on the broker after it.
    broker.resume().await;
    let ids = tally_testkit::broker::event_ids(&broker.brokers, &iso.kafka.topic, 1).await;
    assert_eq!(
        ids.iter().filter(|id| *id == "before").count(),
        1,
        "{ids:?}"
    );
    // A gateway started after the outage accepts events at once.
    let fresh = services::gateway(services::gateway_config(&iso)).await;
    let (status, answer) = post_batch(&http, &fresh.url(), &key, &batch("after")).await;
    assert_eq!(status, 200, "{answer}");

    fresh.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}

/// A gateway that lives through broker outages recovers by itself each time, and
/// every event it acknowledged is on the broker exactly once: a long outage
/// (crash, requests time out meanwhile), a quick crash-and-restart, and a
/// graceful stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_recovers_after_broker_restarts() {
    let mut broker = PrivateBroker::start_durable().await;
    let iso = Isolation::on_broker(2, &broker.brokers).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let http = reqwest::Client::new();
    let key = write_key(&unique("recover")).await;
    let batch = |id: &str| json!({"events": [{"name": "x", "user_id": "u", "event_id": id}]});
    let mut acknowledged = Vec::new();
    let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch("before")).await;
    assert_eq!(status, 200, "{answer}");
    acknowledged.push("before".to_owned());

    for round in ["crash", "bounce", "stop"] {
        match round {
            "crash" => broker.kill(),
            "bounce" => {
                broker.kill();
                broker.resume().await;
            }
            _ => broker.stop(),
        }
        if round != "bounce" {
            let (status, answer) = post_batch(
                &http,
                &gateway.url(),
                &key,
                &batch(&format!("{round}-during")),
            )
            .await;
            assert_eq!(status, 503, "{round}: {answer}");
            broker.resume().await;
        }
        let started = Instant::now();
        let mut attempt = 0;
        let id = eventually(
            &format!("recovery after {round}"),
            Duration::from_secs(60),
            || {
                attempt += 1;
                let id = format!("{round}-after-{attempt}");
                let (http, url, key) = (http.clone(), gateway.url(), key.clone());
                async move {
                    let (status, _) = post_batch(&http, &url, &key, &batch(&id)).await;
                    (status == 200).then_some(id)
                }
            },
        )
        .await;
        println!(
            "{round}: recovered in {:?} ({attempt} attempts)",
            started.elapsed()
        );
        acknowledged.push(id);
    }

    let ids =
        tally_testkit::broker::event_ids(&broker.brokers, &iso.kafka.topic, acknowledged.len())
            .await;
    for id in &acknowledged {
        assert_eq!(
            ids.iter().filter(|x| *x == id).count(),
            1,
            "{id} in {ids:?}"
        );
    }
    gateway.stop().await;
    iso.cleanup().await;
}

/// PostgreSQL taken away (through a proxy, so other tests keep theirs): known keys
/// keep working from the cache, an unknown key gets 503 (retry) rather than 401,
/// and a key created during the outage works as soon as PostgreSQL is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_survive_a_postgres_outage() {
    let iso = Isolation::new(1).await;
    let pg = tally_testkit::postgres();
    let target = pg
        .url
        .parse::<tokio_postgres::Config>()
        .map(|c| {
            let host = match c.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "127.0.0.1".into(),
            };
            format!("{host}:{}", c.get_ports().first().copied().unwrap_or(5432))
        })
        .unwrap();
    let proxy = tally_testkit::proxy::Proxy::start(&target).await;
    let proxied = pg.url.replacen(&target, &proxy.addr.to_string(), 1);
    assert_ne!(
        proxied, pg.url,
        "could not route {} through the proxy",
        pg.url
    );
    let config = ingest_gateway::Config {
        postgres: tally_common::postgres::PostgresConfig { url: proxied },
        ..services::gateway_config(&iso)
    };
    let app = unique("pgdown");
    let key = write_key(&app).await;
    let gateway = services::gateway(config).await;
    let http = reqwest::Client::new();
    let batch = json!({"events": [{"name": "x", "user_id": "u"}]});
    eventually("keys loaded", Duration::from_secs(10), || {
        let (http, url, key, batch) = (http.clone(), gateway.url(), key.clone(), batch.clone());
        async move { (post_batch(&http, &url, &key, &batch).await.0 == 200).then_some(()) }
    })
    .await;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past a refresh (1 s in tests)
    let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch).await;
    assert_eq!(status, 200, "known key during the outage: {answer}");
    let created_meanwhile = write_key(&app).await; // PostgreSQL itself is up
    let (status, answer) = post_batch(&http, &gateway.url(), &created_meanwhile, &batch).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("keys_unavailable")),
        "{answer}"
    );

    proxy.restore();
    eventually("new key after the outage", Duration::from_secs(15), || {
        let (http, url, key, batch) = (
            http.clone(),
            gateway.url(),
            created_meanwhile.clone(),
            batch.clone(),
        );
        async move { (post_batch(&http, &url, &key, &batch).await.0 == 200).then_some(()) }
    })
    .await;
    let (status, _) = post_batch(&http, &gateway.url(), "tw_not_a_key", &batch).await;
    assert_eq!(status, 401);
    gateway.stop().await;
    iso.cleanup().await;
}
