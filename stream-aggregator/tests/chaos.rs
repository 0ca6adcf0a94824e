//! The chaos test: under steady load through the real gateway, the aggregator
//! (a real child process) is killed with SIGKILL again and again, and the
//! broker, ClickHouse and Redis it depends on are restarted or stopped. Then
//! the ground-truth checker (`tally_loadgen::check`) must find every
//! acknowledged event exactly once in ClickHouse and live windows equal to
//! the truth.
//!
//! The servers here are the test's own (tansu with sqlite storage, Redis,
//! ClickHouse 18.16 on free ports), so restarting them disturbs no other test.
//!
//! The control run turns the exactly-once guards off
//! (`TALLY_AGGREGATOR_FAULT=ignore-offsets`), makes the aggregator replay
//! what it already wrote, and requires the checker to flag it: a checker that
//! cannot fail proves nothing.
//!
//! Each SIGKILL is followed by a restart after a random delay of 0–15 s (as a
//! process supervisor would, seeded by `TALLY_CHAOS_SEED`, printed), and the
//! time until the new process consumes again is measured and reported per
//! restart; every restart must resume within [`RESUME_LIMIT`]. (Restarts
//! 1–9 s after a kill once left tansu's group with an empty assignment for
//! good; see `stream_aggregator::watchdog`.)
//!
//! Scale with `TALLY_CHAOS_SECS` (load duration, default 40, stretched to
//! cover the restart delays), `TALLY_CHAOS_RATE` (events/s, default 300) and
//! `TALLY_CHAOS_KILLS` (default 6); `./tally chaos` runs a longer version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tally_loadgen::model::ModelConfig;
use tally_testkit::broker::{rewind_group, PrivateBroker};
use tally_testkit::servers::{PrivateClickHouse, PrivateRedis, ServiceProcess};
use tally_testkit::{services, Isolation};

/// Longest accepted time from a restart to consuming again (goal: 15 s).
const RESUME_LIMIT: Duration = Duration::from_secs(20);
/// Longest restart delay after a kill.
const MAX_RESTART_DELAY_MS: u64 = 15_000;

/// A small deterministic generator for the restart delays (splitmix64).
fn delays(seed: u64, n: usize) -> Vec<Duration> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Duration::from_millis((z ^ (z >> 31)) % (MAX_RESTART_DELAY_MS + 1))
        })
        .collect()
}

