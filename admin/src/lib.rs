//! `tally-admin`'s library: the operator tasks that need more than one
//! service's code. Today that is [`replay`]: running the stream aggregator's
//! processing again over a range of the events topic into a separate target.
//! The command-line front end is `src/bin/tally-admin`.

pub mod replay;
