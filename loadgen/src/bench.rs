//! The benchmark suite: B1–B6 on the local stack, in one run, printed as a
//! markdown table and saved as JSON. Figures are printed, never asserted.
//!
//! The services run as child processes (the binaries next to `tally-loadgen`,
//! or `--bin-dir`), each on a free port, with their own topic, consumer group,
//! Redis prefix and ClickHouse database, so their peak RSS can be read.
//!
//! * B1 gateway: events/s accepted with batches of 50 vs the same messages
//!   produced straight to the broker by a plain rdkafka producer (same
//!   idempotent/acks=all settings).
//! * B2 aggregator: events/s consumed and written to Redis + ClickHouse vs a
//!   plain consumer reading the same topic (first to last message).
//! * B3 freshness at 50 % of the measured capacity: acknowledgement → visible
//!   in `/live`, and → queryable in ClickHouse (p50/p99 of probe events).
//! * B4 `/live` read latency (last minute = 12 windows of the hottest app) at a
//!   fixed request rate.
//! * B5 query latency on a generated historical dataset (written straight into
//!   ClickHouse): a 90-day group-by and a 30-day 3-step funnel, run as SQL
//!   against ClickHouse (the query service's ad-hoc and funnel endpoints come later).
//! * B6 peak RSS (VmHWM) of each service after B1–B4.

use crate::model::{Model, ModelConfig};
use crate::send::{self, SendConfig, Style};
use crate::stats::{ms, percentile};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::kafka::KafkaConfig;
use tally_common::{Clock, SystemClock};
use tally_schemas::Envelope;

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
    /// Where the JSON goes.
    pub out: PathBuf,
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
            b3_seconds: 20.0,
            b4_rate: 1_000.0,
            b4_seconds: 10.0,
            b5_events: 10_000_000,
            b5_runs: 20,
            out: PathBuf::from("target/bench/bench.json"),
        }
    }

    /// A smoke run (seconds, not minutes): proves the suite still works.
    pub fn quick(bin_dir: PathBuf) -> Self {
        BenchConfig {
            b1_seconds: 3.0,
            b3_seconds: 3.0,
            b4_rate: 200.0,
            b4_seconds: 2.0,
            b5_events: 200_000,
            b5_runs: 3,
            out: PathBuf::from("target/bench/bench-quick.json"),
            ..Self::full(bin_dir)
        }
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A service child process.
#[derive(Debug)]
struct Service {
    name: &'static str,
    child: Child,
    url: String,
}

impl Service {
    async fn start(
        config: &BenchConfig,
        name: &'static str,
        addr_var: &str,
        envs: &[(&str, String)],
    ) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut command = Command::new(config.bin_dir.join(name));
        command
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env("TALLY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", config.bin_dir.join(name).display()))?;
        let service = Service {
            name,
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", service.url)).await {
                if r.status().is_success() {
                    return Ok(service);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name} not ready"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peak resident set (KiB) from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn metric(url: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// B1 peer: the same messages produced by a plain rdkafka producer.
async fn plain_produce(brokers: &str, topic: &str, events: u64) -> Result<f64, String> {
    let kafka = KafkaConfig {
        brokers: brokers.into(),
        topic: topic.into(),
        dlq_topic: format!("{topic}_dlq"),
    };
    let producer: FutureProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .map_err(|e| e.to_string())?;
    let mut model = Model::new(&ModelConfig {
        seed: 99,
        run_id: "peer".into(),
        ..ModelConfig::default()
    });
    let now = SystemClock.now_ms();
    let mut payloads = Vec::with_capacity(events as usize);
    while (payloads.len() as u64) < events {
        let batch = model.next_server_batch(now, 50);
        for event in batch.events {
            let envelope = Envelope {
                event_id: event.event_id.clone(),
                app_id: batch.app_id.clone(),
                name: event.name.clone(),
                distinct_id: event.distinct_id().to_owned(),
                user_id: event.user_id,
                anonymous_id: event.anonymous_id,
                timestamp_ms: now,
                received_at_ms: now,
                sent_at_ms: None,
                ip: Some(batch.ip.clone()),
                user_agent: Some(batch.user_agent.to_owned()),
                properties: event.properties,
            };
            payloads.push((envelope.partition_key(), envelope.encode()));
        }
    }
    let started = Instant::now();
    for chunk in payloads.chunks(20_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for (key, payload) in chunk {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e.to_string())?,
            );
        }
        for delivery in futures::future::join_all(deliveries).await {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.to_string()),
                Err(_) => return Err("delivery dropped".into()),
            }
        }
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// B2 peer: a plain consumer reading `events` messages of `topic`; events/s first→last.
async fn plain_consume(brokers: &str, topic: &str, events: u64) -> Result<f64, String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", crate::bench::unique("bench_plain"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
        let (mut seen, mut first) = (0u64, None);
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen < events && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                let _ = message.payload().map(Envelope::decode);
                seen += 1;
            }
        }
        let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        Ok(seen as f64 / elapsed.max(1e-9))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A name made unique per run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", SystemClock.now_ms())
}

