//! Exact and fresh at once: `/reports` answers from the refresher's derived
//! tables for the days they cover and from raw rows for the others, so it
//! equals brute force over every event sent — right after the refresher ran,
//! and also after new events and late identity events (links, merges of two
//! persons) it has not derived yet, before it runs again. The same for the
//! `activity` report (active persons and events per day, by the persons'
//! current plan) and the `retention` report (active persons by day, week and
//! month cohorts), read from `person_day_activity`; and for `/query` of page
//! views and persons (by page and in total, over a range with partial first
//! and last hours), which must equal brute force and the raw-rows answer.
//! (Answers are cached for 5 s like every query answer, so each is asked once.)

use super::*;

/// Day (`YYYY-MM-DD`) → (page views, persons), by brute force.
pub(crate) fn daily(events: &[&Event]) -> BTreeMap<String, (u64, u64)> {
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

/// Cohorts by brute force: (cohort's first day, plan or `None`) → (size,
/// retained per period 0…`periods`), for the retention of active persons
/// over the UTC days `first..=last` (see `query-service/src/retention_report.rs`).
fn retention(
    events: &[&Event],
    (first, last): (time::Date, time::Date),
    (period, periods): (&str, usize),
    (first_time, by_plan): (bool, bool),
) -> Cohorts {
    let model = Model::of(events.iter().copied());
    let start = |d: time::Date| match period {
        "day" => d,
        "week" => d - time::Duration::days(i64::from(d.weekday().number_days_from_monday())),
        _ => d.replace_day(1).unwrap(),
    };
    let advance = |c: time::Date, k: usize| match period {
        "day" => c + time::Duration::days(k as i64),
        "week" => c + time::Duration::weeks(k as i64),
        _ => {
            let months = i32::from(u8::from(c.month())) - 1 + k as i32;
            let month = time::Month::try_from(u8::try_from(months % 12 + 1).unwrap()).unwrap();
            time::Date::from_calendar_date(c.year() + months / 12, month, 1).unwrap()
        }
    };
    let mut ever: BTreeMap<String, time::Date> = BTreeMap::new();
    let mut counts: BTreeMap<String, BTreeMap<time::Date, u64>> = BTreeMap::new();
    for e in events {
        let day = time::OffsetDateTime::from_unix_timestamp(e.ts_ms.div_euclid(1000))
            .unwrap()
            .date();
        let person = model.person(&e.distinct_id);
        let seen = ever.entry(person.clone()).or_insert(day);
        *seen = (*seen).min(day);
        if (first..=last).contains(&day) {
            *counts
                .entry(person)
                .or_default()
                .entry(start(day))
                .or_default() += 1;
        }
    }
    let mut cohorts = Cohorts::new();
    for (person, per) in counts {
        if first_time && ever[&person] < first {
            continue;
        }
        let (&c, &n) = per.iter().next().unwrap();
        let plan = by_plan.then(|| {
            model
                .traits(&person)
                .get("plan")
                .cloned()
                .unwrap_or_default()
        });
        let entry = cohorts
            .entry((c.to_string(), plan))
            .or_insert_with(|| (0, vec![0; periods + 1]));
        entry.0 += 1;
        entry.1[0] += u64::from(n >= 2);
        for k in 1..=periods {
            entry.1[k] += u64::from(per.contains_key(&advance(c, k)));
        }
    }
    cohorts
}

/// (cohort, plan) → (size, retained per period).
type Cohorts = BTreeMap<(String, Option<String>), (u64, Vec<u64>)>;

/// The retention report with `query` (`granularity`, `periods`, `cohort`,
/// `breakdown`) equals brute force over `sent`; it answers from `expect`.
async fn retention_is_exact(pipeline: &Pipeline, sent: &[&Event], expect: &str, when: &str) {
    let shapes = [
        ("day", 7, false, false),
        ("week", 3, true, true),
        ("month", 1, false, true),
    ];
    for (period, periods, first_time, by_plan) in shapes {
        let cohort = if first_time { "first_time" } else { "in_range" };
        let breakdown = if by_plan {
            "&breakdown=person.plan"
        } else {
            ""
        };
        let (status, answer) = pipeline
            .get(&format!(
                "reports/retention?range=14d&granularity={period}&periods={periods}&cohort={cohort}{breakdown}"
            ))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["source"], expect, "{when}: {answer}");
        let day = |ms: i64| {
            time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
                .unwrap()
                .date()
        };
        let first = day(answer["from_ms"].as_i64().unwrap());
        let last = day(answer["to_ms"].as_i64().unwrap() - 1);
        let got: Cohorts = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let plan = by_plan.then(|| c["breakdown"].as_str().unwrap().to_owned());
                let retained = c["retained"].as_array().unwrap();
                (
                    (c["cohort"].as_str().unwrap().to_owned(), plan),
                    (
                        c["size"].as_u64().unwrap(),
                        retained.iter().map(|n| n.as_u64().unwrap()).collect(),
                    ),
                )
            })
            .collect();
        let expected = retention(
            sent,
            (first, last),
            (period, periods),
            (first_time, by_plan),
        );
        assert!(!expected.is_empty());
        assert_eq!(
            got, expected,
            "retention by {period} ({cohort}, by_plan={by_plan}) {when}"
        );
    }
}

