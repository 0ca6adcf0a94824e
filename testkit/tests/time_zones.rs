//! Calendar periods in a time zone against brute force (issue 14), on the real
//! pipeline and ClickHouse 18.16: events placed on and around local midnights
//! (one millisecond before, at, twice at the same millisecond, after) in
//! Asia/Kolkata (+05:30) and America/New_York (both 2026 daylight-saving
//! changes, whose repeated autumn hour stays two rows told apart by their
//! offsets); `/query` buckets (hour, day, week, month) and `/retention`
//! cohorts (day, month) in each zone equal a computation with chrono-tz; an app
//! without `tz` in the query is answered in its own zone; a query compared
//! with the previous period answers both periods from one statement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_testkit::shared::{Fixture, Lease, Shared};
use tally_testkit::Pipeline;

const TESTS: usize = 4;
static ZONES: Shared<Zones> = Shared::new(TESTS);

/// The pipeline and the sent events: (epoch ms, name, user).
struct Zones {
    pipeline: Pipeline,
    events: Vec<(i64, &'static str, String)>,
    range: (i64, i64),
}

impl Fixture for Zones {
    async fn teardown(self) {
        self.pipeline.stop().await;
    }
}

/// Local midnight of `date` in `zone`, epoch ms.
fn midnight(zone: Tz, (y, m, d): (i32, u32, u32)) -> i64 {
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
    zone.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .timestamp_millis()
}

async fn setup() -> Zones {
    let pipeline = Pipeline::start_shared("zones").await;
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let new_york: Tz = "America/New_York".parse().unwrap();
    let mut instants = Vec::new();
    for (zone, dates) in [
        (
            kolkata,
            [(2026, 3, 7), (2026, 3, 8), (2026, 3, 31), (2026, 4, 1)],
        ),
        (
            new_york,
            [(2026, 3, 8), (2026, 3, 9), (2026, 11, 1), (2026, 11, 2)],
        ),
    ] {
        for date in dates {
            let m = midnight(zone, date);
            instants.extend([m - 1, m, m, m + 1, m + 3_600_000 * 2 + 1]);
        }
    }
    // Around New York's clock changes: 01:59:59.999 and 03:00 (spring), both 01:30s (autumn).
    for (y, mo, d, h, mi) in [
        (2026, 3, 8, 6, 59),
        (2026, 3, 8, 7, 0),
        (2026, 11, 1, 5, 30),
        (2026, 11, 1, 6, 30),
    ] {
        let utc = chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        instants.push(utc.timestamp_millis() - 1);
        instants.push(utc.timestamp_millis());
    }
    instants.sort_unstable();
    let events: Vec<(i64, &'static str, String)> = instants
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let name = if i % 3 == 0 { "signup" } else { "visit" };
            (*ms, name, format!("u{}", i % 7))
        })
        .collect();
    let body: Vec<Value> = events
        .iter()
        .map(|(ms, name, user)| json!({"name": name, "user_id": user, "timestamp": ms}))
        .collect();
    pipeline.send(&body).await;
    pipeline.wait_rows(events.len()).await;
    // The app's own zone, for queries without `tz`.
    let client = tally_testkit::postgres().connect().await.unwrap();
    assert!(
        tally_common::postgres::set_time_zone(&client, &pipeline.app, "Asia/Kolkata")
            .await
            .unwrap()
    );
    let range = (
        instants[0] - 86_400_000,
        instants[instants.len() - 1] + 86_400_000,
    );
    Zones {
        pipeline,
        events,
        range,
    }
}

async fn fixture() -> Lease<Zones> {
    ZONES.get(setup).await
}

/// The local bucket text of `ms` in `zone`, as ClickHouse prints it.
fn bucket(zone: Tz, ms: i64, unit: &str) -> String {
    let local = zone.timestamp_millis_opt(ms).unwrap();
    let date = local.date_naive();
    match unit {
        "hour" => local.format("%Y-%m-%dT%H:00:00%:z").to_string(),
        "day" => date.to_string(),
        "week" => (date - chrono::Duration::days(i64::from(date.weekday().num_days_from_monday())))
            .to_string(),
        _ => date.with_day(1).unwrap().to_string(),
    }
}

impl Zones {
    fn range(&self) -> Value {
        json!({"from": self.range.0, "to": self.range.1})
    }

