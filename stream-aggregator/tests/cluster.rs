//! The cluster test (issue 18): Tally on the local ClickHouse cluster (2
//! shards × 2 replicas of 18.16 with ZooKeeper) and the local Redis Cluster
//! (3 masters; both `scripts/cluster up`), with two gateways behind nginx,
//! three aggregators (child processes, one consumer group) and two query
//! services. Loadgen traffic goes through the load balancer; during it a
//! shard's home replica is killed with SIGKILL and restarted (for each
//! shard), a Redis Cluster master is restarted, aggregators are killed with
//! SIGKILL and restarted after a random delay, and a gateway is killed. Then the
//! ground-truth checker must find every acknowledged event exactly once in
//! ClickHouse (read through the `Distributed` tables) and every live window
//! exact, both query services must answer the same totals, and every
//! visitor's rows must sit on the one shard its hash names.
//!
//! The control run turns the exactly-once guards off
//! (`TALLY_AGGREGATOR_FAULT=ignore-offsets`) on the same cluster and requires
//! the checker to flag the replayed rows.
//!
//! A third test pins the rule the exactly-once argument rests on: a replica
//! missing a part acknowledged on its shard (its fetches stopped, then the
//! home killed) never becomes home; once it caught up it takes over.
//!
//! The tests kill shared cluster nodes, so they run one at a time
//! ([`SERIAL`]); no other test binary runs meanwhile (`cargo test` runs
//! binaries one after another). Scale with `TALLY_CLUSTER_SECS` (default 45)
//! and `TALLY_CLUSTER_RATE` (events/s, default 200).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_aggregator::shards::Shards;
use support::*;
use tally_loadgen::check::check;
use tally_loadgen::model::ModelConfig;
use tally_testkit::cluster::{self, kill_node, start_node, Balancer};
use tally_testkit::{eventually, services, Isolation};

/// The node every service and the checker talk to (never killed here).
const ENTRY_NODE: usize = 4;

/// One test at a time: they kill nodes of the shared cluster.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Environment of an aggregator process on the cluster.
fn cluster_env(iso: &Isolation, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let shards: Vec<String> = cluster::shards().iter().map(|s| s.join(",")).collect();
    let shards = shards.join(";");
    let mut vars = vec![
        ("TALLY_CLICKHOUSE_CLUSTER", cluster::CLUSTER),
        ("TALLY_CLICKHOUSE_SHARDS", shards.as_str()),
    ];
    vars.extend_from_slice(extra);
    aggregator_env(iso, &vars)
}

fn model(run: &str, rate: f64) -> ModelConfig {
    let sessions = (rate / 2.0).max(150.0) as usize;
    ModelConfig {
        seed: 11,
        run_id: tally_testkit::unique(run),
        apps: 2,
        visitors: sessions * 3,
        concurrent_sessions: sessions,
        mean_think_ms: 400.0,
    }
}

