//! Replays of the events topic (seed 001): the aggregator's own processing
//! (the `stream-aggregator` library, same exactly-once rules) run again in a
//! new consumer group from a chosen position, writing into a separate
//! *target* — a fresh ClickHouse database (events, sessions, persons and every
//! derived table, migrated like the live one) and a fresh Redis prefix — while
//! the live pipeline keeps running untouched.
//!
//! A target is named once and everything else follows from the name
//! ([`Target::named`]): database `tally_replay_<name>`, Redis prefix
//! `tally_replay_<name>`, consumer group `tally-replay-<name>`. The catalog
//! row in PostgreSQL ([`catalog`]) remembers the range and the options, so a
//! replay killed at any point resumes with `replay start --name <name>` from
//! its group's committed offsets; the target's watermarks make every message
//! count once however often it is re-read.
//!
//! Modules: [`plan`] (where a replay starts and ends, refusing ranges the
//! topic no longer holds), [`catalog`], [`run`] (start/resume and progress),
//! [`compare`] (target against live, per app and day), [`reenrich`],
//! [`switch`] (what the query service answers from), [`drop`].

pub mod catalog;
pub mod compare;
pub mod drop;
pub mod plan;
pub mod reenrich;
pub mod run;
pub mod switch;

use tally_common::clickhouse::ClickHouseConfig;

/// Everything a replay writes to, derived from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The operator's name (`[a-z0-9_]{1,32}`).
    pub name: String,
    /// ClickHouse database of the target.
    pub database: String,
    /// Redis key prefix of the target.
    pub redis_prefix: String,
    /// Consumer group of the replay.
    pub group_id: String,
}

impl Target {
    /// The target called `name`, or why the name is unusable.
    pub fn named(name: &str) -> Result<Target, ReplayError> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ReplayError::Usage(format!(
                "replay name {name:?}: 1 to 32 characters of a-z 0-9 _"
            )));
        }
        Ok(Target {
            name: name.to_owned(),
            database: format!("tally_replay_{name}"),
            redis_prefix: format!("tally_replay_{name}"),
            group_id: format!("tally-replay-{name}"),
        })
    }

    /// `live`'s ClickHouse settings pointed at the target's database.
    pub fn clickhouse(&self, live: &ClickHouseConfig) -> ClickHouseConfig {
        ClickHouseConfig {
            database: self.database.clone(),
            ..live.clone()
        }
    }
}

/// Why a replay command failed. Every variant names what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The topic no longer holds the requested range.
    #[error("{detail}; the earliest time the topic still holds completely is {earliest}")]
    OffsetsGone {
        /// Which partition lacks what.
        detail: String,
        /// The earliest replayable time (RFC 3339), or a sentence when unknown.
        earliest: String,
    },
    /// The named replay does not exist.
    #[error("no replay named {0:?} (see `tally-admin replay status`)")]
    NotFound(String),
    /// The named replay is in a state that forbids the command.
    #[error("{0}")]
    State(String),
    /// Broker error.
    #[error("kafka: {0}")]
    Kafka(String),
    /// ClickHouse error.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// PostgreSQL error.
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Redis error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The aggregator stopped with an error.
    #[error("replay processing: {0}")]
    Aggregator(String),
}

impl From<rdkafka::error::KafkaError> for ReplayError {
    fn from(err: rdkafka::error::KafkaError) -> Self {
        ReplayError::Kafka(err.to_string())
    }
}

/// Compares the replay `entry` with the live tables of `live` over the
/// offsets both groups have committed (see [`compare`]).
pub async fn compare_live(
    live: &stream_aggregator::Config,
    entry: &catalog::Entry,
) -> Result<compare::Report, ReplayError> {
    let target = Target::named(&entry.name)?;
    let committed = |group: String| {
        let kafka = live.kafka.clone();
        async move {
            // A broker that is only slow is asked again for up to 30 s.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                match tally_common::kafka::committed_offsets(&kafka, &group).await {
                    Ok(offsets) => {
                        break Ok(offsets
                            .into_iter()
                            .collect::<std::collections::BTreeMap<i32, i64>>())
                    }
                    Err(tally_common::kafka::AdminError::Kafka(error))
                        if tally_common::kafka::transient(&error)
                            && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    Err(error) => break Err(ReplayError::Kafka(error.to_string())),
                }
            }
        }
    };
    let target_committed = committed(target.group_id.clone()).await?;
    let live_committed = committed(live.group_id.clone()).await?;
    let bounds = compare::bounds(entry, &target_committed, &live_committed);
    let with_sessions = compare::sessions_comparable(&bounds, &target_committed, &live_committed);
    compare::compare(
        &live.clickhouse.server_client(),
        &live.clickhouse.database,
        &target,
        &entry.topic,
        bounds,
        with_sessions,
    )
    .await
}

/// `ms` since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_map_to_one_target() {
        let target = Target::named("fix_bots_2").unwrap();
        assert_eq!(target.database, "tally_replay_fix_bots_2");
        assert_eq!(target.group_id, "tally-replay-fix_bots_2");
        for bad in ["", "Fix", "a-b", "a b", &"x".repeat(33), "a;drop"] {
            assert!(Target::named(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
