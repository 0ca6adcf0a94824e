//! The identity state of [`crate::identity`] in Redis, shared by every
//! aggregator process (identity is cross-partition: an identify event and
//! the anonymous id it links may live in different Kafka partitions). Each
//! operation is one Lua script, so it is atomic; a link is applied once per
//! event id (a marker key that expires after [`EVENT_TTL_SECS`]), so a replay
//! changes nothing and returns no rows. It answers exactly as the in-memory
//! rules do (`stream-aggregator/tests/identity_parity.rs` runs both on the
//! same random journeys against the real Redis).
//!
//! Keys, per app, share the hash tag `{app}` (one cluster slot):
//! `{prefix}:id:{app}:map` (hash distinct id → person), `…:members:{person}`
//! (set), `…:version` (counter), `…:tombstones` (set), `…:event:{event id}`
//! (applied-link marker).

use crate::identity::Mapping;
use redis::aio::ConnectionManager;

/// How long an applied link's marker is kept (a replay older than this would
/// find the ids already linked: no change either).
pub const EVENT_TTL_SECS: u64 = 7 * 86_400;

// KEYS: map, version, tombstones, event marker. ARGV: user, other, members
// prefix, marker TTL. Returns {distinct id, person, version, …}.
const LINK_SCRIPT: &str = r"
if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[4]) then return {} end
local user, other, members = ARGV[1], ARGV[2], ARGV[3]
if user == other then return {} end
if redis.call('SISMEMBER', KEYS[3], user) == 1 or redis.call('SISMEMBER', KEYS[3], other) == 1 then
  return {}
end
local pu = redis.call('HGET', KEYS[1], user)
local po = redis.call('HGET', KEYS[1], other)
local into, moving
if not pu and not po then
  into, moving = other, {other, user}
elseif pu and not po then
  into, moving = pu, {other}
elseif po and not pu then
  into, moving = po, {user}
elseif pu == po then
  return {}
else
  into = pu
  moving = redis.call('SMEMBERS', members .. po)
  table.sort(moving)
  redis.call('DEL', members .. po)
end
local out = {}
for _, id in ipairs(moving) do
  local version = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], id, into)
  redis.call('SADD', members .. into, id)
  out[#out + 1] = id
  out[#out + 1] = into
  out[#out + 1] = version
end
return out
";

// KEYS: map, tombstones. ARGV: distinct id, members prefix. Returns the
// tombstoned ids, sorted.
const DELETE_SCRIPT: &str = r"
local person = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[1]
local ids = redis.call('SMEMBERS', ARGV[2] .. person)
if #ids == 0 then ids = {ARGV[1]} end
table.sort(ids)
redis.call('DEL', ARGV[2] .. person)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('SADD', KEYS[2], id)
end
return ids
";

/// Identity state in Redis under `prefix`.
#[derive(Clone)]
pub struct RedisIdentities {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdentities")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisIdentities {
    /// A store under `prefix`.
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        RedisIdentities {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, app_id: &str, rest: &str) -> String {
        format!("{}:id:{{{app_id}}}:{rest}", self.prefix)
    }

    /// As [`crate::identity::Identities::link`].
    pub async fn link(
        &self,
        app_id: &str,
        event_id: &str,
        distinct_id: &str,
        other: &str,
    ) -> Result<Vec<Mapping>, redis::RedisError> {
        let flat: Vec<redis::Value> = redis::cmd("EVAL")
            .arg(LINK_SCRIPT)
            .arg(4)
            .arg(self.key(app_id, "map"))
            .arg(self.key(app_id, "version"))
            .arg(self.key(app_id, "tombstones"))
            .arg(self.key(app_id, &format!("event:{event_id}")))
            .arg(distinct_id)
            .arg(other)
            .arg(self.key(app_id, "members:"))
            .arg(EVENT_TTL_SECS)
            .query_async(&mut self.connection.clone())
            .await?;
        flat.chunks(3)
            .map(|row| match row {
                [id, person, version] => Ok(Mapping {
                    distinct_id: redis::from_redis_value(id)?,
                    person_id: redis::from_redis_value(person)?,
                    version: redis::from_redis_value(version)?,
                }),
                _ => Err(redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "identity link: rows of three",
                ))),
            })
            .collect()
    }

    /// As [`crate::identity::Identities::delete`].
    pub async fn delete(
        &self,
        app_id: &str,
        distinct_id: &str,
    ) -> Result<Vec<String>, redis::RedisError> {
        redis::cmd("EVAL")
            .arg(DELETE_SCRIPT)
            .arg(2)
            .arg(self.key(app_id, "map"))
            .arg(self.key(app_id, "tombstones"))
            .arg(distinct_id)
            .arg(self.key(app_id, "members:"))
            .query_async(&mut self.connection.clone())
            .await
    }

    /// As [`crate::identity::Identities::person`].
    pub async fn person(
        &self,
        app_id: &str,
        distinct_id: &str,
    ) -> Result<String, redis::RedisError> {
        let person: Option<String> = redis::cmd("HGET")
            .arg(self.key(app_id, "map"))
            .arg(distinct_id)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(person.unwrap_or_else(|| distinct_id.to_owned()))
    }

    /// As [`crate::identity::Identities::is_deleted`].
    pub async fn is_deleted(
        &self,
        app_id: &str,
        distinct_id: &str,
    ) -> Result<bool, redis::RedisError> {
        redis::cmd("SISMEMBER")
            .arg(self.key(app_id, "tombstones"))
            .arg(distinct_id)
            .query_async(&mut self.connection.clone())
            .await
    }
}
