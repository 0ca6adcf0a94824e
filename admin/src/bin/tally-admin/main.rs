//! `tally-admin`: operator tasks.
//!
//! ```text
//! tally-admin migrate [--url URL] [--database DB] [--cluster NAME]
//!                                                      apply ClickHouse and PostgreSQL migrations
//!                                                      (on a cluster: its layout, docs/CLUSTER.md)
//! tally-admin apps create APP_ID [--name NAME] [--time-zone TZ]
//!                                                      create an app with a write and a read key
//! tally-admin apps time-zone APP_ID TZ                 set the app's time zone (IANA name)
//! tally-admin apps retention APP_ID [DAYS|default]     show or set the app's retention override
//! tally-admin apps domains APP_ID [add|remove DOMAIN…] list, allow or remove the site domains
//!                                                      whose Plausible events go to the app
//! tally-admin keys create --app APP_ID --kind write|read
//! tally-admin keys revoke KEY_PREFIX                   revoke by the first 8 characters
//! tally-admin users create|grant|revoke|list …       dashboard users (see users.rs)
//! tally-admin topics  [--brokers B] [--retention-days D] --require T:N ...
//!                                                     create topics T with N partitions, keeping
//!                                                     messages D days (TALLY_KAFKA_RETENTION_DAYS, 30)
//! tally-admin refresh [--full] [--database DB]        ask the report refresher for a full
//!                                                     rebuild; list its last runs and drift
//!                                                      (if missing) and check them
//! tally-admin storage|retention …                     storage per table; drop raw partitions
//!                                                     past the retention (see lifecycle.rs)
//! tally-admin replay start|status|compare|switch|rollback|drop …
//!                                                     replays of the events topic (replay.rs)
//! ```
//! Defaults come from the same `TALLY_…` variables the services read.

mod lifecycle;
mod replay;
mod users;

use std::process::ExitCode;
use tally_common::clickhouse::{migrate, ClickHouseConfig};
use tally_common::kafka::{ensure_topic_with, partition_count, KafkaConfig};
use tally_common::postgres::{self, KeyKind, PostgresConfig};

fn flag(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
        .collect()
}

/// Refuses a time zone the query service would refuse.
fn check_time_zone(zone: &str) -> Result<(), String> {
    if tally_schemas::time_zone::valid_time_zone(zone) {
        Ok(())
    } else {
        Err(format!(
            "time zone {zone:?}: an IANA name such as Europe/Berlin or UTC"
        ))
    }
}

async fn pg() -> Result<tokio_postgres::Client, String> {
    let config = PostgresConfig::from_env().map_err(|e| e.to_string())?;
    config
        .connect()
        .await
        .map_err(|e| format!("postgresql {}: {e}", config.url))
}

