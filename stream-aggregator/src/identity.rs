//! Identity resolution rules, in memory: the reference the Redis store
//! ([`crate::identity_store`]) must answer exactly as, and the store of the
//! fast tests. See `docs/design/persons-and-refresher.md`.
//!
//! Per app, each distinct id belongs to one *person*. An identity event
//! ([`tally_schemas::person::identity_event`]) with distinct id U that carries
//! another id A (the anonymous id of an `identify`, the `previous_id` of an
//! `alias`) *links* A to U:
//!
//! * neither has a person: one new person, whose id is A (the older,
//!   anonymous identity) — a distinct id never linked is its own person;
//! * one has a person: the other joins it;
//! * both have different persons: A's person is merged into U's (Segment's
//!   alias semantics: the previous id joins the new one); every distinct id of
//!   A's person is re-pointed.
//!
//! So persons are the connected components of the links, whatever order the
//! events are applied in (only the person's name depends on the order).
//! Traits: each trait of a person is the value of the latest identify (by
//! event time; equal times: the greater value) among all its ids' identifies —
//! a merge keeps, per trait, the later of the two persons' values. This too is
//! independent of the order of application.
//!
//! Applying an event is idempotent by construction (a link of ids already in
//! one person, or a trait no later than the held one, changes nothing), so a
//! replay needs no memory of event ids. Every change is a row with a version
//! that grows per app, so a table keeping the highest version per key
//! (ClickHouse `ReplacingMergeTree(version)`, or `argMax`) holds exactly the
//! current state. What [`Identities::apply`] returns must reach ClickHouse at
//! least once: the changed rows — or, when nothing changed (a replay, possibly
//! of an event whose first application crashed before its rows were
//! inserted), the current rows of every id of the person and its traits.
//! Ids of a deleted person are tombstoned: events of a tombstoned id change
//! nothing, so a replay cannot bring the person back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tally_schemas::person::{IdentityEvent, PersonDistinctIdRow, PersonRow};

/// One row of the distinct-id table: `distinct_id` belongs to `person_id` as of `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The distinct id.
    pub distinct_id: String,
    /// Its person.
    pub person_id: String,
    /// Grows with every change of the app.
    pub version: u64,
}

/// One version of a person's traits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonState {
    /// The person.
    pub person_id: String,
    /// Trait name and value, sorted by name.
    pub traits: Vec<(String, String)>,
    /// Grows with every change of the app.
    pub version: u64,
}

/// The rows one event's application must leave in ClickHouse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Distinct-id rows.
    pub mappings: Vec<Mapping>,
    /// The person's traits row, when the person has traits.
    pub person: Option<PersonState>,
}

impl Change {
    /// The ClickHouse rows of this change of `app_id` by the identity event
    /// at `position` (topic, partition, offset), appended to `ids` and
    /// `persons`.
    pub fn into_rows(
        self,
        (app_id, position): (&str, (&str, u32, u64)),
        ids: &mut Vec<PersonDistinctIdRow>,
        persons: &mut Vec<PersonRow>,
    ) {
        let (topic, partition, offset) = position;
        ids.extend(self.mappings.into_iter().map(|m| PersonDistinctIdRow {
            app_id: app_id.to_owned(),
            distinct_id: m.distinct_id,
            person_id: m.person_id,
            version: m.version,
            is_deleted: 0,
            kafka_topic: topic.to_owned(),
            kafka_partition: partition,
            kafka_offset: offset,
        }));
        if let Some(person) = self.person {
            let (prop_keys, prop_values) = person.traits.into_iter().unzip();
            persons.push(PersonRow {
                app_id: app_id.to_owned(),
                person_id: person.person_id,
                prop_keys,
                prop_values,
                version: person.version,
                is_deleted: 0,
            });
        }
    }
}

/// A trait value and the event time that set it; the greater pair wins.
type Stamped = (i64, String);

/// The identity state of one app.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    person_of: HashMap<String, String>,
    members: HashMap<String, BTreeSet<String>>,
    /// Version of each linked id's current row.
    id_version: HashMap<String, u64>,
    traits: HashMap<String, BTreeMap<String, Stamped>>,
    /// Version of each person's current traits row.
    person_version: HashMap<String, u64>,
    version: u64,
    tombstones: HashSet<String>,
}

impl Identities {
    /// An app without links.
    pub fn new() -> Self {
        Self::default()
    }

    /// The person of `distinct_id` (itself when never linked).
    pub fn person(&self, distinct_id: &str) -> String {
        self.person_of
            .get(distinct_id)
            .cloned()
            .unwrap_or_else(|| distinct_id.to_owned())
    }

