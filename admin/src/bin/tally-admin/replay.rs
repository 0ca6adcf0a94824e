//! `tally-admin replay …` (issue 17): replays of the events topic into a
//! separate target (see the `tally_admin::replay` library).
//!
//! ```text
//! tally-admin replay start --name N --from <time | p:o,…> [--to <time | p:o,…>]
//!                          [--reenrich] [--bot-marker TEXT]… [--geoip-db PATH]… [--addr HOST:PORT]
//!     run the aggregator's processing from --from (until --to, else following the
//!     topic) into database/prefix tally_replay_N; `start --name N` resumes
//! tally-admin replay status [N] [--json]    progress per partition, rate, ETA, rows
//! tally-admin replay compare N [--json]     per app and day: target against live
//! tally-admin replay switch N [--max-lag M] the query service answers from N
//! tally-admin replay rollback               … from the previous tables again
//! tally-admin replay drop N [--force]       remove the target
//! ```

use super::flag;
use std::io::{IsTerminal, Write};
use std::time::Instant;
use tally_admin::replay::run::{self, Ended, Snapshot, StartOptions};
use tally_admin::replay::{catalog, compare, drop, reenrich, switch, Target};
use tally_common::Clock;

fn positional(args: &[String]) -> Option<&String> {
    // The first argument after the subcommand that is neither a flag nor a flag's value.
    let mut skip = false;
    for arg in &args[1..] {
        if skip {
            skip = false;
        } else if arg.starts_with("--") {
            skip = !matches!(arg.as_str(), "--json" | "--force" | "--reenrich");
        } else {
            return Some(arg);
        }
    }
    None
}

fn bar(snapshot: &Snapshot) -> String {
    let share = if snapshot.total > 0 {
        snapshot.done as f64 / snapshot.total as f64
    } else {
        1.0
    };
    let filled = (share * 30.0).round() as usize;
    let eta = snapshot
        .eta_secs()
        .map_or("-".to_owned(), |s| format!("{s:.0} s"));
    format!(
        "[{}{}] {:5.1}%  {}/{} messages  {:.0} msg/s  ETA {eta}{}",
        "#".repeat(filled.min(30)),
        "-".repeat(30 - filled.min(30)),
        share * 100.0,
        snapshot.done,
        snapshot.total,
        snapshot.rate,
        if snapshot.following {
            "  (following the topic)"
        } else {
            ""
        }
    )
}

async fn start(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    args: &[String],
) -> Result<(), String> {
    // The embedded aggregator logs like the service (TALLY_LOG, TALLY_LOG_FORMAT).
    tally_common::telemetry::init("tally-admin-replay");
    let options = StartOptions {
        name: flag(args, "--name")
            .pop()
            .ok_or("replay start --name N --from …")?,
        from: flag(args, "--from").pop(),
        to: flag(args, "--to").pop(),
        reenrich: reenrich::ReenrichOptions {
            agents: args.iter().any(|a| a == "--reenrich"),
            bot_markers: flag(args, "--bot-marker"),
            geoip_dbs: flag(args, "--geoip-db")
                .into_iter()
                .map(Into::into)
                .collect(),
        },
        addr: flag(args, "--addr")
            .pop()
            .map(|a| a.parse().map_err(|_| format!("--addr {a:?}: HOST:PORT")))
            .transpose()?,
    };
    let entry = run::prepare(live, pg, &options)
        .await
        .map_err(|e| e.to_string())?;
    let range = match &entry.end {
        Some(end) => format!(
            "{} → {}",
            catalog::format_positions(&entry.start),
            catalog::format_positions(end)
        ),
        None => format!("{} → following", catalog::format_positions(&entry.start)),
    };
    eprintln!(
        "replay {}: {range}; target database tally_replay_{0}",
        entry.name
    );
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut progress = move |snapshot: &Snapshot| {
        if terminal {
            eprint!("\r{}", bar(snapshot));
            let _ = std::io::stderr().flush();
        } else if last_line.elapsed().as_secs() >= 10 {
            last_line = Instant::now();
            eprintln!("{}", bar(snapshot));
        }
    };
    let addr = options
        .addr
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let ended = run::run(
        live,
        pg,
        &entry,
        addr,
        tally_common::shutdown::signal(),
        &mut progress,
    )
    .await
    .map_err(|e| e.to_string())?;
    if terminal {
        eprintln!();
    }
    match ended {
        Ended::Finished(s) => println!(
            "replay {} finished: {} messages processed",
            entry.name, s.done
        ),
        Ended::Stopped(s) => println!(
            "replay {} stopped at {}/{} messages; `tally-admin replay start --name {0}` resumes it",
            entry.name, s.done, s.total
        ),
    }
    Ok(())
}

