//! Identity resolution rules (issue 16, first increment: the logic, kept in
//! memory; the Redis store that will hold it between processes must answer
//! the same — see `docs/design/persons-and-refresher.md`).
//!
//! Per app, each distinct id belongs to one *person*. An `identify` event
//! (distinct id U, carrying the anonymous id A) or an `alias` event (distinct
//! id U, `previous_id` A) *links* A to U:
//!
//! * neither has a person: one new person, whose id is A (the older,
//!   anonymous identity) — a distinct id never linked is its own person;
//! * one has a person: the other joins it;
//! * both have different persons: A's person is merged into U's (Segment's
//!   alias semantics: the previous id joins the new one); every distinct id of
//!   A's person is re-pointed.
//!
//! Every change is a row `(distinct_id, person_id, version)` with a version
//! that grows per app, so a table that keeps the highest version per distinct
//! id (ClickHouse `ReplacingMergeTree(version)`, or `argMax`) holds exactly
//! the current mapping. A link is applied once per event id: a replayed event
//! changes nothing. Ids of a deleted person are tombstoned: links that touch
//! them are ignored, so a replay cannot bring the person back.

use std::collections::{BTreeSet, HashMap, HashSet};

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

/// The identity state of one app.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    person_of: HashMap<String, String>,
    members: HashMap<String, BTreeSet<String>>,
    version: u64,
    applied: HashSet<String>,
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

    /// The highest version handed out.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Links `other` (the anonymous or previous id) to `distinct_id` for the
    /// event `event_id`; returns the rows that changed (none for a replay, a
    /// self-link, ids already linked, or a tombstoned id).
    pub fn link(&mut self, event_id: &str, distinct_id: &str, other: &str) -> Vec<Mapping> {
        if !self.applied.insert(event_id.to_owned())
            || distinct_id == other
            || self.tombstones.contains(distinct_id)
            || self.tombstones.contains(other)
        {
            return Vec::new();
        }
        let (user, previous) = (
            self.person_of.get(distinct_id).cloned(),
            self.person_of.get(other).cloned(),
        );
        let (into, moving): (String, Vec<String>) = match (user, previous) {
            (None, None) => (
                other.to_owned(),
                vec![other.to_owned(), distinct_id.to_owned()],
            ),
            (Some(person), None) => (person, vec![other.to_owned()]),
            (None, Some(person)) => (person, vec![distinct_id.to_owned()]),
            (Some(a), Some(b)) if a == b => return Vec::new(),
            (Some(user), Some(previous)) => {
                let moving = self.members.remove(&previous).unwrap_or_default();
                (user, moving.into_iter().collect())
            }
        };
        let mut rows = Vec::new();
        for id in moving {
            self.version += 1;
            self.person_of.insert(id.clone(), into.clone());
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
        rows
    }

    /// Deletes the person of `distinct_id`: every id of it is tombstoned and
    /// unlinked; returns the tombstoned ids.
    pub fn delete(&mut self, distinct_id: &str) -> Vec<String> {
        let person = self.person(distinct_id);
        let mut ids: Vec<String> = self
            .members
            .remove(&person)
            .map(|m| m.into_iter().collect())
            .unwrap_or_else(|| vec![distinct_id.to_owned()]);
        ids.sort();
        for id in &ids {
            self.person_of.remove(id);
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
