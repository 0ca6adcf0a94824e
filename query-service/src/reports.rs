//! Reports (seed 000): `GET /api/v1/analytics/{app_id}/reports/{report}` with
//! `report` one of `pages`, `pages_over_time`, `sources`, `countries`,
//! `devices`, `browsers` — page views and visitors per group, top first.
//! Query: `range` (`7d`, `24h`; hour-aligned, ending with the current hour),
//! `granularity` (`hour`|`day`, for `pages_over_time`), `limit` (≤ 1000),
//! `include_bots`, `tz` (the time zone of hours and days; default: the app's),
//! and `source` (`auto`|`raw`|`rollup`, for comparisons). The `activity`
//! report (active persons and events per day, by person trait) is
//! [`crate::activity`], the `retention` report (retention of active persons
//! by day, week or month, `periods`, `cohort`) [`crate::retention_report`].
//!
//! Visitors are persons. `auto` answers from the report refresher's
//! `report_pages_hourly` for the days it covers and from raw rows for the
//! others (`report+raw`, see [`crate::freshness`]), or from raw rows alone
//! before the refresher has run. `rollup` asks the older insert-only rollup
//! (`rollup_pages_hourly`, migration 0004; distinct ids, not persons), which
//! `testkit/tests/reports.rs` compares with raw rows. Report tables hold UTC
//! hours, which are not whole hours of every zone (+05:30), so
//! `pages_over_time` in another zone than UTC is answered from raw rows.

use crate::answer::{cached_rows, first_rows, respond, to_bytes};
use crate::auth::ReadAccess;
use crate::sql::{
    app_and_range, invalid, local_time_with_offset, person_join, split_unit, Bind, Invalid, Sql,
    PERSON,
};
use crate::{AppState, QueryError};
use axum::extract::State;
use std::sync::Arc;
use tally_common::http::{Path, Query};

/// Hour, ms.
pub const HOUR_MS: i64 = 3_600_000;

/// Which table answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Raw `events` rows.
    Raw,
    /// The hourly rollup (an insert-only materialized view; distinct ids).
    Rollup,
    /// The refresher's `report_pages_hourly` for derived days, raw rows for
    /// the others ([`crate::freshness`]).
    Refreshed,
}

impl Source {
    /// Its name in answers.
    pub fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Rollup => "rollup",
            Source::Refreshed => "report+raw",
        }
    }
}

/// Dimensions of `report`: (output name, raw expression, rollup expression).
fn dimensions(
    report: &str,
    granularity: &str,
) -> Result<Vec<(&'static str, String, String)>, Invalid> {
    let column = |name: &'static str| (name, name.to_owned(), name.to_owned());
    Ok(match report {
        "pages" => vec![column("url_path")],
        "sources" => vec![column("referrer_host")],
        "countries" => vec![column("country")],
        "devices" => vec![column("device_type")],
        "browsers" => vec![column("browser")],
        "pages_over_time" => {
            // Zoned like /query's buckets (the zone is each `?`).
            let (raw, rollup) = match granularity {
                "hour" => (
                    local_time_with_offset("toStartOfHour(timestamp, ?)", "").0,
                    local_time_with_offset("toStartOfHour(hour, ?)", "").0,
                ),
                "day" => (
                    "toString(toDate(timestamp, ?))".to_owned(),
                    "toString(toDate(hour, ?))".to_owned(),
                ),
                _ => return Err(invalid("granularity", "hour or day")),
            };
            vec![
                (
                    if granularity == "hour" { "hour" } else { "day" },
                    raw,
                    rollup,
                ),
                column("url_path"),
            ]
        }
        _ => return Err(invalid(
            "report",
            "pages, pages_over_time, sources, countries, devices, browsers, activity or retention",
        )),
    })
}

/// Hour-aligned range of a report: `Nd`/`Nh` ending with the current hour.
pub fn report_range(text: &str, now_ms: i64, max_days: i64) -> Result<(i64, i64), Invalid> {
    let bad = || invalid("range", "like \"7d\" or \"24h\"");
    let (number, unit) = split_unit(text);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "d" => 24 * HOUR_MS,
        "h" => HOUR_MS,
        _ => return Err(bad()),
    };
    if n <= 0 || n.saturating_mul(unit_ms) > max_days * 24 * HOUR_MS {
        return Err(invalid("range", format!("1 hour to {max_days} days")));
    }
    let to = now_ms.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    Ok((to - n * unit_ms, to))
}

