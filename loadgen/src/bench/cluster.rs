//! B2c: the aggregator on the local cluster (issue 18) — the B1 backlog
//! consumed again by a fresh consumer group, written to a database in the
//! cluster layout on ClickHouse 2 shards × 2 replicas (rows routed to shards
//! by the aggregator, homes proven in sync) and to the local Redis Cluster,
//! measured as B2 is (events/s between the first and the last observation of
//! `tally_aggregator_events_total`, and events per CPU-second of the
//! process). B2 in the same run is the single-node peer. Skipped, with the
//! reason in the results, when `scripts/cluster up` has not run. All four
//! ClickHouse nodes and the three Redis masters share this machine's cores
//! with the aggregator, so the figure is what the cluster's coordination
//! costs here, not what more machines would give.

use super::process::{counted_rate, Service};
use super::BenchConfig;
use serde_json::{json, Value};
use tally_common::clickhouse::ClickHouseConfig;

/// The local cluster's ClickHouse nodes (node order) and Redis masters.
fn local_cluster() -> (Vec<String>, String) {
    let nodes = std::env::var("TALLY_CLUSTER_NODES").unwrap_or_else(|_| {
        (1..=4)
            .map(|n| format!("http://127.0.0.1:{}", 8200 + n))
            .collect::<Vec<_>>()
            .join(",")
    });
    let redis = std::env::var("TALLY_REDIS_CLUSTER_NODES").unwrap_or_else(|_| {
        (1..=3)
            .map(|n| format!("redis://127.0.0.1:{}", 7000 + n))
            .collect::<Vec<_>>()
            .join(",")
    });
    (nodes.split(',').map(str::to_owned).collect(), redis)
}

/// B2c over the bench topic's `backlog` events; `common` is the bench's
/// environment (`id` its prefix).
pub async fn aggregator_rate(
    config: &BenchConfig,
    common: &[(&str, String)],
    id: &str,
    backlog: u64,
) -> Result<Value, String> {
    let (nodes, redis) = local_cluster();
    let reachable = reqwest::get(format!("{}/ping", nodes[0]))
        .await
        .is_ok_and(|r| r.status().is_success());
    if !reachable {
        return Ok(json!({"skipped": "no local cluster (./tally cluster up)"}));
    }
    let shards: Vec<Vec<String>> = nodes.chunks(2).map(<[String]>::to_vec).collect();
    let clickhouse = ClickHouseConfig {
        url: nodes[0].clone(),
        database: format!("tally_{id}_cl"),
        user: "default".into(),
        password: String::new(),
        cluster: Some("tally".into()),
        shards: shards.clone(),
    };
    tally_common::clickhouse::migrate(&clickhouse)
        .await
        .map_err(|e| format!("B2c: migrating the cluster database: {e}"))?;
    let shards_var: Vec<String> = shards.iter().map(|s| s.join(",")).collect();
    let overrides: Vec<(&str, String)> = vec![
        ("TALLY_CLICKHOUSE_URL", clickhouse.url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", clickhouse.database.clone()),
        ("TALLY_CLICKHOUSE_CLUSTER", "tally".into()),
        ("TALLY_CLICKHOUSE_SHARDS", shards_var.join(";")),
        ("TALLY_REDIS_URL", redis),
        ("TALLY_REDIS_PREFIX", format!("{id}_cl")),
        ("TALLY_AGGREGATOR_GROUP", format!("{id}_cl_group")),
    ];
    let mut envs: Vec<(&str, String)> = common
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    envs.extend(overrides);
    let aggregator =
        Service::start(config, "stream-aggregator", "TALLY_AGGREGATOR_ADDR", &envs).await?;
    let (rate, per_core) = counted_rate(&aggregator, backlog as f64).await;
    aggregator.stop();
    let drop = format!(
        "DROP DATABASE IF EXISTS {} ON CLUSTER tally",
        clickhouse.database
    );
    let _ = clickhouse.server_client().query(&drop).execute().await;
    Ok(
        json!({"events_per_sec": rate, "events_per_cpu_second": per_core,
              "shards": shards.len(), "replicas_per_shard": shards.first().map_or(0, Vec::len),
              "redis_masters": 3}),
    )
}
