//! Failed-login throttling: per key (an e-mail address, a client address),
//! the failures of the last minute. With `limit` of them inside the minute,
//! the next attempt is refused (429) until the oldest is a minute old — even
//! with the right password, or guessing would go on. A success clears the
//! e-mail's failures. Memory is bounded: at most [`MAX_KEYS`] keys, the
//! stalest dropped first. Per process: with several replicas, an attacker
//! gets `limit` per replica per minute.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tally_common::Clock;

/// Most keys remembered.
pub const MAX_KEYS: usize = 100_000;
const MINUTE_MS: i64 = 60_000;

/// Failures per key in the last minute.
#[derive(Debug)]
pub struct LoginThrottle {
    clock: Arc<dyn Clock>,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl LoginThrottle {
    /// An empty throttle on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LoginThrottle {
            clock,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `key` has `limit` failures in the last minute.
    pub fn check(&self, key: &str, limit: u32) -> Result<(), u64> {
        let now = self.clock.now_ms();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = failures.get_mut(key) else {
            return Ok(());
        };
        while times.front().is_some_and(|t| *t <= now - MINUTE_MS) {
            times.pop_front();
        }
        if times.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait_ms = (oldest + MINUTE_MS - now).max(1);
        Err(u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000))
    }

    /// Records a failure of `key`.
    pub fn fail(&self, key: &str) {
        let now = self.clock.now_ms();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS && !failures.contains_key(key) {
            failures.retain(|_, times| times.back().is_some_and(|t| *t > now - MINUTE_MS));
            if failures.len() >= MAX_KEYS {
                let stalest = failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                    .map(|(k, _)| k.clone());
                if let Some(stalest) = stalest {
                    failures.remove(&stalest);
                }
            }
        }
        let times = failures.entry(key.to_owned()).or_default();
        times.push_back(now);
        // More than any limit can use.
        while times.len() > 1_000 {
            times.pop_front();
        }
    }

    /// Forgets `key`'s failures.
    pub fn clear(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_common::ManualClock;

    #[test]
    fn the_eleventh_failure_in_a_minute_waits_for_the_oldest_to_age() {
        let clock = Arc::new(ManualClock::at(0));
        let throttle = LoginThrottle::new(clock.clone());
        for i in 0..10 {
            clock.set(i * 1_000);
            assert_eq!(throttle.check("a@b.c", 10), Ok(()), "attempt {i}");
            throttle.fail("a@b.c");
        }
        clock.set(10_000);
        // Ten failures at t = 0 s … 9 s; now t = 10 s: wait until t = 60 s.
        assert_eq!(throttle.check("a@b.c", 10), Err(50));
        assert_eq!(throttle.check("other@b.c", 10), Ok(()));
        clock.set(59_999);
        assert_eq!(throttle.check("a@b.c", 10), Err(1));
        clock.set(60_000);
        assert_eq!(throttle.check("a@b.c", 10), Ok(()));
        throttle.clear("a@b.c");
        for _ in 0..10 {
            throttle.fail("a@b.c");
        }
        assert!(throttle.check("a@b.c", 10).is_err());
        assert_eq!(throttle.check("a@b.c", 11), Ok(()));
    }
}