/// Whether the rollup holds every page view of ranges starting at `from_ms`,
/// given it started at `since_ms` (events may be stamped up to 23 h after
/// they arrive, so a day of margin).
pub fn rollup_covers(since_ms: Option<i64>, from_ms: i64) -> bool {
    since_ms.is_some_and(|since| from_ms >= since + 24 * HOUR_MS)
}

/// Whether the rollup can answer `report` in zone `tz` (its hours are UTC hours).
pub fn rollup_answers(report: &str, tz: &str) -> bool {
    report != "pages_over_time" || tz == "UTC"
}

/// The statement of `report` over `[from_ms, to_ms)` (hour-aligned) from
/// `source`, hours and days in zone `tz`.
pub fn build(
    app_id: &str,
    (report, granularity, tz): (&str, &str, &str),
    (from_ms, to_ms): (i64, i64),
    (limit, include_bots): (usize, bool),
    source: Source,
) -> Result<Sql, Invalid> {
    if !(1..=1_000).contains(&limit) {
        return Err(invalid("limit", "1..=1000"));
    }
    if source == Source::Rollup && !rollup_answers(report, tz) {
        return Err(invalid(
            "source",
            "the rollup answers pages_over_time in UTC only",
        ));
    }
    let dims = dimensions(report, granularity)?;
    // The dimensions' zones come first in the text.
    let zones: Vec<Bind> = dims
        .iter()
        .map(|(_, raw, rollup)| if source == Source::Raw { raw } else { rollup })
        .flat_map(|expr| vec![Bind::Text(tz.to_owned()); expr.matches('?').count()])
        .collect();
    let mut select: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, (_, raw, rollup))| {
            let expr = if source == Source::Raw { raw } else { rollup };
            format!("{expr} AS d{i}")
        })
        .collect();
    let (table, metrics, mut conditions, guard) = match source {
        Source::Raw | Source::Refreshed => {
            // Visitors are persons (the app's identity mapping joined).
            let (join, mut binds) = person_join(app_id, false);
            let (mut conditions, guard) = app_and_range(app_id, (from_ms, to_ms));
            binds.extend(guard);
            conditions.push("name = 'page_view'".to_owned());
            (
                format!("events{join}"),
                [
                    "toFloat64(count()) AS m0".to_owned(),
                    format!("toFloat64(uniqExact({PERSON})) AS m1"),
                ],
                conditions,
                binds,
            )
        }
        Source::Rollup => (
            "rollup_pages_hourly".to_owned(),
            [
                "toFloat64(countMerge(page_views)) AS m0".to_owned(),
                "toFloat64(uniqExactMerge(visitors)) AS m1".to_owned(),
            ],
            vec![
                "app_id = ?".to_owned(),
                "hour >= toDateTime(?)".to_owned(),
                "hour < toDateTime(?)".to_owned(),
            ],
            vec![
                Bind::Text(app_id.to_owned()),
                Bind::Int(from_ms.div_euclid(1_000)),
                Bind::Int(to_ms.div_euclid(1_000)),
            ],
        ),
    };
    if !include_bots {
        conditions.push("is_bot = 0".into());
    }
    select.extend(metrics.iter().cloned());
    let names: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
    let text = format!(
        "SELECT {} FROM {table} WHERE {} GROUP BY {} ORDER BY m0 DESC, {} LIMIT {}",
        select.join(", "),
        conditions.join(" AND "),
        names.join(", "),
        names.join(", "),
        limit + 1
    );
    Ok(Sql {
        text,
        binds: zones.into_iter().chain(guard).collect(),
        dimensions: dims.iter().map(|(name, ..)| (*name).to_owned()).collect(),
        metrics: vec!["page_views".into(), "visitors".into()],
        max_groups: None,
    })
}

