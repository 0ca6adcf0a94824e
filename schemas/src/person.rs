//! Persons: the identity vocabulary every service shares (issue 16).
//!
//! * Which events change identity ([`identity_event`]): `identify` (also
//!   `$identify`) sets traits — the properties under `traits.` — on the person
//!   of its distinct id and, when it carries an anonymous id (or PostHog's
//!   `$anon_distinct_id` property), links that id to the user; `alias` (also
//!   `$create_alias`) links `properties.previous_id` to its distinct id. A
//!   custom event an app names `identify` or `alias` is read the same way.
//! * The ClickHouse rows of `person_distinct_ids` and `persons` (migration
//!   0007), replace-on-write by `version`; column order equals the tables'
//!   (RowBinary), listed in [`crate::columns`].
//!
//! A distinct id without a `person_distinct_ids` row is its own person.

use crate::envelope::Envelope;
use crate::row::property_text;
use serde::{Deserialize, Serialize};

/// Event names that identify (set traits, link the anonymous id).
pub const IDENTIFY_EVENTS: &[&str] = &["identify", "$identify"];
/// Event names that alias (link `previous_id`).
pub const ALIAS_EVENTS: &[&str] = &["alias", "$create_alias"];
/// Prefix of trait properties on an identify event (objects are flattened with `.`).
pub const TRAIT_PREFIX: &str = "traits.";

/// The person of an event row of a statement that joins [`join_sql`]: the
/// linked person, else the distinct id itself.
pub const PERSON: &str = "if(pm_person = '', distinct_id, pm_person)";

/// ` ANY LEFT JOIN (…) AS pm USING distinct_id`: one app's current identity
/// mapping (the highest version of each distinct id), adding `pm_person`
/// (`''` for an id never linked: `join_use_nulls` is off) and, when `traits`,
/// `pm_keys`/`pm_values`, the person's current traits (a person never linked
/// but with traits has no mapping row and is added by a `UNION ALL`). Its
/// placeholders are all the app id: returns the text and how many there are.
/// One JOIN per `SELECT` (ClickHouse 18.16 knows no other) and every joined
/// subquery aliased (current ClickHouse requires it); probed on both.
pub fn join_sql(traits: bool) -> (String, usize) {
    let mapping = "SELECT distinct_id, argMax(person_id, version) AS pm_person \
                   FROM person_distinct_ids WHERE app_id = ? GROUP BY distinct_id";
    if !traits {
        return (
            format!(" ANY LEFT JOIN ({mapping}) AS pm USING distinct_id"),
            1,
        );
    }
    let text = format!(
        " ANY LEFT JOIN (SELECT distinct_id, pm_person, pm_keys, pm_values FROM ({mapping} \
         UNION ALL SELECT person_id AS distinct_id, person_id AS pm_person FROM persons \
         WHERE app_id = ? AND person_id NOT IN (SELECT distinct_id FROM person_distinct_ids \
         WHERE app_id = ?) GROUP BY person_id) AS pu ANY LEFT JOIN (SELECT person_id AS pm_person, \
         argMax(prop_keys, version) AS pm_keys, argMax(prop_values, version) AS pm_values \
         FROM persons WHERE app_id = ? GROUP BY person_id) AS pt USING pm_person) AS pm \
         USING distinct_id"
    );
    (text, 4)
}

/// A key of an app's identity state in Redis: `{prefix}:id:{app}:{rest}` (the
/// app is the hash tag, so one app's keys share a cluster slot).
pub fn identity_key(prefix: &str, app_id: &str, rest: &str) -> String {
    format!("{prefix}:id:{{{app_id}}}:{rest}")
}

