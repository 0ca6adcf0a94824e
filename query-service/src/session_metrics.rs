//! Session metrics of `/query` — `sessions`, `bounce_rate` (the share of
//! sessions with at least one page view that had exactly one, as Plausible
//! defines a bounce; null when no session viewed a page), `session_duration`
//! (mean, seconds) — answered from the aggregator's `sessions` table (latest
//! versions via `FINAL`, merged-away sessions left out), by session start.
//!
//! Dimensions and filters are limited to the session's own attributes
//! ([`SESSION_COLUMNS`]) and time buckets of its start; session metrics cannot
//! be mixed with event metrics in one request (the caller picks this builder
//! when any metric [`is_session_metric`]). Values are bound as everywhere
//! ([`crate::sql`]), limits are the shared ones.

use crate::adhoc::{AdhocRequest, Metric};
use crate::sql::{
    group_by_dimensions, invalid, request_conditions, time_bucket, Bind, Invalid, Sql, MAX_FILTERS,
    MAX_GROUP_BY, MAX_ROWS,
};

/// Session attributes a session query may group and filter on (the list
/// lives in `tally_schemas::columns`, checked there against the `sessions` table).
pub const SESSION_COLUMNS: &[&str] = tally_schemas::columns::SESSION_QUERY_COLUMNS;

/// Metric names answered from sessions.
pub const SESSION_METRICS: &[&str] = &["sessions", "bounce_rate", "session_duration"];

/// Whether `metric` is a session metric.
pub fn is_session_metric(metric: &Metric) -> bool {
    matches!(metric, Metric::Named(name) if SESSION_METRICS.contains(&name.as_str()))
}

/// Builds the session-metrics statement of `metrics` (from
/// [`AdhocRequest::metric_list`]; all session metrics, else refused).
pub fn build(
    app_id: &str,
    request: &AdhocRequest,
    metrics: &[&Metric],
    (from_ms, to_ms): (i64, i64),
) -> Result<Sql, Invalid> {
    if !metrics.iter().all(|m| is_session_metric(m)) {
        return Err(invalid("metric", "session metrics (sessions, bounce_rate, session_duration) cannot be mixed with event metrics"));
    }
    let dims = request.group_by.dimensions();
    let limit = request.limit.unwrap_or(100);
    if dims.len() > MAX_GROUP_BY
        || !(1..=MAX_ROWS).contains(&limit)
        || request.filters.len() > MAX_FILTERS
    {
        return Err(invalid(
            "group_by",
            format!(
                "at most {MAX_GROUP_BY} dimensions, {MAX_FILTERS} filters, 1..={MAX_ROWS} rows"
            ),
        ));
    }
    let mut select = Vec::new();
    let mut dim_binds = Vec::new();
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
        dimensions: Vec::new(),
        metrics: Vec::new(),
        max_groups: None,
    };
    for (i, dim) in dims.iter().enumerate() {
        let (expr, b) = match time_bucket(dim, "start", request.time_zone()) {
            Some(bucket) => bucket,
            None if SESSION_COLUMNS.contains(&dim.strip_prefix('$').unwrap_or(dim)) => {
                (dim.strip_prefix('$').unwrap_or(dim).to_owned(), Vec::new())
            }
            None => {
                return Err(invalid(
                    "group_by",
                    format!("sessions group by {SESSION_COLUMNS:?} or a time bucket"),
                ))
            }
        };
        dim_binds.extend(b);
        select.push(format!("{expr} AS d{i}"));
        sql.dimensions.push((*dim).to_owned());
    }
    for (i, metric) in metrics.iter().enumerate() {
        let (expr, name) = match metric {
            Metric::Named(name) if name == "sessions" => ("toFloat64(count())", name),
            // Plausible's bounce: a visit of exactly one page view, among visits
            // that viewed a page at all (NULL when none did).
            Metric::Named(name) if name == "bounce_rate" => (
                "if(countIf(page_views >= 1) = 0, NULL, countIf(page_views = 1) / countIf(page_views >= 1))",
                name,
            ),
            Metric::Named(name) => ("avg(duration_ms) / 1000", name),
            Metric::Aggregate { .. } => return Err(invalid("metric", "not a session metric")),
        };
        select.push(format!("{expr} AS m{i}"));
        sql.metrics.push(name.clone());
    }
    let mut conditions = vec![
        "app_id = ?".to_owned(),
        "dropped = 0".to_owned(),
        "start_ms >= ?".to_owned(),
        "start_ms < ?".to_owned(),
    ];
    // The dimensions' binds (time zones) come first in the text.
    let mut binds = dim_binds;
    binds.extend([
        Bind::Text(app_id.to_owned()),
        Bind::Int(from_ms),
        Bind::Int(to_ms),
    ]);
    request_conditions(
        request.scope(),
        (app_id, (from_ms, to_ms)),
        (SESSION_COLUMNS, false),
        (&mut conditions, &mut binds),
    )?;
    let group = group_by_dimensions(dims.len());
    sql.text = format!(
        "SELECT {} FROM sessions FINAL WHERE {}{group} LIMIT {}",
        select.join(", "),
        conditions.join(" AND "),
        limit + 1
    );
    sql.binds = binds;
    Ok(sql)
}