/// B3: sequential probes; each measures ack → visible in /live and → in ClickHouse.
async fn freshness(
    gateway: &str,
    query: &str,
    client: &clickhouse::Client,
    app: &str,
    until: Instant,
) -> (Vec<Duration>, Vec<Duration>) {
    let http = reqwest::Client::new();
    let (mut live, mut stored) = (Vec::new(), Vec::new());
    let mut sent = 0u64;
    while Instant::now() < until {
        let body = json!({"app_id": app, "events": [{"name": "probe", "user_id": "probe", "event_id": format!("{app}-{sent}")}]});
        let Ok(response) = http
            .post(format!("{gateway}/api/v1/events/batch"))
            .json(&body)
            .send()
            .await
        else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        let acked = Instant::now();
        sent += 1;
        let (mut live_at, mut stored_at) = (None, None);
        let give_up = acked + Duration::from_secs(30);
        while (live_at.is_none() || stored_at.is_none()) && Instant::now() < give_up {
            if live_at.is_none() {
                let answer: Option<Value> = match http
                    .get(format!("{query}/api/v1/analytics/{app}/live?windows=720"))
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                if answer
                    .and_then(|a| a["total_events"].as_u64())
                    .is_some_and(|n| n >= sent)
                {
                    live_at = Some(acked.elapsed());
                }
            }
            if stored_at.is_none() {
                let rows: u64 = client
                    .query("SELECT count() FROM events WHERE app_id = ?")
                    .bind(app)
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if rows >= sent {
                    stored_at = Some(acked.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        live.extend(live_at);
        stored.extend(stored_at);
    }
    (live, stored)
}

/// B4: `/live` at a fixed rate.
async fn live_reads(query: &str, app: &str, rate: f64, seconds: f64) -> (Vec<Duration>, f64) {
    let http = reqwest::Client::new();
    let total = (rate * seconds) as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let (http, url) = (
            http.clone(),
            format!("{query}/api/v1/analytics/{app}/live?windows=12"),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ok.then(|| t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(Some(latency)) = task.await {
            latencies.push(latency);
        }
    }
    let achieved = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (latencies, achieved)
}

/// B5: runs `sql` `runs` times; latencies.
async fn time_query(
    client: &clickhouse::Client,
    sql: &str,
    app: &str,
    runs: usize,
) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        client
            .query(sql)
            .bind(app)
            .fetch_bytes("TSV")
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        out.push(started.elapsed());
    }
    Ok(out)
}

/// B5 ad-hoc query: page views per page and device class over 90 days.
pub const B5_GROUP_BY: &str = "SELECT prop_values[indexOf(prop_keys, 'url')] AS url, \
     positionCaseInsensitive(user_agent, 'mobile') > 0 AS mobile, count() AS views, uniqCombined(distinct_id) AS users \
     FROM events WHERE app_id = ? AND event_date >= today() - 90 AND name = 'page_view' \
     GROUP BY url, mobile ORDER BY views DESC LIMIT 100";
/// B5 funnel: page_view → add_to_cart → purchase within 1 h, over 30 days.
pub const B5_FUNNEL: &str = "SELECT level, count() AS users FROM ( \
     SELECT distinct_id, windowFunnel(3600)(timestamp, name = 'page_view', name = 'add_to_cart', name = 'purchase') AS level \
     FROM events WHERE app_id = ? AND event_date >= today() - 30 GROUP BY distinct_id) GROUP BY level ORDER BY level";

/// Runs the suite and returns the JSON results.
pub async fn run(config: &BenchConfig) -> Result<Value, String> {
    let id = unique("bench");
    let topic = format!("{id}_events");
    tally_common::kafka::ensure_topic(&config.brokers, &topic, 4)
        .await
        .map_err(|e| e.to_string())?;
    tally_common::kafka::ensure_topic(&config.brokers, &format!("{topic}_peer"), 4)
        .await
        .map_err(|e| e.to_string())?;
    let clickhouse = ClickHouseConfig {
        url: config.clickhouse_url.clone(),
        database: format!("tally_{id}"),
        user: "default".into(),
        password: String::new(),
    };
    tally_common::clickhouse::migrate(&clickhouse)
        .await
        .map_err(|e| e.to_string())?;
    let common = vec![
        ("TALLY_KAFKA_BROKERS", config.brokers.clone()),
        ("TALLY_KAFKA_TOPIC", topic.clone()),
        ("TALLY_KAFKA_DLQ_TOPIC", format!("{topic}_dlq")),
        ("TALLY_REDIS_URL", config.redis_url.clone()),
        ("TALLY_REDIS_PREFIX", id.clone()),
        ("TALLY_CLICKHOUSE_URL", config.clickhouse_url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", clickhouse.database.clone()),
        ("TALLY_AGGREGATOR_GROUP", format!("{id}_group")),
    ];
    let gateway = Service::start(config, "ingest-gateway", "TALLY_GATEWAY_ADDR", &common).await?;
    let query = Service::start(config, "query-service", "TALLY_QUERY_ADDR", &common).await?;

    // B1: gateway vs plain producer.
    eprintln!("B1: gateway, batches of 50, {} s", config.b1_seconds);
    let (b1, _) = send::run(SendConfig {
        gateway: gateway.url.clone(),
        rate: None,
        duration: Some(Duration::from_secs_f64(config.b1_seconds)),
        max_events: None,
        batch: 50,
        concurrency: 16,
        style: Style::Server,
        model: ModelConfig {
            seed: 5,
            run_id: format!("{id}-b1"),
            ..ModelConfig::default()
        },
        progress: false,
    })
    .await;
    eprintln!("B1: plain producer, {} messages", b1.acknowledged);
    let peer_produce =
        plain_produce(&config.brokers, &format!("{topic}_peer"), b1.acknowledged).await?;

    // B2: aggregator over the B1 backlog vs a plain consumer of the same topic.
    eprintln!("B2: plain consumer");
    let peer_consume = plain_consume(&config.brokers, &topic, b1.acknowledged).await?;
    eprintln!("B2: aggregator");
    let aggregator = Service::start(
        config,
        "stream-aggregator",
        "TALLY_AGGREGATOR_ADDR",
        &common,
    )
    .await?;
    // Rate between the first and the last observation of the aggregator's counter
    // (group join and start-up are excluded; so is the first observed flush).
    let (mut first, mut last, deadline) = (None, 0.0, Instant::now() + Duration::from_secs(600));
    let target = b1.acknowledged as f64;
    while last < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = metric(&aggregator.url, "tally_aggregator_events_total").await;
        if last > 0.0 && first.is_none() {
            first = Some((Instant::now(), last));
        }
    }
    let aggregator_rate = match first {
        Some((at, seen)) if last > seen => (last - seen) / at.elapsed().as_secs_f64(),
        _ => 0.0,
    };
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
        model: ModelConfig {
            seed: 6,
            run_id: format!("{id}-b3"),
            ..ModelConfig::default()
        },
        progress: false,
    }));
    let client = clickhouse.client();
    let until = Instant::now() + Duration::from_secs_f64(config.b3_seconds);
    let (fresh_live, fresh_stored) = freshness(
        &gateway.url,
        &query.url,
        &client,
        &format!("{id}-probe"),
        until,
    )
    .await;
    let b3_load = background.await.map_err(|e| e.to_string())?.0;

    // B4: live reads of the hottest app of the B3 traffic (its last minute holds data).
    eprintln!("B4: /live at {} req/s", config.b4_rate);
    let hot_app = format!("{id}-b3-app-00");
    let (b4, b4_achieved) =
        live_reads(&query.url, &hot_app, config.b4_rate, config.b4_seconds).await;

    // B6: peak RSS after B1–B4.
    let rss: Vec<(&str, Option<u64>)> = [&gateway, &aggregator, &query]
        .iter()
        .map(|s| (s.name, s.peak_rss_kib()))
        .collect();
    gateway.stop();
    aggregator.stop();
    query.stop();

    // B5: historical dataset (kept between runs when the size matches).
    let history = ClickHouseConfig {
        database: format!("tally_bench_history_{}", config.b5_events),
        ..clickhouse.clone()
    };
    let hist_client = history.client();
    let existing: u64 = hist_client
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap_or_default();
    let generated = if existing == config.b5_events {
        format!("reused {existing} rows in {}", history.database)
    } else {
        let _ = history
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {}", history.database))
            .execute()
            .await;
        eprintln!("B5: generating {} events over 90 days", config.b5_events);
        crate::history::generate(&crate::history::HistoryConfig {
            clickhouse: history.clone(),
            days: 90,
            events: config.b5_events,
            seed: 7,
            app_prefix: "hist".into(),
        })
        .await
        .map_err(|e| e.to_string())?
        .to_string()
    };
    let hot_rows: u64 = hist_client
        .query("SELECT count() FROM events WHERE app_id = ?")
        .bind("hist-app-00")
        .fetch_one()
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("B5: queries");
    let group_by = time_query(&hist_client, B5_GROUP_BY, "hist-app-00", config.b5_runs).await?;
    let funnel = time_query(&hist_client, B5_FUNNEL, "hist-app-00", config.b5_runs).await?;
    let _ = clickhouse
        .server_client()
        .query(&format!("DROP DATABASE IF EXISTS {}", clickhouse.database))
        .execute()
        .await;

    Ok(json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "b1": {"gateway_events_per_sec": b1.events_per_sec, "gateway_p50_ms": b1.p50_ms, "gateway_p99_ms": b1.p99_ms,
               "events": b1.acknowledged, "failed_requests": b1.failed_requests,
               "plain_producer_events_per_sec": peer_produce, "ratio": b1.events_per_sec / peer_produce},
        "b2": {"aggregator_events_per_sec": aggregator_rate, "plain_consumer_events_per_sec": peer_consume,
               "ratio": aggregator_rate / peer_consume, "events": b1.acknowledged},
        "b3": {"load_events_per_sec": b3_load.events_per_sec, "probes": fresh_live.len(),
               "live_p50_ms": ms(percentile(&fresh_live, 0.5)), "live_p99_ms": ms(percentile(&fresh_live, 0.99)),
               "clickhouse_p50_ms": ms(percentile(&fresh_stored, 0.5)), "clickhouse_p99_ms": ms(percentile(&fresh_stored, 0.99))},
        "b4": {"target_rate": config.b4_rate, "achieved_rate": b4_achieved, "requests": b4.len(),
               "p50_ms": ms(percentile(&b4, 0.5)), "p99_ms": ms(percentile(&b4, 0.99))},
        "b5": {"dataset": generated, "dataset_rows": config.b5_events, "hot_app_rows": hot_rows, "runs": config.b5_runs,
               "group_by_90d_p50_ms": ms(percentile(&group_by, 0.5)), "group_by_90d_p95_ms": ms(percentile(&group_by, 0.95)),
               "funnel_30d_p50_ms": ms(percentile(&funnel, 0.5)), "funnel_30d_p95_ms": ms(percentile(&funnel, 0.95))},
        "b6": rss.iter().map(|(name, kib)| ((*name).to_owned(), json!(kib.map(|k| k as f64 / 1024.0)))).collect::<serde_json::Map<_, _>>(),
    }))
}

