//! Realistic sample traffic through the gateway's HTTP API (for `./tally up`'s
//! `tally-sample` and the browser tests): the load generator's model
//! (`tally_loadgen::model`: visitors who return, sessions of pages with
//! referrers and UTM tags, browsers, devices and bots by user agent, countries
//! by client address — sent as `X-Forwarded-For`, which a gateway trusting
//! one proxy hop reads —, the page_view → add_to_cart → purchase funnel).
//! 80 % of the events are spread over the past `days`, the rest are sent now.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_loadgen::model::{Model, ModelConfig};

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Gateway base URL.
    pub gateway: String,
    /// App id.
    pub app: String,
    /// A write key of the app.
    pub write_key: String,
    /// Events in all.
    pub events: usize,
    /// Days of history (0: everything now).
    pub days: usize,
    /// Distinct visitors.
    pub visitors: usize,
    /// Same seed, same traffic shape.
    pub seed: u64,
    /// Requests in flight.
    pub concurrency: usize,
    /// Most events per request.
    pub batch: usize,
}

/// (acknowledged, refused, acknowledged and live-countable — sent now by
/// non-bots —, time, request latencies sorted)
pub type Sent = (usize, usize, usize, Duration, Vec<Duration>);

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

/// Sends `plan` and reports what the gateway acknowledged.
pub async fn send(plan: &Plan) -> Result<Sent, String> {
    let (args, key) = (plan, plan.write_key.as_str());
    let http = reqwest::Client::new();
    // Visitors, sessions, pages, referrers and UTM, browsers and bots, countries
    // (by client address) and the page_view → add_to_cart → purchase funnel:
    // the load generator's traffic model, one app.
    let now = crate::now_ms();
    let model = Model::new(&ModelConfig {
        seed: args.seed,
        run_id: format!("sample-{now}"),
        apps: 1,
        visitors: args.visitors,
        concurrent_sessions: (args.visitors / 10).max(1),
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
                    let at = at.unwrap_or_else(crate::now_ms);
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
