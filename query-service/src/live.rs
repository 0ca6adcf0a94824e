//! The live endpoints, read from the aggregator's 5-second windows in Redis.
//!
//! * `GET /api/v1/analytics/{app_id}/live?windows=N&from_event=A&to_event=B` —
//!   the last N windows (the open one included, default 12 = one minute),
//!   oldest first, each with events, events per name, unique users, active
//!   sessions and its state (`open`; `closing`: ended, late events may still
//!   arrive; `final`); totals over the N windows; active users over the last 5
//!   and 30 minutes (sketches merged across windows); and, with `from_event`
//!   and `to_event`, their conversion rate (events named B per event named A
//!   over the N windows). `as_of_ms` says when the numbers were read.
//! * `GET /api/v1/analytics/{app_id}/live/stream` — Server-Sent Events,
//!   looked at every [`STREAM_TICK`]: a `partial` event with the open
//!   window's numbers so far whenever they changed (and at least every
//!   second), and a `window` event with each window's numbers once it has
//!   closed — again if late events change it while it is the last closed
//!   one ([`Pushed`]). Read key in the header, or (browsers) `?token=` from
//!   `POST …/live/token` ([`crate::stream_token`]).
//!
//! Answers are computed once per `TALLY_QUERY_LIVE_CACHE_MS` for identical
//! requests, and concurrent identical requests share one Redis read
//! ([`crate::cache`]); the `x-tally-cache` header says `hit` or `miss`.

use crate::answer::cached_json;
use crate::auth::ReadAccess;
use crate::stream_token::{StreamAccess, StreamParams};
use crate::{AppState, QueryError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_common::http::{Path, Query};
use tally_schemas::live::{window_start, WindowSnapshot, WINDOW_MS};
use tally_schemas::sketch::UniqueSketch;

/// Windows in 5 minutes.
const FIVE_MINUTES: usize = 60;
/// Windows in 30 minutes.
const THIRTY_MINUTES: usize = 360;

/// Query string of `/live`.
#[derive(Debug, Deserialize)]
pub struct LiveParams {
    /// Number of windows (default 12 = one minute).
    pub windows: Option<String>,
    /// Conversion: the first event name.
    pub from_event: Option<String>,
    /// Conversion: the second event name.
    pub to_event: Option<String>,
}

/// One window in a `/live` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveWindow {
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// `open`, `closing` (late events may still arrive) or `final`.
    pub state: &'static str,
    /// Events.
    pub events: u64,
    /// Estimated distinct users.
    pub unique_users: u64,
    /// Estimated sessions active in the window.
    pub active_sessions: u64,
    /// Events per name.
    pub by_name: BTreeMap<String, u64>,
}

/// Conversion between two event names over the answer's windows.
#[derive(Debug, Serialize)]
pub struct Conversion {
    /// First event name.
    pub from_event: String,
    /// Second event name.
    pub to_event: String,
    /// Events named `from_event`.
    pub from_events: u64,
    /// Events named `to_event`.
    pub to_events: u64,
    /// `to_events / from_events` (null when there were none).
    pub rate: Option<f64>,
}

/// `/live` answer.
#[derive(Debug, Serialize)]
pub struct LiveResponse {
    /// App.
    pub app_id: String,
    /// Window length, ms.
    pub window_ms: i64,
    /// When the numbers were read, epoch ms.
    pub as_of_ms: i64,
    /// Windows, oldest first; the last is still open.
    pub windows: Vec<LiveWindow>,
    /// Events over all windows.
    pub total_events: u64,
    /// Distinct users over all windows (sketches merged).
    pub unique_users: u64,
    /// Distinct sessions active over all windows (sketches merged).
    pub active_sessions: u64,
    /// Distinct users over the last 5 minutes.
    pub active_users_5m: u64,
    /// Distinct users over the last 30 minutes.
    pub active_users_30m: u64,
    /// Present when `from_event` and `to_event` were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
}

