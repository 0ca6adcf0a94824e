//! A small answer cache with request coalescing (seed 001: hot keys under
//! dashboard polling).
//!
//! [`Cache::get_or_compute`] returns the cached answer for a key while it is
//! fresh; otherwise exactly one caller computes it while every concurrent
//! caller for the same key waits for that one result — N identical polls cost
//! one store query. Entries live for the configured time plus up to 20 %
//! random jitter, so keys cached together do not all expire together. Errors
//! are not cached: the next caller tries again. The map is bounded; when full,
//! expired entries are dropped, then the oldest. Time comes from the injected
//! [`Clock`] (milliseconds), so expiry is tested without sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_common::Clock;
use tokio::sync::OnceCell;

/// One cached (or being computed) answer.
type Slot<V> = Arc<OnceCell<Arc<V>>>;

/// Answers by key, each valid for `ttl` (+ jitter).
#[derive(Debug)]
pub struct Cache<V> {
    ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
    /// Key → (expiry in `clock`'s epoch ms, slot).
    entries: Mutex<HashMap<String, (i64, Slot<V>)>>,
}

impl<V> Cache<V> {
    /// A cache keeping answers for `ttl` (zero turns caching and coalescing off),
    /// at most `capacity` keys, by the time of `clock`.
    pub fn new(ttl: Duration, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Cache {
            ttl,
            capacity: capacity.max(1),
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh answer for `key`, or the result of `compute` (shared with
    /// every concurrent caller of the same key). Returns the answer and whether
    /// it came from the cache or another caller's computation.
    pub async fn get_or_compute<E, F, Fut>(
        &self,
        key: &str,
        compute: F,
    ) -> Result<(Arc<V>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await.map(|v| (Arc::new(v), false));
        }
        let slot = self.slot(key);
        let mut computed = false;
        let value = slot
            .get_or_try_init(|| async {
                computed = true;
                compute().await.map(Arc::new)
            })
            .await?;
        Ok((value.clone(), !computed))
    }

    /// Drops `key`'s answer: the next caller computes afresh.
    pub fn forget(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    fn slot(&self, key: &str) -> Slot<V> {
        let now = self.clock.now_ms();
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(OnceCell::new());
        };
        if let Some((expires, slot)) = entries.get(key) {
            if *expires > now {
                return slot.clone();
            }
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let jitter = self.ttl.mul_f64(rand::random::<f64>() * 0.2);
        let lifetime = i64::try_from((self.ttl + jitter).as_millis()).unwrap_or(i64::MAX);
        let slot: Slot<V> = Arc::new(OnceCell::new());
        entries.insert(key.to_owned(), (now.saturating_add(lifetime), slot.clone()));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tally_common::{ManualClock, SystemClock};

    #[tokio::test]
    async fn concurrent_identical_requests_compute_once() {
        let cache = Arc::new(Cache::<u64>::new(
            Duration::from_secs(5),
            100,
            Arc::new(SystemClock),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("k", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(7)
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(*task.await.unwrap().unwrap().0, 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another key is computed on its own.
        let (value, shared) = cache
            .get_or_compute("other", || async { Ok::<_, String>(8) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (8, false));
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_entries_expire() {
        let clock = ManualClock::at(1_000_000);
        let cache = Cache::<u64>::new(Duration::from_millis(30), 100, Arc::new(clock.clone()));
        let failed = cache
            .get_or_compute("k", || async { Err::<u64, _>("down") })
            .await;
        assert!(failed.is_err());
        let (value, shared) = cache
            .get_or_compute("k", || async { Ok::<_, &str>(1) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (1, false));
        let (value, shared) = cache
            .get_or_compute("k", || async { Ok::<_, &str>(2) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (1, true));
        // Fresh until the TTL has passed (jitter only adds to it)…
        clock.set(1_000_029);
        let (value, shared) = cache
            .get_or_compute("k", || async { Ok::<_, &str>(3) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (1, true));
        // …and expired once the TTL plus the most jitter (20 %) has.
        clock.set(1_000_036);
        let (value, shared) = cache
            .get_or_compute("k", || async { Ok::<_, &str>(4) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (4, false));
        // The new answer is cached from the new time on.
        let (value, shared) = cache
            .get_or_compute("k", || async { Ok::<_, &str>(5) })
            .await
            .unwrap();
        assert_eq!((*value, shared), (4, true));
    }

    #[tokio::test]
    async fn capacity_is_bounded() {
        let cache = Cache::<u64>::new(Duration::from_secs(60), 3, Arc::new(SystemClock));
        for i in 0..10u64 {
            let key = format!("k{i}");
            cache
                .get_or_compute(&key, || async move { Ok::<_, ()>(i) })
                .await
                .unwrap();
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
    }
}
