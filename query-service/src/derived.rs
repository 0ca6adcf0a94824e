//! `/query` from the report refresher's derived tables where they answer the
//! question exactly (issue 19: latency that stops growing with history).
//!
//! A request is *covered* ([`covered`]) when it asks about page views — a
//! filter `name eq "page_view"` — for `events` and/or `unique_users`, grouped
//! and filtered only by the page dimensions `report_pages_hourly` keeps
//! (`url_path`, `referrer_host`, `country`, `device_type`, `browser`; bots in
//! or out), without segment, sampling or comparison, and does not say
//! `"source": "raw"`. Such a request is answered ([`build`]) from
//!
//! * `report_pages_hourly` for the whole UTC hours of the range on days the
//!   refresher derived (see [`crate::freshness`]: a derived day holds every
//!   row of the day and its persons as they are now), and
//! * raw `events` rows for the rest: the partial first and last hour and the
//!   raw days, each piece a `SELECT` under its own app-and-range guard so
//!   ClickHouse prunes by partition and sort key (one `OR` of ranges is not
//!   pruned by 18.16),
//!
//! merged in one statement: counts add up, unique users merge as
//! `uniqExact` states of persons, so the answer equals the raw one. Every
//! instant of the range is in exactly one piece ([`pieces`], property-tested).
//! More than [`MAX_RAW_PIECES`] raw pieces (raw days scattered over the
//! range) and the request is answered from raw rows alone.

use crate::adhoc::{check_limits, AdhocRequest, Metric};
use crate::sql::{
    app_and_range, field_in, filter_in, person_join, Bind, Invalid, Sql, BUILTIN, PERSON,
};
use std::collections::BTreeSet;

pub use crate::range::DAY_MS;
pub use crate::reports::HOUR_MS;
/// The columns `report_pages_hourly` keeps (dimensions and filters).
pub const PAGE_COLUMNS: &[&str] = &[
    "url_path",
    "referrer_host",
    "country",
    "device_type",
    "browser",
];
/// `[from_ms, to_ms)`.
pub type Span = (i64, i64);
/// Most raw pieces a derived statement unions before raw rows answer alone.
pub const MAX_RAW_PIECES: usize = 16;

/// A metric the report table answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageMetric {
    /// Page views (`events` of `page_view`).
    Events,
    /// Persons with a page view (`unique_users`).
    Users,
}

/// A covered request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Covered<'a> {
    /// Group-by columns, in order.
    pub dims: Vec<&'static str>,
    /// Dimension names as the request gave them (answer keys).
    pub dim_names: Vec<String>,
    /// Metrics, in request order.
    pub metrics: Vec<PageMetric>,
    /// The filters besides `name eq page_view` (on [`PAGE_COLUMNS`]).
    pub filters: Vec<&'a crate::sql::Filter>,
    /// Bots counted too.
    pub include_bots: bool,
    /// Most rows.
    pub limit: usize,
}

fn page_column(name: &str) -> Option<&'static str> {
    let (column, binds) = field_in(name, PAGE_COLUMNS, false).ok()?;
    let column = PAGE_COLUMNS.iter().find(|c| **c == column)?;
    binds.is_empty().then_some(*column)
}

fn is_page_view_filter(filter: &crate::sql::Filter) -> bool {
    let name = filter
        .property
        .strip_prefix(BUILTIN)
        .unwrap_or(&filter.property);
    name == "name"
        && filter.op == "eq"
        && filter.value.as_ref().and_then(|v| v.as_str()) == Some("page_view")
}

