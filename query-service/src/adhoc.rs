//! Ad-hoc queries (`/query`, seed 002): the request model, its validation
//! against an allowlist, and the SQL it becomes.
//!
//! Nothing the client sends is spliced into SQL: columns and functions come
//! from fixed tables in this file, and every value — the app id, the range,
//! filter values, property names — is a bound parameter ([`Sql::binds`],
//! escaped by the ClickHouse client). The app guard (`app_id = ?`) is the
//! first condition of every statement. Statements run on ClickHouse 18.16 and
//! current releases alike (golden tests in `tests/golden/`).

use crate::stores::utc_date;
use serde::Deserialize;
use serde_json::Value;

/// Most dimensions in `group_by`.
pub const MAX_GROUP_BY: usize = 3;
/// Most filters.
pub const MAX_FILTERS: usize = 20;
/// Most values of an `in`/`not_in` filter.
pub const MAX_IN_VALUES: usize = 1_000;
/// Most result rows.
pub const MAX_ROWS: usize = 10_000;

/// Enriched columns a query may filter and group on.
const COLUMNS: &[&str] = &[
    "name",
    "country",
    "region",
    "city",
    "browser",
    "os",
    "device_type",
    "url_host",
    "url_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// Time buckets for `group_by` and their 18.16-compatible functions.
const BUCKETS: &[(&str, &str)] = &[
    ("minute", "toString(toStartOfMinute(timestamp))"),
    ("hour", "toString(toStartOfHour(timestamp))"),
    ("day", "toString(toDate(timestamp))"),
    ("week", "toString(toMonday(timestamp))"),
    ("month", "toString(toStartOfMonth(timestamp))"),
];

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

/// A filter on a column or a property.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Column (see the allowlist) or property name (`properties.x` or `x`).
    pub property: String,
    /// `eq`, `neq`, `in`, `not_in`, `contains`, `not_contains`, `gt`, `gte`,
    /// `lt`, `lte`, `is_set`, `is_not_set`.
    pub op: String,
    /// Value (a list for `in`/`not_in`; absent for `is_set`/`is_not_set`).
    #[serde(default)]
    pub value: Option<Value>,
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

/// A user segment: only users who did `did` in the range.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Event name the users did.
    pub did: String,
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
    /// Answer from this share of users (0 < s ≤ 1, 4 decimals): users are
    /// chosen by a hash of their id, so each is in or out as a whole; counts
    /// are scaled back by 1/s and become estimates (`"sampled"` in the answer).
    #[serde(default)]
    pub sample: Option<f64>,
}

/// The sampling condition of `request` (bound: users whose id hashes below the share).
pub(crate) fn sample_condition(request: &AdhocRequest) -> Result<Option<(String, Bind)>, Invalid> {
    let Some(share) = request.sample else {
        return Ok(None);
    };
    let per_10k = share * 10_000.0;
    if !(share > 0.0 && share <= 1.0) || (per_10k - per_10k.round()).abs() > 1e-6 {
        return Err(invalid(
            "sample",
            "a share in (0, 1] with at most 4 decimals",
        ));
    }
    if per_10k.round() >= 10_000.0 {
        return Ok(None);
    }
    Ok(Some((
        "cityHash64(distinct_id) % 10000 < ?".to_owned(),
        Bind::Int(per_10k.round() as i64),
    )))
}

/// Whether a metric named `name` is a count that sampling scales (averages and rates are not).
pub fn scales_with_sample(name: &str) -> bool {
    matches!(name, "events" | "unique_users" | "sessions") || name.starts_with("sum_")
}

/// Splits `"30m"` into `("30", "m")`: the last character is the unit (safe
/// for any UTF-8 input).
pub fn split_unit(text: &str) -> (&str, &str) {
    match text.char_indices().last() {
        Some((at, _)) => text.split_at(at),
        None => ("", ""),
    }
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Number.
    Float(f64),
    /// List of texts.
    List(Vec<String>),
}

/// A statement with `?` placeholders and their values, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    /// Statement text (no client input inside).
    pub text: String,
    /// Values of the placeholders.
    pub binds: Vec<Bind>,
    /// Output names of the dimensions (`d0`, `d1`… in the statement).
    pub dimensions: Vec<String>,
    /// Output names of the metrics (`m0`, `m1`… in the statement).
    pub metrics: Vec<String>,
    /// Most distinct GROUP BY keys ClickHouse may build (per aggregation
    /// thread); more → 400 `too_many_groups`. Only for statements whose
    /// GROUP BY is the answer's dimensions (not per-user grouping).
    pub max_groups: Option<u64>,
}

