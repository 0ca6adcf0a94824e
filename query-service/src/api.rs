//! HTTP handlers of the read API and their parameter parsing.
//!
//! * `GET /api/v1/analytics/{app_id}/live?windows=N` — the last N 5-second
//!   windows (the open one included), oldest first, with per-window counts,
//!   counts per name and unique users, plus totals with uniques merged across
//!   windows.
//! * `GET /api/v1/analytics/{app_id}/count?from=&to=` — events with
//!   `from <= timestamp < to` (RFC 3339 or epoch ms; default: the last 24 h).

use crate::auth::authorize;
use crate::stores::{EventStore, LiveSource};
use crate::{AppState, QueryError};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tally_schemas::event::TimestampInput;
use tally_schemas::live::{window_start, WINDOW_MS};
use tally_schemas::sketch::UniqueSketch;

const DAY_MS: i64 = 86_400_000;

/// Whether `app_id` has the allowed form `[A-Za-z0-9_-]{1,64}`.
pub fn valid_app_id(app_id: &str) -> bool {
    (1..=64).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Query string of `/live`.
#[derive(Debug, Deserialize)]
pub struct LiveParams {
    /// Number of windows (default 12 = one minute).
    pub windows: Option<String>,
}

/// One window in a `/live` answer.
#[derive(Debug, Serialize)]
pub struct LiveWindow {
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Events.
    pub events: u64,
    /// Estimated distinct users.
    pub unique_users: u64,
    /// Estimated sessions active in the window.
    pub active_sessions: u64,
    /// Events per name.
    pub by_name: BTreeMap<String, u64>,
}

/// `/live` answer.
#[derive(Debug, Serialize)]
pub struct LiveResponse {
    /// App.
    pub app_id: String,
    /// Window length, ms.
    pub window_ms: i64,
    /// Server time of the answer, epoch ms.
    pub now_ms: i64,
    /// Windows, oldest first; the last is still open.
    pub windows: Vec<LiveWindow>,
    /// Events over all windows.
    pub total_events: u64,
    /// Distinct users over all windows (sketches merged).
    pub unique_users: u64,
    /// Distinct sessions active over all windows (sketches merged).
    pub active_sessions: u64,
}

/// Window starts of the last `n` windows ending with the one containing `now_ms`.
pub fn last_windows(now_ms: i64, n: usize) -> Vec<i64> {
    let current = window_start(now_ms);
    (0..n as i64)
        .rev()
        .map(|i| current - i * WINDOW_MS)
        .collect()
}

/// `GET /api/v1/analytics/{app_id}/live`.
pub async fn live<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
    Path(app_id): Path<String>,
    Query(params): Query<LiveParams>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let started = Instant::now();
    let result = live_inner(&state, app_id, params, &headers).await;
    let status = result
        .as_ref()
        .map_or_else(QueryError::status, |_| axum::http::StatusCode::OK);
    state
        .metrics
        .observe("live", status, started.elapsed().as_secs_f64());
    let (body, shared) = result?;
    let cache = if shared { "hit" } else { "miss" };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (HeaderName::from_static("x-tally-cache"), cache),
        ],
        Bytes::clone(&body),
    )
        .into_response())
}

async fn live_inner<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    app_id: String,
    params: LiveParams,
    headers: &HeaderMap,
) -> Result<(Arc<Bytes>, bool), QueryError> {
    if !valid_app_id(&app_id) {
        return Err(QueryError::InvalidAppId);
    }
    authorize(&state.keys, headers, &app_id).await?;
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
    // Identical polls within the cache time share one Redis read (seed 001).
    let now_ms = state.clock.now_ms();
    let key = format!("{app_id}|{n}|{}", window_start(now_ms));
    state
        .live_cache
        .get_or_compute(&key, || async {
            let answer = live_answer(state, app_id, n, now_ms).await?;
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .map_err(|e| QueryError::Startup(e.to_string()))
        })
        .await
}

/// Reads and sums the last `n` windows of `app_id` as of `now_ms`.
async fn live_answer<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    app_id: String,
    n: usize,
    now_ms: i64,
) -> Result<LiveResponse, QueryError> {
    let snapshots = state
        .live
        .windows(&app_id, &last_windows(now_ms, n))
        .await?;
    let mut all_users = UniqueSketch::new();
    let mut all_sessions = UniqueSketch::new();
    let mut windows = Vec::with_capacity(snapshots.len());
    for mut snapshot in snapshots {
        all_users
            .merge(&snapshot.users)
            .and_then(|()| all_sessions.merge(&snapshot.sessions))
            .map_err(|e| QueryError::Startup(e.to_string()))?;
        windows.push(LiveWindow {
            start_ms: snapshot.start_ms,
            events: snapshot.total,
            unique_users: snapshot.users.estimate(),
            active_sessions: snapshot.sessions.estimate(),
            by_name: snapshot.by_name,
        });
    }
    Ok(LiveResponse {
        total_events: windows.iter().map(|w| w.events).sum(),
        unique_users: all_users.estimate(),
        active_sessions: all_sessions.estimate(),
        app_id,
        window_ms: WINDOW_MS,
        now_ms,
        windows,
    })
}