/// The checked request when the derived tables can answer it (module doc).
pub fn covered(request: &AdhocRequest) -> Option<Covered<'_>> {
    if !matches!(request.source.as_deref(), None | Some("auto"))
        || request.segment.is_some()
        || request.sample.is_some()
        || request.compare.is_some()
    {
        return None;
    }
    let limit = check_limits(request).ok()?;
    let metrics = request
        .metric_list()
        .ok()?
        .into_iter()
        .map(|m| match m {
            Metric::Named(name) if name == "events" => Some(PageMetric::Events),
            Metric::Named(name) if name == "unique_users" => Some(PageMetric::Users),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let names = request.group_by.dimensions();
    let dims = names
        .iter()
        .map(|d| page_column(d))
        .collect::<Option<Vec<_>>>()?;
    let (page_views, filters): (Vec<_>, Vec<_>) =
        request.filters.iter().partition(|f| is_page_view_filter(f));
    if page_views.is_empty() || filters.iter().any(|f| page_column(&f.property).is_none()) {
        return None;
    }
    Some(Covered {
        dims,
        dim_names: names.into_iter().map(str::to_owned).collect(),
        metrics,
        filters,
        include_bots: request.include_bots,
        limit,
    })
}

/// The raw days (start ms, `YYYY-MM-DD`) that overlap `[first, last)`.
fn raw_days_within<'a>(
    (first, last): (i64, i64),
    raw_days: &'a BTreeSet<String>,
) -> impl Iterator<Item = (i64, String)> + 'a {
    let start = first.div_euclid(DAY_MS) * DAY_MS;
    (0..)
        .map(move |n| start + n * DAY_MS)
        .take_while(move |day| *day < last)
        .map(|day| (day, crate::sql::utc_date(day)))
        .filter(move |(_, date)| raw_days.contains(date))
}

/// How many raw days overlap `[from_ms, to_ms)` (reported with the answer).
pub fn raw_days_in((from_ms, to_ms): (i64, i64), raw_days: &BTreeSet<String>) -> usize {
    raw_days_within((from_ms, to_ms), raw_days).count()
}

/// Splits `[from_ms, to_ms)`: the whole UTC hours the report answers
/// (`None` when none; raw days inside are excluded by the statement) and the
/// raw pieces — partial first and last hours, raw days within the whole hours
/// — sorted and merged where they touch. Together they hold every instant of
/// the range once.
pub fn pieces(
    (from_ms, to_ms): (i64, i64),
    raw_days: &BTreeSet<String>,
) -> (Option<Span>, Vec<Span>) {
    if from_ms >= to_ms {
        return (None, Vec::new());
    }
    let first = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let first = if first < from_ms {
        first + HOUR_MS
    } else {
        first
    };
    let last = to_ms.div_euclid(HOUR_MS) * HOUR_MS;
    if first >= last {
        return (None, vec![(from_ms, to_ms)]);
    }
    let mut raw = Vec::new();
    if from_ms < first {
        raw.push((from_ms, first));
    }
    for (day, _) in raw_days_within((first, last), raw_days) {
        raw.push((day.max(first), (day + DAY_MS).min(last)));
    }
    if last < to_ms {
        raw.push((last, to_ms));
    }
    let mut merged: Vec<Span> = Vec::new();
    for piece in raw {
        match merged.last_mut() {
            Some(previous) if previous.1 == piece.0 => previous.1 = piece.1,
            _ => merged.push(piece),
        }
    }
    let raw_within: i64 = merged
        .iter()
        .map(|(a, b)| (*b).min(last) - (*a).max(first))
        .filter(|n| *n > 0)
        .sum();
    let report = (raw_within < last - first).then_some((first, last));
    (report, merged)
}

