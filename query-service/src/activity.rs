//! The `activity` report (`GET …/reports/activity`): per UTC day, how many
//! persons were active and how many events they sent (bots left out),
//! optionally broken down by a current trait of the person
//! (`breakdown=person.plan`). It reads the report refresher's
//! `person_day_activity` for the days it covers and raw rows for the others
//! (the same split as the page reports, [`crate::freshness`]), or raw rows
//! alone (`source=raw`, or before the refresher has run). Days are whole UTC
//! days: the range's first and last days count entirely.

use crate::answer::{cached_rows, first_rows, to_bytes};
use crate::sql::{invalid, person_join, Bind, Invalid, Sql, PERSON};
use crate::{AppState, QueryError};
use std::sync::Arc;
use tally_schemas::row::utc_day;

/// The trait of a `breakdown` (`person.<name>`), if any.
pub fn breakdown_trait(breakdown: Option<&str>) -> Result<Option<String>, Invalid> {
    let Some(breakdown) = breakdown else {
        return Ok(None);
    };
    match breakdown.strip_prefix("person.") {
        Some(name) if !name.is_empty() && name.chars().count() <= 200 => Ok(Some(name.to_owned())),
        _ => Err(invalid("breakdown", "person.<trait>, e.g. person.plan")),
    }
}

