//! The benchmark suite: B1–B6 on the local stack, in one run, printed as a
//! markdown table and saved as JSON. Figures are printed, never asserted.
//!
//! The services run as child processes (the binaries next to `tally-loadgen`,
//! or `--bin-dir`), each on a free port, with their own topic, consumer group,
//! Redis prefix and ClickHouse database, so their peak RSS can be read; all
//! on the run's own broker ([`broker`]: a tansu process whose data goes with
//! the run) unless `TALLY_KAFKA_BROKERS` or `--shared-broker` says otherwise.
//!
//! * B1 gateway: events/s accepted with batches of 50 vs the same messages
//!   produced straight to the broker by a plain rdkafka producer (same
//!   idempotent/acks=all settings).
//! * B2 aggregator: events/s consumed and written to Redis + ClickHouse vs a
//!   plain consumer reading the same topic (first to last message).
//! * B2c cluster: the same backlog by an aggregator on the local ClickHouse
//!   cluster and Redis Cluster, against B2 ([`cluster`]).
//! * B2r replay: the same backlog replayed by `tally-admin replay` into its
//!   own target, against B2's aggregator rate ([`replay`]).
//! * B3 freshness at 50 % of the measured capacity, from the client's send:
//!   → acknowledged, → counted in a push of the live stream, → counted by a
//!   `/live` read, → queryable in ClickHouse (p50/p99 of probe events).
//! * B4 `/live` read latency (last minute = 12 windows of the hottest app) at a
//!   fixed request rate.
//! * B5 query latency on a generated historical dataset (written straight into
//!   ClickHouse): a 90-day `/query` group-by and a 30-day 3-step `/funnel`
//!   (relaxed and strict order),
//!   through a query service pointed at that dataset with its answer cache off.
//! * B5 pages: the 90-day page-views question from the refresher's derived
//!   tables against raw rows, answers compared ([`b5`]).
//! * B5c the same on the local cluster ([`cluster`]); `--queries-only` runs
//!   B5 and B5c alone.
//!
//! `--compare` prints every figure against the previous saved run ([`compare`]);
//! `--curves` measures the scaling curves instead and saves them with a plot
//! ([`curves`], [`plot`]).
//! * B6 peak RSS (VmHWM) of each service after B1–B4.
//! * B7 the dashboard's Overview on the B5 dataset in Chromium: navigation →
//!   every panel rendered, p50/p95, answer cache off (cold) and on (warm)
//!   ([`overview`]).

use crate::model::ModelConfig;
use crate::send::{self, SendConfig, Style};
use crate::stats::{ms, percentile};

mod b5;
mod broker;
mod cluster;
mod compare;
mod curves;
mod overview;
mod p8;
mod p8_lag;
mod peers;
mod plot;
mod probes;
mod process;
mod replay;
mod report;
mod vendors;

use peers::{plain_consume, plain_produce};
use probes::{
    freshness, live_reads, time_post, B5_FUNNEL_REQUEST, B5_QUERY, B5_STRICT_FUNNEL_REQUEST,
};
use process::Service;
pub use report::table;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tally_common::clickhouse::{drop_database, ClickHouseConfig};
use tally_common::{Clock, SystemClock};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Directory holding the service binaries.
    pub bin_dir: PathBuf,
    /// Broker.
    pub brokers: String,
    /// Redis URL.
    pub redis_url: String,
    /// ClickHouse HTTP URL.
    pub clickhouse_url: String,
    /// Seconds of B1 traffic.
    pub b1_seconds: f64,
    /// B1v: seconds per API.
    pub b1v_seconds: f64,
    /// Stop after the intake figures (B1–B4, B2r, B6): `--intake-only`.
    pub intake_only: bool,
    /// Seconds of B3 traffic.
    pub b3_seconds: f64,
    /// B4 request rate and seconds.
    pub b4_rate: f64,
    /// B4 duration.
    pub b4_seconds: f64,
    /// Events of the B5 historical dataset.
    pub b5_events: u64,
    /// Repetitions of each B5 query.
    pub b5_runs: usize,
    /// Events of the P8 historical dataset (copied, then changed by P8).
    pub p8_events: u64,
    /// Measured Overview loads of B7 (each cold and warm).
    pub b7_loads: usize,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// Apps and keys.
    pub postgres: tally_common::postgres::PostgresConfig,
}