/// Window starts of the last `n` windows ending with the one containing `now_ms`.
pub fn last_windows(now_ms: i64, n: usize) -> Vec<i64> {
    let current = window_start(now_ms);
    (0..n as i64)
        .rev()
        .map(|i| current - i * WINDOW_MS)
        .collect()
}

/// The state of the window starting at `start_ms` at `now_ms`.
pub fn window_state(start_ms: i64, now_ms: i64, lateness_ms: i64) -> &'static str {
    let end = start_ms + WINDOW_MS;
    if now_ms < end {
        "open"
    } else if now_ms < end + lateness_ms {
        "closing"
    } else {
        "final"
    }
}

fn bad_name(name: &'static str) -> QueryError {
    QueryError::InvalidParameter(name, "an event name of 1..=200 characters".into())
}

/// `GET /api/v1/analytics/{app_id}/live`.
pub async fn live(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(params): Query<LiveParams>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Response, QueryError> {
    let started = Instant::now();
    let result = match access {
        Ok(ReadAccess { app_id }) => live_inner(&state, app_id, params).await,
        Err(refused) => Err(refused),
    };
    let status = result
        .as_ref()
        .map_or_else(QueryError::status, |_| axum::http::StatusCode::OK);
    state
        .metrics
        .observe("live", status, started.elapsed().as_secs_f64());
    let (body, shared) = result?;
    Ok(cached_json(&body, shared))
}

async fn live_inner(
    state: &AppState,
    app_id: String,
    params: LiveParams,
) -> Result<(Arc<Bytes>, bool), QueryError> {
    let n = match params.windows.as_deref() {
        None => 12,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=state.config.max_windows).contains(n))
            .ok_or_else(|| {
                QueryError::InvalidParameter(
                    "windows",
                    format!("must be an integer within 1..={}", state.config.max_windows),
                )
            })?,
    };
    let conversion = match (params.from_event, params.to_event) {
        (None, None) => None,
        (Some(from), Some(to)) => {
            let ok = |name: &str| (1..=200).contains(&name.chars().count());
            if !ok(&from) {
                return Err(bad_name("from_event"));
            }
            if !ok(&to) {
                return Err(bad_name("to_event"));
            }
            Some((from, to))
        }
        _ => {
            return Err(QueryError::InvalidParameter(
                "to_event",
                "from_event and to_event go together".into(),
            ))
        }
    };
    // Identical polls within the cache time share one Redis read (seed 001).
    let now_ms = state.clock.now_ms();
    let key = format!(
        "{}{app_id}|{n}|{conversion:?}|{}",
        crate::serving::cache_tag(&state.config.clickhouse.database),
        window_start(now_ms)
    );
    state
        .live_cache
        .get_or_compute(&key, || async {
            let answer = live_answer(state, app_id, n, conversion, now_ms).await?;
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .map_err(|e| QueryError::Internal(e.to_string()))
        })
        .await
}