/// Deletes a person from the identity state (one Lua script, atomic). KEYS:
/// map, ver, tombstones, pver. ARGV: a distinct id of the person, then the
/// members, traits and stamps prefixes ([`identity_key`] of `members:`,
/// `traits:`, `stamps:`), then any further distinct ids to tombstone (known
/// from ClickHouse). Every id of the person is unlinked and tombstoned — the
/// aggregator drops later events of a tombstoned id, so neither new traffic
/// nor a replay brings the person back. Returns the tombstoned ids, sorted.
pub const DELETE_SCRIPT: &str = r"
local person = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[1]
local ids = redis.call('SMEMBERS', ARGV[2] .. person)
if #ids == 0 then ids = {ARGV[1]} end
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
table.sort(ids)
redis.call('DEL', ARGV[2] .. person, ARGV[3] .. person, ARGV[4] .. person)
redis.call('HDEL', KEYS[4], person)
local out, last = {}, nil
for _, id in ipairs(ids) do
  if id ~= last then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('SADD', KEYS[3], id)
    out[#out + 1] = id
  end
  last = id
end
return out
";

/// The mutations that remove a deleted person's rows; `true` where the
/// statement's list is the person id (`persons`), else its distinct ids.
const DELETES: [(&str, bool); 7] = [
    (
        "ALTER TABLE key_ids DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE id_keys DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE arrivals DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE events DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE sessions DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE person_distinct_ids DELETE WHERE app_id = ? AND has(?, distinct_id)",
        false,
    ),
    (
        "ALTER TABLE persons DELETE WHERE app_id = ? AND has(?, person_id)",
        true,
    ),
];

/// The mutations that remove the rows of `person` (distinct ids `ids`), each
/// with the list it binds after the app id. ClickHouse applies them
/// asynchronously (`system.mutations`).
pub fn delete_statements(person: &str, ids: &[String]) -> Vec<(&'static str, Vec<String>)> {
    DELETES
        .iter()
        .map(|(sql, by_person)| {
            let list = if *by_person {
                vec![person.to_owned()]
            } else {
                ids.to_vec()
            };
            (*sql, list)
        })
        .collect()
}

/// The days (`day`, `YYYY-MM-DD`) on which a list of distinct ids has events
/// (binds: the app id, the ids).
pub const PERSON_DAYS_SQL: &str = "SELECT DISTINCT toString(event_date) AS day FROM events \
     WHERE app_id = ? AND has(?, distinct_id) ORDER BY day";

/// The days (`day`) with derived events of the app's distinct ids whose
/// `person_distinct_ids` rows meet `changed` (binds: app, app, then
/// `changed`'s): an index read of the refresher's `id_hours` (rows not
/// derived yet are found through `arrivals`).
pub fn changed_days_sql(changed: &str) -> String {
    format!(
        "SELECT DISTINCT toString(toDate(hour, 'UTC')) AS day FROM id_hours WHERE app_id = ? \
         AND distinct_id IN (SELECT distinct_id FROM person_distinct_ids WHERE app_id = ? \
         AND ({changed}))"
    )
}

/// Identity rows without a Kafka position (written before ClickHouse
/// migration 0011, or by tools writing ClickHouse directly) changed in
/// versions `(from, to]` (binds: from, to). Rows with a position are
/// followed by position instead (see the migration).
pub const UNPLACED_CHANGED: &str = "kafka_topic = '' AND version > ? AND version <= ?";

/// Rows a deleted person still has (binds: app id and the ids, four times,
/// then the app id and the person); a deletion is done when this is 0 and the
/// reports were re-derived.
pub const REMAINING_SQL: &str =
    "SELECT (SELECT count() FROM arrivals WHERE app_id = ? AND has(?, distinct_id)) \
     + (SELECT count() FROM events WHERE app_id = ? AND has(?, distinct_id)) \
     + (SELECT count() FROM sessions WHERE app_id = ? AND has(?, distinct_id)) \
     + (SELECT count() FROM person_distinct_ids WHERE app_id = ? AND has(?, distinct_id)) \
     + (SELECT count() FROM persons WHERE app_id = ? AND has(?, person_id)) AS remaining";

/// What one identity event asks of the identity state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEvent {
    /// App.
    pub app_id: String,
    /// The event's id.
    pub event_id: String,
    /// The event's distinct id: the identified user.
    pub user: String,
    /// The anonymous or previous id to link to `user`, if any (never equal to it).
    pub other: Option<String>,
    /// Traits set by the event (key without the prefix, text value), sorted by key.
    pub traits: Vec<(String, String)>,
    /// Event time, epoch ms: a later identify's trait wins.
    pub ts_ms: i64,
}

