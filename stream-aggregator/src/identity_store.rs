//! The identity state of [`crate::identity`] in Redis, shared by every
//! aggregator process (identity is cross-partition: an identify event and
//! the anonymous id it links may live in different Kafka partitions). Each
//! operation is one Lua script, so it is atomic, and it answers exactly as the
//! in-memory rules do — the same rows with the same versions
//! (`stream-aggregator/tests/identity_parity.rs` runs both on the same random
//! journeys against the real Redis). Like the rules, applying an event twice
//! changes nothing the second time and answers the current rows.
//!
//! Keys, per app, share the hash tag `{app}` (one cluster slot):
//! `{prefix}:id:{app}:map` (hash distinct id → person), `…:ver` (hash distinct
//! id → version of its row), `…:version` (counter), `…:tombstones` (set),
//! `…:pver` (hash person → version of its traits row), `…:members:{person}`
//! (set), `…:traits:{person}` and `…:stamps:{person}` (hashes trait → value,
//! trait → event time).
//!
//! Lua compares strings with the C locale's byte order, as Rust does.

use crate::identity::{Change, Mapping, PersonState};
use redis::{RedisError, Value};
use std::sync::LazyLock;
use tally_common::redis_conn::Redis;
use tally_schemas::person::IdentityEvent;

// KEYS: map, ver, version, tombstones, pver. ARGV: user, other ('' = none),
// members prefix, traits prefix, stamps prefix, event time, (trait, value)*.
// Returns {{id, person, version}*, person, {version, (trait, value)*} or {}}.
const APPLY: &str = r"
local map, ver, counter, tomb, pver = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local user, other, mp, tp, sp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('SISMEMBER', tomb, user) == 1 then return {{}, '', {}} end
local function set_trait(person, k, t, v)
  local held = redis.call('HGET', sp .. person, k)
  if held then
    local ht, hv = tonumber(held), redis.call('HGET', tp .. person, k)
    local nt = tonumber(t)
    if nt < ht or (nt == ht and v <= hv) then return false end
  end
  redis.call('HSET', sp .. person, k, t)
  redis.call('HSET', tp .. person, k, v)
  return true
end
local function merge_traits(source, into)
  redis.call('HDEL', pver, source)
  local stamps = redis.call('HGETALL', sp .. source)
  local changed = false
  for i = 1, #stamps, 2 do
    local v = redis.call('HGET', tp .. source, stamps[i])
    if set_trait(into, stamps[i], stamps[i + 1], v) then changed = true end
  end
  redis.call('DEL', sp .. source, tp .. source)
  return changed
end
local rows, changed = {}, false
if other ~= '' and redis.call('SISMEMBER', tomb, other) == 0 then
  local pu, po = redis.call('HGET', map, user), redis.call('HGET', map, other)
  local into, moving
  if not pu and not po then
    into, moving = other, {other, user}
  elseif pu and not po then
    into, moving = pu, {other}
  elseif po and not pu then
    into, moving = po, {user}
  elseif pu ~= po then
    into = pu
    moving = redis.call('SMEMBERS', mp .. po)
    table.sort(moving)
    redis.call('DEL', mp .. po)
  end
  if into then
    for _, id in ipairs(moving) do
      local source = redis.call('HGET', map, id) or id
      if source ~= into and merge_traits(source, into) then changed = true end
      local v = redis.call('INCR', counter)
      redis.call('HSET', map, id, into)
      redis.call('HSET', ver, id, v)
      redis.call('SADD', mp .. into, id)
      rows[#rows + 1] = {id, into, v}
    end
  end
end
local person = redis.call('HGET', map, user) or user
for i = 7, #ARGV, 2 do
  if set_trait(person, ARGV[i], ARGV[6], ARGV[i + 1]) then changed = true end
end
if changed then redis.call('HSET', pver, person, redis.call('INCR', counter)) end
if #rows == 0 then
  local members = redis.call('SMEMBERS', mp .. person)
  table.sort(members)
  for _, id in ipairs(members) do rows[#rows + 1] = {id, person, redis.call('HGET', ver, id)} end
end
local traits = {}
local pv = redis.call('HGET', pver, person)
if pv then
  traits[1] = pv
  local keys = redis.call('HKEYS', tp .. person)
  table.sort(keys)
  for _, k in ipairs(keys) do
    traits[#traits + 1] = k
    traits[#traits + 1] = redis.call('HGET', tp .. person, k)
  end
end
return {rows, person, traits}
";

static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY));
static DELETE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(tally_schemas::person::DELETE_SCRIPT));

/// Identity state in Redis under `prefix`.
#[derive(Clone)]
pub struct RedisIdentities {
    connection: Redis,
    prefix: String,
}

impl std::fmt::Debug for RedisIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdentities")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::TypeError,
        "identity script answer",
        what.to_owned(),
    ))
}

