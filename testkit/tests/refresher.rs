//! The report refresher (issue 16) against brute force, on the real
//! pipeline, ClickHouse and PostgreSQL. Generated journeys
//! (`tally_testkit::journeys`) flow through the gateway and the aggregator;
//! after every refresher run, `report_pages_hourly` (page views and persons
//! per hour) and `person_day_activity` (per person and day: events, first and
//! last time) equal what brute force computes from the events sent and the
//! identity model — after the first run, after late identity events (links
//! and merges of two histories), after an alias that merges two persons
//! without adding a row to their old days (the dimension changed, the facts
//! did not), after a run that crashed halfway, and after a full rebuild,
//! which must find drift 0 — and find and correct planted drift. A second
//! refresher stands by while the first holds the lease. Submodules: person
//! deletion, exact-and-fresh answers, identity rows racing in from two
//! aggregators, the data lifecycle (retention by partition), and positions
//! taken on another log (a topic made anew beside a PostgreSQL that stayed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use report_refresher::refresh::{Kind, Refresher};
use report_refresher::state::PgState;
use report_refresher::RefreshError;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_testkit::journeys::{generate, Event, Model};
use tally_testkit::{eventually, now_ms, Pipeline};

use tally_testkit::derived::brute_force;

async fn derived(
    pipeline: &Pipeline,
) -> (
    tally_testkit::derived::Pages,
    tally_testkit::derived::Activity,
) {
    tally_testkit::derived::derived(&pipeline.iso.clickhouse_client(), &pipeline.app).await
}

async fn refresher(pipeline: &Pipeline, owner: &str) -> Refresher {
    let pg = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::migrate(&pg).await.unwrap();
    let state = PgState::new(pg, &pipeline.iso.clickhouse.database, owner);
    Refresher::new(
        pipeline.iso.clickhouse_client(),
        state,
        Duration::from_secs(30),
    )
    .with_kafka(pipeline.iso.kafka.clone(), &pipeline.iso.group_id)
}

/// Sends `events` and waits until ClickHouse holds `total` rows and the
/// identity rows of `sent` (unique users = persons of the model), and the
/// aggregator has committed them (a run derives rows up to the aggregator's
/// committed offsets only: a row stored but not yet committed waits for the
/// next run).
async fn deliver(pipeline: &Pipeline, events: &[Event], sent: &[&Event], total: usize) {
    let bodies: Vec<_> = events.iter().map(|e| e.json.clone()).collect();
    pipeline.send(&bodies).await;
    pipeline.wait_rows(total).await;
    pipeline.iso.wait_consumed().await;
    let persons = Model::of(sent.iter().copied()).persons().len() as f64;
    eventually("identity rows", Duration::from_secs(20), || async {
        let (_, answer) = pipeline
            .post("query", &json!({"metric": "unique_users", "range": "30d"}))
            .await;
        (answer["results"][0]["unique_users"].as_f64() == Some(persons)).then_some(())
    })
    .await;
}