impl BenchConfig {
    /// The full suite.
    pub fn full(bin_dir: PathBuf) -> Self {
        BenchConfig {
            bin_dir,
            brokers: env("TALLY_KAFKA_BROKERS", "127.0.0.1:9092"),
            redis_url: env("TALLY_REDIS_URL", "redis://127.0.0.1:6379"),
            clickhouse_url: env("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            b1_seconds: 20.0,
            b1v_seconds: 8.0,
            intake_only: false,
            b3_seconds: 20.0,
            b4_rate: 1_000.0,
            b4_seconds: 10.0,
            b5_events: 10_000_000,
            b5_runs: 20,
            p8_events: 50_000_000,
            b7_loads: 10,
            out: PathBuf::from("target/bench/bench.json"),
            postgres: tally_common::postgres::PostgresConfig {
                url: env(
                    "TALLY_POSTGRES_URL",
                    "postgres://tally:tally@127.0.0.1:5432/tally",
                ),
            },
        }
    }

    /// A smoke run (seconds, not minutes): proves the suite still works.
    pub fn quick(bin_dir: PathBuf) -> Self {
        BenchConfig {
            b1_seconds: 3.0,
            b1v_seconds: 1.0,
            b3_seconds: 3.0,
            b4_rate: 200.0,
            b4_seconds: 2.0,
            b5_events: 200_000,
            b5_runs: 3,
            p8_events: 200_000,
            b7_loads: 2,
            out: PathBuf::from("target/bench/bench-quick.json"),
            ..Self::full(bin_dir)
        }
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A name made unique per run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", SystemClock.now_ms())
}

/// The services' environment of a run `id` (its topic, group, Redis
/// prefix) on ClickHouse `database`.
fn common_env(config: &BenchConfig, id: &str, database: &str) -> Vec<(&'static str, String)> {
    let topic = format!("{id}_events");
    vec![
        ("TALLY_KAFKA_BROKERS", config.brokers.clone()),
        ("TALLY_KAFKA_TOPIC", topic.clone()),
        ("TALLY_KAFKA_DLQ_TOPIC", format!("{topic}_dlq")),
        ("TALLY_REDIS_URL", config.redis_url.clone()),
        ("TALLY_REDIS_PREFIX", id.to_owned()),
        ("TALLY_CLICKHOUSE_URL", config.clickhouse_url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", database.to_owned()),
        ("TALLY_AGGREGATOR_GROUP", format!("{id}_group")),
        ("TALLY_POSTGRES_URL", config.postgres.url.clone()),
        // The load generator sends each simulated client's address in
        // X-Forwarded-For: trust one hop so B1 pays for real geo-IP lookups.
        ("TALLY_GATEWAY_TRUSTED_PROXIES", "1".to_owned()),
    ]
}

/// The bench's ClickHouse server with `database`.
fn single_node(config: &BenchConfig, database: String) -> ClickHouseConfig {
    ClickHouseConfig {
        url: config.clickhouse_url.clone(),
        database,
        user: "default".into(),
        password: String::new(),
        cluster: None,
        shards: Vec::new(),
    }
}

/// B5 and B5c alone (`--queries-only`): the historical dataset on one server
/// and on the local cluster, the same requests through a query service on each.
pub async fn queries(config: &BenchConfig) -> Result<Value, String> {
    let clickhouse = single_node(config, "tally".into());
    let (history, generated) = history_db(&clickhouse, config.b5_events).await?;
    let mut env = common_env(config, &unique("bench"), &history.database);
    env.push(("TALLY_QUERY_CACHE_SECS", "0".to_owned()));
    eprintln!("B5: queries through the query service (answer cache off)");
    let mut b5 = b5_figures(&b5_timings(config, &env).await?);
    b5["dataset"] = json!(generated);
    b5["dataset_rows"] = json!(config.b5_events);
    eprintln!("B5 pages: the page-views question from derived tables and from raw rows");
    b5["pages"] = b5::pages(config, &history, &env).await?;
    eprintln!("B5c: the same queries on the local cluster");
    let b5c = cluster::query_latency(config, &env).await?;
    Ok(json!({"b5": b5, "b5c": b5c}))
}

/// A run `id`'s own topics (`{id}_events` and the peer's `{id}_events_peer`
/// of `partitions`, a dead-letter topic) and migrated ClickHouse database
/// `tally_{id}`; returns the database and the services' environment.
async fn run_setup(
    config: &BenchConfig,
    id: &str,
    partitions: i32,
) -> Result<(ClickHouseConfig, Vec<(&'static str, String)>), String> {
    let topic = format!("{id}_events");
    for (name, n) in [
        (topic.clone(), partitions),
        (format!("{topic}_peer"), partitions),
        (format!("{topic}_dlq"), 1),
    ] {
        tally_common::kafka::ensure_topic(&config.brokers, &name, n)
            .await
            .map_err(|e| e.to_string())?;
    }
    let clickhouse = single_node(config, format!("tally_{id}"));
    tally_common::clickhouse::migrate(&clickhouse)
        .await
        .map_err(|e| e.to_string())?;
    let common = common_env(config, id, &clickhouse.database);
    Ok((clickhouse, common))
}

/// Runs the suite and returns the JSON results.
pub async fn run(config: &BenchConfig) -> Result<Value, String> {
    let id = unique("bench");
    let topic = format!("{id}_events");
    let (clickhouse, common) = run_setup(config, &id, 4).await?;
    let gateway = Service::start(config, "ingest-gateway", "TALLY_GATEWAY_ADDR", &common).await?;
    let query = Service::start(config, "query-service", "TALLY_QUERY_ADDR", &common).await?;

    // B1: gateway vs plain producer.
    let b1_model = ModelConfig {
        seed: 5,
        run_id: format!("{id}-b1"),
        ..ModelConfig::default()
    };
    let b3_model = ModelConfig {
        seed: 6,
        run_id: format!("{id}-b3"),
        ..ModelConfig::default()
    };
    let probe_app = format!("{id}-probe");
    let probe_key = tally_common::postgres::provision(
        &config.postgres,
        &probe_app,
        tally_common::postgres::KeyKind::Write,
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!("B1: gateway, batches of 50, {} s", config.b1_seconds);
    let gateway_cpu = gateway.cpu_seconds().unwrap_or(0.0);
    let (b1, _) = send::run(SendConfig {
        gateway: gateway.url.clone(),
        rate: None,
        duration: Some(Duration::from_secs_f64(config.b1_seconds)),
        max_events: None,
        batch: 50,
        concurrency: 16,
        style: Style::Server,
        keys: send::provision_keys(&config.postgres, &b1_model).await?,
        model: b1_model,
        progress: false,
        stop: None,
    })
    .await;
    let gateway_cpu = gateway.cpu_seconds().unwrap_or(0.0) - gateway_cpu;
    eprintln!("B1: plain producer, {} messages", b1.acknowledged);
    let peer_produce =
        plain_produce(&config.brokers, &format!("{topic}_peer"), b1.acknowledged).await?;

    // B2: aggregator over the B1 backlog vs a plain consumer of the same topic.
    eprintln!("B2: plain consumer");
    let peer_consume = plain_consume(&config.brokers, &topic, b1.acknowledged).await?;
    eprintln!("B2: aggregator");
    let (aggregator, aggregator_rate, per_core) =
        process::aggregator_over(config, &common, b1.acknowledged as f64).await?;
    // B2r: the same backlog replayed (tally-admin replay) while the aggregator idles.
    eprintln!("B2r: replay of the B1 backlog");
    let b2r = replay::replay_rate(config, &common, b1.acknowledged).await?;
    // B2c: the same backlog by an aggregator on the local cluster.
    eprintln!("B2c: aggregator on the local cluster");
    let mut b2c = cluster::aggregator_rate(config, &common, &id, b1.acknowledged).await?;
    if let Some(rate) = b2c["events_per_sec"].as_f64() {
        b2c["ratio_to_single_node"] = json!(rate / aggregator_rate);
    }
    let capacity = if aggregator_rate > 0.0 {
        b1.events_per_sec.min(aggregator_rate)
    } else {
        b1.events_per_sec
    };

    // B3: freshness at 50 % of capacity.
    eprintln!("B3: freshness at {:.0} events/s", capacity * 0.5);
    let background = tokio::spawn(send::run(SendConfig {
        gateway: gateway.url.clone(),
        rate: Some(capacity * 0.5),
        duration: Some(Duration::from_secs_f64(config.b3_seconds)),
        max_events: None,
        batch: 20,
        concurrency: 64,
        style: Style::Browser,
        keys: send::provision_keys(&config.postgres, &b3_model).await?,
        model: b3_model,
        progress: false,
        stop: None,
    }));
    let client = clickhouse.client();
    let until = Instant::now() + Duration::from_secs_f64(config.b3_seconds);
    let hot_app = format!("{id}-b3-app-00");
    let read_keys =
        send::provision_read_keys(&config.postgres, [probe_app.as_str(), hot_app.as_str()]).await?;
    let fresh = freshness(
        (&gateway.url, &query.url),
        &client,
        &probe_app,
        (&probe_key, &read_keys[&probe_app]),
        until,
    )
    .await;
    let b3_load = background.await.map_err(|e| e.to_string())?.0;

    // B4: live reads of the hottest app of the B3 traffic (its last minute holds data).
    eprintln!("B4: /live at {} req/s", config.b4_rate);
    let (b4, b4_achieved) = live_reads(
        (&query.url, &read_keys[&hot_app]),
        &hot_app,
        config.b4_rate,
        config.b4_seconds,
    )
    .await;

    // B6: peak RSS after B1–B4.
    let rss: Vec<(&str, Option<u64>)> = [&gateway, &aggregator, &query]
        .iter()
        .map(|s| (s.name, s.peak_rss_kib()))
        .collect();
    // B1v: the same events through every API the gateway speaks.
    let vendor_app = format!("{id}-vendors");
    let vendor_key = tally_common::postgres::provision(
        &config.postgres,
        &vendor_app,
        tally_common::postgres::KeyKind::Write,
    )
    .await
    .map_err(|e| e.to_string())?;
    let vendor_domain = format!("{}.bench.example", id.replace('_', "-"));
    let pg = config.postgres.connect().await.map_err(|e| e.to_string())?;
    tally_common::domains::add(&pg, &vendor_app, &vendor_domain)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("B1v: intake per API, {} s each", config.b1v_seconds);
    let b1v = vendors::b1v(
        &gateway.url,
        (&id, &vendor_key, &vendor_domain),
        config.b1v_seconds,
        || gateway.cpu_seconds(),
    )
    .await;
    gateway.stop();
    aggregator.stop();
    query.stop();

    let mut results = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "b1": {"gateway_events_per_sec": b1.events_per_sec, "gateway_p50_ms": b1.p50_ms, "gateway_p99_ms": b1.p99_ms,
               "envelope_format": std::env::var("TALLY_ENVELOPE_FORMAT").unwrap_or_else(|_| "json".into()),
               "gateway_events_per_cpu_second": if gateway_cpu > 0.0 { b1.acknowledged as f64 / gateway_cpu } else { 0.0 },
               "events": b1.acknowledged, "failed_requests": b1.failed_requests,
               "plain_producer_events_per_sec": peer_produce, "ratio": b1.events_per_sec / peer_produce},
        "b2": {"aggregator_events_per_sec": aggregator_rate, "aggregator_events_per_cpu_second": per_core, "plain_consumer_events_per_sec": peer_consume,
               "ratio": aggregator_rate / peer_consume, "events": b1.acknowledged},
        "b2r": {"replay_events_per_sec": b2r.events_per_sec, "replay_events_per_cpu_second": b2r.per_core,
                "replay_wall_seconds": b2r.wall_seconds, "rates_cover_whole_run": b2r.whole_run, "ratio_to_aggregator": b2r.events_per_sec / aggregator_rate},
        "b2c": b2c,
        "b1v": b1v,
        "b3": {"load_events_per_sec": b3_load.events_per_sec, "probes": fresh.acked.len(), "measured_from": "send",
               "ack_p50_ms": ms(percentile(&fresh.acked, 0.5)), "ack_p99_ms": ms(percentile(&fresh.acked, 0.99)),
               "push_p50_ms": ms(percentile(&fresh.pushed, 0.5)), "push_p99_ms": ms(percentile(&fresh.pushed, 0.99)),
               "pushed_probes": fresh.pushed.len(),
               "live_p50_ms": ms(percentile(&fresh.polled, 0.5)), "live_p99_ms": ms(percentile(&fresh.polled, 0.99)),
               "clickhouse_p50_ms": ms(percentile(&fresh.stored, 0.5)), "clickhouse_p99_ms": ms(percentile(&fresh.stored, 0.99))},
        "b4": {"target_rate": config.b4_rate, "achieved_rate": b4_achieved, "requests": b4.len(),
               "p50_ms": ms(percentile(&b4, 0.5)), "p99_ms": ms(percentile(&b4, 0.99))},
        "b6": rss.iter().map(|(name, kib)| ((*name).to_owned(), json!(kib.map(|k| k as f64 / 1024.0)))).collect::<serde_json::Map<_, _>>(),
    });
    if config.intake_only {
        let _ = drop_database(&clickhouse, &clickhouse.database).await;
        return Ok(results);
    }

    // B5: historical dataset (kept between runs when the size matches).
    let (history, generated) = history_db(&clickhouse, config.b5_events).await?;
    let hist_client = history.client();
    let hot_rows: u64 = hist_client
        .query("SELECT count() FROM events WHERE app_id = ?")
        .bind("hist-app-00")
        .fetch_one()
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("B5: queries through the query service (answer cache off)");
    let mut history_env = common.clone();
    history_env.retain(|(name, _)| *name != "TALLY_CLICKHOUSE_DATABASE");
    history_env.push(("TALLY_CLICKHOUSE_DATABASE", history.database.clone()));
    history_env.push(("TALLY_QUERY_CACHE_SECS", "0".to_owned()));
    let timings = b5_timings(config, &history_env).await?;
    eprintln!("B5 pages: the page-views question from derived tables and from raw rows");
    let pages = b5::pages(config, &history, &history_env).await?;
    // B5c: the same dataset and queries on the local cluster.
    eprintln!("B5c: the same queries on the local cluster");
    let b5c = cluster::query_latency(config, &history_env).await?;
    eprintln!("B7: the dashboard's Overview in Chromium, cold and warm");
    let b7 = overview::b7(config, &history_env, "hist-app-00", config.b7_loads).await?;
    let _ = drop_database(&clickhouse, &clickhouse.database).await;
    eprintln!(
        "P8: incremental refresh against full rebuild on {} events",
        config.p8_events
    );
    let p8 = p8::run(&clickhouse, config.p8_events, &config.postgres).await?;

    let mut b5 = json!({"dataset": generated, "dataset_rows": config.b5_events, "hot_app_rows": hot_rows, "runs": config.b5_runs});
    if let (Some(b5), Value::Object(figures)) = (b5.as_object_mut(), b5_figures(&timings)) {
        b5.extend(figures);
        b5.insert("pages".into(), pages);
    }
    results["b5"] = b5;
    results["b5c"] = b5c;
    results["b7"] = b7;
    results["p8"] = p8;
    Ok(results)
}

/// B5's timings of one request: its latencies, or why it was not answered
/// (kept as a figure: a refusal at a dataset size is a result too).
pub type Timing = Result<Vec<Duration>, String>;

/// B5's three requests (group-by, funnel, strict funnel), `config.b5_runs`
/// times each, through a query service started with `env` (its dataset).
pub async fn b5_timings(
    config: &BenchConfig,
    env: &[(&str, String)],
) -> Result<[Timing; 3], String> {
    let query = Service::start(config, "query-service", "TALLY_QUERY_ADDR", env).await?;
    let key = send::provision_read_keys(&config.postgres, ["hist-app-00"]).await?;
    let mut timings = Vec::new();
    for (path, request) in [
        ("query", &*B5_QUERY),
        ("funnel", &*B5_FUNNEL_REQUEST),
        ("funnel", &*B5_STRICT_FUNNEL_REQUEST),
    ] {
        let url = format!("{}/api/v1/analytics/hist-app-00/{path}", query.url);
        let timing = time_post(&url, &key["hist-app-00"], request, config.b5_runs).await;
        if let Err(why) = &timing {
            eprintln!("B5 {path}: {why}");
        }
        timings.push(timing);
    }
    query.stop();
    <[Timing; 3]>::try_from(timings).map_err(|_| "B5: three timings".to_owned())
}

/// The B5 figures of `timings` (group-by, funnel, strict funnel); a request
/// that was not answered has `…_error` instead of its percentiles.
pub fn b5_figures(timings: &[Timing; 3]) -> Value {
    let mut out = serde_json::Map::new();
    for (name, timing) in ["group_by_90d", "funnel_30d", "strict_funnel_30d"]
        .into_iter()
        .zip(timings)
    {
        match timing {
            Ok(samples) => {
                out.insert(
                    format!("{name}_p50_ms"),
                    json!(ms(percentile(samples, 0.5))),
                );
                out.insert(
                    format!("{name}_p95_ms"),
                    json!(ms(percentile(samples, 0.95))),
                );
            }
            Err(why) => {
                out.insert(format!("{name}_error"), json!(why));
            }
        }
    }
    Value::Object(out)
}

/// The historical dataset of `events` rows (generated over 90 days, kept
/// between runs when the size matches): its config and what was done.
pub async fn history_db(
    clickhouse: &ClickHouseConfig,
    events: u64,
) -> Result<(ClickHouseConfig, String), String> {
    history_db_named(clickhouse, &format!("tally_bench_history_{events}"), events).await
}

/// [`history_db`] in `database` (a dataset elsewhere with the name of
/// another would share its refresher state: PostgreSQL keys it by name).
pub async fn history_db_named(
    clickhouse: &ClickHouseConfig,
    database: &str,
    events: u64,
) -> Result<(ClickHouseConfig, String), String> {
    let history = ClickHouseConfig {
        database: database.to_owned(),
        ..clickhouse.clone()
    };
    let existing: u64 = history
        .client()
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap_or_default();
    let generated = if existing == events {
        // A kept dataset gets the migrations added since it was generated.
        tally_common::clickhouse::migrate(&history)
            .await
            .map_err(|e| format!("migrating {}: {e}", history.database))?;
        format!("reused {existing} rows in {}", history.database)
    } else {
        let _ = drop_database(&history, &history.database).await;
        eprintln!("generating {events} historical events over 90 days");
        crate::history::generate(&crate::history::HistoryConfig {
            clickhouse: history.clone(),
            days: 90,
            events,
            seed: 7,
            app_prefix: "hist".into(),
        })
        .await
        .map_err(|e| e.to_string())?
        .to_string()
    };
    Ok((history, generated))
}

/// The run's own broker ([`broker`]) unless `TALLY_KAFKA_BROKERS` names
/// one or `--shared-broker` is given; `config.brokers` points at it.
async fn own_broker(
    config: &mut BenchConfig,
    args: &[String],
) -> Result<Option<broker::BenchBroker>, String> {
    if args.iter().any(|a| a == "--shared-broker")
        || std::env::var_os("TALLY_KAFKA_BROKERS").is_some()
    {
        eprintln!("broker: {} (shared)", config.brokers);
        return Ok(None);
    }
    let broker = broker::BenchBroker::start(&unique("run"))
        .await
        .map_err(|e| format!("the bench's own broker: {e} (or run with --shared-broker)"))?;
    eprintln!(
        "broker: the run's own tansu on {} (data in {}, removed at the end)",
        broker.brokers,
        broker.dir.display()
    );
    config.brokers.clone_from(&broker.brokers);
    Ok(Some(broker))
}

/// `tally-loadgen bench [--quick] [--out FILE] [--bin-dir DIR] [--history-events N] [--shared-broker]
/// [--compare | --compare-only]` (see [`compare`]); `--curves [--curve-rows
/// N,N,…] [--runs N]` or `--curves-queries` (the query curve again, the saved
/// intake curve kept) for the scaling curves ([`curves`]); `--curves-replot`
/// redraws the saved ones.
pub async fn main(args: &[String]) -> Result<bool, String> {
    let value = |name: &str| args.windows(2).find(|p| p[0] == name).map(|p| p[1].clone());
    let bin_dir = value("--bin-dir").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default()
    });
    let mut config = if args.iter().any(|a| a == "--quick") {
        BenchConfig::quick(bin_dir)
    } else {
        BenchConfig::full(bin_dir)
    };
    config.intake_only = args.iter().any(|a| a == "--intake-only");
    if let Some(out) = value("--out") {
        config.out = out.into();
    }
    if let Some(n) = value("--history-events") {
        config.b5_events = n.parse().map_err(|_| "--history-events: not a number")?;
    }
    if let Some(n) = value("--p8-events") {
        config.p8_events = n.parse().map_err(|_| "--p8-events: not a number")?;
    }
    if args.iter().any(|a| a == "--p8-only") {
        let clickhouse = ClickHouseConfig::from_env().map_err(|e| e.to_string())?;
        let p8 = p8::run(&clickhouse, config.p8_events, &config.postgres).await?;
        println!("{}", serde_json::to_string_pretty(&p8).unwrap_or_default());
        return Ok(true);
    }
    if args.iter().any(|a| a == "--curves-replot") {
        // Tables and plot again from the saved curves.json.
        let dir = config.out.parent().unwrap_or(Path::new("target/bench"));
        let results = compare::load(&dir.join("curves.json"))?;
        println!("{}", curves::table(&results));
        let png = curves::save(&results, dir).await?;
        println!("curves saved to {} (plot: {png})", dir.display());
        return Ok(true);
    }
    if args
        .iter()
        .any(|a| a == "--curves" || a == "--curves-queries")
    {
        let _broker = own_broker(&mut config, args).await?;
        let quick = args.iter().any(|a| a == "--quick");
        let rows: Vec<u64> = match value("--curve-rows") {
            Some(list) => list
                .split(',')
                .map(|n| n.trim().parse().map_err(|_| format!("--curve-rows: {n:?}")))
                .collect::<Result<_, _>>()?,
            None if quick => vec![20_000, 50_000],
            None => vec![10_000_000, 25_000_000, 50_000_000],
        };
        if let Some(n) = value("--runs") {
            config.b5_runs = n.parse().map_err(|_| "--runs: not a number")?;
        }
        let queries_only = args.iter().any(|a| a == "--curves-queries");
        let dir = config.out.parent().unwrap_or(Path::new("target/bench"));
        let mut results = curves::run(&config, &rows, queries_only, dir).await?;
        if queries_only {
            // The query curve again: the saved intake curve stays.
            if let Ok(saved) = compare::load(&dir.join("curves.json")) {
                results["intake"] = saved["intake"].clone();
            }
        }
        println!("{}", curves::table(&results));
        match curves::save(&results, dir).await {
            Ok(png) => println!("curves saved to {} (plot: {png})", dir.display()),
            Err(why) => println!("curves saved to {} ({why})", dir.display()),
        }
        return Ok(true);
    }
    if args.iter().any(|a| a == "--queries-only") {
        let results = queries(&config).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
        return Ok(true);
    }
    let previous = compare::previous_path(&config.out);
    if args.iter().any(|a| a == "--compare-only") {
        let (before, now) = (compare::load(&previous)?, compare::load(&config.out)?);
        println!("{}", compare::compare(&before, &now));
        return Ok(true);
    }
    let broker = own_broker(&mut config, args).await?;
    let results = run(&config).await?;
    drop(broker);
    println!("{}", table(&results));
    if let Some(parent) = config.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    compare::keep_previous(&config.out)?;
    if args.iter().any(|a| a == "--compare") {
        match compare::load(&previous) {
            Ok(before) => println!("{}", compare::compare(&before, &results)),
            Err(why) => println!("no previous run to compare with ({why})"),
        }
    }
    std::fs::write(
        &config.out,
        serde_json::to_vec_pretty(&results).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    println!("results saved to {}", config.out.display());
    Ok(true)
}
