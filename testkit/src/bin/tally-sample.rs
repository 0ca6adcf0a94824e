//! `tally-sample`: sends realistic traffic through the real HTTP API
//! ([`tally_testkit::sample`]: the load generator's model, 80 % of the events
//! spread over the past `--days` (14), the rest now), reports what the gateway
//! acknowledged (events/s, request latency), then reads the numbers back from
//! the query service.
//!
//! ```text
//! tally-sample [--gateway URL] [--query URL] [--app ID] [--events N] [--days N]
//!              [--batch N] [--concurrency N] [--users N] [--seed N] [--write-key KEY]
//!
//! Without `--write-key`, the app is created in PostgreSQL with a new write key.
//! ```

use serde_json::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tally_testkit::sample::{self, Plan, Sent};

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

async fn send(args: &Args, key: &str) -> Result<Sent, String> {
    let plan = Plan {
        gateway: args.gateway.clone(),
        app: args.app.clone(),
        write_key: key.to_owned(),
        events: args.events,
        days: args.days,
        visitors: args.users,
        seed: args.seed,
        concurrency: args.concurrency,
        batch: args.batch,
    };
    sample::send(&plan).await
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
