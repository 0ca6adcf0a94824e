//! The refresher's metrics; one function per notable event that both logs
//! (structured fields) and counts (bounded labels).

use crate::error::RefreshError;
use crate::refresh::Report;
use prometheus::{HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric of the refresher.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry served at `/metrics`.
    pub registry: Registry,
    /// `tally_refresher_runs_total{kind, outcome}`.
    pub runs: IntCounterVec,
    /// `tally_refresher_run_seconds{kind}`.
    pub run_seconds: prometheus::HistogramVec,
    /// `tally_refresher_buckets_total{kind}`: app days recomputed.
    pub buckets: IntCounterVec,
    /// `tally_refresher_drift`: keys found different by the last full rebuild.
    pub drift: IntGauge,
    /// `tally_refresher_last_success_seconds`: when the last run committed (epoch s).
    pub last_success: IntGauge,
    /// `tally_refresher_new_rows_total`: raw rows derived.
    pub new_rows: prometheus::IntCounter,
    /// `tally_refresher_forgotten_marks_total`: marks taken on another log.
    pub forgotten_marks: prometheus::IntCounter,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new(
                "tally_refresher_runs_total",
                "Refresh runs by kind and outcome",
            ),
            &["kind", "outcome"],
        )?;
        let run_seconds = prometheus::HistogramVec::new(
            HistogramOpts::new("tally_refresher_run_seconds", "Duration of committed runs")
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 16)?),
            &["kind"],
        )?;
        let buckets = IntCounterVec::new(
            Opts::new("tally_refresher_buckets_total", "App days recomputed"),
            &["kind"],
        )?;
        let drift = IntGauge::new(
            "tally_refresher_drift",
            "Keys the last full rebuild found different from a recomputation (expected 0)",
        )?;
        let last_success = IntGauge::new(
            "tally_refresher_last_success_seconds",
            "When the last run committed (epoch seconds); refresh lag = now - this",
        )?;
        let new_rows = prometheus::IntCounter::new(
            "tally_refresher_new_rows_total",
            "Raw rows derived by incremental runs",
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(run_seconds.clone()))?;
        registry.register(Box::new(buckets.clone()))?;
        registry.register(Box::new(drift.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        let forgotten_marks = prometheus::IntCounter::new(
            "tally_refresher_forgotten_marks_total",
            "Marks found at or past their partition's log end (taken on another log) and forgotten",
        )?;
        registry.register(Box::new(new_rows.clone()))?;
        registry.register(Box::new(forgotten_marks.clone()))?;
        Ok(Metrics {
            registry,
            runs,
            run_seconds,
            buckets,
            drift,
            last_success,
            new_rows,
            forgotten_marks,
        })
    }

    /// Marks taken on another log were forgotten before a run.
    pub fn forgot_marks(&self, forgotten: &[crate::refresh::ForgottenMark]) {
        for mark in forgotten {
            self.forgotten_marks.inc();
            tracing::warn!(topic = %mark.topic, partition = mark.partition, mark = mark.mark,
                log_end = mark.log_end,
                "a mark is at or past its partition's log end (the topic was made anew): positions forgotten, full rebuild");
        }
    }

    /// A run committed.
    pub fn committed(&self, report: &Report, seconds: f64) {
        self.forgot_marks(&report.forgotten);
        let record = &report.record;
        self.runs
            .with_label_values(&[record.kind, "committed"])
            .inc();
        self.run_seconds
            .with_label_values(&[record.kind])
            .observe(seconds);
        self.buckets
            .with_label_values(&[record.kind])
            .inc_by(record.buckets);
        self.new_rows.inc_by(record.new_rows);
        if let Some(drift) = record.drift {
            self.drift.set(i64::try_from(drift).unwrap_or(i64::MAX));
            if drift > 0 {
                tracing::warn!(
                    drift,
                    version = record.version,
                    "full rebuild found drift (corrected)"
                );
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        tracing::info!(kind = record.kind, version = record.version, buckets = record.buckets,
            added_buckets = report.added, new_rows = record.new_rows, drift = ?record.drift, seconds,
            "refresh run committed");
    }

    /// Another refresher holds the lease.
    pub fn standby(&self, kind: &'static str) {
        self.runs.with_label_values(&[kind, "standby"]).inc();
        tracing::debug!(kind, "another refresher holds the lease");
    }

    /// A run failed; nothing was committed.
    pub fn failed(&self, kind: &'static str, error: &RefreshError) {
        self.runs.with_label_values(&[kind, error.reason()]).inc();
        tracing::warn!(kind, reason = error.reason(), error = %error, "refresh run failed (retried next interval)");
    }
}
