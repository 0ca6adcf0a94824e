//! HTTP handlers of the ClickHouse-backed read API and their parameter parsing
//! (the live endpoints are in [`crate::live`]).
//!
//! * `GET /api/v1/analytics/{app_id}/count?from=&to=` — events with
//!   `from <= timestamp < to` (RFC 3339 or epoch ms; default: the last 24 h).

use crate::adhoc::{self, split_unit, AdhocRequest};
use crate::auth::authorize;
use crate::stores::{EventStore, LiveSource};
use crate::{funnel, retention};
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tally_common::http::{Path, Query};
use tally_schemas::event::TimestampInput;

const DAY_MS: i64 = 86_400_000;
/// The latest time a range may name: 9999-12-31T23:59:59.999Z (RFC 3339's last year).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

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

/// Parses a range bound: epoch ms digits or RFC 3339, from 1970 to the end of 9999.
pub fn parse_time(name: &'static str, text: &str) -> Result<i64, QueryError> {
    let input = match text.parse::<i64>() {
        Ok(ms) => TimestampInput::EpochMillis(ms),
        Err(_) => TimestampInput::Text(text.to_owned()),
    };
    input
        .to_epoch_millis()
        .filter(|ms| (0..=MAX_TIME_MS).contains(ms))
        .ok_or_else(|| {
            QueryError::InvalidParameter(
                name,
                "expected RFC 3339 or epoch milliseconds, from 1970 to 9999".into(),
            )
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

/// `/query` answer.
#[derive(Debug, Serialize)]
pub struct QueryResponse {
    /// App.
    pub app_id: String,
    /// Range start, epoch ms (inclusive).
    pub from_ms: i64,
    /// Range end, epoch ms (exclusive).
    pub to_ms: i64,
    /// One object per group: dimensions by name, metrics by name.
    pub results: Vec<serde_json::Map<String, serde_json::Value>>,
    /// More groups existed than `limit`.
    pub truncated: bool,
    /// The share of users sampled (counts are scaled estimates); absent when exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled: Option<f64>,
    /// Time ClickHouse took (the first time this answer was computed).
    pub query_time_ms: u64,
}

/// Resolves `range`: `"7d"`, `"24h"`, `"90d"` (ending at the current 5-second
/// boundary, so identical polls share a cache entry) or `{"from", "to"}`.
pub fn resolve_range(
    range: &serde_json::Value,
    now_ms: i64,
    max_days: i64,
) -> Result<(i64, i64), QueryError> {
    let bad = |why: &str| QueryError::InvalidQuery("range", why.to_owned());
    let (from, to) = match range {
        serde_json::Value::String(text) => {
            let (number, unit) = split_unit(text);
            let n: i64 = number.parse().map_err(|_| bad("like \"7d\" or \"24h\""))?;
            let unit_ms = match unit {
                "d" => DAY_MS,
                "h" => 3_600_000,
                _ => return Err(bad("like \"7d\" or \"24h\"")),
            };
            if n <= 0 {
                return Err(bad("must be positive"));
            }
            let to = now_ms.div_euclid(5_000) * 5_000 + 5_000;
            (to.saturating_sub(n.saturating_mul(unit_ms)), to)
        }
        serde_json::Value::Object(bounds) => {
            let bound = |name: &'static str| -> Result<i64, QueryError> {
                match bounds.get(name) {
                    Some(serde_json::Value::String(t)) => parse_time(name, t),
                    Some(serde_json::Value::Number(n)) => parse_time(name, &n.to_string()),
                    _ => Err(bad("from and to: RFC 3339 or epoch ms")),
                }
            };
            (bound("from")?, bound("to")?)
        }
        _ => return Err(bad("\"7d\" or {\"from\": …, \"to\": …}")),
    };
    if from < 0 || to <= from {
        return Err(bad("from must be before to"));
    }
    if to - from > max_days * DAY_MS {
        return Err(bad(&format!("at most {max_days} days")));
    }
    Ok((from, to))
}

/// `POST|GET /api/v1/analytics/{app_id}/query` (JSON body, see [`crate::adhoc`]).
pub async fn query<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, QueryError> {
    respond(
        &state,
        "query",
        query_inner(&state, app_id, &headers, &body),
    )
    .await
}

async fn query_inner<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    app_id: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let request: AdhocRequest = open(state, &app_id, headers, body).await?;
    let range = resolve_range(
        &request.range,
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    let mut sql = adhoc::build(&app_id, &request, range)?;
    sql.max_groups = Some(state.config.max_groups);
    let limit = request.limit.unwrap_or(100);
    cached_rows(state, "query", &app_id, &sql, |rows, query_time_ms| {
        let truncated = rows.len() > limit;
        let scale = request.sample.filter(|s| *s < 1.0).map(|s| 1.0 / s);
        let results = rows
            .into_iter()
            .take(limit)
            .map(|row| scale_sampled(name_columns(row, &sql), &sql, scale))
            .collect();
        let answer = QueryResponse {
            app_id: app_id.clone(),
            from_ms: range.0,
            to_ms: range.1,
            results,
            truncated,
            sampled: request.sample.filter(|s| *s < 1.0),
            query_time_ms,
        };
        to_bytes(&answer)
    })
    .await
}

/// `POST /api/v1/analytics/{app_id}/funnel` (JSON body, see [`crate::funnel`]).
pub async fn funnel<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, QueryError> {
    respond(
        &state,
        "funnel",
        funnel_inner(&state, app_id, &headers, &body),
    )
    .await
}

async fn funnel_inner<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    app_id: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let request: funnel::FunnelRequest = open(state, &app_id, headers, body).await?;
    let range = resolve_range(
        &request.range,
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    let sql = funnel::build(&app_id, &request, range)?;
    let names = funnel::step_names(&request);
    cached_rows(state, "funnel", &app_id, &sql, |rows, query_time_ms| {
            let mut answer = serde_json::json!({
                "app_id": app_id,
                "from_ms": range.0,
                "to_ms": range.1,
                "steps": names,
            });
            if request.breakdown.is_some() {
                let groups: Vec<serde_json::Value> = rows
                    .iter()
                    .take(1_000)
                    .map(|row| serde_json::json!({"value": row.get("b"), "funnel": funnel::steps_of(row, &names)}))
                    .collect();
                answer["breakdown"] = serde_json::Value::Array(groups);
                answer["truncated"] = serde_json::Value::Bool(rows.len() > 1_000);
            } else {
                let empty = serde_json::Map::new();
                let row = rows.first().unwrap_or(&empty);
                answer["funnel"] = serde_json::json!(funnel::steps_of(row, &names));
            }
            answer["query_time_ms"] = serde_json::json!(query_time_ms);
            to_bytes(&answer)
        })
        .await
}

/// `POST /api/v1/analytics/{app_id}/retention` (JSON body, see [`crate::retention`]).
pub async fn retention<L: LiveSource, E: EventStore>(
    State(state): State<Arc<AppState<L, E>>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, QueryError> {
    respond(
        &state,
        "retention",
        retention_inner(&state, app_id, &headers, &body),
    )
    .await
}

async fn retention_inner<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    app_id: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let request: retention::RetentionRequest = open(state, &app_id, headers, body).await?;
    let range = resolve_range(
        &request.range,
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    let (sql, periods) = retention::build(&app_id, &request, range)?;
    cached_rows(state, "retention", &app_id, &sql, |rows, query_time_ms| {
            let cohorts: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    let size = row.get("size").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
                    let retained: Vec<u64> = (0..=periods)
                        .map(|k| row.get(&format!("p{k}")).and_then(serde_json::Value::as_f64).unwrap_or(0.0) as u64)
                        .collect();
                    let rates: Vec<f64> = retained
                        .iter()
                        .map(|n| if size > 0.0 { *n as f64 / size } else { 0.0 })
                        .collect();
                    serde_json::json!({"cohort": row.get("cohort"), "size": size as u64, "retained": retained, "rates": rates})
                })
                .collect();
            let answer = serde_json::json!({
                "app_id": app_id,
                "from_ms": range.0,
                "to_ms": range.1,
                "period": request.period.as_deref().unwrap_or("day"),
                "periods": periods,
                "cohorts": cohorts,
                "query_time_ms": query_time_ms,
            });
            to_bytes(&answer)
        })
        .await
}

/// One result row of a statement (`JSONEachRow`).
pub(crate) type Row = serde_json::Map<String, serde_json::Value>;

/// Answers `sql` through the answer cache: identical statements of one app
/// within the cache time share one ClickHouse query (seed 002); `shape` turns
/// the rows and the ms ClickHouse took into the serialized answer.
pub(crate) async fn cached_rows<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    kind: &str,
    app_id: &str,
    sql: &adhoc::Sql,
    shape: impl FnOnce(Vec<Row>, u64) -> Result<axum::body::Bytes, QueryError>,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let key = format!("{kind}|{app_id}|{}|{:?}", sql.text, sql.binds);
    state
        .query_cache
        .get_or_compute(&key, || async {
            let started = Instant::now();
            let rows = state.events.rows(sql).await?;
            shape(
                rows,
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            )
        })
        .await
}

