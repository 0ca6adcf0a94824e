//! The `retention` report (`GET …/reports/retention`): retention of active
//! persons — a person's cohort is the UTC day, Monday week or month
//! (`granularity`) of their first event in the range (`cohort=in_range`,
//! default) or of their first event ever, when that is in the range
//! (`cohort=first_time`); for period k = 0…`periods` (default 7), how many of
//! them sent an event in the cohort's period + k. Any event counts (bots
//! left out), so it is `/retention` with every event as both start and
//! return event: period 0 counts persons with a second event in their first
//! period. Optionally broken down by a current trait of the person
//! (`breakdown=person.plan`). Each of the answer's `results` is a cohort as
//! `/retention` gives it (`cohort`, `size`, `retained`, `rates`).
//!
//! It reads the refresher's `person_day_activity` for the days it covers and
//! raw rows for the others ([`crate::activity::rows`], the split of
//! [`crate::freshness`]), or raw rows alone (`source=raw`, or before the
//! refresher has run), so it is exact and fresh at once. Days are whole UTC
//! days: the range's first and last days count entirely. Checked against
//! brute force in `testkit/tests/refresher/fresh.rs`.

use crate::activity::{breakdown_trait, rows, trait_join, Split};
use crate::answer::{cached_rows, to_bytes};
use crate::retention::{cohort_label, cohorts, MAX_PERIODS};
use crate::sql::{invalid, Bind, Invalid, Sql};
use crate::{AppState, QueryError};
use std::sync::Arc;
use tally_schemas::row::utc_day;

/// What a retention report asks besides the app and the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape<'a> {
    /// `day`, `week` or `month`.
    pub period: &'a str,
    /// Periods after the cohort's.
    pub periods: usize,
    /// Only persons whose first event ever is in the range.
    pub first_time: bool,
    /// Break cohorts down by this current trait of the person.
    pub trait_name: Option<&'a str>,
}

/// The statement over the UTC days of `[from_ms, to_ms)` (columns `cohort`,
/// `breakdown` when broken down, `size`, `p0`…`pN`), from
/// [`crate::activity::rows`] with `raw_days`.
pub fn build(
    app_id: &str,
    (from_ms, to_ms): (i64, i64),
    shape: &Shape<'_>,
    raw_days: Option<&[String]>,
) -> Result<Sql, Invalid> {
    // The period number of a day `d0` (text), numbered as in `/retention`
    // (1970-01-01 is a Thursday), and the cohort's first day from it.
    let bad = || invalid("granularity", "day, week or month");
    let period_of = match shape.period {
        "day" => "toRelativeDayNum(toDate(d0))",
        "week" => "intDiv(toRelativeDayNum(toDate(d0)) + 3, 7)",
        "month" => "toRelativeMonthNum(toDate(d0))",
        _ => return Err(bad()),
    };
    let label = cohort_label(shape.period).ok_or_else(bad)?;
    if !(1..=MAX_PERIODS).contains(&shape.periods) {
        return Err(invalid("periods", format!("1..={MAX_PERIODS}")));
    }
    let (first, last) = (utc_day(from_ms), utc_day(to_ms - 1));
    // First-time cohorts need every day before the range too.
    let since = if shape.first_time {
        "1970-01-01".to_owned()
    } else {
        first.clone()
    };
    // Binds in text order: the range's first day (`r`), the rows', then the
    // first-time condition's and the trait's.
    let (union, union_binds) = rows(app_id, (&since, &last), raw_days);
    let mut binds = vec![Bind::Text(first.clone())];
    binds.extend(union_binds);
    let mut having = "countIf(r) > 0".to_owned();
    if shape.first_time {
        having.push_str(" AND ever >= ?");
        binds.push(Bind::Text(first));
    }
    let (mut join, mut by_out, mut by_mid, mut by_group) = ("", "", "", "");
    if let Some(name) = shape.trait_name {
        let (text, join_binds) = trait_join(app_id, name);
        binds.extend(join_binds);
        join = text;
        (by_out, by_mid, by_group) = ("toString(b) AS breakdown, ", "d1 AS b, ", ", b");
    }
    // p0: a second event in the first period; pk: any event in period c + k.
    let columns: Vec<String> = std::iter::once("toFloat64(countIf(e0 >= 2)) AS p0".to_owned())
        .chain((1..=shape.periods).map(|k| format!("toFloat64(countIf(has(ks, {k}))) AS p{k}")))
        .collect();
    let text = format!(
        "SELECT toString({label}) AS cohort, {by_out}toFloat64(count()) AS size, {} FROM (\
         SELECT c, {by_mid}arrayMap(x -> x - c, ps) AS ks, es[indexOf(ps, c)] AS e0 FROM (\
         SELECT pid, minIf(p, r) AS c, groupArrayIf(p, r) AS ps, groupArrayIf(e, r) AS es, \
         min(dmin) AS ever FROM (SELECT pid, {period_of} AS p, d0 >= ? AS r, sum(n) AS e, \
         min(d0) AS dmin FROM ({union}) GROUP BY pid, p, r) GROUP BY pid HAVING {having}) \
         AS a{join}) GROUP BY c{by_group} ORDER BY c{by_group}",
        columns.join(", "),
    );
    Ok(Sql::plain(text, binds))
}

