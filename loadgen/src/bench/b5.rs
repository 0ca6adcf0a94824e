//! B5 pages: the 90-day page-views question answered from the report
//! refresher's derived tables (`report+raw`, `query-service/src/derived.rs`)
//! against the same question from raw rows (`"source": "raw"`), through one
//! query service with its answer cache off, in the same run.
//!
//! The historical dataset is written straight into ClickHouse, so no
//! aggregator ever committed its rows: the refresher runs in-process with a
//! broker configuration whose topic (`history`, the rows' topic) has no
//! committed offsets, so a full run derives every row and records the
//! positions readers need ([`refreshed`]; kept with the dataset). Both
//! answers are compared: a faster answer that differs is not a result.

use super::process::Service;
use super::{send, BenchConfig};
use crate::stats::{ms, percentile};
use report_refresher::refresh::{Kind, Refresher};
use report_refresher::state::PgState;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally_common::clickhouse::ClickHouseConfig;

/// The app every B5 request asks about.
const APP: &str = "hist-app-00";

/// B5 pages: page views and persons per page and device over 90 days
/// (covered by the derived tables: page dimensions, `name = page_view`); the
/// bench replaces `"90d"` by the same range to the millisecond for both sources.
pub static B5_PAGES_QUERY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({"metrics": ["events", "unique_users"], "group_by": ["url_path", "device_type"],
           "filters": [{"property": "name", "op": "eq", "value": "page_view"}], "range": "90d", "limit": 100})
});

/// Deletes the refresher's state and derived rows of `scope` (the dataset's
/// database), so the next run is a first, full one.
pub async fn reset_refresh_state(
    client: &clickhouse::Client,
    pg: &tokio_postgres::Client,
    scope: &str,
) -> Result<(), String> {
    for table in [
        "report_pages_hourly",
        "person_day_activity",
        "id_hours",
        "arrivals",
        "person_distinct_ids",
        "persons",
    ] {
        client
            .query(&format!("TRUNCATE TABLE {table}"))
            .execute()
            .await
            .map_err(|e| format!("truncate {table}: {e}"))?;
    }
    for table in [
        "refresh_marks",
        "refresh_identity_marks",
        "refresh_runs",
        "refresh_lease",
        "refresh_derived",
        "refresh_pending",
        "person_deletions",
    ] {
        pg.execute(&format!("DELETE FROM {table} WHERE scope = $1"), &[&scope])
            .await
            .map_err(|e| format!("reset {table}: {e}"))?;
    }
    Ok(())
}

/// Derives the dataset's reports once (a full refresher run) unless its
/// derived positions are recorded already and its report table holds rows;
/// returns what was done.
///
/// The refresher's state lives in PostgreSQL under the database's name, the
/// rows in ClickHouse: a dataset generated again under the same name (its
/// database dropped, or a ClickHouse whose data went with its checkout while
/// PostgreSQL stayed) finds the old state. Reused, it would send readers to
/// empty report tables, so an empty report table means a first run.
pub async fn refreshed(history: &ClickHouseConfig, config: &BenchConfig) -> Result<Value, String> {
    let scope = history.database.clone();
    let pg = config
        .postgres
        .connect()
        .await
        .map_err(|e| format!("B5 postgres: {e}"))?;
    tally_common::postgres::migrate(&pg)
        .await
        .map_err(|e| format!("B5 postgres: {e}"))?;
    let derived: i64 = pg
        .query_one(
            "SELECT count(*) FROM refresh_derived WHERE scope = $1",
            &[&scope],
        )
        .await
        .map_err(|e| format!("B5 postgres: {e}"))?
        .get(0);
    let client = history.client();
    let reported: u64 = client
        .query("SELECT count() FROM report_pages_hourly")
        .fetch_one()
        .await
        .map_err(|e| format!("B5 reports: {e}"))?;
    if derived > 0 && reported > 0 {
        return Ok(json!({"refresh": "reused"}));
    }
    reset_refresh_state(&client, &pg, &scope).await?;
    eprintln!("B5: deriving the reports of {scope} (full refresher run)");
    let kafka = tally_common::kafka::KafkaConfig {
        brokers: config.brokers.clone(),
        topic: "history".into(),
        ..tally_common::kafka::KafkaConfig::default()
    };
    let mut refresher = Refresher::new(
        client,
        PgState::new(pg, &scope, "bench-b5"),
        Duration::from_secs(3_600),
    )
    .with_kafka(kafka, &super::unique("b5-none"));
    let started = Instant::now();
    refresher
        .run(Kind::Full)
        .await
        .map_err(|e| format!("B5 refresh: {e}"))?
        .ok_or("B5 refresh: lease held by another process")?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("B5: reports derived in {seconds:.1} s");
    Ok(json!({"refresh": "built", "refresh_s": seconds}))
}

