//! Replays against the real broker, Redis, ClickHouse 18.16 and PostgreSQL:
//! events go through the real gateway and the live aggregator, then
//! `tally-admin replay` runs the aggregator's processing again into its own
//! target. A replay of the range equals the live tables (compare: zero
//! differences); a replay with a new bot rule differs exactly on the app-day
//! whose events the rule catches, by exactly their number; a replay killed
//! with SIGKILL again and again resumes and counts every event once; a drop
//! removes the target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tally_admin::replay::run::{self, Ended, StartOptions};
use tally_admin::replay::{catalog, compare_live, drop, reenrich::ReenrichOptions, Target};
use tally_testkit::{eventually, now_ms, services, unique, Isolation};

const DAY: i64 = 86_400_000;
const HUMAN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const CRAWLER: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// An uptime monitor the default rules take for a person.
const MONITOR: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36 NightlyCheck/2.4";

async fn send(gateway: &str, key: &str, agent: &str, events: &[Value]) {
    let response = reqwest::Client::new()
        .post(format!("{gateway}/api/v1/events/batch"))
        .basic_auth(key, Some(""))
        .header("user-agent", agent)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], events.len(), "{body}");
}

async fn pg() -> tokio_postgres::Client {
    let client = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::migrate(&client).await.unwrap();
    client
}

/// Runs a new bounded replay of everything on the topic to its end.
async fn replay_all(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    name: &str,
    reenrich: ReenrichOptions,
) -> run::Snapshot {
    let options = StartOptions {
        name: name.to_owned(),
        from: Some("-1d".into()),
        to: Some(now_ms().to_string()),
        reenrich,
        addr: None,
    };
    let entry = run::prepare(live, pg, &options).await.unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let ended = tokio::time::timeout(
        Duration::from_secs(120),
        run::run(live, pg, &entry, addr, std::future::pending(), &mut |_| {}),
    )
    .await
    .expect("replay did not finish within 120 s")
    .unwrap();
    match ended {
        Ended::Finished(snapshot) => snapshot,
        Ended::Stopped(snapshot) => panic!("replay stopped early: {snapshot:?}"),
    }
}

/// Keys under `prefix:` on each server `url` lists (each master of a Redis
/// Cluster), read by a direct connection to each.
async fn keys_per_server(url: &str, prefix: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for seed in tally_common::redis_conn::seeds(url) {
        let mut redis = redis::Client::open(seed)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        counts.push(keys.len());
    }
    counts
}

fn day_of(ms: i64) -> String {
    let days = ms.div_euclid(DAY);
    let date = time::Date::from_julian_day(2_440_588 + days as i32).unwrap();
    date.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_equals_live_and_a_new_bot_rule_changes_exactly_its_events() {
    equal_to_live_and_a_bot_rule(Isolation::new(3).await).await;
}

/// The same on the local cluster (`scripts/cluster up`): ClickHouse 2 shards
/// × 2 replicas (live and target in the cluster layout, rows routed to
/// shards by both aggregators) and the 3-master Redis Cluster (tombstones
/// copied and the target's keys dropped on every master).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_cluster_a_replay_equals_live_and_a_drop_clears_every_node() {
    let iso = tally_testkit::cluster::on_cluster(
        3,
        &tally_testkit::kafka_brokers(),
        &tally_testkit::cluster::redis_url(),
        2,
    )
    .await;
    equal_to_live_and_a_bot_rule(iso).await;
}

