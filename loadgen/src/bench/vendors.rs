//! B1v: the gateway's intake per API — the same events sent through Tally's
//! native batch API and through every vendor protocol the gateway speaks
//! (Segment, PostHog JSON and posthog-js's gzip, Amplitude, Mixpanel's
//! form-encoded base64, Snowplow, and Plausible's and Umami's one event per
//! request), one API after the other against the same gateway and broker,
//! with the same clients and batch size. Figures: accepted events/s, request p99, events per gateway
//! CPU-second (what decoding and mapping each protocol costs), each with its
//! ratio to the native API of the same run.

use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};
use tally_common::Clock;

/// One API under test: its route, how its bodies are written, its headers.
struct Api {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    /// Events per request.
    batch: usize,
}

const APIS: [Api; 9] = [
    Api {
        name: "native",
        path: "/api/v1/events/batch",
        content_type: "application/json",
        batch: 50,
    },
    Api {
        name: "segment",
        path: "/v1/batch",
        content_type: "application/json",
        batch: 50,
    },
    Api {
        name: "posthog",
        path: "/batch/",
        content_type: "application/json",
        batch: 50,
    },
    Api {
        name: "posthog-js gzip",
        path: "/e/?compression=gzip-js",
        content_type: "text/plain",
        batch: 50,
    },
    Api {
        name: "amplitude",
        path: "/2/httpapi",
        content_type: "application/json",
        batch: 50,
    },
    Api {
        name: "mixpanel base64",
        path: "/track?ip=0&verbose=0",
        content_type: "application/x-www-form-urlencoded",
        batch: 50,
    },
    Api {
        name: "snowplow",
        path: "/com.snowplowanalytics.snowplow/tp2",
        content_type: "application/json",
        batch: 50,
    },
    Api {
        name: "plausible",
        path: "/api/event",
        content_type: "text/plain",
        batch: 1,
    },
    Api {
        name: "umami",
        path: "/api/send",
        content_type: "application/json",
        batch: 1,
    },
];

/// The `i`-th event's fields, the same for every API.
fn fields(run: &str, request: usize, i: usize) -> (String, String, String, i64) {
    let user = format!("u-{}", (request * 7 + i) % 1000);
    let id = format!("{run}-{request}-{i}");
    let name = ["signup", "page_view", "purchase", "click"][i % 4].to_owned();
    let time = tally_common::SystemClock.now_ms() - (i as i64) * 10;
    (user, id, name, time)
}

/// Request `request`'s body for `api`, keyed by `key` (or naming `domain`).
fn body(api: &Api, run: &str, request: usize, key: &str, domain: &str) -> Vec<u8> {
    let events = (0..api.batch).map(|i| fields(run, request, i));
    let json = match api.name {
        "native" => json!({"write_key": key, "events": events.map(|(user, id, name, time)| json!({
            "name": name, "user_id": user, "event_id": id, "timestamp": time,
            "properties": {"plan": "pro", "n": request, "url": "https://shop.example/p"}})).collect::<Vec<_>>()}),
        "segment" => json!({"writeKey": key, "batch": events.map(|(user, id, name, time)| json!({
            "type": "track", "event": name, "userId": user, "messageId": id, "timestamp": time,
            "properties": {"plan": "pro", "n": request, "url": "https://shop.example/p"}})).collect::<Vec<_>>()}),
        "posthog" | "posthog-js gzip" => json!({"api_key": key, "batch": events.map(|(user, id, name, time)| json!({
            "event": name, "distinct_id": user, "uuid": id, "timestamp": time,
            "properties": {"plan": "pro", "n": request, "$current_url": "https://shop.example/p", "$lib": "web"}})).collect::<Vec<_>>()}),
        "amplitude" => json!({"api_key": key, "events": events.map(|(user, id, name, time)| json!({
            "event_type": name, "user_id": user, "insert_id": id, "time": time,
            "event_properties": {"plan": "pro", "n": request, "url": "https://shop.example/p"}})).collect::<Vec<_>>()}),
        "mixpanel base64" => json!(events.map(|(user, id, name, time)| json!({
            "event": name, "properties": {"token": key, "distinct_id": user, "$insert_id": id, "time": time,
            "plan": "pro", "n": request, "$current_url": "https://shop.example/p"}})).collect::<Vec<_>>()),
        "snowplow" => json!({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": events.map(|(user, id, name, time)| json!({
                "e": "se", "se_ca": "bench", "se_ac": name, "se_la": "pro", "se_va": request.to_string(), "uid": user,
                "eid": id, "dtm": time.to_string(), "aid": key, "p": "srv", "tv": "bench-1",
                "url": "https://shop.example/p"})).collect::<Vec<_>>()}),
        "umami" => {
            let (_, _, name, _) = fields(run, request, 0);
            json!({"type": "event", "payload": {"website": key, "hostname": "shop.example", "url": "/p",
                "name": name, "data": {"plan": "pro"}}})
        }
        _ => {
            let (_, _, name, _) = fields(run, request, 0);
            json!({"n": name, "u": "https://shop.example/p", "d": domain, "p": {"plan": "pro"}})
        }
    };
    let text = json.to_string().into_bytes();
    match api.name {
        "posthog-js gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = encoder.write_all(&text);
            encoder.finish().unwrap_or_default()
        }
        "mixpanel base64" => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            let form: String = url::form_urlencoded::byte_serialize(encoded.as_bytes()).collect();
            format!("data={form}").into_bytes()
        }
        _ => text,
    }
}

