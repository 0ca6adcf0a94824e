//! Sessions for one batch: read the visitors' states from the [`LiveStore`],
//! apply the batch's events ([`crate::sessions`]), and return what to write —
//! without writing it. The [`crate::processor`] writes the live windows (which
//! need each event's session id), then the session rows, then the states.
//!
//! A crash between those writes is harmless: the states still hold the old
//! guard, so a replay recomputes exactly the same session rows (same ids, same
//! versions), which the `sessions` ReplacingMergeTree collapses.

use crate::error::AggregatorError;
use crate::live::{LiveStore, VisitorWrite, ANY_GUARD};
use crate::processor::Message;
use crate::sessions::{Changes, Visitor};
use std::collections::{BTreeMap, HashMap};
use tally_schemas::live::visitor_key;
use tally_schemas::session::SessionRow;

/// What a batch does to sessions.
#[derive(Debug, Default)]
pub struct SessionPlan {
    /// Session versions to upsert.
    pub rows: Vec<SessionRow>,
    /// Visitor states to store.
    pub writes: Vec<VisitorWrite>,
    /// Session id of every event newly applied, by (partition, offset).
    pub session_of: HashMap<(i32, i64), String>,
    /// Events whose visitor state already held them (replays).
    pub skipped: usize,
}

/// Plans the sessions of `batch` (messages of each partition in offset order).
/// With `guards_off` (chaos control run) replays are applied again.
pub async fn plan<L: LiveStore>(
    live: &L,
    prefix: &str,
    batch: &[&Message],
    guards_off: bool,
) -> Result<SessionPlan, AggregatorError> {
    let mut by_visitor: BTreeMap<String, Vec<&Message>> = BTreeMap::new();
    for &message in batch {
        let envelope = &message.envelope;
        by_visitor
            .entry(visitor_key(prefix, &envelope.app_id, &envelope.distinct_id))
            .or_default()
            .push(message);
    }
    let keys: Vec<String> = by_visitor.keys().cloned().collect();
    let stored = live.read_visitors(&keys).await?;
    let mut plan = SessionPlan::default();
    for ((key, messages), stored) in by_visitor.into_iter().zip(stored) {
        let (expected_guard, mut visitor) = match stored {
            Some((guard, bytes)) => match serde_json::from_slice::<Visitor>(&bytes) {
                Ok(visitor) => (guard, visitor),
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "replacing unreadable visitor state");
                    (guard, Visitor::new())
                }
            },
            None => (String::new(), Visitor::new()),
        };
        let mut changes = Changes::default();
        let mut last = None;
        for message in &messages {
            if !guards_off && visitor.has_applied(message.partition, message.offset) {
                plan.skipped += 1;
                continue;
            }
            let id = visitor.apply(
                message.partition,
                message.offset,
                &message.envelope,
                &mut changes,
            );
            plan.session_of
                .insert((message.partition, message.offset), id);
            last = Some((message.partition, message.offset));
        }
        let Some((partition, offset)) = last else {
            continue;
        };
        let envelope = &messages[0].envelope;
        plan.rows
            .extend(changes.sessions.values().map(|(session, dropped)| {
                session.row(&envelope.app_id, &envelope.distinct_id, *dropped)
            }));
        let state = serde_json::to_vec(&visitor)
            .map_err(|err| AggregatorError::State(format!("serializing visitor state: {err}")))?;
        plan.writes.push(VisitorWrite {
            key,
            expected_guard: if guards_off {
                ANY_GUARD.to_owned()
            } else {
                expected_guard
            },
            new_guard: format!("{partition}:{offset}"),
            state,
        });
    }
    Ok(plan)
}
