//! Sessionization: one visitor's events (per app) in Kafka order → sessions.
//!
//! A visitor's events all travel on one Kafka partition (the message key is
//! app + visitor), so one aggregator process owns a visitor at a time and
//! sees its events in offset order. A [`Visitor`] holds the visitor's recent
//! (*hot*) sessions and the last offset applied; it lives in Redis between
//! batches (see `crate::live`), so it survives restarts and rebalances, and it
//! is written by compare-and-set on that offset, so a replay changes nothing.
//!
//! Rules, by *event time* (`SESSION_GAP_MS` = 30 min):
//! * an event within the gap of a session joins it (start and end move);
//! * an event within the gap of two sessions (a late event filling the hole
//!   between them) merges them into the earlier one, and the later one is
//!   emitted as `dropped`;
//! * any other event opens a new session, whose id is the partition and offset
//!   of that event (stable across replays).
//!
//! So the sessions are the maximal runs of events no more than a gap apart,
//! whatever the arrival order. Sessions that ended more than
//! [`KEPT_HORIZON_MS`] (24 h) before the visitor's latest event, or beyond
//! the [`KEPT_SESSIONS`] most recent, become *cold*: they leave the hot state
//! (which stays small) but not the visitor — their rows in ClickHouse are
//! exact, and [`Visitor::cold_until`] bounds their end, so an event that may
//! touch one is first given the cold sessions near it
//! ([`Visitor::needs_cold`], [`Visitor::revive`]; see `crate::visitors`).
//!
//! Every session a batch changed is emitted as a full [`SessionRow`] whose
//! version is the offset of the last event applied to it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tally_schemas::row::event_date;
use tally_schemas::session::{SessionRow, SESSION_GAP_MS};
use tally_schemas::Envelope;

/// Most sessions kept per visitor.
pub const KEPT_SESSIONS: usize = 8;

/// Sessions that ended this long before the visitor's latest event become cold.
pub const KEPT_HORIZON_MS: i64 = 24 * 3_600_000;

/// Attributes of a session's earliest event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    referrer_host: String,
    utm_source: String,
    utm_medium: String,
    utm_campaign: String,
    country: String,
    device_type: String,
    browser: String,
    os: String,
}

impl Touch {
    fn of_row(row: &SessionRow) -> Self {
        Touch {
            referrer_host: row.referrer_host.clone(),
            utm_source: row.utm_source.clone(),
            utm_medium: row.utm_medium.clone(),
            utm_campaign: row.utm_campaign.clone(),
            country: row.country.clone(),
            device_type: row.device_type.clone(),
            browser: row.browser.clone(),
            os: row.os.clone(),
        }
    }

    fn of(envelope: &Envelope) -> Self {
        let e = &envelope.enrichment;
        Touch {
            referrer_host: e.referrer_host.clone(),
            utm_source: e.utm_source.clone(),
            utm_medium: e.utm_medium.clone(),
            utm_campaign: e.utm_campaign.clone(),
            country: e.country.clone(),
            device_type: e.device_type.clone(),
            browser: e.browser.clone(),
            os: e.os.clone(),
        }
    }
}

/// One session as kept in a visitor's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `"{partition}-{offset}"` of the event that opened it.
    pub id: String,
    /// Event time of the event that opened it (fixes the table partition).
    pub created_ms: i64,
    /// Earliest event time.
    pub start_ms: i64,
    /// Latest event time.
    pub end_ms: i64,
    /// Events.
    pub events: u32,
    /// Page views.
    pub page_views: u32,
    /// Earliest page view: (time, path).
    pub entry: Option<(i64, String)>,
    /// Latest page view: (time, path).
    pub exit: Option<(i64, String)>,
    /// Attributes of the earliest event.
    pub first: Touch,
    /// Any bot event.
    pub is_bot: bool,
    /// Offset of the last event applied.
    pub version: i64,
    /// Retention class of the event that opened it (fixes the table
    /// partition with `created_ms`; absent in state written before it: 0).
    #[serde(default)]
    pub retention_days: u16,
}

impl Session {
    fn open(id: String, offset: i64, envelope: &Envelope) -> Self {
        let ts = envelope.timestamp_ms;
        Session {
            id,
            created_ms: ts,
            start_ms: ts,
            end_ms: ts,
            events: 0,
            page_views: 0,
            entry: None,
            exit: None,
            first: Touch::of(envelope),
            is_bot: false,
            version: offset,
            retention_days: envelope.retention_days,
        }
    }

    fn near(&self, ts: i64) -> bool {
        ts >= self.start_ms.saturating_sub(SESSION_GAP_MS)
            && ts <= self.end_ms.saturating_add(SESSION_GAP_MS)
    }

