//! Overload protection.
//!
//! * Per-app token bucket (events/s with a burst): an app over its rate gets
//!   429 `rate_limited` with `Retry-After`, so a hot app cannot starve the
//!   others. Excess is refused rather than diverted to an overflow topic: events
//!   are keyed by app *and* user, so a hot app is already spread over every
//!   partition (no single hot partition to relieve), and a second topic would
//!   give the aggregator a second exactly-once source for the same windows.
//!   SDKs retry 429s with backoff, so nothing acknowledged is ever lost.
//! * A cap on request bytes in flight: beyond it new requests get 503
//!   `overloaded` at once, so memory stays bounded at any load.
//! * Metric labels per app are bounded: the first [`MAX_APP_LABELS`] apps seen
//!   get their own label, later ones share `other`.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Distinct app labels before `other`.
pub const MAX_APP_LABELS: usize = 100;

/// Admission control state.
pub struct Overload {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    inflight: Arc<Semaphore>,
    capacity_kib: usize,
    labels: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overload")
            .field("capacity_kib", &self.capacity_kib)
            .finish_non_exhaustive()
    }
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Overload {
    /// `rate` events/s per app with `burst`, and at most `max_inflight_bytes` of bodies in flight.
    pub fn new(rate: u32, burst: u32, max_inflight_bytes: usize) -> Self {
        let quota = Quota::per_second(non_zero(rate)).allow_burst(non_zero(burst));
        let capacity_kib = (max_inflight_bytes / 1024).max(1);
        Overload {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            inflight: Arc::new(Semaphore::new(capacity_kib)),
            capacity_kib,
            labels: Mutex::new(HashSet::new()),
        }
    }

    /// Reserves room for a body of `bytes`; `None` when the gateway is full.
    pub fn admit_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib =
            u32::try_from(bytes.div_ceil(1024).clamp(1, self.capacity_kib)).unwrap_or(u32::MAX);
        self.inflight.clone().try_acquire_many_owned(kib).ok()
    }

    /// Bytes currently reserved.
    pub fn inflight_bytes(&self) -> usize {
        (self.capacity_kib - self.inflight.available_permits()) * 1024
    }

    /// Takes `events` tokens from `app`'s bucket, or says how long to wait.
    pub fn admit_events(&self, app: &str, events: usize) -> Result<(), Duration> {
        let n = non_zero(u32::try_from(events).unwrap_or(u32::MAX));
        match self.limiter.check_key_n(&app.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            // More events than the burst can ever hold: retrying later will not help much,
            // but the client should still back off.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Metric label for `app` (bounded cardinality).
    pub fn app_label(&self, app: &str) -> String {
        let Ok(mut labels) = self.labels.lock() else {
            return "other".into();
        };
        if labels.contains(app) || (labels.len() < MAX_APP_LABELS && labels.insert(app.to_owned()))
        {
            app.to_owned()
        } else {
            "other".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_app() {
        let overload = Overload::new(100, 100, 1 << 20);
        assert!(overload.admit_events("hot", 100).is_ok());
        let wait = overload.admit_events("hot", 50).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            overload.admit_events("calm", 100).is_ok(),
            "another app is not starved"
        );
        assert!(
            overload.admit_events("calm", 1_000).is_err(),
            "more than the burst"
        );
    }

    #[test]
    fn inflight_bytes_are_capped_and_released() {
        let overload = Overload::new(1, 1, 64 * 1024);
        let first = overload.admit_bytes(40 * 1024).unwrap();
        assert_eq!(overload.inflight_bytes(), 40 * 1024);
        assert!(overload.admit_bytes(40 * 1024).is_none());
        drop(first);
        assert!(overload.admit_bytes(40 * 1024).is_some());
    }

    #[test]
    fn app_labels_are_bounded() {
        let overload = Overload::new(1, 1, 1024);
        for i in 0..MAX_APP_LABELS {
            assert_eq!(overload.app_label(&format!("a{i}")), format!("a{i}"));
        }
        assert_eq!(overload.app_label("late"), "other");
        assert_eq!(overload.app_label("a0"), "a0");
    }
}