    async fn counts(&self, unit: &str, tz: Option<&str>) -> (BTreeMap<String, f64>, Value) {
        let mut body =
            json!({"metric": "events", "group_by": unit, "range": self.range(), "limit": 1000});
        if let Some(tz) = tz {
            body["tz"] = json!(tz);
        }
        let (status, answer) = self.pipeline.post("query", &body).await;
        assert_eq!(status, 200, "{answer}");
        let counts = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[unit].as_str().unwrap().to_owned(),
                    r["events"].as_f64().unwrap(),
                )
            })
            .collect();
        (counts, answer)
    }

    fn expected(&self, zone: Tz, unit: &str) -> BTreeMap<String, f64> {
        let mut want = BTreeMap::new();
        for (ms, ..) in &self.events {
            *want.entry(bucket(zone, *ms, unit)).or_default() += 1.0;
        }
        want
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_are_calendar_periods_of_the_zone() {
    let fx = fixture().await;
    for name in ["Asia/Kolkata", "America/New_York", "UTC"] {
        let zone: Tz = name.parse().unwrap();
        for unit in ["hour", "day", "week", "month"] {
            let (got, answer) = fx.counts(unit, Some(name)).await;
            assert_eq!(got, fx.expected(zone, unit), "{name} {unit}");
            assert_eq!(answer["time_zone"], name);
        }
    }
    let (status, answer) = fx
        .pipeline
        .post(
            "query",
            &json!({"metric": "events", "range": "7d", "tz": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_query")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_without_tz_uses_the_app_s_zone() {
    let fx = fixture().await;
    let (got, answer) = fx.counts("day", None).await;
    assert_eq!(answer["time_zone"], "Asia/Kolkata");
    assert_eq!(got, fx.expected("Asia/Kolkata".parse().unwrap(), "day"));
}

/// Retention by brute force: cohort = local period of the user's first signup;
/// a visit at or after it counts in its local period's offset.
fn retention(fx: &Zones, zone: Tz, period: &str) -> BTreeMap<String, (u64, Vec<u64>)> {
    let index = |ms: i64| -> i64 {
        let date = zone.timestamp_millis_opt(ms).unwrap().date_naive();
        if period == "day" {
            i64::from(date.num_days_from_ce())
        } else {
            i64::from(date.year()) * 12 + i64::from(date.month0())
        }
    };
    let mut users: BTreeMap<&str, (i64, Vec<i64>)> = BTreeMap::new();
    for (ms, name, user) in &fx.events {
        let entry = users.entry(user).or_insert((i64::MAX, Vec::new()));
        if *name == "signup" {
            entry.0 = entry.0.min(*ms);
        } else {
            entry.1.push(*ms);
        }
    }
    let mut grid: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for (first, visits) in users.values().filter(|(first, _)| *first != i64::MAX) {
        let label = bucket(zone, *first, if period == "day" { "day" } else { "month" });
        let cell = grid.entry(label).or_insert((0, vec![0; 4]));
        cell.0 += 1;
        let mut offsets: Vec<i64> = visits
            .iter()
            .filter(|v| **v >= *first)
            .map(|v| index(*v) - index(*first))
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        for k in offsets.into_iter().filter(|k| (0..4).contains(k)) {
            cell.1[k as usize] += 1;
        }
    }
    grid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_cohorts_are_calendar_periods_of_the_zone() {
    let fx = fixture().await;
    for name in ["Asia/Kolkata", "America/New_York"] {
        for period in ["day", "month"] {
            let body = json!({"start_event": "signup", "return_event": "visit", "period": period,
                              "periods": 3, "tz": name, "range": fx.range()});
            let (status, answer) = fx.pipeline.post("retention", &body).await;
            assert_eq!(status, 200, "{answer}");
            let got: BTreeMap<String, (u64, Vec<u64>)> = tally_testkit::retention_grid(&answer)
                .into_iter()
                .map(|((cohort, _), cell)| (cohort, cell))
                .collect();
            assert_eq!(
                got,
                retention(&fx, name.parse().unwrap(), period),
                "{name} {period}"
            );
            assert_eq!(answer["time_zone"], name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_previous_period_is_answered_alongside() {
    let fx = fixture().await;
    let new_york: Tz = "America/New_York".parse().unwrap();
    // Two New York days around the autumn clock change; before them, two more.
    let (from, to) = (
        midnight(new_york, (2026, 11, 1)),
        midnight(new_york, (2026, 11, 3)),
    );
    let body = json!({"metric": "events", "group_by": "day", "tz": "America/New_York",
                      "compare": "previous", "range": {"from": from, "to": to}});
    let (status, answer) = fx.pipeline.post("query", &body).await;
    assert_eq!(status, 200, "{answer}");
    let days = |results: &Value| -> BTreeMap<String, f64> {
        results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["day"].as_str().unwrap().to_owned(),
                    r["events"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let expected = |(start, end): (i64, i64)| -> BTreeMap<String, f64> {
        let mut want = BTreeMap::new();
        for (ms, ..) in fx
            .events
            .iter()
            .filter(|(ms, ..)| (start..end).contains(ms))
        {
            *want.entry(bucket(new_york, *ms, "day")).or_default() += 1.0;
        }
        want
    };
    let previous = (from - (to - from), from);
    assert_eq!(days(&answer["results"]), expected((from, to)));
    assert_eq!(days(&answer["previous"]["results"]), expected(previous));
    assert!(
        !expected(previous).is_empty(),
        "the previous period holds events"
    );
    assert_eq!(
        (
            answer["previous"]["from_ms"].as_i64(),
            answer["previous"]["to_ms"].as_i64()
        ),
        (Some(previous.0), Some(previous.1))
    );
}
