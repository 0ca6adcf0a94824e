//! Reports (seed 000): `GET /api/v1/analytics/{app_id}/reports/{report}` with
//! `report` one of `pages`, `pages_over_time`, `sources`, `countries`,
//! `devices`, `browsers` — page views and visitors per group, top first.
//! Query: `range` (`7d`, `24h`; hour-aligned, ending with the current hour),
//! `granularity` (`hour`|`day`, for `pages_over_time`), `limit` (≤ 1000),
//! `include_bots`, `tz` (the time zone of hours and days; default: the app's),
//! and `source` (`auto`|`raw`|`rollup`, for comparisons).
//!
//! `auto` answers from the hourly rollup (`rollup_pages_hourly`, migration
//! 0004) when the range begins at least a day after the rollup started
//! (`rollup_coverage`), else from raw rows; both statements compute the same
//! numbers (count and exact uniques, merged from aggregate states in the
//! rollup), which `testkit/tests/reports.rs` checks. The rollup trails the
//! raw rows by the length of one insert: ClickHouse makes an insert's rows
//! visible in `events` before the view has written its block. The rollup's
//! hours are UTC hours, which are not whole hours of every zone (+05:30), so
//! `pages_over_time` in another zone than UTC is answered from raw rows.

use crate::answer::{cached_rows, name_columns, respond, to_bytes};
use crate::auth::ReadAccess;
use crate::sql::{app_and_range, invalid, local_time_with_offset, split_unit, Bind, Invalid, Sql};
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
    /// The hourly rollup.
    Rollup,
}

impl Source {
    /// Its name in answers.
    pub fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Rollup => "rollup",
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
        _ => {
            return Err(invalid(
                "report",
                "pages, pages_over_time, sources, countries, devices or browsers",
            ))
        }
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
        Source::Raw => {
            let (mut conditions, binds) = app_and_range(app_id, (from_ms, to_ms));
            conditions.push("name = 'page_view'".to_owned());
            (
                "events",
                [
                    "toFloat64(count()) AS m0",
                    "toFloat64(uniqExact(distinct_id)) AS m1",
                ],
                conditions,
                binds,
            )
        }
        Source::Rollup => (
            "rollup_pages_hourly",
            [
                "toFloat64(countMerge(page_views)) AS m0",
                "toFloat64(uniqExactMerge(visitors)) AS m1",
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
    select.extend(metrics.iter().map(|m| (*m).to_owned()));
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
    /// `auto` (default), `raw` or `rollup`.
    pub source: Option<String>,
    /// Time zone of hours and days (an IANA name; default: the app's).
    pub tz: Option<String>,
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
    let zone = crate::range::time_zone(state, &app_id, params.tz.as_deref()).await?;
    let source = match params.source.as_deref().unwrap_or("auto") {
        "raw" => Source::Raw,
        "rollup" => Source::Rollup,
        "auto" => {
            if rollup_answers(report, &zone)
                && rollup_covers(state.events.rollup_since().await?, range.0)
            {
                Source::Rollup
            } else {
                Source::Raw
            }
        }
        _ => return Err(invalid("source", "auto, raw or rollup").into()),
    };
    let granularity = params.granularity.as_deref().unwrap_or("day");
    let limit = params.limit.unwrap_or(10);
    let options = (limit, params.include_bots.unwrap_or(false));
    let sql = build(
        &app_id,
        (report, granularity, &zone),
        range,
        options,
        source,
    )?;
    let (answer, hit) = cached_rows(state, "report", &app_id, &sql, |rows, query_time_ms| {
        let truncated = rows.len() > limit;
        let results: Vec<_> = rows
            .into_iter()
            .take(limit)
            .map(|row| name_columns(row, &sql))
            .collect();
        let answer = serde_json::json!({
            "app_id": app_id, "report": report, "from_ms": range.0, "to_ms": range.1,
            "source": source.name(), "results": results, "truncated": truncated,
            "query_time_ms": query_time_ms,
        });
        to_bytes(&answer)
    })
    .await?;
    // Outside the cache: a report without hours or days is one statement in every zone.
    let zone = serde_json::Value::from(zone).to_string();
    let answer = crate::fields::with_members(&answer, &[("time_zone", zone)]);
    Ok((Arc::new(answer), hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_hour_aligned_and_routing_waits_a_day() {
        let now = 1_700_000_123_456;
        let (from, to) = report_range("24h", now, 30).unwrap();
        assert_eq!((to % HOUR_MS, to - from), (0, 24 * HOUR_MS));
        assert!(to > now && to - now <= HOUR_MS);
        assert!(report_range("31d", now, 30).is_err());
        assert!(report_range("7w", now, 30).is_err());
        assert!(report_range("😀", now, 30).is_err());
        assert!(!rollup_covers(None, from));
        assert!(!rollup_covers(Some(from), from));
        assert!(rollup_covers(Some(from - 24 * HOUR_MS), from));
    }

    #[test]
    fn raw_and_rollup_statements_group_alike() {
        for report in [
            "pages",
            "pages_over_time",
            "sources",
            "countries",
            "devices",
            "browsers",
        ] {
            let raw = build(
                "a",
                (report, "day", "UTC"),
                (0, HOUR_MS),
                (10, false),
                Source::Raw,
            )
            .unwrap();
            let rollup = build(
                "a",
                (report, "day", "UTC"),
                (0, HOUR_MS),
                (10, false),
                Source::Rollup,
            )
            .unwrap();
            assert_eq!(raw.dimensions, rollup.dimensions);
            assert_eq!(raw.text.matches('?').count(), raw.binds.len());
            assert_eq!(rollup.text.matches('?').count(), rollup.binds.len());
            assert!(rollup.text.contains("FROM rollup_pages_hourly"));
        }
        assert_eq!(
            build(
                "a",
                ("revenue", "day", "UTC"),
                (0, 1),
                (10, false),
                Source::Raw
            )
            .unwrap_err()
            .0,
            "report"
        );
        assert_eq!(
            build(
                "a",
                ("pages_over_time", "week", "UTC"),
                (0, 1),
                (10, false),
                Source::Raw
            )
            .unwrap_err()
            .0,
            "granularity"
        );
        // The rollup's hours are UTC hours: another zone's days come from raw rows.
        let over_time = ("pages_over_time", "day", "Asia/Kolkata");
        assert!(build("a", over_time, (0, 1), (10, false), Source::Rollup).is_err());
        let raw = build("a", over_time, (0, 1), (10, false), Source::Raw).unwrap();
        assert_eq!(raw.binds[0], Bind::Text("Asia/Kolkata".into()));
        assert!(rollup_answers("pages", "Asia/Kolkata"));
    }
}
