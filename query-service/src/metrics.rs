//! Query-service Prometheus metrics (labels bounded: endpoint names and status codes).

use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, Registry};

/// The query service's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// `tally_query_seconds{endpoint,status}`.
    pub request_seconds: HistogramVec,
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
        Ok(Metrics {
            registry,
            request_seconds,
        })
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &'static str, status: axum::http::StatusCode, seconds: f64) {
        self.request_seconds
            .with_label_values(&[endpoint, status.as_str()])
            .observe(seconds);
    }
}
