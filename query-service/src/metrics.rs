//! Query-service Prometheus metrics (labels bounded: endpoint names and status codes).

use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The query service's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// `tally_query_seconds{endpoint,status}`.
    pub request_seconds: HistogramVec,
    /// `tally_query_logins_total{outcome}`: ok, refused, throttled.
    pub logins: IntCounterVec,
    /// `tally_query_person_deletions_total`: deletion jobs started.
    pub deletions: prometheus::IntCounter,
    /// `tally_query_serving_lookup_failures_total`: the served pair could not
    /// be read (the last one read answered).
    pub serving_lookup_failures: prometheus::IntCounter,
    /// `tally_query_refresher_state_failures_total`: the refresher's state
    /// could not be read (raw rows answered).
    pub refresher_state_failures: prometheus::IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tally_query_seconds",
                "Query latency by endpoint and status",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16)?),
            &["endpoint", "status"],
        )?;
        registry.register(Box::new(request_seconds.clone()))?;
        let logins = IntCounterVec::new(
            Opts::new(
                "tally_query_logins_total",
                "Dashboard login attempts by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(logins.clone()))?;
        let deletions = prometheus::IntCounter::new(
            "tally_query_person_deletions_total",
            "Person deletion jobs started (the report refresher finishes them)",
        )?;
        registry.register(Box::new(deletions.clone()))?;
        let serving_lookup_failures = prometheus::IntCounter::new(
            "tally_query_serving_lookup_failures_total",
            "Lookups of the served database (replay switch) that failed; the last pair read answered",
        )?;
        registry.register(Box::new(serving_lookup_failures.clone()))?;
        let refresher_state_failures = prometheus::IntCounter::new(
            "tally_query_refresher_state_failures_total",
            "Reads of the report refresher's state that failed; raw rows answered instead",
        )?;
        registry.register(Box::new(refresher_state_failures.clone()))?;
        Ok(Metrics {
            registry,
            request_seconds,
            logins,
            deletions,
            serving_lookup_failures,
            refresher_state_failures,
        })
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &'static str, status: axum::http::StatusCode, seconds: f64) {
        self.request_seconds
            .with_label_values(&[endpoint, status.as_str()])
            .observe(seconds);
    }
}

impl Metrics {
    /// A login attempt: `ok`, `refused` (wrong e-mail or password) or
    /// `throttled` (logged here too, so that no refusal is only counted).
    pub fn record_login(&self, outcome: &'static str) {
        self.logins.with_label_values(&[outcome]).inc();
        if outcome != "ok" {
            tracing::info!(outcome, "dashboard login refused");
        }
    }

    /// A person deletion job started (its details are logged by the handler).
    pub fn person_deleted(&self) {
        self.deletions.inc();
    }

    /// The served pair could not be read from PostgreSQL.
    pub fn serving_lookup_failed(&self, error: &str) {
        self.serving_lookup_failures.inc();
        tracing::warn!(
            error,
            "served database not read; answering from the last one read"
        );
    }

    /// The refresher's state could not be read: raw rows answer (slower, never wrong).
    pub fn refresher_state_unreadable(&self, error: &str) {
        self.refresher_state_failures.inc();
        tracing::warn!(error, "refresher state unreadable: answered from raw rows");
    }
}
