//! `/retention` against a brute-force reference: daily and weekly cohort grids
//! of generated users equal the grids computed by hand from the same events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tally_testkit::{now_ms, Pipeline};

const DAY: i64 = 86_400_000;

/// (user, name, ts)
fn generate(now: i64) -> Vec<(String, &'static str, i64)> {
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let today = now.div_euclid(DAY) * DAY;
    let mut events = Vec::new();
    for u in 0..80 {
        let user = format!("r{u}");
        let first = today - (5 + next(20) as i64) * DAY + next(80_000) as i64 * 1_000;
        events.push((user.clone(), "signup", first));
        for _ in 0..next(6) {
            let later = first + next(20) as i64 * DAY / 2 + next(1_000) as i64 * 1_000 - 3_600_000;
            let name = if next(4) == 0 { "signup" } else { "visit" };
            if later < now {
                events.push((user.clone(), name, later));
            }
        }
    }
    events
}

/// cohort start (ms) → (size, retained per period), by the definition in `query_service::retention`.
fn reference(
    events: &[(String, &str, i64)],
    unit: fn(i64) -> i64,
    periods: usize,
) -> BTreeMap<i64, (u64, Vec<u64>)> {
    let mut users: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (user, name, ts) in events {
        users
            .entry(user)
            .or_default()
            .push((name, *ts / 1_000 * 1_000));
    }
    let mut grid: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for list in users.values() {
        let Some(first) = list.iter().filter(|e| e.0 == "signup").map(|e| e.1).min() else {
            continue;
        };
        let offsets: BTreeSet<i64> = list
            .iter()
            .filter(|e| e.0 == "visit" && e.1 > first)
            .map(|e| unit(e.1) - unit(first))
            .collect();
        let cell = grid.entry(unit(first)).or_insert((0, vec![0; periods + 1]));
        cell.0 += 1;
        for (k, n) in cell.1.iter_mut().enumerate() {
            *n += u64::from(offsets.contains(&(k as i64)));
        }
    }
    grid
}

fn day(ts: i64) -> i64 {
    ts.div_euclid(DAY)
}

/// Weeks starting Monday (1970-01-01 was a Thursday).
fn week(ts: i64) -> i64 {
    (ts.div_euclid(DAY) + 3).div_euclid(7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_grids_equal_the_brute_force_reference() {
    let pipeline = Pipeline::start("ret").await;
    let events = generate(now_ms());
    let body: Vec<Value> = events
        .iter()
        .map(|(user, name, ts)| json!({"name": name, "user_id": user, "timestamp": ts}))
        .collect();
    pipeline.send(&body).await;
    pipeline.wait_rows(events.len()).await;
    for (period, unit, periods) in [("day", day as fn(i64) -> i64, 10usize), ("week", week, 4)] {
        let body = json!({"start_event": "signup", "return_event": "visit", "period": period, "periods": periods, "range": "60d"});
        let (status, answer) = pipeline.post("retention", &body).await;
        assert_eq!(status, 200, "{answer}");
        let got: Vec<(u64, Vec<u64>)> = answer["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let retained = c["retained"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap())
                    .collect();
                (c["size"].as_u64().unwrap(), retained)
            })
            .collect();
        let want: Vec<(u64, Vec<u64>)> = reference(&events, unit, periods).into_values().collect();
        assert_eq!(got, want, "{period}: {answer}");
        assert!(
            want.iter().any(|(_, r)| r.iter().skip(1).any(|n| *n > 0)),
            "the data has returns"
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