    fn add(&mut self, offset: i64, envelope: &Envelope) {
        let ts = envelope.timestamp_ms;
        if ts < self.start_ms {
            self.start_ms = ts;
            self.first = Touch::of(envelope);
        }
        self.end_ms = self.end_ms.max(ts);
        self.events += 1;
        self.is_bot |= envelope.enrichment.is_bot;
        if envelope.name == "page_view" {
            self.page_views += 1;
            let page = (ts, envelope.enrichment.url_path.clone());
            self.entry = Some(
                self.entry
                    .take()
                    .map_or(page.clone(), |e| e.min(page.clone())),
            );
            self.exit = Some(self.exit.take().map_or(page.clone(), |e| e.max(page)));
        }
        self.version = offset;
    }

    /// Folds `later` (a session now within the gap) into `self`.
    fn absorb(&mut self, later: &Session) {
        if later.start_ms < self.start_ms {
            self.start_ms = later.start_ms;
            self.first = later.first.clone();
        }
        self.end_ms = self.end_ms.max(later.end_ms);
        self.events += later.events;
        self.page_views += later.page_views;
        self.entry = [self.entry.take(), later.entry.clone()]
            .into_iter()
            .flatten()
            .min();
        self.exit = [self.exit.take(), later.exit.clone()]
            .into_iter()
            .flatten()
            .max();
        self.is_bot |= later.is_bot;
    }

    /// The ClickHouse row of this version.
    pub fn row(&self, app_id: &str, distinct_id: &str, dropped: bool) -> SessionRow {
        let ms = |v: i64| u64::try_from(v).unwrap_or(0);
        SessionRow {
            app_id: app_id.to_owned(),
            created_date: event_date(self.created_ms),
            distinct_id: distinct_id.to_owned(),
            session_id: self.id.clone(),
            start_ms: ms(self.start_ms),
            end_ms: ms(self.end_ms),
            start: u32::try_from(self.start_ms.div_euclid(1_000)).unwrap_or(0),
            duration_ms: ms(self.end_ms - self.start_ms),
            events: self.events,
            page_views: self.page_views,
            entry_page: self.entry.as_ref().map(|e| e.1.clone()).unwrap_or_default(),
            exit_page: self.exit.as_ref().map(|e| e.1.clone()).unwrap_or_default(),
            referrer_host: self.first.referrer_host.clone(),
            utm_source: self.first.utm_source.clone(),
            utm_medium: self.first.utm_medium.clone(),
            utm_campaign: self.first.utm_campaign.clone(),
            country: self.first.country.clone(),
            device_type: self.first.device_type.clone(),
            browser: self.first.browser.clone(),
            os: self.first.os.clone(),
            is_bot: u8::from(self.is_bot),
            // A bounce is a visit of exactly one page view (Plausible's definition).
            bounce: u8::from(self.page_views == 1),
            dropped: u8::from(dropped),
            version: ms(self.version),
            entry_ms: self.entry.as_ref().map_or(0, |e| ms(e.0)),
            exit_ms: self.exit.as_ref().map_or(0, |e| ms(e.0)),
            retention_days: self.retention_days,
        }
    }

    /// The session a stored row describes (the inverse of [`Session::row`];
    /// the creation time is the start of its `created_date`, which keeps the
    /// table partition).
    pub fn from_row(row: &SessionRow) -> Self {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let page = |at: u64, path: &str| (row.page_views > 0).then(|| (ms(at), path.to_owned()));
        Session {
            id: row.session_id.clone(),
            created_ms: i64::from(row.created_date) * 86_400_000,
            start_ms: ms(row.start_ms),
            end_ms: ms(row.end_ms),
            events: row.events,
            page_views: row.page_views,
            entry: page(row.entry_ms, &row.entry_page),
            exit: page(row.exit_ms, &row.exit_page),
            first: Touch::of_row(row),
            is_bot: row.is_bot != 0,
            version: ms(row.version),
            retention_days: row.retention_days,
        }
    }

    /// Partition and offset of the event that opened it (from its id).
    pub fn opened_at(&self) -> Option<(i32, i64)> {
        let (partition, offset) = self.id.split_once('-')?;
        Some((partition.parse().ok()?, offset.parse().ok()?))
    }
}

/// A visitor's session state: the last applied offset per Kafka partition
/// (normally one; more after the topic was repartitioned), the hot sessions
/// (by start) and the bound of the cold ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// Partition → offset of the last event applied from it.
    pub offsets: BTreeMap<i32, i64>,
    /// Hot sessions, ordered by start.
    pub sessions: Vec<Session>,
    /// Every session of the visitor that is not hot ended at or before this
    /// event time (`None` in states written before cold sessions were kept
    /// track of: those only ever let go of sessions older than the hot ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_until: Option<i64>,
}

