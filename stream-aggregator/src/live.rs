//! Live windows into Redis: the [`LiveStore`] trait and its Redis implementation.
//!
//! Layout: see `tally_schemas::live`. A *unit* is one Kafka partition's share of
//! one app-window hash. Each unit carries the last Kafka offset applied to it;
//! a write is a compare-and-set on that offset (Lua, atomic per key): it applies
//! the counters, the merged sketch and the new offset only if the stored offset
//! is still the one the writer read. A replay therefore never double counts, and
//! a concurrent writer (zombie consumer after a rebalance) makes the write fail
//! with a conflict instead of corrupting the counts.

use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::future::Future;
use tally_schemas::live::{name_field, offset_field, sketch_field, total_field};

/// Address of a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    /// Redis key of the app-window hash.
    pub key: String,
    /// Kafka partition owning the fields.
    pub partition: i32,
}

/// What a unit holds now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitState {
    /// Last applied offset (`-1` if none).
    pub offset: i64,
    /// Stored sketch bytes, if any.
    pub sketch: Option<Vec<u8>>,
}

/// One compare-and-set write.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitWrite {
    /// Where.
    pub unit: Unit,
    /// Offset read before computing this write.
    pub expected_offset: i64,
    /// Offset after this write.
    pub new_offset: i64,
    /// Events to add to the window total.
    pub total: u64,
    /// Events to add per name.
    pub by_name: BTreeMap<String, u64>,
    /// Sketch to store (stored ∪ new users).
    pub sketch: Vec<u8>,
}

/// Where live windows go.
pub trait LiveStore: Send + Sync + 'static {
    /// Current state of each unit, in order.
    fn read(
        &self,
        units: &[Unit],
    ) -> impl Future<Output = Result<Vec<UnitState>, redis::RedisError>> + Send;
    /// Applies the writes; returns the units whose stored offset had changed (not written).
    fn apply(
        &self,
        writes: &[UnitWrite],
    ) -> impl Future<Output = Result<Vec<Unit>, redis::RedisError>> + Send;
    /// `Ok` when Redis answers.
    fn ping(&self) -> impl Future<Output = Result<(), redis::RedisError>> + Send;
}

/// Compare-and-set of one unit. KEYS[1] = window key.
/// ARGV: off_field, expected, new, ttl, hll_field, hll, total_field, total, (name_field, n)*
const CAS_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '-1' end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[5], ARGV[6])
redis.call('HINCRBY', KEYS[1], ARGV[7], ARGV[8])
for i = 9, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// [`LiveStore`] on one Redis server.
#[derive(Clone)]
pub struct RedisLive {
    connection: ConnectionManager,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLive")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl RedisLive {
    /// Uses `connection`; keys expire `ttl_secs` after their last write.
    pub fn new(connection: ConnectionManager, ttl_secs: u64) -> Self {
        RedisLive {
            connection,
            ttl_secs,
        }
    }
}

impl LiveStore for RedisLive {
    async fn read(&self, units: &[Unit]) -> Result<Vec<UnitState>, redis::RedisError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for unit in units {
            pipe.cmd("HMGET")
                .arg(&unit.key)
                .arg(offset_field(unit.partition))
                .arg(sketch_field(unit.partition));
        }
        let replies: Vec<(Option<i64>, Option<Vec<u8>>)> =
            pipe.query_async(&mut self.connection.clone()).await?;
        Ok(replies
            .into_iter()
            .map(|(offset, sketch)| UnitState {
                offset: offset.unwrap_or(-1),
                sketch,
            })
            .collect())
    }

    async fn apply(&self, writes: &[UnitWrite]) -> Result<Vec<Unit>, redis::RedisError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for write in writes {
            let p = write.unit.partition;
            let cmd = pipe
                .cmd("EVAL")
                .arg(CAS_SCRIPT)
                .arg(1)
                .arg(&write.unit.key)
                .arg(offset_field(p))
                .arg(write.expected_offset)
                .arg(write.new_offset)
                .arg(self.ttl_secs)
                .arg(sketch_field(p))
                .arg(&write.sketch[..])
                .arg(total_field(p))
                .arg(write.total);
            for (name, count) in &write.by_name {
                cmd.arg(name_field(p, name)).arg(*count);
            }
        }
        let applied: Vec<i64> = pipe.query_async(&mut self.connection.clone()).await?;
        Ok(writes
            .iter()
            .zip(applied)
            .filter(|(_, ok)| *ok == 0)
            .map(|(write, _)| write.unit.clone())
            .collect())
    }

    async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(|_| ())
    }
}
