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
        Ok(Metrics {
            registry,
            request_seconds,
            logins,
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
}