/// The query string of a report, as the retention report reads it.
#[derive(Debug, Default)]
pub(crate) struct Params<'a> {
    /// `auto` (default) or `raw`.
    pub source: Option<&'a str>,
    /// `person.<trait>`.
    pub breakdown: Option<&'a str>,
    /// `day` (default), `week` or `month`: the period.
    pub granularity: Option<&'a str>,
    /// Periods after the cohort's (default 7).
    pub periods: Option<usize>,
    /// `in_range` (default) or `first_time`.
    pub cohort: Option<&'a str>,
    /// Refused when true (no bots are counted).
    pub include_bots: Option<bool>,
    /// `UTC` only.
    pub tz: Option<&'a str>,
}

/// Answers the retention report of `app_id` over `range` (see the module doc).
pub(crate) async fn answer(
    state: &AppState,
    app_id: &str,
    range: (i64, i64),
    params: &Params<'_>,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    if params.include_bots == Some(true) {
        return Err(invalid("include_bots", "retention counts persons, never bots").into());
    }
    if params.tz.is_some_and(|tz| tz != "UTC") {
        return Err(invalid("tz", "UTC (periods are UTC days, weeks, months)").into());
    }
    let first_time = match params.cohort.unwrap_or("in_range") {
        "in_range" => false,
        "first_time" => true,
        _ => return Err(invalid("cohort", "in_range or first_time").into()),
    };
    let trait_name = breakdown_trait(params.breakdown)?;
    let shape = Shape {
        period: params.granularity.unwrap_or("day"),
        periods: params.periods.unwrap_or(7),
        first_time,
        trait_name: trait_name.as_deref(),
    };
    let split = Split::of(state, app_id, params.source, "retention").await?;
    let sql = build(app_id, range, &shape, split.raw_days.as_deref())?;
    let kind = split.cache_kind("retention");
    let (answer, hit) = cached_rows(state, &kind, app_id, &sql, |rows, query_time_ms| {
        let now = state.clock.now_ms();
        let mut answer = split.answer((app_id, "retention"), range, (query_time_ms, now));
        answer["results"] = serde_json::json!(cohorts(&rows, shape.periods, trait_name.is_some()));
        answer["truncated"] = serde_json::json!(false);
        answer["period"] = serde_json::json!(shape.period);
        answer["periods"] = serde_json::json!(shape.periods);
        answer["cohort"] = serde_json::json!(if first_time { "first_time" } else { "in_range" });
        to_bytes(&answer)
    })
    .await?;
    Ok((answer, hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z
    const TO: i64 = FROM + 14 * 86_400_000;

    #[test]
    fn golden_retention_report_statements() {
        let raw = ["2023-11-16".to_owned()];
        let weekly = Shape {
            period: "week",
            periods: 2,
            first_time: true,
            trait_name: Some("plan"),
        };
        let sql = build("app-1", (FROM, TO), &weekly, Some(&raw)).unwrap();
        crate::sql::assert_golden("report_retention_weekly_first_time_refreshed", &sql);
        let daily = Shape {
            period: "day",
            periods: 3,
            first_time: false,
            trait_name: None,
        };
        let sql = build("app-1", (FROM, TO), &daily, None).unwrap();
        crate::sql::assert_golden("report_retention_daily_raw", &sql);
        let monthly = Shape {
            period: "month",
            ..daily.clone()
        };
        let sql = build("app-1", (FROM, TO), &monthly, Some(&[])).unwrap();
        assert!(!sql.text.contains("FROM events"), "every day derived");
    }

    #[test]
    fn bad_shapes_are_refused() {
        let shape = Shape {
            period: "year",
            periods: 7,
            first_time: false,
            trait_name: None,
        };
        assert!(build("a", (FROM, TO), &shape, None).is_err());
        for periods in [0, MAX_PERIODS + 1] {
            let shape = Shape {
                period: "day",
                periods,
                ..shape.clone()
            };
            assert!(build("a", (FROM, TO), &shape, None).is_err(), "{periods}");
        }
    }
}
