//! [`Memo`]: a bounded map of answers already computed, for lookups whose
//! inputs repeat heavily (a user agent's classification, an address's geo
//! facts). At most `capacity` entries; when full, it starts over empty (no
//! per-entry bookkeeping on the hot path, and a flood of distinct inputs
//! costs at most one full map). Shared by the runtime's workers behind one
//! mutex held only for a hash lookup or insert.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// A bounded memo of `K → V`.
#[derive(Debug)]
pub struct Memo<K, V> {
    entries: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// An empty memo holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Memo {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The answer for `key`: remembered, or `compute`d (outside the lock) and
    /// remembered under `to_owned()` (the key as stored).
    pub fn get_or<Q>(&self, key: &Q, to_owned: impl FnOnce() -> K, compute: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(found) = self.lock().get(key) {
            return found.clone();
        }
        let value = compute();
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(to_owned(), value.clone());
        value
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn computes_once_per_key_and_stays_bounded() {
        let memo: Memo<String, usize> = Memo::new(3);
        let calls = Cell::new(0);
        let get = |key: &str| {
            memo.get_or(
                key,
                || key.to_owned(),
                || {
                    calls.set(calls.get() + 1);
                    key.len()
                },
            )
        };
        assert_eq!(get("ab"), 2);
        assert_eq!(get("ab"), 2);
        assert_eq!(calls.get(), 1, "the second lookup is remembered");
        for key in ["c", "dd", "eee", "ffff", "ggggg"] {
            get(key);
            assert!(memo.len() <= 3);
        }
        assert_eq!(get("ggggg"), 5);
        assert_eq!(calls.get(), 6);
    }
}
