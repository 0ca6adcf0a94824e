//! Migrations that rebuild a table (issue 17's per-app retention gives
//! `events` and `sessions` a new partition key, migration 0012), on the real
//! ClickHouse: an upgrade keeps every row and the materialized views, a run
//! that stopped anywhere resumes without losing or doubling a row (and a
//! dead runner's lock is broken), and runners started together apply it once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tally_common::clickhouse::{migrate, migrate_until, ClickHouseConfig};
use tally_schemas::migrations::CLICKHOUSE;
use tally_testkit::{clickhouse_url, unique};

/// A fresh database name on the test server.
fn config() -> ClickHouseConfig {
    ClickHouseConfig {
        url: clickhouse_url(),
        database: format!("tally_{}", unique("mig")),
        user: "default".into(),
        password: String::new(),
        cluster: None,
        shards: Vec::new(),
    }
}

async fn drop_database(config: &ClickHouseConfig) {
    let _ = config
        .server_client()
        .query(&format!("DROP DATABASE IF EXISTS {}", config.database))
        .execute()
        .await;
}

async fn run(client: &clickhouse::Client, sql: &str) {
    client
        .query(sql)
        .execute()
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// Rows as version 11 stores them: 3 days × 60 events (page views and
/// clicks, a property key per event kind) and 40 sessions, 10 of them in two
/// versions.
async fn fill_version_11(client: &clickhouse::Client) {
    run(
        client,
        "INSERT INTO events (app_id, event_date, timestamp, ts_ms, received_at, event_id, name, \
         distinct_id, prop_keys, prop_values, kafka_topic, kafka_partition, kafka_offset, url_path) \
         SELECT 'app', toDate(toDateTime(1700000000 - intDiv(number, 60) * 86400)), \
         toDateTime(1700000000 - intDiv(number, 60) * 86400 + number), \
         (1700000000 - intDiv(number, 60) * 86400 + number) * 1000, now(), \
         concat('e', toString(number)), if(number % 3 = 0, 'click', 'page_view'), \
         concat('v', toString(number % 17)), [if(number % 3 = 0, 'button', 'path')], \
         [toString(number)], 'events', toUInt32(number % 2), number, \
         concat('/p', toString(number % 5)) FROM system.numbers LIMIT 180",
    )
    .await;
    run(
        client,
        "INSERT INTO sessions (app_id, created_date, distinct_id, session_id, start_ms, end_ms, \
         start, duration_ms, events, page_views, entry_page, exit_page, referrer_host, utm_source, \
         utm_medium, utm_campaign, country, device_type, browser, os, is_bot, bounce, dropped, \
         version) SELECT 'app', toDate(toDateTime(1700000000 - (number % 3) * 86400)), \
         concat('v', toString(number % 40)), concat('0-', toString(number % 40)), 0, 0, \
         toDateTime(1700000000), 0, toUInt32(number), 1, '/', '/', '', '', '', '', 'DE', \
         'desktop', 'Firefox', 'Linux', 0, 1, 0, number FROM system.numbers LIMIT 50",
    )
    .await;
}

/// (rows, hash) of every event and session row, the rollup's page views and
/// the property keys: what an upgrade must keep.
async fn fingerprint(client: &clickhouse::Client) -> (u64, u64, u64, u64, u64, u64) {
    let (events, events_hash): (u64, u64) = client
        .query("SELECT count(), sum(cityHash64(event_id, name, kafka_offset, url_path, event_date)) FROM events")
        .fetch_one()
        .await
        .unwrap();
    let (sessions, sessions_hash): (u64, u64) = client
        .query("SELECT count(), sum(cityHash64(session_id, version, events, created_date)) FROM sessions FINAL")
        .fetch_one()
        .await
        .unwrap();
    let views: u64 = client
        .query("SELECT countMerge(page_views) FROM rollup_pages_hourly")
        .fetch_one()
        .await
        .unwrap();
    let keys: u64 = client
        .query("SELECT uniqExact(key) FROM property_keys")
        .fetch_one()
        .await
        .unwrap();
    (events, events_hash, sessions, sessions_hash, views, keys)
}

/// What every rebuilt database must look like: class 0 everywhere, partition
/// ids `0-YYYYMMDD`, no leftover of the rebuild, and the views firing again.
async fn assert_rebuilt(client: &clickhouse::Client, before: (u64, u64, u64, u64, u64, u64)) {
    assert_eq!(fingerprint(client).await, before, "every row kept, once");
    let classes: Vec<u16> = client
        .query("SELECT DISTINCT retention_days FROM events")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(classes, vec![0]);
    let ids: Vec<String> = client
        .query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() \
             AND active AND table IN ('events', 'sessions') ORDER BY partition_id",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter().all(|id| id.len() == 10
            && id.starts_with("0-")
            && id[2..].bytes().all(|b| b.is_ascii_digit())),
        "{ids:?}"
    );
    let leftovers: Vec<String> = client
        .query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND \
             (name LIKE '%_v12' OR name LIKE '%_pre_v12' OR name = 'tally_migration_lock')",
        )
        .fetch_all()
        .await
        .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let recorded: u64 = client
        .query("SELECT count() FROM schema_migrations WHERE version = 12")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    // The views read the new table: one more page view, one new key.
    run(
        client,
        "INSERT INTO events (app_id, event_date, timestamp, ts_ms, received_at, event_id, name, \
         distinct_id, prop_keys, prop_values, kafka_topic, kafka_partition, kafka_offset, \
         retention_days) VALUES ('app', toDate('2023-11-14'), toDateTime('2023-11-14 10:00:00'), \
         1699956000000, now(), 'after', 'page_view', 'v1', ['fresh_key'], ['1'], 'events', 0, \
         100000, 30)",
    )
    .await;
    let (_, _, _, _, views, keys) = fingerprint(client).await;
    assert_eq!(
        (views, keys),
        (before.4 + 1, before.5 + 1),
        "views fire after the swap"
    );
    let id: String = client
        .query(
            "SELECT partition_id FROM system.parts WHERE database = currentDatabase() AND active \
             AND table = 'events' AND partition_id LIKE '30-%'",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(id, "30-20231114");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_keeps_every_row_and_the_views() {
    let config = config();
    migrate_until(&config, 11).await.unwrap();
    let client = config.client();
    fill_version_11(&client).await;
    let before = fingerprint(&client).await;
    assert_eq!(
        (before.0, before.2),
        (180, 40),
        "sessions: the last of their versions"
    );
    assert_eq!(before.4, 120, "page views in the rollup");
    let applied = migrate(&config).await.unwrap();
    assert_eq!(applied, vec![12]);
    assert_rebuilt(&client, before).await;
    drop_database(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_rebuild_resumes_without_losing_or_doubling_a_row() {
    let config = config();
    migrate_until(&config, 11).await.unwrap();
    let client = config.client();
    fill_version_11(&client).await;
    let before = fingerprint(&client).await;
    let migration = CLICKHOUSE.iter().find(|m| m.version == 12).unwrap();
    let [events, sessions] = migration.rebuilds else {
        panic!("two rebuilds")
    };
    // `events`: a runner died part way through the copy...
    let steps = events.steps(12, &migration.rebuild_definition(events).unwrap());
    for step in &steps[..steps.len() - 3] {
        for sql in step.statements() {
            run(&client, &sql).await;
        }
    }
    run(
        &client,
        "INSERT INTO events_v12 SELECT *, 0 FROM events_pre_v12 ORDER BY event_id LIMIT 25",
    )
    .await;
    // ...`sessions`: another died after the swap, before dropping the copy...
    let steps = sessions.steps(12, &migration.rebuild_definition(sessions).unwrap());
    for step in &steps[..steps.len() - 1] {
        for sql in step.statements() {
            run(&client, &sql).await;
        }
    }
    // ...holding the lock, which has not beaten for two minutes.
    run(
        &client,
        "CREATE TABLE tally_migration_lock (at DateTime) ENGINE = Log",
    )
    .await;
    run(
        &client,
        "INSERT INTO tally_migration_lock (at) SELECT now() - 120",
    )
    .await;
    let applied = migrate(&config).await.unwrap();
    assert_eq!(applied, vec![12]);
    // The rollup lost nothing: the views were dropped only after the claim.
    assert_rebuilt(&client, before).await;
    drop_database(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_started_together_apply_a_rebuild_once() {
    let config = config();
    migrate_until(&config, 11).await.unwrap();
    let client = config.client();
    fill_version_11(&client).await;
    let before = fingerprint(&client).await;
    let (a, b, c) = tokio::join!(migrate(&config), migrate(&config), migrate(&config));
    let applied: Vec<Vec<u32>> = [a, b, c].into_iter().map(Result::unwrap).collect();
    assert_eq!(
        applied.iter().filter(|v| v.contains(&12)).count(),
        1,
        "{applied:?}"
    );
    assert_rebuilt(&client, before).await;
    drop_database(&config).await;
}
