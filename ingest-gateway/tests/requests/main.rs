//! Request-level tests of the gateway on an in-memory sink and key source: every
//! request refusal and event rejection reason, the auth forms, rate and
//! timeout limits, CORS, readiness. No broker and no PostgreSQL: the whole file
//! runs in a few seconds. What needs the real broker (durability, 503 when it is
//! down, recovery, SDKs end to end) is tested in `testkit/tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod admission;
mod auth;
mod codes;
mod harness;
