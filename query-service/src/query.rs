//! The ad-hoc query endpoint (`/query`, answered through `crate::api`'s
//! [`Statement`] path) and its statement: event metrics from `events`
//! ([`adhoc`]), session metrics from `sessions` ([`session_metrics`]), or both
//! side by side in one statement ([`crate::sql::side_by_side`]); with
//! `"compare": "previous"`, the period of the same length before the range
//! alongside, in the same statement ([`crate::sql::with_previous`]).

use crate::adhoc::{self, AdhocRequest};
use crate::answer::{name_columns, to_bytes, Row};
use crate::api::{Ran, Statement};
use crate::fields::Fields;
use crate::session_metrics;
use crate::sql::{bucket_names, invalid, side_by_side, with_previous, Invalid, Sql};
use crate::{Config, QueryError};
use axum::body::Bytes;
use serde::Serialize;
use serde_json::Value;

/// The period of the same length just before `[from, to)`.
pub fn previous_range((from, to): (i64, i64)) -> (i64, i64) {
    (from - (to - from), from)
}

/// The statement of `request`, with the previous period alongside when asked.
pub fn statement(app_id: &str, request: &AdhocRequest, range: (i64, i64)) -> Result<Sql, Invalid> {
    if !matches!(request.source.as_deref(), None | Some("auto" | "raw")) {
        return Err(invalid(
            "source",
            "auto (derived tables where they answer, raw rows for the rest) or raw",
        ));
    }
    let current = period_statement(app_id, request, range)?;
    match request.compare.as_deref() {
        None => Ok(current),
        Some("previous") => {
            let previous = period_statement(app_id, request, previous_range(range))?;
            Ok(with_previous(current, previous))
        }
        Some(_) => Err(invalid(
            "compare",
            "\"previous\" (the period of the same length before the range)",
        )),
    }
}

/// Metrics with their positions in the request.
type Slots<'a> = Vec<(usize, &'a adhoc::Metric)>;

/// The statement of an ad-hoc request: event metrics from events ([`adhoc`]),
/// session metrics from sessions ([`session_metrics`]), and both side by side
/// when the request asks for both — then every dimension and filter must be
/// one both tables have (time buckets, the session's fields).
fn period_statement(
    app_id: &str,
    request: &AdhocRequest,
    range: (i64, i64),
) -> Result<Sql, Invalid> {
    let metrics = request.metric_list()?;
    let (sessions, events): (Slots<'_>, Slots<'_>) = metrics
        .iter()
        .copied()
        .enumerate()
        .partition(|(_, m)| session_metrics::is_session_metric(m));
    let limit = adhoc::check_limits(request)?;
    if sessions.is_empty() {
        return adhoc::build(app_id, request, &metrics, range);
    }
    if events.is_empty() {
        return session_metrics::build(app_id, request, &metrics, range);
    }
    let both = |why: Invalid| {
        invalid(
            why.0,
            format!("event and session metrics together group and filter by what both have (time buckets and the session's fields): {}", why.1),
        )
    };
    let (event_slots, event_metrics): (Vec<usize>, Vec<&adhoc::Metric>) =
        events.into_iter().unzip();
    let (session_slots, session_metrics_list): (Vec<usize>, Vec<&adhoc::Metric>) =
        sessions.into_iter().unzip();
    let event_side = adhoc::select(app_id, request, &event_metrics, range)?;
    let session_side =
        session_metrics::select(app_id, request, &session_metrics_list, range).map_err(both)?;
    let mut names = vec![String::new(); metrics.len()];
    for (slot, (_, name)) in event_slots.iter().zip(&event_side.metrics) {
        names[*slot] = name.clone();
    }
    for (slot, (_, name)) in session_slots.iter().zip(&session_side.metrics) {
        names[*slot] = name.clone();
    }
    Ok(side_by_side(
        vec![(event_side, event_slots), (session_side, session_slots)],
        names,
        limit,
    ))
}

/// The previous period of a `/query` answer.
#[derive(Debug, Serialize)]
pub struct Previous {
    /// Its start, epoch ms (inclusive).
    pub from_ms: i64,
    /// Its end (the range's start), epoch ms (exclusive).
    pub to_ms: i64,
    /// One object per group, as in `results`.
    pub results: Vec<serde_json::Map<String, serde_json::Value>>,
    /// More groups existed than `limit`.
    pub truncated: bool,
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
    /// The period of the same length before the range (with `"compare": "previous"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The share of users sampled (counts are scaled estimates); absent when exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled: Option<f64>,
    /// `"report+raw"` when answered from the refresher's derived tables and
    /// raw rows (`crate::derived`); absent when from raw rows alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// With `source`: how many days of the range raw rows answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_days: Option<usize>,
    /// With `source`: when the refresher run the derived tables come from started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_as_of_ms: Option<i64>,
    /// Time ClickHouse took (the first time this answer was computed).
    pub query_time_ms: u64,
}

