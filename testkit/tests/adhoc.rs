//! `/query` against the real pipeline: answers equal a brute-force computation
//! over the posted events, every example statement runs on the local
//! ClickHouse (18.16), identical queries share one answer, and bad queries get
//! a 400 with a reason.
//!
//! One pipeline and one data set (121 events of one app, sent and stored once)
//! are shared by the tests of this file ([`tally_testkit::shared`]); each
//! question is its own test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::{clickhouse_counts, eventually, now_ms, post_batch, services, Pipeline};

/// The tests below that take the fixture (when it is torn down).
const TESTS: usize = 11;
static ADHOC: Shared<Adhoc> = Shared::new(TESTS);

/// The pipeline and what was sent through it.
struct Adhoc {
    pipeline: Pipeline,
    /// The 120 events of the batch: (name, user, plan, amount). The solo
    /// visitor's page view (plan "free", amount 0) comes on top.
    events: Vec<(String, String, &'static str, i64)>,
}

impl Fixture for Adhoc {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

async fn fixture() -> Lease<Adhoc> {
    ADHOC.get(setup).await
}

async fn setup() -> Adhoc {
    let pipeline = Pipeline::start_shared("adhoc").await;
    let Pipeline {
        iso,
        gateway,
        http,
        app,
        write_key: key,
        ..
    } = &pipeline;
    // 120 events: (name, user, plan, amount).
    let now = now_ms();
    let events: Vec<(String, String, &str, i64)> = (0..120)
        .map(|i| {
            let name = ["page_view", "page_view", "add_to_cart", "purchase"][i % 4].to_owned();
            let plan = ["free", "pro", "team"][i % 3];
            (name, format!("u{}", i % 17), plan, (i as i64 * 7) % 50)
        })
        .collect();
    let body: Vec<Value> = events
        .iter()
        .map(|(name, user, plan, amount)| json!({"name": name, "user_id": user, "timestamp": now, "properties": {"plan": plan, "amount": amount}}))
        .collect();
    let (status, answer) = post_batch(
        http,
        &gateway.url(),
        key,
        &json!({"app_id": app, "events": body}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // One more visitor who leaves after a single page view: a bounce.
    let solo = json!({"app_id": app, "events": [{"name": "page_view", "user_id": "solo", "timestamp": now,
        "properties": {"plan": "free", "amount": 0}}]});
    let (status, answer) = post_batch(http, &gateway.url(), key, &solo).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    eventually("rows", Duration::from_secs(30), || async {
        (clickhouse_counts(iso, app).await.0 >= 121).then_some(())
    })
    .await;
    Adhoc { pipeline, events }
}

impl Adhoc {
    /// POSTs `body` to `/query` with the read key: (status, answer, `x-tally-cache`).
    async fn ask(&self, body: Value) -> (u16, Value, Option<String>) {
        let p = &self.pipeline;
        let request = p.http.post(p.api("query")).bearer_auth(&p.read_key);
        let response = request.json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("x-tally-cache")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, response.json::<Value>().await.unwrap(), cache)
    }

    /// The app's rows in ClickHouse.
    async fn stored_rows(&self) -> u64 {
        clickhouse_counts(&self.pipeline.iso, &self.pipeline.app)
            .await
            .0
    }
}

/// `dim` → `metric` of every result row.
fn rows(answer: &Value, dim: &str, metric: &str) -> BTreeMap<String, f64> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[dim].as_str().unwrap().to_owned(),
                r[metric].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_metrics_count_visits_bounces_and_durations() {
    let fx = fixture().await;
    // Session metrics: 17 visitors with several events each, one with a single page view.
    fx.pipeline.wait_sessions(18).await;
    let (status, answer, _) = fx
        .ask(json!({"metrics": ["sessions", "bounce_rate", "session_duration"], "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let row = &answer["results"][0];
    assert_eq!(row["sessions"].as_f64(), Some(18.0), "{answer}");
    assert!(
        (row["bounce_rate"].as_f64().unwrap() - 1.0 / 18.0).abs() < 1e-9,
        "{answer}"
    );
    assert_eq!(
        row["session_duration"].as_f64(),
        Some(0.0),
        "all events at one instant"
    );
    // Session and event metrics side by side (issue 14), each from its table.
    let (status, answer, _) = fx
        .ask(json!({"metrics": ["sessions", "events"], "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let row = &answer["results"][0];
    assert_eq!(
        (row["sessions"].as_f64(), row["events"].as_f64()),
        (Some(18.0), Some(121.0)),
        "{answer}"
    );
    let solo_filter = json!([{"property": "plan", "op": "eq", "value": "x"}]);
    let (status, _, _) = fx
        .ask(json!({"metric": "sessions", "range": "1d", "filters": solo_filter}))
        .await;
    assert_eq!(status, 400, "sessions have no properties");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_by_name_match_brute_force() {
    let fx = fixture().await;
    let (status, answer, _) = fx
        .ask(json!({"metric": "events", "group_by": "name", "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for (name, ..) in &fx.events {
        *want.entry(name.clone()).or_default() += 1.0;
    }
    *want.entry("page_view".into()).or_default() += 1.0; // the solo visitor
    assert_eq!(rows(&answer, "name", "events"), want);
    assert!(answer["query_time_ms"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_users_of_a_filtered_plan_match_brute_force() {
    let fx = fixture().await;
    // Unique users of plan "pro" by name.
    let (_, answer, _) = fx
        .ask(
            json!({"metric": "unique_users", "group_by": "name", "range": "1d",
        "filters": [{"property": "plan", "op": "eq", "value": "pro"}]}),
        )
        .await;
    let mut users: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (name, user, plan, _) in &fx.events {
        if *plan == "pro" {
            users.entry(name.clone()).or_default().insert(user);
        }
    }
    let want: BTreeMap<String, f64> = users
        .into_iter()
        .map(|(k, v)| (k, v.len() as f64))
        .collect();
    assert_eq!(rows(&answer, "name", "unique_users"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn property_sums_under_range_and_set_filters_match_brute_force() {
    let fx = fixture().await;
    // Sum of a numeric property per plan, amounts >= 10 only, in/not_in.
    let (_, answer, _) = fx.ask(json!({"metric": {"sum": "amount"}, "group_by": "properties.plan", "range": "1d",
        "filters": [{"property": "amount", "op": "gte", "value": 10}, {"property": "plan", "op": "not_in", "value": ["team"]}]})).await;
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for (_, _, plan, amount) in &fx.events {
        if *amount >= 10 && *plan != "team" {
            *want.entry((*plan).to_owned()).or_default() += *amount as f64;
        }
    }
    assert_eq!(rows(&answer, "properties.plan", "sum_amount"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_match_brute_force_and_a_repeated_query_is_served_from_the_cache() {
    let fx = fixture().await;
    // Segment: events of users who purchased.
    let buyers: BTreeSet<&str> = fx
        .events
        .iter()
        .filter(|e| e.0 == "purchase")
        .map(|e| e.1.as_str())
        .collect();
    let want = fx
        .events
        .iter()
        .filter(|e| buyers.contains(e.1.as_str()))
        .count() as f64;
    let body = json!({"metric": "events", "range": "1d", "segment": {"did": "purchase"}});
    let (_, answer, first) = fx.ask(body.clone()).await;
    assert_eq!(
        answer["results"][0]["events"].as_f64(),
        Some(want),
        "{answer}"
    );
    // The same query again within 5 s: served from the cache.
    let (_, again, second) = fx.ask(body).await;
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("miss"), Some("hit"))
    );
    assert_eq!(again, answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sampling_keeps_whole_users_and_scales_counts_back() {
    let fx = fixture().await;
    // Sampling: whole users by id hash, counts scaled back; a share of 1 is exact.
    let (_, exact, _) = fx
        .ask(json!({"metric": "events", "range": "1d", "limit": 7}))
        .await;
    let (_, one, _) = fx
        .ask(json!({"metric": "events", "range": "1d", "sample": 1, "limit": 7}))
        .await;
    assert_eq!(one["results"], exact["results"]);
    let (status, half, _) = fx
        .ask(json!({"metric": "events", "range": "1d", "sample": 0.5}))
        .await;
    assert_eq!(status, 200, "{half}");
    assert_eq!(half["sampled"], 0.5);
    let in_sample: u64 = fx
        .pipeline
        .iso
        .clickhouse_client()
        .query("SELECT count() FROM events WHERE app_id = ? AND cityHash64(distinct_id) % 10000 < 5000")
        .bind(fx.pipeline.app.as_str())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        half["results"][0]["events"].as_f64(),
        Some(2.0 * in_sample as f64),
        "{half}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_example_statement_runs_on_this_clickhouse() {
    let fx = fixture().await;
    // Every example statement (the golden inputs) runs on this ClickHouse.
    for (name, body) in query_service::adhoc::examples() {
        let (status, answer, _) = fx.ask(body).await;
        assert_eq!(status, 200, "{name}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_queries_get_a_400_with_a_reason() {
    let fx = fixture().await;
    // Refusals are 400s with a reason.
    for body in [
        json!({"metric": "events", "range": "7d", "filters": [{"property": "x", "op": "like", "value": "%"}]}),
        json!({"metric": "events", "range": "9999d"}),
        json!({"metric": "events", "range": "7d", "group_by": ["a", "b", "c", "d"]}),
        json!({"metric": "events; DROP TABLE events", "range": "7d"}),
        json!({"metric": "events", "range": "7d", "sql": "SELECT 1"}),
    ] {
        let (status, answer, _) = fx.ask(body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_query")),
            "{body}"
        );
    }
    assert_eq!(fx.stored_rows().await, 121, "the table is intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_by_cardinality_is_capped_by_the_service() {
    let fx = fixture().await;
    let Pipeline {
        iso,
        http,
        app,
        read_key,
        ..
    } = &fx.pipeline;
    // Group-by cardinality: a service allowing 10 distinct values refuses the
    // 50 amounts, answers the 3 plans.
    let narrow = services::query(query_service::Config {
        max_groups: 10,
        ..services::query_config(iso)
    })
    .await;
    let narrow_url = format!("{}/api/v1/analytics/{app}/query", narrow.url());
    for (group_by, status, reason) in [
        ("properties.amount", 400, Some("too_many_groups")),
        ("properties.plan", 200, None),
    ] {
        let response = http
            .post(&narrow_url)
            .bearer_auth(read_key)
            .json(&json!({"metric": "events", "range": "1d", "group_by": group_by}))
            .send()
            .await
            .unwrap();
        let got = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, reason),
            "{group_by}: {answer}"
        );
    }
    narrow.stop().await;
    assert_eq!(fx.stored_rows().await, 121, "the table is intact");
}

/// `?q=` carries the request in a link, and `format=csv` answers the same
/// rows as text (events per name against brute force; a comparison's
/// previous period as rows of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_downloads_the_rows_as_csv() {
    let fx = fixture().await;
    let p = &fx.pipeline;
    let request =
        json!({"metric": "events", "group_by": "name", "range": "1d", "compare": "previous"});
    let response = p
        .http
        .get(p.api("query"))
        .query(&[("q", request.to_string()), ("format", "csv".into())])
        .bearer_auth(&p.read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let text = response.text().await.unwrap();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (name, events, period) = (column("name"), column("events"), column("period"));
    assert_eq!(header.len(), 3, "{header:?}");
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 3, "{line}");
        if cells[period] == "current" {
            got.insert(cells[name].to_owned(), cells[events].parse().unwrap());
        } else {
            assert_eq!(cells[period], "previous", "{line}");
        }
    }
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for (name, ..) in &fx.events {
        *want.entry(name.clone()).or_default() += 1.0;
    }
    *want.entry("page_view".into()).or_default() += 1.0; // the solo visitor
    assert_eq!(got, want);
    // Both places at once, or another format: refused.
    for (query, body) in [
        (vec![("q", request.to_string())], Some(request.clone())),
        (vec![("format", "xml".to_owned())], Some(request.clone())),
    ] {
        let mut call = p
            .http
            .post(p.api("query"))
            .query(&query)
            .bearer_auth(&p.read_key);
        if let Some(body) = body {
            call = call.json(&body);
        }
        let response = call.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "invalid_parameter", "{answer}");
    }
}

/// Property discovery: the top keys and a field's top values with their
/// event counts, against brute force.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn properties_and_values_are_suggested_with_counts() {
    let fx = fixture().await;
    let p = &fx.pipeline;
    let get = |path: &str, query: Vec<(&'static str, String)>| {
        let request = p
            .http
            .get(p.api(path))
            .query(&query)
            .bearer_auth(&p.read_key);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let all = fx.events.len() as u64 + 1; // and the solo visitor
    let (status, answer) = get("properties", vec![("range", "1d".into())]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["properties"],
        json!([{"key": "amount", "count": all}, {"key": "plan", "count": all}])
    );
    assert!(answer["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("$country")));
    let mut plans: BTreeMap<String, u64> = BTreeMap::new();
    for (_, _, plan, _) in &fx.events {
        *plans.entry((*plan).to_owned()).or_default() += 1;
    }
    *plans.entry("free".into()).or_default() += 1;
    let query = |prefix: &str| {
        vec![
            ("field", "properties.plan".to_owned()),
            ("range", "1d".to_owned()),
            ("prefix", prefix.to_owned()),
        ]
    };
    let (status, answer) = get("properties/values", query("")).await;
    assert_eq!(status, 200, "{answer}");
    let got: BTreeMap<String, u64> = answer["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, plans);
    let (_, answer) = get("properties/values", query("PR")).await;
    assert_eq!(
        answer["values"],
        json!([{"value": "pro", "count": plans["pro"]}])
    );
    let (status, answer) = get("properties/values", vec![("field", "a b".into())]).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
}
