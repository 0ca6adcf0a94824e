//! How the ClickHouse-backed endpoints answer: a statement's rows go through
//! the answer cache (identical statements of one app within the cache time
//! share one ClickHouse query, seed 002), are shaped into serialized JSON,
//! and are sent with an `x-tally-cache: hit|miss` header; every answer's
//! latency and status is recorded per endpoint.

use crate::sql::Sql;
use crate::{AppState, QueryError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// One result row of a statement (`JSONEachRow`).
pub(crate) type Row = serde_json::Map<String, serde_json::Value>;

/// Answers `sql` through the answer cache: identical statements of one app
/// within the cache time share one ClickHouse query (seed 002); `shape` turns
/// the rows and the ms ClickHouse took into the serialized answer.
pub(crate) async fn cached_rows(
    state: &AppState,
    kind: &str,
    app_id: &str,
    sql: &Sql,
    shape: impl FnOnce(Vec<Row>, u64) -> Result<axum::body::Bytes, QueryError>,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let key = format!(
        "{}{kind}|{app_id}|{}|{:?}",
        crate::serving::cache_tag(&state.config.clickhouse.database),
        sql.text,
        sql.binds
    );
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

/// Serializes an answer for the cache.
pub(crate) fn to_bytes(answer: &impl Serialize) -> Result<axum::body::Bytes, QueryError> {
    serde_json::to_vec(answer)
        .map(axum::body::Bytes::from)
        .map_err(|e| QueryError::Internal(e.to_string()))
}

/// Runs a cached endpoint: records its latency and status, answers with
/// [`cached_json`].
pub(crate) async fn respond(
    state: &AppState,
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

/// The first `limit` of `rows`, columns named after `sql`'s, and whether
/// there were more (statements ask for `limit + 1`).
pub(crate) fn first_rows(rows: Vec<Row>, sql: &Sql, limit: usize) -> (Vec<Row>, bool) {
    let truncated = rows.len() > limit;
    let results = rows
        .into_iter()
        .take(limit)
        .map(|row| name_columns(row, sql))
        .collect();
    (results, truncated)
}

/// Renames `d0…`/`m0…` to the dimension and metric names of `sql`.
pub(crate) fn name_columns(
    mut row: serde_json::Map<String, serde_json::Value>,
    sql: &Sql,
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
