//! The bench on the local cluster (issue 18), each figure against its
//! single-node twin in the same run; skipped, with the reason in the
//! results, when `scripts/cluster up` has not run.
//!
//! B2c: the aggregator on the local cluster — the B1 backlog
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

use super::process::aggregator_over;
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

/// The cluster's settings for `database`, or why there is none.
async fn cluster_config(database: String) -> Result<(ClickHouseConfig, String), String> {
    let (nodes, redis) = local_cluster();
    let reachable = reqwest::get(format!("{}/ping", nodes[0]))
        .await
        .is_ok_and(|r| r.status().is_success());
    if !reachable {
        return Err("no local cluster (./tally cluster up)".into());
    }
    let config = ClickHouseConfig {
        url: nodes[0].clone(),
        database,
        user: "default".into(),
        password: String::new(),
        cluster: Some("tally".into()),
        shards: nodes.chunks(2).map(<[String]>::to_vec).collect(),
    };
    Ok((config, redis))
}

/// `env` with `overrides` replacing the variables they name.
fn with<'a>(
    env: &[(&'a str, String)],
    overrides: Vec<(&'a str, String)>,
) -> Vec<(&'a str, String)> {
    let mut out: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    out.extend(overrides);
    out
}

/// The ClickHouse variables of a service on `clickhouse`.
fn clickhouse_env(clickhouse: &ClickHouseConfig) -> Vec<(&'static str, String)> {
    let shards: Vec<String> = clickhouse.shards.iter().map(|s| s.join(",")).collect();
    vec![
        ("TALLY_CLICKHOUSE_URL", clickhouse.url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", clickhouse.database.clone()),
        ("TALLY_CLICKHOUSE_CLUSTER", "tally".into()),
        ("TALLY_CLICKHOUSE_SHARDS", shards.join(";")),
    ]
}

/// B5c: B5 on the cluster; `env` is B5's query-service environment.
pub async fn query_latency(config: &BenchConfig, env: &[(&str, String)]) -> Result<Value, String> {
    let (template, _) = match cluster_config(String::new()).await {
        Ok(found) => found,
        Err(why) => return Ok(json!({"skipped": why})),
    };
    // Not B5's name: the query service finds the refresher's state by the
    // database's name, and B5's state is not this dataset's.
    let database = format!("tally_bench_history_cluster_{}", config.b5_events);
    let (history, generated) =
        super::history_db_named(&template, &database, config.b5_events).await?;
    let timings = super::b5_timings(config, &with(env, clickhouse_env(&history))).await?;
    let mut out = json!({"dataset": generated, "shards": history.shards.len(),
                         "replicas_per_shard": history.shards.first().map_or(0, Vec::len)});
    if let (Some(out), Value::Object(figures)) = (out.as_object_mut(), super::b5_figures(&timings))
    {
        out.extend(figures);
    }
    Ok(out)
}

/// B2c over the bench topic's `backlog` events; `common` is the bench's
/// environment (`id` its prefix).
pub async fn aggregator_rate(
    config: &BenchConfig,
    common: &[(&str, String)],
    id: &str,
    backlog: u64,
) -> Result<Value, String> {
    let (clickhouse, redis) = match cluster_config(format!("tally_{id}_cl")).await {
        Ok(found) => found,
        Err(why) => return Ok(json!({"skipped": why})),
    };
    tally_common::clickhouse::migrate(&clickhouse)
        .await
        .map_err(|e| format!("B2c: migrating the cluster database: {e}"))?;
    let mut overrides = clickhouse_env(&clickhouse);
    overrides.extend([
        ("TALLY_REDIS_URL", redis),
        ("TALLY_REDIS_PREFIX", format!("{id}_cl")),
        ("TALLY_AGGREGATOR_GROUP", format!("{id}_cl_group")),
    ]);
    let envs = with(common, overrides);
    let (aggregator, rate, per_core) = aggregator_over(config, &envs, backlog as f64).await?;
    aggregator.stop();
    let _ = tally_common::clickhouse::drop_database(&clickhouse, &clickhouse.database).await;
    Ok(
        json!({"events_per_sec": rate, "events_per_cpu_second": per_core,
              "shards": clickhouse.shards.len(), "replicas_per_shard": clickhouse.shards.first().map_or(0, Vec::len),
              "redis_masters": 3}),
    )
}
