//! Ad-hoc queries (`/query`, seed 002): the request model, its validation,
//! and the statement of event metrics (`events`, `unique_users`, sums and
//! averages of properties) over the `events` table.
//!
//! Session metrics are built by [`crate::session_metrics`]; the caller picks
//! one builder by [`AdhocRequest::metric_list`] (see `crate::api`). The SQL
//! building blocks — and the guarantee that nothing the client sends is
//! spliced into SQL — are [`crate::sql`]'s. Statements run on ClickHouse 18.16
//! and current releases alike (golden tests in `tests/golden/`).

use crate::sql::{
    events_source, field, invalid, number_of, reads_traits, request_conditions, time_bucket, Bind,
    Invalid, Scope, Select, Sql, COLUMNS, MAX_FILTERS, MAX_GROUP_BY, MAX_ROWS, PERSON,
};
pub use crate::sql::{Filter, Segment};
use serde::Deserialize;
use serde_json::Value;

/// A metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Metric {
    /// `events` or `unique_users`.
    Named(String),
    /// `{"sum": "property"}` or `{"avg": "property"}`.
    Aggregate {
        /// Sum of a numeric property.
        sum: Option<String>,
        /// Average of a numeric property.
        avg: Option<String>,
    },
}

/// `group_by`: one dimension or a list.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(untagged)]
pub enum GroupBy {
    /// None.
    #[default]
    None,
    /// One.
    One(String),
    /// Up to [`MAX_GROUP_BY`].
    Many(Vec<String>),
}

/// The `/query` request body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdhocRequest {
    /// One metric…
    #[serde(default)]
    pub metric: Option<Metric>,
    /// …or several.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Conditions, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Dimensions.
    #[serde(default)]
    pub group_by: GroupBy,
    /// `"7d"`, `"24h"`, `"90d"` … or `{"from": …, "to": …}` (RFC 3339 or epoch ms).
    pub range: Value,
    /// Only users who did an event.
    #[serde(default)]
    pub segment: Option<Segment>,
    /// Count bot traffic too (default: excluded).
    #[serde(default)]
    pub include_bots: bool,
    /// Most rows (default 100, at most [`MAX_ROWS`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Time zone of day, week and month buckets (an IANA name; default: the app's).
    #[serde(default)]
    pub tz: Option<String>,
    /// Answer from this share of users (0 < s ≤ 1, 4 decimals): users are
    /// chosen by a hash of their id, so each is in or out as a whole; counts
    /// are scaled back by 1/s and become estimates (`"sampled"` in the answer).
    #[serde(default)]
    pub sample: Option<f64>,
    /// `"previous"`: the period of the same length just before the range,
    /// answered alongside in the same statement (`"previous"` in the answer).
    #[serde(default)]
    pub compare: Option<String>,
    /// `"auto"` (default): the report refresher's derived tables answer what
    /// they cover, with raw rows for the rest (`crate::derived`); `"raw"`:
    /// raw rows only.
    #[serde(default)]
    pub source: Option<String>,
}

/// Whether a metric named `name` is a count that sampling scales (averages and rates are not).
pub fn scales_with_sample(name: &str) -> bool {
    matches!(name, "events" | "unique_users" | "sessions") || name.starts_with("sum_")
}

fn metric(m: &Metric) -> Result<(String, String, Vec<Bind>), Invalid> {
    match m {
        Metric::Named(name) if name == "events" => {
            Ok(("toFloat64(count())".into(), name.clone(), Vec::new()))
        }
        Metric::Named(name) if name == "unique_users" => Ok((
            format!("toFloat64(uniqExact({PERSON}))"),
            name.clone(),
            Vec::new(),
        )),
        Metric::Aggregate {
            sum: Some(p),
            avg: None,
        }
        | Metric::Aggregate {
            sum: None,
            avg: Some(p),
        } => {
            let (expr, binds) = field(p)?;
            let (number, binds) = number_of(&expr, &binds);
            // Only events whose value is a number count: no value is not 0.
            let (sql, label) = if matches!(m, Metric::Aggregate { sum: Some(_), .. }) {
                (format!("ifNull(sum({number}), 0)"), "sum")
            } else {
                (format!("avg({number})"), "avg")
            };
            Ok((sql, format!("{label}_{p}"), binds))
        }
        other => Err(invalid(
            "metric",
            format!(
                "unknown metric {other:?} (events, unique_users, {{\"sum\": p}}, {{\"avg\": p}})"
            ),
        )),
    }
}

