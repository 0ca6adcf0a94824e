//! Two aggregator processes race on identity (issue 16): versions come from
//! Redis before their rows are inserted, so a row with a *lower* version can
//! land after the refresher has seen a higher one. Here the faster process's
//! row (a version far above the app's, at a Kafka position not committed yet)
//! is written straight into ClickHouse; a run follows; then a real alias
//! event goes through the pipeline and gets the next version from Redis —
//! below the one already seen. Identity rows carry their event's position,
//! so the run after it derives the merge, and readers answer the merged
//! person's days from raw rows until then: the reports stay exact.

use super::*;

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Placed {
    kafka_partition: u32,
    top: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_row_with_a_lower_version_landing_later_is_derived() {
    let now = now_ms();
    let journeys = generate("race", 30, 17, now);
    let pipeline = Pipeline::start("race").await;
    let mut sent: Vec<&Event> = journeys.early.iter().chain(&journeys.late).collect();
    let all: Vec<Event> = sent.iter().map(|e| (*e).clone()).collect();
    deliver(&pipeline, &all, &sent, sent.len()).await;
    let mut wolf = refresher(&pipeline, "wolf-race").await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert_eq!(derived(&pipeline).await, brute_force(&sent), "first run");

    // The faster process: a row of a far higher version (the id stays with
    // its person), at a position the aggregator has not committed (and will
    // not, in this test).
    let client = pipeline.iso.clickhouse_client();
    let model = Model::of(sent.iter().copied());
    let persons: Vec<&BTreeSet<String>> = model.persons().values().collect();
    let (a, b) = (
        persons[0].iter().next().unwrap().clone(),
        persons[1].iter().next().unwrap().clone(),
    );
    let top: u64 = client
        .query("SELECT max(version) FROM person_distinct_ids")
        .fetch_one()
        .await
        .unwrap();
    let placed: Placed = client
        .query(
            "SELECT kafka_partition, max(kafka_offset) AS top FROM events \
             GROUP BY kafka_partition ORDER BY kafka_partition LIMIT 1",
        )
        .fetch_one()
        .await
        .unwrap();
    let person_of_a: String = client
        .query(
            "SELECT argMax(person_id, version) FROM person_distinct_ids \
             WHERE app_id = ? AND distinct_id = ?",
        )
        .bind(pipeline.app.as_str())
        .bind(a.as_str())
        .fetch_one()
        .await
        .unwrap();
    client
        .query(
            "INSERT INTO person_distinct_ids (app_id, distinct_id, person_id, version, is_deleted, \
             kafka_topic, kafka_partition, kafka_offset) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
        )
        .bind(pipeline.app.as_str())
        .bind(a.as_str())
        .bind(person_of_a.as_str())
        .bind(top + 1_000)
        .bind(pipeline.iso.kafka.topic.as_str())
        .bind(placed.kafka_partition)
        .bind(placed.top + 1_000_000)
        .execute()
        .await
        .unwrap();
    let before = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert!(before.reworked.is_empty(), "{:?}", before.reworked);

    // The slower process: a real merge, whose version is below top + 1000.
    let extra = [super::alias(&a, &b, now)];
    sent.push(&extra[0]);
    deliver(&pipeline, &extra, &sent, sent.len()).await;
    let merge_version: u64 = client
        .query("SELECT max(version) FROM person_distinct_ids WHERE app_id = ? AND distinct_id = ?")
        .bind(pipeline.app.as_str())
        .bind(b.as_str())
        .fetch_one()
        .await
        .unwrap();
    assert!(
        merge_version < top + 1_000,
        "the merge's version {merge_version} is below the one seen"
    );
    // Readers: the merged person's days come from raw rows until derived.
    let (source, raw_days, got) = super::fresh::report(&pipeline, "auto").await;
    assert_eq!(source, "report+raw");
    assert!(raw_days > 0, "the changed persons' days are raw");
    assert_eq!(got, super::fresh::daily(&sent), "exact before the run");
    let merged = wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert!(
        !merged.reworked.is_empty(),
        "the merge is derived by position"
    );
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "after the merge"
    );
    pipeline.stop().await;
}
