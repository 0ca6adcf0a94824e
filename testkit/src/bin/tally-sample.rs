//! `tally-sample`: sends realistic traffic through the real HTTP API — the
//! load generator's model (`tally_loadgen::model`: visitors who return,
//! sessions of pages with referrers and UTM tags, browsers, devices and bots
//! by user agent, countries by client address, the page_view → add_to_cart →
//! purchase funnel): 80 % of the events spread over the past `--days` (14),
//! the rest over the last 10 minutes — reports what the gateway acknowledged
//! (events/s, request latency), then reads the numbers back from the query
//! service.
//!
//! ```text
//! tally-sample [--gateway URL] [--query URL] [--app ID] [--events N] [--days N]
//!              [--batch N] [--concurrency N] [--users N] [--seed N] [--write-key KEY]
//!
//! Without `--write-key`, the app is created in PostgreSQL with a new write key.
//! ```

use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_loadgen::model::{Model, ModelConfig};

#[derive(Debug, Clone)]
struct Args {
    gateway: String,
    query: String,
    app: String,
    events: usize,
    batch: usize,
    concurrency: usize,
    users: usize,
    seed: u64,
    days: usize,
    write_key: Option<String>,
}

fn parse() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| -> Option<String> {
        raw.windows(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
    };
    let number = |name: &str, default: usize| -> Result<usize, String> {
        get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("{name} takes a number"))
        })
    };
    Ok(Args {
        gateway: get("--gateway").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        query: get("--query").unwrap_or_else(|| "http://127.0.0.1:8081".into()),
        app: get("--app").unwrap_or_else(|| "demo".into()),
        events: number("--events", 5_000)?,
        batch: number("--batch", 50)?.clamp(1, 500),
        concurrency: number("--concurrency", 4)?.max(1),
        users: number("--users", 500)?.max(1),
        seed: number("--seed", 42)? as u64,
        days: number("--days", 14)?.min(365),
        write_key: get("--write-key"),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The time of events sent when `done` of `total` are out: the first 80 %
/// spread over the past `days` (returning visitors, a history for day and
/// week charts), the rest now (live numbers). `None`: now.
fn simulated_ms(done: usize, total: usize, days: usize, now_ms: i64) -> Option<i64> {
    let history = i64::try_from(days).ok()?.checked_mul(86_400_000)?;
    let cut = total * 4 / 5;
    if history == 0 || done >= cut {
        return None;
    }
    let (done, cut) = (done as i64, cut.max(1) as i64);
    // Up to 10 minutes ago: older than the live windows' lateness.
    Some(now_ms - 600_000 - history + history * done / cut)
}

/// (acknowledged, refused, acknowledged live-countable, time, request latencies)
type Sent = (usize, usize, usize, Duration, Vec<Duration>);

async fn send(args: &Args, key: &str) -> Result<Sent, String> {
    let http = reqwest::Client::new();
    // Visitors, sessions, pages, referrers and UTM, browsers and bots, countries
    // (by client address) and the page_view → add_to_cart → purchase funnel:
    // the load generator's traffic model, one app.
    let now = tally_testkit::now_ms();
    let model = Model::new(&ModelConfig {
        seed: args.seed,
        run_id: format!("sample-{now}"),
        apps: 1,
        visitors: args.users,
        concurrent_sessions: (args.users / 10).max(1),
        mean_think_ms: 20_000.0,
    });
    let model = Arc::new(tokio::sync::Mutex::new(model));
    let sent_events = Arc::new(AtomicUsize::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, args, key) = (http.clone(), args.clone(), key.to_owned());
        let (model, sent_events, live) = (model.clone(), sent_events.clone(), live.clone());
        workers.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut latencies) = (0usize, 0usize, Vec::new());
            loop {
                let (at, batch) = {
                    let mut model = model.lock().await;
                    let done = sent_events.load(Ordering::SeqCst);
                    if done >= args.events {
                        break;
                    }
                    let at = simulated_ms(done, args.events, args.days, now);
                    let at = at.unwrap_or_else(tally_testkit::now_ms);
                    let mut batch = model.next_batch(at, args.batch.min(8));
                    batch.events.truncate(args.events - done);
                    sent_events.fetch_add(batch.events.len(), Ordering::SeqCst);
                    (at, batch)
                };
                let events: Vec<Value> = batch
                    .events
                    .iter()
                    .enumerate()
                    .map(|(k, e)| {
                        json!({"event_id": e.event_id, "name": e.name, "user_id": e.user_id,
                               "anonymous_id": e.anonymous_id, "timestamp": at + k as i64 * 1_500,
                               "properties": e.properties})
                    })
                    .collect();
                let size = events.len();
                let body = json!({"app_id": args.app, "events": events});
                let sent = Instant::now();
                let response = http
                    .post(format!("{}/api/v1/events/batch", args.gateway))
                    .basic_auth(&key, Some(""))
                    .header("user-agent", batch.user_agent)
                    .header("x-forwarded-for", &batch.ip)
                    .json(&body)
                    .send()
                    .await;
                latencies.push(sent.elapsed());
                match response {
                    Ok(r) if r.status().is_success() => {
                        let answer: Value = r.json().await.unwrap_or(Value::Null);
                        let accepted = answer["accepted"].as_u64().unwrap_or(0) as usize;
                        acked += accepted;
                        // Live numbers leave bots out.
                        if at >= now && !batch.bot {
                            live.fetch_add(accepted, Ordering::SeqCst);
                        }
                        refused += answer["rejected"].as_u64().unwrap_or(0) as usize;
                    }
                    Ok(r) => {
                        refused += size;
                        eprintln!("batch refused: HTTP {}", r.status());
                    }
                    Err(err) => return Err(format!("gateway unreachable: {err}")),
                }
            }
            Ok((acked, refused, latencies))
        }));
    }
    let (mut acked, mut refused, mut latencies) = (0, 0, Vec::new());
    for worker in workers {
        let (a, r, l) = worker.await.map_err(|e| e.to_string())??;
        acked += a;
        refused += r;
        latencies.extend(l);
    }
    latencies.sort();
    let live = live.load(Ordering::SeqCst);
    Ok((acked, refused, live, started.elapsed(), latencies))
}

