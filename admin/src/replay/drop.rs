//! `replay drop`: removes a target — its ClickHouse database, its Redis keys
//! and its catalog row. Refused while a replay process holds its lock (unless
//! forced) and
//! while the query service answers from it (switch back first). The
//! consumer group's committed offsets are left to the broker: a new replay of
//! the same name commits its own start offsets before it runs.

use super::catalog;
use super::{ReplayError, Target};
use tally_common::redis_conn::Redis;

/// What was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Redis keys deleted.
    pub redis_keys: usize,
    /// Whether a catalog row existed.
    pub catalogued: bool,
}

/// Deletes every key under `prefix:`.
pub async fn delete_keys(redis: &Redis, prefix: &str) -> Result<usize, ReplayError> {
    let mut deleted = 0;
    // One key per command: keys of different apps live in different cluster slots.
    for key in redis.scan_match(&format!("{prefix}:*")).await? {
        let n: usize = redis::cmd("UNLINK")
            .arg(&key)
            .query_async(&mut redis.clone())
            .await?;
        deleted += n;
    }
    Ok(deleted)
}

/// Drops the target `name`.
pub async fn drop(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    name: &str,
    force: bool,
) -> Result<Dropped, ReplayError> {
    let target = Target::named(name)?;
    let entry = catalog::get(pg, name).await?;
    let locked = catalog::try_lock(pg, name).await?;
    if !locked && !force {
        return Err(ReplayError::State(format!(
            "replay {name} is running: stop it first (or --force)"
        )));
    }
    let dropped = drop_locked(live, pg, &target, entry.is_some()).await;
    if locked {
        catalog::unlock(pg, name).await?;
    }
    dropped
}

async fn drop_locked(
    live: &stream_aggregator::Config,
    pg: &tokio_postgres::Client,
    target: &Target,
    catalogued: bool,
) -> Result<Dropped, ReplayError> {
    let name = target.name.as_str();
    if let Some(serving) = super::switch::serving(pg, &live.clickhouse.database).await? {
        if serving.database == target.database {
            return Err(ReplayError::State(format!(
                "the query service answers from replay {name}: `replay rollback` first"
            )));
        }
    }
    tally_common::clickhouse::drop_database(&live.clickhouse, &target.database).await?;
    let redis = Redis::connect(&live.redis_url).await?;
    let redis_keys = delete_keys(&redis, &target.redis_prefix).await?;
    catalog::delete(pg, name).await?;
    Ok(Dropped {
        redis_keys,
        catalogued,
    })
}
