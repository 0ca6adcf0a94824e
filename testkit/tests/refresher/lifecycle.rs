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
    let storage = lifecycle::storage(&client, None).await.unwrap();
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

/// Per-app retention: rows of three classes (0: the installation's 5 days;
/// apps with 2 and 7 days) on each of the last ten days. One lifecycle run
/// drops, in both raw tables, exactly the partitions past their own class's
/// days, and nothing of the rollup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retention_class_keeps_its_own_days() {
    let now = now_ms();
    let iso = tally_testkit::Isolation::new(1).await;
    let client = iso.clickhouse_client();
    const DEFAULT_DAYS: u32 = 5;
    let classes = [0u16, 2, 7];
    let mut events = Vec::new();
    let mut sessions = Vec::new();
    for class in classes {
        for back in 0..10i64 {
            let ts = now - back * 86_400_000;
            let day = day(ts);
            let n = i64::from(class) * 100 + back;
            events.push(format!(
                "('app-{class}', toDate('{day}'), toDateTime({secs}), {ts}, now(), 'e{n}', 'page_view', \
                 'v{n}', [], [], 'events', 0, {n}, {class})",
                secs = ts / 1000
            ));
            sessions.push(format!(
                "('app-{class}', toDate('{day}'), 'v{n}', '0-{n}', {ts}, {ts}, toDateTime({secs}), 0, 1, 1, \
                 '/', '/', '', '', '', '', '', '', '', '', 0, 1, 0, {n}, {ts}, {ts}, {class})",
                secs = ts / 1000
            ));
        }
    }
    for (table, rows) in [("events", &events), ("sessions", &sessions)] {
        let columns = if table == "events" {
            "app_id, event_date, timestamp, ts_ms, received_at, event_id, name, distinct_id, \
             prop_keys, prop_values, kafka_topic, kafka_partition, kafka_offset, retention_days"
        } else {
            tally_schemas::session::SESSION_COLUMNS
        };
        client
            .query(&format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                rows.join(", ")
            ))
            .execute()
            .await
            .unwrap();
    }
    let rollup = "SELECT countMerge(page_views) FROM rollup_pages_hourly";
    let views: u64 = client.query(rollup).fetch_one().await.unwrap();
    assert_eq!(views, 30);

    let kept_days = |class: u16| {
        if class == 0 {
            DEFAULT_DAYS
        } else {
            u32::from(class)
        }
    };
    // (class, day) kept: the days not before the class's cutoff.
    let expected: BTreeSet<(u16, String)> = classes
        .iter()
        .flat_map(|&class| {
            let cutoff = lifecycle::cutoff_day(now, kept_days(class));
            (0..10i64)
                .map(move |back| (class, day(now - back * 86_400_000)))
                .filter(move |(_, d)| *d >= cutoff)
        })
        .collect();
    assert_eq!(expected.len(), 6 + 3 + 8);
    let dropped = lifecycle::drop_expired(&client, None, now, DEFAULT_DAYS)
        .await
        .unwrap();
    assert_eq!(dropped.len(), 2 * (30 - expected.len()), "{dropped:?}");
    for (table, day_column) in [("events", "event_date"), ("sessions", "created_date")] {
        let left: BTreeSet<(u16, String)> = client
            .query(&format!(
                "SELECT retention_days, toString({day_column}) FROM {table}"
            ))
            .fetch_all::<(u16, String)>()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(left, expected, "{table}");
    }
    let again = lifecycle::drop_expired(&client, None, now, DEFAULT_DAYS)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let views: u64 = client.query(rollup).fetch_one().await.unwrap();
    assert_eq!(views, 30, "the rollup keeps every page view");
    iso.cleanup().await;
}

/// The gateway applies an app's override: it stamps the class on what it
/// accepts (the rows and the session carry it, in their own partitions)
/// and refuses events older than the override; after the override is
/// removed, the same old event is accepted with class 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_override_is_stamped_and_bounds_old_events() {
    let pipeline = Pipeline::start("override").await;
    let pg = tally_testkit::postgres().connect().await.unwrap();
    let app = pipeline.app.clone();
    assert!(tally_common::postgres::set_retention(&pg, &app, Some(30))
        .await
        .unwrap());
    // A new key is a cache miss: the gateway reloads keys and apps at once.
    let key = tally_testkit::write_key(&app).await;
    let now = now_ms();
    let day_ms = 86_400_000;
    let send = |key: String, anonymous: &'static str, ts: i64| {
        let body = json!({"app_id": app, "events": [
            {"name": "page_view", "anonymous_id": anonymous, "timestamp": ts}]});
        let pipeline = &pipeline;
        async move {
            tally_testkit::post_batch(&pipeline.http, &pipeline.gateway.url(), &key, &body).await
        }
    };
    let (status, answer) = send(key.clone(), "recent", now - 5 * day_ms).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = send(key.clone(), "old", now - 40 * day_ms).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(
        answer["errors"][0]["reason"], "timestamp_too_old",
        "{answer}"
    );

    assert!(tally_common::postgres::set_retention(&pg, &app, None)
        .await
        .unwrap());
    let key = tally_testkit::write_key(&app).await;
    let (status, answer) = send(key, "old", now - 40 * day_ms).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    pipeline.wait_rows(2).await;

    let client = pipeline.iso.clickhouse_client();
    let rows: Vec<(String, u16)> = client
        .query("SELECT anonymous_id, retention_days FROM events WHERE app_id = ? ORDER BY anonymous_id")
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows, vec![("old".into(), 0), ("recent".into(), 30)]);
    let sessions: Vec<(String, u16)> = eventually("sessions", Duration::from_secs(20), || async {
        let rows: Vec<(String, u16)> = client
            .query("SELECT distinct_id, retention_days FROM sessions FINAL WHERE app_id = ? ORDER BY distinct_id")
            .bind(&app)
            .fetch_all()
            .await
            .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(sessions, vec![("old".into(), 0), ("recent".into(), 30)]);
    let ids: Vec<String> = client
        .query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() \
             AND active AND table = 'events' ORDER BY partition_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let recent = day(now - 5 * day_ms).replace('-', "");
    let old = day(now - 40 * day_ms).replace('-', "");
    assert_eq!(ids, vec![format!("0-{old}"), format!("30-{recent}")]);
    pipeline.stop().await;
}