/// The statement of `report` over `[from_ms, to_ms)` from the refresher's
/// `report_pages_hourly` for every day not in `raw_days` and from raw rows
/// for those (see [`crate::freshness`]): one `UNION ALL` of counts and
/// `uniqExact` states, merged per group. UTC hours only, like the rollup.
pub fn build_refreshed(
    app_id: &str,
    (report, granularity, tz): (&str, &str, &str),
    (from_ms, to_ms): (i64, i64),
    (limit, include_bots): (usize, bool),
    raw_days: &[String],
) -> Result<Sql, Invalid> {
    if !(1..=1_000).contains(&limit) {
        return Err(invalid("limit", "1..=1000"));
    }
    if !rollup_answers(report, tz) {
        return Err(invalid(
            "source",
            "reports answer pages_over_time in UTC only",
        ));
    }
    let dims = dimensions(report, granularity)?;
    let side = |raw: bool| -> (Vec<String>, Vec<Bind>) {
        let mut binds = Vec::new();
        let select = dims
            .iter()
            .enumerate()
            .map(|(i, (_, raw_expr, report_expr))| {
                let expr = if raw { raw_expr } else { report_expr };
                binds.extend(vec![Bind::Text(tz.to_owned()); expr.matches('?').count()]);
                format!("{expr} AS d{i}")
            })
            .collect();
        (select, binds)
    };
    let days = || {
        let marks = vec!["?"; raw_days.len()].join(", ");
        let binds = raw_days.iter().map(|d| Bind::Text(d.clone()));
        (format!("({marks})"), binds)
    };
    let bots = if include_bots { "" } else { " AND is_bot = 0" };
    let (mut select, mut binds) = side(false);
    select.extend(["page_views AS m0".to_owned(), "visitors AS s".to_owned()]);
    binds.extend([
        Bind::Text(app_id.to_owned()),
        Bind::Int(from_ms.div_euclid(1_000)),
        Bind::Int(to_ms.div_euclid(1_000)),
    ]);
    let mut text = format!(
        "SELECT {} FROM report_pages_hourly FINAL WHERE app_id = ? AND hour >= toDateTime(?) \
         AND hour < toDateTime(?) AND page_views > 0{bots}",
        select.join(", ")
    );
    let names: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
    if !raw_days.is_empty() {
        let (list, day_binds) = days();
        text.push_str(&format!(" AND toDate(hour, 'UTC') NOT IN {list}"));
        binds.extend(day_binds);
        let (mut select, raw_binds) = side(true);
        binds.extend(raw_binds);
        select.extend([
            "count() AS m0".to_owned(),
            format!("uniqExactState({PERSON}) AS s"),
        ]);
        let (join, join_binds) = person_join(app_id, false);
        binds.extend(join_binds);
        let (conditions, guard) = app_and_range(app_id, (from_ms, to_ms));
        binds.extend(guard);
        let (list, day_binds) = days();
        binds.extend(day_binds);
        text.push_str(&format!(
            " UNION ALL SELECT {} FROM events{join} WHERE {} AND name = 'page_view'{bots} \
             AND event_date IN {list} GROUP BY {}",
            select.join(", "),
            conditions.join(" AND "),
            names.join(", ")
        ));
    }
    Ok(Sql {
        text: format!(
            "SELECT {names}, toFloat64(sum(m0)) AS m0, toFloat64(uniqExactMerge(s)) AS m1 \
             FROM ({text}) GROUP BY {names} ORDER BY m0 DESC, {names} LIMIT {}",
            limit + 1,
            names = names.join(", "),
        ),
        binds,
        dimensions: dims.iter().map(|(name, ..)| (*name).to_owned()).collect(),
        metrics: vec!["page_views".into(), "visitors".into()],
        max_groups: None,
    })
}

/// Query string of a report.
#[derive(Debug, serde::Deserialize)]
pub struct ReportParams {
    /// `7d` (default), `24h`, …
    pub range: Option<String>,
    /// `hour` or `day` (default), for `pages_over_time`.
    pub granularity: Option<String>,
    /// Most rows (default 10).
    pub limit: Option<usize>,
    /// Count bots too.
    pub include_bots: Option<bool>,
    /// `auto` (default: the refresher's reports with raw rows for the days
    /// they do not cover, else raw rows), `raw` or `rollup` (legacy).
    pub source: Option<String>,
    /// Time zone of hours and days (an IANA name; default: the app's).
    pub tz: Option<String>,
    /// `person.<trait>`: breaks the `activity` and `retention` reports down
    /// by a current trait.
    pub breakdown: Option<String>,
    /// Periods after the cohort's, for `retention` (default 7).
    pub periods: Option<usize>,
    /// `in_range` (default) or `first_time`, for `retention`.
    pub cohort: Option<String>,
}

