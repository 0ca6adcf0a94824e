//! The query service's tenant seal, against the real PostgreSQL, Redis and
//! ClickHouse: key misuse, cross-app attempts and an injection corpus through
//! every input of the read endpoints. Every answer must be a clean 4xx with a
//! machine-readable reason (never a 5xx), and no request may see another
//! app's numbers.
//!
//! One pipeline with two apps ("mine" with 3 events, "theirs" with 7, sent
//! and stored once) is shared by the tests of this file
//! ([`tally_testkit::shared`]); each kind of attack is its own test, and the
//! tests that throw hostile input end by checking the stores are intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::{clickhouse_counts, eventually, now_ms, post_batch, Pipeline};

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "x'; DROP TABLE events; --",
    "1) OR (1=1",
    "\\' UNION SELECT * FROM system.tables --",
    "%27%20OR%201%3D1",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "../../etc/passwd",
    "..%2F..%2Fother",
    "a\u{0}b",
    "😀",
    "9999999999999999999999",
    "-1",
    "1e309",
    "NaN",
    "0x10",
    " 12",
    "",
];

/// The tests below that take the fixture (when it is torn down).
const TESTS: usize = 7;
static SEALED: Shared<Sealed> = Shared::new(TESTS);

/// The pipeline (its app is "mine") and another app, "theirs".
struct Sealed {
    pipeline: Pipeline,
    theirs: String,
    theirs_write: String,
    theirs_read: String,
}

impl Fixture for Sealed {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

async fn fixture() -> Lease<Sealed> {
    SEALED.get(setup).await
}

async fn setup() -> Sealed {
    let pipeline = Pipeline::start_shared("sec").await;
    let theirs = tally_testkit::unique("sec");
    let theirs_write = tally_testkit::write_key(&theirs).await;
    let theirs_read = tally_testkit::read_key(&theirs).await;
    let sealed = Sealed {
        theirs,
        theirs_write,
        theirs_read,
        pipeline,
    };
    let p = &sealed.pipeline;
    for (app, key, n) in [
        (&p.app, &p.write_key, 3),
        (&sealed.theirs, &sealed.theirs_write, 7),
    ] {
        let events: Vec<Value> = (0..n)
            .map(
                |i| json!({"name": "page_view", "user_id": format!("u{i}"), "timestamp": now_ms()}),
            )
            .collect();
        let (status, _) = post_batch(
            &p.http,
            &p.gateway.url(),
            key,
            &json!({"app_id": app, "events": events}),
        )
        .await;
        assert_eq!(status, 200);
    }
    eventually("own live numbers", Duration::from_secs(30), || async {
        let (status, body) = sealed.get(sealed.live(&p.app), sealed.mine_read()).await;
        (status == 200 && body["total_events"] == 3).then_some(())
    })
    .await;
    // Both apps stored, so the tests can check the stores stay intact.
    eventually("both apps stored", Duration::from_secs(30), || async {
        let mine = clickhouse_counts(&p.iso, &p.app).await.0;
        let theirs = clickhouse_counts(&p.iso, &sealed.theirs).await.0;
        (mine >= 3 && theirs >= 7).then_some(())
    })
    .await;
    sealed
}

fn bearer(key: &str) -> Option<String> {
    Some(format!("Bearer {key}"))
}

impl Sealed {
    fn base(&self) -> String {
        self.pipeline.query.url()
    }

    fn mine(&self) -> &str {
        &self.pipeline.app
    }

    /// The `Authorization` header with mine's read key.
    fn mine_read(&self) -> Option<String> {
        bearer(&self.pipeline.read_key)
    }

    /// The live URL of `app` (60 windows).
    fn live(&self, app: &str) -> String {
        format!("{}/api/v1/analytics/{app}/live?windows=60", self.base())
    }

