//! Sessionization: one visitor's events (per app) in Kafka order → sessions.
//!
//! A visitor's events all travel on one Kafka partition (the message key is
//! app + visitor), so one aggregator process owns a visitor at a time and
//! sees its events in offset order. A [`Visitor`] holds the visitor's most
//! recent sessions and the last offset applied; it lives
//! in Redis between batches (see `crate::live`), so it survives restarts and
//! rebalances, and it is written by compare-and-set on that offset, so a
//! replay changes nothing.
//!
//! Rules, by *event time* (`SESSION_GAP_MS` = 30 min):
//! * an event within the gap of a kept session joins it (start and end move);
//! * an event within the gap of two kept sessions (a late event filling the
//!   hole between them) merges them into the earlier one, and the later one is
//!   emitted as `dropped`;
//! * any other event opens a new session, whose id is the partition and offset
//!   of that event (stable across replays);
//! * sessions that ended more than [`KEPT_HORIZON_MS`] (24 h) before the
//!   visitor's latest event, or beyond the [`KEPT_SESSIONS`] most recent, are
//!   forgotten; an event that would have joined a forgotten session opens one
//!   of its own (documented limit, far outside any allowed lateness).
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

/// Sessions that ended this long before the visitor's latest event are forgotten.
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
            bounce: u8::from(self.events == 1),
            dropped: u8::from(dropped),
            version: ms(self.version),
        }
    }
}

/// A visitor's session state: the last applied offset per Kafka partition
/// (normally one; more after the topic was repartitioned) and the kept
/// sessions (by start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// Partition → offset of the last event applied from it.
    pub offsets: BTreeMap<i32, i64>,
    /// Kept sessions, ordered by start.
    pub sessions: Vec<Session>,
}

/// What applying events changed: the last version of every changed session.
#[derive(Debug, Default)]
pub struct Changes {
    /// Session id → (session, dropped).
    pub sessions: BTreeMap<String, (Session, bool)>,
}

impl Visitor {
    /// A visitor with no events yet.
    pub fn new() -> Self {
        Visitor::default()
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
        let latest = self.sessions.iter().map(|s| s.end_ms).max().unwrap_or(ts);
        self.sessions
            .retain(|s| s.end_ms >= latest.saturating_sub(KEPT_HORIZON_MS));
        while self.sessions.len() > KEPT_SESSIONS {
            self.sessions.remove(0);
        }
        self.offsets.insert(partition, offset);
        id
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
