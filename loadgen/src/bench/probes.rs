//! Latency probes: freshness (B3), live reads (B4) and ClickHouse queries (B5).

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// B3: sequential probes; each measures ack → visible in /live and → in ClickHouse.
pub async fn freshness(
    (gateway, query): (&str, &str),
    client: &clickhouse::Client,
    app: &str,
    (key, read_key): (&str, &str),
    until: Instant,
) -> (Vec<Duration>, Vec<Duration>) {
    let http = reqwest::Client::new();
    let (mut live, mut stored) = (Vec::new(), Vec::new());
    let mut sent = 0u64;
    while Instant::now() < until {
        let body = json!({"app_id": app, "events": [{"name": "probe", "user_id": "probe", "event_id": format!("{app}-{sent}")}]});
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
        let acked = Instant::now();
        sent += 1;
        let (mut live_at, mut stored_at) = (None, None);
        let give_up = acked + Duration::from_secs(30);
        while (live_at.is_none() || stored_at.is_none()) && Instant::now() < give_up {
            if live_at.is_none() {
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
                    live_at = Some(acked.elapsed());
                }
            }
            if stored_at.is_none() {
                let rows: u64 = client
                    .query("SELECT count() FROM events WHERE app_id = ?")
                    .bind(app)
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if rows >= sent {
                    stored_at = Some(acked.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        live.extend(live_at);
        stored.extend(stored_at);
    }
    (live, stored)
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
