//! Tally's shared data contracts. Nothing in this crate performs I/O.
//!
//! * [`event`] — what SDKs send (`POST /api/v1/events/batch`).
//! * [`envelope`] — the enriched event the gateway puts on Kafka, with a
//!   versioned encoding so the wire format can change without breaking consumers.
//! * [`dead_letter`] — the `events_dlq` record of a refused event.
//! * [`row`] — the ClickHouse `events` row.
//! * [`session`] — the ClickHouse `sessions` row and the session gap.
//! * [`columns`] — the `events` and `sessions` column lists and the query
//!   allowlists, once (checked against the rows and the migrations).
//! * [`live`] — 5-second window arithmetic and the Redis key layout shared by the
//!   aggregator (writer) and the query service (reader).
//! * [`sketch`] — the HyperLogLog++ sketch with a fixed, documented hash so that
//!   sketches from different processes and versions merge correctly.
//! * [`person`] — which events change identity, and the ClickHouse
//!   `person_distinct_ids` and `persons` rows.
//! * [`migrations`] — the versioned ClickHouse schema, applied in order.
//! * [`cluster`] — the same schema on a sharded, replicated cluster (issue 18).
//! * [`ids`] — the app-id rule every service applies.

pub mod cluster;
pub mod columns;
pub mod dead_letter;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod live;
pub mod migrations;
pub mod person;
pub mod row;
pub mod session;
pub mod sketch;
pub mod time_zone;

pub use dead_letter::DeadLetter;
pub use envelope::{DecodeError, Enrichment, Envelope, Format};
pub use event::{BatchRequest, IncomingEvent};
