//! Service child processes for the benchmark: started through the shared
//! launcher ([`tally_common::process::ServiceProcess`]: free port, wait for
//! `/readyz`, killed on drop), plus what only the benchmark reads: peak RSS
//! and CPU time from /proc, and Prometheus counters. Stopped with SIGTERM,
//! SIGKILL after 20 s.

use super::BenchConfig;
use std::time::{Duration, Instant};
use tally_common::process::ServiceProcess;

/// A service child process.
#[derive(Debug)]
pub struct Service {
    /// Binary name.
    pub name: &'static str,
    process: ServiceProcess,
    /// Base URL.
    pub url: String,
}

impl Service {
    /// Starts `name` (from the bench's binary directory) with `envs`,
    /// listening where `addr_var` says.
    pub async fn start(
        config: &BenchConfig,
        name: &'static str,
        addr_var: &str,
        envs: &[(&str, String)],
    ) -> Result<Self, String> {
        let process =
            ServiceProcess::start(&config.bin_dir.join(name), addr_var, envs, "warn").await?;
        Ok(Service {
            name,
            url: process.url.clone(),
            process,
        })
    }

    fn proc_file(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.process.id()?)).ok()
    }

    /// Peak resident set (KiB) from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// CPU time (user + system) used so far, seconds, from /proc (USER_HZ = 100
    /// on every Linux platform Tally runs on).
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.process.id()?)
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub fn stop(self) {
        self.process.stop_within(Duration::from_secs(20));
    }
}

/// CPU time (user + system) process `pid` used so far, seconds, from /proc
/// (USER_HZ = 100 on every Linux platform Tally runs on).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Value of the Prometheus sample `name` (no labels) served by `url`, or 0.
pub async fn metric(url: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Starts the aggregator over a backlog of `events` and measures it with
/// [`counted_rate`]: the running service, events/s and events per CPU-second.
pub async fn aggregator_over(
    config: &BenchConfig,
    envs: &[(&str, String)],
    events: f64,
) -> Result<(Service, f64, f64), String> {
    let aggregator =
        Service::start(config, "stream-aggregator", "TALLY_AGGREGATOR_ADDR", envs).await?;
    let (rate, per_cpu) = counted_rate(&aggregator, events).await;
    Ok((aggregator, rate, per_cpu))
}

/// Events/s (and per CPU-second) of an aggregator between the first and the
/// last observation of its `tally_aggregator_events_total` (group join and
/// start-up excluded), until it counted `target` events or 600 s passed. A
/// backlog counted in one step (a smoke run's: one batch) is measured from
/// the call instead, start-up included.
pub async fn counted_rate(aggregator: &Service, target: f64) -> (f64, f64) {
    let called = (Instant::now(), 0.0, aggregator.cpu_seconds().unwrap_or(0.0));
    let (mut first, mut last, deadline) = (None, 0.0, Instant::now() + Duration::from_secs(600));
    while last < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = metric(&aggregator.url, "tally_aggregator_events_total").await;
        if last > 0.0 && first.is_none() {
            first = Some((
                Instant::now(),
                last,
                aggregator.cpu_seconds().unwrap_or(0.0),
            ));
        }
    }
    let (at, seen, cpu_then) = match first {
        Some((_, seen, _)) if last <= seen => called,
        Some(first) => first,
        None => return (0.0, 0.0),
    };
    let cpu = aggregator.cpu_seconds().unwrap_or(0.0) - cpu_then;
    let per_core = if cpu > 0.0 { (last - seen) / cpu } else { 0.0 };
    ((last - seen) / at.elapsed().as_secs_f64(), per_core)
}
