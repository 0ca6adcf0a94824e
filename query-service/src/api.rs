//! Handlers of the ClickHouse-backed read API (the live endpoints are in
//! [`crate::live`], reports in [`crate::reports`], saved items in
//! [`crate::saved`]; routes in [`crate::router`]):
//!
//! * `GET /api/v1/analytics/{app_id}/count?from=&to=` — events with
//!   `from <= timestamp < to` (see [`crate::range`]);
//! * `GET|POST …/query`, `POST …/funnel`, `POST …/retention` — a JSON body
//!   (or `?q=` with the same JSON; [`crate::adhoc`], [`crate::funnel`],
//!   [`crate::retention`]) answered on one path: read access → parse → range
//!   → statement → cached rows → shaped answer ([`Statement`],
//!   [`statement_endpoint`]); `/query` also as CSV (`?format=csv`, [`crate::csv`]).

use crate::answer::{cached_rows, respond, to_bytes, Row};
use crate::auth::ReadAccess;
use crate::fields::{with_members, Fields};
use crate::funnel::{self, FunnelRequest};
use crate::range::{count_range, resolve_range, time_zone, CountParams};
use crate::retention::{self, RetentionRequest};
use crate::sql::Sql;
use crate::{AppState, Config, QueryError};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tally_common::http::{Path, Query};

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

/// `GET /api/v1/analytics/{app_id}/count`.
pub async fn count(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(params): Query<CountParams>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Json<CountResponse>, QueryError> {
    let started = Instant::now();
    let result = async {
        let ReadAccess { app_id } = access?;
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

/// Where a statement ran: the app, the resolved range and the statement.
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    /// App.
    pub app_id: &'a str,
    /// `[from_ms, to_ms)`.
    pub range: (i64, i64),
    /// The statement whose rows are shaped.
    pub sql: &'a Sql,
}

/// A JSON-bodied endpoint answered by one statement through the answer cache.
pub trait Statement: DeserializeOwned {
    /// Endpoint name (metrics label and cache-key prefix).
    const ENDPOINT: &'static str;
    /// What shaping the answer needs besides the rows.
    type Plan;
    /// The request's `range`.
    fn range(&self) -> &Value;
    /// The field names the request uses and how bare names resolve.
    fn fields(&self) -> Fields<'_> {
        Fields::default()
    }
    /// The request's `tz`, for requests with calendar periods (the endpoint
    /// sets the zone it answers in: the request's, else the app's).
    fn time_zone_slot(&mut self) -> Option<&mut Option<String>> {
        None
    }
    /// The statement over `range` of `app_id`.
    fn build(
        &self,
        app_id: &str,
        range: (i64, i64),
        config: &Config,
    ) -> Result<(Sql, Self::Plan), QueryError>;
    /// Whether the report refresher's derived tables may answer this request
    /// (then [`Statement::build_derived`] is asked, with the raw days).
    fn derivable(&self) -> bool {
        false
    }
    /// The statement from derived tables and raw rows for `fresh`'s raw days
    /// (see [`crate::freshness`]), or `None` to answer from raw rows.
    fn build_derived(
        &self,
        _app_id: &str,
        _range: (i64, i64),
        _config: &Config,
        _fresh: &crate::freshness::Fresh,
    ) -> Result<Option<(Sql, Self::Plan)>, QueryError> {
        Ok(None)
    }
    /// The serialized answer from the rows and the ms ClickHouse took.
    fn shape(
        &self,
        ran: Ran<'_>,
        plan: Self::Plan,
        rows: Vec<Row>,
        query_time_ms: u64,
    ) -> Result<Bytes, QueryError>;
}

/// `POST /api/v1/analytics/{app_id}/{query|funnel|retention}` (and `GET
/// …/query`): read access, then the JSON body as `T`, answered by
/// [`Statement`] through the answer cache.
pub async fn statement_endpoint<T: Statement>(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(params): Query<StatementParams>,
    access: Result<ReadAccess, QueryError>,
    body: Bytes,
) -> Result<Response, QueryError> {
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") if T::ENDPOINT == "query" => true,
        Some(_) => {
            return Err(QueryError::InvalidParameter(
                "format",
                "json, or csv for /query".into(),
            ))
        }
    };
    let body = match params.q {
        Some(_) if !body.is_empty() => {
            return Err(QueryError::InvalidParameter(
                "q",
                "the request goes either in ?q= or in the body, not both".into(),
            ))
        }
        Some(q) => Bytes::from(q),
        None => body,
    };
    let response = respond(&state, T::ENDPOINT, answer::<T>(&state, access, &body)).await?;
    if !csv {
        return Ok(response);
    }
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let answer: Value =
        serde_json::from_slice(&bytes).map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(axum::response::IntoResponse::into_response((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"tally-query.csv\"",
            ),
        ],
        crate::csv::query_answer(&answer),
    )))
}

/// Query string of the JSON-bodied endpoints.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    /// The request as JSON, instead of a body (a link can carry it).
    pub q: Option<String>,
    /// `json` (default) or, for `/query`, `csv`.
    pub format: Option<String>,
}