/// Query string of `/count`.
#[derive(Debug, Deserialize)]
pub struct CountParams {
    /// Range start (inclusive).
    pub from: Option<String>,
    /// Range end (exclusive).
    pub to: Option<String>,
}

/// `/count` answer.
#[derive(Debug, Serialize)]
pub struct CountResponse {
    /// App.
    pub app_id: String,
    /// Range start, epoch ms.
    pub from_ms: i64,
    /// Range end, epoch ms.
    pub to_ms: i64,
    /// Events in the range.
    pub count: u64,
    /// Time spent answering.
    pub query_time_ms: u64,
}

/// Parses a range bound: epoch ms digits or RFC 3339.
pub fn parse_time(name: &'static str, text: &str) -> Result<i64, QueryError> {
    let input = match text.parse::<i64>() {
        Ok(ms) => TimestampInput::EpochMillis(ms),
        Err(_) => TimestampInput::Text(text.to_owned()),
    };
    input
        .to_epoch_millis()
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| {
            QueryError::InvalidParameter(name, "expected RFC 3339 or epoch milliseconds".into())
        })
}

/// Resolves the range of a count request.
pub fn count_range(
    params: &CountParams,
    now_ms: i64,
    max_days: i64,
) -> Result<(i64, i64), QueryError> {
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or(now_ms);
    let from = params
        .from
        .as_deref()
        .map(|f| parse_time("from", f))
        .transpose()?
        .unwrap_or(to - DAY_MS);
    if from >= to {
        return Err(QueryError::InvalidParameter(
            "from",
            "must be before `to`".into(),
        ));
    }
    if to - from > max_days * DAY_MS {
        return Err(QueryError::InvalidParameter(
            "to",
            format!("range longer than {max_days} days"),
        ));
    }
    Ok((from, to))
}

/// `GET /api/v1/analytics/{app_id}/count`.
pub async fn count<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
    Path(app_id): Path<String>,
    Query(params): Query<CountParams>,
    headers: HeaderMap,
) -> Result<Json<CountResponse>, QueryError> {
    let started = Instant::now();
    let result = async {
        if !valid_app_id(&app_id) {
            return Err(QueryError::InvalidAppId);
        }
        authorize(&state.keys, &headers, &app_id).await?;
        let (from_ms, to_ms) =
            count_range(&params, state.clock.now_ms(), state.config.max_range_days)?;
        let count = state.events.count(&app_id, from_ms, to_ms).await?;
        Ok(CountResponse {
            app_id,
            from_ms,
            to_ms,
            count,
            query_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
    .await;
    let status = result
        .as_ref()
        .map_or_else(QueryError::status, |_| axum::http::StatusCode::OK);
    state
        .metrics
        .observe("count", status, started.elapsed().as_secs_f64());
    result.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_windows_end_with_the_open_window() {
        assert_eq!(last_windows(12_345, 3), vec![0, 5_000, 10_000]);
        assert_eq!(last_windows(10_000, 1), vec![10_000]);
    }

    #[test]
    fn count_range_defaults_and_limits() {
        let none = CountParams {
            from: None,
            to: None,
        };
        assert_eq!(
            count_range(&none, 10 * DAY_MS, 30).unwrap(),
            (9 * DAY_MS, 10 * DAY_MS)
        );
        let explicit = CountParams {
            from: Some("2023-11-14T22:13:20Z".into()),
            to: Some("1700000001000".into()),
        };
        assert_eq!(
            count_range(&explicit, 0, 30).unwrap(),
            (1_700_000_000_000, 1_700_000_001_000)
        );
        let reversed = CountParams {
            from: Some("2000".into()),
            to: Some("1000".into()),
        };
        assert!(count_range(&reversed, 0, 30).is_err());
        let too_long = CountParams {
            from: Some("0".into()),
            to: Some((31 * DAY_MS).to_string()),
        };
        assert!(count_range(&too_long, 0, 30).is_err());
        let garbage = CountParams {
            from: Some("yesterday".into()),
            to: None,
        };
        assert_eq!(
            count_range(&garbage, DAY_MS, 30).unwrap_err().reason(),
            "invalid_parameter"
        );
    }
}