async fn equal_to_live_and_a_bot_rule(iso: Isolation) {
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let apps = [unique("replay_a"), unique("replay_b")];
    let now = now_ms();
    let mut sent = 0usize;
    let mut monitored: BTreeMap<(String, String), u64> = BTreeMap::new();
    // The (app, UTC day) pairs the events fall on: near midnight a day's
    // events straddle two dates.
    let mut app_days: BTreeSet<(String, String)> = BTreeSet::new();
    for app in &apps {
        let key = tally_testkit::write_key(app).await;
        for (agent_index, agent) in [HUMAN, CRAWLER, MONITOR].into_iter().enumerate() {
            // Three days of events; the monitor only on the first app, two days ago.
            let days: &[i64] = if agent == MONITOR { &[2] } else { &[0, 1, 2] };
            if agent == MONITOR && app != &apps[0] {
                continue;
            }
            for &day in days {
                let events: Vec<Value> = (0..25)
                    .map(|i| {
                        json!({"event_id": format!("{agent_index}-{day}-{i}"), "name": if i % 2 == 0 { "page_view" } else { "signup" },
                               "user_id": format!("u{}", i % 9), "timestamp": now - day * DAY - i as i64 * 60_000,
                               "properties": {"url": format!("https://shop.test/p/{i}?utm_source=mail")}})
                    })
                    .collect();
                send(&gateway.url(), &key, agent, &events).await;
                // A client retry of the same batch: dropped by the dedup rule, live and replayed.
                if day == 1 {
                    send(&gateway.url(), &key, agent, &events).await;
                }
                sent += events.len();
                for e in &events {
                    app_days.insert((app.clone(), day_of(e["timestamp"].as_i64().unwrap())));
                }
                if agent == MONITOR {
                    for e in &events {
                        let day = day_of(e["timestamp"].as_i64().unwrap());
                        *monitored.entry((app.clone(), day)).or_default() += 1;
                    }
                }
            }
        }
    }
    iso.wait_consumed().await;
    let live = services::aggregator_config(&iso);
    let pg = pg().await;

    // The same processing again: equal to live, row for row.
    let same = unique("same");
    let snapshot = replay_all(&live, &pg, &same, ReenrichOptions::default()).await;
    assert!(snapshot.reached_end() && snapshot.done > 0, "{snapshot:?}");
    let entry = catalog::get(&pg, &same).await.unwrap().unwrap();
    assert_eq!(entry.state, catalog::state::FINISHED);
    let report = compare_live(&live, &entry).await.unwrap();
    assert_eq!(report.live_events, sent as u64, "live rows");
    assert_eq!(report.target_events, sent as u64, "replayed rows");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert_eq!(report.app_days, app_days.len());
    // The target's own refresher derived its report tables up to the end.
    let derived: u64 = live
        .clickhouse
        .server_client()
        .query(&format!(
            "SELECT count() FROM {}.report_pages_hourly",
            Target::named(&same).unwrap().database
        ))
        .fetch_one()
        .await
        .unwrap();
    assert!(derived > 0, "report rows derived in the target");
    let sessions = report
        .sessions
        .expect("sessions compared: a full replay, both at the end");
    assert!(sessions.live_sessions > 0);
    assert_eq!(sessions.live_sessions, sessions.target_sessions);
    assert!(
        sessions.differences.is_empty(),
        "{:#?}",
        sessions.differences
    );

    // A new bot rule: only the monitor's app-day differs, by its events, as bots.
    let rule = unique("rule");
    replay_all(
        &live,
        &pg,
        &rule,
        ReenrichOptions {
            bot_markers: vec!["NightlyCheck/".into()],
            ..ReenrichOptions::default()
        },
    )
    .await;
    let entry = catalog::get(&pg, &rule).await.unwrap().unwrap();
    let report = compare_live(&live, &entry).await.unwrap();
    let found: BTreeMap<(String, String), u64> = report
        .differences
        .iter()
        .map(|d| {
            let (l, t) = (d.live.as_ref().unwrap(), d.target.as_ref().unwrap());
            assert_eq!((l.events, l.uniques), (t.events, t.uniques), "{d:?}");
            ((d.app_id.clone(), d.day.clone()), t.bots - l.bots)
        })
        .collect();
    assert_eq!(found, monitored, "{:#?}", report.differences);

    // A finished replay is not started again; drop removes every trace.
    let again = run::prepare(
        &live,
        &pg,
        &StartOptions {
            name: same.clone(),
            ..StartOptions::default()
        },
    )
    .await;
    assert!(again.unwrap_err().to_string().contains("already finished"));
    for name in [&same, &rule] {
        let target = Target::named(name).unwrap();
        let before = keys_per_server(&live.redis_url, &target.redis_prefix).await;
        if before.len() > 1 {
            // On a Redis Cluster the target's keys are spread over the masters.
            let holding = before.iter().filter(|&&n| n > 0).count();
            assert!(holding > 1, "target keys per master: {before:?}");
        }
        drop::drop(&live, &pg, name, false).await.unwrap();
        let databases: u64 = live
            .clickhouse
            .server_client()
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(&target.database)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(databases, 0);
        let after = keys_per_server(&live.redis_url, &target.redis_prefix).await;
        assert!(after.iter().all(|&n| n == 0), "{after:?}");
        assert!(catalog::get(&pg, name).await.unwrap().is_none());
    }
    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_ranges_name_what_is_wrong() {
    let iso = Isolation::new(2).await;
    let live = services::aggregator_config(&iso);
    let pg = pg().await;
    let start = |from: &str, to: Option<&str>| StartOptions {
        name: unique("refused"),
        from: Some(from.into()),
        to: to.map(str::to_owned),
        ..StartOptions::default()
    };
    for (options, expected) in [
        (start("0:0", None), "name every partition"),
        (start("0:0,1:5", None), "past its end"),
        (start("-1h", Some("-2h")), "later than --from"),
        (
            start("-1h", Some(&(now_ms() + 3_600_000).to_string())),
            "in the future",
        ),
        (start("yesterday", None), "a time"),
        (
            StartOptions {
                name: "Bad-Name".into(),
                ..start("-1h", None)
            },
            "a-z 0-9",
        ),
        (
            StartOptions {
                from: None,
                ..start("-1h", None)
            },
            "needs --from",
        ),
    ] {
        let err = run::prepare(&live, &pg, &options)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        assert!(catalog::get(&pg, &options.name).await.unwrap().is_none());
    }
    iso.cleanup().await;
}

fn replay_env(iso: &Isolation) -> Vec<(String, String)> {
    [
        ("TALLY_KAFKA_BROKERS", iso.kafka.brokers.clone()),
        ("TALLY_KAFKA_TOPIC", iso.kafka.topic.clone()),
        ("TALLY_KAFKA_DLQ_TOPIC", iso.kafka.dlq_topic.clone()),
        ("TALLY_AGGREGATOR_GROUP", iso.group_id.clone()),
        ("TALLY_REDIS_URL", iso.redis_url.clone()),
        ("TALLY_REDIS_PREFIX", iso.redis_prefix.clone()),
        ("TALLY_CLICKHOUSE_URL", iso.clickhouse.url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", iso.clickhouse.database.clone()),
        ("TALLY_POSTGRES_URL", tally_testkit::postgres().url),
        // Small batches: many commits, so a kill lands between two of them.
        ("TALLY_AGGREGATOR_BATCH_ROWS", "150".into()),
        ("TALLY_AGGREGATOR_FLUSH_MS", "100".into()),
        ("TALLY_AGGREGATOR_LIVE_FLUSH_MS", "50".into()),
        (
            "TALLY_LOG",
            std::env::var("TALLY_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn spawn_replay(iso: &Isolation, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tally-admin"))
        .arg("replay")
        .arg("start")
        .args(args)
        .envs(replay_env(iso))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_killed_again_and_again_resumes_and_counts_every_event_once() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let app = unique("replay_kill");
    let key = tally_testkit::write_key(&app).await;
    let now = now_ms();
    let batches = 12;
    for b in 0..batches {
        let events: Vec<Value> = (0..500)
            .map(|i| json!({"event_id": format!("{b}-{i}"), "name": "tick", "user_id": format!("u{}", i % 97),
                            "timestamp": now - (b * 500 + i) as i64 * 1_000}))
            .collect();
        send(&gateway.url(), &key, HUMAN, &events).await;
    }
    let sent = (batches * 500) as u64;
    iso.wait_consumed().await;
    let live = services::aggregator_config(&iso);
    let pg = pg().await;
    let name = unique("killed");
    let seed: u64 = std::env::var("TALLY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("seed {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let to = now_ms().to_string();
    let mut child = spawn_replay(&iso, &["--name", &name, "--from", "-1d", "--to", &to]);
    let mut kills = Vec::new();
    let started = Instant::now();
    for _ in 0..4 {
        // Let it make progress beyond the last kill, then kill it at a random moment.
        let last = kills.last().copied().unwrap_or(0);
        let progressed = eventually(
            "the replay to make progress",
            Duration::from_secs(60),
            || async {
                match catalog::get(&pg, &name).await.unwrap() {
                    Some(entry) if entry.state == catalog::state::FINISHED => Some(None),
                    Some(entry) => {
                        let target = Target::named(&name).unwrap();
                        let snapshot = {
                            let (kafka, group, start, end) = (
                                live.kafka.clone(),
                                target.group_id,
                                entry.start.clone(),
                                entry.end.clone(),
                            );
                            tokio::task::spawn_blocking(move || {
                                run::snapshot(&kafka, &group, &start, end.as_ref())
                            })
                            .await
                            .unwrap()
                            .ok()?
                        };
                        (snapshot.done > last).then_some(Some(snapshot))
                    }
                    None => None,
                }
            },
        )
        .await;
        let Some(before) = progressed else { break };
        if before.reached_end() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..600))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills.push(before.done);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
        child = spawn_replay(&iso, &["--name", &name]);
    }
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the resumed replay did not finish")
        .unwrap();
    assert!(status.success(), "{status}");
    println!(
        "replay of {sent} events killed {} time(s) (progress at the kills: {kills:?}), finished after {:.1} s",
        kills.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        !kills.is_empty(),
        "no kill landed before the end: the test proved nothing"
    );
    let entry = catalog::get(&pg, &name).await.unwrap().unwrap();
    assert_eq!(entry.state, catalog::state::FINISHED);
    let report = compare_live(&live, &entry).await.unwrap();
    assert_eq!((report.live_events, report.target_events), (sent, sent));
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    let target = Target::named(&name).unwrap();
    let (rows, ids): (u64, u64) = live
        .clickhouse
        .server_client()
        .query(&format!(
            "SELECT count(), uniqExact(event_id) FROM {}.events",
            target.database
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((rows, ids), (sent, sent), "every event once in the target");
    drop::drop(&live, &pg, &name, false).await.unwrap();
    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}

/// Events of `app` that are not bots, over the last week, as the query service answers.
async fn human_events(
    http: &reqwest::Client,
    query: &str,
    app: &str,
    read_key: &str,
) -> (u16, Option<u64>) {
    let response = http
        .post(format!("{query}/api/v1/analytics/{app}/query"))
        .bearer_auth(read_key)
        .json(&json!({"metric": "events", "range": "7d"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["results"][0]["events"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switch_and_rollback_keep_every_query_answering() {
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = unique("replay_switch");
    let key = tally_testkit::write_key(&app).await;
    let read_key = tally_testkit::read_key(&app).await;
    let now = now_ms();
    let batch = |agent: &str| -> Vec<Value> {
        (0..40)
            .map(|i| json!({"event_id": format!("{agent:.8}-{i}"), "name": "page_view", "user_id": format!("u{}", i % 5),
                            "timestamp": now - i as i64 * 90_000}))
            .collect()
    };
    send(&gateway.url(), &key, HUMAN, &batch("human")).await;
    send(&gateway.url(), &key, MONITOR, &batch("monitor")).await;
    iso.wait_consumed().await;
    let live = services::aggregator_config(&iso);
    let pg = pg().await;

    // A following replay that knows the monitor is a bot.
    let name = unique("switch");
    let options = StartOptions {
        name: name.clone(),
        from: Some("-1d".into()),
        to: None,
        reenrich: ReenrichOptions {
            bot_markers: vec!["NightlyCheck/".into()],
            ..ReenrichOptions::default()
        },
        addr: None,
    };
    let entry = run::prepare(&live, &pg, &options).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replay = {
        let (live, entry) = (live.clone(), entry.clone());
        let pg = tally_testkit::postgres().connect().await.unwrap();
        tokio::spawn(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            run::run(
                &live,
                &pg,
                &entry,
                addr,
                async move {
                    let _ = stopped.await;
                },
                &mut |_| {},
            )
            .await
        })
    };
    let target = Target::named(&name).unwrap();
    tally_testkit::broker::wait_consumed(
        &iso.kafka.brokers,
        &target.group_id,
        &iso.kafka.topic,
        Duration::from_secs(60),
    )
    .await;
    // The switch needs a fresh heartbeat (every 2 s).
    eventually("a heartbeat", Duration::from_secs(10), || async {
        catalog::get(&pg, &name)
            .await
            .unwrap()
            .filter(|e| e.alive(now_ms()))
            .map(|_| ())
    })
    .await;

    // Readers poll throughout; every answer is 200 and one of the two truths.
    let (live_count, replay_count) = (80u64, 40u64);
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (url, app, read_key, polling) =
            (query.url(), app.clone(), read_key.clone(), polling.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            while polling.load(std::sync::atomic::Ordering::SeqCst) {
                answers.push(human_events(&http, &url, &app, &read_key).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    let http = reqwest::Client::new();
    let answer = |want: u64| {
        let (http, url, app, read_key) = (http.clone(), query.url(), app.clone(), read_key.clone());
        async move {
            eventually(
                &format!("the query service to answer {want}"),
                Duration::from_secs(15),
                || async {
                    (human_events(&http, &url, &app, &read_key).await == (200, Some(want)))
                        .then_some(())
                },
            )
            .await;
        }
    };
    answer(live_count).await;
    let switched = tally_admin::replay::switch::switch(&live, &pg, &name, 0)
        .await
        .unwrap();
    assert_eq!(switched.database, target.database);
    answer(replay_count).await;
    // New events reach the served target through the following replay.
    send(&gateway.url(), &key, HUMAN, &batch("late-human")).await;
    answer(replay_count + 40).await;
    // Dropping the served target is refused; rollback answers from the live tables again.
    let refused = drop::drop(&live, &pg, &name, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("rollback"), "{refused}");
    tally_admin::replay::switch::rollback(&live, &pg)
        .await
        .unwrap();
    answer(live_count + 40).await;
    polling.store(false, std::sync::atomic::Ordering::SeqCst);
    let answers = reader.await.unwrap();
    assert!(answers.len() > 20, "{} answers", answers.len());
    for (status, events) in &answers {
        assert_eq!(*status, 200);
        let within = replay_count..=live_count + 40;
        assert!(
            events.is_some_and(|e| within.contains(&e)),
            "an answer of {events:?}"
        );
    }
    println!(
        "{} answers during switch and rollback, all 200",
        answers.len()
    );

    let _ = stop.send(());
    let ended = replay.await.unwrap().unwrap();
    assert!(matches!(ended, Ended::Stopped(_)), "{ended:?}");
    drop::drop(&live, &pg, &name, false).await.unwrap();
    query.stop().await;
    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}

/// Produces `n` envelopes of `app` straight to the topic (the gateway's job;
/// here the broker is the test's own).
async fn produce(kafka: &tally_common::kafka::KafkaConfig, app: &str, n: usize) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka.client_config().create().unwrap();
    for i in 0..n {
        let envelope = tally_schemas::Envelope {
            event_id: unique("e"),
            app_id: app.to_owned(),
            name: "tick".into(),
            distinct_id: format!("u{i}"),
            user_id: Some(format!("u{i}")),
            anonymous_id: None,
            timestamp_ms: now_ms(),
            received_at_ms: now_ms(),
            sent_at_ms: None,
            ip: None,
            user_agent: None,
            properties: serde_json::Map::new(),
            enrichment: tally_schemas::Enrichment::default(),
            retention_days: 0,
        };
        let payload = envelope.encode();
        let key = format!("{app}:u{i}");
        producer
            .send(
                FutureRecord::to(&kafka.topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_the_topic_no_longer_holds_is_refused_with_the_earliest_time() {
    // The test's own broker deletes messages older than the topic's 5-s retention every second.
    let broker = tally_testkit::broker::PrivateBroker::start_durable_maintained("1s").await;
    let iso = Isolation::on_broker(1, &broker.brokers).await;
    let topic = unique("short");
    tally_common::kafka::ensure_topic_with(&broker.brokers, &topic, 1, 5_000)
        .await
        .unwrap();
    let kafka = tally_common::kafka::KafkaConfig {
        topic: topic.clone(),
        ..iso.kafka.clone()
    };
    let mut live = services::aggregator_config(&iso);
    live.kafka = kafka.clone();
    let app = unique("gone");
    let before = now_ms();
    produce(&kafka, &app, 20).await;
    // Wait until retention removed the first messages.
    eventually(
        "retention to delete the oldest messages",
        Duration::from_secs(60),
        || async {
            let kafka = kafka.clone();
            let facts =
                tokio::task::spawn_blocking(move || tally_admin::replay::plan::read_facts(&kafka))
                    .await
                    .unwrap();
            // (tansu 0.6 then reports log start 0 and, once the partition is empty, log end 0.)
            let facts = facts.ok()?;
            facts
                .first()
                .filter(|f| f.low > 0 || f.high < 20)
                .map(|_| ())
        },
    )
    .await;
    produce(&kafka, &app, 5).await;
    let low = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || tally_admin::replay::plan::read_facts(&kafka))
            .await
            .unwrap()
            .unwrap()[0]
            .low
    };
    assert_eq!(
        low, 20,
        "the first message held is the first of the second batch"
    );
    let pg = pg().await;
    let refusal = |from: String| {
        let (live, pg) = (&live, &pg);
        async move {
            let options = StartOptions {
                name: unique("gone"),
                from: Some(from),
                ..StartOptions::default()
            };
            let err = run::prepare(live, pg, &options).await.unwrap_err();
            assert!(
                matches!(err, tally_admin::replay::ReplayError::OffsetsGone { .. }),
                "{err}"
            );
            assert!(catalog::get(pg, &options.name).await.unwrap().is_none());
            err.to_string()
        }
    };
    // Offsets the broker deleted: refused, naming the first message still held.
    let text = refusal("0:0".into()).await;
    println!("{text}");
    assert!(
        text.contains(&format!(
            "partition 0 starts at offset {low} now; offset 0 was removed"
        )) || text.contains("starts at offset"),
        "{text}"
    );
    assert!(
        text.contains("the earliest time the topic still holds completely is 20"),
        "{text}"
    );
    // A time: the topic's retention says it is gone (or about to be).
    let text = refusal(before.to_string()).await;
    println!("{text}");
    assert!(
        text.contains("the topic keeps messages 0.0 days (retention.ms 5000)"),
        "{text}"
    );
    println!("log start moved to {low}");
    iso.cleanup().await;
}