/// The identity change `envelope` asks for, when it is an identity event.
pub fn identity_event(envelope: &Envelope) -> Option<IdentityEvent> {
    let name = envelope.name.as_str();
    let property = |key: &str| {
        envelope
            .properties
            .get(key)
            .map(property_text)
            .filter(|text| !text.is_empty())
    };
    let (other, traits) = if IDENTIFY_EVENTS.contains(&name) {
        let other = envelope
            .anonymous_id
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| property("$anon_distinct_id"));
        let mut traits: Vec<(String, String)> = envelope
            .properties
            .iter()
            .filter(|(_, value)| !value.is_null())
            .filter_map(|(key, value)| {
                let key = key.strip_prefix(TRAIT_PREFIX)?;
                (!key.is_empty()).then(|| (key.to_owned(), property_text(value)))
            })
            .collect();
        traits.sort();
        (other, traits)
    } else if ALIAS_EVENTS.contains(&name) {
        (property("previous_id"), Vec::new())
    } else {
        return None;
    };
    let user = envelope.distinct_id.clone();
    Some(IdentityEvent {
        app_id: envelope.app_id.clone(),
        event_id: envelope.event_id.clone(),
        other: other.filter(|other| *other != user),
        user,
        traits,
        ts_ms: envelope.timestamp_ms,
    })
}

/// One version of one distinct id's person.
#[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDistinctIdRow {
    /// Tenant.
    pub app_id: String,
    /// The distinct id.
    pub distinct_id: String,
    /// Its person.
    pub person_id: String,
    /// Grows with every identity change of the app.
    pub version: u64,
    /// 1 once the person was deleted.
    pub is_deleted: u8,
    /// Kafka position of the identity event that wrote the row (topic `''`:
    /// none, the row is followed by `version`; migration 0011).
    pub kafka_topic: String,
    /// Its partition.
    pub kafka_partition: u32,
    /// Its offset.
    pub kafka_offset: u64,
}

/// One version of one person's traits.
#[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRow {
    /// Tenant.
    pub app_id: String,
    /// The person (named after one of its distinct ids).
    pub person_id: String,
    /// Trait names, sorted.
    pub prop_keys: Vec<String>,
    /// Trait values (text), in the order of `prop_keys`.
    pub prop_values: Vec<String>,
    /// Grows with every identity change of the app.
    pub version: u64,
    /// 1 once the person was deleted.
    pub is_deleted: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(name: &str, anonymous: Option<&str>, properties: serde_json::Value) -> Envelope {
        Envelope {
            event_id: "e1".into(),
            app_id: "app".into(),
            name: name.into(),
            distinct_id: "user".into(),
            user_id: Some("user".into()),
            anonymous_id: anonymous.map(str::to_owned),
            timestamp_ms: 7,
            received_at_ms: 8,
            sent_at_ms: None,
            ip: None,
            user_agent: None,
            properties: properties.as_object().cloned().unwrap_or_default(),
            enrichment: Default::default(),
            retention_days: 0,
        }
    }

    #[test]
    fn identify_links_the_anonymous_id_and_sets_traits() {
        let event = identity_event(&envelope(
            "identify",
            Some("anon"),
            json!({"traits.plan": "pro", "traits.seats": 3, "traits.gone": null, "other": 1}),
        ))
        .unwrap();
        assert_eq!(event.user, "user");
        assert_eq!(event.other.as_deref(), Some("anon"));
        assert_eq!(
            event.traits,
            vec![("plan".into(), "pro".into()), ("seats".into(), "3".into())]
        );
        assert_eq!(event.ts_ms, 7);
    }

    #[test]
    fn alias_links_the_previous_id_and_self_links_are_dropped() {
        let alias =
            identity_event(&envelope("alias", None, json!({"previous_id": "old"}))).unwrap();
        assert_eq!(alias.other.as_deref(), Some("old"));
        let posthog = identity_event(&envelope(
            "$identify",
            None,
            json!({"$anon_distinct_id": "ph-anon"}),
        ))
        .unwrap();
        assert_eq!(posthog.other.as_deref(), Some("ph-anon"));
        let own = identity_event(&envelope("identify", Some("user"), json!({}))).unwrap();
        assert_eq!(own.other, None);
        assert!(identity_event(&envelope("page_view", Some("anon"), json!({}))).is_none());
    }
}
