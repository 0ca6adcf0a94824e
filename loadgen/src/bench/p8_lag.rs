//! P8's refresh lag under steady load: for [`SECONDS`] s a writer inserts
//! [`PER_SECOND`] rows every second (rows, then their arrivals, as the
//! aggregator does; on a partition of their own, `steady`/0), while the
//! refresher runs as the service does — an incremental run, then the
//! service's default pause ([`PAUSE`]). A batch's lag is the time from its
//! insert until the end of the first run whose marks cover it (it is then
//! answered from the reports; before, from raw rows — answers are exact
//! either way). Printed: the batches' lag p50, p95 and max, and the runs'
//! times.

use report_refresher::refresh::{Kind, Refresher};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_common::Clock;
use tally_schemas::row::{event_date, EventRow};

/// Length of the steady phase.
const SECONDS: u64 = 60;
/// Rows written per second (about the minute of P8).
const PER_SECOND: usize = 2_000;
/// The refresher service's default pause between runs (`TALLY_REFRESH_INTERVAL_MS`).
const PAUSE: Duration = Duration::from_secs(10);
/// The steady rows' topic (partition 0).
const TOPIC: &str = "steady";

/// The `q`-quantile (0..=1) of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at.min(values.len() - 1)]
}

/// Measures the lag (see the module doc) with `refresher` on `client`'s
/// dataset (rows of the history copied with new ids, times and offsets).
pub async fn steady_lag(
    client: &clickhouse::Client,
    refresher: &mut Refresher,
) -> Result<Value, String> {
    let template: Vec<EventRow> = client
        .query(&format!(
            "SELECT ?fields FROM events WHERE kafka_topic = 'history' LIMIT {PER_SECOND}"
        ))
        .fetch_all()
        .await
        .map_err(|e| format!("P8 lag sample: {e}"))?;
    // (inserted at, last offset) per batch; (ended at, mark) per run.
    let batches: Mutex<Vec<(Instant, u64)>> = Mutex::new(Vec::new());
    let runs: Mutex<Vec<(Instant, u64, f64)>> = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let writer = async {
        let mut offset = 0u64;
        for second in 0..SECONDS {
            let now = tally_common::SystemClock.now_ms();
            let rows: Vec<EventRow> = template
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let mut row = row.clone();
                    let ts = now - (i as i64 % 1_000);
                    row.event_id = format!("steady-{second}-{i}");
                    row.ts_ms = u64::try_from(ts).unwrap_or(0);
                    row.timestamp = u32::try_from(ts / 1_000).unwrap_or(0);
                    row.received_at = u32::try_from(now / 1_000).unwrap_or(0);
                    row.event_date = event_date(ts);
                    row.kafka_topic = TOPIC.into();
                    row.kafka_partition = 0;
                    row.kafka_offset = offset;
                    offset += 1;
                    row
                })
                .collect();
            super::p8::insert_rows(client, rows).await?;
            if let Ok(mut batches) = batches.lock() {
                batches.push((Instant::now(), offset - 1));
            }
            let next = started + Duration::from_secs(second + 1);
            tokio::time::sleep_until(next.into()).await;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<(), String>(())
    };
    let reader = async {
        // Runs until a run after the writer's end has covered everything.
        let mut last = false;
        while !last {
            last = done.load(std::sync::atomic::Ordering::SeqCst);
            let run_started = Instant::now();
            refresher
                .run(Kind::Incremental)
                .await
                .map_err(|e| format!("P8 lag run: {e}"))?
                .ok_or("P8 lag: lease")?;
            let took = run_started.elapsed().as_secs_f64();
            let marks = refresher
                .state()
                .marks()
                .await
                .map_err(|e| format!("P8 lag marks: {e}"))?;
            let mark = marks
                .get(&(TOPIC.to_owned(), 0))
                .and_then(|m| u64::try_from(*m).ok());
            if let (Some(mark), Ok(mut runs)) = (mark, runs.lock()) {
                runs.push((Instant::now(), mark, took));
            }
            if !last {
                tokio::time::sleep(PAUSE).await;
            }
        }
        Ok::<(), String>(())
    };
    let (written, read) = tokio::join!(writer, reader);
    written?;
    read?;
    let batches = batches.into_inner().map_err(|e| e.to_string())?;
    let runs = runs.into_inner().map_err(|e| e.to_string())?;
    let mut lags: Vec<f64> = Vec::new();
    for (inserted, last_offset) in &batches {
        let covered = runs
            .iter()
            .find(|(ended, mark, _)| ended > inserted && mark >= last_offset)
            .ok_or("P8 lag: a batch never derived")?;
        lags.push(covered.0.duration_since(*inserted).as_secs_f64());
    }
    lags.sort_by(f64::total_cmp);
    let run_s: Vec<f64> = runs.iter().map(|(_, _, took)| *took).collect();
    let (p50, p95, max) = (
        quantile(&lags, 0.5),
        quantile(&lags, 0.95),
        quantile(&lags, 1.0),
    );
    eprintln!(
        "P8: refresh lag under {PER_SECOND} rows/s for {SECONDS} s: p50 {p50:.1} s, p95 {p95:.1} s, max {max:.1} s ({} runs, pause {} s)",
        runs.len(),
        PAUSE.as_secs()
    );
    Ok(json!({
        "rows_per_s": PER_SECOND, "seconds": SECONDS, "pause_s": PAUSE.as_secs(),
        "lag_p50_s": p50, "lag_p95_s": p95, "lag_max_s": max,
        "runs": runs.len(), "run_s": run_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_of_sorted_values() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 1.0), 5.0);
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
