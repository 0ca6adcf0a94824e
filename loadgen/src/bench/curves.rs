//! Scaling curves (`tally-loadgen bench --curves`): how cost grows with load
//! and latency with data, saved under `target/bench/` as `curves.json`,
//! `curves.md` (tables), `curves.svg` and `curves.png` (the plot, [`super::plot`]).
//!
//! * Intake: B1 with 1, 2 and 4 topic partitions × 1 and 2 gateway processes
//!   (32 clients in all, batches of 50), against a plain producer writing the
//!   same number of messages to a topic of the same partitions; gateway
//!   events per CPU-second and request p99.
//! * Aggregator: B2 over each 1-gateway backlog (1, 2, 4 partitions) against
//!   a plain consumer of the same topic.
//! * Queries: B5 (group-by, funnel, strict funnel, and the page-views
//!   question from derived tables and from raw rows) on historical datasets
//!   of each size of `--curve-rows` (default 10, 25 and 50 M events).
//!
//! `--curves-queries` runs the query curve alone. Figures are printed and
//! saved, never asserted.

use super::process::{aggregator_over, Service};
use super::{
    b5, b5_figures, b5_timings, common_env, history_db, run_setup, single_node, unique, BenchConfig,
};
use crate::model::ModelConfig;
use crate::send::{self, SendConfig, Style};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tally_common::clickhouse::drop_database;

/// Partitions of the intake and aggregator curves.
const PARTITIONS: [i32; 3] = [1, 2, 4];
/// Gateway processes of the intake curve.
const GATEWAYS: [usize; 2] = [1, 2];
/// Clients in all (split between the gateways).
const CLIENTS: usize = 32;

/// One intake point: `gateways` gateways on a topic of `partitions`.
async fn intake_point(
    config: &BenchConfig,
    partitions: i32,
    gateways: usize,
) -> Result<Value, String> {
    let id = unique(&format!("curve_p{partitions}_g{gateways}"));
    let topic = format!("{id}_events");
    let (clickhouse, common) = run_setup(config, &id, partitions).await?;
    let mut started = Vec::new();
    for _ in 0..gateways {
        started
            .push(Service::start(config, "ingest-gateway", "TALLY_GATEWAY_ADDR", &common).await?);
    }
    let cpu_before: f64 = started.iter().filter_map(Service::cpu_seconds).sum();
    let mut senders = Vec::new();
    for (i, gateway) in started.iter().enumerate() {
        let model = ModelConfig {
            seed: 5 + i as u64,
            run_id: format!("{id}-s{i}"),
            ..ModelConfig::default()
        };
        let keys = send::provision_keys(&config.postgres, &model).await?;
        senders.push(tokio::spawn(send::run(SendConfig {
            gateway: gateway.url.clone(),
            rate: None,
            duration: Some(Duration::from_secs_f64(config.b1_seconds)),
            max_events: None,
            batch: 50,
            concurrency: CLIENTS / gateways,
            style: Style::Server,
            keys,
            model,
            progress: false,
            stop: None,
        })));
    }
    let (mut acked, mut rate, mut p99) = (0u64, 0.0, 0.0f64);
    for sender in senders {
        let (summary, _) = sender.await.map_err(|e| e.to_string())?;
        acked += summary.acknowledged;
        rate += summary.events_per_sec;
        p99 = p99.max(summary.p99_ms);
    }
    let cpu = started.iter().filter_map(Service::cpu_seconds).sum::<f64>() - cpu_before;
    for gateway in started {
        gateway.stop();
    }
    let peer =
        super::peers::plain_produce(&config.brokers, &format!("{topic}_peer"), acked).await?;
    let mut point = json!({
        "partitions": partitions, "gateways": gateways, "events": acked,
        "events_per_sec": rate, "plain_producer_events_per_sec": peer, "ratio": rate / peer,
        "events_per_gateway_cpu_second": if cpu > 0.0 { acked as f64 / cpu } else { 0.0 },
        "p99_ms": p99,
    });
    if gateways == 1 {
        // The aggregator over this backlog, against a plain consumer of it.
        let consumer = super::peers::plain_consume(&config.brokers, &topic, acked).await?;
        let (aggregator, rate, per_cpu) = aggregator_over(config, &common, acked as f64).await?;
        aggregator.stop();
        point["aggregator"] = json!({
            "events_per_sec": rate, "events_per_cpu_second": per_cpu,
            "plain_consumer_events_per_sec": consumer, "ratio": rate / consumer,
        });
    }
    let _ = drop_database(&clickhouse, &clickhouse.database).await;
    Ok(point)
}

