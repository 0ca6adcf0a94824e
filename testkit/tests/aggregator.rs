//! The stream aggregator against the real broker, Redis and ClickHouse:
//! client retries counted once (also across a restart), bots and late events
//! kept out of the live windows but stored, sessions in ClickHouse, two
//! aggregator processes sharing one consumer group through rebalances, and
//! a new log beside the Redis of an old one (watermarks not trusted).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use tally_loadgen::check::{check, CheckConfig};
use tally_loadgen::model::ModelConfig;
use tally_loadgen::send::{self, SendConfig, Style};
use tally_testkit::{
    broker, clickhouse_counts, eventually, metric, now_ms, post_batch, services, Isolation,
};

async fn live(query: &str, app: &str, read_key: &str) -> Option<Value> {
    let url = format!("{query}/api/v1/analytics/{app}/live?windows=60");
    let answer = reqwest::Client::new().get(url).bearer_auth(read_key).send();
    answer.await.ok()?.json().await.ok()
}

async fn live_total(query: &str, app: &str, read_key: &str) -> Option<u64> {
    live(query, app, read_key).await?["total_events"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_retries_bots_and_late_events() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = tally_testkit::unique("agg");
    let key = tally_testkit::write_key(&app).await;
    let read_key = tally_testkit::read_key(&app).await;
    let now = now_ms();
    let events: Vec<Value> = (0..100)
        .map(|i| json!({"name": "page_view", "event_id": format!("r-{i}"), "user_id": format!("u{}", i % 10), "timestamp": now, "properties": {"url": format!("/p{}", i % 3)}}))
        .collect();
    let batch = json!({"app_id": app, "events": events});
    // The SDK lost the first answer and sends the same batch again.
    for _ in 0..2 {
        let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch).await;
        assert_eq!(status, 200, "{answer}");
    }
    // A bot, and an event received two minutes after its window (beyond the 30 s lateness).
    let bot = http
        .post(format!("{}/api/v1/events/batch", gateway.url()))
        .basic_auth(&key, Some(""))
        .header("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
        .json(&json!({"app_id": app, "events": [{"name": "page_view", "event_id": "bot-1", "anonymous_id": "crawler", "timestamp": now}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bot.status(), 200);
    let late = json!({"app_id": app, "events": [{"name": "page_view", "event_id": "late-1", "user_id": "u1", "timestamp": now - 120_000}]});
    assert_eq!(post_batch(&http, &gateway.url(), &key, &late).await.0, 200);

    eventually("rows", Duration::from_secs(30), || async {
        (clickhouse_counts(&iso, &app).await.0 >= 102).then_some(())
    })
    .await;
    let total = eventually("live total", Duration::from_secs(10), || async {
        live_total(&query.url(), &app, &read_key)
            .await
            .filter(|n| *n >= 100)
    })
    .await;
    assert_eq!(
        total, 100,
        "retries, the bot and the late event are not live"
    );
    let answer = live(&query.url(), &app, &read_key).await.unwrap();
    assert_eq!(answer["unique_users"], 10, "{answer}");
    assert_eq!(
        answer["active_sessions"], 10,
        "one session per visitor: {answer}"
    );
    assert_eq!(clickhouse_counts(&iso, &app).await, (102, 102));
    // The counters move once the flush that wrote the rows has returned.
    eventually(
        "duplicates 100, bots 1, late 1",
        Duration::from_secs(10),
        || async {
            let mut seen = Vec::new();
            for family in ["duplicates", "bot_events", "late_events"] {
                seen.push(
                    metric(
                        &aggregator.url(),
                        &format!("tally_aggregator_{family}_total"),
                    )
                    .await,
                );
            }
            (seen == [100.0, 1.0, 1.0]).then_some(())
        },
    )
    .await;

    // After a restart the recent ids come back from ClickHouse: a third copy is dropped too.
    aggregator.stop().await;
    assert_eq!(post_batch(&http, &gateway.url(), &key, &batch).await.0, 200);
    let restarted = services::aggregator(services::aggregator_config(&iso)).await;
    eventually("third copy dropped", Duration::from_secs(30), || async {
        let dropped = metric(&restarted.url(), "tally_aggregator_duplicates_total").await;
        (dropped >= 100.0).then_some(())
    })
    .await;
    assert_eq!(clickhouse_counts(&iso, &app).await, (102, 102));
    assert_eq!(live_total(&query.url(), &app, &read_key).await, Some(100));

    // Sessions: 10 visitors with one session each, the crawler's, and u1's late
    // event (two minutes before, within 30 min) joined u1's session.
    let sessions: Vec<(String, u32, u8)> = iso
        .clickhouse_client()
        .query("SELECT distinct_id, events, is_bot FROM sessions FINAL WHERE app_id = ? AND dropped = 0 ORDER BY distinct_id")
        .bind(app.as_str())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(sessions.len(), 11, "{sessions:?}");
    assert!(sessions.contains(&("crawler".into(), 1, 1)));
    assert!(sessions.contains(&("u1".into(), 11, 0)));

    restarted.stop().await;
    query.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_aggregators_share_partitions_through_rebalances() {
    let iso = Isolation::new(6).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let first = services::aggregator(services::aggregator_config(&iso)).await;
    let model = ModelConfig {
        seed: 5,
        run_id: tally_testkit::unique("scale"),
        apps: 3,
        visitors: 300,
        concurrent_sessions: 100,
        mean_think_ms: 300.0,
    };
    let keys = send::provision_keys(&tally_testkit::postgres(), &model)
        .await
        .unwrap();
    let load = tokio::spawn(send::run(SendConfig {
        gateway: gateway.url(),
        rate: Some(300.0),
        duration: Some(Duration::from_secs(24)),
        max_events: None,
        batch: 10,
        concurrency: 4,
        style: Style::Browser,
        model,
        progress: false,
        keys,
        stop: None,
    }));
    // A second process joins mid-stream (rebalance), a third joins, the first
    // leaves — each once the stream has got that far (rows stored).
    let stored = |n: u64| {
        let client = iso.clickhouse_client();
        async move {
            eventually("rows stored", Duration::from_secs(60), || async {
                let rows: u64 = client
                    .query("SELECT count() FROM events")
                    .fetch_one()
                    .await
                    .ok()?;
                (rows >= n).then_some(())
            })
            .await;
        }
    };
    stored(1_500).await;
    let second = services::aggregator(services::aggregator_config(&iso)).await;
    stored(3_300).await;
    let third = services::aggregator(services::aggregator_config(&iso)).await;
    stored(4_500).await;
    first.stop().await;
    let (summary, records) = load.await.unwrap();
    assert!(summary.acknowledged > 3_000, "{summary:?}");
    let shares = [
        metric(&second.url(), "tally_aggregator_events_total").await,
        metric(&third.url(), "tally_aggregator_events_total").await,
    ];
    let client = iso.clickhouse_client();
    let count = || async {
        client
            .query("SELECT count() FROM events")
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    };
    let stored = tally_testkit::poll(Duration::from_secs(60), count, |rows| {
        *rows >= summary.acknowledged
    })
    .await;
    if let Err(rows) = stored {
        let group =
            broker::describe_group(&iso.kafka.brokers, &iso.group_id, &iso.kafka.topic).await;
        panic!(
            "after 60 s {rows} rows of {} acknowledged events; {group}; events written by the 2nd/3rd process: {:?}",
            summary.acknowledged,
            [
                metric(&second.url(), "tally_aggregator_events_total").await,
                metric(&third.url(), "tally_aggregator_events_total").await,
            ]
        );
    }
    let query = services::query(services::query_config(&iso)).await;
    let config = CheckConfig::for_records(
        iso.clickhouse.clone(),
        &query.url(),
        &tally_testkit::postgres(),
        &records,
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = check(&records, &config).await.unwrap();
        if report.ok || std::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(report.ok, "{:#?}", report.mismatches);
    eprintln!(
        "scale-out: {} events, {} sessions checked; written by the 2nd/3rd process: {shares:?}",
        report.events_checked, report.sessions_checked
    );
    assert!(
        shares.iter().all(|n| *n > 0.0),
        "both later processes took partitions: {shares:?}"
    );

    second.stop().await;
    third.stop().await;
    query.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}

/// A new checkout: the broker and ClickHouse start empty while Redis (and
/// PostgreSQL) stay. The old log's aggregator left its released watermarks
/// in Redis under the same prefix and topic name; trusted, they would skip
/// every new message at an offset below them, and acknowledged events would
/// never reach ClickHouse. The new aggregator must store every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_left_in_redis_by_another_log_do_not_skip_new_rows() {
    let http = reqwest::Client::new();
    let app = tally_testkit::unique("newlog");
    let key = tally_testkit::write_key(&app).await;
    let batch = |run: &str, n: usize| {
        let now = now_ms();
        let events: Vec<Value> = (0..n)
            .map(|i| {
                json!({"name": "page_view", "event_id": format!("{run}-{i}"),
                            "user_id": format!("{run}-u{i}"), "timestamp": now})
            })
            .collect();
        json!({ "events": events })
    };
    let mut old_broker = broker::PrivateBroker::start().await;
    let old = Isolation::on_broker(1, &old_broker.brokers).await;
    let gateway = services::gateway(services::gateway_config(&old)).await;
    let aggregator = services::aggregator(services::aggregator_config(&old)).await;
    for round in 0..3 {
        let (status, answer) = post_batch(
            &http,
            &gateway.url(),
            &key,
            &batch(&format!("old{round}"), 20),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    eventually("the old log's rows", Duration::from_secs(30), || async {
        (clickhouse_counts(&old, &app).await == (60, 60)).then_some(())
    })
    .await;
    old.wait_consumed().await;
    aggregator.stop().await;
    gateway.stop().await;
    old_broker.stop();

    // The new checkout: a broker and a database of its own, Redis as it was.
    let new_broker = broker::PrivateBroker::start().await;
    let mut new = Isolation::on_broker(1, &new_broker.brokers).await;
    new.kafka.topic.clone_from(&old.kafka.topic);
    new.kafka.dlq_topic.clone_from(&old.kafka.dlq_topic);
    new.redis_prefix.clone_from(&old.redis_prefix);
    broker::create_topic(&new.kafka.brokers, &new.kafka.topic, 1).await;
    broker::create_topic(&new.kafka.brokers, &new.kafka.dlq_topic, 1).await;
    let gateway = services::gateway(services::gateway_config(&new)).await;
    let aggregator = services::aggregator(services::aggregator_config(&new)).await;
    let (status, answer) = post_batch(&http, &gateway.url(), &key, &batch("new", 25)).await;
    assert_eq!(status, 200, "{answer}");
    new.wait_consumed().await;
    eventually(
        "every new row stored (offsets 0–24, below the old log's 59)",
        Duration::from_secs(30),
        || async { (clickhouse_counts(&new, &app).await == (25, 25)).then_some(()) },
    )
    .await;
    aggregator.stop().await;
    gateway.stop().await;
    old.cleanup().await;
    new.cleanup().await;
}
