//! Exact and fresh at once: `/reports` answers from the refresher's derived
//! tables for the days they cover and from raw rows for the others, so it
//! equals brute force over every event sent — right after the refresher ran,
//! and also after new events and late identity events (links, merges of two
//! persons) it has not derived yet, before it runs again. The same for the
//! `activity` report (active persons and events per day, by the persons'
//! current plan), read from `person_day_activity`. (Answers are cached
//! for 5 s like every query answer, so each is asked once.)

use super::*;

/// Day (`YYYY-MM-DD`) → (page views, persons), by brute force.
fn daily(events: &[&Event]) -> BTreeMap<String, (u64, u64)> {
    let model = Model::of(events.iter().copied());
    let mut days: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.name == "page_view") {
        let day = time::OffsetDateTime::from_unix_timestamp(e.ts_ms.div_euclid(1000))
            .unwrap()
            .date()
            .to_string();
        let entry = days.entry(day).or_default();
        entry.0 += 1;
        entry.1.insert(model.person(&e.distinct_id));
    }
    days.into_iter()
        .map(|(d, (n, persons))| (d, (n, persons.len() as u64)))
        .collect()
}

/// (day `YYYY-MM-DD`, plan trait or `None`) → (active persons, events), by
/// brute force; `by_plan` breaks it down by the person's current plan.
fn activity(events: &[&Event], by_plan: bool) -> BTreeMap<(String, Option<String>), (u64, u64)> {
    let model = Model::of(events.iter().copied());
    let mut days: BTreeMap<(String, Option<String>), (BTreeSet<String>, u64)> = BTreeMap::new();
    for e in events {
        let day = time::OffsetDateTime::from_unix_timestamp(e.ts_ms.div_euclid(1000))
            .unwrap()
            .date()
            .to_string();
        let plan = by_plan.then(|| {
            model
                .traits(&e.distinct_id)
                .get("plan")
                .cloned()
                .unwrap_or_default()
        });
        let entry = days.entry((day, plan)).or_default();
        entry.0.insert(model.person(&e.distinct_id));
        entry.1 += 1;
    }
    days.into_iter()
        .map(|(k, (persons, n))| (k, (persons.len() as u64, n)))
        .collect()
}

/// The activity report: (source, (day, plan) → (active persons, events)).
async fn activity_report(
    pipeline: &Pipeline,
    source: &str,
    by_plan: bool,
) -> (String, BTreeMap<(String, Option<String>), (u64, u64)>) {
    let breakdown = if by_plan {
        "&breakdown=person.plan"
    } else {
        ""
    };
    let (status, answer) = pipeline
        .get(&format!(
            "reports/activity?range=14d&limit=1000&source={source}{breakdown}"
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["time_zone"], "UTC", "{answer}");
    let rows = answer["results"].as_array().unwrap().iter().map(|r| {
        let plan = by_plan.then(|| r["person.plan"].as_str().unwrap().to_owned());
        let persons = r["active_persons"].as_f64().unwrap() as u64;
        let events = r["events"].as_f64().unwrap() as u64;
        (
            (r["day"].as_str().unwrap().to_owned(), plan),
            (persons, events),
        )
    });
    (
        answer["source"].as_str().unwrap().to_owned(),
        rows.collect(),
    )
}

/// The activity report (with and without the plan breakdown) equals brute
/// force over `sent`; `expect` is the source it answers from. (Raw rows alone
/// answer before the refresher ran: each statement is asked once.)
async fn activity_is_exact(pipeline: &Pipeline, sent: &[&Event], expect: &str, when: &str) {
    for by_plan in [false, true] {
        let (answered, got) = activity_report(pipeline, "auto", by_plan).await;
        assert_eq!(answered, expect, "{when}");
        assert_eq!(
            got,
            activity(sent, by_plan),
            "activity by_plan={by_plan} {when}"
        );
    }
}

/// The daily pages report: (source, raw days, day → (page views, visitors)).
async fn report(pipeline: &Pipeline, source: &str) -> (String, u64, BTreeMap<String, (u64, u64)>) {
    let (status, answer) = pipeline
        .get(&format!(
            "reports/pages_over_time?range=14d&granularity=day&limit=1000&tz=UTC&source={source}"
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["fresh_as_of_ms"].as_i64().unwrap() > 0);
    let rows = answer["results"].as_array().unwrap().iter().map(|r| {
        let views = r["page_views"].as_f64().unwrap() as u64;
        let visitors = r["visitors"].as_f64().unwrap() as u64;
        (r["day"].as_str().unwrap().to_owned(), (views, visitors))
    });
    (
        answer["source"].as_str().unwrap().to_owned(),
        answer["raw_days"].as_u64().unwrap_or(0),
        rows.collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_exact_and_fresh_between_refresher_runs() {
    let journeys = generate("f", 50, 21, now_ms());
    let pipeline = Pipeline::start("fresh").await;
    let mut sent: Vec<&Event> = journeys.early.iter().collect();
    deliver(&pipeline, &journeys.early, &sent, sent.len()).await;
    // No refresher state yet: raw rows answer.
    assert_eq!(report(&pipeline, "auto").await.0, "raw");
    activity_is_exact(&pipeline, &sent, "raw", "before the refresher ran").await;
    let mut wolf = refresher(&pipeline, "wolf-fresh").await;
    // The aggregator commits after its stores: once it has, every row is
    // below the commit and the run may record them as derived.
    pipeline.iso.wait_consumed().await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    let (source, raw_days, got) = report(&pipeline, "auto").await;
    assert_eq!(
        (source.as_str(), raw_days),
        ("report+raw", 0),
        "all derived"
    );
    assert_eq!(got, daily(&sent), "from the reports");
    activity_is_exact(&pipeline, &sent, "report+raw", "from the reports").await;

    // Late identity events (merges) and new page views, not derived yet.
    sent.extend(&journeys.late);
    let now = now_ms();
    let extra: Vec<Event> = (0..5)
        .map(|i| {
            let id = format!("f-new-{i}");
            Event {
                distinct_id: id.clone(),
                name: "page_view".into(),
                ts_ms: now - i64::from(i) * 86_400_000,
                links: None,
                traits: Vec::new(),
                json: json!({"name": "page_view", "anonymous_id": id, "timestamp": now - i64::from(i) * 86_400_000,
                             "properties": {"path": "/page_view"}}),
            }
        })
        .collect();
    let mut late: Vec<Event> = journeys.late.clone();
    late.extend(extra.iter().cloned());
    sent.extend(&extra);
    deliver(&pipeline, &late, &sent, sent.len()).await;
    let (source, raw_days, got) = report(&pipeline, "auto").await;
    assert_eq!(source, "report+raw");
    assert!(
        raw_days > 0,
        "the days not derived are answered from raw rows"
    );
    assert_eq!(got, daily(&sent), "exact before the refresher runs again");
    activity_is_exact(&pipeline, &sent, "report+raw", "before the run").await;

    // After a run every day is derived again, with the same numbers.
    pipeline.iso.wait_consumed().await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    let (_, raw_days, after) = report(&pipeline, "auto").await;
    assert_eq!((raw_days, after), (0, daily(&sent)));
    activity_is_exact(&pipeline, &sent, "report+raw", "after the run").await;
    pipeline.stop().await;
}
