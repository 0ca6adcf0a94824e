//! The query service's tenant seal, against the real PostgreSQL, Redis and
//! ClickHouse: key misuse, cross-app attempts and an injection corpus through
//! every input of the read endpoints. Every answer must be a clean 4xx with a
//! machine-readable reason (never a 5xx), and no request may see another
//! app's numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use tally_testkit::{eventually, now_ms, post_batch, Pipeline};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_keys_seal_each_app_and_bad_input_gets_a_clean_4xx() {
    let pipeline = Pipeline::start("sec").await;
    let Pipeline {
        iso,
        gateway,
        query,
        http,
        app: mine,
        write_key: mine_write,
        read_key: mine_read,
        ..
    } = &pipeline;
    let theirs = tally_testkit::unique("sec");
    let theirs_write = tally_testkit::write_key(&theirs).await;
    let theirs_read = tally_testkit::read_key(&theirs).await;
    for (app, key, n) in [(mine, mine_write, 3), (&theirs, &theirs_write, 7)] {
        let events: Vec<Value> = (0..n)
            .map(
                |i| json!({"name": "page_view", "user_id": format!("u{i}"), "timestamp": now_ms()}),
            )
            .collect();
        let (status, _) = post_batch(
            http,
            &gateway.url(),
            key,
            &json!({"app_id": app, "events": events}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let base = query.url();
    let live = |app: &str| format!("{base}/api/v1/analytics/{app}/live?windows=60");
    let get = |url: String, auth: Option<String>| {
        let mut request = http.get(url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let bearer = |key: &str| Some(format!("Bearer {key}"));
    let own = eventually("own live numbers", Duration::from_secs(30), || async {
        let (status, body) = get(live(mine), bearer(mine_read)).await;
        (status == 200 && body["total_events"] == 3).then_some(body)
    })
    .await;
    assert_eq!(own["app_id"], mine.as_str());

    // Key misuse: every answer is 401/403 with a reason, never the data.
    let revoked = tally_testkit::read_key(mine).await;
    let client = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::revoke_keys(&client, &revoked[..8])
        .await
        .unwrap();
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
        (bearer(&theirs_read), 403, "key_app_mismatch"),
        (bearer(&theirs_write), 401, "invalid_read_key"),
        (bearer(&format!("{mine_read}x")), 401, "invalid_read_key"),
        (bearer(&mine_read.to_uppercase()), 401, "invalid_read_key"),
        (bearer(&"tr_".repeat(200)), 401, "invalid_authorization"),
    ];
    let mut cases = 0;
    for (auth, status, reason) in &misuse {
        let (got, body) = get(live(mine), auth.clone()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (*status, Some(*reason)),
            "{auth:?}"
        );
        cases += 1;
    }
    // The revoked key stops working once the key cache has refreshed (1 s in tests).
    eventually("revoked key refused", Duration::from_secs(10), || async {
        let (status, body) = get(live(mine), bearer(&revoked)).await;
        (status == 401 && body["error"] == "invalid_read_key").then_some(())
    })
    .await;
    cases += 1;

    // Cross-app: this app's key never opens another app, whatever the path looks like.
    for path_app in [
        theirs.clone(),
        theirs.to_uppercase(),
        format!("{mine}/../{theirs}"),
        format!("{mine}%2F..%2F{theirs}"),
        format!("{theirs}%00"),
        format!(" {theirs}"),
    ] {
        let (status, body) = get(live(&path_app), bearer(mine_read)).await;
        assert!(
            matches!(status, 400 | 403 | 404),
            "{path_app}: {status} {body}"
        );
        assert_ne!(body["total_events"], 7, "{path_app} leaked the other app");
        cases += 1;
    }

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
            let (status, body) = get(url.clone(), bearer(mine_read)).await;
            assert!((400..500).contains(&status), "{url}: {status} {body}");
            assert!(body["error"].is_string() || status == 404, "{url}: {body}");
            cases += 1;
        }
        // …and as a stream token (no header).
        let url = format!("{base}/api/v1/analytics/{mine}/live/stream?token={encoded}");
        let (status, body) = get(url.clone(), None).await;
        assert!(matches!(status, 400 | 401), "{url}: {status} {body}");
        assert!(body["error"].is_string(), "{url}: {body}");
        cases += 1;
    }
    // A stream token of one app opens no other app's stream.
    let token: Value = http
        .post(format!("{base}/api/v1/analytics/{mine}/live/token"))
        .bearer_auth(mine_read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let url = format!("{base}/api/v1/analytics/{theirs}/live/stream?token={token}");
    let (status, body) = get(url, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("key_app_mismatch"))
    );
    cases += 1;
    // The same corpus through every field of the JSON bodies: identifiers are
    // refused (400), values are bound (200, matching nothing); never a 5xx,
    // never the other app's data.
    let post = |path: &str, body: Value| {
        let request = http
            .post(format!("{base}/api/v1/analytics/{mine}/{path}"))
            .bearer_auth(mine_read)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
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
            let (status, answer) = post(path, body.clone()).await;
            assert!(
                matches!(status, 200 | 201 | 400),
                "{path} {body}: {status} {answer}"
            );
            assert!(!answer.contains(theirs.as_str()), "{path} {body}: {answer}");
            if status == 400 {
                let parsed: Value = serde_json::from_str(&answer).unwrap();
                assert!(parsed["error"].is_string(), "{answer}");
            }
            cases += 1;
        }
    }
    // The stores are intact and still sealed.
    assert_eq!(tally_testkit::clickhouse_counts(iso, mine).await.0, 3);
    assert_eq!(tally_testkit::clickhouse_counts(iso, &theirs).await.0, 7);
    let (status, body) = get(live(mine), bearer(mine_read)).await;
    assert_eq!((status, body["total_events"].as_u64()), (200, Some(3)));
    eprintln!("query security: {cases} hostile requests, all refused cleanly");

    pipeline.stop().await;
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