/// The daily pages report: (source, raw days, day → (page views, visitors)).
pub(crate) async fn report(
    pipeline: &Pipeline,
    source: &str,
) -> (String, u64, BTreeMap<String, (u64, u64)>) {
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

/// `/query` of page views and persons by page over `range`:
/// (source, raw days, rows of (path, page views, persons) sorted, total row).
/// `ask` (0, 1, …) makes each asking a statement of its own (its limit), as
/// identical statements share a cached answer for 5 s.
async fn pages_query(
    pipeline: &Pipeline,
    range: (i64, i64),
    source: &str,
    ask: usize,
) -> (String, u64, Vec<(String, u64, u64)>, (u64, u64)) {
    let mut rows = Vec::new();
    let mut answered = Vec::new();
    let mut total = (0, 0);
    for group in [true, false] {
        let mut body = json!({
            "metrics": ["events", "unique_users"],
            "filters": [{"property": "$name", "op": "eq", "value": "page_view"}],
            "range": {"from": range.0, "to": range.1},
            "limit": 10000 - ask,
            "source": source,
        });
        if group {
            body["group_by"] = json!("url_path");
        }
        let (status, answer) = pipeline.post("query", &body).await;
        assert_eq!(status, 200, "{answer}");
        answered.push((
            answer["source"].as_str().unwrap_or("raw").to_owned(),
            answer["raw_days"].as_u64().unwrap_or(0),
        ));
        for r in answer["results"].as_array().unwrap() {
            let views = r["events"].as_f64().unwrap() as u64;
            let persons = r["unique_users"].as_f64().unwrap() as u64;
            if group {
                rows.push((r["url_path"].as_str().unwrap().to_owned(), views, persons));
            } else {
                total = (views, persons);
            }
        }
    }
    assert_eq!(answered[0], answered[1], "both statements from one source");
    rows.sort();
    let (source, raw_days) = answered.remove(0);
    (source, raw_days, rows, total)
}

/// `/query` of page views equals brute force (in total) and the raw-rows
/// answer (by page), from `expect`; returns the raw days it reported.
async fn pages_query_is_exact(
    pipeline: &Pipeline,
    sent: &[&Event],
    (range, ask): ((i64, i64), usize),
    expect: &str,
    when: &str,
) -> u64 {
    let (source, raw_days, rows, total) = pages_query(pipeline, range, "auto", ask).await;
    assert_eq!(source, expect, "{when}");
    let model = Model::of(sent.iter().copied());
    let in_range: Vec<&&Event> = sent
        .iter()
        .filter(|e| e.name == "page_view" && e.ts_ms >= range.0 && e.ts_ms < range.1)
        .collect();
    let persons: BTreeSet<String> = in_range
        .iter()
        .map(|e| model.person(&e.distinct_id))
        .collect();
    assert!(!in_range.is_empty());
    assert_eq!(
        total,
        (in_range.len() as u64, persons.len() as u64),
        "total {when}"
    );
    let (raw_source, _, raw_rows, raw_total) = pages_query(pipeline, range, "raw", ask).await;
    assert_eq!(raw_source, "raw");
    assert_eq!((rows, total), (raw_rows, raw_total), "by page {when}");
    raw_days
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_exact_and_fresh_between_refresher_runs() {
    let started = now_ms();
    let journeys = generate("f", 50, 21, started);
    // Partial first and last hours: raw rows answer those.
    let range = (started - 13 * 86_400_000 - 17 * 60_000, started + 3_600_000);
    let pipeline = Pipeline::start("fresh").await;
    let mut sent: Vec<&Event> = journeys.early.iter().collect();
    deliver(&pipeline, &journeys.early, &sent, sent.len()).await;
    // No refresher state yet: raw rows answer.
    assert_eq!(report(&pipeline, "auto").await.0, "raw");
    pages_query_is_exact(
        &pipeline,
        &sent,
        (range, 0),
        "raw",
        "before the refresher ran",
    )
    .await;
    activity_is_exact(&pipeline, &sent, "raw", "before the refresher ran").await;
    retention_is_exact(&pipeline, &sent, "raw", "before the refresher ran").await;
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
    let raw = pages_query_is_exact(
        &pipeline,
        &sent,
        (range, 1),
        "report+raw",
        "from the reports",
    );
    assert_eq!(raw.await, 0);
    activity_is_exact(&pipeline, &sent, "report+raw", "from the reports").await;
    retention_is_exact(&pipeline, &sent, "report+raw", "from the reports").await;

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
    let raw = pages_query_is_exact(&pipeline, &sent, (range, 2), "report+raw", "before the run");
    assert!(raw.await > 0);
    activity_is_exact(&pipeline, &sent, "report+raw", "before the run").await;
    retention_is_exact(&pipeline, &sent, "report+raw", "before the run").await;

    // After a run every day is derived again, with the same numbers.
    pipeline.iso.wait_consumed().await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    let (_, raw_days, after) = report(&pipeline, "auto").await;
    assert_eq!((raw_days, after), (0, daily(&sent)));
    let raw = pages_query_is_exact(&pipeline, &sent, (range, 3), "report+raw", "after the run");
    assert_eq!(raw.await, 0);
    activity_is_exact(&pipeline, &sent, "report+raw", "after the run").await;
    retention_is_exact(&pipeline, &sent, "report+raw", "after the run").await;
    pipeline.stop().await;
}
