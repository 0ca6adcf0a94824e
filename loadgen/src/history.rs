//! A historical dataset written straight into ClickHouse's `events` table (not
//! through the pipeline), for query benchmarks: `events` events spread evenly
//! over the last `days` days, from the same traffic model as live runs.
//!
//! Rows carry `kafka_topic = 'history'`, so they never interfere with the
//! aggregator's exactly-once watermarks (which are per topic). One `INSERT` per
//! day and chunk keeps every insert a single part.

use crate::model::{Model, ModelConfig};
use std::fmt;
use std::time::Instant;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::{Clock, SystemClock};
use tally_schemas::row::{event_date, EventRow};
use tally_schemas::{Enrichment, Envelope};

/// What to generate.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Target ClickHouse (migrated first).
    pub clickhouse: ClickHouseConfig,
    /// Days back from now.
    pub days: u32,
    /// Total events.
    pub events: u64,
    /// Model seed.
    pub seed: u64,
    /// App id prefix (`{prefix}-app-NN`).
    pub app_prefix: String,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistorySummary {
    /// Rows written.
    pub rows: u64,
    /// Apps.
    pub apps: usize,
    /// Days covered.
    pub days: u32,
    /// Database.
    pub database: String,
    /// Seconds taken.
    pub seconds: f64,
}

impl fmt::Display for HistorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} rows for {} apps over {} days into {} in {:.1} s ({:.0} rows/s)",
            self.rows,
            self.apps,
            self.days,
            self.database,
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9)
        )
    }
}

const CHUNK: usize = 200_000;

/// Generates and inserts the dataset.
pub async fn generate(config: &HistoryConfig) -> Result<HistorySummary, clickhouse::error::Error> {
    tally_common::clickhouse::migrate(&config.clickhouse).await?;
    let client = config.clickhouse.client();
    let started = Instant::now();
    let mut model = Model::new(&ModelConfig {
        seed: config.seed,
        run_id: config.app_prefix.clone(),
        mean_think_ms: 120_000.0,
        ..ModelConfig::default()
    });
    let span_ms = i64::from(config.days.max(1)) * 86_400_000;
    let end_ms = SystemClock.now_ms();
    let start_ms = end_ms - span_ms;
    let step = span_ms as f64 / config.events.max(1) as f64;
    let mut pending: Vec<EventRow> = Vec::with_capacity(CHUNK);
    let mut written = 0u64;
    let mut offset = 0i64;
    while (offset as u64) < config.events {
        let now_ms = start_ms + (offset as f64 * step) as i64;
        let batch = model.next_batch(now_ms, 10);
        for (i, event) in batch.events.into_iter().enumerate() {
            if offset as u64 >= config.events {
                break;
            }
            let ts = now_ms + i as i64;
            let envelope = Envelope {
                event_id: event.event_id.clone(),
                app_id: batch.app_id.clone(),
                name: event.name.clone(),
                distinct_id: event.distinct_id().to_owned(),
                user_id: event.user_id,
                anonymous_id: event.anonymous_id,
                timestamp_ms: ts,
                received_at_ms: ts,
                sent_at_ms: None,
                ip: Some(batch.ip.clone()),
                user_agent: Some(batch.user_agent.to_owned()),
                enrichment: Enrichment {
                    country: batch.country.to_owned(),
                    is_bot: batch.bot,
                    device_type: if batch.bot {
                        "bot"
                    } else if batch.user_agent.contains("Mobile") {
                        "mobile"
                    } else {
                        "desktop"
                    }
                    .to_owned(),
                    url_path: event
                        .properties
                        .get("url")
                        .and_then(|u| u.as_str())
                        .and_then(|u| u.split_once(".example"))
                        .map(|(_, path)| path.to_owned())
                        .unwrap_or_default(),
                    ..Enrichment::default()
                },
                properties: event.properties,
                retention_days: 0,
            };
            let row = EventRow::from_envelope(&envelope, "history", 0, offset);
            offset += 1;
            // One insert never spans two days (one table partition = one part).
            if pending
                .last()
                .is_some_and(|last| last.event_date != event_date(ts))
                || pending.len() >= CHUNK
            {
                written += insert(&client, &pending).await?;
                pending.clear();
            }
            pending.push(row);
        }
    }
    written += insert(&client, &pending).await?;
    Ok(HistorySummary {
        rows: written,
        apps: model.apps(),
        days: config.days,
        database: config.clickhouse.database.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn insert(
    client: &clickhouse::Client,
    rows: &[EventRow],
) -> Result<u64, clickhouse::error::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut insert = client.insert::<EventRow>("events").await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(rows.len() as u64)
}
