//! The brute-force reference of the any-order funnel (definition in
//! `query_service::funnel_order`): a start is an event of any step with
//! from <= t < to; it reaches level k when k distinct steps have an event in
//! [start, start + window] (an event meeting several steps counts for each);
//! the user's level is the best start's, the earliest start among equals; the
//! times to convert are those of the 2nd…kth distinct step (each step's
//! earliest event in the window), in time order, from the start.

use super::{expected, observed, Event, User, WINDOW_MS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_testkit::Pipeline;

/// A step's condition on an event.
pub type StepFn<'a> = &'a dyn Fn(&Event) -> bool;

/// Per user with a start: (level, times to steps 2…level, plan and time of
/// the first start, the user).
pub fn reference_any(events: &[Event], steps: &[StepFn], (from, to): (i64, i64)) -> Vec<User> {
    let mut users: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        users.entry(event.0.as_str()).or_default().push(event);
    }
    let mut out = Vec::new();
    for (user, mut list) in users {
        list.sort_by_key(|e| e.2);
        let is_step = |e: &Event| steps.iter().any(|s| s(e));
        let starts: Vec<&Event> = list
            .iter()
            .copied()
            .filter(|e| is_step(e) && from <= e.2 && e.2 < to)
            .collect();
        let Some(first) = starts.first() else {
            continue;
        };
        let mut best: Option<(usize, i64, Vec<i64>)> = None;
        for start in &starts {
            let a = start.2;
            let mut firsts: Vec<i64> = steps
                .iter()
                .filter_map(|step| {
                    list.iter()
                        .find(|e| step(e) && a <= e.2 && e.2 <= a + WINDOW_MS)
                        .map(|e| e.2)
                })
                .collect();
            firsts.sort_unstable();
            let level = firsts.len();
            let times: Vec<i64> = firsts.iter().skip(1).map(|t| t - a).collect();
            if best
                .as_ref()
                .is_none_or(|(l, s, _)| level > *l || (level == *l && a < *s))
            {
                best = Some((level, a, times));
            }
        }
        let Some((level, _, times)) = best else {
            continue;
        };
        out.push((level, times, first.3, first.2, user.to_owned()));
    }
    out
}

/// `/funnel` in any order against [`reference_any`]: every time, a range
/// ending mid-data, a breakdown, a page of dropped users and two steps that
/// one event can meet together. `relaxed` is the relaxed reference of the
/// same steps (any order reaches at least as far).
pub async fn check(pipeline: &Pipeline, events: &[Event], mid: (i64, i64), relaxed: &[User]) {
    let page_view = |e: &Event| e.1 == "page_view";
    let add_to_cart = |e: &Event| e.1 == "add_to_cart";
    let purchase = |e: &Event| e.1 == "purchase";
    let plain: [StepFn; 3] = [&page_view, &add_to_cart, &purchase];
    let names = json!(["page_view", "add_to_cart", "purchase"]);
    let ask = |body: Value| async move {
        let (status, answer) = pipeline.post("funnel", &body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        answer
    };

    let users = reference_any(events, &plain, (i64::MIN, i64::MAX));
    let want = expected(&users);
    let loose = expected(relaxed);
    assert!(
        (0..3).all(|k| want[k].0 >= loose[k].0) && want[1].0 > loose[1].0 && want[2].0 > loose[2].0,
        "any order reaches further than relaxed on this data: {want:?} vs {loose:?}"
    );
    eprintln!("any-order funnel users per step: {want:?} (relaxed {loose:?})");
    let answer = ask(json!({"steps": names, "range": "1d", "window": "10m", "order": "any"})).await;
    assert_eq!(observed(&answer["funnel"]), want, "{answer}");

    // Starts only before the range's end; conversions after it count.
    let cut = reference_any(events, &plain, mid);
    let answer = ask(
        json!({"steps": names, "range": {"from": mid.0, "to": mid.1},
        "window": "10m", "order": "any", "breakdown": "properties.plan"}),
    )
    .await;
    let groups = answer["breakdown"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{answer}");
    for group in groups {
        let plan = group["value"].as_str().unwrap();
        let subset: Vec<User> = cut.iter().filter(|u| u.2 == plan).cloned().collect();
        assert_eq!(
            observed(&group["funnel"]),
            expected(&subset),
            "any order, range end, plan {plan}"
        );
    }
    assert!(
        expected(&cut)[0].0 < want[0].0,
        "the range's end cuts starts"
    );

    // Who reached step 2 and no further.
    let mut dropped: Vec<String> = users
        .iter()
        .filter(|u| u.0 == 2)
        .map(|u| u.4.clone())
        .collect();
    dropped.sort();
    let answer = ask(
        json!({"steps": names, "range": "1d", "window": "10m", "order": "any",
        "users": {"step": 2, "dropped": true, "limit": 1000}}),
    )
    .await;
    let got: Vec<String> = answer["users"]["distinct_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert!(!dropped.is_empty());
    assert_eq!(got, dropped);

    // A pro add-to-cart meets both steps at once: it alone reaches step 2.
    let pro = |e: &Event| e.1 == "add_to_cart" && e.3 == "pro";
    let overlapping: [StepFn; 2] = [&add_to_cart, &pro];
    let users = reference_any(events, &overlapping, (i64::MIN, i64::MAX));
    let answer = ask(json!({"steps": ["add_to_cart", {"event": "add_to_cart",
        "filters": [{"property": "plan", "op": "eq", "value": "pro"}]}],
        "range": "1d", "window": "10m", "order": "any"}))
    .await;
    let want: Vec<(u64, Option<f64>)> = expected(&users).into_iter().take(2).collect();
    assert_eq!(observed(&answer["funnel"]), want, "{answer}");
    assert!(want[1].0 > 0 && want[1].1.is_some());
}
