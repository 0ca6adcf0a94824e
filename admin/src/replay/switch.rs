//! `replay switch` and `replay rollback`: which ClickHouse database and Redis
//! prefix the query service answers from, in one PostgreSQL row (`serving`,
//! migration 0009) per deployment — keyed by the database the query service
//! is configured with; no row: that configuration. The query
//! service resolves the pair once per request, so an answer never mixes the
//! two. The previous pair is kept for `rollback`.
//!
//! Only a replay that follows the topic (no `--to`), runs, and has caught up
//! can be switched to: a bounded target would stop growing at its end.

use super::catalog;
use super::{ReplayError, Target};
use tally_common::Clock;
use tokio_postgres::Client;

/// The served pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// Database answered from.
    pub database: String,
    /// Redis prefix answered from.
    pub redis_prefix: String,
    /// The pair before the last switch.
    pub previous_database: String,
    /// See `previous_database`.
    pub previous_prefix: String,
    /// The replay switched to.
    pub replay: String,
}

/// The served pair of the deployment configured with database `scope`, if a
/// switch happened.
pub async fn serving(pg: &Client, scope: &str) -> Result<Option<Serving>, ReplayError> {
    let row = pg
        .query_opt(
            "SELECT database, redis_prefix, previous_database, previous_prefix, replay FROM serving WHERE scope = $1",
            &[&scope],
        )
        .await?;
    Ok(row.map(|row| Serving {
        database: row.get(0),
        redis_prefix: row.get(1),
        previous_database: row.get(2),
        previous_prefix: row.get(3),
        replay: row.get(4),
    }))
}

async fn store(pg: &Client, scope: &str, serving: &Serving) -> Result<(), ReplayError> {
    pg.execute(
        "INSERT INTO serving (scope, database, redis_prefix, previous_database, previous_prefix, replay) \
         VALUES ($6, $1, $2, $3, $4, $5) ON CONFLICT (scope) DO UPDATE SET \
         database = EXCLUDED.database, redis_prefix = EXCLUDED.redis_prefix, \
         previous_database = EXCLUDED.previous_database, previous_prefix = EXCLUDED.previous_prefix, \
         replay = EXCLUDED.replay, switched_at = now()",
        &[
            &serving.database,
            &serving.redis_prefix,
            &serving.previous_database,
            &serving.previous_prefix,
            &serving.replay,
            &scope,
        ],
    )
    .await?;
    Ok(())
}

/// Points the query service at replay `name`, if it follows, runs and lags by
/// at most `max_lag` messages.
pub async fn switch(
    live: &stream_aggregator::Config,
    pg: &Client,
    name: &str,
    max_lag: i64,
) -> Result<Serving, ReplayError> {
    let target = Target::named(name)?;
    let entry = catalog::get(pg, name)
        .await?
        .ok_or_else(|| ReplayError::NotFound(name.to_owned()))?;
    if entry.end.is_some() {
        return Err(ReplayError::State(format!(
            "replay {name} has an end (--to): its tables stop growing there; switch to a replay without --to"
        )));
    }
    if !entry.alive(tally_common::SystemClock.now_ms()) {
        return Err(ReplayError::State(format!(
            "replay {name} is not running: start it again (`replay start --name {name}`) and let it catch up"
        )));
    }
    let (kafka, group, start) = (
        live.kafka.clone(),
        target.group_id.clone(),
        entry.start.clone(),
    );
    let progress =
        tokio::task::spawn_blocking(move || super::run::snapshot(&kafka, &group, &start, None))
            .await
            .map_err(|e| ReplayError::Kafka(e.to_string()))??;
    let lag = progress.total - progress.done;
    if lag > max_lag {
        return Err(ReplayError::State(format!(
            "replay {name} is {lag} messages behind the topic (at most {max_lag}): wait for it to catch up"
        )));
    }
    let scope = live.clickhouse.database.as_str();
    let current = serving(pg, scope).await?;
    let (previous_database, previous_prefix) = match &current {
        Some(s) if s.database == target.database => {
            return Err(ReplayError::State(format!(
                "the query service already answers from replay {name}"
            )))
        }
        Some(s) => (s.database.clone(), s.redis_prefix.clone()),
        None => (live.clickhouse.database.clone(), live.redis_prefix.clone()),
    };
    let next = Serving {
        database: target.database,
        redis_prefix: target.redis_prefix,
        previous_database,
        previous_prefix,
        replay: name.to_owned(),
    };
    store(pg, scope, &next).await?;
    Ok(next)
}

/// Points the query service back at the pair before the last switch.
pub async fn rollback(
    live: &stream_aggregator::Config,
    pg: &Client,
) -> Result<Serving, ReplayError> {
    let scope = live.clickhouse.database.as_str();
    let current = serving(pg, scope).await?.ok_or_else(|| {
        ReplayError::State(
            "nothing to roll back: the query service answers from its own configuration".into(),
        )
    })?;
    if current.previous_database == live.clickhouse.database
        && current.previous_prefix == live.redis_prefix
    {
        pg.execute("DELETE FROM serving WHERE scope = $1", &[&scope])
            .await?;
    } else {
        store(
            pg,
            scope,
            &Serving {
                database: current.previous_database.clone(),
                redis_prefix: current.previous_prefix.clone(),
                previous_database: current.database.clone(),
                previous_prefix: current.redis_prefix.clone(),
                replay: current
                    .previous_database
                    .strip_prefix("tally_replay_")
                    .unwrap_or_default()
                    .to_owned(),
            },
        )
        .await?;
    }
    Ok(current)
}