/// Results of an answer, sorted (ties in the order are not part of it).
fn results(answer: &Value) -> Vec<String> {
    let mut rows: Vec<String> = answer["results"]
        .as_array()
        .map(|rows| rows.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    rows.sort();
    rows
}

/// Times [`B5_PAGES_QUERY`] from the derived tables and from raw rows,
/// alternating, `config.b5_runs` times each, through a query service started
/// with `env` (its dataset), after [`refreshed`].
pub async fn pages(
    config: &BenchConfig,
    history: &ClickHouseConfig,
    env: &[(&str, String)],
) -> Result<Value, String> {
    let mut out = refreshed(history, config).await?;
    let query = Service::start(config, "query-service", "TALLY_QUERY_ADDR", env).await?;
    let keys = send::provision_read_keys(&config.postgres, [APP]).await?;
    let url = format!("{}/api/v1/analytics/{APP}/query", query.url);
    let http = reqwest::Client::new();
    // One fixed range (the last 90 days, to the millisecond: partial first
    // and last hours included), so both sources answer the same question.
    let to = tally_common::Clock::now_ms(&tally_common::SystemClock);
    let range = json!({"from": to - 90 * 86_400_000, "to": to});
    let ask = |source: &'static str| {
        let mut body = B5_PAGES_QUERY.clone();
        body["source"] = json!(source);
        body["range"] = range.clone();
        // Every group: at a cut, groups tied on page views may be ordered
        // differently by the two statements.
        body["limit"] = json!(10_000);
        let request = http.post(&url).bearer_auth(&keys[APP]).json(&body);
        async move {
            let started = Instant::now();
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("B5 pages ({source}): HTTP {status}: {answer}"));
            }
            Ok((started.elapsed(), answer))
        }
    };
    // One untimed request each first: a new process's first answer pays for
    // loading keys and opening connections.
    ask("auto").await?;
    ask("raw").await?;
    let (mut derived, mut raw) = (Vec::new(), Vec::new());
    let mut differing = None;
    let mut source = Value::Null;
    for _ in 0..config.b5_runs {
        let (took, from_reports) = ask("auto").await?;
        derived.push(took);
        let (took, from_raw) = ask("raw").await?;
        raw.push(took);
        source = from_reports["source"].clone();
        if results(&from_reports) != results(&from_raw) {
            differing = Some((from_reports, from_raw));
        }
    }
    let client = history.client();
    let mut costs = serde_json::Map::new();
    for source in ["auto", "raw"] {
        let cost = async {
            let start: u32 = client.query("SELECT toUInt32(now())").fetch_one().await?;
            // Its own second: queries finishing after `start` are this request's.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let _ = ask(source).await;
            read_cost(&client, start).await
        };
        match cost.await {
            Ok((rows, bytes, memory)) => {
                costs.insert(
                    source.into(),
                    json!({"rows_read": rows, "bytes_read": bytes, "peak_memory_bytes": memory}),
                );
            }
            Err(err) => eprintln!("B5 pages: rows read not known ({err})"),
        }
    }
    query.stop();
    if let Some((from_reports, from_raw)) = differing {
        // A faster answer that differs is not a result: the run fails.
        return Err(format!(
            "B5 pages: the answer from reports ({} groups, source {}) differs from raw rows' ({} groups) on {}",
            from_reports["results"].as_array().map_or(0, Vec::len),
            from_reports["source"],
            from_raw["results"].as_array().map_or(0, Vec::len),
            history.database
        ));
    }
    let (d95, r95) = (percentile(&derived, 0.95), percentile(&raw, 0.95));
    if let Value::Object(figures) = json!({
        "source": source, "answers_equal": true,
        "derived_p50_ms": ms(percentile(&derived, 0.5)), "derived_p95_ms": ms(d95),
        "raw_p50_ms": ms(percentile(&raw, 0.5)), "raw_p95_ms": ms(r95),
        "speedup_p95": r95.as_secs_f64() / d95.as_secs_f64().max(1e-9),
        "derived_read": costs.get("auto"), "raw_read": costs.get("raw"),
    }) {
        if let Some(out) = out.as_object_mut() {
            out.extend(figures);
        }
    }
    Ok(out)
}

/// Rows and bytes read (summed) and peak memory (largest) of the statements
/// that finished after `start` (epoch s), from `system.query_log` (the local
/// ClickHouse logs every query: `scripts/clickhouse/users.xml`).
pub async fn read_cost(
    client: &clickhouse::Client,
    start: u32,
) -> Result<(u64, u64, u64), clickhouse::error::Error> {
    client.query("SYSTEM FLUSH LOGS").execute().await?;
    client
        .query(
            "SELECT sum(read_rows), sum(read_bytes), max(memory_usage) FROM system.query_log \
             WHERE type = 2 AND event_time > toDateTime(?) \
             AND query NOT LIKE '%system.query_log%'",
        )
        .bind(start)
        .fetch_one::<(u64, u64, u64)>()
        .await
}