    /// Whether `distinct_id` has been linked (belongs to a person of several ids).
    pub fn is_linked(&self, distinct_id: &str) -> bool {
        self.person_of.contains_key(distinct_id)
    }

    /// The current traits of `person`, sorted by name.
    pub fn traits(&self, person: &str) -> Vec<(String, String)> {
        self.traits
            .get(person)
            .map(|t| t.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The highest version handed out.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies one identity event; returns the rows to write (see the module doc).
    pub fn apply(&mut self, event: &IdentityEvent) -> Change {
        if self.tombstones.contains(&event.user) {
            return Change::default();
        }
        let mut traits_changed = false;
        let mut moved = Vec::new();
        if let Some(other) = event.other.as_deref() {
            if !self.tombstones.contains(other) {
                (moved, traits_changed) = self.link(&event.user, other);
            }
        }
        let person = self.person(&event.user);
        for (key, value) in &event.traits {
            traits_changed |= self.set_trait(&person, key, (event.ts_ms, value.clone()));
        }
        if traits_changed {
            self.version += 1;
            self.person_version.insert(person.clone(), self.version);
        }
        let mappings = if moved.is_empty() {
            self.members
                .get(&person)
                .into_iter()
                .flatten()
                .map(|id| Mapping {
                    distinct_id: id.clone(),
                    person_id: person.clone(),
                    version: self.id_version.get(id).copied().unwrap_or(0),
                })
                .collect()
        } else {
            moved
        };
        let state = self
            .person_version
            .get(&person)
            .map(|&version| PersonState {
                traits: self.traits(&person),
                person_id: person,
                version,
            });
        Change {
            mappings,
            person: state,
        }
    }

    /// Links `other` to `user`; returns the changed rows and whether a merge
    /// changed the surviving person's traits.
    fn link(&mut self, user: &str, other: &str) -> (Vec<Mapping>, bool) {
        let (into, moving): (String, Vec<String>) = match (
            self.person_of.get(user).cloned(),
            self.person_of.get(other).cloned(),
        ) {
            (None, None) => (other.to_owned(), vec![other.to_owned(), user.to_owned()]),
            (Some(person), None) => (person, vec![other.to_owned()]),
            (None, Some(person)) => (person, vec![user.to_owned()]),
            (Some(a), Some(b)) if a == b => return (Vec::new(), false),
            (Some(user), Some(previous)) => {
                let moving = self.members.remove(&previous).unwrap_or_default();
                (user, moving.into_iter().collect())
            }
        };
        let mut rows = Vec::new();
        let mut traits_changed = false;
        for id in moving {
            let source = self.person(&id);
            if source != into {
                traits_changed |= self.merge_traits(&source, &into);
            }
            self.version += 1;
            self.person_of.insert(id.clone(), into.clone());
            self.id_version.insert(id.clone(), self.version);
            self.members
                .entry(into.clone())
                .or_default()
                .insert(id.clone());
            rows.push(Mapping {
                distinct_id: id,
                person_id: into.clone(),
                version: self.version,
            });
        }
        (rows, traits_changed)
    }

    /// Moves `source`'s traits into `into` (per trait, the later wins).
    fn merge_traits(&mut self, source: &str, into: &str) -> bool {
        self.person_version.remove(source);
        let Some(moving) = self.traits.remove(source) else {
            return false;
        };
        let mut changed = false;
        for (key, stamped) in moving {
            changed |= self.set_trait(into, &key, stamped);
        }
        changed
    }

    fn set_trait(&mut self, person: &str, key: &str, stamped: Stamped) -> bool {
        let held = self.traits.entry(person.to_owned()).or_default();
        if held.get(key).is_some_and(|current| *current >= stamped) {
            return false;
        }
        held.insert(key.to_owned(), stamped);
        true
    }

    /// Deletes the person of `distinct_id`: every id of it is tombstoned and
    /// unlinked, its traits dropped; returns the tombstoned ids, sorted.
    pub fn delete(&mut self, distinct_id: &str) -> Vec<String> {
        let person = self.person(distinct_id);
        let mut ids: Vec<String> = self
            .members
            .remove(&person)
            .map(|m| m.into_iter().collect())
            .unwrap_or_else(|| vec![distinct_id.to_owned()]);
        ids.sort();
        self.traits.remove(&person);
        self.person_version.remove(&person);
        for id in &ids {
            self.person_of.remove(id);
            self.id_version.remove(id);
            self.tombstones.insert(id.clone());
        }
        ids
    }

    /// Whether `distinct_id` belongs to a deleted person.
    pub fn is_deleted(&self, distinct_id: &str) -> bool {
        self.tombstones.contains(distinct_id)
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
