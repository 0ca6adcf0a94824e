//! Query semantics against brute force over generated events, on the real
//! pipeline and ClickHouse 18.16 (issue 14):
//!
//! * numbers as numbers — `sum`/`avg` count only events whose value is a
//!   number (`20`, `20.0`, `"20.00"`, `"1e2"`), never missing or non-numeric
//!   ones as 0; comparisons accept numeric strings; `eq` with a number is
//!   numeric, with a string textual; `null` means "not set";
//! * names — a bare name that is both a built-in field and a property the app
//!   sent is refused with a hint; `$name` and `properties.name` say which; the
//!   answer lists what each name resolved to;
//! * bounce — a session with exactly one page view, among sessions with one;
//! * several metrics at once — event and session metrics side by side.
//!
//! The data set is generated from a seed (`TALLY_SEMANTICS_SEED`, printed) and
//! shared by the tests of this file ([`tally_testkit::shared`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use query_service::sql::parse_number;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::{now_ms, Pipeline};

const TESTS: usize = 6;
static SEMANTICS: Shared<Semantics> = Shared::new(TESTS);

/// The pipeline and the events sent through it (their `properties` as sent).
struct Semantics {
    pipeline: Pipeline,
    events: Vec<Value>,
    /// Page views per user (each user's events form one session).
    page_views: Vec<usize>,
}

impl Fixture for Semantics {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

const USERS: usize = 60;

/// Values a `price` property takes (`None`: the property is left out).
fn price(rng: &mut impl Rng) -> Option<Value> {
    let choices = [
        Some(json!(20)),
        Some(json!(20.0)),
        Some(json!("20.00")),
        Some(json!(35.5)),
        Some(json!("1e2")),
        Some(json!(-3)),
        Some(json!("007")),
        Some(json!("free")),
        Some(json!("")),
        Some(json!("2.")),
        Some(Value::Null),
        None,
    ];
    choices[rng.random_range(0..choices.len())].clone()
}

async fn setup() -> Semantics {
    let seed: u64 = std::env::var("TALLY_SEMANTICS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("TALLY_SEMANTICS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pipeline = Pipeline::start_shared("semantics").await;
    let base = now_ms() - 600_000;
    let mut events = Vec::new();
    let mut page_views = Vec::new();
    for user in 0..USERS {
        let views = user % 4;
        let clicks = if views == 0 { 1 + user % 3 } else { user % 3 };
        page_views.push(views);
        let names =
            std::iter::repeat_n("page_view", views).chain(std::iter::repeat_n("click", clicks));
        for (i, name) in names.enumerate() {
            let mut properties = Map::new();
            if let Some(price) = price(&mut rng) {
                properties.insert("price".into(), price);
            }
            if rng.random_bool(0.5) {
                let region = ["north", "south"][rng.random_range(0..2)];
                properties.insert("region".into(), json!(region));
            }
            properties.insert("plan".into(), json!(["free", "pro"][user % 2]));
            events.push(json!({
                "name": name,
                "user_id": format!("u{user}"),
                "timestamp": base + (user as i64) * 1_000 + i as i64 * 10,
                "properties": properties,
            }));
        }
    }
    pipeline.send(&events).await;
    pipeline.wait_rows(events.len()).await;
    Semantics {
        pipeline,
        events,
        page_views,
    }
}

async fn fixture() -> Lease<Semantics> {
    SEMANTICS.get(setup).await
}

/// The numeric value of a sent property, by the documented rule.
fn numeric(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// The stored text of a sent property (`None`: not set, which `null` is).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        other => Some(tally_schemas::row::property_text(other)),
    }
}

impl Semantics {
    fn prices(&self) -> impl Iterator<Item = Option<&Value>> {
        self.events.iter().map(|e| e["properties"].get("price"))
    }

    async fn ask(&self, body: Value) -> (u16, Value) {
        self.pipeline.post("query", &body).await
    }