/// Checks the app id and the read key, then parses the JSON body.
pub(crate) async fn open<L: LiveSource, E: EventStore, T: serde::de::DeserializeOwned>(
    state: &AppState<L, E>,
    app_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, QueryError> {
    if !valid_app_id(app_id) {
        return Err(QueryError::InvalidAppId);
    }
    authorize(&state.keys, headers, app_id).await?;
    serde_json::from_slice(body).map_err(|err| QueryError::InvalidQuery("body", err.to_string()))
}

/// Serializes an answer for the cache.
pub(crate) fn to_bytes(answer: &impl Serialize) -> Result<axum::body::Bytes, QueryError> {
    serde_json::to_vec(answer)
        .map(axum::body::Bytes::from)
        .map_err(|e| QueryError::Startup(e.to_string()))
}

/// Runs a cached endpoint: records its latency and status, answers with
/// [`cached_json`].
pub(crate) async fn respond<L: LiveSource, E: EventStore>(
    state: &AppState<L, E>,
    endpoint: &'static str,
    answer: impl std::future::Future<Output = Result<(Arc<axum::body::Bytes>, bool), QueryError>>,
) -> Result<axum::response::Response, QueryError> {
    let started = Instant::now();
    let result = answer.await;
    let status = result
        .as_ref()
        .map_or_else(QueryError::status, |_| axum::http::StatusCode::OK);
    state
        .metrics
        .observe(endpoint, status, started.elapsed().as_secs_f64());
    let (answer, shared) = result?;
    Ok(cached_json(&answer, shared))
}

/// A cached JSON answer with its `x-tally-cache` header.
pub(crate) fn cached_json(answer: &axum::body::Bytes, shared: bool) -> axum::response::Response {
    let cache = if shared { "hit" } else { "miss" };
    axum::response::IntoResponse::into_response((
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::HeaderName::from_static("x-tally-cache"), cache),
        ],
        answer.clone(),
    ))
}

