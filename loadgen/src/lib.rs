//! Tally's measuring kit: one honest way to produce traffic and to measure.
//!
//! * [`model`] — deterministic, realistic traffic (hot app, Zipf visitors,
//!   sessions with think time, funnel journeys with known drop-offs, bots).
//! * [`send`] — sends it through the real HTTP API at a rate or as fast as
//!   acknowledged, recording every acknowledged event ([`record`]).
//! * [`truth`] + [`check`] — the ground truth from the record, compared with
//!   ClickHouse and the query service; lost or duplicated events fail.
//! * [`history`] — a historical dataset written straight into ClickHouse.
//! * [`bench`] — the benchmark suite (B1–B6), printed as markdown and saved as JSON.

pub mod bench;
pub mod check;
pub mod history;
pub mod model;
pub mod record;
pub mod send;
pub mod stats;
pub mod truth;