    async fn count_where(&self, filter: Value) -> f64 {
        let (status, answer) = self
            .ask(json!({"metric": "events", "filters": [filter], "range": "1d"}))
            .await;
        assert_eq!(status, 200, "{filter}: {answer}");
        answer["results"][0]["events"].as_f64().unwrap_or(0.0)
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sum_and_avg_count_only_numeric_values() {
    let fx = fixture().await;
    let numbers: Vec<f64> = fx.prices().filter_map(numeric).collect();
    let sum: f64 = numbers.iter().sum();
    let (status, answer) = fx
        .ask(json!({"metrics": [{"sum": "price"}, {"avg": "price"}, "events"], "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let row = &answer["results"][0];
    assert_eq!(row["events"].as_f64(), Some(fx.events.len() as f64));
    assert!(
        close(row["sum_price"].as_f64().unwrap(), sum),
        "{answer} vs {sum}"
    );
    let avg = sum / numbers.len() as f64;
    assert!(
        close(row["avg_price"].as_f64().unwrap(), avg),
        "{answer} vs {avg}"
    );
    // Over the events of one plan, grouped by the property.
    let (status, answer) = fx
        .ask(json!({"metric": {"avg": "price"}, "group_by": "properties.plan", "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    for row in answer["results"].as_array().unwrap() {
        let plan = row["properties.plan"].as_str().unwrap();
        let values: Vec<f64> = fx
            .events
            .iter()
            .filter(|e| e["properties"]["plan"] == plan)
            .filter_map(|e| numeric(e["properties"].get("price")))
            .collect();
        let want = values.iter().sum::<f64>() / values.len() as f64;
        assert!(
            close(row["avg_price"].as_f64().unwrap(), want),
            "{plan}: {row} vs {want}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_compare_numbers_as_numbers_and_null_as_not_set() {
    let fx = fixture().await;
    type Rule = Box<dyn Fn(Option<&Value>) -> bool>;
    let n = |f: fn(f64) -> bool| -> Rule { Box::new(move |v| numeric(v).is_some_and(f)) };
    let cases: Vec<(Value, Rule)> = vec![
        (
            json!({"property": "price", "op": "gt", "value": 50}),
            n(|x| x > 50.0),
        ),
        (
            json!({"property": "price", "op": "gte", "value": "20"}),
            n(|x| x >= 20.0),
        ),
        (
            json!({"property": "price", "op": "lt", "value": 0}),
            n(|x| x < 0.0),
        ),
        (
            json!({"property": "price", "op": "lte", "value": "7.0"}),
            n(|x| x <= 7.0),
        ),
        (
            json!({"property": "price", "op": "eq", "value": 20}),
            n(|x| x == 20.0),
        ),
        (
            json!({"property": "price", "op": "neq", "value": 20}),
            Box::new(|v| numeric(v) != Some(20.0)),
        ),
        (
            json!({"property": "price", "op": "eq", "value": "20.00"}),
            Box::new(|v| text(v).as_deref() == Some("20.00")),
        ),
        (
            json!({"property": "price", "op": "in", "value": [20, 35.5, 100]}),
            n(|x| [20.0, 35.5, 100.0].contains(&x)),
        ),
        (
            json!({"property": "price", "op": "not_in", "value": [20, 7]}),
            Box::new(|v| !numeric(v).is_some_and(|x| x == 20.0 || x == 7.0)),
        ),
        // Found by the schema fuzz: numbers that print as integers and as
        // fractions in one list (an array literal without a common type).
        (
            json!({"property": "price", "op": "not_in", "value": [-4.858964638681293e16, 2359421222461472.0, 20, 1.5e-144]}),
            Box::new(|v| !numeric(v).is_some_and(|x| x == 20.0)),
        ),
        (
            json!({"property": "price", "op": "eq", "value": null}),
            Box::new(|v| text(v).is_none()),
        ),
        (
            json!({"property": "price", "op": "neq", "value": null}),
            Box::new(|v| text(v).is_some()),
        ),
        (
            json!({"property": "price", "op": "is_set"}),
            Box::new(|v| text(v).is_some()),
        ),
    ];
    for (filter, rule) in cases {
        let want = fx.prices().filter(|v| rule(*v)).count() as f64;
        assert_eq!(fx.count_where(filter.clone()).await, want, "{filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_both_built_in_and_sent_is_refused_with_a_hint() {
    let fx = fixture().await;
    // The app sent a `region` property; `region` is also the geo-IP field.
    let (status, answer) = fx
        .ask(json!({"metric": "events", "group_by": "region", "range": "1d"}))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("ambiguous_field")),
        "{answer}"
    );
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("$region") && message.contains("properties.region"),
        "{message}"
    );
    let (status, _) = fx
        .ask(json!({"metric": "events", "filters": [{"property": "region", "op": "eq", "value": "north"}], "range": "1d"}))
        .await;
    assert_eq!(status, 400, "a filter is refused too");

    // Each namespace says which one is meant.
    let (status, answer) = fx
        .ask(json!({"metric": "events", "group_by": "properties.region", "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for event in &fx.events {
        let region = event["properties"]["region"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *want.entry(region).or_default() += 1.0;
    }
    let got: BTreeMap<String, f64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["properties.region"].as_str().unwrap().to_owned(),
                r["events"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        answer["fields"],
        json!({"properties.region": "properties.region"})
    );
    let (status, answer) = fx
        .ask(json!({"metric": "events", "group_by": "$region", "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    // Loopback clients have no geo-IP region: one group of every event.
    assert_eq!(answer["results"][0]["$region"], "");
    assert_eq!(
        answer["results"][0]["events"].as_f64(),
        Some(fx.events.len() as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_say_what_each_name_resolved_to() {
    let fx = fixture().await;
    // `country` was never sent as a property: the built-in field, unambiguously.
    let (status, answer) = fx
        .ask(
            json!({"metric": {"sum": "price"}, "group_by": ["country", "day"],
                    "filters": [{"property": "plan", "op": "eq", "value": "pro"}], "range": "1d"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["fields"],
        json!({"country": "$country", "day": "$day", "plan": "properties.plan", "price": "properties.price"})
    );
    let want: f64 = fx
        .events
        .iter()
        .filter(|e| e["properties"]["plan"] == "pro")
        .filter_map(|e| numeric(e["properties"].get("price")))
        .sum();
    let got: f64 = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sum_price"].as_f64().unwrap())
        .sum();
    assert!(close(got, want), "{got} vs {want}");
    // An unknown built-in name is refused with the list.
    let (status, answer) = fx
        .ask(json!({"metric": "events", "group_by": "$plan", "range": "1d"}))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_query")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounce_is_a_session_of_exactly_one_page_view() {
    let fx = fixture().await;
    fx.pipeline.wait_sessions(USERS as u64).await;
    let (status, answer) = fx
        .ask(json!({"metrics": ["sessions", "bounce_rate"], "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let with_views = fx.page_views.iter().filter(|v| **v >= 1).count() as f64;
    let bounces = fx.page_views.iter().filter(|v| **v == 1).count() as f64;
    let row = &answer["results"][0];
    assert_eq!(row["sessions"].as_f64(), Some(USERS as f64), "{answer}");
    assert!(
        close(row["bounce_rate"].as_f64().unwrap(), bounces / with_views),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_and_session_metrics_side_by_side() {
    let fx = fixture().await;
    fx.pipeline.wait_sessions(USERS as u64).await;
    let numbers: Vec<f64> = fx.prices().filter_map(numeric).collect();
    let body = json!({"metrics": ["events", "sessions", {"avg": "price"}, "bounce_rate", "unique_users"], "range": "1d"});
    let (status, answer) = fx.ask(body).await;
    assert_eq!(status, 200, "{answer}");
    let row = &answer["results"][0];
    let with_views = fx.page_views.iter().filter(|v| **v >= 1).count() as f64;
    let bounces = fx.page_views.iter().filter(|v| **v == 1).count() as f64;
    assert_eq!(
        row["events"].as_f64(),
        Some(fx.events.len() as f64),
        "{answer}"
    );
    assert_eq!(row["sessions"].as_f64(), Some(USERS as f64), "{answer}");
    assert_eq!(row["unique_users"].as_f64(), Some(USERS as f64), "{answer}");
    let avg = numbers.iter().sum::<f64>() / numbers.len() as f64;
    assert!(close(row["avg_price"].as_f64().unwrap(), avg), "{answer}");
    assert!(
        close(row["bounce_rate"].as_f64().unwrap(), bounces / with_views),
        "{answer}"
    );
    // Grouped by a bucket both tables have: per day, the same totals.
    let (status, answer) = fx
        .ask(json!({"metrics": ["sessions", "events"], "group_by": "day", "range": "1d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let total = |name: &str| -> f64 {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[name].as_f64().unwrap())
            .sum()
    };
    assert_eq!(
        (total("sessions"), total("events")),
        (USERS as f64, fx.events.len() as f64)
    );
    // A property is not something sessions have.
    let (status, answer) = fx
        .ask(json!({"metrics": ["events", "sessions"], "group_by": "properties.plan", "range": "1d"}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("both"),
        "{answer}"
    );
}
