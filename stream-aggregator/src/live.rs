//! Live windows into Redis: the [`LiveStore`] trait and its Redis implementation.
//!
//! Layout: see `tally_schemas::live`. A *unit* is one Kafka partition's share of
//! one app-window hash. Each unit carries the last Kafka offset applied to it;
//! a write is a compare-and-set on that offset (Lua, atomic per key): it applies
//! the counters, the merged sketch and the new offset only if the stored offset
//! is still the one the writer read. A replay therefore never double counts, and
//! a concurrent writer (zombie consumer after a rebalance) makes the write fail
//! with a conflict instead of corrupting the counts.
//!
//! Session state (see [`crate::sessions`]) is one hash per visitor,
//! `{prefix}:v:{app_id}:{distinct_id}` with fields `g` (guard: partition and
//! offset of the last applied event) and `s` (the state as JSON), written by the
//! same kind of compare-and-set on `g`. It expires like the windows.
//!
//! The identity state (persons) lives in the same Redis, see [`crate::identity_store`].
//!
//! Redis Cluster (`tally_common::redis_conn`): every script touches one key,
//! or keys sharing a hash tag (a claim's marks and lock); batches of
//! independent commands go through [`Redis::batch`].

use crate::identity::Change;
use crate::identity_store::RedisIdentities;
use redis::Cmd;
use std::collections::BTreeMap;
use std::future::Future;
use tally_common::redis_conn::Redis;
use tally_schemas::live::{name_field, offset_field, sessions_field, sketch_field, total_field};
use tally_schemas::person::IdentityEvent;

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
    /// Stored users sketch bytes, if any.
    pub sketch: Option<Vec<u8>>,
    /// Stored sessions sketch bytes, if any.
    pub sessions: Option<Vec<u8>>,
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
    /// Users sketch to store (stored ∪ new users).
    pub sketch: Vec<u8>,
    /// Sessions sketch to store (stored ∪ new session ids).
    pub sessions: Vec<u8>,
}

/// One compare-and-set write of a visitor's session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorWrite {
    /// Redis key of the visitor.
    pub key: String,
    /// Guard read before computing this write (`""`: no state;
    /// [`ANY_GUARD`]: overwrite whatever is there).
    pub expected_guard: String,
    /// Guard after this write (`"{partition}:{offset}"`).
    pub new_guard: String,
    /// Serialized state.
    pub state: Vec<u8>,
}

/// A visitor's stored state: its guard and serialized state.
pub type StoredVisitor = Option<(String, Vec<u8>)>;