/// Reads the last `max(n, 30 min)` windows of `app_id` as of `now_ms` and sums them.
async fn live_answer(
    state: &AppState,
    app_id: String,
    n: usize,
    conversion: Option<(String, String)>,
    now_ms: i64,
) -> Result<LiveResponse, QueryError> {
    let read = n.max(THIRTY_MINUTES);
    let snapshots = state
        .live
        .windows(&app_id, &last_windows(now_ms, read))
        .await?;
    let merged = |windows: &[WindowSnapshot], pick: fn(&WindowSnapshot) -> &UniqueSketch| {
        let mut all = UniqueSketch::new();
        for window in windows {
            all.merge(pick(window))
                .map_err(|e| QueryError::Internal(e.to_string()))?;
        }
        Ok::<u64, QueryError>(all.estimate())
    };
    let recent = |count: usize| &snapshots[snapshots.len().saturating_sub(count)..];
    let active_users_5m = merged(recent(FIVE_MINUTES), |w| &w.users)?;
    let active_users_30m = merged(recent(THIRTY_MINUTES), |w| &w.users)?;
    let asked = recent(n);
    let unique_users = merged(asked, |w| &w.users)?;
    let active_sessions = merged(asked, |w| &w.sessions)?;
    let windows: Vec<LiveWindow> = asked
        .iter()
        .map(|snapshot| LiveWindow {
            start_ms: snapshot.start_ms,
            state: window_state(snapshot.start_ms, now_ms, state.config.allowed_lateness_ms),
            events: snapshot.total,
            unique_users: snapshot.users.clone().estimate(),
            active_sessions: snapshot.sessions.clone().estimate(),
            by_name: snapshot.by_name.clone(),
        })
        .collect();
    let conversion = conversion.map(|(from_event, to_event)| {
        let count = |name: &str| -> u64 {
            windows
                .iter()
                .map(|w| w.by_name.get(name).copied().unwrap_or(0))
                .sum()
        };
        let (from_events, to_events) = (count(&from_event), count(&to_event));
        Conversion {
            rate: (from_events > 0).then(|| to_events as f64 / from_events as f64),
            from_event,
            to_event,
            from_events,
            to_events,
        }
    });
    Ok(LiveResponse {
        total_events: windows.iter().map(|w| w.events).sum(),
        unique_users,
        active_sessions,
        active_users_5m,
        active_users_30m,
        conversion,
        app_id,
        window_ms: WINDOW_MS,
        as_of_ms: now_ms,
        windows,
    })
}

/// `GET /api/v1/analytics/{app_id}/live/stream` (Server-Sent Events;
/// read key in the header, or `?token=` from `POST …/live/token`).
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(_): Query<StreamParams>,
    StreamAccess { app_id }: StreamAccess,
) -> Result<Response, QueryError> {
    let events = futures::stream::unfold(
        (state, app_id, Pushed::default()),
        |(state, app_id, mut pushed)| async move {
            tokio::time::sleep(STREAM_TICK).await;
            let now_ms = state.clock.now_ms();
            // The open window and the one before it. Each look answers from
            // the pair served at that moment (a long-lived stream follows a
            // replay switch; one push never mixes two pairs).
            let answer = crate::serving::within(
                crate::serving::pair(&state).await,
                live_answer(&state, app_id.clone(), 2, None, now_ms),
            )
            .await;
            let out: Vec<_> = match answer {
                Ok(answer) => pushed
                    .next(&answer.windows, now_ms)
                    .into_iter()
                    .map(|(kind, window)| sse(kind, &window))
                    .collect(),
                Err(err) => vec![Ok(Event::default().event("error").data(err.reason()))],
            };
            Some((futures::stream::iter(out), (state, app_id, pushed)))
        },
    );
    use futures::StreamExt;
    // Any origin may read it: the credential is the token (or header) itself,
    // never a cookie, so a page on the customer's own domain can subscribe.
    Ok((
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Sse::new(events.flatten()).keep_alive(KeepAlive::default()),
    )
        .into_response())
}

/// How often the push stream looks at the live windows.
pub const STREAM_TICK: Duration = Duration::from_millis(250);
/// Longest time between two `partial` pushes (a heartbeat with numbers).
pub const PARTIAL_EVERY_MS: i64 = 1_000;

/// What one push stream has sent, deciding what the next look sends.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The open window as last pushed, and when.
    partial: Option<(LiveWindow, i64)>,
    /// The last closed window pushed.
    closed: Option<LiveWindow>,
}

