//! Persons through the whole pipeline (issue 16): generated journeys
//! (`tally_testkit::journeys`: anonymous browsing, sign-ups, second devices,
//! trait changes with stale identifies, two histories merged by an alias, a
//! third of the identity events sent late — after the events they
//! re-attribute are stored — and everything shuffled) go through the gateway,
//! the broker and the aggregator; then `GET …/persons/{id}` of every distinct
//! id equals the brute-force model: the same set of ids (one person across the
//! anonymous → identified boundary), the latest traits, the person's event
//! count by name, first and last seen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_testkit::journeys::{generate, Event, Journeys, Model};
use tally_testkit::{eventually, now_ms, Pipeline};

fn bodies(events: &[Event]) -> Vec<Value> {
    events.iter().map(|e| e.json.clone()).collect()
}

/// What the profile of `id` must say.
fn expected(journeys: &Journeys, model: &Model, id: &str) -> Value {
    let ids = model.ids(id);
    let mine: Vec<&Event> = journeys
        .all()
        .filter(|e| ids.contains(&e.distinct_id))
        .collect();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in &mine {
        *counts.entry(e.name.clone()).or_default() += 1;
    }
    serde_json::json!({
        "distinct_ids": ids,
        "traits": model.traits(id),
        "events": mine.len(),
        "counts": counts,
        "first_seen_ms": mine.iter().map(|e| e.ts_ms).min(),
        "last_seen_ms": mine.iter().map(|e| e.ts_ms).max(),
    })
}

/// The same fields of an answer.
fn observed(answer: &Value) -> Value {
    let counts: BTreeMap<String, u64> = answer["event_counts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let ids: BTreeSet<String> = answer["distinct_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    serde_json::json!({
        "distinct_ids": ids,
        "traits": answer["traits"],
        "events": answer["events"],
        "counts": counts,
        "first_seen_ms": answer["first_seen_ms"],
        "last_seen_ms": answer["last_seen_ms"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_follow_a_person_across_identify_alias_and_late_events() {
    let journeys = generate("p", 70, 16, now_ms());
    let model = journeys.model();
    let merged = model
        .persons()
        .values()
        .filter(|ids| ids.len() >= 4)
        .count();
    let pipeline = Pipeline::start("persons").await;
    pipeline.send(&bodies(&journeys.early)).await;
    pipeline.wait_rows(journeys.early.len()).await;
    pipeline.send(&bodies(&journeys.late)).await;
    let total = journeys.early.len() + journeys.late.len();
    pipeline.wait_rows(total).await;
    let ids: BTreeSet<&String> = model.persons().values().flatten().collect();
    // Identity rows land right after the raw rows of the same flush.
    let last = journeys
        .late
        .last()
        .map_or(&journeys.early[0].distinct_id, |e| &e.distinct_id);
    eventually(
        "the last identity event",
        Duration::from_secs(20),
        || async {
            let (status, answer) = pipeline.get(&format!("persons/{last}")).await;
            (status == 200 && observed(&answer) == expected(&journeys, &model, last)).then_some(())
        },
    )
    .await;
    let mut persons: BTreeSet<String> = BTreeSet::new();
    for id in &ids {
        let (status, answer) = pipeline.get(&format!("persons/{id}")).await;
        assert_eq!(status, 200, "{id}: {answer}");
        assert_eq!(
            observed(&answer),
            expected(&journeys, &model, id),
            "person of {id}"
        );
        persons.insert(answer["person_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        persons.len(),
        model.persons().len(),
        "one person id per component"
    );
    let (status, answer) = pipeline.get("persons/nobody-at-all").await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
    let long = "x".repeat(201);
    let (status, answer) = pipeline.get(&format!("persons/{long}")).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_parameter")),
        "{answer}"
    );
    eprintln!(
        "persons: {total} events ({} sent late), {} distinct ids, {} persons ({merged} of 4+ ids)",
        journeys.late.len(),
        ids.len(),
        model.persons().len()
    );
    assert!(
        merged >= 5 && journeys.late.len() >= 20,
        "the journeys exercise merges and late identifies"
    );
    pipeline.stop().await;
}
