//! HTTP handlers of the ClickHouse-backed read API and their parameter parsing
//! (the live endpoints are in [`crate::live`]).
//!
//! * `GET /api/v1/analytics/{app_id}/count?from=&to=` — events with
//!   `from <= timestamp < to` (RFC 3339 or epoch ms; default: the last 24 h).

use crate::auth::authorize;
use crate::stores::{EventStore, LiveSource};
use crate::{AppState, QueryError};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tally_schemas::event::TimestampInput;

const DAY_MS: i64 = 86_400_000;

/// Whether `app_id` has the allowed form `[A-Za-z0-9_-]{1,64}`.
pub fn valid_app_id(app_id: &str) -> bool {
    (1..=64).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
