//! `/retention` options against brute force (issue 14), on the real pipeline:
//! start-event filters (only qualifying starts put a user in a cohort),
//! first-time cohorts (only users whose first qualifying start *ever* is in the
//! range), a breakdown by a field of the user's first qualifying start, and a
//! start event that is also the return event under a filter. Daily periods in
//! UTC; users and times come from a seed (`TALLY_RETENTION_SEED`, printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::{now_ms, Pipeline};

const TESTS: usize = 3;
static OPTIONS: Shared<Options> = Shared::new(TESTS);
const DAY: i64 = 86_400_000;
const PERIODS: usize = 4;

/// (user, name, plan, ts)
type Event = (String, &'static str, &'static str, i64);

struct Options {
    pipeline: Pipeline,
    events: Vec<Event>,
    range: (i64, i64),
}

impl Fixture for Options {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

async fn setup() -> Options {
    let seed: u64 = std::env::var("TALLY_RETENTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("TALLY_RETENTION_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = now_ms();
    let range = (now - 20 * DAY, now);
    let mut events = Vec::new();
    for u in 0..40 {
        let user = format!("o{u}");
        let plan = |rng: &mut rand::rngs::StdRng| if rng.random_bool(0.5) { "pro" } else { "free" };
        // Some users signed up long before the range (not first-time there).
        if u % 4 == 0 {
            let p = plan(&mut rng);
            events.push((
                user.clone(),
                "signup",
                p,
                range.0 - rng.random_range(DAY..20 * DAY),
            ));
        }
        let first = range.0 + rng.random_range(0..15 * DAY);
        for k in 0..rng.random_range(1..4) {
            let p = plan(&mut rng);
            let at = first + k * rng.random_range(0..3 * DAY);
            events.push((user.clone(), "signup", p, at.min(now - 1)));
        }
        for _ in 0..rng.random_range(0..6) {
            let at = first + rng.random_range(-DAY..6 * DAY);
            events.push((user.clone(), "visit", "", at.min(now - 1)));
        }
    }
    let body: Vec<Value> = events
        .iter()
        .map(|(user, name, plan, ts)| {
            let mut event = json!({"name": name, "user_id": user, "timestamp": ts});
            if !plan.is_empty() {
                event["properties"] = json!({"plan": plan});
            }
            event
        })
        .collect();
    let pipeline = Pipeline::start_shared("retention_options").await;
    pipeline.send(&body).await;
    pipeline.wait_rows(events.len()).await;
    Options {
        pipeline,
        events,
        range,
    }
}

async fn fixture() -> Lease<Options> {
    OPTIONS.get(setup).await
}

/// `cohort label (+ breakdown)` → (size, retained per period), by the
/// definition: a user's first qualifying start in the range (or, first-time,
/// ever — then it must lie in the range); returns in the range at or after it,
/// by UTC day; a same-name return is any other occurrence.
fn brute(
    fx: &Options,
    qualifies: impl Fn(&Event) -> bool,
    returns: &str,
    first_time: bool,
    breakdown: bool,
) -> BTreeMap<(String, String), (u64, Vec<u64>)> {
    let in_range = |ts: i64| (fx.range.0..fx.range.1).contains(&ts);
    let mut users: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in &fx.events {
        users.entry(&event.0).or_default().push(event);
    }
    let mut grid: BTreeMap<(String, String), (u64, Vec<u64>)> = BTreeMap::new();
    for events in users.values() {
        let starts = events.iter().filter(|e| qualifies(e));
        let first = if first_time {
            starts.min_by_key(|e| e.3).filter(|e| in_range(e.3))
        } else {
            starts.filter(|e| in_range(e.3)).min_by_key(|e| e.3)
        };
        let Some(first) = first else { continue };
        let day = |ts: i64| ts.div_euclid(DAY);
        let label = chrono_date(day(first.3));
        let key = (
            label,
            if breakdown {
                first.2.to_owned()
            } else {
                String::new()
            },
        );
        let cell = grid.entry(key).or_insert((0, vec![0; PERIODS + 1]));
        cell.0 += 1;
        let mut skipped_self = false;
        let mut offsets: Vec<i64> = Vec::new();
        let mut candidates: Vec<&&Event> = events
            .iter()
            .filter(|e| e.1 == returns && in_range(e.3) && e.3 >= first.3)
            .collect();
        candidates.sort_by_key(|e| e.3);
        for e in candidates {
            if std::ptr::eq(*e, *first) && !skipped_self {
                skipped_self = true;
                continue;
            }
            offsets.push(day(e.3) - day(first.3));
        }
        offsets.sort_unstable();
        offsets.dedup();
        for k in offsets
            .into_iter()
            .filter(|k| (0..=PERIODS as i64).contains(k))
        {
            cell.1[k as usize] += 1;
        }
    }
    grid
}

/// `YYYY-MM-DD` of a UTC day number.
fn chrono_date(day: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .unwrap()
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

async fn grid(fx: &Options, options: Value) -> BTreeMap<(String, String), (u64, Vec<u64>)> {
    let mut body = json!({"start_event": "signup", "return_event": "visit", "periods": PERIODS,
                          "tz": "UTC", "range": {"from": fx.range.0, "to": fx.range.1}});
    for (key, value) in options.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, answer) = fx.pipeline.post("retention", &body).await;
    assert_eq!(status, 200, "{answer}");
    tally_testkit::retention_grid(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_filters_and_first_time_cohorts() {
    let fx = fixture().await;
    let pro = |e: &Event| e.1 == "signup" && e.2 == "pro";
    let filter = json!({"filters": [{"property": "plan", "op": "eq", "value": "pro"}]});
    assert_eq!(
        grid(&fx, filter.clone()).await,
        brute(&fx, pro, "visit", false, false)
    );
    let mut first_time = filter;
    first_time["cohort"] = json!("first_time");
    let got = grid(&fx, first_time).await;
    assert_eq!(got, brute(&fx, pro, "visit", true, false));
    let any = |e: &Event| e.1 == "signup";
    let all_time = grid(&fx, json!({"cohort": "first_time"})).await;
    assert_eq!(all_time, brute(&fx, any, "visit", true, false));
    let sizes =
        |g: &BTreeMap<(String, String), (u64, Vec<u64>)>| g.values().map(|c| c.0).sum::<u64>();
    assert!(
        sizes(&all_time) < sizes(&grid(&fx, json!({})).await),
        "users who signed up before the range are not first-time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breakdown_by_the_first_start_s_property() {
    let fx = fixture().await;
    let any = |e: &Event| e.1 == "signup";
    let got = grid(&fx, json!({"breakdown": "properties.plan"})).await;
    assert_eq!(got, brute(&fx, any, "visit", false, true));
    assert!(got.keys().any(|k| k.1 == "pro") && got.keys().any(|k| k.1 == "free"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_start_that_is_also_the_return() {
    let fx = fixture().await;
    let pro = |e: &Event| e.1 == "signup" && e.2 == "pro";
    let options = json!({"return_event": "signup", "filters": [{"property": "plan", "op": "eq", "value": "pro"}]});
    assert_eq!(
        grid(&fx, options).await,
        brute(&fx, pro, "signup", false, false)
    );
}
