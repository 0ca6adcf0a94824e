//! Gateway Prometheus metrics. Labels are bounded: status codes, outcomes and
//! reason codes come from fixed sets, never from client input.
//!
//! Logs that an attacker could trigger at will go through a [`LogGate`]: at most
//! one line a second, carrying how many were suppressed since the previous one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// `tally_gateway_admission_refused_total{reason}`: requests refused before their
    /// body was accepted into the in-flight budget. `reason`: `invalid_write_key` (an
    /// unknown header key, refused before a byte of the body is read), `inflight_full`,
    /// `unverified_share_full`, `client_cap` (see `overload.rs`).
    pub admission_refused: IntCounterVec,
    /// Gate of the log line that goes with `admission_refused`.
    pub admission_log: Arc<LogGate>,
}

/// Lets one log line through per interval and counts the ones held back.
#[derive(Debug)]
pub struct LogGate {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    /// A gate letting one line through every `interval`.
    pub fn new(interval: Duration) -> Self {
        LogGate {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be logged now.
    pub fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            *suppressed += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(suppressed))
    }
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
        let admission_refused = IntCounterVec::new(
            Opts::new(
                "tally_gateway_admission_refused_total",
                "Requests refused before admission: unknown header key or an in-flight cap, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(admission_refused.clone()))?;
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
            admission_refused,
            admission_log: Arc::new(LogGate::new(Duration::from_secs(1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gate_lets_one_line_through_per_interval() {
        let gate = LogGate::new(Duration::from_secs(3_600));
        assert_eq!(gate.admit(), Some(0));
        assert_eq!(gate.admit(), None);
        assert_eq!(gate.admit(), None);
        let open = LogGate::new(Duration::ZERO);
        assert_eq!(open.admit(), Some(0));
        assert_eq!(open.admit(), Some(0));
    }
}
