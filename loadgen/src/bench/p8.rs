//! P8: the report refresher's incremental refresh against a full rebuild, in
//! one run, on the historical dataset (≥ 50 M events over 90 days in the full
//! suite). Steps: a full rebuild from nothing (the initial build); then "one
//! minute of new traffic" written straight into ClickHouse — new rows today,
//! late rows on older days, merges of two persons' histories and trait
//! changes, deletions of persons (mutations and jobs, as the query service
//! makes them; 5 % of the new rows are late: most from the last 7 days, one
//! in fifty of those from up to 89 days ago); then an incremental run (timed: the refresh after that
//! minute) and a full rebuild (timed; its drift must be 0). The ratio full /
//! incremental is seed 003's figure (goal ≥ 100×). Then the refresh lag under
//! steady load ([`super::p8_lag`]).

use report_refresher::refresh::{Kind, Refresher};
use report_refresher::state::PgState;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::Clock;
use tally_schemas::person::{PersonDistinctIdRow, PersonRow};
use tally_schemas::row::{event_date, ArrivalRow, EventRow};

/// New events in the minute (about 2 000 events/s), of which 5 % late.
const NEW_EVENTS: usize = 120_000;
/// Identity merges and trait changes in the minute.
const MERGES: usize = 150;
/// Persons deleted in the minute.
const DELETIONS: usize = 10;

fn err(what: &str) -> impl Fn(clickhouse::error::Error) -> String + '_ {
    move |e| format!("P8 {what}: {e}")
}

/// Inserts `rows` one day at a time (one part per insert), then their
/// arrivals, as the aggregator does (the refresher without a broker derives
/// up to the highest arrival, so they come after the rows here).
pub(super) async fn insert_rows(
    client: &clickhouse::Client,
    mut rows: Vec<EventRow>,
) -> Result<(), String> {
    rows.sort_by_key(|r| (r.event_date, r.kafka_offset));
    for day in rows.chunk_by(|a, b| a.event_date == b.event_date) {
        let mut insert = client
            .insert::<EventRow>("events")
            .await
            .map_err(err("insert"))?;
        for row in day {
            insert.write(row).await.map_err(err("insert"))?;
        }
        insert.end().await.map_err(err("insert"))?;
    }
    let mut insert = client
        .insert::<ArrivalRow>("arrivals")
        .await
        .map_err(err("arrivals"))?;
    for row in &rows {
        insert
            .write(&ArrivalRow::of(row))
            .await
            .map_err(err("arrivals"))?;
    }
    insert.end().await.map_err(err("arrivals"))?;
    Ok(())
}

