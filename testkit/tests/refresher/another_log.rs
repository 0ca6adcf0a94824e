//! Positions taken on another log: a new checkout starts its broker and
//! ClickHouse empty beside a PostgreSQL that stayed, so the refresher's marks
//! (and what readers may take from reports) are offsets of the old topic —
//! higher than anything the new one holds. Kept, they would stop every row
//! below them from being derived and send readers to report rows that are
//! not there (empty pages on the Overview). Here the state is put in that
//! shape — the marks and derived offsets moved past the broker's log ends,
//! the refresher's tables emptied as in a fresh ClickHouse — and the next run must
//! find it, forget the positions, rebuild in full, and leave reports equal to
//! brute force and `/query` from reports equal to raw rows; the run after
//! forgets nothing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_past_the_log_end_are_forgotten_and_the_reports_rebuilt() {
    let journeys = generate("log", 20, 23, now_ms());
    let pipeline = Pipeline::start("anotherlog").await;
    let sent: Vec<&Event> = journeys.early.iter().collect();
    deliver(&pipeline, &journeys.early, &sent, sent.len()).await;
    let mut wolf = refresher(&pipeline, "wolf-log").await;
    let first = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert!(first.forgotten.is_empty(), "the marks of this log are kept");
    assert_eq!(derived(&pipeline).await, brute_force(&sent), "first run");

    // The old topic was longer: its marks are far past this one's ends.
    let scope = pipeline.iso.clickhouse.database.clone();
    let pg = tally_testkit::postgres().connect().await.unwrap();
    let marks = pg
        .execute(
            "UPDATE refresh_marks SET mark = mark + 1000000 WHERE scope = $1",
            &[&scope],
        )
        .await
        .unwrap();
    pg.execute(
        "UPDATE refresh_derived SET derived = derived + 1000000 WHERE scope = $1",
        &[&scope],
    )
    .await
    .unwrap();
    assert!(marks > 0, "the first run left marks");
    let client = pipeline.iso.clickhouse_client();
    // A fresh ClickHouse: the refresher's tables empty, the rows (and the
    // aggregator's tables) those of the new log.
    for table in [
        "report_pages_hourly",
        "person_day_activity",
        "id_hours",
        "id_keys",
        "key_ids",
    ] {
        client
            .query(&format!("TRUNCATE TABLE {table}"))
            .execute()
            .await
            .unwrap();
    }

    let rebuilt = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert_eq!(
        rebuilt.forgotten.len() as u64,
        marks,
        "every mark of the topic is past its log end: {:?}",
        rebuilt.forgotten
    );
    assert!(rebuilt.forgotten.iter().all(|m| m.mark >= m.log_end));
    assert_eq!(rebuilt.record.kind, "full", "a first run after forgetting");
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "reports rebuilt"
    );
    let ends: BTreeMap<i32, i64> =
        tally_common::kafka::positions(&pipeline.iso.kafka, &pipeline.iso.group_id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.partition, p.log_end))
            .collect();
    for row in pg
        .query(
            "SELECT kafka_partition, derived FROM refresh_derived WHERE scope = $1 AND kafka_topic = $2",
            &[&scope, &pipeline.iso.kafka.topic],
        )
        .await
        .unwrap()
    {
        let (partition, offset): (i32, i64) = (row.get(0), row.get(1));
        assert!(
            offset < ends[&partition],
            "partition {partition}: derived {offset} within the log (end {})",
            ends[&partition]
        );
    }
    // Readers: page views from reports equal raw rows again.
    let ask = |source: &'static str| {
        let body = json!({"metrics": ["events", "unique_users"],
                          "filters": [{"property": "name", "op": "eq", "value": "page_view"}],
                          "range": "30d", "source": source});
        let pipeline = &pipeline;
        async move { pipeline.post("query", &body).await.1 }
    };
    let (reports, raw) = (ask("auto").await, ask("raw").await);
    assert_eq!(reports["source"], "report+raw", "{reports}");
    assert_eq!(reports["results"], raw["results"]);
    let views = sent.iter().filter(|e| e.name == "page_view").count() as f64;
    assert_eq!(reports["results"][0]["events"].as_f64(), Some(views));

    let after = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert!(after.forgotten.is_empty(), "nothing forgotten twice");
    assert_eq!(after.record.kind, "incremental");
    pipeline.stop().await;
}