async fn status(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    args: &[String],
) -> Result<(), String> {
    let entries = match positional(args) {
        Some(name) => vec![catalog::get(pg, name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no replay named {name:?}"))?],
        // Every replay of this configuration's topic.
        None => catalog::list(pg)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|entry| entry.topic == live.kafka.topic)
            .collect(),
    };
    if !args.iter().any(|a| a == "--json") {
        let kept = tally_common::kafka::topic_retention_ms(&live.kafka.brokers, &live.kafka.topic)
            .await
            .ok()
            .flatten();
        match kept {
            Some(ms) => println!(
                "topic {}: messages kept {:.1} days; a replay can start from {} at the earliest",
                live.kafka.topic,
                ms as f64 / 86_400_000.0,
                tally_admin::replay::rfc3339(
                    tally_common::SystemClock.now_ms() - ms
                        + tally_admin::replay::plan::RETENTION_MARGIN_MS
                )
            ),
            None => println!(
                "topic {}: no retention reported (messages kept until deleted)",
                live.kafka.topic
            ),
        }
    }
    let serving = switch::serving(pg, &live.clickhouse.database)
        .await
        .map_err(|e| e.to_string())?;
    let now_ms = tally_common::SystemClock.now_ms();
    let mut out = Vec::new();
    for entry in entries {
        let target = Target::named(&entry.name).map_err(|e| e.to_string())?;
        let (kafka, group, start, end) = (
            live.kafka.clone(),
            target.group_id.clone(),
            entry.start.clone(),
            entry.end.clone(),
        );
        let snapshot = tokio::task::spawn_blocking(move || {
            run::snapshot(&kafka, &group, &start, end.as_ref())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let rows: u64 = live
            .clickhouse
            .server_client()
            .query(&format!("SELECT count() FROM {}.events", target.database))
            .fetch_one()
            .await
            .unwrap_or(0);
        let state = if entry.state == catalog::state::FINISHED {
            "finished"
        } else if entry.alive(now_ms) {
            "running"
        } else {
            "stopped"
        };
        let served = serving
            .as_ref()
            .is_some_and(|s| s.database == target.database);
        out.push(serde_json::json!({
            "name": entry.name, "state": state, "serving": served,
            "from": entry.from_text, "to": entry.to_text, "reenrich": entry.reenrich,
            "partitions": snapshot.partitions.iter().map(|(p, s, at, e)| serde_json::json!({"partition": p, "start": s, "at": at, "end": e})).collect::<Vec<_>>(),
            "done": snapshot.done, "total": snapshot.total,
            "rate": if state == "running" { entry.rate } else { 0.0 },
            "eta_secs": if state == "running" && entry.rate > 0.0 { Some((snapshot.total - snapshot.done).max(0) as f64 / entry.rate) } else { None },
            "rows": rows, "database": target.database, "redis_prefix": target.redis_prefix,
        }));
        if !args.iter().any(|a| a == "--json") {
            let mut shown = snapshot.clone();
            shown.rate = if state == "running" { entry.rate } else { 0.0 };
            println!(
                "{}  {state}{}  from {}{}  rows {rows}{}",
                entry.name,
                if served { " (serving)" } else { "" },
                entry.from_text,
                entry
                    .to_text
                    .as_deref()
                    .map(|t| format!(" to {t}"))
                    .unwrap_or_default(),
                if entry.reenrich.is_empty() {
                    String::new()
                } else {
                    format!("  re-enrich {}", entry.reenrich)
                }
            );
            println!("  {}", bar(&shown));
            for (p, s, at, e) in &snapshot.partitions {
                println!("  partition {p}: {s} → {at} of {e} (lag {})", e - at);
            }
        }
    }
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

async fn compare_command(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    args: &[String],
) -> Result<(), String> {
    let name = positional(args).ok_or("replay compare NAME")?;
    let entry = catalog::get(pg, name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no replay named {name:?}"))?;
    let report = tally_admin::replay::compare_live(live, &entry)
        .await
        .map_err(|e| e.to_string())?;
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "replay {name} against {}: {} app-days, {} live rows, {} replayed rows, {} app-day(s) differ",
        live.clickhouse.database,
        report.app_days,
        report.live_events,
        report.target_events,
        report.differences.len()
    );
    for (p, (from, until)) in &report.bounds {
        println!("  partition {p}: offsets {from}..{until}");
    }
    let side = |d: &Option<compare::DayCounts>| {
        d.as_ref().map_or("-".to_owned(), |d| {
            format!(
                "{} events, {} uniques, {} bots",
                d.events, d.uniques, d.bots
            )
        })
    };
    for d in &report.differences {
        println!(
            "  {} {}: live {} | replay {}",
            d.app_id,
            d.day,
            side(&d.live),
            side(&d.target)
        );
    }
    match &report.sessions {
        Some(sessions) => {
            println!(
                "sessions: {} app-days, {} live, {} replayed, {} app-day(s) differ",
                sessions.app_days,
                sessions.live_sessions,
                sessions.target_sessions,
                sessions.differences.len()
            );
            for d in &sessions.differences {
                println!("  {} {}: live {} | replay {}", d.app_id, d.day, side(&d.live), side(&d.target));
            }
        }
        None => println!(
            "sessions: not compared (exact only for a replay from the topic's beginning, both groups at the same positions)"
        ),
    }
    Ok(())
}

/// `tally-admin replay …`.
pub async fn command(args: &[String]) -> Result<(), String> {
    let sub = args.first().map(String::as_str);
    if !matches!(
        sub,
        Some("start" | "status" | "compare" | "switch" | "rollback" | "drop")
    ) {
        return Err("usage: tally-admin replay start|status|compare|switch|rollback|drop … (see `tally-admin` docs)".into());
    }
    let live = stream_aggregator::Config::from_env().map_err(|e| e.to_string())?;
    let pg = super::pg().await?;
    tally_common::postgres::migrate(&pg)
        .await
        .map_err(|e| e.to_string())?;
    let (live, pg) = (&live, &pg);
    match sub {
        Some("start") => start(live, pg, args).await,
        Some("status") => status(live, pg, args).await,
        Some("compare") => compare_command(live, pg, args).await,
        Some("switch") => {
            let name = positional(args).ok_or("replay switch NAME")?;
            let max_lag = match flag(args, "--max-lag").pop() {
                Some(m) => m.parse().map_err(|_| "--max-lag: a number of messages")?,
                None => 1_000,
            };
            let s = switch::switch(live, pg, name, max_lag)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "the query service now answers from {} (Redis {}); `replay rollback` returns to {}",
                s.database, s.redis_prefix, s.previous_database
            );
            Ok(())
        }
        Some("rollback") => {
            let s = switch::rollback(live, pg)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "the query service answers from {} again (was {})",
                s.previous_database, s.database
            );
            Ok(())
        }
        _ => {
            let name = positional(args).ok_or("replay drop NAME")?;
            let dropped = drop::drop(live, pg, name, args.iter().any(|a| a == "--force"))
                .await
                .map_err(|e| e.to_string())?;
            println!("replay {name} dropped ({} Redis keys)", dropped.redis_keys);
            Ok(())
        }
    }
}