/// `apps domains APP_ID [add|remove DOMAIN…]`, then the app's domains.
async fn app_domains(
    client: &tokio_postgres::Client,
    app_id: &str,
    rest: &[String],
) -> Result<(), String> {
    use tally_common::domains;
    match rest.split_first() {
        None => {}
        Some((action, names)) if action == "add" && !names.is_empty() => {
            for name in names {
                let stored = domains::add(client, app_id, name)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("app {app_id}: allows {stored}");
            }
        }
        Some((action, names)) if action == "remove" && !names.is_empty() => {
            for name in names {
                let removed = domains::remove(client, app_id, name)
                    .await
                    .map_err(|e| e.to_string())?;
                let verb = if removed { "removed" } else { "did not have" };
                println!("app {app_id}: {verb} {name}");
            }
        }
        Some(_) => return Err("apps domains APP_ID [add|remove DOMAIN…]".into()),
    }
    let list = domains::list(client, app_id)
        .await
        .map_err(|e| format!("postgresql: {e}"))?;
    println!("app {app_id} domains: {}", list.join(" "));
    Ok(())
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
            if let Some(cluster) = flag(&args, "--cluster").pop() {
                config.cluster = Some(cluster).filter(|c| !c.is_empty());
            }
            let applied = migrate(&config).await.map_err(|e| e.to_string())?;
            println!(
                "clickhouse {} database {}{}: {} migration(s) applied",
                config.url,
                config.database,
                config
                    .cluster
                    .as_deref()
                    .map(|c| format!(" on cluster {c}"))
                    .unwrap_or_default(),
                applied.len()
            );
            let client = pg().await?;
            let applied = postgres::migrate(&client)
                .await
                .map_err(|e| e.to_string())?;
            println!("postgresql: {} migration(s) applied", applied.len());
            Ok(())
        }
        Some("apps") if args.get(1).map(String::as_str) == Some("time-zone") => {
            let (Some(app_id), Some(zone)) = (args.get(2), args.get(3)) else {
                return Err("apps time-zone APP_ID TZ".into());
            };
            check_time_zone(zone)?;
            let client = pg().await?;
            postgres::migrate(&client)
                .await
                .map_err(|e| e.to_string())?;
            if !postgres::set_time_zone(&client, app_id, zone)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no app {app_id}"));
            }
            println!("app {app_id}: time zone {zone}");
            Ok(())
        }
        Some("apps") if args.get(1).map(String::as_str) == Some("retention") => {
            let client = pg().await?;
            postgres::migrate(&client)
                .await
                .map_err(|e| format!("postgresql: {e}"))?;
            lifecycle::app_retention(&client, &args[2..]).await
        }
        Some("apps") if args.get(1).map(String::as_str) == Some("domains") => {
            let app_id = args.get(2).ok_or("apps domains APP_ID [add|remove DOMAIN…]")?;
            let client = pg().await?;
            postgres::migrate(&client)
                .await
                .map_err(|e| format!("postgresql: {e}"))?;
            app_domains(&client, app_id, &args[3..]).await
        }
        Some("apps") if args.get(1).map(String::as_str) == Some("create") => {
            let app_id = args.get(2).ok_or("apps create APP_ID")?;
            if !tally_schemas::ids::valid_app_id(app_id) {
                return Err(format!(
                    "app id {app_id:?}: 1 to 64 characters of A-Z a-z 0-9 _ - (as the API accepts)"
                ));
            }
            let name = flag(&args, "--name")
                .pop()
                .unwrap_or_else(|| app_id.clone());
            let zone = flag(&args, "--time-zone").pop();
            if let Some(zone) = &zone {
                check_time_zone(zone)?;
            }
            let client = pg().await?;
            postgres::migrate(&client)
                .await
                .map_err(|e| e.to_string())?;
            if !postgres::create_app(&client, app_id, &name)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("app {app_id} already exists"));
            }
            if let Some(zone) = &zone {
                postgres::set_time_zone(&client, app_id, zone)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let write = postgres::create_key(&client, app_id, KeyKind::Write)
                .await
                .map_err(|e| e.to_string())?;
            let read = postgres::create_key(&client, app_id, KeyKind::Read)
                .await
                .map_err(|e| e.to_string())?;
            println!("app {app_id}\nwrite key (public, ingest only): {write}\nread key (secret, query only): {read}");
            Ok(())
        }
        Some("keys") if args.get(1).map(String::as_str) == Some("create") => {
            let app_id = flag(&args, "--app")
                .pop()
                .ok_or("keys create --app APP_ID --kind write|read")?;
            let kind = match flag(&args, "--kind").pop().as_deref() {
                Some("write") => KeyKind::Write,
                Some("read") => KeyKind::Read,
                _ => return Err("--kind write|read".into()),
            };
            let client = pg().await?;
            let key = postgres::create_key(&client, &app_id, kind)
                .await
                .map_err(|e| e.to_string())?;
            println!("{key}");
            Ok(())
        }
        Some("keys") if args.get(1).map(String::as_str) == Some("revoke") => {
            let prefix = args.get(2).ok_or("keys revoke KEY_PREFIX")?;
            let client = pg().await?;
            let revoked = postgres::revoke_keys(&client, prefix)
                .await
                .map_err(|e| e.to_string())?;
            println!("{revoked} key(s) revoked");
            Ok(())
        }
        Some("users") => {
            let client = pg().await?;
            postgres::migrate(&client)
                .await
                .map_err(|e| format!("postgresql: {e}"))?;
            users::run(&client, &args[1..]).await
        }
        Some("topics") => {
            let mut brokers = KafkaConfig::from_env().map_err(|e| e.to_string())?.brokers;
            if let Some(value) = flag(&args, "--brokers").pop() {
                brokers = value;
            }
            let days: u32 = match flag(&args, "--retention-days").pop() {
                Some(days) => days
                    .parse()
                    .map_err(|_| "--retention-days: a number of days")?,
                None => tally_common::config::env_or(
                    "TALLY_KAFKA_RETENTION_DAYS",
                    tally_common::kafka::DEFAULT_RETENTION_DAYS,
                )
                .map_err(|e| e.to_string())?,
            };
            if days == 0 {
                return Err("--retention-days: at least 1".into());
            }
            for spec in flag(&args, "--require") {
                let (topic, partitions) = spec
                    .split_once(':')
                    .and_then(|(t, n)| Some((t.to_owned(), n.parse::<i32>().ok()?)))
                    .ok_or_else(|| format!("--require takes TOPIC:PARTITIONS, got {spec:?}"))?;
                ensure_topic_with(&brokers, &topic, partitions, i64::from(days) * 86_400_000)
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
                let kept = tally_common::kafka::topic_retention_ms(&brokers, &topic)
                    .await
                    .ok()
                    .flatten()
                    .map_or("unlimited".to_owned(), |ms| format!("{:.1} days", ms as f64 / 86_400_000.0));
                println!("topic {topic}: {found} partition(s), messages kept {kept}");
            }
            Ok(())
        }
        Some("refresh") => {
            let database = match flag(&args, "--database").pop() {
                Some(database) => database,
                None => ClickHouseConfig::from_env().map_err(|e| e.to_string())?.database,
            };
            let client = pg().await?;
            if args.iter().any(|a| a == "--full") {
                postgres::request_full_refresh(&client, &database)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("full rebuild of {database} requested: the refresher runs it next (see `tally-admin refresh`)");
            }
            for (kind, version, buckets, new_rows, drift, finished) in
                postgres::refresh_runs(&client, &database, 10)
                    .await
                    .map_err(|e| e.to_string())?
            {
                let drift = drift.map_or("-".to_owned(), |d| d.to_string());
                println!("{finished}  {kind:<11} version {version:>6}  buckets {buckets:>6}  new rows {new_rows:>9}  drift {drift}");
            }
            Ok(())
        }
        Some("storage") => lifecycle::storage(&args).await,
        Some("retention") => lifecycle::retention(&args).await,
        Some("replay") => replay::command(&args[1..]).await,
        _ => Err(
            "usage: tally-admin migrate|topics|apps create|apps time-zone|apps retention|keys create|keys revoke|users|refresh|storage|retention|replay … [options]"
                .into(),
        ),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tally-admin: {err}");
            ExitCode::FAILURE
        }
    }
}
