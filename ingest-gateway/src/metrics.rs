//! Gateway telemetry. Labels are bounded: status codes, outcomes and reason codes
//! come from fixed sets, never from client input (app labels are capped, see
//! `overload.rs`).
//!
//! Each notable event has one method on [`Metrics`] that both counts it and logs
//! it (structured fields), so no failure is only logged: a request answered, a
//! refusal before admission, rate-limited events, rejected and accepted events,
//! a publish, dead letters stored or lost.
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

impl Metrics {
    /// A batch request was answered with `status` (`reason` for refusals).
    pub fn request_answered(
        &self,
        status: axum::http::StatusCode,
        refusal: Option<(&str, &dyn std::fmt::Display)>,
    ) {
        self.requests.with_label_values(&[status.as_str()]).inc();
        if let Some((reason, error)) = refusal {
            tracing::debug!(status = status.as_u16(), reason, %error, "batch refused");
        }
    }

    /// A request was refused before its body was admitted into the in-flight
    /// budget; `reason` is one of the labels documented on `admission_refused`.
    pub fn refused_before_admission(
        &self,
        reason: &'static str,
        client: &str,
        inflight_bytes: usize,
    ) {
        self.admission_refused.with_label_values(&[reason]).inc();
        if let Some(suppressed) = self.admission_log.admit() {
            tracing::warn!(
                reason,
                client,
                inflight_bytes,
                suppressed,
                "request refused before admission"
            );
        }
    }

    /// `count` events of an app over its rate were refused (429).
    pub fn rate_limited(&self, app_label: &str, count: usize) {
        self.rate_limited
            .with_label_values(&[app_label])
            .inc_by(count as u64);
        tracing::debug!(
            app = app_label,
            count,
            "events refused by the app's rate limit"
        );
    }

    /// One event of a batch was rejected for `reason` (a `RejectReason` code).
    pub fn event_rejected(&self, reason: &'static str) {
        self.events.with_label_values(&["rejected", reason]).inc();
    }

    /// `count` events were stored on the broker.
    pub fn events_accepted(&self, count: usize) {
        if count > 0 {
            self.events
                .with_label_values(&["accepted", "ok"])
                .inc_by(count as u64);
        }
    }

    /// A publish of a request's events finished after `seconds`.
    pub fn published(&self, result: &Result<(), String>, seconds: f64) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.produce_seconds
            .with_label_values(&[outcome])
            .observe(seconds);
        if let Err(error) = result {
            tracing::debug!(%error, seconds, "events not acknowledged by the broker");
        }
    }

    /// `count` refused events of `app` were written to the dead-letter topic, or lost.
    pub fn dead_letters(&self, result: &Result<(), String>, app: &str, count: usize) {
        let label = if result.is_ok() { "stored" } else { "failed" };
        self.dead_letters
            .with_label_values(&[label])
            .inc_by(count as u64);
        if let Err(error) = result {
            tracing::warn!(%error, app, count, "dead letters not stored");
        }
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
