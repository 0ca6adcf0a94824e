//! Session metrics of `/query` — `sessions`, `bounce_rate` (the share of
//! sessions with at least one page view that had exactly one, as Plausible
//! defines a bounce; null when no session viewed a page), `session_duration`
//! (mean, seconds) — answered from the aggregator's `sessions` table (latest
//! versions via `FINAL`, merged-away sessions left out), by session start.
//!
//! Dimensions and filters are limited to the session's own attributes
//! ([`SESSION_COLUMNS`]) and time buckets of its start. With event metrics in
//! the same request, both selects are answered side by side (the caller,
//! `crate::query::statement`), grouped by what both tables have. Values are bound
//! as everywhere ([`crate::sql`]), limits are the shared ones.

use crate::adhoc::{check_limits, AdhocRequest, Metric};
use crate::sql::{invalid, request_conditions, time_bucket, Bind, Invalid, Select, Sql};

/// Session attributes a session query may group and filter on (the list
/// lives in `tally_schemas::columns`, checked there against the `sessions` table).
pub const SESSION_COLUMNS: &[&str] = tally_schemas::columns::SESSION_QUERY_COLUMNS;

/// Metric names answered from sessions.
pub const SESSION_METRICS: &[&str] = &["sessions", "bounce_rate", "session_duration"];

/// Whether `metric` is a session metric.
pub fn is_session_metric(metric: &Metric) -> bool {
    matches!(metric, Metric::Named(name) if SESSION_METRICS.contains(&name.as_str()))
}

/// The session-metrics select of `metrics` (all session metrics, else
/// refused) for `request` on `app_id`, by session start in `[from_ms, to_ms)`.
pub fn select(
    app_id: &str,
    request: &AdhocRequest,
    metrics: &[&Metric],
    (from_ms, to_ms): (i64, i64),
) -> Result<Select, Invalid> {
    if !metrics.iter().all(|m| is_session_metric(m)) {
        return Err(invalid("metric", "not a session metric"));
    }
    check_limits(request)?;
    let mut select = Select {
        from: "sessions FINAL".into(),
        ..Select::default()
    };
    for dim in request.group_by.dimensions() {
        let own = dim.strip_prefix('$').unwrap_or(dim);
        let (expr, binds) = match time_bucket(dim, "start", request.time_zone()) {
            Some(bucket) => bucket,
            None if SESSION_COLUMNS.contains(&own) => (own.to_owned(), Vec::new()),
            None => {
                return Err(invalid(
                    "group_by",
                    format!("sessions group by {SESSION_COLUMNS:?} or a time bucket"),
                ))
            }
        };
        select.dims.push((expr, dim.to_owned()));
        select.dim_binds.extend(binds);
    }
    for metric in metrics {
        let expr = match metric {
            Metric::Named(name) if name == "sessions" => "toFloat64(count())",
            // Plausible's bounce: a visit of exactly one page view, among visits
            // that viewed a page at all (NULL when none did).
            Metric::Named(name) if name == "bounce_rate" => {
                "if(countIf(page_views >= 1) = 0, NULL, countIf(page_views = 1) / countIf(page_views >= 1))"
            }
            Metric::Named(_) => "avg(duration_ms) / 1000",
            Metric::Aggregate { .. } => return Err(invalid("metric", "not a session metric")),
        };
        let Metric::Named(name) = metric else {
            return Err(invalid("metric", "not a session metric"));
        };
        select.metrics.push((expr.to_owned(), name.clone()));
    }
    select.conditions = vec![
        "app_id = ?".to_owned(),
        "dropped = 0".to_owned(),
        "start_ms >= ?".to_owned(),
        "start_ms < ?".to_owned(),
    ];
    select.condition_binds = vec![
        Bind::Text(app_id.to_owned()),
        Bind::Int(from_ms),
        Bind::Int(to_ms),
    ];
    request_conditions(
        request.scope(),
        (app_id, (from_ms, to_ms)),
        (SESSION_COLUMNS, false),
        (&mut select.conditions, &mut select.condition_binds),
    )?;
    Ok(select)
}

/// Builds the session-metrics statement of `metrics` (one select, answered alone).
pub fn build(
    app_id: &str,
    request: &AdhocRequest,
    metrics: &[&Metric],
    range: (i64, i64),
) -> Result<Sql, Invalid> {
    let limit = check_limits(request)?;
    Ok(select(app_id, request, metrics, range)?.statement(limit))
}