/// The results as a markdown table.
pub fn table(results: &Value) -> String {
    let f = |v: &Value| {
        v.as_f64().map_or("-".into(), |x| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        })
    };
    let (b1, b2, b3, b4, b5, b6) = (
        &results["b1"],
        &results["b2"],
        &results["b3"],
        &results["b4"],
        &results["b5"],
        &results["b6"],
    );
    let mut out =
        String::from("| bench | figure | Tally | peer | ratio |\n|---|---|---|---|---|\n");
    out += &format!("| B1 gateway | events/s accepted, batches of 50 (p50 {} / p99 {} ms) | {} | {} (plain rdkafka producer) | {} |\n",
        f(&b1["gateway_p50_ms"]), f(&b1["gateway_p99_ms"]), f(&b1["gateway_events_per_sec"]), f(&b1["plain_producer_events_per_sec"]), f(&b1["ratio"]));
    out += &format!("| B2 aggregator | events/s into Redis + ClickHouse ({} events) | {} | {} (plain consumer) | {} |\n",
        b2["events"], f(&b2["aggregator_events_per_sec"]), f(&b2["plain_consumer_events_per_sec"]), f(&b2["ratio"]));
    out += &format!(
        "| B3 freshness | ack → /live, p50 / p99 ms ({} probes at {} events/s) | {} / {} | | |\n",
        b3["probes"],
        f(&b3["load_events_per_sec"]),
        f(&b3["live_p50_ms"]),
        f(&b3["live_p99_ms"])
    );
    out += &format!(
        "| B3 freshness | ack → ClickHouse row, p50 / p99 ms | {} / {} | | |\n",
        f(&b3["clickhouse_p50_ms"]),
        f(&b3["clickhouse_p99_ms"])
    );
    out += &format!(
        "| B4 live reads | /live p50 / p99 ms at {} req/s (achieved {}) | {} / {} | | |\n",
        f(&b4["target_rate"]),
        f(&b4["achieved_rate"]),
        f(&b4["p50_ms"]),
        f(&b4["p99_ms"])
    );
    out += &format!(
        "| B5 ad-hoc | 90-day group-by, p50 / p95 ms ({} rows, hot app {}) | {} / {} | | |\n",
        b5["dataset_rows"],
        b5["hot_app_rows"],
        f(&b5["group_by_90d_p50_ms"]),
        f(&b5["group_by_90d_p95_ms"])
    );
    out += &format!(
        "| B5 funnel | 30-day 3-step funnel, p50 / p95 ms | {} / {} | | |\n",
        f(&b5["funnel_30d_p50_ms"]),
        f(&b5["funnel_30d_p95_ms"])
    );
    for name in ["ingest-gateway", "stream-aggregator", "query-service"] {
        out += &format!("| B6 peak RSS | {name}, MiB | {} | | |\n", f(&b6[name]));
    }
    out
}

/// `tally-loadgen bench [--quick] [--out FILE] [--bin-dir DIR] [--history-events N]`.
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
    if let Some(out) = value("--out") {
        config.out = out.into();
    }
    if let Some(n) = value("--history-events") {
        config.b5_events = n.parse().map_err(|_| "--history-events: not a number")?;
    }
    let results = run(&config).await?;
    println!("{}", table(&results));
    if let Some(parent) = config.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        &config.out,
        serde_json::to_vec_pretty(&results).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    println!("results saved to {}", config.out.display());
    Ok(true)
}
