//! The data lifecycle (issue 17): raw rows past the retention go by whole day
//! partitions, aggregates stay. Page views on each of the last seven days are
//! derived; then the refresher service, with a retention of 3 days and its
//! lifecycle every second, drops exactly the `events` and `sessions`
//! partitions before the cutoff (counted in its metrics, with the storage of
//! every table); the derived tables still equal brute force over every event
//! ever sent, and a full rebuild under the same retention finds drift 0 and
//! leaves the days without raw rows as they were.

use super::*;
use tally_common::lifecycle;

/// Epoch ms → `YYYY-MM-DD` (UTC).
fn day(ms: i64) -> String {
    tally_schemas::row::utc_day(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_partitions_past_the_retention_are_dropped_and_reports_stay() {
    let now = now_ms();
    let pipeline = Pipeline::start("lifecycle").await;
    let events: Vec<Event> = (0..7i64)
        .flat_map(|days_back| {
            (0..4i64).map(move |i| {
                let id = format!("life-{i}");
                let ts = now - days_back * 86_400_000 - i * 60_000;
                Event {
                    distinct_id: id.clone(),
                    name: "page_view".into(),
                    ts_ms: ts,
                    links: None,
                    traits: Vec::new(),
                    json: json!({"name": "page_view", "anonymous_id": id, "timestamp": ts,
                                 "properties": {"path": format!("/day-{days_back}")}}),
                }
            })
        })
        .collect();
    let sent: Vec<&Event> = events.iter().collect();
    deliver(&pipeline, &events, &sent, sent.len()).await;
    let mut wolf = refresher(&pipeline, "wolf-life").await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    let before = derived(&pipeline).await;
    assert_eq!(before, brute_force(&sent), "derived before the retention");
    wolf.state().release().await.unwrap();

    // The service drops what is past 3 days, on its own.
    const DAYS: u32 = 3;
    let cutoff = lifecycle::cutoff_day(now, DAYS);
    let kept = sent.iter().filter(|e| day(e.ts_ms) >= cutoff).count();
    assert!(kept > 0 && kept < sent.len(), "{kept} of {}", sent.len());
    let mut config = tally_testkit::services::refresher_config(&pipeline.iso);
    config.retention_days = DAYS;
    config.lifecycle_every = Duration::from_secs(1);
    let service = tally_testkit::services::refresher(config).await;
    let client = pipeline.iso.clickhouse_client();
    let url = service.url();
    eventually("partitions dropped", Duration::from_secs(30), || async {
        let dropped = tally_testkit::metric(
            &url,
            r#"tally_retention_dropped_partitions_total{table="events"}"#,
        )
        .await;
        let rows: u64 = client
            .query("SELECT count() FROM events")
            .fetch_one()
            .await
            .unwrap();
        (dropped > 0.0 && rows == kept as u64).then_some(())
    })
    .await;
    let oldest: String = client
        .query("SELECT toString(min(event_date)) FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert!(oldest >= cutoff, "oldest event day {oldest} < {cutoff}");
    let sessions: String = client
        .query("SELECT toString(min(created_date)) FROM sessions")
        .fetch_one()
        .await
        .unwrap();
    assert!(
        sessions >= cutoff,
        "oldest session day {sessions} < {cutoff}"
    );
    let storage = lifecycle::storage(&client).await.unwrap();
    let events_storage = storage.iter().find(|t| t.table == "events").unwrap();
    assert_eq!(events_storage.oldest(), Some(oldest.as_str()));
    assert!(events_storage.ratio() > 0.0);
    let gauge = tally_testkit::metric(&url, r#"tally_storage_rows{table="events"}"#).await;
    assert!(gauge > 0.0, "storage measured: {gauge}");
    service.stop().await;

    // Aggregates are kept forever: the old days' report rows are untouched.
    assert_eq!(derived(&pipeline).await, before, "reports kept");
    let mut wolf = wolf.with_retention(DAYS);
    let full = wolf.run(Kind::Full).await.unwrap().unwrap();
    assert_eq!(full.record.drift, Some(0), "no drift on the kept days");
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&sent),
        "a full rebuild keeps the days without raw rows"
    );
    pipeline.stop().await;
}