/// Scales the count metrics of a sampled row by `scale` (1/share).
fn scale_sampled(
    mut row: serde_json::Map<String, serde_json::Value>,
    sql: &adhoc::Sql,
    scale: Option<f64>,
) -> serde_json::Map<String, serde_json::Value> {
    let Some(scale) = scale else {
        return row;
    };
    for name in sql.metrics.iter().filter(|m| adhoc::scales_with_sample(m)) {
        if let Some(value) = row.get(name).and_then(serde_json::Value::as_f64) {
            row.insert(name.clone(), serde_json::json!((value * scale).round()));
        }
    }
    row
}

/// Renames `d0…`/`m0…` to the dimension and metric names of `sql`.
pub(crate) fn name_columns(
    mut row: serde_json::Map<String, serde_json::Value>,
    sql: &adhoc::Sql,
) -> serde_json::Map<String, serde_json::Value> {
    let mut named = serde_json::Map::new();
    for (i, name) in sql.dimensions.iter().enumerate() {
        named.insert(
            name.clone(),
            row.remove(&format!("d{i}")).unwrap_or_default(),
        );
    }
    for (i, name) in sql.metrics.iter().enumerate() {
        named.insert(
            name.clone(),
            row.remove(&format!("m{i}")).unwrap_or_default(),
        );
    }
    named
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
