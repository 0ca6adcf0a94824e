//! What the process-level tests (`chaos.rs`, `cluster.rs`) share: aggregator
//! child processes, loadgen traffic, the ground-truth checker and waits on
//! stored rows (each with a deadline).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_loadgen::check::{check, CheckConfig, Report};
use tally_loadgen::model::ModelConfig;
use tally_loadgen::record::Acked;
use tally_loadgen::send::{self, SendConfig, Style};
use tally_testkit::broker::rewind_group;
use tally_testkit::servers::{service_process, ServiceProcess};
use tally_testkit::{eventually, services, Isolation};

pub const AGGREGATOR: &str = env!("CARGO_BIN_EXE_stream-aggregator");
/// The aggregators' allowed lateness in these tests.
pub const LATENESS_MS: i64 = 30_000;

pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Environment of an aggregator process for `iso` (`extra` added).
pub fn aggregator_env(iso: &Isolation, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("TALLY_KAFKA_BROKERS", iso.kafka.brokers.as_str()),
        ("TALLY_KAFKA_TOPIC", iso.kafka.topic.as_str()),
        ("TALLY_KAFKA_DLQ_TOPIC", iso.kafka.dlq_topic.as_str()),
        ("TALLY_AGGREGATOR_GROUP", iso.group_id.as_str()),
        ("TALLY_REDIS_URL", iso.redis_url.as_str()),
        ("TALLY_REDIS_PREFIX", iso.redis_prefix.as_str()),
        ("TALLY_CLICKHOUSE_URL", iso.clickhouse.url.as_str()),
        (
            "TALLY_CLICKHOUSE_DATABASE",
            iso.clickhouse.database.as_str(),
        ),
        ("TALLY_AGGREGATOR_FLUSH_MS", "200"),
        ("TALLY_AGGREGATOR_LATENESS_MS", "30000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

pub async fn start_aggregator(env: &[(String, String)]) -> ServiceProcess {
    service_process(Path::new(AGGREGATOR), "TALLY_AGGREGATOR_ADDR", env).await
}

/// Loadgen traffic through `gateway`; returns what was acknowledged and the
/// events of unanswered requests (a killed gateway may have stored them).
pub fn sender(
    label: &'static str,
    gateway: String,
    model: ModelConfig,
    rate: f64,
    secs: u64,
    stop: Option<Arc<AtomicBool>>,
) -> tokio::task::JoinHandle<(Vec<Acked>, Vec<Acked>)> {
    tokio::spawn(async move {
        let keys = send::provision_keys(&tally_testkit::postgres(), &model)
            .await
            .unwrap();
        let (summary, records, unanswered) = send::run_with_unanswered(SendConfig {
            gateway,
            rate: Some(rate),
            duration: Some(Duration::from_secs(secs)),
            max_events: None,
            batch: 10,
            concurrency: 8,
            style: Style::Browser,
            model,
            progress: false,
            keys,
            stop,
        })
        .await;
        eprintln!(
            "{label} load: {summary:?}, {} events of unanswered requests",
            unanswered.len()
        );
        (records, unanswered)
    })
}

pub async fn check_config(
    iso: &Isolation,
    query: &str,
    (records, unanswered): (&[Acked], &[Acked]),
) -> CheckConfig {
    let postgres = tally_testkit::postgres();
    CheckConfig::for_records(iso.clickhouse.clone(), query, &postgres, records)
        .await
        .unwrap()
        .allowed_lateness_ms(LATENESS_MS)
        .with_unanswered(unanswered.to_vec())
}

/// Runs the checker until it passes or `timeout` (the pipeline may still be catching up);
/// returns the last report.
pub async fn settle(records: &[Acked], config: &CheckConfig, timeout: Duration) -> Report {
    let deadline = Instant::now() + timeout;
    loop {
        let report = check(records, config).await.unwrap();
        if report.ok || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits (≤ 180 s) until ClickHouse holds at least `at_least` rows.
pub async fn wait_for_rows(iso: &Isolation, at_least: u64) {
    let client = iso.clickhouse_client();
    eventually("rows in ClickHouse", Duration::from_secs(180), || async {
        let rows: u64 = client
            .query("SELECT count() FROM events")
            .fetch_one()
            .await
            .ok()?;
        (rows >= at_least).then_some(())
    })
    .await;
}

/// The control run: aggregators started with `env` (the guards off) write
/// 5 s of traffic, then — the group rewound, as after a crash before the
/// commit — write it again; the checker must find every row doubled and the
/// live windows wrong. A checker that cannot fail proves nothing.
pub async fn control_run(
    iso: &Isolation,
    env: &[(String, String)],
    label: &'static str,
    model: ModelConfig,
) {
    let gateway = services::gateway(services::gateway_config(iso)).await;
    let first = start_aggregator(env).await;
    let (records, unanswered) = sender(label, gateway.url(), model, 200.0, 5, None)
        .await
        .unwrap();
    wait_for_rows(iso, records.len() as u64).await;
    first.stop();
    rewind_group(&iso.kafka.brokers, &iso.group_id, &iso.kafka.topic).await;
    let second = start_aggregator(env).await;
    wait_for_rows(iso, 2 * records.len() as u64).await;

    let query = services::query(services::query_config(iso)).await;
    let config = check_config(iso, &query.url(), (&records, &unanswered)).await;
    let report = check(&records, &config).await.unwrap();
    eprintln!(
        "{label}: {} events, duplicated {}, live mismatches {}, mismatches {}",
        report.events_checked, report.duplicated, report.live_mismatches, report.mismatch_count
    );
    assert!(!report.ok);
    assert_eq!(
        report.duplicated, report.events_checked,
        "every row doubled"
    );
    assert!(
        report.live_mismatches > 0,
        "live double counting must show: {report:?}"
    );
    second.stop();
    query.stop().await;
    gateway.stop().await;
}
