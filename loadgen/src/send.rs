//! Sends generated traffic through the real HTTP API and records every
//! acknowledged event (see [`crate::record`]).
//!
//! Modes: a target rate (events/s) or as fast as acknowledged; for a duration or
//! a number of events. `concurrency` requests are in flight at most. Progress
//! (rate, acknowledged, rejected, p50/p99 request latency) goes to stderr once a
//! second when `progress` is set.

use crate::model::{GenBatch, Model, ModelConfig};
use crate::record::Acked;
use crate::stats::{ms, percentile};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_common::postgres::{KeyKind, PostgresConfig};
use tally_common::{Clock, SystemClock};

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One client's events per request, 1..=batch of them (browser SDK).
    Browser,
    /// Exactly `batch` events of one app per request (server-side SDK).
    Server,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Gateway base URL.
    pub gateway: String,
    /// Target events/s; `None` = as fast as acknowledged.
    pub rate: Option<f64>,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many events (whichever comes first).
    pub max_events: Option<u64>,
    /// Events per request (at most).
    pub batch: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Batch formation.
    pub style: Style,
    /// Traffic model.
    pub model: ModelConfig,
    /// Print progress to stderr.
    pub progress: bool,
    /// Write key per app (see [`provision_keys`]).
    pub keys: HashMap<String, String>,
    /// Stops the run (within a second) when set, whatever `duration` says.
    pub stop: Option<std::sync::Arc<AtomicBool>>,
}

/// Creates the model's apps in PostgreSQL with one write key each.
pub async fn provision_keys(
    postgres: &PostgresConfig,
    model: &ModelConfig,
) -> Result<HashMap<String, String>, String> {
    let client = postgres
        .connect()
        .await
        .map_err(|e| format!("postgresql {}: {e}", postgres.url))?;
    tally_common::postgres::migrate(&client)
        .await
        .map_err(|e| e.to_string())?;
    let names = Model::new(model);
    let mut keys = HashMap::new();
    for index in 0..names.apps() {
        let app = names.app_id(index);
        tally_common::postgres::create_app(&client, &app, &app)
            .await
            .map_err(|e| e.to_string())?;
        let key = tally_common::postgres::create_key(&client, &app, KeyKind::Write)
            .await
            .map_err(|e| e.to_string())?;
        keys.insert(app, key);
    }
    Ok(keys)
}

/// A new read key for each of `apps` (for the checker and the benchmarks).
pub async fn provision_read_keys<'a>(
    postgres: &PostgresConfig,
    apps: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, String>, String> {
    let client = postgres
        .connect()
        .await
        .map_err(|e| format!("postgresql {}: {e}", postgres.url))?;
    tally_common::postgres::migrate(&client)
        .await
        .map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for app in apps {
        if keys.contains_key(app) {
            continue;
        }
        tally_common::postgres::create_app(&client, app, app)
            .await
            .map_err(|e| e.to_string())?;
        let key = tally_common::postgres::create_key(&client, app, KeyKind::Read)
            .await
            .map_err(|e| e.to_string())?;
        keys.insert(app.to_owned(), key);
    }
    Ok(keys)
}

/// Outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Events acknowledged by the gateway.
    pub acknowledged: u64,
    /// Events the gateway rejected (per-event reasons).
    pub rejected: u64,
    /// Requests that failed as a whole (non-200 or transport error).
    pub failed_requests: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Acknowledged events per second.
    pub events_per_sec: f64,
    /// Request latency p50, ms.
    pub p50_ms: f64,
    /// Request latency p99, ms.
    pub p99_ms: f64,
}

#[derive(Debug, Default)]
struct Shared {
    acked: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
    scheduled: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    records: Mutex<Vec<Acked>>,
    /// Events of requests whose answer was lost or a 5xx: the gateway may
    /// have stored them (e.g. it produced, then died before answering).
    unanswered: Mutex<Vec<Acked>>,
    done: AtomicBool,
}

/// The records of `batch`'s events except the indexes in `rejected`, sent at
/// `now_ms` and answered (or given up on) at `answered_ms`.
fn records_of(batch: &GenBatch, now_ms: i64, answered_ms: i64, rejected: &[u64]) -> Vec<Acked> {
    batch
        .events
        .iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(*i as u64)))
        .map(|(i, event)| Acked {
            event_id: event.event_id.clone(),
            app_id: batch.app_id.clone(),
            name: event.name.clone(),
            distinct_id: event.distinct_id().to_owned(),
            bot: batch.bot,
            ts_ms: now_ms + i as i64,
            sent_ms: now_ms,
            acked_ms: answered_ms,
        })
        .collect()
}

fn body(batch: &GenBatch, now_ms: i64) -> Value {
    let events: Vec<Value> = batch
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            json!({
                "event_id": event.event_id,
                "name": event.name,
                "user_id": event.user_id,
                "anonymous_id": event.anonymous_id,
                // Distinct times inside a batch keep per-user order unambiguous.
                "timestamp": now_ms + i as i64,
                "properties": event.properties,
            })
        })
        .collect();
    json!({ "app_id": batch.app_id, "events": events })
}