/// Why a query was refused (400 with this text).
pub type Invalid = (&'static str, String);

pub(crate) fn invalid(field: &'static str, why: impl Into<String>) -> Invalid {
    (field, why.into())
}

/// The value expression of a column or property, and its binds.
pub(crate) fn field(name: &str) -> Result<(String, Vec<Bind>), Invalid> {
    field_in(name, COLUMNS, true)
}

/// A column of `columns`, else (when `properties`) a property lookup.
fn field_in(
    name: &str,
    columns: &[&str],
    properties: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    if columns.contains(&name) {
        return Ok((name.to_owned(), Vec::new()));
    }
    let property = name.strip_prefix("properties.").unwrap_or(name);
    let ok = properties
        && (1..=128).contains(&property.len())
        && property
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
    if !ok {
        return Err(invalid(
            "property",
            format!("unknown column or invalid property name {name:?}"),
        ));
    }
    Ok((
        "prop_values[indexOf(prop_keys, ?)]".to_owned(),
        vec![Bind::Text(property.to_owned())],
    ))
}

fn text_value(value: &Value) -> Result<String, Invalid> {
    match value {
        Value::String(s) if s.chars().count() <= 1_000 => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(
            "value",
            "a string (at most 1000 characters), number or boolean",
        )),
    }
}

/// Smallest magnitude a number filter compares with as itself; below it, 0.
pub const MIN_FILTER_MAGNITUDE: f64 = 1e-290;

/// `number` as bound in a comparison. The value is written in decimal, and
/// ClickHouse 18.16 refuses number literals longer than about 320 characters
/// and subnormal ones; below [`MIN_FILTER_MAGNITUDE`] (≤ 309 characters)
/// numbers compare as 0.
pub(crate) fn comparable(number: f64) -> f64 {
    if number.abs() < MIN_FILTER_MAGNITUDE {
        0.0
    } else {
        number
    }
}

pub(crate) fn filter(f: &Filter) -> Result<(String, Vec<Bind>), Invalid> {
    filter_in(f, COLUMNS, true)
}

/// A filter on `columns` (and on properties when `properties`).
pub(crate) fn filter_in(
    f: &Filter,
    columns: &[&str],
    properties: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    let (expr, mut binds) = field_in(&f.property, columns, properties)?;
    let is_property = !binds.is_empty();
    let value = || {
        f.value
            .as_ref()
            .ok_or_else(|| invalid("value", format!("{} needs a value", f.op)))
    };
    let sql = match f.op.as_str() {
        "eq" | "neq" | "contains" | "not_contains" => {
            binds.push(Bind::Text(text_value(value()?)?));
            match f.op.as_str() {
                "eq" => format!("{expr} = ?"),
                "neq" => format!("{expr} != ?"),
                "contains" => format!("position({expr}, ?) > 0"),
                _ => format!("position({expr}, ?) = 0"),
            }
        }
        "in" | "not_in" => {
            let list = value()?
                .as_array()
                .filter(|l| (1..=MAX_IN_VALUES).contains(&l.len()))
                .ok_or_else(|| {
                    invalid(
                        "value",
                        format!("{} needs a list of 1..={MAX_IN_VALUES} values", f.op),
                    )
                })?;
            let texts = list.iter().map(text_value).collect::<Result<Vec<_>, _>>()?;
            // The list's placeholder comes first in the text.
            binds.insert(0, Bind::List(texts));
            let negate = if f.op == "in" { "" } else { "NOT " };
            format!("{negate}has(?, {expr})")
        }
        "gt" | "gte" | "lt" | "lte" => {
            let number = value()?
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid("value", format!("{} needs a finite number", f.op)))?;
            binds.push(Bind::Float(comparable(number)));
            let op = match f.op.as_str() {
                "gt" => ">",
                "gte" => ">=",
                "lt" => "<",
                _ => "<=",
            };
            format!("toFloat64OrZero({expr}) {op} ?")
        }
        "is_set" | "is_not_set" => {
            let set = f.op == "is_set";
            if is_property {
                let negate = if set { "" } else { "NOT " };
                format!("{negate}has(prop_keys, ?)")
            } else {
                binds.clear();
                format!("{expr} {} ''", if set { "!=" } else { "=" })
            }
        }
        other => return Err(invalid("op", format!("unknown operator {other:?}"))),
    };
    Ok((sql, binds))
}

