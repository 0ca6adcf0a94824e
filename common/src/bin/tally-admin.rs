//! `tally-admin`: operator tasks.
//!
//! ```text
//! tally-admin migrate [--url URL] [--database DB]      apply ClickHouse migrations
//! tally-admin topics  [--brokers B] --require T:N ...  create topics T with N partitions
//!                                                      (if missing) and check them
//! ```
//! Defaults come from the same `TALLY_…` variables the services read.

use std::process::ExitCode;
use tally_common::clickhouse::{migrate, ClickHouseConfig};
use tally_common::kafka::{ensure_topic, partition_count, KafkaConfig};

fn flag(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
        .collect()
}

async fn run(args: Vec<String>) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("migrate") => {
            let mut config = ClickHouseConfig::from_env().map_err(|e| e.to_string())?;
            if let Some(url) = flag(&args, "--url").pop() {
                config.url = url;
            }
            if let Some(database) = flag(&args, "--database").pop() {
                config.database = database;
            }
            let applied = migrate(&config).await.map_err(|e| e.to_string())?;
            println!(
                "clickhouse {} database {}: {} migration(s) applied",
                config.url,
                config.database,
                applied.len()
            );
            Ok(())
        }
        Some("topics") => {
            let mut brokers = KafkaConfig::from_env().map_err(|e| e.to_string())?.brokers;
            if let Some(value) = flag(&args, "--brokers").pop() {
                brokers = value;
            }
            for spec in flag(&args, "--require") {
                let (topic, partitions) = spec
                    .split_once(':')
                    .and_then(|(t, n)| Some((t.to_owned(), n.parse::<i32>().ok()?)))
                    .ok_or_else(|| format!("--require takes TOPIC:PARTITIONS, got {spec:?}"))?;
                ensure_topic(&brokers, &topic, partitions)
                    .await
                    .map_err(|e| e.to_string())?;
                let found = partition_count(&brokers, &topic)
                    .await
                    .map_err(|e| e.to_string())?;
                if found < usize::try_from(partitions).unwrap_or(0) {
                    return Err(format!(
                        "topic {topic} has {found} partition(s), {partitions} required"
                    ));
                }
                println!("topic {topic}: {found} partition(s)");
            }
            Ok(())
        }
        _ => Err("usage: tally-admin migrate|topics [options]".into()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tally-admin: {err}");
            ExitCode::FAILURE
        }
    }
}