impl GroupBy {
    /// The dimension names, in order.
    pub fn dimensions(&self) -> Vec<&str> {
        match self {
            GroupBy::None => Vec::new(),
            GroupBy::One(one) => vec![one.as_str()],
            GroupBy::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

impl AdhocRequest {
    /// The metrics asked for (`metric`, then `metrics`; at most 10, at least one).
    pub fn metric_list(&self) -> Result<Vec<&Metric>, Invalid> {
        let mut metrics: Vec<&Metric> = self.metric.iter().chain(&self.metrics).collect();
        if metrics.is_empty() {
            return Err(invalid("metric", "give metric or metrics"));
        }
        metrics.truncate(10);
        Ok(metrics)
    }

    /// The time zone of the request's calendar periods (UTC unless set).
    pub fn time_zone(&self) -> &str {
        tally_schemas::time_zone::or_default(self.tz.as_deref())
    }

    /// What every statement of this request filters on besides app and range.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            include_bots: self.include_bots,
            sample: self.sample,
            filters: &self.filters,
            segment: self.segment.as_ref(),
        }
    }
}

fn dimension(name: &str, tz: &str) -> Result<(String, Vec<Bind>), Invalid> {
    if let Some(bucket) = time_bucket(name, "timestamp", tz) {
        return Ok(bucket);
    }
    field(name).map_err(|_| invalid("group_by", format!("unknown dimension {name:?}")))
}

/// The request's limits: dimensions, filters and rows (checked for any table).
pub fn check_limits(request: &AdhocRequest) -> Result<usize, Invalid> {
    if request.group_by.dimensions().len() > MAX_GROUP_BY {
        return Err(invalid(
            "group_by",
            format!("at most {MAX_GROUP_BY} dimensions"),
        ));
    }
    if request.filters.len() > MAX_FILTERS {
        return Err(invalid("filters", format!("at most {MAX_FILTERS} filters")));
    }
    let limit = request.limit.unwrap_or(100);
    if !(1..=MAX_ROWS).contains(&limit) {
        return Err(invalid("limit", format!("1..={MAX_ROWS}")));
    }
    Ok(limit)
}

/// The event-metrics select of `metrics` (from [`AdhocRequest::metric_list`])
/// for `request` on `app_id` over `[from_ms, to_ms)`.
pub fn select(
    app_id: &str,
    request: &AdhocRequest,
    metrics: &[&Metric],
    (from_ms, to_ms): (i64, i64),
) -> Result<Select, Invalid> {
    check_limits(request)?;
    let mut select = Select {
        from: "events".into(),
        ..Select::default()
    };
    for dim in request.group_by.dimensions() {
        let (expr, binds) = dimension(dim, request.time_zone())?;
        select.dims.push((expr, dim.to_owned()));
        select.dim_binds.extend(binds);
    }
    for m in metrics {
        let (expr, label, binds) = metric(m)?;
        select.metrics.push((expr, label));
        select.metric_binds.extend(binds);
    }
    let (conditions, guard) = crate::sql::app_and_range(app_id, (from_ms, to_ms));
    (select.conditions, select.condition_binds) = (conditions, guard);
    request_conditions(
        request.scope(),
        (app_id, (from_ms, to_ms)),
        (COLUMNS, true),
        (&mut select.conditions, &mut select.condition_binds),
    )?;
    // Persons: counted (unique users, a segment's users) or read (traits).
    let texts = || {
        let dims = select.dims.iter().map(|(expr, _)| expr.as_str());
        dims.chain(select.metrics.iter().map(|(expr, _)| expr.as_str()))
            .chain(select.conditions.iter().map(String::as_str))
    };
    if texts().any(|text| text.contains(PERSON) || reads_traits([text])) {
        (select.from, select.from_binds) = events_source(app_id, texts());
    }
    Ok(select)
}

/// Builds the event-metrics statement of `metrics` for `request` on `app_id`
/// over `[from_ms, to_ms)` (one select, answered alone).
pub fn build(
    app_id: &str,
    request: &AdhocRequest,
    metrics: &[&Metric],
    range: (i64, i64),
) -> Result<Sql, Invalid> {
    let limit = check_limits(request)?;
    Ok(select(app_id, request, metrics, range)?.statement(limit))
}

/// Example requests, name → body: the golden statements' inputs, also run
/// against ClickHouse by `testkit/tests/adhoc.rs`.
pub fn examples() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    vec![
        ("events_total", json!({"metric": "events", "range": "7d"})),
        (
            "unique_users_by_device_us",
            json!({"metric": "unique_users", "filters": [{"property": "country", "op": "eq", "value": "US"}],
                   "group_by": "device_type", "range": "7d"}),
        ),
        (
            "three_dimensions_and_property_filters",
            json!({"metrics": ["events", "unique_users", {"sum": "amount"}], "group_by": ["day", "browser", "properties.plan"],
                   "filters": [{"property": "plan", "op": "in", "value": ["pro", "team"]},
                               {"property": "amount", "op": "gte", "value": 10},
                               {"property": "url_path", "op": "contains", "value": "/checkout"},
                               {"property": "coupon", "op": "is_not_set"}],
                   "range": "7d", "limit": 50}),
        ),
        (
            "sessions_by_day_and_entry_page",
            json!({"metrics": ["sessions", "bounce_rate", "session_duration"], "group_by": ["day", "entry_page"],
                   "filters": [{"property": "country", "op": "neq", "value": "XX"}], "range": "7d"}),
        ),
        (
            "numbers_nulls_and_namespaces",
            json!({"metrics": [{"avg": "price"}, {"sum": "properties.price"}], "group_by": ["$country", "properties.region", "$day"],
                   "filters": [{"property": "price", "op": "eq", "value": 20},
                               {"property": "price", "op": "in", "value": [20, 35.5]},
                               {"property": "price", "op": "gt", "value": "5.5"},
                               {"property": "coupon", "op": "eq", "value": null},
                               {"property": "$browser", "op": "neq", "value": null}],
                   "range": "7d"}),
        ),
        (
            "weeks_and_months_in_new_york",
            json!({"metrics": ["events", "unique_users"], "group_by": ["week", "$month", "hour"],
                   "tz": "America/New_York", "range": "90d"}),
        ),
        (
            "events_and_sessions_side_by_side",
            json!({"metrics": ["events", "sessions", "unique_users", "bounce_rate"], "group_by": ["day", "country"],
                   "filters": [{"property": "$country", "op": "neq", "value": "XX"}], "tz": "Europe/Berlin", "range": "7d"}),
        ),
        (
            "daily_trend_with_the_previous_period",
            json!({"metrics": ["events", "sessions"], "group_by": "day", "compare": "previous", "range": "7d"}),
        ),
        (
            "persons_by_trait",
            json!({"metrics": ["unique_users", "events"], "group_by": ["person.plan", "day"],
                   "filters": [{"property": "person.seats", "op": "is_set"},
                               {"property": "person.plan", "op": "in", "value": ["pro", "team"]}],
                   "range": "30d"}),
        ),
        (
            "segment_with_bots",
            json!({"metric": {"avg": "duration"}, "group_by": "hour", "segment": {"did": "purchase"},
                   "include_bots": true, "range": "7d"}),
        ),
    ]
}

#[cfg(test)]
#[path = "adhoc_tests.rs"]
mod tests;
