//! `/retention` against a brute-force reference: daily and weekly cohort grids
//! (cohort dates, sizes, retained per period) of generated users equal the
//! grids computed by hand from the same events, by the millisecond definition
//! in `query_service::retention` — including hand-made edge users: a return in
//! the same second or the same millisecond as the first start (period 0), just
//! before it (not a return), on both sides of UTC midnight and of Monday
//! 00:00 UTC, and a start event that is also the return event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tally_testkit::{now_ms, Pipeline};

const DAY: i64 = 86_400_000;

/// (user, name, ts)
type Event = (String, &'static str, i64);

fn generate(now: i64) -> Vec<Event> {
    let mut rng = tally_testkit::journeys::Lcg(7u64);
    let mut next = |n: u64| rng.below(n);
    let today = now.div_euclid(DAY) * DAY;
    let mut events = Vec::new();
    for u in 0..80 {
        let user = format!("r{u}");
        let first = today - (5 + next(20) as i64) * DAY + next(80_000_000) as i64;
        events.push((user.clone(), "signup", first));
        for _ in 0..next(6) {
            let later = first + next(20) as i64 * DAY / 2 + next(1_000_000) as i64 - 3_600_000;
            let name = if next(4) == 0 { "signup" } else { "visit" };
            if later < now {
                events.push((user.clone(), name, later));
            }
        }
    }
    events
}

/// An edge user: events, and the offsets at which the definition counts them
/// as returned ("signup" → "visit") by day, and by week where the dates fix it.
type Edge = (Vec<Event>, Vec<i64>, Option<Vec<i64>>);

/// Hand-made users at the edges.
fn edges(now: i64) -> Vec<Edge> {
    let today = now.div_euclid(DAY) * DAY;
    let d = today - 3 * DAY; // a UTC midnight, 3 days ago
    let monday = {
        let back = today - 14 * DAY;
        back - (day(back) + 3).rem_euclid(7) * DAY // a Monday 00:00 UTC, 2 to 3 weeks ago
    };
    assert_eq!(week(monday) * 7 - 3, day(monday));
    let user = |name: &str, events: &[(&'static str, i64)], days: &[i64], weeks: Option<&[i64]>| {
        let list = events
            .iter()
            .map(|(event, ts)| (name.to_owned(), *event, *ts))
            .collect();
        (list, days.to_vec(), weeks.map(<[i64]>::to_vec))
    };
    let ten = d + 10 * 3_600_000;
    vec![
        // Same second, 650 ms later (whole seconds would call it "not after").
        user(
            "same-second",
            &[("signup", ten + 250), ("visit", ten + 900)],
            &[0],
            Some(&[0]),
        ),
        // Same millisecond.
        user(
            "same-ms",
            &[("signup", ten + 5_000), ("visit", ten + 5_000)],
            &[0],
            Some(&[0]),
        ),
        // Same second but 1 ms before the first: not a return.
        user(
            "just-before",
            &[("visit", ten + 10_499), ("signup", ten + 10_500)],
            &[],
            Some(&[]),
        ),
        // First at midnight UTC; returns then and at the day's last ms.
        user(
            "midnight-start",
            &[("signup", d), ("visit", d), ("visit", d + DAY - 1)],
            &[0],
            Some(&[0]),
        ),
        // First at the day's last ms; a return at the next midnight is period 1.
        user(
            "midnight-cross",
            &[("signup", d - 1), ("visit", d)],
            &[1],
            None,
        ),
        // Period bounds: the last ms of day 1, the first of day 2.
        user(
            "period-bounds",
            &[
                ("signup", ten),
                ("visit", d + 2 * DAY - 1),
                ("visit", d + 2 * DAY),
            ],
            &[1, 2],
            None,
        ),
        // Sunday 23:59:59.999 UTC → Monday 00:00: next day and next week.
        user(
            "week-cross",
            &[("signup", monday - 1), ("visit", monday)],
            &[1],
            Some(&[1]),
        ),
        // Monday 00:00 → Sunday 23:59:59.999: same week, 6 days on.
        user(
            "week-whole",
            &[("signup", monday), ("visit", monday + 7 * DAY - 1)],
            &[6],
            Some(&[0]),
        ),
        // Two signups in the same ms: the second is a return when the start
        // event is also the return event; no visit at all.
        user(
            "twin-signup",
            &[("signup", ten + 20_000), ("signup", ten + 20_000)],
            &[],
            Some(&[]),
        ),
    ]
}

/// Calendar periods: UTC days, or weeks from Monday 00:00 UTC.
#[derive(Clone, Copy)]
enum Period {
    Day,
    Week,
}

impl Period {
    fn of(self, ts: i64) -> i64 {
        match self {
            Period::Day => day(ts),
            Period::Week => week(ts),
        }
    }

    /// The period's first day, as the answer's `cohort` text.
    fn label(self, number: i64) -> String {
        let first_day = match self {
            Period::Day => number,
            Period::Week => number * 7 - 3,
        };
        time::OffsetDateTime::from_unix_timestamp(first_day * 86_400)
            .unwrap()
            .date()
            .to_string()
    }
}

fn day(ts: i64) -> i64 {
    ts.div_euclid(DAY)
}

/// Weeks starting Monday (1970-01-01 was a Thursday).
fn week(ts: i64) -> i64 {
    (ts.div_euclid(DAY) + 3).div_euclid(7)
}

/// One user's (cohort period, offsets returned at) by the definition: first
/// = earliest `start`; a return is another `back` event at or after it (ms).
fn user_returns(
    list: &[(&str, i64)],
    start: &str,
    back: &str,
    period: Period,
) -> Option<(i64, BTreeSet<i64>)> {
    let (at, first) = list
        .iter()
        .enumerate()
        .filter(|(_, e)| e.0 == start)
        .min_by_key(|(_, e)| e.1)
        .map(|(i, e)| (i, e.1))?;
    let offsets = list
        .iter()
        .enumerate()
        .filter(|&(i, e)| e.0 == back && e.1 >= first && i != at)
        .map(|(_, e)| period.of(e.1) - period.of(first))
        .collect();
    Some((period.of(first), offsets))
}

/// Cohort label → (size, retained per period), by brute force.
fn reference(
    events: &[Event],
    (start, back): (&str, &str),
    period: Period,
    periods: usize,
) -> BTreeMap<String, (u64, Vec<u64>)> {
    let mut users: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (user, name, ts) in events {
        users.entry(user).or_default().push((name, *ts));
    }
    let mut grid: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for list in users.values() {
        let Some((cohort, offsets)) = user_returns(list, start, back, period) else {
            continue;
        };
        let cell = grid.entry(cohort).or_insert((0, vec![0; periods + 1]));
        cell.0 += 1;
        for (k, n) in cell.1.iter_mut().enumerate() {
            *n += u64::from(offsets.contains(&(k as i64)));
        }
    }
    grid.into_iter()
        .map(|(cohort, cell)| (period.label(cohort), cell))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_grids_equal_the_brute_force_reference() {
    let now = now_ms();
    let mut events = generate(now);
    for (list, days, weeks) in edges(now) {
        // The reference follows the definition on each edge user.
        let list_ref: Vec<(&str, i64)> = list.iter().map(|e| (e.1, e.2)).collect();
        let by = |period| {
            user_returns(&list_ref, "signup", "visit", period)
                .unwrap()
                .1
        };
        assert_eq!(by(Period::Day), days.into_iter().collect(), "{}", list[0].0);
        if let Some(weeks) = weeks {
            assert_eq!(
                by(Period::Week),
                weeks.into_iter().collect(),
                "{}",
                list[0].0
            );
        }
        events.extend(list);
    }
    assert!(events.iter().all(|e| e.2 < now));
    let body: Vec<Value> = events
        .iter()
        .map(|(user, name, ts)| json!({"name": name, "user_id": user, "timestamp": ts}))
        .collect();
    let pipeline = Pipeline::start("ret").await;
    pipeline.send(&body).await;
    pipeline.wait_rows(events.len()).await;
    let cases = [
        ("signup", "visit", "day", Period::Day, 10usize),
        ("signup", "visit", "week", Period::Week, 4),
        ("signup", "signup", "day", Period::Day, 10),
        ("visit", "signup", "week", Period::Week, 3),
    ];
    for (start, back, name, period, periods) in cases {
        let body = json!({"start_event": start, "return_event": back, "period": name, "periods": periods, "range": "60d"});
        let (status, answer) = pipeline.post("retention", &body).await;
        assert_eq!(status, 200, "{answer}");
        let got: BTreeMap<String, (u64, Vec<u64>)> = tally_testkit::retention_grid(&answer)
            .into_iter()
            .map(|((cohort, _), cell)| (cohort, cell))
            .collect();
        let want = reference(&events, (start, back), period, periods);
        assert_eq!(got, want, "{start} → {back} by {name}: {answer}");
        assert!(
            want.values().any(|(_, r)| r[0] > 0)
                && want.values().any(|(_, r)| r.iter().skip(1).any(|n| *n > 0)),
            "the data has returns in period 0 and later: {want:?}"
        );
    }
    let bad =
        json!({"start_event": "signup", "return_event": "visit", "period": "year", "range": "60d"});
    let (status, answer) = pipeline.post("retention", &bad).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_query"))
    );

    pipeline.stop().await;
}