/// The raw-row watermarks of one Kafka partition, as a claim found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Another process holds the partition's claim (it is inserting now).
    Busy,
    /// Ours; the stored watermarks (day → offset, JSON) are exact.
    Clean(Vec<u8>),
    /// Ours; no exact watermarks stored (first claim, or the last holder did
    /// not finish): read them from ClickHouse.
    Unknown,
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
    /// Stored session state of each visitor key, in order.
    fn read_visitors(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<StoredVisitor>, redis::RedisError>> + Send;
    /// Applies the visitor writes; returns the keys whose guard had changed (not written).
    fn write_visitors(
        &self,
        writes: &[VisitorWrite],
    ) -> impl Future<Output = Result<Vec<String>, redis::RedisError>> + Send;
    /// Claims the raw-row writes of each key's partition for `ttl_ms` as `token`
    /// (re-entrant) and marks its watermarks unknown until released.
    fn claim_raw(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Vec<Claimed>, redis::RedisError>> + Send;
    /// Releases claims: with watermarks (JSON) after a successful insert, or
    /// `None` after a failed one (they stay unknown). Returns the keys whose
    /// claim was no longer ours.
    fn release_raw(
        &self,
        releases: &[(String, Option<Vec<u8>>)],
        token: &str,
    ) -> impl Future<Output = Result<Vec<String>, redis::RedisError>> + Send;
    /// Applies identity events in order to the identity state under `prefix`
    /// (see [`crate::identity`]); returns the rows each must leave in ClickHouse.
    fn apply_identity(
        &self,
        prefix: &str,
        events: &[IdentityEvent],
    ) -> impl Future<Output = Result<Vec<Change>, redis::RedisError>> + Send;
    /// Whether each (app, distinct id) belongs to a deleted person (its id
    /// is tombstoned in the identity state under `prefix`).
    fn tombstoned(
        &self,
        prefix: &str,
        ids: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<bool>, redis::RedisError>> + Send;
    /// `Ok` when Redis answers.
    fn ping(&self) -> impl Future<Output = Result<(), redis::RedisError>> + Send;
}

/// Claim of a partition's raw writes. KEYS[1] = marks hash, KEYS[2] = lock.
/// ARGV: token, ttl_ms. Returns {granted, marks, clean}.
const CLAIM_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {0, '', 0} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local marks = redis.call('HGET', KEYS[1], 'marks')
local clean = redis.call('HGET', KEYS[1], 'clean')
redis.call('HSET', KEYS[1], 'clean', '0')
if holder == false and clean == '1' and marks then return {1, marks, 1} end
return {1, '', 0}
";

/// Release of a claim. KEYS[1] = marks hash, KEYS[2] = lock. ARGV: token, marks ('' = unknown).
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'marks', ARGV[2], 'clean', '1') end
redis.call('DEL', KEYS[2])
return 1
";

use tally_schemas::live::raw_lock_key as lock_key;
pub use tally_schemas::live::raw_marks_key;

/// `expected_offset` that matches any stored offset: used only by the chaos
/// test's control run (`Fault::IgnoreOffsets`), which must double count.
pub const ANY_OFFSET: i64 = i64::MIN;

/// Guard that matches any stored visitor state (chaos control run only).
pub const ANY_GUARD: &str = "*";

/// Compare-and-set of one unit. KEYS[1] = window key.
/// ARGV: off_field, expected, new, ttl, hll_field, hll, ses_field, ses, total_field, total,
/// (name_field, n)*
const CAS_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '-1' end
if cur ~= ARGV[2] and ARGV[2] ~= '-9223372036854775808' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
redis.call('HINCRBY', KEYS[1], ARGV[9], ARGV[10])
for i = 11, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Compare-and-set of one visitor's session state. KEYS[1] = visitor key.
/// ARGV: expected guard ('' = none, '*' = any), new guard, state, ttl
const VISITOR_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], 'g')
if cur == false then cur = '' end
if cur ~= ARGV[1] and ARGV[1] ~= '*' then return 0 end
redis.call('HSET', KEYS[1], 'g', ARGV[2], 's', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// [`LiveStore`] on a Redis server or a Redis Cluster.
#[derive(Clone)]
pub struct RedisLive {
    connection: Redis,
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
    pub fn new(connection: Redis, ttl_secs: u64) -> Self {
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
        let commands: Vec<Cmd> = units
            .iter()
            .map(|unit| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&unit.key)
                    .arg(offset_field(unit.partition))
                    .arg(sketch_field(unit.partition))
                    .arg(sessions_field(unit.partition));
                cmd
            })
            .collect();
        type Reply = (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>);
        let replies: Vec<Reply> = self.connection.batch(&commands).await?;
        Ok(replies
            .into_iter()
            .map(|(offset, sketch, sessions)| UnitState {
                offset: offset.unwrap_or(-1),
                sketch,
                sessions,
            })
            .collect())
    }

    async fn apply(&self, writes: &[UnitWrite]) -> Result<Vec<Unit>, redis::RedisError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut commands = Vec::with_capacity(writes.len());
        for write in writes {
            let p = write.unit.partition;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(CAS_SCRIPT)
                .arg(1)
                .arg(&write.unit.key)
                .arg(offset_field(p))
                .arg(write.expected_offset)
                .arg(write.new_offset)
                .arg(self.ttl_secs)
                .arg(sketch_field(p))
                .arg(&write.sketch[..])
                .arg(sessions_field(p))
                .arg(&write.sessions[..])
                .arg(total_field(p))
                .arg(write.total);
            for (name, count) in &write.by_name {
                cmd.arg(name_field(p, name)).arg(*count);
            }
            commands.push(cmd);
        }
        let applied: Vec<i64> = self.connection.batch(&commands).await?;
        Ok(writes
            .iter()
            .zip(applied)
            .filter(|(_, ok)| *ok == 0)
            .map(|(write, _)| write.unit.clone())
            .collect())
    }

    async fn read_visitors(
        &self,
        keys: &[String],
    ) -> Result<Vec<StoredVisitor>, redis::RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Cmd> = keys
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(key).arg("g").arg("s");
                cmd
            })
            .collect();
        let replies: Vec<(Option<String>, Option<Vec<u8>>)> =
            self.connection.batch(&commands).await?;
        Ok(replies
            .into_iter()
            .map(|(guard, state)| guard.zip(state))
            .collect())
    }

    async fn write_visitors(
        &self,
        writes: &[VisitorWrite],
    ) -> Result<Vec<String>, redis::RedisError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Cmd> = writes
            .iter()
            .map(|write| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(VISITOR_SCRIPT)
                    .arg(1)
                    .arg(&write.key)
                    .arg(&write.expected_guard)
                    .arg(&write.new_guard)
                    .arg(&write.state[..])
                    .arg(self.ttl_secs);
                cmd
            })
            .collect();
        let applied: Vec<i64> = self.connection.batch(&commands).await?;
        Ok(writes
            .iter()
            .zip(applied)
            .filter(|(_, ok)| *ok == 0)
            .map(|(write, _)| write.key.clone())
            .collect())
    }

    async fn claim_raw(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
    ) -> Result<Vec<Claimed>, redis::RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Cmd> = keys
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CLAIM_SCRIPT)
                    .arg(2)
                    .arg(key)
                    .arg(lock_key(key))
                    .arg(token)
                    .arg(ttl_ms);
                cmd
            })
            .collect();
        let replies: Vec<(i64, Vec<u8>, i64)> = self.connection.batch(&commands).await?;
        Ok(replies
            .into_iter()
            .map(|(granted, marks, clean)| match (granted, clean) {
                (0, _) => Claimed::Busy,
                (_, 1) => Claimed::Clean(marks),
                _ => Claimed::Unknown,
            })
            .collect())
    }

    async fn release_raw(
        &self,
        releases: &[(String, Option<Vec<u8>>)],
        token: &str,
    ) -> Result<Vec<String>, redis::RedisError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Cmd> = releases
            .iter()
            .map(|(key, marks)| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(RELEASE_SCRIPT)
                    .arg(2)
                    .arg(key)
                    .arg(lock_key(key))
                    .arg(token)
                    .arg(marks.as_deref().unwrap_or_default());
                cmd
            })
            .collect();
        let released: Vec<i64> = self.connection.batch(&commands).await?;
        Ok(releases
            .iter()
            .zip(released)
            .filter(|(_, ok)| *ok == 0)
            .map(|((key, _), _)| key.clone())
            .collect())
    }

    async fn apply_identity(
        &self,
        prefix: &str,
        events: &[IdentityEvent],
    ) -> Result<Vec<Change>, redis::RedisError> {
        let store = RedisIdentities::new(self.connection.clone(), prefix);
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            changes.push(store.apply(event).await?);
        }
        Ok(changes)
    }

    async fn tombstoned(
        &self,
        prefix: &str,
        ids: &[(&str, &str)],
    ) -> Result<Vec<bool>, redis::RedisError> {
        let key = |app: &str| tally_schemas::person::identity_key(prefix, app, "tombstones");
        // Most apps never deleted anyone: ask per app first, then per id of
        // the apps that did (one round trip each, the second usually empty).
        let mut apps: Vec<&str> = ids.iter().map(|(app, _)| *app).collect();
        apps.sort_unstable();
        apps.dedup();
        let mut found = vec![false; ids.len()];
        if apps.is_empty() {
            return Ok(found);
        }
        let commands: Vec<Cmd> = apps
            .iter()
            .map(|app| {
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(key(app));
                cmd
            })
            .collect();
        let exists: Vec<bool> = self.connection.batch(&commands).await?;
        let deleting: Vec<&str> = apps
            .iter()
            .zip(&exists)
            .filter(|(_, e)| **e)
            .map(|(app, _)| *app)
            .collect();
        let asked: Vec<usize> = (0..ids.len())
            .filter(|i| deleting.contains(&ids[*i].0))
            .collect();
        if asked.is_empty() {
            return Ok(found);
        }
        let commands: Vec<Cmd> = asked
            .iter()
            .map(|i| {
                let mut cmd = redis::cmd("SISMEMBER");
                cmd.arg(key(ids[*i].0)).arg(ids[*i].1);
                cmd
            })
            .collect();
        let answers: Vec<bool> = self.connection.batch(&commands).await?;
        for (i, answer) in asked.into_iter().zip(answers) {
            found[i] = answer;
        }
        Ok(found)
    }

    async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(|_| ())
    }
}