/// `{{id, person, version}*, person, {version, (trait, value)*}}` → [`Change`].
fn change(answer: Vec<Value>) -> Result<Change, RedisError> {
    let [rows, person, traits]: [Value; 3] =
        answer.try_into().map_err(|_| malformed("three parts"))?;
    let rows: Vec<(String, String, u64)> = redis::from_redis_value(&rows)?;
    let person: String = redis::from_redis_value(&person)?;
    let traits: Vec<String> = redis::from_redis_value(&traits)?;
    let mappings = rows
        .into_iter()
        .map(|(distinct_id, person_id, version)| Mapping {
            distinct_id,
            person_id,
            version,
        })
        .collect();
    let person = match traits.split_first() {
        None => None,
        Some((version, pairs)) => Some(PersonState {
            person_id: person,
            version: version.parse().map_err(|_| malformed("a person version"))?,
            traits: pairs
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        }),
    };
    Ok(Change { mappings, person })
}

impl RedisIdentities {
    /// A store under `prefix`.
    pub fn new(connection: Redis, prefix: &str) -> Self {
        RedisIdentities {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, app_id: &str, rest: &str) -> String {
        tally_schemas::person::identity_key(&self.prefix, app_id, rest)
    }

    /// As [`crate::identity::Identities::apply`], for the event's app.
    pub async fn apply(&self, event: &IdentityEvent) -> Result<Change, RedisError> {
        let app = event.app_id.as_str();
        let mut invocation = APPLY_SCRIPT.prepare_invoke();
        invocation
            .key(self.key(app, "map"))
            .key(self.key(app, "ver"))
            .key(self.key(app, "version"))
            .key(self.key(app, "tombstones"))
            .key(self.key(app, "pver"))
            .arg(&event.user)
            .arg(event.other.as_deref().unwrap_or(""))
            .arg(self.key(app, "members:"))
            .arg(self.key(app, "traits:"))
            .arg(self.key(app, "stamps:"))
            .arg(event.ts_ms);
        for (key, value) in &event.traits {
            invocation.arg(key).arg(value);
        }
        let answer: Vec<Value> = invocation
            .invoke_async(&mut self.connection.clone())
            .await?;
        change(answer)
    }

    /// As [`crate::identity::Identities::delete`].
    pub async fn delete(&self, app_id: &str, distinct_id: &str) -> Result<Vec<String>, RedisError> {
        DELETE
            .key(self.key(app_id, "map"))
            .key(self.key(app_id, "ver"))
            .key(self.key(app_id, "tombstones"))
            .key(self.key(app_id, "pver"))
            .arg(distinct_id)
            .arg(self.key(app_id, "members:"))
            .arg(self.key(app_id, "traits:"))
            .arg(self.key(app_id, "stamps:"))
            .invoke_async(&mut self.connection.clone())
            .await
    }

    /// As [`crate::identity::Identities::person`].
    pub async fn person(&self, app_id: &str, distinct_id: &str) -> Result<String, RedisError> {
        let person: Option<String> = redis::cmd("HGET")
            .arg(self.key(app_id, "map"))
            .arg(distinct_id)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(person.unwrap_or_else(|| distinct_id.to_owned()))
    }

    /// As [`crate::identity::Identities::is_deleted`].
    pub async fn is_deleted(&self, app_id: &str, distinct_id: &str) -> Result<bool, RedisError> {
        redis::cmd("SISMEMBER")
            .arg(self.key(app_id, "tombstones"))
            .arg(distinct_id)
            .query_async(&mut self.connection.clone())
            .await
    }
}
