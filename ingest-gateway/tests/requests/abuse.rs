//! Intake abuse against the in-memory gateway (issue 12, defects 5 and 6):
//!
//! * clients without a (valid) key that announce large bodies and send nothing
//!   hold none of the in-flight budget, so keyed traffic — header or body key —
//!   keeps flowing;
//! * a client with a valid key cannot take more than its address's cap: other
//!   addresses keep flowing, its own further requests get 429 `client_overloaded`;
//! * a huge `User-Agent` is cut to the documented cap before it is parsed or
//!   copied into events.
//!
//! Client addresses are real source addresses (127.0.0.2, 127.0.0.3, … — all of
//! 127/8 is local on Linux), not a forwarded header.

use crate::harness::{config, metric, Gateway};
use ingest_gateway::Config;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MIB: usize = 1024 * 1024;

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to `gateway` from the source address `from`.
async fn connect_from(from: IpAddr, gateway: &str) -> TcpStream {
    let target: SocketAddr = gateway.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(target).await.unwrap()
}

/// The head of a native batch request announcing `length` body bytes.
fn head(authorization: Option<&str>, length: usize) -> String {
    let authorization = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    // The padding makes every head at least 1000 bytes (see `inflight_at_least`).
    format!(
        "POST /api/v1/events/batch HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
         {authorization}Content-Length: {length}\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(1000)
    )
}