/// An `alias` event at `ts_ms` linking `previous` to `user`, as an SDK sends it.
fn alias(user: &str, previous: &str, ts_ms: i64) -> Event {
    Event {
        distinct_id: user.to_owned(),
        name: "alias".into(),
        ts_ms,
        links: Some(previous.to_owned()),
        traits: Vec::new(),
        json: json!({"name": "alias", "user_id": user, "timestamp": ts_ms,
                     "properties": {"previous_id": previous}}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_tables_equal_brute_force_through_late_identities_crashes_and_rebuilds() {
    let now = now_ms();
    let journeys = generate("r", 60, 3, now);
    let pipeline = Pipeline::start("refresh").await;
    let mut sent: Vec<&Event> = journeys.early.iter().collect();
    deliver(&pipeline, &journeys.early, &sent, sent.len()).await;
    let mut wolf = refresher(&pipeline, "wolf-a").await;
    let mut standby = refresher(&pipeline, "wolf-b").await;

    // First run: every bucket.
    let first = wolf.run(Kind::Incremental).await.unwrap().expect("leader");
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "after the first run"
    );
    let all_days = first.record.buckets;
    assert!(
        standby.run(Kind::Incremental).await.unwrap().is_none(),
        "one writer"
    );

    // Late identity events: links and merges re-derive older days.
    sent.extend(&journeys.late);
    deliver(&pipeline, &journeys.late, &sent, sent.len()).await;
    let late = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "after late identities"
    );
    let idle = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert_eq!(
        (idle.record.buckets, idle.added, idle.reworked.len()),
        (0, 0, 0),
        "nothing touched, nothing recomputed or added"
    );

    // An alias merging two persons with history: its own row lands today,
    // but the merged person's older days are touched too.
    let model = Model::of(sent.iter().copied());
    let persons: Vec<&BTreeSet<String>> = model.persons().values().collect();
    let (a, b) = (
        persons[0].iter().next().unwrap(),
        persons[1].iter().next().unwrap(),
    );
    let old_days: BTreeSet<String> = sent
        .iter()
        .filter(|e| persons[1].contains(&e.distinct_id))
        .map(|e| {
            time::OffsetDateTime::from_unix_timestamp(e.ts_ms / 1000)
                .unwrap()
                .date()
                .to_string()
        })
        .collect();
    let extra = [alias(a, b, now)];
    sent.push(&extra[0]);
    deliver(&pipeline, &extra, &sent, sent.len()).await;
    let merge = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    // Row by row: the merged persons' rows on their old days, not whole days.
    let touched: BTreeSet<String> = merge
        .reworked
        .get(&pipeline.app)
        .cloned()
        .unwrap_or_default();
    assert!(
        touched.is_superset(&old_days),
        "merge touched {touched:?}, history on {old_days:?}"
    );
    assert!(merge.buckets.is_empty(), "no day recomputed whole");
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "after a merge"
    );

    // A run killed halfway commits nothing; the next one repeats it.
    let later = generate("r2", 15, 9, now);
    sent.extend(&later.early);
    deliver(&pipeline, &later.early, &sent, sent.len()).await;
    wolf.crash_after(Some(0));
    assert!(matches!(
        wolf.run(Kind::Incremental).await,
        Err(RefreshError::Injected(0))
    ));
    wolf.crash_after(None);
    let repeated = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert!(repeated.record.buckets > 0);
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "after a crashed run repeated"
    );

    // A full rebuild finds no drift; planted drift is found and corrected.
    let pg = tally_testkit::postgres().connect().await.unwrap();
    tally_common::postgres::request_full_refresh(&pg, &pipeline.iso.clickhouse.database)
        .await
        .unwrap();
    assert_eq!(wolf.due(Duration::ZERO).await.unwrap(), Kind::Full);
    let full = wolf.run(Kind::Full).await.unwrap().unwrap();
    assert_eq!(
        full.record.drift,
        Some(0),
        "incremental runs kept the tables exact"
    );
    assert_eq!(
        wolf.due(Duration::ZERO).await.unwrap(),
        Kind::Incremental,
        "request served"
    );
    let client = pipeline.iso.clickhouse_client();
    for plant in [
        "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
         SELECT ?, today(), 'nobody', 5, 1, 2, max(version) FROM person_day_activity",
        "INSERT INTO report_pages_hourly (app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot, page_views, visitors, version) \
         SELECT app_id, hour, url_path, referrer_host, country, device_type, browser, is_bot, page_views + 1, visitors, \
         (SELECT max(version) FROM report_pages_hourly) FROM report_pages_hourly FINAL WHERE app_id = ? AND page_views > 0 LIMIT 1",
    ] {
        client.query(plant).bind(pipeline.app.as_str()).execute().await.unwrap();
    }
    assert_ne!(
        derived(&pipeline).await,
        brute_force(&sent),
        "drift planted"
    );
    let corrected = wolf.run(Kind::Full).await.unwrap().unwrap();
    assert_eq!(corrected.record.drift, Some(2), "both planted keys found");
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "drift corrected"
    );
    eprintln!(
        "refresher: {} events; first run {all_days} buckets, late identities {} buckets added to and \
         {:?} reworked, merge {:?} reworked, full rebuild {} buckets (drift 0, then 2 planted and corrected)",
        sent.len(),
        late.added,
        late.reworked,
        merge.reworked,
        full.record.buckets
    );
    pipeline.stop().await;
}

/// The service: refreshes every interval, says so in `/metrics` and
/// `/readyz`, and gives its lease up when stopped, so another takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refreshes_on_its_own_and_hands_over_its_lease() {
    let journeys = generate("s", 10, 5, now_ms());
    let pipeline = Pipeline::start("refreshsvc").await;
    let sent: Vec<&Event> = journeys.early.iter().collect();
    deliver(&pipeline, &journeys.early, &sent, sent.len()).await;
    let service = tally_testkit::services::refresher(tally_testkit::services::refresher_config(
        &pipeline.iso,
    ))
    .await;
    eventually(
        "reports derived by the service",
        Duration::from_secs(20),
        || async { (derived(&pipeline).await == brute_force(&sent)).then_some(()) },
    )
    .await;
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", service.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The run's rows land before its commit is counted: wait for the count.
    let url = service.url();
    eventually(
        "every row derived once",
        Duration::from_secs(20),
        || async {
            let derived = tally_testkit::metric(&url, "tally_refresher_new_rows_total").await;
            assert!(derived <= sent.len() as f64, "derived {derived} > sent");
            (derived == sent.len() as f64).then_some(())
        },
    )
    .await;
    let mut other = refresher(&pipeline, "successor").await;
    assert!(
        other.run(Kind::Incremental).await.unwrap().is_none(),
        "the service holds the lease"
    );
    service.stop().await;
    assert!(
        other.run(Kind::Incremental).await.unwrap().is_some(),
        "lease given up at shutdown"
    );
    pipeline.stop().await;
}

#[path = "refresher/deletion.rs"]
mod deletion;

#[path = "refresher/fresh.rs"]
mod fresh;

#[path = "refresher/race.rs"]
mod race;

#[path = "refresher/lifecycle.rs"]
mod lifecycle;

#[path = "refresher/another_log.rs"]
mod another_log;
