//! Gateway Prometheus metrics. Labels are bounded: status codes, outcomes and
//! reason codes come from fixed sets, never from client input.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

/// The gateway's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// `tally_gateway_requests_total{status}`.
    pub requests: IntCounterVec,
    /// `tally_gateway_events_total{outcome,reason}`.
    pub events: IntCounterVec,
    /// `tally_gateway_produce_seconds{result}`: time until every event of a request was acknowledged.
    pub produce_seconds: HistogramVec,
    /// `tally_gateway_inflight_bytes`: request bytes being processed.
    pub inflight_bytes: IntGauge,
    /// `tally_gateway_dead_letters_total{result}`: refused events written to (or lost
    /// on the way to) the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `tally_gateway_rate_limited_events_total{app}` (app labels bounded, see `overload.rs`).
    pub rate_limited: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tally_gateway_requests_total",
                "Batch requests by HTTP status",
            ),
            &["status"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("tally_gateway_events_total", "Events by outcome and reason"),
            &["outcome", "reason"],
        )?;
        let produce_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tally_gateway_produce_seconds",
                "Time from produce to broker acknowledgement of a request's events",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16)?),
            &["result"],
        )?;
        let inflight_bytes =
            IntGauge::new("tally_gateway_inflight_bytes", "Request bytes in flight")?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "tally_gateway_rate_limited_events_total",
                "Events refused by the per-app rate limit",
            ),
            &["app"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "tally_gateway_dead_letters_total",
                "Refused events sent to the dead-letter topic, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(inflight_bytes.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            events,
            produce_seconds,
            inflight_bytes,
            dead_letters,
            rate_limited,
        })
    }
}
