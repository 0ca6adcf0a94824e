//! Session state of the visitors touched since the last full flush.
//!
//! [`Sessions::apply`] reads a visitor's state from the [`LiveStore`] the first
//! time the visitor is touched, then applies events to it in memory
//! ([`crate::sessions`]), recording each event's session id (the live windows
//! count active sessions). The full flush writes [`Sessions::rows`] (session
//! versions) to ClickHouse and then [`Sessions::writes`] (states, by
//! compare-and-set on their guard) to Redis.
//!
//! A crash before the states are written is harmless: the stored states still
//! hold the old guards, so a replay recomputes exactly the same session rows
//! (same ids, same versions), which the `sessions` ReplacingMergeTree collapses.
//! After a failed write or a rebalance the held states may be stale:
//! [`Sessions::clear`] drops them and the caller applies its pending events
//! again (the stored guards skip what was already stored).

use crate::error::AggregatorError;
use crate::live::{LiveStore, VisitorWrite, ANY_GUARD};
use crate::processor::Message;
use crate::sessions::{Changes, Visitor};
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::visitor_key;
use tally_schemas::session::SessionRow;

/// One visitor's state as read, and what was applied to it since.
#[derive(Debug)]
struct Held {
    app_id: String,
    distinct_id: String,
    expected_guard: String,
    visitor: Visitor,
    changes: Changes,
    last: Option<(i32, i64)>,
}

/// Visitors touched since the last full flush.
#[derive(Debug, Default)]
pub struct Sessions {
    held: BTreeMap<String, Held>,
    /// Session id of every event applied, by (partition, offset).
    pub session_of: HashMap<(i32, i64), String>,
    /// Events whose stored state already held them (replays).
    pub skipped: usize,
}

impl Sessions {
    /// Applies `messages` (each partition's in offset order); with `guards_off`
    /// (chaos control run) stored guards are ignored.
    pub async fn apply<L: LiveStore>(
        &mut self,
        live: &L,
        prefix: &str,
        messages: &[&Message],
        guards_off: bool,
    ) -> Result<(), AggregatorError> {
        let keys: Vec<String> = messages
            .iter()
            .map(|m| visitor_key(prefix, &m.envelope.app_id, &m.envelope.distinct_id))
            .collect();
        let mut missing: Vec<String> = keys
            .iter()
            .filter(|key| !self.held.contains_key(*key))
            .cloned()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let stored = live.read_visitors(&missing).await?;
        for (key, stored) in missing.into_iter().zip(stored) {
            let (expected_guard, visitor) = match stored {
                Some((guard, bytes)) => match serde_json::from_slice::<Visitor>(&bytes) {
                    Ok(visitor) => (guard, visitor),
                    Err(err) => {
                        tracing::warn!(key = %key, error = %err, "replacing unreadable visitor state");
                        (guard, Visitor::new())
                    }
                },
                None => (String::new(), Visitor::new()),
            };
            self.held.insert(
                key,
                Held {
                    app_id: String::new(),
                    distinct_id: String::new(),
                    expected_guard,
                    visitor,
                    changes: Changes::default(),
                    last: None,
                },
            );
        }
        for (message, key) in messages.iter().zip(keys) {
            let Some(held) = self.held.get_mut(&key) else {
                continue;
            };
            if !guards_off && held.visitor.has_applied(message.partition, message.offset) {
                self.skipped += 1;
                continue;
            }
            let id = held.visitor.apply(
                message.partition,
                message.offset,
                &message.envelope,
                &mut held.changes,
            );
            self.session_of
                .insert((message.partition, message.offset), id);
            held.last = Some((message.partition, message.offset));
            if held.app_id.is_empty() {
                held.app_id.clone_from(&message.envelope.app_id);
                held.distinct_id.clone_from(&message.envelope.distinct_id);
            }
        }
        Ok(())
    }

    /// The last version of every session changed since the last [`Sessions::clear`].
    pub fn rows(&self) -> Vec<SessionRow> {
        self.held
            .values()
            .flat_map(|held| {
                held.changes.sessions.values().map(|(session, dropped)| {
                    session.row(&held.app_id, &held.distinct_id, *dropped)
                })
            })
            .collect()
    }

    /// The states to store (compare-and-set on the guard read).
    pub fn writes(&self, guards_off: bool) -> Result<Vec<VisitorWrite>, AggregatorError> {
        let mut writes = Vec::new();
        for (key, held) in &self.held {
            let Some((partition, offset)) = held.last else {
                continue;
            };
            let state = serde_json::to_vec(&held.visitor).map_err(|err| {
                AggregatorError::State(format!("serializing visitor state: {err}"))
            })?;
            writes.push(VisitorWrite {
                key: key.clone(),
                expected_guard: if guards_off {
                    ANY_GUARD.to_owned()
                } else {
                    held.expected_guard.clone()
                },
                new_guard: format!("{partition}:{offset}"),
                state,
            });
        }
        Ok(writes)
    }

    /// Drops the held states (they are re-read when next touched); keeps `session_of`.
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Drops everything (after a full flush).
    pub fn reset(&mut self) {
        *self = Sessions::default();
    }
}
