//! Queries count and group by person (issue 16), each against brute force
//! over generated journeys (`tally_testkit::journeys`: anonymous browsing then
//! sign-up, second devices, late identifies, merges of two histories, trait
//! changes with stale identifies), through the whole pipeline:
//!
//! * `/query` `unique_users` counts persons (in total and per event name);
//!   `group_by: person.plan` and `person.*` filters use each person's current
//!   traits; a segment is the persons who did an event;
//! * `/funnel` follows a person across the anonymous → identified boundary
//!   (a page view as an anonymous visitor, a purchase as the signed-up user);
//! * `/retention` cohorts and returns are per person.
//!
//! Each check is also made at the distinct-id level and must differ there, so
//! the journeys really cross the boundary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_testkit::journeys::{generate, Event, Journeys, Model};
use tally_testkit::{eventually, now_ms, Pipeline};

const DAY: i64 = 86_400_000;

/// Each person (the model's name) with its events, sorted by time.
fn by_person<'a>(journeys: &'a Journeys, model: &Model) -> BTreeMap<String, Vec<&'a Event>> {
    let mut persons: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in journeys.all() {
        persons
            .entry(model.person(&e.distinct_id))
            .or_default()
            .push(e);
    }
    for events in persons.values_mut() {
        events.sort_by_key(|e| e.ts_ms);
    }
    persons
}

/// Each distinct id with its events (what counting without persons would see).
fn by_id(journeys: &Journeys) -> BTreeMap<String, Vec<&Event>> {
    let mut ids: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in journeys.all() {
        ids.entry(e.distinct_id.clone()).or_default().push(e);
    }
    ids
}

/// Users (persons or ids) with a page view followed, strictly later, by a purchase.
fn converted(users: &BTreeMap<String, Vec<&Event>>) -> usize {
    users
        .values()
        .filter(|events| {
            let first_view = events
                .iter()
                .filter(|e| e.name == "page_view")
                .map(|e| e.ts_ms)
                .min();
            let last_buy = events
                .iter()
                .filter(|e| e.name == "purchase")
                .map(|e| e.ts_ms)
                .max();
            matches!((first_view, last_buy), (Some(v), Some(b)) if b > v)
        })
        .count()
}

/// Daily retention (page view → purchase, 7 periods, UTC): cohort day → (size, retained).
fn retention(users: &BTreeMap<String, Vec<&Event>>) -> BTreeMap<String, (u64, Vec<u64>)> {
    let mut grid: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for events in users.values() {
        let Some(first) = events
            .iter()
            .filter(|e| e.name == "page_view")
            .map(|e| e.ts_ms)
            .min()
        else {
            continue;
        };
        let cohort = first.div_euclid(DAY);
        let offsets: BTreeSet<i64> = events
            .iter()
            .filter(|e| e.name == "purchase" && e.ts_ms >= first)
            .map(|e| e.ts_ms.div_euclid(DAY) - cohort)
            .collect();
        let cell = grid.entry(cohort).or_insert((0, vec![0; 8]));
        cell.0 += 1;
        for k in offsets.into_iter().filter(|k| (0..=7).contains(k)) {
            cell.1[k as usize] += 1;
        }
    }
    grid.into_iter()
        .map(|(day, cell)| {
            let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
                .unwrap()
                .date();
            (date.to_string(), cell)
        })
        .collect()
}

