//! Admission limits and failure answers: the per-app rate, slow clients, a sink
//! that does not acknowledge (503, nothing assumed stored), readiness.

use crate::harness::{config, events, metric, Gateway};
use ingest_gateway::Config;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_hot_app_is_rate_limited_without_starving_others() {
    let gateway = Gateway::with(Config {
        app_rate: 50,
        app_burst: 500,
        ..config()
    })
    .await;
    let (hot, calm) = (gateway.key("hot").await, gateway.key("calm").await);
    assert_eq!(gateway.batch(&hot, &events(500)).await.0, 200);
    let response = gateway
        .post("/api/v1/events/batch")
        .basic_auth(&hot, Some(""))
        .json(&events(100))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "retry-after {retry}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "rate_limited");
    assert_eq!(
        gateway.batch(&calm, &events(500)).await.0,
        200,
        "the other app is not starved"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tally_gateway_rate_limited_events_total{app="hot"}"#
        ),
        100.0
    );
    assert_eq!(gateway.sink.events().len(), 1_000);
}

/// Reads until the server closes the connection: what it said, and when.
async fn answer_of(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut seen)).await;
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_clients_are_disconnected_and_hold_nothing() {
    let gateway = Gateway::with(Config {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    let key = gateway.key("slow").await;

    // Headers that never finish: the connection is closed after the header timeout.
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (said, after) = answer_of(&mut stream).await;
    assert!(
        after < Duration::from_secs(5),
        "open for {after:?} with unfinished headers"
    );
    assert!(
        said.is_empty() || said.starts_with("HTTP/1.1 408"),
        "{said}"
    );

    // A body that stalls: 408 with its reason after the body timeout.
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"events\":["
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (said, after) = answer_of(&mut stream).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("body_timeout"), "{said}");
    assert!(after < Duration::from_secs(5), "answered after {after:?}");
    assert_eq!(
        gateway.state.overload.inflight_bytes(),
        0,
        "its reservation was given back"
    );

    // Nobody else was affected.
    assert_eq!(gateway.batch(&key, &events(1)).await.0, 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_it_streams() {
    let gateway = Gateway::with(Config {
        max_body_bytes: 64 * 1024,
        ..config()
    })
    .await;
    let key = gateway.key("stream").await;
    // No Content-Length (chunked): the limit is found while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, answer) = Gateway::send(
        gateway
            .post("/api/v1/events/batch")
            .bearer_auth(&key)
            .body(body),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(gateway.state.overload.inflight_bytes(), 0);
    assert!(gateway.sink.events().is_empty());
}

#[tokio::test]
async fn a_sink_that_does_not_acknowledge_gives_503_and_readiness_says_so() {
    let gateway = Gateway::start().await;
    let key = gateway.key("down").await;
    let ready = |gateway: &Gateway| {
        let request = gateway.http.get(format!("{}/readyz", gateway.url));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ready(&gateway).await, 200);
    gateway.sink.set_available(false);
    let response = gateway
        .post("/api/v1/events/batch")
        .bearer_auth(&key)
        .json(&events(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "broker_unavailable");
    assert_eq!(ready(&gateway).await, 503);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tally_gateway_produce_seconds_count{result="error"}"#
        ),
        1.0
    );
    gateway.sink.set_available(true);
    assert_eq!(
        gateway.batch(&key, &events(3)).await.0,
        200,
        "the retry is accepted"
    );
    assert_eq!(
        gateway.sink.events().len(),
        3,
        "only the acknowledged batch"
    );
    assert_eq!(ready(&gateway).await, 200);
}