async fn run(args: Args) -> Result<(), String> {
    println!(
        "sending {} events for app {:?} in batches of {} ({} concurrent requests) to {}",
        args.events, args.app, args.batch, args.concurrency, args.gateway
    );
    let key = match &args.write_key {
        Some(key) => key.clone(),
        None => {
            let postgres =
                tally_common::postgres::PostgresConfig::from_env().map_err(|e| e.to_string())?;
            tally_common::postgres::provision(
                &postgres,
                &args.app,
                tally_common::postgres::KeyKind::Write,
            )
            .await
            .map_err(|e| {
                format!(
                    "creating a write key for {} in {}: {e}",
                    args.app, postgres.url
                )
            })?
        }
    };
    println!("write key for app {:?}: {key}", args.app);
    let postgres = tally_common::postgres::PostgresConfig::from_env().map_err(|e| e.to_string())?;
    let read_key = tally_common::postgres::provision(
        &postgres,
        &args.app,
        tally_common::postgres::KeyKind::Read,
    )
    .await
    .map_err(|e| format!("creating a read key for {}: {e}", args.app))?;
    println!(
        "read key for app {:?} (secret; Authorization: Bearer …): {read_key}",
        args.app
    );
    let (acked, refused, live_sent, elapsed, latencies) = send(&args, &key).await?;
    println!(
        "acknowledged {acked} events, refused {refused}, in {:.2} s = {:.0} events/s; request latency p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );

    let http = reqwest::Client::new();
    let live_url = format!(
        "{}/api/v1/analytics/{}/live?windows=120",
        args.query, args.app
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let answer: Value = http
            .get(&live_url)
            .bearer_auth(&read_key)
            .send()
            .await
            .map_err(|e| format!("query service unreachable: {e}"))?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let total = answer["total_events"].as_u64().unwrap_or(0) as usize;
        // Only the events sent now are live (the history is older than the
        // windows' lateness and goes to ClickHouse only).
        if total >= live_sent || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("\nlive numbers (last 10 minutes, 5-second windows) from {live_url}:");
    println!("  events        {}", live["total_events"]);
    println!("  unique users  {}", live["unique_users"]);
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    for window in live["windows"].as_array().into_iter().flatten() {
        for (name, n) in window["by_name"].as_object().into_iter().flatten() {
            *by_name.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    for (name, n) in by_name {
        println!("  {name:<13} {n}");
    }
    let since = tally_testkit::now_ms() - (args.days as i64 + 1) * 86_400_000;
    let count_url = format!(
        "{}/api/v1/analytics/{}/count?from={since}",
        args.query, args.app
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer: Value = http
            .get(&count_url)
            .bearer_auth(&read_key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let count = answer["count"].as_u64().unwrap_or(0) as usize;
        if count >= acked || Instant::now() > deadline {
            println!(
                "  ClickHouse count, last {} days: {count} (from {count_url})",
                args.days + 1
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse() {
        Ok(args) => run(args).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tally-sample: {err}");
            ExitCode::FAILURE
        }
    }
}
