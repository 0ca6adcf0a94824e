//! B2r: a replay (`tally-admin replay start`, the aggregator's processing
//! run again into its own target) of the B1 backlog, measured like B2: the
//! rate between the first and the last observation of the replay's
//! `tally_aggregator_events_total` (group join and start-up excluded), and
//! events per CPU-second of the replay process. The live aggregator of B2 is
//! running meanwhile (idle once it caught up), as in production. The target
//! is dropped afterwards.

use super::process::{cpu_seconds_of, metric};
use super::BenchConfig;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tally_common::{Clock, SystemClock};

/// What B2r measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayFigures {
    /// Events per second written by the replay.
    pub events_per_sec: f64,
    /// Events per CPU-second of the replay process.
    pub per_core: f64,
    /// Seconds from the command's start to its exit (plan, migrations, join included).
    pub wall_seconds: f64,
    /// The rates cover the whole run (the backlog was written in one flush).
    pub whole_run: bool,
}

/// Replays every message of the bench topic older than now (`expected` of them).
pub async fn replay_rate(
    config: &BenchConfig,
    envs: &[(&str, String)],
    expected: u64,
) -> Result<ReplayFigures, String> {
    let admin = config.bin_dir.join("tally-admin");
    let name = format!("bench_{}", SystemClock.now_ms());
    let port = tally_common::process::free_port().map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{port}");
    let to = SystemClock.now_ms().to_string();
    let started = Instant::now();
    let mut child = Command::new(&admin)
        .args([
            "replay", "start", "--name", &name, "--from", "-1d", "--to", &to,
        ])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", admin.display()))?;
    let pid = child.id();
    // (when, count, cpu) at the first and the latest change of the counter.
    let (mut first, mut latest) = (None::<(Instant, f64, f64)>, None::<(Instant, f64, f64)>);
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("B2r: the replay did not finish within 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seen = metric(&url, "tally_aggregator_events_total").await;
        if latest.is_none_or(|(_, before, _)| seen > before) && seen > 0.0 {
            let now = (Instant::now(), seen, cpu_seconds_of(pid).unwrap_or(0.0));
            first.get_or_insert(now);
            latest = Some(now);
        }
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "B2r: tally-admin replay start exited with {status}"
        ));
    }
    let figures = match (first, latest) {
        (Some((t0, n0, c0)), Some((t1, n1, c1))) if n1 > n0 && n1 >= expected as f64 => {
            ReplayFigures {
                events_per_sec: (n1 - n0) / t1.duration_since(t0).as_secs_f64().max(1e-3),
                per_core: if c1 > c0 { (n1 - n0) / (c1 - c0) } else { 0.0 },
                wall_seconds,
                whole_run: false,
            }
        }
        // Everything written in one flush (a small backlog): only the whole run
        // (plan, migrations, group join included) can be timed.
        (_, Some((_, n1, c1))) if n1 >= expected as f64 => ReplayFigures {
            events_per_sec: n1 / wall_seconds.max(1e-3),
            per_core: if c1 > 0.0 { n1 / c1 } else { 0.0 },
            wall_seconds,
            whole_run: true,
        },
        (_, latest) => {
            let written = latest.map_or(0.0, |(_, n, _)| n);
            return Err(format!(
                "B2r: the replay wrote {written} of {expected} events"
            ));
        }
    };
    let dropped = Command::new(&admin)
        .args(["replay", "drop", &name])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !dropped.success() {
        return Err(format!("B2r: dropping replay {name} failed"));
    }
    Ok(figures)
}