/// Seconds from now until the aggregator at `url` has consumed something
/// (written or skipped a message), or `None` after `limit`.
async fn time_to_resume(url: String, limit: Duration) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < limit * 3 {
        let consumed = tally_testkit::metric(&url, "tally_aggregator_events_total").await
            + tally_testkit::metric(&url, "tally_aggregator_replayed_total").await;
        if consumed > 0.0 {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Sum of a Prometheus counter family in an aggregator's `/metrics`.
async fn counter(process: &ServiceProcess, family: &str) -> f64 {
    tally_testkit::metric(&process.url, family).await
}

/// Traffic for `rate` events/s: each open session sends about 2.5 events/s.
fn model(run: &str, apps: usize, rate: f64) -> ModelConfig {
    let sessions = (rate / 2.0).max(150.0) as usize;
    ModelConfig {
        seed: 7,
        run_id: tally_testkit::unique(run),
        apps,
        visitors: sessions * 3,
        concurrent_sessions: sessions,
        mean_think_ms: 400.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregator_survives_kills_and_store_restarts_exactly_once() {
    let rate = env_number("TALLY_CHAOS_RATE", 300) as f64;
    let kills = env_number("TALLY_CHAOS_KILLS", 6);
    let seed = env_number("TALLY_CHAOS_SEED", u64::from(std::process::id()));
    let restart_delays = delays(seed, usize::try_from(kills).unwrap());
    let secs = env_number("TALLY_CHAOS_SECS", 40);
    eprintln!("chaos: seed {seed}, restart delays {restart_delays:?}");

    let mut broker = PrivateBroker::start_durable().await;
    let mut redis = PrivateRedis::start().await;
    let mut clickhouse = PrivateClickHouse::start().await;
    let iso = Isolation::on_servers(4, &broker.brokers, &clickhouse.url, &redis.url).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let env = aggregator_env(&iso, &[]);
    let mut aggregator = Some(start_aggregator(&env).await);
    // The load runs until the last disturbance is over (at least `secs`):
    // measuring a resume needs traffic.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = sender(
        "chaos",
        gateway.url(),
        model("chaos", 3, rate),
        rate,
        24 * 3_600,
        Some(stop_load.clone()),
    );

    // Spread the disturbances over the load: `kills` SIGKILLs, one broker
    // restart, one ClickHouse restart, one Redis stop, and one SIGKILL followed
    // by a rewind of the group's offsets to 0 (everything is replayed).
    let mut plan: Vec<&str> = vec!["kill"; usize::try_from(kills).unwrap()];
    plan.insert(1, "broker");
    plan.insert(3, "clickhouse");
    plan.insert(5.min(plan.len()), "redis");
    plan.insert(7.min(plan.len()), "rewind");
    let step = Duration::from_secs_f64(secs as f64 * 0.9 / plan.len() as f64);
    let (mut replayed, started) = (0.0, Instant::now());
    let mut done = Vec::new();
    let mut resumes = Vec::new();
    let mut restart_delays = restart_delays.into_iter();
    // The fixed sleeps in this loop are the disturbances themselves (pacing,
    // restart delay, downtime), not guesses at when something is ready: every
    // wait for a state (listening, consuming, rows stored) polls with a deadline.
    for action in &plan {
        tokio::time::sleep(step).await;
        let at = started.elapsed().as_secs_f64();
        match *action {
            "kill" => {
                let victim = aggregator.take().unwrap();
                replayed += counter(&victim, "tally_aggregator_replayed_total").await;
                victim.kill();
                let delay = restart_delays.next().unwrap_or_default();
                tokio::time::sleep(delay).await;
                let process = start_aggregator(&env).await;
                // The next disturbance waits until this process consumes.
                let resumed = time_to_resume(process.url.clone(), RESUME_LIMIT).await;
                resumes.push((delay, resumed));
                aggregator = Some(process);
            }
            "rewind" => {
                // Worst case of a crash: stores written, nothing committed: rewind
                // the group to the start of the log right after the kill.
                let victim = aggregator.take().unwrap();
                replayed += counter(&victim, "tally_aggregator_replayed_total").await;
                victim.kill();
                rewind_group(&iso.kafka.brokers, &iso.group_id, &iso.kafka.topic).await;
                aggregator = Some(start_aggregator(&env).await);
            }
            "broker" => {
                broker.kill();
                tokio::time::sleep(Duration::from_secs(1)).await;
                broker.resume().await;
            }
            "clickhouse" => {
                clickhouse.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                clickhouse.resume().await;
            }
            "redis" => {
                redis.stop();
                tokio::time::sleep(Duration::from_secs(3)).await;
                redis.resume().await;
            }
            _ => unreachable!(),
        }
        done.push(format!("{action}@{at:.1}s"));
    }
    let remaining = Duration::from_secs(secs).saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop_load.store(true, Ordering::SeqCst);
    let (records, unanswered) = load.await.unwrap();
    let resumed: Vec<(f64, Option<f64>)> = resumes
        .into_iter()
        .map(|(delay, resume)| (delay.as_secs_f64(), resume))
        .collect();
    eprintln!(
        "chaos: restart delay → time to resume (s): {}",
        resumed
            .iter()
            .map(|(delay, resume)| match resume {
                Some(resume) => format!("{delay:.1} → {resume:.1}"),
                None => format!("{delay:.1} → never"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (delay, resume) in &resumed {
        assert!(
            resume.is_some_and(|r| r <= RESUME_LIMIT.as_secs_f64()),
            "an aggregator restarted {delay:.1} s after a kill did not consume within {RESUME_LIMIT:?}: {resumed:?}"
        );
    }
    assert!(
        records.len() as u64 > secs * rate as u64 / 4,
        "too little load got through: {}",
        records.len()
    );
    wait_for_rows(&iso, records.len() as u64).await;

    let query = services::query(services::query_config(&iso)).await;
    let config = check_config(&iso, &query.url(), (&records, &unanswered)).await;
    let report = settle(&records, &config, Duration::from_secs(60)).await;
    let last = aggregator.take().unwrap();
    replayed += counter(&last, "tally_aggregator_replayed_total").await;
    let late = counter(&last, "tally_aggregator_late_events_total").await;
    eprintln!(
        "chaos: {} disturbances [{}]; {} acknowledged events and {} sessions checked, lost {}, duplicated {}, mismatches {}, live uniques error {:.2} %; {replayed} replayed messages skipped, {late} late (last process)",
        done.len(),
        done.join(", "),
        report.events_checked,
        report.sessions_checked,
        report.lost,
        report.duplicated,
        report.mismatch_count,
        report.max_unique_error * 100.0
    );
    assert!(report.ok, "{:#?}", report.mismatches);
    assert_eq!(report.mismatch_count, 0);
    assert!(report.sessions_checked > 0);
    assert!(
        replayed > 0.0,
        "the rewind must have made the aggregator skip replayed messages"
    );

    last.stop();
    query.stop().await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checker_flags_a_run_with_broken_idempotence() {
    let iso = Isolation::new(2).await;
    let env = aggregator_env(&iso, &[("TALLY_AGGREGATOR_FAULT", "ignore-offsets")]);
    control_run(&iso, &env, "control", model("control", 2, 200.0)).await;
    iso.cleanup().await;
}