async fn worker(
    config: Arc<SendConfig>,
    model: Arc<Mutex<Model>>,
    shared: Arc<Shared>,
    started: Instant,
) {
    let http = reqwest::Client::new();
    let clock = SystemClock;
    loop {
        if shared.done.load(Ordering::SeqCst) {
            return;
        }
        let now_ms = clock.now_ms();
        let batch = {
            let Ok(mut model) = model.lock() else { return };
            match config.style {
                Style::Browser => model.next_batch(now_ms, config.batch),
                Style::Server => model.next_server_batch(now_ms, config.batch),
            }
        };
        let n = batch.events.len() as u64;
        let scheduled = shared.scheduled.fetch_add(n, Ordering::SeqCst);
        if config.max_events.is_some_and(|max| scheduled >= max) {
            shared.done.store(true, Ordering::SeqCst);
            return;
        }
        if let Some(rate) = config.rate {
            let due = started + Duration::from_secs_f64(scheduled as f64 / rate);
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        }
        let now_ms = clock.now_ms();
        let sent = Instant::now();
        let response = http
            .post(format!("{}/api/v1/events/batch", config.gateway))
            .basic_auth(
                config.keys.get(&batch.app_id).map_or("", String::as_str),
                Some(""),
            )
            .header("user-agent", batch.user_agent)
            .header("x-forwarded-for", &batch.ip)
            .json(&body(&batch, now_ms))
            .send()
            .await;
        // A 4xx refused the whole request (nothing stored); a lost or
        // unreadable answer or a 5xx leaves it open whether it was stored.
        let (answer, open) = match response {
            Ok(r) if r.status().is_success() => {
                let answer = r.json::<Value>().await.ok();
                let open = answer.is_none();
                (answer, open)
            }
            Ok(r) => (None, r.status().is_server_error()),
            Err(_) => (None, true),
        };
        let latency = sent.elapsed();
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut latencies) = shared.latencies.lock() {
            latencies.push(latency);
        }
        let Some(answer) = answer else {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            if open {
                let records = records_of(&batch, now_ms, clock.now_ms(), &[]);
                if let Ok(mut unanswered) = shared.unanswered.lock() {
                    unanswered.extend(records);
                }
            }
            continue;
        };
        let rejected: Vec<u64> = answer["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["index"].as_u64())
            .collect();
        let acked = records_of(&batch, now_ms, clock.now_ms(), &rejected);
        shared.acked.fetch_add(acked.len() as u64, Ordering::SeqCst);
        shared
            .rejected
            .fetch_add(rejected.len() as u64, Ordering::SeqCst);
        if let Ok(mut records) = shared.records.lock() {
            records.extend(acked);
        }
    }
}

/// Runs the traffic; returns the summary and the acknowledged events.
pub async fn run(config: SendConfig) -> (RunSummary, Vec<Acked>) {
    let (summary, acked, _) = run_with_unanswered(config).await;
    (summary, acked)
}

/// Runs the traffic; returns the summary, the acknowledged events and the
/// events of requests left unanswered (transport error, unreadable answer
/// or 5xx), each with its send time and when it was given up on — the
/// gateway may have stored them, which the checker finds out
/// ([`crate::check::CheckConfig::with_unanswered`]).
pub async fn run_with_unanswered(config: SendConfig) -> (RunSummary, Vec<Acked>, Vec<Acked>) {
    let config = Arc::new(config);
    let model = Arc::new(Mutex::new(Model::new(&config.model)));
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..config.concurrency.max(1))
        .map(|_| {
            tokio::spawn(worker(
                config.clone(),
                model.clone(),
                shared.clone(),
                started,
            ))
        })
        .collect();
    let reporter = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move {
            let mut last = (0u64, 0usize);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if config.duration.is_some_and(|d| started.elapsed() >= d)
                    || config
                        .stop
                        .as_ref()
                        .is_some_and(|stop| stop.load(Ordering::SeqCst))
                {
                    shared.done.store(true, Ordering::SeqCst);
                }
                if shared.done.load(Ordering::SeqCst) {
                    return;
                }
                if config.progress {
                    let acked = shared.acked.load(Ordering::SeqCst);
                    let window: Vec<Duration> = shared
                        .latencies
                        .lock()
                        .map(|l| l[last.1..].to_vec())
                        .unwrap_or_default();
                    eprintln!(
                        "[{:>5.1}s] {:>8} events/s  acknowledged {:>9}  rejected {:>6}  failed requests {:>5}  p50 {:>6.1} ms  p99 {:>6.1} ms",
                        started.elapsed().as_secs_f64(),
                        acked - last.0,
                        acked,
                        shared.rejected.load(Ordering::SeqCst),
                        shared.failed.load(Ordering::SeqCst),
                        ms(percentile(&window, 0.5)),
                        ms(percentile(&window, 0.99)),
                    );
                    last = (acked, last.1 + window.len());
                }
            }
        })
    };
    for worker in workers {
        let _ = worker.await;
    }
    shared.done.store(true, Ordering::SeqCst);
    let _ = reporter.await;
    let seconds = started.elapsed().as_secs_f64();
    let latencies = shared
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let acknowledged = shared.acked.load(Ordering::SeqCst);
    let summary = RunSummary {
        acknowledged,
        rejected: shared.rejected.load(Ordering::SeqCst),
        failed_requests: shared.failed.load(Ordering::SeqCst),
        requests: shared.requests.load(Ordering::SeqCst),
        seconds,
        events_per_sec: acknowledged as f64 / seconds.max(1e-9),
        p50_ms: ms(percentile(&latencies, 0.5)),
        p99_ms: ms(percentile(&latencies, 0.99)),
    };
    let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
    let unanswered = shared
        .unanswered
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    (summary, records, unanswered)
}
