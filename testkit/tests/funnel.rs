//! `/funnel` against a brute-force reference: the same generated events are
//! posted through the gateway and funneled by hand (definition in
//! `query_service::funnel`), per step users, conversion, drop-off and median
//! time to convert, with exclusion steps, also broken down by a property and as a trend per minute
//! of the first step in a time zone, in relaxed, strict and any order;
//! and with a range that ends in the middle of the data: the range selects the
//! step-1 events, and conversions completing after its end (within the window
//! of their start) count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "funnel/any_order.rs"]
mod any_order;
#[path = "funnel/chains.rs"]
mod chains;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_testkit::{now_ms, Pipeline};

const WINDOW_MS: i64 = 10 * 60_000;

/// (user, name, ts, plan)
type Event = (String, &'static str, i64, &'static str);

fn generate(now: i64) -> Vec<Event> {
    let mut rng = tally_testkit::journeys::Lcg(42u64);
    let mut next = |n: u64| rng.below(n);
    let mut events = Vec::new();
    for u in 0..60 {
        let user = format!("u{u}");
        let base = now - 55 * 60_000 + u * 1_000;
        let names = ["page_view", "add_to_cart", "purchase", "other"];
        for i in 0..(3 + next(6)) {
            let name = names[next(4) as usize];
            let ts = base + i as i64 * 1_000 + next(20) as i64 * 37_000;
            let plan = if next(3) == 0 { "pro" } else { "free" };
            events.push((user.clone(), name, ts, plan));
        }
    }
    events
}

/// Per user: (level, times from the start to each reached step k >= 2, plan
/// and time of the first step-1 event, the user).
type User = (usize, Vec<i64>, &'static str, i64, String);

/// Every time.
const ALL: (i64, i64) = (i64::MIN, i64::MAX);

/// Per user: (level, times from start to each reached step k >= 2, plan of
/// the first step-1 event). Steps: page_view (in `range`: from <= t < to),
/// add_to_cart (of `step2_plan` if given), purchase (at any time: the window
/// bounds them).
fn reference(
    events: &[Event],
    step2_plan: Option<&str>,
    strict: bool,
    range: (i64, i64),
) -> Vec<User> {
    reference_excluding(events, step2_plan, strict, range, None)
}

/// [`reference`] where an `other` event strictly between steps `from` and `to`
/// of a start (before the window's end when `to` is not reached) disqualifies
/// that start; a user without a qualified start leaves the funnel.
fn reference_excluding(
    events: &[Event],
    step2_plan: Option<&str>,
    strict: bool,
    (from, to): (i64, i64),
    exclusion: Option<(usize, usize)>,
) -> Vec<User> {
    let mut users: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        users.entry(event.0.as_str()).or_default().push(event);
    }
    let matches = |e: &Event, step: usize| match step {
        0 => e.1 == "page_view" && from <= e.2 && e.2 < to,
        1 => e.1 == "add_to_cart" && step2_plan.is_none_or(|p| e.3 == p),
        _ => e.1 == "purchase",
    };
    let mut out = Vec::new();
    for (user, mut list) in users {
        list.sort_by_key(|e| e.2);
        let Some(first) = list.iter().find(|e| matches(e, 0)) else {
            continue;
        };
        let (plan, first_at) = (first.3, first.2);
        // Per distinct time: the steps matched there.
        let mut times: BTreeMap<i64, [bool; 3]> = BTreeMap::new();
        for e in &list {
            let at = times.entry(e.2).or_default();
            for (step, hit) in at.iter_mut().enumerate() {
                *hit |= matches(e, step);
            }
        }
        let times: Vec<(i64, [bool; 3])> = times.into_iter().collect();
        let mut best: Option<(usize, i64, Vec<i64>)> = None;
        for (i, &(a, hits)) in times.iter().enumerate() {
            if !hits[0] {
                continue;
            }
            let (mut previous, mut reached) = (a, Vec::new());
            for step in 1..3 {
                let next = if strict {
                    times
                        .get(i + step)
                        .filter(|(t, h)| h[step] && *t <= a + WINDOW_MS)
                        .map(|(t, _)| *t)
                } else {
                    times
                        .iter()
                        .map(|(t, h)| (*t, h[step]))
                        .find(|&(t, hit)| hit && t > previous && t <= a + WINDOW_MS)
                        .map(|(t, _)| t)
                };
                match next {
                    Some(x) => {
                        reached.push(x - a);
                        previous = x;
                    }
                    None => break,
                }
            }
            let level = 1 + reached.len();
            if let Some((lo_step, hi_step)) = exclusion {
                let at = |step: usize| -> Option<i64> {
                    if step == 1 {
                        Some(a)
                    } else {
                        reached.get(step - 2).map(|d| a + d)
                    }
                };
                if let Some(lo) = at(lo_step) {
                    let hi = at(hi_step).unwrap_or(a + WINDOW_MS + 1);
                    let hit = list.iter().any(|e| e.1 == "other" && lo < e.2 && e.2 < hi);
                    if hit {
                        continue;
                    }
                }
            }
            if best
                .as_ref()
                .is_none_or(|(l, start, _)| level > *l || (level == *l && a < *start))
            {
                best = Some((level, a, reached));
            }
        }
        let Some((level, _, reached)) = best else {
            continue;
        };
        out.push((level, reached, plan, first_at, user.to_owned()));
    }
    out
}

