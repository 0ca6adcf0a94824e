//! The checker passes on a clean pipeline run (also when some requests went
//! unanswered but were stored) and fails on planted faults: a duplicated row,
//! a lost event, and a miscounted live window. Real broker,
//! Redis and ClickHouse; services booted in-process.

use std::time::Duration;
use tally_loadgen::check::{check, CheckConfig};
use tally_loadgen::model::ModelConfig;
use tally_loadgen::send::{self, SendConfig, Style};
use tally_testkit::{eventually, services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checker_passes_clean_runs_and_catches_planted_faults() {
    let iso = Isolation::new(4).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    let run_id = tally_testkit::unique("chk");

    let model = ModelConfig {
        seed: 11,
        run_id: run_id.clone(),
        apps: 4,
        visitors: 300,
        concurrent_sessions: 200,
        mean_think_ms: 50.0,
    };
    let keys = send::provision_keys(&tally_testkit::postgres(), &model)
        .await
        .unwrap();
    let (summary, records) = send::run(SendConfig {
        gateway: gateway.url(),
        rate: None,
        duration: Some(Duration::from_secs(30)),
        max_events: Some(3_000),
        batch: 10,
        concurrency: 4,
        style: Style::Browser,
        model,
        progress: false,
        keys,
        stop: None,
    })
    .await;
    assert!(summary.acknowledged >= 3_000, "{summary:?}");
    assert_eq!(records.len() as u64, summary.acknowledged);

    let client = iso.clickhouse_client();
    eventually(
        "all rows in ClickHouse",
        Duration::from_secs(60),
        || async {
            let rows: u64 = client
                .query("SELECT count() FROM events")
                .fetch_one()
                .await
                .ok()?;
            (rows >= summary.acknowledged).then_some(())
        },
    )
    .await;
    let config = CheckConfig::for_records(
        iso.clickhouse.clone(),
        &query.url(),
        &tally_testkit::postgres(),
        &records,
    )
    .await
    .unwrap();
    // Live windows are written in the same flush as the rows; allow one more flush.
    let clean = eventually("a clean check", Duration::from_secs(20), || async {
        let report = check(&records, &config).await.ok()?;
        report.ok.then_some(report)
    })
    .await;
    assert_eq!(
        (clean.lost, clean.duplicated, clean.mismatch_count),
        (0, 0, 0)
    );

    // A request whose answer was lost (the gateway produced, then died):
    // the client cannot count its events as acknowledged, but they were
    // stored — the truth must count them, and an unanswered event that was
    // not stored must not count.
    let app = records[0].app_id.clone();
    let (unanswered, answered): (Vec<_>, Vec<_>) = records
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, r)| r.app_id == app && i % 7 == 0);
    let unanswered: Vec<_> = unanswered.into_iter().map(|(_, r)| r).collect();
    let answered: Vec<_> = answered.into_iter().map(|(_, r)| r).collect();
    assert!(!unanswered.is_empty());
    let mut never_stored = unanswered[0].clone();
    never_stored.event_id = format!("{run_id}-never-stored");
    let blind = check(&answered, &config).await.unwrap();
    assert!(!blind.ok, "without them the stored extra events show");
    let mut with_unanswered = unanswered.clone();
    with_unanswered.push(never_stored);
    let config_unanswered = config.clone().with_unanswered(with_unanswered);
    let report = check(&answered, &config_unanswered).await.unwrap();
    assert!(report.ok, "{:?}", report.mismatches);
    assert_eq!(report.unanswered_stored, unanswered.len() as u64);

    // Planted fault 1: one acknowledged event stored twice.
    let victim = &records[records.len() / 2];
    client
        .query("INSERT INTO events SELECT * FROM events WHERE event_id = ?")
        .bind(&victim.event_id)
        .execute()
        .await
        .unwrap();
    let report = check(&records, &config).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.duplicated, 1, "{:?}", report.mismatches);
    assert!(report
        .mismatches
        .iter()
        .any(|m| m.contains(&victim.event_id)));

    // Planted fault 2: an acknowledged event that never reached the store.
    let mut with_ghost = records.clone();
    let mut ghost = records[0].clone();
    ghost.event_id = format!("{run_id}-ghost");
    with_ghost.push(ghost);
    let report = check(&with_ghost, &config).await.unwrap();
    assert_eq!(report.lost, 1);

    // Planted fault 3: a live window counted once too often (Redis only).
    let key = tally_schemas::live::window_key(
        &iso.redis_prefix,
        &victim.app_id,
        tally_schemas::live::window_start(victim.ts_ms),
        tally_schemas::live::shard_of(0),
    );
    let redis = redis::Client::open(tally_testkit::redis_url()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("HINCRBY")
        .arg(&key)
        .arg(tally_schemas::live::total_field(0))
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    // The query service answers from its live cache (250 ms in tests) until
    // that expires: wait for the planted count to show, 10 s at most.
    let live_fault = format!("live {}", victim.app_id);
    let report = eventually(
        "the planted live fault",
        Duration::from_secs(10),
        || async {
            let report = check(&records, &config).await.ok()?;
            let seen = report.mismatches.iter().any(|m| m.starts_with(&live_fault));
            seen.then_some(report)
        },
    )
    .await;
    assert!(!report.ok);
    assert!(report.live_mismatches >= 1, "{:?}", report.mismatches);

    gateway.stop().await;
    aggregator.stop().await;
    query.stop().await;
    iso.cleanup().await;
}