fn results(answer: &Value, dim: Option<&str>, metric: &str) -> BTreeMap<String, f64> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = dim.map_or(String::new(), |d| {
                r[d].as_str().unwrap_or_default().to_owned()
            });
            (key, r[metric].as_f64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_users_funnels_and_retention_count_persons() {
    let journeys = generate("q", 80, 61, now_ms());
    let model = journeys.model();
    let persons = by_person(&journeys, &model);
    let ids = by_id(&journeys);
    let pipeline = Pipeline::start("personq").await;
    let bodies = |events: &[Event]| events.iter().map(|e| e.json.clone()).collect::<Vec<_>>();
    pipeline.send(&bodies(&journeys.early)).await;
    pipeline.wait_rows(journeys.early.len()).await;
    pipeline.send(&bodies(&journeys.late)).await;
    let total = journeys.early.len() + journeys.late.len();
    pipeline.wait_rows(total).await;

    // Unique users = persons (identity rows land right after the raw rows).
    let want = persons.len() as f64;
    assert!(ids.len() as f64 > want * 1.5, "the journeys link ids");
    eventually(
        "unique users = persons",
        Duration::from_secs(20),
        || async {
            let (_, answer) = pipeline
                .post("query", &json!({"metric": "unique_users", "range": "30d"}))
                .await;
            (results(&answer, None, "unique_users").get("") == Some(&want)).then_some(())
        },
    )
    .await;
    let (status, answer) = pipeline
        .post(
            "query",
            &json!({"metrics": ["unique_users"], "group_by": "name", "range": "30d"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let per_name: BTreeMap<String, f64> =
        ["page_view", "purchase", "identify", "signup_done", "alias"]
            .into_iter()
            .map(|name| {
                let n = persons
                    .values()
                    .filter(|es| es.iter().any(|e| e.name == name))
                    .count();
                (name.to_owned(), n as f64)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
    assert_eq!(results(&answer, Some("name"), "unique_users"), per_name);

    // By current trait, and filtered on traits.
    let plan = |person: &str| {
        model
            .traits(person)
            .get("plan")
            .cloned()
            .unwrap_or_default()
    };
    let mut want_users: BTreeMap<String, f64> = BTreeMap::new();
    let mut want_events: BTreeMap<String, f64> = BTreeMap::new();
    for (person, events) in &persons {
        *want_users.entry(plan(person)).or_default() += 1.0;
        *want_events.entry(plan(person)).or_default() += events.len() as f64;
    }
    let (status, answer) = pipeline
        .post("query", &json!({"metrics": ["unique_users", "events"], "group_by": "person.plan", "range": "30d"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        results(&answer, Some("person.plan"), "unique_users"),
        want_users
    );
    assert_eq!(results(&answer, Some("person.plan"), "events"), want_events);
    assert!(
        want_users.contains_key("pro") && want_users.contains_key("team"),
        "{want_users:?}"
    );
    assert!(
        !want_users.contains_key("stale"),
        "a stale identify never wins"
    );
    let seated: Vec<&String> = persons
        .keys()
        .filter(|p| model.traits(p).contains_key("seats"))
        .collect();
    let (status, answer) = pipeline
        .post("query", &json!({"metric": "events", "range": "30d",
            "filters": [{"property": "person.seats", "op": "is_set"}, {"property": "person.plan", "op": "neq", "value": "stale"}]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let seated_events: usize = seated.iter().map(|p| persons[*p].len()).sum();
    assert_eq!(
        results(&answer, None, "events").get(""),
        Some(&(seated_events as f64))
    );
    // A segment: every event of the persons who purchased.
    let buyers: usize = persons
        .values()
        .filter(|es| es.iter().any(|e| e.name == "purchase"))
        .map(Vec::len)
        .sum();
    let (_, answer) = pipeline
        .post(
            "query",
            &json!({"metric": "events", "range": "30d", "segment": {"did": "purchase"}}),
        )
        .await;
    assert_eq!(
        results(&answer, None, "events").get(""),
        Some(&(buyers as f64)),
        "{answer}"
    );

    // A funnel across the anonymous → identified boundary.
    let (status, answer) = pipeline
        .post(
            "funnel",
            &json!({"steps": ["page_view", "purchase"], "range": "30d", "window": "14d"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let steps: Vec<u64> = answer["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .collect();
    let viewers = persons
        .values()
        .filter(|es| es.iter().any(|e| e.name == "page_view"))
        .count() as u64;
    let (people, devices) = (converted(&persons) as u64, converted(&ids) as u64);
    assert_eq!(steps, vec![viewers, people], "{answer}");
    assert!(
        people > devices,
        "persons convert across ids: {people} vs {devices} by distinct id"
    );

    // Retention per person.
    let (status, answer) = pipeline
        .post(
            "retention",
            &json!({"start_event": "page_view", "return_event": "purchase", "period": "day",
            "periods": 7, "range": "30d", "tz": "UTC"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let got: BTreeMap<String, (u64, Vec<u64>)> = tally_testkit::retention_grid(&answer)
        .into_iter()
        .map(|((cohort, _), cell)| (cohort, cell))
        .collect();
    assert_eq!(got, retention(&persons));
    assert_ne!(got, retention(&ids), "per distinct id the grid differs");
    eprintln!(
        "person queries: {total} events, {} ids, {} persons; funnel {viewers} → {people} ({devices} by distinct id)",
        ids.len(),
        persons.len()
    );
    pipeline.stop().await;
}