/// `GET /api/v1/analytics/{app_id}/reports/{report}`.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Path((_, report)): Path<(String, String)>,
    Query(params): Query<ReportParams>,
    access: Result<ReadAccess, QueryError>,
) -> Result<axum::response::Response, QueryError> {
    let answer = report_inner(&state, access, &report, params);
    respond(&state, "report", answer).await
}

async fn report_inner(
    state: &AppState,
    access: Result<ReadAccess, QueryError>,
    report: &str,
    params: ReportParams,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let ReadAccess { app_id } = access?;
    let range = report_range(
        params.range.as_deref().unwrap_or("7d"),
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    if report == "activity" {
        let params = crate::activity::Params {
            source: params.source.as_deref(),
            breakdown: params.breakdown.as_deref(),
            limit: params.limit,
            include_bots: params.include_bots,
            granularity: params.granularity.as_deref(),
            tz: params.tz.as_deref(),
        };
        return crate::activity::answer(state, &app_id, range, &params).await;
    }
    if report == "retention" {
        let params = crate::retention_report::Params {
            source: params.source.as_deref(),
            breakdown: params.breakdown.as_deref(),
            granularity: params.granularity.as_deref(),
            periods: params.periods,
            cohort: params.cohort.as_deref(),
            include_bots: params.include_bots,
            tz: params.tz.as_deref(),
        };
        return crate::retention_report::answer(state, &app_id, range, &params).await;
    }
    if params.breakdown.is_some() {
        return Err(invalid(
            "breakdown",
            "only the activity and retention reports have one",
        )
        .into());
    }
    if params.periods.is_some() || params.cohort.is_some() {
        return Err(invalid(
            "periods",
            "only the retention report has periods and cohorts",
        )
        .into());
    }
    let zone = crate::range::time_zone(state, &app_id, params.tz.as_deref()).await?;
    let mut fresh = None;
    let source = match params.source.as_deref().unwrap_or("auto") {
        "raw" => Source::Raw,
        "rollup" => Source::Rollup,
        "auto" => match rollup_answers(report, &zone) {
            true => match crate::freshness::raw_days(state, &app_id).await? {
                Some(found) => {
                    fresh = Some(found);
                    Source::Refreshed
                }
                None => Source::Raw,
            },
            false => Source::Raw,
        },
        _ => return Err(invalid("source", "auto, raw or rollup").into()),
    };
    let granularity = params.granularity.as_deref().unwrap_or("day");
    let limit = params.limit.unwrap_or(10);
    let options = (limit, params.include_bots.unwrap_or(false));
    let raw_days: Vec<String> = fresh
        .as_ref()
        .map(|(days, _)| days.iter().cloned().collect())
        .unwrap_or_default();
    let sql = match source {
        Source::Refreshed => build_refreshed(
            &app_id,
            (report, granularity, &zone),
            range,
            options,
            &raw_days,
        )?,
        _ => build(
            &app_id,
            (report, granularity, &zone),
            range,
            options,
            source,
        )?,
    };
    let derived_as_of = fresh.as_ref().and_then(|(_, view)| view.run_started_ms);
    // A refresher run rewrites reports without changing the statement: the
    // run is part of the cache key, so no answer outlives the tables it read.
    let kind = format!("report@{}", derived_as_of.unwrap_or(0));
    let (answer, hit) = cached_rows(state, &kind, &app_id, &sql, |rows, query_time_ms| {
        let (results, truncated) = first_rows(rows, &sql, limit);
        // Every stored row counts (raw rows for the days reports do not
        // cover), so the answer is as fresh as the moment it was computed.
        let mut answer = serde_json::json!({
            "app_id": app_id, "report": report, "from_ms": range.0, "to_ms": range.1,
            "source": source.name(), "results": results, "truncated": truncated,
            "query_time_ms": query_time_ms, "fresh_as_of_ms": state.clock.now_ms(),
        });
        if source == Source::Refreshed {
            answer["raw_days"] = serde_json::json!(raw_days.len());
            answer["derived_as_of_ms"] = serde_json::json!(derived_as_of);
        }
        to_bytes(&answer)
    })
    .await?;
    // Outside the cache: a report without hours or days is one statement in every zone.
    let zone = serde_json::Value::from(zone).to_string();
    let answer = crate::fields::with_members(&answer, &[("time_zone", zone)]);
    Ok((Arc::new(answer), hit))
}

#[cfg(test)]
#[path = "reports_tests.rs"]
mod tests;
