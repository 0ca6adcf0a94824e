//! Runtime plumbing shared by Tally's services (everything here may do I/O;
//! pure data contracts live in `tally-schemas`).
//!
//! * [`config`] — typed settings from `TALLY_…` environment variables.
//! * [`telemetry`] — `tracing` subscriber set-up.
//! * [`shutdown`] — SIGTERM/SIGINT as a future.
//! * [`clock`] — the injectable wall clock.
//! * [`clickhouse`] — client construction (18.16-compatible) and the migration runner.
//! * [`kafka`] — librdkafka client settings and topic administration.
//! * [`postgres`] — apps and API keys, PostgreSQL migrations.
//! * [`lifecycle`] — storage per table and the retention of raw rows.
//! * [`rebuild`] — migrations that rebuild a table (resumable, under a lock).
//! * [`http`] — `/livez`, `/metrics` helpers.
//! * [`serve`] — the HTTP accept loop (header timeout, connection cap, drain).
//! * [`service`] — the common `main` of every service binary.
//! * [`process`] — child processes for the benchmark and the tests (not used by the services).

pub mod accounts;
pub mod clickhouse;
pub mod clock;
pub mod config;
pub mod domains;
pub mod http;
pub mod kafka;
pub mod keys;
pub mod lifecycle;
pub mod postgres;
pub mod process;
pub mod rebuild;
pub mod redis_conn;
pub mod serve;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ConfigError;
