//! The live API end to end: active users over 5 and 30 minutes, a conversion
//! rate between two events, window states, the answer cache shared by
//! concurrent identical polls, and the Server-Sent Events stream (by read key
//! or by stream token).
//!
//! One pipeline and one data set (51 events of one app, sent once) are shared
//! by the tests of this file ([`tally_testkit::shared`]); the stream test
//! sends its own traffic to an app of its own, so the app's numbers stay put.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::{eventually, now_ms, post_batch, Pipeline};

/// The tests below that take the fixture (when it is torn down).
const TESTS: usize = 6;
static LIVE: Shared<Live> = Shared::new(TESTS);

/// The pipeline, and when its app's events were sent.
struct Live {
    pipeline: Pipeline,
    sent_at: i64,
}

impl Fixture for Live {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

async fn fixture() -> Lease<Live> {
    LIVE.get(setup).await
}

async fn setup() -> Live {
    let pipeline = Pipeline::start_shared("live").await;
    // 40 visitors view a page, 10 of them buy; one earlier visitor 10 minutes ago.
    let now = now_ms();
    let mut events: Vec<Value> = (0..40)
        .map(|i| json!({"name": "page_view", "user_id": format!("u{i}"), "timestamp": now}))
        .collect();
    events.extend(
        (0..10).map(|i| json!({"name": "purchase", "user_id": format!("u{i}"), "timestamp": now})),
    );
    events.push(json!({"name": "page_view", "user_id": "early", "timestamp": now - 600_000}));
    let (status, answer) = post_batch(
        &pipeline.http,
        &pipeline.gateway.url(),
        &pipeline.write_key,
        &json!({"app_id": pipeline.app, "events": events}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    Live {
        pipeline,
        sent_at: now,
    }
}

impl Live {
    /// The live URL with 24 windows and the page-view → purchase conversion.
    fn conversion_url(&self) -> String {
        self.pipeline
            .api("live?windows=24&from_event=page_view&to_event=purchase")
    }

    /// The live answer for [`Live::conversion_url`], once all 50 live events show.
    async fn settled_answer(&self) -> Value {
        let (http, url) = (&self.pipeline.http, self.conversion_url());
        eventually("live numbers", Duration::from_secs(20), || async {
            let answer: Value = http
                .get(&url)
                .bearer_auth(&self.pipeline.read_key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (answer["total_events"].as_u64()? >= 50).then_some(answer)
        })
        .await
    }
}

/// Reads SSE frames from `body` until a `window` event follows at least one
/// `partial` (or 20 s): (partials seen, the closed window).
async fn partials_then_closed_window<S, B, E>(body: &mut S) -> (usize, Option<Value>)
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let (mut text, mut partials, mut closed) = (String::new(), 0, None::<Value>);
    let deadline = Instant::now() + Duration::from_secs(20);
    while closed.is_none() && Instant::now() < deadline {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), body.next()).await
        else {
            continue;
        };
        text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let kind = frame
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim);
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(str::trim);
            match (kind, data) {
                (Some("partial"), Some(data)) => {
                    let window: Value = serde_json::from_str(data).unwrap();
                    assert_eq!(window["state"], "open");
                    partials += 1;
                }
                (Some("window"), Some(data)) if partials > 0 => {
                    closed = Some(serde_json::from_str(data).unwrap());
                }
                _ => {}
            }
        }
    }
    (partials, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_numbers_show_active_users_conversion_and_window_states() {
    let fx = fixture().await;
    let answer = fx.settled_answer().await;
    assert_eq!(answer["total_events"], 50, "{answer}");
    assert_eq!(answer["active_users_5m"], 40, "{answer}");
    // The early visitor's event reached the gateway 10 minutes after its window:
    // late, so stored but not live.
    assert_eq!(answer["active_users_30m"], 40, "{answer}");
    assert_eq!(answer["conversion"]["from_events"], 40);
    assert_eq!(answer["conversion"]["to_events"], 10);
    assert_eq!(answer["conversion"]["rate"], 0.25);
    let windows = answer["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 24);
    assert_eq!(windows.last().unwrap()["state"], "open");
    assert_eq!(windows.first().unwrap()["state"], "final");
    assert!(answer["as_of_ms"].as_i64().unwrap() >= fx.sent_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_polls_share_one_read() {
    let fx = fixture().await;
    let (http, read_key) = (&fx.pipeline.http, &fx.pipeline.read_key);
    fx.settled_answer().await;
    let url = fx.conversion_url();
    let polls: Vec<_> = (0..20)
        .map(|_| http.get(&url).bearer_auth(read_key).send())
        .collect();
    let mut hits = 0;
    for response in futures::future::join_all(polls).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        hits += usize::from(response.headers()["x-tally-cache"] == "hit");
    }
    assert!(hits >= 10, "{hits} of 20 concurrent polls shared an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_a_conversion_is_a_400() {
    let fx = fixture().await;
    let half = fx.pipeline.api("live?from_event=page_view");
    let response = fx
        .pipeline
        .http
        .get(&half)
        .bearer_auth(&fx.pipeline.read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_sends_partials_then_the_closed_window() {
    let fx = fixture().await;
    let Pipeline {
        gateway,
        query,
        http,
        ..
    } = &fx.pipeline;
    // An app of its own: the ticks below must not change the shared app's numbers.
    let app = tally_testkit::unique("live");
    let key = tally_testkit::write_key(&app).await;
    let read_key = tally_testkit::read_key(&app).await;

    // The stream: partials of the open window every second, then the closed window.
    let stream_url = format!("{}/api/v1/analytics/{app}/live/stream", query.url());
    assert_eq!(http.get(&stream_url).send().await.unwrap().status(), 401);
    let response = http
        .get(&stream_url)
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.bytes_stream();
    let sender = {
        let (http, url, key, app) = (http.clone(), gateway.url(), key.clone(), app.clone());
        tokio::spawn(async move {
            for i in 0..8 {
                let body = json!({"app_id": app, "events": [{"name": "tick", "user_id": format!("s{i}"), "timestamp": now_ms()}]});
                post_batch(&http, &url, &key, &body).await;
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        })
    };
    let (partials, closed) = partials_then_closed_window(&mut body).await;
    sender.abort();
    let closed = closed.expect("a closed window within 20 s");
    assert_ne!(closed["state"], "open", "{closed}");
    assert!(partials >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_token_opens_the_stream_by_url_and_is_stored_hashed() {
    let fx = fixture().await;
    let Pipeline {
        iso,
        query,
        http,
        write_key: key,
        read_key,
        ..
    } = &fx.pipeline;
    // Browsers: a stream token from the read key opens the stream by URL.
    let token_url = fx.pipeline.api("live/token");
    let response = http.post(&token_url).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 401, "a write key cannot issue tokens");
    let answer: Value = http
        .post(&token_url)
        .bearer_auth(read_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["token"].as_str().unwrap().to_owned();
    assert_eq!(answer["expires_in_s"], 300);
    let response = http
        .get(format!(
            "{}{}",
            query.url(),
            answer["stream_path"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: partial") && !text.contains("event:partial") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a partial within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Redis holds its hash only, expiring within 300 s.
    let mut redis = redis::Client::open(iso.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored = format!(
        "{}:stream_token:{}",
        iso.redis_prefix,
        tally_common::postgres::hash_key(&token)
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&stored)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=300).contains(&ttl), "ttl {ttl}");
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{}:stream_token:{token}", iso.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(raw, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_tokens_are_refused_outside_their_apps_stream() {
    let fx = fixture().await;
    let Pipeline {
        query,
        http,
        app,
        read_key,
        ..
    } = &fx.pipeline;
    let answer: Value = http
        .post(fx.pipeline.api("live/token"))
        .bearer_auth(read_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["token"].as_str().unwrap().to_owned();
    let stream_url = format!("{}/api/v1/analytics/{app}/live/stream", query.url());
    // Refusals: another app's path, unknown or malformed tokens, and the
    // token opens nothing but the stream.
    let other = tally_testkit::unique("other");
    let zeros = format!("st_{}", "0".repeat(64));
    for (url, status, reason) in [
        (
            format!(
                "{}/api/v1/analytics/{other}/live/stream?token={token}",
                query.url()
            ),
            403,
            "key_app_mismatch",
        ),
        (
            format!("{stream_url}?token={zeros}"),
            401,
            "invalid_stream_token",
        ),
        (
            format!("{stream_url}?token=abc"),
            401,
            "invalid_stream_token",
        ),
        (
            format!("{stream_url}?token=st_%C3%A9"),
            401,
            "invalid_stream_token",
        ),
        (
            format!("{}/api/v1/analytics/{app}/live?token={token}", query.url()),
            401,
            "missing_read_key",
        ),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], reason, "{url}");
    }
}