/// One query point: B5 on a dataset of `rows` events.
async fn query_point(config: &BenchConfig, rows: u64) -> Result<Value, String> {
    let clickhouse = single_node(config, "tally".into());
    let (history, generated) = history_db(&clickhouse, rows).await?;
    let id = unique("curve_q");
    let mut env = common_env(config, &id, &history.database);
    env.push(("TALLY_QUERY_CACHE_SECS", "0".to_owned()));
    eprintln!("curves: B5 on {rows} rows");
    let mut point = b5_figures(&b5_timings(config, &env).await?);
    point["rows"] = json!(rows);
    point["dataset"] = json!(generated);
    point["pages"] = b5::pages(config, &history, &env)
        .await
        .unwrap_or_else(|why| json!({ "error": why }));
    Ok(point)
}

/// Runs the curves (`queries_only`: the query curve alone) for dataset sizes
/// `rows`; the figures so far are written to `dir/curves-partial.json` after
/// every point (a long run stopped halfway keeps what it measured).
pub async fn run(
    config: &BenchConfig,
    rows: &[u64],
    queries_only: bool,
    dir: &Path,
) -> Result<Value, String> {
    let mut curves = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "b1_seconds": config.b1_seconds, "clients": CLIENTS, "b5_runs": config.b5_runs,
        "intake": [], "queries": [],
    });
    let keep = |curves: &Value| {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(
            dir.join("curves-partial.json"),
            serde_json::to_vec_pretty(curves).unwrap_or_default(),
        );
    };
    if !queries_only {
        for partitions in PARTITIONS {
            for gateways in GATEWAYS {
                eprintln!("curves: intake with {partitions} partitions, {gateways} gateways");
                let point = intake_point(config, partitions, gateways).await?;
                if let Some(list) = curves["intake"].as_array_mut() {
                    list.push(point);
                }
                keep(&curves);
            }
        }
    }
    for n in rows {
        let point = query_point(config, *n).await?;
        if let Some(list) = curves["queries"].as_array_mut() {
            list.push(point);
        }
        keep(&curves);
    }
    Ok(curves)
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

/// The curves as markdown tables.
pub fn table(curves: &Value) -> String {
    let mut out = String::from("### Intake (B1) and aggregator (B2) by partitions and gateways\n\n| partitions | gateways | gateway events/s | plain producer | ratio | events per gateway CPU-s | request p99 ms | aggregator events/s | plain consumer | ratio | aggregator events per CPU-s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in curves["intake"].as_array().into_iter().flatten() {
        let a = &p["aggregator"];
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p["partitions"],
            p["gateways"],
            f(&p["events_per_sec"]),
            f(&p["plain_producer_events_per_sec"]),
            f(&p["ratio"]),
            f(&p["events_per_gateway_cpu_second"]),
            f(&p["p99_ms"]),
            f(&a["events_per_sec"]),
            f(&a["plain_consumer_events_per_sec"]),
            f(&a["ratio"]),
            f(&a["events_per_cpu_second"]),
        );
    }
    out += "\n### Queries (B5) by dataset size, answer cache off, p50 / p95 ms\n\n| rows | group-by 90 d | page views 90 d, derived + raw | same from raw rows | answers equal | rows read derived / raw | funnel 30 d | strict funnel 30 d |\n|---|---|---|---|---|---|---|---|\n";
    // "p50 / p95", or the start of why the request was not answered.
    let pair = |v: &Value, name: &str| match v[format!("{name}_error")].as_str() {
        Some(why) => format!("not answered: {}", why.chars().take(80).collect::<String>()),
        None => format!(
            "{} / {}",
            f(&v[format!("{name}_p50_ms")]),
            f(&v[format!("{name}_p95_ms")])
        ),
    };
    for q in curves["queries"].as_array().into_iter().flatten() {
        let pages = &q["pages"];
        out += &format!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
            q["rows"],
            pair(q, "group_by_90d"),
            pair(pages, "derived"),
            pair(pages, "raw"),
            pages["answers_equal"],
            pages["derived_read"]["rows_read"],
            pages["raw_read"]["rows_read"],
            pair(q, "funnel_30d"),
            pair(q, "strict_funnel_30d"),
        );
    }
    out
}

/// Saves `curves` next to `out` (`curves.json`, `.md`, `.svg`, and `.png`
/// when Chromium renders it); returns the PNG's path or why there is none.
pub async fn save(curves: &Value, dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))
    };
    write(
        "curves.json",
        &serde_json::to_vec_pretty(curves).unwrap_or_default(),
    )?;
    write("curves.md", table(curves).as_bytes())?;
    let svg = super::plot::curves_svg(curves);
    write("curves.svg", svg.as_bytes())?;
    super::plot::png(&dir.join("curves.svg"), &dir.join("curves.png")).await
}
