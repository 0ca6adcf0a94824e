//! `tally-loadgen`: traffic, ground truth and benchmarks.
//!
//! ```text
//! tally-loadgen run     [--gateway URL] [--rate EPS | --max] [--duration S] [--events N]
//!                       [--batch N] [--concurrency N] [--style browser|server] [--seed N]
//!                       [--apps N] [--visitors N] [--run-id ID] [--record FILE] [--json FILE]
//!                       [--postgres URL]   (apps and write keys are created there first)
//! tally-loadgen check   --record FILE [--query URL] [--clickhouse URL] [--database DB] [--lateness-ms MS]
//!                       [--postgres URL]   (a read key per app is created there)
//! tally-loadgen history [--clickhouse URL] [--database DB] [--days N] [--events N] [--seed N] [--app-prefix P]
//! tally-loadgen bench   [--quick] [--intake-only | --queries-only | --p8-only] [--compare | --compare-only] [--out FILE.json] (see `bench` module docs)
//! ```
//! Exit status: 0 on success; 1 when `check` finds a lost, duplicated or
//! miscounted event, or any command fails; 2 for bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::postgres::PostgresConfig;
use tally_loadgen::check::{self, CheckConfig};
use tally_loadgen::model::ModelConfig;
use tally_loadgen::send::{self, SendConfig, Style};
use tally_loadgen::{bench, history, record};

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<String> {
        self.0
            .windows(2)
            .find(|p| p[0] == name)
            .map(|p| p[1].clone())
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        self.value(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        })
    }
    fn postgres(&self) -> Result<PostgresConfig, String> {
        let mut config = PostgresConfig::from_env().map_err(|e| e.to_string())?;
        if let Some(url) = self.value("--postgres") {
            config.url = url;
        }
        Ok(config)
    }
    fn clickhouse(&self) -> Result<ClickHouseConfig, String> {
        let mut config = ClickHouseConfig::from_env().map_err(|e| e.to_string())?;
        if let Some(url) = self.value("--clickhouse") {
            config.url = url;
        }
        if let Some(database) = self.value("--database") {
            config.database = database;
        }
        Ok(config)
    }
}

async fn run_command(args: &Args) -> Result<bool, String> {
    let seed = args.number("--seed", 1u64)?;
    let config = SendConfig {
        gateway: args
            .value("--gateway")
            .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        rate: if args.flag("--max") {
            None
        } else {
            Some(args.number("--rate", 1_000.0)?)
        },
        duration: Some(Duration::from_secs_f64(args.number("--duration", 10.0)?)),
        max_events: args
            .value("--events")
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| "--events: not a number")?,
        batch: args.number("--batch", 20usize)?.clamp(1, 500),
        concurrency: args.number("--concurrency", 8usize)?.max(1),
        style: match args.value("--style").as_deref() {
            None | Some("browser") => Style::Browser,
            Some("server") => Style::Server,
            Some(other) => return Err(format!("--style: browser or server, not {other}")),
        },
        model: ModelConfig {
            seed,
            run_id: args
                .value("--run-id")
                .unwrap_or_else(|| format!("lg{seed}")),
            apps: args.number("--apps", 20usize)?,
            visitors: args.number("--visitors", 20_000usize)?,
            ..ModelConfig::default()
        },
        progress: true,
        keys: Default::default(),
        stop: None,
    };
    let mut config = config;
    let postgres = args.postgres()?;
    config.keys = send::provision_keys(&postgres, &config.model).await?;
    let (summary, records) = send::run(config).await;
    println!(
        "acknowledged {} events ({} rejected, {} failed requests) in {:.1} s: {:.0} events/s, request p50 {:.1} ms p99 {:.1} ms",
        summary.acknowledged, summary.rejected, summary.failed_requests, summary.seconds,
        summary.events_per_sec, summary.p50_ms, summary.p99_ms
    );
    let path = PathBuf::from(
        args.value("--record")
            .unwrap_or_else(|| "loadgen-record.tsv".into()),
    );
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    record::write_all(&mut file, &records).map_err(|e| e.to_string())?;
    println!("record of acknowledged events: {}", path.display());
    if let Some(json) = args.value("--json") {
        std::fs::write(
            &json,
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(true)
}

async fn check_command(args: &Args) -> Result<bool, String> {
    let path = PathBuf::from(args.value("--record").ok_or("--record FILE is required")?);
    let records = record::read(&path).map_err(|e| e.to_string())?;
    let clickhouse = args.clickhouse()?;
    let query = args
        .value("--query")
        .unwrap_or_else(|| "http://127.0.0.1:8081".into());
    let max_live_windows = args.number("--max-live-windows", CheckConfig::MAX_LIVE_WINDOWS)?;
    let lateness_ms = args.number("--lateness-ms", CheckConfig::ALLOWED_LATENESS_MS)?;
    let config = CheckConfig::for_records(clickhouse, &query, &args.postgres()?, &records)
        .await?
        .max_live_windows(max_live_windows)
        .allowed_lateness_ms(lateness_ms);
    let report = check::check(&records, &config)
        .await
        .map_err(|e| e.to_string())?;
    check::print(&report);
    Ok(report.ok)
}

async fn history_command(args: &Args) -> Result<bool, String> {
    let config = history::HistoryConfig {
        clickhouse: args.clickhouse()?,
        days: args.number("--days", 90u32)?,
        events: args.number("--events", 1_000_000u64)?,
        seed: args.number("--seed", 7u64)?,
        app_prefix: args.value("--app-prefix").unwrap_or_else(|| "hist".into()),
    };
    let summary = history::generate(&config)
        .await
        .map_err(|e| e.to_string())?;
    println!("{summary}");
    Ok(true)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args(std::env::args().skip(1).collect());
    let result = match args.0.first().map(String::as_str) {
        Some("run") => run_command(&args).await,
        Some("check") => check_command(&args).await,
        Some("history") => history_command(&args).await,
        Some("bench") => bench::main(&args.0[1..]).await,
        _ => {
            eprintln!("usage: tally-loadgen run|check|history|bench [options]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("tally-loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}