/// What applying events changed: the last version of every changed session.
#[derive(Debug, Default)]
pub struct Changes {
    /// Session id → (session, dropped).
    pub sessions: BTreeMap<String, (Session, bool)>,
}

impl Visitor {
    /// A visitor with no events yet (and so no cold sessions).
    pub fn new() -> Self {
        Visitor::with_cold_until(i64::MIN)
    }

    /// A visitor without a stored state whose sessions, if any, all ended at
    /// or before `cold_until`.
    pub fn with_cold_until(cold_until: i64) -> Self {
        Visitor {
            cold_until: Some(cold_until),
            ..Visitor::default()
        }
    }

    /// Latest end any cold session may have.
    fn cold_bound(&self) -> i64 {
        self.cold_until.unwrap_or_else(|| {
            self.sessions
                .first()
                .map_or(i64::MIN, |s| s.start_ms.saturating_sub(1))
        })
    }

    /// Whether an event at `ts` may join or merge a cold session.
    pub fn needs_cold(&self, ts: i64) -> bool {
        ts <= self.cold_bound().saturating_add(SESSION_GAP_MS)
    }

    /// Makes `cold` (stored sessions found near an event) hot again; sessions
    /// already hot are left as they are. Returns how many were added.
    pub fn revive(&mut self, cold: Vec<Session>) -> usize {
        let mut added = 0;
        for session in cold {
            if self.sessions.iter().any(|s| s.id == session.id) {
                continue;
            }
            let at = self
                .sessions
                .partition_point(|s| s.start_ms <= session.start_ms);
            self.sessions.insert(at, session);
            added += 1;
        }
        added
    }

    /// Whether the event at `partition`/`offset` was already applied.
    pub fn has_applied(&self, partition: i32, offset: i64) -> bool {
        self.offsets
            .get(&partition)
            .is_some_and(|last| offset <= *last)
    }

    /// Applies one event; returns the id of the session it is in.
    pub fn apply(
        &mut self,
        partition: i32,
        offset: i64,
        envelope: &Envelope,
        changes: &mut Changes,
    ) -> String {
        let ts = envelope.timestamp_ms;
        let near: Vec<usize> = (0..self.sessions.len())
            .filter(|i| self.sessions[*i].near(ts))
            .collect();
        let index = match near.first() {
            None => {
                let session = Session::open(format!("{partition}-{offset}"), offset, envelope);
                let at = self.sessions.partition_point(|s| s.start_ms <= ts);
                self.sessions.insert(at, session);
                at
            }
            Some(&first) => {
                // Later matches are adjacent to the first (sessions are ordered and
                // more than a gap apart): fold them in, newest first.
                for &later in near[1..].iter().rev() {
                    let mut gone = self.sessions.remove(later);
                    self.sessions[first].absorb(&gone);
                    gone.version = offset;
                    changes.sessions.insert(gone.id.clone(), (gone, true));
                }
                first
            }
        };
        let session = &mut self.sessions[index];
        session.add(offset, envelope);
        let id = session.id.clone();
        changes
            .sessions
            .insert(id.clone(), (session.clone(), false));
        self.offsets.insert(partition, offset);
        id
    }

    /// Lets go of the sessions beyond the horizon or the count (they stay in
    /// ClickHouse), raising [`Visitor::cold_until`] to cover them. Called on
    /// the state about to be stored, after the rows of every session changed
    /// since it was read have been inserted — never in the middle of a batch,
    /// whose changed sessions are not in ClickHouse yet.
    pub fn cool_down(&mut self) {
        let latest = self.sessions.iter().map(|s| s.end_ms).max().unwrap_or(0);
        let horizon = latest.saturating_sub(KEPT_HORIZON_MS);
        let mut bound = self.cold_bound();
        let mut kept = Vec::with_capacity(self.sessions.len());
        let excess = self
            .sessions
            .iter()
            .filter(|s| s.end_ms >= horizon)
            .count()
            .saturating_sub(KEPT_SESSIONS);
        let mut dropped_recent = 0;
        for session in self.sessions.drain(..) {
            let cold = session.end_ms < horizon || {
                // Of the recent ones, the oldest `excess` go too.
                dropped_recent += 1;
                dropped_recent <= excess
            };
            if cold {
                bound = bound.max(session.end_ms);
            } else {
                kept.push(session);
            }
        }
        self.cold_until = Some(bound);
        self.sessions = kept;
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