/// How a `/query` answer was made: `None` from raw rows, else from derived
/// tables with this many raw days, as of this refresher run.
pub type Derived = Option<(usize, Option<i64>)>;

impl Statement for AdhocRequest {
    const ENDPOINT: &'static str = "query";
    type Plan = Derived;

    fn range(&self) -> &Value {
        &self.range
    }

    fn time_zone_slot(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tz)
    }

    fn fields(&self) -> Fields<'_> {
        let sessions = self.metric_list().is_ok_and(|metrics| {
            metrics
                .iter()
                .any(|m| session_metrics::is_session_metric(m))
        });
        let mut names: Vec<&str> = self.filters.iter().map(|f| f.property.as_str()).collect();
        names.extend(self.group_by.dimensions());
        for metric in self.metric.iter().chain(&self.metrics) {
            if let adhoc::Metric::Aggregate { sum, avg } = metric {
                names.extend(sum.iter().chain(avg).map(String::as_str));
            }
        }
        let columns = if sessions {
            session_metrics::SESSION_COLUMNS
        } else {
            crate::sql::COLUMNS
        };
        Fields {
            names,
            builtins: columns.iter().copied().chain(bucket_names()).collect(),
            properties: !sessions,
        }
    }

    fn build(
        &self,
        app_id: &str,
        range: (i64, i64),
        config: &Config,
    ) -> Result<(Sql, Derived), QueryError> {
        let mut sql = statement(app_id, self, range)?;
        sql.max_groups = Some(config.max_groups);
        Ok((sql, None))
    }

    fn derivable(&self) -> bool {
        crate::derived::covered(self).is_some()
    }

    fn build_derived(
        &self,
        app_id: &str,
        range: (i64, i64),
        config: &Config,
        (raw_days, view): &crate::freshness::Fresh,
    ) -> Result<Option<(Sql, Derived)>, QueryError> {
        let Some(covered) = crate::derived::covered(self) else {
            return Ok(None);
        };
        let Some(mut sql) = crate::derived::build(app_id, &covered, range, raw_days)? else {
            return Ok(None);
        };
        sql.max_groups = Some(config.max_groups);
        let within = crate::derived::raw_days_in(range, raw_days);
        Ok(Some((sql, Some((within, view.run_started_ms)))))
    }

    fn shape(
        &self,
        ran: Ran<'_>,
        derived: Derived,
        rows: Vec<Row>,
        query_time_ms: u64,
    ) -> Result<Bytes, QueryError> {
        let (sql, range) = (ran.sql, ran.range);
        let limit = self.limit.unwrap_or(100);
        let scale = self.sample.filter(|s| *s < 1.0).map(|s| 1.0 / s);
        let compared = self.compare.is_some();
        // With a comparison, rows carry their period (`p`: 0 now, 1 before).
        let (mut current, mut previous) = (Vec::new(), Vec::new());
        for mut row in rows {
            let before = compared && row.remove("p").and_then(|p| p.as_f64()) == Some(1.0);
            let row = scale_sampled(name_columns(row, sql), sql, scale);
            if before {
                previous.push(row);
            } else {
                current.push(row);
            }
        }
        let cut = |mut rows: Vec<Row>| {
            let truncated = rows.len() > limit;
            rows.truncate(limit);
            (rows, truncated)
        };
        let (results, truncated) = cut(current);
        let previous = compared.then(|| {
            let (results, truncated) = cut(previous);
            let (from_ms, to_ms) = crate::query::previous_range(range);
            Previous {
                from_ms,
                to_ms,
                results,
                truncated,
            }
        });
        let answer = QueryResponse {
            app_id: ran.app_id.to_owned(),
            from_ms: range.0,
            to_ms: range.1,
            results,
            truncated,
            previous,
            sampled: self.sample.filter(|s| *s < 1.0),
            source: derived.map(|_| crate::reports::Source::Refreshed.name()),
            raw_days: derived.map(|(days, _)| days),
            derived_as_of_ms: derived.and_then(|(_, run)| run),
            query_time_ms,
        };
        to_bytes(&answer)
    }
}

/// Scales the count metrics of a sampled row by `scale` (1/share).
fn scale_sampled(mut row: Row, sql: &Sql, scale: Option<f64>) -> Row {
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
