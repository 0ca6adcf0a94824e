//! Where accepted events go: the [`EventSink`] trait, its Kafka implementation
//! ([`KafkaSink`], `sink/kafka.rs`) and an in-memory one ([`MemorySink`],
//! `sink/memory.rs`) for request-level tests that need no broker.
//!
//! Contract of every sink: `publish` resolves `Ok` only when *every* event given
//! is stored durably (for Kafka: acknowledged by the broker, idempotent producer,
//! `acks=all`), or fails; the gateway answers 200 only after `publish` succeeded.
//! No method blocks the async runtime.

mod kafka;
mod memory;

pub use kafka::{KafkaSink, RESET_GAP};
pub use memory::MemorySink;

use std::future::Future;
use std::time::Duration;
use tally_schemas::{DeadLetter, Envelope};

/// A destination for accepted events.
pub trait EventSink: Send + Sync + 'static {
    /// Stores all `envelopes` durably, or fails.
    fn publish(&self, envelopes: &[Envelope]) -> impl Future<Output = Result<(), String>> + Send;
    /// Stores refused events on the dead-letter topic; the result is only reported
    /// (a refused event's answer never depends on it).
    fn dead_letter(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// `Ok` when the sink can currently accept events.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Waits (at most `timeout`) for in-flight events at shutdown.
    fn flush(&self, timeout: Duration) -> impl Future<Output = ()> + Send;
}
