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
//!
//! Cold sessions (see [`crate::sessions`]): before an event that may touch
//! one is applied, the visitor's stored sessions near it are read from
//! ClickHouse and made hot again, and that *revived* state is written to Redis
//! at once (same guard), before any row of the batch is inserted. So every
//! session row in ClickHouse that a crashed attempt changed belongs to a hot
//! session by the time it is replayed — except sessions the crashed attempt
//! opened, recognised by their id (an offset still pending and not covered by
//! the guard) and ignored. A lookup therefore only ever sees settled rows, and
//! a replay decides exactly as the first attempt did.
//!
//! A visitor without a stored state (new, or idle longer than the key's TTL)
//! can only have stored sessions that ended before `absent_cold_until`: its
//! last state write was more than a TTL ago, and the gateway clamps event times
//! to at most 23 h after receipt.

use crate::error::AggregatorError;
use crate::live::{LiveStore, StoredVisitor, VisitorWrite, ANY_GUARD};
use crate::message::{debug_assert_offset_order, Message};
use crate::raw::{RawSink, SessionLookup};
use crate::sessions::{Changes, Session, Visitor};
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::visitor_key;
use tally_schemas::session::{SessionRow, SESSION_GAP_MS};

/// A stored visitor state as (guard, state); a missing or unreadable one is
/// a visitor whose stored sessions, if any, ended before `absent_cold_until`.
fn decode(key: &str, stored: StoredVisitor, scope: &Scope<'_>) -> (String, Visitor) {
    let absent = || Visitor::with_cold_until(scope.absent_cold_until);
    match stored {
        Some((guard, bytes)) => match serde_json::from_slice::<Visitor>(&bytes) {
            Ok(visitor) => (guard, visitor),
            Err(err) => {
                crate::metrics::unreadable_state("visitor", key, &err);
                (guard, absent())
            }
        },
        None => (String::new(), absent()),
    }
}