/// Writes one minute of new traffic, identity changes and deletions.
async fn new_minute(
    client: &clickhouse::Client,
    pg: &tokio_postgres::Client,
    scope: &str,
) -> Result<Value, String> {
    let now = tally_common::SystemClock.now_ms();
    let top: u64 = client
        .query("SELECT max(kafka_offset) FROM events WHERE kafka_topic = 'history'")
        .fetch_one()
        .await
        .map_err(err("top"))?;
    let mut rows: Vec<EventRow> = client
        .query(&format!(
            "SELECT ?fields FROM events WHERE kafka_topic = 'history' LIMIT {NEW_EVENTS}"
        ))
        .fetch_all()
        .await
        .map_err(err("sample"))?;
    let mut late = 0;
    for (i, row) in rows.iter_mut().enumerate() {
        // 5 % late: most from the last 7 days (offline clients), one in
        // fifty of them from up to 89 days ago; the rest within the minute.
        let ts = if i % 20 == 0 {
            late += 1;
            let days_back = if i % 1_000 == 0 {
                (i as i64 * 7_919) % 89 + 1
            } else {
                (i as i64 / 20) % 7 + 1
            };
            now - days_back * 86_400_000 + (i as i64 * 104_729) % 86_400_000
        } else {
            now - (i as i64 % 60_000)
        };
        row.event_id = format!("p8-{i}");
        row.ts_ms = u64::try_from(ts).unwrap_or(0);
        row.timestamp = u32::try_from(ts / 1_000).unwrap_or(0);
        row.received_at = u32::try_from(now / 1_000).unwrap_or(0);
        row.event_date = event_date(ts);
        row.kafka_offset = top + 1 + i as u64;
    }
    let new_rows = rows.len();
    // Identity rows carry the position of an event, as the aggregator's do.
    let positions: Vec<(u32, u64)> = rows
        .iter()
        .map(|r| (r.kafka_partition, r.kafka_offset))
        .collect();
    insert_rows(client, rows).await?;

    // Merges of two persons' histories: pairs of ids of one app with events.
    let ids: Vec<(String, String)> = client
        .query(&format!(
            "SELECT app_id, distinct_id FROM events WHERE kafka_topic = 'history' AND is_bot = 0 \
             GROUP BY app_id, distinct_id ORDER BY app_id, cityHash64(distinct_id) LIMIT {}",
            MERGES * 2 + DELETIONS
        ))
        .fetch_all()
        .await
        .map_err(err("ids"))?;
    let version: u64 = client
        .query("SELECT max(version) FROM person_distinct_ids")
        .fetch_one()
        .await
        .map_err(err("version"))?;
    let (mut links, mut traits) = (Vec::new(), Vec::new());
    let mut merges = 0;
    for (i, pair) in ids[..MERGES * 2].chunks(2).enumerate() {
        let [(app_a, a), (app_b, b)] = pair else {
            continue;
        };
        if app_a != app_b {
            continue;
        }
        let v = version + 3 * i as u64;
        let (partition, offset) = positions[i];
        for (id, k) in [(a, 1), (b, 2)] {
            links.push(PersonDistinctIdRow {
                app_id: app_a.clone(),
                distinct_id: id.clone(),
                person_id: a.clone(),
                version: v + k,
                is_deleted: 0,
                kafka_topic: "history".into(),
                kafka_partition: partition,
                kafka_offset: offset,
            });
        }
        traits.push(PersonRow {
            app_id: app_a.clone(),
            person_id: a.clone(),
            prop_keys: vec!["plan".into()],
            prop_values: vec!["pro".into()],
            version: v + 3,
            is_deleted: 0,
        });
        merges += 1;
    }
    let mut insert = client
        .insert::<PersonDistinctIdRow>("person_distinct_ids")
        .await
        .map_err(err("links"))?;
    for row in &links {
        insert.write(row).await.map_err(err("links"))?;
    }
    insert.end().await.map_err(err("links"))?;
    let mut insert = client
        .insert::<PersonRow>("persons")
        .await
        .map_err(err("traits"))?;
    for row in &traits {
        insert.write(row).await.map_err(err("traits"))?;
    }
    insert.end().await.map_err(err("traits"))?;

    // Deletions, as the query service makes them: a job with the days, then mutations.
    for (app, id) in &ids[MERGES * 2..] {
        let days: Vec<String> = client
            .query("SELECT DISTINCT toString(event_date) FROM events WHERE app_id = ? AND distinct_id = ?")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_all()
            .await
            .map_err(err("days"))?;
        let list = vec![id.clone()];
        pg.execute(
            "INSERT INTO person_deletions (scope, app_id, person_id, distinct_ids, days, status, requested_by) \
             VALUES ($1, $2, $3, $4, $5, 'deleting', 'bench')",
            &[&scope, app, id, &list, &days],
        )
        .await
        .map_err(|e| format!("P8 job: {e}"))?;
        for (sql, ids) in tally_schemas::person::delete_statements(id, &list) {
            client
                .query(sql)
                .bind(app.as_str())
                .bind(ids.as_slice())
                .execute()
                .await
                .map_err(err("delete"))?;
        }
    }
    let waited = Instant::now();
    loop {
        let pending: u64 = client
            .query("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0")
            .fetch_one()
            .await
            .map_err(err("mutations"))?;
        if pending == 0 {
            break;
        }
        if waited.elapsed() > Duration::from_secs(600) {
            return Err("P8: mutations not done after 10 min".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(
        json!({"new_rows": new_rows, "late_rows": late, "merges": merges, "trait_changes": traits.len(),
              "deletions": DELETIONS, "mutations_s": waited.elapsed().as_secs_f64()}),
    )
}

/// Runs P8 on a copy of the historical dataset of `events` rows (P8 changes
/// the data it runs on; the copy is dropped afterwards).
pub async fn run(
    clickhouse: &ClickHouseConfig,
    events: u64,
    postgres: &tally_common::postgres::PostgresConfig,
) -> Result<Value, String> {
    let (history, generated) = super::history_db(clickhouse, events).await?;
    let copy = ClickHouseConfig {
        database: format!("tally_bench_p8_{events}"),
        ..clickhouse.clone()
    };
    let server = copy.server_client();
    let drop = format!("DROP DATABASE IF EXISTS {}", copy.database);
    server.query(&drop).execute().await.map_err(err("drop"))?;
    tally_common::clickhouse::migrate(&copy)
        .await
        .map_err(err("migrate"))?;
    let started = Instant::now();
    server
        .query(&format!(
            "INSERT INTO {}.events SELECT * FROM {}.events",
            copy.database, history.database
        ))
        .execute()
        .await
        .map_err(err("copy"))?;
    eprintln!(
        "P8: copied {events} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Seed 002 expects 10–20× compression of raw events: ours, on the history.
    let storage = tally_common::lifecycle::storage(&history.client(), history.layout())
        .await
        .map_err(err("storage"))?;
    let events_storage = storage.into_iter().find(|t| t.table == "events");
    if let Some(t) = &events_storage {
        eprintln!(
            "P8: history events {} rows, {} bytes on disk, {} uncompressed: compression {:.1}×",
            t.rows,
            t.bytes_on_disk,
            t.uncompressed,
            t.ratio()
        );
    }
    let result = p8(&copy, postgres).await;
    // TALLY_P8_KEEP=1 keeps the copy, to look into its tables afterwards.
    if std::env::var_os("TALLY_P8_KEEP").is_none() {
        let _ = server.query(&drop).execute().await;
    }
    let mut result = result?;
    result["dataset"] = json!(generated);
    result["history_events_storage"] = json!(events_storage.map(|t| json!({
        "rows": t.rows, "bytes_on_disk": t.bytes_on_disk, "compressed": t.compressed,
        "uncompressed": t.uncompressed, "ratio": t.ratio(), "partitions": t.partitions,
    })));
    Ok(result)
}

/// Runs P8 on the historical dataset in `history`.
async fn p8(
    history: &ClickHouseConfig,
    postgres: &tally_common::postgres::PostgresConfig,
) -> Result<Value, String> {
    let client = history.client();
    let scope = history.database.clone();
    let pg = postgres
        .connect()
        .await
        .map_err(|e| format!("P8 postgres: {e}"))?;
    tally_common::postgres::migrate(&pg)
        .await
        .map_err(|e| format!("P8 postgres: {e}"))?;
    // A fresh start for this dataset: its derived tables and state.
    super::b5::reset_refresh_state(&client, &pg, &scope).await?;
    let rows: u64 = client
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .map_err(err("count"))?;
    let state_pg = postgres
        .connect()
        .await
        .map_err(|e| format!("P8 postgres: {e}"))?;
    let mut refresher = Refresher::new(
        client.clone(),
        PgState::new(state_pg, &scope, "bench-p8"),
        Duration::from_secs(3_600),
    );
    let timed = |started: Instant| started.elapsed().as_secs_f64();
    let started = Instant::now();
    let initial = refresher
        .run(Kind::Full)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("P8: lease")?;
    let initial_s = timed(started);
    eprintln!(
        "P8: initial build of {rows} rows in {initial_s:.1} s ({} app-days)",
        initial.record.buckets
    );
    let minute = new_minute(&client, &pg, &scope).await?;
    let started = Instant::now();
    let incremental = refresher
        .run(Kind::Incremental)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("P8: lease")?;
    let incremental_s = timed(started);
    let started = Instant::now();
    let full = refresher
        .run(Kind::Full)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("P8: lease")?;
    let full_s = timed(started);
    let lag = super::p8_lag::steady_lag(&client, &mut refresher).await?;
    eprintln!("P8: incremental {incremental_s:.2} s ({} app-days recomputed, {} added to), full {full_s:.1} s ({} app-days), drift {:?}",
        incremental.record.buckets, incremental.added, full.record.buckets, full.record.drift);
    Ok(json!({
        "rows": rows, "minute": minute,
        "initial_build_s": initial_s,
        "incremental_s": incremental_s, "incremental_app_days": incremental.record.buckets,
        "incremental_added_app_days": incremental.added,
        "incremental_reworked_app_days": incremental.reworked.values().map(|d| d.len()).sum::<usize>(),
        "incremental_steps_s": incremental.seconds.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "full_steps_s": full.seconds.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "full_s": full_s, "full_app_days": full.record.buckets, "drift": full.record.drift,
        "ratio": full_s / incremental_s.max(1e-6),
        "steady_lag": lag,
    }))
}