/// Rows per shard (read on one replica of each, after it synced), and the
/// visitors found on more than one shard or on a shard their hash does not name.
async fn placement(iso: &Isolation) -> (Vec<u64>, usize) {
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Visitor {
        app_id: String,
        distinct_id: String,
    }
    let shards = cluster::shards();
    let (mut rows, mut misplaced) = (Vec::new(), 0);
    for (index, replicas) in shards.iter().enumerate() {
        let client = clickhouse::Client::default()
            .with_url(replicas[1].as_str())
            .with_database(iso.clickhouse.database.as_str())
            .with_validation(false);
        client
            .query("SYSTEM SYNC REPLICA events_local")
            .execute()
            .await
            .unwrap();
        let n: u64 = client
            .query("SELECT count() FROM events_local")
            .fetch_one()
            .await
            .unwrap();
        rows.push(n);
        let visitors = client
            .query("SELECT DISTINCT app_id, distinct_id FROM events_local")
            .fetch_all::<Visitor>()
            .await
            .unwrap();
        misplaced += visitors
            .iter()
            .filter(|v| {
                let hash = tally_schemas::cluster::shard_hash(&[&v.app_id, &v.distinct_id]);
                hash % shards.len() as u64 != index as u64
            })
            .count();
    }
    (rows, misplaced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_counts_every_event_once_through_node_and_process_failures() {
    let _serial = SERIAL.lock().await;
    let rate = env_number("TALLY_CLUSTER_RATE", 200) as f64;
    let secs = env_number("TALLY_CLUSTER_SECS", 45);
    let seed = env_number("TALLY_CHAOS_SEED", u64::from(std::process::id()));
    let iso = cluster::on_cluster(
        6,
        &tally_testkit::kafka_brokers(),
        &cluster::redis_url(),
        ENTRY_NODE,
    )
    .await;
    let mut gateways = vec![
        Some(services::gateway(services::gateway_config(&iso)).await),
        Some(services::gateway(services::gateway_config(&iso)).await),
    ];
    let upstreams: Vec<String> = gateways
        .iter()
        .map(|g| g.as_ref().unwrap().addr.to_string())
        .collect();
    let balancer = Balancer::start(&upstreams).await;
    let env = cluster_env(&iso, &[]);
    let mut aggregators = Vec::new();
    for _ in 0..3 {
        aggregators.push(Some(start_aggregator(&env).await));
    }
    let queries = [
        services::query(services::query_config(&iso)).await,
        services::query(services::query_config(&iso)).await,
    ];
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = sender(
        "cluster",
        balancer.url.clone(),
        model("cluster", rate),
        rate,
        24 * 3_600,
        Some(stop_load.clone()),
    );

    // Kill each shard's home replica (the aggregators' first choice) and bring
    // it back; kill aggregators (restart after 0–8 s, seeded); kill a gateway.
    let plan = [
        "node 1",
        "aggregator 0",
        "redis 2",
        "gateway 1",
        "node 3",
        "aggregator 1",
    ];
    let step = Duration::from_secs_f64(secs as f64 * 0.8 / plan.len() as f64);
    let started = Instant::now();
    let mut done = Vec::new();
    let mut state = seed;
    // The sleeps here pace the disturbances and are the downtimes themselves;
    // every wait for a state (ready, rows stored) polls with a deadline.
    for action in plan {
        tokio::time::sleep(step).await;
        let at = started.elapsed().as_secs_f64();
        let (what, n) = action.split_once(' ').unwrap();
        let n: usize = n.parse().unwrap();
        match what {
            "node" => {
                kill_node(n).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                start_node(n).await;
            }
            "aggregator" => {
                aggregators[n].take().unwrap().kill();
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let delay = Duration::from_millis((state >> 33) % 8_000);
                tokio::time::sleep(delay).await;
                aggregators[n] = Some(start_aggregator(&env).await);
            }
            "gateway" => gateways[n].take().unwrap().abort().await,
            "redis" => cluster::restart_redis(n).await,
            _ => unreachable!(),
        }
        done.push(format!("{action}@{at:.1}s"));
    }
    let remaining = Duration::from_secs(secs).saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop_load.store(true, Ordering::SeqCst);
    let (records, unanswered) = load.await.unwrap();
    assert!(
        records.len() as u64 > secs * rate as u64 / 4,
        "too little load got through: {}",
        records.len()
    );
    wait_for_rows(&iso, records.len() as u64).await;
    eprintln!("cluster: {} rows stored; checking", records.len());

    let config = check_config(&iso, &queries[0].url(), (&records, &unanswered)).await;
    let report = settle(&records, &config, Duration::from_secs(90)).await;
    eprintln!("cluster: checked (ok: {}); placement", report.ok);
    let (per_shard, misplaced) = placement(&iso).await;
    // How often the aggregator never killed chose homes (each rebalance
    // makes it prove them again) and found replicas unusable.
    let survivor = aggregators[2].as_ref().unwrap();
    let text = reqwest::get(format!("{}/metrics", survivor.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let selections: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tally_aggregator_replica_selections_total"))
        .collect();
    eprintln!("cluster: the surviving aggregator's replica selections: {selections:?}");
    // The live state spread over every Redis Cluster master.
    let mut keys_per_master = Vec::new();
    for url in tally_common::redis_conn::seeds(&iso.redis_url) {
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", iso.redis_prefix))
            .query_async(&mut connection)
            .await
            .unwrap();
        keys_per_master.push(keys.len());
    }
    eprintln!("cluster: keys per Redis Cluster master {keys_per_master:?}");
    assert!(
        keys_per_master.len() == 3 && keys_per_master.iter().all(|n| *n > 0),
        "{keys_per_master:?}"
    );
    eprintln!(
        "cluster: seed {seed}; disturbances [{}]; {} acknowledged events and {} sessions checked, lost {}, duplicated {}, mismatches {}; rows per shard {per_shard:?}, misplaced visitors {misplaced}",
        done.join(", "),
        report.events_checked,
        report.sessions_checked,
        report.lost,
        report.duplicated,
        report.mismatch_count,
    );
    assert!(report.ok, "{:#?}", report.mismatches);
    assert!(report.sessions_checked > 0);
    assert_eq!(misplaced, 0, "every visitor on the shard its hash names");
    assert!(
        per_shard.iter().all(|n| *n > 0),
        "both shards used: {per_shard:?}"
    );
    assert_eq!(per_shard.iter().sum::<u64>(), report.events_checked as u64);
    // The second query service answers the same (counts and live windows).
    let config = check_config(&iso, &queries[1].url(), (&records, &unanswered)).await;
    let second = check(&records, &config).await.unwrap();
    assert!(second.ok, "second query service: {:#?}", second.mismatches);

    for aggregator in aggregators.into_iter().flatten() {
        aggregator.stop();
    }
    for query in queries {
        query.stop().await;
    }
    for gateway in gateways.into_iter().flatten() {
        gateway.stop().await;
    }
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_cluster_the_checker_flags_a_run_without_the_guards() {
    let _serial = SERIAL.lock().await;
    let iso = cluster::on_cluster(
        2,
        &tally_testkit::kafka_brokers(),
        &cluster::redis_url(),
        ENTRY_NODE,
    )
    .await;
    let env = cluster_env(&iso, &[("TALLY_AGGREGATOR_FAULT", "ignore-offsets")]);
    control_run(
        &iso,
        &env,
        "cluster control",
        model("cluster-control", 200.0),
    )
    .await;
    iso.cleanup().await;
}

/// Starts ClickHouse node `n` again when dropped (a failed assertion must not
/// leave the shared cluster short of a node).
struct Restart(usize);

impl Drop for Restart {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
        let _ = std::process::Command::new(script)
            .args(["start", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_its_shard_never_becomes_home() {
    let _serial = SERIAL.lock().await;
    let iso = cluster::on_cluster(
        1,
        &tally_testkit::kafka_brokers(),
        &cluster::redis_url(),
        ENTRY_NODE,
    )
    .await;
    let nodes = cluster::nodes();
    let database = iso.clickhouse.database.clone();
    let node = |n: usize| {
        clickhouse::Client::default()
            .with_url(nodes[n - 1].as_str())
            .with_database(database.as_str())
            .with_validation(false)
    };
    let count = |n: usize| {
        let client = node(n);
        async move {
            client
                .query("SELECT count() FROM events_local")
                .fetch_one::<u64>()
                .await
        }
    };
    let shards = Shards::of(&iso.clickhouse)
        .unwrap()
        .with_sync_timeout(Duration::from_secs(8));
    shards.client(0).await.unwrap();
    assert_eq!(shards.home(0), Some(nodes[0].as_str()), "node 1 first");

    // Node 2 stops fetching; a part acknowledged by node 1 is missing there.
    node(2)
        .query("SYSTEM STOP FETCHES events_local")
        .execute()
        .await
        .unwrap();
    node(1)
        .query(
            "INSERT INTO events_local (app_id, event_date, timestamp, ts_ms, event_id, name, distinct_id) \
             VALUES ('a', '2026-01-01', 1767225600, 1767225600000, 'e1', 'x', 'u1')",
        )
        .execute()
        .await
        .unwrap();
    let _restart = Restart(1);
    kill_node(1).await;
    shards.invalidate();
    assert!(
        shards.client(0).await.is_err(),
        "node 2 lacks an acknowledged part"
    );
    assert_eq!(shards.home(0), None);
    assert_eq!(count(2).await.unwrap(), 0);
    // Fetching again, node 2 still cannot get the part while node 1 is down.
    node(2)
        .query("SYSTEM START FETCHES events_local")
        .execute()
        .await
        .unwrap();
    assert!(
        shards.client(0).await.is_err(),
        "the part is only on node 1"
    );

    // Node 1 back: node 2 catches up; with node 1 killed again, node 2 proves
    // itself and becomes home, holding the row.
    start_node(1).await;
    eventually(
        "node 2 fetched the part",
        Duration::from_secs(60),
        || async { (count(2).await.ok()? == 1).then_some(()) },
    )
    .await;
    kill_node(1).await;
    shards.invalidate();
    let client = shards.client(0).await.expect("node 2 is in sync");
    assert_eq!(shards.home(0), Some(nodes[1].as_str()));
    let rows: u64 = client
        .query("SELECT count() FROM events_local")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, 1);
    start_node(1).await;
    iso.cleanup().await;
}