/// How [`Sessions::apply`] reads and decides.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Prefix of the Redis keys.
    pub prefix: &'a str,
    /// Chaos control run: stored guards are ignored.
    pub guards_off: bool,
    /// Latest end a stored session of a visitor without a Redis state may have.
    pub absent_cold_until: i64,
    /// Lowest pending (not yet committed) offset of each partition.
    pub first_pending: &'a BTreeMap<i32, i64>,
}

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
    /// Applies `messages` (each partition's in offset order), reviving the
    /// cold sessions they may touch first.
    pub async fn apply<L: LiveStore, R: RawSink>(
        &mut self,
        (live, raw): (&L, &R),
        scope: &Scope<'_>,
        messages: &[&Message],
    ) -> Result<(), AggregatorError> {
        debug_assert_offset_order(messages.iter().copied());
        let keys: Vec<String> = messages
            .iter()
            .map(|m| visitor_key(scope.prefix, &m.envelope.app_id, &m.envelope.distinct_id))
            .collect();
        self.load(live, scope, &keys).await?;
        self.revive(live, raw, scope, messages, &keys).await?;
        for (message, key) in messages.iter().zip(keys) {
            let Some(held) = self.held.get_mut(&key) else {
                continue;
            };
            if !scope.guards_off && held.visitor.has_applied(message.partition, message.offset) {
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

    /// Reads the states of the visitors of `keys` not held yet.
    async fn load<L: LiveStore>(
        &mut self,
        live: &L,
        scope: &Scope<'_>,
        keys: &[String],
    ) -> Result<(), AggregatorError> {
        let mut missing: Vec<String> = keys
            .iter()
            .filter(|key| !self.held.contains_key(*key))
            .cloned()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let stored = live.read_visitors(&missing).await?;
        for (key, stored) in missing.into_iter().zip(stored) {
            let (expected_guard, visitor) = decode(&key, stored, scope);
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
        Ok(())
    }

    /// Revives the cold sessions near the events that may touch one, and
    /// stores the revived states before anything else is written.
    async fn revive<L: LiveStore, R: RawSink>(
        &mut self,
        live: &L,
        raw: &R,
        scope: &Scope<'_>,
        messages: &[&Message],
        keys: &[String],
    ) -> Result<(), AggregatorError> {
        let mut ranges: BTreeMap<&str, (&Message, i64, i64)> = BTreeMap::new();
        for (message, key) in messages.iter().zip(keys) {
            let Some(held) = self.held.get(key) else {
                continue;
            };
            let ts = message.envelope.timestamp_ms;
            if held.visitor.has_applied(message.partition, message.offset) && !scope.guards_off
                || !held.visitor.needs_cold(ts)
            {
                continue;
            }
            let range = ranges.entry(key).or_insert((message, ts, ts));
            (range.1, range.2) = (range.1.min(ts), range.2.max(ts));
        }
        if ranges.is_empty() {
            return Ok(());
        }
        let lookups: Vec<SessionLookup> = ranges
            .values()
            .map(|(message, from, to)| SessionLookup {
                app_id: message.envelope.app_id.clone(),
                distinct_id: message.envelope.distinct_id.clone(),
                from_ms: from.saturating_sub(SESSION_GAP_MS),
                to_ms: to.saturating_add(SESSION_GAP_MS),
            })
            .collect();
        let mut found: BTreeMap<String, Vec<Session>> = BTreeMap::new();
        for row in raw.sessions_near(&lookups).await? {
            let key = visitor_key(scope.prefix, &row.app_id, &row.distinct_id);
            found.entry(key).or_default().push(Session::from_row(&row));
        }
        // The states as stored (with what earlier revivals of this batch
        // added), read again: only this rare path needs them.
        found.retain(|key, _| self.held.contains_key(key));
        let keys: Vec<String> = found.keys().cloned().collect();
        let stored = live.read_visitors(&keys).await?;
        let mut writes = Vec::new();
        for ((key, sessions), stored) in found.into_iter().zip(stored) {
            let Some(held) = self.held.get_mut(&key) else {
                continue;
            };
            let (guard, mut stored) = decode(&key, stored, scope);
            if guard != held.expected_guard && !scope.guards_off {
                return Err(AggregatorError::Conflict(key));
            }
            // Sessions opened by a pending event the stored state does not
            // hold were written by an attempt that did not finish: not settled.
            // Sessions revived earlier in this batch may have changed or been
            // merged away in the held state since: only new ones are added.
            let new: Vec<Session> = sessions
                .into_iter()
                .filter(|session| {
                    session.opened_at().is_none_or(|(partition, offset)| {
                        stored.has_applied(partition, offset)
                            || scope
                                .first_pending
                                .get(&partition)
                                .is_none_or(|first| offset < *first)
                    })
                })
                .filter(|session| !stored.sessions.iter().any(|s| s.id == session.id))
                .collect();
            if new.is_empty() {
                continue;
            }
            held.visitor.revive(new.clone());
            stored.revive(new);
            let state = serde_json::to_vec(&stored).map_err(|err| {
                AggregatorError::State(format!("serializing visitor state: {err}"))
            })?;
            writes.push(VisitorWrite {
                key,
                expected_guard: if scope.guards_off {
                    ANY_GUARD.to_owned()
                } else {
                    held.expected_guard.clone()
                },
                new_guard: held.expected_guard.clone(),
                state,
            });
        }
        let conflicts = live.write_visitors(&writes).await?;
        match conflicts.first() {
            Some(key) => Err(AggregatorError::Conflict(key.clone())),
            None => Ok(()),
        }
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

    /// The states to store (compare-and-set on the guard read). Old sessions
    /// go cold only for visitors of partitions that `settled` accepts: a
    /// crashed attempt may have stored rows of the others' sessions that are
    /// ahead of their state (the replay brings them in line again).
    pub fn writes(
        &self,
        guards_off: bool,
        settled: &(dyn Fn(i32) -> bool + Sync),
    ) -> Result<Vec<VisitorWrite>, AggregatorError> {
        let mut writes = Vec::new();
        for (key, held) in &self.held {
            let Some((partition, offset)) = held.last else {
                continue;
            };
            let mut visitor = held.visitor.clone();
            if settled(partition) {
                visitor.cool_down();
            }
            let state = serde_json::to_vec(&visitor).map_err(|err| {
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
