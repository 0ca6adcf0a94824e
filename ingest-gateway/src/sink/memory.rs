//! [`MemorySink`]: an [`EventSink`] that keeps what it is given in memory.
//!
//! For request-level tests of the gateway (limits, reason codes, auth forms,
//! CORS, dead letters) without a broker. A test can make it unavailable to see
//! the gateway's 503 path; while unavailable it stores nothing, as a broker that
//! did not acknowledge.

use super::EventSink;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tally_schemas::{DeadLetter, Envelope};

#[derive(Debug)]
struct Stored {
    events: Vec<Envelope>,
    letters: Vec<DeadLetter>,
    available: bool,
}

/// In-memory sink; clones share one store.
#[derive(Debug, Clone)]
pub struct MemorySink {
    stored: Arc<Mutex<Stored>>,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink {
            stored: Arc::new(Mutex::new(Stored {
                events: Vec::new(),
                letters: Vec::new(),
                available: true,
            })),
        }
    }
}

impl MemorySink {
    /// An empty, available sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Stored) -> T) -> T {
        f(&mut self.stored.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every event published so far, in order.
    pub fn events(&self) -> Vec<Envelope> {
        self.with(|stored| stored.events.clone())
    }

    /// Every dead letter stored so far, in order.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.with(|stored| stored.letters.clone())
    }

    /// Makes the sink accept (`true`) or refuse everything, as an unreachable broker.
    pub fn set_available(&self, available: bool) {
        self.with(|stored| stored.available = available);
    }

    fn store<T: Clone>(
        &self,
        items: &[T],
        pick: fn(&mut Stored) -> &mut Vec<T>,
    ) -> Result<(), String> {
        self.with(|stored| {
            if !stored.available {
                return Err("sink unavailable".to_owned());
            }
            pick(stored).extend_from_slice(items);
            Ok(())
        })
    }
}

impl EventSink for MemorySink {
    async fn publish(&self, envelopes: &[Envelope]) -> Result<(), String> {
        self.store(envelopes, |stored| &mut stored.events)
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<(), String> {
        self.store(letters, |stored| &mut stored.letters)
    }

    async fn ready(&self) -> Result<(), String> {
        if self.with(|stored| stored.available) {
            Ok(())
        } else {
            Err("sink unavailable".to_owned())
        }
    }

    async fn flush(&self, _timeout: Duration) {}
}