    /// GETs `url` with the `Authorization` header `auth`: (status, JSON answer or null).
    async fn get(&self, url: String, auth: Option<String>) -> (u16, Value) {
        let mut request = self.pipeline.http.get(url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// POSTs `body` to mine's `path` with mine's read key: (status, raw answer).
    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let request = self
            .pipeline
            .http
            .post(format!(
                "{}/api/v1/analytics/{}/{path}",
                self.base(),
                self.mine()
            ))
            .bearer_auth(&self.pipeline.read_key)
            .json(&body);
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The stores are intact and still sealed.
    async fn assert_intact_and_sealed(&self) {
        let iso = &self.pipeline.iso;
        assert_eq!(clickhouse_counts(iso, self.mine()).await.0, 3);
        assert_eq!(clickhouse_counts(iso, &self.theirs).await.0, 7);
        let (status, body) = self.get(self.live(self.mine()), self.mine_read()).await;
        assert_eq!((status, body["total_events"].as_u64()), (200, Some(3)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_key_opens_its_own_apps_numbers() {
    let fx = fixture().await;
    let (status, own) = fx.get(fx.live(fx.mine()), fx.mine_read()).await;
    assert_eq!(
        (status, own["total_events"].as_u64()),
        (200, Some(3)),
        "{own}"
    );
    assert_eq!(own["app_id"], fx.mine());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_misuse_gets_a_401_or_403_with_a_reason() {
    let fx = fixture().await;
    let (mine_write, mine_read) = (&fx.pipeline.write_key, &fx.pipeline.read_key);
    // Key misuse: every answer is 401/403 with a reason, never the data.
    let misuse: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "missing_read_key"),
        (Some(String::new()), 401, "invalid_authorization"),
        (Some("Bearer".into()), 401, "invalid_authorization"),
        (Some("Bearer ".into()), 401, "invalid_authorization"),
        (
            Some(tally_testkit::basic_auth(mine_read)),
            401,
            "invalid_authorization",
        ),
        (Some(mine_read.clone()), 401, "invalid_authorization"),
        (bearer(mine_write), 401, "invalid_read_key"),
        (bearer(&fx.theirs_read), 403, "key_app_mismatch"),
        (bearer(&fx.theirs_write), 401, "invalid_read_key"),
        (bearer(&format!("{mine_read}x")), 401, "invalid_read_key"),
        (bearer(&mine_read.to_uppercase()), 401, "invalid_read_key"),
        (bearer(&"tr_".repeat(200)), 401, "invalid_authorization"),
    ];
    for (auth, status, reason) in &misuse {
        let (got, body) = fx.get(fx.live(fx.mine()), auth.clone()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (*status, Some(*reason)),
            "{auth:?}"
        );
    }
    eprintln!("query security: {} misused keys refused", misuse.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_read_key_stops_working() {
    let fx = fixture().await;
    let revoked = tally_testkit::read_key(fx.mine()).await;
    let client = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::revoke_keys(&client, &revoked[..8])
        .await
        .unwrap();
    // The revoked key stops working once the key cache has refreshed (1 s in tests).
    eventually("revoked key refused", Duration::from_secs(10), || async {
        let (status, body) = fx.get(fx.live(fx.mine()), bearer(&revoked)).await;
        (status == 401 && body["error"] == "invalid_read_key").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_key_never_opens_another_app() {
    let fx = fixture().await;
    let (mine, theirs) = (fx.mine(), &fx.theirs);
    // Cross-app: this app's key never opens another app, whatever the path looks like.
    let paths = [
        theirs.clone(),
        theirs.to_uppercase(),
        format!("{mine}/../{theirs}"),
        format!("{mine}%2F..%2F{theirs}"),
        format!("{theirs}%00"),
        format!(" {theirs}"),
    ];
    for path_app in &paths {
        let (status, body) = fx.get(fx.live(path_app), fx.mine_read()).await;
        assert!(
            matches!(status, 400 | 403 | 404),
            "{path_app}: {status} {body}"
        );
        assert_ne!(body["total_events"], 7, "{path_app} leaked the other app");
    }
    eprintln!("query security: {} cross-app paths refused", paths.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injections_in_paths_query_strings_and_stream_tokens_get_a_clean_4xx() {
    let fx = fixture().await;
    let (base, mine) = (fx.base(), fx.mine());
    let mut cases = 0;
    // Injection corpus through every input: the path's app id, `windows`, `from`, `to`.
    for text in INJECTIONS {
        let encoded = urlencode(text);
        let urls = [
            format!("{base}/api/v1/analytics/{encoded}/live"),
            format!("{base}/api/v1/analytics/{mine}/live?windows={encoded}"),
            format!("{base}/api/v1/analytics/{mine}/count?from={encoded}"),
            format!("{base}/api/v1/analytics/{mine}/count?to={encoded}"),
        ];
        for url in urls {
            let (status, body) = fx.get(url.clone(), fx.mine_read()).await;
            assert!((400..500).contains(&status), "{url}: {status} {body}");
            assert!(body["error"].is_string() || status == 404, "{url}: {body}");
            cases += 1;
        }
        // …and as a stream token (no header).
        let url = format!("{base}/api/v1/analytics/{mine}/live/stream?token={encoded}");
        let (status, body) = fx.get(url.clone(), None).await;
        assert!(matches!(status, 400 | 401), "{url}: {status} {body}");
        assert!(body["error"].is_string(), "{url}: {body}");
        cases += 1;
    }
    fx.assert_intact_and_sealed().await;
    eprintln!("query security: {cases} hostile URLs, all refused cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_token_opens_no_other_apps_stream() {
    let fx = fixture().await;
    let base = fx.base();
    // A stream token of one app opens no other app's stream.
    let token: Value = fx
        .pipeline
        .http
        .post(format!("{base}/api/v1/analytics/{}/live/token", fx.mine()))
        .bearer_auth(&fx.pipeline.read_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let url = format!(
        "{base}/api/v1/analytics/{}/live/stream?token={token}",
        fx.theirs
    );
    let (status, body) = fx.get(url, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("key_app_mismatch"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injections_in_json_bodies_are_refused_or_bound() {
    let fx = fixture().await;
    let theirs = fx.theirs.as_str();
    let mut cases = 0;
    // The same corpus through every field of the JSON bodies: identifiers are
    // refused (400), values are bound (200, matching nothing); never a 5xx,
    // never the other app's data.
    for text in INJECTIONS {
        let t = *text;
        let bodies = [
            ("query", json!({"metric": t, "range": "1d"})),
            ("query", json!({"metric": "events", "range": t})),
            (
                "query",
                json!({"metric": "events", "range": "1d", "group_by": t}),
            ),
            ("query", json!({"metric": {"sum": t}, "range": "1d"})),
            (
                "query",
                json!({"metric": "events", "range": "1d", "filters": [{"property": t, "op": "eq", "value": "x"}]}),
            ),
            (
                "query",
                json!({"metric": "events", "range": "1d", "filters": [{"property": "country", "op": t, "value": "x"}]}),
            ),
            (
                "query",
                json!({"metric": "events", "range": "1d", "filters": [{"property": "country", "op": "eq", "value": t}]}),
            ),
            (
                "query",
                json!({"metric": "events", "range": "1d", "filters": [{"property": "plan", "op": "in", "value": [t, "y"]}]}),
            ),
            (
                "query",
                json!({"metric": "events", "range": "1d", "segment": {"did": t}}),
            ),
            ("funnel", json!({"steps": [t, "page_view"], "range": "1d"})),
            (
                "funnel",
                json!({"steps": ["page_view", "x"], "range": "1d", "window": t}),
            ),
            (
                "funnel",
                json!({"steps": ["page_view", "x"], "range": "1d", "breakdown": t}),
            ),
            (
                "retention",
                json!({"start_event": t, "return_event": "page_view", "range": "1d"}),
            ),
            (
                "retention",
                json!({"start_event": "page_view", "return_event": "x", "period": t, "range": "1d"}),
            ),
            (
                "dashboards",
                json!({"name": t, "definition": {"widgets": [{"type": t, "request": {}}]}}),
            ),
        ];
        for (path, body) in bodies {
            let (status, answer) = fx.post(path, body.clone()).await;
            assert!(
                matches!(status, 200 | 201 | 400),
                "{path} {body}: {status} {answer}"
            );
            assert!(!answer.contains(theirs), "{path} {body}: {answer}");
            if status == 400 {
                let parsed: Value = serde_json::from_str(&answer).unwrap();
                assert!(parsed["error"].is_string(), "{answer}");
            }
            cases += 1;
        }
    }
    fx.assert_intact_and_sealed().await;
    eprintln!("query security: {cases} hostile bodies, all refused or bound cleanly");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
