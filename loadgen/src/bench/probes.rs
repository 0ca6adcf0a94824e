//! Latency probes: freshness (B3), live reads (B4) and ClickHouse queries (B5).

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// B3 latencies of the probes, each from the moment its request was sent.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Send → acknowledged by the gateway.
    pub acked: Vec<Duration>,
    /// Send → counted in a push of the live stream (`/live/stream`).
    pub pushed: Vec<Duration>,
    /// Send → counted by a `/live` read (polled every 10 ms).
    pub polled: Vec<Duration>,
    /// Send → its row queryable in ClickHouse.
    pub stored: Vec<Duration>,
}

/// Follows the app's push stream: publishes how many events its pushes have
/// counted so far (the sum over windows of each window's latest numbers).
/// Connects again when refused or cut (a read key made a moment ago may not
/// be loaded by the query service yet).
async fn follow_stream(url: String, read_key: String, seen: tokio::sync::watch::Sender<u64>) {
    let http = reqwest::Client::new();
    let mut windows: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    loop {
        let mut response = match http.get(&url).bearer_auth(&read_key).send().await {
            Ok(response) if response.status().is_success() => response,
            _ => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                let data = message.lines().find_map(|l| l.strip_prefix("data:"));
                let Some(window) = data.and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                else {
                    continue;
                };
                if let (Some(start), Some(events)) =
                    (window["start_ms"].as_i64(), window["events"].as_u64())
                {
                    windows.insert(start, events);
                    seen.send_replace(windows.values().sum());
                }
            }
        }
    }
}

/// B3: sequential probes of one event each, from the client's send: to the
/// acknowledgement, to a push of the live stream counting it, to a `/live`
/// read counting it, and to its ClickHouse row.
pub async fn freshness(
    (gateway, query): (&str, &str),
    client: &clickhouse::Client,
    app: &str,
    (key, read_key): (&str, &str),
    until: Instant,
) -> Freshness {
    let http = reqwest::Client::new();
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0u64);
    let follower = tokio::spawn(follow_stream(
        format!("{query}/api/v1/analytics/{app}/live/stream"),
        read_key.to_owned(),
        seen_tx,
    ));
    let mut out = Freshness::default();
    let mut sent = 0u64;
    while Instant::now() < until {
        let body = json!({"app_id": app, "events": [{"name": "probe", "user_id": "probe", "event_id": format!("{app}-{sent}")}]});
        let sent_at = Instant::now();
        let Ok(response) = http
            .post(format!("{gateway}/api/v1/events/batch"))
            .basic_auth(key, Some(""))
            .json(&body)
            .send()
            .await
        else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        out.acked.push(sent_at.elapsed());
        sent += 1;
        let give_up = sent_at + Duration::from_secs(30);
        let pushed = async {
            let counted = tokio::time::timeout_at(
                tokio::time::Instant::from_std(give_up),
                seen.wait_for(|n| *n >= sent),
            )
            .await;
            matches!(counted, Ok(Ok(_))).then(|| sent_at.elapsed())
        };
        let polled = async {
            while Instant::now() < give_up {
                let answer: Option<Value> = match http
                    .get(format!("{query}/api/v1/analytics/{app}/live?windows=720"))
                    .bearer_auth(read_key)
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                if answer
                    .and_then(|a| a["total_events"].as_u64())
                    .is_some_and(|n| n >= sent)
                {
                    return Some(sent_at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        };
        let stored = async {
            while Instant::now() < give_up {
                let rows: u64 = client
                    .query("SELECT count() FROM events WHERE app_id = ?")
                    .bind(app)
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if rows >= sent {
                    return Some(sent_at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        };
        let (pushed, polled, stored) = tokio::join!(pushed, polled, stored);
        out.pushed.extend(pushed);
        out.polled.extend(polled);
        out.stored.extend(stored);
    }
    follower.abort();
    out
}

/// B4: `/live` at a fixed rate.
pub async fn live_reads(
    (query, read_key): (&str, &str),
    app: &str,
    rate: f64,
    seconds: f64,
) -> (Vec<Duration>, f64) {
    let http = reqwest::Client::new();
    let total = (rate * seconds) as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let request = http
            .get(format!("{query}/api/v1/analytics/{app}/live?windows=12"))
            .bearer_auth(read_key);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = request.send().await.is_ok_and(|r| r.status().is_success());
            ok.then(|| t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(Some(latency)) = task.await {
            latencies.push(latency);
        }
    }
    let achieved = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (latencies, achieved)
}

/// B5: `runs` sequential POSTs of `body` to `url`; each must answer 200.
pub async fn time_post(
    url: &str,
    read_key: &str,
    body: &Value,
    runs: usize,
) -> Result<Vec<Duration>, String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let response = http
            .post(url)
            .bearer_auth(read_key)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}: {text}"));
        }
        out.push(started.elapsed());
    }
    Ok(out)
}

/// B5 ad-hoc query: page views and visitors per page and device over 90 days.
pub static B5_QUERY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({"metrics": ["events", "unique_users"], "group_by": ["properties.url", "device_type"],
           "filters": [{"property": "name", "op": "eq", "value": "page_view"}], "range": "90d", "limit": 100})
});

/// B5 funnel: page_view → add_to_cart → purchase within 1 h, over 30 days.
pub static B5_FUNNEL_REQUEST: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"steps": ["page_view", "add_to_cart", "purchase"], "range": "30d", "window": "1h"}),
);

/// B5 strict funnel: the same steps, each the user's next event.
pub static B5_STRICT_FUNNEL_REQUEST: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    let mut request = B5_FUNNEL_REQUEST.clone();
    request["order"] = json!("strict");
    request
});