/// Sends `api`'s bodies with `clients` concurrent clients for `seconds`:
/// (accepted events/s, request p99 ms, failed requests).
async fn drive(
    gateway: &str,
    api: &Api,
    bodies: &[Vec<u8>],
    clients: usize,
    seconds: f64,
) -> (f64, f64, u64) {
    let http = reqwest::Client::new();
    let url = format!("{gateway}{}", api.path);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, url, bodies) = (http.clone(), url.clone(), bodies.to_vec());
        let (content_type, batch) = (api.content_type, api.batch);
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let mut next = client;
            while Instant::now() < until {
                let body = bodies[next % bodies.len()].clone();
                next += clients;
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                match answer {
                    Ok(response) if response.status().is_success() => accepted += batch as u64,
                    _ => failed += 1,
                }
            }
            (accepted, failed, latencies)
        }));
    }
    let (mut accepted, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
    for task in tasks {
        if let Ok((a, f, l)) = task.await {
            accepted += a;
            failed += f;
            latencies.extend(l);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get(((latencies.len() as f64 * 0.99) as usize).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    (accepted as f64 / elapsed, p99, failed)
}

/// Runs B1v against the running gateway for app `app` (write key `key`, site
/// `domain` allowed); `cpu` reads the gateway process's CPU seconds so far.
/// One figure set per API.
pub async fn b1v(
    gateway: &str,
    (run, key, domain): (&str, &str, &str),
    seconds: f64,
    cpu: impl Fn() -> Option<f64>,
) -> Value {
    let mut results = serde_json::Map::new();
    let (mut native_rate, mut native_per_cpu) = (0.0, 0.0);
    let ratio = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
    for api in &APIS {
        let bodies: Vec<Vec<u8>> = (0..64)
            .map(|request| body(api, run, request, key, domain))
            .collect();
        let before = cpu();
        let (rate, p99, failed) = drive(gateway, api, &bodies, 16, seconds).await;
        let used = cpu()
            .zip(before)
            .map_or(0.0, |(after, before)| after - before);
        let per_cpu = if used > 0.0 {
            rate * seconds / used
        } else {
            0.0
        };
        if api.name == "native" {
            (native_rate, native_per_cpu) = (rate, per_cpu);
        }
        eprintln!(
            "B1v: {:<16} {rate:>9.0} events/s, p99 {p99:.1} ms, {per_cpu:>9.0} events per gateway CPU-s",
            api.name
        );
        results.insert(
            api.name.to_owned(),
            json!({"events_per_sec": rate, "p99_ms": p99, "failed_requests": failed,
                   "events_per_request": api.batch, "path": api.path,
                   "events_per_gateway_cpu_second": per_cpu,
                   "ratio_to_native": ratio(rate, native_rate),
                   "cpu_ratio_to_native": ratio(per_cpu, native_per_cpu)}),
        );
    }
    Value::Object(results)
}