fn metric(m: &Metric) -> Result<(String, String, Vec<Bind>), Invalid> {
    match m {
        Metric::Named(name) if name == "events" => {
            Ok(("toFloat64(count())".into(), name.clone(), Vec::new()))
        }
        Metric::Named(name) if name == "unique_users" => Ok((
            "toFloat64(uniqExact(distinct_id))".into(),
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
            let (func, label) = if matches!(m, Metric::Aggregate { sum: Some(_), .. }) {
                ("sum", "sum")
            } else {
                ("avg", "avg")
            };
            Ok((
                format!("{func}(toFloat64OrZero({expr}))"),
                format!("{label}_{p}"),
                binds,
            ))
        }
        other => Err(invalid(
            "metric",
            format!(
                "unknown metric {other:?} (events, unique_users, {{\"sum\": p}}, {{\"avg\": p}})"
            ),
        )),
    }
}

fn dimension(name: &str) -> Result<(String, Vec<Bind>), Invalid> {
    if let Some((_, func)) = BUCKETS.iter().find(|(bucket, _)| *bucket == name) {
        return Ok(((*func).to_owned(), Vec::new()));
    }
    field(name).map_err(|_| invalid("group_by", format!("unknown dimension {name:?}")))
}

/// The app guard and the time range: conditions and their binds (first in
/// every statement's `WHERE`).
pub(crate) fn app_and_range(
    app_id: &str,
    (from_ms, to_ms): (i64, i64),
) -> (Vec<String>, Vec<Bind>) {
    (
        vec![
            "app_id = ?".to_owned(),
            "event_date >= toDate(?)".to_owned(),
            "event_date <= toDate(?)".to_owned(),
            "ts_ms >= ?".to_owned(),
            "ts_ms < ?".to_owned(),
        ],
        vec![
            Bind::Text(app_id.to_owned()),
            Bind::Text(utc_date(from_ms)),
            Bind::Text(utc_date(to_ms)),
            Bind::Int(from_ms),
            Bind::Int(to_ms),
        ],
    )
}

/// The conditions every `/query` statement shares after its app and range
/// guard — bots, sampling, filters (on `columns`, and on properties when
/// `properties`), segment — appended in text order with their binds.
pub(crate) fn request_conditions(
    request: &AdhocRequest,
    (app_id, range): (&str, (i64, i64)),
    (columns, properties): (&[&str], bool),
    (conditions, binds): (&mut Vec<String>, &mut Vec<Bind>),
) -> Result<(), Invalid> {
    if !request.include_bots {
        conditions.push("is_bot = 0".into());
    }
    if let Some((condition, bind)) = sample_condition(request)? {
        conditions.push(condition);
        binds.push(bind);
    }
    for f in &request.filters {
        let (condition, b) = filter_in(f, columns, properties)?;
        conditions.push(condition);
        binds.extend(b);
    }
    if let Some(segment) = &request.segment {
        let (condition, b) = segment_condition(app_id, range, segment)?;
        conditions.push(condition);
        binds.extend(b);
    }
    Ok(())
}

/// "Users who did `segment.did` in the range": a condition on `distinct_id`.
pub(crate) fn segment_condition(
    app_id: &str,
    range: (i64, i64),
    segment: &Segment,
) -> Result<(String, Vec<Bind>), Invalid> {
    if !(1..=200).contains(&segment.did.chars().count()) {
        return Err(invalid("segment", "did: an event name"));
    }
    let (conditions, mut binds) = app_and_range(app_id, range);
    binds.push(Bind::Text(segment.did.clone()));
    Ok((
        format!(
            "distinct_id IN (SELECT distinct_id FROM events WHERE {} AND name = ?)",
            conditions.join(" AND ")
        ),
        binds,
    ))
}

/// Builds the statement for `request` on `app_id` over `[from_ms, to_ms)`.
pub fn build(
    app_id: &str,
    request: &AdhocRequest,
    (from_ms, to_ms): (i64, i64),
) -> Result<Sql, Invalid> {
    let mut metrics: Vec<&Metric> = request.metric.iter().chain(&request.metrics).collect();
    if metrics.is_empty() {
        return Err(invalid("metric", "give metric or metrics"));
    }
    metrics.truncate(10);
    if metrics
        .iter()
        .any(|m| crate::session_metrics::is_session_metric(m))
    {
        return crate::session_metrics::build(app_id, request, &metrics, (from_ms, to_ms));
    }
    let dims: Vec<&str> = match &request.group_by {
        GroupBy::None => Vec::new(),
        GroupBy::One(one) => vec![one.as_str()],
        GroupBy::Many(many) => many.iter().map(String::as_str).collect(),
    };
    if dims.len() > MAX_GROUP_BY {
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
    let (mut select, mut binds) = (Vec::new(), Vec::new());
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
        dimensions: Vec::new(),
        metrics: Vec::new(),
        max_groups: None,
    };
    for (i, dim) in dims.iter().enumerate() {
        let (expr, b) = dimension(dim)?;
        select.push(format!("{expr} AS d{i}"));
        binds.extend(b);
        sql.dimensions.push((*dim).to_owned());
    }
    for (i, m) in metrics.iter().enumerate() {
        let (expr, label, b) = metric(m)?;
        select.push(format!("{expr} AS m{i}"));
        binds.extend(b);
        sql.metrics.push(label);
    }
    let (mut conditions, guard) = app_and_range(app_id, (from_ms, to_ms));
    binds.extend(guard);
    request_conditions(
        request,
        (app_id, (from_ms, to_ms)),
        (COLUMNS, true),
        (&mut conditions, &mut binds),
    )?;
    let group = group_by_dimensions(dims.len());
    sql.text = format!(
        "SELECT {} FROM events WHERE {}{group} LIMIT {}",
        select.join(", "),
        conditions.join(" AND "),
        limit + 1
    );
    sql.binds = binds;
    Ok(sql)
}

/// ` GROUP BY d0, … ORDER BY m0 DESC` for `n` dimensions (nothing for none).
pub(crate) fn group_by_dimensions(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let names: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    format!(" GROUP BY {} ORDER BY m0 DESC", names.join(", "))
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
            "segment_with_bots",
            json!({"metric": {"avg": "duration"}, "group_by": "hour", "segment": {"did": "purchase"},
                   "include_bots": true, "range": "7d"}),
        ),
    ]
}

#[cfg(test)]
#[path = "adhoc_tests.rs"]
mod tests;