/// The derived statement of `request` over `range`, given the raw days, or
/// `None` when there would be more than [`MAX_RAW_PIECES`] raw pieces.
pub fn build(
    app_id: &str,
    request: &Covered<'_>,
    range: (i64, i64),
    raw_days: &BTreeSet<String>,
) -> Result<Option<Sql>, Invalid> {
    let (report, raw) = pieces(range, raw_days);
    if raw.len() > MAX_RAW_PIECES {
        return Ok(None);
    }
    let users = request.metrics.contains(&PageMetric::Users);
    let dims: Vec<String> = (0..request.dims.len()).map(|i| format!("d{i}")).collect();
    let dim_select: Vec<String> = request
        .dims
        .iter()
        .zip(&dims)
        .map(|(column, alias)| format!("{column} AS {alias}"))
        .collect();
    // Bots and the request's filters, the same text on both tables.
    let mut conditions = Vec::new();
    let mut condition_binds = Vec::new();
    if !request.include_bots {
        conditions.push("is_bot = 0".to_owned());
    }
    for f in &request.filters {
        let (condition, binds) = filter_in(f, PAGE_COLUMNS, false)?;
        conditions.push(condition);
        condition_binds.extend(binds);
    }
    let and_conditions: String = conditions.iter().map(|c| format!(" AND {c}")).collect();
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    if let Some((first, last)) = report {
        let mut select = dim_select.clone();
        select.push("page_views AS c".into());
        if users {
            select.push("visitors AS s".into());
        }
        binds.extend([
            Bind::Text(app_id.to_owned()),
            Bind::Int(first.div_euclid(1_000)),
            Bind::Int(last.div_euclid(1_000)),
        ]);
        binds.extend(condition_binds.iter().cloned());
        let days: Vec<String> = raw_days_within((first, last), raw_days)
            .map(|(_, day)| day)
            .collect();
        let excluded = if days.is_empty() {
            String::new()
        } else {
            binds.extend(days.iter().map(|d| Bind::Text(d.clone())));
            format!(
                " AND toDate(hour, 'UTC') NOT IN ({})",
                vec!["?"; days.len()].join(", ")
            )
        };
        parts.push(format!(
            "SELECT {} FROM report_pages_hourly FINAL WHERE app_id = ? AND hour >= toDateTime(?) \
             AND hour < toDateTime(?) AND page_views > 0{and_conditions}{excluded}",
            select.join(", ")
        ));
    }
    if !raw.is_empty() {
        let group = if dims.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", dims.join(", "))
        };
        let mut inner = Vec::new();
        for piece in &raw {
            let (guard, guard_binds) = app_and_range(app_id, *piece);
            binds.extend(guard_binds);
            binds.extend(condition_binds.iter().cloned());
            // Persons need the id; a count without dimensions needs a
            // column (a constant one cannot cross a Distributed table on 18.16).
            let mut select = dim_select.clone();
            if users {
                select.push("distinct_id".into());
            } else if select.is_empty() {
                select.push("app_id".into());
            }
            inner.push(format!(
                "SELECT {} FROM events WHERE {} AND name = 'page_view'{and_conditions}",
                select.join(", "),
                guard.join(" AND ")
            ));
        }
        let mut outer = dims.clone();
        outer.push("count() AS c".into());
        let source = if users {
            outer.push(format!("uniqExactState({PERSON}) AS s"));
            let (join, join_binds) = person_join(app_id, false);
            binds.extend(join_binds);
            format!("({}) AS r{join}", inner.join(" UNION ALL "))
        } else {
            format!("({}) AS r", inner.join(" UNION ALL "))
        };
        parts.push(format!("SELECT {} FROM {source}{group}", outer.join(", ")));
    }
    let mut select = dims.clone();
    let mut names = Vec::new();
    for (i, metric) in request.metrics.iter().enumerate() {
        let (expr, name) = match metric {
            PageMetric::Events => ("toFloat64(sum(c))", "events"),
            PageMetric::Users => ("toFloat64(uniqExactMerge(s))", "unique_users"),
        };
        select.push(format!("{expr} AS m{i}"));
        names.push(name.to_owned());
    }
    let group = if dims.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {d} ORDER BY m0 DESC, {d}", d = dims.join(", "))
    };
    Ok(Some(Sql {
        text: format!(
            "SELECT {} FROM ({}){group} LIMIT {}",
            select.join(", "),
            parts.join(" UNION ALL "),
            request.limit + 1
        ),
        binds,
        dimensions: request.dim_names.clone(),
        metrics: names,
        max_groups: None,
    }))
}

#[cfg(test)]
#[path = "derived_tests.rs"]
mod tests;