/// Waits (at most 20 s) until the gateway reports at least `bytes` in flight: the
/// attack's requests have all reached the handler.
async fn inflight_at_least(gateway: &Gateway, bytes: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.state.overload.inflight_bytes() < bytes {
        assert!(
            Instant::now() < deadline,
            "the attack never got {bytes} bytes in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most 20 s) until `series` reaches `at_least`.
async fn metric_at_least(gateway: &Gateway, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = gateway.metrics().await;
        if metric(&text, series) >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{series} < {at_least}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event ids of everything the gateway stored.
fn stored_ids(gateway: &Gateway) -> Vec<String> {
    gateway
        .sink
        .events()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn batch(n: usize, tag: &str) -> (Vec<String>, Vec<Value>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let events = ids
        .iter()
        .map(|id| json!({"name": "abuse_test", "user_id": "u", "event_id": id}))
        .collect();
    (ids, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_key_cannot_lock_keyed_ones_out() {
    let gateway = Gateway::with(Config {
        max_inflight_bytes: 8 * MIB,
        max_inflight_per_client_bytes: 8 * MIB,
        body_timeout: Duration::from_secs(60),
        ..config()
    })
    .await;
    let url = gateway.url.clone();
    let key = gateway.key("flood").await;

    // 16 connections without a key and 4 with an unknown one, each announcing a
    // maximal body (1 MiB) and sending nothing: on the old code 8 of them held the
    // whole 8 MiB budget until the body timeout.
    let mut attack = Vec::new();
    for i in 0..20 {
        let mut stream = connect_from(loopback(2), &url).await;
        let authorization = (i >= 16).then_some("Bearer tw_not_a_key");
        stream
            .write_all(head(authorization, MIB).as_bytes())
            .await
            .unwrap();
        attack.push(stream);
    }
    inflight_at_least(&gateway, 16 * 1000).await;
    // Legitimate batches meanwhile, from another address: key as Basic username,
    // and in the body as the browser tracker sends it (text/plain, no header).
    let mut sends = Vec::new();
    let mut expected = Vec::new();
    for i in 0..6 {
        let (ids, events) = batch(50, &format!("legit-{i}"));
        expected.extend(ids);
        let client = reqwest::Client::builder()
            .local_address(loopback(3))
            .build()
            .unwrap();
        let endpoint = format!("{url}/api/v1/events/batch");
        let request = if i % 2 == 0 {
            client
                .post(endpoint)
                .basic_auth(&key, Some(""))
                .json(&json!({ "events": events }))
        } else {
            client
                .post(endpoint)
                .header("content-type", "text/plain")
                .body(json!({"write_key": key, "events": events}).to_string())
        };
        sends.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    for (i, send) in sends.into_iter().enumerate() {
        let (status, answer) = send.await.unwrap();
        assert_eq!(
            status, 200,
            "legitimate batch {i} during the attack: {answer}"
        );
        assert_eq!(answer["accepted"], 50, "{answer}");
    }
    let mut stored = stored_ids(&gateway);
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "every accepted event is on the broker");
    // The unknown keys were refused before their bodies, and counted.
    metric_at_least(
        &gateway,
        "tally_gateway_admission_refused_total{reason=\"invalid_write_key\"}",
        4.0,
    )
    .await;

    drop(attack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_with_a_valid_key_cannot_starve_the_others() {
    let gateway = Gateway::with(Config {
        max_inflight_bytes: 8 * MIB,
        max_inflight_per_client_bytes: 3 * MIB,
        body_timeout: Duration::from_secs(60),
        ..config()
    })
    .await;
    let url = gateway.url.clone();
    let key = gateway.key("greedy").await;
    let credentials = format!("Bearer {key}");

    // 10 connections from 127.0.0.2 with a valid key, each sending all of a 1 MiB
    // body but its last byte: together far more than the whole 8 MiB budget.
    let mut attack = Vec::new();
    for _ in 0..10 {
        let mut stream = connect_from(loopback(2), &url).await;
        let head = head(Some(&credentials), MIB);
        attack.push(tokio::spawn(async move {
            if stream.write_all(head.as_bytes()).await.is_ok() {
                // Refused connections are closed by the gateway: write errors are expected.
                let _ = stream.write_all(&vec![b' '; MIB - 1]).await;
            }
            // Keep the connection (and whatever the gateway holds for it) open.
            std::future::pending::<()>().await;
        }));
    }
    // Two whole connections' worth is in flight (old code: the whole budget).
    inflight_at_least(&gateway, 2 * MIB).await;

    // Another address is not starved.
    let (ids, events) = batch(200, "other");
    let other = reqwest::Client::builder()
        .local_address(loopback(3))
        .build()
        .unwrap();
    let response = other
        .post(format!("{url}/api/v1/events/batch"))
        .basic_auth(&key, Some(""))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "another address during the attack: {answer}");
    assert_eq!(stored_ids(&gateway), ids, "every accepted event is stored");

    // The greedy address itself is held to its cap: a further large request is
    // refused at once (its head only is sent, so the answer cannot be lost to a reset).
    let mut same = connect_from(loopback(2), &url).await;
    same.write_all(head(Some(&credentials), MIB).as_bytes())
        .await
        .unwrap();
    let mut said = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), same.read_to_end(&mut said)).await;
    let said = String::from_utf8_lossy(&said);
    assert!(read.is_ok(), "no answer within 10 s: {said}");
    assert!(said.starts_with("HTTP/1.1 429"), "{said}");
    assert!(
        said.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{said}"
    );
    assert!(said.contains("\"client_overloaded\""), "{said}");
    let text = gateway.metrics().await;
    assert!(
        metric(
            &text,
            "tally_gateway_admission_refused_total{reason=\"client_cap\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "tally_gateway_inflight_bytes") <= (3 * MIB + 4096) as f64,
        "the address holds no more than its cap: {text}"
    );

    for task in attack {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_user_agent_is_cut_to_the_cap() {
    let gateway = Gateway::start().await;
    let key = gateway.key("agent").await;
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 ";
    let agent = format!("{chrome}{}", "A".repeat(256 * 1024));
    let (ids, events) = batch(200, "ua");
    let response = gateway
        .post("/api/v1/events/batch")
        .basic_auth(&key, Some(""))
        .header("user-agent", &agent)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, &answer["accepted"]),
        (200, &json!(200)),
        "{answer}"
    );

    let stored: Vec<Vec<u8>> = gateway.sink.events().iter().map(|e| e.encode()).collect();
    assert_eq!(stored.len(), ids.len());
    let cap = ingest_gateway::enrich::MAX_USER_AGENT_BYTES;
    let total: usize = stored.iter().map(Vec::len).sum();
    assert!(
        total < ids.len() * 4096,
        "{total} bytes would go to the broker for {} events",
        ids.len()
    );
    for payload in &stored {
        let envelope = tally_schemas::Envelope::decode(payload).unwrap();
        let kept = envelope.user_agent.unwrap_or_default();
        assert_eq!(kept.len(), cap, "the agent is cut to the cap");
        assert!(agent.starts_with(&kept));
        assert_eq!(
            envelope.enrichment.browser, "Chrome",
            "classified from the kept part"
        );
    }
}