/// The rows of activity (`d0`: UTC day text, `pid`: person, `n`: events;
/// bots left out) on the UTC days `first..=last` (`YYYY-MM-DD`), as the
/// branches of a `UNION ALL`: from `person_day_activity` except on
/// `raw_days`, and from raw rows on those — or on every day when `raw_days`
/// is `None`. A person may have one row per branch and day.
pub fn rows(
    app_id: &str,
    (first, last): (&str, &str),
    raw_days: Option<&[String]>,
) -> (String, Vec<Bind>) {
    let list = |days: &[String]| {
        let marks = vec!["?"; days.len()].join(", ");
        (
            format!("({marks})"),
            days.iter()
                .map(|d| Bind::Text(d.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let range = || {
        [
            Bind::Text(app_id.to_owned()),
            Bind::Text(first.to_owned()),
            Bind::Text(last.to_owned()),
        ]
    };
    let mut binds = Vec::new();
    let mut sides = Vec::new();
    if let Some(raw) = raw_days {
        binds.extend(range());
        let mut skip = String::new();
        if !raw.is_empty() {
            let (marks, day_binds) = list(raw);
            skip = format!(" AND toString(day) NOT IN {marks}");
            binds.extend(day_binds);
        }
        sides.push(format!(
            "SELECT toString(day) AS d0, pid, n FROM (SELECT day, person_id AS pid, events AS n \
             FROM person_day_activity FINAL WHERE app_id = ? AND day >= toDate(?) \
             AND day <= toDate(?){skip}) WHERE n > 0"
        ));
    }
    if raw_days.is_none_or(|days| !days.is_empty()) {
        let (join, join_binds) = person_join(app_id, false);
        binds.extend(join_binds);
        binds.extend(range());
        let mut only = String::new();
        if let Some(days) = raw_days {
            let (marks, day_binds) = list(days);
            only = format!(" AND toString(event_date) IN {marks}");
            binds.extend(day_binds);
        }
        sides.push(format!(
            "SELECT toString(event_date) AS d0, {PERSON} AS pid, count() AS n FROM events{join} \
             WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) \
             AND is_bot = 0{only} GROUP BY d0, pid"
        ));
    }
    (sides.join(" UNION ALL "), binds)
}

/// ` ANY LEFT JOIN` of the current value (`d1`) of the person's (`pid`)
/// trait `name`, and its binds.
pub fn trait_join(app_id: &str, name: &str) -> (&'static str, [Bind; 2]) {
    (
        " ANY LEFT JOIN (SELECT person_id AS pid, argMax(prop_values[indexOf(prop_keys, ?)], \
         version) AS d1 FROM persons WHERE app_id = ? GROUP BY person_id) AS t USING pid",
        [Bind::Text(name.to_owned()), Bind::Text(app_id.to_owned())],
    )
}

/// The statement of the activity report over the UTC days of `[from_ms,
/// to_ms)`, broken down by `trait_name`, from [`rows`].
pub fn build(
    app_id: &str,
    (from_ms, to_ms): (i64, i64),
    trait_name: Option<&str>,
    limit: usize,
    raw_days: Option<&[String]>,
) -> Result<Sql, Invalid> {
    if !(1..=1_000).contains(&limit) {
        return Err(invalid("limit", "1..=1000"));
    }
    let (first, last) = (utc_day(from_ms), utc_day(to_ms - 1));
    let (union, mut binds) = rows(app_id, (&first, &last), raw_days);
    let mut dimensions = vec!["day".to_owned()];
    let (mut groups, mut by) = ("d0".to_owned(), String::new());
    if let Some(name) = trait_name {
        let (join, join_binds) = trait_join(app_id, name);
        by = join.to_owned();
        binds.extend(join_binds);
        groups.push_str(", d1");
        dimensions.push(format!("person.{name}"));
    }
    Ok(Sql {
        text: format!(
            "SELECT {groups}, toFloat64(uniqExact(pid)) AS m0, toFloat64(sum(n)) AS m1 FROM ({}) \
             AS a{by} GROUP BY {groups} ORDER BY {groups} LIMIT {}",
            union,
            limit + 1
        ),
        binds,
        dimensions,
        metrics: vec!["active_persons".into(), "events".into()],
        max_groups: None,
    })
}

/// The query string of a report, as the activity report reads it.
#[derive(Debug, Default)]
pub(crate) struct Params<'a> {
    /// `auto` (default) or `raw`.
    pub source: Option<&'a str>,
    /// `person.<trait>`.
    pub breakdown: Option<&'a str>,
    /// Most rows (default 100).
    pub limit: Option<usize>,
    /// Refused when true (no bots are counted).
    pub include_bots: Option<bool>,
    /// `day` only.
    pub granularity: Option<&'a str>,
    /// `UTC` only.
    pub tz: Option<&'a str>,
}

/// Which days a report of person activity reads from raw rows: `raw_days`
/// (`None`: every day, from raw rows alone), and when the refresher's last
/// committed run began.
#[derive(Debug)]
pub(crate) struct Split {
    /// Days answered from raw rows; `None`: all of them.
    pub raw_days: Option<Vec<String>>,
    /// Start of the refresher's last committed run (epoch ms).
    pub derived_as_of: Option<i64>,
}

impl Split {
    /// The split for `source` (`auto`, default: the refresher's state; `raw`)
    /// of `report`.
    pub(crate) async fn of(
        state: &AppState,
        app_id: &str,
        source: Option<&str>,
        report: &str,
    ) -> Result<Split, QueryError> {
        let fresh = match source.unwrap_or("auto") {
            "auto" => crate::freshness::raw_days(state, app_id).await?,
            "raw" => None,
            _ => return Err(invalid("source", format!("auto or raw ({report})")).into()),
        };
        Ok(Split {
            derived_as_of: fresh.as_ref().and_then(|(_, view)| view.run_started_ms),
            raw_days: fresh.map(|(days, _)| days.into_iter().collect()),
        })
    }

    /// The answer's `source`.
    pub(crate) fn source(&self) -> &'static str {
        if self.raw_days.is_some() {
            "report+raw"
        } else {
            "raw"
        }
    }

    /// The answer cache's kind for `report` (a new run, a new answer).
    pub(crate) fn cache_kind(&self, report: &str) -> String {
        format!("{report}@{}", self.derived_as_of.unwrap_or(0))
    }

    /// The members every answer of `report` of `app_id` over `range` has
    /// (its source, when it was computed, the zone of its UTC days, and for
    /// report+raw its raw days and the run it derived from); callers add
    /// `results` and their own.
    pub(crate) fn answer(
        &self,
        (app_id, report): (&str, &str),
        range: (i64, i64),
        (query_time_ms, now_ms): (u64, i64),
    ) -> serde_json::Value {
        let mut answer = serde_json::json!({
            "app_id": app_id, "report": report, "from_ms": range.0, "to_ms": range.1,
            "source": self.source(), "query_time_ms": query_time_ms, "fresh_as_of_ms": now_ms,
            "time_zone": "UTC",
        });
        if let Some(days) = &self.raw_days {
            answer["raw_days"] = serde_json::json!(days.len());
            answer["derived_as_of_ms"] = serde_json::json!(self.derived_as_of);
        }
        answer
    }
}

/// Answers the activity report of `app_id` over `range` (see the module doc).
pub(crate) async fn answer(
    state: &AppState,
    app_id: &str,
    range: (i64, i64),
    params: &Params<'_>,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    if params.include_bots == Some(true) {
        return Err(invalid("include_bots", "activity counts persons, never bots").into());
    }
    if params.granularity.is_some_and(|g| g != "day") {
        return Err(invalid("granularity", "day (activity is per UTC day)").into());
    }
    if params.tz.is_some_and(|tz| tz != "UTC") {
        return Err(invalid("tz", "UTC (activity is per UTC day)").into());
    }
    let trait_name = breakdown_trait(params.breakdown)?;
    let split = Split::of(state, app_id, params.source, "activity").await?;
    let limit = params.limit.unwrap_or(100);
    let sql = build(
        app_id,
        range,
        trait_name.as_deref(),
        limit,
        split.raw_days.as_deref(),
    )?;
    let kind = split.cache_kind("activity");
    let (answer, hit) = cached_rows(state, &kind, app_id, &sql, |rows, query_time_ms| {
        let (results, truncated) = first_rows(rows, &sql, limit);
        let now = state.clock.now_ms();
        let mut answer = split.answer((app_id, "activity"), range, (query_time_ms, now));
        answer["results"] = serde_json::json!(results);
        answer["truncated"] = serde_json::json!(truncated);
        to_bytes(&answer)
    })
    .await?;
    Ok((answer, hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z
    const TO: i64 = FROM + 2 * 86_400_000;

    #[test]
    fn golden_activity_statements() {
        let raw = ["2023-11-16".to_owned()];
        let sql = build("app-1", (FROM, TO), Some("plan"), 100, Some(&raw)).unwrap();
        crate::sql::assert_golden("report_activity_refreshed", &sql);
        let sql = build("app-1", (FROM, TO), None, 100, None).unwrap();
        crate::sql::assert_golden("report_activity_raw", &sql);
        let sql = build("app-1", (FROM, TO), None, 100, Some(&[])).unwrap();
        assert!(!sql.text.contains("FROM events"), "every day derived");
    }

    #[test]
    fn breakdown_is_a_person_trait() {
        assert_eq!(
            breakdown_trait(Some("person.plan")).unwrap(),
            Some("plan".into())
        );
        assert_eq!(breakdown_trait(None).unwrap(), None);
        for bad in ["plan", "person.", "country"] {
            assert!(breakdown_trait(Some(bad)).is_err(), "{bad}");
        }
        assert!(build("a", (FROM, TO), None, 0, None).is_err());
    }
}