/// The median: the middle value, or the mean of the two middle values of an even count.
fn median(mut values: Vec<i64>) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] + values[n / 2]) as f64 / 2.0),
    }
}

fn expected(users: &[User]) -> Vec<(u64, Option<f64>)> {
    (1..=3)
        .map(|k| {
            let reached: Vec<&User> = users.iter().filter(|u| u.0 >= k).collect();
            let times = reached
                .iter()
                .map(|u| if k == 1 { 0 } else { u.1[k - 2] })
                .collect();
            (reached.len() as u64, median(times))
        })
        .collect()
}

fn observed(funnel: &Value) -> Vec<(u64, Option<f64>)> {
    funnel
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["users"].as_u64().unwrap(),
                s["median_ms_to_convert"].as_f64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn funnels_equal_the_brute_force_reference() {
    let pipeline = Pipeline::start("funnel").await;
    let now = now_ms();
    let events = generate(now);
    let body: Vec<Value> = events
        .iter()
        .map(|(user, name, ts, plan)| json!({"name": name, "user_id": user, "timestamp": ts, "properties": {"plan": plan}}))
        .collect();
    pipeline.send(&body).await;
    pipeline.wait_rows(events.len()).await;
    let ask = |body: Value| {
        let pipeline = &pipeline;
        async move { pipeline.post("funnel", &body).await }
    };
    let steps = json!(["page_view", {"event": "add_to_cart", "filters": [{"property": "plan", "op": "eq", "value": "pro"}]}, "purchase"]);
    let (status, answer) = ask(json!({"steps": steps, "range": "1d", "window": "10m"})).await;
    assert_eq!(status, 200, "{answer}");
    let users = reference(&events, Some("pro"), false, ALL);
    let want = expected(&users);
    assert_eq!(observed(&answer["funnel"]), want, "{answer}");
    assert!(
        want[2].0 > 0 && want[1].0 > want[2].0,
        "the data exercises every step: {want:?}"
    );
    let second = &answer["funnel"][1];
    let ratio = want[1].0 as f64 / want[0].0 as f64;
    assert!((second["conversion_from_previous"].as_f64().unwrap() - ratio).abs() < 1e-9);
    assert_eq!(second["drop_off"].as_u64().unwrap(), want[0].0 - want[1].0);

    // Broken down by the plan of each user's first page view.
    let (status, answer) = ask(
        json!({"steps": steps, "range": "1d", "window": "10m", "breakdown": "properties.plan"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for group in answer["breakdown"].as_array().unwrap() {
        let plan = group["value"].as_str().unwrap();
        let subset: Vec<_> = users.iter().filter(|u| u.2 == plan).cloned().collect();
        assert_eq!(observed(&group["funnel"]), expected(&subset), "plan {plan}");
    }
    assert_eq!(answer["breakdown"].as_array().unwrap().len(), 2);

    // Who reached a step, and who dropped after it: pages of distinct ids.
    for (step, dropped) in [(2, false), (1, true), (2, true), (3, false)] {
        let mut want: Vec<String> = users
            .iter()
            .filter(|u| if dropped { u.0 == step } else { u.0 >= step })
            .map(|u| u.4.clone())
            .collect();
        want.sort();
        let mut got = Vec::new();
        for page in 0.. {
            let body = json!({"steps": steps, "range": "1d", "window": "10m",
                "users": {"step": step, "dropped": dropped, "limit": 7, "offset": page * 7}});
            let (status, answer) = ask(body).await;
            assert_eq!(status, 200, "{answer}");
            let ids = answer["users"]["distinct_ids"].as_array().unwrap();
            got.extend(ids.iter().map(|id| id.as_str().unwrap().to_owned()));
            if !answer["users"]["more"].as_bool().unwrap() {
                break;
            }
            assert_eq!(ids.len(), 7, "a full page before the last");
        }
        assert_eq!(got, want, "step {step}, dropped {dropped}");
        assert!(
            !want.is_empty(),
            "step {step}, dropped {dropped}: some users"
        );
    }

    // Exclusion steps: an `other` event between steps 1 and 2, or anywhere
    // between the first and the last step, disqualifies a start.
    for (between, span) in [(json!([1, 2]), (1, 2)), (Value::Null, (1, 3))] {
        let mut exclusion = json!({"event": "other"});
        if !between.is_null() {
            exclusion["between"] = between.clone();
        }
        let (status, answer) = ask(json!({"steps": steps, "range": "1d", "window": "10m",
            "exclusions": [exclusion]}))
        .await;
        assert_eq!(status, 200, "{answer}");
        let kept = reference_excluding(&events, Some("pro"), false, ALL, Some(span));
        let want = expected(&kept);
        assert_eq!(observed(&answer["funnel"]), want, "exclusion {span:?}");
        assert!(
            want[0].0 < expected(&users)[0].0,
            "the exclusion leaves users out: {want:?}"
        );
    }
    let (status, answer) = ask(json!({"steps": steps, "range": "1d", "order": "strict",
        "exclusions": [{"event": "other"}]}))
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_query")),
        "{answer}"
    );

    // A conversion trend: broken down by the minute (in Asia/Kolkata, +05:30)
    // of each user's first page view.
    let (status, answer) = ask(json!({"steps": steps, "range": "1d", "window": "10m",
        "breakdown": "$minute", "tz": "Asia/Kolkata"}))
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["time_zone"], "Asia/Kolkata");
    let minute = |ms: i64| {
        let local = (ms + 19_800_000).div_euclid(60_000) * 60_000;
        let date = time::OffsetDateTime::from_unix_timestamp(local.div_euclid(1_000)).unwrap();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:00+05:30",
            date.year(),
            u8::from(date.month()),
            date.day(),
            date.hour(),
            date.minute()
        )
    };
    let mut minutes: BTreeMap<String, Vec<User>> = BTreeMap::new();
    for user in &users {
        minutes
            .entry(minute(user.3))
            .or_default()
            .push(user.clone());
    }
    let trend: BTreeMap<String, Vec<(u64, Option<f64>)>> = answer["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap().to_owned(),
                observed(&g["funnel"]),
            )
        })
        .collect();
    let want: BTreeMap<String, Vec<(u64, Option<f64>)>> = minutes
        .iter()
        .map(|(m, list)| (m.clone(), expected(list)))
        .collect();
    assert!(
        want.len() >= 5,
        "a trend over several minutes: {}",
        want.len()
    );
    assert_eq!(trend, want);

    // Strict order: each step the user's next event (other names break the
    // chain), with and without a breakdown.
    let plain = json!(["page_view", "add_to_cart", "purchase"]);
    let strict = reference(&events, None, true, ALL);
    let relaxed = reference(&events, None, false, ALL);
    let (status, answer) =
        ask(json!({"steps": plain, "range": "1d", "window": "10m", "order": "strict"})).await;
    assert_eq!(status, 200, "{answer}");
    let want = expected(&strict);
    assert_eq!(observed(&answer["funnel"]), want, "{answer}");
    let loose = expected(&relaxed);
    assert!(
        want[2].0 > 0 && want[1].0 < loose[1].0 && want[2].0 < loose[2].0,
        "strict differs from relaxed on this data: {want:?} vs {loose:?}"
    );
    eprintln!("funnel users per step: strict {want:?}, relaxed {loose:?}");
    let (status, answer) = ask(json!({"steps": plain, "range": "1d", "window": "10m",
        "order": "strict", "breakdown": "properties.plan"}))
    .await;
    assert_eq!(status, 200, "{answer}");
    for group in answer["breakdown"].as_array().unwrap() {
        let plan = group["value"].as_str().unwrap();
        let subset: Vec<_> = strict.iter().filter(|u| u.2 == plan).cloned().collect();
        assert_eq!(
            observed(&group["funnel"]),
            expected(&subset),
            "strict, plan {plan}"
        );
    }

    // A range ending in the middle of the data: page views before its end
    // start funnels that may complete after it, within the window; those
    // conversions count. (Clipping every step to the range loses them.)
    let range = (now - 86_400_000, now - 48 * 60_000);
    let clipped: Vec<Event> = events
        .iter()
        .filter(|e| range.0 <= e.2 && e.2 < range.1)
        .cloned()
        .collect();
    for (order, strict) in [("relaxed", false), ("strict", true)] {
        let body = json!({"steps": plain, "range": {"from": range.0, "to": range.1},
            "window": "10m", "order": order});
        let (status, answer) = ask(body).await;
        assert_eq!(status, 200, "{answer}");
        let users = reference(&events, None, strict, range);
        let want = expected(&users);
        let lost = expected(&reference(&clipped, None, strict, range));
        assert!(
            want[0].0 == lost[0].0 && want[0].0 < loose[0].0 && want[2].0 > lost[2].0,
            "{order}: the range cuts starts, and conversions complete after its end: {want:?} vs {lost:?}"
        );
        eprintln!("{order} funnel with the range ending mid-data: {want:?} (clipped: {lost:?})");
        assert_eq!(
            observed(&answer["funnel"]),
            want,
            "{order}, range end: {answer}"
        );
        let (status, answer) = ask(
            json!({"steps": plain, "range": {"from": range.0, "to": range.1},
            "window": "10m", "order": order, "breakdown": "properties.plan"}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        for group in answer["breakdown"].as_array().unwrap() {
            let plan = group["value"].as_str().unwrap();
            let subset: Vec<_> = users.iter().filter(|u| u.2 == plan).cloned().collect();
            assert_eq!(
                observed(&group["funnel"]),
                expected(&subset),
                "{order}, range end, plan {plan}"
            );
        }
    }

    // Any order: the steps in any order within the window of the first.
    any_order::check(&pipeline, &events, range, &relaxed).await;

    // Refusals.
    for body in [
        json!({"steps": ["a"], "range": "1d"}),
        json!({"steps": ["a", "b"], "range": "1d", "window": "1y"}),
        json!({"steps": ["a", "b"], "range": "1d", "order": "sideways"}),
        json!({"steps": ["a", "b"], "range": "1d", "breakdown": "a b"}),
    ] {
        let (status, answer) = ask(body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_query")),
            "{body}"
        );
    }

    pipeline.stop().await;
}