async fn answer<T: Statement>(
    state: &AppState,
    access: Result<ReadAccess, QueryError>,
    body: &[u8],
) -> Result<(Arc<Bytes>, bool), QueryError> {
    let ReadAccess { app_id } = access?;
    let mut request: T = serde_json::from_slice(body)
        .map_err(|err| QueryError::InvalidQuery("body", err.to_string()))?;
    let zone = match request.time_zone_slot() {
        Some(slot) => {
            let zone = time_zone(state, &app_id, slot.as_deref()).await?;
            *slot = Some(zone.clone());
            Some(zone)
        }
        None => None,
    };
    let range = resolve_range(
        request.range(),
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    let fields = request.fields();
    let fresh = match request.derivable() {
        true => crate::freshness::raw_days(state, &app_id).await?,
        false => None,
    };
    let derived = match &fresh {
        Some(fresh) => request.build_derived(&app_id, range, &state.config, fresh)?,
        None => None,
    };
    // A refresher run rewrites derived tables without changing the statement:
    // the run is part of the cache key, so no answer outlives what it read.
    let (kind, (sql, plan)) = match derived {
        Some(built) => {
            let run = fresh.and_then(|(_, view)| view.run_started_ms);
            (format!("{}@{}", T::ENDPOINT, run.unwrap_or(0)), built)
        }
        None => (
            T::ENDPOINT.to_owned(),
            request.build(&app_id, range, &state.config)?,
        ),
    };
    fields.check(state, &app_id).await?;
    let (answer, hit) = cached_rows(state, &kind, &app_id, &sql, |rows, query_time_ms| {
        let ran = Ran {
            app_id: &app_id,
            range,
            sql: &sql,
        };
        request.shape(ran, plan, rows, query_time_ms)
    })
    .await?;
    // Not part of the cached answer: two requests may reach one statement by
    // different names (`country`, `$country`) or zones (a statement without
    // calendar periods is the same in every zone).
    let mut members = Vec::new();
    if let Some(zone) = zone {
        members.push(("time_zone", Value::from(zone).to_string()));
    }
    if !fields.names.is_empty() {
        members.push(("fields", fields.resolved_json()));
    }
    if members.is_empty() {
        return Ok((answer, hit));
    }
    Ok((Arc::new(with_members(&answer, &members)), hit))
}

impl Statement for FunnelRequest {
    const ENDPOINT: &'static str = "funnel";
    type Plan = Vec<String>;

    fn range(&self) -> &Value {
        &self.range
    }

    fn fields(&self) -> Fields<'_> {
        let mut names: Vec<&str> = self
            .steps
            .iter()
            .flat_map(|step| match step {
                funnel::Step::Filtered { filters, .. } => filters.as_slice(),
                funnel::Step::Name(_) => &[],
            })
            .map(|f| f.property.as_str())
            .collect();
        names.extend(self.breakdown.as_deref());
        Fields {
            names,
            builtins: crate::sql::COLUMNS
                .iter()
                .copied()
                .chain(crate::sql::bucket_names())
                .collect(),
            properties: true,
        }
    }

    fn time_zone_slot(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tz)
    }

    fn build(
        &self,
        app_id: &str,
        range: (i64, i64),
        _: &Config,
    ) -> Result<(Sql, Vec<String>), QueryError> {
        let sql = funnel::build(app_id, self, range)?;
        Ok((sql, funnel::step_names(self)))
    }

    fn shape(
        &self,
        ran: Ran<'_>,
        names: Vec<String>,
        rows: Vec<Row>,
        query_time_ms: u64,
    ) -> Result<Bytes, QueryError> {
        let mut answer = serde_json::json!({
            "app_id": ran.app_id,
            "from_ms": ran.range.0,
            "to_ms": ran.range.1,
            "steps": names,
        });
        if let Some(users) = &self.users {
            let limit = users.limit.unwrap_or(100);
            let ids: Vec<Value> = rows
                .iter()
                .take(limit)
                .map(|row| row.get("distinct_id").cloned().unwrap_or(Value::Null))
                .collect();
            answer["users"] = serde_json::json!({
                "step": users.step, "dropped": users.dropped, "offset": users.offset,
                "limit": limit, "distinct_ids": ids, "more": rows.len() > limit,
            });
            answer["query_time_ms"] = serde_json::json!(query_time_ms);
            return to_bytes(&answer);
        }
        if self.breakdown.is_some() {
            let groups: Vec<Value> = rows
                .iter()
                .take(1_000)
                .map(|row| serde_json::json!({"value": row.get("b"), "funnel": funnel::steps_of(row, &names)}))
                .collect();
            answer["breakdown"] = Value::Array(groups);
            answer["truncated"] = Value::Bool(rows.len() > 1_000);
        } else {
            let empty = serde_json::Map::new();
            let row = rows.first().unwrap_or(&empty);
            answer["funnel"] = serde_json::json!(funnel::steps_of(row, &names));
        }
        answer["query_time_ms"] = serde_json::json!(query_time_ms);
        to_bytes(&answer)
    }
}

impl Statement for RetentionRequest {
    const ENDPOINT: &'static str = "retention";
    type Plan = usize;

    fn range(&self) -> &Value {
        &self.range
    }

    fn time_zone_slot(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tz)
    }

    fn fields(&self) -> Fields<'_> {
        let mut names: Vec<&str> = self.filters.iter().map(|f| f.property.as_str()).collect();
        names.extend(self.breakdown.as_deref());
        Fields {
            names,
            builtins: crate::sql::COLUMNS.to_vec(),
            properties: true,
        }
    }

    fn build(
        &self,
        app_id: &str,
        range: (i64, i64),
        _: &Config,
    ) -> Result<(Sql, usize), QueryError> {
        Ok(retention::build(app_id, self, range)?)
    }

    fn shape(
        &self,
        ran: Ran<'_>,
        periods: usize,
        rows: Vec<Row>,
        query_time_ms: u64,
    ) -> Result<Bytes, QueryError> {
        let cohorts = retention::cohorts(&rows, periods, self.breakdown.is_some());
        let answer = serde_json::json!({
            "app_id": ran.app_id,
            "from_ms": ran.range.0,
            "to_ms": ran.range.1,
            "period": self.period.as_deref().unwrap_or("day"),
            "periods": periods,
            "cohorts": cohorts,
            "query_time_ms": query_time_ms,
        });
        to_bytes(&answer)
    }
}