impl Pushed {
    /// The pushes for a look at `windows` (the last closed window, then the
    /// open one) at `now_ms`: a closed window when it has just closed or
    /// changed since pushed (late events), the open one when it changed or
    /// [`PARTIAL_EVERY_MS`] passed.
    pub fn next(&mut self, windows: &[LiveWindow], now_ms: i64) -> Vec<(&'static str, LiveWindow)> {
        let mut out = Vec::new();
        let (previous, open) = match windows {
            [.., previous, open] => (Some(previous), open),
            [open] => (None, open),
            [] => return out,
        };
        let was_open = self.partial.as_ref().map(|(w, _)| w.start_ms);
        if let Some(previous) = previous {
            let just_closed = was_open == Some(previous.start_ms);
            let changed = self
                .closed
                .as_ref()
                .is_some_and(|c| c.start_ms == previous.start_ms && c != previous);
            if just_closed || changed {
                out.push(("window", previous.clone()));
                self.closed = Some(previous.clone());
            }
        }
        let due = match &self.partial {
            Some((pushed, at)) => pushed != open || now_ms - at >= PARTIAL_EVERY_MS,
            None => true,
        };
        if due {
            out.push(("partial", open.clone()));
            self.partial = Some((open.clone(), now_ms));
        }
        out
    }
}

fn sse(kind: &str, window: &LiveWindow) -> Result<Event, std::convert::Infallible> {
    Ok(Event::default()
        .event(kind)
        .json_data(window)
        .unwrap_or_else(|_| Event::default().event("error").data("serialize")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_windows_end_with_the_open_window() {
        assert_eq!(last_windows(12_345, 3), vec![0, 5_000, 10_000]);
        assert_eq!(last_windows(10_000, 1), vec![10_000]);
    }

    fn window(start_ms: i64, events: u64) -> LiveWindow {
        LiveWindow {
            start_ms,
            state: "open",
            events,
            unique_users: events.min(3),
            active_sessions: 1,
            by_name: BTreeMap::from([("page_view".to_owned(), events)]),
        }
    }

    fn kinds(pushes: &[(&'static str, LiveWindow)]) -> Vec<(&'static str, i64, u64)> {
        pushes
            .iter()
            .map(|(k, w)| (*k, w.start_ms, w.events))
            .collect()
    }

    #[test]
    fn the_stream_pushes_changes_at_once_and_a_heartbeat_every_second() {
        let mut pushed = Pushed::default();
        let at = 100_000;
        assert_eq!(
            kinds(&pushed.next(&[window(95_000, 4), window(100_000, 1)], at)),
            [("partial", 100_000, 1)]
        );
        // Nothing changed within the second: nothing sent.
        assert!(pushed
            .next(&[window(95_000, 4), window(100_000, 1)], at + 250)
            .is_empty());
        // A new event in the open window: pushed on the next look.
        assert_eq!(
            kinds(&pushed.next(&[window(95_000, 4), window(100_000, 2)], at + 500)),
            [("partial", 100_000, 2)]
        );
        // A second without change: the heartbeat.
        assert_eq!(
            kinds(&pushed.next(&[window(95_000, 4), window(100_000, 2)], at + 1_500)),
            [("partial", 100_000, 2)]
        );
        // The open window closed: its final numbers, then the new open one.
        let closed = [window(100_000, 3), window(105_000, 0)];
        assert_eq!(
            kinds(&pushed.next(&closed, 105_100)),
            [("window", 100_000, 3), ("partial", 105_000, 0)]
        );
        assert!(pushed.next(&closed, 105_350).is_empty());
        // A late event changes the closed window: sent again.
        let late = [window(100_000, 4), window(105_000, 0)];
        assert_eq!(
            kinds(&pushed.next(&late, 105_600)),
            [("window", 100_000, 4)]
        );
        assert!(pushed.next(&late, 105_850).is_empty());
        assert!(pushed.next(&[], 106_000).is_empty());
    }

    #[test]
    fn windows_close_then_become_final_after_the_lateness() {
        assert_eq!(window_state(0, 4_999, 30_000), "open");
        assert_eq!(window_state(0, 5_000, 30_000), "closing");
        assert_eq!(window_state(0, 34_999, 30_000), "closing");
        assert_eq!(window_state(0, 35_000, 30_000), "final");
    }
}
